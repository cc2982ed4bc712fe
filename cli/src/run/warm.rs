//! `flint run --warm`: a VM restored from a snapshot instead of booted.
//!
//! The first warm run of a configuration boots the VM until the init has its root mounted
//! and waits for its job (`flint-awaiting-job` on the status port), then saves it: the guest's
//! RAM is a file (`memory-backend-file`, `share=on`) that QEMU leaves in place, and the small
//! device state goes to a second file through QMP's `migrate` with `x-ignore-shared` (RAM in a
//! shared backend is not copied). Every warm run, that first one included, then starts QEMU
//! with the same devices, the RAM file mapped copy-on-write (`share=off`: nothing is read
//! ahead, nothing written back, each VM's writes its own) and `-incoming defer`, loads the
//! device state with `migrate-incoming`, and hands the job in over the status port as a cold
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
use serde_json::json;
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
    pub console_log: &'a Path,
    pub boot_timeout: Duration,
}

/// What a restored VM still needs once QEMU runs: the device state, loaded over QMP, and for
/// a workload's own snapshot, fresh entropy and time.
pub(super) struct Incoming {
    qmp: UnixListener,
    state: File,
    point: WarmPoint,
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

/// Makes `vm` (the run's VM, its ports wired to `listeners` in the site's directory) start
/// from its snapshot at `point`, which is made first if there is none yet (sending `job`
/// along for a workload's own snapshot).
pub(super) fn restore(
    vm: &mut Vm,
    listeners: &[UnixListener],
    site: &Site,
    point: WarmPoint,
    job: &JobText,
) -> Result<Incoming> {
    let key = key(vm, site.run_dir, (point == WarmPoint::Ready).then_some(job))?;
    let boots = env::cache_subdir("warm")?;
    let dir = boots.join(boot_id()).join(&key[..32]);
    if !dir.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.parent().expect("a parent"))?;
        let _lock = env::lock_cache(dir.parent().expect("a parent"));
        if !dir.is_dir() {
            remove_other_boots(&boots);
            env::progress(match point {
                WarmPoint::Boot => "making the warm snapshot (a cold boot, once for this configuration)",
                WarmPoint::Ready => {
                    "making the warm snapshot (a cold boot and the workload's start-up, once for this job)"
                }
            });
            let job = (point == WarmPoint::Ready).then_some(job);
            create(vm, listeners, &dir, site, job)?;
        }
    }
    let state = File::open(dir.join(STATE)).with_context(|| format!("cannot open {}", dir.join(STATE).display()))?;
    let qmp_path = site.run_dir.join("qmp.sock");
    let qmp = UnixListener::bind(&qmp_path).with_context(|| format!("cannot listen on {}", qmp_path.display()))?;
    qmp.set_nonblocking(true)?;
    vm.ram_file = Some(RamFile { path: dir.join(RAM), shared: false });
    vm.qmp = Some(qmp_path);
    vm.incoming = true;
    Ok(Incoming { qmp, state, point })
}

impl Incoming {
    /// The listener QEMU's monitor connects to, accepted with the ports.
    pub(super) fn listener(&self) -> &UnixListener {
        &self.qmp
    }

    /// Loads the device state into the QEMU whose monitor is `monitor`; returns once the VM
    /// runs.
    pub(super) fn load(&self, monitor: UnixStream) -> Result<()> {
        let mut qmp = Qmp::start(monitor)?;
        ignore_shared(&mut qmp)?;
        qmp.pass_fd("flint-state", self.state.as_fd())?;
        qmp.execute("migrate-incoming", json!({ "uri": "fd:flint-state" }))?;
        let start = Instant::now();
        loop {
            let status = qmp.execute("query-status", json!({}))?;
            match status["status"].as_str() {
                Some("running") => return Ok(()),
                Some("inmigrate") | Some("prelaunch") if start.elapsed() < Duration::from_secs(30) => {}
                other => bail!("the VM did not resume (QEMU says {})", other.unwrap_or("nothing")),
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// What the guest needs before the run's input: for a workload's own snapshot, fresh
    /// entropy and time, applied (the init acknowledges) before the workload can read stdin.
    /// Whether there was any.
    pub(super) fn hand_over(&self, status_port: &UnixStream, child: &mut Child) -> Result<bool> {
        if self.point == WarmPoint::Boot {
            return Ok(false);
        }
        (&*status_port).write_all(&fresh_message()?).context("cannot write to the status port")?;
        wait_for_line(status_port, status::FRESH_LINE, HAND_OVER_TIMEOUT, child).map_err(|why| anyhow!("{why}"))?;
        status_port.set_read_timeout(None)?;
        Ok(true)
    }
}

/// How long the init of a restored VM may take to apply fresh entropy and time.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Guest RAM in a shared memory backend stays out of the migration stream: it is the file.
fn ignore_shared(qmp: &mut Qmp) -> Result<()> {
    let capabilities = json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] });
    qmp.execute("migrate-set-capabilities", capabilities).map(drop)
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

/// Boots `vm` until its init waits for the job (or with `job`, until the job's workload is
/// ready), and saves it into `dest`.
fn create(vm: &Vm, listeners: &[UnixListener], dest: &Path, site: &Site, job: Option<&JobText>) -> Result<()> {
    let tmp = env::temp_sibling(dest);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let made = save(vm, listeners, &tmp, site, job).and_then(|()| {
        std::fs::rename(&tmp, dest).with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    made.map_err(|error| env::disk_full_or(error, dest))
}

fn save(vm: &Vm, listeners: &[UnixListener], into: &Path, site: &Site, job: Option<&JobText>) -> Result<()> {
    let private =
        |name: &str| File::options().read(true).write(true).create_new(true).mode(0o600).open(into.join(name));
    // Made here, private; QEMU sizes the RAM file itself.
    private(RAM).with_context(|| format!("cannot create {}", into.join(RAM).display()))?;
    let state = private(STATE).with_context(|| format!("cannot create {}", into.join(STATE).display()))?;
    let qmp_path = site.run_dir.join("qmp-save.sock");
    let qmp_listener =
        UnixListener::bind(&qmp_path).with_context(|| format!("cannot listen on {}", qmp_path.display()))?;
    qmp_listener.set_nonblocking(true)?;
    let mut saving = vm.clone();
    saving.ram_file = Some(RamFile { path: into.join(RAM), shared: true });
    saving.qmp = Some(qmp_path.clone());
    let failed = |why: String| {
        show_console(&Tail::of_file(site.console_log));
        anyhow!("the warm snapshot could not be made: {why}; the console is above (a cold run, without --warm, shows the same boot)")
    };

    let mut child = saving.spawn(Stdio::null(), Stdio::null(), Stdio::null())?;
    let every: Vec<&UnixListener> = listeners.iter().chain([&qmp_listener]).collect();
    let mut streams = accept_all(&every, &mut child).map_err(|error| failed(error.to_string()))?;
    let _ = std::fs::remove_file(&qmp_path);
    let monitor = streams.pop().expect("the monitor");
    // Every port stays connected until QEMU has quit: a port the host closes is closed in
    // the guest, snapshot included.
    let status_port = streams.last().expect("the status port");
    wait_for_line(status_port, status::AWAITING_JOB_LINE, site.boot_timeout, &mut child).map_err(failed)?;
    if let Some(job) = job {
        // What the workload writes while it prepares belongs to no run: read and dropped, so
        // that it never waits for a reader.
        for port in &streams[1..3] {
            let mut port = port.try_clone()?;
            thread::spawn(move || std::io::copy(&mut port, &mut std::io::sink()));
        }
        (&*status_port).write_all(&job.message()?).context("cannot send the job")?;
        wait_for_line(status_port, status::WORKLOAD_READY_LINE, site.boot_timeout, &mut child).map_err(|why| {
            failed(format!("{why} (the workload must write to the FIFO $FLINT_READY names once it is ready, before it reads stdin)"))
        })?;
    }
    let mut qmp = Qmp::start(monitor)?;
    ignore_shared(&mut qmp)?;
    qmp.pass_fd("flint-state", state.as_fd())?;
    qmp.execute("migrate", json!({ "uri": "fd:flint-state" }))?;
    let start = Instant::now();
    loop {
        let migration = qmp.execute("query-migrate", json!({}))?;
        match migration["status"].as_str() {
            Some("completed") => break,
            Some("setup" | "active" | "device") if start.elapsed() < Duration::from_secs(60) => {}
            _ => bail!("QEMU could not save the VM: {}", migration.get("error-desc").unwrap_or(&migration["status"])),
        }
        thread::sleep(Duration::from_millis(1));
    }
    // The RAM file is complete once QEMU has stopped (the VM is paused since the migration).
    let _ = qmp.execute("quit", json!({}));
    child.wait()?;
    drop(streams);
    Ok(())
}

/// Reads `port` until `line` has come, for at most `limit`; why not, if it has not.
fn wait_for_line(mut port: &UnixStream, line: &str, limit: Duration, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    port.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
    let mut seen = Tail::default();
    let mut buf = [0u8; 4096];
    loop {
        match port.read(&mut buf) {
            Ok(0) => return Err(format!("the VM ended before the guest said {:?}", line.trim_end())),
            Ok(n) => {
                seen.push(&buf[..n]);
                if seen.windows(line.len()).any(|window| window == line.as_bytes()) {
                    return Ok(());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the status port: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("QEMU exited ({status}) before the guest said {:?}", line.trim_end()));
        }
        if start.elapsed() > limit {
            return Err(format!("the guest did not say {:?} within {}s", line.trim_end(), limit.as_secs_f64()));
        }
    }
}
