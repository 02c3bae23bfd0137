use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::*;
use crate::domain::{CustomerState, Event, Name};
use crate::engine::{decide, enrollment_tag, Input};
use crate::ports::Store;
use crate::service::feedback;
use crate::stats::{EmailKey, Metric, StatCount, StatScope};
use crate::testing::{at, memory_app, order_placed, repo_flows};

fn event(v: &Value) -> Event {
    Event::parse(v).unwrap_or_else(|e| panic!("fixture {v}: {e}"))
}

/// A marketing flow that mails `a` for every registration: two registrations, two emails.
fn promo_flows() -> FlowSet {
    let dir = crate::testing::flows_dir();
    FlowSet::from_files(vec![
        ("store.yaml".to_owned(), std::fs::read_to_string(dir.join("store.yaml")).unwrap()),
        ("promo.yaml".to_owned(), "id: promo\ncategory: marketing\ntrigger: {event: customer_registered}\nkey: event\nsteps:\n  - {id: send, send: a}\n".to_owned()),
        ("templates/ja/a.mjml".to_owned(), "---\nsubject: a\n---\n<mjml></mjml>".to_owned()),
    ])
    .unwrap()
}

/// Runs events through the pure engine in order, at their own time; returns every counter.
fn run(flows: &FlowSet, events: &[Value]) -> (CustomerState, Vec<StatCount>, Vec<Option<Name>>) {
    let mut state = None;
    let mut stats = Vec::new();
    let mut notes = Vec::new();
    for v in events {
        let e = event(v);
        let decision = decide(flows, state.take(), Input::Event(&e), e.occurred_at_utc());
        notes.push(decision.timeline.first().and_then(|l| l.reason.clone()));
        stats.extend(decision.stats);
        state = Some(decision.state);
    }
    (state.expect("at least one event"), stats, notes)
}

fn total(stats: &[StatCount], flow_enrollment: Option<&str>, metric: &Metric) -> i64 {
    stats
        .iter()
        .filter(|s| &s.metric == metric)
        .filter(|s| match (&s.scope, flow_enrollment) {
            (StatScope::Email(k), Some(flow)) => k.flow == flow,
            (StatScope::Email(_), None) => true,
            (StatScope::Store, _) => false,
        })
        .map(|s| s.value)
        .sum()
}

fn register(id: &str, when: &str) -> Value {
    json!({"id": id, "type": "customer_registered", "occurred_at": when,
           "customer": {"id": "c1", "email": "c1@example.jp", "marketing_consent": true, "timezone": "Asia/Tokyo"}})
}

fn engagement(id: &str, kind: &str, registration: &str, when: &str) -> Value {
    json!({"id": id, "type": kind, "occurred_at": when, "customer": {"id": "c1"},
           "email": {"flow": "promo", "step": "send", "enrollment": enrollment_tag(&format!("promo:{registration}"))}})
}

fn order(id: &str, when: &str, total: &str) -> Value {
    json!({"id": id, "type": "order_placed", "occurred_at": when, "customer": {"id": "c1"},
           "order": {"id": format!("o-{id}"), "total": total, "currency": "JPY", "items": [{"sku": "BEANS-HOUSE-200", "quantity": 1, "unit_price": total}]}})
}

/// Which registration's email got each conversion, as the send's day and the revenue.
fn conversions(stats: &[StatCount]) -> Vec<(NaiveDate, i64)> {
    let mut by_day: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for s in stats.iter().filter(|s| matches!(s.scope, StatScope::Email(_))) {
        if let Metric::Revenue(_) = s.metric {
            *by_day.entry(s.day).or_default() += s.value;
        }
    }
    by_day.into_iter().collect()
}

#[test]
fn an_order_before_the_email_or_before_its_click_is_not_credited() {
    let flows = promo_flows();
    let (_, stats, notes) = run(
        &flows,
        &[
            order("o0", "2026-11-02T01:00:00Z", "1000"), // before any email
            register("r1", "2026-11-02T02:00:00Z"),
            order("o1", "2026-11-02T02:30:00Z", "2000"), // after the send, before the click
            engagement("k1", "email_clicked", "r1", "2026-11-02T03:00:00Z"),
        ],
    );
    assert_eq!(total(&stats, Some("promo"), &Metric::Sent), 1);
    assert_eq!(total(&stats, Some("promo"), &Metric::Clicked), 1);
    assert_eq!(total(&stats, None, &Metric::Converted), 0, "a click after the order credits nothing");
    assert_eq!(notes[0], None);
    assert_eq!(notes[2], None);
}

#[test]
fn the_window_is_five_days_after_the_click_inclusive() {
    let flows = promo_flows();
    assert_eq!(flows.store.attribution_window, Duration::days(5));
    let base = [register("r1", "2026-11-02T02:00:00Z"), engagement("k1", "email_clicked", "r1", "2026-11-02T03:00:00Z")];
    let (_, inside, notes) = run(&flows, &[base[0].clone(), base[1].clone(), order("o1", "2026-11-07T03:00:00Z", "12800")]);
    assert_eq!(total(&inside, Some("promo"), &Metric::Converted), 1);
    assert_eq!(total(&inside, Some("promo"), &Metric::Revenue("JPY".into())), 1_280_000, "revenue in hundredths");
    assert_eq!(notes[2].as_deref(), Some("attributed:promo/send"));
    let (_, outside, notes) = run(&flows, &[base[0].clone(), base[1].clone(), order("o1", "2026-11-07T03:01:00Z", "12800")]);
    assert_eq!(total(&outside, None, &Metric::Converted), 0, "a minute past the window");
    assert_eq!(notes[2], None);
}

#[test]
fn with_two_emails_in_the_window_the_last_click_wins_over_a_later_open() {
    let flows = promo_flows();
    let (state, stats, _) = run(
        &flows,
        &[
            register("r1", "2026-11-02T02:00:00Z"),
            register("r2", "2026-11-03T03:00:00Z"),
            engagement("k1", "email_clicked", "r1", "2026-11-03T04:00:00Z"),
            engagement("p2", "email_opened", "r2", "2026-11-03T05:00:00Z"),
            order("o1", "2026-11-04T02:00:00Z", "1000"), // click on r1's email beats the later open of r2's
            engagement("k2", "email_clicked", "r2", "2026-11-04T03:00:00Z"),
            order("o2", "2026-11-04T05:00:00Z", "3000"), // now r2's is the last click
        ],
    );
    assert_eq!(state.recent_sends.len(), 2);
    assert_eq!(conversions(&stats), vec![(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(), 100_000), (NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(), 300_000)]);
    // An open alone is enough when nothing was clicked.
    let (_, opened_only, _) = run(&flows, &[register("r1", "2026-11-02T02:00:00Z"), engagement("p1", "email_opened", "r1", "2026-11-02T05:00:00Z"), order("o1", "2026-11-03T02:00:00Z", "500")]);
    assert_eq!(total(&opened_only, Some("promo"), &Metric::Converted), 1);
}

#[test]
fn transactional_email_is_never_credited() {
    let flows = repo_flows();
    let mut first = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    first["customer"]["marketing_consent"] = json!(false);
    let click = json!({"id": "k", "type": "email_clicked", "occurred_at": "2026-11-20T10:30:00+09:00", "customer": {"id": "c1"}, "email": {"flow": "order_confirmation"}});
    let (_, stats, _) = run(&flows, &[first, click, order_placed("e2", "c1", "A2", "2026-11-21T10:15:00+09:00")]);
    assert_eq!(total(&stats, Some("order_confirmation"), &Metric::Clicked), 1);
    assert_eq!(total(&stats, None, &Metric::Converted), 0);
}

fn store_order(customer: &str, id: &str, day: &str) -> Value {
    let mut v = order_placed(id, customer, &format!("{customer}-{id}"), &format!("{day}T12:00:00Z"));
    v["customer"]["marketing_consent"] = json!(false);
    v
}

/// CRR by hand, active = an order in the last 90 days (flows/store.yaml):
/// D orders 2025-12-01 (active to 2026-02-28), A 01-10 and 03-05, B 01-20, C 02-15, E 03-20.
///   Jan: B = {D} = 1, N = {A, B} = 2, E = {D, A, B} = 3        → (3 − 2) / 1 = 100 %
///   Feb: B = 3, N = {C} = 1, E = {A, B, C, D} = 4              → (4 − 1) / 3 = 100 %
///   Mar: B = 4, N = {E} = 1, E = {A, B, C, E} = 4 (D lapsed)   → (4 − 1) / 4 = 75 %
#[tokio::test]
async fn crr_matches_the_hand_computed_example() {
    let flows = repo_flows();
    assert_eq!(flows.store.active_days, 90);
    let m = memory_app(flows, at("2025-12-01T12:00:00Z"));
    let orders = [("d", "1", "2025-12-01"), ("a", "1", "2026-01-10"), ("b", "1", "2026-01-20"), ("c", "1", "2026-02-15"), ("a", "2", "2026-03-05"), ("e", "1", "2026-03-20")];
    for (customer, id, day) in orders {
        m.clock.set(at(&format!("{day}T12:00:00Z")));
        m.app.ingest_json(&[store_order(customer, id, day)]).await.unwrap();
    }
    // A retried event must not count again.
    m.app.ingest_json(&[store_order("a", "2", "2026-03-05")]).await.unwrap();
    let report = m.app.report(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 3, 31).unwrap()).await.unwrap();
    let months: Vec<(&str, i64, i64, i64, Option<f64>, i64)> =
        report.retention.months.iter().map(|m| (m.month.as_str(), m.active_at_start, m.new_customers, m.active_at_end, m.crr, m.orders)).collect();
    assert_eq!(
        months,
        vec![("2026-01", 1, 2, 3, Some(100.0), 2), ("2026-02", 3, 1, 4, Some(100.0), 1), ("2026-03", 4, 1, 4, Some(75.0), 2)]
    );
    assert_eq!(report.retention.customers, 5, "D counts: the range looks back to the first order");
    assert_eq!(report.retention.repeat_customers, 1);
    assert_eq!(report.retention.repeat_purchase_rate, Some(0.2));
    assert_eq!(report.retention.median_days_between_orders, Some(54.0), "A: 2026-01-10 → 03-05");
    assert_eq!(report.retention.orders, 5);
    assert_eq!(report.retention.revenue, Decimal::from(5 * 12800));
}

#[test]
fn two_proportion_test_matches_a_textbook_value() {
    // 5.0 % vs 8.0 % of 1,000 each: pooled 6.5 %, SE 0.011025, z = 2.721, p = 0.0065.
    let t = two_proportion_test(50, 1000, 80, 1000).unwrap();
    assert!((t.z - 2.7211).abs() < 1e-3, "z = {}", t.z);
    assert!((t.p_value - 0.00651).abs() < 1e-4, "p = {}", t.p_value);
    let close = two_proportion_test(50, 1000, 55, 1000).unwrap();
    assert!(close.p_value > 0.5);
    assert_eq!(two_proportion_test(0, 0, 1, 10), None);
    assert_eq!(two_proportion_test(0, 10, 0, 10), None, "no variance");
    assert_eq!(two_proportion_test(0, 49, 4, 51), None, "4 clicks in 100 sends is too few for a z-test");
}

fn email_rows(flow: &str, variant: &str, sent: i64, delivered: i64, clicked: i64, converted: i64) -> Vec<StatCount> {
    let day = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let scope = StatScope::Email(EmailKey { flow: flow.into(), step: "send".into(), template: format!("t_{variant}").into(), variant: Some(variant.into()) });
    [(Metric::Sent, sent), (Metric::Delivered, delivered), (Metric::Clicked, clicked), (Metric::Converted, converted)]
        .into_iter()
        .map(|(m, v)| StatCount::new(day, scope.clone(), m, v))
        .collect()
}

#[test]
fn ab_verdict_only_when_significant() {
    let flows = repo_flows();
    let mut rows = email_rows("welcome", "a", 1000, 1000, 50, 10);
    rows.extend(email_rows("welcome", "b", 1000, 1000, 80, 12));
    let day = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let report = Report::build(&flows, &rows, day, day);
    let test = &report.ab_tests[0];
    assert_eq!(test.flow, "welcome");
    assert_eq!(test.variants.iter().map(|v| v.variant.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    let click = test.comparisons.iter().find(|c| c.metric == "click rate").unwrap();
    assert_eq!(click.verdict.as_deref(), Some("b beats a on click rate (8.0% vs 5.0%, p = 0.0065)"));
    let conversion = test.comparisons.iter().find(|c| c.metric == "conversion rate").unwrap();
    assert_eq!(conversion.verdict, None, "1.0 % vs 1.2 % of 1,000 is noise");
    assert!(conversion.test.unwrap().p_value > 0.05);
}

#[test]
fn deliverability_against_gmail_lines_and_rendering() {
    let flows = repo_flows();
    let day = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let scope = StatScope::Email(EmailKey { flow: "thank_you".into(), step: "thank".into(), template: "thank_you_first".into(), variant: None });
    let rows: Vec<StatCount> = [(Metric::Sent, 10_000), (Metric::Delivered, 9_950), (Metric::Opened, 4_000), (Metric::Clicked, 400), (Metric::BouncedPermanent, 15), (Metric::Complained, 35)]
        .into_iter()
        .map(|(m, v)| StatCount::new(day, scope.clone(), m, v))
        .collect();
    let report = Report::build(&flows, &rows, day, day);
    assert_eq!(report.deliverability.bounce.status, "warning", "0.15 % hard bounces");
    assert_eq!(report.deliverability.complaint.status, "over", "0.35 % complaints");
    assert_eq!(report.flows.len(), 1);
    assert_eq!(report.flows[0].open_rate, Some(4000.0 / 9950.0));
    let table = to_table(&report);
    assert!(table.contains("thank_you"), "{table}");
    assert!(table.contains("complaint rate      0.35%  over"), "{table}");
    let html = to_html(&report);
    assert!(html.contains("<svg") && html.contains("class=\"over\""));
    assert!(!html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"), "no scripts, no external assets");
}

/// Every SES detail-type in `events/feedback`, pointed at a real send, counts once.
#[tokio::test]
async fn every_ses_fixture_counts_once_on_the_email_it_belongs_to() {
    let flows = repo_flows();
    let m = memory_app(flows, at("2026-11-20T01:15:00Z"));
    m.app.ingest_json(&[order_placed("e1", "cust-1", "1001", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    let state = m.store.load(&crate::domain::CustomerId::parse("cust-1").unwrap()).await.unwrap().unwrap().value;
    let message_id = state.recent_sends[0].message_id.clone().expect("a receipt keeps its message id");
    let dir = crate::testing::flows_dir().join("../events/feedback");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 11);
    let mut kinds = Vec::new();
    for _pass in 0..2 {
        for path in &files {
            let mut fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            fixture["detail"]["mail"]["messageId"] = json!(message_id);
            if path.ends_with("bounced_transient.json") {
                // The fixtures bounce at the same instant; as one message's bounces they would be one event.
                fixture["detail"]["bounce"]["timestamp"] = json!("2026-11-20T01:20:00.000Z");
            }
            let detail_type = fixture["detail-type"].as_str().unwrap().to_owned();
            let e = feedback::to_event(&detail_type, &fixture["detail"], Utc::now()).unwrap();
            kinds.push(e.event_type.to_string());
            m.app.ingest_feedback(&e).await.unwrap();
        }
    }
    let rows = m.store.stats(NaiveDate::MIN, NaiveDate::MAX).await.unwrap();
    let count = |metric: Metric| rows.iter().filter(|r| r.metric == metric && matches!(&r.scope, StatScope::Email(k) if k.flow == "order_confirmation")).map(|r| r.value).sum::<i64>();
    assert_eq!(count(Metric::Sent), 1);
    assert_eq!(count(Metric::Delivered), 1);
    assert_eq!(count(Metric::Opened), 1, "unique opens");
    assert_eq!(count(Metric::Clicked), 1);
    assert_eq!(count(Metric::BouncedPermanent), 1, "the second pass is deduplicated by event id");
    assert_eq!(count(Metric::BouncedTransient), 1);
    assert_eq!(count(Metric::Complained), 1);
    assert_eq!(count(Metric::Unsubscribed), 0, "already opted out by the complaint");
    assert!(kinds.contains(&"unsubscribed".to_owned()));

    // On its own, the SES subscription event is an unsubscribe credited to its email.
    let fresh = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    fresh.app.ingest_json(&[order_placed("e1", "cust-1", "1001", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    let mut fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("subscribed.json")).unwrap()).unwrap();
    fixture["detail"]["mail"]["messageId"] = json!(message_id_of(&fresh).await);
    let e = feedback::to_event("Email Subscribed", &fixture["detail"], Utc::now()).unwrap();
    fresh.app.ingest_feedback(&e).await.unwrap();
    let rows = fresh.store.stats(NaiveDate::MIN, NaiveDate::MAX).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.metric == Metric::Unsubscribed).map(|r| r.value).sum::<i64>(), 1);
}

async fn message_id_of(m: &crate::testing::MemoryApp) -> String {
    let state = m.store.load(&crate::domain::CustomerId::parse("cust-1").unwrap()).await.unwrap().unwrap().value;
    state.recent_sends[0].message_id.clone().unwrap().to_string()
}

#[cfg(feature = "local")]
#[tokio::test]
async fn the_report_reads_the_same_from_every_store() {
    // Counters written through SQLite and through memory give the same report.
    let flows = repo_flows();
    let memory = memory_app(flows.clone(), at("2026-11-01T00:00:00Z"));
    let db = crate::local::LocalDb::in_memory().unwrap();
    let mut sqlite = memory_app(flows, at("2026-11-01T00:00:00Z"));
    let sqlite_store = std::sync::Arc::new(crate::local::SqliteStore::new(db));
    sqlite.app.ports.store = sqlite_store.clone();
    for (i, day) in ["2026-11-02", "2026-11-09", "2026-11-20"].iter().enumerate() {
        for m in [&memory, &sqlite] {
            m.clock.set(at(&format!("{day}T03:00:00Z")));
            m.app.ingest_json(&[order_placed(&format!("e{i}"), "c1", &format!("A{i}"), &format!("{day}T12:00:00+09:00"))]).await.unwrap();
        }
    }
    let from = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let a = memory.app.report(from, to).await.unwrap();
    let b = sqlite.app.report(from, to).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.retention.orders, 3);
    assert!(a.total.funnel.sent >= 3, "receipts were counted");
}
