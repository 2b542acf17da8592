#!/usr/bin/env bash
# Scaling of a built engine with the cores it may use, for the many-core
# machine that a session may be lent once (issue 21's scaling model).
#
#   tools/scaling.sh BIN INPUT MAX_CORES [RUNS]
#
# For each core count c from 1 to MAX_CORES, runs BIN restricted to cores
# 0..c-1 (taskset), with the split the defaults choose for c cores (workers
# = three fifths, rounded, at least 1; parsers = the rest, at least 1), RUNS
# times (default 3), round-robin over c; then `--workers 0` on one core as
# the baseline. Prints a markdown table: cores, parsers, workers, median
# wall, rows per second (from INPUT's line count, less the header), median
# user + system CPU, and the speed-up over the baseline's wall.
#
# Example, on a 16-core machine:
#   cargo build --release && target/release/datagen --rows 20000000 --seed 42 -o /tmp/r20m.csv
#   tools/scaling.sh target/release/payments-engine /tmp/r20m.csv 15 3
set -euo pipefail
usage='usage: tools/scaling.sh BIN INPUT MAX_CORES [RUNS]'
source "$(dirname "$0")/lib/args.bash"
check_args 3 "$@"
bin=$1 input=$2 max=$3 runs=${4:-3}
[[ -x $bin ]] || { echo "scaling.sh: $bin is not an executable" >&2; exit 2; }
[[ -r $input ]] || { echo "scaling.sh: cannot read $input" >&2; exit 2; }
[[ $max =~ ^[1-9][0-9]*$ ]] || { echo "scaling.sh: MAX_CORES must be a positive number; $usage" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "scaling.sh: RUNS must be a positive number; $usage" >&2; exit 2; }
command -v taskset >/dev/null || { echo "scaling.sh: needs taskset (util-linux)" >&2; exit 2; }
rows=$(($(wc -l <"$input") - 1))
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

# The defaults' split of c cores: "parsers workers".
split() {
    local workers=$(((3 * $1 + 2) / 5))
    ((workers >= 1)) || workers=1
    local parsers=$(($1 - workers))
    ((parsers >= 1)) || parsers=1
    echo "$parsers $workers"
}

# One run of BIN on cores 0..c-1; appends "key wall cpu" to the samples.
run() {
    local key=$1 cores=$2
    shift 2
    local times TIMEFORMAT='%R %U %S'
    # bash's own `time` (real, then the child's user and system CPU): the
    # many-core machine need not have /usr/bin/time.
    times=$({ time taskset -c "0-$((cores - 1))" "$bin" -q "$@" "$input" >/dev/null; } 2>&1 | tail -1)
    echo "$key $(awk '{ print $1, $2 + $3 }' <<<"$times")" >>"$samples"
}

for _ in $(seq "$runs"); do
    run base 1 --workers 0 --parsers 0
    for c in $(seq "$max"); do
        read -r parsers workers < <(split "$c")
        run "$c" "$c" --parsers "$parsers" --workers "$workers"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=$(awk '$1 == "base" { print $2 }' "$samples" | median)
echo "| cores | parsers | workers | wall (s) | rows/s | CPU (s) | speed-up |"
echo "|---|---|---|---|---|---|---|"
echo "| 1 | 0 | 0 (baseline) | $base | $(awk -v r="$rows" -v w="$base" 'BEGIN { printf "%.1fM", r / w / 1e6 }') | $(awk '$1 == "base" { print $3 }' "$samples" | median) | 1.00x |"
for c in $(seq "$max"); do
    read -r parsers workers < <(split "$c")
    wall=$(awk -v k="$c" '$1 == k { print $2 }' "$samples" | median)
    cpu=$(awk -v k="$c" '$1 == k { print $3 }' "$samples" | median)
    awk -v c="$c" -v p="$parsers" -v w="$workers" -v wall="$wall" -v cpu="$cpu" -v r="$rows" -v b="$base" \
        'BEGIN { printf "| %d | %d | %d | %s | %.1fM | %s | %.2fx |\n", c, p, w, wall, r / wall / 1e6, cpu, b / wall }'
done
