#!/usr/bin/env bash
# What each firmware costs QEMU under TCG in the four null rows (pc and microvm, bzImage and
# PVH), measured two steady ways instead of wall time:
#   insns   guest instructions TCG translated (QEMU's `-d in_asm`): under TCG most of a
#           firmware's cost is translating code, each instruction once per block it is in;
#   execs   translated blocks executed (`-d exec,nochain`): loops and `rep` steps;
#   Ir      with --ir: the instructions QEMU itself ran (valgrind's callgrind, median of
#           --runs, minus the floor ROM's): all of it, translation, execution and devices.
#           Steady to ~0.3M on microvm, ~1M on pc; slow (a few seconds per run).
#   scripts/fw-translation.sh [--ir] [--runs N] INPUTS FIRMWARE...
# INPUTS is the `inputs/` directory of a `flint bench --scenario null` output (floor.rom,
# null.bzImage, null-pvh.elf), e.g.
#   flint bench -n 1 --scenario null --compare flint,qboot -o /tmp/null
#   scripts/fw-translation.sh --ir /tmp/null/inputs out/fw.bin /usr/share/qemu/qboot.rom
set -euo pipefail
ir=false runs=3
while [ $# -gt 0 ]; do
    case $1 in
    --ir) ir=true; shift ;;
    --runs) runs=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
inputs=$1
shift
for file in floor.rom null.bzImage null-pvh.elf; do
    [ -f "$inputs/$file" ] || { echo "fw-translation: $inputs/$file is missing: run flint bench --scenario null first" >&2; exit 1; }
done
if $ir; then command -v valgrind >/dev/null || { echo "fw-translation: --ir needs valgrind (apt-get install valgrind)" >&2; exit 1; }; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=lib/null-row.sh
. "$(dirname "$0")/lib/null-row.sh"
qemu() { # MACHINE FIRMWARE KERNEL EXTRA...
    null_row "$@" -serial none
}

median_ir() { # MACHINE FIRMWARE KERNEL
    wrapper=(valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/cg")
    for _ in $(seq "$runs"); do
        qemu "$1" "$2" "$3"
        awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg"
    done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
    wrapper=()
}

declare -A floor
if $ir; then
    for machine in pc microvm; do floor[$machine]=$(median_ir "$machine" "$inputs/floor.rom" "$inputs/null.bzImage"); done
fi
for firmware in "$@"; do
    echo "$firmware"
    for machine in pc microvm; do
        for kernel in null.bzImage null-pvh.elf; do
            qemu "$machine" "$firmware" "$inputs/$kernel" -d in_asm,exec,nochain -D "$work/log"
            insns=$(grep -cE '^0x[0-9a-f]+:' "$work/log" || true)
            execs=$(grep -c '^Trace' "$work/log" || true)
            line=$(printf '  %-8s %-13s insns %5d  execs %6d' "$machine" "$kernel" "$insns" "$execs")
            if $ir; then
                total=$(median_ir "$machine" "$firmware" "$inputs/$kernel")
                line+=$(awk -v t="$total" -v f="${floor[$machine]}" 'BEGIN {printf "  Ir over the floor %6.2fM", (t - f) / 1e6}')
            fi
            echo "$line"
        done
    done
done
