#!/usr/bin/env bash
# Peak RSS per stored deposit, everything included (issue 14's measure):
# (peak RSS of the run - peak RSS of a header-only run) / stored deposits,
# the larger peak of 2 runs and the smaller empty-run peak.
#
#   tools/bytes-per-deposit.sh ENGINE_BIN WORKERS INPUT...
set -euo pipefail
usage="usage: tools/bytes-per-deposit.sh ENGINE_BIN WORKERS INPUT..."
source "$(dirname "$0")/lib/args.bash"
check_args 3 "$@"
bin=$1 workers=$2
shift 2
[[ -x $bin ]] || { echo "bytes-per-deposit.sh: $bin is not an executable" >&2; exit 2; }
empty=$(mktemp)
trap 'rm -f "$empty"' EXIT
echo "type,client,tx,amount" >"$empty"
peak() { # input -> peak RSS in KiB of one run
    { /usr/bin/time -f "%M" "$bin" -q --workers "$workers" "$1" >/dev/null; } 2>&1 | tail -1
}
base=$(printf '%s\n' "$(peak "$empty")" "$(peak "$empty")" | sort -n | head -1)
for input in "$@"; do
    deposits=$("$bin" -v --workers "$workers" "$input" 2>&1 >/dev/null | grep -o "[0-9]* stored deposits" | grep -o "^[0-9]*")
    top=$(printf '%s\n' "$(peak "$input")" "$(peak "$input")" | sort -n | tail -1)
    awk -v f="$input" -v w="$workers" -v p="$top" -v b="$base" -v d="$deposits" 'BEGIN {
        printf "%-32s workers %s  peak %7.1f MiB  empty %5.1f MiB  %d deposits  %.1f bytes/deposit\n",
            f, w, p / 1024, b / 1024, d, (p - b) * 1024 / d }'
done
