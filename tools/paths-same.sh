#!/usr/bin/env bash
# Checks that a build gives, on every execution path, the outputs a
# reference build gives single-threaded.
#
#   tools/paths-same.sh REF BIN INPUT...
#
# For each INPUT: runs `REF -q --workers 0 --rejects FILE` once, then BIN
# with each of `--workers 0/1/2/3` (the input mapped), `--workers 0
# --no-mmap` (read), `--parsers 1/2/3` with 1, 2, 5 or 7 workers, and the
# defaults, each with and without `--rejects`; compares
# stdout (and the rejects file, where written) byte for byte. Prints one line
# per run that differs and a count at the end; exits 1 if any differed.
# REF may be BIN itself (the paths against its own single-threaded run) or a
# build of an earlier commit (a change that must not move any output).
#
#   cp target/release/payments-engine /tmp/after
#   tools/paths-same.sh /tmp/before /tmp/after /tmp/r1m.csv /tmp/adv3m.csv
set -euo pipefail
usage='usage: tools/paths-same.sh REF BIN INPUT...'
source "$(dirname "$0")/lib/args.bash"
check_args 3 "$@"
ref=$1 bin=$2
shift 2
for b in "$ref" "$bin"; do [[ -x $b ]] || { echo "paths-same.sh: $b is not an executable" >&2; exit 2; }; done
for input in "$@"; do [[ -r $input ]] || { echo "paths-same.sh: cannot read $input" >&2; exit 2; }; done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
paths=("--workers 0" "--workers 0 --no-mmap" "--workers 1" "--workers 2" "--workers 3" "--parsers 1 --workers 1"
    "--parsers 2 --workers 2" "--parsers 2 --workers 5" "--parsers 3 --workers 7" "")
runs=0 differ=0
for input in "$@"; do
    "$ref" -q --workers 0 --rejects "$scratch/ref.rej" "$input" >"$scratch/ref.out"
    for path in "${paths[@]}"; do
        for rejects in yes no; do
            runs=$((runs + 1))
            # shellcheck disable=SC2086 # each path is several words
            if [[ $rejects == yes ]]; then
                "$bin" -q $path --rejects "$scratch/got.rej" "$input" >"$scratch/got.out"
                same=yes
                cmp -s "$scratch/ref.rej" "$scratch/got.rej" || same=no
            else
                "$bin" -q $path "$input" >"$scratch/got.out"
                same=yes
            fi
            cmp -s "$scratch/ref.out" "$scratch/got.out" || same=no
            if [[ $same == no ]]; then
                differ=$((differ + 1))
                echo "DIFFERS: $input [${path:-defaults}] rejects file: $rejects"
            fi
        done
    done
done
echo "$runs runs, $differ differ"
((differ == 0))
