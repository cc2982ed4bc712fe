//! The PVH hand-off: with the vmlinux's segments in memory (QEMU loads them for `-kernel`,
//! `disk_boot` from a disk) and the command line at `layout::CMDLINE`, put the initrd clear of
//! them, describe everything in `hvm_start_info` and enter at 32 bits.

use crate::error::BootError;
use crate::handoff::{Handoff, Platform};
use crate::layout;
use crate::log;
use crate::memory::Memory;
use crate::payload::{Initrd, Source};
use crate::report::Hex;
use loader::pvh::{self, StartInfoInput, START_INFO_BLOCK};

/// Places the initrd (read from `source`) clear of the kernel's `(start, size)` ranges in RAM
/// and builds `hvm_start_info`.
pub fn hand_off(
    memory: &mut impl Memory,
    platform: &Platform,
    entry: u32,
    kernel: &[(u64, u64)],
    cmdline_len: usize,
    initrd: &Initrd,
    source: &mut impl Source,
) -> Result<Handoff, BootError> {
    let initrd_range = match initrd.size() {
        0 => None,
        size => Some((pvh::place_initrd(&platform.map, size, kernel).map_err(BootError::Pvh)?, size)),
    };
    if let Some((addr, _)) = initrd_range {
        initrd.load(memory, source, addr)?;
    }
    let (initrd_addr, initrd_size) = initrd_range.unwrap_or_default();
    log!("PVH entry {}, initrd {} bytes at {}", Hex(entry.into()), initrd_size, Hex(initrd_addr));

    let block = memory.bytes_mut(layout::PVH_START_INFO, START_INFO_BLOCK);
    let start_info = pvh::build_start_info(
        block.try_into().expect("exact size"),
        layout::PVH_START_INFO,
        &StartInfoInput {
            cmdline_addr: layout::CMDLINE,
            rsdp_addr: platform.acpi_rsdp,
            initrd: initrd_range,
            map: &platform.map,
        },
    );
    Ok(Handoff::Pvh32 { entry, start_info: start_info as u32, cmdline_len })
}
