//! The JSON the envelope parser reads: a `serde_json::Value`, or a `JsonDoc`, a lighter tree
//! for input read as text (the simulator's file): its strings borrow from the text, its
//! objects are lists, so parsing an event allocates little beyond what the event keeps.
//! Both are read through `Json`, so every rule of `Event::parse` is written once.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What the envelope parser asks of a JSON value.
pub(crate) trait Json: Sized {
    /// The value of `key` in an object (the last one, when a key repeats, as in a `Value`).
    fn field(&self, key: &str) -> Option<&Self>;
    fn is_object(&self) -> bool;
    fn is_null(&self) -> bool;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    fn as_number(&self) -> Option<&Number>;
    fn as_array(&self) -> Option<&[Self]>;
    /// For error messages: `a string`, `an object`, ….
    fn kind(&self) -> &'static str;
    /// An object as a `serde_json` map (`properties`, kept as given).
    fn to_map(&self) -> Option<Map<String, Value>>;
}

impl Json for Value {
    fn field(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn is_object(&self) -> bool {
        self.is_object()
    }
    fn is_null(&self) -> bool {
        self.is_null()
    }
    fn as_str(&self) -> Option<&str> {
        self.as_str()
    }
    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }
    fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
    fn to_map(&self) -> Option<Map<String, Value>> {
        self.as_object().cloned()
    }
}

/// A JSON document parsed from text (`serde_json::from_str::<JsonDoc>`), with the numbers
/// `serde_json` would give a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonDoc<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<JsonDoc<'a>>),
    /// In the text's order, repeated keys kept (`field` takes the last).
    Object(Vec<(Cow<'a, str>, JsonDoc<'a>)>),
}

impl Json for JsonDoc<'_> {
    fn field(&self, key: &str) -> Option<&Self> {
        match self {
            JsonDoc::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, JsonDoc::Object(_))
    }
    fn is_null(&self) -> bool {
        matches!(self, JsonDoc::Null)
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            JsonDoc::String(s) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            JsonDoc::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<&Number> {
        match self {
            JsonDoc::Number(n) => Some(n),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            JsonDoc::Array(items) => Some(items),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            JsonDoc::Null => "null",
            JsonDoc::Bool(_) => "a boolean",
            JsonDoc::Number(_) => "a number",
            JsonDoc::String(_) => "a string",
            JsonDoc::Array(_) => "an array",
            JsonDoc::Object(_) => "an object",
        }
    }
    fn to_map(&self) -> Option<Map<String, Value>> {
        match self.to_value() {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

impl JsonDoc<'_> {
    /// The same document as a `Value` (a repeated key keeps its last value, as parsing one does).
    pub fn to_value(&self) -> Value {
        match self {
            JsonDoc::Null => Value::Null,
            JsonDoc::Bool(b) => Value::Bool(*b),
            JsonDoc::Number(n) => Value::Number(n.clone()),
            JsonDoc::String(s) => Value::String(s.to_string()),
            JsonDoc::Array(items) => Value::Array(items.iter().map(JsonDoc::to_value).collect()),
            JsonDoc::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect()),
        }
    }
}

impl<'de> Deserialize<'de> for JsonDoc<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocVisitor)
    }
}

/// Room for this many fields when an object starts (its size is not known before it ends):
/// an event's objects have 4 to 8, so they fill one allocation instead of growing 4 → 8.
const OBJECT_FIELDS_GUESS: usize = 8;

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = JsonDoc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(JsonDoc::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(JsonDoc::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(JsonDoc::Number(n.into()))
    }
    // As `Value` does: a number that is no finite float becomes null.
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(n).map_or(JsonDoc::Null, JsonDoc::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(JsonDoc::String(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(JsonDoc::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(JsonDoc::String(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonDoc::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonDoc::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        JsonDoc::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonDoc::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(OBJECT_FIELDS_GUESS));
        while let Some(Key(key)) = map.next_key()? {
            fields.push((key, map.next_value()?));
        }
        Ok(JsonDoc::Object(fields))
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
