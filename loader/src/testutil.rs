//! Synthetic inputs shared by the unit and property tests.

use crate::e820::{MemoryMap, RAM};
use crate::layout::*;
use std::fmt::Display;

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
    b[LOADFLAGS] = 1;
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
