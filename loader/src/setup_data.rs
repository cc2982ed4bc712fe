//! Relocates the `setup_data` chain QEMU builds for `-kernel` boots.
//!
//! QEMU stores the chain's head at offset 0x250 of the setup blob as a physical address
//! inside a blob it expects its own option ROM (linuxboot_dma.bin) to load at the address
//! its fw_cfg item names: FW_CFG_KERNEL_ADDR (0x100000) or FW_CFG_CMDLINE_ADDR (0x20000).
//! flint loads those blobs elsewhere, so each node is copied to flint's memory and every
//! `next` is rewritten; otherwise the kernel would follow pointers into garbage.
//!
//! What QEMU puts there (hw/i386/x86.c, later x86-common.c, `x86_load_linux`):
//! - all releases: with `-dtb`, one SETUP_DTB node appended to the kernel blob at its next
//!   16-byte boundary, head = KERNEL_ADDR + that offset. QEMU 10.0 (commit 214191f6b574)
//!   counts the setup sectors in that offset, so the head lands setup_size bytes past the
//!   node (a fix was posted in August 2025); walking it then usually fails as Dangling.
//! - 7.2.0 only (reverted in 7.2.1 and 8.0): also a 32-byte SETUP_RNG_SEED node appended
//!   after it, first in the chain, for pc/q35 machine types 7.2; QEMU writes the head into
//!   the setup blob only once the guest selects FW_CFG_SETUP_ADDR, so read that item first.
//! - between 7.2 and 8.0, master (eac7a7791b, reverted) put the nodes in the cmdline blob
//!   instead, head = CMDLINE_ADDR + 16-aligned cmdline size.
//!
//! Walking the chain through whichever blob holds each node covers all of these.

use crate::{le, range};
use core::fmt;

/// Far more nodes than QEMU ever chains; a longer chain is taken for a loop.
pub const MAX_NODES: usize = 32;
/// `struct setup_data`: next (u64), type (u32), len (u32), then `len` bytes of data.
const NODE_HEADER: usize = 16;
const LEN_FIELD: usize = 12;
/// Nodes hold u64 fields, so each copy starts 8-byte aligned.
const NODE_ALIGN: u64 = 8;

/// A blob as QEMU would have placed it in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    pub qemu_addr: u64,
    pub bytes: &'a [u8],
}

/// Copies the chain starting at `head` (a QEMU address) into `dest`, which the firmware
/// placed at `dest_addr`, and returns the new head (0 when there is no chain).
pub fn relocate_chain(head: u64, blobs: &[Blob], dest: &mut [u8], dest_addr: u64) -> Result<u64, SetupDataError> {
    let no_room = SetupDataError::NoRoom { have: dest.len() };
    let mut new_head = 0;
    let mut prev_next = None;
    let mut used = 0usize;
    let mut addr = head;
    let mut nodes = 0;
    while addr != 0 {
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(SetupDataError::TooManyNodes);
        }
        let node = find_node(blobs, addr)?;
        let here = dest_addr.checked_add(used as u64).ok_or(no_room)?;
        let new_addr = range::align_up(here, NODE_ALIGN).ok_or(no_room)?;
        let pos = usize::try_from(new_addr - dest_addr).map_err(|_| no_room)?;
        le::put(dest, pos, node).ok_or(no_room)?;
        // Terminate here; the next node, if any, patches this field.
        le::put(dest, pos, &0u64.to_le_bytes()).ok_or(no_room)?;
        match prev_next {
            Some(at) => le::put(dest, at, &new_addr.to_le_bytes()).ok_or(no_room)?,
            None => new_head = new_addr,
        }
        prev_next = Some(pos);
        used = pos + node.len();
        addr = le::u64_at(node, 0).ok_or(SetupDataError::Truncated { addr })?;
    }
    Ok(new_head)
}

/// The whole node (header and data) at QEMU address `addr`.
fn find_node<'a>(blobs: &[Blob<'a>], addr: u64) -> Result<&'a [u8], SetupDataError> {
    let (bytes, off) = blobs
        .iter()
        .find_map(|b| {
            let off = usize::try_from(addr.checked_sub(b.qemu_addr)?).ok()?;
            (off < b.bytes.len()).then_some((b.bytes, off))
        })
        .ok_or(SetupDataError::Dangling { addr })?;
    let truncated = SetupDataError::Truncated { addr };
    let len = le::u32_at(bytes, off + LEN_FIELD).ok_or(truncated)?;
    let end = usize::try_from(len).ok().and_then(|len| (off + NODE_HEADER).checked_add(len));
    bytes.get(off..end.ok_or(truncated)?).ok_or(truncated)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupDataError {
    Dangling { addr: u64 },
    Truncated { addr: u64 },
    TooManyNodes,
    NoRoom { have: usize },
}

impl fmt::Display for SetupDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Dangling { addr } => write!(
                f,
                "QEMU's setup_data points at {addr:#x}, outside every blob it loads: drop -dtb or use another QEMU"
            ),
            Self::Truncated { addr } => {
                write!(f, "QEMU's setup_data node at {addr:#x} runs past its blob: drop -dtb or use another QEMU")
            }
            Self::TooManyNodes => {
                write!(f, "QEMU's setup_data chain has over {MAX_NODES} nodes (a loop?): drop -dtb or use another QEMU")
            }
            Self::NoRoom { have } => write!(
                f,
                "QEMU's setup_data does not fit the firmware's {have}-byte area: enlarge it in flint's firmware"
            ),
        }
    }
}

impl core::error::Error for SetupDataError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_one_line, node, write};

    #[test]
    fn relocates_a_chain_across_blobs() {
        // An RNG seed in the kernel blob links to a DTB node in the cmdline blob.
        let mut kernel = vec![0xAA; 0x30];
        kernel.extend(node(0x2_0010, 9, &[7; 5]));
        let mut cmdline = b"console=ttyS0\0\0\0".to_vec();
        cmdline.extend(node(0, 2, &[1, 2, 3]));
        let blobs = [Blob { qemu_addr: 0x10_0000, bytes: &kernel }, Blob { qemu_addr: 0x2_0000, bytes: &cmdline }];
        let mut dest = [0xFF; 64];
        let head = relocate_chain(0x10_0030, &blobs, &mut dest, 0x5003).unwrap();
        assert_eq!(head, 0x5008);
        assert_eq!(dest[5..26], node(0x5020, 9, &[7; 5])[..]);
        assert_eq!(dest[29..48], node(0, 2, &[1, 2, 3])[..]);
        assert_eq!(relocate_chain(0, &blobs, &mut [], 0), Ok(0));
    }

    #[test]
    fn rejects_broken_chains() {
        let mut blob = node(0x1000, 9, &[0; 8]);
        let mut dest = [0; 1024];
        let run = |blob: &[u8], dest: &mut [u8], head| {
            relocate_chain(head, &[Blob { qemu_addr: 0x1000, bytes: blob }], dest, 0x8000)
        };
        assert_eq!(run(&blob, &mut dest, 0x1000), Err(SetupDataError::TooManyNodes));
        assert_eq!(run(&blob, &mut dest, 0x1018), Err(SetupDataError::Dangling { addr: 0x1018 }));
        assert_eq!(run(&blob, &mut dest[..20], 0x1000), Err(SetupDataError::NoRoom { have: 20 }));
        write(&mut blob, 0, &0x3000u64.to_le_bytes());
        assert_eq!(run(&blob, &mut dest, 0x1000), Err(SetupDataError::Dangling { addr: 0x3000 }));
        write(&mut blob, LEN_FIELD, &9u32.to_le_bytes());
        assert_eq!(run(&blob, &mut dest, 0x1000), Err(SetupDataError::Truncated { addr: 0x1000 }));
        assert_eq!(run(&blob, &mut dest, 0x1010), Err(SetupDataError::Truncated { addr: 0x1010 }));
        for e in
            [SetupDataError::TooManyNodes, SetupDataError::NoRoom { have: 1 }, SetupDataError::Dangling { addr: 1 }]
        {
            assert_one_line(&e);
        }
    }
}
