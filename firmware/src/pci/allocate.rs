//! Places sized BARs in the windows: largest first, each aligned to its size. Every size is a
//! power of two, so after the first BAR each next one starts exactly where the previous ended
//! and only the window's start can waste space.

use super::{BarKind, Function, PciError, Windows};
use core::cmp::Reverse;

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
        let (_, function, index) = key;
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

/// Orders BARs by size, largest first, then by position.
type Key = (Reverse<u64>, usize, usize);

/// The BAR that follows `previous` in `Key` order: a selection sort over a few hundred BARs at
/// most, which needs no storage.
fn next_in_order(functions: &[Function], previous: Option<Key>) -> Option<Key> {
    let keys = functions.iter().enumerate().flat_map(|(f, function)| {
        function.bars.iter().enumerate().filter_map(move |(b, bar)| Some((Reverse(bar.as_ref()?.size), f, b)))
    });
    keys.filter(|&key| previous.is_none_or(|previous| key > previous)).min()
}
