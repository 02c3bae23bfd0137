// Links `pow` into the bootstrap, so that a cold start loads no libm (functions/pow).
use bootstrap_pow as _;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = aftercare_core::aws::app_from_env(aftercare_core::flow::bundled::flow_set()?).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| step::handler::handle(&app, event))).await
}
