//! PCI on bus 0: finds every function, gives each BAR an address inside the caller's windows,
//! routes its interrupt pin and turns decoding on, as SeaBIOS does before an OS starts. Linux
//! then keeps these assignments instead of allocating around stale zero BARs.
//!
//! Only bus 0 is handled: QEMU's `pc` and `q35` put their devices there unless bridges or root
//! ports are added. A bridge is listed in the summary but neither entered nor enabled, so the
//! OS numbers its buses and opens its windows itself.

mod allocate;
mod bar;
#[cfg(test)]
pub mod fake;

pub use bar::{Bar, BarKind};

use crate::chipset::{self, Chipset};
use crate::put;
use crate::report::{Hex, PaddedHex, Sink, Text};

/// Access to configuration space, behind a trait so the logic runs in host tests.
/// Offsets of `read32`/`write32` are dword-aligned; the narrower helpers read-modify-write.
pub trait ConfigSpace {
    fn read32(&mut self, bdf: Bdf, offset: u8) -> u32;
    fn write32(&mut self, bdf: Bdf, offset: u8, value: u32);

    fn read16(&mut self, bdf: Bdf, offset: u8) -> u16 {
        (self.read32(bdf, offset & !3) >> shift(offset)) as u16
    }

    fn read8(&mut self, bdf: Bdf, offset: u8) -> u8 {
        (self.read32(bdf, offset & !3) >> shift(offset)) as u8
    }

    fn write16(&mut self, bdf: Bdf, offset: u8, value: u16) {
        let old = self.read32(bdf, offset & !3);
        self.write32(bdf, offset & !3, merge(old, offset, 0xffff, value.into()));
    }

    fn write8(&mut self, bdf: Bdf, offset: u8, value: u8) {
        let old = self.read32(bdf, offset & !3);
        self.write32(bdf, offset & !3, merge(old, offset, 0xff, value.into()));
    }
}

fn shift(offset: u8) -> u32 {
    u32::from(offset & 3) * 8
}

/// `old` with the `mask`-wide field at `offset` replaced by `value`.
fn merge(old: u32, offset: u8, mask: u32, value: u32) -> u32 {
    (old & !(mask << shift(offset))) | (value << shift(offset))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Bdf { bus, device, function }
    }
}

/// `bb:dd.f`, as lspci shows it.
impl Text for Bdf {
    fn write(&self, out: &mut dyn Sink) {
        let (bus, device, function) = (self.bus.into(), self.device.into(), self.function.into());
        put!(out, "{}:{}.{}", PaddedHex::<2>(bus), PaddedHex::<2>(device), PaddedHex::<1>(function));
    }
}

/// Configuration header registers (PCI Local Bus 3.0, 6.1).
pub mod reg {
    pub const ID: u8 = 0x00;
    pub const COMMAND: u8 = 0x04;
    pub const CLASS_REVISION: u8 = 0x08;
    pub const HEADER_TYPE: u8 = 0x0e;
    pub const BAR0: u8 = 0x10;
    pub const INTERRUPT_LINE: u8 = 0x3c;
    pub const INTERRUPT_PIN: u8 = 0x3d;
}

const COMMAND_IO: u16 = 1 << 0;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const HEADER_MULTIFUNCTION: u8 = 0x80;
const HEADER_LAYOUT: u8 = 0x7f;
const HEADER_DEVICE: u8 = 0;
const HEADER_BRIDGE: u8 = 1;
const NO_DEVICE: u16 = 0xffff;
const DEVICES_PER_BUS: u8 = 32;
const FUNCTIONS_PER_DEVICE: u8 = 8;

/// How many functions the summary holds; QEMU's default machines use fewer than a dozen.
pub const MAX_FUNCTIONS: usize = 32;

/// Where BARs may go: half-open `(start, end)` ranges of memory and I/O space.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub mem: (u64, u64),
    pub io: (u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    Device,
    Bridge,
    /// CardBus or unknown layouts: listed, left alone.
    Other(u8),
}

/// One function found on bus 0 and what it was given.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Base class and subclass.
    pub class: u16,
    pub header: Header,
    pub irq: Option<u8>,
    /// Indexed like the BAR registers; the upper half of a 64-bit BAR is `None`.
    pub bars: [Option<Bar>; bar::COUNT],
}

impl Text for Function {
    fn write(&self, out: &mut dyn Sink) {
        let (vendor, device, class) = (self.vendor.into(), self.device.into(), self.class.into());
        put!(out, "{} {}:{} class {}", self.bdf, PaddedHex::<4>(vendor), PaddedHex::<4>(device), PaddedHex::<4>(class));
        match self.header {
            Header::Device => {}
            Header::Bridge => return put!(out, " bridge, buses behind it left to the OS"),
            Header::Other(layout) => return put!(out, " header type {} left alone", Hex(layout.into())),
        }
        if let Some(irq) = self.irq {
            put!(out, " irq {}", irq);
        }
        for (index, bar) in self.bars.iter().enumerate() {
            if let Some(bar) = bar {
                put!(out, " bar{} {}", index, bar);
            }
        }
    }
}

const EMPTY_FUNCTION: Function = Function {
    bdf: Bdf::new(0, 0, 0),
    vendor: 0,
    device: 0,
    class: 0,
    header: Header::Device,
    irq: None,
    bars: [None; bar::COUNT],
};

/// What `setup` did, one entry per function, for the caller to log.
pub struct Summary {
    functions: [Function; MAX_FUNCTIONS],
    count: usize,
}

impl Summary {
    /// No functions yet: what `setup` fills in, where it stays.
    pub fn none() -> Summary {
        Summary { functions: [EMPTY_FUNCTION; MAX_FUNCTIONS], count: 0 }
    }

    pub fn functions(&self) -> &[Function] {
        self.functions.get(..self.count).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    TooManyFunctions,
    WindowExhausted { bdf: Bdf, bar: usize, kind: BarKind, size: u64, window: (u64, u64) },
}

impl Text for PciError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            PciError::TooManyFunctions => put!(out, "more than {} PCI functions on bus 0; remove devices or raise pci::MAX_FUNCTIONS", MAX_FUNCTIONS),
            PciError::WindowExhausted { bdf, bar, kind, size, window } => put!(out, "PCI {} BAR{} needs {} bytes of {} space but the window {}-{} is full; remove devices or give the guest less RAM below 4 GiB", bdf, bar, Hex(size), kind.space(), Hex(window.0), Hex(window.1)),
        }
    }
}

/// Assigns every BAR on bus 0, sets interrupt lines and enables I/O, memory and bus mastering;
/// lists what it did in `summary` (filled in place: it is kilobytes, and under TCG every move of
/// it is code to translate). The chipset's PIRQ routing must already be programmed
/// (`chipset::route_interrupts`).
pub fn setup<C: ConfigSpace>(
    cfg: &mut C,
    chipset: Chipset,
    windows: &Windows,
    summary: &mut Summary,
) -> Result<(), PciError> {
    discover(cfg, summary)?;
    let functions = summary.functions.get_mut(..summary.count).unwrap_or_default();
    allocate::assign(functions, windows)?;
    for function in functions.iter_mut().filter(|f| f.header == Header::Device) {
        let bdf = function.bdf;
        for (index, bar) in function.bars.iter().enumerate() {
            if let Some(bar) = bar {
                bar::program(cfg, bdf, index, bar);
            }
        }
        let pin = cfg.read8(bdf, reg::INTERRUPT_PIN);
        function.irq = chipset::interrupt_line(chipset, bdf, pin);
        if let Some(irq) = function.irq {
            cfg.write8(bdf, reg::INTERRUPT_LINE, irq);
        }
        // Each command write makes QEMU rebuild its memory map (about 1 ms under TCG), so
        // functions without BARs (host bridge, ISA bridge, PM) are left as they are.
        if function.bars.iter().any(Option::is_some) {
            let command = cfg.read16(bdf, reg::COMMAND);
            let enabled = command | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER;
            if enabled != command {
                cfg.write16(bdf, reg::COMMAND, enabled);
            }
        }
    }
    Ok(())
}

/// Lists bus 0's functions and sizes the BARs of ordinary devices, with their decoding off.
fn discover<C: ConfigSpace>(cfg: &mut C, summary: &mut Summary) -> Result<(), PciError> {
    summary.count = 0;
    for device in 0..DEVICES_PER_BUS {
        for function in 0..FUNCTIONS_PER_DEVICE {
            let bdf = Bdf::new(0, device, function);
            let id = cfg.read32(bdf, reg::ID);
            if id as u16 == NO_DEVICE {
                if function == 0 {
                    break;
                }
                continue;
            }
            let header_type = cfg.read8(bdf, reg::HEADER_TYPE);
            let slot = summary.functions.get_mut(summary.count).ok_or(PciError::TooManyFunctions)?;
            summary.count += 1;
            *slot = Function {
                bdf,
                vendor: id as u16,
                device: (id >> 16) as u16,
                class: (cfg.read32(bdf, reg::CLASS_REVISION) >> 16) as u16,
                header: match header_type & HEADER_LAYOUT {
                    HEADER_DEVICE => Header::Device,
                    HEADER_BRIDGE => Header::Bridge,
                    layout => Header::Other(layout),
                },
                ..EMPTY_FUNCTION
            };
            if slot.header == Header::Device {
                // A BAR being sized briefly decodes all-ones addresses: keep decoding off.
                let command = cfg.read16(bdf, reg::COMMAND);
                if command & (COMMAND_IO | COMMAND_MEMORY) != 0 {
                    cfg.write16(bdf, reg::COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
                }
                slot.bars = bar::size_all(cfg, bdf);
            }
            if function == 0 && header_type & HEADER_MULTIFUNCTION == 0 {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fake::{BarSpec, FakeConfigSpace};
    use super::*;

    fn run(cfg: &mut FakeConfigSpace, chipset: Chipset, windows: &Windows) -> Result<Summary, PciError> {
        let mut summary = Summary::none();
        setup(cfg, chipset, windows, &mut summary).map(|()| summary)
    }

    const WINDOWS: Windows = Windows { mem: (0xc000_0000, 0xfec0_0000), io: (0xc000, 0x1_0000) };

    fn q35_with_devices() -> FakeConfigSpace {
        let mut cfg = FakeConfigSpace::default();
        cfg.add(Bdf::new(0, 0, 0), 0x8086, 0x29c0, 0);
        // virtio-blk-pci (transitional): I/O, MSI-X table, 64-bit prefetchable.
        let blk = Bdf::new(0, 3, 0);
        cfg.add(blk, 0x1af4, 0x1001, 0);
        cfg.bar(blk, 0, BarSpec::Io(0x40));
        cfg.bar(blk, 1, BarSpec::Mem32(0x1000));
        cfg.bar(blk, 4, BarSpec::Mem64(0x4000));
        cfg.set_pin(blk, 1);
        // A multifunction device: function 0 says so, function 2 exists, 1 does not.
        let multi = Bdf::new(0, 5, 0);
        cfg.add(multi, 0x8086, 0x1234, HEADER_MULTIFUNCTION);
        cfg.bar(multi, 0, BarSpec::Mem32(0x100_0000));
        cfg.set_pin(multi, 1);
        let second = Bdf::new(0, 5, 2);
        cfg.add(second, 0x8086, 0x1235, 0);
        cfg.bar(second, 2, BarSpec::Io(0x20));
        cfg.set_pin(second, 3);
        // Function 1 of a single-function device must not be probed even if it answers.
        cfg.add(Bdf::new(0, 3, 1), 0xdead, 0xbeef, 0);
        cfg
    }

    fn function(summary: &Summary, bdf: Bdf) -> Function {
        *summary.functions().iter().find(|f| f.bdf == bdf).expect("function listed")
    }

    #[test]
    fn finds_functions_honouring_the_multifunction_bit() {
        let mut cfg = q35_with_devices();
        let summary = run(&mut cfg, Chipset::Q35, &WINDOWS).unwrap();
        let found: Vec<Bdf> = summary.functions().iter().map(|f| f.bdf).collect();
        assert_eq!(found, [Bdf::new(0, 0, 0), Bdf::new(0, 3, 0), Bdf::new(0, 5, 0), Bdf::new(0, 5, 2)]);
    }

    #[test]
    fn assigns_naturally_aligned_non_overlapping_bars_largest_first() {
        let mut cfg = q35_with_devices();
        let summary = run(&mut cfg, Chipset::Q35, &WINDOWS).unwrap();
        let mut ranges = Vec::new();
        for f in summary.functions() {
            for bar in f.bars.iter().flatten() {
                assert_eq!(bar.base % bar.size, 0, "{}: natural alignment", crate::report::string(f));
                let window = if bar.kind == BarKind::Io { WINDOWS.io } else { WINDOWS.mem };
                assert!(
                    bar.base >= window.0 && bar.base + bar.size <= window.1,
                    "{}: inside window",
                    crate::report::string(f)
                );
                ranges.push((bar.kind == BarKind::Io, bar.base, bar.base + bar.size));
            }
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(a.0 != b.0 || a.2 <= b.1 || b.2 <= a.1, "{a:?} overlaps {b:?}");
            }
        }
        // The 16 MiB BAR is the largest, so it takes the window's start.
        assert_eq!(function(&summary, Bdf::new(0, 5, 0)).bars[0].unwrap().base, 0xc000_0000);
    }

    #[test]
    fn programs_the_registers_and_enables_decoding() {
        let mut cfg = q35_with_devices();
        let summary = run(&mut cfg, Chipset::Q35, &WINDOWS).unwrap();
        let blk = Bdf::new(0, 3, 0);
        let bars = function(&summary, blk).bars;
        let io = bars[0].unwrap();
        assert_eq!(io.kind, BarKind::Io);
        assert_eq!(cfg.read32(blk, reg::BAR0), io.base as u32 | 1, "I/O space indicator kept");
        assert_eq!(cfg.read32(blk, reg::BAR0 + 4), bars[1].unwrap().base as u32);
        let mem64 = bars[4].unwrap();
        assert_eq!(mem64.kind, BarKind::Mem64);
        assert!(bars[5].is_none(), "upper half of a 64-bit BAR is not a BAR");
        assert_eq!(cfg.read32(blk, reg::BAR0 + 16), mem64.base as u32 | 0xc, "64-bit prefetchable bits kept");
        assert_eq!(cfg.read32(blk, reg::BAR0 + 20), (mem64.base >> 32) as u32);
        assert_eq!(cfg.read16(blk, reg::COMMAND), 0x7);
        assert_eq!(cfg.read32(blk, 0x30), 0, "expansion ROM left disabled");
    }

    #[test]
    fn sets_interrupt_lines_from_the_chipset_routing() {
        let mut cfg = q35_with_devices();
        let summary = run(&mut cfg, Chipset::Q35, &WINDOWS).unwrap();
        // q35 slots 0-24: PIRQ E-H rotated by slot; PIRQ E,F -> 10, G,H -> 11.
        for (bdf, irq) in [(Bdf::new(0, 3, 0), 11), (Bdf::new(0, 5, 0), 10), (Bdf::new(0, 5, 2), 11)] {
            assert_eq!(cfg.read8(bdf, reg::INTERRUPT_LINE), irq, "{}", crate::report::string(&bdf));
            assert_eq!(function(&summary, bdf).irq, Some(irq));
        }
        assert_eq!(function(&summary, Bdf::new(0, 0, 0)).irq, None, "no pin, no line");
    }

    #[test]
    fn sizes_io_bars_that_decode_only_16_bits() {
        let mut cfg = FakeConfigSpace::default();
        let bdf = Bdf::new(0, 4, 0);
        cfg.add(bdf, 0x1af4, 0x1000, 0);
        cfg.bar(bdf, 0, BarSpec::Io16(0x20));
        let summary = run(&mut cfg, Chipset::Pc, &WINDOWS).unwrap();
        assert_eq!(function(&summary, bdf).bars[0].unwrap().size, 0x20);
    }

    #[test]
    fn reports_an_exhausted_window() {
        let mut cfg = q35_with_devices();
        let small = Windows { mem: (0xc000_0000, 0xc080_0000), ..WINDOWS };
        let err = run(&mut cfg, Chipset::Q35, &small).err().unwrap();
        assert_eq!(
            err,
            PciError::WindowExhausted {
                bdf: Bdf::new(0, 5, 0),
                bar: 0,
                kind: BarKind::Mem32,
                size: 0x100_0000,
                window: small.mem
            }
        );
        let message = crate::report::string(&err);
        assert!(message.contains("00:05.0 BAR0") && !message.contains('\n'), "{message}");
        let no_io = Windows { io: (0xc000, 0xc040), ..WINDOWS };
        assert!(matches!(
            run(&mut q35_with_devices(), Chipset::Q35, &no_io),
            Err(PciError::WindowExhausted { kind: BarKind::Io, size: 0x20, .. })
        ));
    }

    #[test]
    fn sizes_64_bit_bars_beyond_4_gib() {
        let mut cfg = FakeConfigSpace::default();
        let bdf = Bdf::new(0, 6, 0);
        cfg.add(bdf, 0x1b36, 0x0010, 0);
        cfg.bar(bdf, 2, BarSpec::Mem64(8 << 30));
        let err = run(&mut cfg, Chipset::Q35, &WINDOWS).err().unwrap();
        assert!(matches!(err, PciError::WindowExhausted { bar: 2, kind: BarKind::Mem64, size: 0x2_0000_0000, .. }));
    }

    #[test]
    fn leaves_bridges_alone() {
        let mut cfg = FakeConfigSpace::default();
        let bridge = Bdf::new(0, 0x1e, 0);
        cfg.add(bridge, 0x8086, 0x244e, HEADER_BRIDGE);
        cfg.bar(bridge, 0, BarSpec::Mem32(0x1000));
        let summary = run(&mut cfg, Chipset::Q35, &WINDOWS).unwrap();
        assert_eq!(function(&summary, bridge).header, Header::Bridge);
        assert_eq!(cfg.read16(bridge, reg::COMMAND), 0, "no decoding through unprogrammed windows");
        assert_eq!(cfg.read32(bridge, reg::BAR0), 0);
    }

    #[test]
    fn too_many_functions_is_an_error() {
        let mut cfg = FakeConfigSpace::default();
        for device in 0..5 {
            for function in 0..8 {
                cfg.add(Bdf::new(0, device, function), 0x1b36, 0x000c, HEADER_MULTIFUNCTION);
            }
        }
        assert_eq!(run(&mut cfg, Chipset::Q35, &WINDOWS).err(), Some(PciError::TooManyFunctions));
    }

    #[test]
    fn narrow_accessors_read_modify_write() {
        let mut cfg = FakeConfigSpace::default();
        let bdf = Bdf::new(0, 1, 0);
        cfg.add(bdf, 0x8086, 0x7000, 0);
        cfg.write32(bdf, 0x60, 0x4433_2211);
        cfg.write8(bdf, 0x62, 0xaa);
        cfg.write16(bdf, 0x60, 0xbbcc);
        assert_eq!(cfg.read32(bdf, 0x60), 0x44aa_bbcc);
        assert_eq!(cfg.read8(bdf, 0x63), 0x44);
        assert_eq!(cfg.read16(bdf, 0x62), 0x44aa);
    }
}
