//! The firmwares compared: flint, and the ones QEMU users boot Linux with today.

use super::exit_stub::Entry;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Firmware {
    Flint,
    /// QEMU's minimal firmware (`qboot.rom`, the same image as `bios-microvm.bin`).
    Qboot,
    /// QEMU's default PC BIOS.
    Seabios,
    /// UEFI (edk2's OVMF), the default of most cloud VMs.
    Ovmf,
}

/// The two forms a null kernel comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelForm {
    BzImage,
    Pvh,
}

impl KernelForm {
    pub fn name(self) -> &'static str {
        match self {
            KernelForm::BzImage => "bzImage",
            KernelForm::Pvh => "PVH",
        }
    }
}

impl Firmware {
    pub const ALL: [Firmware; 4] = [Firmware::Flint, Firmware::Qboot, Firmware::Seabios, Firmware::Ovmf];

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Flint => "flint",
            Firmware::Qboot => "qboot",
            Firmware::Seabios => "SeaBIOS",
            Firmware::Ovmf => "OVMF",
        }
    }

    /// The `-bios` image: flint's is given; the others are where Debian's packages put them.
    pub fn image(self, flint: &Path) -> PathBuf {
        match self {
            Firmware::Flint => flint.to_path_buf(),
            Firmware::Qboot => "/usr/share/qemu/qboot.rom".into(),
            Firmware::Seabios => "/usr/share/seabios/bios-256k.bin".into(),
            Firmware::Ovmf => "/usr/share/qemu/OVMF.fd".into(),
        }
    }

    /// How to get the image.
    pub fn install_hint(self) -> &'static str {
        match self {
            Firmware::Flint => "run `flint build`",
            Firmware::Qboot => "apt-get install qemu-system-data",
            Firmware::Seabios => "apt-get install seabios",
            Firmware::Ovmf => "apt-get install ovmf",
        }
    }

    /// Whether it boots on QEMU's microvm: flint, and qboot, whose image QEMU ships as
    /// microvm's default firmware.
    pub fn runs_on_microvm(self) -> bool {
        matches!(self, Firmware::Flint | Firmware::Qboot)
    }

    /// The null kernel entry this firmware takes, or why it cannot boot that form.
    pub fn null_entry(self, form: KernelForm) -> Result<Entry, &'static str> {
        match (self, form) {
            (Firmware::Flint, KernelForm::BzImage) => Ok(Entry::Long64),
            // An image built before flint's PVH support rejects the ELF; the run reports that
            // as unsupported (see `scenario`).
            (Firmware::Flint, KernelForm::Pvh) => Ok(Entry::Pvh),
            // Both load the kernel through QEMU's linuxboot option ROM path and start the
            // real-mode setup code, as for any bzImage.
            (Firmware::Qboot | Firmware::Seabios, KernelForm::BzImage) => Ok(Entry::RealMode),
            (Firmware::Qboot | Firmware::Seabios, KernelForm::Pvh) => Ok(Entry::Pvh),
            // Without an EFI stub (no PE header) OVMF falls back to its legacy Linux loader,
            // which enters at the 32-bit entry.
            (Firmware::Ovmf, KernelForm::BzImage) => Ok(Entry::Protected32),
            (Firmware::Ovmf, KernelForm::Pvh) => Err("OVMF boots PE and bzImage kernels, not PVH ELF"),
        }
    }
}
