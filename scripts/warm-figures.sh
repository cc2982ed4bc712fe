#!/usr/bin/env bash
# Warm start's figures besides `flint bench`'s rows, for one kernel:
#  - what making the snapshot costs: the first `--warm` run (snapshot removed before each)
#    against a cold run, interleaved;
#  - throughput: `flint run --warm -- true` jobs per second with 1, 2 and 4 at once;
#  - memory: QEMU's PSS per warm VM with 1 and with 4 at once (workload `sleep 2`).
#
#   scripts/warm-figures.sh [-n REPS] [KERNEL] [FLINT]   (defaults: 7, minimal, `flint` in PATH)
#
# Run it alone on the machine: the PSS figures read every qemu-system-x86_64 process.
set -euo pipefail

reps=7
if [ "${1:-}" = "-n" ]; then reps=$2; shift 2; fi
kernel=${1:-minimal}
flint=${2:-flint}
cache=${FLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flint}
run=("$flint" --quiet run --kernel "$kernel")

ms_of() {  # ms_of COMMAND...: runs it, prints its milliseconds
    local start
    start=$(date +%s%N)
    "$@" >/dev/null
    echo $(( ($(date +%s%N) - start) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

"${run[@]}" -- true   # kernel, root and firmware in the cache first
cold=() first=()
for i in $(seq "$reps"); do
    cold+=("$(ms_of "${run[@]}" -- true)")
    rm -rf "$cache/warm"
    first+=("$(ms_of "${run[@]}" --warm -- true)")
    echo "warm-figures: $i/$reps cold ${cold[-1]} ms, first warm run ${first[-1]} ms" >&2
done
c=$(printf '%s\n' "${cold[@]}" | median)
f=$(printf '%s\n' "${first[@]}" | median)
echo "$kernel: cold run $c ms, first --warm run (boot, snapshot, job) $f ms: +$((f - c)) ms (medians of $reps)"

jobs=12
for parallel in 1 2 4; do
    start=$(date +%s%N)
    for batch in $(seq $((jobs / parallel))); do
        for p in $(seq "$parallel"); do "${run[@]}" --warm -- true & done
        wait
    done
    elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$kernel: $jobs warm jobs, $parallel at once: $elapsed ms, $(awk "BEGIN {printf \"%.1f\", $jobs * 1000 / $elapsed}") jobs/s"
done

for parallel in 1 4; do
    for p in $(seq "$parallel"); do "${run[@]}" --warm -- sleep 2 & done
    sleep 1.5
    total=0 count=0
    for pid in $(pgrep -x qemu-system-x86 || true); do
        kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + kb)) count=$((count + 1))
    done
    wait
    [ "$count" -gt 0 ] && echo "$kernel: $count warm VM(s) at once: QEMU's PSS $((total / count / 1024)) MiB each"
done
