#!/usr/bin/env bash
# The serving benchmark, in one run: TensorBrain's generated `serve-mlp` and FastAPI + uvicorn +
# PyTorch (benches/serve_fastapi.py) serving the same MNIST MLP with the same weights over the
# same protocol, each swept by the same open-loop load generator; then an overload at several
# times capacity and the recovery after it.
#
#     bash benches/serve_sweep.sh [WEIGHTS]      # default runs/mlp-mnist/model.safetensors
#
# Needs torch, fastapi, uvicorn and safetensors for the baseline. Tables go to stdout and to
# $OUT (default runs/serve-bench/), with serve_sweep.png. Rates are set by RATES (TensorBrain),
# BASE_RATES (FastAPI), DURATION (seconds per rate), OVERLOAD (requests/s in the overload phase;
# about three times the JSON capacity here, and about what the load generator itself can send
# while sharing two cores with the server), REPEATS (runs of the 5,000/s point, for its spread).
set -euo pipefail
cd "$(dirname "$0")/.."
WEIGHTS=${1:-runs/mlp-mnist/model.safetensors}
OUT=${OUT:-runs/serve-bench}
RATES=${RATES:-500,1000,2000,3000,5000,7000,10000}
BASE_RATES=${BASE_RATES:-100,200,300,500,700,1000}
DURATION=${DURATION:-5}
OVERLOAD=${OVERLOAD:-20000}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
# On a small machine the load generator and the server fight for the same cores, and the
# client's own scheduling delays show up as server latency. PIN=1 (the default where taskset
# exists and there are 2+ cores) gives the server core 0 and the load generator core 1, for
# both servers; PIN=0 lets the scheduler place them.
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU="taskset -c 0"; CLIENT_CPU="taskset -c 1"
else
    SERVER_CPU=""; CLIENT_CPU=""
fi
if [ ! -f "$WEIGHTS" ]; then
    # Latency does not depend on the values; PyTorch's initialisation will do (and shows that a
    # PyTorch state dict in safetensors loads into the TensorBrain model).
    echo "no trained weights at $WEIGHTS (cargo run --release --example mnist -- --model mlp); using PyTorch-initialised ones" >&2
    WEIGHTS="$OUT/mlp-init.safetensors"
    python3 benches/serve_fastapi.py --weights "$WEIGHTS" --save-init-weights
fi
cargo build --release -p serve-mnist --bins
BIN=target/release

wait_ready() {
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null && return 0
        sleep 0.1
    done
    echo "server on port $1 never became ready" >&2
    return 1
}

{ echo "machine: $(nproc) cores; server pinned with '${SERVER_CPU:-nothing}', load generator with '${CLIENT_CPU:-nothing}'; load before the run: $(uptime)"; } | tee "$OUT/machine.txt"

# TensorBrain: JSON, then binary tensors, then overload and recovery.
$SERVER_CPU $BIN/serve-mlp --weights "$WEIGHTS" --port 8000 --metrics-port 8002 >/dev/null &
OURS=$!
trap 'kill $OURS 2>/dev/null || true' EXIT
wait_ready 8000
URL=http://127.0.0.1:8000/v2/models/mlp/infer
$CLIENT_CPU $BIN/loadgen sweep --url $URL --rates "$RATES" --duration "$DURATION" --label tensorbrain --csv "$OUT/tensorbrain.csv" | tee "$OUT/tensorbrain.md"
$CLIENT_CPU $BIN/loadgen sweep --url $URL --rates "$RATES" --duration "$DURATION" --format binary --label "tensorbrain (binary)" --csv "$OUT/tensorbrain-binary.csv" | tee "$OUT/tensorbrain-binary.md"
for i in $(seq 1 "$REPEATS"); do
    for format in json binary; do
        $CLIENT_CPU $BIN/loadgen sweep --url $URL --rates 5000 --duration "$DURATION" --format $format --label "tensorbrain ($format, repeat $i)"
    done
done 2>&1 | grep -E "^tensorbrain" | tee "$OUT/repeats.txt"
$CLIENT_CPU $BIN/loadgen phases --url $URL --phases "2000:2,$OVERLOAD:4,2000:3" --window-ms 250 --server-pid $OURS --label "tensorbrain overload" | tee "$OUT/overload.md"
curl -s http://127.0.0.1:8002/metrics > "$OUT/metrics.txt"
kill -TERM $OURS
wait $OURS || true
trap - EXIT

# FastAPI + uvicorn + PyTorch on the same weights.
$SERVER_CPU python3 benches/serve_fastapi.py --weights "$WEIGHTS" --port 8100 &
BASE=$!
trap 'kill $BASE 2>/dev/null || true' EXIT
wait_ready 8100
$CLIENT_CPU $BIN/loadgen sweep --url http://127.0.0.1:8100/v2/models/mlp/infer --rates "$BASE_RATES" --duration "$DURATION" --label fastapi+pytorch --csv "$OUT/fastapi.csv" | tee "$OUT/fastapi.md"
kill -TERM $BASE
wait $BASE || true
trap - EXIT

$BIN/loadgen plot --csv "$OUT/tensorbrain.csv" --csv "$OUT/tensorbrain-binary.csv" --csv "$OUT/fastapi.csv" --out "$OUT/serve_sweep.png"
echo "load after the run: $(uptime)" | tee -a "$OUT/machine.txt"
