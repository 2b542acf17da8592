#!/usr/bin/env bash
# Kills a checkpointed release run with SIGKILL at random moments, resumes it
# until it finishes, and compares every output with an uninterrupted run's.
#
#   tools/crash.sh INPUT [KILLS] [-- ENGINE ARGS...]
#
# KILLS (default 20) is how many kills to make in all; a run that finishes
# before it is killed starts a new round. Compared byte for byte: the accounts
# (-o), the rejects file, the state file, and stderr's diagnostics and counts
# (everything but the elapsed time and the memory notes). Exits 1 on the
# first difference. Then checks that nothing but the state files, their
# .prev and the outputs is left, and that a second run started on the same
# state file while one runs is refused.
set -euo pipefail
usage='usage: tools/crash.sh INPUT [KILLS] [-- ENGINE ARGS...]'
source "$(dirname "$0")/lib/args.bash"
check_args 1 "$@"
input=$1
kills_wanted=${2:-20}
[[ $kills_wanted =~ ^[1-9][0-9]*$ && $kills_wanted != -- ]] || { echo "crash.sh: KILLS must be a positive number; $usage" >&2; exit 2; }
[[ -r $input ]] || { echo "crash.sh: cannot read input $input" >&2; exit 2; }
shift $(( $# < 2 ? $# : 2 ))
[[ ${1:-} == -- ]] && shift
extra=("$@")
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
(cd "$top" && cargo build --release -q)
bin="$top/target/release/payments-engine"
work=$(mktemp -d /tmp/crash.XXXXXX)
trap '[[ ${keep:-} ]] || rm -rf "$work"' EXIT

start() { # name, then extra flags: starts the engine itself in the
           # background (its pid in $pid: killing it kills the engine, not a
           # subshell that would leave the engine running)
    local name=$1; shift
    "$bin" -v --state "$work/$name.state" --checkpoint-every 200ms \
        -o "$work/$name.out" --rejects "$work/$name.rejects" "$@" "${extra[@]}" "$input" \
        2>"$work/$name.err" &
    pid=$!
}
counts() { grep -v -e elapsed -e 'payments-engine: state ' -e 'memory:' -e 'state:' -e 'workers:' -e 'pipeline:' "$1"; }

began=$(date +%s.%N)
start reference
wait "$pid"
run_time=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
echo "uninterrupted run: ${run_time} s"

kills=0 round=0
while (( kills < kills_wanted )); do
    round=$((round + 1))
    name="round$round"
    while :; do
        start "$name" --resume
        # A random moment within 1.1 run times.
        sleep "$(awk -v t="$run_time" -v r="$RANDOM" 'BEGIN { printf "%.3f", t * (r % 1100) / 1000 }')"
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid"; wait "$pid" 2>/dev/null || true
            kills=$((kills + 1))
            echo "round $round: killed ($kills)"
            continue
        fi
        status=0; wait "$pid" || status=$?
        if (( status == 0 )); then break; fi
        if grep -q "was already applied" "$work/$name.err"; then break; fi
        echo "round $round: the run failed with status $status:"; tail -5 "$work/$name.err"; exit 1
    done
    for part in out rejects state; do
        cmp -s "$work/reference.$part" "$work/$name.$part" \
            || { echo "round $round: $part differs (kept in $work)"; keep=1; exit 1; }
    done
    if ! grep -q "was already applied" "$work/$name.err"; then
        diff <(counts "$work/reference.err") <(counts "$work/$name.err") >/dev/null \
            || { echo "round $round: stderr differs"; exit 1; }
    fi
    echo "round $round: identical"
done
echo "$kills kills in $round rounds: every output identical"

# Nothing but states, their .prev, outputs and logs is left: the kills'
# temporaries and locks went with the clean runs.
left=$(find "$work" -maxdepth 1 \( -name '.payments-engine-*' -o -name '*.lock' \) | wc -l)
(( left == 0 )) || { echo "left behind:"; find "$work" -maxdepth 1 -name '.payments-engine-*' -o -name '*.lock'; exit 1; }

# Two runs of one input at once on one state file: exactly one applies it.
# The other is refused at once (the state is locked) or, if it started
# after the first ended, as a replay; the state is the reference's.
start concurrent; first=$pid
"$bin" -q --state "$work/concurrent.state" -o "$work/concurrent-b.out" "${extra[@]}" "$input" \
    2>"$work/concurrent-b.err" && second=0 || second=$?
wait "$first" && first_status=0 || first_status=$?
(( (first_status == 0) != (second == 0) )) \
    || { echo "concurrent runs: statuses $first_status and $second, not one success"; exit 1; }
failed="$work/concurrent-b.err"; (( second == 0 )) && failed="$work/concurrent.err"
grep -q -e "another run is using it" -e "was already applied" "$failed" \
    || { echo "the refused concurrent run failed otherwise:"; tail -3 "$failed"; exit 1; }
cmp -s "$work/reference.state" "$work/concurrent.state" \
    || { echo "concurrent runs: the state is not one run's"; exit 1; }
echo "concurrent runs: one applied the input, the other was refused ($(grep -o -e 'another run is using it' -e 'was already applied' "$failed"))"
