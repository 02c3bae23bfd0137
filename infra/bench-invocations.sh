#!/usr/bin/env bash
# Warm Lambda invocations against moto on loopback (tests/benches/invocation.rs): builds the
# release bootstraps, starts moto, runs the bench. Numbers go to BENCHMARKS.md by hand.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
source infra/moto.sh
echo "==> cargo build --release (ingest, step, feedback)"
cargo build --release -p ingest -p step -p feedback
echo "==> cargo bench --bench invocation"
cargo bench -p aftercare-tests --bench invocation -- "$@"
