# Sourced by infra/test.sh and infra/bench-invocations.sh (from the repository root): installs
# the test tools into .venv if missing (infra/requirements.txt), starts moto's server on a free
# loopback port, stops it when the calling script exits, and points the AWS SDKs at it.
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

