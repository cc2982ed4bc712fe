#!/usr/bin/env bash
# A/B timing of whole `flint run` boots: runs `flint run OPTIONS -- CMD` with two sets of
# options in turn (A B B A A B B A ...), RUNS times each, and prints the medians of each phase of the
# boot timeline (QEMU start, firmware, kernel, init, workload, shutdown, total), their spread
# and the ratio B/A. Only the ratio within one run means something on a noisy host.
#   scripts/ab.sh [-n RUNS] [--flint-a BIN] [--flint-b BIN] "OPTIONS A" "OPTIONS B" [-- CMD ARGS...]
# CMD defaults to true; --flint-a/--flint-b boot that side with another flint binary (as
# scripts/ab-revs.sh does to compare two commits). Examples:
#   scripts/ab.sh -n 10 "--kernel minimal" "--kernel minimal --append 'noreplace-smp nokaslr'"
#   scripts/ab.sh "--kernel minimal --machine pc" "--kernel minimal --machine microvm"
set -euo pipefail
cd "$(dirname "$0")/.."
runs=8
declare -A flint_of
while [ $# -gt 0 ]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        --flint-a) flint_of[A]=$2; shift 2 ;;
        --flint-b) flint_of[B]=$2; shift 2 ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# Each side is split as the shell would, so quotes group: "--append 'a=1 b=2'".
eval "side_a=($1)"
eval "side_b=($2)"
shift 2
tool=ab
# shellcheck source=lib/timed-boots.sh
. scripts/lib/timed-boots.sh
take_workload "$@"
# ABBA, not ABAB: on these hosts a boot that follows another at once can run ~15% faster
# or slower than the one before it, alternately (transparent huge pages for QEMU's RAM; see
# BENCHMARKS.md), so strict alternation would give one side all the fast slots.
for i in $(seq "$runs"); do
    if [ $((i % 2)) = 1 ]; then
        timed_boot A "${side_a[@]}"
        timed_boot B "${side_b[@]}"
    else
        timed_boot B "${side_b[@]}"
        timed_boot A "${side_a[@]}"
    fi
    printf '\rab: %d of %d rounds' "$i" "$runs" >&2
done
echo >&2

sort -k1,1 -k2,2 -k3n "$work/samples" | awk -v runs="$runs" '
    BEGIN { phases = split("qemu_start firmware kernel init workload shutdown total", order, " ") }
    { key = $1 " " $2; n[key]++; v[key, n[key]] = $3 }
    function median(key) { c = n[key]; return (v[key, int((c + 1) / 2)] + v[key, int(c / 2) + 1]) / 2 }
    END {
        printf "%-12s %10s %17s %10s %17s %6s\n", "phase", "A median", "A min-max", "B median", "B min-max", "B/A"
        for (i = 1; i <= phases; i++) {
            p = order[i]; a = "A " p; b = "B " p
            if (!n[a] || !n[b]) continue
            ma = median(a); mb = median(b)
            printf "%-12s %8.1f ms %7.1f-%-9.1f %8.1f ms %7.1f-%-9.1f %6.2f\n", p, ma, v[a, 1], v[a, n[a]], mb, v[b, 1], v[b, n[b]], (ma > 0 ? mb / ma : 0)
        }
        printf "%d boots per side, in ABBA order\n", runs
    }'
echo "A: flint run ${side_a[*]} -- ${cmd[*]}"
echo "B: flint run ${side_b[*]} -- ${cmd[*]}"
