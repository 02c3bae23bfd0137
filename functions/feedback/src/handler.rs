use aftercare_core::service::feedback::{self, FeedbackError};
use aftercare_core::service::{App, Processed, ServiceError};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

/// Records the SES event on the customer's timeline. Events that can never be recorded
/// (unknown type, no customer tag) are logged and dropped, not retried forever.
pub async fn handle(app: &App, event: LambdaEvent<EventBridgeEvent<Value>>) -> Result<Value, Error> {
    let ses = event.payload;
    let received_at = ses.time.unwrap_or_else(chrono::Utc::now);
    let timeline_event = match feedback::to_event(&ses.detail_type, &ses.detail, received_at) {
        Ok(e) => e,
        Err(why @ (FeedbackError::UnknownType(_) | FeedbackError::NoCustomer | FeedbackError::Malformed(_))) => {
            tracing::warn!(detail_type = %ses.detail_type, reason = %why, "SES event dropped");
            return Ok(json!({ "outcome": "dropped", "reason": why.to_string() }));
        }
    };
    let outcome = match app.ingest_feedback(&timeline_event).await {
        Ok(Processed::Duplicate) => "duplicate",
        Ok(Processed::UnknownCustomer) => "unknown_customer",
        Ok(_) => "recorded",
        Err(ServiceError::Invalid { error, .. }) => {
            tracing::warn!(field = %error.field, message = %error.message, "SES event dropped");
            return Ok(json!({ "outcome": "dropped", "reason": error.to_string() }));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(json!({ "outcome": outcome, "type": timeline_event.event_type, "customer_id": timeline_event.customer.id }))
}
