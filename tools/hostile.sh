#!/usr/bin/env bash
# Throws hostile inputs at the release binary and checks that each run ends
# with the documented exit status, one clear message where it fails, no panic,
# no hang (a time limit: exit 124) and bounded memory (peak RSS from
# /usr/bin/time).
#
#   tools/hostile.sh SCRATCH_DIR      # e.g. /tmp/pe-hostile; ~1 GB of files, kept for the next run
#
# Prints one line per case and exits 1 if any case breaks its expectation.
set -uo pipefail
usage='usage: tools/hostile.sh SCRATCH_DIR'
source "$(dirname "$0")/lib/args.bash"
check_args 1 "$@"
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
scratch=$1
mkdir -p "$scratch"
(cd "$top" && cargo build --release --workspace -q) || exit 1
engine=$top/target/release/payments-engine
datagen=$top/target/release/datagen
limit_s=120
failures=0

make_input() { # name command...: writes $scratch/name once
    local path=$scratch/$1
    shift
    [[ -s $path ]] || "$@" >"$path"
}
make_input random.bin head -c 100000000 /dev/urandom
make_input zeros.bin head -c 50000000 /dev/zero
make_input one-line.bin sh -c 'head -c 300000000 /dev/zero | tr "\0" "7"'
make_input commas.csv sh -c 'printf "type,client,tx,amount\n"; head -c 1000000 /dev/zero | tr "\0" ","; printf "\ndeposit,1,1,1\n"'
make_input malformed.csv "$datagen" --rows 13000000 --malformed 1.0 --seed 3
make_input duplicates.csv "$datagen" --rows 6500000 --duplicates 1.0 --seed 3
make_input sparse.csv "$datagen" --rows 5000000 --ids sparse --seed 42

# case NAME WANT_EXIT MAX_MIB INPUT [ENGINE ARGS...]: stdout to /dev/null
case_() {
    local name=$1 want=$2 max_mib=$3 input=$4
    shift 4
    local err=$scratch/$name.stderr
    timeout "$limit_s" /usr/bin/time -f "%e %M" -o "$scratch/$name.time" \
        "$engine" "$@" "$input" >/dev/null 2>"$err"
    judge "$name" "$?" "$want" "$max_mib" "$err"
}

# judge NAME GOT WANT MAX_MIB STDERR_FILE
judge() {
    local name=$1 got=$2 want=$3 max_mib=$4 err=$5
    local secs kib verdict=ok
    # GNU time puts "Command exited with non-zero status N" first.
    read -r secs kib < <(tail -n 1 "$scratch/$name.time" 2>/dev/null) || { secs=?; kib=0; }
    local mib=$((kib / 1024))
    if [[ $got != "$want" ]]; then verdict="FAIL: exit $got, wanted $want"; fi
    if ((mib > max_mib)); then verdict="FAIL: peak $mib MiB > $max_mib MiB"; fi
    if grep -q -e panicked -e RUST_BACKTRACE "$err"; then verdict="FAIL: panic"; fi
    if [[ $want == 1 ]] && (($(grep -c '^payments-engine: error:' "$err") != 1)); then
        verdict="FAIL: wanted one error line"
    fi
    [[ $verdict == ok ]] || failures=$((failures + 1))
    printf '%-26s exit %-3s %6s s %5s MiB  %s\n' "$name" "$got" "$secs" "$mib" "$verdict"
}

case_ random-bytes 0 100 "$scratch/random.bin" -q
case_ random-bytes-strict 1 100 "$scratch/random.bin" --strict
case_ zeros 0 100 "$scratch/zeros.bin" -q
case_ one-300MB-line 0 100 "$scratch/one-line.bin" -q
case_ million-commas 0 100 "$scratch/commas.csv" -q
case_ all-malformed 0 100 "$scratch/malformed.csv" -q
case_ all-malformed-rejects 0 100 "$scratch/malformed.csv" -q --rejects "$scratch/rejects.csv"
rm -f "$scratch/rejects.csv" # ~1 GB
case_ all-duplicates 0 100 "$scratch/duplicates.csv" -q
case_ all-duplicates-4-workers 0 100 "$scratch/duplicates.csv" -q --workers 4
case_ sparse-ids 0 400 "$scratch/sparse.csv" -q
case_ rejects-on-full-disk 1 100 "$scratch/malformed.csv" --rejects /dev/full
case_ missing-input 1 100 "$scratch/no-such-file.csv"

# A closed stdout: `| head -1` ends the run quietly with status 0.
timeout "$limit_s" /usr/bin/time -f "%e %M" -o "$scratch/closed-stdout.time" \
    "$engine" -q "$scratch/sparse.csv" 2>"$scratch/closed-stdout.stderr" | head -1 >/dev/null
judge closed-stdout "${PIPESTATUS[0]}" 0 400 "$scratch/closed-stdout.stderr"

# Input piped in from datagen (stdin, no file size known).
"$datagen" --rows 5000000 --preset adversarial |
    timeout "$limit_s" /usr/bin/time -f "%e %M" -o "$scratch/stdin-adversarial.time" \
        "$engine" -q - >/dev/null 2>"$scratch/stdin-adversarial.stderr"
judge stdin-adversarial "${PIPESTATUS[1]}" 0 400 "$scratch/stdin-adversarial.stderr"

if ((failures > 0)); then
    echo "$failures case(s) failed"
    exit 1
fi
echo "all cases as documented"
