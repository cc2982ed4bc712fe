#!/usr/bin/env bash
# Which of the firmware's functions QEMU's vCPU runs most in one null row: translated blocks
# executed (`-d exec,nochain`), summed per function of the firmware's ELF (inlined code counts
# in its caller). Blocks of the null kernel and of code without a symbol are left out.
#   scripts/fw-execs.sh MACHINE KERNEL [ELF FIRMWARE]
# ELF and FIRMWARE default to `flint build`'s target/freestanding/release/flint-fw and
# out/fw.bin; e.g. scripts/fw-execs.sh microvm /tmp/null/inputs/null-pvh.elf
set -euo pipefail
[ $# -eq 2 ] || [ $# -eq 4 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
cd "$(dirname "$0")/.."
machine=$1 kernel=$2 elf=${3:-target/freestanding/release/flint-fw} firmware=${4:-out/fw.bin}
for tool in nm python3; do
    command -v "$tool" >/dev/null || { echo "fw-execs: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/null-row.sh
. scripts/lib/null-row.sh
null_row "$machine" "$firmware" "$kernel" -serial none -d exec,nochain -D "$work/log"
nm -C --defined-only "$elf" >"$work/symbols"
python3 - "$work/log" "$work/symbols" <<'PY'
import bisect, collections, re, sys
log, symbols = sys.argv[1], sys.argv[2]
syms = sorted((int(a, 16), name) for a, kind, name in (l.rstrip("\n").split(" ", 2) for l in open(symbols)) if kind in "tT")
starts = [a for a, _ in syms]
execs = collections.Counter(int(m.group(1), 16) for m in re.finditer(r"^Trace \d+: \S+ \[\w+/(\w+)/", open(log).read(), re.M))
per = collections.Counter()
for pc, n in execs.items():
    i = bisect.bisect_right(starts, pc) - 1
    # Only addresses inside the firmware's code: ROM, its high alias, or the boot page.
    if i >= 0 and (pc >= 0xFFFF_FFFF_8000_0000 or 0xFFFC_0000 <= pc < 0x1_0000_0000):
        per[syms[i][1]] += n
total = sum(per.values())
print(f"{total} blocks executed in the firmware")
for name, n in per.most_common(12):
    print(f"{n:8} {name}")
PY
