#!/usr/bin/env bash
# What each firmware's road to a real Linux bzImage's 64-bit entry (startup_64) costs in QEMU's
# vCPU. The null rows stop at the kernel's first instruction, where qboot's and SeaBIOS's
# bzImage path is a jump to the kernel's 16-bit setup code: one instruction in the null
# kernel, Linux's real-mode setup and 32-bit startup in a real one. flint enters startup_64
# itself (64-bit boot protocol). Here every firmware runs until startup_64's first
# instruction (a gdb breakpoint at load address + 0x200: 0x100200 where QEMU's fw_cfg puts
# the kernel for a 16-bit entry, pref_address + 0x200 where flint loads Linux), then QEMU
# quits. Per firmware: blocks and instructions translated (`-d in_asm`), QEMU's translating
# and running instructions (one callgrind profile, as scripts/fw-profile.sh splits them), and
# the median wall time from the vCPU's start to the breakpoint over REPS runs.
#   scripts/fw-to-entry64.sh [-n REPS] MACHINE BZIMAGE FIRMWARE...
# e.g. scripts/fw-to-entry64.sh microvm ~/.cache/flint/kernels/debian-generic/vmlinuz \
#          out/fw.bin /usr/share/qemu/qboot.rom
set -euo pipefail
reps=11
[ "${1:-}" = -n ] && { reps=$2; shift 2; }
[ $# -ge 3 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for tool in gdb valgrind callgrind_annotate python3 pkill; do
    command -v "$tool" >/dev/null || { echo "fw-to-entry64: needs $tool (apt-get install gdb valgrind python3 procps)" >&2; exit 1; }
done
machine=$1 kernel=$2
shift 2
entry=$(python3 - "$kernel" <<'PY'
import struct, sys
head = open(sys.argv[1], "rb").read(0x268)
if len(head) < 0x268 or head[0x202:0x206] != b"HdrS":
    sys.exit(f"fw-to-entry64: {sys.argv[1]} is not a bzImage (no HdrS header)")
print(hex(struct.unpack_from("<Q", head, 0x258)[0] + 0x200))
PY
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/null-row.sh
. "$(dirname "$0")/lib/null-row.sh"
errors=$work/qemu.err

# `to_entry FIRMWARE [WRAPPER...] -- [QEMU OPTIONS...]`: boots the kernel paused, lets gdb run
# it to startup_64 and quit QEMU; prints gdb's time for the run in ms.
to_entry() {
    local firmware=$1 port status
    shift
    wrapper=()
    while [ "$1" != -- ]; do wrapper+=("$1"); shift; done
    shift
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    null_row "$machine" "$firmware" "$kernel" -append console=ttyS0 -serial none -gdb "tcp:127.0.0.1:$port" -S "$@" &
    local qemu=$!
    for _ in $(seq 300); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    # Bounded: a firmware that never reaches startup_64 (or a kernel it rejects) must not hang
    # the script; under callgrind a run takes some 20 s.
    timeout 300 gdb -q -batch -ex 'set architecture i386:x86-64' -ex "target remote 127.0.0.1:$port" \
        -ex 'hbreak *0x100200' -ex "hbreak *$entry" -ex 'python import time; start = time.monotonic()' \
        -ex continue -ex 'python print("ms %.3f" % ((time.monotonic() - start) * 1000))' \
        -ex 'printf "pc %#lx\n", $pc' -ex 'monitor quit' >"$work/gdb.out" 2>&1 && status=0 || status=$?
    # QEMU quits on gdb's request; only when gdb gave up is it stopped here (it runs as a child
    # of the background `null_row`).
    [ "$status" = 124 ] && pkill -P "$qemu"
    wait "$qemu" || true
    grep -q "^pc \(0x100200\|$entry\)$" "$work/gdb.out" ||
        { echo "fw-to-entry64: $firmware never reached startup_64:" >&2; cat "$work/gdb.out" "$errors" >&2; exit 1; }
    awk '/^ms / {print $2}' "$work/gdb.out"
}

declare -A times
for rep in $(seq "$reps"); do
    # Serpentine order, as scripts/fw-cputime.sh: no firmware always first.
    order=("$@")
    [ $((rep % 2)) = 0 ] && mapfile -t order < <(printf '%s\n' "$@" | tac)
    for firmware in "${order[@]}"; do
        times[$firmware]+="$(to_entry "$firmware" --) "
    done
done
for firmware in "$@"; do
    to_entry "$firmware" -- -d in_asm -D "$work/log" >/dev/null
    blocks=$(grep -c '^IN:' "$work/log") insns=$(grep -cE '^0x[0-9a-f]+:' "$work/log")
    to_entry "$firmware" valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/cg" -- >/dev/null
    profile=$(callgrind_annotate --inclusive=yes --threshold=100 "$work/cg" | awk '
        $0 ~ /\?\?\?:cpu_exec \[/ && !e {gsub(",", "", $1); e = $1}
        $0 ~ /\?\?\?:tb_gen_code \[/ && !t {gsub(",", "", $1); t = $1}
        END {printf "translating %.2fM  running %.2fM", t / 1e6, (e - t) / 1e6}')
    median=$(printf '%s\n' ${times[$firmware]} | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
    printf '%s\n  blocks %d  insns %d  %s  wall to startup_64 %s ms (median of %d)\n' \
        "$firmware" "$blocks" "$insns" "$profile" "$median" "$reps"
done
