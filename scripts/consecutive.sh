#!/usr/bin/env bash
# Times RUNS identical `flint run OPTIONS -- CMD` boots back to back and prints each boot's
# total and the medians of the odd and even boots. On hosts where the two medians differ,
# consecutive boots alternate between fast and slow (seen here: transparent huge pages for
# QEMU's RAM), and an A/B comparison must not put A always first (scripts/ab.sh uses ABBA).
#   scripts/consecutive.sh [-n RUNS] "OPTIONS" [-- CMD ARGS...]    (CMD defaults to true)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=12
# shellcheck source=lib/runs-option.sh
. scripts/lib/runs-option.sh
take_runs_option 1 6 "$@"
set -- "${rest[@]}"
eval "options=($1)"
shift
tool=consecutive
# shellcheck source=lib/timed-boots.sh
. scripts/lib/timed-boots.sh
take_workload "$@"
for i in $(seq "$runs"); do
    timed_boot "$i" "${options[@]}"
done
awk '$2 == "total" {
        printf "boot %2d %8.1f ms\n", $1, $3; v[$1 % 2, ++n[$1 % 2]] = $3
    }
    function median(p,   i, j, t, c) {
        c = n[p]
        for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[p, j] < v[p, i]) { t = v[p, i]; v[p, i] = v[p, j]; v[p, j] = t }
        return (v[p, int((c + 1) / 2)] + v[p, int(c / 2) + 1]) / 2
    }
    END { o = median(1); e = median(0); printf "odd boots median %.1f ms, even boots median %.1f ms, even/odd %.2f\n", o, e, e / o }' "$work/samples"
echo "flint run ${options[*]} -- ${cmd[*]}"
