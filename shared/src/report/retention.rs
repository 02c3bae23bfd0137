//! Retention from the store counters: CRR = (E − N) / B × 100 per calendar month, where B
//! and E are the customers active on the day before the month and on its last day (active:
//! within `retention.active_days` of their latest order) and N the customers whose first
//! order fell in the month; the repeat-purchase rate; the median days between orders.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::stats::{from_hundredths, Metric, StatCount, StatScope};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthRetention {
    /// `2026-11`; the first and last month may be partial (clipped to the report's range).
    pub month: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// B: active the day before `from`.
    pub active_at_start: i64,
    /// E: active on `to`.
    pub active_at_end: i64,
    /// N: first orders in the month.
    pub new_customers: i64,
    /// (E − N) / B, as a percentage; `None` when B is 0.
    pub crr: Option<f64>,
    pub orders: i64,
    pub revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    pub months: Vec<MonthRetention>,
    /// Customers with an order up to the end of the range.
    pub customers: i64,
    /// Of those, customers with at least two orders.
    pub repeat_customers: i64,
    pub repeat_purchase_rate: Option<f64>,
    /// Over the orders in the range that had an earlier order.
    pub median_days_between_orders: Option<f64>,
    pub orders: i64,
    pub revenue: Decimal,
}

/// The median of a histogram of whole days.
fn median(histogram: &BTreeMap<u32, i64>) -> Option<f64> {
    let total: i64 = histogram.values().sum();
    if total <= 0 {
        return None;
    }
    // 1-based ranks of the middle one (odd) or two (even) values.
    let (low_rank, high_rank) = ((total + 1) / 2, total / 2 + 1);
    let mut seen = 0;
    let (mut low, mut high) = (None, None);
    for (days, count) in histogram {
        seen += count;
        if low.is_none() && seen >= low_rank {
            low = Some(*days);
        }
        if high.is_none() && seen >= high_rank {
            high = Some(*days);
        }
    }
    Some((f64::from(low?) + f64::from(high?)) / 2.0)
}

pub(super) fn retention(rows: &[StatCount], from: NaiveDate, to: NaiveDate, currency: &str) -> Retention {
    let mut active_delta: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    let mut new_by_day: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    let mut orders_by_day: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
    let mut gaps: BTreeMap<u32, i64> = BTreeMap::new();
    let (mut customers, mut repeat_customers) = (0, 0);
    for row in rows.iter().filter(|r| r.scope == StatScope::Store && r.day <= to) {
        match &row.metric {
            Metric::ActiveDelta => *active_delta.entry(row.day).or_default() += row.value,
            Metric::NewCustomers => {
                customers += row.value;
                *new_by_day.entry(row.day).or_default() += row.value;
            }
            Metric::SecondOrders => repeat_customers += row.value,
            Metric::Orders => orders_by_day.entry(row.day).or_default().0 += row.value,
            Metric::OrderRevenue(c) if c == currency => orders_by_day.entry(row.day).or_default().1 += row.value,
            Metric::GapDays(days) if row.day >= from => *gaps.entry(*days).or_default() += row.value,
            _ => {}
        }
    }
    let active_on = |day: NaiveDate| active_delta.range(..=day).map(|(_, v)| v).sum::<i64>();
    let sum_between = |map: &BTreeMap<NaiveDate, i64>, a: NaiveDate, b: NaiveDate| map.range(a..=b).map(|(_, v)| v).sum::<i64>();
    let mut months = Vec::new();
    let mut start = from;
    while start <= to {
        let next_month = if start.month() == 12 { NaiveDate::from_ymd_opt(start.year() + 1, 1, 1) } else { NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1) };
        let Some(next_month) = next_month else { break };
        let end = (next_month - Duration::days(1)).min(to);
        let begin = active_on(start - Duration::days(1));
        let finish = active_on(end);
        let new_customers = sum_between(&new_by_day, start, end);
        let (orders, revenue) = orders_by_day.range(start..=end).fold((0, 0), |(o, r), (_, (a, b))| (o + a, r + b));
        months.push(MonthRetention {
            month: start.format("%Y-%m").to_string(),
            from: start,
            to: end,
            active_at_start: begin,
            active_at_end: finish,
            new_customers,
            crr: (begin > 0).then(|| 100.0 * (finish - new_customers) as f64 / begin as f64),
            orders,
            revenue: from_hundredths(revenue),
        });
        start = next_month;
    }
    let (orders, revenue) = orders_by_day.range(from..=to).fold((0, 0), |(o, r), (_, (a, b))| (o + a, r + b));
    Retention {
        months,
        customers,
        repeat_customers,
        repeat_purchase_rate: (customers > 0).then(|| repeat_customers as f64 / customers as f64),
        median_days_between_orders: median(&gaps),
        orders,
        revenue: from_hundredths(revenue),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_a_histogram() {
        assert_eq!(median(&[(10, 1), (20, 1), (30, 1)].into_iter().collect()), Some(20.0));
        assert_eq!(median(&[(10, 2), (30, 2)].into_iter().collect()), Some(20.0));
        assert_eq!(median(&[(7, 5), (100, 1)].into_iter().collect()), Some(7.0));
        assert_eq!(median(&Default::default()), None);
    }
}
