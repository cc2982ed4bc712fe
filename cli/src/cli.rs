//! The command line: `flint build | kernel | rootfs | run | image | bench`.

use crate::env::{self, EXIT_FAILURE};
use crate::kernel::Flavour;
use crate::qemu::Forward;
use crate::qemu::Machine;
use crate::rootfs::FsType;
use crate::run::{self, Accel, Acpi, Boot, HugePages, Net, RootArgs, RunArgs, Volume, VolumeFs, WarmPoint};
use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
Exit status of `flint run`: the workload's own (0-255; 128+N when a signal N killed it).
flint's own failures print `flint: error: ...` on stderr and exit 125; 124 means --timeout
expired; 126 and 127 mean the program cannot be executed or was not found; 153 means the output
passed --max-output. See cli/README.md.";

#[derive(Parser, Debug)]
#[command(name = "flint", version, about = "Run one job in a throwaway QEMU VM, as fast as possible", after_help = AFTER_HELP)]
pub struct Cli {
    /// No progress lines on stderr (errors are still shown).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build the guest init and the firmware with it embedded into out/fw.bin.
    Build,
    /// Get a kernel into the cache (downloading or building it), or list the cached ones.
    Kernel(KernelArgs),
    /// Make a filesystem image from a directory.
    Rootfs(RootfsArgs),
    /// Run a command in a fresh VM: flint run [OPTIONS] -- CMD [ARGS...]
    Run(Box<RunCli>),
    /// Build a disk image that runs a command when booted: flint image -o IMAGE [OPTIONS] -- CMD [ARGS...]
    Image(Box<crate::image::ImageArgs>),
    /// Time flint against qboot, SeaBIOS and OVMF side by side (interleaved runs, same QEMU).
    Bench(crate::bench::BenchOptions),
}

#[derive(Args, Debug)]
struct KernelArgs {
    /// Which kernel.
    #[arg(value_enum, default_value_t = KernelName::DebianCloud)]
    name: KernelName,
    /// List the cached kernels and those flint can get, and do nothing else.
    #[arg(long)]
    list: bool,
    /// Download or build it again even if it is cached.
    #[arg(long)]
    force: bool,
    /// Print the path of the kernel's PVH-bootable vmlinux instead of its directory: the
    /// bzImage's payload decompressed (any compression Linux uses) and checked for a PVH entry note,
    /// once (cached by content).
    #[arg(long)]
    pvh: bool,
    /// With --pvh: the bzImage (or kernel directory) to turn into a vmlinux, instead of NAME.
    #[arg(long, value_name = "PATH", requires = "pvh")]
    from: Option<PathBuf>,
    /// minimal only: build from this config fragment instead of scripts/kernel/minimal.config,
    /// to try a change (scripts/kernel/config-ab.sh times one against the other).
    #[arg(long, value_name = "FRAGMENT", conflicts_with = "from")]
    config: Option<PathBuf>,
    /// minimal only: put the kernel in DIR instead of the cache (then pass `--kernel DIR`).
    #[arg(short, long, value_name = "DIR", conflicts_with = "from")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KernelName {
    /// Debian 12's cloud kernel, downloaded (virtio drivers are modules).
    DebianCloud,
    /// Debian 12's generic kernel, the default of a Debian host, downloaded.
    DebianGeneric,
    /// Print the kernel config fragment flint's guests need, to merge into your own .config
    /// (scripts/kconfig/merge_config.sh, or `make olddefconfig` after appending it).
    Config,
    /// Built from Debian's linux-source-6.1 with scripts/kernel/minimal.config (takes minutes).
    Minimal,
}

#[derive(Args, Debug)]
struct RootfsArgs {
    /// The directory whose contents become the filesystem.
    dir: PathBuf,
    /// The image file to write.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = FsType::Ext4)]
    fs: FsType,
    /// Image size for ext4, e.g. 512M or 2G (default: the content plus room to spare).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
}

#[derive(Args, Debug)]
struct RunCli {
    #[command(flatten)]
    kernel: crate::kernel::KernelChoice,
    #[command(flatten)]
    root: RootArgs,
    /// QEMU's machine type; microvm boots fastest (no PCI for Linux to enumerate).
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    /// Guest memory, in QEMU's syntax (512M, 2G).
    #[arg(short, long, default_value = "512M")]
    memory: String,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    cpus: u32,
    /// Set a variable for the command (repeatable); NAME alone passes the host's value.
    #[arg(short, long, value_name = "NAME=VALUE")]
    env: Vec<OsString>,
    /// Working directory of the command in the guest.
    #[arg(short = 'w', long, value_name = "DIR")]
    cwd: Option<String>,
    /// Run the command as this user and group (numbers).
    #[arg(short, long, value_name = "UID[:GID]", value_parser = run::parse_user)]
    user: Option<(u32, u32)>,
    /// Mount the host directory HOST at GUEST in the guest (repeatable): read-write, the host
    /// seeing the writes as they happen, or read-only with :ro.
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]", value_parser = run::parse_volume)]
    volumes: Vec<Volume>,
    /// How --volume directories reach the guest: virtiofs (a virtiofsd per volume; in Debian's
    /// cloud kernel) or 9p (served by QEMU; not in Debian's cloud kernel).
    #[arg(long, value_enum, default_value_t = VolumeFs::Virtiofs)]
    volume_fs: VolumeFs,
    /// Stop the command after this many seconds: SIGTERM, then SIGKILL after --grace
    /// (flint then exits 124).
    #[arg(short, long, value_name = "SECS", value_parser = run::parse_timeout)]
    timeout: Option<Duration>,
    /// How long the command gets to end after a signal flint forwards (SIGINT, SIGTERM, ...)
    /// or after --timeout's SIGTERM, before it is killed and the VM stopped cleanly.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = run::parse_timeout)]
    grace: Duration,
    /// Stop the VM (flint exits 125) if the kernel has not started flint's init within this
    /// many seconds: a kernel that hangs or panics early.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = run::parse_timeout)]
    boot_timeout: Duration,
    /// Pass on at most this much of the command's stdout, and of its stderr (e.g. 10M), then
    /// stop it: flint exits 153 (128 + SIGXFSZ, as past a file size limit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// Start from a snapshot instead of booting (the first warm run makes it): `boot` (the
    /// default) is taken where the init waits for its job, for any job; `ready` after this
    /// job's own start-up, once the command writes to the FIFO $FLINT_READY names.
    #[arg(long, value_enum, value_name = "AT", num_args = 0..=1, require_equals = true, default_missing_value = "boot")]
    warm: Option<WarmPoint>,
    /// CPU acceleration; auto uses KVM only when a quick probe VM really runs under it.
    #[arg(long, value_enum, default_value_t = Accel::Auto, env = "FLINT_ACCEL")]
    accel: Accel,
    /// How the firmware enters the kernel: PVH (the uncompressed vmlinux, extracted once and
    /// cached) skips the kernel's own decompression; auto uses it when the kernel supports it.
    #[arg(long, value_enum, default_value_t = Boot::Auto)]
    boot: Boot,
    /// Transparent huge pages for the guest's RAM: auto is off under TCG (faster boots
    /// there, see BENCHMARKS.md) and on under KVM.
    #[arg(long, value_enum, default_value_t = HugePages::Auto)]
    huge_pages: HugePages,
    /// ACPI for the guest: auto is off on microvm with one CPU when the kernel reads
    /// virtio-mmio devices from its command line (QEMU names them there; faster boots, see
    /// BENCHMARKS.md), else on.
    #[arg(long, value_enum, default_value_t = Acpi::Auto)]
    acpi: Acpi,
    /// A network card (default: none, the guest has only `lo`). `user` is QEMU's user network:
    /// the guest is 10.0.2.15, reaches the host's loopback at 10.0.2.2, and resolves names
    /// through 10.0.2.3; no root or host set-up needed.
    #[arg(long, value_enum, value_name = "MODE")]
    net: Option<Net>,
    /// Forward the host's TCP port HOST (on 127.0.0.1) to the guest's port GUEST (repeatable;
    /// needs --net user).
    #[arg(short = 'p', long, value_name = "HOST:GUEST", value_parser = run::parse_forward)]
    publish: Vec<Forward>,
    /// More kernel parameters, after flint's own (so a later value overrides an earlier one).
    #[arg(long, value_name = "PARAMS")]
    append: Option<String>,
    /// Leave out flint's boot-time kernel parameters (noreplace-smp, i8042.noaux, ...), to
    /// measure them; those the machine needs stay.
    #[arg(long)]
    untuned: bool,
    /// The firmware image (default: $FLINT_FW, else out/fw.bin of the source tree).
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,
    /// Print the equivalent qemu-system-x86_64 command (stdio wired to the ports) and exit.
    /// It carries the command, --env, --cwd and --user on the kernel command line (visible
    /// in ps), where `flint run` sends them over the status port.
    #[arg(long)]
    print_cmd: bool,
    /// Show the QEMU command, the firmware's and kernel's console, and timings on stderr.
    #[arg(long)]
    verbose: bool,
    /// Print where the time went (QEMU start, firmware, kernel, init, workload, shutdown) on stderr.
    #[arg(long)]
    timeline: bool,
    /// Also write the timeline as JSON to this file.
    #[arg(long, value_name = "FILE")]
    timeline_json: Option<PathBuf>,
    /// The command and its arguments (with --root-oci: the image's Entrypoint and Cmd when
    /// left out; a command given replaces the Cmd).
    #[arg(required_unless_present = "root_oci", trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `512M`, `2G`, `1048576` (bytes).
fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || "expected a size such as 512M, 2G or a number of bytes".to_string();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        Some((i, 'T' | 't')) => (&text[..i], 40),
        _ => (text, 0),
    };
    let value: u64 = digits.parse().map_err(|_| invalid())?;
    value.checked_mul(1 << shift).filter(|&v| v > 0).ok_or_else(invalid)
}

/// Runs flint with `args` (including the program name); returns the exit status.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let text = error.render().to_string();
            if !error.use_stderr() {
                // --help, --version
                print!("{text}");
                return 0;
            }
            // One line: clap's first (the problem) and where to look (the fix).
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default();
            let mut problem = first.strip_prefix("error: ").unwrap_or(first).to_string();
            // "...were not provided:" lists the arguments on the indented lines that follow.
            if problem.ends_with(':') {
                let listed: Vec<&str> = lines.take_while(|line| line.starts_with("  ")).map(str::trim).collect();
                problem = format!("{} {}", problem.trim_end_matches(':'), listed.join(", "));
            }
            let command = text
                .lines()
                .find_map(|line| line.strip_prefix("Usage: "))
                .map(|usage| {
                    usage.split(' ').take_while(|word| !word.starts_with(['[', '<', '-'])).collect::<Vec<_>>().join(" ")
                })
                .unwrap_or_else(|| "flint".into());
            let values = text
                .lines()
                .map(str::trim)
                .find(|line| line.starts_with("[possible values:"))
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            eprintln!("flint: error: {problem}{values}: see `{command} --help`");
            return EXIT_FAILURE;
        }
    };
    env::set_quiet(cli.quiet);
    match execute(cli.command) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("flint: error: {error:#}");
            env::exit_status(&error)
        }
    }
}

fn execute(command: Command) -> Result<u8> {
    match command {
        Command::Build => {
            println!("{}", crate::fwbuild::build()?.display());
            Ok(0)
        }
        Command::Kernel(args) => {
            if args.list {
                print!("{}", crate::kernel::list()?);
                return Ok(0);
            }
            let kernel = match &args.from {
                Some(path) => crate::kernel::Kernel::resolve(Some(&path.to_string_lossy()), None)?,
                None => {
                    let builds_minimal = matches!(args.name, KernelName::Minimal);
                    if !builds_minimal && (args.config.is_some() || args.output.is_some()) {
                        anyhow::bail!("--config and --output build the minimal kernel: use `flint kernel minimal --config FRAGMENT -o DIR`");
                    }
                    let dir = match args.name {
                        KernelName::Minimal => crate::kernel::build_minimal(&crate::kernel::MinimalBuild {
                            fragment: args.config.clone(),
                            output: args.output.clone(),
                            force: args.force,
                        })?,
                        KernelName::DebianCloud => crate::kernel::debian::fetch(Flavour::Cloud, args.force)?,
                        KernelName::DebianGeneric => crate::kernel::debian::fetch(Flavour::Generic, args.force)?,
                        KernelName::Config => {
                            print!("{}", crate::run::config_fragment());
                            return Ok(0);
                        }
                    };
                    if !args.pvh {
                        println!("{}", dir.display());
                        return Ok(0);
                    }
                    crate::kernel::Kernel::resolve(Some(&dir.to_string_lossy()), None)?
                }
            };
            let Some(vmlinux) = crate::vmlinux::pvh_image(&kernel)? else {
                anyhow::bail!(
                    "kernel {} has no PVH entry note (built without CONFIG_PVH): boot its bzImage instead",
                    kernel.label
                );
            };
            println!("{}", vmlinux.display());
            Ok(0)
        }
        Command::Bench(options) => {
            crate::bench::run(&options)?.check()?;
            Ok(0)
        }
        Command::Image(args) => {
            println!("{}", crate::image::image(&args)?.display());
            Ok(0)
        }
        Command::Rootfs(args) => {
            crate::rootfs::rootfs(&args.dir, &args.output, args.fs, args.size)?;
            println!("{}", args.output.display());
            Ok(0)
        }
        Command::Run(args) => run::run(&run_args(*args)),
    }
}

/// What `flint run WORDS` means, with every default as the command line has it (the bench
/// boots "as `flint run` does" through this).
pub fn parse_run_args(words: &[&str]) -> Result<RunArgs> {
    let cli = Cli::try_parse_from(["flint", "run"].iter().chain(words)).map_err(|error| anyhow::anyhow!("{error}"))?;
    match cli.command {
        Command::Run(args) => Ok(run_args(*args)),
        _ => unreachable!("parsed as `flint run`"),
    }
}

fn run_args(args: RunCli) -> RunArgs {
    let mode = args.root.mode();
    RunArgs {
        firmware: args.firmware,
        kernel: args.kernel,
        root: args.root.root,
        root_image: args.root.root_image,
        root_oci: args.root.root_oci,
        machine: args.machine,
        memory: args.memory,
        cpus: args.cpus,
        env: args.env,
        cwd: args.cwd,
        user: args.user,
        volumes: args.volumes,
        volume_fs: args.volume_fs,
        timeout: args.timeout,
        grace: args.grace,
        boot_timeout: args.boot_timeout,
        max_output: args.max_output,
        warm: args.warm,
        mode,
        accel: args.accel,
        boot: args.boot,
        huge_pages: args.huge_pages,
        acpi: args.acpi,
        net: args.net,
        publish: args.publish,
        append: args.append,
        untuned: args.untuned,
        print_cmd: args.print_cmd,
        timeline: args.timeline,
        timeline_json: args.timeline_json,
        verbose: args.verbose,
        command: args.command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_its_options() {
        let cli = Cli::try_parse_from(["flint", "run", "--ro", "-e", "A=1", "--", "sh", "-c", "exit 3"]).unwrap();
        let Command::Run(run) = cli.command else { panic!() };
        assert!(run.root.ro);
        assert_eq!(run.command, ["sh", "-c", "exit 3"]);
        let cli = Cli::try_parse_from(["flint", "run", "ls", "-l", "--ro"]).unwrap();
        let Command::Run(run) = cli.command else { panic!() };
        assert_eq!(run.command, ["ls", "-l", "--ro"]);
        assert!(Cli::try_parse_from(["flint", "run", "--bogus", "--", "true"]).is_err());
        assert!(Cli::try_parse_from(["flint", "run", "--ro", "--rw", "--", "true"]).is_err());
        assert!(Cli::try_parse_from(["flint", "run"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("M").is_err());
        assert!(parse_size("0").is_err());
    }
}
