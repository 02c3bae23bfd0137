//! The ingest bench's pipelines as a plain program, for callgrind: criterion repeats one
//! payload for seconds after a long setup, which valgrind makes impractical. Each part is its
//! own function, so `--toggle-collect` counts one at a time (the release profile strips
//! symbols, which callgrind needs to find them):
//!
//! ```text
//! CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=/tmp/sym-target \
//!   cargo build --release -p aftercare-core --features testing --example ingest_probe
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='ingest_probe::pipeline' /tmp/sym-target/release/examples/ingest_probe
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='ingest_probe::floor' /tmp/sym-target/release/examples/ingest_probe
//! ```
//!
//! First `AFTERCARE_CUSTOMERS` new customers (default 20,000) each place an order with three
//! items (`order_pipeline`, next to `order_floor`), as the bench's `order_placed` rows do;
//! then `AFTERCARE_OPENS` opens (default 60,000) spread over them (`pipeline`, next to
//! `floor`), as its `email_opened` row did until BENCHMARKS.md's thirteenth engine run (the row
//! now opens each of two-order customers once; these counts stay comparable with the earlier
//! ones). The program prints what each part accepted, so
//! none can be optimized away. BENCHMARKS.md has the figures; the times printed here are one
//! run's, not a benchmark.

// A profiling program: a setup that does not go in is broken, and it stops saying so.
#![allow(clippy::expect_used)]

use aftercare_core::service::App;
use aftercare_core::testing::{at, memory_app, order_placed, repo_flows};
use serde_json::json;

/// The floor of the ingest bench: each payload parsed as a `serde_json::Value`.
#[inline(never)]
fn floor(bodies: &[Vec<u8>]) -> usize {
    // Each part names itself (`black_box`), so that their code differs: identical functions
    // are folded into one symbol by the linker (fat LTO), and callgrind could not count them apart.
    std::hint::black_box("opens");
    bodies.iter().map(|b| parse_as_value(b)).sum()
}

/// The same floor for the orders, in its own function so callgrind counts it apart.
#[inline(never)]
fn order_floor(bodies: &[Vec<u8>]) -> usize {
    std::hint::black_box("orders");
    bodies.iter().map(|b| parse_as_value(b)).sum()
}

fn parse_as_value(bytes: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(bytes).map_or(0, |v| v.as_object().map_or(0, |o| o.len()))
}

/// What the ingest endpoint does with each body: parsed as a `JsonDoc`, validated, decided,
/// committed; in one entry into the runtime, as a Lambda handles its requests (until
/// BENCHMARKS.md's fifteenth engine run, each body entered it anew).
#[inline(never)]
fn pipeline(app: &App, runtime: &tokio::runtime::Runtime, bodies: &[Vec<u8>]) -> usize {
    std::hint::black_box("opens");
    ingest_each(app, runtime, bodies)
}

/// The same for the orders.
#[inline(never)]
fn order_pipeline(app: &App, runtime: &tokio::runtime::Runtime, bodies: &[Vec<u8>]) -> usize {
    std::hint::black_box("orders");
    ingest_each(app, runtime, bodies)
}

fn ingest_each(app: &App, runtime: &tokio::runtime::Runtime, bodies: &[Vec<u8>]) -> usize {
    runtime.block_on(async {
        let mut accepted = 0;
        for bytes in bodies {
            let Ok(doc) = serde_json::from_slice::<aftercare_core::domain::JsonDoc>(bytes) else { continue };
            accepted += app.ingest_docs(std::slice::from_ref(&doc)).await.map_or(0, |report| report.accepted);
        }
        accepted
    })
}

fn count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {text:?}")),
        Err(_) => default,
    }
}

/// Runs `part` over the bodies and says what it counted and how long each body took.
fn timed(bodies: &[Vec<u8>], part: impl FnOnce(&[Vec<u8>]) -> usize) -> (usize, f64) {
    let started = std::time::Instant::now();
    let total = part(bodies);
    (total, started.elapsed().as_secs_f64() * 1e6 / bodies.len().max(1) as f64)
}

fn main() {
    let customers = count("AFTERCARE_CUSTOMERS", 20_000).max(1);
    let opens = count("AFTERCARE_OPENS", 60_000);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    // As the bench's pipeline rows: the receipt's subject rendered, not its body.
    let app = memory_app(repo_flows(), at("2026-11-20T01:15:00Z")).app.subjects_only();

    let orders: Vec<Vec<u8>> = (0..customers)
        .map(|i| serde_json::to_vec(&order_placed(&format!("seed-{i}"), &format!("known-{i}"), "A1", "2026-11-20T10:15:00+09:00")).expect("JSON"))
        .collect();
    let (fields, order_floor_each) = timed(&orders, order_floor);
    let (placed, order_each) = timed(&orders, |b| order_pipeline(&app, &runtime, b));
    assert_eq!(placed, orders.len(), "every seed order is accepted");
    println!("orders: floor read {fields} fields, {order_floor_each:.2} µs each; pipeline accepted {placed}, {order_each:.2} µs each");

    let mut opened = json!({"id": "x", "type": "email_opened", "occurred_at": "2026-11-20T12:00:00+09:00", "customer": {"id": "x"}, "email": {"flow": "thank_you"}});
    let bodies: Vec<Vec<u8>> = (0..opens)
        .map(|n| {
            opened["id"] = json!(format!("open-{n}"));
            opened["customer"]["id"] = json!(format!("known-{}", n % customers));
            serde_json::to_vec(&opened).expect("JSON")
        })
        .collect();
    let (fields, floor_each) = timed(&bodies, floor);
    let (accepted, pipeline_each) = timed(&bodies, |b| pipeline(&app, &runtime, b));
    println!("opens: floor read {fields} fields, {floor_each:.2} µs each; pipeline accepted {accepted} of {opens}, {pipeline_each:.2} µs each");
}
