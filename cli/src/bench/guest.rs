//! What the kernel scenarios boot: one kernel and one read-only ext4 root (busybox-static),
//! reached two ways:
//!  - flint: its embedded guest init, with the kernel's virtio modules in a small `-initrd`
//!    (`opt/flint/add-init` puts the init in front of it) and `flint.*` parameters;
//!  - qboot, SeaBIOS, OVMF: as a user would, a busybox initramfs whose `/init` loads the
//!    same modules, mounts the disk, chroots to run `true` and powers off.

use super::write_input;
use crate::initramfs::Initramfs;
use crate::kernel::Kernel;
use crate::modules::{add_to_initramfs, load_list, Module, Signatures};
use crate::qemu::Machine;
use crate::rootfs::DefaultRoot;
use crate::rootfs::FsType;
use crate::run::guest::needs_on;
use crate::run::RootMode;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The workload, run from the root filesystem.
pub const WORKLOAD: &str = "/bin/true";
/// What the busybox init prints once the workload succeeded.
pub const BUSYBOX_DONE: &str = "flint-bench: workload exited 0";
/// The same for every firmware: console on COM1, kernel messages off, reboot (so QEMU exits
/// at once under -no-reboot) rather than hang on a panic.
const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1";

/// The files and command lines of one kernel scenario.
pub struct KernelInputs {
    pub kernel: Kernel,
    pub root_image: PathBuf,
    /// flint's inputs on `pc` and `q35` ...
    pub flint: FlintInputs,
    /// ... and on microvm (virtio-mmio modules, no COM2 for the status, the TSC rate).
    pub flint_microvm: FlintInputs,
    /// The busybox initramfs way on `pc` (and `q35`, `q35` has the same PCI drivers) ...
    pub busybox: BusyboxInputs,
    /// ... and on microvm, for qboot, microvm's own firmware.
    pub busybox_microvm: BusyboxInputs,
}

/// What the other firmwares boot on one machine: the busybox initramfs and the command line.
pub struct BusyboxInputs {
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// What flint's embedded init gets on one machine.
pub struct FlintInputs {
    /// `-initrd` of modules; `None` when the kernel has its drivers built in.
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// The init's timeline and status go to COM2, which gives flint's rows their phases
/// (microvm has one serial port only: its rows have the total alone).
pub const STATUS_ON_COM2: &str = "flint.status=/dev/ttyS1";

/// flint's initrd and command line for `kernel` on `machine` under `accel`, given the modules
/// the machine needs.
fn flint_inputs(kernel: &Kernel, modules: &[Module], machine: Machine, accel: &str, dir: &Path) -> Result<FlintInputs> {
    let names: Vec<&str> = modules.iter().map(|module| module.name.as_str()).collect();
    let mut cmdline = format!("{KERNEL_ARGS} flint.root=/dev/vda flint.rootfstype=ext4 flint.ro");
    if !names.is_empty() {
        cmdline.push_str(&format!(" flint.modules={}", names.join(",")));
    }
    cmdline.push_str(&format!(" flint.argv={}", flint_guest_init::argv::encode(&[WORKLOAD])));
    if machine != Machine::Microvm {
        cmdline.push(' ');
        cmdline.push_str(STATUS_ON_COM2);
    }
    for param in machine.kernel_params(accel) {
        cmdline.push(' ');
        cmdline.push_str(&param);
    }
    let initrd = if modules.is_empty() {
        None
    } else {
        let name = format!("{}-{}-modules.cpio", kernel.label.replace('/', "_"), machine.name());
        let signatures = Signatures::for_flint_init(kernel, cmdline.split_whitespace());
        Some(write_input(dir, &name, &module_archive(modules, signatures).to_bytes())?)
    };
    Ok(FlintInputs { initrd, cmdline })
}

fn module_archive(modules: &[Module], signatures: Signatures) -> Initramfs {
    let mut archive = Initramfs::new();
    add_to_initramfs(&mut archive, modules, signatures);
    archive
}

/// Writes the initrds of `kernel` into `dir`.
pub fn prepare(kernel: Kernel, root: &DefaultRoot, accel: &str, dir: &Path) -> Result<KernelInputs> {
    let modules = root_modules(&kernel, Machine::Pc)?;
    let flint = flint_inputs(&kernel, &modules, Machine::Pc, accel, dir)?;
    let busybox = busybox_inputs(&kernel, &modules, root, Machine::Pc, accel, dir)?;
    let microvm_modules = root_modules(&kernel, Machine::Microvm)?;
    let flint_microvm = flint_inputs(&kernel, &microvm_modules, Machine::Microvm, accel, dir)?;
    let busybox_microvm = busybox_inputs(&kernel, &microvm_modules, root, Machine::Microvm, accel, dir)?;
    Ok(KernelInputs { kernel, root_image: root.image.clone(), flint, flint_microvm, busybox, busybox_microvm })
}

/// The busybox initramfs (the module archive plus busybox and its script) for `machine`, and
/// the plain command line with what the machine needs (microvm under TCG: the TSC rate).
fn busybox_inputs(
    kernel: &Kernel,
    modules: &[Module],
    root: &DefaultRoot,
    machine: Machine,
    accel: &str,
    dir: &Path,
) -> Result<BusyboxInputs> {
    let names: Vec<&str> = modules.iter().map(|module| module.name.as_str()).collect();
    // Signed, as the distribution ships them: what a user of the busybox way loads.
    let mut archive = module_archive(modules, Signatures::Keep);
    archive
        .file_from("/bin/busybox", 0o755, &root.tree.join("bin/busybox"))
        .with_context(|| format!("cannot read busybox from the root tree {}", root.tree.display()))?;
    archive.dir("/dev").dir("/mnt").file("/init", 0o755, busybox_init(&names));
    let name = format!("{}-{}-busybox.cpio", kernel.label.replace('/', "_"), machine.name());
    let initrd = write_input(dir, &name, &archive.to_bytes())?;
    let cmdline = std::iter::once(KERNEL_ARGS.to_string()).chain(machine.kernel_params(accel)).collect::<Vec<_>>();
    Ok(BusyboxInputs { initrd, cmdline: cmdline.join(" ") })
}

/// The usual hand-written initramfs script: every step a user needs, nothing more.
fn busybox_init(modules: &[&str]) -> String {
    let mut script = String::from("#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs dev /dev\n");
    for name in modules {
        script.push_str(&format!("/bin/busybox insmod /lib/modules/{name}.ko\n"));
    }
    script.push_str(&format!(
        "while [ ! -b /dev/vda ]; do /bin/busybox sleep 0.01; done\n\
         /bin/busybox mount -t ext4 -o ro /dev/vda /mnt\n\
         /bin/busybox chroot /mnt {WORKLOAD}\n\
         echo \"flint-bench: workload exited $?\"\n\
         /bin/busybox poweroff -f\n"
    ));
    script
}

/// The modules needed for a read-only ext4 root on virtio-blk on `machine` that `kernel` builds
/// as modules, dependencies first (no virtio_console: the bench uses no virtio-serial ports).
fn root_modules(kernel: &Kernel, machine: Machine) -> Result<Vec<Module>> {
    load_list(kernel, &needs_on(machine, FsType::Ext4, RootMode::Ro, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_init_loads_modules_in_order_then_runs_the_workload() {
        let script = busybox_init(&["virtio", "virtio_blk"]);
        let virtio = script.find("insmod /lib/modules/virtio.ko").unwrap();
        let blk = script.find("insmod /lib/modules/virtio_blk.ko").unwrap();
        let chroot = script.find("chroot /mnt /bin/true").unwrap();
        assert!(virtio < blk && blk < chroot);
        assert!(script.trim_end().ends_with("poweroff -f"));
    }
}
