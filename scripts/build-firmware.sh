#!/usr/bin/env bash
# Builds out/fw.bin: the firmware, flat, ready for `qemu-system-x86_64 -bios out/fw.bin`.
# Set FLINT_INIT to a built guest init to embed it (`flint build` does).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p flint-firmware --bin flint-fw
mkdir -p out
objcopy -O binary target/release/flint-fw out/fw.bin
# The firmware proper (everything but the embedded init) must stay within 64 KiB.
code=$(size -A target/release/flint-fw | awk '$1 ~ /^\.(text|rodata|data|boot|reset)$/ {sum += $2} END {print sum}')
echo "fw.bin: firmware code $code bytes, embedded init $(size -A target/release/flint-fw | awk '$1 == ".initramfs" {s = $2} END {print s + 0}') bytes" >&2
if [ "$code" -gt 65536 ]; then
    echo "build-firmware: firmware code is $code bytes, over the 64 KiB budget" >&2
    exit 1
fi
echo "out/fw.bin"
