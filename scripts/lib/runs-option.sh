# Sourced by the timing scripts. `take_runs_option MIN USAGE_END ARGS...` takes a leading
# `-n RUNS` off ARGS (setting `runs`, whose default the caller sets) and leaves the rest in
# the array `rest`; with fewer than MIN arguments left it prints lines 2 to USAGE_END of the
# calling script (its header comment) as the usage and exits 2.
take_runs_option() {
    local min=$1 usage_end=$2
    shift 2
    if [ "${1:-}" = -n ]; then
        runs=$2
        shift 2
    fi
    [ $# -ge "$min" ] || { sed -n "2,${usage_end}p" "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
    rest=("$@")
}
