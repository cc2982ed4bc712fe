//! Every way the boot can fail, with the one-line message and the status the VM ends with.
//! The status is written to isa-debug-exit, so QEMU exits with `2 * status + 1`.

use crate::acpi::AcpiError;
use crate::disk::DiskError;
use crate::pci::PciError;
use crate::put;
use crate::report::{Sink, Text};
use core::convert::Infallible;
use loader::boot_image::ImageError;
use loader::bzimage::KernelError;
use loader::e820::MapError;
use loader::gpt::GptError;
use loader::plan::PlanError;
use loader::pvh::PvhError;
use loader::setup_data::SetupDataError;

#[derive(Debug)]
pub enum BootError {
    NoFwCfg,
    NoMemoryMap,
    NoKernel,
    Kernel(KernelError),
    Plan(PlanError),
    Pvh(PvhError),
    Map(MapError),
    SetupData(SetupDataError),
    TooLittleRam {
        ram_mib: u64,
    },
    Pci(PciError),
    Acpi(AcpiError),
    /// Disk boot: the GPT is missing or damaged (its own I/O errors become `Disk`).
    Gpt(GptError<Infallible>),
    NoBootPartition,
    /// Disk boot: what the boot partition holds (its own I/O errors become `Disk`).
    Image(ImageError<Infallible>),
    Disk(DiskError),
    /// A virtio-blk PCI function lacks the virtio 1.0 capabilities.
    Virtio,
}

/// Documented in README.md ("Firmware exit statuses"); keep the two in step.
pub mod status {
    pub const NO_FW_CFG: u8 = 16;
    pub const NO_KERNEL: u8 = 17;
    pub const NOT_A_KERNEL: u8 = 18;
    pub const UNSUPPORTED_KERNEL: u8 = 19;
    pub const KERNEL_TOO_BIG: u8 = 20;
    pub const INITRD_TOO_BIG: u8 = 21;
    pub const CMDLINE_TOO_LONG: u8 = 22;
    pub const TOO_LITTLE_RAM: u8 = 23;
    pub const PLATFORM: u8 = 24;
    pub const BAD_GPT: u8 = 25;
    pub const NO_BOOT_PARTITION: u8 = 26;
    pub const BAD_BOOT_IMAGE: u8 = 27;
    pub const DISK_IO: u8 = 28;
    pub const INTERNAL: u8 = 31;
}

impl BootError {
    pub fn status(&self) -> u8 {
        match self {
            BootError::NoFwCfg | BootError::NoMemoryMap => status::NO_FW_CFG,
            BootError::NoKernel => status::NO_KERNEL,
            BootError::Kernel(KernelError::NotLinux | KernelError::Truncated { .. } | KernelError::Damaged(_)) => {
                status::NOT_A_KERNEL
            }
            BootError::Kernel(_) => status::UNSUPPORTED_KERNEL,
            BootError::Plan(PlanError::KernelDoesNotFit { .. }) => status::KERNEL_TOO_BIG,
            BootError::Plan(PlanError::InitrdDoesNotFit { .. }) => status::INITRD_TOO_BIG,
            BootError::Plan(PlanError::CmdlineTooLong { .. }) => status::CMDLINE_TOO_LONG,
            BootError::Pvh(PvhError::InitrdDoesNotFit { .. }) => status::INITRD_TOO_BIG,
            BootError::Pvh(PvhError::NotElf | PvhError::Truncated) => status::NOT_A_KERNEL,
            BootError::Pvh(_) => status::UNSUPPORTED_KERNEL,
            BootError::TooLittleRam { .. } => status::TOO_LITTLE_RAM,
            BootError::Map(_) | BootError::SetupData(_) | BootError::Pci(_) | BootError::Acpi(_) => status::PLATFORM,
            BootError::Gpt(_) => status::BAD_GPT,
            BootError::NoBootPartition => status::NO_BOOT_PARTITION,
            BootError::Image(_) => status::BAD_BOOT_IMAGE,
            BootError::Disk(_) | BootError::Virtio => status::DISK_IO,
        }
    }
}

impl Text for BootError {
    fn write(&self, out: &mut dyn Sink) {
        let text = match self {
            BootError::NoFwCfg => "no QEMU fw_cfg device: run flint's firmware under QEMU (-bios fw.bin)",
            BootError::NoMemoryMap => "fw_cfg has no etc/e820 memory map: use a QEMU of version 5.0 or later",
            BootError::NoKernel => "no kernel: pass -kernel, or a flint disk image with -drive file=IMAGE,if=virtio",
            BootError::Kernel(e) => return e.write(out),
            BootError::Plan(e) => return e.write(out),
            BootError::Pvh(e) => return e.write(out),
            BootError::Map(e) => return e.write(out),
            BootError::SetupData(e) => return e.write(out),
            BootError::Pci(e) => return e.write(out),
            BootError::Acpi(e) => return e.write(out),
            BootError::Gpt(e) => return e.write(out),
            BootError::NoBootPartition => {
                "no flint boot partition on any virtio-blk disk: make the image with `flint image` (docs/disk-image.md)"
            }
            BootError::Image(e) => return e.write(out),
            BootError::Disk(_) => "the virtio-blk device failed a request: check the -drive image and its format",
            BootError::Virtio => "the virtio-blk device did not start: use a virtio 1.0 device (not disable-modern=on)",
            BootError::TooLittleRam { ram_mib } => {
                return put!(
                    out,
                    "the VM has {} MiB of RAM below 4 GiB, flint needs at least 16 MiB: raise -m",
                    *ram_mib
                )
            }
        };
        out.put(text.as_bytes());
    }
}
