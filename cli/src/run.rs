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
use crate::kernel::Kernel;
use crate::modules::Need;
use crate::qemu::{Drive, Machine, PortBackend, Serial, VirtioPort, Vm, QEMU};
use crate::rootfs::{self, FsType, Lookup};
use crate::timeline::{HostTimes, Timeline};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RootMode {
    /// Read-only root.
    Ro,
    /// A writable tmpfs layer over the read-only root: writes work and are thrown away.
    Overlay,
    /// The image itself is written (a private copy when the image is flint's cached one).
    Rw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Tcg,
    Kvm,
    /// KVM if a probe VM really runs under it, else TCG.
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

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub firmware: Option<PathBuf>,
    pub kernel: Option<String>,
    pub root: Option<PathBuf>,
    pub root_image: Option<PathBuf>,
    pub machine: Machine,
    pub memory: String,
    pub cpus: u32,
    pub env: Vec<OsString>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32)>,
    pub timeout: Option<Duration>,
    pub mode: RootMode,
    pub accel: Accel,
    pub boot: Boot,
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

/// The root filesystem of one run.
struct Root {
    image: PathBuf,
    fs: FsType,
    /// The directory the image was made from, for checking the program on the host.
    tree: Option<PathBuf>,
    /// The image is flint's cached copy, which must never be written.
    cached: bool,
}

pub fn run(args: &RunArgs) -> Result<u8> {
    if env::find_program(QEMU).is_none() {
        bail!("{QEMU} not found in PATH: install QEMU (apt-get install qemu-system-x86, or run scripts/setup.sh)");
    }
    let firmware = env::firmware(args.firmware.as_deref())?;
    let kernel = Kernel::resolve(args.kernel.as_deref())?;
    let root = prepare_root(args)?;
    let environment = environment(&args.env)?;
    let cwd = args.cwd.clone().unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') || cwd.contains('"') || cwd.chars().any(char::is_control) {
        bail!("--cwd {cwd:?}: give an absolute path without '\"' or control characters");
    }
    if let Some(tree) = &root.tree {
        check_in_root(tree, &args.command, &environment, &cwd)?;
    }
    let modules = modules_for(&kernel, &root, args.mode)?;
    let cmdline = kernel_cmdline(args, &root, &modules, &environment, &cwd)?;
    if cmdline.len() > kernel.cmdline_max() {
        bail!(
            "the kernel command line is {} bytes, more than the {} this kernel takes: shorten the command and --env values (pass data through stdin or the root instead)",
            cmdline.len(),
            kernel.cmdline_max()
        );
    }
    let initrd = if modules.is_empty() { None } else { Some(module_initrd(&modules)?) };
    let accel = choose_accel(args.accel, &firmware, args.verbose)?;

    let mut vm = Vm::new(&firmware);
    vm.machine = args.machine;
    vm.accel = accel.into();
    vm.cpu = (accel == "kvm").then(|| "host".to_string());
    vm.memory = args.memory.clone();
    vm.cpus = args.cpus;
    vm.kernel = Some(boot_image(&kernel, args.boot)?);
    vm.append = Some(cmdline);
    if let Some(initrd) = initrd {
        vm.initrd = Some(initrd);
        vm.fw_cfg_strings.push(("opt/flint/add-init".into(), "1".into()));
    }
    if args.verbose {
        vm.fw_cfg_strings.push(("opt/flint/log".into(), "1".into()));
    }

    if args.print_cmd {
        if args.mode == RootMode::Rw && root.cached {
            bail!("--print-cmd with --rw needs an image of your own: make one with `flint rootfs DIR -o IMAGE` and pass --root-image IMAGE");
        }
        vm.drives.push(Drive { path: root.image.clone(), read_only: args.mode != RootMode::Rw });
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
    let image = if args.mode == RootMode::Rw && root.cached {
        let copy = temp.path().join(format!("root.{}", root.fs.name()));
        env::run_tool(
            std::process::Command::new("cp").arg("--sparse=always").arg("--reflink=auto").arg(&root.image).arg(&copy),
        )
        .context("cannot make a private copy of the root image for --rw")?;
        copy
    } else {
        root.image.clone()
    };
    vm.drives.push(Drive { path: image, read_only: args.mode != RootMode::Rw });
    let console_log = temp.path().join("console.log");
    vm.serial = Serial::File(console_log.clone());
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
    let deadline =
        args.timeout.map(|t| t + if accel == "kvm" { Duration::from_secs(30) } else { Duration::from_secs(120) });
    let end = boot(&vm, listeners, &console_log, deadline, args.verbose)?;
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
        Boot::Auto => crate::vmlinux::pvh_image(kernel)?.unwrap_or_else(|| kernel.image.clone()),
    })
}

fn report_timeline(end: &Ending, args: &RunArgs) -> Result<()> {
    let host = HostTimes { line_arrived: end.status_arrived, qemu_exited: end.elapsed };
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

fn prepare_root(args: &RunArgs) -> Result<Root> {
    match (&args.root, &args.root_image) {
        (Some(_), Some(_)) => bail!("--root and --root-image both given: pass only one"),
        (Some(dir), None) => {
            let image = rootfs::cached_ext4(dir)?;
            Ok(Root { image, fs: FsType::Ext4, tree: Some(dir.clone()), cached: true })
        }
        (None, Some(image)) => {
            let fs = FsType::detect(image)?;
            if args.mode == RootMode::Rw {
                std::fs::OpenOptions::new().write(true).open(image).fix(
                    format_args!(
                        "--rw needs a writable root image, and {} cannot be opened for writing",
                        image.display()
                    ),
                    "make it writable, or use --overlay for throwaway writes",
                )?;
                if fs == FsType::Erofs {
                    bail!("--rw with an erofs image: erofs is read-only; use --overlay, or an ext4 image");
                }
            }
            Ok(Root { image: image.clone(), fs, tree: None, cached: false })
        }
        (None, None) => {
            let root = rootfs::busybox_root()?;
            Ok(Root { image: root.image, fs: FsType::Ext4, tree: Some(root.tree), cached: true })
        }
    }
}

/// The workload's environment: PATH and HOME, then `--env` (which overrides them).
/// `--env NAME` without `=` passes the host's value of NAME.
fn environment(given: &[OsString]) -> Result<Vec<Vec<u8>>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b"PATH".to_vec(), DEFAULT_PATH.into()), (b"HOME".to_vec(), b"/root".to_vec())];
    for entry in given {
        let bytes = entry.as_bytes();
        let (name, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(0) => bail!("--env {}: the variable has no name: write NAME=VALUE", entry.to_string_lossy()),
            Some(eq) => (bytes[..eq].to_vec(), bytes[eq + 1..].to_vec()),
            None if bytes.is_empty() => bail!("--env needs NAME=VALUE (or NAME to pass the host's value)"),
            None => match std::env::var_os(entry) {
                Some(value) => (bytes.to_vec(), value.as_bytes().to_vec()),
                None => bail!("--env {}: no such variable on the host: write NAME=VALUE", entry.to_string_lossy()),
            },
        };
        vars.retain(|(existing, _)| *existing != name);
        vars.push((name, value));
    }
    Ok(vars
        .into_iter()
        .map(|(mut name, value)| {
            name.push(b'=');
            name.extend(value);
            name
        })
        .collect())
}

/// With the root's directory at hand, checks the program and the working directory on the
/// host, before spending a boot on them.
fn check_in_root(tree: &Path, command: &[OsString], environment: &[Vec<u8>], cwd: &str) -> Result<()> {
    let program = command[0].as_bytes();
    if program.is_empty() {
        bail!("the command is empty: give the program to run after --");
    }
    match rootfs::resolve_in_root(tree, cwd.as_bytes()) {
        Some(dir) if dir.is_dir() => {}
        _ => bail!(
            "--cwd {cwd}: no such directory in the root filesystem ({}): create it there or pick another",
            tree.display()
        ),
    }
    let search_path = environment.iter().find_map(|var| var.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH.as_bytes());
    let shown = String::from_utf8_lossy(program);
    match rootfs::find_in_root(tree, program, search_path, cwd.as_bytes()) {
        Lookup::Found(_) => Ok(()),
        Lookup::NotExecutable(path) => Err(Exit::new(
            EXIT_NOT_EXECUTABLE,
            format!("{shown}: {} in the root filesystem is not an executable file: make it one (chmod +x) or run another program", path.display()),
        )
        .into()),
        Lookup::NotFound if program.contains(&b'/') => Err(Exit::new(
            EXIT_NOT_FOUND,
            format!("{shown}: no such file in the root filesystem ({}): check the path, or add the program to the root", tree.display()),
        )
        .into()),
        Lookup::NotFound => Err(Exit::new(
            EXIT_NOT_FOUND,
            format!(
                "{shown}: command not found in the root filesystem ({}, PATH={}): check the name, or add the program to the root",
                tree.display(),
                String::from_utf8_lossy(search_path)
            ),
        )
        .into()),
    }
}

/// The modules the guest must load, dependencies first: the virtio drivers and the root's
/// filesystem, when the kernel has them as modules rather than built in.
fn modules_for(kernel: &Kernel, root: &Root, mode: RootMode) -> Result<Vec<crate::modules::Module>> {
    // virtio_console before virtio_blk: its ports are created asynchronously, so they get the
    // time the other modules take to load before the init opens them.
    let mut needs = vec![
        Need { option: "CONFIG_VIRTIO_PCI", module: "virtio_pci", purpose: "virtio-pci devices" },
        Need {
            option: "CONFIG_VIRTIO_CONSOLE",
            module: "virtio_console",
            purpose: "the workload's stdin/stdout/stderr (virtio-serial)",
        },
        Need { option: "CONFIG_VIRTIO_BLK", module: "virtio_blk", purpose: "the root disk (virtio-blk)" },
    ];
    needs.push(match root.fs {
        FsType::Ext4 => Need { option: "CONFIG_EXT4_FS", module: "ext4", purpose: "the ext4 root" },
        FsType::Erofs => Need { option: "CONFIG_EROFS_FS", module: "erofs", purpose: "the erofs root" },
    });
    if mode == RootMode::Overlay {
        needs.push(Need { option: "CONFIG_OVERLAY_FS", module: "overlay", purpose: "--overlay" });
    }
    crate::modules::load_list(kernel, &needs)
}

/// An initramfs with the modules at `/lib/modules/<name>.ko`, kept in the cache by content.
pub(crate) fn module_initrd(modules: &[crate::modules::Module]) -> Result<PathBuf> {
    let mut archive = Initramfs::new();
    for module in modules {
        archive.file(&format!("/lib/modules/{}.ko", module.name), 0o644, module.data.clone());
    }
    let bytes = archive.to_bytes();
    let dir = env::cache_subdir("initrds")?;
    let path = dir.join(format!("{}.cpio", &env::sha256_hex(&bytes)[..32]));
    if !path.is_file() {
        let tmp = env::temp_sibling(&path);
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

fn kernel_cmdline(
    args: &RunArgs,
    root: &Root,
    modules: &[crate::modules::Module],
    environment: &[Vec<u8>],
    cwd: &str,
) -> Result<String> {
    use flint_guest_init::argv::encode;
    let mut words: Vec<String> = ["console=ttyS0", "quiet", "panic=-1"].map(String::from).to_vec();
    words.push("flint.root=/dev/vda".into());
    words.push(format!("flint.rootfstype={}", root.fs.name()));
    words.push(format!("flint.rootwait={ROOT_WAIT_SECS}"));
    words.push(
        match args.mode {
            RootMode::Ro => "flint.ro",
            RootMode::Rw => "flint.rw",
            RootMode::Overlay => "flint.overlay",
        }
        .into(),
    );
    if !modules.is_empty() {
        words.push(format!("flint.modules={}", modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(",")));
    }
    let argv: Vec<&[u8]> = args.command.iter().map(|arg| arg.as_bytes()).collect();
    words.push(format!("flint.argv={}", encode(&argv)));
    words.push(format!("flint.env={}", encode(environment)));
    if cwd != "/" {
        words.push(if cwd.contains(char::is_whitespace) {
            format!("\"flint.cwd={cwd}\"")
        } else {
            format!("flint.cwd={cwd}")
        });
    }
    if let Some((uid, gid)) = args.user {
        words.push(format!("flint.uid={uid}"));
        words.push(format!("flint.gid={gid}"));
    }
    if let Some(timeout) = args.timeout {
        words.push(format!("flint.timeout={}.{:03}", timeout.as_secs(), timeout.subsec_millis()));
    }
    for (name, device) in PORTS {
        words.push(format!("flint.{name}={device}"));
    }
    Ok(words.join(" "))
}

/// `tcg` or `kvm`; for `auto`, KVM only if a probe VM really runs under it (on some hosts
/// /dev/kvm opens but guests hang), remembered for the host's boot.
fn choose_accel(accel: Accel, firmware: &Path, verbose: bool) -> Result<&'static str> {
    match accel {
        Accel::Tcg => Ok("tcg"),
        Accel::Kvm => {
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").fix(
                "--accel kvm: cannot open /dev/kvm",
                "load the kvm module and get access to it (group kvm), or use --accel tcg",
            )?;
            Ok("kvm")
        }
        Accel::Auto => {
            if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
                return Ok("tcg");
            }
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            // Valid until the host reboots or QEMU is replaced.
            let qemu = env::find_program(QEMU)
                .and_then(|p| p.metadata().ok())
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let key = format!("boot {} qemu {qemu}:", boot_id.trim());
            let record = env::cache_dir()?.join("accel-probe");
            if let Ok(text) = std::fs::read_to_string(&record) {
                if let Some(answer) = text.strip_prefix(&key).map(str::trim) {
                    return Ok(if answer == "kvm" { "kvm" } else { "tcg" });
                }
            }
            let works = probe_kvm(firmware);
            if verbose {
                eprintln!("flint: KVM probe: {}", if works { "works, using kvm" } else { "no working KVM, using tcg" });
            }
            let answer = if works { "kvm" } else { "tcg" };
            if let Ok(dir) = env::cache_subdir(".") {
                let tmp = env::temp_sibling(&dir.join("accel-probe"));
                if std::fs::write(&tmp, format!("{key} {answer}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, &record);
                }
            }
            Ok(answer)
        }
    }
}

/// Boots the firmware alone under KVM: with no kernel it ends at once through
/// isa-debug-exit with an odd status; a hang or an error means KVM does not work here.
fn probe_kvm(firmware: &Path) -> bool {
    let mut vm = Vm::new(firmware);
    vm.accel = "kvm".into();
    vm.memory = "32M".into();
    vm.serial = Serial::None;
    let Ok(mut child) = vm.command().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    match child.wait_timeout(Duration::from_secs(3)) {
        Ok(Some(status)) => status.code().is_some_and(|code| code % 2 == 1 && code >= 3),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuEnd {
    Exited(i32),
    Signaled(i32),
    /// flint killed it at the host-side deadline.
    DeadlineKilled,
    /// flint got this signal and stopped the VM.
    Interrupted(i32),
}

/// What a finished VM left behind.
#[derive(Debug)]
pub struct Ending {
    pub qemu: QemuEnd,
    /// What arrived on the status port.
    pub status_port: Vec<u8>,
    pub console: String,
    pub qemu_stderr: Vec<u8>,
    pub elapsed: Duration,
    /// When the status port's last bytes arrived, after spawning QEMU.
    pub status_arrived: Duration,
}

/// The process-wide signal that asked flint to stop, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// From here on SIGINT, SIGTERM and SIGHUP stop the VM (and flint then exits 128+N)
/// instead of killing flint with its temporary directory left behind.
fn take_signals() {
    // SAFETY: plain libc calls on a local signal set; the mask applies to this thread and
    // the threads it starts, and child processes get an empty mask from std.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        thread::spawn(move || loop {
            let mut signal = 0;
            if libc::sigwait(&set, &mut signal) == 0 {
                INTERRUPTED.store(signal, Ordering::SeqCst);
            }
        });
    }
}

/// Starts QEMU, connects the ports, pumps the streams and waits for the end.
fn boot(
    vm: &Vm,
    listeners: Vec<UnixListener>,
    console_log: &Path,
    deadline: Option<Duration>,
    verbose: bool,
) -> Result<Ending> {
    take_signals();
    let started = Instant::now();
    let mut child = vm
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let qemu_stderr = crate::qemu::drain(child.stderr.take().expect("piped"));
    let streams = match accept_all(&listeners, &mut child) {
        Ok(streams) => streams,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = qemu_stderr.join().ok().and_then(Result::ok).unwrap_or_default();
            let stderr = String::from_utf8_lossy(&stderr);
            let reason =
                stderr.lines().map(str::trim).find(|l| !l.is_empty()).map_or_else(|| error.to_string(), str::to_string);
            bail!("QEMU did not start: {reason}: check the options (--memory, --cpus, --machine) and the QEMU installation");
        }
    };
    let [stdin_port, stdout_port, stderr_port, status_port]: [UnixStream; 4] = streams.try_into().expect("four ports");

    // Kept open until the end: closing the socket (rather than only shutting down its sending
    // side) would make QEMU drop the connection along with input the guest has not read yet.
    let _stdin_keepalive = stdin_port.try_clone()?;
    thread::spawn(move || copy_stdin(stdin_port));
    let stdout_fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr_fd = std::io::stderr().as_fd().try_clone_to_owned()?;
    let outputs =
        [pump(stdout_port, std::fs::File::from(stdout_fd)), pump(stderr_port, std::fs::File::from(stderr_fd))];
    let status = drain_timed(status_port, started);
    let tail = verbose.then(|| tail_console(console_log.to_path_buf()));

    let qemu = wait(&mut child, deadline, started)?;
    let elapsed = started.elapsed();
    for (reader, writer) in outputs {
        let _ = reader.join();
        let _ = writer.join();
    }
    let (status_port, status_arrived) = status.join().unwrap_or_default();
    if let Some((stop, handle)) = tail {
        let _ = stop.send(());
        let _ = handle.join();
    }
    Ok(Ending {
        qemu,
        status_port,
        console: String::from_utf8_lossy(&std::fs::read(console_log).unwrap_or_default()).replace('\r', ""),
        qemu_stderr: qemu_stderr.join().ok().and_then(Result::ok).unwrap_or_default(),
        elapsed,
        status_arrived,
    })
}

/// Accepts QEMU's connection on every listener (it connects to each while starting up).
fn accept_all(listeners: &[UnixListener], child: &mut Child) -> Result<Vec<UnixStream>> {
    let mut streams: Vec<Option<UnixStream>> = listeners.iter().map(|_| None).collect();
    let start = Instant::now();
    while streams.iter().any(Option::is_none) {
        let mut progressed = false;
        for (listener, slot) in listeners.iter().zip(streams.iter_mut()) {
            if slot.is_none() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false)?;
                        *slot = Some(stream);
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if progressed {
            continue;
        }
        if let Some(status) = child.try_wait()? {
            bail!("QEMU exited ({status}) before connecting its ports");
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("QEMU did not connect its ports within 60 s");
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(streams.into_iter().map(Option::unwrap).collect())
}

/// Copies flint's stdin to the guest, then signals EOF by shutting down the sending side.
fn copy_stdin(mut port: UnixStream) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if port.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = port.shutdown(std::net::Shutdown::Write);
}

/// Moves one output stream from its port to `out`. The socket is read by its own thread
/// into memory so QEMU never has to hold guest output back (output held back when the guest
/// powers off would be lost); a second thread writes it out.
fn pump(mut port: UnixStream, mut out: std::fs::File) -> (JoinHandle<()>, JoinHandle<()>) {
    let (send, receive) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if send.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    let writer = thread::spawn(move || {
        let mut broken = false;
        for chunk in receive {
            // A closed pipe (`flint run ... | head`) ends the copying, not the workload.
            if !broken && out.write_all(&chunk).is_err() {
                broken = true;
            }
        }
    });
    (reader, writer)
}

/// Reads a stream to its end in a thread, also noting when (after `start`) the last bytes
/// arrived.
fn drain_timed(mut from: impl Read + Send + 'static, start: Instant) -> JoinHandle<(Vec<u8>, Duration)> {
    thread::spawn(move || {
        let (mut data, mut arrived) = (Vec::new(), Duration::ZERO);
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            data.extend_from_slice(&chunk[..n]);
            arrived = start.elapsed();
        }
        (data, arrived)
    })
}

/// With `--verbose`, shows the console as it is written.
fn tail_console(path: PathBuf) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut shown = 0usize;
        loop {
            let done = !matches!(stopped.recv_timeout(Duration::from_millis(50)), Err(mpsc::RecvTimeoutError::Timeout));
            if let Ok(data) = std::fs::read(&path) {
                if data.len() > shown {
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(&data[shown..]);
                    shown = data.len();
                }
            }
            if done {
                break;
            }
        }
    });
    (stop, handle)
}

fn wait(child: &mut Child, deadline: Option<Duration>, started: Instant) -> Result<QemuEnd> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        if let Some(status) = child.wait_timeout(Duration::from_millis(50))? {
            let signal = INTERRUPTED.load(Ordering::SeqCst);
            return Ok(match (status.code(), status.signal()) {
                _ if signal != 0 => QemuEnd::Interrupted(signal),
                (Some(code), _) => QemuEnd::Exited(code),
                (None, Some(signal)) => QemuEnd::Signaled(signal),
                (None, None) => QemuEnd::Signaled(0),
            });
        }
        let signal = INTERRUPTED.load(Ordering::SeqCst);
        let late = deadline.is_some_and(|deadline| started.elapsed() > deadline);
        if signal != 0 || late {
            // SIGTERM lets QEMU close down; SIGKILL if it does not within a second.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            if child.wait_timeout(Duration::from_secs(1))?.is_none() {
                let _ = child.kill();
            }
            child.wait()?;
            return Ok(if signal != 0 { QemuEnd::Interrupted(signal) } else { QemuEnd::DeadlineKilled });
        }
    }
}

/// What flint reports and the status it exits with.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: u8,
    /// Lines for stderr, after the console log if that is shown.
    pub messages: Vec<String>,
    pub show_console: bool,
    pub show_qemu_stderr: bool,
}

/// The statuses with which the guest init reports its own failures (guest-init/README.md)
/// rather than the workload's: flint reports them as its own failure.
const INIT_FAILURES: [u8; 6] = [119, 120, 121, 122, 123, 125];

pub fn decide(end: &Ending, args: &RunArgs) -> Verdict {
    let fail = |message: String, show_console: bool, show_qemu_stderr: bool| Verdict {
        status: EXIT_FAILURE,
        messages: vec![format!("flint: error: {message}")],
        show_console,
        show_qemu_stderr,
    };
    let code = match end.qemu {
        QemuEnd::Interrupted(signal) => {
            return Verdict {
                status: 128u8.wrapping_add(signal as u8),
                messages: vec![format!("flint: stopped the VM on signal {signal}")],
                show_console: false,
                show_qemu_stderr: false,
            }
        }
        QemuEnd::DeadlineKilled => {
            let timeout = args.timeout.unwrap_or_default();
            return Verdict {
                status: EXIT_TIMEOUT,
                messages: vec![format!(
                    "flint: error: the VM was still running well past --timeout {}s (the guest never enforced it): stopped it; its console is above",
                    timeout.as_secs_f64()
                )],
                show_console: true,
                show_qemu_stderr: true,
            };
        }
        QemuEnd::Signaled(signal) => return fail(format!("QEMU was killed by signal {signal}"), true, true),
        QemuEnd::Exited(code) => code,
    };
    let line = String::from_utf8_lossy(&end.status_port)
        .lines()
        .rev()
        .find_map(|line| flint_guest_init::status::parse_line(line.as_bytes()));
    // isa-debug-exit makes QEMU exit with (value << 1) | 1; 0 is a power-off or reboot
    // without a status, any other even code is QEMU's own failure.
    // QEMU's own errors exit 1 too, which is also what isa-debug-exit makes of 0; QEMU then
    // says why on stderr.
    let qemu_error = code == 1 && !end.qemu_stderr.iter().all(u8::is_ascii_whitespace);
    let debug_exit = (code % 2 == 1 && !qemu_error).then(|| ((code - 1) / 2) as u8);
    let firmware_error = end.console.lines().find_map(|l| l.strip_prefix("flint: error: ")).map(str::to_string);
    let init_errors: Vec<&str> = end.console.lines().filter_map(|l| l.strip_prefix("flint-init: ")).collect();
    let status = match (line, debug_exit) {
        (Some(status), _) => status,
        (None, Some(value)) => {
            if let Some(error) = firmware_error {
                return fail(format!("the firmware failed (status {value}): {error}"), true, true);
            }
            value
        }
        (None, None) if code == 0 => {
            return fail(
                "the VM stopped without reporting the workload's status (the kernel panicked, or the firmware has no flint init: run `flint build`): its console is above".into(),
                true,
                true,
            )
        }
        (None, None) => {
            let stderr = String::from_utf8_lossy(&end.qemu_stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return fail(format!("QEMU failed (exit status {code}): {}", first.trim()), false, true);
        }
    };
    if init_errors.is_empty() {
        return Verdict { status, messages: Vec::new(), show_console: false, show_qemu_stderr: false };
    }
    let guest = |status: u8| Verdict {
        status,
        messages: init_errors.iter().map(|e| format!("flint: error: in the guest: {e}")).collect(),
        show_console: false,
        show_qemu_stderr: false,
    };
    match status {
        EXIT_TIMEOUT => Verdict {
            status,
            messages: vec![format!(
                "flint: error: the workload ran longer than --timeout {}s and was killed",
                args.timeout.unwrap_or_default().as_secs_f64()
            )],
            show_console: false,
            show_qemu_stderr: false,
        },
        EXIT_NOT_EXECUTABLE | EXIT_NOT_FOUND => guest(status),
        s if INIT_FAILURES.contains(&s) => {
            let mut verdict = guest(EXIT_FAILURE);
            verdict.show_console = true;
            verdict.messages = vec![format!(
                "flint: error: the guest init failed (status {s}): {}",
                init_errors.last().copied().unwrap_or_default()
            )];
            verdict
        }
        _ => Verdict { status, messages: Vec::new(), show_console: false, show_qemu_stderr: false },
    }
}

fn show_console(console: &str) {
    if console.trim().is_empty() {
        eprintln!("flint: (the console log is empty)");
        return;
    }
    eprintln!("flint: --- console (COM1) ---");
    eprint!("{console}");
    if !console.ends_with('\n') {
        eprintln!();
    }
    eprintln!("flint: --- end of console ---");
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

/// `--timeout SECS`: seconds with up to 3 decimals (the guest's resolution).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let invalid = || "expected seconds such as 10 or 2.5 (at most 3 decimals, more than 0)".to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if whole.is_empty()
        || fraction.is_empty()
        || fraction.len() > 3
        || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let millis = whole.parse::<u64>().map_err(|_| invalid())?.checked_mul(1000).ok_or_else(invalid)?
        + fraction.parse::<u64>().map_err(|_| invalid())? * 10u64.pow(3 - fraction.len() as u32);
    if millis == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            firmware: None,
            kernel: None,
            root: None,
            root_image: None,
            machine: Machine::Pc,
            memory: "512M".into(),
            cpus: 1,
            env: Vec::new(),
            cwd: None,
            user: None,
            timeout: Some(Duration::from_secs(5)),
            mode: RootMode::Overlay,
            accel: Accel::Tcg,
            boot: Boot::Auto,
            print_cmd: false,
            verbose: false,
            timeline: false,
            timeline_json: None,
            command: vec!["true".into()],
        }
    }

    fn end(qemu: QemuEnd, status_port: &str, console: &str) -> Ending {
        Ending {
            qemu,
            status_port: status_port.into(),
            console: console.into(),
            qemu_stderr: b"qemu: oops\n".to_vec(),
            elapsed: Duration::ZERO,
            status_arrived: Duration::ZERO,
        }
    }

    #[test]
    fn the_status_line_wins_and_covers_all_256_statuses() {
        for status in [0u8, 3, 137, 255] {
            let verdict = decide(
                &end(QemuEnd::Exited(((status as i32) << 1 | 1) & 0xff), &format!("flint-status {status}\n"), ""),
                &args(),
            );
            assert_eq!(verdict, Verdict { status, messages: vec![], show_console: false, show_qemu_stderr: false });
        }
    }

    #[test]
    fn without_a_status_line_qemus_exit_code_is_used() {
        assert_eq!(decide(&end(QemuEnd::Exited(7), "", ""), &args()).status, 3);
        let mut zero = end(QemuEnd::Exited(1), "", "");
        zero.qemu_stderr.clear();
        assert_eq!(decide(&zero, &args()).status, 0);
        let panic = decide(&end(QemuEnd::Exited(0), "", "Kernel panic"), &args());
        assert_eq!((panic.status, panic.show_console), (125, true));
        let qemu = decide(&end(QemuEnd::Exited(1), "", ""), &args());
        assert_eq!(qemu.status, 125);
        assert!(qemu.messages[0].contains("QEMU failed (exit status 1): qemu: oops"), "{:?}", qemu.messages);
    }

    #[test]
    fn firmware_and_init_failures_are_flints_own() {
        let firmware =
            decide(&end(QemuEnd::Exited(35), "", "flint: error: no kernel to boot: pass one with -kernel\n"), &args());
        assert_eq!(firmware.status, 125);
        assert!(firmware.messages[0].contains("firmware failed (status 17): no kernel to boot"));
        let root = decide(
            &end(QemuEnd::Exited(245), "flint-status 122\n", "flint-init: root device /dev/vda did not appear\n"),
            &args(),
        );
        assert_eq!((root.status, root.show_console), (125, true));
        assert!(root.messages[0].contains("guest init failed (status 122): root device"));
        let missing = decide(
            &end(QemuEnd::Exited(255), "flint-status 127\n", "flint-init: cannot execute nope: ENOENT\n"),
            &args(),
        );
        assert_eq!(missing.status, 127);
        assert_eq!(missing.messages, ["flint: error: in the guest: cannot execute nope: ENOENT"]);
        let timeout = decide(
            &end(
                QemuEnd::Exited(249),
                "flint-status 124\n",
                "flint-init: workload killed after flint.timeout=5000 ms\n",
            ),
            &args(),
        );
        assert_eq!(timeout.status, 124);
        assert!(timeout.messages[0].contains("longer than --timeout 5s"));
        // A workload exiting 122 by itself is just that.
        assert_eq!(decide(&end(QemuEnd::Exited(245), "flint-status 122\n", ""), &args()).status, 122);
    }

    #[test]
    fn host_side_endings() {
        assert_eq!(decide(&end(QemuEnd::Interrupted(2), "", ""), &args()).status, 130);
        let late = decide(&end(QemuEnd::DeadlineKilled, "", ""), &args());
        assert_eq!((late.status, late.show_console), (124, true));
        assert_eq!(decide(&end(QemuEnd::Signaled(9), "", ""), &args()).status, 125);
    }

    #[test]
    fn options_parse() {
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("0.001"), Ok(Duration::from_millis(1)));
        for bad in ["", "0", "1.", ".5", "1.2345", "-1", "1e3", "x"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_user("1000"), Ok((1000, 1000)));
        assert_eq!(parse_user("1000:100"), Ok((1000, 100)));
        assert!(parse_user("root").is_err());
        assert!(parse_user("4294967295").is_err());
    }

    #[test]
    fn environment_defaults_and_overrides() {
        let vars = environment(&["PATH=/bin".into(), "A=b=c".into()]).unwrap();
        assert_eq!(vars, [b"HOME=/root".to_vec(), b"PATH=/bin".to_vec(), b"A=b=c".to_vec()]);
        assert!(environment(&["=x".into()]).is_err());
        assert!(environment(&["FLINT_SURELY_UNSET_VARIABLE".into()]).is_err());
    }
}
