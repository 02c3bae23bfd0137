//! One-time EventBridge Scheduler schedules, one per due step: `at(...)` in UTC,
//! deleted after completion, with a retry policy and an SQS dead-letter queue.

use async_trait::async_trait;
use aws_sdk_scheduler::types::{ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target};
use aws_sdk_scheduler::Client;
use chrono::{DateTime, Duration, DurationRound, Utc};

use super::client::ClientOnFirstUse;
use super::{classify, Settings};
use crate::ports::{PortError, ScheduledStep, Scheduler};

pub struct EventBridgeScheduler {
    client: ClientOnFirstUse<Client>,
    group: String,
    target_arn: String,
    role_arn: String,
    dead_letter_arn: String,
}

/// `at()` takes whole seconds: round up, so a step never fires before it is due.
pub fn at_expression(at: DateTime<Utc>) -> String {
    let floor = at.duration_trunc(Duration::seconds(1)).unwrap_or(at);
    let ceil = if floor < at { floor + Duration::seconds(1) } else { floor };
    format!("at({})", ceil.format("%Y-%m-%dT%H:%M:%S"))
}

impl EventBridgeScheduler {
    pub fn new(sdk: &aws_config::SdkConfig, settings: &Settings) -> Self {
        Self {
            client: ClientOnFirstUse::new(sdk, Client::new),
            group: settings.schedule_group.clone(),
            target_arn: settings.step_function_arn.clone(),
            role_arn: settings.scheduler_role_arn.clone(),
            dead_letter_arn: settings.dead_letter_queue_arn.clone(),
        }
    }
}

fn build_error(e: aws_sdk_scheduler::error::BuildError) -> PortError {
    PortError::Fatal(format!("Scheduler request: {e}"))
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn create(&self, step: &ScheduledStep) -> Result<(), PortError> {
        let input = serde_json::to_string(&step.due).map_err(|e| PortError::Fatal(e.to_string()))?;
        let target = Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            .retry_policy(RetryPolicy::builder().maximum_event_age_in_seconds(86_400).maximum_retry_attempts(20).build())
            .dead_letter_config(DeadLetterConfig::builder().arn(&self.dead_letter_arn).build())
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .get()
            .create_schedule()
            .name(&*step.name)
            .group_name(&self.group)
            .schedule_expression(at_expression(step.at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(build_error)?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Names are deterministic: it exists because an earlier attempt created it.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Ok(()),
            Err(e) => Err(classify("create schedule", &e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        match self.client.get().delete_schedule().name(name).group_name(&self.group).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(classify("delete schedule", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_rounds_up_to_the_second() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(at_expression(t("2026-11-20T02:15:00Z")), "at(2026-11-20T02:15:00)");
        assert_eq!(at_expression(t("2026-11-20T02:15:00.200Z")), "at(2026-11-20T02:15:01)");
    }
}
