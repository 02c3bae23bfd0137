//! The narrow traits through which services touch the world. Each has an in-memory twin
//! (`memory`), a local one (`local`, for `aftercare dev`) and an AWS one (`aws`).

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{CustomerId, CustomerState, Event, EventId, Name, TimelineEntry};
use crate::stats::StatCount;

/// Failures of an adapter. `Retryable` ones (throttling, network) are worth another try.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Fatal(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// One atomic change of one customer: the new state, the event that caused it (deduplicated
/// by id), and the timeline lines it wrote.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    pub customer_id: CustomerId,
    /// `None`: the customer must not exist yet.
    pub expected_version: Option<u64>,
    pub state: CustomerState,
    /// Borrowed: the caller holds the event, and a store only reads it.
    pub event: Option<&'a Event>,
    pub timeline: Vec<TimelineEntry>,
    /// Report counters, added in the same atomic write (so a retry never counts twice).
    pub stats: Vec<StatCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed { version: u64 },
    /// Someone else changed the customer first: re-read and decide again.
    VersionConflict,
    /// The event id was already recorded: nothing was written.
    DuplicateEvent,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError>;
    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError>;
    /// `load` and `event_seen` at once: what ingesting an event reads first. By default both
    /// are asked together (on DynamoDB, one round trip of waiting instead of two); a store
    /// that keeps them in one place answers with one lookup.
    async fn load_for_event(&self, customer: &CustomerId, event: &EventId) -> Result<(Option<Versioned<CustomerState>>, bool), PortError> {
        let (loaded, seen) = futures_util::future::join(self.load(customer), self.event_seen(customer, event)).await;
        Ok((loaded?, seen?))
    }
    /// What a decision starts from: the state and, for an event, whether it was seen. By
    /// default a copy, read as `load_for_event` / `load` read it; a store that lends its states
    /// out (the simulator's, `MemoryStore::lending`) gives the state itself, and takes it back
    /// with the commit or `hand_back`.
    async fn load_to_decide(&self, customer: &CustomerId, event: Option<&EventId>) -> Result<(Option<Versioned<CustomerState>>, bool), PortError> {
        match event {
            Some(event) => self.load_for_event(customer, event).await,
            None => Ok((self.load(customer).await?, false)),
        }
    }
    /// A state `load_to_decide` gave that will not be committed (its input was a duplicate,
    /// changed nothing, or was refused). Only a lending store needs it back.
    async fn hand_back(&self, _customer: &CustomerId, _state: CustomerState) {}
    async fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, PortError>;
    /// Lines learnt after the commit (a marketing send's message id, a failure).
    async fn append_timeline(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError>;
    /// The customer's history, oldest first.
    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError>;
    /// Report counters of the days `from..=to`, one row per day, scope and metric.
    async fn stats(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StatCount>, PortError>;
    /// Forgets the customer: state, events, dedupe markers and timeline. Counters stay (they
    /// hold no personal data). Erasing an unknown customer is success.
    async fn erase(&self, customer: &CustomerId) -> Result<(), PortError>;
}

pub use crate::engine::ScheduledStep;

#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Idempotent: creating a name that exists is success.
    async fn create(&self, step: &ScheduledStep) -> Result<(), PortError>;
    /// Idempotent: deleting a name that does not exist is success.
    async fn delete(&self, name: &str) -> Result<(), PortError>;
}

/// One email as the mailer takes it. It borrows what the store policy, the send and the
/// rendered email already hold (the simulator makes one per send and discards it; owned, it was
/// twenty allocations each); `to_owned_email` makes a copy (the in-memory mailer's record).
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEmail<'a> {
    pub from_name: Cow<'a, str>,
    pub from_address: Cow<'a, str>,
    pub to: Cow<'a, str>,
    pub reply_to: Option<Cow<'a, str>>,
    pub subject: Cow<'a, str>,
    pub html: Cow<'a, str>,
    pub text: Cow<'a, str>,
    pub headers: Vec<(&'static str, Cow<'a, str>)>,
    /// SES message tags: what the feedback function needs without a lookup.
    pub tags: Vec<(&'static str, Cow<'a, str>)>,
}

impl OutgoingEmail<'_> {
    pub fn to_owned_email(&self) -> OutgoingEmail<'static> {
        let own = |text: &Cow<'_, str>| Cow::Owned(String::from(text.as_ref()));
        let own_pairs = |pairs: &[(&'static str, Cow<'_, str>)]| pairs.iter().map(|(name, value)| (*name, own(value))).collect();
        OutgoingEmail {
            from_name: own(&self.from_name),
            from_address: own(&self.from_address),
            to: own(&self.to),
            reply_to: self.reply_to.as_ref().map(own),
            subject: own(&self.subject),
            html: own(&self.html),
            text: own(&self.text),
            headers: own_pairs(&self.headers),
            tags: own_pairs(&self.tags),
        }
    }

    /// A tag's value, when the email has that tag.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(tag, _)| *tag == name).map(|(_, value)| value.as_ref())
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Returns the provider's message id.
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<String, PortError>;
}

/// A domain event for integrators (EventBridge `Email Sent`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EmailSent {
    pub customer_id: Name,
    pub flow: Name,
    pub step: Name,
    pub template: Name,
    pub locale: Name,
    pub category: Name,
    pub message_id: Name,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait Publisher: Send + Sync {
    async fn email_sent(&self, event: &EmailSent) -> Result<(), PortError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
