//! The rules every send obeys (FLOWS.md §2), checked at send time, and flow expressions.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::domain::{EmailAddress, Event, Profile, SendRecord};
use crate::flow::{Category, Flow};

/// Why a send step did not send. `code()` is what the timeline and the simulator print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoEmail,
    Suppressed,
    Unsubscribed,
    NoConsent,
    SmartSending,
    ConditionFalse,
    ConditionError(String),
}

impl SkipReason {
    pub fn code(&self) -> String {
        match self {
            SkipReason::NoEmail => "no_email".into(),
            SkipReason::Suppressed => "suppressed".into(),
            SkipReason::Unsubscribed => "unsubscribed".into(),
            SkipReason::NoConsent => "no_consent".into(),
            SkipReason::SmartSending => "smart_sending".into(),
            SkipReason::ConditionFalse => "condition_false".into(),
            SkipReason::ConditionError(why) => format!("condition_error: {why}"),
        }
    }
}

/// The address to send to, or why not.
pub fn may_send(flow: &Flow, profile: &Profile, recent: &[SendRecord], smart_sending_hours: u32, now: DateTime<Utc>) -> Result<EmailAddress, SkipReason> {
    let to = profile.email.clone().ok_or(SkipReason::NoEmail)?;
    if profile.bounced {
        return Err(SkipReason::Suppressed);
    }
    if flow.category == Category::Transactional {
        return Ok(to);
    }
    if profile.complained {
        return Err(SkipReason::Suppressed);
    }
    if profile.unsubscribed {
        return Err(SkipReason::Unsubscribed);
    }
    if !profile.marketing_consent {
        return Err(SkipReason::NoConsent);
    }
    if flow.promotional {
        let since = now - Duration::hours(i64::from(smart_sending_hours));
        if recent.iter().any(|s| s.marketing && s.at > since && s.at <= now) {
            return Err(SkipReason::SmartSending);
        }
    }
    Ok(to)
}

/// The variables a flow expression sees: `event`, `customer` (with aggregates), `order`.
pub fn expression_context(profile: &Profile, event: &Event) -> serde_json::Value {
    json!({
        "event": event,
        "order": event.order,
        "shipment": event.shipment,
        "checkout": event.checkout,
        "review": event.review,
        "customer": {
            "id": profile.id, "email": profile.email, "first_name": profile.first_name, "last_name": profile.last_name,
            "locale": profile.locale, "has_account": profile.has_account, "marketing_consent": profile.marketing_consent,
            "orders_count": profile.orders_count, "total_spent": profile.total_spent,
            "purchased_skus": profile.purchased_skus(), "birthday": profile.birthday,
        },
    })
}

pub fn evaluate(expression: &str, profile: &Profile, event: &Event) -> Result<bool, String> {
    let env = minijinja::Environment::new();
    let compiled = env.compile_expression(expression).map_err(|e| e.to_string())?;
    let value = compiled.eval(expression_context(profile, event)).map_err(|e| e.to_string())?;
    Ok(value.is_true())
}
