#!/usr/bin/env bash
# Builds out/fw.bin: the firmware, flat, ready for `qemu-system-x86_64 -bios out/fw.bin`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p flint-firmware --bin flint-fw
mkdir -p out
objcopy -O binary target/release/flint-fw out/fw.bin
echo "out/fw.bin"
