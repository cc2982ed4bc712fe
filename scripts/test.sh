#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what is missing (QEMU, busybox,
# filesystem tools, Debian's cloud kernel), builds fw.bin, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-firmware.sh
cargo test --workspace --locked
