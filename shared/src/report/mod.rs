//! Reports built from the counters (`stats`) alone, so they read the same from the
//! simulator, `aftercare dev` and DynamoDB: per-flow funnels, A/B results, deliverability
//! and retention. Rendered as a text table, JSON or self-contained HTML with SVG charts.

mod abtest;
mod html;
mod retention;
mod table;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

pub use abtest::{two_proportion_test, AbTest, Comparison, ProportionTest, VariantResult};
pub use html::to_html;
pub use retention::{MonthRetention, Retention};
pub use table::to_table;

use crate::flow::FlowSet;
use crate::stats::{from_hundredths, EmailKey, Metric, StatCount, StatScope};

/// The first day counters are read from: retention needs every order since the store began.
pub const BEGINNING: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// Gmail's bulk-sender lines: keep spam complaints under 0.1 %, never reach 0.3 %.
pub const GMAIL_TARGET_RATE: f64 = 0.001;
pub const GMAIL_LIMIT_RATE: f64 = 0.003;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Funnel {
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub converted: i64,
    pub bounced_permanent: i64,
    pub bounced_transient: i64,
    pub complained: i64,
    pub unsubscribed: i64,
    /// Credited revenue per currency.
    pub revenue: BTreeMap<String, Decimal>,
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Funnel {
    fn add(&mut self, metric: &Metric, value: i64) {
        match metric {
            Metric::Sent => self.sent += value,
            Metric::Delivered => self.delivered += value,
            Metric::Opened => self.opened += value,
            Metric::Clicked => self.clicked += value,
            Metric::Converted => self.converted += value,
            Metric::BouncedPermanent => self.bounced_permanent += value,
            Metric::BouncedTransient => self.bounced_transient += value,
            Metric::Complained => self.complained += value,
            Metric::Unsubscribed => self.unsubscribed += value,
            Metric::Revenue(currency) => *self.revenue.entry(currency.clone()).or_default() += from_hundredths(value),
            _ => {}
        }
    }

    fn merge(&mut self, other: &Funnel) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.opened += other.opened;
        self.clicked += other.clicked;
        self.converted += other.converted;
        self.bounced_permanent += other.bounced_permanent;
        self.bounced_transient += other.bounced_transient;
        self.complained += other.complained;
        self.unsubscribed += other.unsubscribed;
        for (currency, amount) in &other.revenue {
            *self.revenue.entry(currency.clone()).or_default() += amount;
        }
    }

    /// Opens and clicks count against delivered email (sent, when no delivery was reported).
    fn reached(&self) -> i64 {
        if self.delivered > 0 {
            self.delivered
        } else {
            self.sent
        }
    }
    pub fn delivery_rate(&self) -> Option<f64> {
        ratio(self.delivered, self.sent)
    }
    pub fn open_rate(&self) -> Option<f64> {
        ratio(self.opened, self.reached())
    }
    pub fn click_rate(&self) -> Option<f64> {
        ratio(self.clicked, self.reached())
    }
    pub fn conversion_rate(&self) -> Option<f64> {
        ratio(self.converted, self.sent)
    }
    pub fn revenue_per_recipient(&self, currency: &str) -> Option<Decimal> {
        let revenue = self.revenue.get(currency).copied().unwrap_or_default();
        (self.sent > 0).then(|| (revenue / Decimal::from(self.sent)).round_dp(2))
    }
}

/// A funnel with its rates, as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelRow {
    pub flow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub category: String,
    #[serde(flatten)]
    pub funnel: Funnel,
    pub delivery_rate: Option<f64>,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    pub conversion_rate: Option<f64>,
    /// In the store's currency.
    pub revenue_per_recipient: Option<Decimal>,
}

impl FunnelRow {
    fn new(flow: &str, key: Option<&EmailKey>, category: &str, funnel: Funnel, currency: &str) -> Self {
        FunnelRow {
            flow: flow.to_owned(),
            step: key.map(|k| k.step.to_string()),
            template: key.map(|k| k.template.to_string()),
            variant: key.and_then(|k| k.variant.as_ref().map(ToString::to_string)),
            category: category.to_owned(),
            delivery_rate: funnel.delivery_rate(),
            open_rate: funnel.open_rate(),
            click_rate: funnel.click_rate(),
            conversion_rate: funnel.conversion_rate(),
            revenue_per_recipient: funnel.revenue_per_recipient(currency),
            funnel,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateCheck {
    pub rate: Option<f64>,
    /// `ok` under 0.1 %, `warning` under 0.3 %, else `over`.
    pub status: &'static str,
}

fn rate_check(part: i64, whole: i64) -> RateCheck {
    let rate = ratio(part, whole);
    let status = match rate {
        None => "ok",
        Some(r) if r < GMAIL_TARGET_RATE => "ok",
        Some(r) if r < GMAIL_LIMIT_RATE => "warning",
        Some(_) => "over",
    };
    RateCheck { rate, status }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deliverability {
    pub sent: i64,
    pub delivered: i64,
    pub bounced_permanent: i64,
    pub bounced_transient: i64,
    pub complained: i64,
    pub unsubscribed: i64,
    /// Permanent bounces per email sent.
    pub bounce: RateCheck,
    /// Complaints per email delivered.
    pub complaint: RateCheck,
}

/// One day of the period, for the charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayPoint {
    pub day: NaiveDate,
    pub sent: i64,
    pub opened: i64,
    pub clicked: i64,
    pub orders: i64,
    pub converted: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub store: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub currency: String,
    pub attribution_window_hours: i64,
    /// Days a customer stays active after an order (retention).
    pub active_days: u32,
    pub total: FunnelRow,
    pub flows: Vec<FunnelRow>,
    pub steps: Vec<FunnelRow>,
    pub ab_tests: Vec<AbTest>,
    pub deliverability: Deliverability,
    pub retention: Retention,
    pub days: Vec<DayPoint>,
}

impl Report {
    /// `rows`: counters from `BEGINNING` (or earlier) up to `to`. Emails count from `from`;
    /// retention looks back to the beginning.
    pub fn build(flows: &FlowSet, rows: &[StatCount], from: NaiveDate, to: NaiveDate) -> Report {
        let store = &flows.store;
        let currency = store.currency.clone();
        let in_range = |d: &NaiveDate| (from..=to).contains(d);
        let mut by_key: BTreeMap<&EmailKey, Funnel> = BTreeMap::new();
        let mut days: BTreeMap<NaiveDate, DayPoint> = BTreeMap::new();
        for row in rows.iter().filter(|r| in_range(&r.day)) {
            let point = days.entry(row.day).or_insert_with(|| DayPoint { day: row.day, sent: 0, opened: 0, clicked: 0, orders: 0, converted: 0 });
            match (&row.scope, &row.metric) {
                (StatScope::Email(key), metric) => {
                    by_key.entry(key).or_default().add(metric, row.value);
                    match metric {
                        Metric::Sent => point.sent += row.value,
                        Metric::Opened => point.opened += row.value,
                        Metric::Clicked => point.clicked += row.value,
                        Metric::Converted => point.converted += row.value,
                        _ => {}
                    }
                }
                (StatScope::Store, Metric::Orders) => point.orders += row.value,
                _ => {}
            }
        }
        let category = |flow: &str| flows.flow(flow).map_or("removed", |f| f.category.as_str()).to_owned();
        let steps: Vec<FunnelRow> = by_key.iter().map(|(key, funnel)| FunnelRow::new(&key.flow, Some(key), &category(&key.flow), funnel.clone(), &currency)).collect();
        let mut per_flow: BTreeMap<&str, Funnel> = BTreeMap::new();
        let mut total = Funnel::default();
        for (key, funnel) in &by_key {
            per_flow.entry(key.flow.as_str()).or_default().merge(funnel);
            total.merge(funnel);
        }
        // Flows in the order they are defined, then any no longer defined.
        let mut order: Vec<&str> = flows.flows().iter().map(|f| f.id.as_str()).filter(|id| per_flow.contains_key(id)).collect();
        order.extend(per_flow.keys().filter(|id| flows.flow(id).is_none()));
        let flow_rows = order.iter().map(|id| FunnelRow::new(id, None, &category(id), per_flow[id].clone(), &currency)).collect();
        let deliverability = Deliverability {
            sent: total.sent,
            delivered: total.delivered,
            bounced_permanent: total.bounced_permanent,
            bounced_transient: total.bounced_transient,
            complained: total.complained,
            unsubscribed: total.unsubscribed,
            bounce: rate_check(total.bounced_permanent, total.sent),
            complaint: rate_check(total.complained, total.delivered.max(if total.delivered == 0 { total.sent } else { 0 })),
        };
        Report {
            store: store.name.clone(),
            from,
            to,
            attribution_window_hours: store.attribution_window.num_hours(),
            active_days: store.active_days,
            total: FunnelRow::new("all flows", None, "", total, &currency),
            flows: flow_rows,
            ab_tests: abtest::ab_tests(&by_key),
            deliverability,
            retention: retention::retention(rows, from, to, &currency),
            steps,
            days: days.into_values().collect(),
            currency,
        }
    }
}

/// `12.3%`, or `–` when there is nothing to divide by.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.1}%", r * 100.0))
}

#[cfg(test)]
mod tests;
