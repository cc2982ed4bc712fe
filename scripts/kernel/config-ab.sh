#!/usr/bin/env bash
# A/B of a change to the minimal kernel's configuration: builds the kernel from
# scripts/kernel/minimal.config (A) and from the same fragment with the changes applied (B),
# then times whole `flint run` boots of both with scripts/ab.sh.
#   scripts/kernel/config-ab.sh [-n RUNS] [-r "RUN OPTIONS"] CONFIG_X=n [CONFIG_Y=y ...]
# RUN OPTIONS go to every `flint run` of both sides, e.g. -r "--machine pc --boot bzimage".
# Each CONFIG_X=value replaces any line of the fragment that sets CONFIG_X (to switch a
# choice, turn the old one off too: CONFIG_KERNEL_LZ4=n CONFIG_KERNEL_GZIP=y). Both kernels stay
# in config-ab/ of flint's cache (by content), so a rerun only boots; the build tree is shared
# with `flint kernel minimal`, so each build recompiles only what the options touch.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=8
run_options=
while [ $# -gt 0 ]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        -r) run_options=$2; shift 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for change in "$@"; do
    [[ $change =~ ^CONFIG_[A-Z0-9_]+=.+$ ]] || { echo "config-ab: $change is not CONFIG_NAME=value" >&2; exit 2; }
done
flint=target/release/flint
[ -x "$flint" ] || cargo build --release --locked -p flint
store=${FLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flint}/config-ab
mkdir -p "$store"

base=scripts/kernel/minimal.config
variant=$(mktemp)
trap 'rm -f "$variant"' EXIT
pattern=$(printf '%s\n' "$@" | sed 's/=.*//' | paste -sd'|')
grep -vE "^($pattern)=" "$base" > "$variant"
printf '# config-ab\n' >> "$variant"
printf '%s\n' "$@" >> "$variant"

# Builds one side (skipped when a kernel of that fragment is already there); prints its dir.
build() {
    local fragment=$1 dir
    dir=$store/$(sha256sum < "$fragment" | cut -c1-16)
    echo "config-ab: kernel for $2 in $dir" >&2
    "$flint" kernel minimal --config "$fragment" -o "$dir" >/dev/null || exit 1
    echo "$dir"
}
kernel_a=$(build "$base" "A (scripts/kernel/minimal.config)")
kernel_b=$(build "$variant" "B ($*)")
scripts/ab.sh -n "$runs" "$run_options --kernel $kernel_a" "$run_options --kernel $kernel_b"
echo "B's changes: $*"
