//! The two chipsets QEMU's x86 machines have, and the setup SeaBIOS does on them that Linux
//! relies on: the ACPI PM I/O block at 0x600 (its FADT points there), MMCONFIG on q35 (its
//! MCFG table appears only once the MCH decodes it), and PCI interrupt routing.

use crate::pci::{Bdf, ConfigSpace};
use crate::report::{Sink, Text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chipset {
    /// `-machine pc`: i440FX host bridge, PIIX3 ISA bridge, PIIX4 power management.
    Pc,
    /// `-machine q35`: Q35 MCH and ICH9 LPC bridge with its ACPI block.
    Q35,
    /// Any other host bridge: nothing is programmed and PCI interrupt lines stay unset.
    Other,
    /// Nothing answers at the host bridge's address (microvm, which has no PCI): as `Other`.
    Absent,
}

/// For the log.
impl Text for Chipset {
    fn write(&self, out: &mut dyn Sink) {
        let name = match self {
            Chipset::Pc => "pc",
            Chipset::Q35 => "q35",
            Chipset::Other | Chipset::Absent => "other",
        };
        out.put(name.as_bytes());
    }
}

/// The ACPI PM1/GPE I/O block on both chipsets; `exit::power_off` writes PM1a control in it.
pub const PM_BASE: u16 = 0x600;
/// QEMU wires the ACPI SCI to IRQ 9 on both chipsets.
pub const SCI_IRQ: u8 = 9;

/// The ISA IRQs for PIRQ A-H, as SeaBIOS chooses them (10, 10, 11, 11 for A-D and again for E-H).
const PIRQ_IRQS: [u8; 8] = [10, 10, 11, 11, 10, 10, 11, 11];

const INTEL: u16 = 0x8086;
const HOST_BRIDGE: Bdf = Bdf::new(0, 0, 0);
const I440FX_ID: u16 = 0x1237;
const Q35_MCH_ID: u16 = 0x29c0;

const PIIX3_ISA: Bdf = Bdf::new(0, 1, 0);
const PIIX3_ISA_ID: u16 = 0x7000;
const PIIX_PIRQ_ROUTE: u8 = 0x60;

const PIIX4_PM: Bdf = Bdf::new(0, 1, 3);
const PIIX4_PM_ID: u16 = 0x7113;
const PIIX4_PMBA: u8 = 0x40;
const PIIX4_PMREGMISC: u8 = 0x80;
const PIIX4_PM_IO_ENABLE: u8 = 1 << 0;

const MCH_PCIEXBAR: u8 = 0x60;
const MCH_PCIEXBAR_HIGH: u8 = 0x64;
/// q35's MMCONFIG (ECAM) window, where QEMU expects it: buses 0-255 in 256 MiB. The PCI
/// memory window starts above it; the E820 map should reserve it, as SeaBIOS does, or Linux
/// only trusts it once ACPI has been parsed.
pub const MMCONFIG_BASE: u64 = 0xb000_0000;
pub const MMCONFIG_SIZE: u64 = 256 << 20;
/// PCIEXBAR length field 0 selects 256 MiB.
const PCIEXBAR_256_MIB: u32 = 0 << 1;
const PCIEXBAR_ENABLE: u32 = 1 << 0;

const ICH9_LPC: Bdf = Bdf::new(0, 0x1f, 0);
const ICH9_LPC_ID: u16 = 0x2918;
const ICH9_PMBASE: u8 = 0x40;
const ICH9_ACPI_CONTROL: u8 = 0x44;
/// ACPI_EN with SCI_IRQ_SEL 0, which selects IRQ 9.
const ICH9_ACPI_ENABLE_SCI_IRQ9: u8 = 0x80;
const ICH9_PIRQA_ROUTE: u8 = 0x60;
const ICH9_PIRQE_ROUTE: u8 = 0x68;

/// Bit 0 of an I/O base register that is fixed to 1 (I/O space).
const IO_SPACE: u32 = 1;

/// The interrupt controllers' edge/level control registers, behind a trait for host tests.
pub trait Elcr {
    /// Makes the IRQs in the mask level-triggered and all others edge-triggered.
    fn set_level_triggered(&mut self, irqs: u16);
}

pub fn detect<C: ConfigSpace>(cfg: &mut C) -> Chipset {
    let id = cfg.read32(HOST_BRIDGE, 0);
    match ((id & 0xffff) as u16, (id >> 16) as u16) {
        (INTEL, I440FX_ID) => Chipset::Pc,
        (INTEL, Q35_MCH_ID) => Chipset::Q35,
        (0xffff, _) => Chipset::Absent,
        _ => Chipset::Other,
    }
}

/// Whether `bdf` is the Intel function `device`; QEMU omits some (PIIX4 PM with `acpi=off`).
fn is_present<C: ConfigSpace>(cfg: &mut C, bdf: Bdf, device: u16) -> bool {
    cfg.read32(bdf, 0) == u32::from(device) << 16 | u32::from(INTEL)
}

/// Puts the ACPI PM block at `PM_BASE` and, on q35, enables MMCONFIG. Only configuration
/// writes of fixed values, so it is cheap and can run again (the exit path does).
pub fn enable_power_management<C: ConfigSpace>(cfg: &mut C, chipset: Chipset) {
    match chipset {
        Chipset::Pc if is_present(cfg, PIIX4_PM, PIIX4_PM_ID) => {
            cfg.write32(PIIX4_PM, PIIX4_PMBA, u32::from(PM_BASE) | IO_SPACE);
            // QEMU maps the block when this bit is set, at the base written above. The register
            // starts a dword, so the bit is set in it directly: one read, not write8's second.
            let misc = cfg.read32(PIIX4_PM, PIIX4_PMREGMISC);
            cfg.write32(PIIX4_PM, PIIX4_PMREGMISC, misc | u32::from(PIIX4_PM_IO_ENABLE));
        }
        Chipset::Q35 => {
            cfg.write32(HOST_BRIDGE, MCH_PCIEXBAR_HIGH, 0);
            cfg.write32(HOST_BRIDGE, MCH_PCIEXBAR, MMCONFIG_BASE as u32 | PCIEXBAR_256_MIB | PCIEXBAR_ENABLE);
            if is_present(cfg, ICH9_LPC, ICH9_LPC_ID) {
                cfg.write32(ICH9_LPC, ICH9_PMBASE, u32::from(PM_BASE) | IO_SPACE);
                cfg.write8(ICH9_LPC, ICH9_ACPI_CONTROL, ICH9_ACPI_ENABLE_SCI_IRQ9);
            }
        }
        Chipset::Pc | Chipset::Other | Chipset::Absent => {}
    }
}

/// Routes PIRQ A-D (and E-H on ICH9) to `PIRQ_IRQS` and makes those IRQs level-triggered,
/// as PCI interrupts are; until then the chipset leaves the PIRQs unrouted.
pub fn route_interrupts<C: ConfigSpace, E: Elcr>(cfg: &mut C, elcr: &mut E, chipset: Chipset) {
    match chipset {
        Chipset::Pc if is_present(cfg, PIIX3_ISA, PIIX3_ISA_ID) => {
            cfg.write32(PIIX3_ISA, PIIX_PIRQ_ROUTE, route_registers(0));
        }
        Chipset::Q35 if is_present(cfg, ICH9_LPC, ICH9_LPC_ID) => {
            cfg.write32(ICH9_LPC, ICH9_PIRQA_ROUTE, route_registers(0));
            cfg.write32(ICH9_LPC, ICH9_PIRQE_ROUTE, route_registers(4));
        }
        _ => return,
    }
    elcr.set_level_triggered(PIRQ_IRQS.iter().fold(0, |mask, &irq| mask | 1 << irq));
}

/// Four consecutive one-byte PIRQ route registers, from PIRQ `first` on, as one dword.
fn route_registers(first: usize) -> u32 {
    let irqs = &PIRQ_IRQS[first..first + 4];
    u32::from_le_bytes([irqs[0], irqs[1], irqs[2], irqs[3]])
}

/// The ISA IRQ that QEMU delivers interrupt `pin` (1 = INTA .. 4 = INTD) of a bus-0 function
/// on, once `route_interrupts` has run; `None` when there is no pin or no known routing.
pub fn interrupt_line(chipset: Chipset, bdf: Bdf, pin: u8) -> Option<u8> {
    if bdf.bus != 0 || !(1..=4).contains(&pin) {
        return None;
    }
    let intx = pin - 1;
    let slot = bdf.device;
    let pirq = match chipset {
        // The PM function raises the SCI on its own wire, not through a PIRQ.
        Chipset::Pc if bdf == PIIX4_PM => return Some(SCI_IRQ),
        // PIIX3: INTx of slot s goes to PIRQ (x + s - 1) mod 4.
        Chipset::Pc => (intx + slot).wrapping_sub(1) % 4,
        // ICH9 defaults: the chipset's own slots 25-31 use PIRQ A-D by pin (30 uses E-H),
        // slots 0-24 use PIRQ E-H rotated by slot.
        Chipset::Q35 => match slot {
            30 => 4 + intx,
            25..=31 => intx,
            _ => 4 + (slot + intx) % 4,
        },
        Chipset::Other | Chipset::Absent => return None,
    };
    Some(PIRQ_IRQS[usize::from(pirq)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::FakeConfigSpace;

    #[derive(Default)]
    struct FakeElcr(Option<u16>);

    impl Elcr for FakeElcr {
        fn set_level_triggered(&mut self, irqs: u16) {
            self.0 = Some(irqs);
        }
    }

    fn machine(chipset: Chipset) -> FakeConfigSpace {
        let mut cfg = FakeConfigSpace::default();
        match chipset {
            Chipset::Pc => {
                cfg.add(HOST_BRIDGE, INTEL, I440FX_ID, 0);
                cfg.add(PIIX3_ISA, INTEL, PIIX3_ISA_ID, 0x80);
                cfg.add(PIIX4_PM, INTEL, PIIX4_PM_ID, 0);
            }
            Chipset::Q35 => {
                cfg.add(HOST_BRIDGE, INTEL, Q35_MCH_ID, 0);
                cfg.add(ICH9_LPC, INTEL, ICH9_LPC_ID, 0x80);
            }
            Chipset::Other => cfg.add(HOST_BRIDGE, 0x1022, 0x1450, 0),
            Chipset::Absent => {}
        }
        cfg
    }

    #[test]
    fn detects_the_chipset_from_the_host_bridge() {
        assert_eq!(detect(&mut machine(Chipset::Pc)), Chipset::Pc);
        assert_eq!(detect(&mut machine(Chipset::Q35)), Chipset::Q35);
        assert_eq!(detect(&mut machine(Chipset::Other)), Chipset::Other);
        assert_eq!(detect(&mut FakeConfigSpace::default()), Chipset::Absent);
    }

    #[test]
    fn piix4_pm_block_at_0x600_enabled_idempotently() {
        let mut cfg = machine(Chipset::Pc);
        cfg.write8(PIIX4_PM, PIIX4_PMREGMISC + 1, 0x5a);
        for _ in 0..2 {
            enable_power_management(&mut cfg, Chipset::Pc);
            assert_eq!(cfg.read32(PIIX4_PM, PIIX4_PMBA), 0x601);
            assert_eq!(cfg.read8(PIIX4_PM, PIIX4_PMREGMISC), 1);
            assert_eq!(cfg.read8(PIIX4_PM, PIIX4_PMREGMISC + 1), 0x5a, "neighbouring byte kept");
        }
    }

    #[test]
    fn pc_without_acpi_is_left_alone() {
        let mut cfg = FakeConfigSpace::default();
        cfg.add(HOST_BRIDGE, INTEL, I440FX_ID, 0);
        enable_power_management(&mut cfg, Chipset::Pc);
        assert_eq!(cfg.read32(PIIX4_PM, PIIX4_PMBA), u32::MAX, "absent function untouched");
    }

    #[test]
    fn q35_pm_block_acpi_enable_and_mmconfig() {
        let mut cfg = machine(Chipset::Q35);
        for _ in 0..2 {
            enable_power_management(&mut cfg, Chipset::Q35);
            assert_eq!(cfg.read32(ICH9_LPC, ICH9_PMBASE), 0x601);
            assert_eq!(cfg.read8(ICH9_LPC, ICH9_ACPI_CONTROL), 0x80);
            assert_eq!(cfg.read32(HOST_BRIDGE, MCH_PCIEXBAR), 0xb000_0001);
            assert_eq!(cfg.read32(HOST_BRIDGE, MCH_PCIEXBAR_HIGH), 0);
        }
    }

    #[test]
    fn routes_pirqs_like_seabios_and_sets_level_triggering() {
        let mut cfg = machine(Chipset::Pc);
        let mut elcr = FakeElcr::default();
        route_interrupts(&mut cfg, &mut elcr, Chipset::Pc);
        assert_eq!(cfg.read32(PIIX3_ISA, PIIX_PIRQ_ROUTE).to_le_bytes(), [10, 10, 11, 11]);
        assert_eq!(elcr.0, Some(0x0c00));

        let mut cfg = machine(Chipset::Q35);
        let mut elcr = FakeElcr::default();
        route_interrupts(&mut cfg, &mut elcr, Chipset::Q35);
        assert_eq!(cfg.read32(ICH9_LPC, ICH9_PIRQA_ROUTE).to_le_bytes(), [10, 10, 11, 11]);
        assert_eq!(cfg.read32(ICH9_LPC, ICH9_PIRQE_ROUTE).to_le_bytes(), [10, 10, 11, 11]);
        assert_eq!(elcr.0, Some(0x0c00));

        let mut elcr = FakeElcr::default();
        route_interrupts(&mut machine(Chipset::Other), &mut elcr, Chipset::Other);
        assert_eq!(elcr.0, None);
    }

    #[test]
    fn pc_interrupt_lines_follow_the_piix_swizzle() {
        let line = |device, pin| interrupt_line(Chipset::Pc, Bdf::new(0, device, 0), pin);
        // Slot 1 INTA is PIRQA; each slot and each pin shifts by one PIRQ.
        assert_eq!([1, 2, 3, 4].map(|pin| line(1, pin)), [Some(10), Some(10), Some(11), Some(11)]);
        assert_eq!([2, 3, 4, 5].map(|slot| line(slot, 1)), [Some(10), Some(11), Some(11), Some(10)]);
        assert_eq!(line(3, 2), Some(11), "slot 3 INTB is PIRQD");
        assert_eq!(line(0, 1), Some(11), "slot 0 INTA is PIRQD");
        assert_eq!(interrupt_line(Chipset::Pc, PIIX4_PM, 1), Some(SCI_IRQ));
        assert_eq!(line(3, 0), None, "no pin");
        assert_eq!(line(3, 5), None, "invalid pin");
    }

    #[test]
    fn q35_interrupt_lines_follow_ich9_defaults() {
        let line = |device, pin| interrupt_line(Chipset::Q35, Bdf::new(0, device, 0), pin);
        // Slot 0-24: PIRQ E + (slot + pin) mod 4, so slot 1 INTA is PIRQF, slot 2 INTA PIRQG.
        assert_eq!([0, 1, 2, 3].map(|slot| line(slot, 1)), [Some(10), Some(10), Some(11), Some(11)]);
        assert_eq!(line(4, 3), Some(11), "slot 4 INTC is PIRQG");
        // The ICH9's own functions: INTx -> PIRQx, so AHCI (1f.2, INTA) is PIRQA.
        assert_eq!(interrupt_line(Chipset::Q35, Bdf::new(0, 0x1f, 2), 1), Some(10));
        assert_eq!(line(29, 3), Some(11));
        assert_eq!(line(30, 2), Some(10), "slot 30 INTB is PIRQF");
        assert_eq!(interrupt_line(Chipset::Q35, Bdf::new(1, 0, 0), 1), None, "bus 0 only");
        assert_eq!(interrupt_line(Chipset::Other, Bdf::new(0, 3, 0), 1), None);
    }
}
