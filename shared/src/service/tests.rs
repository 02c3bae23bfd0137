use serde_json::json;

use crate::domain::CustomerId;
use crate::ports::Store;
use crate::testing::{at, email_bounced, memory_app, order_placed, order_shipped, repo_flows};

use super::api::{handle, ApiKeys, ApiRequest};
use super::ServiceError;

fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).unwrap()
}

#[tokio::test]
async fn an_order_and_its_shipment_send_two_receipts_at_once() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let report = m.app.ingest_json(&[order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 0));
    let report = m.app.ingest_json(&[order_shipped("e2", "c1", "A1", "2026-11-21T10:00:00+09:00")]).await.unwrap();
    assert_eq!(report.accepted, 1);
    let sent = m.mailer.sent();
    assert_eq!(sent.len(), 2);
    let (_, receipt) = &sent[0];
    assert_eq!(receipt.to, "c1@example.jp");
    assert!(receipt.subject.contains("#A1"));
    assert!(receipt.tags.contains(&("customer_id".into(), "c1".into())));
    assert!(receipt.tags.contains(&("flow".into(), "order_confirmation".into())));
    assert!(sent[1].1.subject.contains("発送"));
    assert_eq!(m.publisher.published().len(), 2, "integrators hear of each send");
    let timeline = m.store.timeline(&customer("c1")).await.unwrap();
    let sent_lines: Vec<_> = timeline.iter().filter(|e| e.kind == crate::domain::TimelineKind::Sent).collect();
    assert_eq!(sent_lines.len(), 2);
    assert_eq!(sent_lines[0].message_id.as_deref(), Some("mem-1"), "receipts record their message id");
    assert!(
        !m.scheduler.pending().iter().any(|s| s.due.enrollment_id.starts_with("order_confirmation") || s.due.enrollment_id.starts_with("shipping_confirmation")),
        "immediate sends need no schedule"
    );
}

#[tokio::test]
async fn replaying_an_event_id_changes_nothing() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let event = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    m.app.ingest_json(&[event.clone()]).await.unwrap();
    let before = m.store.load(&customer("c1")).await.unwrap().unwrap();
    let report = m.app.ingest_json(&[event.clone(), event]).await.unwrap();
    assert_eq!((report.accepted, report.duplicates), (0, 2));
    assert_eq!(m.mailer.sent().len(), 1);
    assert_eq!(m.store.load(&customer("c1")).await.unwrap().unwrap(), before);
}

#[tokio::test]
async fn one_bad_event_refuses_the_batch_and_writes_nothing() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let mut bad = order_placed("e2", "c2", "A2", "2026-11-20T10:15:00+09:00");
    bad["order"]["items"][1]["quantity"] = json!(-1);
    let err = m.app.ingest_json(&[order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"), bad]).await.unwrap_err();
    match err {
        ServiceError::Invalid { index, error } => {
            assert_eq!(index, Some(1));
            assert_eq!(error.field, "order.items[1].quantity");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(m.store.load(&customer("c1")).await.unwrap().is_none());
    assert!(m.mailer.sent().is_empty());
}

#[tokio::test]
async fn email_is_required_the_first_time_only() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let mut anonymous = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    anonymous["customer"].as_object_mut().unwrap().remove("email");
    let err = m.app.ingest_json(&[anonymous.clone()]).await.unwrap_err();
    assert!(matches!(&err, ServiceError::Invalid { error, .. } if error.field == "customer.email"), "{err:?}");
    // Given earlier in the same batch, it counts.
    let report = m.app.ingest_json(&[order_placed("e0", "c1", "A0", "2026-11-20T10:00:00+09:00"), anonymous]).await.unwrap();
    assert_eq!(report.accepted, 2);
    assert_eq!(m.mailer.sent().len(), 2);
}

#[tokio::test]
async fn a_failed_receipt_is_not_committed_so_the_retry_sends_it() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    *m.mailer.fail_with.lock().unwrap() = Some("SES throttled".into());
    let event = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    let err = m.app.ingest_json(&[event.clone()]).await.unwrap_err();
    assert!(matches!(err, ServiceError::Retryable(_)), "{err:?}");
    assert!(m.store.load(&customer("c1")).await.unwrap().is_none(), "nothing committed");
    *m.mailer.fail_with.lock().unwrap() = None;
    assert_eq!(m.app.ingest_json(&[event]).await.unwrap().accepted, 1);
    assert_eq!(m.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_permanent_bounce_stops_receipts_and_a_transient_one_does_not() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    m.app.ingest_json(&[order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    m.app.ingest_json(&[email_bounced("b1", "c1", "transient", "2026-11-20T10:16:00+09:00")]).await.unwrap();
    m.app.ingest_json(&[order_placed("e2", "c1", "A2", "2026-11-20T10:17:00+09:00")]).await.unwrap();
    assert_eq!(m.mailer.sent().len(), 2);
    m.app.ingest_json(&[email_bounced("b2", "c1", "permanent", "2026-11-20T10:18:00+09:00")]).await.unwrap();
    let report = m.app.ingest_json(&[order_placed("e3", "c1", "A3", "2026-11-20T10:19:00+09:00")]).await.unwrap();
    assert_eq!(m.mailer.sent().len(), 2);
    assert_eq!(report.reports.iter().map(|r| (r.status, r.reason.as_deref())).collect::<Vec<_>>(), vec![("skipped", Some("suppressed"))]);
}

#[tokio::test]
async fn feedback_for_unknown_customers_is_dropped() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let event = crate::domain::Event::parse(&email_bounced("b1", "ghost", "permanent", "2026-11-20T10:16:00+09:00")).unwrap();
    assert_eq!(m.app.ingest_feedback(&event).await.unwrap(), super::Processed::UnknownCustomer);
    assert!(m.store.load(&customer("ghost")).await.unwrap().is_none());
}

#[tokio::test]
async fn http_api_status_codes() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let keys = ApiKeys::from_plain_key("secret");
    let body = serde_json::to_vec(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
    let request = |auth: Option<&'static str>, content_type: Option<&'static str>, body: Vec<u8>| (auth, content_type, body);
    let cases = vec![
        (request(Some("Bearer secret"), Some("application/json"), body.clone()), 202, json!({"accepted": 1, "duplicates": 0})),
        (request(Some("Bearer secret"), Some("application/json; charset=utf-8"), body.clone()), 202, json!({"accepted": 0, "duplicates": 1})),
        (request(Some("Bearer wrong"), Some("application/json"), body.clone()), 401, json!(null)),
        (request(None, Some("application/json"), body.clone()), 401, json!(null)),
        (request(Some("Bearer secret"), Some("text/plain"), body.clone()), 415, json!(null)),
        (request(Some("Bearer secret"), Some("application/json"), vec![b' '; 1024 * 1024 + 1]), 413, json!(null)),
        (request(Some("Bearer secret"), Some("application/json"), b"{nope".to_vec()), 400, json!(null)),
    ];
    for ((auth, content_type, body), status, expected) in cases {
        let response = handle(&m.app, &keys, ApiRequest { method: "POST", path: "/v1/events", authorization: auth, content_type, body: &body }).await;
        assert_eq!(response.status, status, "{auth:?} {content_type:?}: {}", response.body);
        if !expected.is_null() {
            assert_eq!(response.body, expected);
        } else {
            assert!(response.body["error"]["code"].is_string() && response.body["error"]["message"].is_string());
        }
    }
    let mut bad = order_placed("e9", "c9", "A9", "2026-11-20T10:15:00+09:00");
    bad["customer"]["email"] = json!("nope");
    let batch = serde_json::to_vec(&json!({"events": [order_placed("e8", "c8", "A8", "2026-11-20T10:15:00+09:00"), bad]})).unwrap();
    let response = handle(&m.app, &keys, ApiRequest { method: "POST", path: "/v1/events", authorization: Some("Bearer secret"), content_type: Some("application/json"), body: &batch }).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body["error"]["field"], "customer.email");
    assert_eq!(response.body["error"]["index"], 1);
    assert!(m.store.load(&customer("c8")).await.unwrap().is_none(), "nothing of the batch was written");
    let missing = handle(&m.app, &keys, ApiRequest { method: "GET", path: "/v1/nothing", authorization: None, content_type: None, body: b"" }).await;
    assert_eq!(missing.status, 404);
}
