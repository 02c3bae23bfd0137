//! The floor for cold-start benchmarks: a hello-world `lambda_runtime` function built with
//! the same profile as the Aftercare Lambdas (`benches/cold_start.rs` compares them).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<Value, Error>(event.payload) })).await
}
