#!/usr/bin/env bash
# Data-parallel scaling on this machine, ours beside PyTorch DDP (gloo), same model and launch
# shapes: ranks x threads = 1x1, 2x1 (processes under mpirun for ours, mp.spawn for PyTorch's),
# 1x2 for contrast, and ours with overlap on and off. ROUNDS interleaved rounds (default 2);
# each line is one run.
#
#     cargo build --release --example ddp_mnist --features mpi
#     bash benches/ddp_scaling.sh            # MODEL=cnn STEPS=40 WARMUP=8 ROUNDS=2
#
# Needs Open MPI, and torch in $PYTHON (default python3). DATA defaults to ../shared/data/mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/examples/ddp_mnist}
PYTHON=${PYTHON:-python3}
DATA=${DATA:-../shared/data/mnist}
MODEL=${MODEL:-cnn}
STEPS=${STEPS:-40}
WARMUP=${WARMUP:-8}
ROUNDS=${ROUNDS:-2}
COMMON=(--model "$MODEL" --steps "$STEPS" --warmup "$WARMUP" --data "$DATA")
# Open MPI's default binding (each rank to a core of its own for -np 2). With --bind-to none
# the ranks' threads wander and the CNN's DDP step lost 40-230 ms to them (see docs/distributed.md).
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -x OMPI_MCA_btl_vader_single_copy_mechanism=none)
echo "machine: $(nproc) cores, $(uptime)"
for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round"
    echo "ours 1x1: $("$BIN" --world 1 --threads 1 "${COMMON[@]}")"
    echo "ours 1x2: $("$BIN" --world 1 --threads 2 "${COMMON[@]}")"
    echo "ours 2x1 mpi, overlap: $(OMPI_MCA_btl_vader_single_copy_mechanism=none "${MPIRUN[@]}" -np 2 "$BIN" --mpi --threads 1 "${COMMON[@]}")"
    echo "ours 2x1 mpi, no overlap: $(OMPI_MCA_btl_vader_single_copy_mechanism=none "${MPIRUN[@]}" -np 2 "$BIN" --mpi --threads 1 --no-overlap "${COMMON[@]}")"
    echo "ours 2x1 mpi, overlap, --bind-to none: $(OMPI_MCA_btl_vader_single_copy_mechanism=none "${MPIRUN[@]}" --bind-to none -np 2 "$BIN" --mpi --threads 1 "${COMMON[@]}")"
    echo "ours 2x1 threads, overlap: $("$BIN" --world 2 --threads 1 "${COMMON[@]}")"
    echo "pytorch 1x1: $("$PYTHON" benches/ddp_gloo.py --world 1 --threads 1 "${COMMON[@]}")"
    echo "pytorch 1x2: $("$PYTHON" benches/ddp_gloo.py --world 1 --threads 2 "${COMMON[@]}")"
    echo "pytorch 2x1 gloo: $("$PYTHON" benches/ddp_gloo.py --world 2 --threads 1 "${COMMON[@]}")"
done
