#!/usr/bin/env bash
# Interleaved A/B timing of the release binary at two commits, on one input.
#
#   tools/ab.sh BEFORE_REV AFTER_REV INPUT [RUNS] [-- ENGINE ARGS...]
#
# AFTER_REV may be "." for the working tree. Builds each revision in a
# throwaway worktree (target dir under /tmp), runs them alternately RUNS times
# (default 7), checks the outputs are byte-identical, and prints the sorted
# wall times, the medians, peak RSS and the ratio. Interleaving matters: these
# machines are shared and noisy, so back-to-back blocks of runs drift.
set -euo pipefail
usage="usage: tools/ab.sh BEFORE_REV AFTER_REV INPUT [RUNS] [-- ENGINE ARGS...]"
source "$(dirname "$0")/lib/args.bash"
check_args 3 "$@"
before=$1 after=$2 input=$3
shift 3
runs=7
if (( $# > 0 )) && [[ $1 != -- ]]; then
    runs=$1
    shift
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: RUNS must be a positive number, not '$runs'; $usage" >&2; exit 2; }
[[ ${1:-} == -- ]] && shift
args=("$@")
[[ -r $input ]] || { echo "ab.sh: cannot read input $input" >&2; exit 2; }
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d /tmp/ab.XXXXXX)
trap 'git -C "$top" worktree remove --force "$work/wt" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build() { # rev -> path of binary
    local rev=$1 name=$2
    if [[ $rev == . ]]; then
        (cd "$top" && cargo build --release -q) && cp "$top/target/release/payments-engine" "$work/$name"
    else
        git -C "$top" worktree add -q --detach "$work/wt" "$rev"
        (cd "$work/wt" && CARGO_TARGET_DIR="$work/target" cargo build --release -q)
        cp "$work/target/release/payments-engine" "$work/$name"
        git -C "$top" worktree remove --force "$work/wt"
    fi
}
build "$before" before
build "$after" after

for _ in $(seq "$runs"); do
    for b in before after; do
        /usr/bin/time -f "$b %e %M" "$work/$b" -q "${args[@]}" "$input" >"$work/out-$b.csv" 2>>"$work/times"
    done
done
cmp -s "$work/out-before.csv" "$work/out-after.csv" && echo "outputs: identical" || echo "outputs: DIFFER"
for b in before after; do
    grep "^$b " "$work/times" | sort -k2n | awk -v b="$b" '
        { t[NR]=$2; m=($3>m)?$3:m }
        END { printf "%-6s median %.2f s  runs:", b, t[int((NR+1)/2)]; for (i=1;i<=NR;i++) printf " %.2f", t[i]; printf "  peak RSS %d MiB\n", m/1024 }'
done | tee "$work/summary"
awk '{ m[$1]=$3 } END { printf "ratio  before/after = %.3f\n", m["before"]/m["after"] }' "$work/summary"
