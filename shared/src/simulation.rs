//! The virtual-clock driver behind `aftercare simulate` and the scenario tests: the real
//! services on in-memory ports, every due step fired at its own time. Optionally a model of
//! recipients answers each simulated email with SES-like feedback (delivered, opened, …),
//! delivered at its own time too, so reports over a simulation have funnels to show.
//! Only what the simulator prints and reports is kept: sends' subjects (not bodies), state
//! and counters (not timelines, not published `Email Sent` events).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::Event;
use crate::flow::FlowSet;
use crate::memory::{ManualClock, MemoryMailer, MemoryPublisher, MemoryScheduler, MemoryStore};
use crate::service::{App, Ports, SendReport, ServiceError};

/// What recipients do with an email: feedback event envelopes (`email_delivered`,
/// `email_opened`, …, with `email.message_id` / `flow` / `step` / `template`), each at its time.
pub trait Recipients: Send {
    fn react(&mut self, sent: &SendReport) -> Vec<Event>;
}

pub struct Simulation {
    pub app: App,
    pub store: Arc<MemoryStore>,
    pub scheduler: Arc<MemoryScheduler>,
    pub mailer: Arc<MemoryMailer>,
    clock: Arc<ManualClock>,
    recipients: Option<Mutex<Box<dyn Recipients>>>,
    /// Feedback waiting for its time, in time order (ties: the order it was made in).
    feedback: Mutex<BTreeMap<(DateTime<Utc>, u64), Event>>,
    feedback_made: AtomicU64,
    feedback_delivered: AtomicU64,
    /// The turn of the last decision made in turn (`ingest_event_in_turn`, `run_until_in_turn`).
    last_turn: Option<Turn>,
    /// One list for every decision made in turn, reused.
    reports_in_turn: Vec<SendReport>,
}

/// Where a decision falls in the one order a simulation of all customers together makes them
/// (FLOWS.md §4): by time; at the same time due steps before events, steps by schedule name,
/// events in input order.
///
/// Customers never touch each other's state, so a store's customers can be simulated a group
/// at a time, each group's states staying in the cache, and their decisions put back in that
/// one order by their turns (BENCHMARKS.md, simulator, item 101). One catch: a step due before
/// the decision that scheduled it (made after its time) still comes after that decision, and
/// before anything else: in the order of turns it takes the place of the decision before it,
/// `after` it. A group's turns therefore only grow, and the turns of all groups sorted
/// together are the order of one simulation of them all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Turn {
    place: Place,
    after: u32,
}

impl Turn {
    /// The time of the decision's place.
    pub fn at(&self) -> DateTime<Utc> {
        self.place.at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    at: DateTime<Utc>,
    of: PlaceOf,
}

/// Declared in this order: at the same time, steps come before events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PlaceOf {
    /// By schedule name, as the scheduler fires them.
    Step(Arc<str>),
    /// In input order: by a number that grows with it, such as the event's line number or
    /// its index in time order.
    Event(u64),
}

impl Simulation {
    pub fn new(flows: FlowSet, start: DateTime<Utc>) -> anyhow::Result<Simulation> {
        Simulation::with_memory_store(flows, start, MemoryStore::without_timelines())
    }

    /// A simulation whose sends are all that is wanted: no report will be asked of it, so its
    /// store keeps no counters (`App::report` then finds none).
    pub fn sends_only(flows: FlowSet, start: DateTime<Utc>) -> anyhow::Result<Simulation> {
        Simulation::with_memory_store(flows, start, MemoryStore::without_timelines().without_counters())
    }

    /// On its own memory store, which lends its states to decisions: a simulation makes one
    /// at a time, and a port error ends it (BENCHMARKS.md, simulator, item 97).
    fn with_memory_store(flows: FlowSet, start: DateTime<Utc>, store: MemoryStore) -> anyhow::Result<Simulation> {
        let store = Arc::new(store.lending());
        let mut simulation = Simulation::with_store(flows, start, store.clone())?;
        simulation.store = store;
        Ok(simulation)
    }

    /// On another store (the cost model's metered one); `store` is then a fresh, unused one.
    pub fn with_store(flows: FlowSet, start: DateTime<Utc>, store: Arc<dyn crate::ports::Store>) -> anyhow::Result<Simulation> {
        let scheduler = Arc::new(MemoryScheduler::new());
        let mailer = Arc::new(MemoryMailer::discarding());
        let clock = Arc::new(ManualClock::new(start));
        let ports = Ports { store, scheduler: scheduler.clone(), mailer: mailer.clone(), publisher: Arc::new(MemoryPublisher::discarding()), clock: clock.clone() };
        Ok(Simulation {
            app: App::new(flows, ports)?.subjects_only(),
            store: Arc::new(MemoryStore::new()),
            scheduler,
            mailer,
            clock,
            recipients: None,
            feedback: Mutex::new(BTreeMap::new()),
            feedback_made: AtomicU64::new(0),
            feedback_delivered: AtomicU64::new(0),
            last_turn: None,
            reports_in_turn: Vec::new(),
        })
    }

    /// Every email sent from now on gets the recipients' feedback.
    pub fn with_recipients(mut self, recipients: Box<dyn Recipients>) -> Simulation {
        self.recipients = Some(Mutex::new(recipients));
        self
    }

    /// Fires what is due up to the event's time, then ingests the event at that time.
    /// Sends and skips come back in time order.
    pub async fn ingest(&self, value: &Value) -> Result<Vec<SendReport>, ServiceError> {
        let event = Event::parse(value).map_err(|error| ServiceError::Invalid { index: None, error })?;
        self.ingest_event(&event).await
    }

    /// As [`Simulation::ingest`], for an event already parsed.
    pub async fn ingest_event(&self, event: &Event) -> Result<Vec<SendReport>, ServiceError> {
        let mut reports = Vec::new();
        self.ingest_event_into(event, &mut reports).await?;
        Ok(reports)
    }

    /// As [`Simulation::ingest_event`], adding the sends and skips to `reports`: a caller
    /// running a whole store reuses one list instead of growing a new one per event
    /// (BENCHMARKS.md, item 94).
    pub async fn ingest_event_into(&self, event: &Event, reports: &mut Vec<SendReport>) -> Result<(), ServiceError> {
        let at = event.occurred_at_utc();
        while self.run_next(at, reports).await? {}
        self.clock.set(at.max(self.clock_now()));
        let before = reports.len();
        self.app.ingest_event(event, reports).await?;
        self.answer(&reports[before..]);
        Ok(())
    }

    /// Runs every step and feedback due at or before `until`, each at its own time.
    pub async fn run_until(&self, until: DateTime<Utc>) -> Result<Vec<SendReport>, ServiceError> {
        let mut reports = Vec::new();
        while self.run_next(until, &mut reports).await? {}
        Ok(reports)
    }

    /// As [`Simulation::run_until`], handing the sends and skips to `each` in batches (in time
    /// order) instead of keeping them all: after a year of a store's last event come tens of
    /// thousands, and a list of them all was fresh memory, page-faulted in (BENCHMARKS.md, item 91).
    pub async fn run_until_each(&self, until: DateTime<Utc>, mut each: impl FnMut(&[SendReport])) -> Result<(), ServiceError> {
        const BATCH: usize = 256;
        let mut reports = Vec::with_capacity(BATCH);
        while self.run_next(until, &mut reports).await? {
            if reports.len() >= BATCH {
                each(&reports);
                reports.clear();
            }
        }
        each(&reports);
        Ok(())
    }

    /// Runs the next step or feedback due at or before `until`, adding what it sent and skipped
    /// to `reports`; false when none is due.
    async fn run_next(&self, until: DateTime<Utc>, reports: &mut Vec<SendReport>) -> Result<bool, ServiceError> {
        let next_feedback = self.lock_feedback().first_key_value().map(|(key, _)| *key).filter(|(at, _)| *at <= until);
        let next_step = self.scheduler.next_due_at().filter(|at| *at <= until);
        let before = reports.len();
        match (next_step, next_feedback) {
            (Some(step_at), Some((feedback_at, _))) if feedback_at < step_at => self.deliver_feedback(reports).await?,
            (Some(_), _) => {
                let Some(step) = self.scheduler.take_next_due(until) else { return Ok(false) };
                self.clock.set(step.at);
                self.app.run_step(&step.due, reports).await?;
            }
            (None, Some(_)) => self.deliver_feedback(reports).await?,
            (None, None) => return Ok(false),
        }
        self.answer(&reports[before..]);
        Ok(true)
    }

    async fn deliver_feedback(&self, reports: &mut Vec<SendReport>) -> Result<(), ServiceError> {
        let Some(((at, _), event)) = self.lock_feedback().pop_first() else { return Ok(()) };
        self.clock.set(at.max(self.clock_now()));
        let mut found = Vec::new();
        self.app.process_feedback(&event, &mut found).await?;
        self.feedback_delivered.fetch_add(1, Ordering::Relaxed);
        reports.extend(found);
        Ok(())
    }

    /// Queues the recipients' feedback on the emails just sent.
    fn answer(&self, reports: &[SendReport]) {
        let Some(recipients) = &self.recipients else { return };
        let mut recipients = recipients.lock().unwrap_or_else(|p| p.into_inner());
        let mut queue = self.lock_feedback();
        for sent in reports.iter().filter(|r| r.status == "sent") {
            for event in recipients.react(sent) {
                let n = self.feedback_made.fetch_add(1, Ordering::Relaxed);
                queue.insert((event.occurred_at_utc(), n), event);
            }
        }
    }

    /// As [`Simulation::ingest_event_into`], handing each decision's sends and skips to `each`
    /// with its [`Turn`]: the steps due up to the event's time, then the event, ranked among
    /// events at the same time by `index` (a number that grows with input order). The
    /// recipients' feedback is not modelled in turns (it has no place in the one order: the
    /// engagement model draws for every customer from one sequence).
    /// An error comes with the turn of the decision that failed.
    pub async fn ingest_event_in_turn(&mut self, event: &Event, index: u64, each: &mut impl FnMut(&Turn, &[SendReport])) -> Result<(), (Turn, ServiceError)> {
        let at = event.occurred_at_utc();
        self.run_steps_in_turn(at, each).await?;
        let turn = self.next_turn(Place { at, of: PlaceOf::Event(index) });
        self.clock.set(at.max(self.clock_now()));
        let mut reports = std::mem::take(&mut self.reports_in_turn);
        reports.clear();
        match self.app.ingest_event(event, &mut reports).await {
            Ok(_) => each(&turn, &reports),
            Err(e) => return Err((turn, e)),
        }
        self.reports_in_turn = reports;
        Ok(())
    }

    /// As [`Simulation::run_until_each`], each decision's sends and skips with its turn.
    pub async fn run_until_in_turn(&mut self, until: DateTime<Utc>, each: &mut impl FnMut(&Turn, &[SendReport])) -> Result<(), (Turn, ServiceError)> {
        self.run_steps_in_turn(until, each).await
    }

    async fn run_steps_in_turn(&mut self, until: DateTime<Utc>, each: &mut impl FnMut(&Turn, &[SendReport])) -> Result<(), (Turn, ServiceError)> {
        let mut reports = std::mem::take(&mut self.reports_in_turn);
        while let Some(step) = self.scheduler.take_next_due(until) {
            let turn = self.next_turn(Place { at: step.at, of: PlaceOf::Step(step.name) });
            self.clock.set(step.at);
            reports.clear();
            match self.app.run_step(&step.due, &mut reports).await {
                Ok(_) => each(&turn, &reports),
                Err(e) => return Err((turn, e)),
            }
        }
        self.reports_in_turn = reports;
        Ok(())
    }

    /// The turn of a decision at `place`: there, or right after the last one if that was later.
    fn next_turn(&mut self, place: Place) -> Turn {
        let turn = match self.last_turn.take() {
            Some(last) if place <= last.place => Turn { after: last.after + 1, place: last.place },
            _ => Turn { place, after: 0 },
        };
        self.last_turn = Some(turn.clone());
        turn
    }

    /// Starts over at `start`, for other customers: the states, pending schedules and turns
    /// go; the counters stay, so a report covers every group of customers run. For a
    /// simulation on its own memory store (not `with_store`'s, which it does not reach).
    pub fn restart(&mut self, start: DateTime<Utc>) {
        self.store.forget_customers();
        self.scheduler.forget_pending();
        self.clock.set(start);
        self.last_turn = None;
    }

    /// Feedback events processed so far (each one a feedback-function invocation on AWS).
    pub fn feedback_delivered(&self) -> u64 {
        self.feedback_delivered.load(Ordering::Relaxed)
    }

    fn lock_feedback(&self) -> std::sync::MutexGuard<'_, BTreeMap<(DateTime<Utc>, u64), Event>> {
        self.feedback.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use crate::ports::Clock;
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Store;
    use crate::testing::{at, order_placed, repo_flows};

    /// Counters change no send: a simulation without them prints the same, and has none.
    #[tokio::test]
    async fn a_simulation_for_sends_only_sends_the_same_and_counts_nothing() {
        let start = at("2026-11-20T00:00:00Z");
        let (counting, sends_only) = (Simulation::new(repo_flows(), start).unwrap(), Simulation::sends_only(repo_flows(), start).unwrap());
        let (mut counted, mut uncounted) = (Vec::new(), Vec::new());
        for n in 0..20 {
            let event = order_placed(&format!("e{n}"), &format!("c{}", n % 7), &format!("o{n}"), "2026-11-20T10:15:00+09:00");
            counted.extend(counting.ingest(&event).await.unwrap());
            uncounted.extend(sends_only.ingest(&event).await.unwrap());
        }
        let until = at("2028-01-01T00:00:00Z");
        counted.extend(counting.run_until(until).await.unwrap());
        uncounted.extend(sends_only.run_until(until).await.unwrap());
        assert!(counted.len() > 20, "{}", counted.len());
        assert_eq!(uncounted, counted);
        let (from, to) = (start.date_naive(), until.date_naive());
        assert!(!counting.store.stats(from, to).await.unwrap().is_empty(), "the default simulation counts");
        assert_eq!(sends_only.store.stats(from, to).await.unwrap(), vec![]);
    }

    /// The simulator's store lends its states to decisions instead of copying them: the same
    /// sends as a copying store, through a repeated event and a stale step, whose states come
    /// back undecided (if one did not, the customer's next event would fail).
    #[tokio::test]
    async fn a_lending_simulation_sends_what_a_copying_one_does() {
        let start = at("2026-11-20T00:00:00Z");
        let copying = Simulation::with_store(repo_flows(), start, Arc::new(MemoryStore::without_timelines())).unwrap();
        let lending = Simulation::sends_only(repo_flows(), start).unwrap();
        let stale = crate::engine::DueStep { customer_id: crate::domain::CustomerId::parse("c1").unwrap(), enrollment_id: "thank_you:gone".into(), step_id: "wait".into(), generation: 1 };
        async fn feed(simulation: &Simulation, event: &Value, stale: &crate::engine::DueStep) -> Vec<SendReport> {
            let sends = simulation.ingest(event).await.unwrap();
            assert_eq!(simulation.ingest(event).await.unwrap(), vec![], "a repeated event sends nothing");
            assert_eq!(simulation.app.run_step(stale, &mut Vec::new()).await.unwrap(), crate::service::Processed::Stale);
            sends
        }
        let (mut copied, mut lent) = (Vec::new(), Vec::new());
        for n in 0..6 {
            let event = order_placed(&format!("e{n}"), &format!("c{}", n % 2), &format!("o{n}"), "2026-11-20T10:15:00+09:00");
            copied.extend(feed(&copying, &event, &stale).await);
            lent.extend(feed(&lending, &event, &stale).await);
        }
        let until = at("2028-01-01T00:00:00Z");
        copied.extend(copying.run_until(until).await.unwrap());
        lent.extend(lending.run_until(until).await.unwrap());
        assert!(copied.len() > 6, "{}", copied.len());
        assert_eq!(lent, copied);
        let c1 = lending.store.load(&stale.customer_id).await.unwrap().expect("c1's state is back in the store");
        assert_eq!(c1.value.profile.orders_count, 3);
    }

    /// A known customer stored without an email, whose event has none either, is refused; the
    /// refused decision hands its state back, so the customer's next event is decided.
    #[tokio::test]
    async fn a_refused_first_sight_hands_the_lent_state_back() {
        let simulation = Simulation::sends_only(repo_flows(), at("2026-11-20T00:00:00Z")).unwrap();
        let customer = crate::domain::CustomerId::parse("c1").unwrap();
        let state = crate::domain::CustomerState::new(customer.clone(), at("2026-11-20T00:00:00Z"));
        let commit = crate::ports::Commit { customer_id: customer.clone(), expected_version: None, state, event: None, timeline: vec![], stats: vec![] };
        simulation.store.commit(commit).await.unwrap();
        let mut without_email = order_placed("e1", "c1", "o1", "2026-11-20T10:15:00+09:00");
        without_email["customer"].as_object_mut().unwrap().remove("email");
        let refused = simulation.ingest(&without_email).await.unwrap_err().to_string();
        assert!(refused.contains("email"), "{refused}");
        let sends = simulation.ingest(&order_placed("e2", "c1", "o2", "2026-11-20T10:20:00+09:00")).await.unwrap();
        assert!(sends.iter().any(|s| s.status == "sent"), "{sends:?}");
    }

    /// In batches or in one list, the same sends and skips in the same order; and more of them
    /// than one batch holds, so a batch boundary is crossed.
    #[tokio::test]
    async fn sends_handed_over_in_batches_are_the_ones_gathered_in_one_list() {
        let start = at("2026-11-20T00:00:00Z");
        let (gathering, batching) = (Simulation::new(repo_flows(), start).unwrap(), Simulation::new(repo_flows(), start).unwrap());
        for n in 0..120 {
            let event = order_placed(&format!("e{n}"), &format!("c{n}"), &format!("o{n}"), "2026-11-20T10:15:00+09:00");
            gathering.ingest(&event).await.unwrap();
            batching.ingest(&event).await.unwrap();
        }
        let until = at("2028-01-01T00:00:00Z");
        let gathered = gathering.run_until(until).await.unwrap();
        let mut batches = Vec::new();
        batching.run_until_each(until, |batch| batches.push(batch.to_vec())).await.unwrap();
        assert!(gathered.len() > 256, "more than a batch: {}", gathered.len());
        assert!(batches.len() > 1 && batches.iter().all(|b| b.len() <= 256), "{:?}", batches.iter().map(Vec::len).collect::<Vec<_>>());
        assert_eq!(batches.concat(), gathered);
    }

    /// Customers run one at a time from the same start, their decisions sorted by turn, come
    /// in the order of one simulation of them all; their orders at the same times make steps
    /// fall due at the same instants, where the schedule names decide.
    #[tokio::test]
    async fn customers_run_apart_and_sorted_by_turn_come_in_the_order_of_one_run() {
        let start = at("2026-11-20T00:00:00Z");
        let times = ["2026-11-20T10:15:00+09:00", "2026-11-20T10:15:00+09:00", "2026-11-21T10:15:00+09:00"];
        let mut events: Vec<Event> = (0..12).map(|n| Event::parse(&order_placed(&format!("e{n}"), &format!("c{}", n % 4), &format!("o{n}"), times[n % 3])).unwrap()).collect();
        events.sort_by_key(Event::occurred_at_utc);
        let until = at("2027-06-01T00:00:00Z");
        let together = Simulation::sends_only(repo_flows(), start).unwrap();
        let mut one_run = Vec::new();
        for event in &events {
            together.ingest_event_into(event, &mut one_run).await.unwrap();
        }
        one_run.extend(together.run_until(until).await.unwrap());

        let mut apart = Simulation::sends_only(repo_flows(), start).unwrap();
        let mut in_turns: Vec<(Turn, Vec<SendReport>)> = Vec::new();
        let mut keep = |turn: &Turn, reports: &[SendReport]| in_turns.push((turn.clone(), reports.to_vec()));
        for customer in ["c0", "c1", "c2", "c3"] {
            apart.restart(start);
            for (index, event) in (0u64..).zip(&events).filter(|(_, e)| e.customer.id.as_str() == customer) {
                apart.ingest_event_in_turn(event, index, &mut keep).await.unwrap();
            }
            apart.run_until_in_turn(until, &mut keep).await.unwrap();
        }
        in_turns.sort_by(|a, b| a.0.cmp(&b.0));
        // The mailer numbers its messages in the order it sends them, which differs.
        let unnumbered = |reports: Vec<SendReport>| reports.into_iter().map(|r| SendReport { message_id: None, ..r }).collect::<Vec<_>>();
        let merged = unnumbered(in_turns.into_iter().flat_map(|(_, reports)| reports).collect());
        assert!(one_run.len() > 24, "{}", one_run.len());
        assert_eq!(merged, unnumbered(one_run));
    }

    /// A decision placed before the last one (a step due before the decision that scheduled
    /// it) comes right after that one: after it, and before anything another group placed
    /// later; at the same instant, steps come before events.
    #[test]
    fn a_decision_placed_before_the_last_one_comes_right_after_it() {
        let mut simulation = Simulation::sends_only(repo_flows(), at("2026-11-20T00:00:00Z")).unwrap();
        let place = |time: &str, of: PlaceOf| Place { at: at(time), of };
        let step = |name: &str| PlaceOf::Step(Arc::from(name));
        let event = simulation.next_turn(place("2026-11-20T10:00:00Z", PlaceOf::Event(5)));
        let late_step = simulation.next_turn(place("2026-11-20T09:00:00Z", step("b")));
        let step_at_the_same_instant = simulation.next_turn(place("2026-11-20T10:00:00Z", step("a")));
        let later = simulation.next_turn(place("2026-11-20T11:00:00Z", PlaceOf::Event(6)));
        assert!(event < late_step && late_step < step_at_the_same_instant && step_at_the_same_instant < later);
        let mut other_group = Simulation::sends_only(repo_flows(), at("2026-11-20T00:00:00Z")).unwrap();
        let next_event = other_group.next_turn(place("2026-11-20T10:00:00Z", PlaceOf::Event(7)));
        assert!(step_at_the_same_instant < next_event && next_event < later);
        let mut third_group = Simulation::sends_only(repo_flows(), at("2026-11-20T00:00:00Z")).unwrap();
        assert!(third_group.next_turn(place("2026-11-20T10:00:00Z", step("z"))) < event, "a step before an event of its instant");
    }
}
