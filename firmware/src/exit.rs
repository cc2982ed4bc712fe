//! Ending the VM. isa-debug-exit carries a status to the host (QEMU exits with
//! `(value << 1) | 1`); without it, ACPI S5 powers off (QEMU exits 0); without either,
//! the CPU halts with the message already on COM1, never rebooting into a loop.

use crate::arch::{halt_forever, outb, outw};
use core::sync::atomic::{AtomicBool, Ordering};

const ISA_DEBUG_EXIT: u16 = 0x501;
/// PM1a control, in the ACPI PM block the chipset module places on both `pc` and `q35`.
const PM1A_CONTROL: u16 = crate::chipset::PM_BASE + 4;
/// SLP_EN with SLP_TYP 0, which QEMU's DSDT declares as S5 (`_S5`).
const SLEEP_S5: u16 = 1 << 13;

/// microvm has no PM block: S5 goes to its ACPI GED device's sleep control register
/// (QEMU's `GED_MMIO_BASE_REGS`), as SLP_EN with SLP_TYP 5.
const GED_SLEEP_CONTROL: u64 = 0xfea0_0200;
const GED_SLEEP_S5: u8 = 1 << 5 | 5 << 2;

/// Set once the firmware knows it runs on microvm (no PCI host bridge); on `pc` and `q35`
/// that address may be a PCI device's.
static ON_MICROVM: AtomicBool = AtomicBool::new(false);

pub fn set_microvm() {
    ON_MICROVM.store(true, Ordering::Relaxed);
}

pub fn power_off(debug_exit_value: u8) -> ! {
    // SAFETY: writing isa-debug-exit ends QEMU at once; an absent device ignores the write.
    unsafe { outb(ISA_DEBUG_EXIT, debug_exit_value) };
    if ON_MICROVM.load(Ordering::Relaxed) {
        // SAFETY: microvm's GED sleep register (identity-mapped MMIO); S5 only powers off,
        // and with ACPI off the address is unassigned and ignores the write.
        unsafe { core::ptr::write_volatile(GED_SLEEP_CONTROL as *mut u8, GED_SLEEP_S5) };
    }
    // SAFETY: PM1a control of the chipset's ACPI block; S5 only powers the machine off.
    unsafe { outw(PM1A_CONTROL, SLEEP_S5) };
    halt_forever()
}
