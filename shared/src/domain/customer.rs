//! What Aftercare keeps per customer: the profile with its aggregates, the active
//! enrollments, and recent sends. One customer is one unit of consistency.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::event::{BounceType, Event};
use super::values::{CustomerId, EmailAddress, Locale, TimeZone};

/// Ids and names kept in a customer's state: copied with every state copy, so a copy must
/// not allocate (short ones are inline, long ones shared).
pub type Name = smol_str::SmolStr;

/// The state's small maps (a few currencies, SKUs, flows), keyed by `Name`: a sorted `Vec`,
/// so copying one is one allocation, where a `BTreeMap` built a node entry by entry (a state
/// is copied on every load; BENCHMARKS.md). Stored as a JSON object, like a `BTreeMap`.
pub type NameMap<V> = litemap::LiteMap<Name, V>;

/// Ended enrollments by id, with when each ended.
pub type FinishedIds = litemap::LiteMap<FinishedId, DateTime<Utc>>;

/// An ended enrollment's id, `<flow>:<key>`, held as its two parts. Each part is short enough
/// to be inline where the whole id often is not (`shipping_confirmation:<order id>`), so a copy
/// of the list copies bytes, where it counted one more user of each id's shared text: a write
/// to memory not seen for a while, per id, each time an enrollment ended (BENCHMARKS.md, item 90).
/// Ordered, written and read as the whole id, so a stored state is the same JSON as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedId {
    flow: Name,
    /// None only for an id without a `:`, which no enrollment has; kept as read.
    key: Option<Name>,
}

impl FinishedId {
    /// `flow` is a flow id, which has no `:`.
    pub fn new(flow: &str, key: &str) -> Self {
        Self { flow: Name::new(flow), key: Some(Name::new(key)) }
    }

    /// The parts of `<flow>:<key>` (flow ids have no `:`; a key may).
    pub fn parse(id: &str) -> Self {
        match id.split_once(':') {
            Some((flow, key)) => Self::new(flow, key),
            None => Self { flow: Name::new(id), key: None },
        }
    }
}

/// As the whole ids order. A flow id has no `:` (`[a-z][a-z0-9_]*`), so ids first differ
/// within their flows, or where the shorter flow ends: there the one has its `:` (or its end,
/// without a key) and the other a letter, digit or `_`.
impl Ord for FinishedId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (a, b) = (self.flow.as_bytes(), other.flow.as_bytes());
        if a == b {
            return self.key.cmp(&other.key);
        }
        let common = a.len().min(b.len());
        match a[..common].cmp(&b[..common]) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let next = |id: &FinishedId, flow: &[u8]| flow.get(common).copied().or(id.key.as_ref().map(|_| b':'));
        next(self, a).cmp(&next(other, b))
    }
}

impl PartialOrd for FinishedId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for FinishedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.flow)?;
        match &self.key {
            Some(key) => write!(f, ":{key}"),
            None => Ok(()),
        }
    }
}

impl Serialize for FinishedId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FinishedId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;
        impl serde::de::Visitor<'_> for Id {
            type Value = FinishedId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an enrollment id")
            }
            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<FinishedId, E> {
                Ok(FinishedId::parse(id))
            }
        }
        deserializer.deserialize_str(Id)
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: CustomerId,
    #[serde(default)]
    pub email: Option<EmailAddress>,
    #[serde(default)]
    pub first_name: Option<Name>,
    #[serde(default)]
    pub last_name: Option<Name>,
    #[serde(default)]
    pub locale: Option<Locale>,
    #[serde(default)]
    pub timezone: Option<TimeZone>,
    #[serde(default)]
    pub birthday: Option<NaiveDate>,
    #[serde(default)]
    pub has_account: Option<bool>,
    /// Opt-in only: new customers start without consent.
    #[serde(default)]
    pub marketing_consent: bool,
    #[serde(default)]
    pub unsubscribed: bool,
    /// A permanent bounce: no email of any kind.
    #[serde(default)]
    pub bounced: bool,
    /// A complaint: no marketing email (and counts as an unsubscribe).
    #[serde(default)]
    pub complained: bool,
    #[serde(default)]
    pub orders_count: u32,
    /// Total spent per currency code. This map and the next change only with an order, so a
    /// copied profile shares them with its original (`Arc::make_mut` copies one on change).
    #[serde(default)]
    pub total_spent: Arc<NameMap<Decimal>>,
    /// How many orders contained each SKU.
    #[serde(default)]
    pub sku_order_counts: Arc<NameMap<u32>>,
    #[serde(default)]
    pub first_order_at: Option<DateTime<Utc>>,
    /// The id of the first order seen (thank-you notes for first orders).
    #[serde(default)]
    pub first_order_id: Option<Name>,
    #[serde(default)]
    pub last_order_at: Option<DateTime<Utc>>,
    /// Email opens of the last 30 days (engagement rules).
    #[serde(default)]
    pub opens: Vec<DateTime<Utc>>,
    /// When each flow last sent this customer anything.
    #[serde(default)]
    pub last_sent: NameMap<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Copied with the state it is part of (`CustomerState::clone`): an open is pushed on the copy,
/// which a derived clone, sized to the list, made a reallocation and a copy of it.
impl Clone for Profile {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            locale: self.locale.clone(),
            timezone: self.timezone,
            birthday: self.birthday,
            has_account: self.has_account,
            marketing_consent: self.marketing_consent,
            unsubscribed: self.unsubscribed,
            bounced: self.bounced,
            complained: self.complained,
            orders_count: self.orders_count,
            total_spent: self.total_spent.clone(),
            sku_order_counts: self.sku_order_counts.clone(),
            first_order_at: self.first_order_at,
            first_order_id: self.first_order_id.clone(),
            last_order_at: self.last_order_at,
            // Most customers have no recent open, and their copy allocates nothing.
            opens: if self.opens.is_empty() { Vec::new() } else { with_room(&self.opens) },
            last_sent: self.last_sent.clone(),
            created_at: self.created_at,
        }
    }
}

impl Profile {
    pub fn new(id: CustomerId, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            email: None,
            first_name: None,
            last_name: None,
            locale: None,
            timezone: None,
            birthday: None,
            has_account: None,
            marketing_consent: false,
            unsubscribed: false,
            bounced: false,
            complained: false,
            orders_count: 0,
            total_spent: Arc::default(),
            sku_order_counts: Arc::default(),
            first_order_at: None,
            first_order_id: None,
            last_order_at: None,
            opens: Vec::new(),
            last_sent: NameMap::new(),
            created_at,
        }
    }

    pub fn purchased_skus(&self) -> BTreeSet<&str> {
        self.sku_order_counts.keys().map(Name::as_str).collect()
    }

    /// Whether `apply` could change anything: a given field that differs, a consent, or an
    /// event type that counts or flags something. A delivery or a shipment with the fields
    /// the profile already has changes nothing, and its state keeps sharing the profile.
    pub fn changed_by(&self, event: &Event) -> bool {
        let c = &event.customer;
        macro_rules! differs {
            ($($field:ident),*) => { false $( || c.$field.as_ref().is_some_and(|v| self.$field.as_ref() != Some(v)) )* };
        }
        differs!(email, first_name, last_name, locale, timezone, birthday, has_account)
            || c.marketing_consent.is_some_and(|consent| consent != self.marketing_consent || (consent && self.unsubscribed))
            || matches!(event.event_type.as_str(), "order_placed" | "email_opened" | "unsubscribed" | "subscribed" | "email_bounced" | "email_complained")
    }

    /// Folds one event into the profile: given fields overwrite, absent fields stay.
    pub fn apply(&mut self, event: &Event) {
        let c = &event.customer;
        macro_rules! set_if_given {
            ($($field:ident),*) => { $( if let Some(v) = &c.$field { self.$field = Some(v.clone()); } )* };
        }
        set_if_given!(email, first_name, last_name, locale, timezone, birthday, has_account);
        if let Some(consent) = c.marketing_consent {
            self.marketing_consent = consent;
            if consent {
                self.unsubscribed = false;
            }
        }
        match event.event_type.as_str() {
            "order_placed" => {
                let Some(order) = &event.order else { return };
                let at = event.occurred_at_utc();
                self.orders_count += 1;
                if let (Some(total), Some(currency)) = (order.total, &order.currency) {
                    *Arc::make_mut(&mut self.total_spent).entry(Name::new(currency.as_str())).or_default() += total.0;
                }
                let skus: BTreeSet<&str> = order.items.iter().map(|i| i.sku.as_str()).collect();
                let counts = Arc::make_mut(&mut self.sku_order_counts);
                for sku in skus {
                    *counts.entry(Name::new(sku)).or_default() += 1;
                }
                if self.first_order_at.is_none_or(|first| at < first) {
                    self.first_order_id = Some(Name::new(&order.id));
                }
                self.first_order_at = Some(self.first_order_at.map_or(at, |first| first.min(at)));
                self.last_order_at = Some(self.last_order_at.map_or(at, |last| last.max(at)));
            }
            "email_opened" => self.opens.push(event.occurred_at_utc()),
            "unsubscribed" => self.unsubscribed = true,
            "subscribed" => {
                self.unsubscribed = false;
                self.marketing_consent = true;
            }
            "email_bounced" if event.email.as_ref().and_then(|e| e.bounce_type) == Some(BounceType::Permanent) => {
                self.bounced = true;
            }
            "email_complained" => {
                self.complained = true;
                self.unsubscribed = true;
            }
            _ => {}
        }
    }
}

/// A customer's place in one flow. `id` is `<flow>:<key>`, unique among active enrollments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    pub id: Name,
    pub flow: Name,
    pub flow_version: Name,
    pub key: Name,
    /// The step waiting to be due (a wait step's id).
    pub step_id: Name,
    pub due_at: Option<DateTime<Utc>>,
    /// What the next relative wait counts from: the trigger time, then each due time.
    pub anchor: DateTime<Utc>,
    /// New for each schedule (from the customer's counter), so an old callback is a no-op.
    pub generation: u32,
    pub entered_at: DateTime<Utc>,
    /// The event that started it: the context every template of the flow sees. Shared, so
    /// copying a state or an enrollment does not copy the event (it is the bulk of a state).
    pub trigger: std::sync::Arc<Event>,
    /// The order item this enrollment is about (`for_each` flows), seen as `item`. Shared
    /// for the same reason as `trigger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<std::sync::Arc<serde_json::Value>>,
    /// The A/B variant chosen by a split step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Name>,
    /// Send steps of this enrollment whose email was opened / clicked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opened: Vec<Name>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clicked: Vec<Name>,
    /// The customer date a date-triggered enrollment was started for (restart when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_value: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRecord {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub enrollment_id: Name,
    pub flow: Name,
    pub step_id: Name,
    pub template: Name,
    pub marketing: bool,
    #[serde(default)]
    pub message_id: Option<Name>,
    /// The A/B variant of the enrollment when it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Name>,
    #[serde(default)]
    pub delivered: bool,
    /// The first open and click (a click counts as an open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<DateTime<Utc>>,
}

impl SendRecord {
    /// The counters this email's feedback and conversions add to.
    pub fn stats_key(&self) -> crate::stats::EmailKey {
        crate::stats::EmailKey {
            flow: self.flow.clone(),
            step: self.step_id.clone(),
            template: self.template.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// Stored as `domain::stored` says: each trigger event once.
#[derive(Debug, PartialEq)]
pub struct CustomerState {
    /// Shared with the copy the state was loaded from until a decision changes it
    /// (`profile_mut`, `apply`): most steps and deliveries change nothing of it, and a send's
    /// intent shares it too. Behind a pointer either way: a state is moved whole several times
    /// an event, and the profile inline was 264 of its 344 bytes.
    pub profile: Arc<Profile>,
    /// Shared with the copy the state was loaded from: a decision changes one or two of them,
    /// and copies only those (`Arc::make_mut`), so loading a state does not copy every one.
    /// The list itself is shared too, until a decision changes it (`Enrollments::to_mut`).
    pub enrollments: Enrollments,
    /// Enrollment ids that ended, so a per-order flow never runs twice for one order (flows
    /// keyed by the customer are not kept: nothing asks for them). Shared with the loaded copy
    /// until one ends (`finished_mut`), as most events end nothing.
    pub finished: Arc<FinishedIds>,
    /// Sends of the last days, newest last, for smart sending and frequency rules. Shared
    /// with the loaded copy as the enrollments are: feedback changes one (`Arc::make_mut`).
    pub recent_sends: Vec<std::sync::Arc<SendRecord>>,
    /// The last schedule generation handed out. Unique per customer, so a restarted or
    /// re-entered enrollment never reuses the schedule name of the one it replaces.
    pub last_generation: u32,
}

/// A customer's active enrollments: a list shared with the state it was copied from until it
/// changes. Most events (opens, deliveries, clicks) change no enrollment, and a copy that
/// counted one more user of each enrollment wrote to every one of them (a cache miss each, on
/// a customer not seen for a while: most of the cost of copying a state).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrollments(Arc<Vec<Arc<Enrollment>>>);

impl Enrollments {
    pub fn new(list: Vec<Arc<Enrollment>>) -> Self {
        Self(Arc::new(list))
    }

    /// Whether this is the very list `other` holds (not a copy of it).
    pub fn is_shared_with(&self, other: &Enrollments) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The list, to change: first copied (with room for one more) if another state shares it.
    pub fn to_mut(&mut self) -> &mut Vec<Arc<Enrollment>> {
        unshared(&mut self.0, |list| with_room(list))
    }
}

impl std::ops::Deref for Enrollments {
    type Target = [Arc<Enrollment>];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Enrollments {
    type Item = &'a Arc<Enrollment>;
    type IntoIter = std::slice::Iter<'a, Arc<Enrollment>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<Arc<Enrollment>>> for Enrollments {
    fn from(list: Vec<Arc<Enrollment>>) -> Self {
        Self::new(list)
    }
}

impl CustomerState {
    /// The finished ids, to change: first copied (with room for one more) if the loaded state
    /// shares them. (`Arc::make_mut` would copy them to size, and the insert that follows
    /// would then double the list.)
    pub fn finished_mut(&mut self) -> &mut FinishedIds {
        // Already in key order: the copy needs no sorting.
        unshared(&mut self.finished, |ids| FinishedIds::from_sorted_store_unchecked(with_room(ids.as_slice())))
    }

    /// The profile, to change: first copied if the loaded state shares it.
    pub fn profile_mut(&mut self) -> &mut Profile {
        Arc::make_mut(&mut self.profile)
    }

    /// Whether the enrollment of this id (`<flow>:<key>`) ended and is remembered.
    pub fn has_finished(&self, id: &str) -> bool {
        self.finished.contains_key(&FinishedId::parse(id))
    }

    /// Folds one event into the profile, copying it only if the event changes something.
    pub fn apply(&mut self, event: &Event) {
        if self.profile.changed_by(event) {
            self.profile_mut().apply(event);
        }
    }

    pub fn new(id: CustomerId, now: DateTime<Utc>) -> Self {
        Self { profile: Arc::new(Profile::new(id, now)), enrollments: Enrollments::default(), finished: Arc::default(), recent_sends: Vec::new(), last_generation: 0 }
    }
}

/// A copy of a state is made to be decided on (the in-memory store's `load`), and nearly every
/// decision ends an enrollment or records a send. A derived clone sizes each list to its length,
/// so that first push copied the whole list again; this one leaves room for it.
impl Clone for CustomerState {
    fn clone(&self) -> Self {
        Self {
            profile: self.profile.clone(),
            enrollments: self.enrollments.clone(),
            finished: self.finished.clone(),
            recent_sends: with_room(&self.recent_sends),
            last_generation: self.last_generation,
        }
    }
}

/// `shared`'s value to change, first replaced by `copy` of it if another holder shares it
/// (`Arc::make_mut` would copy it with `Clone`, sized to its length).
fn unshared<T: Clone>(shared: &mut Arc<T>, copy: impl FnOnce(&T) -> T) -> &mut T {
    if Arc::get_mut(shared).is_none() {
        *shared = Arc::new(copy(shared));
    }
    // Not shared now, so this copies nothing.
    Arc::make_mut(shared)
}

/// A copy of a list with room for one more item.
fn with_room<T: Clone>(items: &[T]) -> Vec<T> {
    let mut copy = Vec::with_capacity(items.len() + 1);
    copy.extend_from_slice(items);
    copy
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Event,
    Entered,
    Sent,
    Skipped,
    Exited,
    Completed,
    Failed,
}

/// One line of a customer's history: an event received, or a decision with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Name>,
}

impl TimelineEntry {
    pub fn new(at: DateTime<Utc>, kind: TimelineKind) -> Self {
        Self { at, kind, event_id: None, event_type: None, flow: None, step_id: None, template: None, reason: None, message_id: None }
    }
    pub fn for_event(event: &Event, at: DateTime<Utc>) -> Self {
        Self { event_id: Some(Name::new(event.id.as_str())), event_type: Some(Name::new(event.event_type.as_str())), ..Self::new(at, TimelineKind::Event) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Finished ids kept as two parts order, write and read as the whole ids did (a
        /// `NameMap` of them): the stored JSON is the same, and reads back the same.
        #[test]
        fn finished_ids_are_stored_as_whole_ids_were(ids in proptest::collection::vec("[a2:-]{0,6}", 0..8)) {
            let at: DateTime<Utc> = "2026-11-20T00:00:00Z".parse().unwrap();
            let whole: NameMap<DateTime<Utc>> = ids.iter().map(|id| (Name::new(id), at)).collect();
            let parts: FinishedIds = ids.iter().map(|id| (FinishedId::parse(id), at)).collect();
            let json = serde_json::to_string(&parts).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&whole).unwrap());
            proptest::prop_assert_eq!(serde_json::from_str::<FinishedIds>(&json).unwrap(), parts);
            for id in &ids {
                proptest::prop_assert_eq!(FinishedId::parse(id).to_string(), id.clone());
            }
        }
    }

    proptest::proptest! {
        /// `changed_by` may say yes too often, never too seldom: when it says no, `apply`
        /// changes nothing (a state would otherwise keep a stale shared profile).
        #[test]
        fn an_event_said_not_to_change_a_profile_does_not(
            fields in proptest::collection::vec(0u8..3, 7),
            consent in 0u8..3,
            stored_consent: bool,
            stored_unsubscribed: bool,
            event_type in 0usize..9,
        ) {
            let id = CustomerId::parse("c1").unwrap();
            let mut profile = Profile::new(id, "2026-11-01T00:00:00Z".parse().unwrap());
            profile.email = EmailAddress::parse("c1@example.jp").ok();
            profile.first_name = Some("花子".into());
            profile.locale = Locale::parse("ja-JP").ok();
            profile.birthday = NaiveDate::from_ymd_opt(1990, 1, 2);
            profile.has_account = Some(true);
            profile.marketing_consent = stored_consent;
            profile.unsubscribed = stored_unsubscribed;
            // Each field absent (0), as stored (1) or different (2).
            let values = [
                ("email", serde_json::json!("c1@example.jp"), serde_json::json!("other@example.jp")),
                ("first_name", serde_json::json!("花子"), serde_json::json!("Sam")),
                ("last_name", serde_json::Value::Null, serde_json::json!("山田")),
                ("locale", serde_json::json!("ja-JP"), serde_json::json!("en-US")),
                ("timezone", serde_json::Value::Null, serde_json::json!("Asia/Tokyo")),
                ("birthday", serde_json::json!("1990-01-02"), serde_json::json!("1991-03-04")),
                ("has_account", serde_json::json!(true), serde_json::json!(false)),
            ];
            let mut customer = serde_json::json!({"id": "c1"});
            for ((field, same, other), choice) in values.iter().zip(&fields) {
                let value = match choice { 1 => same, 2 => other, _ => continue };
                if !value.is_null() {
                    customer[*field] = value.clone();
                }
            }
            if consent > 0 {
                customer["marketing_consent"] = serde_json::json!(consent == 2);
            }
            let types = ["order_delivered", "order_shipped", "order_placed", "email_opened", "email_delivered", "unsubscribed", "subscribed", "email_bounced", "email_complained"];
            let mut value = serde_json::json!({"id": "e1", "type": types[event_type], "occurred_at": "2026-11-20T10:00:00+09:00", "customer": customer});
            if types[event_type].starts_with("order_") {
                value["order"] = serde_json::json!({"id": "A1", "total": "100", "currency": "JPY", "items": [{"sku": "S", "name": "n", "quantity": 1, "unit_price": "100"}]});
            }
            if types[event_type] == "order_shipped" {
                value["shipment"] = serde_json::json!({"carrier": "yamato", "tracking_number": "t1"});
            }
            if types[event_type].starts_with("email_") {
                value["email"] = serde_json::json!({"message_id": "m1", "bounce_type": "permanent"});
            }
            let event = Event::parse(&value).unwrap();
            let mut applied = profile.clone();
            applied.apply(&event);
            if !profile.changed_by(&event) {
                proptest::prop_assert_eq!(applied, profile);
            }
        }
    }

    /// `NameMap` replaced `BTreeMap` in stored states: the same JSON object, keys in order,
    /// whatever order (or repetition) it is read in, the last value of a key winning.
    #[test]
    fn a_name_map_reads_and_writes_json_objects_as_a_btree_map_did() {
        let text = r#"{"USD":"12.50","JPY":"6800","EUR":"1","JPY":"9000"}"#;
        let map: NameMap<Decimal> = serde_json::from_str(text).unwrap();
        let tree: std::collections::BTreeMap<Name, Decimal> = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&map).unwrap(), serde_json::to_string(&tree).unwrap());
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"EUR":"1","JPY":"9000","USD":"12.50"}"#);
        assert_eq!(map.get("JPY"), Some(&Decimal::new(9000, 0)));
        assert_eq!(map.len(), 3);
    }

    /// The hand-written clone copies every field (each one set here, none to its default)
    /// and leaves room for the next open, and none where there is no open.
    #[test]
    fn a_profile_copies_every_field_and_has_room_for_an_open() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let profile = Profile {
            id: CustomerId::parse("cust-1").unwrap(),
            email: Some(EmailAddress::parse("ann@example.com").unwrap()),
            first_name: Some(Name::new("Ann")),
            last_name: Some(Name::new("Lee")),
            locale: Some(Locale::parse("ja").unwrap()),
            timezone: Some(TimeZone::parse("Asia/Tokyo").unwrap()),
            birthday: NaiveDate::from_ymd_opt(1990, 4, 1),
            has_account: Some(true),
            marketing_consent: true,
            unsubscribed: true,
            bounced: true,
            complained: true,
            orders_count: 3,
            total_spent: Arc::new(NameMap::from_iter([(Name::new("JPY"), Decimal::new(6800, 0))])),
            sku_order_counts: Arc::new(NameMap::from_iter([(Name::new("A1"), 2)])),
            first_order_at: Some(at("2026-01-02T03:04:05Z")),
            first_order_id: Some(Name::new("order-1")),
            last_order_at: Some(at("2026-11-02T03:04:05Z")),
            opens: vec![at("2026-11-19T00:00:00Z"), at("2026-11-20T00:00:00Z")],
            last_sent: NameMap::from_iter([(Name::new("welcome"), at("2026-11-03T00:00:00Z"))]),
            created_at: at("2026-01-01T00:00:00Z"),
        };
        let copy = profile.clone();
        assert_eq!(copy, profile);
        assert_eq!(serde_json::to_value(&copy).unwrap(), serde_json::to_value(&profile).unwrap());
        assert!(copy.opens.capacity() > copy.opens.len(), "room for one more open");
        let fresh = Profile::new(CustomerId::parse("cust-2").unwrap(), at("2026-01-01T00:00:00Z"));
        assert_eq!(fresh.clone().opens.capacity(), 0, "no open, no allocation");
    }
}
