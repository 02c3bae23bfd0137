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

    /// The variables, as minijinja values built directly (the event serialized once and its
    /// parts shared), and only the top-level ones `wanted` says an expression reads: most
    /// read one or two, and serializing the event was most of an evaluation.
    /// `wanted_attr` does the same for the attributes of `customer`.
    fn variables(&self, wanted: impl Fn(&str) -> bool, wanted_attr: impl Fn(&str) -> bool) -> minijinja::Value {
        use minijinja::Value as V;
        const FROM_EVENT: [&str; 7] = ["order", "shipment", "checkout", "review", "email", "properties", "event"];
        let mut vars: Vec<(&'static str, V)> = Vec::with_capacity(12);
        if FROM_EVENT.iter().any(|name| wanted(name)) {
            let event = V::from_serialize(self.event);
            for name in FROM_EVENT.into_iter().filter(|name| wanted(name)) {
                let value = if name == "event" { event.clone() } else { event.get_attr(name).unwrap_or(V::UNDEFINED) };
                vars.push((name, value));
            }
        }
        let order = self.event.order.as_ref();
        let currency = || order.and_then(|o| o.currency.as_ref()).map(|c| c.to_string());
        if wanted("item") {
            vars.push(("item", self.item.map(V::from_serialize).into()));
        }
        if wanted("order_total") {
            vars.push(("order_total", order.and_then(|o| o.total).and_then(|t| t.0.to_string().parse::<f64>().ok()).into()));
        }
        if wanted("vip_threshold") {
            let threshold = currency().as_ref().and_then(|c| self.store.vip_thresholds.get(c)).and_then(|t| t.to_string().parse::<f64>().ok());
            vars.push(("vip_threshold", threshold.into()));
        }
        if wanted("customer") {
            vars.push(("customer", self.customer(wanted_attr)));
        }
        if wanted("enrollment") {
            let enrollment = self.enrollment.map(|e| minijinja::context! {
                key => e.key, variant => e.variant, opened => V::from_serialize(&e.opened), clicked => V::from_serialize(&e.clicked),
            });
            vars.push(("enrollment", enrollment.into()));
        }
        V::from_iter(vars)
    }

    /// `customer`, with the attributes `wanted` names (most expressions read one or two, and
    /// the maps and dates are the costly ones).
    fn customer(&self, wanted: impl Fn(&str) -> bool) -> minijinja::Value {
        use minijinja::Value as V;
        let p = self.profile;
        let days_since = |at: DateTime<Utc>| (self.now - at).num_days();
        let mut attrs: Vec<(&'static str, V)> = Vec::with_capacity(16);
        let mut add = |name: &'static str, value: &dyn Fn() -> V| {
            if wanted(name) {
                attrs.push((name, value()));
            }
        };
        add("id", &|| p.id.as_str().into());
        add("email", &|| p.email.as_ref().map(|e| e.as_str()).into());
        add("first_name", &|| p.first_name.as_deref().into());
        add("last_name", &|| p.last_name.as_deref().into());
        add("locale", &|| p.locale.as_ref().map(|l| l.as_str()).into());
        add("has_account", &|| p.has_account.into());
        add("marketing_consent", &|| p.marketing_consent.into());
        add("orders_count", &|| p.orders_count.into());
        add("total_spent", &|| V::from_serialize(&p.total_spent));
        add("purchased_skus", &|| V::from_serialize(p.purchased_skus()));
        add("sku_order_counts", &|| V::from_serialize(&p.sku_order_counts));
        add("birthday", &|| p.birthday.map(|d| d.to_string()).into());
        add("first_order_date", &|| p.first_order_at.map(|t| self.local_date(t).to_string()).into());
        add("first_order_id", &|| p.first_order_id.as_deref().into());
        add("days_since_last_order", &|| p.last_order_at.map(days_since).into());
        add("opens_30d", &|| {
            let since_30d = self.now - Duration::days(30);
            p.opens.iter().filter(|t| **t > since_30d && **t <= self.now).count().into()
        });
        add("days_since_sent", &|| {
            V::from_serialize(p.last_sent.iter().map(|(flow, at)| (flow.clone(), days_since(*at))).collect::<std::collections::BTreeMap<_, _>>())
        });
        V::from_iter(attrs)
    }
}

/// A compiled expression and the variables it reads: top-level names, and which attributes
/// of `customer` (`None`: all of them, for `customer` read whole or by a computed key).
struct Compiled {
    expression: minijinja::Expression<'static, 'static>,
    reads: std::collections::HashSet<String>,
    customer_attrs: Option<std::collections::HashSet<String>>,
}

impl Compiled {
    fn new(expression: minijinja::Expression<'static, 'static>) -> Compiled {
        // Dotted paths, as deep as written: `customer.total_spent.JPY`, or a bare `customer`.
        let paths = expression.undeclared_variables(true);
        let customer_attrs = (!paths.contains("customer"))
            .then(|| paths.iter().filter_map(|path| path.strip_prefix("customer.")).map(|rest| rest.split('.').next().unwrap_or(rest).to_owned()).collect());
        Compiled { reads: expression.undeclared_variables(false), customer_attrs, expression }
    }

    fn reads_customer_attr(&self, attr: &str) -> bool {
        self.customer_attrs.as_ref().is_none_or(|attrs| attrs.contains(attr))
    }
}

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
    let compiled = ENV.compile_expression_owned(expression.to_owned()).map_err(|e| e.to_string())?;
    let fresh = Arc::new(Compiled::new(compiled));
    CACHE.write().unwrap_or_else(|p| p.into_inner()).insert(expression.to_owned(), fresh.clone());
    Ok(fresh)
}

pub fn evaluate_value(expression: &str, scope: &Scope<'_>) -> Result<minijinja::Value, String> {
    let compiled = compiled(expression)?;
    compiled.expression.eval(scope.variables(|name| compiled.reads.contains(name), |attr| compiled.reads_customer_attr(attr))).map_err(|e| e.to_string())
}

pub fn evaluate(expression: &str, scope: &Scope<'_>) -> Result<bool, String> {
    evaluate_value(expression, scope).map(|v| v.is_true())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, CustomerState, Event};
    use crate::testing::{at, order_placed, repo_flows};

    /// Building only the variables an expression reads gives the value building all of them
    /// gives, for the default flows' expressions and for ones reading every variable.
    #[test]
    fn an_expression_sees_the_same_values_when_only_what_it_reads_is_built() {
        let flows = repo_flows();
        let mut state = CustomerState::new(CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
        state.profile.first_order_id = Some("A1".into());
        state.profile.orders_count = 2;
        state.profile.total_spent.insert("JPY".into(), rust_decimal::Decimal::new(8600, 0));
        state.profile.last_sent.insert("win_back".into(), at("2026-11-01T00:00:00Z"));
        let event = Event::parse(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
        let item = serde_json::json!({"sku": "BEAN-1", "quantity": 1});
        let scope = Scope { profile: &state.profile, event: &event, item: Some(&item), enrollment: None, store: &flows.store, now: at("2026-11-21T00:00:00Z") };
        let expressions = [
            "order.id == customer.first_order_id",
            "vip_threshold is not none and order_total is not none and order_total >= vip_threshold",
            "customer.sku_order_counts[item.sku] >= 2",
            "[order.id, event.type, event.customer.id, customer.orders_count, item.sku, order_total, shipment, checkout, review, email, properties, enrollment]",
            "customer.orders_count + (order.items | length)",
            "customer['orders_count'] > 1 and customer.days_since_sent.win_back is undefined",
            "(customer.total_spent.JPY or 0) > 100 and customer.first_order_date",
            "customer | length",
            "customer.purchased_skus | select('in', customer[ 'sku_order_counts' ]) | list",
        ];
        for expression in expressions {
            let compiled = compiled(expression).unwrap();
            let everything = compiled.expression.eval(scope.variables(|_| true, |_| true)).unwrap();
            let only_read = evaluate_value(expression, &scope).unwrap();
            assert_eq!(only_read.to_string(), everything.to_string(), "{expression}");
            assert!(!everything.is_undefined(), "{expression}");
        }
        let narrow = compiled("customer.orders_count > 1 and customer.total_spent.JPY > 100").unwrap();
        assert!(narrow.reads_customer_attr("orders_count") && narrow.reads_customer_attr("total_spent") && !narrow.reads_customer_attr("email"));
        assert!(compiled("customer['email']").unwrap().reads_customer_attr("email"), "a subscript reads the whole customer");
        assert_eq!(evaluate_value("(customer.total_spent.JPY or 0) > 100 and customer.days_since_sent.win_back", &scope).unwrap().to_string(), "20");
        assert_eq!(evaluate_value("customer.orders_count + (order.items | length)", &scope).unwrap().to_string(), "5", "2 orders + 3 items");
        assert!(evaluate("order.id == customer.first_order_id", &scope).unwrap());
    }
}
