//! In-memory adapters: the twins of the real ones, for tests and the simulator.

mod schedules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
// Fx, not SipHash: these maps hold the simulator's and tests' own data, never a request's
// keys on a server, so hash flooding is not a concern and hashing was ~5 % of an event.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::domain::{CustomerId, CustomerState, EventId, TimelineEntry};
use crate::stats::{Metric, StatCount, StatScope};
use schedules::Schedules;
use crate::ports::{Clock, Commit, CommitOutcome, EmailSent, Mailer, OutgoingEmail, PortError, Publisher, ScheduledStep, Scheduler, Store, Versioned};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge every later call.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct CustomerRecord {
    state: Option<Versioned<CustomerState>>,
    /// The version of the state while a lending store has it out to a decision.
    lent: Option<u64>,
    /// Event ids already applied (hashed: a long-lived customer has many).
    seen: HashSet<EventId>,
    timeline: Vec<TimelineEntry>,
}

type StatsTotals = HashMap<(NaiveDate, StatScope, Metric), i64>;

#[derive(Default)]
pub struct MemoryStore {
    customers: Mutex<HashMap<CustomerId, CustomerRecord>>,
    stats: Mutex<StatsTotals>,
    /// The simulator's store: timelines are not kept (it prints sends and reports from the
    /// counters), since at a year of a store they are most of its memory.
    without_timelines: bool,
    /// Nor counters, when no report will read them: a year of them is a table of tens of
    /// thousands of (day, email, metric) keys, each commit adding to several (BENCHMARKS.md,
    /// simulator, item 95).
    without_counters: bool,
    /// States go out to decisions and come back, instead of being copied (`lending`).
    lending: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// A store that keeps no timeline lines; `timeline` answers with none.
    pub fn without_timelines() -> Self {
        Self { without_timelines: true, ..Self::default() }
    }
    /// This store, keeping no counters; `stats` answers with none.
    pub fn without_counters(self) -> Self {
        Self { without_counters: true, ..self }
    }
    /// This store, for one decision at a time (the simulator): `load_to_decide` hands over the
    /// state itself, so a decision changes it in place instead of first copying each part it
    /// changes from the stored one, and the commit or `hand_back` puts it back (BENCHMARKS.md,
    /// simulator, item 97). While a state is out, `load` finds none and another
    /// `load_to_decide` of it is refused: a decision that neither committed nor handed back
    /// its state fails the next one loudly instead of starting the customer afresh.
    pub fn lending(self) -> Self {
        Self { lending: true, ..self }
    }
    /// Drops every customer's state, seen events and timeline; the counters stay.
    pub fn forget_customers(&self) {
        lock(&self.customers).clear();
    }
    pub fn customer_ids(&self) -> Vec<CustomerId> {
        lock(&self.customers).keys().cloned().collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError> {
        Ok(lock(&self.customers).get(customer).and_then(|r| r.state.clone()))
    }

    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError> {
        Ok(lock(&self.customers).get(customer).is_some_and(|r| r.seen.contains(event)))
    }

    /// One lookup for both: an open's three lookups of a customer (this pair and the commit)
    /// were most of its cache misses.
    async fn load_for_event(&self, customer: &CustomerId, event: &EventId) -> Result<(Option<Versioned<CustomerState>>, bool), PortError> {
        Ok(lock(&self.customers).get(customer).map_or((None, false), |r| (r.state.clone(), r.seen.contains(event))))
    }

    async fn load_to_decide(&self, customer: &CustomerId, event: Option<&EventId>) -> Result<(Option<Versioned<CustomerState>>, bool), PortError> {
        let mut customers = lock(&self.customers);
        let Some(record) = customers.get_mut(customer) else { return Ok((None, false)) };
        let seen = event.is_some_and(|event| record.seen.contains(event));
        if !self.lending {
            return Ok((record.state.clone(), seen));
        }
        if record.lent.is_some() {
            return Err(PortError::Fatal(format!("customer {customer}: the state is still out to a decision that neither committed nor handed it back")));
        }
        let state = record.state.take();
        record.lent = state.as_ref().map(|s| s.version);
        Ok((state, seen))
    }

    async fn hand_back(&self, customer: &CustomerId, state: CustomerState) {
        if let Some(record) = lock(&self.customers).get_mut(customer) {
            if let Some(version) = record.lent.take() {
                record.state = Some(Versioned { value: state, version });
            }
        }
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, PortError> {
        let mut customers = lock(&self.customers);
        let record = customers.entry(commit.customer_id.clone()).or_default();
        let current = record.state.as_ref().map(|s| s.version).or(record.lent);
        if current != commit.expected_version {
            return Ok(CommitOutcome::VersionConflict);
        }
        if let Some(event) = &commit.event {
            if record.seen.contains(&event.id) {
                return Ok(CommitOutcome::DuplicateEvent);
            }
            record.seen.insert(event.id.clone());
        }
        let version = current.unwrap_or(0) + 1;
        record.state = Some(Versioned { value: commit.state, version });
        record.lent = None;
        if !self.without_timelines {
            record.timeline.extend(commit.timeline);
        }
        if self.without_counters {
            return Ok(CommitOutcome::Committed { version });
        }
        let mut stats = lock(&self.stats);
        for count in commit.stats {
            *stats.entry((count.day, count.scope, count.metric)).or_default() += count.value;
        }
        Ok(CommitOutcome::Committed { version })
    }

    async fn append_timeline(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError> {
        if self.without_timelines {
            return Ok(());
        }
        lock(&self.customers).entry(customer.clone()).or_default().timeline.extend_from_slice(entries);
        Ok(())
    }

    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError> {
        let mut entries = lock(&self.customers).get(customer).map(|r| r.timeline.clone()).unwrap_or_default();
        entries.sort_by_key(|e| e.at);
        Ok(entries)
    }

    async fn stats(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StatCount>, PortError> {
        let stats = lock(&self.stats);
        let rows = stats
            .iter()
            .filter(|((day, _, _), _)| (from..=to).contains(day))
            .map(|((day, scope, metric), value)| StatCount::new(*day, scope.clone(), metric.clone(), *value));
        Ok(crate::stats::merge(rows))
    }

    async fn erase(&self, customer: &CustomerId) -> Result<(), PortError> {
        lock(&self.customers).remove(customer);
        Ok(())
    }
}

/// Pending schedules by name; the simulator and tests fire them with `take_next_due`.
#[derive(Default)]
pub struct MemoryScheduler {
    schedules: Mutex<Schedules>,
    pub created: AtomicU64,
    pub deleted: AtomicU64,
    fired: AtomicU64,
}

impl MemoryScheduler {
    pub fn new() -> Self {
        Self::default()
    }
    /// How many schedules `take_next_due` handed out (step invocations).
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::Relaxed) as usize
    }
    pub fn pending(&self) -> Vec<ScheduledStep> {
        let schedules = lock(&self.schedules);
        let mut all: Vec<_> = schedules.iter().map(|p| ScheduledStep { name: p.name.clone(), at: p.at, due: p.due.clone() }).collect();
        all.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.name.cmp(&b.name)));
        all
    }
    /// Drops every pending schedule (the counts of calls stay).
    pub fn forget_pending(&self) {
        *lock(&self.schedules) = Schedules::default();
    }
    /// When the earliest pending schedule is due.
    pub fn next_due_at(&self) -> Option<DateTime<Utc>> {
        lock(&self.schedules).soonest().map(|next| next.at)
    }
    /// The earliest schedule due at or before `until`, removed from the pending set.
    pub fn take_next_due(&self, until: DateTime<Utc>) -> Option<ScheduledStep> {
        let mut schedules = lock(&self.schedules);
        schedules.soonest().filter(|next| next.at <= until)?;
        let next = schedules.take_soonest()?;
        self.fired.fetch_add(1, Ordering::Relaxed);
        Some(ScheduledStep { name: next.name, at: next.at, due: next.due })
    }
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn create(&self, step: &ScheduledStep) -> Result<(), PortError> {
        self.created.fetch_add(1, Ordering::Relaxed);
        lock(&self.schedules).add(&step.name, step.at, &step.due);
        Ok(())
    }
    async fn delete(&self, name: &str) -> Result<(), PortError> {
        self.deleted.fetch_add(1, Ordering::Relaxed);
        lock(&self.schedules).remove(name);
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<(String, OutgoingEmail<'static>)>>,
    /// Count only, keep nothing (the simulator sends hundreds of thousands).
    discard: bool,
    count: AtomicU64,
    /// When set, every send fails with this message (to test failure paths).
    pub fail_with: Mutex<Option<String>>,
}

impl MemoryMailer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn discarding() -> Self {
        Self { discard: true, ..Self::default() }
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    pub fn sent(&self) -> Vec<(String, OutgoingEmail<'static>)> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<String, PortError> {
        if let Some(message) = lock(&self.fail_with).clone() {
            return Err(PortError::Retryable(message));
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("mem-{n}");
        if !self.discard {
            lock(&self.sent).push((id.clone(), email.to_owned_email()));
        }
        Ok(id)
    }
}

#[derive(Default)]
pub struct MemoryPublisher {
    published: Mutex<Vec<EmailSent>>,
    discard: bool,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        Self::default()
    }
    /// Accepts and forgets every event (the simulator, which never reads them back).
    pub fn discarding() -> Self {
        Self { discard: true, ..Self::default() }
    }
    pub fn published(&self) -> Vec<EmailSent> {
        lock(&self.published).clone()
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn email_sent(&self, event: &EmailSent) -> Result<(), PortError> {
        if !self.discard {
            lock(&self.published).push(event.clone());
        }
        Ok(())
    }
}

/// A clock the caller moves: the simulator's virtual time, a test's fixed instant.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        *lock(&self.0) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DueStep;
    use crate::testing::{at, order_placed, repo_flows};

    fn step(name: &str, at_: &str) -> ScheduledStep {
        let due = DueStep { customer_id: CustomerId::parse("c1").unwrap(), enrollment_id: "f:k".into(), step_id: name.into(), generation: 1 };
        ScheduledStep { name: name.into(), at: at(at_), due }
    }

    fn drain(scheduler: &MemoryScheduler, until: &str) -> Vec<(String, DateTime<Utc>)> {
        std::iter::from_fn(|| scheduler.take_next_due(at(until)).map(|s| (s.name.to_string(), s.at))).collect()
    }

    #[tokio::test]
    async fn schedules_fire_by_time_then_name_once_each_and_deleted_ones_never() {
        let scheduler = MemoryScheduler::new();
        for s in [step("b", "2026-11-20T02:00:00Z"), step("a", "2026-11-20T02:00:00Z"), step("c", "2026-11-20T01:00:00Z"), step("c", "2026-11-20T09:00:00Z")] {
            scheduler.create(&s).await.unwrap();
        }
        scheduler.create(&step("gone", "2026-11-20T00:30:00Z")).await.unwrap();
        scheduler.delete("gone").await.unwrap();
        assert_eq!(scheduler.pending().len(), 3, "a second create of a pending name changes nothing");
        assert_eq!(scheduler.next_due_at(), Some(at("2026-11-20T01:00:00Z")), "the deleted one is not next");
        assert_eq!(drain(&scheduler, "2026-11-20T01:30:00Z"), [("c".to_owned(), at("2026-11-20T01:00:00Z"))]);
        // Deleted, then made again at another time: it fires once, at the new time.
        scheduler.delete("b").await.unwrap();
        scheduler.create(&step("b", "2026-11-20T03:00:00Z")).await.unwrap();
        assert_eq!(drain(&scheduler, "2026-11-21T00:00:00Z"), [("a".to_owned(), at("2026-11-20T02:00:00Z")), ("b".to_owned(), at("2026-11-20T03:00:00Z"))]);
        assert_eq!((scheduler.next_due_at(), scheduler.fired()), (None, 3));
    }

    proptest::proptest! {
        /// Against a model (a sorted set of (time, name)): the same steps fire in the same order,
        /// whatever the creates and deletes, and names sharing long prefixes order as text.
        #[test]
        /// Times a millisecond, a second, hours and years apart exercise every bucket, and
        /// creates after `until` has passed them the entries made after their time.
        fn the_queue_fires_what_a_sorted_set_would(ops in proptest::collection::vec((0u8..3, 0usize..6, 0i64..4, 0usize..5), 0..60)) {
            let names = ["a", "ab", "abcdefghijklmnopq", "abcdefghijklmnopr", "abcdefghijklmnop", "b"];
            let scheduler = MemoryScheduler::new();
            let mut model: std::collections::BTreeMap<String, DateTime<Utc>> = Default::default();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let start = at("2026-11-20T00:00:00Z");
            let mut fired = Vec::new();
            let mut expected = Vec::new();
            let offsets = [chrono::Duration::zero(), chrono::Duration::milliseconds(1), chrono::Duration::seconds(1), chrono::Duration::days(13), chrono::Duration::days(3 * 365)];
            for (op, name, hours, offset) in ops {
                let name = names[name];
                let when = start + chrono::Duration::hours(hours) + offsets[offset];
                match op {
                    0 => {
                        runtime.block_on(scheduler.create(&ScheduledStep { at: when, ..step(name, "2026-11-20T00:00:00Z") })).unwrap();
                        model.entry(name.to_owned()).or_insert(when);
                    }
                    1 => {
                        runtime.block_on(scheduler.delete(name)).unwrap();
                        model.remove(name);
                    }
                    _ => {
                        let until = when;
                        fired.extend(std::iter::from_fn(|| scheduler.take_next_due(until).map(|s| (s.at, s.name.to_string()))));
                        let mut due: Vec<_> = model.iter().filter(|(_, at)| **at <= until).map(|(n, at)| (*at, n.clone())).collect();
                        due.sort();
                        for (_, n) in &due {
                            model.remove(n);
                        }
                        expected.extend(due);
                    }
                }
                let mut pending: Vec<_> = model.iter().map(|(n, at)| (*at, n.clone())).collect();
                pending.sort();
                proptest::prop_assert_eq!(scheduler.next_due_at(), pending.first().map(|(at, _)| *at));
            }
            proptest::prop_assert_eq!(fired, expected);
        }
    }

    /// A lending store gives a state to one decision at a time, and has it back from the commit
    /// or `hand_back`; a state still out is refused to the next decision, not started afresh.
    #[tokio::test]
    async fn a_lending_store_lends_each_state_to_one_decision_at_a_time() {
        let store = MemoryStore::new().lending();
        let customer = CustomerId::parse("c1").unwrap();
        let now = at("2026-11-20T01:15:00Z");
        let commit = |expected_version, orders_count| {
            let mut state = CustomerState::new(customer.clone(), now);
            state.profile_mut().orders_count = orders_count;
            Commit { customer_id: customer.clone(), expected_version, state, event: None, timeline: vec![], stats: vec![] }
        };
        assert_eq!(store.load_to_decide(&customer, None).await.unwrap(), (None, false), "nothing to lend yet");
        assert_eq!(store.commit(commit(None, 1)).await.unwrap(), CommitOutcome::Committed { version: 1 });

        let (lent, _) = store.load_to_decide(&customer, None).await.unwrap();
        assert_eq!(lent.as_ref().map(|s| (s.version, s.value.profile.orders_count)), Some((1, 1)));
        assert_eq!(store.load(&customer).await.unwrap(), None, "while out, the state is not in the store");
        let refused = store.load_to_decide(&customer, None).await.unwrap_err().to_string();
        assert!(refused.contains("customer c1") && refused.contains("still out"), "{refused}");
        store.hand_back(&customer, lent.unwrap().value).await;
        assert_eq!(store.load(&customer).await.unwrap().map(|s| s.version), Some(1), "handed back at its version");

        let (lent, _) = store.load_to_decide(&customer, None).await.unwrap();
        assert_eq!(store.commit(commit(lent.map(|s| s.version), 2)).await.unwrap(), CommitOutcome::Committed { version: 2 });
        let (lent, _) = store.load_to_decide(&customer, None).await.unwrap();
        assert_eq!(lent.map(|s| (s.version, s.value.profile.orders_count)), Some((2, 2)), "the commit brought the decided state back");
        // A store that copies gives the same and keeps its own.
        let copying = MemoryStore::new();
        copying.commit(commit(None, 1)).await.unwrap();
        assert!(copying.load_to_decide(&customer, None).await.unwrap().0.is_some());
        assert!(copying.load_to_decide(&customer, None).await.unwrap().0.is_some(), "a copying store lends nothing");
    }

    /// The simulator's ports keep state and counters but no timelines or published events;
    /// what it prints (sends) and reports (counters) is the same.
    #[tokio::test]
    async fn the_simulators_store_keeps_state_and_counters_but_no_timeline() {
        let simulation = crate::simulation::Simulation::new(repo_flows(), at("2026-11-20T00:00:00Z")).unwrap();
        let sends = simulation.ingest(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).await.unwrap();
        assert!(sends.iter().any(|s| s.status == "sent"), "the receipt is sent: {sends:?}");
        let customer = CustomerId::parse("c1").unwrap();
        assert_eq!(simulation.store.load(&customer).await.unwrap().unwrap().value.profile.orders_count, 1);
        assert!(simulation.store.event_seen(&customer, &EventId::parse("e1").unwrap()).await.unwrap());
        assert!(simulation.store.timeline(&customer).await.unwrap().is_empty());
        let day = at("2026-11-20T01:15:00Z").date_naive();
        assert!(!simulation.store.stats(day, day).await.unwrap().is_empty(), "counters are kept");

        let keeping = MemoryStore::new();
        let entry = TimelineEntry::new(at("2026-11-20T01:15:00Z"), crate::domain::TimelineKind::Event);
        keeping.append_timeline(&customer, std::slice::from_ref(&entry)).await.unwrap();
        assert_eq!(keeping.timeline(&customer).await.unwrap().len(), 1);
        let discarding = MemoryStore::without_timelines();
        discarding.append_timeline(&customer, &[entry]).await.unwrap();
        assert!(discarding.timeline(&customer).await.unwrap().is_empty());
    }
}
