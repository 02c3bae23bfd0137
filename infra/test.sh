#!/usr/bin/env bash
# The test command (README): installs what the tests need into .venv, starts moto's
# server on loopback, runs every test, validates the shipped flows and the SAM template,
# and builds the Lambdas with `sam build` (x86_64: the only Rust target on build machines).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

VENV=.venv
if ! "$VENV/bin/python" -c 'import moto' 2>/dev/null || [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cargo-lambda" ] || [ ! -x "$VENV/bin/cfn-lint" ]; then
  echo "==> installing test tools into $VENV (infra/requirements.txt)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r infra/requirements.txt
fi
export PATH="$PWD/$VENV/bin:$PATH"

echo "==> starting moto on loopback"
mkdir -p target
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$PORT" > target/moto.log 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/moto-api/" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then echo "moto failed to start:"; cat target/moto.log; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=ap-northeast-1
unset AWS_PROFILE AWS_SESSION_TOKEN

echo "==> cargo test (unit, service, local and AWS-adapter tests)"
cargo test --workspace --all-targets 2>&1 | tee target/test-output.log

echo "==> aftercare validate (shipped flows)"
cargo run --quiet -p aftercare-cli -- validate --flows flows

echo "==> sam validate --lint"
sam validate --lint --template template.yaml --region ap-northeast-1

echo "==> sam build (x86_64)"
SAM_CLI_TELEMETRY=0 sam build --template template.yaml --parameter-overrides Architecture=x86_64 --build-dir target/sam-build

echo "==> all checks passed"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' target/test-output.log
