//! Boot timeline stamps for the guest. The firmware reads the TSC at its first instruction,
//! once the kernel and initrd are in place, and just before entering the kernel, and hands
//! the three values to the guest as a `setup_data` node of flint's own type at the head of the
//! chain. Linux ignores unknown types and shows every node under
//! `/sys/kernel/boot_params/setup_data/<n>/{type,data}`, where flint's init finds it, so
//! `/proc/cmdline` stays exactly what the user wrote.

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
}
