//! `flint image`: a GPT disk that runs one command when QEMU boots it with flint's firmware and
//! no `-kernel` (docs/disk-image.md). The boot partition holds the kernel with its command line
//! (and, when the kernel needs modules, an initrd); the root partition holds the root filesystem,
//! which the init finds with `flint.root=gpt-auto`. The job's output goes to the console (COM1),
//! its stdin is empty, and the VM ends through isa-debug-exit with the job's status.

mod boot;
mod disk;

use crate::env;
use crate::kernel::{Kernel, KernelChoice};
use crate::modules::Signatures;
use crate::qemu::Machine;
use crate::run::guest::{check_in_root, init_words, needs_on, resolve_root, workload, Job};
use crate::run::{parse_timeout, parse_user, RootArgs, RootMode};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the boot partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The kernel's uncompressed vmlinux, entered through its PVH note (no decompression).
    Pvh,
    /// A Unified Kernel Image: systemd's EFI stub with the bzImage as its `.linux` section.
    Uki,
    /// PVH when the kernel has a PVH entry (CONFIG_PVH), else a UKI.
    Auto,
}

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The disk image to write.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    #[command(flatten)]
    kernel: KernelChoice,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// QEMU machine the image will boot on: it decides the disk's transport (and so the
    /// modules). pc and q35 images are the same; a microvm image's command line also carries
    /// this host's `tsc_early_khz=`, which microvm needs under TCG.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    machine: Machine,
    /// systemd's EFI stub, for --format uki.
    #[arg(long, value_name = "PATH", default_value = boot::UKI_STUB)]
    uki_stub: PathBuf,
    /// The root partition's content (copied in) and how the job mounts it.
    #[command(flatten)]
    root: RootArgs,
    /// More kernel parameters, appended to the command line.
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Set a variable for the command (repeatable); NAME alone passes the host's value.
    #[arg(short, long, value_name = "NAME=VALUE")]
    env: Vec<OsString>,
    /// Working directory of the command in the guest.
    #[arg(short = 'w', long, value_name = "DIR")]
    cwd: Option<String>,
    /// Run the command as this user and group (numbers).
    #[arg(short, long, value_name = "UID[:GID]", value_parser = parse_user)]
    user: Option<(u32, u32)>,
    /// Kill the command after this many seconds (the VM then ends with status 124).
    #[arg(short, long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// The command and its arguments (with --root-oci: the image's Entrypoint and Cmd when
    /// left out; a command given replaces the Cmd).
    #[arg(required_unless_present = "root_oci", trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

impl ImageArgs {
    /// The job `flint bench` boots from a disk: `command` from the read-only ext4 `root_image`,
    /// with `append`, in `format` for `pc`.
    pub fn for_bench(
        output: &Path,
        kernel: &str,
        format: Format,
        root_image: &Path,
        append: &str,
        command: &str,
    ) -> Self {
        ImageArgs {
            output: output.into(),
            kernel: KernelChoice::named(kernel),
            format,
            machine: Machine::Pc,
            uki_stub: boot::UKI_STUB.into(),
            root: RootArgs {
                root: None,
                root_image: Some(root_image.into()),
                root_oci: None,
                ro: true,
                overlay: false,
                rw: false,
            },
            append: Some(append.into()),
            env: Vec::new(),
            cwd: None,
            user: None,
            timeout: None,
            command: vec![command.into()],
        }
    }
}

/// Builds the image at `args.output` and returns its path.
pub fn image(args: &ImageArgs) -> Result<PathBuf> {
    let mode = args.root.mode();
    let kernel = args.kernel.resolve()?;
    // The image is copied into the root partition, so even `--rw` leaves it untouched.
    let root =
        resolve_root(args.root.root.as_ref(), args.root.root_image.as_ref(), args.root.root_oci.as_deref(), mode)?;
    let workload = workload(&root, &args.command, &args.env, args.cwd.as_deref(), args.user)?;
    // The job goes on the image's command line, which has no `flint.program`: the guest
    // searches PATH itself.
    if let Some(tree) = &root.tree {
        check_in_root(tree, &workload)?;
    }
    let machine = args.machine;
    let modules = crate::modules::load_list(&kernel, &needs_on(machine, root.fs, mode, false))?;
    let mut words = init_words(&Job {
        root_device: "gpt-auto",
        fs: root.fs,
        mode,
        modules: &modules,
        command: &workload.command,
        environment: &workload.environment,
        cwd: &workload.cwd,
        user: workload.user,
        timeout: args.timeout,
        grace: None,
        tuned: true,
        on_port: false,
        ready: None,
        program: None,
    });
    // Output goes to the console; input from it would be whatever QEMU's -serial gets.
    words.push("flint.stdin=/dev/null".into());
    words.extend(machine.kernel_params("tcg"));
    words.extend(args.append.iter().cloned());
    let cmdline = words.join(" ");
    if cmdline.len() > kernel.cmdline_max() {
        bail!(
            "the kernel command line is {} bytes, more than the {} this kernel takes: shorten the command, --env values and --append",
            cmdline.len(),
            kernel.cmdline_max()
        );
    }

    let temp = env::TempDir::new("flint-image")?;
    let initrd = if modules.is_empty() {
        None
    } else {
        Some(boot::initrd(&modules, Signatures::for_flint_init(&kernel, cmdline.split_whitespace()), temp.path())?)
    };
    let parts = boot::Parts { cmdline: &cmdline, initrd: initrd.as_deref() };
    let boot_image = match args.format {
        Format::Pvh => boot::pvh(&pvh_vmlinux(&kernel)?, &parts, temp.path())?,
        Format::Uki => boot::uki(&kernel.image, &args.uki_stub, &parts, temp.path())?,
        Format::Auto => match crate::vmlinux::pvh_image_or_note(&kernel)? {
            Some(vmlinux) => boot::pvh(&vmlinux, &parts, temp.path())?,
            None => boot::uki(&kernel.image, &args.uki_stub, &parts, temp.path())?,
        },
    };
    let root_image =
        if mode == RootMode::Rw && root.cached { journaled_copy(&root.image, temp.path())? } else { root.image };
    disk::write(&args.output, &boot_image, &root_image)?;
    Ok(args.output.clone())
}

/// flint's cached ext4 images have no journal (flint never keeps what it writes to them); a
/// disk whose root is written at every boot and kept gets one, so a crash cannot corrupt it.
fn journaled_copy(image: &Path, dir: &Path) -> Result<PathBuf> {
    env::require_tool("tune2fs", "e2fsprogs")?;
    let copy = dir.join("root.ext4");
    crate::rootfs::private_copy(image, &copy).context("cannot copy the root image to add a journal")?;
    // Its chatter on stdout says nothing the user needs; a failure's stderr is kept.
    env::tool_output(env::command("tune2fs").args(["-O", "has_journal"]).arg(&copy))
        .context("cannot add a journal to the root image")?;
    Ok(copy)
}

fn pvh_vmlinux(kernel: &Kernel) -> Result<PathBuf> {
    crate::vmlinux::pvh_image(kernel)?.with_context(|| {
        format!("kernel {} has no PVH entry (built without CONFIG_PVH): use --format uki", kernel.label)
    })
}

/// Sizes in progress lines.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len())
}
