//! Reads fields out of a JSON object while keeping the dotted path, so every error
//! names the exact field (`order.items[1].quantity`).

use serde_json::{Map, Value};
use smol_str::{format_smolstr, SmolStr};

use super::values::ValueError;
use super::FieldError;

pub(crate) struct ObjectReader<'a> {
    /// A `SmolStr`: every path of a typical event (`order.items[2]`) is short enough to be
    /// built without allocating, and the path is built for every object read, error or not.
    path: SmolStr,
    object: &'a Map<String, Value>,
}

impl<'a> ObjectReader<'a> {
    pub fn new(path: SmolStr, value: &'a Value) -> Result<Self, FieldError> {
        match value {
            Value::Object(object) => Ok(Self { path, object }),
            other => Err(FieldError::new(
                if path.is_empty() { "$" } else { path.as_str() },
                "invalid_type",
                format!("expected a JSON object, got {}", kind(other)),
            )),
        }
    }

    pub fn path_of(&self, key: &str) -> SmolStr {
        if self.path.is_empty() {
            SmolStr::new(key)
        } else {
            format_smolstr!("{}.{key}", self.path)
        }
    }

    /// The value, with JSON `null` treated as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    pub fn object(&self, key: &str) -> Result<Option<ObjectReader<'a>>, FieldError> {
        self.get(key).map(|v| ObjectReader::new(self.path_of(key), v)).transpose()
    }

    pub fn required_object(&self, key: &str) -> Result<ObjectReader<'a>, FieldError> {
        self.object(key)?.ok_or_else(|| FieldError::required(self.path_of(key)))
    }

    pub fn string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
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
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(FieldError::new(
                    self.path_of(key),
                    "out_of_range",
                    format!("{} must be a whole number from {min} to {max}, got {n}", self.path_of(key)),
                )),
            },
            Some(other) => Err(self.wrong_type(key, "a whole number", other)),
        }
    }

    /// A decimal amount given as a string or a JSON number (read from its text, never as a float).
    pub fn money(&self, key: &str) -> Result<Option<super::Money>, FieldError> {
        let number;
        let text = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Number(n)) => {
                number = n.to_string();
                number.as_str()
            }
            Some(other) => return Err(self.wrong_type(key, "a decimal string or number", other)),
        };
        super::Money::parse(text)
            .map(Some)
            .map_err(|why| FieldError::new(self.path_of(key), "invalid", format!("{}: {why}", self.path_of(key))))
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong_type(key, "an array", other)),
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
            .map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() && s.chars().count() <= 128 => Ok(s.clone()),
                other => Err(FieldError::new(
                    format!("{}[{i}]", self.path_of(key)),
                    "invalid_type",
                    format!("{}[{i}] must be a string of 1–128 characters, got {}", self.path_of(key), kind(other)),
                )),
            })
            .collect()
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> FieldError {
        FieldError::new(
            self.path_of(key),
            "invalid_type",
            format!("{} must be {expected}, got {}", self.path_of(key), kind(got)),
        )
    }
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
