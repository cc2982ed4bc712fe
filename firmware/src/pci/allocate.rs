//! Places sized BARs in the windows: largest first, each aligned to its size. Every size is a
//! power of two, so after the first BAR each next one starts exactly where the previous ended
//! and only the window's start can waste space.

use super::{BarKind, Function, PciError, Windows};

struct Cursor {
    window: (u64, u64),
    next: u64,
}

impl Cursor {
    fn new(window: (u64, u64)) -> Self {
        Cursor { window, next: window.0 }
    }

    fn take(&mut self, size: u64) -> Option<u64> {
        let start = self.next.checked_next_multiple_of(size)?;
        let end = start.checked_add(size).filter(|&end| end <= self.window.1)?;
        self.next = end;
        Some(start)
    }
}

/// Gives every BAR of `functions` a base, or names the first one that does not fit.
pub fn assign(functions: &mut [Function], windows: &Windows) -> Result<(), PciError> {
    let mut mem = Cursor::new(windows.mem);
    let mut io = Cursor::new(windows.io);
    let mut previous = None;
    while let Some(key) = next_in_order(functions, previous) {
        let (function, index) = ((key as u64 >> 3) as usize, (key & 7) as usize);
        // `next_in_order` only names BARs that exist.
        let Some(function) = functions.get_mut(function) else { break };
        let bdf = function.bdf;
        if let Some(bar) = function.bars.get_mut(index).and_then(Option::as_mut) {
            let cursor = if bar.kind == BarKind::Io { &mut io } else { &mut mem };
            bar.base = cursor.take(bar.size).ok_or(PciError::WindowExhausted {
                bdf,
                bar: index,
                kind: bar.kind,
                size: bar.size,
                window: cursor.window,
            })?;
        }
        previous = Some(key);
    }
    Ok(())
}

/// Orders BARs by size, largest first, then by position: the size's complement above the
/// function's index and the BAR's (below 8). One integer, so each comparison is one
/// comparison (under TCG, tuple comparisons were a sixth of the PCI code translated).
type Key = u128;

fn key(size: u64, function: usize, bar: usize) -> Key {
    u128::from(!size) << 64 | (function << 3 | bar) as u128
}

/// The BAR that follows `previous` in `Key` order: a selection sort over a few hundred BARs at
/// most, which needs no storage.
fn next_in_order(functions: &[Function], previous: Option<Key>) -> Option<Key> {
    let mut next = None;
    for (f, function) in functions.iter().enumerate() {
        for (b, bar) in function.bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let key = key(bar.size, f, b);
            if previous.is_none_or(|previous| key > previous) && next.is_none_or(|next| key < next) {
                next = Some(key);
            }
        }
    }
    next
}
