#!/usr/bin/env bash
# The test command (README): installs what the tests need into .venv, starts moto's
# server on loopback, runs every test, validates the shipped flows and the SAM template,
# and builds the Lambdas with `sam build` (x86_64: the only Rust target on build machines).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

source infra/moto.sh

echo "==> cargo test (unit, service, local and AWS-adapter tests)"
cargo test --workspace --all-targets 2>&1 | tee target/test-output.log

echo "==> aftercare validate (shipped flows)"
cargo run --quiet -p aftercare-cli -- validate --flows flows

echo "==> sam validate --lint"
sam validate --lint --template template.yaml --region ap-northeast-1

echo "==> sam build (x86_64)"
SAM_CLI_TELEMETRY=0 sam build --template template.yaml --parameter-overrides Architecture=x86_64 --build-dir target/sam-build

echo "==> the bootstraps load no libm (functions/pow)"
for bootstrap in target/sam-build/*Function/bootstrap; do
    if readelf -d "$bootstrap" | grep -q 'libm\.so'; then
        echo "$bootstrap needs libm.so again: a libm function other than pow is called (functions/pow)" >&2
        exit 1
    fi
done

echo "==> all checks passed"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' target/test-output.log
