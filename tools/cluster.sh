#!/usr/bin/env bash
# Runs the engine as a cluster of N local processes on free loopback ports.
#
#   tools/cluster.sh N INPUT [OPTIONS...]
#
# Writes a host file of N 127.0.0.1 ports, starts processes 1..N-1 and then
# process 0 with `--cluster HOSTFILE --process I OPTIONS INPUT`, and prints
# what process 0 prints (the accounts on stdout; its report and every
# process's errors on stderr). Exits with process 0's status, or the first
# other process's failure. Every process is stopped and the host file
# removed when the script ends, however it ends.
#
# The binary: $PAYMENTS_ENGINE when set (any build, e.g. target/debug's);
# else this repository's release build, target/release/payments-engine,
# brought up to date with `cargo build --release` first; else
# payments-engine on the PATH. Example:
#
#   tools/cluster.sh 3 examples/transactions.csv --workers 1 --block-size 64KiB
set -euo pipefail
usage='usage: tools/cluster.sh N INPUT [OPTIONS...]'
source "$(dirname "$0")/lib/args.bash"
check_args 2 "$@"
n=$1 input=$2
shift 2
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "cluster.sh: N must be a positive number; $usage" >&2; exit 2; }
[[ -r $input ]] || { echo "cluster.sh: cannot read $input" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
engine=${PAYMENTS_ENGINE:-}
if [[ -z $engine && -f $repo/Cargo.toml ]] && command -v cargo >/dev/null; then
    # The release build, never a stale or a debug one.
    (cd "$repo" && cargo build --release -q --bin payments-engine) || {
        echo "cluster.sh: 'cargo build --release' failed in $repo" >&2
        exit 2
    }
    engine=$repo/target/release/payments-engine
fi
engine=${engine:-$(command -v payments-engine || true)}
[[ -n $engine && -x $engine ]] || {
    echo "cluster.sh: no payments-engine binary: set PAYMENTS_ENGINE, or install cargo to build one" >&2
    exit 2
}

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free ports: bound and released by the kernel's choice where python3 is
# there, else drawn at random from the dynamic range.
if command -v python3 >/dev/null; then
    python3 - "$n" >"$dir/hosts" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
for s in held:
    print("127.0.0.1:%d" % s.getsockname()[1])
PY
else
    for _ in $(seq "$n"); do echo "127.0.0.1:$((49152 + RANDOM % 16000))"; done >"$dir/hosts"
fi

for i in $(seq 1 $((n - 1))); do
    "$engine" --cluster "$dir/hosts" --process "$i" "$@" "$input" >/dev/null &
    pids+=($!)
done
# Process 0 too runs in the background: a signal to this script then
# interrupts `wait` at once, and the EXIT trap stops every process.
"$engine" --cluster "$dir/hosts" --process 0 "$@" "$input" &
root=$!
status=0
wait "$root" || status=$?
for pid in "${pids[@]}"; do
    other=0
    wait "$pid" || other=$?
    (( status != 0 || other == 0 )) || status=$other
done
pids=()
exit "$status"
