//! The report as plain text for a terminal: fixed-width columns, one section per question.

use std::fmt::Write;

use rust_decimal::Decimal;

use super::{percent, FunnelRow, Report};
use crate::render::format_money;

fn revenue(row: &FunnelRow, currency: &str) -> String {
    row.funnel.revenue.get(currency).map_or_else(|| format_money(Decimal::ZERO, currency), |r| format_money(*r, currency))
}

fn funnel_line(out: &mut String, row: &FunnelRow, currency: &str) {
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>14} {:>9}",
        row.flow,
        row.funnel.sent,
        percent(row.delivery_rate),
        percent(row.open_rate),
        percent(row.click_rate),
        row.funnel.converted,
        percent(row.conversion_rate),
        revenue(row, currency),
        row.revenue_per_recipient.map_or_else(|| "–".into(), |r| format_money(r, currency)),
    );
}

pub fn to_table(report: &Report) -> String {
    let mut out = String::new();
    let currency = report.currency.as_str();
    let _ = writeln!(out, "{} — {} to {}", report.store, report.from, report.to);
    let _ = writeln!(
        out,
        "Conversions: orders within {} h of a click, else an open, of a marketing email (last touch). Rates: opens and clicks per delivered, conversions per sent.\n",
        report.attribution_window_hours
    );
    let _ = writeln!(out, "FLOWS");
    let _ = writeln!(out, "{:<24} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>14} {:>9}", "flow", "sent", "deliv.", "opened", "clicked", "conv.", "conv.%", "revenue", "rev/recip");
    for row in &report.flows {
        funnel_line(&mut out, row, currency);
    }
    funnel_line(&mut out, &report.total, currency);

    let _ = writeln!(out, "\nA/B TESTS");
    if report.ab_tests.is_empty() {
        let _ = writeln!(out, "  no flow with a split sent in this period");
    }
    for test in &report.ab_tests {
        let _ = writeln!(out, "  {}", test.flow);
        for v in &test.variants {
            let _ = writeln!(
                out,
                "    {:<12} sent {:>7}  clicked {:>6} ({:>6})  converted {:>5} ({:>6})",
                v.variant,
                v.sent,
                v.clicked,
                percent(v.click_rate),
                v.converted,
                percent(v.conversion_rate)
            );
        }
        for c in &test.comparisons {
            let detail = match (&c.verdict, &c.test) {
                (Some(verdict), _) => verdict.clone(),
                (None, Some(t)) => format!("no significant difference yet (p = {:.3})", t.p_value),
                (None, None) => "too few to test (a z-test needs 5 expected successes and failures per variant)".into(),
            };
            let _ = writeln!(out, "    {} vs {}, {}: {detail}", c.challenger, c.control, c.metric);
        }
    }

    let d = &report.deliverability;
    let _ = writeln!(out, "\nDELIVERABILITY (Gmail: keep under 0.1 %, never reach 0.3 %)");
    let _ = writeln!(out, "  sent {} · delivered {} · transient bounces {} · unsubscribes {}", d.sent, d.delivered, d.bounced_transient, d.unsubscribed);
    let _ = writeln!(out, "  hard bounce rate  {:>7}  {:<8} ({} of {} sent)", percent3(d.bounce.rate), d.bounce.status, d.bounced_permanent, d.sent);
    let _ = writeln!(out, "  complaint rate    {:>7}  {:<8} ({} of {} delivered)", percent3(d.complaint.rate), d.complaint.status, d.complained, d.delivered);

    let r = &report.retention;
    let _ = writeln!(out, "\nRETENTION (CRR = (E − N) / B; active = an order in the last {} days)", report.active_days);
    let _ = writeln!(out, "  {:<8} {:>9} {:>8} {:>9} {:>8} {:>7} {:>14}", "month", "B start", "N new", "E end", "CRR", "orders", "revenue");
    for m in &r.months {
        let _ = writeln!(
            out,
            "  {:<8} {:>9} {:>8} {:>9} {:>8} {:>7} {:>14}",
            m.month,
            m.active_at_start,
            m.new_customers,
            m.active_at_end,
            m.crr.map_or_else(|| "–".into(), |c| format!("{c:.1}%")),
            m.orders,
            format_money(m.revenue, currency)
        );
    }
    let _ = writeln!(
        out,
        "  repeat-purchase rate {} ({} of {} customers) · median days between orders {}",
        percent(r.repeat_purchase_rate),
        r.repeat_customers,
        r.customers,
        r.median_days_between_orders.map_or_else(|| "–".into(), |m| format!("{m:.1}"))
    );
    out
}

/// Rates near the Gmail lines need more than one decimal.
fn percent3(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.2}%", r * 100.0))
}
