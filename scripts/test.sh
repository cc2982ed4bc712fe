#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what is missing (QEMU, busybox,
# filesystem tools, Debian's cloud and generic kernels), builds fw.bin with `flint build` and
# the minimal kernel, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo run --locked -p flint -- build
cargo run --locked -p flint -- kernel debian-generic
# The kernel with everything built in that the guest-init tests boot (compiles Linux once,
# about 10 minutes on 2 cores; cached by its configuration afterwards).
cargo run --locked -p flint -- kernel minimal
# Lints are part of the suite: the host crates, and the freestanding crates' libraries (their
# binaries build only as `flint build` builds them), with every warning an error; every
# `unsafe` documented (the workspace's lints).
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --locked -p flint-firmware -p flint-guest-init -p flint-freestanding --lib -- -D warnings
cargo test --workspace --locked
