#!/usr/bin/env python3
"""Soak test: many `flint run` jobs, several at once, with mixed endings, then a count of
what went wrong. Bounded in jobs and time; it stops by itself.

    scripts/soak.py [--jobs 200] [--parallel 4] [--kernel minimal] [--flint PATH]

Each job is one of: an exit status (0-255), stdin echoed back byte for byte, death by
SIGKILL (137), `--timeout 1` on a sleeper (124), and SIGINT sent to flint once the workload
runs (130). Afterwards it counts wrong statuses or outputs, QEMU processes left running,
flint temporary directories left behind, and cache files left half-written, in a cache of
its own (FLINT_CACHE, cold at the start: the first jobs fill it concurrently). Exits 1 if
any count is not zero.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def qemu_pids():
    """PIDs of running qemu-system processes (any user: QEMU runs as nobody under root)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().startswith("qemu-system"):
                    pids.add(int(entry))
        except OSError:
            pass
    return pids


def job_kinds(rng, count):
    kinds = ["status", "echo", "killed", "timeout", "sigint"]
    weights = [40, 25, 10, 10, 15]
    return [(kind, rng.randrange(256), rng.randbytes(rng.randrange(1, 4096)))
            for kind in rng.choices(kinds, weights, k=count)]


def run_job(flint, base, job, deadline):
    kind, number, payload = job
    args = [flint, "--quiet", "run", *base]
    stdin = b""
    expect_out = b""
    if kind == "status":
        args += ["--", "sh", "-c", f"exit {number}"]
        expect = number
    elif kind == "echo":
        args += ["--", "cat"]
        stdin, expect_out, expect = payload, payload, 0
    elif kind == "killed":
        args += ["--", "sh", "-c", "kill -9 $$"]
        expect = 137
    elif kind == "timeout":
        args[3:3] = ["--timeout", "1"]
        args += ["--", "sleep", "30"]
        expect = 124
    else:
        args += ["--", "sh", "-c", "echo ready; sleep 30"]
        expect_out, expect = b"ready\n", 130
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    if kind == "sigint":
        # Wait for the workload to run, then interrupt flint as Ctrl-C would.
        line = child.stdout.readline()
        if line == b"ready\n":
            child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=max(1, deadline - time.monotonic()))
        out = line + out
    else:
        out, err = child.communicate(stdin, timeout=max(1, deadline - time.monotonic()))
    ok = child.returncode == expect and out == expect_out
    return ok, f"{kind}: status {child.returncode} (want {expect}), stdout {len(out)} bytes " \
               f"(want {len(expect_out)}), stderr {err[-300:]!r}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--kernel", default="minimal")
    parser.add_argument("--flint", default=shutil.which("flint") or "target/release/flint")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=30)
    options = parser.parse_args()

    kernel = options.kernel
    if "/" not in kernel:
        # By path, so the soak's own cold cache does not need the kernel.
        user_cache = os.environ.get("FLINT_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "flint")
        kernel = os.path.join(user_cache, "kernels", kernel)
    if not os.path.exists(kernel):
        sys.exit(f"soak: no kernel at {kernel}: run `flint kernel {options.kernel}` first")

    work = tempfile.mkdtemp(prefix="flint-soak-")
    cache, tmp = os.path.join(work, "cache"), os.path.join(work, "tmp")
    os.makedirs(tmp)
    os.environ["FLINT_CACHE"] = cache
    os.environ["TMPDIR"] = tmp
    os.environ.pop("XDG_RUNTIME_DIR", None)
    qemu_before = qemu_pids()
    jobs = job_kinds(random.Random(options.seed), options.jobs)
    deadline = time.monotonic() + options.max_minutes * 60
    failures, lock, done = [], threading.Lock(), [0]
    started = time.monotonic()

    def one(job):
        try:
            ok, what = run_job(options.flint, ["--kernel", kernel], job, deadline)
        except subprocess.TimeoutExpired:
            ok, what = False, f"{job[0]}: flint did not finish before the soak's deadline"
        with lock:
            done[0] += 1
            if not ok:
                failures.append(what)
            if done[0] % 20 == 0:
                print(f"soak: {done[0]}/{len(jobs)} jobs, {len(failures)} wrong", file=sys.stderr)

    with ThreadPoolExecutor(options.parallel) as pool:
        list(pool.map(one, jobs))
    elapsed = time.monotonic() - started

    time.sleep(2)  # QEMU of the last jobs: its watchdog kills it as flint exits
    leftover_qemu = qemu_pids() - qemu_before
    leftover_tmp = os.listdir(tmp)
    half_written = [os.path.join(d, f) for d, _, files in os.walk(cache) for f in files if ".tmp" in f]
    counts = {
        "jobs": len(jobs),
        "wrong statuses or outputs": len(failures),
        "QEMU processes left": len(leftover_qemu),
        "temporary directories left": len(leftover_tmp),
        "half-written cache files": len(half_written),
    }
    for what in failures[:10]:
        print(f"soak: wrong: {what}", file=sys.stderr)
    for name, value in counts.items():
        print(f"{name:28} {value}")
    print(f"{'wall time':28} {elapsed:.1f} s ({len(jobs) / elapsed:.2f} jobs/s, {options.parallel} at once)")
    shutil.rmtree(work, ignore_errors=True)
    bad = sum(value for name, value in counts.items() if name != "jobs")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
