//! Use cases: ingest events, run a due step, take SES feedback. Generic over the ports;
//! the same code runs in the Lambdas, in `aftercare dev` and in the simulator.

mod admin;
pub mod api;
pub mod feedback;
pub mod mail;
pub mod preferences;
pub mod unsubscribe;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{join_all, try_join_all};
use serde::Serialize;
use serde_json::Value;
use tracing::{instrument, warn};

use crate::domain::{CustomerId, Event, FieldError, Json, JsonDoc, Name, TimelineEntry, TimelineKind};
use crate::engine::{self, Decision, DueStep, Effect, Input, SendIntent};
use crate::flow::{Category, FlowSet};
use crate::ports::{Clock, Commit, CommitOutcome, EmailSent, Mailer, PortError, Publisher, Scheduler, Store};
use crate::render::Renderer;

pub const MAX_BATCH: usize = 100;
/// Lost optimistic races retried before giving up with a retryable error.
const MAX_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input: a 4xx, nothing written.
    #[error("{}{error}", index.map(|i| format!("events[{i}]: ")).unwrap_or_default())]
    Invalid { index: Option<usize>, error: FieldError },
    /// Worth retrying (throttled, network, lost races): a 5xx / a Lambda error.
    #[error("temporary failure, retry: {0}")]
    Retryable(String),
    #[error("{0}")]
    Fatal(String),
}

impl From<PortError> for ServiceError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Retryable(m) => ServiceError::Retryable(m),
            PortError::Fatal(m) => ServiceError::Fatal(m),
        }
    }
}

/// The adapters a service runs on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<dyn Scheduler>,
    pub mailer: Arc<dyn Mailer>,
    pub publisher: Arc<dyn Publisher>,
    pub clock: Arc<dyn Clock>,
}

/// One send or skip, as the simulator and the API report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendReport {
    pub at: chrono::DateTime<chrono::Utc>,
    pub customer_id: Name,
    pub flow: Name,
    pub step_id: Name,
    pub template: Name,
    pub locale: Name,
    pub category: &'static str,
    pub to: Name,
    pub subject: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Name>,
    /// What SES would tag the email with (the simulator's feedback model uses them).
    #[serde(skip)]
    pub enrollment_id: Name,
    #[serde(skip)]
    pub variant: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    Applied,
    Duplicate,
    /// A due callback that no longer matches (already run, rescheduled, exited).
    Stale,
    /// Feedback for a customer Aftercare does not know (erased): dropped.
    UnknownCustomer,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    #[serde(skip)]
    pub reports: Vec<SendReport>,
}

pub struct App {
    pub flows: Arc<FlowSet>,
    renderer: Renderer,
    pub ports: Ports,
    pub links: unsubscribe::UnsubscribeLinks,
    /// False in the simulator: render subjects only, never bodies.
    render_bodies: bool,
}

impl App {
    /// With links signed by a throwaway key (simulator, tests); deployments call `with_links`.
    pub fn new(flows: FlowSet, ports: Ports) -> anyhow::Result<App> {
        let renderer = Renderer::new(&flows)?;
        Ok(App::with_renderer(flows, ports, renderer))
    }

    /// For flows already checked whole (the Lambdas' bundled flows, by the tests): each
    /// template compiles the first time it is sent, not all at cold start.
    pub fn compiling_templates_on_first_use(flows: FlowSet, ports: Ports) -> anyhow::Result<App> {
        let renderer = Renderer::compiling_on_first_use(&flows)?;
        Ok(App::with_renderer(flows, ports, renderer))
    }

    fn with_renderer(flows: FlowSet, ports: Ports, renderer: Renderer) -> App {
        let links = unsubscribe::UnsubscribeLinks::ephemeral(&flows.store.base_url);
        App { flows: Arc::new(flows), renderer, ports, links, render_bodies: true }
    }

    /// For the simulator: emails get their subject but no body (bodies are checked by
    /// `aftercare validate` and `preview`, and nobody reads a simulated body).
    pub fn subjects_only(mut self) -> App {
        self.render_bodies = false;
        self
    }

    pub fn with_links(mut self, links: unsubscribe::UnsubscribeLinks) -> App {
        self.links = links;
        self
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Parses a whole batch first: one bad event refuses the batch and nothing is written.
    pub async fn ingest_json(&self, values: &[Value]) -> Result<IngestReport, ServiceError> {
        self.ingest_parsed(values).await
    }

    /// `ingest_json`, for events parsed as `JsonDoc`s (the ingest endpoint's body).
    pub async fn ingest_docs(&self, docs: &[JsonDoc<'_>]) -> Result<IngestReport, ServiceError> {
        self.ingest_parsed(docs).await
    }

    async fn ingest_parsed<J: Json + Sync>(&self, values: &[J]) -> Result<IngestReport, ServiceError> {
        if values.len() > MAX_BATCH {
            return Err(ServiceError::Invalid {
                index: None,
                error: FieldError::new("events", "too_many", format!("a batch holds at most {MAX_BATCH} events, got {}", values.len())),
            });
        }
        let indexed = values.len() > 1;
        let events = values
            .iter()
            .enumerate()
            .map(|(i, v)| Event::parse_json(v).map_err(|error| ServiceError::Invalid { index: indexed.then_some(i), error }))
            .collect::<Result<Vec<_>, _>>()?;
        // One event (the usual post) is checked in `process` against the state it loads
        // anyway; a batch is checked whole first, so that one bad event writes nothing.
        if indexed {
            self.check_batch_first_sight_email(&events).await?;
        }
        let mut report = IngestReport::default();
        for event in &events {
            match self.ingest_event(event, &mut report.reports).await? {
                Processed::Duplicate => report.duplicates += 1,
                _ => report.accepted += 1,
            }
        }
        Ok(report)
    }

    /// A batch: `customer.email` is required the first time a customer is seen, by any event
    /// of the batch or before it; the error's index names the event.
    async fn check_batch_first_sight_email(&self, events: &[Event]) -> Result<(), ServiceError> {
        let mut known: HashMap<&CustomerId, bool> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let id = &event.customer.id;
            if event.customer.email.is_some() {
                known.insert(id, true);
                continue;
            }
            let exists = match known.get(id) {
                Some(k) => *k,
                None => {
                    let has_email = self.ports.store.load(id).await?.is_some_and(|s| s.value.profile.email.is_some());
                    known.insert(id, has_email);
                    has_email
                }
            };
            if !exists {
                return Err(first_sight_without_email(Some(i), id));
            }
        }
        Ok(())
    }

    /// Refuses (400, nothing written) an event for a customer never seen whose
    /// `customer.email` is missing.
    #[instrument(skip_all, fields(customer_id = %event.customer.id, event_id = %event.id, event_type = %event.event_type))]
    pub async fn ingest_event(&self, event: &Event, reports: &mut Vec<SendReport>) -> Result<Processed, ServiceError> {
        self.process(&event.customer.id, Input::Event(event), reports, false).await
    }

    /// Feedback events (from SES) only apply to customers Aftercare already knows.
    pub async fn ingest_feedback(&self, event: &Event) -> Result<Processed, ServiceError> {
        self.process_feedback(event, &mut Vec::new()).await
    }

    /// As `ingest_feedback`, with the sends it caused (a `wait_for` an open that resumes).
    pub async fn process_feedback(&self, event: &Event, reports: &mut Vec<SendReport>) -> Result<Processed, ServiceError> {
        self.process(&event.customer.id, Input::Event(event), reports, true).await
    }

    #[instrument(skip_all, fields(customer_id = %due.customer_id, enrollment = %due.enrollment_id, step = %due.step_id))]
    pub async fn run_step(&self, due: &DueStep, reports: &mut Vec<SendReport>) -> Result<Processed, ServiceError> {
        self.process(&due.customer_id, Input::Due(due), reports, false).await
    }

    /// Load, decide, carry out, commit — in the order the delivery semantics need:
    /// transactional sends before the commit (at-least-once), marketing sends after it
    /// (at-most-once), schedules before it (idempotent; a stale one is a no-op).
    /// `known_only`: drop the input (feedback for an erased customer) rather than create the customer.
    async fn process(&self, customer: &CustomerId, input: Input<'_>, reports: &mut Vec<SendReport>, known_only: bool) -> Result<Processed, ServiceError> {
        let ports = &self.ports;
        // Transactional sends already delivered in this invocation (one or two: a list).
        let mut delivered: Vec<Delivered> = Vec::new();
        let delivered_index = |delivered: &[Delivered], send: &SendIntent| delivered.iter().position(|d| d.enrollment_id == send.enrollment_id && d.step_id == send.step_id);
        let mut committed = None;
        for _ in 0..MAX_ATTEMPTS {
            // In a block, so the loaded state's room in this future ends with it: a future is
            // as large as its largest suspension, and is copied whole each time it is moved.
            let (expected_version, mut decision) = {
                let event_id = match &input {
                    Input::Event(event) => Some(&event.id),
                    Input::Due(_) => None,
                };
                let (loaded, seen) = ports.store.load_to_decide(customer, event_id).await?;
                if known_only && loaded.is_none() {
                    warn!(customer_id = %customer, "feedback for an unknown customer dropped");
                    return Ok(Processed::UnknownCustomer);
                }
                if let Input::Event(event) = &input {
                    let has_email = event.customer.email.is_some() || loaded.as_ref().is_some_and(|s| s.value.profile.email.is_some());
                    if !known_only && !has_email {
                        if let Some(loaded) = loaded {
                            ports.store.hand_back(customer, loaded.value).await;
                        }
                        return Err(first_sight_without_email(None, customer));
                    }
                    if seen {
                        if let Some(loaded) = loaded {
                            ports.store.hand_back(customer, loaded.value).await;
                        }
                        return Ok(Processed::Duplicate);
                    }
                }
                let expected_version = loaded.as_ref().map(|s| s.version);
                (expected_version, engine::decide(&self.flows, loaded.map(|s| s.value), input, ports.clock.now()))
            };
            if !decision.changed {
                ports.store.hand_back(customer, decision.state).await;
                return Ok(Processed::Stale);
            }
            // By index: `mark` changes the decision's timeline and state while the send stays put.
            let transactional: Vec<usize> = (0..decision.effects.len())
                .filter(|&i| matches!(&decision.effects[i], Effect::Send(s) if s.category == Category::Transactional))
                .collect();
            for i in transactional {
                let Effect::Send(send) = &decision.effects[i] else { continue };
                let done = match delivered_index(&delivered, send) {
                    Some(done) => done,
                    None => match Box::pin(self.deliver(send)).await {
                        Ok((message_id, report)) => {
                            delivered.push(Delivered { enrollment_id: send.enrollment_id.clone(), step_id: send.step_id.clone(), message_id, report });
                            delivered.len() - 1
                        }
                        Err(DeliverError::Port(e)) => return Err(e.into()),
                        Err(DeliverError::Render(why)) => {
                            mark(&mut decision, i, TimelineKind::Failed, None, Some(Name::from(why)));
                            continue;
                        }
                    },
                };
                let message_id = delivered[done].message_id.clone();
                mark(&mut decision, i, TimelineKind::Sent, Some(message_id), None);
            }
            // Independent and idempotent, so made together: an order schedules three or more.
            let schedules = decision.effects.iter().filter_map(|effect| match effect {
                Effect::Schedule(step) => Some(ports.scheduler.create(step)),
                _ => None,
            });
            try_join_all(schedules).await?;
            let event = match &input {
                Input::Event(e) => Some(*e),
                Input::Due(_) => None,
            };
            // Skips are reported from the decided state; then the state, timeline and counts
            // move into the commit (a conflict decides afresh).
            let skipped = self.skip_reports(customer, &decision);
            // Taken apart, not swapped for a placeholder state (which allocated each time).
            let Decision { state, effects, timeline, stats, .. } = decision;
            let commit = Commit { customer_id: customer.clone(), expected_version, state, event, timeline, stats };
            match ports.store.commit(commit).await? {
                CommitOutcome::Committed { .. } => {
                    committed = Some((effects, skipped));
                    break;
                }
                CommitOutcome::DuplicateEvent => return Ok(Processed::Duplicate),
                CommitOutcome::VersionConflict => continue,
            }
        }
        let Some((effects, skipped)) = committed else {
            return Err(ServiceError::Retryable(format!("customer {customer} changed {MAX_ATTEMPTS} times while deciding")));
        };
        reports.extend(skipped);
        for send in effects.iter().filter_map(Effect::as_send) {
            if send.category == Category::Transactional {
                if let Some(done) = delivered_index(&delivered, send) {
                    reports.push(delivered.swap_remove(done).report);
                }
                continue;
            }
            // Marketing: the step is claimed; a failure now loses this one email, never doubles it.
            // The outcome is settled before the next await, so this future holds neither it nor the line.
            let failure = match Box::pin(self.deliver(send)).await {
                Ok((_, report)) => {
                    reports.push(report);
                    None
                }
                Err(DeliverError::Render(why)) => Some(why),
                Err(DeliverError::Port(e)) => Some(e.to_string()),
            };
            if let Some(reason) = failure {
                warn!(flow = %send.flow, step = %send.step_id, %reason, "marketing send failed after claim");
                let entries = vec![failed_send(ports.clock.now(), send, reason)];
                if let Err(e) = ports.store.append_timeline(customer, &entries).await {
                    warn!(error = %e, "could not record a failed send");
                }
            }
        }
        let unscheduled: Vec<&String> = effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Unschedule { name } => Some(name),
                _ => None,
            })
            .collect();
        let deleted = join_all(unscheduled.iter().map(|name| ports.scheduler.delete(name))).await;
        for (name, result) in unscheduled.into_iter().zip(deleted) {
            // Best effort: a schedule left behind fires into a version check and does nothing.
            if let Err(e) = result {
                warn!(schedule = %name, error = %e, "could not delete a schedule");
            }
        }
        Ok(Processed::Applied)
    }

    fn skip_reports(&self, customer: &CustomerId, decision: &Decision) -> Vec<SendReport> {
        let profile = &decision.state.profile;
        let mut reports = Vec::new();
        for entry in decision.timeline.iter().filter(|e| e.kind == TimelineKind::Skipped || e.kind == TimelineKind::Failed) {
            let (Some(flow), Some(template)) = (&entry.flow, &entry.template) else { continue };
            let category = self.flows.flow(flow).map_or("marketing", |f| f.category.as_str());
            reports.push(SendReport {
                at: entry.at,
                customer_id: Name::new(customer.as_str()),
                flow: flow.clone(),
                step_id: entry.step_id.clone().unwrap_or_default(),
                template: template.clone(),
                locale: self.renderer.choose_locale(template, profile),
                category,
                to: profile.email.as_ref().map(|email| Name::new(email.as_str())).unwrap_or_default(),
                subject: String::new(),
                status: if entry.kind == TimelineKind::Failed { "failed" } else { "skipped" },
                reason: entry.reason.clone(),
                message_id: None,
                enrollment_id: Name::default(),
                variant: None,
            });
        }
        reports
    }

    /// Renders and sends one email, then tells integrators.
    async fn deliver(&self, send: &SendIntent) -> Result<(Name, SendReport), DeliverError> {
        // Signed links go in the body and headers; the simulator renders neither, so it signs none.
        let unsubscribe_url = (self.render_bodies && send.category == Category::Marketing).then(|| self.links.url(&send.profile.id));
        let activation_url = (self.render_bodies && send.profile.has_account != Some(true))
            .then(|| self.links.activation_url(&self.flows.store.base_url, &send.profile.id, send.to.as_str()));
        let links = crate::render::Links { unsubscribe: unsubscribe_url.as_deref(), activation: activation_url.as_deref() };
        let rendered = if self.render_bodies { self.renderer.render(send, links) } else { self.renderer.render_subject(send) };
        let rendered = rendered.map_err(|e| DeliverError::Render(e.to_string()))?;
        let email = mail::outgoing(&self.flows.store, send, &rendered, unsubscribe_url.as_deref());
        let message_id = Name::from(self.ports.mailer.send(&email).await.map_err(DeliverError::Port)?);
        let at = self.ports.clock.now();
        let sent = EmailSent {
            customer_id: Name::new(send.profile.id.as_str()),
            flow: send.flow.clone(),
            step: send.step_id.clone(),
            template: send.template.clone(),
            locale: rendered.locale.clone(),
            category: Name::new_static(send.category.as_str()),
            message_id: message_id.clone(),
            at,
        };
        if let Err(e) = self.ports.publisher.email_sent(&sent).await {
            warn!(error = %e, "could not publish Email Sent");
        }
        let report = SendReport {
            at,
            customer_id: sent.customer_id,
            flow: sent.flow,
            step_id: sent.step,
            template: sent.template,
            locale: rendered.locale,
            category: send.category.as_str(),
            to: Name::new(send.to.as_str()),
            subject: rendered.subject,
            status: "sent",
            reason: None,
            message_id: Some(message_id.clone()),
            enrollment_id: send.enrollment_id.clone(),
            variant: send.enrollment.variant.clone(),
        };
        Ok((message_id, report))
    }
}

/// The timeline line of a marketing send that failed after its step was claimed.
fn failed_send(at: chrono::DateTime<chrono::Utc>, send: &SendIntent, reason: String) -> TimelineEntry {
    let mut entry = TimelineEntry::new(at, TimelineKind::Failed);
    entry.flow = Some(send.flow.clone());
    entry.step_id = Some(send.step_id.clone());
    entry.template = Some(send.template.clone());
    entry.reason = Some(Name::from(reason));
    entry
}

/// A transactional send delivered before the commit, found again by (enrollment, step) when a
/// version conflict decides afresh.
struct Delivered {
    enrollment_id: Name,
    step_id: Name,
    message_id: Name,
    report: SendReport,
}

enum DeliverError {
    Render(String),
    Port(PortError),
}

/// Records the outcome of the send `decision.effects[effect]`, on its timeline line and send record.
fn mark(decision: &mut Decision, effect: usize, kind: TimelineKind, message_id: Option<Name>, reason: Option<Name>) {
    let Decision { effects, timeline, state, stats, .. } = decision;
    let Some(Effect::Send(send)) = effects.get(effect) else { return };
    for entry in timeline {
        if entry.kind == TimelineKind::Sent && entry.flow.as_deref() == Some(&send.flow) && entry.step_id.as_deref() == Some(&send.step_id) {
            entry.kind = kind;
            entry.message_id.clone_from(&message_id);
            entry.reason.clone_from(&reason);
        }
    }
    if let Some(record) = state.recent_sends.iter_mut().rev().find(|r| r.flow == send.flow && r.step_id == send.step_id).map(std::sync::Arc::make_mut) {
        record.message_id = message_id.map(Into::into);
        if kind == TimelineKind::Failed {
            // Never sent: not counted as sent either.
            let scope = crate::stats::StatScope::Email(record.stats_key());
            stats.retain(|s| !(s.metric == crate::stats::Metric::Sent && s.scope == scope));
        }
    }
}

#[cfg(test)]
mod tests;

fn first_sight_without_email(index: Option<usize>, customer: &CustomerId) -> ServiceError {
    ServiceError::Invalid {
        index,
        error: FieldError::new("customer.email", "required", format!("customer.email is required the first time customer {customer:?} is seen")),
    }
}
