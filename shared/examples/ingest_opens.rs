//! The ingest bench's `email_opened` pipeline as a plain program, for callgrind: criterion
//! repeats one payload for seconds after a long setup, which valgrind makes impractical.
//! Each part is its own function, so `--toggle-collect` counts one at a time (the release
//! profile strips symbols, which callgrind needs to find them):
//!
//! ```text
//! CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=/tmp/sym-target \
//!   cargo build --release -p aftercare-core --features testing --example ingest_opens
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='ingest_opens::pipeline' /tmp/sym-target/release/examples/ingest_opens
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='ingest_opens::floor' /tmp/sym-target/release/examples/ingest_opens
//! ```
//!
//! Both run over the same opens (`AFTERCARE_OPENS`, default 60,000) for known customers
//! (`AFTERCARE_CUSTOMERS`, default 20,000, each seeded with one order as the bench does), and
//! the program prints how many each accepted, so neither can be optimized away. BENCHMARKS.md
//! has the figures; times printed here are one run's, not a benchmark.

// A profiling program: a seed that does not go in is a broken setup, and it stops saying so.
#![allow(clippy::expect_used)]

use aftercare_core::domain::JsonDoc;
use aftercare_core::service::App;
use aftercare_core::testing::{at, memory_app, order_placed, repo_flows};
use serde_json::json;

/// The floor of the ingest bench: the payload parsed as a `serde_json::Value`.
#[inline(never)]
fn floor(bytes: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(bytes).map_or(0, |v| v.as_object().map_or(0, |o| o.len()))
}

/// What the ingest endpoint does with a body: parsed as a `JsonDoc`, validated, decided, committed.
#[inline(never)]
fn pipeline(app: &App, runtime: &tokio::runtime::Runtime, bytes: &[u8]) -> usize {
    let Ok(doc) = serde_json::from_slice::<JsonDoc>(bytes) else { return 0 };
    runtime.block_on(app.ingest_docs(std::slice::from_ref(&doc))).map_or(0, |report| report.accepted)
}

fn count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {text:?}")),
        Err(_) => default,
    }
}

fn main() {
    let customers = count("AFTERCARE_CUSTOMERS", 20_000).max(1);
    let opens = count("AFTERCARE_OPENS", 60_000);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    // As the bench's pipeline rows: the receipt's subject rendered, not its body.
    let app = memory_app(repo_flows(), at("2026-11-20T01:15:00Z")).app.subjects_only();
    for i in 0..customers {
        let seed = order_placed(&format!("seed-{i}"), &format!("known-{i}"), "A1", "2026-11-20T10:15:00+09:00");
        runtime.block_on(app.ingest_json(&[seed])).expect("a seed order is accepted");
    }
    let mut opened = json!({"id": "x", "type": "email_opened", "occurred_at": "2026-11-20T12:00:00+09:00", "customer": {"id": "x"}, "email": {"flow": "thank_you"}});
    let bodies: Vec<Vec<u8>> = (0..opens)
        .map(|n| {
            opened["id"] = json!(format!("open-{n}"));
            opened["customer"]["id"] = json!(format!("known-{}", n % customers));
            serde_json::to_vec(&opened).expect("JSON")
        })
        .collect();

    let started = std::time::Instant::now();
    let fields: usize = bodies.iter().map(|b| floor(b)).sum();
    let floor_each = started.elapsed().as_secs_f64() * 1e6 / opens.max(1) as f64;
    let started = std::time::Instant::now();
    let accepted: usize = bodies.iter().map(|b| pipeline(&app, &runtime, b)).sum();
    let pipeline_each = started.elapsed().as_secs_f64() * 1e6 / opens.max(1) as f64;
    println!("floor: {fields} fields read, {floor_each:.2} µs each; pipeline: {accepted} of {opens} accepted, {pipeline_each:.2} µs each");
}
