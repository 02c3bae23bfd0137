//! The rules every send obeys (FLOWS.md §2), checked at send time, and the variables
//! flow expressions see.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::domain::{EmailAddress, Enrollment, Event, Profile, SendRecord};
use crate::flow::{Category, Flow, StorePolicy};

/// Why a send step did not send. `code()` is what the timeline and the simulator print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoEmail,
    Suppressed,
    Unsubscribed,
    NoConsent,
    SmartSending,
    ConditionFalse,
    NoRecommendations,
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
            SkipReason::NoRecommendations => "no_recommendations".into(),
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

/// What an expression or template is evaluated against.
pub struct Scope<'a> {
    pub profile: &'a Profile,
    pub event: &'a Event,
    pub item: Option<&'a Value>,
    pub enrollment: Option<&'a Enrollment>,
    pub store: &'a StorePolicy,
    pub now: DateTime<Utc>,
}

impl Scope<'_> {
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.profile.timezone.unwrap_or(self.store.timezone).0).date_naive()
    }

    pub fn to_json(&self) -> Value {
        let p = self.profile;
        let event = self.event;
        let days_since = |at: DateTime<Utc>| (self.now - at).num_days();
        let order = event.order.as_ref();
        let currency = order.and_then(|o| o.currency.as_ref()).map(|c| c.to_string());
        let order_total = order.and_then(|o| o.total).and_then(|t| t.0.to_string().parse::<f64>().ok());
        let vip_threshold = currency.as_ref().and_then(|c| self.store.vip_thresholds.get(c)).and_then(|t| t.to_string().parse::<f64>().ok());
        let since_30d = self.now - Duration::days(30);
        json!({
            "event": event,
            "order": event.order,
            "shipment": event.shipment,
            "checkout": event.checkout,
            "review": event.review,
            "email": event.email,
            "properties": event.properties,
            "item": self.item,
            "order_total": order_total,
            "vip_threshold": vip_threshold,
            "customer": {
                "id": p.id, "email": p.email, "first_name": p.first_name, "last_name": p.last_name,
                "locale": p.locale, "has_account": p.has_account, "marketing_consent": p.marketing_consent,
                "orders_count": p.orders_count, "total_spent": p.total_spent,
                "purchased_skus": p.purchased_skus(), "sku_order_counts": p.sku_order_counts,
                "birthday": p.birthday,
                "first_order_date": p.first_order_at.map(|t| self.local_date(t)),
                "first_order_id": p.first_order_id,
                "days_since_last_order": p.last_order_at.map(days_since),
                "opens_30d": p.opens.iter().filter(|t| **t > since_30d && **t <= self.now).count(),
                "days_since_sent": p.last_sent.iter().map(|(flow, at)| (flow.clone(), days_since(*at))).collect::<std::collections::BTreeMap<_, _>>(),
            },
            "enrollment": self.enrollment.map(|e| json!({
                "key": e.key, "variant": e.variant, "opened": e.opened, "clicked": e.clicked, "entered_at": e.entered_at,
            })),
        })
    }
}

fn engine() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env
}

pub fn evaluate_value(expression: &str, scope: &Scope<'_>) -> Result<minijinja::Value, String> {
    let env = engine();
    let compiled = env.compile_expression(expression).map_err(|e| e.to_string())?;
    compiled.eval(scope.to_json()).map_err(|e| e.to_string())
}

pub fn evaluate(expression: &str, scope: &Scope<'_>) -> Result<bool, String> {
    evaluate_value(expression, scope).map(|v| v.is_true())
}
