//! The report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no
//! external assets (it can be mailed or archived as is).

use std::fmt::Write;

use super::{percent, FunnelRow, Report};
use crate::render::format_money;

const COLORS: [&str; 5] = ["#6b4f3f", "#2f7d6d", "#c58b2b", "#3b6fb6", "#b5483b"];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// sent → delivered → opened → clicked → converted, as bars scaled to sent.
fn funnel_svg(row: &FunnelRow) -> String {
    let f = &row.funnel;
    let stages = [("sent", f.sent), ("delivered", f.delivered), ("opened", f.opened), ("clicked", f.clicked), ("converted", f.converted)];
    let max = f.sent.max(1) as f64;
    let mut svg = String::from(r#"<svg class="funnel" viewBox="0 0 320 80" width="320" height="80" role="img">"#);
    for (i, (name, value)) in stages.iter().enumerate() {
        let y = i as f64 * 16.0;
        let width = (240.0 * *value as f64 / max).max(if *value > 0 { 1.0 } else { 0.0 });
        let _ = write!(
            svg,
            r#"<rect x="0" y="{y}" width="{width:.1}" height="12" fill="{}"><title>{name}: {value}</title></rect><text x="{:.1}" y="{:.1}" font-size="10">{value}</text>"#,
            COLORS[i],
            width + 4.0,
            y + 10.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One line per series over the report's days.
fn daily_svg(report: &Report) -> String {
    let (w, h, pad) = (760.0, 220.0, 30.0);
    let series: [(&str, Vec<i64>); 4] = [
        ("sent", report.days.iter().map(|d| d.sent).collect()),
        ("opened", report.days.iter().map(|d| d.opened).collect()),
        ("clicked", report.days.iter().map(|d| d.clicked).collect()),
        ("orders", report.days.iter().map(|d| d.orders).collect()),
    ];
    let max = series.iter().flat_map(|(_, v)| v.iter()).copied().max().unwrap_or(0).max(1) as f64;
    let n = report.days.len().max(2) as f64 - 1.0;
    let mut svg = format!(r#"<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="emails and orders per day">"#);
    let _ = write!(svg, r##"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="#999"/>"##, h - pad, w - 10.0, h - pad);
    let _ = write!(svg, r##"<text x="2" y="{}" font-size="10">{max}</text><text x="2" y="{}" font-size="10">0</text>"##, pad, h - pad);
    for (i, (name, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(x, v)| format!("{:.1},{:.1}", pad + (w - pad - 10.0) * x as f64 / n, (h - pad) - (h - 2.0 * pad) * *v as f64 / max))
            .collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#, COLORS[i], points.join(" "));
        let _ = write!(svg, r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{name}</text>"#, pad + 90.0 * i as f64, h - 12.0, COLORS[i], pad + 14.0 + 90.0 * i as f64, h - 3.0);
    }
    if let (Some(first), Some(last)) = (report.days.first(), report.days.last()) {
        let _ = write!(svg, r#"<text x="{pad}" y="{}" font-size="10">{}</text><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"#, h - pad + 12.0, first.day, w - 10.0, h - pad + 12.0, last.day);
    }
    svg.push_str("</svg>");
    svg
}

/// CRR per month as bars on a 0–100 % scale.
fn crr_svg(report: &Report) -> String {
    let months = &report.retention.months;
    let (h, bar, gap) = (180.0, 48.0, 24.0);
    let w = 40.0 + months.len() as f64 * (bar + gap);
    let mut svg = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="CRR per month">"#);
    for (i, m) in months.iter().enumerate() {
        let x = 30.0 + i as f64 * (bar + gap);
        let crr = m.crr.unwrap_or(0.0).clamp(0.0, 100.0);
        let height = (h - 50.0) * crr / 100.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{:.1}" width="{bar}" height="{height:.1}" fill="{}"><title>{}: B {} N {} E {}</title></rect><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            h - 30.0 - height,
            COLORS[1],
            m.month,
            m.active_at_start,
            m.new_customers,
            m.active_at_end,
            x + bar / 2.0,
            h - 34.0 - height,
            m.crr.map_or_else(|| "–".into(), |c| format!("{c:.1}%")),
            x + bar / 2.0,
            h - 14.0,
            m.month
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn to_html(report: &Report) -> String {
    let currency = report.currency.as_str();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{} — report {} to {}</title><style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}h1{{font-size:22px}}h2{{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;width:100%}}th,td{{padding:4px 8px;text-align:right;border-bottom:1px solid #eee;vertical-align:middle}}th:first-child,td:first-child{{text-align:left}}
.ok{{color:#2f7d6d}}.warning{{color:#c58b2b}}.over{{color:#b5483b;font-weight:bold}}.muted{{color:#777}}.cards{{display:flex;gap:16px;flex-wrap:wrap}}.card{{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:140px}}.card b{{display:block;font-size:20px}}
</style></head><body><h1>{}</h1><p class="muted">{} to {} · conversions: orders within {} h of a click, else an open, of a marketing email (last touch) · opens and clicks per delivered email, conversions per sent</p>"#,
        esc(&report.store),
        report.from,
        report.to,
        esc(&report.store),
        report.from,
        report.to,
        report.attribution_window_hours
    );
    let t = &report.total;
    let r = &report.retention;
    let _ = write!(
        out,
        r#"<div class="cards"><div class="card">emails sent<b>{}</b></div><div class="card">open rate<b>{}</b></div><div class="card">click rate<b>{}</b></div><div class="card">attributed revenue<b>{}</b></div><div class="card">orders<b>{}</b></div><div class="card">repeat-purchase rate<b>{}</b></div></div>"#,
        t.funnel.sent,
        percent(t.open_rate),
        percent(t.click_rate),
        esc(&t.funnel.revenue.get(currency).map_or_else(|| format_money(Default::default(), currency), |v| format_money(*v, currency))),
        r.orders,
        percent(r.repeat_purchase_rate)
    );
    let _ = write!(out, "<h2>Emails and orders per day</h2>{}", daily_svg(report));
    let _ = write!(out, r#"<h2>Flows</h2><table><tr><th>flow</th><th>sent → delivered → opened → clicked → converted</th><th>delivered</th><th>opened</th><th>clicked</th><th>converted</th><th>revenue</th><th>per recipient</th></tr>"#);
    for row in report.flows.iter().chain(std::iter::once(&report.total)) {
        let _ = write!(
            out,
            "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
            esc(&row.flow),
            esc(&row.category),
            funnel_svg(row),
            percent(row.delivery_rate),
            percent(row.open_rate),
            percent(row.click_rate),
            row.funnel.converted,
            percent(row.conversion_rate),
            esc(&row.funnel.revenue.get(currency).map_or_else(|| format_money(Default::default(), currency), |v| format_money(*v, currency))),
            esc(&row.revenue_per_recipient.map_or_else(|| "–".into(), |v| format_money(v, currency)))
        );
    }
    out.push_str("</table>");
    out.push_str("<h2>A/B tests</h2>");
    if report.ab_tests.is_empty() {
        out.push_str(r#"<p class="muted">No flow with a split sent in this period.</p>"#);
    }
    for test in &report.ab_tests {
        let _ = write!(out, "<h3>{}</h3><table><tr><th>variant</th><th>sent</th><th>clicked</th><th>click rate</th><th>converted</th><th>conversion rate</th></tr>", esc(&test.flow));
        for v in &test.variants {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.variant),
                v.sent,
                v.clicked,
                percent(v.click_rate),
                v.converted,
                percent(v.conversion_rate)
            );
        }
        out.push_str("</table><ul>");
        for c in &test.comparisons {
            let text = match (&c.verdict, &c.test) {
                (Some(v), _) => format!("<b>{}</b>", esc(v)),
                (None, Some(t)) => format!("{} vs {}, {}: no significant difference yet (p = {:.3})", esc(&c.challenger), esc(&c.control), c.metric, t.p_value),
                (None, None) => format!("{} vs {}, {}: not enough data", esc(&c.challenger), esc(&c.control), c.metric),
            };
            let _ = write!(out, "<li>{text}</li>");
        }
        out.push_str("</ul>");
    }
    let d = &report.deliverability;
    let rate = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{:.2}%", r * 100.0));
    let _ = write!(
        out,
        r#"<h2>Deliverability</h2><p class="muted">Gmail asks bulk senders to keep spam complaints under 0.1 % and never reach 0.3 %; the same lines are applied to hard bounces.</p>
<table><tr><th></th><th>count</th><th>rate</th><th>status</th></tr><tr><td>hard bounces (per sent)</td><td>{}</td><td>{}</td><td class="{}">{}</td></tr><tr><td>complaints (per delivered)</td><td>{}</td><td>{}</td><td class="{}">{}</td></tr><tr><td>transient bounces</td><td>{}</td><td></td><td></td></tr><tr><td>unsubscribes</td><td>{}</td><td></td><td></td></tr></table>"#,
        d.bounced_permanent,
        rate(d.bounce.rate),
        d.bounce.status,
        d.bounce.status,
        d.complained,
        rate(d.complaint.rate),
        d.complaint.status,
        d.complaint.status,
        d.bounced_transient,
        d.unsubscribed
    );
    let _ = write!(
        out,
        r#"<h2>Retention</h2><p class="muted">CRR = (E − N) / B × 100: B customers active the day before the month, E active on its last day, N new in the month. Active: an order in the last {} days.</p>{}<table><tr><th>month</th><th>B</th><th>N</th><th>E</th><th>CRR</th><th>orders</th><th>revenue</th></tr>"#,
        report.active_days,
        crr_svg(report)
    );
    for m in &r.months {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.month,
            m.active_at_start,
            m.new_customers,
            m.active_at_end,
            m.crr.map_or_else(|| "–".into(), |c| format!("{c:.1}%")),
            m.orders,
            esc(&format_money(m.revenue, currency))
        );
    }
    let _ = writeln!(
        out,
        "</table><p>Repeat-purchase rate <b>{}</b> ({} of {} customers) · median days between orders <b>{}</b></p></body></html>",
        percent(r.repeat_purchase_rate),
        r.repeat_customers,
        r.customers,
        r.median_days_between_orders.map_or_else(|| "–".into(), |m| format!("{m:.1}"))
    );
    out
}
