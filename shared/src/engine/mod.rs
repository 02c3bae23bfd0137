//! The pure state machine: `decide(state, input, now) -> Decision`. No I/O, no clock, no AWS.
//! The service loads the state, calls `decide`, commits, then carries out the effects.

mod rules;
mod timing;

pub use rules::SkipReason;
pub use timing::{in_quiet_hours, next_quiet_end};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{CustomerId, CustomerState, EmailAddress, Enrollment, Event, Profile, SendRecord, TimelineEntry, TimelineKind};
use crate::flow::{Category, EnrollmentKey, Flow, FlowSet, StepKind};

/// How long an ended per-order enrollment is remembered (so the order never re-enters).
const FINISHED_MEMORY_DAYS: i64 = 400;
/// How far back sends are kept in the state for frequency rules.
const RECENT_SENDS_DAYS: i64 = 30;

/// The Scheduler's payload: one due step of one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueStep {
    pub customer_id: CustomerId,
    pub enrollment_id: String,
    pub step_id: String,
    pub generation: u32,
}

impl DueStep {
    /// A deterministic schedule name: 64 characters at most, of `[0-9a-zA-Z-_.]`.
    pub fn schedule_name(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [self.customer_id.as_str(), &self.enrollment_id, &self.step_id, &self.generation.to_string()] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        format!("ac-{}", &hex::encode(hasher.finalize())[..48])
    }
}

pub enum Input<'a> {
    Event(&'a Event),
    Due(&'a DueStep),
}

/// An email the engine decided to send, with everything the renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SendIntent {
    pub enrollment_id: String,
    pub flow: String,
    pub step_id: String,
    pub template: String,
    pub category: Category,
    pub to: EmailAddress,
    pub profile: Profile,
    pub trigger: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleIntent {
    pub name: String,
    pub at: DateTime<Utc>,
    pub due: DueStep,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(SendIntent),
    Schedule(ScheduleIntent),
    Unschedule { name: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: CustomerState,
    pub effects: Vec<Effect>,
    pub timeline: Vec<TimelineEntry>,
    /// False when nothing changed (a stale or duplicate callback): nothing to commit.
    pub changed: bool,
}

impl Decision {
    pub fn sends(&self) -> impl Iterator<Item = &SendIntent> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Send(s) => Some(s),
            _ => None,
        })
    }
}

pub fn decide(flows: &FlowSet, state: Option<CustomerState>, input: Input<'_>, now: DateTime<Utc>) -> Decision {
    let mut run = Run { flows, effects: Vec::new(), timeline: Vec::new(), now };
    let (state, changed) = match input {
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
    let mut state = state;
    if changed {
        prune(&mut state, now);
    }
    Decision { state, effects: run.effects, timeline: run.timeline, changed }
}

fn prune(state: &mut CustomerState, now: DateTime<Utc>) {
    let finished_horizon = now - Duration::days(FINISHED_MEMORY_DAYS);
    state.finished.retain(|_, at| *at >= finished_horizon);
    let sends_horizon = now - Duration::days(RECENT_SENDS_DAYS);
    state.recent_sends.retain(|s| s.at >= sends_horizon);
}

struct Run<'f> {
    flows: &'f FlowSet,
    effects: Vec<Effect>,
    timeline: Vec<TimelineEntry>,
    now: DateTime<Utc>,
}

impl Run<'_> {
    fn entry(&self, kind: TimelineKind, enrollment: &Enrollment) -> TimelineEntry {
        TimelineEntry { flow: Some(enrollment.flow.clone()), ..TimelineEntry::new(self.now, kind) }
    }

    fn on_event(&mut self, state: &mut CustomerState, event: &Event) {
        state.profile.apply(event);
        self.timeline.push(TimelineEntry::for_event(event, self.now));
        self.apply_exits(state, event);
        for flow in &self.flows.flows {
            if flow.trigger.event != event.event_type.as_str() {
                continue;
            }
            if let Some(filter) = &flow.trigger.filter {
                match rules::evaluate(filter, &state.profile, event) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(why) => {
                        let mut entry = TimelineEntry::new(self.now, TimelineKind::Failed);
                        entry.flow = Some(flow.id.clone());
                        entry.reason = Some(format!("trigger.filter: {why}"));
                        self.timeline.push(entry);
                        continue;
                    }
                }
            }
            let key = match flow.key {
                EnrollmentKey::Customer => "customer".to_owned(),
                EnrollmentKey::Event => event.id.to_string(),
                EnrollmentKey::Order => match &event.order {
                    Some(order) => order.id.clone(),
                    None => continue,
                },
            };
            let id = format!("{}:{key}", flow.id);
            if state.enrollments.iter().any(|e| e.id == id) {
                continue;
            }
            if flow.key != EnrollmentKey::Customer && state.finished.contains_key(&id) {
                continue;
            }
            let Some(first) = flow.steps.first() else { continue };
            let enrollment = Enrollment {
                id,
                flow: flow.id.clone(),
                flow_version: flow.version.clone(),
                key,
                step_id: first.id.clone(),
                due_at: None,
                anchor: event.occurred_at_utc(),
                generation: 0,
                entered_at: self.now,
                trigger: event.clone(),
            };
            self.timeline.push(self.entry(TimelineKind::Entered, &enrollment));
            self.advance(state, enrollment, flow, 0);
        }
    }

    fn apply_exits(&mut self, state: &mut CustomerState, event: &Event) {
        let event_order = event.order.as_ref().map(|o| o.id.as_str()).or(event.review.as_ref().map(|r| r.order_id.as_str()));
        let mut kept = Vec::with_capacity(state.enrollments.len());
        for enrollment in std::mem::take(&mut state.enrollments) {
            let exits = self.flows.flow(&enrollment.flow).is_some_and(|flow| {
                flow.exit_on.iter().any(|rule| {
                    rule.event == event.event_type.as_str()
                        && (!rule.same_order || event_order.is_some() && event_order == enrollment.trigger.order.as_ref().map(|o| o.id.as_str()))
                })
            });
            if exits && enrollment.trigger.id != event.id {
                let mut entry = self.entry(TimelineKind::Exited, &enrollment);
                entry.reason = Some(format!("exit_on:{}", event.event_type));
                self.timeline.push(entry);
                self.end(state, &enrollment);
            } else {
                kept.push(enrollment);
            }
        }
        state.enrollments.extend(kept);
    }

    /// Runs a due callback. Returns false when it is stale (nothing to do, nothing to commit).
    fn on_due(&mut self, state: &mut CustomerState, due: &DueStep) -> bool {
        let Some(position) = state.enrollments.iter().position(|e| {
            e.id == due.enrollment_id && e.generation == due.generation && e.step_id == due.step_id && e.due_at.is_some()
        }) else {
            return false;
        };
        let enrollment = state.enrollments.remove(position);
        let Some(flow) = self.flows.flow(&enrollment.flow) else {
            let mut entry = self.entry(TimelineKind::Exited, &enrollment);
            entry.reason = Some("flow_removed".into());
            self.timeline.push(entry);
            self.end(state, &enrollment);
            return true;
        };
        // After a redeploy the enrollment continues at the same step id, or ends if it is gone.
        let Some(index) = flow.step_index(&enrollment.step_id) else {
            let mut entry = self.entry(TimelineKind::Exited, &enrollment);
            entry.reason = Some(format!("step_removed:{}", enrollment.step_id));
            self.timeline.push(entry);
            self.end(state, &enrollment);
            return true;
        };
        let mut enrollment = enrollment;
        enrollment.flow_version = flow.version.clone();
        enrollment.due_at = None;
        let next = match flow.steps[index].kind {
            StepKind::Wait { .. } => index + 1,
            StepKind::Send { .. } => index,
        };
        self.advance(state, enrollment, flow, next);
        true
    }

    /// Runs steps from `index` until one must wait, or the flow ends.
    fn advance(&mut self, state: &mut CustomerState, mut enrollment: Enrollment, flow: &Flow, mut index: usize) {
        while let Some(step) = flow.steps.get(index) {
            match &step.kind {
                StepKind::Wait { duration } => {
                    let due = enrollment.anchor + *duration;
                    enrollment.anchor = due;
                    let send_next_is_marketing = flow.category == Category::Marketing
                        && matches!(flow.steps.get(index + 1).map(|s| &s.kind), Some(StepKind::Send { .. }));
                    let due = if send_next_is_marketing { self.after_quiet_hours(&state.profile, due) } else { due };
                    if due > self.now {
                        enrollment.step_id = step.id.clone();
                        self.schedule(state, enrollment, due);
                        return;
                    }
                }
                StepKind::Send { template, when } => {
                    if flow.category == Category::Marketing {
                        let allowed = self.after_quiet_hours(&state.profile, self.now);
                        if allowed > self.now {
                            enrollment.step_id = step.id.clone();
                            self.schedule(state, enrollment, allowed);
                            return;
                        }
                    }
                    self.send_step(state, &enrollment, flow, &step.id, template, when.as_deref());
                }
            }
            index += 1;
        }
        self.timeline.push(self.entry(TimelineKind::Completed, &enrollment));
        self.end(state, &enrollment);
    }

    fn after_quiet_hours(&self, profile: &Profile, at: DateTime<Utc>) -> DateTime<Utc> {
        let Some(quiet) = self.flows.store.quiet_hours else { return at };
        let tz = profile.timezone.unwrap_or(self.flows.store.timezone).0;
        if in_quiet_hours(quiet, tz, at) {
            next_quiet_end(quiet, tz, at)
        } else {
            at
        }
    }

    fn schedule(&mut self, state: &mut CustomerState, mut enrollment: Enrollment, at: DateTime<Utc>) {
        enrollment.generation += 1;
        enrollment.due_at = Some(at);
        let due = DueStep {
            customer_id: state.profile.id.clone(),
            enrollment_id: enrollment.id.clone(),
            step_id: enrollment.step_id.clone(),
            generation: enrollment.generation,
        };
        self.effects.push(Effect::Schedule(ScheduleIntent { name: due.schedule_name(), at, due }));
        state.enrollments.push(enrollment);
    }

    fn end(&mut self, state: &mut CustomerState, enrollment: &Enrollment) {
        if enrollment.due_at.is_some() {
            let due = DueStep {
                customer_id: state.profile.id.clone(),
                enrollment_id: enrollment.id.clone(),
                step_id: enrollment.step_id.clone(),
                generation: enrollment.generation,
            };
            self.effects.push(Effect::Unschedule { name: due.schedule_name() });
        }
        state.finished.insert(enrollment.id.clone(), self.now);
    }

    fn send_step(&mut self, state: &mut CustomerState, enrollment: &Enrollment, flow: &Flow, step_id: &str, template: &str, when: Option<&str>) {
        let mut entry = self.entry(TimelineKind::Skipped, enrollment);
        entry.step_id = Some(step_id.to_owned());
        entry.template = Some(template.to_owned());
        let verdict = match when.map(|w| rules::evaluate(w, &state.profile, &enrollment.trigger)) {
            Some(Ok(false)) => Err(SkipReason::ConditionFalse),
            Some(Err(why)) => Err(SkipReason::ConditionError(why)),
            _ => rules::may_send(flow, &state.profile, &state.recent_sends, self.flows.store.smart_sending_hours, self.now),
        };
        match verdict {
            Err(reason) => {
                entry.reason = Some(reason.code());
                self.timeline.push(entry);
            }
            Ok(to) => {
                entry.kind = TimelineKind::Sent;
                self.timeline.push(entry);
                state.recent_sends.push(SendRecord {
                    at: self.now,
                    flow: flow.id.clone(),
                    step_id: step_id.to_owned(),
                    template: template.to_owned(),
                    marketing: flow.category == Category::Marketing,
                    message_id: None,
                });
                self.effects.push(Effect::Send(SendIntent {
                    enrollment_id: enrollment.id.clone(),
                    flow: flow.id.clone(),
                    step_id: step_id.to_owned(),
                    template: template.to_owned(),
                    category: flow.category,
                    to,
                    profile: state.profile.clone(),
                    trigger: enrollment.trigger.clone(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests;
