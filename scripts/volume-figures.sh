#!/usr/bin/env bash
# --volume over virtiofs against 9p, with the minimal kernel (Debian's cloud kernel has no
# 9p): the whole `flint run -- true` with no volume and with one of each (RUNS boots each,
# interleaved, medians), then in the guest (medians of RUNS runs each, timed with
# /proc/uptime) writing 50 MB to one file and reading it back, writing 2,000 small files and
# reading them back, on the volume and, for reference, on the guest's /tmp (a tmpfs: what the
# shell's own loop costs). Guest caches are dropped before each read.
#   scripts/volume-figures.sh [-n RUNS] [--flint BIN] [RUN OPTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
flint=target/release/flint
while [ $# -gt 0 ]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        --flint) flint=$2; shift 2 ;;
        *) break ;;
    esac
done
[ -x "$flint" ] || { echo "volume-figures: no $flint: cargo build --release -p flint" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/flint-volume-figures.XXXXXX")
trap 'rm -rf "$work"' EXIT
run() { "$flint" --quiet run --kernel minimal "$@"; }

median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }

echo "boot: flint run -- true, $runs runs each, median seconds"
for i in $(seq "$runs"); do
    for fs in none virtiofs 9p; do
        dir=$work/boot-$fs
        mkdir -p "$dir"
        volume=()
        [ "$fs" = none ] || volume=(-v "$dir:/data" --volume-fs "$fs")
        start=$(date +%s.%N)
        run "${volume[@]}" "$@" -- true
        awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }' >>"$work/boot-$fs.times"
    done
done
for fs in none virtiofs 9p; do
    printf '  %-9s %s s\n' "$fs" "$(median <"$work/boot-$fs.times")"
done

# In the guest: `NAME START END` lines (uptime seconds).
guest_script='
t() { read -r up _ </proc/uptime; echo "$up"; }
for at in /data /tmp; do
    where=$([ $at = /data ] && echo volume || echo tmpfs)
    s=$(t); dd if=/dev/zero of=$at/big bs=1M count=50 2>/dev/null; sync; echo "write-50MB-$where $s $(t)"
    echo 3 >/proc/sys/vm/drop_caches
    s=$(t); cat $at/big >/dev/null; echo "read-50MB-$where $s $(t)"
    rm $at/big; mkdir $at/small
    s=$(t); i=0; while [ $i -lt 2000 ]; do echo x >$at/small/$i; i=$((i + 1)); done; sync
    echo "write-2000-files-$where $s $(t)"
    echo 3 >/proc/sys/vm/drop_caches
    s=$(t); cat $at/small/* >/dev/null; echo "read-2000-files-$where $s $(t)"
    rm -r $at/small
done'
echo "in the guest: $runs runs each, median seconds"
for fs in virtiofs 9p; do
    for i in $(seq "$runs"); do
        dir=$work/io-$fs-$i
        mkdir -p "$dir"
        run -v "$dir:/data" --volume-fs "$fs" --memory 1G "$@" -- sh -c "$guest_script" >>"$work/io-$fs.lines"
        rm -rf "$dir"
    done
done
names=$(awk '{ print $1 }' "$work/io-virtiofs.lines" | awk '!seen[$0]++')
printf '  %-26s %9s %9s\n' "" virtiofs 9p
for name in $names; do
    row=$(printf '  %-26s' "$name")
    for fs in virtiofs 9p; do
        row="$row $(printf '%9s' "$(awk -v n="$name" '$1 == n { print $3 - $2 }' "$work/io-$fs.lines" | median)")"
    done
    echo "$row"
done
echo "host: $(uname -r), the volumes in $(df --output=fstype "$work" | tail -1) at $work"
