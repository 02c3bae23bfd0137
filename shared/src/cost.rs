//! What AWS would bill for Aftercare's work, counted by running the real services on
//! in-memory ports: a metered store (DynamoDB's unit rules on the same items the DynamoDB
//! adapter writes), the scheduler's calls, the sends. Prices are list prices, in one place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::domain::{CustomerId, CustomerState, Event, EventId, TimelineEntry};
use crate::flow::FlowSet;
use crate::memory::MemoryStore;
use crate::ports::{Commit, CommitOutcome, PortError, Store, Versioned};
use crate::service::SendReport;
use crate::simulation::{Recipients, Simulation};

/// Counts calls and capacity units like `aws::DynamoStore::usage` (strongly consistent
/// reads: 1 RCU per 4 KB, 1 for a miss; transactional writes: 2 WCU per KB per item).
pub struct MeteredStore {
    inner: MemoryStore,
    /// Each customer's state item size as last committed, so a load need not deflate it again.
    state_sizes: std::sync::Mutex<std::collections::HashMap<CustomerId, usize>>,
    pub calls: AtomicU64,
    pub read_units: AtomicU64,
    pub write_units: AtomicU64,
}

impl Default for MeteredStore {
    /// Timeline and counter writes are metered, not kept: nothing reads them back here. States
    /// are lent to decisions, not copied (BENCHMARKS.md, simulator, item 97).
    fn default() -> Self {
        Self { inner: MemoryStore::without_timelines().without_counters().lending(), state_sizes: Default::default(), calls: AtomicU64::new(0), read_units: AtomicU64::new(0), write_units: AtomicU64::new(0) }
    }
}

fn units(bytes: usize, per: usize) -> u64 {
    bytes.div_ceil(per).max(1) as u64
}

impl MeteredStore {
    /// A state item's read, its size as last committed.
    fn read_state(&self, customer: &CustomerId, loaded: Option<&Versioned<CustomerState>>) {
        let known = self.state_sizes.lock().unwrap_or_else(|p| p.into_inner()).get(customer).copied();
        self.read(loaded.map_or(0, |s| known.unwrap_or_else(|| state_item_bytes(&s.value))));
    }
    fn read(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.read_units.fetch_add(units(bytes, 4096), Ordering::Relaxed);
    }
}

/// Attribute names and key overhead of an item beside its JSON payload.
pub const ITEM_OVERHEAD: usize = 40;
/// The state item as the DynamoDB adapter writes it: the JSON deflated, in `state_z1`.
fn state_item_bytes(state: &CustomerState) -> usize {
    state.to_deflated_json().map_or(0, |bytes| bytes.len()) + ITEM_OVERHEAD
}

/// A counter item: keys plus a dozen named numbers, well under 1 KB.
const COUNTER_ITEM_BYTES: usize = 300;

#[async_trait]
impl Store for MeteredStore {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError> {
        let loaded = self.inner.load(customer).await?;
        self.read_state(customer, loaded.as_ref());
        Ok(loaded)
    }
    /// Metered as `load` and `event_seen` are, from the inner store's lent state.
    async fn load_to_decide(&self, customer: &CustomerId, event: Option<&EventId>) -> Result<(Option<Versioned<CustomerState>>, bool), PortError> {
        let (loaded, seen) = self.inner.load_to_decide(customer, event).await?;
        self.read_state(customer, loaded.as_ref());
        if event.is_some() {
            self.read(0);
        }
        Ok((loaded, seen))
    }
    async fn hand_back(&self, customer: &CustomerId, state: CustomerState) {
        self.inner.hand_back(customer, state).await;
    }
    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError> {
        self.read(0);
        self.inner.event_seen(customer, event).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, PortError> {
        let size = |v: &dyn erased::Sized| v.json_len() + ITEM_OVERHEAD;
        let state_bytes = state_item_bytes(&commit.state);
        let customer = commit.customer_id.clone();
        let mut items = vec![state_bytes];
        if let Some(event) = &commit.event {
            items.push(size(event));
        }
        if !commit.timeline.is_empty() {
            items.push(size(&commit.timeline));
        }
        // The DynamoDB adapter updates one counter item per day and scope in the transaction.
        let counter_items: std::collections::BTreeSet<_> = commit.stats.iter().map(|c| (c.day, &c.scope)).collect();
        items.extend(std::iter::repeat_n(COUNTER_ITEM_BYTES, counter_items.len()));
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(items.iter().map(|b| 2 * units(*b, 1024)).sum(), Ordering::Relaxed);
        let outcome = self.inner.commit(commit).await?;
        if let CommitOutcome::Committed { .. } = outcome {
            self.state_sizes.lock().unwrap_or_else(|p| p.into_inner()).insert(customer, state_bytes);
        }
        Ok(outcome)
    }
    async fn append_timeline(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(units(serde_json::to_vec(entries).map(|v| v.len()).unwrap_or(0) + ITEM_OVERHEAD, 1024), Ordering::Relaxed);
        self.inner.append_timeline(customer, entries).await
    }
    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError> {
        self.inner.timeline(customer).await
    }
    async fn stats(&self, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<Vec<crate::stats::StatCount>, PortError> {
        self.inner.stats(from, to).await
    }
    async fn erase(&self, customer: &CustomerId) -> Result<(), PortError> {
        self.state_sizes.lock().unwrap_or_else(|p| p.into_inner()).remove(customer);
        self.inner.erase(customer).await
    }
}

mod erased {
    pub trait Sized {
        fn json_len(&self) -> usize;
    }
    impl<T: serde::Serialize> Sized for T {
        fn json_len(&self) -> usize {
            serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0)
        }
    }
}

/// AWS list prices (us-east-1, USD), the only place they are written down.
pub mod prices {
    pub const DYNAMODB_PER_MILLION_WRITE_UNITS: f64 = 0.625;
    pub const DYNAMODB_PER_MILLION_READ_UNITS: f64 = 0.125;
    pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
    /// arm64, per GB-second; at 128 MB a millisecond costs this × 0.125 / 1000.
    pub const LAMBDA_ARM_PER_GB_SECOND: f64 = 0.000_013_333_4;
    pub const SCHEDULER_PER_MILLION_INVOCATIONS: f64 = 1.00;
    pub const SES_PER_THOUSAND_EMAILS: f64 = 0.10;
    pub const EVENTBRIDGE_PER_MILLION_CUSTOM_EVENTS: f64 = 1.00;
}

/// One warm invocation of a function, as `tests/benches/invocation.rs` measured it against moto
/// (BENCHMARKS.md, "Lambda invocations"): the CPU the function used, and the AWS round trips it
/// waits for one after another (calls made together count once).
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    pub cpu_ms: f64,
    pub round_trips: u32,
}

/// An order from a new customer: [state ‖ dedupe marker], the receipt, [its schedules],
/// the commit, `Email Sent`.
pub const INGEST: Invocation = Invocation { cpu_ms: 4.1, round_trips: 5 };
/// A send step: the state, [the next schedule], the commit, the email, `Email Sent`.
pub const STEP: Invocation = Invocation { cpu_ms: 1.9, round_trips: 5 };
/// An SES event: [state ‖ dedupe marker], the commit.
pub const FEEDBACK: Invocation = Invocation { cpu_ms: 1.4, round_trips: 2 };
/// Assumed, not measured (no AWS here): a DynamoDB call takes single-digit milliseconds in
/// region, SES, Scheduler and EventBridge calls tens.
pub const ASSUMED_ROUND_TRIP_MS: f64 = 10.0;
/// Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB.
pub const VCPU_SHARE_AT_128_MB: f64 = 128.0 / 1769.0;

impl Invocation {
    /// Billed milliseconds at 128 MB: the CPU stretched to 128 MB's share of a vCPU (taken to
    /// be as fast as this machine's), plus the waits.
    pub fn billed_ms(self) -> f64 {
        (self.cpu_ms / VCPU_SHARE_AT_128_MB + f64::from(self.round_trips) * ASSUMED_ROUND_TRIP_MS).ceil()
    }
}

/// SES events per email that reach the feedback function: send, delivery, and the opens
/// and clicks of a typical store (about 40% open, 4% click).
pub const FEEDBACK_EVENTS_PER_EMAIL: f64 = 2.44;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Usage {
    pub storefront_events: f64,
    pub ingest_invocations: f64,
    pub step_invocations: f64,
    pub feedback_invocations: f64,
    pub dynamodb_calls: f64,
    pub read_units: f64,
    pub write_units: f64,
    pub scheduler_creates: f64,
    pub scheduler_deletes: f64,
    pub ses_sends: f64,
    pub eventbridge_events: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bill {
    pub usage: Usage,
    pub dynamodb: f64,
    pub lambda: f64,
    pub scheduler: f64,
    pub ses: f64,
    pub eventbridge: f64,
    pub total: f64,
}

impl Usage {
    pub fn scaled(&self, factor: f64) -> Usage {
        let s = |v: f64| v * factor;
        Usage {
            storefront_events: s(self.storefront_events),
            ingest_invocations: s(self.ingest_invocations),
            step_invocations: s(self.step_invocations),
            feedback_invocations: s(self.feedback_invocations),
            dynamodb_calls: s(self.dynamodb_calls),
            read_units: s(self.read_units),
            write_units: s(self.write_units),
            scheduler_creates: s(self.scheduler_creates),
            scheduler_deletes: s(self.scheduler_deletes),
            ses_sends: s(self.ses_sends),
            eventbridge_events: s(self.eventbridge_events),
        }
    }

    pub fn bill(&self) -> Bill {
        use prices::*;
        let ms_cost = LAMBDA_ARM_PER_GB_SECOND * 0.125 / 1000.0;
        let invocations = self.ingest_invocations + self.step_invocations + self.feedback_invocations;
        let lambda = invocations * LAMBDA_PER_MILLION_REQUESTS / 1e6
            + (self.ingest_invocations * INGEST.billed_ms() + self.step_invocations * STEP.billed_ms() + self.feedback_invocations * FEEDBACK.billed_ms()) * ms_cost;
        let dynamodb = self.write_units * DYNAMODB_PER_MILLION_WRITE_UNITS / 1e6 + self.read_units * DYNAMODB_PER_MILLION_READ_UNITS / 1e6;
        let scheduler = self.step_invocations * SCHEDULER_PER_MILLION_INVOCATIONS / 1e6;
        let ses = self.ses_sends * SES_PER_THOUSAND_EMAILS / 1e3;
        let eventbridge = self.eventbridge_events * EVENTBRIDGE_PER_MILLION_CUSTOM_EVENTS / 1e6;
        Bill { usage: self.clone(), dynamodb, lambda, scheduler, ses, eventbridge, total: dynamodb + lambda + scheduler + ses + eventbridge }
    }
}

/// One order's life through every default flow: a consenting customer orders two items
/// (one consumable, one with a guide), it ships and arrives; then 400 days pass.
pub fn one_order_journey() -> Vec<Value> {
    let customer = json!({"id": "cost-1", "email": "cost-1@example.jp", "first_name": "花子", "locale": "ja-JP", "timezone": "Asia/Tokyo", "marketing_consent": true, "birthday": "1990-05-04"});
    let items = json!([
        {"sku": "BEANS-HOUSE-200", "name": "ハウスブレンド 200g", "quantity": 2, "unit_price": "1800", "category": "beans", "replenish_after_days": 30},
        {"sku": "DRIPPER-CERAMIC", "name": "有田焼セラミックドリッパー", "quantity": 1, "unit_price": "3200", "category": "equipment", "guide_url": "https://shop.example.com/guides/dripper"}
    ]);
    let order = json!({"id": "A1", "number": "#1", "total": "6800", "currency": "JPY", "items": items});
    vec![
        json!({"id": "c1", "type": "order_placed", "occurred_at": "2026-11-20T10:15:00+09:00", "customer": customer, "order": order}),
        json!({"id": "c2", "type": "order_shipped", "occurred_at": "2026-11-21T15:00:00+09:00", "customer": {"id": "cost-1"}, "order": order, "shipment": {"carrier": "ヤマト運輸", "estimated_delivery": "2026-11-23"}}),
        json!({"id": "c3", "type": "order_delivered", "occurred_at": "2026-11-23T14:00:00+09:00", "customer": {"id": "cost-1"}, "order": order}),
    ]
}

/// Recipients as SES reports them to the feedback function: every email's `Email Sent`
/// event, then whatever the recipient model makes of it.
struct SesEvents {
    model: Box<dyn Recipients>,
    made: u64,
}

impl Recipients for SesEvents {
    fn react(&mut self, sent: &SendReport) -> Vec<Event> {
        self.made += 1;
        let envelope = json!({
            "id": format!("ses-sent-{}", self.made), "type": "email_sent",
            "occurred_at": (sent.at + chrono::Duration::seconds(1)).to_rfc3339(),
            "customer": {"id": sent.customer_id},
            "email": {"message_id": sent.message_id, "flow": sent.flow, "step": sent.step_id, "template": sent.template,
                      "enrollment": crate::engine::enrollment_tag(&sent.enrollment_id)},
        });
        let mut events: Vec<Event> = Event::parse(&envelope).ok().into_iter().collect();
        events.extend(self.model.react(sent));
        events
    }
}

/// Runs the events through the real services for 400 days of flows and counts what AWS would
/// bill. With `recipients`, SES's feedback (`Email Sent` for every email, then the model's
/// deliveries, opens, clicks…) runs through the feedback service too and is metered like
/// everything else; without, it is estimated at [`FEEDBACK_EVENTS_PER_EMAIL`].
pub async fn measure(flows: FlowSet, events: &[Value], until: chrono::DateTime<chrono::Utc>, recipients: Option<Box<dyn Recipients>>) -> anyhow::Result<Usage> {
    let events = events
        .iter()
        .enumerate()
        .map(|(i, value)| Event::parse(value).map_err(|error| crate::service::ServiceError::Invalid { index: Some(i), error }))
        .collect::<Result<Vec<_>, _>>()?;
    measure_each(flows, &events, until, recipients).await
}

/// As [`measure`], for events already parsed (the simulator's, read once from a file).
pub async fn measure_each<E: std::borrow::Borrow<Event>>(
    flows: FlowSet,
    events: impl IntoIterator<Item = E>,
    until: chrono::DateTime<chrono::Utc>,
    recipients: Option<Box<dyn Recipients>>,
) -> anyhow::Result<Usage> {
    let mut events = events.into_iter().peekable();
    let store = Arc::new(MeteredStore::default());
    let start = events.peek().map_or(until, |first| first.borrow().occurred_at_utc());
    let mut simulation = Simulation::with_store(flows, start, store.clone())?;
    let measured_feedback = recipients.is_some();
    if let Some(recipients) = recipients {
        simulation = simulation.with_recipients(Box::new(SesEvents { model: recipients, made: 0 }));
    }
    let (mut steps, mut storefront_events) = (0usize, 0usize);
    let mut reports = Vec::new();
    for event in events {
        storefront_events += 1;
        let before = simulation.scheduler.fired();
        reports.clear();
        simulation.ingest_event_into(event.borrow(), &mut reports).await?;
        steps += simulation.scheduler.fired() - before;
    }
    let before = simulation.scheduler.fired();
    // Counted, not kept: the ports count the sends.
    simulation.run_until_each(until, |_| {}).await?;
    steps += simulation.scheduler.fired() - before;
    let sends = simulation.mailer.count() as f64;
    let (feedback, estimated_calls, estimated_reads, estimated_writes) = if measured_feedback {
        (simulation.feedback_delivered() as f64, 0.0, 0.0, 0.0)
    } else {
        // Feedback events are stored like any other: one load, one dedupe check, one commit
        // each (state, dedupe marker and timeline, about 8 WCU), plus one report counter item (2 WCU).
        let feedback = sends * FEEDBACK_EVENTS_PER_EMAIL;
        (feedback, feedback * 3.0, feedback * 3.0, feedback * 10.0)
    };
    Ok(Usage {
        storefront_events: storefront_events as f64,
        ingest_invocations: storefront_events as f64,
        step_invocations: steps as f64,
        feedback_invocations: feedback,
        dynamodb_calls: store.calls.load(Ordering::Relaxed) as f64 + estimated_calls,
        read_units: store.read_units.load(Ordering::Relaxed) as f64 + estimated_reads,
        write_units: store.write_units.load(Ordering::Relaxed) as f64 + estimated_writes,
        scheduler_creates: simulation.scheduler.created.load(Ordering::Relaxed) as f64,
        scheduler_deletes: simulation.scheduler.deleted.load(Ordering::Relaxed) as f64,
        ses_sends: sends,
        eventbridge_events: sends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_order_through_every_default_flow_is_counted() {
        let until = crate::testing::at("2027-12-25T00:00:00Z");
        let usage = measure(crate::testing::repo_flows(), &one_order_journey(), until, None).await.unwrap();
        // confirmation, thank-you, shipping, usage guide, follow-up, review request + reminder,
        // cross-sell, replenishment, win-back, birthday, anniversary
        assert_eq!(usage.ses_sends, 12.0);
        assert_eq!(usage.ingest_invocations, 3.0);
        assert!(usage.step_invocations >= 10.0, "{usage:?}");
        assert!(usage.write_units > 0.0 && usage.read_units > 0.0);
        let bill = usage.scaled(1000.0).bill();
        assert!((bill.ses - 1.2).abs() < 1e-9, "SES: 12,000 emails at $0.10 per 1,000");
        assert!((bill.total - (bill.dynamodb + bill.lambda + bill.scheduler + bill.ses + bill.eventbridge)).abs() < 1e-12);
    }

    #[test]
    fn billed_duration_stretches_cpu_to_128_mb_and_adds_each_wait() {
        // 1 ms of CPU here is 1,769 / 128 = 13.8 ms at 128 MB; two waits of 10 ms; rounded up.
        assert_eq!(Invocation { cpu_ms: 1.0, round_trips: 2 }.billed_ms(), 34.0);
        assert_eq!(Invocation { cpu_ms: 0.0, round_trips: 0 }.billed_ms(), 0.0);
        // A million feedback invocations: $0.20 of requests plus their billed milliseconds.
        let bill = Usage { feedback_invocations: 1e6, ..Usage::default() }.bill();
        let expected = 0.20 + FEEDBACK.billed_ms() * 1e6 * prices::LAMBDA_ARM_PER_GB_SECOND * 0.125 / 1000.0;
        assert!((bill.lambda - expected).abs() < 1e-9, "{} against {expected}", bill.lambda);
    }

    /// Every email delivered 5 seconds after it was sent, never opened.
    struct Deliver;
    impl Recipients for Deliver {
        fn react(&mut self, sent: &SendReport) -> Vec<Event> {
            let envelope = json!({
                "id": format!("delivered-{}", sent.message_id.as_deref().unwrap_or_default()), "type": "email_delivered",
                "occurred_at": (sent.at + chrono::Duration::seconds(5)).to_rfc3339(), "customer": {"id": sent.customer_id},
                "email": {"message_id": sent.message_id, "flow": sent.flow, "step": sent.step_id, "template": sent.template,
                          "enrollment": crate::engine::enrollment_tag(&sent.enrollment_id)},
            });
            Event::parse(&envelope).into_iter().collect()
        }
    }

    #[tokio::test]
    async fn with_recipients_feedback_is_run_and_metered_instead_of_estimated() {
        let until = crate::testing::at("2027-12-25T00:00:00Z");
        let estimated = measure(crate::testing::repo_flows(), &one_order_journey(), until, None).await.unwrap();
        let measured = measure(crate::testing::repo_flows(), &one_order_journey(), until, Some(Box::new(Deliver))).await.unwrap();
        assert_eq!(measured.ses_sends, 12.0);
        // SES's `Email Sent` and the model's delivery, for each email.
        assert_eq!(measured.feedback_invocations, 24.0);
        // The storefront's and the steps' own store calls are the same either way; what feedback
        // adds is counted, not estimated: 3 calls per feedback event (load, dedupe, commit).
        let without_feedback = estimated.dynamodb_calls - estimated.feedback_invocations * 3.0;
        assert_eq!(measured.dynamodb_calls, without_feedback + 24.0 * 3.0, "{measured:?}");
        assert!(measured.write_units > estimated.write_units - estimated.feedback_invocations * 10.0, "{measured:?}");
    }
}
