//! The rules every send obeys (FLOWS.md §2), checked at send time, and the variables
//! flow expressions see.

use chrono::{DateTime, Duration, NaiveDate, Utc};

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
    pub item: Option<&'a serde_json::Value>,
    pub enrollment: Option<&'a Enrollment>,
    pub store: &'a StorePolicy,
    pub now: DateTime<Utc>,
}

impl Scope<'_> {
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.profile.timezone.unwrap_or(self.store.timezone).0).date_naive()
    }

    /// The variables, as minijinja values built directly (the event is serialized once and
    /// its parts are shared, rather than going through serde_json twice per evaluation).
    pub fn to_value(&self) -> minijinja::Value {
        use minijinja::Value as V;
        let p = self.profile;
        let event = V::from_serialize(self.event);
        let part = |name: &str| event.get_attr(name).unwrap_or(V::UNDEFINED);
        let days_since = |at: DateTime<Utc>| (self.now - at).num_days();
        let order = self.event.order.as_ref();
        let currency = order.and_then(|o| o.currency.as_ref()).map(|c| c.to_string());
        let order_total = order.and_then(|o| o.total).and_then(|t| t.0.to_string().parse::<f64>().ok());
        let vip_threshold = currency.as_ref().and_then(|c| self.store.vip_thresholds.get(c)).and_then(|t| t.to_string().parse::<f64>().ok());
        let since_30d = self.now - Duration::days(30);
        let customer = minijinja::context! {
            id => p.id.as_str(), email => p.email.as_ref().map(|e| e.as_str()), first_name => p.first_name, last_name => p.last_name,
            locale => p.locale.as_ref().map(|l| l.as_str()), has_account => p.has_account, marketing_consent => p.marketing_consent,
            orders_count => p.orders_count, total_spent => V::from_serialize(&p.total_spent),
            purchased_skus => V::from_serialize(p.purchased_skus()), sku_order_counts => V::from_serialize(&p.sku_order_counts),
            birthday => p.birthday.map(|d| d.to_string()),
            first_order_date => p.first_order_at.map(|t| self.local_date(t).to_string()),
            first_order_id => p.first_order_id,
            days_since_last_order => p.last_order_at.map(days_since),
            opens_30d => p.opens.iter().filter(|t| **t > since_30d && **t <= self.now).count(),
            days_since_sent => V::from_serialize(p.last_sent.iter().map(|(flow, at)| (flow.clone(), days_since(*at))).collect::<std::collections::BTreeMap<_, _>>()),
        };
        let enrollment = self.enrollment.map(|e| minijinja::context! {
            key => e.key, variant => e.variant, opened => V::from_serialize(&e.opened), clicked => V::from_serialize(&e.clicked),
        });
        minijinja::context! {
            order => part("order"), shipment => part("shipment"), checkout => part("checkout"), review => part("review"),
            email => part("email"), properties => part("properties"), event => event,
            item => self.item.map(V::from_serialize), order_total => order_total, vip_threshold => vip_threshold,
            customer => customer, enrollment => enrollment,
        }
    }
}

type Compiled = minijinja::Expression<'static, 'static>;

/// One environment for all flow expressions, and each expression compiled once per process
/// (flows are few and fixed; compiling on every evaluation dominated the simulator's time).
fn compiled(expression: &str) -> Result<std::sync::Arc<Compiled>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, RwLock};
    static ENV: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env
    });
    static CACHE: LazyLock<RwLock<HashMap<String, Arc<Compiled>>>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE.read().unwrap_or_else(|p| p.into_inner()).get(expression) {
        return Ok(hit.clone());
    }
    let fresh = Arc::new(ENV.compile_expression_owned(expression.to_owned()).map_err(|e| e.to_string())?);
    CACHE.write().unwrap_or_else(|p| p.into_inner()).insert(expression.to_owned(), fresh.clone());
    Ok(fresh)
}

pub fn evaluate_value(expression: &str, scope: &Scope<'_>) -> Result<minijinja::Value, String> {
    compiled(expression)?.eval(scope.to_value()).map_err(|e| e.to_string())
}

pub fn evaluate(expression: &str, scope: &Scope<'_>) -> Result<bool, String> {
    evaluate_value(expression, scope).map(|v| v.is_true())
}
