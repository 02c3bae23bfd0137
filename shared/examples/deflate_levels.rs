//! Which deflate level to store customer states at: every customer's state of a generated
//! store, taken halfway through its year and at its end, deflated with the shipped
//! dictionary at each level and billed as the DynamoDB adapter's transactional write would
//! be (2 write units per started KB, with the item's keys). BENCHMARKS.md, "Cost per 1,000
//! orders", item 4, has one run:
//!
//! ```text
//! cargo run --release -p aftercare-cli -- generate --customers 1000 > store1k.jsonl
//! cargo run --release -p aftercare-core --features testing --example deflate_levels -- store1k.jsonl
//! ```
//!
//! The times (the fastest of five passes) are one run's and only compare the levels with each other.

// A measuring program: input that does not go in is broken, and it stops saying so.
#![allow(clippy::expect_used)]

use std::time::Instant;

use aftercare_core::cost::ITEM_OVERHEAD;
use aftercare_core::domain::{Event, STATE_DICTIONARY_1};
use aftercare_core::ports::Store;
use aftercare_core::simulation::Simulation;

fn main() {
    let path = std::env::args().nth(1).expect("usage: deflate_levels EVENTS.jsonl");
    let text = std::fs::read_to_string(&path).expect("the events file reads");
    let mut events: Vec<Event> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| Event::parse(&serde_json::from_str(l).expect("a line is JSON")).expect("a line is an event")).collect();
    events.sort_by_key(|e| e.occurred_at_utc());
    let flows = aftercare_core::flow::FlowSet::load_dir(std::path::Path::new("flows")).expect("flows/ loads (run from the repository)");
    let start = events.first().expect("at least one event").occurred_at_utc();
    let simulation = Simulation::new(flows, start).expect("the simulation starts");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let states: Vec<Vec<u8>> = runtime.block_on(async {
        let snapshot = || async {
            let mut states = Vec::new();
            for id in simulation.store.customer_ids() {
                let state = simulation.store.load(&id).await.expect("the memory store answers").expect("a listed customer has a state");
                states.push(serde_json::to_vec(&state.value).expect("a state serializes"));
            }
            states
        };
        let mut states = Vec::new();
        let half = events.len() / 2;
        for (i, event) in events.iter().enumerate() {
            simulation.ingest_event(event).await.expect("the event is ingested");
            if i == half {
                states.extend(snapshot().await);
            }
        }
        states.extend(snapshot().await);
        states
    });
    let json: usize = states.iter().map(Vec::len).sum();
    println!("{} states, {} bytes of JSON on average", states.len(), json / states.len());
    let mut out = Vec::with_capacity(1 << 16);
    for level in [1, 2, 3, 4, 5, 6, 7, 8, 9] {
        let mut compressor = flate2::Compress::new(flate2::Compression::new(level), false);
        let (mut bytes, mut units) = (0, 0);
        // The fastest of five passes: the least disturbed by whatever else the machine runs.
        let mut fastest = f64::INFINITY;
        for _ in 0..5 {
            (bytes, units) = (0, 0);
            let started = Instant::now();
            for state in &states {
                compressor.reset();
                compressor.set_dictionary(STATE_DICTIONARY_1).expect("the dictionary primes the compressor");
                out.clear();
                let status = compressor.compress_vec(state, &mut out, flate2::FlushCompress::Finish).expect("deflate runs");
                assert_eq!(status, flate2::Status::StreamEnd, "the output buffer holds a whole state");
                bytes += out.len();
                units += 2 * (out.len() + ITEM_OVERHEAD).div_ceil(1024);
            }
            fastest = fastest.min(started.elapsed().as_secs_f64());
        }
        let per_state = fastest * 1e6 / states.len() as f64;
        println!("level {level}: {} bytes on average, {units} write units, {per_state:.1} µs a state", bytes / states.len());
    }
}
