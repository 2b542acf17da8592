#!/usr/bin/env bash
# A prepared run for the many-core machine: where a run at MAX_CORES waits
# (the JSON summary's cpu_by_role waits, for several parser/worker splits
# and block sizes), then BEFORE against AFTER (tools/cores-ab.sh) at
# MAX_CORES, all cores, 8 and 4 cores, on 100M rows. Prints everything.
#
#   tools/device-waits.sh BEFORE AFTER DATAGEN OUTDIR [MAX_CORES]
#
# MAX_CORES defaults to one less than the machine's cores. Needs taskset
# and python3. Takes about two minutes on 16 cores (plus the 100M rows'
# generation).
set -euo pipefail
usage='usage: tools/device-waits.sh BEFORE AFTER DATAGEN OUTDIR [MAX_CORES]'
here=$(dirname "$0")
source "$here/lib/args.bash"
check_args 4 "$@"
before=$1 after=$2 datagen=$3 out=$4
all=$(nproc)
max=${5:-$((all - 1))}
mkdir -p "$out"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
input=$data/r100m.csv
echo "nproc $all"
lscpu | grep -E '^(Model name|L2|L3)' || true
"$datagen" --rows 100000000 --seed 42 -o "$input"

show() {
    python3 - "$1" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); e = j["elapsed_s"]
print(f"{sys.argv[2]}: {e:.3f} s, {j['rows_per_s'] / 1e6:.1f}M rows/s")
for name, r in j["cpu_by_role"].items():
    busy = 100 * (r["cpu_s"] or 0) / max(1e-9, r["threads"] * e)
    print(f"  {name:6} threads {r['threads']:2} cpu {r['cpu_s'] or 0:7.3f} s ({busy:3.0f}% busy)"
          f"  waits: input {r['input_wait_s']:7.3f}  room {r['room_wait_s']:7.3f}"
          f"  peers {r['peers_wait_s']:7.3f}")
PY
}
n=0
for split in "" "--parsers 6 --workers 9" "--parsers 4 --workers 11" "--parsers 8 --workers 7" \
    "--parsers 6 --workers 9 --block-size 4MiB" "--parsers 6 --workers 9 --block-size 256KiB"; do
    n=$((n + 1))
    # shellcheck disable=SC2086 # the split is words
    taskset -c "0-$((max - 1))" "$after" -q $split --summary-json "$out/waits-$n.json" -o /dev/null "$input"
    show "$out/waits-$n.json" "$max cores, ${split:-defaults}"
done
for cores in "$max" "$all" 8 4; do
    "$here/cores-ab.sh" "$cores" 3 "$before $after" "$input"
done
