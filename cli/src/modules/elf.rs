//! What a module file says about itself: its `.modinfo` section.

use super::canonical;
use anyhow::{Context, Result};

/// The `.modinfo` section of a module: `key=value` strings separated by NULs.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    let section = elf_section(elf, ".modinfo").context("no .modinfo section: not a kernel module")?;
    Ok(section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = std::str::from_utf8(entry).ok()?;
            let (key, value) = entry.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect())
}

/// The modules a module's `depends=` lists.
pub fn depends(elf: &[u8]) -> Result<Vec<String>> {
    Ok(modinfo(elf)?
        .into_iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(',').filter(|n| !n.is_empty()).map(canonical).collect::<Vec<_>>())
        .collect())
}

/// The contents of the section called `name` in a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // ELF magic, 64-bit class, little-endian.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let header = |index: usize| shoff.checked_add(index.checked_mul(shentsize)?);
    let section = |index: usize| -> Option<(u32, &'a [u8])> {
        let at = header(index)?;
        let offset = usize::try_from(u64_at(at + 24)?).ok()?;
        let size = usize::try_from(u64_at(at + 32)?).ok()?;
        Some((u32_at(at)?, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    (0..shnum).find_map(|index| {
        let (name_offset, data) = section(index)?;
        let rest = names.get(name_offset as usize..)?;
        let section_name = &rest[..rest.iter().position(|&b| b == 0)?];
        (section_name == name.as_bytes()).then_some(data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::fake::fake_module;

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = fake_module(b"license=GPL\0depends=virtio_ring,virtio-pci-modern-dev\0name=virtio_pci\0");
        assert_eq!(depends(&elf).unwrap(), ["virtio_ring", "virtio_pci_modern_dev"]);
        assert!(depends(&fake_module(b"depends=\0")).unwrap().is_empty());
        assert!(modinfo(b"not an elf").is_err());
    }
}
