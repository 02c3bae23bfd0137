//! Support and compliance: a customer's timeline, export and erasure, and the reports.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use tracing::warn;

use super::{App, ServiceError};
use crate::domain::CustomerId;
use crate::engine::DueStep;
use crate::report::{Report, BEGINNING};

impl App {
    /// Everything Aftercare holds about a customer (GDPR / APPI access request), or `None`.
    pub async fn export_customer(&self, customer: &CustomerId) -> Result<Option<Value>, ServiceError> {
        let Some(state) = self.ports.store.load(customer).await? else { return Ok(None) };
        let timeline = self.ports.store.timeline(customer).await?;
        Ok(Some(json!({
            "customer_id": customer.as_str(),
            "exported_at": self.ports.clock.now(),
            "state": state.value,
            "timeline": timeline,
        })))
    }

    /// Forgets a customer: pending schedules, then state, events and timeline. Report
    /// counters keep their counts (they name no one). Returns whether the customer existed;
    /// erasing again is a success.
    pub async fn erase_customer(&self, customer: &CustomerId) -> Result<bool, ServiceError> {
        let loaded = self.ports.store.load(customer).await?;
        if let Some(state) = &loaded {
            for enrollment in state.value.enrollments.iter().filter(|e| e.due_at.is_some()) {
                let due = DueStep::of(customer, enrollment);
                // Must succeed: a schedule left behind would carry the customer id.
                self.ports.scheduler.delete(&due.schedule_name()).await?;
            }
        }
        self.ports.store.erase(customer).await?;
        if loaded.is_some() {
            warn!(customer_id = %customer, "customer erased");
        }
        Ok(loaded.is_some())
    }

    /// The report for `from..=to` (UTC days).
    pub async fn report(&self, from: NaiveDate, to: NaiveDate) -> Result<Report, ServiceError> {
        let rows = self.ports.store.stats(BEGINNING.min(from), to).await?;
        Ok(Report::build(&self.flows, &rows, from, to))
    }

    /// The default report range: the 30 days up to today.
    pub fn default_report_range(now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        let to = now.date_naive();
        (to - chrono::Duration::days(29), to)
    }
}
