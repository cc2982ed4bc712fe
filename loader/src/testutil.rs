//! Synthetic inputs shared by the unit and property tests, and (feature `testutil`) by the
//! firmware's host tests of its hand-off.

use crate::e820::{MemoryMap, RAM};
use crate::layout::*;
use crate::pvh::NOTE_PHYS32_ENTRY;
use goblin::elf64::header::EM_X86_64;
use goblin::elf64::program_header::{PT_LOAD, PT_NOTE, SIZEOF_PHDR};
use std::fmt::Display;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

pub fn write(bytes: &mut [u8], off: usize, src: &[u8]) {
    bytes[off..off + src.len()].copy_from_slice(src);
}

/// The setup part of a 64-bit relocatable protocol-2.15 kernel shaped like Debian's.
pub fn setup_blob() -> Vec<u8> {
    let mut b = vec![0; 1024];
    b[SETUP_SECTS] = 1;
    write(&mut b, BOOT_FLAG, &0xAA55u16.to_le_bytes());
    write(&mut b, JUMP, &[0xEB, 0x6A]);
    write(&mut b, HEADER_MAGIC, b"HdrS");
    write(&mut b, VERSION, &0x20Fu16.to_le_bytes());
    b[0x211] = 1; // loadflags: LOADED_HIGH, which QEMU requires (flint reads none of it)
    write(&mut b, INITRD_ADDR_MAX, &0x7FFF_FFFFu32.to_le_bytes());
    write(&mut b, KERNEL_ALIGNMENT, &0x20_0000u32.to_le_bytes());
    b[RELOCATABLE_KERNEL] = 1;
    b[MIN_ALIGNMENT] = 21;
    write(&mut b, XLOADFLAGS, &3u16.to_le_bytes());
    write(&mut b, CMDLINE_SIZE, &2047u32.to_le_bytes());
    write(&mut b, PREF_ADDRESS, &0x100_0000u64.to_le_bytes());
    write(&mut b, INIT_SIZE, &0x200_0000u32.to_le_bytes());
    b
}

/// QEMU's `etc/e820` encoding of (start, size, kind) entries.
pub fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let entry = |&(a, s, k): &(u64, u64, u32)| [&a.to_le_bytes()[..], &s.to_le_bytes(), &k.to_le_bytes()].concat();
    entries.iter().flat_map(entry).collect()
}

/// A `struct setup_data` node.
pub fn node(next: u64, kind: u32, data: &[u8]) -> Vec<u8> {
    let len = data.len() as u32;
    [&next.to_le_bytes()[..], &kind.to_le_bytes(), &len.to_le_bytes(), data].concat()
}

pub fn ram_map(ranges: &[(u64, u64)]) -> MemoryMap {
    let mut map = MemoryMap::new();
    for &(start, size) in ranges {
        map.mark(start, size, RAM).unwrap();
    }
    map
}

/// Every error message is one line naming the problem, then the fix after ": ".
pub fn assert_one_line(err: &dyn Display) {
    let msg = err.to_string();
    assert!(!msg.contains('\n') && msg.contains(": "), "{msg}");
}

/// Sectors of the disks [`gpt_disk`] makes (1 MiB).
pub const DISK_SECTORS: u64 = 2048;
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;

/// A GPT disk laid out as sfdisk does: protective MBR, header at LBA 1, 128 entries of 128
/// bytes from LBA 2, usable LBAs 34..=DISK_SECTORS-34. Partitions are (type, first, last LBA)
/// in array order; partition i's unique GUID is all i+1.
pub fn gpt_disk(parts: &[(crate::gpt::Guid, u64, u64)]) -> Vec<u8> {
    let mut d = vec![0; DISK_SECTORS as usize * 512];
    write(&mut d, 446 + 4, &[0xee]); // protective MBR partition type
    write(&mut d, 446 + 8, &1u32.to_le_bytes());
    write(&mut d, 446 + 12, &(DISK_SECTORS as u32 - 1).to_le_bytes());
    write(&mut d, 510, &[0x55, 0xaa]);
    let h = 512;
    write(&mut d, h, b"EFI PART");
    write(&mut d, h + 8, &0x0001_0000u32.to_le_bytes());
    write(&mut d, h + 12, &92u32.to_le_bytes());
    write(&mut d, h + 24, &1u64.to_le_bytes());
    write(&mut d, h + 32, &(DISK_SECTORS - 1).to_le_bytes());
    write(&mut d, h + 40, &34u64.to_le_bytes());
    write(&mut d, h + 48, &(DISK_SECTORS - 34).to_le_bytes());
    write(&mut d, h + 56, &[0xd1; 16]);
    write(&mut d, h + 72, &2u64.to_le_bytes());
    write(&mut d, h + 80, &(ENTRIES as u32).to_le_bytes());
    write(&mut d, h + 84, &(ENTRY_SIZE as u32).to_le_bytes());
    for (i, &(kind, first, last)) in parts.iter().enumerate() {
        let e = 1024 + i * ENTRY_SIZE;
        write(&mut d, e, &kind);
        write(&mut d, e + 16, &[i as u8 + 1; 16]);
        write(&mut d, e + 32, &first.to_le_bytes());
        write(&mut d, e + 40, &last.to_le_bytes());
        write(&mut d, e + 56, &[b'p', 0, b'a', 0, b'r', 0, b't', 0]);
    }
    reseal_gpt(&mut d);
    d
}

/// Recomputes the CRC32s of a [`gpt_disk`] after an edit: the array's, then the header's.
pub fn reseal_gpt(d: &mut [u8]) {
    let entries = crc32fast::hash(&d[1024..1024 + ENTRIES * ENTRY_SIZE]);
    write(d, 512 + 88, &entries.to_le_bytes());
    write(d, 512 + 16, &[0; 4]);
    let header = crc32fast::hash(&d[512..512 + 92]);
    write(d, 512 + 16, &header.to_le_bytes());
}

/// A PE32+ x86-64 image shaped like systemd's stub with sections added by objcopy: headers in
/// the first 0x400 bytes, each section's data at a 0x200-aligned offset, padded to 0x200, its
/// virtual size the real length.
pub fn tiny_uki(sections: &[(&[u8; 8], &[u8])]) -> Vec<u8> {
    const PE: usize = 0x80;
    const OPTIONAL_LEN: usize = 240; // PE32+ fields and 16 data directories
    let mut pe = vec![0; 0x400];
    write(&mut pe, 0, b"MZ");
    write(&mut pe, 0x3c, &(PE as u32).to_le_bytes());
    write(&mut pe, PE, b"PE\0\0");
    let coff = PE + 4;
    write(&mut pe, coff, &0x8664u16.to_le_bytes());
    write(&mut pe, coff + 2, &(sections.len() as u16).to_le_bytes());
    write(&mut pe, coff + 16, &(OPTIONAL_LEN as u16).to_le_bytes());
    write(&mut pe, coff + 18, &0x22u16.to_le_bytes()); // executable, large address aware
    let optional = coff + 20;
    write(&mut pe, optional, &0x20bu16.to_le_bytes());
    write(&mut pe, optional + 32, &0x1000u32.to_le_bytes()); // section alignment
    write(&mut pe, optional + 36, &0x200u32.to_le_bytes()); // file alignment
    write(&mut pe, optional + 60, &0x400u32.to_le_bytes()); // size of headers
    write(&mut pe, optional + 68, &10u16.to_le_bytes()); // EFI application
    write(&mut pe, optional + 108, &16u32.to_le_bytes());
    let table = optional + OPTIONAL_LEN;
    for (i, (name, data)) in sections.iter().enumerate() {
        let at = table + 40 * i;
        let (offset, raw) = (pe.len(), data.len().next_multiple_of(0x200));
        write(&mut pe, at, &name[..]);
        write(&mut pe, at + 8, &(data.len() as u32).to_le_bytes());
        write(&mut pe, at + 12, &(0x1_0000 * (i as u32 + 1)).to_le_bytes());
        write(&mut pe, at + 16, &(raw as u32).to_le_bytes());
        write(&mut pe, at + 20, &(offset as u32).to_le_bytes());
        write(&mut pe, at + 36, &0x4000_0040u32.to_le_bytes()); // initialized data, readable
        pe.extend_from_slice(data);
        pe.resize(offset + raw, 0);
    }
    pe
}

/// A minimal ELF64 x86-64 file: one PT_LOAD at 16 MiB and one PT_NOTE with a PVH entry.
pub fn tiny_vmlinux(entry_note: bool) -> Vec<u8> {
    let mut elf = vec![0u8; 0x200];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf[6] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[54..56].copy_from_slice(&(SIZEOF_PHDR as u16).to_le_bytes());
    elf[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let phdr = |elf: &mut Vec<u8>, at: usize, kind: u32, offset: u64, paddr: u64, size: u64| {
        elf[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        elf[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
        elf[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
        elf[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        elf[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
    };
    phdr(&mut elf, 64, PT_LOAD, 0, 0x100_0000, 0x20_0000);
    phdr(&mut elf, 64 + SIZEOF_PHDR, PT_NOTE, 0x100, 0, 20);
    let kind = if entry_note { NOTE_PHYS32_ENTRY } else { 5 };
    let note = [4u32, 4, kind, u32::from_le_bytes(*b"Xen\0"), 0x0100_0ab0];
    for (i, word) in note.iter().enumerate() {
        elf[0x100 + 4 * i..0x104 + 4 * i].copy_from_slice(&word.to_le_bytes());
    }
    elf
}

/// [`tiny_vmlinux`]`(entry_note)` with its PT_LOAD's file part inside the file (0x100
/// bytes) and `sections` (name, data, sh_flags) appended: their data, the names, then the
/// section header table (null section first, names last).
pub fn vmlinux_with(entry_note: bool, sections: &[(&str, &[u8], u64)]) -> Vec<u8> {
    let mut elf = tiny_vmlinux(entry_note);
    write(&mut elf, 64 + 32, &0x100u64.to_le_bytes()); // p_filesz of the PT_LOAD
    if sections.is_empty() {
        return elf;
    }
    let mut names = b"\0.shstrtab\0".to_vec();
    let mut headers = vec![0u8; 64]; // SHN_UNDEF
    let mut header = |name: usize, kind: u32, flags: u64, offset: usize, len: usize| {
        let mut h = [0u8; 64];
        write(&mut h, 0, &(name as u32).to_le_bytes());
        write(&mut h, 4, &kind.to_le_bytes());
        write(&mut h, 8, &flags.to_le_bytes());
        write(&mut h, 24, &(offset as u64).to_le_bytes());
        write(&mut h, 32, &(len as u64).to_le_bytes());
        headers.extend_from_slice(&h);
    };
    for &(name, data, flags) in sections {
        let offset = elf.len();
        elf.extend_from_slice(data);
        header(names.len(), 1, flags, offset, data.len()); // SHT_PROGBITS
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    header(1, 3, 0, elf.len(), names.len()); // SHT_STRTAB
    elf.extend_from_slice(&names);
    elf.resize(elf.len().next_multiple_of(8), 0);
    let count = sections.len() + 2;
    let table = elf.len() as u64;
    write(&mut elf, 40, &table.to_le_bytes()); // e_shoff
    write(&mut elf, 58, &64u16.to_le_bytes());
    write(&mut elf, 60, &(count as u16).to_le_bytes());
    write(&mut elf, 62, &(count as u16 - 1).to_le_bytes());
    elf.extend_from_slice(&headers);
    elf
}
