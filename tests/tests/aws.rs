//! The AWS adapters and all three Lambda handlers against moto's server on loopback, and how
//! the bootstraps are linked (`bootstrap_layout`).
//! `bash infra/test.sh` starts moto and sets AWS_ENDPOINT_URL. moto never fires
//! schedules, so the tests call the step handler themselves with the schedule's input.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aftercare_core::aws::{AwsAdapters, Settings};
use aftercare_core::domain::{CustomerId, CustomerState, Deflated};
use aftercare_core::engine::DueStep;
use aftercare_core::flow::FlowSet;
use aftercare_core::memory::ManualClock;
use aftercare_core::testing::scenarios;
use aftercare_core::ports::{EmailSent, Publisher, ScheduledStep, Scheduler, Store};
use aftercare_core::service::api::{AccessKeys, ApiKeys};
use aftercare_core::service::App;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

const API_KEY: &str = "local-test-key";
const ADMIN_KEY: &str = "local-admin-key";
static NEXT: AtomicU32 = AtomicU32::new(0);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(repo().join("events").join(path)).unwrap_or_else(|e| panic!("events/{path}: {e}"))
}

#[path = "../support/moto.rs"]
mod moto;

#[path = "../support/bootstrap_layout.rs"]
mod bootstrap_layout;

async fn sdk() -> aws_config::SdkConfig {
    moto::sdk(&moto::loopback_endpoint().unwrap_or_else(|why| panic!("{why}"))).await
}

/// A fresh table and schedule group per test, so tests run in parallel without sharing state.
struct TestApp {
    app: App,
    adapters: AwsAdapters,
    settings: Settings,
    scheduler_client: aws_sdk_scheduler::Client,
    keys: AccessKeys,
}

async fn spawn_app(flows: FlowSet) -> TestApp {
    spawn_app_with_clock(flows, None).await
}

async fn spawn_app_with_clock(flows: FlowSet, clock: Option<Arc<ManualClock>>) -> TestApp {
    let sdk = sdk().await;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{}-{n}", std::process::id());
    let settings = Settings {
        table_name: format!("aftercare-{suffix}"),
        schedule_group: format!("aftercare-{suffix}"),
        step_function_arn: "arn:aws:lambda:ap-northeast-1:123456789012:function:aftercare-step".into(),
        scheduler_role_arn: "arn:aws:iam::123456789012:role/aftercare-scheduler".into(),
        dead_letter_queue_arn: "arn:aws:sqs:ap-northeast-1:123456789012:aftercare-dlq".into(),
        configuration_set: None,
        event_bus_name: "default".into(),
        unsubscribe_secret: vec![9u8; 32],
        public_base_url: "https://api.example.com".into(),
    };
    moto::create_stack(&sdk, &settings.table_name, &settings.schedule_group).await;
    let scheduler_client = aws_sdk_scheduler::Client::new(&sdk);
    let adapters = AwsAdapters::new(&sdk, &settings);
    let mut ports = adapters.ports();
    if let Some(clock) = clock {
        ports.clock = clock;
    }
    let app = App::new(flows, ports).expect("app starts");
    TestApp { app, adapters, settings, scheduler_client, keys: AccessKeys { ingest: ApiKeys::from_hashes(&ApiKeys::hash(API_KEY)).unwrap(), admin: Some(ApiKeys::from_plain_key(ADMIN_KEY)) } }
}

async fn post(t: &TestApp, fixture_json: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(fixture_json).expect("fixture is an API Gateway v2 request");
    let response = ingest::handler::handle(&t.app, &t.keys, request).await.expect("handler answers");
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).unwrap()
}

#[tokio::test]
async fn dynamodb_store_passes_the_store_contract() {
    let t = spawn_app(aftercare_core::testing::repo_flows()).await;
    aftercare_core::store_contract::run_all(t.adapters.store.as_ref(), "ddb").await;
    // Erased: the contract re-created the id as a bare customer with event evt-1 at its end;
    // nothing else of the old one is left in the table, and the counters are elsewhere.
    let sdk = sdk().await;
    let items = aws_sdk_dynamodb::Client::new(&sdk).scan().table_name(&t.settings.table_name).send().await.unwrap().items.unwrap_or_default();
    let text = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| format!("{item:?}");
    let left: Vec<String> = items
        .iter()
        .filter(|i| text(i).contains("ddb-erase-me"))
        .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(left_sorted, vec!["D#evt-1".to_owned(), "S".to_owned()], "only the new customer's items");
    let state = items.iter().find(|i| text(i).contains("ddb-erase-me") && i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk == "S")).unwrap();
    let deflated = state.get("state_z1").and_then(|v| v.as_b().ok()).expect("the state is stored deflated in state_z1");
    let stored = serde_json::to_string(&CustomerState::from_deflated_json(deflated.as_ref(), Deflated::CURRENT).unwrap()).unwrap();
    assert!(stored.contains("ddb-erase-me") && !stored.contains("@example.jp"), "the new state holds no address of the erased customer: {stored}");
    assert!(items.iter().any(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("STATS#"))), "counters are kept");
}

#[tokio::test]
async fn state_items_written_in_older_forms_still_load_and_are_rewritten_in_the_current_one() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = spawn_app(aftercare_core::testing::repo_flows()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk().await);
    // What the adapter wrote before: the JSON in `state`, then deflated without a dictionary in `state_z`.
    let plain_deflate = |json: &[u8]| {
        let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(json.len() + 64);
        compressor.compress_vec(json, &mut out, flate2::FlushCompress::Finish).unwrap();
        out
    };
    for (n, older) in ["state", Deflated::Plain.attribute()].into_iter().enumerate() {
        let customer_id = format!("cust-old-{n}");
        let order = aftercare_core::testing::order_placed(&format!("e{n}-1"), &customer_id, "A1", "2026-11-20T10:15:00+09:00");
        t.app.ingest_json(&[order]).await.unwrap();
        let id = customer(&customer_id);
        let state = t.adapters.store.load(&id).await.unwrap().unwrap();
        let json = serde_json::to_string(&state.value).unwrap();
        let value = if older == "state" { AttributeValue::S(json) } else { AttributeValue::B(Blob::new(plain_deflate(json.as_bytes()))) };
        ddb.put_item()
            .table_name(&t.settings.table_name)
            .item("pk", AttributeValue::S(format!("C#{customer_id}")))
            .item("sk", AttributeValue::S("S".into()))
            .item("v", AttributeValue::N(state.version.to_string()))
            .item(older, value)
            .send()
            .await
            .unwrap();
        let loaded = t.adapters.store.load(&id).await.unwrap().unwrap();
        assert_eq!(loaded.value, state.value, "{older}");
        assert_eq!(loaded.version, state.version);

        let shipped = aftercare_core::testing::order_shipped(&format!("e{n}-2"), &customer_id, "A1", "2026-11-21T15:00:00+09:00");
        t.app.ingest_json(&[shipped]).await.unwrap();
        let item = ddb.get_item().table_name(&t.settings.table_name).key("pk", AttributeValue::S(format!("C#{customer_id}"))).key("sk", AttributeValue::S("S".into())).send().await.unwrap().item.unwrap();
        assert!(item.contains_key("state_z1") && !item.contains_key(older), "after {older}, the next commit writes the current form only: {:?}", item.keys());
        assert_eq!(t.adapters.store.load(&id).await.unwrap().unwrap().value.profile.orders_count, 1);
    }
}

#[tokio::test]
async fn admin_api_through_the_ingest_handler_reports_and_erases_on_dynamodb() {
    // Counters are keyed by the send's day: pin the clock so the report's range holds it.
    let clock = Arc::new(ManualClock::new(aftercare_core::testing::at("2026-11-20T01:15:00Z")));
    let t = spawn_app_with_clock(aftercare_core::testing::repo_flows(), Some(clock)).await;
    let (status, _) = post(&t, &fixture("ingest/order_placed.json")).await;
    assert_eq!(status, 202);
    let call = |method: &str, path: &str, key: &str| {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path.split('?').next().unwrap(), "rawQueryString": path.split_once('?').map_or("", |(_, q)| q),
            "headers": {"authorization": format!("Bearer {key}")},
            "requestContext": {"http": {"method": method, "path": path.split('?').next().unwrap(), "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "accountId": "123456789012", "apiId": "api", "domainName": "localhost", "domainPrefix": "localhost", "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "20/Nov/2026:01:15:00 +0000", "timeEpoch": 0},
            "isBase64Encoded": false
        })
        .to_string()
    };
    let (status, body) = post(&t, &call("GET", "/v1/reports/flows?from=2026-11-01&to=2026-11-30", API_KEY)).await;
    assert_eq!(status, 401, "the ingest key is not an admin key: {body}");
    let (status, body) = post(&t, &call("GET", "/v1/reports/flows?from=2026-11-01&to=2026-11-30", ADMIN_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let receipts = body["flows"].as_array().unwrap().iter().find(|f| f["flow"] == "order_confirmation").expect("receipts reported");
    assert_eq!(receipts["sent"], 1);
    assert_eq!(body["retention"]["orders"], 1);
    let (status, body) = post(&t, &call("GET", "/v1/customers/cust-1/export", ADMIN_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["profile"]["email"], "hanako@example.jp");
    let (status, body) = post(&t, &call("DELETE", "/v1/customers/cust-1", ADMIN_KEY)).await;
    assert_eq!((status, body["existed"].as_bool()), (200, Some(true)));
    let (status, _) = post(&t, &call("GET", "/v1/customers/cust-1/timeline", ADMIN_KEY)).await;
    assert_eq!(status, 404);
    let (_, body) = post(&t, &call("GET", "/v1/reports/flows?from=2026-11-01&to=2026-11-30", ADMIN_KEY)).await;
    assert_eq!(body["retention"]["orders"], 1, "counts outlive the erase");
}

#[tokio::test]
async fn ingest_handler_sends_the_receipt_and_dedupes() {
    // At the order's own time: with the wall clock, the thank-you (1 h later) would be due at
    // once whenever the test runs outside Tokyo's quiet hours.
    let clock = Arc::new(ManualClock::new(aftercare_core::testing::at("2026-11-20T01:15:00Z")));
    let t = spawn_app_with_clock(aftercare_core::testing::repo_flows(), Some(clock)).await;
    let (status, body) = post(&t, &fixture("ingest/order_placed.json")).await;
    assert_eq!((status, &body), (202, &serde_json::json!({"accepted": 1, "duplicates": 0})));
    let (calls, reads, writes) = t.adapters.store.usage.snapshot();
    let schedules = t.scheduler_client.list_schedules().group_name(&t.settings.schedule_group).send().await.unwrap().schedules().len();
    eprintln!("cost of one order_placed: DynamoDB {calls} calls, {reads} RCU, {writes} WCU; SES 1 SendEmail; EventBridge 1 PutEvents; Scheduler {schedules} CreateSchedule");
    assert_eq!(calls, 3, "load, dedupe check, one transaction");

    let timeline = t.adapters.store.timeline(&customer("cust-1")).await.unwrap();
    let sent: Vec<_> = timeline.iter().filter(|e| e.kind == aftercare_core::domain::TimelineKind::Sent).collect();
    assert_eq!(sent.len(), 1, "{timeline:#?}");
    assert_eq!(sent[0].flow.as_deref(), Some("order_confirmation"));
    assert!(sent[0].message_id.as_deref().is_some_and(|id| !id.is_empty()), "SES message id recorded");

    let (status, body) = post(&t, &fixture("ingest/order_placed.json")).await;
    assert_eq!((status, body), (202, serde_json::json!({"accepted": 0, "duplicates": 1})));
    assert_eq!(t.adapters.store.timeline(&customer("cust-1")).await.unwrap().len(), timeline.len(), "a replay writes nothing");

    let (status, body) = post(&t, &fixture("ingest/batch_order_shipped.json")).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
}

#[tokio::test]
async fn ingest_handler_refuses_bad_input_and_writes_nothing() {
    let t = spawn_app(aftercare_core::testing::repo_flows()).await;
    let (status, body) = post(&t, &fixture("ingest/invalid_email.json")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "customer.email");
    assert_eq!(body["error"]["code"], "invalid");
    assert!(t.adapters.store.load(&customer("cust-1")).await.unwrap().is_none());
    let (status, body) = post(&t, &fixture("ingest/unauthorized.json")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    assert!(t.adapters.store.load(&customer("cust-1")).await.unwrap().is_none());
}

/// A marketing flow with a wait, to exercise the Scheduler path end to end.
fn flows_with_a_wait() -> FlowSet {
    let dir = aftercare_core::testing::flows_dir();
    let files = vec![
        // Without quiet hours, so the test does not depend on the time of day it runs at.
        ("store.yaml".to_owned(), std::fs::read_to_string(dir.join("store.yaml")).unwrap().lines().filter(|l| !l.starts_with("quiet_hours")).collect::<Vec<_>>().join("\n")),
        (
            "thank_you.yaml".to_owned(),
            "id: thank_you\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: wait_1h, wait: 1h}\n  - {id: thank, send: thanks}\n".to_owned(),
        ),
        ("templates/ja/thanks.mjml".to_owned(), "---\nsubject: ありがとうございました\n---\n<mjml><mj-body><mj-section><mj-column><mj-text>{{ customer.first_name }}様</mj-text></mj-column></mj-section></mj-body></mjml>".to_owned()),
    ];
    FlowSet::from_files(files).unwrap()
}

#[tokio::test]
async fn a_delayed_step_is_a_one_time_schedule_and_the_step_handler_runs_it_once() {
    let t = spawn_app(flows_with_a_wait()).await;
    let mut order: Value = serde_json::from_str(&fixture("simulate-order.jsonl").lines().next().unwrap().to_owned()).unwrap();
    // Recent enough that +1h is still ahead of the wall clock.
    order["occurred_at"] = serde_json::json!(chrono::Utc::now().to_rfc3339());
    t.app.ingest_json(&[order]).await.unwrap();

    let state = t.adapters.store.load(&customer("cust-1")).await.unwrap().unwrap().value;
    let enrollment = &state.enrollments[0];
    let due = DueStep::of(&customer("cust-1"), &enrollment);
    let schedule = t.scheduler_client.get_schedule().name(due.schedule_name()).group_name(&t.settings.schedule_group).send().await.expect("schedule exists");
    assert!(schedule.schedule_expression().unwrap().starts_with("at("), "{:?}", schedule.schedule_expression());
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(schedule.action_after_completion().map(|a| a.as_str()), Some("DELETE"));
    let target = schedule.target().unwrap();
    assert_eq!(target.arn(), t.settings.step_function_arn);
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), Some(t.settings.dead_letter_queue_arn.as_str()));
    let input: DueStep = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input, due);

    // moto never fires it: call the step handler the way Scheduler would.
    let run = |payload: DueStep| step::handler::handle(&t.app, LambdaEvent::new(payload, Context::default()));
    assert_eq!(run(input.clone()).await.unwrap()["outcome"], "applied");
    assert_eq!(run(input.clone()).await.unwrap()["outcome"], "stale", "a duplicate callback sends nothing");
    let timeline = t.adapters.store.timeline(&customer("cust-1")).await.unwrap();
    let thanks: Vec<_> = timeline.iter().filter(|e| e.flow.as_deref() == Some("thank_you") && e.step_id.as_deref() == Some("thank")).collect();
    assert_eq!(thanks.len(), 1, "{timeline:#?}");
    assert_eq!(thanks[0].kind, aftercare_core::domain::TimelineKind::Sent);

    let sample: DueStep = serde_json::from_str(&fixture("step/due_step.json")).unwrap();
    assert_eq!(run(sample).await.unwrap()["outcome"], "stale", "the sample callback is a no-op here");
}

#[tokio::test]
async fn feedback_handler_records_every_ses_detail_type() {
    let t = spawn_app(aftercare_core::testing::repo_flows()).await;
    assert_eq!(post(&t, &fixture("ingest/order_placed.json")).await.0, 202);
    let mut files: Vec<_> = std::fs::read_dir(repo().join("events/feedback")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 11, "one fixture per SES detail-type, plus a transient bounce");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "bounced.json" {
            continue; // the permanent bounce goes last: it suppresses the customer
        }
        let event: EventBridgeEvent<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let out = feedback::handler::handle(&t.app, LambdaEvent::new(event, Context::default())).await.unwrap();
        assert_eq!(out["outcome"], "recorded", "{name}: {out}");
        assert_eq!(out["customer_id"], "cust-1");
    }
    let state = t.adapters.store.load(&customer("cust-1")).await.unwrap().unwrap().value;
    assert!(!state.profile.bounced, "a transient bounce suppresses nothing");
    assert!(state.profile.complained && state.profile.unsubscribed, "a complaint counts as an unsubscribe");

    let bounce: EventBridgeEvent<Value> = serde_json::from_str(&fixture("feedback/bounced.json")).unwrap();
    let out = feedback::handler::handle(&t.app, LambdaEvent::new(bounce.clone(), Context::default())).await.unwrap();
    assert_eq!(out["type"], "email_bounced");
    assert!(t.adapters.store.load(&customer("cust-1")).await.unwrap().unwrap().value.profile.bounced, "a permanent bounce suppresses");
    let again = feedback::handler::handle(&t.app, LambdaEvent::new(bounce, Context::default())).await.unwrap();
    assert_eq!(again["outcome"], "duplicate", "SES redelivery is deduplicated");

    // Suppressed: the next receipt is skipped, with the reason on the timeline.
    let mut next: Value = serde_json::from_str(&fixture("ingest/order_placed.json")).unwrap();
    let body = next["body"].as_str().unwrap().replace("evt-1001", "evt-1003").replace("A1001", "A1003");
    next["body"] = Value::String(body);
    assert_eq!(post(&t, &next.to_string()).await.0, 202);
    let timeline = t.adapters.store.timeline(&customer("cust-1")).await.unwrap();
    assert!(timeline.iter().any(|e| e.kind == aftercare_core::domain::TimelineKind::Skipped && e.reason.as_deref() == Some("suppressed")));
}

#[tokio::test]
async fn scheduler_and_publisher_adapters_are_idempotent_and_accepted() {
    let t = spawn_app(aftercare_core::testing::repo_flows()).await;
    let due = DueStep { customer_id: customer("c9"), enrollment_id: "f:k".into(), step_id: "s".into(), generation: 1 };
    let step = ScheduledStep { name: due.shared_schedule_name(), at: chrono::Utc::now() + chrono::Duration::hours(2), due };
    t.adapters.scheduler.create(&step).await.unwrap();
    t.adapters.scheduler.create(&step).await.expect("creating an existing name is success");
    t.adapters.scheduler.delete(&step.name).await.unwrap();
    t.adapters.scheduler.delete(&step.name).await.expect("deleting a missing name is success");
    let sent = EmailSent {
        customer_id: "c9".into(),
        flow: "order_confirmation".into(),
        step: "confirm".into(),
        template: "order_confirmation".into(),
        locale: "ja".into(),
        category: "transactional".into(),
        message_id: "m-1".into(),
        at: chrono::Utc::now(),
    };
    t.adapters.publisher.email_sent(&sent).await.expect("EventBridge accepts Email Sent");
}

/// An API Gateway v2 request carrying one event, as the storefront would POST it.
fn api_request(event: &Value) -> String {
    let mut request: Value = serde_json::from_str(&fixture("ingest/order_placed.json")).unwrap();
    request["body"] = Value::String(event.to_string());
    request.to_string()
}

/// moto never fires schedules: find the earliest one due by `until`, as Scheduler would.
async fn next_due(t: &TestApp, until: chrono::DateTime<chrono::Utc>) -> Option<(String, chrono::DateTime<chrono::Utc>, DueStep)> {
    let listed = t.scheduler_client.list_schedules().group_name(&t.settings.schedule_group).send().await.unwrap();
    let mut due = Vec::new();
    for summary in listed.schedules() {
        let name = summary.name().unwrap().to_owned();
        let schedule = t.scheduler_client.get_schedule().name(&name).group_name(&t.settings.schedule_group).send().await.unwrap();
        let expression = schedule.schedule_expression().unwrap();
        let at = chrono::NaiveDateTime::parse_from_str(expression.trim_start_matches("at(").trim_end_matches(')'), "%Y-%m-%dT%H:%M:%S").unwrap().and_utc();
        let input: DueStep = serde_json::from_str(schedule.target().unwrap().input().unwrap()).unwrap();
        if at <= until {
            due.push((name, at, input));
        }
    }
    due.into_iter().min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
}

async fn fire_due(t: &TestApp, clock: &ManualClock, until: chrono::DateTime<chrono::Utc>) {
    while let Some((name, at, input)) = next_due(t, until).await {
        clock.set(at);
        step::handler::handle(&t.app, LambdaEvent::new(input, Context::default())).await.expect("step runs");
        // What ActionAfterCompletion=DELETE does after a successful invocation.
        t.scheduler_client.delete_schedule().name(&name).group_name(&t.settings.schedule_group).send().await.unwrap();
    }
}

#[tokio::test]
async fn scenarios_give_the_same_sends_through_the_lambda_handlers_as_through_simulate() {
    let mut failures = Vec::new();
    for scenario in scenarios::all() {
        let clock = Arc::new(ManualClock::new(aftercare_core::testing::at("2026-01-01T00:00:00Z")));
        let t = spawn_app_with_clock(aftercare_core::testing::repo_flows(), Some(clock.clone())).await;
        let mut events = scenario.events.clone();
        events.sort_by_key(|e| aftercare_core::domain::Event::parse(e).unwrap().occurred_at_utc());
        for event in &events {
            let at = aftercare_core::domain::Event::parse(event).unwrap().occurred_at_utc();
            fire_due(&t, &clock, at).await;
            clock.set(at);
            let (status, body) = post(&t, &api_request(event)).await;
            assert_eq!(status, 202, "{}: {body}", scenario.name);
        }
        fire_due(&t, &clock, aftercare_core::testing::at(scenario.until)).await;
        let mut actual: Vec<_> = t
            .adapters
            .store
            .timeline(&customer("c1"))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.kind, aftercare_core::domain::TimelineKind::Sent | aftercare_core::domain::TimelineKind::Skipped))
            .map(|e| {
                let status = match e.kind {
                    aftercare_core::domain::TimelineKind::Sent => "sent".to_owned(),
                    _ => format!("skipped:{}", e.reason.unwrap_or_default()),
                };
                (e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), e.flow.unwrap_or_default().to_string(), e.template.unwrap_or_default().to_string(), status)
            })
            .collect();
        actual.sort();
        let expected = scenarios::expected_lines(&scenario);
        if actual != expected {
            failures.push(format!("{}\n  expected: {expected:?}\n  actual:   {actual:?}", scenario.name));
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) differ on the AWS path:\n{}", failures.len(), failures.join("\n"));
}
