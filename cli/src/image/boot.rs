//! The boot partition's content: the kernel with its command line and initrd as sections,
//! added with `objcopy --add-section` to the PVH vmlinux (non-allocated ELF sections) or to
//! systemd's EFI stub (a UKI, with the bzImage as `.linux`).

use super::{file_len, mib};
use crate::env::{self, progress, Fix};
use crate::initramfs::Initramfs;
use crate::modules::{Module, Signatures};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's systemd-boot-efi puts the stub here.
pub const UKI_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// What goes beside the kernel.
pub struct Parts<'a> {
    pub cmdline: &'a str,
    pub initrd: Option<&'a Path>,
}

/// flint's guest init as `/init`, with the modules at `/lib/modules/<name>.ko`: with its own
/// initrd the image does not depend on the init embedded in whichever firmware boots it.
pub fn initrd(modules: &[Module], signatures: Signatures, dir: &Path) -> Result<PathBuf> {
    let init = crate::embedded::guest_init()?;
    let mut archive = Initramfs::new();
    archive.dir("/dev").dir("/proc").dir("/sys");
    archive.file_from("/init", 0o755, &init)?;
    crate::modules::add_to_initramfs(&mut archive, modules, signatures);
    let path = dir.join("initrd.cpio");
    std::fs::write(&path, archive.to_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The PVH vmlinux with `.cmdline` and `.initrd` sections.
pub fn pvh(vmlinux: &Path, parts: &Parts, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("vmlinux");
    let mut objcopy = Command::new("objcopy");
    for (name, file) in sections(parts, dir)? {
        objcopy.arg("--add-section").arg(section_arg(name, &file));
    }
    make(objcopy.arg(vmlinux).arg(&out), "PVH vmlinux", &out, parts)
}

/// A UKI: `stub` with `.cmdline`, `.initrd` and `.linux` (the bzImage) sections placed one
/// after the other behind the stub's own sections, each at a page boundary.
pub fn uki(bzimage: &Path, stub: &Path, parts: &Parts, dir: &Path) -> Result<PathBuf> {
    let stub_bytes = std::fs::read(stub).fix(
        format_args!("UKI stub {}", stub.display()),
        "install it (apt-get install systemd-boot-efi), or pass --uki-stub PATH",
    )?;
    let mut address = stub_end(&stub_bytes)
        .with_context(|| format!("{} is not a PE32+ EFI stub: pass systemd's linuxx64.efi.stub", stub.display()))?;
    let out = dir.join("uki.efi");
    let mut objcopy = Command::new("objcopy");
    let mut add = |name: &str, file: &Path| -> Result<()> {
        objcopy.arg("--add-section").arg(section_arg(name, file));
        objcopy.arg("--change-section-vma").arg(format!("{name}={address:#x}"));
        address = (address + file_len(file)?).next_multiple_of(PAGE);
        Ok(())
    };
    for (name, file) in sections(parts, dir)? {
        add(name, &file)?;
    }
    add(".linux", bzimage)?;
    make(objcopy.arg(stub).arg(&out), "UKI", &out, parts)
}

const PAGE: u64 = 4096;

/// The first page-aligned address past the stub's image (`ImageBase + SizeOfImage`).
fn stub_end(pe: &[u8]) -> Option<u64> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(pe.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(pe.get(at..at + 8)?.try_into().ok()?));
    let header = u32_at(0x3c)? as usize;
    if pe.get(..2)? != b"MZ" || pe.get(header..header + 4)? != b"PE\0\0" {
        return None;
    }
    let optional = header + 24;
    if pe.get(optional..optional + 2)? != 0x20bu16.to_le_bytes() {
        return None;
    }
    let (image_base, size_of_image) = (u64_at(optional + 24)?, u32_at(optional + 56)?);
    Some((image_base + u64::from(size_of_image)).next_multiple_of(PAGE))
}

/// The `.cmdline` file, and the initrd when there is one.
fn sections(parts: &Parts, dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, parts.cmdline).with_context(|| format!("cannot write {}", cmdline.display()))?;
    let mut sections = vec![(".cmdline", cmdline)];
    sections.extend(parts.initrd.map(|initrd| (".initrd", initrd.to_path_buf())));
    Ok(sections)
}

fn section_arg(name: &str, file: &Path) -> OsString {
    let mut arg = OsString::from(format!("{name}="));
    arg.push(file);
    arg
}

fn make(objcopy: &mut Command, what: &str, out: &Path, parts: &Parts) -> Result<PathBuf> {
    env::require_tool("objcopy", "binutils")?;
    env::run_tool(objcopy).with_context(|| format!("cannot make the {what}"))?;
    let initrd = match parts.initrd {
        Some(initrd) => format!(", initrd {}", mib(file_len(initrd)?)),
        None => String::new(),
    };
    progress(format!("boot partition: {what}, {}{initrd}", mib(file_len(out)?)));
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_sections_after_the_stub() {
        let mut pe = vec![0u8; 0x200];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes());
        pe[0xb0..0xb8].copy_from_slice(&0x1000_0000u64.to_le_bytes());
        pe[0xd0..0xd4].copy_from_slice(&0x19300u32.to_le_bytes());
        assert_eq!(stub_end(&pe), Some(0x1001_a000));
        pe[0x98] = 0x0b; // PE32, not PE32+
        pe[0x99] = 0x01;
        assert_eq!(stub_end(&pe), None);
        assert_eq!(stub_end(b"MZ"), None);
    }
}
