//! The Linux hand-off: fetch the kernel's pieces (from fw_cfg here, from a disk in `disk_boot`),
//! let `loader` plan where they go, move them there, build the zero page and enter the
//! kernel's 64-bit entry.

use crate::error::BootError;
use crate::fw_cfg::{key, FwCfg, Transport};
use crate::layout;
use crate::log;
use crate::memory::phys_mut;
use crate::payload::{self, Initrd, Source};
use crate::pvh;
use crate::report::Hex;
use loader::boot_params::{self, BootParamsInput, ZERO_PAGE_SIZE};
use loader::bzimage::BzImage;
use loader::e820::MemoryMap;
use loader::plan::{plan, LoadPlan};
use loader::setup_data::{self, Blob};

/// What the platform set-up learned that the kernel needs.
pub struct Platform {
    pub map: MemoryMap,
    pub acpi_rsdp: u64,
}

/// Everything is in place; what is left is the jump.
pub enum Handoff {
    /// The bzImage's 64-bit entry, with RSI = boot_params. The zero page names
    /// `layout::TIMELINE` as the head of the setup_data chain; the caller writes the timeline
    /// node there last, linked to `setup_data`, QEMU's relocated chain.
    Linux64 { entry: u64, boot_params: u64, setup_data: u64 },
    /// A vmlinux's 32-bit PVH entry, with EBX = hvm_start_info. The command line at
    /// `layout::CMDLINE` is `cmdline_len` bytes; the caller appends the timeline to it.
    Pvh32 { entry: u32, start_info: u32, cmdline_len: usize },
}

/// Whether QEMU was given `-kernel` (otherwise the firmware looks for a disk to boot).
pub fn has_kernel<T: Transport>(fw_cfg: &mut FwCfg<T>) -> bool {
    fw_cfg.read_u32(key::KERNEL_SIZE) != 0 || fw_cfg.read_u32(key::KERNEL_ENTRY) != 0
}

/// QEMU hands a bzImage over as setup and kernel blobs; for an ELF vmlinux with a PVH note it
/// loads the segments into RAM itself and publishes the entry.
pub fn prepare<T: Transport>(fw_cfg: &mut FwCfg<T>, platform: &Platform) -> Result<Handoff, BootError> {
    let kernel_size = u64::from(fw_cfg.read_u32(key::KERNEL_SIZE));
    let setup_size = fw_cfg.read_u32(key::SETUP_SIZE) as usize;
    let pvh_entry = fw_cfg.read_u32(key::KERNEL_ENTRY);
    // QEMU sets the entry only for PVH; it also reports the ELF's extent as KERNEL_SIZE.
    if pvh_entry != 0 {
        let elf_start = read_setup_blob(fw_cfg, setup_size);
        return pvh::prepare(fw_cfg, platform, pvh_entry, elf_start);
    }
    if kernel_size == 0 || setup_size == 0 {
        return Err(BootError::NoKernel);
    }
    prepare_bzimage(fw_cfg, platform, kernel_size, setup_size)
}

/// The first bytes of the kernel file as QEMU serves them, in a firmware scratch area.
pub fn read_setup_blob<T: Transport>(fw_cfg: &mut FwCfg<T>, size: usize) -> &'static [u8] {
    // SAFETY: a firmware scratch area (layout.rs), unused by anything else.
    let setup = unsafe { phys_mut(layout::SETUP_BLOB, size.min(layout::SETUP_BLOB_MAX)) };
    fw_cfg.read(key::SETUP_DATA, setup);
    setup
}

fn prepare_bzimage<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    platform: &Platform,
    kernel_size: u64,
    setup_size: usize,
) -> Result<Handoff, BootError> {
    // QEMU 7.2 patches the setup_data pointer into the header only once this item is read.
    fw_cfg.read_u32(key::SETUP_ADDR);
    let qemu_kernel_addr = u64::from(fw_cfg.read_u32(key::KERNEL_ADDR));
    let kernel = BzImage::parse(read_setup_blob(fw_cfg, setup_size)).map_err(BootError::Kernel)?;

    let qemu_cmdline_addr = u64::from(fw_cfg.read_u32(key::CMDLINE_ADDR));
    let (cmdline, cmdline_len) = payload::read_cmdline(fw_cfg);
    let initrd = Initrd::from_fw_cfg(fw_cfg);
    let (load, kernel_dest) = load_bzimage(&kernel, platform, kernel_size, cmdline_len, &initrd, fw_cfg)?;

    let blobs = [
        Blob { qemu_addr: qemu_kernel_addr, bytes: kernel_dest },
        Blob { qemu_addr: qemu_cmdline_addr, bytes: cmdline },
    ];
    // SAFETY: the setup_data area of layout.rs.
    let setup_data_dest = unsafe { phys_mut(layout::SETUP_DATA, layout::SETUP_DATA_MAX) };
    let setup_data = setup_data::relocate_chain(kernel.setup_data, &blobs, setup_data_dest, layout::SETUP_DATA)
        .map_err(BootError::SetupData)?;
    Ok(hand_off(&kernel, &load, initrd.size(), platform, setup_data))
}

/// Plans where a bzImage's protected-mode part (`kernel_size` bytes) and the initrd go, and
/// has `source` put them there; returns the plan and the loaded kernel.
pub fn load_bzimage(
    kernel: &BzImage,
    platform: &Platform,
    kernel_size: u64,
    cmdline_len: usize,
    initrd: &Initrd,
    source: &mut impl Source,
) -> Result<(LoadPlan, &'static [u8]), BootError> {
    let initrd_size = initrd.size();
    let load = plan(kernel, &platform.map, kernel_size, initrd_size, cmdline_len, &[]).map_err(BootError::Plan)?;
    log!("kernel at {}, initrd at {}", Hex(load.kernel_addr), Hex(load.initrd_addr));
    // SAFETY: the plan placed the kernel in RAM that nothing else uses.
    let kernel_dest = unsafe { phys_mut(load.kernel_addr, kernel_size as usize) };
    source.read_kernel(kernel_dest)?;
    // SAFETY: the plan set this range aside for the initrd.
    unsafe { initrd.load(source, load.initrd_addr) }?;
    Ok((load, kernel_dest))
}

/// Builds the zero page (command line at `layout::CMDLINE`, `setup_data` chained after the
/// timeline node) for the 64-bit entry.
pub fn hand_off(kernel: &BzImage, load: &LoadPlan, initrd_size: u64, platform: &Platform, setup_data: u64) -> Handoff {
    write_boot_params(kernel, load, initrd_size, platform, layout::TIMELINE);
    Handoff::Linux64 { entry: load.entry64, boot_params: layout::BOOT_PARAMS, setup_data }
}

fn write_boot_params(kernel: &BzImage, load: &LoadPlan, initrd_size: u64, platform: &Platform, setup_data: u64) {
    // SAFETY: the zero-page area of layout.rs.
    let zero_page = unsafe { phys_mut(layout::BOOT_PARAMS, ZERO_PAGE_SIZE) };
    let zero_page: &mut [u8; ZERO_PAGE_SIZE] = zero_page.try_into().expect("exact size");
    boot_params::build(
        zero_page,
        &BootParamsInput {
            kernel,
            plan: load,
            cmdline_addr: layout::CMDLINE,
            initrd_size,
            map: &platform.map,
            acpi_rsdp_addr: platform.acpi_rsdp,
            setup_data,
        },
    );
}
