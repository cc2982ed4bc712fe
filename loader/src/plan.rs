//! Decides where the kernel and the initrd go in guest RAM.

use crate::bzimage::BzImage;
use crate::e820::MemoryMap;
use crate::low_window;
use crate::range::{self, FOUR_GIB, MIB};
use core::fmt;

/// Initrds start on a page boundary.
const PAGE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Where the protected-mode kernel (fw_cfg FW_CFG_KERNEL_DATA) is copied.
    pub kernel_addr: u64,
    /// Where to jump in 64-bit mode, with %rsi pointing at boot_params.
    pub entry64: u64,
    /// Bytes from kernel_addr the kernel may use while it decompresses itself.
    pub kernel_extent: u64,
    /// Where the initrd is copied; 0 when there is none.
    pub initrd_addr: u64,
}

/// `kernel_size` is the protected-mode kernel's size, `reserved` lists `(start, size)`
/// ranges the firmware keeps for itself (zero page, command line, setup_data, page tables).
pub fn plan(
    kernel: &BzImage,
    map: &MemoryMap,
    kernel_size: u64,
    initrd_size: u64,
    cmdline_len: usize,
    reserved: &[(u64, u64)],
) -> Result<LoadPlan, PlanError> {
    let max = kernel.cmdline_size();
    if cmdline_len > max as usize {
        return Err(PlanError::CmdlineTooLong { len: cmdline_len, max });
    }
    let extent = u64::from(kernel.init_size()).max(kernel_size);
    // Only on failure: the total is a walk over the map.
    let too_big = || PlanError::KernelDoesNotFit { need: extent, ram: map.total_ram() };
    let kernel_addr = place_kernel(kernel, map, extent, reserved).ok_or_else(too_big)?;
    // A start `place_kernel` found in RAM, far below 2^64 - 0x200: the sum cannot wrap.
    let entry64 = kernel_addr + kernel.entry64_offset();
    let initrd_addr = match initrd_size {
        0 => 0,
        size => place_initrd(kernel, map, (kernel_addr, extent), size, reserved)
            .ok_or(PlanError::InitrdDoesNotFit { size })?,
    };
    Ok(LoadPlan { kernel_addr, entry64, kernel_extent: extent, initrd_addr })
}

/// At 1 MiB when all the kernel needs fits in the low window there: the boot protocol's
/// classic address for any bzImage (where qboot and QEMU's own option ROM load every one), in
/// the first 2 MiB every boot writes, so the host clears no huge page for the kernel alone.
/// No Linux kernel fits (its `init_size` covers its decompressed self, several MiB): those go
/// at their preferred address, which avoids relocating them; otherwise the lowest aligned spot.
fn place_kernel(kernel: &BzImage, map: &MemoryMap, extent: u64, reserved: &[(u64, u64)]) -> Option<u64> {
    // All RAM and clear of `reserved` exactly when the highest fit ending there starts there:
    // `highest_fit` is what the initrd's placement runs anyway (under TCG, code translated once).
    let fits = |at: u64, end: u64| map.highest_fit(extent, 1, end, reserved) == Some(at);
    let in_window = low_window::START + extent;
    if in_window <= low_window::END && fits(low_window::START, in_window) {
        return Some(low_window::START);
    }
    let pref = kernel.pref_address();
    if pref >= MIB && pref.checked_add(extent).is_some_and(|end| fits(pref, end)) {
        return Some(pref);
    }
    map.lowest_fit(extent, u64::from(kernel.kernel_alignment()), MIB, reserved)
}

/// In the low window when it fits there; otherwise as high as the kernel allows, like other
/// boot loaders, to keep low memory free.
fn place_initrd(
    kernel: &BzImage,
    map: &MemoryMap,
    kernel_range: (u64, u64),
    size: u64,
    reserved: &[(u64, u64)],
) -> Option<u64> {
    let limit = (u64::from(kernel.initrd_addr_max()) + 1).min(FOUR_GIB);
    // Apart from the kernel when above its end or below its start; an initrd ends at or below
    // `limit`, so its end does not wrap.
    let clear = |start: u64| start >= range::end(kernel_range) || start + size <= kernel_range.0;
    let best = low_window::highest_fit(map, size, PAGE, limit, reserved)?;
    if clear(best) {
        return Some(best);
    }
    // A kernel in the window (not Linux: its kernels load at 2 MiB or above): the highest spot.
    let best = map.highest_fit(size, PAGE, limit, reserved)?;
    if clear(best) {
        return Some(best);
    }
    // The highest spot overlaps the kernel, so none lies above it: look below it.
    map.highest_fit(size, PAGE, limit.min(kernel_range.0), reserved)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    CmdlineTooLong { len: usize, max: u32 },
    KernelDoesNotFit { need: u64, ram: u64 },
    InitrdDoesNotFit { size: u64 },
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CmdlineTooLong { len, max } => {
                write!(f, "command line is {len} bytes, kernel accepts {max}: shorten -append")
            }
            Self::KernelDoesNotFit { need, ram } => write!(
                f,
                "kernel needs {} MiB of free RAM above 1 MiB but the VM has {} MiB in all: raise -m",
                mib(need),
                mib(ram)
            ),
            Self::InitrdDoesNotFit { size } => write!(
                f,
                "initrd of {} MiB does not fit in free RAM below 4 GiB: raise -m or shrink the initrd",
                mib(size)
            ),
        }
    }
}

impl core::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::RESERVED;
    use crate::layout::{INIT_SIZE, PREF_ADDRESS};
    use crate::testutil::{assert_one_line, ram_map, setup_blob, write};

    fn kernel() -> BzImage {
        BzImage::parse(&setup_blob()).unwrap()
    }

    #[test]
    fn prefers_pref_address_and_puts_the_initrd_high() {
        let map = ram_map(&[(0, 128 * MIB)]);
        let p = plan(&kernel(), &map, 10 * MIB, 5 * MIB + 1, 2047, &[]).unwrap();
        let want = LoadPlan {
            kernel_addr: 16 * MIB,
            entry64: 16 * MIB + 0x200,
            kernel_extent: 32 * MIB,
            initrd_addr: 123 * MIB - PAGE,
        };
        assert_eq!(p, want);
        assert_eq!(plan(&kernel(), &map, 40 * MIB, 0, 0, &[]).unwrap().kernel_extent, 40 * MIB);
        assert_eq!(plan(&kernel(), &map, 1, 0, 0, &[]).unwrap().initrd_addr, 0);
    }

    #[test]
    fn a_small_initrd_goes_in_the_low_window() {
        let map = ram_map(&[(0, 640 * 1024), (MIB, 127 * MIB)]);
        let p = plan(&kernel(), &map, 10 * MIB, 100 * 1024, 0, &[]).unwrap();
        assert_eq!((p.kernel_addr, p.initrd_addr), (16 * MIB, 2 * MIB - 25 * PAGE));
        // What the firmware reserved there pushes it down; a window too full sends it high.
        let p = plan(&kernel(), &map, 10 * MIB, MIB / 2, 0, &[(2 * MIB - PAGE, PAGE)]).unwrap();
        assert_eq!(p.initrd_addr, 3 * MIB / 2 - PAGE);
        let p = plan(&kernel(), &map, 10 * MIB, 3 * MIB / 4, 0, &[(3 * MIB / 2, PAGE)]).unwrap();
        assert_eq!(p.initrd_addr, 128 * MIB - 3 * MIB / 4);
        // A kernel loaded in the window (not Linux) keeps the initrd out of it.
        let mut b = setup_blob();
        write(&mut b, PREF_ADDRESS, &MIB.to_le_bytes());
        let low = BzImage::parse(&b).unwrap();
        let p = plan(&low, &map, MIB / 2, PAGE, 0, &[]).unwrap();
        assert_eq!((p.kernel_addr, p.initrd_addr), (MIB, 128 * MIB - PAGE));
    }

    #[test]
    fn a_kernel_that_fits_in_the_low_window_loads_at_1_mib() {
        let map = ram_map(&[(0, 640 * 1024), (MIB, 127 * MIB)]);
        let mut b = setup_blob();
        write(&mut b, INIT_SIZE, &(16 * PAGE as u32).to_le_bytes());
        let tiny = BzImage::parse(&b).unwrap();
        // The initrd goes above it in the window, below what is reserved at its top.
        let p = plan(&tiny, &map, 2 * PAGE, 100 * 1024, 0, &[(2 * MIB - PAGE, PAGE)]).unwrap();
        assert_eq!((p.kernel_addr, p.entry64, p.kernel_extent), (MIB, MIB + 0x200, 16 * PAGE));
        assert_eq!(p.initrd_addr, 2 * MIB - 26 * PAGE);
        // Its file, larger than init_size, is what must fit then.
        let p = plan(&tiny, &map, MIB + PAGE, 0, 0, &[]).unwrap();
        assert_eq!((p.kernel_addr, p.kernel_extent), (16 * MIB, MIB + PAGE));
        // Something reserved at 1 MiB, or no RAM there: the preferred address as before.
        assert_eq!(plan(&tiny, &map, PAGE, 0, 0, &[(MIB + 8 * PAGE, PAGE)]).unwrap().kernel_addr, 16 * MIB);
        let high_ram = ram_map(&[(0, 640 * 1024), (2 * MIB, 126 * MIB)]);
        assert_eq!(plan(&tiny, &high_ram, PAGE, 0, 0, &[]).unwrap().kernel_addr, 16 * MIB);
        // A Linux-sized init_size never fits: setup_blob's is 32 MiB.
        assert_eq!(plan(&kernel(), &map, PAGE, 0, 0, &[]).unwrap().kernel_addr, 16 * MIB);
    }

    #[test]
    fn avoids_reserved_ranges_and_the_kernel() {
        let mut map = ram_map(&[(0, 6 * 1024 * MIB)]);
        map.mark(3 * 1024 * MIB, 1024 * MIB, RESERVED).unwrap();
        let reserved = [(20 * MIB, PAGE), (2047 * MIB, MIB)];
        let p = plan(&kernel(), &map, MIB, 100 * MIB, 0, &reserved).unwrap();
        // Pref (16 MiB) collides, so the next 2 MiB boundary past the reservation wins.
        assert_eq!(p.kernel_addr, 22 * MIB);
        // initrd_addr_max is 2 GiB - 1, and the top MiB below it is reserved.
        assert_eq!(p.initrd_addr, 1947 * MIB);
        // A kernel at the top of RAM pushes the initrd below it.
        let mut b = setup_blob();
        write(&mut b, PREF_ADDRESS, &(32 * MIB).to_le_bytes());
        let high = BzImage::parse(&b).unwrap();
        let p = plan(&high, &ram_map(&[(0, 64 * MIB)]), MIB, 8 * MIB, 0, &[]).unwrap();
        assert_eq!((p.kernel_addr, p.initrd_addr), (32 * MIB, 24 * MIB));
        // Right above the kernel's end is clear of it.
        let p = plan(&kernel(), &ram_map(&[(0, 56 * MIB)]), MIB, 8 * MIB, 0, &[]).unwrap();
        assert_eq!((p.kernel_addr, p.kernel_extent, p.initrd_addr), (16 * MIB, 32 * MIB, 48 * MIB));
    }

    #[test]
    fn fails_with_actionable_errors() {
        let map = ram_map(&[(0, 40 * MIB)]);
        let k = kernel();
        let e = plan(&k, &map, MIB, 0, 2048, &[]).unwrap_err();
        assert_eq!(e, PlanError::CmdlineTooLong { len: 2048, max: 2047 });
        assert_eq!(e.to_string(), "command line is 2048 bytes, kernel accepts 2047: shorten -append");
        let e = plan(&k, &ram_map(&[(0, 32 * MIB)]), MIB, 0, 0, &[]).unwrap_err();
        assert_eq!(e, PlanError::KernelDoesNotFit { need: 32 * MIB, ram: 32 * MIB });
        assert_one_line(&e);
        let e = plan(&k, &map, MIB, 7 * MIB, 0, &[]).unwrap_err();
        assert_eq!(e, PlanError::InitrdDoesNotFit { size: 7 * MIB });
        assert_one_line(&e);
    }
}
