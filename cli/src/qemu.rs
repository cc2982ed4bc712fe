//! Describing a QEMU VM and running it to completion with a deadline.

use crate::env;
use std::ffi::CStr;
use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// The i440FX PC: virtio on PCI, whose interrupt routing Linux reads from ACPI code.
    Pc,
    /// The Q35 PC: virtio on PCI Express.
    Q35,
    /// QEMU's `microvm`: no PCI, virtio devices on virtio-mmio transports, ACPI on.
    Microvm,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm",
        }
    }

    /// Kernel parameters a Linux guest needs on this machine under `accel`. microvm has no
    /// HPET and no ACPI PM timer, so under TCG Linux can calibrate the TSC against the PIT
    /// only, which fails now and then on a busy host (the TCG vCPU's timing is the host
    /// scheduler's); Linux then marks the TSC unstable and the boot hangs. A TCG guest's TSC
    /// runs at the host's rate, so the host's rate is passed instead. For the same reason
    /// the TSC, microvm's only clocksource, is declared reliable: with two vCPUs on a busy
    /// host, the kernel's TSC synchronisation check can fail too, and a busy host then saw
    /// a vCPU stall for a minute. (KVM has kvmclock.)
    pub fn kernel_params(self, accel: &str) -> Vec<String> {
        match self {
            Machine::Microvm if accel == "tcg" => {
                vec![format!("tsc_early_khz={}", host_tsc_khz()), "tsc=reliable".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// The host's TSC rate in kHz, measured once per host boot (remembered in the cache) against
/// the monotonic clock over 10 ms: each end is the tightest of a few (TSC, clock, TSC)
/// readings, so the error is a few parts per million.
pub fn host_tsc_khz() -> u64 {
    static KHZ: OnceLock<u64> = OnceLock::new();
    *KHZ.get_or_init(|| {
        // Measured once per host boot: the rate does not change while the host runs.
        let boot = env::boot_id();
        if let Some(khz) = env::recall("tsc-khz", &boot).and_then(|khz| khz.parse().ok()) {
            return khz;
        }
        let reading = || {
            (0..5)
                .map(|_| {
                    let before = tsc();
                    let now = Instant::now();
                    let after = tsc();
                    (after - before, before / 2 + after / 2, now)
                })
                .min_by_key(|&(spread, _, _)| spread)
                .expect("five readings")
        };
        let (_, start_tsc, start) = reading();
        thread::sleep(Duration::from_millis(10));
        let (_, end_tsc, end) = reading();
        let nanos = (end - start).as_nanos();
        let khz = ((end_tsc - start_tsc) as u128 * 1_000_000 / nanos) as u64;
        env::remember("tsc-khz", &boot, &khz.to_string());
        khz
    })
}

fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter, which Linux lets user space read.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A disk attached as virtio-blk-pci.
#[derive(Clone, Debug)]
pub struct Drive {
    pub path: PathBuf,
    pub read_only: bool,
    /// Writable for the guest, but its writes go to a temporary layer QEMU drops at exit
    /// (`snapshot=on`): the file stays as it is.
    pub throwaway_writes: bool,
}

impl Drive {
    pub fn new(path: impl Into<PathBuf>, read_only: bool) -> Drive {
        Drive { path: path.into(), read_only, throwaway_writes: false }
    }
}

/// A host directory for the guest, tagged `tag` (the guest mounts it by that name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub kind: ShareKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareKind {
    /// vhost-user-fs, served by a virtiofsd listening on `socket`: the guest's RAM must then
    /// be shared memory the daemon maps.
    VirtioFs { socket: PathBuf },
    /// virtio-9p, served by QEMU from `path` (as the user QEMU runs as).
    NineP { path: PathBuf, read_only: bool },
}

/// Where COM1 (the kernel console) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// QEMU's stdio (`-serial stdio`), so `Vm::run` captures it.
    Stdio,
    /// Appended to a file; `/dev/stderr` works too.
    File(PathBuf),
    None,
}

/// What backs one virtio-serial port on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortBackend {
    /// A Unix socket that someone already listens on (QEMU connects to it as a client).
    Socket(PathBuf),
    /// Output written to a file (e.g. `/dev/stdout`); never has input.
    File(PathBuf),
    /// QEMU's own stdin and stdout (only one port may use it); the guest sees stdin's EOF as
    /// the host side closing.
    Stdio,
    /// Discards output and never has input.
    Null,
}

/// A `virtserialport` on the VM's one `virtio-serial-pci` controller. In the guest, ports are
/// `/dev/vport<N>p1`, `p2`, ... in the order they are listed, and `name` is in
/// `/sys/class/virtio-ports/*/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioPort {
    pub name: String,
    pub backend: PortBackend,
}

/// A TCP port forward on QEMU's user network: the host's `127.0.0.1:host` to the guest's
/// `guest` port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
}

#[derive(Clone, Debug)]
pub struct Vm {
    pub machine: Machine,
    pub accel: String,
    pub memory: String,
    pub cpus: u32,
    pub firmware: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub drives: Vec<Drive>,
    /// `-fw_cfg name=...,string=...` items, e.g. `opt/flint/log`.
    pub fw_cfg_strings: Vec<(String, String)>,
    /// isa-debug-exit at 0x501, so guest code can end QEMU with a status.
    pub debug_exit: bool,
    /// `-cpu` model; `None` leaves QEMU's default (right for TCG; KVM wants `host`).
    pub cpu: Option<String>,
    pub serial: Serial,
    pub virtio_ports: Vec<VirtioPort>,
    /// A virtio-net card on QEMU's user network (`-netdev user`), with these forwards;
    /// `None`: no network card at all.
    pub user_net: Option<Vec<Forward>>,
    /// Host directories, after the disks.
    pub shares: Vec<Share>,
    pub extra_args: Vec<String>,
    /// ACPI tables for the guest (QEMU's default). Off only on microvm, whose devices QEMU
    /// then names on the kernel command line (`virtio_mmio.device=`).
    pub acpi: bool,
    /// Whether QEMU may back the guest's RAM with transparent huge pages (it asks for them).
    /// Off, the host kernel is told not to for QEMU's process (`PR_SET_THP_DISABLE`, which
    /// no shell command line can say).
    pub huge_pages: bool,
    /// A backstop to the caller's own deadline: the kernel ends QEMU once it has used this
    /// much CPU time (`RLIMIT_CPU`), should the caller be stopped or hung. `None`: no limit.
    pub cpu_time: Option<Duration>,
    /// The run's temporary directory (files only, no subdirectories), which QEMU's watchdog
    /// empties and removes if flint dies first: a SIGKILLed flint leaves nothing behind.
    pub private_dir: Option<PathBuf>,
    /// The guest's RAM in this file rather than anonymous memory (a warm start's snapshot).
    pub ram_file: Option<RamFile>,
    /// A QMP monitor on a socket that flint listens on.
    pub qmp: Option<PathBuf>,
    /// Wait for the device state to come in over QMP's `migrate-incoming` (`-incoming defer`).
    pub incoming: bool,
    /// The user a QEMU started as root switches to (`-runas`) once its files are open;
    /// `None` keeps root (9p shares of root's directories, which QEMU accesses as itself).
    pub runas: Option<String>,
}

/// Guest RAM backed by a file.
#[derive(Clone, Debug)]
pub struct RamFile {
    pub path: PathBuf,
    /// Writes reach the file (`share=on`: the snapshot being made); else the file is mapped
    /// copy-on-write, and each VM's writes stay its own.
    pub shared: bool,
}

/// Makes the host kernel back none of `command`'s memory with transparent huge pages
/// (`PR_SET_THP_DISABLE`, kept across its exec).
fn without_huge_pages(command: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and changes only the child's own flag. A kernel
    // without the flag refuses it, and the program then runs as it would have anyway.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
            Ok(())
        });
    }
}

/// Ends QEMU when this process ends, however it ends (SIGKILL included): before its exec,
/// QEMU's process forks a watchdog that waits for the lifeline pipe to close (the kernel closes
/// its write end, which only this process holds, when the last of its threads is gone), then
/// kills QEMU. Not `PR_SET_PDEATHSIG` on QEMU itself: the kernel clears that when a process
/// changes its uid, which `-runas` does (measured: QEMU as `nobody` outlived a SIGKILLed
/// parent), and it fires when the spawning thread ends rather than the process. The
/// watchdog's own parent-death signal is tied to QEMU's main thread (the one that forked it),
/// so it never outlives QEMU. It first removes `private_dir`, which the dead process can no
/// longer remove itself.
pub(crate) fn die_with_this_process(command: &mut Command, private_dir: Option<&Path>) {
    let lifeline = lifeline();
    // Made here: the forked child must not allocate. A path with a NUL byte cannot exist.
    let private_dir = private_dir.and_then(|dir| std::ffi::CString::new(dir.as_os_str().as_bytes()).ok());
    // SAFETY: the closure runs in the forked child before exec and makes only raw system
    // calls, none of which allocates or takes a lock; the watchdog never returns from it.
    unsafe {
        command.pre_exec(move || {
            let lifeline = lifeline.map_err(io::Error::from_raw_os_error)?;
            let qemu = libc::getpid();
            // The raw system call: the watchdog needs none of libc's fork handlers.
            match libc::syscall(libc::SYS_fork) {
                -1 => Err(io::Error::last_os_error()),
                0 => watchdog(lifeline, qemu, private_dir.as_deref()),
                _ => Ok(()),
            }
        });
    }
}

/// The read end of a pipe whose write end stays open in this process, and in no other
/// (close-on-exec), until it ends; or why there is none.
fn lifeline() -> Result<RawFd, i32> {
    static PIPE: OnceLock<Result<(io::PipeReader, io::PipeWriter), i32>> = OnceLock::new();
    let pipe = PIPE.get_or_init(|| io::pipe().map_err(|e| e.raw_os_error().unwrap_or(libc::EMFILE)));
    pipe.as_ref().map(|(read, _)| read.as_raw_fd()).map_err(|&errno| errno)
}

/// The watchdog: once `lifeline` reads as closed, removes `private_dir` and kills `qemu`.
///
/// # Safety
/// Only in a child just forked by `qemu`, which it must be the only thread of.
unsafe fn watchdog(lifeline: RawFd, qemu: libc::pid_t, private_dir: Option<&CStr>) -> ! {
    // SAFETY: raw system calls on this process alone (its signals, name and descriptors), its
    // parent's pid, and `limit`, a local; the caller guarantees no other thread shares them.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != qemu {
            // QEMU ended (its exec failed) before the signal was set.
            libc::_exit(0);
        }
        // The terminal's signals reach the whole process group: QEMU decides for itself.
        for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM, libc::SIGTSTP] {
            libc::signal(signal, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"flint-watchdog".as_ptr());
        // Nothing else of the parent's stays open: its pipes (std's exec-error pipe, the
        // callers' output pipes) must close when QEMU's exec closes them. (Until then, the
        // parent's spawn waits: all of the above is in place when it returns.)
        libc::dup2(lifeline, 0);
        if libc::syscall(libc::SYS_close_range, 1 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) != 0 {
            // Linux before 5.9.
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            for fd in 1..limit.rlim_cur.min(1 << 20) as libc::c_int {
                libc::close(fd);
            }
        }
        let mut byte = 0u8;
        while libc::read(0, (&mut byte as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
        // Before the kill: QEMU's end kills the watchdog (its parent-death signal).
        if let Some(dir) = private_dir {
            remove_flat_dir(dir);
        }
        libc::kill(qemu, libc::SIGKILL);
        libc::_exit(0)
    }
}

/// Removes `dir` and the files in it with raw system calls only (no allocation: it runs in
/// the watchdog). Subdirectories are left, and so is `dir` then.
fn remove_flat_dir(dir: &CStr) {
    // SAFETY: open(2) with a NUL-terminated path.
    let fd =
        unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // linux_dirent64: inode (8 bytes), offset (8), record length (2), type (1), the name.
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let read = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if read <= 0 {
            break;
        }
        let bytes = &buf[..read as usize];
        let mut at = 0;
        while at + 19 < bytes.len() {
            let record = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
            if let Ok(name) = CStr::from_bytes_until_nul(&bytes[at + 19..]) {
                if !matches!(name.to_bytes(), b"." | b"..") {
                    // SAFETY: unlinkat(2) with a descriptor this function owns and a
                    // NUL-terminated name.
                    unsafe { libc::unlinkat(fd, name.as_ptr(), 0) };
                }
            }
            at += record.max(1);
        }
    }
    // SAFETY: the descriptor opened above, closed once; rmdir(2) with a NUL-terminated path.
    unsafe {
        libc::close(fd);
        libc::rmdir(dir.as_ptr());
    }
}

/// `RLIMIT_CPU` for `command`'s process, in whole seconds (rounded up), or the hard limit it
/// already has if that is lower.
fn limit_cpu_time(command: &mut Command, limit: Duration) {
    let seconds = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
    // SAFETY: getrlimit(2) and setrlimit(2) are async-signal-safe and touch only the child's
    // limits, which are only lowered (always allowed).
    unsafe {
        command.pre_exec(move || {
            let mut limit: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_CPU, &mut limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            limit.rlim_max = limit.rlim_max.min(seconds);
            limit.rlim_cur = limit.rlim_max;
            match libc::setrlimit(libc::RLIMIT_CPU, &limit) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
    }
}

/// A started QEMU, killed and reaped when dropped: no return path, an early error included,
/// leaves it running.
pub struct Running(Child);

impl Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl From<Child> for Running {
    fn from(child: Child) -> Running {
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Both do nothing once the child has been waited for.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Vm {
    pub fn new(firmware: impl Into<PathBuf>) -> Self {
        Vm {
            machine: Machine::Pc,
            accel: "tcg".into(),
            memory: "256M".into(),
            cpus: 1,
            firmware: firmware.into(),
            kernel: None,
            initrd: None,
            append: None,
            drives: Vec::new(),
            fw_cfg_strings: Vec::new(),
            debug_exit: true,
            cpu: None,
            serial: Serial::Stdio,
            virtio_ports: Vec::new(),
            user_net: None,
            shares: Vec::new(),
            extra_args: Vec::new(),
            huge_pages: true,
            acpi: true,
            cpu_time: None,
            private_dir: None,
            ram_file: None,
            qmp: None,
            incoming: false,
            runas: Some("nobody".into()),
        }
    }

    /// The arguments after the program name. `-nodefaults` drops the VGA card, NIC and
    /// floppy/CD-ROM that a one-shot VM never uses; COM1 goes where `serial` says.
    pub fn args(&self) -> Vec<String> {
        let machine =
            if self.acpi { self.machine.name().to_string() } else { format!("{},acpi=off", self.machine.name()) };
        let mut args: Vec<String> = vec![
            "-M".into(),
            machine,
            "-accel".into(),
            self.accel.clone(),
            "-m".into(),
            self.memory.clone(),
            "-smp".into(),
            self.cpus.to_string(),
            // -bios, -kernel and -initrd are machine properties that QEMU takes verbatim:
            // doubled commas would be part of the name.
            "-bios".into(),
            self.firmware.display().to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
        ];
        // SAFETY: geteuid(2) cannot fail and has no side effects.
        let runas = (unsafe { libc::geteuid() } == 0).then_some(self.runas.as_deref()).flatten();
        args.extend(confinement(runas));
        match &self.serial {
            Serial::Stdio => args.extend(["-serial".into(), "stdio".into()]),
            // Appending, so that /dev/stderr redirected to a file is not truncated.
            Serial::File(path) => args.extend([
                "-chardev".into(),
                format!("file,id=flint-com1,path={},append=on", path_value(path)),
                "-serial".into(),
                "chardev:flint-com1".into(),
            ]),
            Serial::None => args.extend(["-serial".into(), "none".into()]),
        }
        if let Some(cpu) = &self.cpu {
            args.extend(["-cpu".into(), cpu.clone()]);
        }
        if let Some(ram) = &self.ram_file {
            let share = if ram.shared { "on" } else { "off" };
            args.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id=flint-ram,size={},mem-path={},share={share}",
                    self.memory,
                    path_value(&ram.path)
                ),
                "-machine".into(),
                "memory-backend=flint-ram".into(),
            ]);
        } else if self.shares.iter().any(|share| matches!(share.kind, ShareKind::VirtioFs { .. })) {
            // virtiofsd reads and writes the guest's buffers in its RAM directly.
            args.extend([
                "-object".into(),
                format!("memory-backend-memfd,id=flint-ram,size={},share=on", self.memory),
                "-machine".into(),
                "memory-backend=flint-ram".into(),
            ]);
        }
        if let Some(qmp) = &self.qmp {
            args.extend([
                "-chardev".into(),
                format!("socket,id=flint-qmp,path={}", path_value(qmp)),
                "-mon".into(),
                "chardev=flint-qmp,mode=control".into(),
            ]);
        }
        if self.incoming {
            args.extend(["-incoming".into(), "defer".into()]);
        }
        if let Some(kernel) = &self.kernel {
            args.extend(["-kernel".into(), kernel.display().to_string()]);
        }
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        if let Some(append) = &self.append {
            args.extend(["-append".into(), append.clone()]);
        }
        for (name, value) in &self.fw_cfg_strings {
            args.extend(["-fw_cfg".into(), format!("name={},string={}", option_value(name), option_value(value))]);
        }
        // On microvm each device takes the free virtio-mmio transport that QEMU describes first
        // to the guest (in the ACPI tables, or in `virtio_mmio.device=` without ACPI), and
        // Linux numbers virtio devices in that order. The ports' controller goes first so that
        // it is virtio0 and its ports are /dev/vport0pN, as on pc and q35. The network card
        // comes last, so that it changes nothing of the others.
        if self.machine == Machine::Microvm {
            self.port_args(&mut args);
            self.drive_args(&mut args);
        } else {
            self.drive_args(&mut args);
            self.port_args(&mut args);
        }
        self.net_args(&mut args);
        self.share_args(&mut args);
        if self.debug_exit {
            args.extend(["-device".into(), "isa-debug-exit,iobase=0x501,iosize=1".into()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The disks, as virtio-blk.
    fn drive_args(&self, args: &mut Vec<String>) {
        for (index, drive) in self.drives.iter().enumerate() {
            let ro = if drive.read_only { ",readonly=on" } else { "" };
            let snapshot = if drive.throwaway_writes { ",snapshot=on" } else { "" };
            let file = format!("file={},format=raw{ro}{snapshot}", path_value(&drive.path));
            match self.machine {
                Machine::Pc | Machine::Q35 => args.extend(["-drive".into(), format!("{file},if=virtio")]),
                // No PCI bus for `if=virtio` (virtio-blk-pci): the disk goes on a virtio-mmio
                // transport.
                Machine::Microvm => args.extend([
                    "-drive".into(),
                    format!("{file},if=none,id=flint-disk{index}"),
                    "-device".into(),
                    format!("virtio-blk-device,drive=flint-disk{index}"),
                ]),
            }
        }
    }

    /// The network card and QEMU's user network behind it. Forwards listen on the host's
    /// loopback only: the guest's services are for this host's programs.
    fn net_args(&self, args: &mut Vec<String>) {
        let Some(forwards) = &self.user_net else { return };
        let mut netdev = String::from("user,id=flint-net");
        for Forward { host, guest } in forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let card = match self.machine {
            // No option ROM: flint's firmware runs none, and QEMU need not find the file.
            Machine::Pc | Machine::Q35 => "virtio-net-pci,netdev=flint-net,romfile=",
            Machine::Microvm => "virtio-net-device,netdev=flint-net",
        };
        args.extend(["-netdev".into(), netdev, "-device".into(), card.into()]);
    }

    /// The shared directories, on the machine's virtio transport.
    fn share_args(&self, args: &mut Vec<String>) {
        let pci = self.machine != Machine::Microvm;
        if !pci && self.shares.iter().any(|share| matches!(share.kind, ShareKind::VirtioFs { .. })) {
            // virtiofsd (libvhost-user) serves modern virtio only, and microvm's transports
            // are legacy unless told otherwise.
            args.extend(["-global".into(), "virtio-mmio.force-legacy=off".into()]);
        }
        for (index, share) in self.shares.iter().enumerate() {
            let id = format!("flint-share{index}");
            let tag = option_value(&share.tag);
            match &share.kind {
                ShareKind::VirtioFs { socket } => args.extend([
                    "-chardev".into(),
                    format!("socket,id={id},path={}", path_value(socket)),
                    "-device".into(),
                    format!("vhost-user-fs-{},chardev={id},tag={tag}", if pci { "pci" } else { "device" }),
                ]),
                ShareKind::NineP { path, read_only } => args.extend([
                    "-fsdev".into(),
                    format!(
                        "local,id={id},path={},security_model=none{}",
                        path_value(path),
                        if *read_only { ",readonly=on" } else { "" }
                    ),
                    "-device".into(),
                    format!("virtio-9p-{},fsdev={id},mount_tag={tag}", if pci { "pci" } else { "device" }),
                ]),
            }
        }
    }

    /// The virtio-serial controller and its ports.
    fn port_args(&self, args: &mut Vec<String>) {
        if !self.virtio_ports.is_empty() {
            // Linux sets up two virtqueues for every port the controller can have (31 by
            // default), so it gets only as many as there are ports; number 0 is reserved.
            let max_ports = self.virtio_ports.len() + 1;
            // Without ioeventfd, QEMU handles the guest's "data queued" notification before the
            // guest's write() returns, so data written just before the guest ends the VM
            // (the workload's last output, the status line) has reached the host already.
            match self.machine {
                Machine::Pc | Machine::Q35 => args.extend([
                    "-device".into(),
                    format!("virtio-serial-pci,id=flint-vser,max_ports={max_ports},ioeventfd=off"),
                ]),
                // There the option belongs to the virtio-mmio transports, which the machine
                // creates itself.
                Machine::Microvm => args.extend([
                    "-device".into(),
                    format!("virtio-serial-device,id=flint-vser,max_ports={max_ports}"),
                    "-global".into(),
                    "virtio-mmio.ioeventfd=off".into(),
                ]),
            }
        }
        for (index, port) in self.virtio_ports.iter().enumerate() {
            let id = format!("flint-port{index}");
            let chardev = match &port.backend {
                PortBackend::Socket(path) => format!("socket,id={id},path={}", path_value(path)),
                PortBackend::File(path) => format!("file,id={id},path={},append=on", path_value(path)),
                PortBackend::Stdio => format!("stdio,id={id},signal=off"),
                PortBackend::Null => format!("null,id={id}"),
            };
            args.extend([
                "-chardev".into(),
                chardev,
                "-device".into(),
                format!("virtserialport,bus=flint-vser.0,nr={},chardev={id},name={}", index + 1, port.name),
            ]);
        }
    }

    /// The whole command as one line a POSIX shell runs unchanged (for `flint run --print-cmd`).
    pub fn shell_command(&self) -> String {
        std::iter::once(QEMU.to_string()).chain(self.args()).map(|arg| shell_quote(&arg)).collect::<Vec<_>>().join(" ")
    }

    /// QEMU's command; the QEMU it starts dies with this process (see `die_with_this_process`).
    pub fn command(&self) -> Command {
        let mut command = Command::new(QEMU);
        command.args(self.args());
        if !self.huge_pages {
            without_huge_pages(&mut command);
        }
        if let Some(limit) = self.cpu_time {
            limit_cpu_time(&mut command, limit);
        }
        die_with_this_process(&mut command, self.private_dir.as_deref());
        // A process group of its own: a terminal's Ctrl-C (SIGINT to the foreground group)
        // goes to flint alone, which forwards it to the workload instead of QEMU quitting.
        command.process_group(0);
        command
    }

    /// Starts QEMU, to be killed and reaped however the caller returns.
    pub fn spawn(&self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> io::Result<Running> {
        let child = self
            .command()
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}")))?;
        Ok(Running(child))
    }

    /// Runs the VM with no input, capturing COM1, killing it at the deadline.
    pub fn run(&self, deadline: Duration) -> io::Result<Outcome> {
        let start = Instant::now();
        let mut child = self.spawn(Stdio::null(), Stdio::piped(), Stdio::piped())?;
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let status = match child.wait_timeout(deadline)? {
            Some(status) => Some(status),
            None => {
                child.kill()?;
                child.wait()?;
                None
            }
        };
        let elapsed = start.elapsed();
        Ok(Outcome {
            status,
            console: stdout.join().expect("reader thread")?,
            qemu_stderr: stderr.join().expect("reader thread")?,
            elapsed,
        })
    }
}

/// A value inside a QEMU option string (`-drive`, `-chardev`, `-fw_cfg`): commas are doubled,
/// or QEMU reads what follows one as further options (`file=a,snapshot=on.img`).
fn option_value(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_value(path: &Path) -> String {
    option_value(&path.display().to_string())
}

/// QEMU's seccomp filter (`-sandbox`): no obsolete system calls, no new processes, no
/// scheduler or resource changes. Started as root, QEMU also becomes `runas` (normally
/// `nobody`) once it has opened its files and connected its sockets (`-runas`). It does so
/// after installing the filter, so the filter must then allow set*uid (`elevateprivileges`;
/// QEMU 7.2 dies of SIGSYS otherwise); a QEMU that does not switch gets them denied.
fn confinement(runas: Option<&str>) -> Vec<String> {
    let sandbox = "on,obsolete=deny,spawn=deny,resourcecontrol=deny";
    match runas {
        Some(user) => vec!["-sandbox".into(), sandbox.into(), "-runas".into(), user.into()],
        None => vec!["-sandbox".into(), format!("{sandbox},elevateprivileges=deny")],
    }
}

/// Quotes `arg` for a POSIX shell, leaving plainly safe words alone.
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Reads a pipe to its end in a thread, so the child never blocks on a full pipe.
pub(crate) fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut data = Vec::new();
        pipe.read_to_end(&mut data)?;
        Ok(data)
    })
}

#[derive(Debug)]
pub struct Outcome {
    /// `None` when the deadline killed QEMU.
    pub status: Option<ExitStatus>,
    pub console: Vec<u8>,
    pub qemu_stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_runs_without_huge_pages() {
        let thp = |command: &mut Command| {
            let status = command.args(["THP_enabled", "/proc/self/status"]).output().unwrap();
            String::from_utf8(status.stdout).unwrap().split_whitespace().last().map(str::to_string)
        };
        let mut command = Command::new("grep");
        without_huge_pages(&mut command);
        assert_eq!(thp(&mut command).as_deref(), Some("0"));
        // The flag is the child's: this process and its other children keep theirs.
        assert_eq!(thp(&mut Command::new("grep")).as_deref(), Some("1"));
    }

    /// The state letter of a process (`Z` for a zombie), or `None` once it is gone.
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
    }

    #[test]
    fn the_watchdog_lives_as_long_as_its_process_and_holds_no_pipe() {
        let mut command = Command::new("sleep");
        command.arg("60");
        die_with_this_process(&mut command, None);
        let mut child = command.spawn().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
        let watchdog: u32 = children.trim().parse().expect("one child, the watchdog");
        let comm = std::fs::read_to_string(format!("/proc/{watchdog}/comm")).unwrap();
        assert_eq!(comm.trim(), "flint-watchdog");
        child.kill().unwrap();
        child.wait().unwrap();
        let start = Instant::now();
        while !matches!(state(watchdog), None | Some('Z')) {
            assert!(start.elapsed() < Duration::from_secs(2), "the watchdog outlived its process");
            thread::sleep(Duration::from_millis(10));
        }
        // The output pipe closes with the program: the watchdog kept no copy of it.
        let mut command = Command::new("echo");
        command.arg("done");
        die_with_this_process(&mut command, None);
        assert_eq!(command.output().unwrap().stdout, b"done\n");
    }

    #[test]
    fn a_flat_directory_is_removed_with_raw_calls() {
        let temp = env::TempDir::new("flint-flat-test").unwrap();
        let dir = temp.path();
        // More names than one getdents64 buffer holds.
        for i in 0..300 {
            std::fs::write(dir.join(format!("file-with-a-long-name-{i:04}")), b"x").unwrap();
        }
        std::os::unix::net::UnixListener::bind(dir.join("port.sock")).unwrap();
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        remove_flat_dir(&path);
        assert!(!dir.exists());
    }

    #[test]
    fn a_dropped_qemu_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        drop(Running(child));
        assert_eq!(state(pid), None);
    }

    #[test]
    fn qemu_is_sandboxed_and_drops_root() {
        let sandbox = "on,obsolete=deny,spawn=deny,resourcecontrol=deny";
        assert_eq!(confinement(Some("nobody")), ["-sandbox", sandbox, "-runas", "nobody"]);
        assert_eq!(confinement(None), ["-sandbox".to_string(), format!("{sandbox},elevateprivileges=deny")]);
        assert!(Vm::new("/fw.bin").args().join(" ").contains(" -sandbox on,"));
    }

    /// Option strings double commas; -bios, -kernel and -initrd take the path as it is (QEMU 7.2
    /// fails to open `a,,b` there).
    #[test]
    fn commas_in_paths_are_escaped_where_qemu_parses_options() {
        let mut vm = Vm::new("/fw,1.bin");
        vm.kernel = Some("/k,1".into());
        vm.initrd = Some("/i,1".into());
        vm.drives = vec![Drive::new("/a,snapshot=on.img", false)];
        vm.fw_cfg_strings = vec![("opt/x".into(), "a,b".into())];
        let args = vm.args();
        for (option, value) in [
            ("-bios", "/fw,1.bin"),
            ("-kernel", "/k,1"),
            ("-initrd", "/i,1"),
            ("-drive", "file=/a,,snapshot=on.img,format=raw,if=virtio"),
            ("-fw_cfg", "name=opt/x,string=a,,b"),
        ] {
            assert!(args.windows(2).any(|pair| pair == [option, value]), "{option} {value} not in {args:?}");
        }
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        for arg in ["plain-word_1.2/x:y=z,w", "", "a b", "it's", "$HOME `x` \"q\" \\", "line\nbreak"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(arg)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
        }
        assert_eq!(shell_quote("-append"), "-append");
    }

    #[test]
    fn host_tsc_rate_is_measured_consistently() {
        let khz = host_tsc_khz();
        assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
        assert_eq!(Machine::Microvm.kernel_params("tcg"), [format!("tsc_early_khz={khz}"), "tsc=reliable".into()]);
        assert!(Machine::Microvm.kernel_params("kvm").is_empty());
        assert!(Machine::Pc.kernel_params("tcg").is_empty());
    }

    #[test]
    fn microvm_puts_the_ports_then_the_disks_on_virtio_mmio() {
        let mut vm = Vm::new("/fw.bin");
        vm.machine = Machine::Microvm;
        vm.drives = vec![Drive::new("/root.ext4", true)];
        vm.virtio_ports = vec![VirtioPort { name: "flint.status".into(), backend: PortBackend::Null }];
        let args = vm.args().join(" ");
        let ports =
            args.find("-device virtio-serial-device,id=flint-vser,max_ports=2 -global virtio-mmio.ioeventfd=off");
        let disk = args.find(
            "-drive file=/root.ext4,format=raw,readonly=on,if=none,id=flint-disk0 -device virtio-blk-device,drive=flint-disk0",
        );
        assert!(ports.is_some() && disk.is_some() && ports < disk, "{args}");
        assert!(!args.contains("-pci") && !args.contains("if=virtio"), "{args}");
    }

    #[test]
    fn the_user_network_is_added_only_when_asked_for() {
        let mut vm = Vm::new("/fw.bin");
        vm.machine = Machine::Microvm;
        vm.drives = vec![Drive::new("/root.ext4", true)];
        vm.virtio_ports = vec![VirtioPort { name: "flint.status".into(), backend: PortBackend::Null }];
        assert!(!vm.args().join(" ").contains("-netdev"));
        vm.user_net = Some(vec![Forward { host: 8080, guest: 80 }, Forward { host: 2222, guest: 22 }]);
        let args = vm.args().join(" ");
        let net = args.find(
            "-netdev user,id=flint-net,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-device,netdev=flint-net",
        );
        // The ports' controller stays first on virtio-mmio, and the disk stays vda.
        let (ports, disk) = (args.find("virtio-serial-device"), args.find("virtio-blk-device"));
        assert!(net.is_some() && ports < disk && disk < net, "{args}");
        vm.machine = Machine::Q35;
        vm.user_net = Some(Vec::new());
        let args = vm.args().join(" ");
        assert!(args.contains("-netdev user,id=flint-net -device virtio-net-pci,netdev=flint-net,romfile="), "{args}");
    }

    #[test]
    fn shares_come_after_the_disks_with_what_their_transport_needs() {
        let mut vm = Vm::new("/fw.bin");
        vm.machine = Machine::Microvm;
        vm.drives = vec![Drive::new("/root.ext4", true)];
        vm.shares =
            vec![Share { tag: "flint-vol0".into(), kind: ShareKind::VirtioFs { socket: "/run/x/v,0.sock".into() } }];
        let args = vm.args().join(" ");
        let disk = args.find("-device virtio-blk-device").unwrap();
        let share = args.find("-chardev socket,id=flint-share0,path=/run/x/v,,0.sock -device vhost-user-fs-device,chardev=flint-share0,tag=flint-vol0").unwrap();
        assert!(disk < share, "{args}");
        assert!(
            args.contains(
                "-object memory-backend-memfd,id=flint-ram,size=256M,share=on -machine memory-backend=flint-ram"
            ),
            "{args}"
        );
        assert!(args.contains("-global virtio-mmio.force-legacy=off"), "{args}");
        vm.machine = Machine::Pc;
        vm.shares =
            vec![Share { tag: "flint-vol0".into(), kind: ShareKind::NineP { path: "/srv".into(), read_only: true } }];
        let args = vm.args().join(" ");
        assert!(args.contains("-fsdev local,id=flint-share0,path=/srv,security_model=none,readonly=on -device virtio-9p-pci,fsdev=flint-share0,mount_tag=flint-vol0"), "{args}");
        assert!(!args.contains("memory-backend") && !args.contains("force-legacy"), "{args}");
        // Without shares, nothing of theirs.
        let args = Vm::new("/fw.bin").args().join(" ");
        assert!(!args.contains("memory-backend") && !args.contains("force-legacy"), "{args}");
    }

    #[test]
    fn ports_and_serial_become_chardevs() {
        let mut vm = Vm::new("/fw.bin");
        vm.serial = Serial::File("/tmp/a,b/console.log".into());
        vm.virtio_ports = vec![
            VirtioPort { name: "flint.stdin".into(), backend: PortBackend::Stdio },
            VirtioPort { name: "flint.stdout".into(), backend: PortBackend::Socket("/run/x/out.sock".into()) },
            VirtioPort { name: "flint.status".into(), backend: PortBackend::Null },
        ];
        let args = vm.args().join(" ");
        for expected in [
            "-chardev file,id=flint-com1,path=/tmp/a,,b/console.log,append=on -serial chardev:flint-com1",
            "-device virtio-serial-pci,id=flint-vser,max_ports=4,ioeventfd=off",
            "-chardev stdio,id=flint-port0,signal=off -device virtserialport,bus=flint-vser.0,nr=1,chardev=flint-port0,name=flint.stdin",
            "-chardev socket,id=flint-port1,path=/run/x/out.sock -device virtserialport,bus=flint-vser.0,nr=2,chardev=flint-port1,name=flint.stdout",
            "-chardev null,id=flint-port2 -device virtserialport,bus=flint-vser.0,nr=3,chardev=flint-port2,name=flint.status",
        ] {
            assert!(args.contains(expected), "{expected:?} not in {args}");
        }
        assert!(Vm::new("/fw.bin").args().join(" ").contains("-serial stdio"));
    }
}
