#!/usr/bin/env bash
# Fuzzes the serving binary's REST surface with schemathesis, driven by the OpenAPI document the
# server itself serves (/openapi.json): generated valid and invalid requests on every route,
# checked for 5xx answers, responses that do not match the document, and a server that stops
# answering. Afterwards the server must still be alive and give a correct inference.
#
#   bash benches/serve_fuzz.sh [max examples per operation, default 2000]
#   SERVE_BIN=target/debug/serve-mlp bash benches/serve_fuzz.sh 500   # skip the release build
#
# Needs `pip install schemathesis` (not part of .ci/run: a fuzz run is a measurement, not a
# test). Writes runs/serve-fuzz/{report.txt,server.log}.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${1:-2000}"
OUT=runs/serve-fuzz
mkdir -p "$OUT"
command -v schemathesis >/dev/null || { echo "schemathesis is not installed: python3 -m pip install schemathesis" >&2; exit 2; }

# SERVE_BIN: an already built serve-mlp (e.g. target/debug/serve-mlp from `cargo test`).
BIN="${SERVE_BIN:-}"
if [ -z "$BIN" ]; then
    cargo build --release -p serve-mnist --bin serve-mlp
    BIN=target/release/serve-mlp
fi
PORT_FILE="$OUT/port"
rm -f "$PORT_FILE"
# Port 0: the server picks a free port and prints it; --random-weights needs no checkpoint.
"$BIN" --random-weights 0 --port 0 --metrics-port 0 >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    PORT=$(grep -oE 'listening on (http://)?127\.0\.0\.1:[0-9]+' "$OUT/server.log" | head -1 | grep -oE '[0-9]+$' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "${PORT:-}" ] || { echo "the server did not start:"; cat "$OUT/server.log"; exit 1; }
BASE="http://127.0.0.1:$PORT"
until curl -sf "$BASE/v2/health/ready" >/dev/null; do sleep 0.1; done
echo "fuzzing $BASE with up to $EXAMPLES examples per operation"

set +e
schemathesis run "$BASE/openapi.json" \
    --checks all \
    --max-examples "$EXAMPLES" \
    --workers 2 \
    --no-color 2>&1 | tee "$OUT/report.txt"
FUZZ_RC=${PIPESTATUS[0]}
set -e

# Still serving, and still right: one real request after the fuzzing.
ALIVE=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v2/health/live")
READY=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v2/health/ready")
echo "after the fuzz run: live $ALIVE, ready $READY, server process $(kill -0 $SERVER 2>/dev/null && echo running || echo GONE)"
grep -ciE 'panicked|panic' "$OUT/server.log" | sed 's/^/panics logged by the server: /'
echo "schemathesis exit code $FUZZ_RC"
exit "$FUZZ_RC"
