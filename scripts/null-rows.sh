#!/usr/bin/env bash
# flint against qboot in the four null rows, over RUNS whole `flint bench` runs: one run's
# medians move by milliseconds on a busy host, so one run says little. Prints each run's
# flint-minus-qboot difference of medians per row, then per row how many runs flint was
# ahead in (and level in: within 0.05 ms), the median difference, and how far one run's
# difference is to be trusted: its standard error by bootstrap (the run's samples resampled),
# the median of that over the runs.
#   scripts/null-rows.sh [-n REPS] [RUNS]      (defaults: 21 repetitions, 10 runs)
#   FLINT=target/release/flint scripts/null-rows.sh     (a flint other than the one on PATH)
#   FLINT=OLD FLINT_B=NEW scripts/null-rows.sh   (two builds, their runs alternated: OLD, NEW,
#                                                 OLD, ...; RUNS of each, summed up apart)
set -euo pipefail
reps=21
[ "${1:-}" = -n ] && { reps=$2; shift 2; }
runs=${1:-10}
sides=("${FLINT:-flint}")
[ -n "${FLINT_B:-}" ] && sides+=("$FLINT_B")
command -v python3 >/dev/null || { echo "null-rows: needs python3" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for run in $(seq "$runs"); do
    for side in "${!sides[@]}"; do
        "${sides[$side]}" bench -q -n "$reps" --scenario null --compare flint,qboot -o "$dir/$side/$run" >/dev/null
    done
done
python3 - "$dir" "$runs" "${sides[@]}" <<'PY'
import json, random, statistics, sys
resample = random.Random(0)

def standard_error(flint, qboot, rounds=1000):
    """Of median(flint) - median(qboot), from resampling each row's own samples."""
    def median_of_resample(samples):
        return statistics.median(resample.choices(samples, k=len(samples)))
    return statistics.stdev(median_of_resample(flint) - median_of_resample(qboot) for _ in range(rounds))

base, runs, sides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for side, flint in enumerate(sides):
    if len(sides) > 1:
        print(f"{flint}:")
    diffs, errors = {}, {}
    for run in range(1, runs + 1):
        results = json.load(open(f"{base}/{side}/{run}/report.json"))["scenarios"][0]["results"]
        samples = {(r["firmware"], r["kernel"].split(" ")[0], r["machine"]): r["samples_ms"] for r in results if r["stats"]}
        median = {case: statistics.median(times) for case, times in samples.items()}
        line = []
        for machine in ("pc", "microvm"):
            for kernel in ("bzImage", "PVH"):
                d = median[("flint", kernel, machine)] - median[("qboot", kernel, machine)]
                diffs.setdefault((machine, kernel), []).append(d)
                errors.setdefault((machine, kernel), []).append(
                    standard_error(samples[("flint", kernel, machine)], samples[("qboot", kernel, machine)]))
                line.append(f"{machine} {kernel} {d:+5.1f}")
        print(f"run {run:2}: flint - qboot, ms: " + "   ".join(line))
    for (machine, kernel), d in diffs.items():
        # As printed above: level when the difference rounds to 0.0 ms.
        ahead, level = sum(x <= -0.05 for x in d), sum(abs(x) < 0.05 for x in d)
        print(f"{machine:8}{kernel:8} flint ahead in {ahead}/{len(d)} runs (level in {level}), median difference "
              f"{statistics.median(d):+.2f} ms, one run's standard error {statistics.median(errors[(machine, kernel)]):.2f} ms")
PY
