//! `flows/store.yaml`: the store's identity and the policies every flow obeys.

use std::collections::BTreeMap;

use chrono::NaiveTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::FlowError;
use crate::domain::{EmailAddress, TimeZone};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorePolicy {
    pub name: String,
    pub default_locale: String,
    /// Locales the store writes templates in; the default first.
    pub locales: Vec<String>,
    pub timezone: TimeZone,
    pub sender: Sender,
    pub base_url: String,
    pub support_email: Option<String>,
    pub postal_address: Option<String>,
    pub logo_url: Option<String>,
    /// Buttons and accents, as a CSS colour.
    pub brand_color: String,
    pub quiet_hours: Option<QuietHours>,
    pub smart_sending_hours: u32,
    pub vip_thresholds: BTreeMap<String, Decimal>,
    /// The currency reports show revenue per recipient in (ISO 4217).
    pub currency: String,
    /// An order this long after a click (else an open) of a marketing email is credited to it.
    pub attribution_window: chrono::Duration,
    /// A customer counts as active this many days after their last order (retention reports).
    pub active_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub name: String,
    pub address: EmailAddress,
    pub reply_to: Option<EmailAddress>,
}

/// Marketing sends due in `[start, end)` local time move to the next `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    name: String,
    #[serde(default = "default_locale")]
    default_locale: String,
    #[serde(default)]
    locales: Vec<String>,
    #[serde(default = "default_timezone")]
    timezone: String,
    sender: RawSender,
    base_url: String,
    #[serde(default)]
    support_email: Option<String>,
    #[serde(default)]
    postal_address: Option<String>,
    #[serde(default)]
    logo_url: Option<String>,
    #[serde(default = "default_brand_color")]
    brand_color: String,
    #[serde(default)]
    quiet_hours: Option<RawQuietHours>,
    #[serde(default = "default_smart_sending")]
    smart_sending_hours: u32,
    #[serde(default, deserialize_with = "super::model::amount::by_key")]
    vip_thresholds: BTreeMap<String, Decimal>,
    #[serde(default = "default_currency")]
    currency: String,
    #[serde(default)]
    attribution: RawAttribution,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribution {
    #[serde(default = "default_attribution_window")]
    window: String,
}

impl Default for RawAttribution {
    fn default() -> Self {
        Self { window: default_attribution_window() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_active_days")]
    active_days: u32,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self { active_days: default_active_days() }
    }
}

fn default_currency() -> String {
    "JPY".into()
}
fn default_attribution_window() -> String {
    "5d".into()
}
/// A quarter: a coffee buyer who has not reordered in three months has lapsed.
fn default_active_days() -> u32 {
    90
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    name: String,
    address: String,
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuietHours {
    start: String,
    end: String,
}

fn default_locale() -> String {
    "ja".into()
}
fn default_timezone() -> String {
    "Asia/Tokyo".into()
}
fn default_brand_color() -> String {
    "#6b4f3f".into()
}
fn default_smart_sending() -> u32 {
    16
}

impl StorePolicy {
    pub fn parse(text: &str) -> Result<StorePolicy, FlowError> {
        let file = "store.yaml";
        let raw: RawStore = super::model::read(file, text)?;
        let err = |m: String| FlowError::new(file, m);
        let timezone = TimeZone::parse(&raw.timezone).map_err(|e| err(format!("timezone: {e}")))?;
        let address = EmailAddress::parse(&raw.sender.address).map_err(|e| err(format!("sender.address: {e}")))?;
        let reply_to = raw.sender.reply_to.as_deref().map(EmailAddress::parse).transpose().map_err(|e| err(format!("sender.reply_to: {e}")))?;
        if !raw.brand_color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
            return Err(err(format!("brand_color: {:?} is not a CSS colour like #6b4f3f", raw.brand_color)));
        }
        let time = |field: &str, s: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| err(format!("{field}: {s:?} is not a time of day (HH:MM)")));
        let quiet_hours = raw
            .quiet_hours
            .map(|q| Ok::<_, FlowError>(QuietHours { start: time("quiet_hours.start", &q.start)?, end: time("quiet_hours.end", &q.end)? }))
            .transpose()?;
        let mut vip_thresholds: BTreeMap<String, Decimal> =
            [("JPY", 30000), ("USD", 200), ("EUR", 200)].into_iter().map(|(c, v)| (c.to_owned(), Decimal::from(v))).collect();
        vip_thresholds.extend(raw.vip_thresholds);
        let attribution_window = super::duration::parse_duration(&raw.attribution.window).map_err(|e| err(format!("attribution.window: {e}")))?;
        if attribution_window <= chrono::Duration::zero() {
            return Err(err(format!("attribution.window: {:?} must be longer than zero", raw.attribution.window)));
        }
        if raw.retention.active_days == 0 || raw.retention.active_days > 3650 {
            return Err(err(format!("retention.active_days: {} must be between 1 and 3650", raw.retention.active_days)));
        }
        if raw.currency.len() != 3 || !raw.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(err(format!("currency: {:?} is not an ISO 4217 code like JPY", raw.currency)));
        }
        let mut locales = raw.locales;
        if !locales.contains(&raw.default_locale) {
            locales.insert(0, raw.default_locale.clone());
        }
        Ok(StorePolicy {
            name: raw.name,
            locales,
            default_locale: raw.default_locale,
            timezone,
            sender: Sender { name: raw.sender.name, address, reply_to },
            base_url: raw.base_url.trim_end_matches('/').to_owned(),
            support_email: raw.support_email,
            postal_address: raw.postal_address,
            logo_url: raw.logo_url,
            brand_color: raw.brand_color,
            quiet_hours,
            smart_sending_hours: raw.smart_sending_hours,
            vip_thresholds,
            currency: raw.currency,
            attribution_window,
            active_days: raw.retention.active_days,
        })
    }
}
