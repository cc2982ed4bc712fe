#!/usr/bin/env bash
# Where QEMU's instructions go for one null row, per firmware: translating guest code
# (`tb_gen_code`, inclusive) against running it (the rest of `cpu_exec`), from one callgrind
# profile each, with the translated blocks and instructions (`-d in_asm`) beside them. Under
# TCG a block costs about as much to translate as an instruction, so both counts matter.
#   scripts/fw-profile.sh MACHINE KERNEL FIRMWARE...
# e.g. (the null kernels are in `flint bench --scenario null`'s output, inputs/):
#   scripts/fw-profile.sh microvm /tmp/null/inputs/null-pvh.elf out/fw.bin /usr/share/qemu/qboot.rom
# One profile is steady to about 0.01M in these two figures (the total is not: it falls in one
# of two modes about 0.8M apart from run to run).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "fw-profile: needs $tool (apt-get install valgrind)" >&2; exit 1; }
done
machine=$1 kernel=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/null-row.sh
. "$(dirname "$0")/lib/null-row.sh"
# A function's inclusive count in the profile (QEMU's symbols show as ???:name).
inclusive() {
    callgrind_annotate --inclusive=yes --threshold=100 "$work/cg" |
        awk -v f="???:$1" '$0 ~ /\(/ && index($0, f " [") {gsub(",", "", $1); print $1; exit}'
}
for firmware in "$@"; do
    null_row "$machine" "$firmware" "$kernel" -serial none -d in_asm -D "$work/log"
    wrapper=(valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/cg")
    null_row "$machine" "$firmware" "$kernel" -serial none
    wrapper=()
    total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg")
    awk -v name="$firmware" -v blocks="$(grep -c '^IN:' "$work/log")" -v insns="$(grep -cE '^0x[0-9a-f]+:' "$work/log")" \
        -v exec_all="$(inclusive cpu_exec)" -v translate="$(inclusive tb_gen_code)" -v total="$total" 'BEGIN {
        printf "%s\n  blocks %d  insns %d  translating %.2fM  running %.2fM  QEMU in all %.2fM\n",
            name, blocks, insns, translate / 1e6, (exec_all - translate) / 1e6, total / 1e6 }'
done
