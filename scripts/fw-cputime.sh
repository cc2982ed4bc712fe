#!/usr/bin/env bash
# QEMU's CPU time (perf stat's task-clock) booting a null kernel with each firmware given,
# interleaved, median of N runs each: steadier than wall time on a busy host.
#   scripts/fw-cputime.sh [-n N] [--no-thp] MACHINE KERNEL FIRMWARE...
# --no-thp runs QEMU without transparent huge pages (prctl PR_SET_THP_DISABLE, through a
# three-line wrapper built with cc), as `flint run` does under TCG: with them each 2 MiB of
# guest RAM first touched is zeroed whole.
# e.g. (the null kernels are in `flint bench --scenario null`'s output, inputs/):
#   scripts/fw-cputime.sh -n 15 microvm,acpi=off out/bench/inputs/null-pvh.elf out/fw.bin /usr/share/qemu/qboot.rom
set -euo pipefail
runs=15 wrapper=()
while true; do
    case "${1:-}" in
    -n) runs=$2; shift 2 ;;
    --no-thp)
        command -v cc >/dev/null || { echo "fw-cputime: --no-thp needs a C compiler (apt-get install gcc)" >&2; exit 1; }
        dir=$(mktemp -d)
        trap 'rm -rf "$dir"' EXIT
        printf '#include <sys/prctl.h>\n#include <unistd.h>\nint main(int c, char **v) { prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); execvp(v[1], v + 1); return 127; }\n' >"$dir/nothp.c"
        cc -O2 -o "$dir/nothp" "$dir/nothp.c"
        wrapper=("$dir/nothp")
        shift ;;
    *) break ;;
    esac
done
[ $# -ge 3 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v perf >/dev/null || { echo "fw-cputime: needs perf (apt-get install linux-perf)" >&2; exit 1; }
machine=$1 kernel=$2
shift 2
declare -A times
for _ in $(seq "$runs"); do
    for firmware in "$@"; do
        # QEMU exits with the null kernel's isa-debug-exit code, never 0.
        ms=$({ perf stat -x, -e task-clock "${wrapper[@]}" qemu-system-x86_64 -M "$machine" -accel tcg -m 256M -smp 1 \
            -bios "$firmware" -nodefaults -no-user-config -display none -no-reboot -serial null \
            -device isa-debug-exit,iobase=0x501,iosize=1 -kernel "$kernel" 2>&1 >/dev/null || true; } |
            awk -F, '/task-clock/ {print $1}')
        times[$firmware]+="$ms "
    done
done
for firmware in "$@"; do
    printf '%s: ' "$firmware"
    tr ' ' '\n' <<<"${times[$firmware]}" | grep . | sort -n |
        awk '{a[NR]=$1} END {printf "median %.2f ms of QEMU CPU time (n=%d)\n", a[int((NR+1)/2)], NR}'
done
