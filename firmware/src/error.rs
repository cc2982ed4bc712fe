//! Every way the boot can fail, with the one-line message and the status the VM ends with.
//! The status is written to isa-debug-exit, so QEMU exits with `2 * status + 1`.

use crate::acpi::AcpiError;
use crate::pci::PciError;
use core::fmt;
use loader::bzimage::KernelError;
use loader::e820::MapError;
use loader::plan::PlanError;
use loader::pvh::PvhError;
use loader::setup_data::SetupDataError;

pub enum BootError {
    NoFwCfg,
    NoMemoryMap,
    NoKernel,
    Kernel(KernelError),
    Plan(PlanError),
    Pvh(PvhError),
    Map(MapError),
    SetupData(SetupDataError),
    TooLittleRam { ram_mib: u64 },
    Pci(PciError),
    Acpi(AcpiError),
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
        }
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoFwCfg => f.write_str("no QEMU fw_cfg device: run flint's firmware under QEMU (-bios fw.bin)"),
            BootError::NoMemoryMap => {
                f.write_str("fw_cfg has no etc/e820 memory map: use a QEMU of version 5.0 or later")
            }
            BootError::NoKernel => f.write_str("no kernel to boot: pass one with -kernel"),
            BootError::Kernel(e) => e.fmt(f),
            BootError::Plan(e) => e.fmt(f),
            BootError::Pvh(e) => e.fmt(f),
            BootError::Map(e) => e.fmt(f),
            BootError::SetupData(e) => e.fmt(f),
            BootError::Pci(e) => e.fmt(f),
            BootError::Acpi(e) => e.fmt(f),
            BootError::TooLittleRam { ram_mib } => {
                write!(f, "the VM has {ram_mib} MiB of RAM, flint needs at least 16 MiB: raise -m")
            }
        }
    }
}
