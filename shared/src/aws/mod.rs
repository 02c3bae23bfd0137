//! AWS adapters: DynamoDB (single table), EventBridge Scheduler, SES v2, EventBridge.
//! Configuration is read once from the environment by `Settings::from_env`.

mod client;
mod dynamo;
mod mailer;
mod publisher;
mod scheduler;
pub mod tls;

pub use dynamo::{DynamoStore, Usage};
pub use mailer::SesMailer;
pub use publisher::EventBridgePublisher;
pub use scheduler::EventBridgeScheduler;

use std::sync::Arc;

use crate::flow::FlowSet;
use crate::ports::SystemClock;
use crate::service::{App, Ports};

/// What the Lambdas need to know, from their environment (set by template.yaml).
#[derive(Debug, Clone)]
pub struct Settings {
    pub table_name: String,
    pub schedule_group: String,
    pub step_function_arn: String,
    pub scheduler_role_arn: String,
    pub dead_letter_queue_arn: String,
    pub configuration_set: Option<String>,
    pub event_bus_name: String,
    /// Hex secret that signs unsubscribe links (32 bytes or more).
    pub unsubscribe_secret: Vec<u8>,
    /// Where `/u/<token>` is served: the HTTP API's URL.
    pub public_base_url: String,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn required(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError(format!("environment variable {name} is required"))),
    }
}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Ok(Settings {
            table_name: required("TABLE_NAME")?,
            schedule_group: required("SCHEDULE_GROUP")?,
            step_function_arn: required("STEP_FUNCTION_ARN")?,
            scheduler_role_arn: required("SCHEDULER_ROLE_ARN")?,
            dead_letter_queue_arn: required("DLQ_ARN")?,
            configuration_set: std::env::var("SES_CONFIGURATION_SET").ok().filter(|s| !s.is_empty()),
            event_bus_name: std::env::var("EVENT_BUS_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
            unsubscribe_secret: hex::decode(required("UNSUBSCRIBE_SECRET")?.trim())
                .map_err(|_| ConfigError("UNSUBSCRIBE_SECRET must be hex (e.g. from `openssl rand -hex 32`)".into()))?,
            public_base_url: required("PUBLIC_BASE_URL")?,
        })
    }
}

/// The AWS adapters, built from one shared SDK configuration; each builds its service client
/// when it is first used (`client::ClientOnFirstUse`).
pub struct AwsAdapters {
    pub store: Arc<DynamoStore>,
    pub scheduler: Arc<EventBridgeScheduler>,
    pub mailer: Arc<SesMailer>,
    pub publisher: Arc<EventBridgePublisher>,
}

impl AwsAdapters {
    pub fn new(sdk: &aws_config::SdkConfig, settings: &Settings) -> AwsAdapters {
        AwsAdapters {
            store: Arc::new(DynamoStore::new(sdk, settings.table_name.clone())),
            scheduler: Arc::new(EventBridgeScheduler::new(sdk, settings)),
            mailer: Arc::new(SesMailer::new(sdk, settings.configuration_set.clone())),
            publisher: Arc::new(EventBridgePublisher::new(sdk, settings.event_bus_name.clone())),
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            store: self.store.clone(),
            scheduler: self.scheduler.clone(),
            mailer: self.mailer.clone(),
            publisher: self.publisher.clone(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Everything a Lambda needs: settings from the environment, the SDK, and the flows compiled
/// in. Those are checked whole by the tests, so their templates compile on first use.
pub async fn app_from_env(flows: FlowSet) -> anyhow::Result<App> {
    let settings = Settings::from_env()?;
    let links = crate::service::unsubscribe::UnsubscribeLinks::new(&settings.unsubscribe_secret, &settings.public_base_url)
        .map_err(|e| ConfigError(format!("UNSUBSCRIBE_SECRET: {e}")))?;
    let roots = tls::TrustedRoots::parse(std::env::var("AFTERCARE_TLS_ROOTS").ok().as_deref())?;
    // Boxed: the SDK's loading future is tens of KB, and inline it made every Lambda's `main`
    // a 71 KB stack frame, whose probes touched 17 fresh stack pages at each cold start.
    let sdk = Box::pin(tls::with_https_client(sdk_loader_from_env(), roots)?.load()).await;
    Ok(App::compiling_templates_on_first_use(flows, AwsAdapters::new(&sdk, &settings).ports())?.with_links(links))
}

/// The SDK's default chains, short-cut where Lambda already says the answer: its credentials
/// and region are in the environment. The default credentials chain builds every provider it
/// might fall back to (an STS client for web identity among them) and the region chain looks at
/// profile files, about 0.35 ms of each cold start (BENCHMARKS.md). Elsewhere (a profile, SSO,
/// a container) the chains run as usual.
fn sdk_loader_from_env() -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some() {
        loader = loader.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    }
    if let Some(region) = std::env::var("AWS_REGION").ok().filter(|r| !r.trim().is_empty()) {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader
}

/// Throttling and 5xx are worth retrying; a request the service refused is not.
pub(crate) fn classify<E, R>(what: &str, error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> crate::ports::PortError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
    let message = format!("{what}: {}", DisplayErrorContext(error));
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let retryable = code.contains("Throttl")
                || code.contains("ProvisionedThroughputExceeded")
                || code.contains("RequestLimitExceeded")
                || code.contains("InternalServer")
                || code.contains("ServiceUnavailable")
                || code == "TooManyRequestsException";
            if retryable {
                crate::ports::PortError::Retryable(message)
            } else {
                crate::ports::PortError::Fatal(message)
            }
        }
        _ => crate::ports::PortError::Retryable(message),
    }
}
