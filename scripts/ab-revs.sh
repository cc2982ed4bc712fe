#!/usr/bin/env bash
# A/B timing of two commits: builds flint, fw.bin and the minimal kernel of REV_A and of
# REV_B (a commit, a branch, or "." for the working tree), then times whole `flint run`
# boots of both with scripts/ab.sh (ABBA order). RUN OPTIONS go to every boot of both
# sides; each side boots its own firmware and, unless RUN OPTIONS name a kernel, its own
# minimal kernel.
#   scripts/ab-revs.sh [-n RUNS] REV_A REV_B ["RUN OPTIONS"] [-- CMD ARGS...]
#   scripts/ab-revs.sh -n 10 80e1460 .
# The builds stay in ab-revs/ of flint's cache (by commit), so a rerun only boots; the
# kernels share the build tree of `flint kernel minimal`.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=8
# shellcheck source=lib/runs-option.sh
. scripts/lib/runs-option.sh
take_runs_option 2 10 "$@"
set -- "${rest[@]}"
rev_a=$1 rev_b=$2
shift 2
run_options=
if [ $# -gt 0 ] && [ "$1" != -- ]; then
    run_options=$1
    shift
fi
cache=${FLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flint}
store=$cache/ab-revs
mkdir -p "$store"

# Checks REV out into its own directory (the working tree is used as it is) and builds
# flint, fw.bin and, unless the options name a kernel, the minimal kernel there; prints the
# directory.
build() {
    local rev=$1 dir
    if [ "$rev" = . ]; then
        dir=$PWD
    else
        local commit
        commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "ab-revs: no commit $rev" >&2; exit 2; }
        dir=$store/$commit
        if [ ! -d "$dir" ]; then
            git worktree add --detach --force "$dir" "$commit" >&2
        fi
    fi
    echo "ab-revs: building $rev in $dir" >&2
    (cd "$dir" && cargo build --release --locked -p flint >&2 && target/release/flint build >/dev/null) || exit 1
    if [[ " $run_options " != *" --kernel "* ]]; then
        # A commit from before scripts/kernel/patches builds in the shared tree as it finds
        # it: take back what a newer flint patched, so that side's kernel is its own.
        if [ ! -d "$dir/scripts/kernel/patches" ]; then
            for tree in "$cache/kernels"/.minimal-build-*; do
                [ -f "$tree/applied.patch" ] || continue
                patch -s -p1 -R --forward --reject-file=- --no-backup-if-mismatch -d "$tree/src" -i "$tree/applied.patch" >&2 && rm "$tree/applied.patch"
            done
        fi
        (cd "$dir" && target/release/flint kernel minimal -o "$dir/out/kernel" >/dev/null) || exit 1
    fi
    echo "$dir"
}
side_options() {
    local dir=$1
    local options="--firmware $dir/out/fw.bin $run_options"
    [[ " $run_options " == *" --kernel "* ]] || options="$options --kernel $dir/out/kernel"
    echo "$options"
}
dir_a=$(build "$rev_a")
dir_b=$(build "$rev_b")
options_a=$(side_options "$dir_a")
options_b=$(side_options "$dir_b")
scripts/ab.sh -n "$runs" --flint-a "$dir_a/target/release/flint" --flint-b "$dir_b/target/release/flint" \
    "$options_a" "$options_b" "$@"
echo "A is $rev_a ($(git rev-parse --short "$rev_a^{commit}" 2>/dev/null || echo 'working tree')), B is $rev_b ($(git rev-parse --short "$rev_b^{commit}" 2>/dev/null || echo 'working tree'))"
