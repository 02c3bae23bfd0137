//! Invocations of the Lambda bootstraps against moto's server on loopback: what a
//! function takes per event, measured the way Lambda bills it (from handing over the event to
//! the posted result), with every AWS call made for real over HTTP to moto; and, cold, what a
//! fresh process uses from its start to the end of its first invocation.
//!
//! moto is not AWS: its calls take what a Python server on this machine takes, not what
//! DynamoDB, SES or Scheduler take in a region, so these durations are this machine's, not a
//! bill (BENCHMARKS.md, "Cost"). Run:
//!   cargo build --release -p ingest -p step -p feedback
//!   bash infra/bench-invocations.sh        # starts moto, then `cargo bench --bench invocation`

#[path = "../support/lambda.rs"]
mod lambda;
#[path = "../support/moto.rs"]
mod moto;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

use lambda::WarmFunction;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn fixture(path: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(path);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("fixture is JSON")
}

/// The fixtures, read once: the requests below are copies of them with fresh ids.
static ORDER_PLACED: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| fixture("ingest/order_placed.json"));
static EMAIL_OPENED: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| fixture("feedback/opened.json"));

/// The storefront's POST of a new customer's order (3 items): a receipt sent, three flows
/// scheduled, an `Email Sent` event published.
fn order_placed_request(customer: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut request = ORDER_PLACED.clone();
    let mut body: Value = serde_json::from_str(request["body"].as_str().expect("body")).expect("body is JSON");
    body["id"] = json!(format!("bench-evt-{}-{n}", std::process::id()));
    body["customer"]["id"] = json!(customer);
    body["order"]["id"] = json!(format!("bench-order-{n}"));
    request["body"] = json!(body.to_string());
    request["headers"]["authorization"] = json!("Bearer bench");
    request.to_string()
}

/// SES's open of an email to a known customer, as EventBridge delivers it.
fn email_opened_event(customer: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut event = EMAIL_OPENED.clone();
    event["id"] = json!(format!("bench-{n}"));
    event["detail"]["mail"]["messageId"] = json!(format!("bench-message-{}-{n}", std::process::id()));
    event["detail"]["mail"]["tags"]["customer_id"] = json!([customer]);
    event.to_string()
}

/// A new customer's order through the ingest function; the customer's id and the invocation.
fn place_new_order(ingest: &WarmFunction) -> (String, lambda::Answer) {
    let customer = format!("bench-cust-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let answer = ingest.invoke(&order_placed_request(&customer));
    answered(&answer.body, "statusCode", json!(202));
    (customer, answer)
}

fn answered(body: &str, field: &str, expected: Value) {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("answer {body:?}: {e}"));
    assert_eq!(value[field], expected, "unexpected answer {body}");
}

/// moto never fires schedules: their inputs, each handed out once, are what Scheduler would send.
struct DueSteps {
    client: aws_sdk_scheduler::Client,
    group: String,
    handed_out: HashSet<String>,
    queue: VecDeque<String>,
}

impl DueSteps {
    async fn refill(&mut self) {
        let mut token = None;
        loop {
            let page = self.client.list_schedules().group_name(&self.group).set_next_token(token).send().await.expect("list schedules");
            for summary in page.schedules() {
                let name = summary.name().unwrap_or_default().to_owned();
                if self.handed_out.insert(name.clone()) {
                    let schedule = self.client.get_schedule().name(&name).group_name(&self.group).send().await.expect("get schedule");
                    self.queue.push_back(schedule.target().and_then(|t| t.input()).expect("schedule input").to_owned());
                }
            }
            token = page.next_token;
            if token.is_none() {
                return;
            }
        }
    }
}

/// Two rows per function: the invocation's duration against moto, and the CPU time the
/// function itself used for it (what no AWS latency is part of).
fn bench_function_both(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, function: &WarmFunction, mut invoke: impl FnMut() -> Duration) {
    group.bench_function(name, |b| b.iter_custom(|iterations| (0..iterations).map(|_| invoke()).sum()));
    if function.cpu_time().is_none() {
        return eprintln!("invocation: CPU time not readable from /proc here, CPU rows skipped");
    }
    group.bench_function(format!("{name}: the function's CPU time"), |b| {
        b.iter_custom(|iterations| {
            let before = function.cpu_time().unwrap_or_default();
            for _ in 0..iterations {
                invoke();
            }
            function.cpu_time().unwrap_or_default().saturating_sub(before)
        })
    });
}

fn invocations(c: &mut Criterion) {
    let endpoint = match moto::loopback_endpoint() {
        Ok(endpoint) => endpoint,
        Err(why) => return eprintln!("invocation: skipped, {why}"),
    };
    let dir = lambda::bin_dir();
    let missing: Vec<_> = ["ingest", "step", "feedback"].into_iter().filter(|n| !dir.join(n).exists()).collect();
    if !missing.is_empty() {
        return eprintln!("invocation: skipped, {missing:?} not built in {}; run `cargo build --release -p ingest -p step -p feedback` first", dir.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let sdk = runtime.block_on(moto::sdk(&endpoint));
    let name = format!("aftercare-bench-{}", std::process::id());
    runtime.block_on(moto::create_stack(&sdk, &name, &name));
    let overrides = [("AWS_ENDPOINT_URL", endpoint.clone()), ("TABLE_NAME", name.clone()), ("SCHEDULE_GROUP", name.clone())];

    let mut group = c.benchmark_group("invocation");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));

    // What one AWS call costs here: the yardstick for the rows below (moto answers every call
    // of theirs the same way, over HTTP on loopback).
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    group.bench_function("floor: one DynamoDB GetItem to moto (the bench's own SDK client)", |b| {
        b.iter(|| {
            let get = dynamodb.get_item().table_name(&name).key("pk", AttributeValue::S("C#nobody".into())).key("sk", AttributeValue::S("S".into())).consistent_read(true);
            runtime.block_on(get.send()).expect("GetItem")
        })
    });

    let ingest = WarmFunction::start(&dir.join("ingest"), &overrides);
    let mut customers = Vec::new();
    bench_function_both(&mut group, "ingest: order_placed, new customer (receipt, 3 schedules)", &ingest, || {
        let (customer, answer) = place_new_order(&ingest);
        customers.push(customer);
        answer.duration
    });

    // Customers to open emails (the order bench's, or a few of their own when it was filtered out).
    while customers.len() < 20 {
        customers.push(place_new_order(&ingest).0);
    }
    let feedback = WarmFunction::start(&dir.join("feedback"), &overrides);
    let mut turn = 0;
    bench_function_both(&mut group, "feedback: email_opened, known customer", &feedback, || {
        turn += 1;
        let answer = feedback.invoke(&email_opened_event(&customers[turn % customers.len()]));
        answered(&answer.body, "outcome", json!("recorded"));
        answer.duration
    });

    let step = WarmFunction::start(&dir.join("step"), &overrides);
    let mut due = DueSteps { client: aws_sdk_scheduler::Client::new(&sdk), group: name.clone(), handed_out: HashSet::new(), queue: VecDeque::new() };
    bench_function_both(&mut group, "step: a due step of an order's flows", &step, || {
        if due.queue.is_empty() {
            runtime.block_on(due.refill());
        }
        while due.queue.is_empty() {
            // More orders, more schedules (not timed: the ingest function makes them).
            place_new_order(&ingest);
            runtime.block_on(due.refill());
        }
        let input = due.queue.pop_front().expect("a due step");
        let answer = step.invoke(&input);
        answered(&answer.body, "outcome", json!("applied"));
        answer.duration
    });

    // Cold: a fresh process per sample, timed by the CPU it used from its start to the end of
    // its first invocation. The service clients are built on first use, so an open (DynamoDB
    // only) and an order (all four services) pay different shares of what a start used to.
    if ingest.cpu_time().is_some() {
        let first_cpu = |binary: &str, event: &str, field: &str, expected: Value| {
            let function = WarmFunction::start(&dir.join(binary), &overrides);
            let answer = function.invoke(event);
            answered(&answer.body, field, expected);
            function.cpu_time().unwrap_or_default()
        };
        group.bench_function("cold: feedback, start + first email_opened, the process's CPU", |b| {
            b.iter_custom(|iterations| (0..iterations).map(|i| first_cpu("feedback", &email_opened_event(&customers[i as usize % customers.len()]), "outcome", json!("recorded"))).sum())
        });
        group.bench_function("cold: ingest, start + first order_placed, the process's CPU", |b| {
            b.iter_custom(|iterations| {
                (0..iterations).map(|_| first_cpu("ingest", &order_placed_request(&format!("bench-cust-{}", NEXT.fetch_add(1, Ordering::Relaxed))), "statusCode", json!(202))).sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, invocations);
criterion_main!(benches);
