#!/usr/bin/env bash
# Profile the engine and draw a flamegraph.
#
#   tools/profile.sh INPUT [-- ENGINE ARGS...]
#   tools/profile.sh --update-docs INPUT [-- ENGINE ARGS...]
#
# INPUT is a CSV file, or `datagen` for a 5M-row generated file (made once,
# kept as /tmp/profile-input.csv). ENGINE ARGS default to -q.
#
# Builds the `profiling` profile (release + debug symbols), records the run
# with `perf record` when this machine allows it, and turns it into an SVG
# flamegraph with inferno, plus the top functions as text. Where perf cannot
# sample, falls back to `valgrind --tool=callgrind` and prints
# callgrind_annotate's top functions.
#
# Prerequisites, checked first: perf (Debian: apt-get install linux-perf) or
# valgrind (apt-get install valgrind); inferno (cargo install inferno, done
# here on first use when perf works).
#
# Output goes to a fresh directory under /tmp, printed at the end; with
# --update-docs it goes to perf/flamegraph.svg and perf/profile-top.txt (the
# tracked files perf.md links to).
#
# Examples:
#
#   tools/profile.sh datagen
#   tools/profile.sh /tmp/big.csv -- -q --workers 0
set -euo pipefail
usage='usage: tools/profile.sh [--update-docs] INPUT|datagen [-- ENGINE ARGS...]'
source "$(dirname "$0")/lib/args.bash"
check_args 1 "$@"
update_docs=false
if [[ $1 == --update-docs ]]; then
    update_docs=true
    shift
fi
check_args 1 "$@"
input=$1
shift
[[ ${1:-} == -- ]] && shift
if [[ $input != datagen ]]; then
    [[ -r $input ]] || { echo "profile.sh: cannot read input $input" >&2; exit 2; }
    input=$(realpath "$input")
fi
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$top"
if $update_docs; then
    out=perf
else
    out=$(mktemp -d /tmp/profile.XXXXXX)
fi
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(-q)

can_perf=false
if command -v perf >/dev/null && perf record -q -o /dev/null -- true 2>/dev/null; then
    can_perf=true
elif ! command -v valgrind >/dev/null; then
    echo "profile.sh: needs perf (apt-get install linux-perf) or valgrind (apt-get install valgrind)" >&2
    exit 2
fi

cargo build --profile profiling --workspace -q
if [[ $input == datagen ]]; then
    input=/tmp/profile-input.csv
    [[ -f $input ]] || ./target/profiling/datagen --rows 5000000 --seed 42 -o "$input"
fi
mkdir -p "$out"
engine=./target/profiling/payments-engine
scratch=$(mktemp -d /tmp/profile-data.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

if $can_perf; then
    if ! command -v inferno-flamegraph >/dev/null; then
        echo "profile.sh: installing inferno (cargo install inferno)" >&2
        cargo install inferno --locked -q
    fi
    # DWARF unwinding: the release build keeps no frame pointers, and with
    # -g alone most frames of the inlined parser showed as [unknown].
    perf record -q -F 999 --call-graph dwarf,16384 -o "$scratch/perf.data" -- "$engine" "${args[@]}" "$input" >/dev/null
    perf script -i "$scratch/perf.data" 2>/dev/null | inferno-collapse-perf > "$scratch/perf.folded"
    inferno-flamegraph --title "payments-engine ${args[*]} $(basename "$input")" < "$scratch/perf.folded" > "$out/flamegraph.svg"
    perf report -i "$scratch/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -25 | tee "$out/profile-top.txt"
    echo "flamegraph: $out/flamegraph.svg"
else
    echo "perf cannot sample here; using callgrind (instruction counts, slower)" >&2
    valgrind --tool=callgrind --callgrind-out-file="$scratch/callgrind.out" "$engine" "${args[@]}" "$input" >/dev/null
    callgrind_annotate "$scratch/callgrind.out" 2>/dev/null | head -40 | tee "$out/profile-top.txt"
fi
echo "profile: $out/profile-top.txt"
