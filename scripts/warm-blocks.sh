#!/usr/bin/env bash
# How many code blocks TCG translates in a warm `flint run`: QEMU is run through a wrapper
# that adds `-d in_asm` (one `IN:` line per block translated); the first run makes the
# snapshot (with the wrapper: its own key), the next RUNS restore it. Steadier than a time.
#   scripts/warm-blocks.sh [-n RUNS] [FLINT] [RUN OPTIONS...] -- CMD...
# e.g. scripts/warm-blocks.sh -n 3 target/release/flint --kernel minimal -- true
set -euo pipefail
runs=3
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
flint=${1:-flint}
shift || true
qemu=$(command -v qemu-system-x86_64) || { echo "warm-blocks: qemu-system-x86_64 is not in PATH" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/qemu-system-x86_64" <<WRAPPER
#!/bin/sh
exec "$qemu" "\$@" -d in_asm -D "$dir/blocks.\$\$"
WRAPPER
chmod +x "$dir/qemu-system-x86_64"
chmod 755 "$dir"
PATH="$dir:$PATH" "$flint" --quiet run --warm "$@" >/dev/null
for _ in $(seq "$runs"); do
    rm -f "$dir"/blocks.*
    PATH="$dir:$PATH" "$flint" --quiet run --warm "$@" >/dev/null
    grep -hc '^IN:' "$dir"/blocks.*
done | tr '\n' ' '
echo "blocks translated per warm run"
