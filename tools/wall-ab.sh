#!/usr/bin/env bash
# Interleaved wall-time and peak-RSS comparison of whole commands on one input.
#
#   tools/wall-ab.sh RUNS INPUT "LABEL:COMMAND ARGS" ...
#
# Runs every command with INPUT appended, RUNS rounds, round-robin, output
# discarded, and prints per label the median wall seconds, the largest peak
# RSS and every sample. Example:
#
#   tools/wall-ab.sh 5 /tmp/big.csv "old:/tmp/bins/old -q" \
#       "p1:/tmp/bins/new -q --workers 1 --parsers 1" "wc:wc -l"
set -euo pipefail
usage='usage: tools/wall-ab.sh RUNS INPUT "LABEL:COMMAND ARGS" ...'
source "$(dirname "$0")/lib/args.bash"
check_args 3 "$@"
runs=$1 input=$2
shift 2
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "wall-ab.sh: RUNS must be a positive number; $usage" >&2; exit 2; }
[[ -r $input ]] || { echo "wall-ab.sh: cannot read $input" >&2; exit 2; }
samples=$(mktemp) one=$(mktemp)
trap 'rm -f "$samples" "$one"' EXIT
for _ in $(seq "$runs"); do
    for variant in "$@"; do
        label=${variant%%:*} command=${variant#*:}
        [[ $label != "$variant" && $label != *" "* ]] || { echo "wall-ab.sh: '$variant' is not LABEL:COMMAND" >&2; exit 2; }
        # shellcheck disable=SC2086 # the command's words are split on purpose
        /usr/bin/time -f "$label %e %M" -o "$one" $command "$input" >/dev/null 2>&1 \
            || { echo "wall-ab.sh: '$command $input' failed" >&2; exit 1; }
        cat "$one" >>"$samples"
    done
done
awk '
    { n[$1]++; w[$1, n[$1]] = $2; if ($3 > rss[$1]) rss[$1] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++keys] = $1 } }
    END {
        for (i = 1; i <= keys; i++) {
            key = order[i]; c = n[key]
            for (a = 1; a <= c; a++) v[a] = w[key, a]
            for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (v[b] < v[a]) { t = v[a]; v[a] = v[b]; v[b] = t }
            line = ""; for (a = 1; a <= c; a++) line = line " " v[a]
            printf "%-14s median %.2f s  peak RSS %.0f MiB  samples%s\n", key, v[int((c + 1) / 2)], rss[key] / 1024, line
        }
    }' "$samples"
