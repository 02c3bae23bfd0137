//! Feedback Lambda: SES events from EventBridge (`source: aws.ses`) → timeline events.

pub mod handler;
