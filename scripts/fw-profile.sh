#!/usr/bin/env bash
# Where QEMU's instructions go for one null row, per firmware: translating guest code
# (`tb_gen_code`, inclusive) against running it (the rest of `cpu_exec`), from one callgrind
# profile each, with the translated blocks and instructions (`-d in_asm`) beside them. Under
# TCG a block costs about as much to translate as an instruction, so both counts matter.
#   scripts/fw-profile.sh MACHINE KERNEL FIRMWARE...
# e.g. (the null kernels are in `flint bench --scenario null`'s output, inputs/):
#   scripts/fw-profile.sh microvm /tmp/null/inputs/null-pvh.elf out/fw.bin /usr/share/qemu/qboot.rom
# One profile is steady to about 0.1M in these two figures (the total varies more: QEMU's own
# start-up differs between runs by up to 1M).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "fw-profile: needs $tool (apt-get install valgrind)" >&2; exit 1; }
done
machine=$1 kernel=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The bench's null-row command line (as scripts/fw-translation.sh), under `wrapper`, with `extra`.
wrapper=() extra=()
qemu() { # FIRMWARE; QEMU exits with the null kernel's isa-debug-exit code, never 0
    "${wrapper[@]}" qemu-system-x86_64 -M "$machine" -accel tcg -m 256M -smp 1 -bios "$1" -nodefaults \
        -no-user-config -display none -no-reboot -serial none -device isa-debug-exit,iobase=0x501,iosize=1 \
        -kernel "$kernel" "${extra[@]}" >/dev/null 2>&1 || true
}
# A function's inclusive count in the profile (QEMU's symbols show as ???:name).
inclusive() {
    callgrind_annotate --inclusive=yes --threshold=100 "$work/cg" |
        awk -v f="???:$1" '$0 ~ /\(/ && index($0, f " [") {gsub(",", "", $1); print $1; exit}'
}
for firmware in "$@"; do
    wrapper=() extra=(-d in_asm -D "$work/log")
    qemu "$firmware"
    wrapper=(valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/cg") extra=()
    qemu "$firmware"
    total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg")
    awk -v name="$firmware" -v blocks="$(grep -c '^IN:' "$work/log")" -v insns="$(grep -cE '^0x[0-9a-f]+:' "$work/log")" \
        -v exec_all="$(inclusive cpu_exec)" -v translate="$(inclusive tb_gen_code)" -v total="$total" 'BEGIN {
        printf "%s\n  blocks %d  insns %d  translating %.2fM  running %.2fM  QEMU in all %.2fM\n",
            name, blocks, insns, translate / 1e6, (exec_all - translate) / 1e6, total / 1e6 }'
done
