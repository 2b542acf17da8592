#!/usr/bin/env bash
# Interleaved CPU-time comparison of built engine binaries on several inputs.
#
#   tools/cpu-ab.sh WORKERS RUNS "BIN_A BIN_B ..." INPUT...
#
# Runs every binary on every input RUNS times, round-robin, and prints per
# input and binary the median user + system seconds and all the samples.
# CPU time, not wall time: on a shared machine it drifts less, and with
# --workers N it counts every thread's work. Copy each build to its own
# path first (e.g. cp target/release/payments-engine /tmp/bins/after).
set -euo pipefail
usage='usage: tools/cpu-ab.sh WORKERS RUNS "BIN_A BIN_B ..." INPUT...'
source "$(dirname "$0")/lib/args.bash"
check_args 4 "$@"
workers=$1 runs=$2 bins=$3
shift 3
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "cpu-ab.sh: RUNS must be a positive number; $usage" >&2; exit 2; }
for bin in $bins; do [[ -x $bin ]] || { echo "cpu-ab.sh: $bin is not an executable" >&2; exit 2; }; done
for input in "$@"; do [[ -r $input ]] || { echo "cpu-ab.sh: cannot read $input" >&2; exit 2; }; done
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
for _ in $(seq "$runs"); do
    for bin in $bins; do
        for input in "$@"; do
            seconds=$( { /usr/bin/time -f "%U %S" "$bin" -q --workers "$workers" "$input" >/dev/null; } 2>&1 | awk '{ print $1 + $2 }')
            echo "$(basename "$input") $bin $seconds" >>"$samples"
        done
    done
done
sort -k1,1 -k2,2 -k3,3n "$samples" | awk '
    { key = $1 " " $2; n[key]++; v[key, n[key]] = $3; if (!(key in seen)) { seen[key] = 1; order[++keys] = key } }
    END {
        for (k = 1; k <= keys; k++) {
            key = order[k]; all = ""
            for (i = 1; i <= n[key]; i++) all = all " " v[key, i]
            printf "%-40s median %6.2f s  [%s ]\n", key, v[key, int((n[key] + 1) / 2)], all
        }
    }'
