#!/usr/bin/env bash
# A/B of kernel command-line additions: boots the same kernel through fw.bin with a busybox
# initramfs whose /init prints /proc/uptime (the kernel's own start-up time) and powers off,
# alternating the base command line and base + the additions, and prints both medians.
#   scripts/cmdline-ab.sh [RUNS] [KERNEL] "ADDITIONS"
#   AB_QEMU="-global ..." scripts/cmdline-ab.sh [RUNS] [KERNEL] ""   # A/B of QEMU options instead
# KERNEL defaults to Debian's cloud kernel's PVH vmlinux (flint run's default boot). AB_QEMU
# holds QEMU arguments that only the "tuned" side gets.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}
kernel=${2:-}
additions=${3-"i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check cryptomgr.notests"}
flint=target/release/flint
[ -x "$flint" ] || cargo build --release --locked -p flint
if [ -z "$kernel" ]; then
    kernel=$(ls -S "${FLINT_CACHE:-$HOME/.cache/flint}"/vmlinux/*.elf 2>/dev/null | head -1 || true)
    [ -n "$kernel" ] || { echo "cmdline-ab: no vmlinux cached: run 'flint run -- true' once first" >&2; exit 1; }
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/proc"
cp /bin/busybox "$work/root/bin/"
printf '#!/bin/busybox sh\n/bin/busybox mount -t proc p /proc\n/bin/busybox cat /proc/uptime\n/bin/busybox poweroff -f\n' > "$work/root/init"
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null) > "$work/initrd.cpio"
base="console=ttyS0 quiet panic=-1 rdinit=/init"
read -r -a tuned_qemu <<< "${AB_QEMU:-}"
boot() {
    local cmdline=$1
    shift
    qemu-system-x86_64 -M pc -accel tcg -m 256M -bios out/fw.bin -nodefaults -display none \
        -serial stdio -no-reboot -kernel "$kernel" -initrd "$work/initrd.cpio" -append "$cmdline" "$@" 2>&1 |
        grep -E '^[0-9]+\.[0-9]+ ' | tail -1 | cut -d' ' -f1
}
for _ in $(seq "$runs"); do
    echo "base $(boot "$base")"
    echo "tuned $(boot "$base $additions" "${tuned_qemu[@]}")"
done | sort -k1,1 -k2n | awk '
    { c[$1]++; v[$1 "," c[$1]] = $2 }
    END {
        for (k in c) {
            n = c[k]
            printf "%-6s median %.2f s of kernel start-up (n=%d)\n", k, (v[k "," int((n + 1) / 2)] + v[k "," int(n / 2) + 1]) / 2, n
        }
    }'
echo "additions: $additions${AB_QEMU:+; QEMU: $AB_QEMU}"
