#!/usr/bin/env bash
# QEMU's CPU time (perf stat's task-clock) booting a null kernel with each firmware given,
# interleaved, median of N runs each: steadier than wall time on a busy host. With it, the
# median page faults and huge-page faults (/proc/vmstat's thp_fault_alloc, system-wide: keep
# the host otherwise idle): each huge page first touched is 2 MiB the host clears.
#   scripts/fw-cputime.sh [-n N] [--no-thp] MACHINE KERNEL FIRMWARE...
# --no-thp runs QEMU without transparent huge pages (prctl PR_SET_THP_DISABLE, through a
# three-line wrapper built with cc), as `flint run` does under TCG: with them each 2 MiB of
# guest RAM first touched is zeroed whole.
# e.g. (the null kernels are in `flint bench --scenario null`'s output, inputs/):
#   scripts/fw-cputime.sh -n 15 microvm,acpi=off out/bench/inputs/null-pvh.elf out/fw.bin /usr/share/qemu/qboot.rom
set -euo pipefail
# shellcheck source=lib/null-row.sh
. "$(dirname "$0")/lib/null-row.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=15 nothp=()
while true; do
    case "${1:-}" in
    -n) runs=$2; shift 2 ;;
    --no-thp)
        command -v cc >/dev/null || { echo "fw-cputime: --no-thp needs a C compiler (apt-get install gcc)" >&2; exit 1; }
        printf '#include <sys/prctl.h>\n#include <unistd.h>\nint main(int c, char **v) { prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); execvp(v[1], v + 1); return 127; }\n' >"$work/nothp.c"
        cc -O2 -o "$work/nothp" "$work/nothp.c"
        nothp=("$work/nothp")
        shift ;;
    *) break ;;
    esac
done
[ $# -ge 3 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v perf >/dev/null || { echo "fw-cputime: needs perf (apt-get install linux-perf)" >&2; exit 1; }
machine=$1 kernel=$2
shift 2
declare -A times faults thps
thp_faults() { awk '/^thp_fault_alloc / {print $2}' /proc/vmstat; }
# Serpentine order (forward, then backward), as `flint bench`: identical boots back to back
# alternate between faster and slower here (BENCHMARKS.md, "Consecutive boots alternate"),
# which in a fixed order favours whichever firmware always takes the fast turn.
forward=("$@") backward=()
for ((i = $# - 1; i >= 0; i--)); do backward+=("${forward[i]}"); done
for run in $(seq "$runs"); do
    if ((run % 2)); then order=("${forward[@]}"); else order=("${backward[@]}"); fi
    for firmware in "${order[@]}"; do
        before=$(thp_faults)
        wrapper=(perf stat -x, -o "$work/stat" -e task-clock,page-faults "${nothp[@]}")
        null_row "$machine" "$firmware" "$kernel" -serial null
        times[$firmware]+="$(awk -F, '/task-clock/ {print $1}' "$work/stat") "
        faults[$firmware]+="$(awk -F, '/page-faults/ {print $1}' "$work/stat") "
        thps[$firmware]+="$(($(thp_faults) - before)) "
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for firmware in "$@"; do
    printf '%s: median %.2f ms of QEMU CPU time, %d page faults, %d huge-page faults (n=%d)\n' "$firmware" \
        "$(median "${times[$firmware]}")" "$(median "${faults[$firmware]}")" "$(median "${thps[$firmware]}")" "$runs"
done
