#!/usr/bin/env python3
"""Where a `flint run` boot spends its time inside the guest kernel: samples the vCPU's
instruction pointer through QEMU's monitor every few milliseconds while the VM runs, names
each sample's kernel function from the kernel's System.map, and prints the functions with
the most samples (each sample stands for the time since the one before) and the boot as a
sequence of runs of samples in one function.

  scripts/profile.py [-i MS] [--map SYSTEM_MAP] [--top N] "FLINT RUN OPTIONS" [-- CMD ARGS...]

  scripts/profile.py "--kernel minimal"
  scripts/profile.py -i 1 "--kernel minimal --machine pc" -- true

The kernel must not be relocated (flint's PVH boot, the default, never is; a bzImage boot is
unless the kernel lacks CONFIG_RANDOMIZE_BASE or gets `nokaslr`). The System.map is the
cached kernel's (`flint kernel minimal` keeps it; Debian's package has none) unless --map
names one. Sampling stops the vCPU
briefly each time, so the boot runs slower than without it: read shares, not durations.
"""
import argparse, bisect, collections, ctypes, os, re, shlex, socket, subprocess, sys, tempfile, time

# flint's firmware runs from its ROM's alias at the top of the address space (layout.ld);
# the kernel and its modules live above KERNEL_SPACE.
FIRMWARE_CODE = 0xFFFF_FFFF_FFFD_0000
KERNEL_SPACE = 0xFFFF_8000_0000_0000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLINT = os.path.join(ROOT, "target/release/flint")


def die(message):
    sys.exit(f"profile: {message}")


def qemu_command(options, command):
    run = [FLINT, "run", "--print-cmd", *shlex.split(options), "--", *command]
    done = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        die(f"flint run --print-cmd failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def option_value(options, name, default):
    """The value `options` (flint run's, as one string) gives `name` (`--name VALUE`)."""
    words = shlex.split(options)
    return words[words.index(name) + 1] if name in words[:-1] else default


def huge_pages(options, qemu_cmd):
    """What `flint run` would choose (--huge-pages, auto: on under KVM only); the printed
    command cannot say it, so the sampler applies it to QEMU's process itself."""
    choice = option_value(options, "--huge-pages", "auto")
    return choice == "on" or (choice == "auto" and "-accel kvm" in qemu_cmd)


def without_huge_pages():
    PR_SET_THP_DISABLE = 41
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


def kernel_map(options):
    kernel = option_value(options, "--kernel", "debian-cloud")
    if not os.path.isdir(kernel):
        # flint knows where its cache is ($FLINT_CACHE, $XDG_CACHE_HOME, ~/.cache).
        done = subprocess.run([FLINT, "kernel", kernel], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            die(f"flint kernel {kernel} failed: {done.stderr.strip()}")
        kernel = done.stdout.strip().splitlines()[-1]
    return os.path.join(kernel, "System.map")


def read_map(path):
    if not os.path.isfile(path):
        die(f"no {path}: pass --map SYSTEM_MAP (`flint kernel minimal --force` keeps the minimal kernel's)")
    symbols = []
    with open(path) as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 3 and fields[1] in "tTwW":
                symbols.append((int(fields[0], 16), fields[2]))
    if not symbols:
        die(f"{path} names no functions (Debian's packages carry a placeholder; the real map is in "
            "linux-image-VERSION-dbg): pass --map SYSTEM_MAP")
    symbols.sort()
    return [address for address, _ in symbols], [name for _, name in symbols]


class Monitor:
    """QEMU's human monitor on a Unix socket: one command, its whole answer."""

    def __init__(self, path, qemu):
        self.socket = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.socket.connect(path)
                break
            except OSError:
                if qemu.poll() is not None:
                    die("QEMU exited before its monitor answered")
                time.sleep(0.002)
        self.socket.settimeout(1.0)
        self.ask("")

    def ask(self, command):
        self.socket.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.rstrip().endswith(b"(qemu)"):
            chunk = self.socket.recv(65536)
            if not chunk:
                raise EOFError
            answer += chunk
        return answer.decode(errors="replace")


def sample(qemu_cmd, interval, thp):
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "monitor.sock")
        full = f"{qemu_cmd} -monitor unix:{path},server=on,wait=off"
        qemu = subprocess.Popen(full, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=None if thp else without_huge_pages)
        start = time.monotonic()
        while not os.path.exists(path):
            if qemu.poll() is not None:
                die("QEMU exited at once: run the same options with `flint run` to see why")
            time.sleep(0.001)
        monitor = Monitor(path, qemu)
        samples = []
        while qemu.poll() is None:
            try:
                registers = monitor.ask("info registers")
            except (OSError, EOFError):
                break
            found = re.search(r"RIP=([0-9a-f]{16})", registers)
            if found:
                samples.append((time.monotonic() - start, int(found.group(1), 16)))
            time.sleep(interval)
        qemu.wait()
        return samples, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--interval", type=float, default=2.0, help="milliseconds between samples (default 2)")
    parser.add_argument("--map", help="the kernel's System.map (default: the cached kernel's)")
    parser.add_argument("--top", type=int, default=30, help="functions to list (default 30)")
    parser.add_argument("options", help="flint run options, as one argument")
    parser.add_argument("command", nargs="*", default=["true"], help="the workload (default: true)")
    args = parser.parse_args()
    if not os.access(FLINT, os.X_OK):
        die(f"no {FLINT}: build it with `cargo build --release -p flint`")
    addresses, names = read_map(args.map or kernel_map(args.options))

    def name(address):
        at = bisect.bisect_right(addresses, address) - 1
        if at >= 0 and address - addresses[at] < 1 << 20:
            return names[at]
        if address >= FIRMWARE_CODE:
            return "(firmware)"
        return "(a module)" if address >= KERNEL_SPACE else "(user space, or the kernel before paging)"

    qemu_cmd = qemu_command(args.options, args.command)
    samples, total = sample(qemu_cmd, args.interval / 1000, huge_pages(args.options, qemu_cmd))
    if not samples:
        die("no samples: the VM ended before the first one")
    # Each sample stands for the time since the previous one; what came before the first
    # (QEMU's start, the monitor's connection) is reported apart.
    spent = collections.Counter()
    runs = []
    before = samples[0][0]
    for at, address in samples[1:]:
        function = name(address)
        spent[function] += at - before
        if runs and runs[-1][1] == function:
            runs[-1][2] += at - before
        else:
            runs.append([before, function, at - before])
        before = at
    print(f"{len(samples)} samples over {total * 1000:.0f} ms (QEMU's whole run, sampling included); "
          f"the first at {samples[0][0] * 1000:.0f} ms")
    print(f"\n{'ms':>8} {'share':>6}  function")
    for function, seconds in spent.most_common(args.top):
        print(f"{seconds * 1000:8.1f} {seconds / total:6.1%}  {function}")
    print(f"\nruns of 10 ms or more in one function, in order:\n{'at ms':>8} {'ms':>7}  function")
    for at, function, seconds in runs:
        if seconds >= 0.010:
            print(f"{at * 1000:8.0f} {seconds * 1000:7.1f}  {function}")


if __name__ == "__main__":
    main()
