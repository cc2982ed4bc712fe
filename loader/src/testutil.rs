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
