#!/usr/bin/env bash
# From a fresh machine to a job run in a VM: installs what is missing, builds flint (with
# fw.bin inside), then runs a command in a throwaway VM and shows its output, timeline and status.
# Safe to rerun; everything after the first run comes from caches.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh
# The firmware and the guest init are built into the binary (cli/build.rs).
cargo build --release --locked -p flint
echo "flint: running a job in a fresh VM (TCG here, so a few seconds)" >&2
set +e
echo "hello from the host" | target/release/flint run --timeline -- \
    sh -c 'echo "guest: $(uname -sr), stdin: $(cat)"; exit 7'
status=$?
set -e
echo "flint: the job's exit status came back as $status" >&2
