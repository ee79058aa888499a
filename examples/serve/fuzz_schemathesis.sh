#!/usr/bin/env bash
# Fuzzes the REST surface of serve-mlp with schemathesis, driven by the OpenAPI document the
# server itself serves (/openapi.json): coverage, fuzzing and stateful phases, every check.
#
#     pip install schemathesis && bash examples/serve/fuzz_schemathesis.sh [MAX_EXAMPLES]
#
# `positive_data_acceptance` is left out: it expects every schema-valid request to be accepted,
# but a JSON Schema cannot say that `data` must hold as many values as `shape` multiplies to, or
# that `Inference-Header-Content-Length` must match the body; such requests get the protocol's
# 400, which is the point. Every other check runs, `not_a_server_error` (no 5xx) among them.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_EXAMPLES=${1:-200}
OUT=${OUT:-runs/fuzz}
mkdir -p "$OUT"
cargo build --release -p serve-mnist --bin serve-mlp
target/release/serve-mlp --random-weights 0 --port 8300 --metrics-port 8302 > "$OUT/server.out" 2> "$OUT/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8300/v2/health/ready >/dev/null && break; sleep 0.1; done
status=0
# Run from $OUT: schemathesis keeps its cache in the working directory.
(cd "$OUT" && schemathesis run http://127.0.0.1:8300/openapi.json --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$MAX_EXAMPLES" --mode all --seed 1 --report ndjson --report-dir .) || status=$?
# The server must still be alive and ready after all of it.
curl -sf http://127.0.0.1:8300/v2/health/ready >/dev/null && echo "server still ready after the fuzz run" || { echo "server is down after the fuzz run" >&2; status=1; }
curl -s http://127.0.0.1:8302/metrics | grep '^tensorbrain_requests_total' || true
grep -c panicked "$OUT/server.err" | sed 's/^/server panics logged: /' || true
exit $status
