//! `Email Sent` domain events on an EventBridge bus, for integrators.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::client::ClientOnFirstUse;
use super::classify;
use crate::ports::{EmailSent, PortError, Publisher};

pub const SOURCE: &str = "aftercare";

pub struct EventBridgePublisher {
    client: ClientOnFirstUse<Client>,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(sdk: &aws_config::SdkConfig, bus: String) -> Self {
        Self { client: ClientOnFirstUse::new(sdk, Client::new), bus }
    }
}

#[async_trait]
impl Publisher for EventBridgePublisher {
    async fn email_sent(&self, event: &EmailSent) -> Result<(), PortError> {
        let detail = serde_json::to_string(event).map_err(|e| PortError::Fatal(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder().source(SOURCE).detail_type("Email Sent").detail(detail).event_bus_name(&self.bus).build();
        let out = self.client.get().put_events().entries(entry).send().await.map_err(|e| classify("EventBridge PutEvents", &e))?;
        if out.failed_entry_count() > 0 {
            let reason = out.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(PortError::Retryable(format!("EventBridge refused Email Sent: {reason}")));
        }
        Ok(())
    }
}
