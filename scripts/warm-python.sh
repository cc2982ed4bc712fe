#!/usr/bin/env bash
# A pre-initialised Python function (JSON request on stdin, answer on stdout) on a Debian
# userland root: cold `flint run` against `flint run --warm=ready`, interleaved, medians.
#
#   scripts/warm-python.sh [-n REPS] [FLINT]      (FLINT defaults to `flint` in PATH)
#
# The root is Debian's Python 3.11 (/usr/bin/python3.11, the libraries it links and its
# standard library, without the test suites), busybox for the shell, and the handler below,
# which imports a web handler's usual modules before it says it is ready. Needs python3.11
# (apt-get install python3.11-minimal libpython3.11-stdlib) and scripts/setup.sh's tools.
set -euo pipefail

reps=9
if [ "${1:-}" = "-n" ]; then reps=$2; shift 2; fi
flint=${1:-flint}
python=/usr/bin/python3.11
[ -x "$python" ] || { echo "warm-python: $python is missing: apt-get install python3.11-minimal libpython3.11-stdlib" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/usr/bin" "$root/usr/lib" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
ln -s busybox "$root/bin/true"
cp "$python" "$root/usr/bin/python3"
# Its libraries, and those of the extension modules the handler loads, where ld.so finds them.
for lib in $( (ldd "$python"; ldd /usr/lib/python3.11/lib-dynload/*.so 2>/dev/null) | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
(cd /usr/lib && tar cf - --exclude=test --exclude=tests --exclude=idlelib --exclude=tkinter \
    --exclude=ensurepip --exclude=lib2to3 --exclude='__pycache__' python3.11) | tar xf - -C "$root/usr/lib"
cat > "$root/handler.py" <<'EOF'
import asyncio, argparse, dataclasses, decimal, email.parser, http.client, json, logging
import os, typing, urllib.request, xml.dom.minidom
ready = os.environ.get("FLINT_READY")
if ready:
    with open(ready, "w") as fifo:
        fifo.write("ready\n")
request = json.load(__import__("sys").stdin)
print(json.dumps({"hello": request["name"], "total": str(sum(decimal.Decimal(x) for x in request["items"]))}))
EOF
request='{"name": "flint", "items": ["1.10", "2.20"]}'
expected='{"hello": "flint", "total": "3.30"}'

run() {  # run MODE: one timed run, its milliseconds on stdout
    local start end out
    start=$(date +%s%N)
    if [ "$1" = cold ]; then
        out=$(echo "$request" | "$flint" --quiet run --root "$root" -- python3 /handler.py)
    else
        out=$(echo "$request" | "$flint" --quiet run --warm=ready --root "$root" -- python3 /handler.py)
    fi
    end=$(date +%s%N)
    [ "$out" = "$expected" ] || { echo "warm-python: $1 run answered '$out'" >&2; exit 1; }
    echo $(( (end - start) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "warm-python: making the root image and the snapshot (first runs, untimed)" >&2
"$flint" --quiet run --root "$root" -- true
start=$(date +%s%N)
echo "$request" | "$flint" --quiet run --warm=ready --root "$root" -- python3 /handler.py >/dev/null
first_warm=$(( ($(date +%s%N) - start) / 1000000 ))
cold=() warm=()
for i in $(seq "$reps"); do
    if [ $((i % 2)) = 1 ]; then cold+=("$(run cold)"); warm+=("$(run warm)"); else warm+=("$(run warm)"); cold+=("$(run cold)"); fi
    echo "warm-python: $i/$reps cold ${cold[-1]} ms, warm ${warm[-1]} ms" >&2
done
cold_median=$(printf '%s\n' "${cold[@]}" | median)
warm_median=$(printf '%s\n' "${warm[@]}" | median)
echo "python handler, $reps interleaved runs each (ms, median): cold $cold_median, --warm=ready $warm_median, ratio $(awk "BEGIN {printf \"%.2f\", $warm_median / $cold_median}")"
echo "the first --warm=ready run (cold boot, start-up, snapshot, restore): $first_warm ms"
