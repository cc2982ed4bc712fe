//! Boot timeline stamps for the guest. The firmware reads the TSC at its first instruction,
//! once the kernel and initrd are in place, and just before entering the kernel, and hands
//! the three values to the guest as a `setup_data` node of flint's own type at the head of the
//! chain. Linux ignores unknown types and shows every node under
//! `/sys/kernel/boot_params/setup_data/<n>/{type,data}`, where flint's init finds it, so
//! `/proc/cmdline` stays exactly what the user wrote.
//!
//! A PVH boot has no setup_data: there the stamps are appended to the command line as
//! `flint.fwtsc=<reset>,<loaded>,<handoff>` in hexadecimal (documented in guest-init/README.md).
//!
//! Only when the host asks, with the fw_cfg file [`SWITCH`] (`flint run` always does): a boot
//! nobody times skips them, and so the guest instructions QEMU's TCG would translate for them
//! (43 on a PVH boot, the command-line text).

use crate::handoff::Handoff;
use crate::layout;
use crate::memory::Memory;
use core::sync::atomic::{AtomicBool, Ordering};

/// The fw_cfg file whose presence asks for the stamps.
pub const SWITCH: &[u8] = b"opt/flint/timeline";

/// Whether the host asked, as `main.rs` found early on; kept here like the console's verbose
/// switch, rather than carried back through the whole boot.
static REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn set_requested(requested: bool) {
    REQUESTED.store(requested, Ordering::Relaxed);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

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
            write_node(
                memory.bytes_mut(layout::TIMELINE, NODE_LEN).try_into().expect("exact size"),
                setup_data,
                stamps,
            );
        }
        Handoff::Pvh32 { cmdline_len, .. } => {
            append_to_cmdline(memory.bytes_mut(layout::CMDLINE, layout::CMDLINE_MAX), cmdline_len, stamps);
        }
    }
}

/// Writes the node's bytes: `next` (u64), type (u32), length (u32), then the stamps in order.
/// Straight into place, inlined: no node built apart and copied over.
#[inline(always)]
fn write_node(bytes: &mut [u8; NODE_LEN], next: u64, stamps: &Stamps) {
    bytes[0..8].copy_from_slice(&next.to_le_bytes());
    bytes[8..12].copy_from_slice(&SETUP_FLINT_TIMELINE.to_le_bytes());
    bytes[12..16].copy_from_slice(&((8 * STAMPS) as u32).to_le_bytes());
    // Written out rather than looped: a handful of stores, translated once.
    bytes[16..24].copy_from_slice(&stamps.reset.to_le_bytes());
    bytes[24..32].copy_from_slice(&stamps.loaded.to_le_bytes());
    bytes[32..40].copy_from_slice(&stamps.handoff.to_le_bytes());
}

/// The node's bytes, for tests to compare with.
#[cfg(test)]
pub fn node(next: u64, stamps: &Stamps) -> [u8; NODE_LEN] {
    let mut bytes = [0; NODE_LEN];
    write_node(&mut bytes, next, stamps);
    bytes
}

/// Linux's COMMAND_LINE_SIZE on x86, NUL included.
const LINUX_CMDLINE_MAX: usize = 2048;
const KEY: &[u8] = b" flint.fwtsc=";
/// Hex digits per stamp: fixed width, so the text's length and every digit's place are known.
const DIGITS: usize = 16;
/// The key, the stamps with commas between them, and the NUL.
const APPENDED: usize = KEY.len() + STAMPS * (DIGITS + 1);

/// Appends ` flint.fwtsc=<reset>,<loaded>,<handoff>` (16 lowercase hex digits each) to the
/// NUL-terminated command line of `len` bytes in `cmdline` when it fits (in the buffer and
/// within Linux's limit); returns the new length.
/// Runs after the handoff stamp, so it stays small: fixed-width hex is a shift and a look-up
/// a digit, where decimal takes a division and a variable length (no `core::fmt` either,
/// whose first use costs QEMU's TCG a fraction of a millisecond to translate). Inlined into
/// `record`, its one caller: the stamps are read where they are, with no call around them.
#[inline(always)]
pub fn append_to_cmdline(cmdline: &mut [u8], len: usize, stamps: &Stamps) -> usize {
    let room = cmdline.get_mut(len..).and_then(|rest| rest.first_chunk_mut::<APPENDED>());
    let Some(room) = room.filter(|_| len + APPENDED <= LINUX_CMDLINE_MAX) else {
        // Too long: leave the user's command line untouched; the timeline just lacks them.
        if let Some(nul) = cmdline.get_mut(len) {
            *nul = 0;
        }
        return len;
    };
    room[..KEY.len()].copy_from_slice(KEY);
    // One flat loop: under TCG a loop's body is translated again for each loop around it.
    let stamps = [stamps.reset, stamps.loaded, stamps.handoff];
    for i in 0..STAMPS * DIGITS {
        let nibble = stamps[i / DIGITS] >> (4 * (DIGITS - 1 - i % DIGITS)) & 0xf;
        room[KEY.len() + i + i / DIGITS] = b"0123456789abcdef"[nibble as usize];
    }
    room[KEY.len() + DIGITS] = b',';
    room[KEY.len() + 2 * DIGITS + 1] = b',';
    room[APPENDED - 1] = 0;
    len + APPENDED - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_layout_matches_struct_setup_data() {
        let mut bytes = [0xee; NODE_LEN];
        write_node(&mut bytes, 0x3000, &Stamps { reset: 1, loaded: 2, handoff: 3 });
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 0x3000);
        assert_eq!(&bytes[8..12], b"TNLF");
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 24);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 3);
    }

    #[test]
    fn stamps_are_appended_only_when_they_fit() {
        let stamps = Stamps { reset: 1, loaded: 22, handoff: 333 };
        let mut buf = [0u8; 80];
        buf[..5].copy_from_slice(b"quiet");
        let len = append_to_cmdline(&mut buf, 5, &stamps);
        assert_eq!(&buf[..=len], b"quiet flint.fwtsc=0000000000000001,0000000000000016,000000000000014d\0");
        // The NUL must fit too.
        let mut exact = [0xffu8; 5 + APPENDED];
        exact[..5].copy_from_slice(b"quiet");
        assert_eq!(append_to_cmdline(&mut exact, 5, &stamps), 5 + APPENDED - 1);
        let mut short = [0xffu8; 5 + APPENDED - 1];
        short[..5].copy_from_slice(b"quiet");
        assert_eq!(append_to_cmdline(&mut short, 5, &stamps), 5);
        assert_eq!(short[5], 0);
        let mut small = [0u8; 12];
        small[..5].copy_from_slice(b"quiet");
        assert_eq!(append_to_cmdline(&mut small, 5, &stamps), 5);
        assert_eq!(&small[..6], b"quiet\0");
    }
}
