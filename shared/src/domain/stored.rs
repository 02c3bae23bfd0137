//! The stored form of a [`CustomerState`] (DynamoDB item, SQLite row, export): each trigger
//! event once, in `triggers`, with enrollments pointing at it by index. One order starts most
//! of the default flows, so the same event used to be written once per waiting enrollment —
//! over half of a typical state's bytes, and DynamoDB bills writes per KB. States written
//! before this carry the event inline in every enrollment; they still load.
//!
//! DynamoDB keeps that JSON deflated ([`CustomerState::to_deflated_json`]): keys and
//! timestamps repeat, so a typical 5 KB state becomes about 1.3 KB, and a transactional write
//! is billed 2 units per started KB of the item. The deflate is primed with a preset
//! dictionary ([`Deflated::Dictionary1`]): a state's first mention of each field and flow
//! name then costs a back-reference instead of its letters, which takes a typical state
//! under 1 KB (BENCHMARKS.md, "Cost per 1,000 orders").

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::customer::{CustomerState, Enrollment, FinishedIds, Name, Profile, SendRecord};
use super::event::Event;

/// How a state's bytes were deflated; the DynamoDB item says which by its attribute name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deflated {
    /// Raw deflate, no dictionary: items written before dictionaries (`state_z`).
    Plain,
    /// Raw deflate primed with [`STATE_DICTIONARY_1`] (`state_z1`); what is written now.
    Dictionary1,
}

/// Scrubbed skeletons of stored states: three states of the generated store that between
/// them hold every default flow, and one trigger of each other event type, with every
/// customer's value, product and id replaced by `""` and every time by one placeholder. Only
/// names (fields, default flows, steps, templates, event types) are left. Items in live tables
/// can only be read with it, byte for byte: never edit it — a better dictionary is a new
/// variant of [`Deflated`] with its own file and attribute, and the old one stays readable.
pub const STATE_DICTIONARY_1: &[u8] = include_bytes!("state-dictionary-1.json");

impl Deflated {
    /// What the adapters write.
    pub const CURRENT: Deflated = Deflated::Dictionary1;

    /// The DynamoDB attribute that holds a state deflated this way.
    pub fn attribute(self) -> &'static str {
        match self {
            Deflated::Plain => "state_z",
            Deflated::Dictionary1 => "state_z1",
        }
    }

    fn dictionary(self) -> Option<&'static [u8]> {
        match self {
            Deflated::Plain => None,
            Deflated::Dictionary1 => Some(STATE_DICTIONARY_1),
        }
    }
}

impl CustomerState {
    /// The stored JSON, raw-deflated (RFC 1951) the [`Deflated::CURRENT`] way.
    pub fn to_deflated_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let json = serde_json::to_vec(self)?;
        COMPRESSOR
            .with(|compressor| {
                let mut compressor = compressor.borrow_mut();
                compressor.reset();
                if let Some(dictionary) = Deflated::CURRENT.dictionary() {
                    compressor.set_dictionary(dictionary).map_err(std::io::Error::other)?;
                }
                drive(&mut *compressor, &json, json.len() / 3 + 64)
            })
            .map_err(serde_json::Error::io)
    }

    /// Reads what [`Self::to_deflated_json`] wrote, now (`how` = [`Deflated::CURRENT`]) or before.
    pub fn from_deflated_json(bytes: &[u8], how: Deflated) -> Result<CustomerState, serde_json::Error> {
        let json = DECOMPRESSOR
            .with(|decompressor| {
                let mut decompressor = decompressor.borrow_mut();
                decompressor.reset(false);
                if let Some(dictionary) = how.dictionary() {
                    decompressor.set_dictionary(dictionary).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                }
                drive(&mut *decompressor, bytes, bytes.len() * 4 + 64)
            })
            .map_err(serde_json::Error::io)?;
        serde_json::from_slice(&json)
    }
}

/// A compressor or a decompressor, seen the same way by `drive`.
trait Stream {
    /// Bytes read and written so far.
    fn totals(&self) -> (u64, u64);
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<flate2::Status, std::io::Error>;
}

impl Stream for flate2::Compress {
    fn totals(&self) -> (u64, u64) {
        (self.total_in(), self.total_out())
    }
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<flate2::Status, std::io::Error> {
        self.compress_vec(input, out, flate2::FlushCompress::Finish).map_err(std::io::Error::other)
    }
}

impl Stream for flate2::Decompress {
    fn totals(&self) -> (u64, u64) {
        (self.total_in(), self.total_out())
    }
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<flate2::Status, std::io::Error> {
        self.decompress_vec(input, out, flate2::FlushDecompress::None).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Runs `stream` over all of `input` into an output that grows as needed, to the stream's end.
fn drive(stream: &mut impl Stream, input: &[u8], first_guess: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::with_capacity(first_guess);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = stream.totals();
        let (read, _) = before;
        match stream.step(&input[offset(read, input.len())..], &mut out)? {
            flate2::Status::StreamEnd => return Ok(out),
            // Room to write and nothing read or written: the input stops mid-stream.
            _ if stream.totals() == before => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the deflated state ends early")),
            _ => {}
        }
    }
}

/// Where the unread part of an input starts, from a (de)compressor's running count.
fn offset(total: u64, len: usize) -> usize {
    usize::try_from(total).map_or(len, |n| n.min(len))
}

thread_local! {
    // Kept per thread and reset for each state: a compressor's tables are a few hundred KB,
    // and allocating and zeroing them for every commit was a tenth of a warm feedback
    // invocation's CPU (BENCHMARKS.md, "Lambda invocations").
    static COMPRESSOR: std::cell::RefCell<flate2::Compress> = std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::default(), false));
    static DECOMPRESSOR: std::cell::RefCell<flate2::Decompress> = std::cell::RefCell::new(flate2::Decompress::new(false));
}

#[derive(Serialize)]
struct StateOut<'a> {
    profile: &'a Profile,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    triggers: Vec<&'a Event>,
    enrollments: Vec<EnrollmentOut<'a>>,
    finished: &'a FinishedIds,
    recent_sends: &'a [Arc<SendRecord>],
    last_generation: u32,
}

#[derive(Serialize)]
struct EnrollmentOut<'a> {
    id: &'a str,
    flow: &'a str,
    flow_version: &'a str,
    key: &'a str,
    step_id: &'a str,
    due_at: &'a Option<DateTime<Utc>>,
    anchor: &'a DateTime<Utc>,
    generation: u32,
    entered_at: &'a DateTime<Utc>,
    /// Index into `triggers`.
    trigger: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: &'a Option<Arc<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: &'a Option<Name>,
    #[serde(skip_serializing_if = "<[Name]>::is_empty")]
    opened: &'a [Name],
    #[serde(skip_serializing_if = "<[Name]>::is_empty")]
    clicked: &'a [Name],
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger_value: &'a Option<Name>,
}

impl Serialize for CustomerState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let CustomerState { profile, enrollments, finished, recent_sends, last_generation } = self;
        let mut triggers: Vec<&Arc<Event>> = Vec::new();
        let enrollments = enrollments
            .iter()
            .map(|enrollment| {
                // Destructured without `..`: a new field must be given a stored form here.
                let Enrollment { id, flow, flow_version, key, step_id, due_at, anchor, generation, entered_at, trigger, item, variant, opened, clicked, trigger_value } = &**enrollment;
                // Shared in memory (`Arc`), or equal (loaded from the older form).
                let index = match triggers.iter().position(|t| Arc::ptr_eq(t, trigger) || **t == *trigger) {
                    Some(index) => index,
                    None => {
                        triggers.push(trigger);
                        triggers.len() - 1
                    }
                };
                EnrollmentOut {
                    id,
                    flow,
                    flow_version,
                    key,
                    step_id,
                    due_at,
                    anchor,
                    generation: *generation,
                    entered_at,
                    trigger: index,
                    item,
                    variant,
                    opened,
                    clicked,
                    trigger_value,
                }
            })
            .collect();
        StateOut { profile, triggers: triggers.into_iter().map(|t| &**t).collect(), enrollments, finished, recent_sends, last_generation: *last_generation }
            .serialize(serializer)
    }
}

#[derive(Deserialize)]
struct StateIn {
    profile: Profile,
    #[serde(default)]
    triggers: Vec<Arc<Event>>,
    #[serde(default)]
    enrollments: Vec<EnrollmentIn>,
    #[serde(default)]
    finished: FinishedIds,
    #[serde(default)]
    recent_sends: Vec<Arc<SendRecord>>,
    #[serde(default)]
    last_generation: u32,
}

#[derive(Deserialize)]
struct EnrollmentIn {
    id: Name,
    flow: Name,
    flow_version: Name,
    key: Name,
    step_id: Name,
    due_at: Option<DateTime<Utc>>,
    anchor: DateTime<Utc>,
    generation: u32,
    entered_at: DateTime<Utc>,
    trigger: TriggerIn,
    #[serde(default)]
    item: Option<Arc<serde_json::Value>>,
    #[serde(default)]
    variant: Option<Name>,
    #[serde(default)]
    opened: Vec<Name>,
    #[serde(default)]
    clicked: Vec<Name>,
    #[serde(default)]
    trigger_value: Option<Name>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TriggerIn {
    Index(usize),
    /// The form written before `triggers` existed.
    Inline(Arc<Event>),
}

impl<'de> Deserialize<'de> for CustomerState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let StateIn { profile, mut triggers, enrollments, finished, recent_sends, last_generation } = StateIn::deserialize(deserializer)?;
        let enrollments = enrollments
            .into_iter()
            .map(|e| {
                let trigger = match e.trigger {
                    // Shared again, as the engine made them.
                    TriggerIn::Inline(event) => match triggers.iter().find(|t| **t == event) {
                        Some(shared) => shared.clone(),
                        None => {
                            triggers.push(event.clone());
                            event
                        }
                    },
                    TriggerIn::Index(index) => triggers.get(index).cloned().ok_or_else(|| {
                        de::Error::custom(format_args!("enrollment {:?}: trigger {index} is not in triggers (it has {})", e.id, triggers.len()))
                    })?,
                };
                Ok(Arc::new(Enrollment {
                    id: e.id,
                    flow: e.flow,
                    flow_version: e.flow_version,
                    key: e.key,
                    step_id: e.step_id,
                    due_at: e.due_at,
                    anchor: e.anchor,
                    generation: e.generation,
                    entered_at: e.entered_at,
                    trigger,
                    item: e.item,
                    variant: e.variant,
                    opened: e.opened,
                    clicked: e.clicked,
                    trigger_value: e.trigger_value,
                }))
            })
            .collect::<Result<Vec<_>, D::Error>>()?;
        Ok(CustomerState { profile: Arc::new(profile), enrollments: enrollments.into(), finished: Arc::new(finished), recent_sends, last_generation })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::CustomerId;
    use crate::ports::Store;
    use crate::testing::{at, memory_app, order_placed, repo_flows};

    /// A real state: one order, which starts most of the default flows.
    async fn state_after_an_order() -> CustomerState {
        let app = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
        let order = order_placed("e1", "cust-1", "A1", "2026-11-20T10:15:00+09:00");
        app.app.ingest_json(&[order]).await.unwrap();
        let customer = CustomerId::parse("cust-1").unwrap();
        app.store.load(&customer).await.unwrap().unwrap().value
    }

    /// The form written before `triggers`: the event inline in every enrollment.
    fn inline_form(stored: &Value) -> Value {
        let mut old = stored.clone();
        let triggers = old["triggers"].as_array().cloned().unwrap();
        for enrollment in old["enrollments"].as_array_mut().unwrap() {
            let index = enrollment["trigger"].as_u64().unwrap() as usize;
            enrollment["trigger"] = triggers[index].clone();
        }
        old.as_object_mut().unwrap().remove("triggers");
        old
    }

    #[tokio::test]
    async fn each_trigger_event_is_stored_once_and_loads_back_shared() {
        let state = state_after_an_order().await;
        assert!(state.enrollments.len() >= 3, "an order starts several flows: {:?}", state.enrollments.iter().map(|e| &e.id).collect::<Vec<_>>());
        let stored = serde_json::to_value(&state).unwrap();
        assert_eq!(stored["triggers"].as_array().map(Vec::len), Some(1), "one event started them all: {stored}");
        assert!(stored["enrollments"].as_array().unwrap().iter().all(|e| e["trigger"] == json!(0)));

        let loaded: CustomerState = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(loaded, state);
        let first = &loaded.enrollments[0].trigger;
        assert!(loaded.enrollments.iter().all(|e| Arc::ptr_eq(&e.trigger, first)), "loaded enrollments share their trigger");

        let new_size = serde_json::to_vec(&stored).unwrap().len();
        let old_size = serde_json::to_vec(&inline_form(&stored)).unwrap().len();
        let event_size = serde_json::to_vec(&stored["triggers"][0]).unwrap().len();
        let saved = (state.enrollments.len() - 1) * event_size;
        assert!(new_size + saved <= old_size + 16 * state.enrollments.len(), "stored {new_size} bytes, inline {old_size}, event {event_size}");
    }

    #[tokio::test]
    async fn a_state_stored_with_inline_triggers_still_loads_and_is_rewritten_compact() {
        let state = state_after_an_order().await;
        let stored = serde_json::to_value(&state).unwrap();
        let loaded: CustomerState = serde_json::from_value(inline_form(&stored)).unwrap();
        assert_eq!(loaded, state);
        let first = &loaded.enrollments[0].trigger;
        assert!(loaded.enrollments.iter().all(|e| Arc::ptr_eq(&e.trigger, first)), "equal inline events are shared again");
        assert_eq!(serde_json::to_value(&loaded).unwrap(), stored);
    }

    #[tokio::test]
    async fn deflated_json_loads_back_equal_and_is_a_fraction_of_the_json() {
        let state = state_after_an_order().await;
        let deflated = state.to_deflated_json().unwrap();
        assert_eq!(CustomerState::from_deflated_json(&deflated, Deflated::CURRENT).unwrap(), state);
        let json = serde_json::to_vec(&state).unwrap().len();
        assert!(deflated.len() * 2 < json, "deflated {} bytes, JSON {json}", deflated.len());
        let error = CustomerState::from_deflated_json(b"{\"profile\": 1}", Deflated::CURRENT).unwrap_err();
        assert!(error.is_io() || error.is_syntax() || error.is_data(), "{error}");
    }

    /// Raw deflate of `json`, with or without a preset dictionary, as any zlib would write it.
    fn deflate_with(json: &[u8], dictionary: Option<&[u8]>) -> Vec<u8> {
        let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
        if let Some(dictionary) = dictionary {
            compressor.set_dictionary(dictionary).unwrap();
        }
        let mut out = Vec::with_capacity(json.len() + 64);
        assert_eq!(compressor.compress_vec(json, &mut out, flate2::FlushCompress::Finish).unwrap(), flate2::Status::StreamEnd);
        out
    }

    #[tokio::test]
    async fn the_dictionary_shrinks_a_typical_state_and_states_deflated_without_it_still_load() {
        let state = state_after_an_order().await;
        let json = serde_json::to_vec(&state).unwrap();
        let plain = deflate_with(&json, None);
        let primed = state.to_deflated_json().unwrap();
        assert_eq!(primed, deflate_with(&json, Some(STATE_DICTIONARY_1)), "what is written is the dictionary-primed raw deflate");
        // Measured for this state: 880 bytes without, 495 with; the claim is a third less.
        assert!(primed.len() * 3 < plain.len() * 2, "with the dictionary {} bytes, without {}", primed.len(), plain.len());
        assert_eq!(CustomerState::from_deflated_json(&plain, Deflated::Plain).unwrap(), state, "items written before the dictionary load");
        // Read the wrong way, a state is an error, never another state.
        assert!(CustomerState::from_deflated_json(&primed, Deflated::Plain).is_err());
    }

    #[test]
    fn the_dictionary_is_the_one_items_were_written_with() {
        use sha2::{Digest, Sha256};
        let digest: String = Sha256::digest(STATE_DICTIONARY_1).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, "11fe31b118bf7d2d99f4e1edd598fd5e39cfb322ec55e0361fbee063dfb7dc0d", "edited: items written with it no longer read back");
        let text = std::str::from_utf8(STATE_DICTIONARY_1).unwrap();
        assert!(!text.contains('@') && !text.contains("example"), "no customer's value in the dictionary");
    }

    /// The (de)compressor is kept between states: each must start afresh, grow its output past
    /// the first guess, and refuse a cut-off input rather than loop or return half a state.
    #[tokio::test]
    async fn deflating_reuses_one_compressor_and_any_size_of_state_round_trips() {
        let typical = state_after_an_order().await;
        let mut repetitive = typical.clone();
        // Deflates to far under a quarter of its JSON: decompression outgrows its first guess.
        repetitive.profile_mut().first_name = Some("ア".repeat(50_000).into());
        let mut incompressible = typical.clone();
        // Hardly deflates: compression outgrows its first guess of a third.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        incompressible.profile_mut().last_name = Some((0..40_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + (seed % 90) as u8)
        }).collect::<String>().into());
        for state in [&typical, &repetitive, &incompressible, &typical] {
            let deflated = state.to_deflated_json().unwrap();
            assert_eq!(&CustomerState::from_deflated_json(&deflated, Deflated::CURRENT).unwrap(), state);
            let json = serde_json::to_vec(state).unwrap();
            assert_eq!(deflated, deflate_with(&json, Some(STATE_DICTIONARY_1)), "as a fresh compressor writes it");
            let mut fresh = flate2::Decompress::new(false);
            fresh.set_dictionary(STATE_DICTIONARY_1).unwrap();
            let mut inflated = Vec::with_capacity(json.len() + 64);
            fresh.decompress_vec(&deflated, &mut inflated, flate2::FlushDecompress::Finish).unwrap();
            assert_eq!(inflated, json, "standard raw deflate, primed with the dictionary");
            let cut = CustomerState::from_deflated_json(&deflated[..deflated.len() / 2], Deflated::CURRENT).unwrap_err();
            assert!(cut.is_io(), "{cut}");
        }
        assert!(repetitive.to_deflated_json().unwrap().len() * 20 < serde_json::to_vec(&repetitive).unwrap().len());
    }

    #[tokio::test]
    async fn a_trigger_outside_triggers_is_an_error_naming_the_enrollment() {
        let state = state_after_an_order().await;
        let mut stored = serde_json::to_value(&state).unwrap();
        stored["enrollments"][0]["trigger"] = json!(7);
        let id = state.enrollments[0].id.clone();
        let error = serde_json::from_value::<CustomerState>(stored).unwrap_err().to_string();
        assert!(error.contains(&format!("enrollment {id:?}: trigger 7 is not in triggers (it has 1)")), "{error}");
    }
}
