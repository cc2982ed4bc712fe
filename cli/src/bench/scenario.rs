//! The scenarios and, for each, the cases to time: one QEMU command per (firmware, kernel),
//! and what its ending must look like for the run to count.

use super::exit_stub::Entry;
use super::firmware::{Firmware, KernelForm};
use super::guest::{self, KernelInputs};
use super::report::Status;
use super::{entry64_stop, floor_rom, null_bzimage, null_pvh, write_input};
use crate::env;
use crate::image::{Format, ImageArgs};
use crate::kernel::Kernel;
use crate::qemu::{Drive, Machine, Outcome, Vm};
use crate::rootfs;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// Null kernels that exit at their entry point, and the floor: firmware overhead alone.
    Null,
    /// Debian's cloud kernel stopped at its 64-bit entry, and the floor: each firmware's road
    /// into a real Linux, its 16-bit setup included where a firmware enters there.
    KernelEntry,
    /// Debian's cloud kernel runs `true` from an ext4 root on virtio-blk.
    Debian,
    /// The same with Debian's generic kernel (a Debian host's default, `flint kernel debian-generic`).
    DebianGeneric,
    /// The same with flint's minimal kernel (`flint kernel minimal`).
    Minimal,
}

impl ScenarioName {
    pub const ALL: [ScenarioName; 5] = [
        ScenarioName::Null,
        ScenarioName::KernelEntry,
        ScenarioName::Debian,
        ScenarioName::DebianGeneric,
        ScenarioName::Minimal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::Null => "null",
            ScenarioName::KernelEntry => "kernel-entry",
            ScenarioName::Debian => "debian",
            ScenarioName::DebianGeneric => "debian-generic",
            ScenarioName::Minimal => "minimal",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            ScenarioName::Null => {
                "null kernels that exit at their entry point; the floor is a ROM that exits at the reset vector"
            }
            ScenarioName::KernelEntry => {
                "Debian's cloud kernel stopped at startup_64, its 64-bit entry: each firmware's road into Linux"
            }
            ScenarioName::Debian => {
                "Debian's cloud kernel runs `true` from an ext4 root on virtio-blk, then powers off"
            }
            ScenarioName::DebianGeneric => {
                "Debian's generic kernel runs `true` from an ext4 root on virtio-blk, then powers off"
            }
            ScenarioName::Minimal => {
                "flint's minimal kernel runs `true` from an ext4 root on virtio-blk, then powers off"
            }
        }
    }
}

/// The same virtual machine for every firmware.
const MEMORY: &str = "256M";
/// Generous: OVMF alone takes seconds under TCG, and the machine may be busy. (OVMF that
/// cannot boot a kernel waits at its shell prompt until the deadline.)
const NULL_DEADLINE: Duration = Duration::from_secs(60);
const KERNEL_DEADLINE: Duration = Duration::from_secs(120);
/// The status flint's firmware ends with for a kernel without a bzImage header.
const FLINT_NOT_A_KERNEL: i32 = 2 * 18 + 1;
/// flint's guest init ends the VM through isa-debug-exit with the workload's status, 0.
const FLINT_INIT_SUCCESS: i32 = 1;

/// The row label of the floor ROM, which is no firmware.
pub const FLOOR: &str = "floor";

pub struct Case {
    pub firmware: &'static str,
    pub kernel: String,
    /// Rows are compared (floor, flint's reference) within one machine.
    pub machine: Machine,
    /// Who runs the workload, in the kernel scenarios.
    pub init: Option<&'static str>,
    pub plan: Plan,
}

pub enum Plan {
    Run(Box<Run>),
    /// `flint run` itself, the whole process timed (some at once).
    Process(Box<Process>),
    /// Decided without booting: unsupported, not installed, or bound to fail.
    NotRun(Status),
}

pub struct Run {
    pub vm: Vm,
    pub deadline: Duration,
    /// Where flint's init writes its timeline (COM2), for the per-phase figures.
    pub status_file: Option<PathBuf>,
    expect: Expect,
    /// A QEMU exit status that means "this firmware cannot boot this kernel", and why.
    unsupported_when: Option<(i32, &'static str)>,
}

/// `parallel` copies of one `flint run` command at once; a sample is the time until the last
/// ends, and counts if every one exits 0.
pub struct Process {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub parallel: u32,
}

enum Expect {
    /// The entry (or the floor's reset vector) whose exit code ends QEMU.
    Entry(Entry),
    /// flint's guest init ran the workload and passed on its status 0.
    FlintInit,
    /// The busybox init printed its line and powered off (QEMU then exits 0).
    BusyboxInit,
}

pub enum Prepared {
    Cases(Vec<Case>),
    /// The scenario cannot run here, and why.
    Skipped(String),
}

pub struct Setup<'a> {
    pub flint: &'a Path,
    pub firmwares: &'a [Firmware],
    pub accel: &'a str,
    /// Where generated kernels, ROMs and initrds are written.
    pub inputs: &'a Path,
}

pub fn prepare(name: ScenarioName, setup: &Setup) -> Result<Prepared> {
    match name {
        ScenarioName::Null => null_cases(setup).map(Prepared::Cases),
        ScenarioName::KernelEntry => {
            kernel_entry_cases(setup, &Kernel::resolve(Some("debian-cloud"), None)?).map(Prepared::Cases)
        }
        ScenarioName::Debian => kernel_cases(setup, Kernel::resolve(Some("debian-cloud"), None)?).map(Prepared::Cases),
        ScenarioName::DebianGeneric => {
            kernel_cases(setup, Kernel::resolve(Some("debian-generic"), None)?).map(Prepared::Cases)
        }
        ScenarioName::Minimal => {
            if !env::cache_dir()?.join("kernels/minimal/vmlinuz").is_file() {
                return Ok(Prepared::Skipped(
                    "the minimal kernel is not built: run `flint kernel minimal` (compiles Linux, several minutes)"
                        .into(),
                ));
            }
            kernel_cases(setup, Kernel::resolve(Some("minimal"), None)?).map(Prepared::Cases)
        }
    }
}

fn null_cases(setup: &Setup) -> Result<Vec<Case>> {
    let bzimage = write_input(setup.inputs, "null.bzImage", &null_bzimage::image())?;
    let pvh = write_input(setup.inputs, "null-pvh.elf", &null_pvh::image())?;
    let kernels = [
        EntryKernel { text: KernelForm::BzImage.name(), detail: None, form: KernelForm::BzImage, path: bzimage },
        EntryKernel { text: KernelForm::Pvh.name(), detail: None, form: KernelForm::Pvh, path: pvh },
    ];
    floor_and_entry_cases(setup, &kernels, Firmware::null_entry)
}

/// `kernel`'s bzImage stopped at its 64-bit entry, where every firmware that boots it must end.
fn kernel_entry_cases(setup: &Setup, kernel: &Kernel) -> Result<Vec<Case>> {
    let image = std::fs::read(&kernel.image).with_context(|| format!("cannot read {}", kernel.image.display()))?;
    let stopped = entry64_stop::stopped_at_entry64(&image)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", kernel.image.display()))?;
    let path = write_input(setup.inputs, &format!("{}-entry64.bzImage", kernel.label.replace('/', "_")), &stopped)?;
    let kernels = [EntryKernel { text: &kernel.label, detail: Some("to startup_64"), form: KernelForm::BzImage, path }];
    floor_and_entry_cases(setup, &kernels, |firmware, _| match firmware {
        Firmware::Flint | Firmware::Qboot | Firmware::Seabios => Ok(Entry::Long64),
        Firmware::Ovmf => Err("OVMF starts this kernel through its EFI stub, another road to startup_64"),
    })
}

/// A kernel that ends QEMU at one of its entries, as a scenario's rows name it: `text`, with
/// `detail` and the machine in brackets.
struct EntryKernel<'a> {
    text: &'a str,
    detail: Option<&'static str>,
    form: KernelForm,
    path: PathBuf,
}

/// On each machine, the floor, then each firmware booting each of `kernels`, which must end at
/// the entry `entry` names for that firmware (or the row is not run, and says why).
fn floor_and_entry_cases(
    setup: &Setup,
    kernels: &[EntryKernel],
    entry: impl Fn(Firmware, KernelForm) -> Result<Entry, &'static str>,
) -> Result<Vec<Case>> {
    let floor = write_input(setup.inputs, "floor.rom", &floor_rom::image())?;
    let mut cases = Vec::new();
    // microvm too, flint run's default machine, with qboot, its own firmware (QEMU's
    // bios-microvm.bin); it has no PCI and QEMU builds its ACPI tables once, at start.
    for machine in [Machine::Pc, Machine::Microvm] {
        let microvm = machine == Machine::Microvm;
        let mut floor_vm = vm(&floor, setup.accel);
        floor_vm.machine = machine;
        cases.push(Case {
            firmware: FLOOR,
            kernel: if microvm { "none (microvm)" } else { "none" }.into(),
            machine,
            init: None,
            plan: Plan::Run(Box::new(Run {
                vm: floor_vm,
                deadline: NULL_DEADLINE,
                expect: Expect::Entry(Entry::ResetVector),
                status_file: None,
                unsupported_when: None,
            })),
        });
        let firmwares = setup.firmwares.iter().filter(|&&firmware| !microvm || firmware.runs_on_microvm());
        for kernel in kernels {
            for &firmware in firmwares.clone() {
                let plan = match (available(firmware, setup.flint), entry(firmware, kernel.form)) {
                    (Err(missing), _) => Plan::NotRun(missing),
                    (Ok(_), Err(reason)) => Plan::NotRun(Status::Unsupported { reason: reason.into() }),
                    (Ok(image), Ok(entry)) => {
                        let mut vm = vm(&image, setup.accel);
                        vm.machine = machine;
                        vm.kernel = Some(kernel.path.clone());
                        // flint's PVH support is new: an older image rejects the ELF.
                        let unsupported_when = (firmware == Firmware::Flint && kernel.form == KernelForm::Pvh)
                            .then_some((
                                FLINT_NOT_A_KERNEL,
                                "this fw.bin has no PVH support: it rejects the ELF as not a Linux kernel",
                            ));
                        Plan::Run(Box::new(Run {
                            vm,
                            deadline: NULL_DEADLINE,
                            status_file: None,
                            expect: Expect::Entry(entry),
                            unsupported_when,
                        }))
                    }
                };
                let details: Vec<&str> = kernel.detail.into_iter().chain(microvm.then_some("microvm")).collect();
                let kernel = if details.is_empty() {
                    kernel.text.to_string()
                } else {
                    format!("{} ({})", kernel.text, details.join(", "))
                };
                cases.push(Case { firmware: firmware.name(), kernel, machine, init: None, plan });
            }
        }
    }
    Ok(cases)
}

fn kernel_cases(setup: &Setup, kernel: Kernel) -> Result<Vec<Case>> {
    let root = rootfs::busybox_root()?;
    // flint also boots the kernel's vmlinux through its PVH entry, as `flint run` does by default.
    let pvh =
        if setup.firmwares.contains(&Firmware::Flint) { crate::vmlinux::pvh_image_or_note(&kernel)? } else { None };
    let inputs = guest::prepare(kernel, &root, setup.accel, setup.inputs)?;
    let mut cases = Vec::new();
    for &firmware in setup.firmwares {
        let flint = firmware == Firmware::Flint;
        let plan = match available(firmware, setup.flint) {
            Err(missing) => Plan::NotRun(missing),
            Ok(image) if flint => {
                let boot =
                    FlintBoot { kernel: Some(&inputs.kernel.image), inputs: &inputs.flint, machine: Machine::Pc };
                flint_plan(&image, &boot, &inputs, setup)?
            }
            Ok(image) => busybox_plan(&image, &inputs, Machine::Pc, setup),
        };
        let init = Some(if flint { "flint-init" } else { "busybox" });
        let kernel = inputs.kernel.label.clone();
        cases.push(Case { firmware: firmware.name(), kernel, machine: Machine::Pc, init, plan });
        // qboot is microvm's own firmware (QEMU's bios-microvm.bin): a user on microvm picks it.
        if let (Firmware::Qboot, Ok(image)) = (firmware, available(firmware, setup.flint)) {
            let plan = busybox_plan(&image, &inputs, Machine::Microvm, setup);
            let kernel = format!("{} (microvm)", inputs.kernel.label);
            cases.push(Case { firmware: firmware.name(), kernel, machine: Machine::Microvm, init, plan });
        }
        if let (true, Some(vmlinux), Ok(image)) = (flint, &pvh, available(firmware, setup.flint)) {
            for (machine, label) in
                [(Machine::Pc, "PVH"), (Machine::Q35, "PVH, q35"), (Machine::Microvm, "PVH, microvm")]
            {
                let flint_inputs = if machine == Machine::Microvm { &inputs.flint_microvm } else { &inputs.flint };
                let boot = FlintBoot { kernel: Some(vmlinux), inputs: flint_inputs, machine };
                let plan = flint_plan(&image, &boot, &inputs, setup)?;
                let kernel = format!("{} ({label})", inputs.kernel.label);
                cases.push(Case { firmware: firmware.name(), kernel, machine, init, plan });
            }
            for (format, label) in [(Format::Pvh, "PVH"), (Format::Uki, "UKI")] {
                let plan = disk_plan(&image, &inputs, format, setup)?;
                let kernel = format!("{} (disk image, {label})", inputs.kernel.label);
                cases.push(Case { firmware: firmware.name(), kernel, machine: Machine::Pc, init, plan });
            }
            let plan = flint_run_plan(&image, &inputs.kernel.label, setup)?;
            let kernel = format!("{} (flint run)", inputs.kernel.label);
            cases.push(Case { firmware: firmware.name(), kernel, machine: Machine::Microvm, init, plan });
            for (label, warm, parallel) in [
                ("flint process, cold", false, 1),
                ("flint process, --warm", true, 1),
                ("flint process, --warm, 2 at once", true, 2),
                ("flint process, --warm, 4 at once", true, 4),
            ] {
                let plan = flint_process_plan(&image, &inputs.kernel.label, setup, warm, parallel)?;
                let kernel = format!("{} ({label})", inputs.kernel.label);
                cases.push(Case { firmware: firmware.name(), kernel, machine: Machine::Microvm, init, plan });
            }
        }
    }
    Ok(cases)
}

/// The other firmwares' case: the busybox initramfs runs the workload on `machine`.
fn busybox_plan(image: &Path, inputs: &KernelInputs, machine: Machine, setup: &Setup) -> Plan {
    let busybox = if machine == Machine::Microvm { &inputs.busybox_microvm } else { &inputs.busybox };
    let mut vm = kernel_vm(image, inputs, setup.accel);
    vm.machine = machine;
    vm.initrd = Some(busybox.initrd.clone());
    vm.append = Some(busybox.cmdline.clone());
    Plan::Run(Box::new(Run {
        vm,
        deadline: KERNEL_DEADLINE,
        status_file: None,
        expect: Expect::BusyboxInit,
        unsupported_when: None,
    }))
}

/// How flint boots in one case: `kernel` through fw_cfg, or (`None`) from the disk image.
struct FlintBoot<'a> {
    kernel: Option<&'a Path>,
    inputs: &'a guest::FlintInputs,
    machine: Machine,
}

/// flint's case: its embedded init runs the workload.
fn flint_plan(image: &Path, boot: &FlintBoot, inputs: &KernelInputs, setup: &Setup) -> Result<Plan> {
    let bytes = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    if !embeds_init(&bytes) {
        let reason = format!("{} has no embedded guest init: build it with `flint build`", image.display());
        return Ok(Plan::NotRun(Status::Failed { reason }));
    }
    let mut vm = kernel_vm(image, inputs, setup.accel);
    vm.machine = boot.machine;
    vm.kernel = boot.kernel.map(Path::to_path_buf);
    if let Some(initrd) = &boot.inputs.initrd {
        vm.initrd = Some(initrd.clone());
        vm.fw_cfg_strings.push(("opt/flint/add-init".into(), "1".into()));
    }
    vm.append = Some(boot.inputs.cmdline.clone());
    Ok(flint_run(vm, setup.inputs, boot.machine != Machine::Microvm))
}

/// flint as `flint run --kernel KERNEL --memory 256M -- /bin/true` boots: its default machine,
/// command line and ACPI choices, on the same default root, with the memory every other case
/// gets (`flint run`'s own default is 512 MiB; a smaller guest boots a little faster).
fn flint_run_plan(image: &Path, kernel: &str, setup: &Setup) -> Result<Plan> {
    let status_file = case_status_file(setup.inputs);
    let firmware = image.to_string_lossy();
    let args = crate::cli::parse_run_args(&[
        "--kernel",
        kernel,
        "--firmware",
        &firmware,
        "--accel",
        setup.accel,
        "--memory",
        MEMORY,
        "--",
        guest::WORKLOAD,
    ])?;
    let vm = crate::run::unattended_vm(&args, &status_file)?;
    Ok(flint_init_plan(vm, Some(status_file)))
}

/// `flint run [--warm] --kernel KERNEL --memory 256M -- /bin/true`, the whole flint process
/// (its own work before and after QEMU included), `parallel` at once. A warm case makes its
/// snapshot here, untimed.
fn flint_process_plan(image: &Path, kernel: &str, setup: &Setup, warm: bool, parallel: u32) -> Result<Plan> {
    // Only the flint binary can run itself (the bench also runs inside test programs).
    let program = std::env::current_exe().ok().filter(|exe| exe.file_name().is_some_and(|name| name == "flint"));
    let Some(program) = program else {
        let reason = "the flint process rows need the `flint` program: run `flint bench`".to_string();
        return Ok(Plan::NotRun(Status::Unavailable { reason }));
    };
    let mut args: Vec<String> = ["--quiet", "run", "--kernel", kernel, "--firmware"].map(String::from).to_vec();
    args.push(image.to_string_lossy().into_owned());
    args.extend(["--accel", setup.accel, "--memory", MEMORY].map(String::from));
    if warm {
        args.push("--warm".into());
    }
    args.extend(["--".to_string(), guest::WORKLOAD.to_string()]);
    let process = Process { program, args, parallel };
    if warm {
        if let Status::Failed { reason } = process.run_once().1 {
            return Ok(Plan::NotRun(Status::Failed { reason: format!("making the warm snapshot: {reason}") }));
        }
    }
    Ok(Plan::Process(Box::new(process)))
}

impl Process {
    /// The command as a shell would run it (once).
    pub fn shell_command(&self) -> String {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().cloned())
            .map(|arg| crate::qemu::shell_quote(&arg))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the copies at once; the time until the last ended, and whether all succeeded.
    pub fn run_once(&self) -> (Duration, Status) {
        let start = std::time::Instant::now();
        let children: Vec<_> = (0..self.parallel)
            .map(|_| {
                std::process::Command::new(&self.program)
                    .args(&self.args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect();
        let mut status = Status::Ok;
        for child in children {
            let outcome = child.and_then(|child| child.wait_with_output());
            match outcome {
                Ok(output) if output.status.success() => {}
                Ok(output) => {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    let last = stderr.lines().last().unwrap_or("no message").to_string();
                    status = Status::Failed { reason: format!("flint exited {}: {last}", output.status) };
                }
                Err(error) => status = Status::Failed { reason: format!("cannot run flint: {error}") },
            }
        }
        (start.elapsed(), status)
    }
}

/// flint booting a disk image made by `flint image` (no `-kernel`), root on the same disk.
fn disk_plan(image: &Path, inputs: &KernelInputs, format: Format, setup: &Setup) -> Result<Plan> {
    let name = format!("{}-{format:?}.img", inputs.kernel.label.replace('/', "_")).to_lowercase();
    let disk = setup.inputs.join(name);
    let (kernel, root) = (&inputs.kernel.label, &inputs.root_image);
    let job = ImageArgs::for_bench(&disk, kernel, format, root, guest::STATUS_ON_COM2, "/bin/true");
    crate::image::image(&job)?;
    let mut vm = vm(image, setup.accel);
    vm.drives.push(Drive::new(disk, true));
    Ok(flint_run(vm, setup.inputs, true))
}

/// A flint case; with `status`, its init writes its timeline to COM2, a file of the case's own.
fn flint_run(mut vm: Vm, dir: &Path, status: bool) -> Plan {
    let status_file = status.then(|| case_status_file(dir));
    if let Some(file) = &status_file {
        vm.extra_args.extend(["-serial".into(), format!("file:{}", file.display())]);
        // The phases start from the firmware's stamps, which it takes only when asked.
        vm.fw_cfg_strings.push(("opt/flint/timeline".into(), "1".into()));
    }
    flint_init_plan(vm, status_file)
}

/// A run of `vm` that counts when flint's init ends it with status 0, its timeline read from
/// `status_file` if it has one.
fn flint_init_plan(vm: Vm, status_file: Option<PathBuf>) -> Plan {
    Plan::Run(Box::new(Run {
        vm,
        deadline: KERNEL_DEADLINE,
        status_file,
        expect: Expect::FlintInit,
        unsupported_when: None,
    }))
}

/// A file in `dir` of one case's own, for its init's status and timeline lines.
fn case_status_file(dir: &Path) -> PathBuf {
    static CASES: AtomicUsize = AtomicUsize::new(0);
    dir.join(format!("flint-{}.status", CASES.fetch_add(1, Ordering::Relaxed)))
}

/// Whether a firmware image carries the guest init: the newc entry named `init` that
/// firmware/build.rs packs (a 110-byte header starting "070701", then the name).
fn embeds_init(image: &[u8]) -> bool {
    image
        .windows(6)
        .enumerate()
        .any(|(at, magic)| magic == b"070701" && image.get(at + 110..at + 115) == Some(b"init\0"))
}

/// The firmware's image, or why it cannot run here.
fn available(firmware: Firmware, flint: &Path) -> Result<PathBuf, Status> {
    let image = firmware.image(flint);
    if image.is_file() {
        Ok(image)
    } else {
        Err(Status::Unavailable { reason: format!("{} is missing: {}", image.display(), firmware.install_hint()) })
    }
}

fn vm(firmware: &Path, accel: &str) -> Vm {
    let mut vm = Vm::new(firmware);
    vm.accel = accel.into();
    vm.cpu = (accel == "kvm").then(|| "host".into());
    vm.memory = MEMORY.into();
    vm
}

fn kernel_vm(firmware: &Path, inputs: &KernelInputs, accel: &str) -> Vm {
    let mut vm = vm(firmware, accel);
    vm.kernel = Some(inputs.kernel.image.clone());
    // Read-only: the image is flint's cached root, shared by every run.
    vm.drives.push(Drive::new(inputs.root_image.clone(), true));
    vm
}

impl Run {
    /// Whether `outcome` is the ending this run must have.
    pub fn judge(&self, outcome: &Outcome) -> Status {
        let Some(code) = outcome.exit_code() else {
            let what = if outcome.timed_out() {
                format!("did not end within {:?}", self.deadline)
            } else {
                "was killed by a signal".into()
            };
            return failed(format!("QEMU {what}"), outcome);
        };
        if let Some((status, reason)) = self.unsupported_when {
            if code == status {
                return Status::Unsupported { reason: reason.into() };
            }
        }
        match &self.expect {
            Expect::Entry(entry) if code == entry.qemu_status() => Status::Ok,
            Expect::Entry(entry) => {
                let took = Entry::from_qemu_status(code)
                    .map_or_else(|| "no null kernel entry".to_string(), |other| other.describe().to_string());
                failed(
                    format!(
                        "QEMU exited {code} ({took}) where {} ({}) was expected",
                        entry.describe(),
                        entry.qemu_status()
                    ),
                    outcome,
                )
            }
            Expect::FlintInit if code == FLINT_INIT_SUCCESS => Status::Ok,
            Expect::FlintInit => {
                failed(format!("QEMU exited {code}, not {FLINT_INIT_SUCCESS} (flint-init's status 0)"), outcome)
            }
            Expect::BusyboxInit if code == 0 && outcome.console_text().contains(guest::BUSYBOX_DONE) => Status::Ok,
            Expect::BusyboxInit => {
                failed(format!("QEMU exited {code} without the init's \"{}\" line", guest::BUSYBOX_DONE), outcome)
            }
        }
    }
}

/// A failure with the end of the console, where the guest says what went wrong.
fn failed(problem: String, outcome: &Outcome) -> Status {
    let console = plain_text(&outcome.console_text());
    let lines: Vec<&str> = console.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    let stderr = String::from_utf8_lossy(&outcome.qemu_stderr);
    let mut reason = format!("{problem}; console ends: {tail:?}");
    if !stderr.trim().is_empty() {
        reason.push_str(&format!("; QEMU said: {}", stderr.trim()));
    }
    Status::Failed { reason }
}

/// `text` without terminal escape sequences (OVMF draws its screens with them) and carriage
/// returns, so a console tail reads as text in a one-line reason.
fn plain_text(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters, ended by a byte from '@' to '~'.
            '\x1b' => {
                if chars.next() == Some('[') {
                    chars.by_ref().find(|c| ('@'..='~').contains(c));
                }
            }
            '\r' => {}
            c => plain.push(c),
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tails_lose_terminal_escapes() {
        assert_eq!(plain_text("\x1b[1m\x1b[33mShell> \x1b[0m\r\nok"), "Shell> \nok");
    }

    #[test]
    fn finds_the_embedded_init_entry() {
        let mut archive = crate::initramfs::Initramfs::new();
        archive.dir("/dev").file("/init", 0o755, b"\x7fELF".to_vec());
        let mut image = vec![0xFF; 4096];
        image.extend(archive.to_bytes());
        assert!(embeds_init(&image));
        let mut other = crate::initramfs::Initramfs::new();
        other.file("/initrd.img", 0o644, Vec::new());
        assert!(!embeds_init(&other.to_bytes()));
        assert!(!embeds_init(&[0xFF; 4096]));
    }
}
