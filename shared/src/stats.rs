//! Counters the reports are built from. Two kinds of rows, both keyed by a UTC day:
//! - per email (flow × step × template × variant, on the day it was **sent**): sent,
//!   delivered, unique opens and clicks, bounces, complaints, unsubscribes, conversions and
//!   their revenue. Keying by send day keeps every rate of a date range at most 100 %.
//! - per store (on the day of the order): orders, revenue, new customers, second orders,
//!   days since the previous order, and the change in active customers (see `ActiveDelta`).
//!
//! The engine emits increments with each decision and every store adds them in the same
//! atomic write as the customer's state, so a retried event never counts twice and an
//! erased customer leaves only counts behind.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::domain::Name;

/// Which email a counter belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EmailKey {
    pub flow: Name,
    pub step: Name,
    pub template: Name,
    pub variant: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum StatScope {
    Email(EmailKey),
    Store,
}

const SEPARATOR: char = '|';

impl StatScope {
    /// `store`, or `email|flow|step|template|variant` (ids never contain `|`).
    pub fn encode(&self) -> String {
        match self {
            StatScope::Store => "store".into(),
            StatScope::Email(k) => {
                format!("email{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}", k.flow, k.step, k.template, k.variant.as_deref().unwrap_or(""))
            }
        }
    }

    pub fn decode(text: &str) -> Option<StatScope> {
        if text == "store" {
            return Some(StatScope::Store);
        }
        let mut parts = text.split(SEPARATOR);
        if parts.next()? != "email" {
            return None;
        }
        let (flow, step, template, variant) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(StatScope::Email(EmailKey {
            flow: flow.into(),
            step: step.into(),
            template: template.into(),
            variant: (!variant.is_empty()).then(|| variant.into()),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Metric {
    Sent,
    Delivered,
    /// Unique: the first open of each email.
    Opened,
    /// Unique: the first click of each email.
    Clicked,
    BouncedPermanent,
    BouncedTransient,
    Complained,
    Unsubscribed,
    /// Orders credited to this email (last touch).
    Converted,
    /// Revenue of the credited orders, in hundredths of the currency.
    Revenue(String),
    Orders,
    /// All orders' totals, in hundredths of the currency.
    OrderRevenue(String),
    /// Customers whose first order fell on this day.
    NewCustomers,
    /// Customers whose second order fell on this day (repeat-purchase rate).
    SecondOrders,
    /// Orders placed this many days after the customer's previous one.
    GapDays(u32),
    /// Customers who became active on this day minus those who lapsed. A customer is active
    /// from the day of an order until `active_days` after their latest one; the number of
    /// active customers on day D is the sum of all deltas up to D.
    ActiveDelta,
}

impl Metric {
    pub fn name(&self) -> String {
        match self {
            Metric::Sent => "sent".into(),
            Metric::Delivered => "delivered".into(),
            Metric::Opened => "opened".into(),
            Metric::Clicked => "clicked".into(),
            Metric::BouncedPermanent => "bounced_permanent".into(),
            Metric::BouncedTransient => "bounced_transient".into(),
            Metric::Complained => "complained".into(),
            Metric::Unsubscribed => "unsubscribed".into(),
            Metric::Converted => "converted".into(),
            Metric::Revenue(currency) => format!("revenue_x100_{currency}"),
            Metric::Orders => "orders".into(),
            Metric::OrderRevenue(currency) => format!("order_revenue_x100_{currency}"),
            Metric::NewCustomers => "new_customers".into(),
            Metric::SecondOrders => "second_orders".into(),
            Metric::GapDays(days) => format!("gap_days_{days}"),
            Metric::ActiveDelta => "active_delta".into(),
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "sent" => Metric::Sent,
            "delivered" => Metric::Delivered,
            "opened" => Metric::Opened,
            "clicked" => Metric::Clicked,
            "bounced_permanent" => Metric::BouncedPermanent,
            "bounced_transient" => Metric::BouncedTransient,
            "complained" => Metric::Complained,
            "unsubscribed" => Metric::Unsubscribed,
            "converted" => Metric::Converted,
            "orders" => Metric::Orders,
            "new_customers" => Metric::NewCustomers,
            "second_orders" => Metric::SecondOrders,
            "active_delta" => Metric::ActiveDelta,
            other => {
                if let Some(c) = other.strip_prefix("order_revenue_x100_") {
                    Metric::OrderRevenue(c.into())
                } else if let Some(c) = other.strip_prefix("revenue_x100_") {
                    Metric::Revenue(c.into())
                } else if let Some(d) = other.strip_prefix("gap_days_") {
                    Metric::GapDays(d.parse().ok()?)
                } else {
                    return None;
                }
            }
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One counter on one day: an increment when written, a total when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatCount {
    pub day: NaiveDate,
    pub scope: StatScope,
    pub metric: Metric,
    pub value: i64,
}

impl StatCount {
    pub fn new(day: NaiveDate, scope: StatScope, metric: Metric, value: i64) -> Self {
        Self { day, scope, metric, value }
    }
}

/// Money as whole hundredths, the unit counters add in (DynamoDB `ADD`, SQLite integers).
pub fn hundredths(amount: Decimal) -> i64 {
    (amount * Decimal::from(100)).round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero).to_i64().unwrap_or(0)
}

pub fn from_hundredths(value: i64) -> Decimal {
    Decimal::new(value, 2)
}

/// Adds up rows of the same day, scope and metric (stores may return one per shard).
pub fn merge(rows: impl IntoIterator<Item = StatCount>) -> Vec<StatCount> {
    let mut totals: BTreeMap<(NaiveDate, StatScope, Metric), i64> = BTreeMap::new();
    for row in rows {
        *totals.entry((row.day, row.scope, row.metric)).or_default() += row.value;
    }
    totals.into_iter().filter(|(_, v)| *v != 0).map(|((day, scope, metric), value)| StatCount { day, scope, metric, value }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_metrics_round_trip_through_their_stored_names() {
        let scopes = [
            StatScope::Store,
            StatScope::Email(EmailKey { flow: "thank_you".into(), step: "thank".into(), template: "thank_you_first".into(), variant: None }),
            StatScope::Email(EmailKey { flow: "welcome".into(), step: "offer".into(), template: "welcome_offer".into(), variant: Some("b".into()) }),
        ];
        for scope in scopes {
            assert_eq!(StatScope::decode(&scope.encode()), Some(scope.clone()));
        }
        assert_eq!(StatScope::decode("email|a|b"), None);
        let metrics = [Metric::Sent, Metric::Revenue("JPY".into()), Metric::OrderRevenue("USD".into()), Metric::GapDays(31), Metric::ActiveDelta, Metric::Clicked];
        for metric in metrics {
            assert_eq!(Metric::parse(&metric.name()), Some(metric.clone()));
        }
        assert_eq!(Metric::parse("gap_days_x"), None);
        assert_eq!(Metric::parse("nonsense"), None);
    }

    #[test]
    fn money_in_hundredths() {
        assert_eq!(hundredths(Decimal::new(1280000, 2)), 1280000);
        assert_eq!(hundredths(Decimal::new(12345, 3)), 1235);
        assert_eq!(from_hundredths(250), Decimal::new(250, 2));
    }
}
