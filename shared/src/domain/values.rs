//! Small value types. Each is built only by `parse`, which says what is wrong and with which value.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why a value was refused; the caller adds the field name.
pub type ValueError = String;

// Over `SmolStr`, not `String`: these sit in every customer state and event, which are
// copied for each decision; up to 23 bytes is inline and beyond is shared, so a copy never
// allocates (BENCHMARKS.md).
macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(smol_str::SmolStr);
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(EventId);
string_newtype!(EventType);
string_newtype!(CustomerId);
string_newtype!(EmailAddress);
string_newtype!(Locale);
string_newtype!(Currency);

impl EventId {
    /// 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.is_empty() || raw.len() > 128 {
            return Err(format!("must be 1–128 characters, got {}", raw.chars().count()));
        }
        if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || ".:_-".contains(*c))) {
            return Err(format!("{raw:?} contains {bad:?}; allowed are A-Z a-z 0-9 . _ : -"));
        }
        Ok(Self(raw.into()))
    }
}

impl EventType {
    /// `[a-z][a-z0-9_]{0,63}`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || raw.len() > 64 {
            return Err(format!("{raw:?} must match [a-z][a-z0-9_]{{0,63}}"));
        }
        Ok(Self(raw.into()))
    }
}

impl CustomerId {
    /// 1–128 characters, no control characters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let count = raw.chars().count();
        if count == 0 || count > 128 {
            return Err(format!("must be 1–128 characters, got {count}"));
        }
        if raw.chars().any(char::is_control) {
            return Err(format!("{raw:?} contains a control character"));
        }
        Ok(Self(raw.into()))
    }
}

impl EmailAddress {
    /// A single mailbox `local@domain`; no display name, no spaces or control characters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let trimmed = raw.trim();
        let invalid = || format!("{raw:?} is not an email address");
        if trimmed.len() > 254 || trimmed.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c)) {
            return Err(invalid());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(trimmed.into()))
    }
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl Locale {
    /// A BCP 47 tag such as `ja`, `ja-JP` or `zh-Hant-TW` (language, then subtags).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let mut parts = raw.split(['-', '_']);
        let language = parts.next().unwrap_or_default();
        let language_ok = (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_alphabetic());
        let rest_ok = parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if !language_ok || !rest_ok {
            return Err(format!("{raw:?} is not a BCP 47 language tag (e.g. ja-JP)"));
        }
        Ok(Self(raw.replace('_', "-").into()))
    }
    /// The primary language subtag, lower case: `ja-JP` → `ja`.
    pub fn language(&self) -> smol_str::SmolStr {
        let language = self.0.split('-').next().unwrap_or_default();
        // Usually written in lower case already: then it is copied (inline, no allocation).
        if language.bytes().any(|b| b.is_ascii_uppercase()) {
            smol_str::SmolStr::from(language.to_ascii_lowercase())
        } else {
            smol_str::SmolStr::new(language)
        }
    }
}

impl Currency {
    /// ISO 4217 code: three upper-case letters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() != 3 || !raw.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!("{raw:?} is not an ISO 4217 currency code (e.g. JPY)"));
        }
        Ok(Self(raw.into()))
    }
}

/// An IANA time zone such as `Asia/Tokyo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        chrono_tz::Tz::from_str(raw)
            .map(Self)
            .map_err(|_| format!("{raw:?} is not an IANA time zone (e.g. Asia/Tokyo)"))
    }
}
impl TryFrom<String> for TimeZone {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<TimeZone> for String {
    fn from(tz: TimeZone) -> Self {
        tz.0.name().to_owned()
    }
}

/// A non-negative decimal amount. Never a float: JSON numbers are read from their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] pub Decimal);

impl Money {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let amount = Decimal::from_str_exact(raw.trim())
            .or_else(|_| Decimal::from_scientific(raw.trim()))
            .map_err(|_| format!("{raw:?} is not a decimal amount (e.g. \"12800\" or \"12.50\")"))?;
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(format!("{raw:?} is negative"));
        }
        Ok(Self(amount.normalize()))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids() {
        assert!(EventId::parse("evt-000123").is_ok());
        assert!(EventId::parse("a.b:c_d-e").is_ok());
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse(&"x".repeat(129)).is_err());
        assert!(EventId::parse("has space").unwrap_err().contains("' '"));
    }

    #[test]
    fn event_types() {
        for ok in ["order_placed", "a", "x9_"] {
            assert!(EventType::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["Order", "9x", "", "order-placed", &"a".repeat(65)] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(EmailAddress::parse(" hanako@example.jp ").unwrap().as_str(), "hanako@example.jp");
        for bad in ["", "nobody", "a@b", "a b@example.com", "a@@example.com", "<a@example.com>", "a@example.com\r\nBcc: x@y.z"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locales_and_zones() {
        assert_eq!(Locale::parse("ja-JP").unwrap().language(), "ja");
        assert_eq!(Locale::parse("en_US").unwrap().as_str(), "en-US");
        assert!(Locale::parse("japanese").is_err());
        assert!(TimeZone::parse("Asia/Tokyo").is_ok());
        assert!(TimeZone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn money_is_exact_and_non_negative() {
        assert_eq!(Money::parse("12800").unwrap().to_string(), "12800");
        assert_eq!(Money::parse("12.50").unwrap().to_string(), "12.5");
        assert!(Money::parse("-1").is_err());
        assert!(Money::parse("12,800").is_err());
        assert!(Money::parse("NaN").is_err());
    }
}
