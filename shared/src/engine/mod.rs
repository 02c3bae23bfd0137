//! The pure state machine: `decide(state, input, now) -> Decision`. No I/O, no clock, no AWS.
//! The service loads the state, calls `decide`, commits, then carries out the effects.

mod measure;
mod order_value;
mod recommend;
mod rules;
mod timing;

pub use recommend::recommend;
pub use rules::{Scope, SkipReason};
pub(crate) use order_value::order_value;
pub use timing::{in_quiet_hours, next_quiet_end, next_yearly, resolve_local};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{CustomerId, CustomerState, EmailAddress, Enrollment, Event, FinishedId, Name, Profile, SendRecord, TimelineEntry, TimelineKind};
use crate::stats::{Metric, StatCount};
use crate::flow::{Category, CustomerDate, EnrollmentKey, Flow, FlowSet, StepKind, Trigger, WaitLength};

/// How long an ended per-order enrollment is remembered (so the order never re-enters).
const FINISHED_MEMORY_DAYS: i64 = 400;
/// How far back sends and opens are kept in the state for frequency and engagement rules.
const RECENT_SENDS_DAYS: i64 = 30;
/// Steps run in one decision before a flow is declared looping (validation prevents it).
const MAX_STEPS_PER_DECISION: usize = 200;

/// The Scheduler's payload: one due step of one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueStep {
    pub customer_id: CustomerId,
    pub enrollment_id: Name,
    pub step_id: Name,
    pub generation: u32,
}

impl DueStep {
    /// The step `enrollment` waits for, as scheduled now.
    pub fn of(customer_id: &CustomerId, enrollment: &Enrollment) -> DueStep {
        DueStep {
            customer_id: customer_id.clone(),
            enrollment_id: enrollment.id.clone(),
            step_id: enrollment.step_id.clone(),
            generation: enrollment.generation,
        }
    }

    /// A deterministic schedule name: 64 characters at most, of `[0-9a-zA-Z-_.]`.
    pub fn schedule_name(&self) -> String {
        self.schedule_name_in(&mut [0; SCHEDULE_NAME_LEN]).to_owned()
    }

    /// The schedule name, made once and shared: the scheduler keeps it and hands it back
    /// when the step fires, where each used to copy it (BENCHMARKS.md, simulator, item 96).
    pub fn shared_schedule_name(&self) -> Arc<str> {
        Arc::from(self.schedule_name_in(&mut [0; SCHEDULE_NAME_LEN]))
    }

    /// The name written into `buffer`: "ac-" and 48 hex digits.
    fn schedule_name_in<'b>(&self, buffer: &'b mut [u8; SCHEDULE_NAME_LEN]) -> &'b str {
        let mut hasher = Sha256::new();
        let mut generation = itoa::Buffer::new();
        for part in [self.customer_id.as_str(), &self.enrollment_id, &self.step_id, generation.format(self.generation)] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        buffer[..3].copy_from_slice(b"ac-");
        // The first 24 bytes of the digest in hex, written in place (no intermediate strings).
        // Cannot fail: 24 bytes are exactly 48 digits.
        let _ = hex::encode_to_slice(&hasher.finalize()[..24], &mut buffer[3..]);
        // Cannot fail either: "ac-" and hex digits are ASCII.
        let buffer: &'b [u8; SCHEDULE_NAME_LEN] = buffer;
        std::str::from_utf8(buffer).unwrap_or_default()
    }
}

/// "ac-" and 48 hex digits.
const SCHEDULE_NAME_LEN: usize = 51;

#[derive(Clone, Copy)]
pub enum Input<'a> {
    Event(&'a Event),
    Due(&'a DueStep),
}

/// An email the engine decided to send, with everything the renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SendIntent {
    pub enrollment_id: Name,
    pub flow: Name,
    pub step_id: Name,
    pub template: Name,
    pub category: Category,
    pub to: EmailAddress,
    /// The customer's profile as it was when sending: shared with the state.
    pub profile: Arc<Profile>,
    /// The enrollment as it was when sending: trigger event, item, variant.
    pub enrollment: Enrollment,
    /// Catalog SKUs to show, in order.
    pub recommendations: Vec<String>,
}

impl SendIntent {
    pub fn trigger(&self) -> &Event {
        &self.enrollment.trigger
    }
}

/// A short, stable, SES-tag-safe id of an enrollment (feedback finds its sends by it).
pub fn enrollment_tag(enrollment_id: &str) -> String {
    hex::encode(&Sha256::digest(enrollment_id.as_bytes())[..8])
}

/// A one-time schedule to create: the engine's decision and what `Scheduler::create` takes,
/// so the service hands it over without a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledStep {
    /// Shared: the in-memory scheduler keeps it and hands it back when the step fires.
    pub name: Arc<str>,
    pub at: DateTime<Utc>,
    pub due: DueStep,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Boxed: an intent carries the profile and enrollment to render with (688 bytes), and
    /// every schedule in a decision's list took as much room.
    Send(Box<SendIntent>),
    Schedule(ScheduledStep),
    Unschedule { name: String },
}

impl Effect {
    pub fn as_send(&self) -> Option<&SendIntent> {
        match self {
            Effect::Send(send) => Some(send),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: CustomerState,
    pub effects: Vec<Effect>,
    pub timeline: Vec<TimelineEntry>,
    /// Report counters to add with the commit.
    pub stats: Vec<StatCount>,
    /// False when nothing changed (a stale or duplicate callback): nothing to commit.
    pub changed: bool,
}

impl Decision {
    pub fn sends(&self) -> impl Iterator<Item = &SendIntent> {
        self.effects.iter().filter_map(Effect::as_send)
    }
}

pub fn decide(flows: &FlowSet, state: Option<CustomerState>, input: Input<'_>, now: DateTime<Utc>) -> Decision {
    let mut run = Run { flows, effects: Vec::new(), timeline: Vec::new(), stats: Vec::new(), trigger: None, now };
    let (mut state, changed) = match input {
        Input::Event(event) => {
            let mut state = state.unwrap_or_else(|| CustomerState::new(event.customer.id.clone(), now));
            run.on_event(&mut state, event);
            (state, true)
        }
        Input::Due(due) => match state {
            Some(mut state) => {
                let changed = run.on_due(&mut state, due);
                (state, changed)
            }
            // A callback for a customer that no longer exists (erased): nothing to do.
            None => (CustomerState::new(due.customer_id.clone(), now), false),
        },
    };
    if changed {
        prune(&mut state, now);
    }
    Decision { state, effects: run.effects, timeline: run.timeline, stats: run.stats, changed }
}

fn prune(state: &mut CustomerState, now: DateTime<Utc>) {
    let finished_horizon = now - Duration::days(FINISHED_MEMORY_DAYS);
    // Checked first: the ids are shared with the loaded state, and copied only when one goes.
    if state.finished.iter().any(|(_, at)| *at < finished_horizon) {
        state.finished_mut().retain(|_, at| *at >= finished_horizon);
    }
    let recent_horizon = now - Duration::days(RECENT_SENDS_DAYS);
    // Newest last (each send is pushed at its decision's time): the expired ones are a prefix,
    // found by a binary search. `retain` read every record, one cache miss each on a customer
    // not seen for a while, to drop none most of the time; and so did the search's probes, so
    // the oldest is looked at first (BENCHMARKS.md, simulator, item 98).
    if state.recent_sends.first().is_some_and(|oldest| oldest.at < recent_horizon) {
        let expired = state.recent_sends.partition_point(|s| s.at < recent_horizon);
        state.recent_sends.drain(..expired);
    }
    // Checked first, as above: the profile is shared with the loaded state.
    if state.profile.opens.iter().any(|at| *at < recent_horizon) {
        state.profile_mut().opens.retain(|at| *at >= recent_horizon);
    }
}

struct Run<'f> {
    flows: &'f FlowSet,
    effects: Vec<Effect>,
    timeline: Vec<TimelineEntry>,
    stats: Vec<StatCount>,
    trigger: Option<Arc<Event>>,
    now: DateTime<Utc>,
}

/// Whether an event concerns an enrollment's order (or its item's SKU).
fn same_order(event: &Event, enrollment: &Enrollment) -> bool {
    let event_order = event.order.as_ref().map(|o| o.id.as_str()).or(event.review.as_ref().map(|r| r.order_id.as_str()));
    event_order.is_some() && event_order == enrollment.trigger.order.as_ref().map(|o| o.id.as_str())
}

fn same_sku(event: &Event, enrollment: &Enrollment) -> bool {
    let Some(sku) = enrollment.item.as_deref().and_then(|i| i.get("sku")).and_then(|s| s.as_str()) else { return false };
    event.order.as_ref().is_some_and(|o| o.items.iter().any(|i| i.sku == sku))
}

/// Whether `text`, a date as `NaiveDate`'s `Display` wrote it into an enrollment, is `date`.
/// This runs on every event of a customer with a birthday or a first order: the usual
/// `YYYY-MM-DD` is read by hand, as chrono's general parser cost ~900 instructions of every
/// such event (BENCHMARKS.md); anything else (a year past 9999) goes to chrono.
fn is_date(text: &str, date: chrono::NaiveDate) -> bool {
    use chrono::Datelike;
    let bytes = text.as_bytes();
    let number = |digits: &[u8]| digits.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *bytes {
        if let (Some(year), Some(month), Some(day)) = (number(&[y0, y1, y2, y3]), number(&[m0, m1]), number(&[d0, d1])) {
            return i32::try_from(year).is_ok_and(|y| y == date.year()) && month == date.month() && day == date.day();
        }
    }
    text.parse::<chrono::NaiveDate>().is_ok_and(|parsed| parsed == date)
}

/// A date as `NaiveDate`'s `Display` writes it (`YYYY-MM-DD` for years 0 to 9999), digit by
/// digit: through the formatter it cost ~600 instructions, twice an order (a date-triggered
/// flow's start, `customer.first_order_date`). Other years go to chrono.
pub(crate) fn date_text(date: chrono::NaiveDate) -> Name {
    use chrono::Datelike;
    if !(0..=9999).contains(&date.year()) {
        return Name::from(date.to_string());
    }
    let year = date.year().unsigned_abs();
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let (month, day) = (date.month(), date.day());
    let text = [digit(year / 1000), digit(year / 100), digit(year / 10), digit(year), b'-', digit(month / 10), digit(month), b'-', digit(day / 10), digit(day)];
    std::str::from_utf8(&text).map_or_else(|_| Name::from(date.to_string()), Name::new)
}

impl<'f> Run<'f> {
    fn entry(&self, kind: TimelineKind, enrollment: &Enrollment) -> TimelineEntry {
        TimelineEntry { flow: Some(enrollment.flow.clone()), ..TimelineEntry::new(self.now, kind) }
    }

    fn scope<'a>(&self, profile: &'a Profile, enrollment: &'a Enrollment) -> Scope<'a>
    where
        'f: 'a,
    {
        let flows: &'f FlowSet = self.flows;
        Scope { profile, event: &enrollment.trigger, item: enrollment.item.as_deref(), enrollment: Some(enrollment), store: &flows.store, now: self.now }
    }

    fn tz(&self, profile: &Profile) -> chrono_tz::Tz {
        profile.timezone.unwrap_or(self.flows.store.timezone).0
    }

    fn on_event(&mut self, state: &mut CustomerState, event: &Event) {
        let before = measure::Before::of(&state.profile);
        state.apply(event);
        let mut line = TimelineEntry::for_event(event, self.now);
        line.reason = self.measure_event(state, event, &before).map(Name::from);
        self.timeline.push(line);
        let flows: &'f FlowSet = self.flows;
        let listeners = flows.listeners(event.event_type.as_str());
        if listeners.exits {
            self.apply_exits(state, event);
        }
        if listeners.resumes {
            self.resume_waiting(state, event);
        }
        for flow in listeners.starts.iter().map(|&i| &flows.flows()[i]) {
            match &flow.trigger {
                Trigger::Event { event: wanted, filter, for_each } if wanted == event.event_type.as_str() => {
                    let items: Vec<Option<serde_json::Value>> = match for_each {
                        None => vec![None],
                        Some(expr) => {
                            let scope = Scope { profile: &state.profile, event, item: None, enrollment: None, store: &self.flows.store, now: self.now };
                            match rules::evaluate_value(expr, &scope) {
                                Ok(list) => list.try_iter().map(|it| it.filter_map(|v| serde_json::to_value(&v).ok()).map(Some).collect()).unwrap_or_default(),
                                Err(why) => {
                                    self.flow_failed(flow, format!("trigger.for_each: {why}"));
                                    continue;
                                }
                            }
                        }
                    };
                    for item in items {
                        if let Some(filter) = filter {
                            let scope = Scope { profile: &state.profile, event, item: item.as_ref(), enrollment: None, store: &self.flows.store, now: self.now };
                            match rules::evaluate(filter, &scope) {
                                Ok(true) => {}
                                Ok(false) => continue,
                                Err(why) => {
                                    self.flow_failed(flow, format!("trigger.filter: {why}"));
                                    continue;
                                }
                            }
                        }
                        // A `Name`: a key of up to 23 bytes is made without allocating, and
                        // every listening flow makes one.
                        let key = match flow.key {
                            EnrollmentKey::Customer => Name::new_static("customer"),
                            EnrollmentKey::Event => Name::new(event.id.as_str()),
                            EnrollmentKey::Order => match &event.order {
                                Some(order) => Name::new(&order.id),
                                None => continue,
                            },
                            EnrollmentKey::OrderItem => {
                                let sku = item.as_ref().and_then(|i| i.get("sku")).and_then(|s| s.as_str());
                                match (&event.order, sku) {
                                    (Some(order), Some(sku)) => smol_str::format_smolstr!("{}:{sku}", order.id),
                                    _ => continue,
                                }
                            }
                        };
                        self.start(state, flow, event, key, item, None);
                    }
                }
                Trigger::CustomerDate(which) => {
                    let date = match which {
                        CustomerDate::Birthday => state.profile.birthday,
                        CustomerDate::FirstOrder => state.profile.first_order_at.map(|t| t.with_timezone(&self.tz(&state.profile)).date_naive()),
                    };
                    let Some(date) = date else { continue };
                    // Checked on every event of a customer with the date: compared without
                    // building the enrollment id or the date's text.
                    let is_this_flows = |e: &Enrollment| e.id.strip_prefix(flow.id.as_str()).and_then(|rest| rest.strip_prefix(':')) == Some("customer");
                    match state.enrollments.iter().position(|e| is_this_flows(e)) {
                        Some(i) if state.enrollments[i].trigger_value.as_deref().is_some_and(|text| is_date(text, date)) => continue,
                        // The date changed: follow it.
                        Some(i) => {
                            let old = state.enrollments.to_mut().remove(i);
                            let mut entry = self.entry(TimelineKind::Exited, &old);
                            entry.reason = Some("restarted:date_changed".into());
                            self.timeline.push(entry);
                            self.end(state, &old);
                        }
                        None => {}
                    }
                    self.start(state, flow, event, Name::new_static("customer"), None, Some(date_text(date)));
                }
                Trigger::Event { .. } => {}
            }
        }
    }

    /// One shared copy of the event for every enrollment it starts.
    fn shared_trigger(&mut self, event: &Event) -> Arc<Event> {
        match &self.trigger {
            Some(shared) if shared.id == event.id => shared.clone(),
            _ => {
                let shared = Arc::new(event.clone());
                self.trigger = Some(shared.clone());
                shared
            }
        }
    }

    fn flow_failed(&mut self, flow: &Flow, reason: String) {
        let mut entry = TimelineEntry::new(self.now, TimelineKind::Failed);
        entry.flow = Some(flow.id.clone());
        entry.reason = Some(Name::from(reason));
        self.timeline.push(entry);
    }

    fn start(&mut self, state: &mut CustomerState, flow: &Flow, event: &Event, key: Name, item: Option<serde_json::Value>, trigger_value: Option<Name>) {
        let id = smol_str::format_smolstr!("{}:{key}", flow.id);
        if let Some(i) = state.enrollments.iter().position(|e| e.id == id) {
            if !flow.restart {
                return;
            }
            let old = state.enrollments.to_mut().remove(i);
            let mut entry = self.entry(TimelineKind::Exited, &old);
            entry.reason = Some(smol_str::format_smolstr!("restarted:{}", event.event_type));
            self.timeline.push(entry);
            self.end(state, &old);
        } else if flow.key != EnrollmentKey::Customer && state.finished.contains_key(&FinishedId::new(&flow.id, &key)) {
            return;
        }
        let enrollment = Enrollment {
            id,
            flow: flow.id.clone(),
            flow_version: flow.version.clone(),
            key,
            step_id: flow.steps.first().map(|s| s.id.clone()).unwrap_or_default(),
            due_at: None,
            anchor: event.occurred_at_utc(),
            generation: 0,
            entered_at: self.now,
            trigger: self.shared_trigger(event),
            item: item.map(Arc::new),
            variant: None,
            opened: Vec::new(),
            clicked: Vec::new(),
            trigger_value,
        };
        self.timeline.push(self.entry(TimelineKind::Entered, &enrollment));
        self.advance(state, enrollment, flow, 0);
    }

    fn apply_exits(&mut self, state: &mut CustomerState, event: &Event) {
        let flows: &'f FlowSet = self.flows;
        let exit_rule = |enrollment: &Enrollment| {
            let flow = flows.flow(&enrollment.flow)?;
            let rule = flow.exit_on.iter().find(|rule| {
                rule.event == event.event_type.as_str()
                    && (!rule.same_order || same_order(event, enrollment))
                    && (!rule.same_sku || same_sku(event, enrollment))
            })?;
            (enrollment.trigger.id != event.id).then_some(rule)
        };
        // Most events end none: then the list stays shared with the state as loaded.
        if !state.enrollments.iter().any(|e| exit_rule(e).is_some()) {
            return;
        }
        let mut kept = Vec::with_capacity(state.enrollments.len());
        for enrollment in std::mem::take(state.enrollments.to_mut()) {
            match exit_rule(&enrollment) {
                Some(rule) => {
                    let mut entry = self.entry(TimelineKind::Exited, &enrollment);
                    entry.reason = Some(smol_str::format_smolstr!("{}:{}", if rule.goal { "goal" } else { "exit_on" }, event.event_type));
                    self.timeline.push(entry);
                    self.end(state, &enrollment);
                }
                None => kept.push(enrollment),
            }
        }
        state.enrollments.to_mut().extend(kept);
    }

    /// Enrollments waiting for this event go on at their `matched` step.
    fn resume_waiting(&mut self, state: &mut CustomerState, event: &Event) {
        let mut i = 0;
        while i < state.enrollments.len() {
            let enrollment = &state.enrollments[i];
            let resume = self.flows.flow(&enrollment.flow).and_then(|flow| {
                let index = flow.step_index(&enrollment.step_id)?;
                match &flow.steps[index].kind {
                    StepKind::WaitFor { event: wanted, same_order: needs_order, matched, .. }
                        if wanted == event.event_type.as_str() && (!needs_order || same_order(event, enrollment)) && enrollment.trigger.id != event.id =>
                    {
                        Some((flow, matched.as_ref().and_then(|m| flow.step_index(m)).unwrap_or(index + 1)))
                    }
                    _ => None,
                }
            });
            match resume {
                Some((flow, next)) => {
                    let mut enrollment = Arc::unwrap_or_clone(state.enrollments.to_mut().remove(i));
                    self.unschedule(state, &enrollment);
                    enrollment.due_at = None;
                    enrollment.anchor = self.now;
                    self.advance(state, enrollment, flow, next);
                }
                None => i += 1,
            }
        }
    }

    /// Runs a due callback. Returns false when it is stale (nothing to do, nothing to commit).
    fn on_due(&mut self, state: &mut CustomerState, due: &DueStep) -> bool {
        let Some(position) = state.enrollments.iter().position(|e| {
            e.id == due.enrollment_id && e.generation == due.generation && e.step_id == due.step_id && e.due_at.is_some()
        }) else {
            return false;
        };
        let mut enrollment = Arc::unwrap_or_clone(state.enrollments.to_mut().remove(position));
        let Some(flow) = self.flows.flow(&enrollment.flow) else {
            let mut entry = self.entry(TimelineKind::Exited, &enrollment);
            entry.reason = Some("flow_removed".into());
            self.timeline.push(entry);
            enrollment.due_at = None;
            self.end(state, &enrollment);
            return true;
        };
        // After a redeploy the enrollment continues at the same step id, or ends if it is gone.
        let Some(index) = flow.step_index(&enrollment.step_id) else {
            let mut entry = self.entry(TimelineKind::Exited, &enrollment);
            entry.reason = Some(smol_str::format_smolstr!("step_removed:{}", enrollment.step_id));
            self.timeline.push(entry);
            enrollment.due_at = None;
            self.end(state, &enrollment);
            return true;
        };
        enrollment.flow_version = flow.version.clone();
        enrollment.due_at = None;
        let next = match &flow.steps[index].kind {
            StepKind::WaitFor { timed_out, .. } => timed_out.as_ref().and_then(|t| flow.step_index(t)).unwrap_or(index + 1),
            StepKind::Send { .. } => index,
            _ => index + 1,
        };
        self.advance(state, enrollment, flow, next);
        true
    }

    /// Runs steps from `index` until one must wait, or the flow ends.
    fn advance(&mut self, state: &mut CustomerState, mut enrollment: Enrollment, flow: &Flow, mut index: usize) {
        for _ in 0..MAX_STEPS_PER_DECISION {
            let Some(step) = flow.steps.get(index) else {
                self.timeline.push(self.entry(TimelineKind::Completed, &enrollment));
                self.end(state, &enrollment);
                return;
            };
            let goto = |target: &str| flow.step_index(target).unwrap_or(flow.steps.len());
            let wait_until = match &step.kind {
                StepKind::Wait(length) => {
                    let length = match length {
                        WaitLength::Fixed(d) => Ok(*d),
                        WaitLength::Days(expr) => rules::evaluate_value(expr, &self.scope(&state.profile, &enrollment))
                            .and_then(|v| i64::try_from(v.clone()).map_err(|_| format!("wait.days {expr:?} gave {v}, not a whole number")))
                            .and_then(|days| Duration::try_days(days).ok_or_else(|| format!("wait.days {days} is out of range"))),
                    };
                    match length {
                        Ok(length) => Some(enrollment.anchor + length.max(Duration::zero())),
                        Err(why) => return self.fail(state, enrollment, &step.id, why),
                    }
                }
                StepKind::WaitUntilDate { date, offset_days, at, otherwise } => {
                    let target = rules::evaluate_value(date, &self.scope(&state.profile, &enrollment))
                        .ok()
                        .and_then(|v| v.as_str().and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()))
                        .and_then(|d| d.checked_add_signed(Duration::days(*offset_days)))
                        .map(|d| resolve_local(self.tz(&state.profile), d.and_time(*at)))
                        .filter(|t| *t > self.now);
                    Some(target.unwrap_or(enrollment.anchor + *otherwise))
                }
                StepKind::WaitYearly { date, at, from_years } => {
                    let date = rules::evaluate_value(date, &self.scope(&state.profile, &enrollment))
                        .ok()
                        .and_then(|v| v.as_str().and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()));
                    let Some(next) = date.and_then(|d| next_yearly(self.tz(&state.profile), d, *at, *from_years, self.now)) else {
                        return self.fail(state, enrollment, &step.id, "wait_until.yearly: the date is missing".into());
                    };
                    Some(next)
                }
                StepKind::WaitFor { timeout, .. } => {
                    enrollment.anchor = self.now;
                    enrollment.step_id = step.id.clone();
                    self.schedule(state, enrollment, self.now + *timeout);
                    return;
                }
                StepKind::Send { choices, when, recommend } => {
                    if flow.category == Category::Marketing {
                        let allowed = self.after_quiet_hours(&state.profile, self.now);
                        if allowed > self.now {
                            enrollment.step_id = step.id.clone();
                            self.schedule(state, enrollment, allowed);
                            return;
                        }
                    }
                    self.send_step(state, &enrollment, flow, &step.id, choices, when.as_ref(), recommend.as_ref());
                    None
                }
                StepKind::Branch(routes) => {
                    let scope = self.scope(&state.profile, &enrollment);
                    let mut chosen = None;
                    for route in routes {
                        match route.when.as_ref().map(|w| rules::evaluate(w, &scope)) {
                            None | Some(Ok(true)) => {
                                chosen = Some(goto(&route.goto));
                                break;
                            }
                            Some(Ok(false)) => {}
                            Some(Err(why)) => return self.fail(state, enrollment, &step.id, why),
                        }
                    }
                    index = chosen.unwrap_or(index + 1);
                    continue;
                }
                StepKind::Split(variants) => {
                    let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
                    let mut hasher = Sha256::new();
                    hasher.update(format!("{}\0{}\0{}", state.profile.id, flow.id, step.id).as_bytes());
                    let digest = hasher.finalize();
                    let mut point = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % total.max(1);
                    let variant = variants
                        .iter()
                        .find(|v| {
                            let hit = point < u64::from(v.weight);
                            point = point.saturating_sub(u64::from(v.weight));
                            hit
                        })
                        .unwrap_or(&variants[0]);
                    enrollment.variant = Some(variant.name.clone());
                    index = goto(&variant.goto);
                    continue;
                }
                StepKind::Goto(target) => {
                    index = goto(target);
                    continue;
                }
                StepKind::Exit(reason) => {
                    let mut entry = self.entry(TimelineKind::Exited, &enrollment);
                    entry.step_id = Some(step.id.clone());
                    entry.reason = Some(if reason.is_empty() { smol_str::format_smolstr!("exit:{}", step.id) } else { Name::new(reason) });
                    self.timeline.push(entry);
                    self.end(state, &enrollment);
                    return;
                }
            };
            if let Some(due) = wait_until {
                enrollment.anchor = due;
                // Marketing email never goes out in quiet hours: move the wake-up, not the anchor.
                let due = if flow.category == Category::Marketing { self.after_quiet_hours(&state.profile, due) } else { due };
                if due > self.now {
                    enrollment.step_id = step.id.clone();
                    self.schedule(state, enrollment, due);
                    return;
                }
            }
            index += 1;
        }
        let id = enrollment.step_id.clone();
        self.fail(state, enrollment, &id, format!("more than {MAX_STEPS_PER_DECISION} steps without a wait"));
    }

    fn fail(&mut self, state: &mut CustomerState, enrollment: Enrollment, step_id: &Name, reason: String) {
        let mut entry = self.entry(TimelineKind::Failed, &enrollment);
        entry.step_id = Some(step_id.clone());
        entry.reason = Some(Name::from(reason));
        self.timeline.push(entry);
        self.end(state, &enrollment);
    }

    fn after_quiet_hours(&self, profile: &Profile, at: DateTime<Utc>) -> DateTime<Utc> {
        let Some(quiet) = self.flows.store.quiet_hours else { return at };
        let tz = self.tz(profile);
        if in_quiet_hours(quiet, tz, at) {
            next_quiet_end(quiet, tz, at)
        } else {
            at
        }
    }

    fn schedule(&mut self, state: &mut CustomerState, mut enrollment: Enrollment, at: DateTime<Utc>) {
        state.last_generation += 1;
        enrollment.generation = state.last_generation;
        enrollment.due_at = Some(at);
        let due = DueStep::of(&state.profile.id, &enrollment);
        self.effects.push(Effect::Schedule(ScheduledStep { name: due.shared_schedule_name(), at, due }));
        state.enrollments.to_mut().push(Arc::new(enrollment));
    }

    fn unschedule(&mut self, state: &CustomerState, enrollment: &Enrollment) {
        if enrollment.due_at.is_some() {
            let due = DueStep::of(&state.profile.id, enrollment);
            self.effects.push(Effect::Unschedule { name: due.schedule_name() });
        }
    }

    fn end(&mut self, state: &mut CustomerState, enrollment: &Enrollment) {
        self.unschedule(state, enrollment);
        // Only `start` reads the finished ids, and only for flows keyed by something other
        // than the customer: a customer-keyed flow's end (a win-back restarted by each order,
        // a welcome, a cart) is not remembered, which spares the copy of the list it made.
        let asked_again = self.flows.flow(&enrollment.flow).is_none_or(|flow| flow.key != EnrollmentKey::Customer);
        if asked_again {
            state.finished_mut().insert(FinishedId::parse(&enrollment.id), self.now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_step(
        &mut self,
        state: &mut CustomerState,
        enrollment: &Enrollment,
        flow: &Flow,
        step_id: &Name,
        choices: &[crate::flow::TemplateChoice],
        when: Option<&crate::flow::Expression>,
        recommend: Option<&crate::flow::Recommend>,
    ) {
        let scope = self.scope(&state.profile, enrollment);
        let mut template = None;
        let mut verdict = Ok(());
        for choice in choices {
            match choice.when.as_ref().map(|w| rules::evaluate(w, &scope)) {
                None | Some(Ok(true)) => {
                    template = Some(&choice.template);
                    break;
                }
                Some(Ok(false)) => {}
                Some(Err(why)) => {
                    verdict = Err(SkipReason::ConditionError(why));
                    break;
                }
            }
        }
        // The flow's names are cloned (shared), never copied out of text.
        let empty = Name::default();
        let template_name = template.unwrap_or_else(|| choices.first().map_or(&empty, |c| &c.template));
        let mut entry = self.entry(TimelineKind::Skipped, enrollment);
        entry.step_id = Some(step_id.clone());
        entry.template = Some(template_name.clone());
        if verdict.is_ok() && template.is_none() {
            verdict = Err(SkipReason::ConditionFalse);
        }
        if verdict.is_ok() {
            verdict = match when.map(|w| rules::evaluate(w, &scope)) {
                Some(Ok(false)) => Err(SkipReason::ConditionFalse),
                Some(Err(why)) => Err(SkipReason::ConditionError(why)),
                _ => Ok(()),
            };
        }
        let recommendations = match (recommend, &verdict) {
            (Some(spec), Ok(())) => {
                let picked = recommend::recommend(&self.flows.catalog, &state.profile, &enrollment.trigger, spec);
                if picked.is_empty() && spec.required {
                    verdict = Err(SkipReason::NoRecommendations);
                }
                picked
            }
            _ => Vec::new(),
        };
        let verdict = verdict.and_then(|()| rules::may_send(flow, &state.profile, &state.recent_sends, self.flows.store.smart_sending_hours, self.now));
        match verdict {
            Err(reason) => {
                entry.reason = Some(reason.code());
                self.timeline.push(entry);
            }
            Ok(to) => {
                entry.kind = TimelineKind::Sent;
                self.timeline.push(entry);
                state.recent_sends.push(std::sync::Arc::new(SendRecord {
                    at: self.now,
                    enrollment_id: enrollment.id.clone(),
                    flow: flow.id.clone(),
                    step_id: step_id.clone(),
                    template: template_name.clone(),
                    marketing: flow.category == Category::Marketing,
                    message_id: None,
                    variant: enrollment.variant.clone(),
                    delivered: false,
                    opened_at: None,
                    clicked_at: None,
                }));
                if let Some(record) = state.recent_sends.last() {
                    self.count_email(record, Metric::Sent, 1);
                }
                state.profile_mut().last_sent.insert(flow.id.clone(), self.now);
                self.effects.push(Effect::Send(Box::new(SendIntent {
                    enrollment_id: enrollment.id.clone(),
                    flow: flow.id.clone(),
                    step_id: step_id.clone(),
                    template: template_name.clone(),
                    category: flow.category,
                    to,
                    profile: state.profile.clone(),
                    enrollment: enrollment.clone(),
                    recommendations,
                })));
            }
        }
    }
}

#[cfg(test)]
mod tests;
