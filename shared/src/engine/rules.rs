//! The rules every send obeys (FLOWS.md §2), checked at send time, and the variables
//! flow expressions see.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::{EmailAddress, Enrollment, Event, Name, Profile, SendRecord};
use crate::flow::{attr_of, Category, CustomerAttr, Expression, Flow, Reads, StorePolicy, Var, Variables};

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
        Fields::value(Var::ALL.into_iter().filter(|var| reads.var(*var)).map(|var| (var.name(), self.variable(var, reads))).collect())
    }

    /// One variable, as `variables` has it.
    fn variable(&self, var: Var, reads: &Reads) -> minijinja::Value {
        use minijinja::Value as V;
        // Each part serialized alone, as it is inside the whole event (an absent one is
        // left out of the event, so undefined here too).
        fn part<T: serde::Serialize>(field: &Option<T>) -> V {
            field.as_ref().map_or(V::UNDEFINED, V::from_serialize)
        }
        let event = self.event;
        let order = event.order.as_ref();
        let currency = || order.and_then(|o| o.currency.as_ref()).map(|c| c.to_string());
        match var {
            Var::Order => super::order_value(order, reads),
            Var::Shipment => part(&event.shipment),
            Var::Checkout => part(&event.checkout),
            Var::Review => part(&event.review),
            Var::Email => part(&event.email),
            Var::Properties if event.properties.is_empty() => V::UNDEFINED,
            Var::Properties => V::from_serialize(&event.properties),
            Var::Event => V::from_serialize(event),
            Var::Item => self.item.map(V::from_serialize).into(),
            Var::OrderTotal => order.and_then(|o| o.total).and_then(|t| t.0.to_string().parse::<f64>().ok()).into(),
            Var::VipThreshold => currency().as_ref().and_then(|c| self.store.vip_thresholds.get(c)).and_then(|t| t.to_string().parse::<f64>().ok()).into(),
            Var::Customer => Fields::value(
                CustomerAttr::ALL.into_iter().filter(|attr| reads.customer_attr(*attr)).map(|attr| (attr.name(), self.customer_attr(attr, reads))).collect(),
            ),
            Var::Enrollment => self
                .enrollment
                .map(|e| minijinja::context! {
                    key => e.key, variant => e.variant, opened => V::from_serialize(&e.opened), clicked => V::from_serialize(&e.clicked),
                })
                .into(),
        }
    }

    /// One attribute of `customer` (most expressions read one or two, and the maps and
    /// dates are the costly ones).
    fn customer_attr(&self, attr: CustomerAttr, reads: &Reads) -> minijinja::Value {
        use minijinja::Value as V;
        use CustomerAttr as A;
        let p = self.profile;
        let days_since = |at: DateTime<Utc>| (self.now - at).num_days();
        match attr {
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
            A::FirstOrderDate => p.first_order_at.map(|t| super::date_text(self.local_date(t))).as_deref().into(),
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
        }
    }
}

/// A native evaluation asks for one variable or one of `customer`'s attributes at a time, and
/// gets what `variables` holds, without the rest being built.
impl Variables for Scope<'_> {
    fn context(&self, reads: &Reads) -> minijinja::Value {
        self.variables(reads)
    }

    fn var(&self, var: Var, reads: &Reads) -> Option<minijinja::Value> {
        Some(if reads.var(var) { self.variable(var, reads) } else { minijinja::Value::UNDEFINED })
    }

    fn attr(&self, var: Var, name: &str, reads: &Reads) -> Option<minijinja::Value> {
        if var != Var::Customer || !reads.var(var) {
            return self.var(var, reads).and_then(|value| attr_of(value, name));
        }
        // `customer` is an object of the attributes read: any other name is undefined on it.
        let attr = CustomerAttr::ALL.into_iter().find(|attr| attr.name() == name && reads.customer_attr(*attr));
        Some(attr.map_or(minijinja::Value::UNDEFINED, |attr| self.customer_attr(attr, reads)))
    }
}

/// A few named values seen as a map, without building one (a map value sorts and stores
/// its entries on every evaluation): the variables of an expression, and `customer`.
/// Looked up by a short scan; listed in name order, as a map lists them.
#[derive(Debug)]
pub(super) struct Fields(Vec<(&'static str, minijinja::Value)>);

impl Fields {
    pub(super) fn value(mut fields: Vec<(&'static str, minijinja::Value)>) -> minijinja::Value {
        fields.sort_unstable_by_key(|(name, _)| *name);
        minijinja::Value::from_object(Fields(fields))
    }

    /// Listed in the order given: a struct as minijinja serializes it, which lists (and
    /// looks up) its fields the same way.
    pub(super) fn in_order(fields: Vec<(&'static str, minijinja::Value)>) -> minijinja::Value {
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
    expression.eval_with(scope)
}

pub fn evaluate(expression: &Expression, scope: &Scope<'_>) -> Result<bool, String> {
    evaluate_value(expression, scope).map(|v| v.is_true())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, CustomerState, Event};
    use crate::testing::{at, order_placed, repo_flows};

    /// A value with every map in it a plain minijinja map (not `Fields`): the oracle's context.
    fn plain(value: minijinja::Value) -> minijinja::Value {
        match value.kind() {
            minijinja::value::ValueKind::Map => minijinja::Value::from_iter(value.try_iter().unwrap().map(|key| (key.clone(), plain(value.get_item(&key).unwrap())))),
            _ => value,
        }
    }

    /// Building only the variables an expression reads gives the value building all of them
    /// gives, for the default flows' expressions and for ones reading every variable.
    #[test]
    fn an_expression_sees_the_same_values_when_only_what_it_reads_is_built() {
        let flows = repo_flows();
        let mut state = CustomerState::new(CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
        state.profile_mut().first_order_id = Some("A1".into());
        state.profile_mut().orders_count = 2;
        std::sync::Arc::make_mut(&mut state.profile_mut().total_spent).insert("JPY".into(), rust_decimal::Decimal::new(8600, 0));
        state.profile_mut().last_sent.insert("win_back".into(), at("2026-11-01T00:00:00Z"));
        state.profile_mut().last_sent.insert("welcome".into(), at("2026-10-01T00:00:00Z"));
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

    /// A native evaluation asks the scope for each variable, or attribute of `customer`, it
    /// looks up, never for the whole context, and gets the value minijinja gets from the
    /// whole context (as plain maps), kind and form included.
    #[test]
    fn a_native_evaluation_looks_up_single_variables_and_agrees_with_minijinja() {
        struct Counting<'a> {
            scope: &'a Scope<'a>,
            contexts: std::cell::Cell<u32>,
        }
        impl Variables for Counting<'_> {
            fn context(&self, reads: &Reads) -> minijinja::Value {
                self.contexts.set(self.contexts.get() + 1);
                self.scope.context(reads)
            }
            fn var(&self, var: Var, reads: &Reads) -> Option<minijinja::Value> {
                self.scope.var(var, reads)
            }
            fn attr(&self, var: Var, name: &str, reads: &Reads) -> Option<minijinja::Value> {
                self.scope.attr(var, name, reads)
            }
        }
        let flows = repo_flows();
        let mut state = CustomerState::new(CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
        state.profile_mut().first_order_id = Some("A1".into());
        state.profile_mut().orders_count = 2;
        state.profile_mut().last_order_at = Some(at("2026-10-01T00:00:00Z"));
        state.profile_mut().opens = vec![at("2026-11-19T00:00:00Z"), at("2026-11-20T00:00:00Z"), at("2026-09-01T00:00:00Z")];
        state.profile_mut().last_sent.insert("win_back".into(), at("2026-11-01T00:00:00Z"));
        let event = Event::parse(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
        let scope = Scope { profile: &state.profile, event: &event, item: None, enrollment: None, store: &flows.store, now: at("2026-11-21T00:00:00Z") };
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        let engagement_coupon = flows.flows().iter().find(|f| f.id == "engagement_coupon").and_then(|f| match &f.trigger {
            crate::flow::Trigger::Event { filter, .. } => filter.as_ref(),
            crate::flow::Trigger::CustomerDate(_) => None,
        });
        let engagement_coupon = engagement_coupon.expect("engagement_coupon's filter");
        let expressions = [
            engagement_coupon.source(),
            "customer.opens_30d",
            "customer.opens_30d >= 2 and customer.nope is undefined",
            "customer.days_since_sent.win_back + customer.orders_count",
            "customer.days_since_sent.welcome is undefined",
            "(customer.days_since_last_order | default(9999, true)) >= 30",
            "customer.days_since_sent.engagement_coupon | default(9999, true)",
            "customer.first_order_id == order.id and email is undefined",
            "order.items | selectattr('sku') | list | length",
            "customer.total_spent.JPY is undefined or customer.orders_count",
        ];
        for source in expressions {
            let counting = Counting { scope: &scope, contexts: std::cell::Cell::new(0) };
            let natively = Expression::parse(source).unwrap().eval_with(&counting).unwrap();
            assert_eq!(counting.contexts.get(), 0, "{source} is evaluated natively");
            let whole = env.compile_expression(source).unwrap().eval(plain(scope.variables(&Reads::everything()))).unwrap();
            assert_eq!((natively.kind(), format!("{natively:?}")), (whole.kind(), format!("{whole:?}")), "{source}");
        }
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
