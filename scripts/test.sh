#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what is missing (QEMU, busybox,
# filesystem tools, Debian's cloud kernel), builds fw.bin with `flint build`, then runs
# every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo run --locked -p flint -- build
cargo test --workspace --locked
