//! The rules every send obeys (FLOWS.md §2), checked at send time, and the variables
//! flow expressions see.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::{EmailAddress, Enrollment, Event, Name, Profile, SendRecord};
use crate::flow::{Category, CustomerAttr, Expression, Flow, OrderAttr, Reads, StorePolicy, Var};

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
    pub fn code(&self) -> Name {
        match self {
            SkipReason::NoEmail => Name::new_static("no_email"),
            SkipReason::Suppressed => Name::new_static("suppressed"),
            SkipReason::Unsubscribed => Name::new_static("unsubscribed"),
            SkipReason::NoConsent => Name::new_static("no_consent"),
            SkipReason::SmartSending => Name::new_static("smart_sending"),
            SkipReason::ConditionFalse => Name::new_static("condition_false"),
            SkipReason::NoRecommendations => Name::new_static("no_recommendations"),
            SkipReason::ConditionError(why) => smol_str::format_smolstr!("condition_error: {why}"),
        }
    }
}

/// The address to send to, or why not.
pub fn may_send(flow: &Flow, profile: &Profile, recent: &[std::sync::Arc<SendRecord>], smart_sending_hours: u32, now: DateTime<Utc>) -> Result<EmailAddress, SkipReason> {
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
    /// parts shared), and only those `reads` names: most expressions read one or two, and
    /// serializing the event was most of an evaluation.
    pub fn variables(&self, reads: &Reads) -> minijinja::Value {
        use minijinja::Value as V;
        const FROM_EVENT: [Var; 7] = [Var::Order, Var::Shipment, Var::Checkout, Var::Review, Var::Email, Var::Properties, Var::Event];
        let mut vars: Vec<(&'static str, V)> = Vec::with_capacity(4);
        // Each part serialized alone, as it is inside the whole event (an absent one is
        // left out of the event, so undefined here too).
        fn part<T: serde::Serialize>(field: &Option<T>) -> V {
            field.as_ref().map_or(V::UNDEFINED, V::from_serialize)
        }
        let event = self.event;
        for var in FROM_EVENT.into_iter().filter(|var| reads.var(*var)) {
            let value = match var {
                Var::Order => order_value(event.order.as_ref(), reads),
                Var::Shipment => part(&event.shipment),
                Var::Checkout => part(&event.checkout),
                Var::Review => part(&event.review),
                Var::Email => part(&event.email),
                Var::Properties if event.properties.is_empty() => V::UNDEFINED,
                Var::Properties => V::from_serialize(&event.properties),
                _ => V::from_serialize(event),
            };
            vars.push((var.name(), value));
        }
        let order = self.event.order.as_ref();
        let currency = || order.and_then(|o| o.currency.as_ref()).map(|c| c.to_string());
        if reads.var(Var::Item) {
            vars.push(("item", self.item.map(V::from_serialize).into()));
        }
        if reads.var(Var::OrderTotal) {
            vars.push(("order_total", order.and_then(|o| o.total).and_then(|t| t.0.to_string().parse::<f64>().ok()).into()));
        }
        if reads.var(Var::VipThreshold) {
            let threshold = currency().as_ref().and_then(|c| self.store.vip_thresholds.get(c)).and_then(|t| t.to_string().parse::<f64>().ok());
            vars.push(("vip_threshold", threshold.into()));
        }
        if reads.var(Var::Customer) {
            vars.push(("customer", self.customer(reads)));
        }
        if reads.var(Var::Enrollment) {
            let enrollment = self.enrollment.map(|e| minijinja::context! {
                key => e.key, variant => e.variant, opened => V::from_serialize(&e.opened), clicked => V::from_serialize(&e.clicked),
            });
            vars.push(("enrollment", enrollment.into()));
        }
        Fields::value(vars)
    }

    /// `customer`, with the attributes `reads` names (most expressions read one or two, and
    /// the maps and dates are the costly ones).
    fn customer(&self, reads: &Reads) -> minijinja::Value {
        use minijinja::Value as V;
        use CustomerAttr as A;
        let p = self.profile;
        let days_since = |at: DateTime<Utc>| (self.now - at).num_days();
        let mut attrs: Vec<(&'static str, V)> = Vec::with_capacity(4);
        for attr in CustomerAttr::ALL.into_iter().filter(|a| reads.customer_attr(*a)) {
            let value = match attr {
                A::Id => p.id.as_str().into(),
                A::Email => p.email.as_ref().map(|e| e.as_str()).into(),
                A::FirstName => p.first_name.as_deref().into(),
                A::LastName => p.last_name.as_deref().into(),
                A::Locale => p.locale.as_ref().map(|l| l.as_str()).into(),
                A::HasAccount => p.has_account.into(),
                A::MarketingConsent => p.marketing_consent.into(),
                A::OrdersCount => p.orders_count.into(),
                A::TotalSpent => V::from_serialize(&p.total_spent),
                A::PurchasedSkus => V::from_serialize(p.purchased_skus()),
                A::SkuOrderCounts => V::from_serialize(&p.sku_order_counts),
                A::Birthday => p.birthday.map(|d| d.to_string()).into(),
                A::FirstOrderDate => p.first_order_at.map(|t| self.local_date(t).to_string()).into(),
                A::FirstOrderId => p.first_order_id.as_deref().into(),
                A::DaysSinceLastOrder => p.last_order_at.map(days_since).into(),
                A::Opens30d => {
                    let since_30d = self.now - Duration::days(30);
                    p.opens.iter().filter(|t| **t > since_30d && **t <= self.now).count().into()
                }
                // Only the flows read by name, when that is how the map is read.
                A::DaysSinceSent => match reads.days_since_sent() {
                    Some(flows) => V::from_iter(flows.iter().filter_map(|flow| p.last_sent.get(flow.as_str()).map(|at| (flow.as_str(), days_since(*at))))),
                    None => V::from_iter(p.last_sent.iter().map(|(flow, at)| (flow.as_str(), days_since(*at)))),
                },
            };
            attrs.push((attr.name(), value));
        }
        Fields::value(attrs)
    }
}

/// `order` as the event serializes it, or, when `reads` names its fields, only those: a
/// subject's `order.number or order.id` need not serialize every item. Nothing can tell them
/// apart, since reading the order whole (bare, iterated, by a computed key) reads it all.
pub(crate) fn order_value(order: Option<&crate::domain::Order>, reads: &Reads) -> minijinja::Value {
    use minijinja::Value as V;
    let Some(order) = order else { return V::UNDEFINED };
    let Some(attrs) = reads.order_attrs() else { return V::from_serialize(order) };
    // As serialized: an absent number, total or currency, or no items, is no field at all.
    let fields = attrs
        .filter_map(|attr| {
            let value = match attr {
                OrderAttr::Id => Some(V::from_serialize(&order.id)),
                OrderAttr::Number => order.number.as_ref().map(V::from_serialize),
                OrderAttr::Total => order.total.as_ref().map(V::from_serialize),
                OrderAttr::Currency => order.currency.as_ref().map(V::from_serialize),
                OrderAttr::Items => (!order.items.is_empty()).then(|| V::from_serialize(&order.items)),
            };
            value.map(|v| (attr.name(), v))
        })
        .collect();
    Fields::value(fields)
}

/// A few named values seen as a map, without building one (a map value sorts and stores
/// its entries on every evaluation): the variables of an expression, and `customer`.
/// Looked up by a short scan; listed in name order, as a map lists them.
#[derive(Debug)]
struct Fields(Vec<(&'static str, minijinja::Value)>);

impl Fields {
    fn value(mut fields: Vec<(&'static str, minijinja::Value)>) -> minijinja::Value {
        fields.sort_unstable_by_key(|(name, _)| *name);
        minijinja::Value::from_object(Fields(fields))
    }
}

impl minijinja::value::Object for Fields {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<minijinja::Value> {
        self.0.iter().find(|(name, _)| *name == key).map(|(_, value)| value.clone())
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.0.iter().map(|(name, _)| minijinja::Value::from(*name)).collect())
    }
}

pub fn evaluate_value(expression: &Expression, scope: &Scope<'_>) -> Result<minijinja::Value, String> {
    expression.eval_with(|reads| scope.variables(reads))
}

pub fn evaluate(expression: &Expression, scope: &Scope<'_>) -> Result<bool, String> {
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
        std::sync::Arc::make_mut(&mut state.profile.total_spent).insert("JPY".into(), rust_decimal::Decimal::new(8600, 0));
        state.profile.last_sent.insert("win_back".into(), at("2026-11-01T00:00:00Z"));
        state.profile.last_sent.insert("welcome".into(), at("2026-10-01T00:00:00Z"));
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
            "[customer.days_since_sent.win_back, customer.days_since_sent.anniversary | default(9999, true)]",
            "customer.days_since_sent | dictsort",
            "customer.days_since_sent | length",
            "customer.days_since_sent['welcome'] + customer.days_since_sent.win_back",
            "customer",
            "[shipment is undefined, review is none, order.items | length, email is defined]",
            "['orders_count' in customer, 'nope' in customer, customer | dictsort | first, customer | list | length, customer.nope is undefined]",
        ];
        // The oracle: every variable, as plain minijinja maps (not `Fields`).
        fn plain(value: minijinja::Value) -> minijinja::Value {
            match value.kind() {
                minijinja::value::ValueKind::Map => minijinja::Value::from_iter(value.try_iter().unwrap().map(|key| (key.clone(), plain(value.get_item(&key).unwrap())))),
                _ => value,
            }
        }
        for source in expressions {
            let expression = Expression::parse(source).unwrap();
            let everything = expression.eval(plain(scope.variables(&Reads::everything()))).unwrap();
            let only_read = evaluate_value(&expression, &scope).unwrap();
            assert_eq!(only_read.to_string(), everything.to_string(), "{source}");
            assert!(!everything.is_undefined(), "{source}");
        }
        // Each part of the event is what the whole event, serialized, has under that name.
        let whole = minijinja::Value::from_serialize(&event);
        let everything = scope.variables(&Reads::everything());
        for name in ["order", "shipment", "checkout", "review", "email", "properties"] {
            let (alone, inside) = (everything.get_attr(name).unwrap(), whole.get_attr(name).unwrap());
            assert_eq!((alone.to_string(), alone.is_undefined()), (inside.to_string(), inside.is_undefined()), "{name}");
        }
        assert!(!everything.get_attr("order").unwrap().is_undefined() && everything.get_attr("shipment").unwrap().is_undefined());
        let evaluate_value = |source: &str, scope: &Scope<'_>| evaluate_value(&Expression::parse(source).unwrap(), scope);
        let evaluate = |source: &str, scope: &Scope<'_>| evaluate(&Expression::parse(source).unwrap(), scope);
        assert_eq!(evaluate_value("(customer.total_spent.JPY or 0) > 100 and customer.days_since_sent.win_back", &scope).unwrap().to_string(), "20");
        assert_eq!(evaluate_value("customer.orders_count + (order.items | length)", &scope).unwrap().to_string(), "5", "2 orders + 3 items");
        assert!(evaluate("order.id == customer.first_order_id", &scope).unwrap());
    }

    /// `order` built with only the fields an expression reads answers as the whole serialized
    /// order does, for an order with every field and one with only its id (a field the event
    /// lacks is no field at all, not `none`).
    #[test]
    fn an_order_read_by_its_fields_answers_as_the_whole_order() {
        let flows = repo_flows();
        let state = CustomerState::new(CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
        let full = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
        let mut bare = full.clone();
        bare["order"] = serde_json::json!({"id": "A2", "items": [{"sku": "BEAN-1", "quantity": 1}]});
        // An event whose order has no items either.
        let mut delivered = bare.clone();
        delivered["type"] = serde_json::json!("order_delivered");
        delivered["order"] = serde_json::json!({"id": "A3"});
        let by_field = [
            "order.number or order.id",
            "[order.id, order.number, order.total, order.currency]",
            "[order.number is undefined, order.number is none, order.total is defined, order.currency is undefined, order.nope is undefined]",
            "order.currency == 'JPY' and order.total",
        ];
        for value in [full, bare, delivered] {
            let event = Event::parse(&value).unwrap();
            let scope = Scope { profile: &state.profile, event: &event, item: None, enrollment: None, store: &flows.store, now: at("2026-11-21T00:00:00Z") };
            for source in by_field.iter().chain(&["order['number'] ~ '/' ~ order['id']", "order | length", "order.items | length"]) {
                let expression = Expression::parse(source).unwrap();
                // Errors too (the length of absent items) must be the same.
                let whole = expression.eval(scope.variables(&Reads::everything())).map(|v| v.to_string());
                let only_read = evaluate_value(&expression, &scope).map(|v| v.to_string());
                assert_eq!(only_read, whole, "{source} on order {}", event.order.as_ref().unwrap().id);
            }
        }
        for source in by_field {
            assert!(Expression::parse(source).unwrap().reads().order_attrs().is_some(), "{source} reads fields, not the whole order");
        }
        for whole in ["order | length", "order.items | length", "order[key]"] {
            assert!(Expression::parse(whole).unwrap().reads().order_attrs().is_none(), "{whole} reads the whole order");
        }
    }
}
