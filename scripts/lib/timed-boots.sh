# Sourced by scripts/ab.sh and scripts/consecutive.sh: whole `flint run` boots, timed by the
# boot timeline. The caller is in the source tree and sets `tool` (its name, for errors).
# Provides `$flint`, `$work` (a temporary directory, removed on exit), `take_workload
# [-- CMD ARGS...]`, which sets the workload every boot runs (default: true), and
# `timed_boot LABEL OPTIONS...`, which appends one line per timeline phase, "LABEL PHASE MS"
# (and "LABEL total MS"), to "$work/samples". LABEL boots with the binary `flint_of[LABEL]`
# if the caller set it.
flint=target/release/flint
[ -x "$flint" ] || cargo build --release --locked -p flint
[ -f out/fw.bin ] || "$flint" build >/dev/null

declare -A flint_of  # keeps what the caller put there
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

take_workload() {
    [ "${1:-}" != -- ] || shift
    [ $# -gt 0 ] || set -- true
    cmd=("$@")
}

timed_boot() {
    local label=$1 binary=${flint_of[$1]:-$flint}
    shift
    if ! "$binary" run -q "$@" --timeline-json "$work/t.json" -- "${cmd[@]}" >"$work/out" 2>"$work/err"; then
        echo "$tool: a boot ($label) failed: flint run $* -- ${cmd[*]}" >&2
        tail -5 "$work/err" >&2
        exit 1
    fi
    awk -v label="$label" '
        /"name"/ { sub(/.*"name": *"/, ""); sub(/".*/, ""); gsub(/ /, "_"); name = $0 }
        /"ms"/ { sub(/.*"ms": */, ""); sub(/,.*/, ""); print label, name, $0 }
        /"total_ms"/ { sub(/.*"total_ms": */, ""); sub(/,.*/, ""); print label, "total", $0 }
    ' "$work/t.json" >> "$work/samples"
}
