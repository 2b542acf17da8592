#!/usr/bin/env bash
# Profile the engine and draw a flamegraph.
#
#   tools/profile.sh [INPUT] [-- ENGINE ARGS...]
#
# Builds the `profiling` profile (release + debug symbols), records the run
# with `perf record` (Debian's linux-perf) when this machine allows it, and
# turns it into an SVG flamegraph with inferno (installed with `cargo install`
# on first use), plus the top functions as text. Where perf cannot sample,
# falls back to `valgrind --tool=callgrind` and prints callgrind_annotate's top
# functions. INPUT defaults to a 5M-row datagen file. Output: perf/flamegraph.svg
# and perf/profile-top.txt.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
input=${1:-}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == -- ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(-q)

cargo build --profile profiling --workspace -q
if [[ -z $input ]]; then
    input=/tmp/profile-input.csv
    [[ -f $input ]] || ./target/profiling/datagen --rows 5000000 --seed 42 -o "$input"
fi
mkdir -p perf
engine=./target/profiling/payments-engine

if command -v perf >/dev/null && perf record -q -o /dev/null -- true 2>/dev/null; then
    if ! command -v inferno-flamegraph >/dev/null; then
        cargo install inferno --locked -q
    fi
    # DWARF unwinding: the release build keeps no frame pointers, and with
    # -g alone most frames of the inlined parser showed as [unknown].
    perf record -q -F 999 --call-graph dwarf,16384 -o /tmp/perf.data -- "$engine" "${args[@]}" "$input" >/dev/null
    perf script -i /tmp/perf.data 2>/dev/null | inferno-collapse-perf > /tmp/perf.folded
    inferno-flamegraph --title "payments-engine ${args[*]} $(basename "$input")" < /tmp/perf.folded > perf/flamegraph.svg
    perf report -i /tmp/perf.data --no-children --sort comm,sym --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -25 | tee perf/profile-top.txt
    echo "flamegraph: perf/flamegraph.svg"
else
    echo "perf cannot sample here; using callgrind (instruction counts, slower)" >&2
    valgrind --tool=callgrind --callgrind-out-file=/tmp/callgrind.out "$engine" "${args[@]}" "$input" >/dev/null
    callgrind_annotate /tmp/callgrind.out 2>/dev/null | head -40 | tee perf/profile-top.txt
fi
