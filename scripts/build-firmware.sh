#!/usr/bin/env bash
# Builds out/fw.bin (the firmware with flint's guest init embedded) by running `flint build`;
# prints its path. Kept for habit and CI; `cargo run -p flint -- build` is the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p flint -- build
