//! An in-memory configuration space for host tests: functions with BARs that behave like
//! hardware (read-only flag bits, address bits writable down to the BAR's size).

use super::{reg, Bdf, ConfigSpace};
use std::collections::BTreeMap;

pub enum BarSpec {
    Io(u32),
    /// An I/O BAR implementing only address bits 15:0.
    Io16(u32),
    Mem32(u32),
    /// 64-bit prefetchable; takes the next BAR as its upper half.
    Mem64(u64),
}

#[derive(Default)]
pub struct FakeConfigSpace {
    functions: BTreeMap<Bdf, Function>,
}

struct Function {
    config: [u32; 64],
    /// Writable bits per dword; everything else is read-only.
    writable: [u32; 64],
}

impl FakeConfigSpace {
    /// A function with its IDs and header type; its other registers are plain read-write.
    pub fn add(&mut self, bdf: Bdf, vendor: u16, device: u16, header_type: u8) {
        let mut function = Function { config: [0; 64], writable: [u32::MAX; 64] };
        function.config[0] = u32::from(device) << 16 | u32::from(vendor);
        function.writable[0] = 0;
        function.config[usize::from(reg::HEADER_TYPE / 4)] = u32::from(header_type) << 16;
        for bar in 0..6 {
            function.writable[usize::from(reg::BAR0 / 4) + bar] = 0;
        }
        self.functions.insert(bdf, function);
    }

    pub fn bar(&mut self, bdf: Bdf, index: usize, spec: BarSpec) {
        let function = self.functions.get_mut(&bdf).expect("function added first");
        let dword = usize::from(reg::BAR0 / 4) + index;
        let (flags, writable) = match spec {
            BarSpec::Io(size) => (0x1, !(size - 1) & !0x3),
            BarSpec::Io16(size) => (0x1, !(size - 1) & 0xfffc),
            BarSpec::Mem32(size) => (0x0, !(size - 1) & !0xf),
            BarSpec::Mem64(size) => {
                function.writable[dword + 1] = (!(size - 1) >> 32) as u32;
                (0xc, !(size - 1) as u32 & !0xf)
            }
        };
        function.config[dword] = flags;
        function.writable[dword] = writable;
    }

    pub fn set_pin(&mut self, bdf: Bdf, pin: u8) {
        let dword = usize::from(reg::INTERRUPT_PIN / 4);
        self.functions.get_mut(&bdf).expect("function added first").config[dword] |= u32::from(pin) << 8;
    }
}

impl ConfigSpace for FakeConfigSpace {
    fn read32(&mut self, bdf: Bdf, offset: u8) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned dword access");
        self.functions.get(&bdf).map_or(u32::MAX, |f| f.config[usize::from(offset / 4)])
    }

    fn write32(&mut self, bdf: Bdf, offset: u8, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned dword access");
        if let Some(f) = self.functions.get_mut(&bdf) {
            let dword = usize::from(offset / 4);
            f.config[dword] = (f.config[dword] & !f.writable[dword]) | (value & f.writable[dword]);
        }
    }
}
