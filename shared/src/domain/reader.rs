//! Reads fields out of a JSON object while keeping the dotted path, so every error
//! names the exact field (`order.items[1].quantity`).

use smol_str::{format_smolstr, SmolStr};

use super::json::Json;
use super::values::ValueError;
use super::FieldError;

/// Where in the event an object is: its parents, borrowed. Written out (`order.items[2]`) only
/// for an error: building the path of every object read, error or not, was 1.7 % of an
/// order's instructions (BENCHMARKS.md, item 74).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    Root,
    Key(&'a Place<'a>, &'a str),
    Index(&'a Place<'a>, usize),
}

impl Place<'_> {
    /// The dotted path; empty for the root.
    pub fn path(&self) -> SmolStr {
        match self {
            Place::Root => SmolStr::default(),
            Place::Key(Place::Root, key) => SmolStr::new(key),
            Place::Key(parent, key) => format_smolstr!("{}.{key}", parent.path()),
            Place::Index(parent, i) => format_smolstr!("{}[{i}]", parent.path()),
        }
    }
}

/// One JSON object being read, `J` a `serde_json::Value` or a `JsonDoc`.
pub(crate) struct ObjectReader<'a, J> {
    place: Place<'a>,
    object: &'a J,
}

impl<'a, J: Json> ObjectReader<'a, J> {
    pub fn new(place: Place<'a>, value: &'a J) -> Result<Self, FieldError> {
        if value.is_object() {
            return Ok(Self { place, object: value });
        }
        let path = place.path();
        Err(FieldError::new(if path.is_empty() { "$" } else { path.as_str() }, "invalid_type", format!("expected a JSON object, got {}", value.kind())))
    }

    /// The place of `key` in this object (a list's items are `Place::Index` of it).
    pub fn place_of<'k>(&'k self, key: &'k str) -> Place<'k> {
        Place::Key(&self.place, key)
    }

    pub fn path_of(&self, key: &str) -> SmolStr {
        self.place_of(key).path()
    }

    /// The value, with JSON `null` treated as absent.
    pub fn get(&self, key: &str) -> Option<&'a J> {
        self.object.field(key).filter(|v| !v.is_null())
    }

    pub fn object<'k>(&'k self, key: &'k str) -> Result<Option<ObjectReader<'k, J>>, FieldError> {
        self.get(key).map(|v| ObjectReader::new(self.place_of(key), v)).transpose()
    }

    pub fn required_object<'k>(&'k self, key: &'k str) -> Result<ObjectReader<'k, J>, FieldError> {
        self.object(key)?.ok_or_else(|| FieldError::required(self.path_of(key)))
    }

    pub fn string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.wrong_type(key, "a string", v)),
        }
    }

    /// A free-text string, at most `max_chars` characters.
    pub fn text(&self, key: &str, max_chars: usize) -> Result<Option<String>, FieldError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let count = s.chars().count();
        if count > max_chars {
            return Err(FieldError::new(
                self.path_of(key),
                "too_long",
                format!("{} must be at most {max_chars} characters, got {count}", self.path_of(key)),
            ));
        }
        Ok(Some(s.to_owned()))
    }

    /// A string turned into a domain value by `parse`.
    pub fn parsed<T>(&self, key: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Result<Option<T>, FieldError> {
        self.string(key)?
            .map(|s| parse(s).map_err(|why| FieldError::new(self.path_of(key), "invalid", format!("{}: {why}", self.path_of(key)))))
            .transpose()
    }

    pub fn required_parsed<T>(&self, key: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Result<T, FieldError> {
        self.parsed(key, parse)?.ok_or_else(|| FieldError::required(self.path_of(key)))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.wrong_type(key, "true or false", v)),
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let Some(n) = value.as_number() else { return Err(self.wrong_type(key, "a whole number", value)) };
        match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(FieldError::new(
                self.path_of(key),
                "out_of_range",
                format!("{} must be a whole number from {min} to {max}, got {n}", self.path_of(key)),
            )),
        }
    }

    /// A decimal amount given as a string or a JSON number (read from its text, never as a float).
    pub fn money(&self, key: &str) -> Result<Option<super::Money>, FieldError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let number;
        let text = match (value.as_str(), value.as_number()) {
            (Some(s), _) => s,
            (None, Some(n)) => {
                number = n.to_string();
                number.as_str()
            }
            (None, None) => return Err(self.wrong_type(key, "a decimal string or number", value)),
        };
        super::Money::parse(text)
            .map(Some)
            .map_err(|why| FieldError::new(self.path_of(key), "invalid", format!("{}: {why}", self.path_of(key))))
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a [J]>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| self.wrong_type(key, "an array", v)),
        }
    }

    pub fn string_list(&self, key: &str, max_items: usize) -> Result<Vec<String>, FieldError> {
        let Some(items) = self.array(key)? else { return Ok(Vec::new()) };
        if items.len() > max_items {
            return Err(FieldError::new(self.path_of(key), "too_many", format!("{} has more than {max_items} entries", self.path_of(key))));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str() {
                Some(s) if !s.is_empty() && s.chars().count() <= 128 => Ok(s.to_owned()),
                _ => Err(FieldError::new(
                    format!("{}[{i}]", self.path_of(key)),
                    "invalid_type",
                    format!("{}[{i}] must be a string of 1–128 characters, got {}", self.path_of(key), v.kind()),
                )),
            })
            .collect()
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &J) -> FieldError {
        FieldError::new(self.path_of(key), "invalid_type", format!("{} must be {expected}, got {}", self.path_of(key), got.kind()))
    }
}
