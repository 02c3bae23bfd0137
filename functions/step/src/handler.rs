use aftercare_core::engine::DueStep;
use aftercare_core::service::{App, Processed};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

/// Runs the step. A duplicate or late callback is a no-op (`stale`); an error makes
/// Lambda and Scheduler retry, and finally lands in the dead-letter queue.
pub async fn handle(app: &App, event: LambdaEvent<DueStep>) -> Result<Value, Error> {
    let outcome = app.run_step(&event.payload, &mut Vec::new()).await?;
    let outcome = match outcome {
        Processed::Applied => "applied",
        Processed::Stale => "stale",
        Processed::Duplicate => "duplicate",
        Processed::UnknownCustomer => "unknown_customer",
    };
    Ok(json!({ "outcome": outcome }))
}
