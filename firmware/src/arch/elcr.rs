//! The 8259 PICs' edge/level control registers, present on PIIX3 and ICH9 alike.

use super::outb;
use crate::chipset::Elcr;

const ELCR1: u16 = 0x4d0;
const ELCR2: u16 = 0x4d1;

pub struct PortElcr;

impl Elcr for PortElcr {
    fn set_level_triggered(&mut self, irqs: u16) {
        let [low, high] = irqs.to_le_bytes();
        // SAFETY: ELCR1/ELCR2 only choose each IRQ's trigger mode; the firmware runs with
        // interrupts off, and the OS reprograms them as it sees fit.
        unsafe {
            outb(ELCR1, low);
            outb(ELCR2, high);
        }
    }
}
