//! PCI configuration mechanism #1 (CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at 0xCFC), which both
//! QEMU's i440FX and Q35 host bridges decode.

use super::{inl, outl};
use crate::pci::{Bdf, ConfigSpace};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
const ENABLE: u32 = 1 << 31;

#[derive(Clone)]
pub struct PortConfigSpace;

fn address(bdf: Bdf, offset: u8) -> u32 {
    ENABLE
        | u32::from(bdf.bus) << 16
        | u32::from(bdf.device & 0x1f) << 11
        | u32::from(bdf.function & 0x7) << 8
        | u32::from(offset & 0xfc)
}

// Out of line: the PCI scan calls these from many places, and under TCG every inlined copy is
// translated again.
impl ConfigSpace for PortConfigSpace {
    #[inline(never)]
    fn read32(&mut self, bdf: Bdf, offset: u8) -> u32 {
        // SAFETY: the host bridge's configuration ports; selecting and reading a register has
        // no side effect, and the firmware runs on one CPU, so the address/data pair is ours.
        unsafe {
            outl(CONFIG_ADDRESS, address(bdf, offset));
            inl(CONFIG_DATA)
        }
    }

    #[inline(never)]
    fn write32(&mut self, bdf: Bdf, offset: u8, value: u32) {
        // SAFETY: as for `read32`; the callers write registers they mean to program.
        unsafe {
            outl(CONFIG_ADDRESS, address(bdf, offset));
            outl(CONFIG_DATA, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_config_address() {
        assert_eq!(address(Bdf::new(0, 0x1f, 3), 0x42), 0x8000_fb40);
        assert_eq!(address(Bdf::new(1, 2, 0), 0x10), 0x8001_1010);
    }
}
