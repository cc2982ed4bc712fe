//! Base address registers: sizing (write all-ones, read back the writable bits, restore) and
//! programming. Expansion ROM BARs are never touched, so ROMs stay disabled.

use super::{reg, Bdf, ConfigSpace};
use crate::put;
use crate::report::{Hex, Sink, Text};

/// Standard BARs of a type 0 header.
pub const COUNT: usize = 6;

const SPACE_IO: u32 = 1 << 0;
const IO_FLAGS: u32 = 0x3;
const MEM_FLAGS: u32 = 0xf;
const MEM_TYPE_SHIFT: u32 = 1;
const MEM_TYPE_MASK: u32 = 0x3;
const MEM_TYPE_64: u32 = 0x2;
/// I/O BARs may implement only address bits 15:0; the bits above then read as zero.
const IO_UPPER: u64 = 0xffff_ffff_ffff_0000;
const MEM32_UPPER: u64 = 0xffff_ffff_0000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

impl BarKind {
    pub fn space(self) -> &'static str {
        match self {
            BarKind::Io => "I/O",
            BarKind::Mem32 | BarKind::Mem64 => "memory",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    /// A power of two; BARs are aligned to their size.
    pub size: u64,
    /// Zero until assigned.
    pub base: u64,
}

impl Text for Bar {
    fn write(&self, out: &mut dyn Sink) {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem",
            BarKind::Mem64 => "mem64",
        };
        put!(out, "{} {}+{}", kind, Hex(self.base), Hex(self.size));
    }
}

fn offset(index: usize) -> u8 {
    reg::BAR0 + 4 * index as u8
}

/// Sizes the BARs of a type 0 function; entries are `None` for unimplemented BARs and for the
/// upper halves of 64-bit ones.
pub fn size_all<C: ConfigSpace>(cfg: &mut C, bdf: Bdf) -> [Option<Bar>; COUNT] {
    let mut bars = [None; COUNT];
    let mut index = 0;
    while index < COUNT {
        let low = probe(cfg, bdf, offset(index));
        let is_io = low & SPACE_IO != 0;
        let is_64 = !is_io && (low >> MEM_TYPE_SHIFT) & MEM_TYPE_MASK == MEM_TYPE_64 && index + 1 < COUNT;
        // The writable address bits, and the bits above them that a narrower BAR implies.
        let (kind, implied, writable) = if is_io {
            (BarKind::Io, IO_UPPER, u64::from(low & !IO_FLAGS))
        } else if is_64 {
            let high = u64::from(probe(cfg, bdf, offset(index + 1)));
            (BarKind::Mem64, 0, high << 32 | u64::from(low & !MEM_FLAGS))
        } else {
            (BarKind::Mem32, MEM32_UPPER, u64::from(low & !MEM_FLAGS))
        };
        if writable != 0 {
            let mask = implied | writable;
            // The lowest writable address bit is the size.
            bars[index] = Some(Bar { kind, size: mask & mask.wrapping_neg(), base: 0 });
        }
        index += if is_64 { 2 } else { 1 };
    }
    bars
}

/// The BAR's value after writing all-ones; the original value is restored.
fn probe<C: ConfigSpace>(cfg: &mut C, bdf: Bdf, offset: u8) -> u32 {
    let original = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, u32::MAX);
    let value = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, original);
    value
}

/// Writes an assigned base; the low flag bits are read-only, so writing the address suffices.
pub fn program<C: ConfigSpace>(cfg: &mut C, bdf: Bdf, index: usize, bar: &Bar) {
    cfg.write32(bdf, offset(index), bar.base as u32);
    if bar.kind == BarKind::Mem64 {
        cfg.write32(bdf, offset(index + 1), (bar.base >> 32) as u32);
    }
}
