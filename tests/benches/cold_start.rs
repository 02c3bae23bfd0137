//! Cold start: from process start to the function's first `GET /runtime/invocation/next`,
//! for each Lambda binary and for a hello-world `lambda_runtime` binary of the same profile.
//! A local runtime-API stub takes the poll; nothing else is contacted (AWS clients are built
//! from environment settings without network calls).
//!
//! Build the release binaries first, then run:
//!   cargo build --release -p ingest -p step -p feedback -p aftercare-tests --bins
//!   cargo bench -p aftercare-tests --bench cold_start
//! `AFTERCARE_BIN_DIR` overrides where the binaries are looked for (default target/release).
//! First it starts all four in turn, 200 rounds (`AFTERCARE_COLD_START_ROUNDS`), and prints
//! each one's median next to the floor's and its page faults; then criterion times each.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../support/lambda.rs"]
mod lambda;
use lambda::bin_dir;

/// One cold start: the time to the first poll, and the page faults the process took until then.
struct ColdStart {
    elapsed: Duration,
    minor_faults: u64,
}

/// Starts the binary against a fresh stub and returns when its first poll arrives.
fn first_poll(binary: &Path) -> Duration {
    first_start(binary).elapsed
}

fn first_start(binary: &Path) -> ColdStart {
    let listener = TcpListener::bind("127.0.0.1:0").expect("stub listens");
    let address = listener.local_addr().expect("stub address").to_string();
    let started = Instant::now();
    let mut child = lambda::command(binary, &address, &[]).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let (mut stream, _) = listener.accept().expect("the function connects to the runtime API");
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).expect("read the poll");
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let elapsed = started.elapsed();
    // Read while the process waits for its first event: /proc/<pid>/stat field 10.
    let minor_faults = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(7)?.parse().ok()))
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&request);
    assert!(line.starts_with("GET /2018-06-01/runtime/invocation/next"), "unexpected first request from {}: {line}", binary.display());
    let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    ColdStart { elapsed, minor_faults }
}

/// Every binary started in turn, round after round. The shared VM this runs on changes speed
/// over minutes, and criterion times one binary after another, so its ratios to the floor
/// carry that drift; here each round starts all of them within milliseconds.
fn interleaved(dir: &Path, names: &[&str], rounds: usize) {
    let mut times = vec![Vec::with_capacity(rounds); names.len()];
    let mut faults = vec![0u64; names.len()];
    for _ in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let start = first_start(&dir.join(name));
            times[i].push(start.elapsed);
            faults[i] += start.minor_faults;
        }
    }
    // (p25, median, p75) in milliseconds.
    let quartiles = |t: &mut Vec<Duration>| {
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        (ms(t[t.len() / 4]), ms(t[t.len() / 2]), ms(t[t.len() * 3 / 4]))
    };
    let spreads: Vec<(f64, f64, f64)> = times.iter_mut().map(quartiles).collect();
    let floor_median = spreads[0].1;
    eprintln!("interleaved, {rounds} rounds: process start → first poll (p25 median p75), page faults per start");
    for (i, name) in names.iter().enumerate() {
        let (p25, median, p75) = spreads[i];
        let ratio = median / floor_median;
        eprintln!("  {name:20} {p25:.2} {median:.2} {p75:.2} ms  {ratio:.2}× the floor  {} faults", faults[i] / rounds as u64);
    }
}

fn cold_start(c: &mut Criterion) {
    let dir = bin_dir();
    let names = ["coldstart_baseline", "ingest", "step", "feedback"];
    let missing: Vec<_> = names.iter().filter(|n| !dir.join(n).exists()).collect();
    if !missing.is_empty() {
        eprintln!(
            "cold_start: skipped, {missing:?} not built in {}; run `cargo build --release -p ingest -p step -p feedback -p aftercare-tests --bins` first",
            dir.display()
        );
        return;
    }
    // AFTERCARE_COLD_START_ROUNDS=0 skips the interleaved pass.
    let rounds = std::env::var("AFTERCARE_COLD_START_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    if rounds > 0 {
        interleaved(&dir, &names, rounds);
    }
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(30).measurement_time(Duration::from_secs(10));
    for name in names {
        let binary = dir.join(name);
        let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        eprintln!("{name}: {:.1} MB", size as f64 / 1e6);
        group.bench_function(name, |b| b.iter_custom(|iterations| (0..iterations).map(|_| first_poll(&binary)).sum()));
    }
    group.finish();
}

criterion_group!(benches, cold_start);
criterion_main!(benches);
