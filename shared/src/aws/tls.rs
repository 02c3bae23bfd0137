//! Which certificate authorities the AWS clients trust.
//!
//! The SDK's default reads the platform's whole CA store at start (on this machine the bundle
//! plus 146 files in /etc/ssl/certs): about 3 ms of every cold start, for one purpose, talking
//! to AWS endpoints, whose certificates are all issued under Amazon Trust Services' roots.
//! So by default only those five roots are trusted; `AFTERCARE_TLS_ROOTS=system` restores the
//! platform store (for an HTTPS `AWS_ENDPOINT_URL` that is not AWS, or a region such as
//! China's whose endpoints use other issuers).

use std::sync::atomic::{AtomicBool, Ordering};

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;

use super::ConfigError;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (which cross-signs them), as published
/// by Amazon Trust Services (https://www.amazontrust.com/repository/). SHA-256 fingerprints are
/// checked by the tests below.
pub const AMAZON_ROOTS_PEM: &str = include_str!("amazon-roots.pem");

/// What `AFTERCARE_TLS_ROOTS` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedRoots {
    Amazon,
    System,
}

impl TrustedRoots {
    pub fn parse(value: Option<&str>) -> Result<TrustedRoots, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("amazon") => Ok(TrustedRoots::Amazon),
            Some("system") => Ok(TrustedRoots::System),
            Some(other) => Err(ConfigError(format!("AFTERCARE_TLS_ROOTS must be `amazon` (default) or `system`, got {other:?}"))),
        }
    }

    fn trust_store(self) -> TrustStore {
        match self {
            TrustedRoots::Amazon => TrustStore::empty().with_native_roots(false).with_pem_certificate(AMAZON_ROOTS_PEM.as_bytes()),
            TrustedRoots::System => TrustStore::default(),
        }
    }
}

/// The SDK's own rustls + aws-lc HTTPS client, with the chosen trust store.
pub fn with_https_client(loader: aws_config::ConfigLoader, roots: TrustedRoots) -> Result<aws_config::ConfigLoader, ConfigError> {
    let context = TlsContext::builder()
        .with_trust_store(roots.trust_store())
        .build()
        .map_err(|e| ConfigError(format!("TLS settings: {e}")))?;
    let https = Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).tls_context(context).build_https();
    Ok(loader.http_client(ValidatedOnce::new(https)))
}

/// One HTTPS client shared by the four service clients, checked once rather than by each.
/// The SDK's client checks itself by building a whole TLS connector (the trust store parsed,
/// a rustls configuration made) and dropping it, so that a bad trust store fails at start
/// rather than at the first request; each service client asks again, with the same settings,
/// which made four connectors at every cold start for one answer (BENCHMARKS.md).
#[derive(Debug)]
pub struct ValidatedOnce {
    inner: SharedHttpClient,
    validated: AtomicBool,
}

impl ValidatedOnce {
    pub fn new(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(ValidatedOnce { inner, validated: AtomicBool::new(false) })
    }
}

impl HttpClient for ValidatedOnce {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(&self, components: &RuntimeComponentsBuilder, cfg: &ConfigBag) -> Result<(), BoxError> {
        if self.validated.load(Ordering::Acquire) {
            return Ok(());
        }
        // A failure is not remembered: each client that asks gets the error.
        self.inner.validate_base_client_config(components, cfg)?;
        self.validated.store(true, Ordering::Release);
        Ok(())
    }

    fn validate_final_config(&self, components: &RuntimeComponents, cfg: &ConfigBag) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::sync::Arc;

    fn der_certificates(pem: &str) -> Vec<Vec<u8>> {
        use base64::Engine;
        pem.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block.split("-----END CERTIFICATE-----").next().unwrap().chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(body).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_bundled_roots_are_exactly_amazon_trust_services_five() {
        // Fingerprints as listed at https://www.amazontrust.com/repository/.
        let expected = [
            "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e", // Amazon Root CA 1
            "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4", // Amazon Root CA 2
            "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4", // Amazon Root CA 3
            "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092", // Amazon Root CA 4
            "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5", // Starfield Services Root CA G2
        ];
        let found: Vec<String> = der_certificates(AMAZON_ROOTS_PEM).iter().map(|der| hex::encode(Sha256::digest(der))).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_setting_is_amazon_by_default_system_on_request_and_anything_else_is_refused() {
        assert_eq!(TrustedRoots::parse(None).unwrap(), TrustedRoots::Amazon);
        assert_eq!(TrustedRoots::parse(Some("")).unwrap(), TrustedRoots::Amazon);
        assert_eq!(TrustedRoots::parse(Some("system")).unwrap(), TrustedRoots::System);
        let error = TrustedRoots::parse(Some("mozilla")).unwrap_err().to_string();
        assert!(error.contains("AFTERCARE_TLS_ROOTS") && error.contains("mozilla"), "{error}");
    }

    /// Counts how often the SDK asks it to check itself; never asked to connect.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct CountingClient(pub(crate) Arc<AtomicUsize>);

    impl HttpClient for CountingClient {
        fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
            unimplemented!("these tests make no request")
        }
        fn validate_base_client_config(&self, _: &RuntimeComponentsBuilder, _: &ConfigBag) -> Result<(), BoxError> {
            self.0.fetch_add(1, AtomicOrdering::SeqCst);
            Ok(())
        }
    }

    /// An SDK configuration on `http_client`, with a region and test credentials.
    pub(crate) async fn counting_sdk(http_client: impl HttpClient + 'static) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client)
            .region(aws_config::Region::new("ap-northeast-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
            .load()
            .await
    }

    /// The four service clients the Lambdas build, on one HTTP client; how often it was checked.
    async fn checks_for_four_clients(http_client: SharedHttpClient, counter: &AtomicUsize) -> usize {
        let sdk = counting_sdk(http_client).await;
        let before = counter.load(AtomicOrdering::SeqCst);
        let _clients = (
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_scheduler::Client::new(&sdk),
            aws_sdk_sesv2::Client::new(&sdk),
            aws_sdk_eventbridge::Client::new(&sdk),
        );
        counter.load(AtomicOrdering::SeqCst) - before
    }

    #[tokio::test]
    async fn the_shared_https_client_is_checked_once_not_by_each_service_client() {
        let bare = CountingClient::default();
        assert_eq!(checks_for_four_clients(SharedHttpClient::new(bare.clone()), &bare.0).await, 4, "the SDK checks its HTTP client once per service client");
        let wrapped = CountingClient::default();
        assert_eq!(checks_for_four_clients(ValidatedOnce::new(SharedHttpClient::new(wrapped.clone())), &wrapped.0).await, 1);
    }

    #[test]
    fn both_trust_stores_build_a_client() {
        for roots in [TrustedRoots::Amazon, TrustedRoots::System] {
            with_https_client(aws_config::defaults(aws_config::BehaviorVersion::latest()), roots).unwrap();
        }
    }
}
