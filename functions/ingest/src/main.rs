// Links `pow` into the bootstrap, so that a cold start loads no libm (functions/pow).
use bootstrap_pow as _;
use aftercare_core::service::api::{AccessKeys, ApiKeys};
use lambda_http::{service_fn, Error, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    // Config and flows are read once, at cold start; anything wrong stops here with its reason.
    let ingest = ApiKeys::from_hashes(&std::env::var("API_KEY_HASHES").unwrap_or_default()).map_err(|e| format!("API_KEY_HASHES: {e}"))?;
    // Optional: without admin keys the report, timeline, export and erase routes answer 403.
    let admin = match std::env::var("ADMIN_KEY_HASHES").unwrap_or_default() {
        hashes if hashes.trim().is_empty() => None,
        hashes => Some(ApiKeys::from_hashes(&hashes).map_err(|e| format!("ADMIN_KEY_HASHES: {e}"))?),
    };
    let keys = AccessKeys { ingest, admin };
    let app = aftercare_core::aws::app_from_env(aftercare_core::flow::bundled::flow_set()?).await?;
    lambda_http::run(service_fn(|request: Request| ingest::handler::handle(&app, &keys, request))).await
}
