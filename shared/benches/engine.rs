//! `cargo bench -p aftercare-core --features testing`: the hot paths, each next to a floor.
//! Results and hardware are recorded in BENCHMARKS.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aftercare_core::domain::{Event, JsonDoc};
use aftercare_core::engine::{decide, Input};
use aftercare_core::render::sample::sample_send;
use aftercare_core::render::{Links, Renderer};
use aftercare_core::testing::{at, memory_app, order_placed, repo_flows};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

static N: AtomicU64 = AtomicU64::new(0);

fn fresh(mut event: Value, customer: Option<String>) -> Vec<u8> {
    let n = N.fetch_add(1, Ordering::Relaxed);
    event["id"] = json!(format!("bench-{n}"));
    event["customer"]["id"] = json!(customer.unwrap_or_else(|| format!("c{n}")));
    serde_json::to_vec(&event).unwrap()
}

/// What the ingest endpoint does with a body: parsed as a `JsonDoc`, then ingested.
async fn ingest_body(app: &aftercare_core::service::App, bytes: &[u8]) -> aftercare_core::service::IngestReport {
    let doc: JsonDoc = serde_json::from_slice(bytes).unwrap();
    app.ingest_docs(std::slice::from_ref(&doc)).await.unwrap()
}

/// Each body through `ingest_body` in turn, inside one entry into the runtime, as a Lambda
/// handles its requests. Entering a tokio runtime per event was 0.9 % of an order's
/// instructions and 4.8 % of an open's, and more of their time (BENCHMARKS.md, fifteenth engine run).
fn ingest_each(app: &aftercare_core::service::App, runtime: &tokio::runtime::Runtime, bodies: &[Vec<u8>], reports: &mut Vec<aftercare_core::service::IngestReport>) {
    runtime.block_on(async {
        for body in bodies {
            reports.push(ingest_body(app, body).await);
        }
    });
}

/// Events a store takes before the bench starts a fresh one.
const EVENTS_PER_STORE: u64 = 1_000;

/// Times `iters` new customers' orders through the subject-only pipeline, `EVENTS_PER_STORE`
/// into each fresh in-memory app; building the apps and the bodies, and dropping what the
/// pipeline returned, is not timed (as `iter_batched` does with its inputs and outputs).
fn bounded_store_orders(flows: &aftercare_core::flow::FlowSet, runtime: &tokio::runtime::Runtime, order: &Value, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(EVENTS_PER_STORE);
        let app = memory_app(flows.clone(), at("2026-11-20T01:15:00Z")).app.subjects_only();
        let bodies: Vec<Vec<u8>> = (0..n).map(|_| fresh(order.clone(), None)).collect();
        let mut reports = Vec::with_capacity(bodies.len());
        let start = Instant::now();
        ingest_each(&app, runtime, &bodies, &mut reports);
        timed += start.elapsed();
        assert!(reports.iter().all(|r| r.accepted == 1), "every order is accepted");
        left -= n;
    }
    timed
}

/// A fresh in-memory app whose customers `known-0` … `known-{n-1}` have each placed two
/// orders, a day apart: the customer at the median open in `aftercare generate`'s store.
/// As the order rows' app, receipts' subjects rendered and not their bodies.
fn known_customers(flows: &aftercare_core::flow::FlowSet, runtime: &tokio::runtime::Runtime, n: u64) -> aftercare_core::testing::MemoryApp {
    let mut m = memory_app(flows.clone(), at("2026-11-20T01:15:00Z"));
    m.app = m.app.subjects_only();
    for i in 0..n {
        let customer = format!("known-{i}");
        let first = order_placed(&format!("seed-{i}-1"), &customer, "A1", "2026-11-19T10:15:00+09:00");
        let second = order_placed(&format!("seed-{i}-2"), &customer, "A2", "2026-11-20T10:15:00+09:00");
        runtime.block_on(m.app.ingest_json(&[first, second])).unwrap();
    }
    m
}

/// Times `iters` opens through the pipeline, `EVENTS_PER_STORE` into each fresh app of
/// as many known customers, one open each; seeding the apps and building the bodies is not timed.
fn bounded_store_opens(flows: &aftercare_core::flow::FlowSet, runtime: &tokio::runtime::Runtime, opened: &Value, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(EVENTS_PER_STORE);
        let m = known_customers(flows, runtime, n);
        let bodies: Vec<Vec<u8>> = (0..n).map(|i| fresh(opened.clone(), Some(format!("known-{i}")))).collect();
        let mut reports = Vec::with_capacity(bodies.len());
        let start = Instant::now();
        ingest_each(&m.app, runtime, &bodies, &mut reports);
        timed += start.elapsed();
        assert!(reports.iter().all(|r| r.accepted == 1), "every open is accepted");
        left -= n;
    }
    timed
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let m = memory_app(repo_flows(), at("2026-11-20T01:15:00Z"));
    let order = order_placed("x", "x", "A1", "2026-11-20T10:15:00+09:00");
    let payload = serde_json::to_vec(&order).unwrap();
    let mut group = c.benchmark_group("ingest");
    group.bench_function("floor: serde_json::from_slice (order_placed, 3 items)", |b| b.iter(|| serde_json::from_slice::<Value>(&payload).unwrap()));
    group.bench_function("parse + validate (order_placed)", |b| b.iter(|| Event::parse_doc(&serde_json::from_slice::<JsonDoc>(&payload).unwrap()).unwrap()));
    let flows = repo_flows();
    let event = Event::parse(&order).unwrap();
    group.bench_function("decide (order_placed, all default flows)", |b| b.iter(|| decide(&flows, None, Input::Event(&event), at("2026-11-20T01:15:00Z"))));
    group.bench_function("parse + decide + commit + receipt (order_placed, memory ports)", |b| {
        b.iter_batched(
            || fresh(order.clone(), None),
            |bytes| runtime.block_on(ingest_body(&m.app, &bytes)),
            criterion::BatchSize::SmallInput,
        )
    });
    // The same without the receipt's body: the ingest is parse + validate + decide +
    // commit, and rendering has its own bench (`step`); the subject is still rendered.
    let subjects_only = memory_app(repo_flows(), at("2026-11-20T01:15:00Z")).app.subjects_only();
    group.bench_function("parse + decide + commit (order_placed, memory ports, receipt subject only)", |b| {
        b.iter_batched(
            || fresh(order.clone(), None),
            |bytes| runtime.block_on(ingest_body(&subjects_only, &bytes)),
            criterion::BatchSize::SmallInput,
        )
    });
    // The rows above grow one in-memory store by every iteration: a few hundred thousand
    // customers and their pending schedules by the end, so much of their time is the twin's
    // hash maps resizing and the kernel handing it fresh pages (perf: page faults 36 % of the
    // row). A Lambda's store is DynamoDB and its memory does not grow with the store; here
    // every 1,000 orders go into a fresh in-memory app, built and dropped untimed.
    group.bench_function("parse + decide + commit (order_placed, memory ports, receipt subject only, a fresh store each 1,000)", |b| {
        b.iter_custom(|iters| bounded_store_orders(&flows, &runtime, &order, iters))
    });
    // email_opened for known customers. Each open stays on its customer's profile for 30
    // days, so opens sent round a fixed pool of known customers piled up: how many each held
    // depended on how many iterations the run made, that is on how fast it ran. Here every
    // 1,000 opens go into a fresh app of 1,000 customers with two orders each (seeded
    // untimed), one open per customer. In the generated 10k store, 92 % of opens come with no
    // other open in the 30 days before, and at the median open the customer has two orders.
    let opened = json!({"id": "x", "type": "email_opened", "occurred_at": "2026-11-20T12:00:00+09:00", "customer": {"id": "x"}, "email": {"flow": "thank_you"}});
    let opened_bytes = serde_json::to_vec(&opened).unwrap();
    group.bench_function("floor: serde_json::from_slice (email_opened)", |b| b.iter(|| serde_json::from_slice::<Value>(&opened_bytes).unwrap()));
    group.bench_function("parse + decide + commit (email_opened, memory ports, a fresh store each 1,000)", |b| {
        b.iter_custom(|iters| bounded_store_opens(&flows, &runtime, &opened, iters))
    });
    // For the parts below: one known customer as seeded (two orders' waiting enrollments).
    use aftercare_core::ports::Store;
    let seeded = known_customers(&flows, &runtime, 1);
    let known = aftercare_core::domain::CustomerId::parse("known-0").unwrap();
    let state = runtime.block_on(seeded.store.load(&known)).unwrap().unwrap().value;
    let mut one_open = opened.clone();
    one_open["customer"]["id"] = json!("known-0");
    let one_open = Event::parse(&one_open).unwrap();
    group.bench_function("  part: Event::parse (email_opened)", |b| b.iter(|| Event::parse_doc(&serde_json::from_slice::<JsonDoc>(&opened_bytes).unwrap()).unwrap()));
    group.bench_function("  part: copy a known customer's state (what a load returns)", |b| b.iter(|| state.clone()));
    // What the DynamoDB adapter adds around a decision: the state item is deflated JSON.
    group.bench_function("  part: deflate a known customer's state (DynamoDB commit)", |b| b.iter(|| state.to_deflated_json().unwrap()));
    let deflated = state.to_deflated_json().unwrap();
    group.bench_function("  part: inflate it (DynamoDB load)", |b| b.iter(|| aftercare_core::domain::CustomerState::from_deflated_json(&deflated, aftercare_core::domain::Deflated::CURRENT).unwrap()));
    // Every scheduled step is named by a SHA-256 of its customer, enrollment, step and
    // generation (an order schedules several), and every send is tagged by one of its enrollment.
    let waiting = state.enrollments.iter().find(|e| e.due_at.is_some()).expect("a seeded enrollment waits");
    let due = aftercare_core::engine::DueStep::of(&state.profile.id, waiting);
    group.bench_function("  part: name a scheduled step (SHA-256)", |b| b.iter(|| due.schedule_name()));
    group.bench_function("  part: decide (email_opened, known customer)", |b| {
        b.iter_batched(|| state.clone(), |state| decide(&flows, Some(state), Input::Event(&one_open), at("2026-11-20T03:00:00Z")), criterion::BatchSize::SmallInput)
    });
    group.finish();
}

fn step(c: &mut Criterion) {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let now = at("2026-11-20T01:15:00Z");
    let mut group = c.benchmark_group("step");
    for template in ["order_confirmation", "cross_sell"] {
        let send = sample_send(&flows, template, "ja", now).unwrap();
        let links = Links { unsubscribe: Some("https://api.example.com/u/TOKEN"), activation: Some("https://shop.example.com/account/activate?token=T") };
        group.bench_function(format!("render {template} (HTML + text, ja)"), |b| b.iter(|| renderer.render(&send, links).unwrap()));
        group.bench_function(format!("subject only {template}"), |b| b.iter(|| renderer.render_subject(&send).unwrap()));
    }
    group.finish();
}

/// What a Lambda does at cold start besides the AWS SDK: load its flows, set up the renderer.
fn cold_start_parts(c: &mut Criterion) {
    let flows = repo_flows();
    let mut group = c.benchmark_group("cold start parts");
    group.bench_function("flows: parse and validate flows/ (files already read)", |b| {
        let sources = read_flow_files();
        b.iter(|| aftercare_core::flow::FlowSet::from_files(sources.clone()).unwrap())
    });
    // What the Lambdas do: the model build.rs validated, read back; templates borrowed from the binary.
    group.bench_function("flows: the model build.rs validated, read back (the Lambdas)", |b| {
        b.iter(|| aftercare_core::flow::bundled::flow_set().unwrap())
    });
    group.bench_function("renderer: compile every template (aftercare validate, dev)", |b| b.iter(|| Renderer::new(&flows).unwrap()));
    group.bench_function("renderer: compile on first use (the Lambdas)", |b| b.iter(|| Renderer::compiling_on_first_use(&flows).unwrap()));
    group.finish();
}

/// A store's catalog is thousands of products, not the sample's nine: checking one
/// (`validate`, `sam build`) and recommending from it (`cross_sell`: the order's categories'
/// bestsellers the customer does not own), at 5,000 products, 500 of them ranked.
fn catalog_at_scale(c: &mut Criterion) {
    use aftercare_core::flow::{Catalog, Recommend, RecommendationSource};
    const PRODUCTS: usize = 5_000;
    let mut yaml = String::from("products:\n");
    for i in 0..PRODUCTS {
        // The order's three SKUs are in it (categories c0-c2), and every tenth product is ranked:
        // all of c0, so the order's categories have bestsellers to recommend.
        let sku = match i {
            0 => "BEANS-HOUSE-200".to_owned(),
            1 => "DRIPPER-CERAMIC".to_owned(),
            2 => "DRIP-FILTER-100".to_owned(),
            i => format!("P{i:05}"),
        };
        let rank = if i % 10 == 0 { format!("\n    bestseller_rank: {}", i / 10 + 1) } else { String::new() };
        yaml.push_str(&format!("  - sku: {sku}\n    name: {{ja: 品{i}}}\n    price: 1800\n    currency: JPY\n    category: c{}{rank}\n", i % 50));
    }
    let catalog = Catalog::parse(&yaml).unwrap();
    let order = Event::parse(&order_placed("e", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
    let profile = aftercare_core::domain::Profile::new(aftercare_core::domain::CustomerId::parse("c1").unwrap(), at("2026-11-20T01:15:00Z"));
    let spec = Recommend { from: vec![RecommendationSource::Related, RecommendationSource::CategoryBestsellers, RecommendationSource::Bestsellers], count: 3, required: true };
    let mut group = c.benchmark_group("catalog of 5,000 products");
    group.bench_function("parse and check (validate, sam build)", |b| b.iter(|| Catalog::parse(&yaml).unwrap()));
    group.bench_function("recommend 3 for an order of 3 items (cross_sell)", |b| b.iter(|| aftercare_core::engine::recommend(&catalog, &profile, &order, &spec)));
    group.finish();
}

fn read_flow_files() -> Vec<(String, String)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "mjml") {
                out.push((path.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = aftercare_core::testing::flows_dir();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = ingest, step, cold_start_parts, catalog_at_scale
}
criterion_main!(benches);
