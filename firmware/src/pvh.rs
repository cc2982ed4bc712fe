//! The PVH hand-off: for `-kernel vmlinux` QEMU has already loaded the ELF segments (from a
//! disk, `disk_boot` loads them); put the initrd clear of them, describe everything in
//! `hvm_start_info` and enter at 32 bits.

use crate::error::BootError;
use crate::fw_cfg::{FwCfg, Transport};
use crate::layout;
use crate::linux::{Handoff, Platform};
use crate::log;
use crate::memory::phys_mut;
use crate::payload::{self, Initrd, Source};
use crate::report::Hex;
use loader::pvh::{self, KernelImage, StartInfoInput, START_INFO_BLOCK};

/// `elf_start` is the vmlinux file's beginning (ELF and program headers), as QEMU serves it.
pub fn prepare<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    platform: &Platform,
    entry: u32,
    elf_start: &[u8],
) -> Result<Handoff, BootError> {
    let kernel = KernelImage::parse(elf_start).map_err(BootError::Pvh)?;
    let (_, cmdline_len) = payload::read_cmdline(fw_cfg);
    let initrd = Initrd::from_fw_cfg(fw_cfg);
    hand_off(platform, entry, &kernel, cmdline_len, &initrd, fw_cfg)
}

/// With the kernel's segments loaded and the command line at `layout::CMDLINE`: places the
/// initrd clear of the kernel (read from `source`) and builds `hvm_start_info`.
pub fn hand_off(
    platform: &Platform,
    entry: u32,
    kernel: &KernelImage,
    cmdline_len: usize,
    initrd: &Initrd,
    source: &mut impl Source,
) -> Result<Handoff, BootError> {
    let initrd_range = match initrd.size() {
        0 => None,
        size => Some((kernel.place_initrd(&platform.map, size).map_err(BootError::Pvh)?, size)),
    };
    if let Some((addr, _)) = initrd_range {
        // SAFETY: `place_initrd` chose RAM clear of the kernel and of firmware areas.
        unsafe { initrd.load(source, addr) }?;
    }
    let (initrd_addr, initrd_size) = initrd_range.unwrap_or_default();
    log!("PVH entry {}, initrd {} bytes at {}", Hex(entry.into()), initrd_size, Hex(initrd_addr));

    // SAFETY: the start_info area of layout.rs.
    let block = unsafe { phys_mut(layout::PVH_START_INFO, START_INFO_BLOCK) };
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
