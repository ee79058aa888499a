#!/usr/bin/env bash
# DDP across two "hosts": two network namespaces joined by a veth pair, with no loopback
# between them, made inside this sandbox. mpirun runs in the first and starts the second rank
# in the other through an rsh agent that is `ip netns exec` instead of ssh; the ranks talk over
# Open MPI's TCP transport on the veth link (10.77.0.1 <-> 10.77.0.2). Then the same training
# runs on one host (plain `mpirun -np 2`), and the two results must be the same.
#
#     cargo build --release --example ddp_mnist --features mpi
#     bash benches/ddp_netns.sh [ddp_mnist flags]   # default: --steps 100 --warmup 10
#
# It also times all_reduce by message size on both transports (ddp_mnist --allreduce-bench)
# and fits the ring's alpha-beta model to each.
#
# Needs root (ip netns, veth) and Open MPI (apt-get install openmpi-bin libopenmpi-dev).
# DATA (default ../shared/data/mnist) is passed to --data.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "ddp_netns.sh: needs root for ip netns and veth" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "ddp_netns.sh: no mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 2; }
BIN=${BIN:-target/release/examples/ddp_mnist}
[ -x "$BIN" ] || { echo "ddp_netns.sh: no $BIN (cargo build --release --example ddp_mnist --features mpi)" >&2; exit 2; }
DATA=${DATA:-../shared/data/mnist}
if [ $# -eq 0 ]; then set -- --steps 100 --warmup 10; fi

drop_namespaces() {
    ip netns del tb-host0 2>/dev/null || true
    ip netns del tb-host1 2>/dev/null || true
}
drop_namespaces # left over from an interrupted run
WORK=$(mktemp -d)
trap 'drop_namespaces; rm -rf "$WORK"' EXIT

ip netns add tb-host0
ip netns add tb-host1
ip link add tb-veth0 type veth peer name tb-veth1
ip link set tb-veth0 netns tb-host0
ip link set tb-veth1 netns tb-host1
ip -n tb-host0 addr add 10.77.0.1/24 dev tb-veth0
ip -n tb-host1 addr add 10.77.0.2/24 dev tb-veth1
for h in 0 1; do
    ip -n tb-host$h link set lo up
    ip -n tb-host$h link set tb-veth$h up
done
# The link carries TCP (bash's /dev/tcp, as ping may not be installed): a listener in the
# second host, a connection from the first.
ip netns exec tb-host1 timeout 5 python3 -c 'import socket; s = socket.create_server(("10.77.0.2", 7777)); s.accept()' &
sleep 0.5
ip netns exec tb-host0 timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.2/7777' || { echo "ddp_netns.sh: the veth link does not carry TCP" >&2; exit 1; }
wait

# mpirun's "ssh": the host address picks the namespace.
cat > "$WORK/netns-rsh" <<'AGENT'
#!/bin/sh
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
case "$host" in
    10.77.0.1) ns=tb-host0 ;;
    10.77.0.2) ns=tb-host1 ;;
    *) echo "netns-rsh: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" /bin/sh -c "$*"
AGENT
chmod +x "$WORK/netns-rsh"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$WORK/hosts"

MPI_COMMON=(--allow-run-as-root --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24)
echo "== two hosts (network namespaces tb-host0, tb-host1 over a veth pair) =="
ip netns exec tb-host0 mpirun "${MPI_COMMON[@]}" --hostfile "$WORK/hosts" --mca plm_rsh_agent "$WORK/netns-rsh" \
    -np 2 --map-by node --display-map \
    sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(ip -4 -o addr show tb-veth$OMPI_COMM_WORLD_RANK | awk "{print \$4}")" >&2; exec "$0" "$@"' \
    "$BIN" --mpi --data "$DATA" "$@" | tee "$WORK/two-hosts.txt"

echo "== one host (the same run, both ranks here over shared memory) =="
OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN" --mpi --data "$DATA" "$@" | tee "$WORK/one-host.txt"

# The all-reduce itself over both transports, with the ring's alpha-beta fit
# (benches/alpha_beta.py projects from such figures).
echo "== all_reduce by message size, two hosts (TCP over veth) =="
ip netns exec tb-host0 mpirun "${MPI_COMMON[@]}" --hostfile "$WORK/hosts" --mca plm_rsh_agent "$WORK/netns-rsh" \
    -np 2 --map-by node "$BIN" --mpi --allreduce-bench | tee "$WORK/allreduce-two-hosts.txt"
echo "== all_reduce by message size, one host (shared memory) =="
OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN" --mpi --allreduce-bench | tee "$WORK/allreduce-one-host.txt"

# Speed differs; the training must not: same last loss and test accuracy.
result() { grep -oE 'last loss [0-9.]+, test accuracy [0-9.]+%' "$1"; }
if [ "$(result "$WORK/two-hosts.txt")" = "$(result "$WORK/one-host.txt")" ] && [ -n "$(result "$WORK/one-host.txt")" ]; then
    echo "same result on two hosts and on one: $(result "$WORK/one-host.txt")"
else
    echo "ddp_netns.sh: the results differ: two hosts '$(result "$WORK/two-hosts.txt")', one host '$(result "$WORK/one-host.txt")'" >&2
    exit 1
fi
