//! Step Lambda: the EventBridge Scheduler target. Runs one due step of one enrollment.

pub mod handler;
