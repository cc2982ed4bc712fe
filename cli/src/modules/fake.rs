//! Module files for tests: minimal ELF64 objects with just the sections flint and depmod read,
//! and their compressed forms (`.ko.xz`, `.ko.zst`, `.ko.gz`).

use std::io::{Read, Write};
use std::path::Path;

/// A little-endian ELF64 with `sections` and its section-name table.
fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for name in std::iter::once(".shstrtab").chain(sections.iter().map(|(name, _)| *name)) {
        name_offsets.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    // Section 0 is the null section; 1 the names; then `sections`.
    let mut placed = vec![(0, 0, 0)];
    for (name_offset, data) in name_offsets.iter().zip(std::iter::once(&names[..]).chain(sections.iter().map(|s| s.1)))
    {
        placed.push((*name_offset, elf.len(), data.len()));
        elf.extend_from_slice(data);
    }
    let shoff = elf.len();
    for (name, offset, size) in &placed {
        let mut sh = [0u8; 64];
        sh[..4].copy_from_slice(&name.to_le_bytes());
        sh[24..32].copy_from_slice(&(*offset as u64).to_le_bytes());
        sh[32..40].copy_from_slice(&(*size as u64).to_le_bytes());
        elf.extend_from_slice(&sh);
    }
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&(placed.len() as u16).to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    elf
}

/// A module with a `.modinfo` section only.
pub(super) fn fake_module(modinfo: &[u8]) -> Vec<u8> {
    elf(&[(".modinfo", modinfo)])
}

/// A module depmod can link: it exports `exports` (named in `__ksymtab_strings`) and uses
/// `imports` (undefined global symbols in `.symtab`), from which depmod derives modules.dep.
pub(super) fn linking_module(modinfo: &[u8], exports: &[&str], imports: &[&str]) -> Vec<u8> {
    let ksymtab: Vec<u8> = exports.iter().flat_map(|name| name.bytes().chain([0])).collect();
    let mut strtab = vec![0u8];
    // The first symbol is the null symbol; each import is STB_GLOBAL, SHN_UNDEF.
    let mut symtab = vec![0u8; 24];
    for name in imports {
        let mut symbol = [0u8; 24];
        symbol[..4].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
        symbol[4] = 0x10;
        symtab.extend_from_slice(&symbol);
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
    }
    elf(&[(".modinfo", modinfo), ("__ksymtab_strings", &ksymtab), (".symtab", &symtab), (".strtab", &strtab)])
}

/// Writes `data` at `path` under `root`, making the directories on the way.
pub(super) fn write(root: &Path, path: &str, data: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

pub(super) fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    liblzma::read::XzEncoder::new(data, 6).read_to_end(&mut out).unwrap();
    out
}

pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
