//! Flow expressions (`trigger.filter`, `when`, `wait.days`, …): checked when the flow loads,
//! compiled once on first use together with the list of variables each one reads, so that
//! evaluating one builds only those (the engine's `Scope::variables`) and looks nothing up
//! by its text. Most are evaluated natively (`native`), which asks for each variable or
//! `customer` attribute as it looks it up (`Variables`); the rest by minijinja.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use super::native::Native;

/// The variables a flow expression can read (flows/README.md), in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Order,
    Shipment,
    Checkout,
    Review,
    Email,
    Properties,
    Event,
    Item,
    OrderTotal,
    VipThreshold,
    Customer,
    Enrollment,
}

impl Var {
    pub const ALL: [Var; 12] = [
        Var::Order,
        Var::Shipment,
        Var::Checkout,
        Var::Review,
        Var::Email,
        Var::Properties,
        Var::Event,
        Var::Item,
        Var::OrderTotal,
        Var::VipThreshold,
        Var::Customer,
        Var::Enrollment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Var::Order => "order",
            Var::Shipment => "shipment",
            Var::Checkout => "checkout",
            Var::Review => "review",
            Var::Email => "email",
            Var::Properties => "properties",
            Var::Event => "event",
            Var::Item => "item",
            Var::OrderTotal => "order_total",
            Var::VipThreshold => "vip_threshold",
            Var::Customer => "customer",
            Var::Enrollment => "enrollment",
        }
    }
}

/// The attributes of `customer`, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerAttr {
    Id,
    Email,
    FirstName,
    LastName,
    Locale,
    HasAccount,
    MarketingConsent,
    OrdersCount,
    TotalSpent,
    PurchasedSkus,
    SkuOrderCounts,
    Birthday,
    FirstOrderDate,
    FirstOrderId,
    DaysSinceLastOrder,
    Opens30d,
    DaysSinceSent,
}

impl CustomerAttr {
    pub const ALL: [CustomerAttr; 17] = [
        CustomerAttr::Id,
        CustomerAttr::Email,
        CustomerAttr::FirstName,
        CustomerAttr::LastName,
        CustomerAttr::Locale,
        CustomerAttr::HasAccount,
        CustomerAttr::MarketingConsent,
        CustomerAttr::OrdersCount,
        CustomerAttr::TotalSpent,
        CustomerAttr::PurchasedSkus,
        CustomerAttr::SkuOrderCounts,
        CustomerAttr::Birthday,
        CustomerAttr::FirstOrderDate,
        CustomerAttr::FirstOrderId,
        CustomerAttr::DaysSinceLastOrder,
        CustomerAttr::Opens30d,
        CustomerAttr::DaysSinceSent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CustomerAttr::Id => "id",
            CustomerAttr::Email => "email",
            CustomerAttr::FirstName => "first_name",
            CustomerAttr::LastName => "last_name",
            CustomerAttr::Locale => "locale",
            CustomerAttr::HasAccount => "has_account",
            CustomerAttr::MarketingConsent => "marketing_consent",
            CustomerAttr::OrdersCount => "orders_count",
            CustomerAttr::TotalSpent => "total_spent",
            CustomerAttr::PurchasedSkus => "purchased_skus",
            CustomerAttr::SkuOrderCounts => "sku_order_counts",
            CustomerAttr::Birthday => "birthday",
            CustomerAttr::FirstOrderDate => "first_order_date",
            CustomerAttr::FirstOrderId => "first_order_id",
            CustomerAttr::DaysSinceLastOrder => "days_since_last_order",
            CustomerAttr::Opens30d => "opens_30d",
            CustomerAttr::DaysSinceSent => "days_since_sent",
        }
    }
}

/// The fields of `order`, as the event serializes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAttr {
    Id,
    Number,
    Total,
    Currency,
    Items,
}

impl OrderAttr {
    pub const ALL: [OrderAttr; 5] = [OrderAttr::Id, OrderAttr::Number, OrderAttr::Total, OrderAttr::Currency, OrderAttr::Items];

    pub fn name(self) -> &'static str {
        match self {
            OrderAttr::Id => "id",
            OrderAttr::Number => "number",
            OrderAttr::Total => "total",
            OrderAttr::Currency => "currency",
            OrderAttr::Items => "items",
        }
    }
}

/// What an expression reads: which variables, which attributes of `customer` and of `order`,
/// and which flows of `customer.days_since_sent` (`None`: the whole map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    vars: u16,
    customer: u32,
    /// `u8::MAX`: the whole order (read bare, by a computed key, or as `order.items`, which is
    /// also a map's method).
    order: u8,
    days_since_sent: Option<Arc<[String]>>,
}

impl Reads {
    /// Everything (an expression that does not compile, and tests that want every variable).
    pub fn everything() -> Reads {
        Reads { vars: u16::MAX, customer: u32::MAX, order: u8::MAX, days_since_sent: None }
    }

    /// What a template reads, from minijinja's undeclared variables as dotted paths
    /// (`undeclared_variables(true)`): the same analysis as an expression's.
    pub fn of_paths<'a>(paths: impl IntoIterator<Item = &'a String>) -> Reads {
        let paths: BTreeSet<&str> = paths.into_iter().map(String::as_str).collect();
        let top: BTreeSet<&str> = paths.iter().map(|p| p.split('.').next().unwrap_or(p)).collect();
        Reads::of(&top, &paths)
    }

    /// From minijinja's undeclared variables: `top` as names, `paths` as dotted paths as
    /// deep as written (`customer.total_spent.JPY`; a bare `customer` when read whole or by
    /// a computed key).
    fn of(top: &BTreeSet<&str>, paths: &BTreeSet<&str>) -> Reads {
        let vars = Var::ALL.iter().enumerate().filter(|(_, v)| top.contains(v.name())).fold(0u16, |bits, (i, _)| bits | 1 << i);
        // The keys read below a map; `None` when it is read whole (bare, by a computed key,
        // or through one of its methods: `customer.items()` is the path `customer.items`).
        let keys_of = |map: &str| -> Option<BTreeSet<&str>> {
            if paths.contains(map) {
                return None;
            }
            let keys: BTreeSet<&str> = paths
                .iter()
                .filter_map(|p| p.strip_prefix(map).and_then(|rest| rest.strip_prefix('.')))
                .map(|rest| rest.split('.').next().unwrap_or(rest))
                .collect();
            (!keys.iter().any(|k| MAP_METHODS.contains(k))).then_some(keys)
        };
        let customer = match keys_of("customer") {
            None => u32::MAX,
            Some(attrs) => CustomerAttr::ALL.iter().enumerate().filter(|(_, a)| attrs.contains(a.name())).fold(0u32, |bits, (i, _)| bits | 1 << i),
        };
        let order = match keys_of("order") {
            None => u8::MAX,
            Some(attrs) => OrderAttr::ALL.iter().enumerate().filter(|(_, a)| attrs.contains(a.name())).fold(0u8, |bits, (i, _)| bits | 1 << i),
        };
        let days_since_sent = keys_of("customer")
            .and(keys_of("customer.days_since_sent"))
            .map(|flows| flows.into_iter().map(str::to_owned).collect::<Arc<[String]>>());
        Reads { vars, customer, order, days_since_sent }
    }

    pub fn var(&self, var: Var) -> bool {
        self.vars & (1 << var as u16) != 0
    }

    pub fn customer_attr(&self, attr: CustomerAttr) -> bool {
        self.customer & (1 << attr as u32) != 0
    }

    /// The fields of `order` read, or `None` when it is read whole.
    pub fn order_attrs(&self) -> Option<impl Iterator<Item = OrderAttr> + '_> {
        (self.order != u8::MAX).then(|| OrderAttr::ALL.into_iter().filter(|a| self.order & (1 << *a as u8) != 0))
    }

    /// The flows whose `days_since_sent` entry is read, or `None` for the whole map.
    pub fn days_since_sent(&self) -> Option<&[String]> {
        self.days_since_sent.as_deref()
    }
}

/// What a map answers as a method (`customer.days_since_sent.items()`): reading one of them
/// reads the whole map.
const MAP_METHODS: [&str; 4] = ["items", "keys", "values", "get"];

/// The one environment flow expressions compile in: unknown names are undefined, not errors.
static ENVIRONMENT: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env
});

/// A flow expression, checked when the flow loads. Equal when the source is.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    /// Compiled, with what it reads, on first use: a Lambda loads every flow at cold start
    /// but evaluates few of their expressions, and keeping all of them compiled costs it
    /// about 30 more page faults at start (BENCHMARKS.md).
    compiled: Arc<OnceLock<Compiled>>,
}

struct Compiled {
    expression: minijinja::Expression<'static, 'static>,
    /// The same expression for the native evaluator, when it is in its subset.
    native: Option<Native>,
    reads: Reads,
}

fn compile(source: &str) -> Result<minijinja::Expression<'static, 'static>, String> {
    ENVIRONMENT.compile_expression_owned(source.to_owned()).map_err(|e| format!("{source:?} is not a valid expression: {e}"))
}

impl Compiled {
    fn of(source: &str) -> Result<Compiled, String> {
        let expression = compile(source)?;
        // One pass: the top-level names are the paths' heads.
        let reads = Reads::of_paths(&expression.undeclared_variables(true));
        Ok(Compiled { expression, native: Native::compile(source), reads })
    }
}

impl Expression {
    /// Checks the syntax now; compiles for good on first use.
    pub fn parse(source: &str) -> Result<Expression, String> {
        compile(source)?;
        Ok(Expression { source: source.into(), compiled: Arc::default() })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn compiled(&self) -> Result<&Compiled, String> {
        if let Some(compiled) = self.compiled.get() {
            return Ok(compiled);
        }
        let fresh = Compiled::of(&self.source)?;
        Ok(self.compiled.get_or_init(|| fresh))
    }

    /// What it reads (everything, for an expression that does not compile: parse checked it).
    pub fn reads(&self) -> Reads {
        self.compiled().map_or_else(|_| Reads::everything(), |c| c.reads.clone())
    }

    /// Evaluates against `variables`: natively, reading only the variables and attributes it
    /// looks up, or else by minijinja against a context of every variable it reads.
    pub fn eval_with(&self, variables: &impl Variables) -> Result<minijinja::Value, String> {
        let compiled = self.compiled()?;
        if let Some(value) = compiled.native.as_ref().and_then(|native| native.eval(variables, &compiled.reads)) {
            return Ok(value);
        }
        compiled.expression.eval(variables.context(&compiled.reads)).map_err(|e| e.to_string())
    }

    /// Evaluates against a context of the variables it reads.
    pub fn eval(&self, context: minijinja::Value) -> Result<minijinja::Value, String> {
        self.eval_with(&context)
    }
}

/// What an expression is evaluated against: the variables it reads as one context value (for
/// minijinja), or one at a time (for the native evaluator, so that it builds no other).
pub trait Variables {
    /// The variables `reads` names, as one value.
    fn context(&self, reads: &Reads) -> minijinja::Value;
    /// One variable, as `context` has it; `None` where looking it up there fails.
    fn var(&self, var: Var, reads: &Reads) -> Option<minijinja::Value>;
    /// `var.name`, as `context` has it.
    fn attr(&self, var: Var, name: &str, reads: &Reads) -> Option<minijinja::Value> {
        self.var(var, reads).and_then(|value| attr_of(value, name))
    }
}

/// A context already built.
impl Variables for minijinja::Value {
    fn context(&self, _: &Reads) -> minijinja::Value {
        self.clone()
    }

    fn var(&self, var: Var, _: &Reads) -> Option<minijinja::Value> {
        self.get_attr(var.name()).ok()
    }
}

/// `value.name`, as minijinja looks it up; `None` for an undefined value, which minijinja
/// makes an error to look into.
pub fn attr_of(value: minijinja::Value, name: &str) -> Option<minijinja::Value> {
    if value.is_undefined() {
        return None;
    }
    value.get_attr(name).ok()
}

/// As its source: the bundled flows' model (`flow::BundledModel`), which `build.rs` writes
/// after loading the flows whole, so reading one back does not check its syntax again
/// (compiling each at every cold start was 17 % of a Lambda's start: BENCHMARKS.md).
impl serde::Serialize for Expression {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Expression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source: Box<str> = serde::Deserialize::deserialize(deserializer)?;
        Ok(Expression { source: source.into(), compiled: Arc::default() })
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.source, f)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_knows_what_it_reads() {
        let e = Expression::parse("customer.opens_30d >= 3 and (customer.days_since_sent.engagement_coupon | default(9999, true)) >= 90 and order.id").unwrap();
        let reads = &e.reads();
        assert!(reads.var(Var::Customer) && reads.var(Var::Order) && !reads.var(Var::Item) && !reads.var(Var::Event));
        assert!(reads.customer_attr(CustomerAttr::Opens30d) && reads.customer_attr(CustomerAttr::DaysSinceSent));
        assert!(!reads.customer_attr(CustomerAttr::Email) && !reads.customer_attr(CustomerAttr::OrdersCount));
        assert_eq!(reads.days_since_sent(), Some(&["engagement_coupon".to_owned()][..]));

        let whole = Expression::parse("customer['email'] and customer.days_since_sent.win_back").unwrap();
        assert!(whole.reads().customer_attr(CustomerAttr::Email) && whole.reads().customer_attr(CustomerAttr::Birthday), "a subscript reads all of customer");
        assert_eq!(whole.reads().days_since_sent(), None);
        let map = Expression::parse("customer.days_since_sent | length").unwrap();
        assert_eq!(map.reads().days_since_sent(), None, "the map read whole");
        let keyed = Expression::parse("customer.days_since_sent['win_back'] and customer.days_since_sent.welcome").unwrap();
        assert_eq!(keyed.reads().days_since_sent(), None, "a subscript reads the whole map");
        let method = Expression::parse("customer.days_since_sent.items() | list").unwrap();
        assert_eq!(method.reads().days_since_sent(), None, "a method reads the whole map");
        assert!(Expression::parse("customer.items() | list").unwrap().reads().customer_attr(CustomerAttr::Email));
    }

    #[test]
    fn a_bad_expression_is_named() {
        let error = Expression::parse("customer.orders_count >").err().unwrap();
        assert!(error.starts_with("\"customer.orders_count >\" is not a valid expression"), "{error}");
    }

    #[test]
    fn equal_when_the_source_is() {
        assert_eq!(Expression::parse("a == 1").unwrap(), Expression::parse("a == 1").unwrap());
        assert_ne!(Expression::parse("a == 1").unwrap(), Expression::parse("a == 2").unwrap());
        assert_eq!(format!("{:?}", Expression::parse("a == 1").unwrap()), "\"a == 1\"");
    }
}
