use serde_json::json;

use crate::domain::CustomerId;
use crate::ports::Store;
use crate::testing::{at, email_bounced, memory_app, order_placed, order_shipped, repo_flows};

use super::api::{handle, AccessKeys, ApiKeys, ApiRequest};
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
    assert!(matches!(&err, ServiceError::Invalid { index: None, error } if error.field == "customer.email"), "{err:?}");
    assert!(m.store.load(&customer("c1")).await.unwrap().is_none(), "nothing written");
    assert!(!m.store.event_seen(&customer("c1"), &crate::domain::EventId::parse("e1").unwrap()).await.unwrap(), "the event is not marked seen, so a corrected retry is accepted");
    // In a batch, the whole batch is refused and the index names the event.
    let mut other = anonymous.clone();
    other["id"] = json!("e2");
    let err = m.app.ingest_json(&[order_placed("e3", "c3", "A3", "2026-11-20T10:00:00+09:00"), other]).await.unwrap_err();
    assert!(matches!(&err, ServiceError::Invalid { index: Some(1), error } if error.field == "customer.email"), "{err:?}");
    assert!(m.store.load(&customer("c3")).await.unwrap().is_none(), "nothing of the batch written");
    assert!(m.mailer.sent().is_empty());
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
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key("secret"), admin: None };
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
        let response = handle(&m.app, &keys, ApiRequest { method: "POST", path: "/v1/events", query: None, authorization: auth, content_type, body: &body }).await;
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
    let response = handle(&m.app, &keys, ApiRequest { method: "POST", path: "/v1/events", query: None, authorization: Some("Bearer secret"), content_type: Some("application/json"), body: &batch }).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body["error"]["field"], "customer.email");
    assert_eq!(response.body["error"]["index"], 1);
    assert!(m.store.load(&customer("c8")).await.unwrap().is_none(), "nothing of the batch was written");
    let missing = handle(&m.app, &keys, ApiRequest { method: "GET", path: "/v1/nothing", query: None, authorization: None, content_type: None, body: b"" }).await;
    assert_eq!(missing.status, 404);
}

/// A consenting customer's order is in, and its thank-you (the first marketing step) is due now.
async fn thank_you_due() -> (crate::testing::MemoryApp, crate::ports::ScheduledStep) {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let mut order = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    order["customer"]["marketing_consent"] = json!(true);
    m.app.ingest_json(&[order]).await.unwrap();
    m.clock.set(at("2026-11-20T02:15:00Z"));
    let due = m.scheduler.take_next_due(at("2026-11-20T02:15:00Z")).expect("thank-you scheduled");
    (m, due)
}

/// Marketing is at most once: a send that fails after its step was claimed is not retried,
/// and the customer's timeline says it failed and why.
#[tokio::test]
async fn a_marketing_send_failing_after_its_claim_is_recorded_and_not_retried() {
    let (m, due) = thank_you_due().await;
    *m.mailer.fail_with.lock().unwrap() = Some("SES throttled".into());
    let mut reports = Vec::new();
    assert_eq!(m.app.run_step(&due.due, &mut reports).await.unwrap(), super::Processed::Applied);
    assert!(reports.iter().all(|r| r.status != "sent"), "{reports:?}");
    let failed: Vec<_> = m.store.timeline(&customer("c1")).await.unwrap().into_iter().filter(|e| e.kind == crate::domain::TimelineKind::Failed).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!((failed[0].flow.as_deref(), failed[0].template.as_deref()), (Some("thank_you"), Some("thank_you_first")));
    assert!(failed[0].reason.as_deref().is_some_and(|r| r.contains("SES throttled")), "{:?}", failed[0].reason);
    *m.mailer.fail_with.lock().unwrap() = None;
    assert_eq!(m.app.run_step(&due.due, &mut Vec::new()).await.unwrap(), super::Processed::Stale, "the claimed step does not run again");
    assert_eq!(m.mailer.sent().len(), 1, "only the receipt went out");
}

#[tokio::test]
async fn marketing_carries_one_click_unsubscribe_and_receipts_do_not() {
    let (m, due) = thank_you_due().await;
    m.app.run_step(&due.due, &mut Vec::new()).await.unwrap();
    let sent = m.mailer.sent();
    let header = |i: usize, name: &str| sent[i].1.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    assert_eq!(sent[0].1.subject, "ご注文ありがとうございます（注文番号 #A1）");
    assert_eq!(header(0, "List-Unsubscribe"), None, "receipts carry no unsubscribe header");
    assert!(sent[1].1.tags.contains(&("flow".into(), "thank_you".into())));
    let list = header(1, "List-Unsubscribe").expect("marketing carries List-Unsubscribe");
    let url = list.split(['<', '>']).nth(1).unwrap().to_owned();
    assert!(url.starts_with("https://shop.example.com/u/"), "{list}");
    assert!(list.contains("<mailto:support@example.com?subject=unsubscribe>"), "{list}");
    assert_eq!(header(1, "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    assert!(sent[1].1.html.contains(&url), "the footer links the same page");

    // The one-click POST a mailbox provider makes unsubscribes at once.
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key("unused"), admin: None };
    let path = url.trim_start_matches("https://shop.example.com");
    let post = |body: &'static [u8]| ApiRequest { method: "POST", path, query: None, authorization: None, content_type: Some("application/x-www-form-urlencoded"), body };
    let response = handle(&m.app, &keys, post(b"List-Unsubscribe=One-Click")).await;
    assert_eq!(response.status, 200);
    let profile = m.store.load(&customer("c1")).await.unwrap().unwrap().value.profile;
    assert!(profile.unsubscribed);
    assert!(response.html.unwrap().contains("配信を停止しました"));
}

#[tokio::test]
async fn the_preference_page_unsubscribes_and_resubscribes_without_javascript() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let mut order = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    order["customer"]["marketing_consent"] = json!(true);
    order["customer"]["locale"] = json!("en-US");
    m.app.ingest_json(&[order]).await.unwrap();
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key("unused"), admin: None };
    let path = format!("/u/{}", m.app.links.token(&customer("c1")));
    let request = |method: &'static str, body: &'static [u8]| ApiRequest { method, path: &path, query: None, authorization: None, content_type: None, body };

    let page = handle(&m.app, &keys, request("GET", b"")).await;
    assert_eq!(page.status, 200);
    let html = page.html.unwrap();
    assert!(html.contains("<html lang=\"en\">") && html.contains("You receive our news"), "{html}");
    assert!(html.contains("<form method=\"post\">") && !html.contains("<script"), "works without JavaScript");
    assert!(html.contains("c***@example.jp") && !html.contains("c1@example.jp"), "the address is masked");
    assert!(!m.store.load(&customer("c1")).await.unwrap().unwrap().value.profile.unsubscribed, "a GET changes nothing");

    let out = handle(&m.app, &keys, request("POST", b"action=unsubscribe")).await.html.unwrap();
    assert!(out.contains("You have been unsubscribed") && out.contains("Subscribe again"), "{out}");
    assert!(m.store.load(&customer("c1")).await.unwrap().unwrap().value.profile.unsubscribed);
    let out = handle(&m.app, &keys, request("POST", b"action=resubscribe")).await.html.unwrap();
    assert!(out.contains("You are subscribed again"), "{out}");
    let profile = m.store.load(&customer("c1")).await.unwrap().unwrap().value.profile;
    assert!(!profile.unsubscribed && profile.marketing_consent);
    let timeline = m.store.timeline(&customer("c1")).await.unwrap();
    assert!(timeline.iter().any(|e| e.event_type.as_deref() == Some("unsubscribed")), "the change is on the timeline");

    // A token edited to name another customer, or junk, is refused and changes nothing.
    let other = m.app.links.token(&customer("c2"));
    let forged = format!("/u/{}.{}", other.split('.').next().unwrap(), path.trim_start_matches("/u/").split('.').nth(1).unwrap());
    let refused = handle(&m.app, &keys, ApiRequest { method: "POST", path: &forged, query: None, authorization: None, content_type: None, body: b"" }).await;
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (404, Some("invalid_link")));
    assert_eq!(handle(&m.app, &keys, ApiRequest { method: "GET", path: "/u/garbage", query: None, authorization: None, content_type: None, body: b"" }).await.status, 404);
}

#[tokio::test]
async fn admin_routes_need_their_own_key_and_erase_leaves_nothing() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let mut order = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    order["customer"]["marketing_consent"] = json!(true);
    m.app.ingest_json(&[order, order_placed("e2", "c2", "A2", "2026-11-20T10:16:00+09:00")]).await.unwrap();
    let pending_of = |id: &str| m.scheduler.pending().into_iter().filter(|s| s.due.customer_id.as_str() == id).count();
    assert!(pending_of("c1") > 0, "c1 has flows waiting");

    let disabled = AccessKeys { ingest: ApiKeys::from_plain_key("ingest"), admin: None };
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key("ingest"), admin: Some(ApiKeys::from_plain_key("admin")) };
    let call = |keys: &AccessKeys, method: &'static str, path: &'static str, query: Option<&'static str>, key: &'static str| {
        let keys = keys.clone();
        let app = &m.app;
        async move { handle(app, &keys, ApiRequest { method, path, query, authorization: Some(key), content_type: None, body: b"" }).await }
    };
    assert_eq!(call(&disabled, "GET", "/v1/reports/flows", None, "Bearer admin").await.status, 403);
    assert_eq!(call(&keys, "GET", "/v1/reports/flows", None, "Bearer ingest").await.status, 401, "an ingest key is not an admin key");
    assert_eq!(call(&keys, "GET", "/v1/customers/c1/timeline", None, "Bearer ingest").await.status, 401);

    let report = call(&keys, "GET", "/v1/reports/flows", Some("from=2026-11-01&to=2026-11-30"), "Bearer admin").await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["flows"][0]["flow"], "order_confirmation");
    assert_eq!(report.body["flows"][0]["sent"], 2);
    assert_eq!(report.body["retention"]["orders"], 2);
    let bad = call(&keys, "GET", "/v1/reports/flows", Some("from=2026-13-01"), "Bearer admin").await;
    assert_eq!((bad.status, bad.body["error"]["field"].as_str()), (400, Some("from")));
    let reversed = call(&keys, "GET", "/v1/reports/flows", Some("from=2026-12-01&to=2026-11-01"), "Bearer admin").await;
    assert_eq!(reversed.status, 400);

    let timeline = call(&keys, "GET", "/v1/customers/c1/timeline", None, "Bearer admin").await;
    assert_eq!(timeline.status, 200);
    assert!(timeline.body["timeline"].as_array().unwrap().iter().any(|l| l["kind"] == "sent"));
    let export = call(&keys, "GET", "/v1/customers/c1/export", None, "Bearer admin").await;
    assert_eq!(export.body["state"]["profile"]["email"], "c1@example.jp");
    assert_eq!(call(&keys, "GET", "/v1/customers/nobody/timeline", None, "Bearer admin").await.status, 404);
    assert_eq!(call(&keys, "PUT", "/v1/customers/c1", None, "Bearer admin").await.status, 405);

    let erased = call(&keys, "DELETE", "/v1/customers/c1", None, "Bearer admin").await;
    assert_eq!(erased.body, json!({"customer_id": "c1", "erased": true, "existed": true}));
    assert!(m.store.load(&customer("c1")).await.unwrap().is_none());
    assert!(m.store.timeline(&customer("c1")).await.unwrap().is_empty());
    assert_eq!(pending_of("c1"), 0, "no schedule carries the customer any more");
    assert!(pending_of("c2") > 0 || m.store.load(&customer("c2")).await.unwrap().is_some(), "others untouched");
    assert_eq!(call(&keys, "GET", "/v1/customers/c1/export", None, "Bearer admin").await.status, 404);
    let again = call(&keys, "DELETE", "/v1/customers/c1", None, "Bearer admin").await;
    assert_eq!(again.body["existed"], false, "erasing again is a success");
    // Counts survive: the report still shows both receipts.
    let report = call(&keys, "GET", "/v1/reports/flows", Some("from=2026-11-01&to=2026-11-30"), "Bearer admin").await;
    assert_eq!(report.body["flows"][0]["sent"], 2);
    // A late SES event for the erased customer does not bring them back.
    let late = crate::domain::Event::parse(&email_bounced("b1", "c1", "transient", "2026-11-20T10:20:00+09:00")).unwrap();
    assert_eq!(m.app.ingest_feedback(&late).await.unwrap(), super::Processed::UnknownCustomer);
}

/// Counts how many calls of one kind are in flight at once. Each call yields once before it
/// finishes, so calls awaited one after another never overlap, and calls joined always do.
#[derive(Default)]
struct Overlap {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Overlap {
    async fn around<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::task::yield_now().await;
        let out = call.await;
        self.in_flight.fetch_sub(1, SeqCst);
        out
    }
    fn most(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The in-memory store and scheduler, watched: every read of the store counts in one
/// `Overlap`, every schedule made in another.
#[derive(Default)]
struct Watched {
    store: crate::memory::MemoryStore,
    scheduler: crate::memory::MemoryScheduler,
    reads: Overlap,
    creates: Overlap,
    /// Commits still to refuse as version conflicts (another writer got there first).
    conflicts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Watched {
    async fn load(&self, customer: &CustomerId) -> Result<Option<crate::ports::Versioned<crate::domain::CustomerState>>, crate::ports::PortError> {
        self.reads.around(self.store.load(customer)).await
    }
    async fn event_seen(&self, customer: &CustomerId, event: &crate::domain::EventId) -> Result<bool, crate::ports::PortError> {
        self.reads.around(self.store.event_seen(customer, event)).await
    }
    async fn commit(&self, commit: crate::ports::Commit<'_>) -> Result<crate::ports::CommitOutcome, crate::ports::PortError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.conflicts.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Ok(crate::ports::CommitOutcome::VersionConflict);
        }
        self.store.commit(commit).await
    }
    async fn append_timeline(&self, customer: &CustomerId, entries: &[crate::domain::TimelineEntry]) -> Result<(), crate::ports::PortError> {
        self.store.append_timeline(customer, entries).await
    }
    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<crate::domain::TimelineEntry>, crate::ports::PortError> {
        self.store.timeline(customer).await
    }
    async fn stats(&self, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<Vec<crate::stats::StatCount>, crate::ports::PortError> {
        self.store.stats(from, to).await
    }
    async fn erase(&self, customer: &CustomerId) -> Result<(), crate::ports::PortError> {
        self.store.erase(customer).await
    }
}

#[async_trait::async_trait]
impl crate::ports::Scheduler for Watched {
    async fn create(&self, step: &crate::ports::ScheduledStep) -> Result<(), crate::ports::PortError> {
        self.creates.around(self.scheduler.create(step)).await
    }
    async fn delete(&self, name: &str) -> Result<(), crate::ports::PortError> {
        self.scheduler.delete(name).await
    }
}

/// On AWS each of these calls is a round trip: an event waits for one read instead of two, and
/// an order for one CreateSchedule instead of one per flow it starts.
#[tokio::test]
async fn an_events_reads_and_an_orders_schedules_are_made_at_once() {
    let watched = std::sync::Arc::new(Watched::default());
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let ports = super::Ports { store: watched.clone(), scheduler: watched.clone(), ..m.app.ports.clone() };
    let app = super::App::new(repo_flows(), ports).unwrap();
    let report = app.ingest_json(&[order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(watched.reads.most(), 2, "the state and the event's dedupe marker are read together");
    let scheduled = watched.scheduler.pending().len();
    assert!(scheduled >= 3, "an order starts several delayed flows: {scheduled}");
    assert_eq!(watched.creates.most(), scheduled, "all of an order's schedules are made together");
    let again = app.ingest_json(&[order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")]).await.unwrap();
    assert_eq!(again.duplicates, 1, "read together, the marker still stops a replay");
}

/// A conflict decides afresh, but a receipt delivered before it is not delivered again: the
/// second decision's receipt is matched to the first's message and report.
#[tokio::test]
async fn a_receipt_sent_before_a_version_conflict_is_not_sent_again() {
    let watched = std::sync::Arc::new(Watched { conflicts: 2.into(), ..Watched::default() });
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let ports = super::Ports { store: watched.clone(), scheduler: watched.clone(), ..m.app.ports.clone() };
    let app = super::App::new(repo_flows(), ports).unwrap();
    let mut reports = Vec::new();
    let event = crate::domain::Event::parse(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
    app.ingest_event(&event, &mut reports).await.unwrap();
    assert_eq!(watched.conflicts.load(std::sync::atomic::Ordering::SeqCst), 0, "both conflicts were met");
    assert_eq!(m.mailer.sent().len(), 1, "one receipt over three decisions");
    let sent: Vec<_> = reports.iter().filter(|r| r.status == "sent").collect();
    assert_eq!(sent.len(), 1, "{reports:?}");
    assert_eq!((sent[0].flow.as_str(), sent[0].message_id.as_deref()), ("order_confirmation", Some("mem-1")));
    let state = watched.store.load(&customer("c1")).await.unwrap().expect("the third commit landed").value;
    let receipt = state.recent_sends.iter().find(|s| s.flow == "order_confirmation").expect("the receipt's send record");
    assert_eq!(receipt.message_id.as_deref(), Some("mem-1"), "the committed record carries the first delivery's message id");
}

/// The body's shapes: one event, `{"events": [...]}`, and the ones refused, each naming where.
#[tokio::test]
async fn the_ingest_body_is_one_event_or_a_non_empty_events_list() {
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key("secret"), admin: None };
    let post = |body: Vec<u8>| {
        let (app, keys) = (&m.app, &keys);
        async move {
            handle(app, keys, ApiRequest { method: "POST", path: "/v1/events", query: None, authorization: Some("Bearer secret"), content_type: Some("application/json"), body: &body })
                .await
        }
    };
    let one = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    for (body, status, field) in [
        (json!({"events": []}), 400, "events"),
        (json!({"events": null}), 400, "events"),
        (json!({"events": {"id": "e1"}}), 400, "events"),
        (json!([one.clone()]), 400, "$"),
        (json!("order_placed"), 400, "$"),
        (json!({"events": [one.clone(), 7]}), 400, "$"),
    ] {
        let response = post(serde_json::to_vec(&body).unwrap()).await;
        assert_eq!((response.status, response.body["error"]["field"].as_str()), (status, Some(field)), "{body}: {}", response.body);
    }
    assert!(m.store.load(&customer("c1")).await.unwrap().is_none(), "nothing refused was written");
    // Escapes in the text are read as the characters they stand for.
    let text = serde_json::to_string(&json!({"events": [one]})).unwrap().replace("花子", "\\u82b1\\u5b50");
    let response = post(text.into_bytes()).await;
    assert_eq!((response.status, &response.body), (202, &json!({"accepted": 1, "duplicates": 0})));
    let state = m.store.load(&customer("c1")).await.unwrap().unwrap().value;
    assert_eq!(state.profile.first_name.as_deref(), Some("花子"));
}
