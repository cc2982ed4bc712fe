//! Boot timeline stamps for the guest. The firmware reads the TSC at its first instruction,
//! once the kernel and initrd are in place, and just before entering the kernel, and hands
//! the three values to the guest as a `setup_data` node of flint's own type at the head of the
//! chain. Linux ignores unknown types and shows every node under
//! `/sys/kernel/boot_params/setup_data/<n>/{type,data}`, where flint's init finds it, so
//! `/proc/cmdline` stays exactly what the user wrote.
//!
//! A PVH boot has no setup_data: there the stamps are appended to the command line as
//! `flint.fwtsc=<reset>,<loaded>,<handoff>` (documented in guest-init/README.md).

use crate::handoff::Handoff;
use crate::layout;
use crate::memory::Memory;

/// "FLNT"; bit 31 clear (Linux reserves it for SETUP_INDIRECT).
pub const SETUP_FLINT_TIMELINE: u32 = 0x464c_4e54;
const STAMPS: usize = 3;
pub const NODE_LEN: usize = 16 + 8 * STAMPS;

#[derive(Clone, Copy, Default)]
pub struct Stamps {
    pub reset: u64,
    pub loaded: u64,
    pub handoff: u64,
}

/// Puts the stamps where the kernel that `handoff` enters looks for them: the node at
/// `layout::TIMELINE` for the 64-bit entry, the command line for PVH.
pub fn record(handoff: &Handoff, memory: &mut impl Memory, stamps: &Stamps) {
    match *handoff {
        Handoff::Linux64 { setup_data, .. } => {
            memory.bytes_mut(layout::TIMELINE, NODE_LEN).copy_from_slice(&node(setup_data, stamps));
        }
        Handoff::Pvh32 { cmdline_len, .. } => {
            append_to_cmdline(memory.bytes_mut(layout::CMDLINE, layout::CMDLINE_MAX), cmdline_len, stamps);
        }
    }
}

/// The node's bytes: `next` (u64), type (u32), length (u32), then the stamps in order.
pub fn node(next: u64, stamps: &Stamps) -> [u8; NODE_LEN] {
    let mut bytes = [0u8; NODE_LEN];
    bytes[0..8].copy_from_slice(&next.to_le_bytes());
    bytes[8..12].copy_from_slice(&SETUP_FLINT_TIMELINE.to_le_bytes());
    bytes[12..16].copy_from_slice(&((8 * STAMPS) as u32).to_le_bytes());
    for (i, stamp) in [stamps.reset, stamps.loaded, stamps.handoff].into_iter().enumerate() {
        bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&stamp.to_le_bytes());
    }
    bytes
}

/// Linux's COMMAND_LINE_SIZE on x86, NUL included.
const LINUX_CMDLINE_MAX: usize = 2048;

/// Appends ` flint.fwtsc=...` to the NUL-terminated command line of `len` bytes in `cmdline`
/// when it fits (in the buffer and within Linux's limit); returns the new length.
/// Runs after the handoff stamp, so it stays small: no `core::fmt`, whose first use costs
/// QEMU's TCG a fraction of a millisecond to translate.
pub fn append_to_cmdline(cmdline: &mut [u8], len: usize, stamps: &Stamps) -> usize {
    let limit = cmdline.len().min(LINUX_CMDLINE_MAX);
    let mut end = len;
    let mut separator: &[u8] = b" flint.fwtsc=";
    for stamp in [stamps.reset, stamps.loaded, stamps.handoff] {
        let mut buf = [0; 20];
        for part in [separator, loader::decimal::decimal(stamp, &mut buf)] {
            // The NUL must fit after it too.
            let Some(room) = cmdline.get_mut(end..limit.saturating_sub(1)).filter(|room| room.len() >= part.len())
            else {
                // Too long: leave the user's command line untouched; the timeline just lacks them.
                if let Some(nul) = cmdline.get_mut(len) {
                    *nul = 0;
                }
                return len;
            };
            room[..part.len()].copy_from_slice(part);
            end += part.len();
        }
        separator = b",";
    }
    if let Some(nul) = cmdline.get_mut(end) {
        *nul = 0;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_layout_matches_struct_setup_data() {
        let bytes = node(0x3000, &Stamps { reset: 1, loaded: 2, handoff: 3 });
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 0x3000);
        assert_eq!(&bytes[8..12], b"TNLF");
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 24);
        assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 3);
    }

    #[test]
    fn stamps_are_appended_only_when_they_fit() {
        let stamps = Stamps { reset: 1, loaded: 22, handoff: 333 };
        let mut buf = [0u8; 64];
        buf[..5].copy_from_slice(b"quiet");
        let len = append_to_cmdline(&mut buf, 5, &stamps);
        assert_eq!(&buf[..=len], b"quiet flint.fwtsc=1,22,333\0");
        let mut small = [0u8; 12];
        small[..5].copy_from_slice(b"quiet");
        assert_eq!(append_to_cmdline(&mut small, 5, &stamps), 5);
        assert_eq!(&small[..6], b"quiet\0");
    }
}
