//! Describing a QEMU VM and running it to completion with a deadline.

use crate::env;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
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
    pub extra_args: Vec<String>,
    /// ACPI tables for the guest (QEMU's default). Off only on microvm, whose devices QEMU
    /// then names on the kernel command line (`virtio_mmio.device=`).
    pub acpi: bool,
    /// Whether QEMU may back the guest's RAM with transparent huge pages (it asks for them).
    /// Off, the host kernel is told not to for QEMU's process (`PR_SET_THP_DISABLE`, which
    /// no shell command line can say).
    pub huge_pages: bool,
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
            extra_args: Vec::new(),
            huge_pages: true,
            acpi: true,
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
            "-bios".into(),
            self.firmware.display().to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
        ];
        match &self.serial {
            Serial::Stdio => args.extend(["-serial".into(), "stdio".into()]),
            // Appending, so that /dev/stderr redirected to a file is not truncated.
            Serial::File(path) => args.extend([
                "-chardev".into(),
                format!("file,id=flint-com1,path={},append=on", option_value(path)),
                "-serial".into(),
                "chardev:flint-com1".into(),
            ]),
            Serial::None => args.extend(["-serial".into(), "none".into()]),
        }
        if let Some(cpu) = &self.cpu {
            args.extend(["-cpu".into(), cpu.clone()]);
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
            args.extend(["-fw_cfg".into(), format!("name={name},string={value}")]);
        }
        // On microvm each device takes the free virtio-mmio transport that QEMU describes first
        // to the guest (in the ACPI tables, or in `virtio_mmio.device=` without ACPI), and
        // Linux numbers virtio devices in that order. The ports' controller goes first so that
        // it is virtio0 and its ports are /dev/vport0pN, as on pc and q35.
        if self.machine == Machine::Microvm {
            self.port_args(&mut args);
            self.drive_args(&mut args);
        } else {
            self.drive_args(&mut args);
            self.port_args(&mut args);
        }
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
            let file = format!("file={},format=raw{ro}", drive.path.display());
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
                PortBackend::Socket(path) => format!("socket,id={id},path={}", option_value(path)),
                PortBackend::File(path) => format!("file,id={id},path={},append=on", option_value(path)),
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

    pub fn command(&self) -> Command {
        let mut command = Command::new(QEMU);
        command.args(self.args());
        if !self.huge_pages {
            without_huge_pages(&mut command);
        }
        command
    }

    /// Runs the VM with no input, capturing COM1, killing it at the deadline.
    pub fn run(&self, deadline: Duration) -> io::Result<Outcome> {
        let start = Instant::now();
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}")))?;
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

/// A path as a QEMU option value: commas are doubled, as QEMU's option parser wants.
fn option_value(path: &std::path::Path) -> String {
    path.display().to_string().replace(',', ",,")
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
        vm.drives = vec![Drive { path: "/root.ext4".into(), read_only: true }];
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
