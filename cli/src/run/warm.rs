//! `flint run --warm`: a VM restored from a snapshot instead of booted.
//!
//! The first warm run of a configuration boots the VM with its RAM in a file
//! (`memory-backend-file`, `share=on`) until the init has its root mounted, has run the
//! root's shell once (`flint.warmup`: its files stay in the page cache), has forked the
//! workload's process, and waits for its job (`flint-awaiting-job` on the status port), then
//! saves it: the small device state goes
//! to a file through QMP's `migrate` with `x-ignore-shared` (RAM in a shared backend is not
//! copied), and the RAM file's written parts are copied beside it. The run then goes on (QMP
//! `cont`) and does its job as a cold run would. Every later warm run starts QEMU with the
//! same devices, the snapshot's RAM file mapped copy-on-write (`share=off`: nothing is read
//! ahead, nothing written back, each VM's writes its own) and `-incoming defer`, loads the
//! device state with `migrate-incoming` (the QMP commands sent in a row, then QEMU's
//! `RESUME` event awaited), and hands the job in over the status port as a cold
//! run does. The job carries fresh entropy and the host's clock (`flint_guest_init::fresh`).
//!
//! With `--warm=ready` the snapshot is taken later: the first run sends the job, whose
//! workload prepares itself (an interpreter's start, its imports) and then writes to the FIFO
//! `$FLINT_READY` names; the init says so (`flint-workload-ready`), and the VM is saved right
//! there, the workload about to read its stdin. A restore then only brings fresh entropy and
//! time (a control message, acknowledged with `flint-fresh`) before flint passes the run's
//! stdin. Such a snapshot is for that one job: its command, environment, working directory,
//! user and limits are in the key.
//!
//! Snapshots live in the cache's `warm/<host boot id>/<key>/`: the key covers QEMU's whole
//! command line (machine, memory, CPUs, accel, kernel command line, firmware, kernel, initrd
//! and root paths), the identity (device, inode, size, mtime) of every file it names and of
//! QEMU itself, and flint's version, so a snapshot is used only with what made it. Scoped to
//! the host's boot, a snapshot needs no sync to disk: a crash cannot leave a torn one in use,
//! since after the reboot it is another boot's. Earlier boots' snapshots are removed when a new
//! one is made.

use super::*;
use crate::env::{boot_id, file_identity};
use crate::qemu::RamFile;
use crate::qmp::Qmp;
use anyhow::anyhow;
use flint_guest_init::status;
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// The snapshot's files in its directory.
const RAM: &str = "ram";
const STATE: &str = "state";

/// The FIFO a `--warm=ready` workload writes to once ready; `$FLINT_READY` names it.
pub(super) const READY_FIFO: &str = "/dev/flint-ready";

/// Where a warm run keeps its files, and how long a boot may take.
pub(super) struct Site<'a> {
    pub run_dir: &'a Path,
    pub boot_timeout: Duration,
}

/// How a warm run starts: from its snapshot, or making it.
pub(super) enum Start {
    Restore(Incoming),
    Create(Creation),
}

/// What a restored VM still needs once QEMU runs: the device state, loaded over QMP, and for
/// a workload's own snapshot, fresh entropy and time.
pub(super) struct Incoming {
    qmp: UnixListener,
    state: File,
    point: WarmPoint,
}

/// A run that makes the snapshot on its way: where it goes, and the lock that keeps other
/// flints waiting for it.
pub(super) struct Creation {
    qmp: UnixListener,
    /// The snapshot's directory, and the temporary one it is made in.
    dir: PathBuf,
    tmp: PathBuf,
    /// The RAM file QEMU runs on (the run's own: the VM goes on writing it after the save).
    live_ram: File,
    point: WarmPoint,
    boot_timeout: Duration,
    _lock: Option<File>,
}

/// Why `--warm` cannot apply to `args`, if it cannot.
pub(super) fn refusal(args: &RunArgs) -> Option<&'static str> {
    if args.mode == RootMode::Rw {
        return Some(
            "--warm cannot write the root (--rw): every warm run restores the same disk state, so the writes of one would corrupt the next; use --overlay (the default) or --ro",
        );
    }
    if !args.volumes.is_empty() {
        return Some(
            "--warm cannot apply with --volume: a snapshot would hold the guest's view of the host directories as it was then (cached files and directory entries) while they change, and QEMU cannot save a virtiofs device; drop --warm, or --volume",
        );
    }
    if args.print_cmd {
        return Some("--warm has no QEMU command of its own to print: drop --print-cmd, or --warm to see a cold run's");
    }
    None
}

/// Makes `vm` (the run's VM, its ports wired to listeners in the site's directory) start
/// from its snapshot at `point`, or make it if there is none yet (the snapshot of a
/// workload's own start-up is `job`'s).
pub(super) fn start(vm: &mut Vm, site: &Site, point: WarmPoint, job: &JobText) -> Result<Start> {
    let key = key(vm, site.run_dir, (point == WarmPoint::Ready).then_some(job))?;
    let boots = env::cache_subdir("warm")?;
    let parent = boots.join(boot_id());
    let dir = parent.join(&key[..32]);
    let qmp_path = site.run_dir.join("qmp.sock");
    let qmp = UnixListener::bind(&qmp_path).with_context(|| format!("cannot listen on {}", qmp_path.display()))?;
    qmp.set_nonblocking(true)?;
    vm.qmp = Some(qmp_path);
    let mut lock = None;
    if !dir.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&parent)?;
        lock = env::lock_cache(&parent);
    }
    if !dir.is_dir() {
        remove_other_boots(&boots);
        if lock.is_some() {
            remove_unfinished(&parent);
        }
        env::progress(match point {
            WarmPoint::Boot => "making the warm snapshot (once for this configuration)",
            WarmPoint::Ready => "making the warm snapshot after the workload's start-up (once for this job)",
        });
        let tmp = env::temp_sibling(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let live_ram = live_ram(site.run_dir, &vm.memory)?;
        // QEMU opens it through this process's descriptor (it has no name).
        let path = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), live_ram.as_raw_fd()));
        vm.ram_file = Some(RamFile { path, shared: true });
        let boot_timeout = site.boot_timeout;
        return Ok(Start::Create(Creation { qmp, dir, tmp, live_ram, point, boot_timeout, _lock: lock }));
    }
    let state = File::open(dir.join(STATE)).with_context(|| format!("cannot open {}", dir.join(STATE).display()))?;
    vm.ram_file = Some(RamFile { path: dir.join(RAM), shared: false });
    vm.incoming = true;
    Ok(Start::Restore(Incoming { qmp, state, point }))
}

impl Start {
    /// The listener QEMU's monitor connects to, accepted with the ports.
    pub(super) fn listener(&self) -> &UnixListener {
        match self {
            Start::Restore(incoming) => &incoming.qmp,
            Start::Create(creation) => &creation.qmp,
        }
    }
}

impl Incoming {
    /// Loads the device state into the QEMU whose monitor is `monitor`; returns once the VM
    /// runs.
    pub(super) fn load(&self, monitor: UnixStream) -> Result<()> {
        // One round trip for the four commands, then QEMU's own word that the VM runs: each
        // reply waited for or status polled would cost a wake-up of both processes.
        let mut qmp = Qmp::greeted(monitor)?;
        qmp.send("qmp_capabilities", json!({}))?;
        qmp.send("migrate-set-capabilities", ignore_shared())?;
        qmp.send_fd("flint-state", self.state.as_fd())?;
        qmp.send("migrate-incoming", json!({ "uri": "fd:flint-state" }))?;
        qmp.replies(&["qmp_capabilities", "migrate-set-capabilities", "getfd", "migrate-incoming"])?;
        qmp.event("RESUME")
    }

    /// What the guest needs before the run's input: for a workload's own snapshot, fresh
    /// entropy and time, applied (the init acknowledges) before the workload can read stdin.
    /// Whether there was any.
    pub(super) fn hand_over(&self, status_port: &UnixStream, child: &mut Child) -> Result<bool> {
        if self.point == WarmPoint::Boot {
            return Ok(false);
        }
        (&*status_port).write_all(&fresh_message()?).context("cannot write to the status port")?;
        wait_for_line(status_port, status::FRESH_LINE, HAND_OVER_TIMEOUT, (child, &[]))
            .map_err(|why| anyhow!("{why}"))?;
        Ok(true)
    }
}

/// How long the init of a restored VM may take to apply fresh entropy and time.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// `migrate-set-capabilities`' arguments: guest RAM in a shared memory backend stays out of
/// the migration stream (it is the file).
fn ignore_shared() -> Value {
    json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })
}

/// The snapshot key of `vm`: its command line with the run's own directory left out, the
/// identity of every file it names and of QEMU, flint's version, and the job if the snapshot
/// holds its workload.
fn key(vm: &Vm, run_dir: &Path, job: Option<&JobText>) -> Result<String> {
    let run_dir = run_dir.display().to_string();
    let mut text = format!("flint {}\n", env!("CARGO_PKG_VERSION"));
    if let Some(job) = job {
        text.push_str(&format!("{job:?}\n"));
    }
    for arg in vm.args() {
        text.push_str(&arg.replace(&run_dir, "<run>"));
        text.push('\n');
    }
    let qemu = env::find_program(QEMU).with_context(|| format!("{QEMU} not found in PATH"))?;
    let files = [Some(&vm.firmware), vm.kernel.as_ref(), vm.initrd.as_ref(), Some(&qemu)];
    for path in files.into_iter().flatten().chain(vm.drives.iter().map(|drive| &drive.path)) {
        let identity = file_identity(path).with_context(|| format!("cannot read {}", path.display()))?;
        text.push_str(&identity);
        text.push('\n');
    }
    Ok(env::sha256_hex(text.as_bytes()))
}

/// Removes what flints killed while making a snapshot left in `parent` (their temporary
/// directories): only with `parent`'s lock held, when no other flint is making one there.
fn remove_unfinished(parent: &Path) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|name| name.starts_with('.') && name.contains(".tmp.")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes the snapshots of the host's earlier boots (best effort: one in use by a flint of
/// this boot cannot be among them).
fn remove_other_boots(boots: &Path) {
    let current = boot_id();
    for entry in std::fs::read_dir(boots).into_iter().flatten().flatten() {
        if entry.file_name().to_str() != Some(current.as_str()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Creation {
    /// Whether the snapshot holds the workload, its job sent while it is made.
    pub(super) fn holds_job(&self) -> bool {
        self.point == WarmPoint::Ready
    }

    /// Once the VM's init waits for its job (with a workload's own snapshot: once `job`, sent
    /// here, has its workload ready), saves the VM as the snapshot and lets it go on. `ports`
    /// are the VM's ports, the status port last.
    pub(super) fn save(
        self,
        monitor: UnixStream,
        ports: &[UnixStream],
        child: &mut Child,
        job: Option<JobText>,
    ) -> Result<()> {
        let made = self.save_into_tmp(monitor, ports, child, job).and_then(|mut qmp| {
            std::fs::rename(&self.tmp, &self.dir)
                .with_context(|| format!("cannot move {} to {}", self.tmp.display(), self.dir.display()))?;
            qmp.execute("cont", json!({})).map(drop)
        });
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
        made.map_err(|error| env::disk_full_or(error, &self.dir))
    }

    /// Saves the VM into the temporary directory; the monitor, for what follows.
    fn save_into_tmp(
        &self,
        monitor: UnixStream,
        ports: &[UnixStream],
        child: &mut Child,
        job: Option<JobText>,
    ) -> Result<Qmp> {
        let status_port = ports.last().expect("the status port");
        let failed = |why: String| anyhow!("the warm snapshot could not be made: {why}");
        if self.point == WarmPoint::Boot {
            // Taken before the snapshot (`flint.warmup`): the guest's CRNG is initialised in
            // it, and each restore only reseeds it with its job's own entropy.
            (&*status_port).write_all(&fresh_message()?).context("cannot write to the status port")?;
        }
        wait_for_line(status_port, status::AWAITING_JOB_LINE, self.boot_timeout, (child, &[])).map_err(failed)?;
        if let Some(job) = job {
            (&*status_port).write_all(&job.message()?).context("cannot send the job")?;
            // What the workload writes while it prepares belongs to no run: dropped.
            let outputs = &ports[1..ports.len() - 1];
            wait_for_line(status_port, status::WORKLOAD_READY_LINE, self.boot_timeout, (child, outputs)).map_err(|why| {
                failed(format!(
                    "{why} (the workload must write to the FIFO $FLINT_READY names once it is ready, before it reads stdin)"
                ))
            })?;
        }
        let state = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.tmp.join(STATE))
            .with_context(|| format!("cannot create {}", self.tmp.join(STATE).display()))?;
        let mut qmp = Qmp::start(monitor)?;
        qmp.execute("migrate-set-capabilities", ignore_shared())?;
        qmp.pass_fd("flint-state", state.as_fd())?;
        qmp.execute("migrate", json!({ "uri": "fd:flint-state" }))?;
        let start = Instant::now();
        loop {
            let migration = qmp.execute("query-migrate", json!({}))?;
            match migration["status"].as_str() {
                Some("completed") => break,
                Some("setup" | "active" | "device") if start.elapsed() < Duration::from_secs(60) => {}
                _ => {
                    bail!("QEMU could not save the VM: {}", migration.get("error-desc").unwrap_or(&migration["status"]))
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        // The VM is paused since the migration: its RAM is as the state has it.
        copy_written_parts(&self.live_ram, &self.tmp.join(RAM))?;
        Ok(qmp)
    }
}

/// A nameless file for the RAM of a VM that makes a snapshot (gone with its last descriptor,
/// however flint ends): in /dev/shm when that tmpfs has room for all of `memory` (the guest's
/// writes to a file on a disk cost its boot a third more, as the kernel writes them back),
/// else in `run_dir`.
fn live_ram(run_dir: &Path, memory: &str) -> Result<File> {
    let shm = Path::new("/dev/shm");
    let fits = qemu_size(memory).is_some_and(|size| free_bytes(shm).is_some_and(|free| free >= size));
    let dir = if fits { shm } else { run_dir };
    File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
        .or_else(|_| File::options().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(run_dir))
        .with_context(|| format!("cannot make a file for the guest's RAM in {}", run_dir.display()))
}

/// The bytes a QEMU size means (`-m 512`, `512M`, `2G`: mebibytes without a suffix).
fn qemu_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        b'T' | b't' => (&text[..text.len() - 1], 40),
        _ => (text, 20),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// What an ordinary user may still write on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    env::statvfs(dir).ok().map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Copies `source` into a new private file `to`, its holes left holes: of a guest's RAM only
/// what it touched (tens of MB of hundreds) is read and written.
fn copy_written_parts(source: &File, to: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let context = || format!("cannot copy the guest's RAM to {}", to.display());
    let target = File::options().write(true).create_new(true).mode(0o600).open(to).with_context(context)?;
    let len = source.metadata().with_context(context)?.len();
    target.set_len(len).with_context(context)?;
    let seek = |offset: u64, whence: libc::c_int| {
        // SAFETY: lseek(2) on a descriptor `source` owns.
        let at = unsafe { libc::lseek(source.as_raw_fd(), offset as libc::off_t, whence) };
        u64::try_from(at).ok()
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    // SEEK_DATA fails (ENXIO) past the last data.
    while let Some(data) = seek(at, libc::SEEK_DATA) {
        let end = seek(data, libc::SEEK_HOLE).unwrap_or(len);
        let mut offset = data;
        while offset < end {
            let n = buf.len().min((end - offset) as usize);
            source.read_exact_at(&mut buf[..n], offset).with_context(context)?;
            target.write_all_at(&buf[..n], offset).with_context(context)?;
            offset += n as u64;
        }
        at = end;
    }
    Ok(())
}

/// Reads `port` until `line` has come, for at most `limit`; why not, if it has not. What
/// arrives on `drained` meanwhile is read and dropped.
fn wait_for_line(
    mut port: &UnixStream,
    line: &str,
    limit: Duration,
    (child, drained): (&mut Child, &[UnixStream]),
) -> Result<(), String> {
    let start = Instant::now();
    let poll = if drained.is_empty() { Duration::from_millis(50) } else { Duration::from_millis(5) };
    port.set_read_timeout(Some(poll)).map_err(|e| e.to_string())?;
    for stream in drained {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let mut seen = Tail::default();
    let mut buf = [0u8; 4096];
    let drain = |buf: &mut [u8]| {
        for mut stream in drained {
            while let Ok(1..) = stream.read(buf) {}
        }
    };
    let found = loop {
        drain(&mut buf);
        match port.read(&mut buf) {
            Ok(0) => break Err(format!("the VM ended before the guest said {:?}", line.trim_end())),
            Ok(n) => {
                seen.push(&buf[..n]);
                if seen.windows(line.len()).any(|window| window == line.as_bytes()) {
                    // What the guest wrote before the line is in its sockets by now: QEMU
                    // passes a port's bytes on as the guest writes them, in order.
                    drain(&mut buf);
                    break Ok(());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(format!("cannot read the status port: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("QEMU exited ({status}) before the guest said {:?}", line.trim_end()));
        }
        if start.elapsed() > limit {
            break Err(format!("the guest did not say {:?} within {}s", line.trim_end(), limit.as_secs_f64()));
        }
    };
    for stream in drained {
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    }
    port.set_read_timeout(None).map_err(|e| e.to_string())?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_sizes_are_mebibytes_without_a_suffix() {
        assert_eq!(qemu_size("512"), Some(512 << 20));
        assert_eq!(qemu_size("512M"), Some(512 << 20));
        assert_eq!(qemu_size("2G"), Some(2 << 30));
        assert_eq!(qemu_size("64k"), Some(64 << 10));
        assert_eq!(qemu_size("lots"), None);
        assert_eq!(qemu_size("99999999999T"), None);
    }

    #[test]
    fn unfinished_snapshots_are_removed_and_finished_ones_kept() {
        let dir = env::TempDir::new("flint-warm-unfinished").unwrap();
        let done = dir.path().join("0123abcd");
        let unfinished = env::temp_sibling(&done);
        for path in [&done, &unfinished] {
            std::fs::create_dir(path).unwrap();
            std::fs::write(path.join(STATE), b"state").unwrap();
        }
        remove_unfinished(dir.path());
        assert!(done.join(STATE).exists());
        assert!(!unfinished.exists());
    }

    #[test]
    fn only_the_written_parts_of_a_sparse_file_are_copied() {
        use std::os::unix::fs::FileExt;
        let dir = env::TempDir::new("flint-warm-test").unwrap();
        let source = File::options().read(true).write(true).create_new(true).open(dir.path().join("a")).unwrap();
        source.set_len(64 << 20).unwrap();
        source.write_all_at(b"start", 0).unwrap();
        source.write_all_at(b"middle", 32 << 20).unwrap();
        let copy = dir.path().join("b");
        copy_written_parts(&source, &copy).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(bytes.len(), 64 << 20);
        assert_eq!((&bytes[..5], &bytes[32 << 20..(32 << 20) + 6]), (&b"start"[..], &b"middle"[..]));
        assert!(bytes[5..32 << 20].iter().all(|&byte| byte == 0));
        // Allocated: the written blocks, not 64 MiB.
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&copy).unwrap().blocks() * 512 < 1 << 20);
    }
}
