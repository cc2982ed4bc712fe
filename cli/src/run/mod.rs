//! `flint run`: one workload in a fresh VM, with its stdin, stdout, stderr and exit status
//! carried between the host and the guest over virtio-serial ports.
//!
//! The VM gets a `virtio-serial-pci` controller with four `virtserialport`s, in this order
//! (so the guest sees them as `/dev/vport0p1` to `/dev/vport0p4`):
//! stdin, stdout, stderr, status. On the host each is a Unix socket in a private temporary
//! directory that flint listens on and QEMU connects to. flint copies its stdin into the
//! first and then shuts down its sending side, which QEMU turns into the port closing, which
//! the guest reads as EOF; it copies the next two to its stdout and stderr byte for byte;
//! the last carries the init's `flint-status <n>` line. COM1 (the kernel console, `quiet`)
//! goes to a log file shown only when something failed (or with `--verbose`).

use crate::env::{self, Exit, Fix, EXIT_FAILURE, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TIMEOUT};
use crate::initramfs::Initramfs;
use crate::kernel::{Kernel, KernelChoice};
use crate::modules::{Need, Signatures};
use crate::qemu::{Drive, Forward, Machine, PortBackend, Running, Serial, VirtioPort, Vm, QEMU};
use crate::rootfs::{self, FsType, Lookup};
use crate::timeline::{HostTimes, Restored, Timeline};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

mod accel;
pub(crate) mod guest;
mod session;
mod verdict;
mod volumes;
mod warm;

use accel::*;
pub use guest::config_fragment;
use guest::*;
use session::*;
pub use session::{Ending, QemuEnd};
use verdict::*;
pub use verdict::{decide, Verdict};
pub use volumes::{parse_volume, Volume, VolumeFs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RootMode {
    /// Read-only root.
    Ro,
    /// A writable tmpfs layer over the read-only root: writes work and are thrown away.
    Overlay,
    /// The image itself is written (a private copy when the image is flint's cached one).
    Rw,
}

/// The root filesystem options `flint run` and `flint image` share.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// Root filesystem from a directory (turned into an ext4 image, cached by content).
    #[arg(long, value_name = "DIR", conflicts_with = "root_image")]
    pub root: Option<PathBuf>,
    /// Root filesystem image (ext4 or erofs).
    #[arg(long, value_name = "IMAGE")]
    pub root_image: Option<PathBuf>,
    /// Root filesystem from an OCI image: an image layout (DIR or DIR:TAG) or a `docker save`
    /// tarball (FILE or FILE:REPO:TAG), unpacked once into an ext4 image cached by digest. Its
    /// Env, WorkingDir, User, Entrypoint and Cmd apply unless overridden.
    #[arg(long, value_name = "REF", conflicts_with_all = ["root", "root_image"])]
    pub root_oci: Option<String>,
    /// Read-only root.
    #[arg(long, conflicts_with_all = ["overlay", "rw"])]
    pub ro: bool,
    /// Writable root whose writes are thrown away (a tmpfs over the root) [default].
    #[arg(long, conflicts_with = "rw")]
    pub overlay: bool,
    /// Writable root: writes go to the root filesystem (for `flint run`, a private copy of
    /// flint's cached images).
    #[arg(long)]
    pub rw: bool,
}

impl RootArgs {
    pub fn mode(&self) -> RootMode {
        match (self.ro, self.rw) {
            (true, _) => RootMode::Ro,
            (_, true) => RootMode::Rw,
            _ => RootMode::Overlay,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Tcg,
    Kvm,
    /// KVM if a probe VM really runs under it, else TCG.
    Auto,
}

/// ACPI for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Acpi {
    On,
    /// microvm with one CPU, and a kernel that takes virtio-mmio devices from its command
    /// line: Linux then skips ACPI's setup and the local APIC timer's calibration.
    Off,
    /// Off where it can be, else on.
    Auto,
}

/// Without ACPI, QEMU names microvm's devices on the kernel command line, which only a kernel
/// with this option reads (Debian's cloud kernel lacks it).
const MMIO_CMDLINE_DEVICES: &str = "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES";

/// Whether the guest gets ACPI, or why `--acpi off` cannot be had.
fn acpi_on(args: &RunArgs, kernel: &Kernel) -> Result<bool> {
    let machine_can = args.machine == Machine::Microvm && args.cpus == 1;
    let kernel_can = kernel.has_builtin(MMIO_CMDLINE_DEVICES);
    match args.acpi {
        Acpi::On => Ok(true),
        Acpi::Auto => Ok(!(machine_can && kernel_can)),
        Acpi::Off if machine_can && kernel_can => Ok(false),
        Acpi::Off if machine_can => bail!(
            "--acpi off needs a kernel configured with {MMIO_CMDLINE_DEVICES}=y: without ACPI, QEMU names microvm's devices on the kernel command line, and kernel {} does not read them there (or its configuration is unknown); drop --acpi off",
            kernel.label
        ),
        Acpi::Off if args.machine != Machine::Microvm => bail!(
            "--acpi off works on microvm only: on {} Linux finds PCI interrupt routing through ACPI (flint's firmware writes no MP or PIR table); drop --acpi off or use --machine microvm",
            args.machine.name()
        ),
        Acpi::Off => bail!(
            "--acpi off boots one CPU only (flint's firmware writes no MP table, so Linux would see one of the {}): drop --acpi off or use --cpus 1",
            args.cpus
        ),
    }
}

/// Transparent huge pages for the guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HugePages {
    On,
    Off,
    /// Off under TCG, where first touching each 2 MiB page costs more boot time than it
    /// saves; on under KVM (unmeasured there, and the usual choice for guest memory).
    Auto,
}

/// How the firmware enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Boot {
    /// The bzImage's 64-bit entry; the kernel decompresses itself.
    Bzimage,
    /// The uncompressed vmlinux's PVH entry (extracted from the bzImage once, cached): no
    /// decompression, no relocation.
    Pvh,
    /// PVH when the kernel has a PVH entry (CONFIG_PVH), else the bzImage.
    Auto,
}

/// Where a warm start's snapshot is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmPoint {
    /// Where the init waits for the job, with the root mounted: for any job.
    Boot,
    /// Where the workload says it is ready (it writes to the FIFO $FLINT_READY names), after
    /// its own start-up: for this job, each run giving it its own stdin.
    Ready,
}

/// The guest's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Net {
    /// QEMU's user network: no root, no set-up on the host.
    User,
}

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub firmware: Option<PathBuf>,
    pub kernel: KernelChoice,
    pub root: Option<PathBuf>,
    pub root_image: Option<PathBuf>,
    pub root_oci: Option<String>,
    pub machine: Machine,
    pub memory: String,
    pub cpus: u32,
    pub env: Vec<OsString>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32)>,
    /// Host directories for the guest (`--volume`), and how they get there.
    pub volumes: Vec<Volume>,
    pub volume_fs: VolumeFs,
    pub timeout: Option<Duration>,
    /// How long the workload gets after a forwarded signal or --timeout's SIGTERM.
    pub grace: Duration,
    /// How long the kernel may take to start the init (its ready line) before flint stops it.
    pub boot_timeout: Duration,
    /// The most bytes of stdout, and of stderr, passed on before the workload is stopped.
    pub max_output: Option<u64>,
    /// Restore the VM from a snapshot (made first if there is none): see `warm`.
    pub warm: Option<WarmPoint>,
    pub mode: RootMode,
    pub accel: Accel,
    pub boot: Boot,
    pub huge_pages: HugePages,
    pub acpi: Acpi,
    /// A network card (`None`: the guest has `lo` only).
    pub net: Option<Net>,
    /// TCP ports of the host's loopback forwarded to the guest (`-p`), with `net`.
    pub publish: Vec<Forward>,
    /// More kernel parameters, after flint's own.
    pub append: Option<String>,
    /// Without flint's boot-time tuning of the kernel command line.
    pub untuned: bool,
    pub print_cmd: bool,
    pub verbose: bool,
    /// Print the per-phase timeline on stderr.
    pub timeline: bool,
    /// Write the timeline as JSON here.
    pub timeline_json: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// The search path when `--env` gives none, as the guest init uses.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The guest device names of the ports, in the order of the `virtserialport`s.
const PORTS: [(&str, &str); 4] =
    [("stdin", "/dev/vport0p1"), ("stdout", "/dev/vport0p2"), ("stderr", "/dev/vport0p3"), ("status", "/dev/vport0p4")];
/// How long the guest waits for the root disk and the ports to appear (`flint.rootwait`).
const ROOT_WAIT_SECS: u32 = 10;

/// The root filesystem of one run, or of one disk image's root partition.
pub(crate) struct Root {
    pub image: PathBuf,
    pub fs: FsType,
    /// The directory the image was made from, for checking the program on the host.
    pub tree: Option<PathBuf>,
    /// The image is flint's cached copy, which must never be written.
    pub cached: bool,
    /// An OCI image's run defaults (`--root-oci`).
    pub oci: Option<crate::oci::OciRoot>,
}

/// The VM as `flint run` boots it, before its disk, console and ports are attached.
struct Prepared {
    vm: Vm,
    /// The job for the status port, when the job goes there.
    job: Option<JobText>,
    root: Root,
    accel: &'static str,
}

/// `job_on_port`: the job goes over the status port (flint writes it there) rather than on
/// the kernel command line, where `ps` on the host and /proc/cmdline in the guest show it.
fn prepare(args: &RunArgs, job_on_port: bool) -> Result<Prepared> {
    if env::find_program(QEMU).is_none() {
        bail!("{QEMU} not found in PATH: install QEMU (apt-get install qemu-system-x86, or run scripts/setup.sh)");
    }
    check_publish(args)?;
    let firmware = env::firmware(args.firmware.as_deref())?;
    let kernel = args.kernel.resolve()?;
    let acpi = acpi_on(args, &kernel)?;
    let root = prepare_root(args)?;
    let mut workload = workload(&root, &args.command, &args.env, args.cwd.as_deref(), args.user)?;
    if args.warm == Some(WarmPoint::Ready) {
        workload.environment.push(format!("FLINT_READY={}", warm::READY_FIFO).into_bytes());
    }
    if let Some(tree) = &root.tree {
        workload.program = check_in_root(tree, &workload)?;
    }
    volumes::check(&args.volumes)?;
    let modules = modules_for(&kernel, args, &root)?;
    let accel = choose_accel(args.accel, &firmware, args.verbose)?;
    let (cmdline, job) = kernel_cmdline(args, accel, &root, &modules, &workload, job_on_port)?;
    if cmdline.len() > kernel.cmdline_max() {
        let shorten = if job_on_port { "--append" } else { "the command, --env values and --append" };
        bail!(
            "the kernel command line is {} bytes, more than the {} this kernel takes: shorten {shorten} (pass data through stdin or the root instead)",
            cmdline.len(),
            kernel.cmdline_max()
        );
    }
    if let Some(job) = &job {
        let body = job.body_len();
        if body > flint_guest_init::job::JOB_MAX {
            bail!(
                "the command, environment and working directory take {body} bytes encoded, more than the {} the guest takes: shorten them (pass data through stdin or the root instead)",
                flint_guest_init::job::JOB_MAX
            );
        }
    }
    let initrd = if modules.is_empty() {
        None
    } else {
        Some(module_initrd(&modules, Signatures::for_flint_init(&kernel, cmdline.split_whitespace()))?)
    };

    let mut vm = Vm::new(&firmware);
    vm.machine = args.machine;
    vm.accel = accel.into();
    vm.cpu = (accel == "kvm").then(|| "host".to_string());
    vm.acpi = acpi;
    vm.huge_pages = match args.huge_pages {
        HugePages::On => true,
        HugePages::Off => false,
        HugePages::Auto => accel == "kvm",
    };
    vm.memory = args.memory.clone();
    vm.cpus = args.cpus;
    vm.user_net = args.net.map(|Net::User| args.publish.clone());
    if volume_fs(args) == Some(VolumeFs::NineP) {
        vm.shares = volumes::nine_p_shares(&args.volumes);
        vm.runas = volumes::nine_p_runas(&args.volumes)?;
    }
    vm.kernel = Some(boot_image(&kernel, args.boot)?);
    vm.append = Some(cmdline);
    if let Some(initrd) = initrd {
        vm.initrd = Some(initrd);
        vm.fw_cfg_strings.push(("opt/flint/add-init".into(), "1".into()));
    }
    if args.verbose {
        vm.fw_cfg_strings.push(("opt/flint/log".into(), "1".into()));
    }
    // The firmware's stamps, the first three of the timeline the init reports.
    vm.fw_cfg_strings.push(("opt/flint/timeline".into(), "1".into()));
    Ok(Prepared { vm, job, root, accel })
}

/// The VM `flint run` would boot for `args`, with no input, its output discarded, the console
/// on QEMU's stdout and the status port written to `status` (timeline and status lines): for
/// timing it.
pub fn unattended_vm(args: &RunArgs, status: &Path) -> Result<Vm> {
    if !args.volumes.is_empty() && args.volume_fs == VolumeFs::Virtiofs {
        bail!("--volume over virtiofs needs flint to start virtiofsd: time it with flint run, or use --volume-fs 9p");
    }
    // Its status port is a file: the job stays on the command line.
    let Prepared { mut vm, root, .. } = prepare(args, false)?;
    if args.mode == RootMode::Rw && root.cached {
        bail!("--rw on flint's cached root cannot be timed: it needs a private copy");
    }
    vm.drives.push(root_drive(root.image, root.fs, args.mode));
    vm.serial = Serial::Stdio;
    vm.virtio_ports = ["stdin", "stdout", "stderr"]
        .into_iter()
        .map(|name| VirtioPort { name: format!("flint.{name}"), backend: PortBackend::Null })
        .chain([VirtioPort { name: "flint.status".into(), backend: PortBackend::File(status.to_path_buf()) }])
        .collect();
    Ok(vm)
}

pub fn run(args: &RunArgs) -> Result<u8> {
    // A printed command has no flint to write the job to the status port: it goes on the
    // command line there.
    if let Some(refusal) = args.warm.and_then(|_| warm::refusal(args)) {
        bail!("{refusal}");
    }
    if args.print_cmd && !args.volumes.is_empty() && args.volume_fs == VolumeFs::Virtiofs {
        bail!("--print-cmd cannot show --volume over virtiofs, which needs a virtiofsd that flint starts for the run: drop --print-cmd, or use --volume-fs 9p");
    }
    let Prepared { mut vm, job, root, accel } = prepare(args, !args.print_cmd)?;
    if args.print_cmd {
        if args.mode == RootMode::Rw && root.cached {
            bail!("--print-cmd with --rw needs an image of your own: make one with `flint rootfs DIR -o IMAGE` and pass --root-image IMAGE");
        }
        vm.drives.push(root_drive(root.image.clone(), root.fs, args.mode));
        vm.serial = Serial::File("/dev/stderr".into());
        vm.virtio_ports = vec![
            VirtioPort { name: "flint.stdin".into(), backend: PortBackend::Stdio },
            VirtioPort { name: "flint.stdout".into(), backend: PortBackend::File("/dev/stdout".into()) },
            VirtioPort { name: "flint.stderr".into(), backend: PortBackend::File("/dev/stderr".into()) },
            VirtioPort { name: "flint.status".into(), backend: PortBackend::File("/dev/stderr".into()) },
        ];
        println!("{}", vm.shell_command());
        return Ok(0);
    }

    let temp = env::TempDir::new("flint")?;
    let _claim = claim(temp.path())?;
    sweep_stale(temp.path());
    vm.private_dir = Some(temp.path().to_path_buf());
    let image = if args.mode == RootMode::Rw && root.cached {
        let copy = temp.path().join(format!("root.{}", root.fs.name()));
        rootfs::private_copy(&root.image, &copy).context("cannot make a private copy of the root image for --rw")?;
        copy
    } else {
        root.image.clone()
    };
    vm.drives.push(root_drive(image, root.fs, args.mode));
    let console_log = temp.path().join("console.log");
    vm.serial = Serial::File(console_log.clone());
    // Killed (and reaped) with the run, however it ends; each also ends once QEMU has gone.
    let mut daemons = if !args.volumes.is_empty() && args.volume_fs == VolumeFs::Virtiofs {
        let (daemons, shares) = volumes::start_virtiofsd(&args.volumes, temp.path(), &console_log)?;
        vm.shares = shares;
        daemons
    } else {
        Vec::new()
    };
    let mut listeners = Vec::new();
    for (name, _) in PORTS {
        let path = temp.path().join(format!("{name}.sock"));
        let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
        listener.set_nonblocking(true)?;
        listeners.push(listener);
        vm.virtio_ports.push(VirtioPort { name: format!("flint.{name}"), backend: PortBackend::Socket(path) });
    }
    if args.verbose {
        eprintln!("flint: {}", vm.shell_command());
    }
    // The guest stops the workload at --timeout plus --grace; the host's deadline is a backstop.
    let deadline = args
        .timeout
        .map(|t| t + args.grace + if accel == "kvm" { Duration::from_secs(30) } else { Duration::from_secs(120) });
    // The deadline in CPU time: each vCPU and QEMU's main loop can keep a host CPU busy, and
    // one more for QEMU's other threads.
    vm.cpu_time = deadline.map(|deadline| deadline.saturating_mul(args.cpus.saturating_add(2)));
    let policy = Policy {
        deadline,
        boot_timeout: args.boot_timeout,
        grace: args.grace,
        max_output: args.max_output,
        verbose: args.verbose,
    };
    let (warm, job) = match (args.warm, job) {
        (None, job) => (None, job),
        (Some(point), job) => {
            let job = job.expect("warm runs send the job over the status port");
            let site = warm::Site { run_dir: temp.path(), boot_timeout: args.boot_timeout };
            let start = warm::start(&mut vm, &site, point, &job)?;
            // From a workload's own snapshot, the job is under way already.
            let job = match &start {
                warm::Start::Restore(_) if point == WarmPoint::Ready => None,
                _ => Some(job),
            };
            (Some(start), job)
        }
    };
    let end = boot(&vm, (listeners, job, warm), &console_log, (&policy, &mut daemons))?;
    let verdict = decide(&end, args);
    // With --verbose the console was shown as it came.
    if verdict.show_console && !args.verbose {
        show_console(&end.console);
    }
    if (args.verbose || verdict.show_qemu_stderr) && !end.qemu_stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&end.qemu_stderr));
    }
    for line in &verdict.messages {
        eprintln!("{line}");
    }
    if args.timeline || args.timeline_json.is_some() {
        report_timeline(&end, args)?;
    }
    if args.verbose {
        // The status port may carry more than the status line (the init's timeline).
        for line in String::from_utf8_lossy(&end.status_port).lines() {
            eprintln!("flint: status port: {line}");
        }
        eprintln!("flint: the VM ran for {:.3?}, workload status {}", end.elapsed, verdict.status);
    }
    Ok(verdict.status)
}

/// The file `-kernel` gets: the bzImage, or its PVH vmlinux.
fn boot_image(kernel: &Kernel, boot: Boot) -> Result<PathBuf> {
    Ok(match boot {
        Boot::Bzimage => kernel.image.clone(),
        Boot::Pvh => crate::vmlinux::pvh_image(kernel)?.with_context(|| {
            format!("kernel {} has no PVH entry (built without CONFIG_PVH): use --boot bzimage", kernel.label)
        })?,
        Boot::Auto => crate::vmlinux::pvh_image_or_note(kernel)?.unwrap_or_else(|| kernel.image.clone()),
    })
}

/// Locks `dir` for as long as the returned file is open (an exclusive `flock`, which the
/// kernel drops however flint ends), so that `sweep_stale` leaves it alone.
fn claim(dir: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    // SAFETY: flock(2) on a descriptor that `file` owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("cannot lock {}: {}", dir.display(), std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The process id in the name of a `flint run` temporary directory (`flint-<pid>-<hex>`, as
/// `env::TempDir::new("flint")` names them).
fn run_dir_pid(name: &str) -> Option<libc::pid_t> {
    let (pid, tag) = name.strip_prefix("flint-")?.split_once('-')?;
    let tagged = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit());
    (tagged && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.parse().ok()).flatten()
}

/// Removes the temporary directories that killed runs left beside `ours` (a SIGKILLed flint
/// cannot remove its own): this user's, whose process is gone and whose lock is free. The
/// lock tells them from a live run whose process is merely invisible here (another PID
/// namespace sharing the directory).
fn sweep_stale(ours: &Path) {
    let (Some(base), Ok(me)) = (ours.parent(), std::fs::metadata(ours).map(|m| m.uid())) else { return };
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(run_dir_pid) else { continue };
        // Not followed: a symbolic link is no directory of ours.
        if !entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me) {
            continue;
        }
        // SAFETY: signal 0 only asks whether the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            if let Ok(_lock) = claim(&entry.path()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn report_timeline(end: &Ending, args: &RunArgs) -> Result<()> {
    let host = HostTimes { line_arrived: end.status_arrived, qemu_exited: end.elapsed, restored: end.restored };
    let Some(timeline) = Timeline::from_status_port(&end.status_port, &host) else {
        eprintln!(
            "flint: no timeline: the guest did not report one (is the firmware flint's, built with `flint build`?)"
        );
        return Ok(());
    };
    if args.timeline {
        timeline.print();
    }
    if let Some(path) = &args.timeline_json {
        std::fs::write(path, serde_json::to_vec_pretty(&timeline)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
/// `--user UID[:GID]`
pub fn parse_user(text: &str) -> Result<(u32, u32), String> {
    let number = |s: &str| s.parse::<u32>().ok().filter(|&n| n != u32::MAX);
    let parsed = match text.split_once(':') {
        Some((uid, gid)) => number(uid).zip(number(gid)),
        None => number(text).map(|id| (id, id)),
    };
    parsed.ok_or_else(|| "expected UID or UID:GID, numbers from 0 to 4294967294".to_string())
}

/// `-p HOST:GUEST` needs the user network, and each host port must be free, and given once.
fn check_publish(args: &RunArgs) -> Result<()> {
    if let (Some(forward), None) = (args.publish.first(), args.net) {
        bail!(
            "-p {}:{} forwards a port over the user network, which the guest has only with --net user: add --net user",
            forward.host,
            forward.guest
        );
    }
    for (index, forward) in args.publish.iter().enumerate() {
        if args.publish[..index].iter().any(|earlier| earlier.host == forward.host) {
            bail!("-p: host port {} is forwarded twice: give each host port once", forward.host);
        }
        // QEMU would say only "Could not set up host forwarding rule"; a port taken between
        // here and QEMU's start still gets that.
        if let Err(error) = std::net::TcpListener::bind(("127.0.0.1", forward.host)) {
            bail!(
                "-p {}:{}: cannot listen on the host's 127.0.0.1:{}: {error}: pick another host port",
                forward.host,
                forward.guest,
                forward.host
            );
        }
    }
    Ok(())
}

/// `-p HOST:GUEST` (or `HOST:GUEST/tcp`, as docker takes it): TCP port numbers from 1 to 65535.
pub fn parse_forward(text: &str) -> Result<Forward, String> {
    let expected = || "expected HOST:GUEST, two TCP port numbers from 1 to 65535 (e.g. 8080:80)".to_string();
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    if protocol != "tcp" {
        return Err(format!("only TCP ports are forwarded, not {protocol:?}: {}", expected()));
    }
    let port = |digits: &str| {
        // Digits only (no sign, no spaces); parsing then fails on overflow alone.
        let digits_only = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        digits_only.then(|| digits.parse::<u16>().ok()).flatten().filter(|&port| port != 0)
    };
    let (host, guest) = ports.split_once(':').ok_or_else(expected)?;
    Ok(Forward { host: port(host).ok_or_else(expected)?, guest: port(guest).ok_or_else(expected)? })
}

/// `--timeout SECS`: seconds with up to 3 decimals (the guest's resolution), at most what
/// the guest can count (milliseconds in 64 bits).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let invalid = || "expected seconds such as 10 or 2.5 (at most 3 decimals, more than 0)".to_string();
    let too_long = || {
        format!("at most {}.{:03} seconds (the guest counts milliseconds in 64 bits)", u64::MAX / 1000, u64::MAX % 1000)
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if whole.is_empty()
        || fraction.is_empty()
        || fraction.len() > 3
        || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    // Digits only: parsing fails on overflow alone.
    let whole = whole.parse::<u64>().map_err(|_| too_long())?;
    let fraction = fraction.parse::<u64>().map_err(|_| invalid())? * 10u64.pow(3 - fraction.len() as u32);
    let millis = whole.checked_mul(1000).and_then(|ms| ms.checked_add(fraction)).ok_or_else(too_long)?;
    if millis == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_past_the_guest_limit_are_refused_not_wrapped() {
        assert_eq!(parse_timeout("18446744073709551.615"), Ok(Duration::from_millis(u64::MAX)));
        for huge in ["18446744073709551.616", "18446744073709551.999", "18446744073709552", "99999999999999999999999"] {
            let error = parse_timeout(huge).unwrap_err();
            assert!(error.contains("at most 18446744073709551.615 seconds"), "{huge}: {error}");
        }
    }

    #[test]
    fn port_forwards_are_read_strictly() {
        assert_eq!(parse_forward("8080:80"), Ok(Forward { host: 8080, guest: 80 }));
        assert_eq!(parse_forward("65535:1/tcp"), Ok(Forward { host: 65535, guest: 1 }));
        for bad in [
            "",
            "8080",
            ":80",
            "8080:",
            "0:80",
            "80:0",
            "65536:80",
            "80:99999999999999999999",
            "+80:80",
            " 80:80",
            "8080:80:1",
            "1.2.3.4:80:80",
            "80:80/udp",
            "80:80/",
        ] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
        assert!(parse_forward("53:53/udp").unwrap_err().starts_with("only TCP ports are forwarded"));
    }

    #[test]
    fn run_directories_are_told_by_name() {
        assert_eq!(run_dir_pid("flint-1234-5f3a9c"), Some(1234));
        for other in
            ["flint-image-1234-5f3a9c", "flint-1234", "flint-1234-", "flint--5f", "flint-12x-5f", "flint-1234-xyz"]
        {
            assert_eq!(run_dir_pid(other), None, "{other}");
        }
    }

    #[test]
    fn the_sweep_takes_dead_unlocked_run_directories_only() {
        let base = env::TempDir::new("flint-sweep-test").unwrap();
        let dead = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        };
        let dir = |name: String| {
            let path = base.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("console.log"), b"").unwrap();
            path
        };
        let ours = dir(format!("flint-{}-1", std::process::id()));
        let stale = dir(format!("flint-{dead}-2"));
        let locked = dir(format!("flint-{dead}-3"));
        let other = dir(format!("flint-image-{dead}-4"));
        let _lock = claim(&locked).unwrap();
        sweep_stale(&ours);
        assert!(!stale.exists());
        for kept in [&ours, &locked, &other] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }
}
