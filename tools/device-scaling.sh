#!/usr/bin/env bash
# The one prepared run for the many-core machine a session may be lent
# (issue 21's scaling model), in the order that matters most should the
# run be cut short. Writes into OUTDIR:
#
#   machine.txt       cores, caches, memory, kernel; `wc -l` and `cat` of
#                     the 20M-row file (what reading it costs at best)
#   scaling-20m.md    tools/scaling.sh on 20M rows, 1..MAX_CORES, RUNS each
#   roles.md          CPU per row of each thread role (the JSON summary's
#                     cpu_by_role) at several core counts and splits, with
#                     each run's output checked against `--workers 0`'s
#   scaling-100m.md   tools/scaling.sh on 100M rows (longer runs, so the
#                     many-core rows are less start-up than work)
#
#   tools/device-scaling.sh BIN DATAGEN OUTDIR [MAX_CORES] [RUNS]
#
# MAX_CORES defaults to one less than the machine's cores (one left for the
# system), RUNS to 3. Needs taskset and python3; nothing else.
#
# Example (the binaries built here, carried to the device):
#   tools/device-scaling.sh target/release/payments-engine target/release/datagen "$OUT"
set -euo pipefail
usage='usage: tools/device-scaling.sh BIN DATAGEN OUTDIR [MAX_CORES] [RUNS]'
here=$(dirname "$0")
source "$here/lib/args.bash"
check_args 3 "$@"
bin=$1 datagen=$2 out=$3 runs=${5:-3}
max=${4:-$(($(nproc) - 1))}
mkdir -p "$out"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

"$datagen" --rows 20000000 --seed 42 -o "$data/r20m.csv"
{
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|L[123])' || true
    free -g | head -2
    uname -r
    TIMEFORMAT='%R s wall, %U s user, %S s sys'
    for _ in 1 2 3; do
        echo "wc -l: $({ time wc -l <"$data/r20m.csv" >/dev/null; } 2>&1)"
        echo "cat:   $({ time cat "$data/r20m.csv" >/dev/null; } 2>&1)"
    done
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

"$here/scaling.sh" "$bin" "$data/r20m.csv" "$max" "$runs" | tee "$out/scaling-20m.md"

# One run restricted to cores 0..c-1 with a JSON summary; prints a table row
# of each role's CPU per row and whether the accounts match --workers 0's.
"$bin" -q --workers 0 "$data/r20m.csv" >"$data/w0.csv"
roles() {
    local cores=$1
    shift
    taskset -c "0-$((cores - 1))" "$bin" -q "$@" --summary-json "$data/s.json" \
        "$data/r20m.csv" >"$data/out.csv"
    local same=no
    cmp -s "$data/out.csv" "$data/w0.csv" && same=yes
    python3 - "$data/s.json" "$cores" "$*" "$same" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
rows = s["rows_read"]
roles = s["cpu_by_role"]
per = ", ".join(
    f"{r} x{v['threads']} {v['cpu_s'] * 1e9 / rows:.1f}"
    for r, v in sorted(roles.items())
)
total = sum(v["cpu_s"] for v in roles.values()) * 1e9 / rows
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s['elapsed_s']:.3f} | "
      f"{rows / s['elapsed_s'] / 1e6:.1f}M | {per} | {total:.1f} | {sys.argv[4]} |")
EOF
}
{
    echo "| cores | options | wall (s) | rows/s | ns of CPU per row, by role (threads) | total ns/row | same accounts |"
    echo "|---|---|---|---|---|---|---|"
    roles 1 --workers 0
    roles 2 --parsers 1 --workers 1
    roles 4 --parsers 2 --workers 2
    roles 8 --parsers 3 --workers 5
    for split in "4 11" "6 9" "7 8" "8 7" "10 5"; do
        read -r p w <<<"$split"
        roles "$max" --parsers "$p" --workers "$w"
    done
    roles "$(nproc)"
} | tee "$out/roles.md"

rm -f "$data/r20m.csv" "$data/out.csv" "$data/w0.csv"
"$datagen" --rows 100000000 --seed 42 -o "$data/r100m.csv"
"$here/scaling.sh" "$bin" "$data/r100m.csv" "$max" "$runs" | tee "$out/scaling-100m.md"
