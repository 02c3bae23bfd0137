use aftercare_core::service::api::ApiKeys;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    // Config and flows are read once, at cold start; anything wrong stops here with its reason.
    let keys = ApiKeys::from_hashes(&std::env::var("API_KEY_HASHES").unwrap_or_default()).map_err(|e| format!("API_KEY_HASHES: {e}"))?;
    let app = aftercare_core::aws::app_from_env(aftercare_core::flow::bundled::flow_set()?).await?;
    lambda_http::run(service_fn(|request: Request| ingest::handler::handle(&app, &keys, request))).await
}
