#!/usr/bin/env bash
# Interleaved wall and CPU comparison of built engine binaries on a given
# number of cores (for the many-core machine, where one run of each is
# too noisy to compare).
#
#   tools/cores-ab.sh CORES RUNS "BIN_A BIN_B ..." INPUT [OPTIONS...]
#
# Runs every binary RUNS times, round-robin, restricted to cores
# 0..CORES-1 (taskset), as `BIN -q OPTIONS INPUT`; prints per binary the
# median wall and user + system seconds, and every sample, after checking
# that all the binaries print the same accounts. Timed with bash's own
# `time`, so it needs only taskset.
#
# Example:
#   tools/cores-ab.sh 15 5 "/tmp/bins/before /tmp/bins/after" /tmp/r100m.csv --parsers 6 --workers 9
set -euo pipefail
usage='usage: tools/cores-ab.sh CORES RUNS "BIN_A BIN_B ..." INPUT [OPTIONS...]'
source "$(dirname "$0")/lib/args.bash"
check_args 4 "$@"
cores=$1 runs=$2 bins=$3 input=$4
shift 4
[[ $cores =~ ^[1-9][0-9]*$ ]] || { echo "cores-ab.sh: CORES must be a positive number; $usage" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "cores-ab.sh: RUNS must be a positive number; $usage" >&2; exit 2; }
for bin in $bins; do [[ -x $bin ]] || { echo "cores-ab.sh: $bin is not an executable" >&2; exit 2; }; done
[[ -r $input ]] || { echo "cores-ab.sh: cannot read $input" >&2; exit 2; }
command -v taskset >/dev/null || { echo "cores-ab.sh: needs taskset (util-linux)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

first=
for bin in $bins; do
    taskset -c "0-$((cores - 1))" "$bin" -q "$@" "$input" >"$work/accounts"
    sum=$(md5sum <"$work/accounts" | cut -c1-32)
    [[ -z $first || $sum == "$first" ]] || { echo "cores-ab.sh: $bin prints other accounts" >&2; exit 1; }
    first=$sum
done

for _ in $(seq "$runs"); do
    for bin in $bins; do
        TIMEFORMAT='%R %U %S'
        times=$({ time taskset -c "0-$((cores - 1))" "$bin" -q "$@" "$input" >/dev/null; } 2>&1 | tail -1)
        echo "$bin $(awk '{ print $1, $2 + $3 }' <<<"$times")" >>"$work/samples"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "$cores cores, -q $* $(basename "$input"), $runs rounds (accounts identical)"
for bin in $bins; do
    wall=$(awk -v b="$bin" '$1 == b { print $2 }' "$work/samples" | median)
    cpu=$(awk -v b="$bin" '$1 == b { print $3 }' "$work/samples" | median)
    walls=$(awk -v b="$bin" '$1 == b { printf "%s ", $2 }' "$work/samples")
    echo "  $bin: wall $wall s, CPU $cpu s (walls: $walls)"
done
