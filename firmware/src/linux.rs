//! The Linux hand-off: fetch the kernel's pieces from fw_cfg, let `loader` plan where they go,
//! move them there by DMA, build the zero page and enter the kernel's 64-bit entry.

use crate::error::BootError;
use crate::fw_cfg::{key, FwCfg, Transport};
use crate::layout;
use crate::log;
use crate::memory::phys_mut;
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

/// flint's guest init as a newc archive (empty when the image was built without one), in a
/// section of its own so the firmware's code size can be measured without it.
#[link_section = ".initramfs"]
static EMBEDDED_INIT: [u8; INIT_CPIO.len()] = *INIT_CPIO;
const INIT_CPIO: &[u8; include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio")).len()] =
    include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio"));

/// With this fw_cfg file present, the embedded init is put in front of the user's initrd.
const ADD_INIT_SWITCH: &str = "opt/flint/add-init";

/// The initrd the kernel gets: the embedded init alone when the user gave none, the user's
/// unchanged, or (on request) both concatenated, which Linux unpacks in order.
struct InitrdParts {
    embedded: usize,
    user: u64,
}

impl InitrdParts {
    fn choose(user: u64, add_init: bool) -> Self {
        let embedded = if user == 0 || add_init { EMBEDDED_INIT.len() } else { 0 };
        InitrdParts { embedded, user }
    }

    /// The user's archive starts 4-byte aligned, as the cpio unpacker expects.
    fn user_offset(&self) -> u64 {
        (self.embedded as u64).next_multiple_of(4)
    }

    fn total(&self) -> u64 {
        if self.user == 0 { self.embedded as u64 } else { self.user_offset() + self.user }
    }
}

/// Everything is in place: the address to jump to, with RSI = boot_params. The zero page
/// names `layout::TIMELINE` as the head of the setup_data chain; the caller writes the timeline
/// node there last, linked to `setup_data`, QEMU's relocated chain.
pub struct Handoff {
    pub entry64: u64,
    pub boot_params: u64,
    pub setup_data: u64,
}

pub fn prepare<T: Transport>(fw_cfg: &mut FwCfg<T>, platform: &Platform) -> Result<Handoff, BootError> {
    let kernel_size = u64::from(fw_cfg.read_u32(key::KERNEL_SIZE));
    let setup_size = fw_cfg.read_u32(key::SETUP_SIZE) as usize;
    if kernel_size == 0 || setup_size == 0 {
        return Err(BootError::NoKernel);
    }
    // QEMU 7.2 patches the setup_data pointer into the header only once this item is read.
    fw_cfg.read_u32(key::SETUP_ADDR);
    let qemu_kernel_addr = u64::from(fw_cfg.read_u32(key::KERNEL_ADDR));
    // SAFETY: a firmware scratch area (layout.rs), unused by anything else.
    let setup = unsafe { phys_mut(layout::SETUP_BLOB, setup_size.min(layout::SETUP_BLOB_MAX)) };
    fw_cfg.read(key::SETUP_DATA, setup);
    let kernel = BzImage::parse(setup).map_err(BootError::Kernel)?;

    let cmdline_size = (fw_cfg.read_u32(key::CMDLINE_SIZE) as usize).min(layout::CMDLINE_MAX);
    let qemu_cmdline_addr = u64::from(fw_cfg.read_u32(key::CMDLINE_ADDR));
    // SAFETY: the command-line area of layout.rs, reserved for this blob.
    let cmdline = unsafe { phys_mut(layout::CMDLINE, cmdline_size.max(1)) };
    cmdline[0] = 0;
    if cmdline_size > 0 {
        fw_cfg.read(key::CMDLINE_DATA, cmdline);
    }
    let cmdline_len = cmdline.iter().position(|&b| b == 0).unwrap_or(cmdline.len());

    let add_init = fw_cfg.find(ADD_INIT_SWITCH).is_some();
    let initrd = InitrdParts::choose(u64::from(fw_cfg.read_u32(key::INITRD_SIZE)), add_init);
    let initrd_size = initrd.total();
    let load = plan(&kernel, &platform.map, kernel_size, initrd_size, cmdline_len, &[]).map_err(BootError::Plan)?;
    log!("kernel {kernel_size} bytes at {:#x}, initrd {initrd_size} bytes at {:#x}", load.kernel_addr, load.initrd_addr);

    // SAFETY: the plan placed the kernel in RAM that nothing else uses.
    let kernel_dest = unsafe { phys_mut(load.kernel_addr, kernel_size as usize) };
    fw_cfg.read(key::KERNEL_DATA, kernel_dest);
    if initrd_size > 0 {
        // SAFETY: likewise for the initrd.
        let initrd_dest = unsafe { phys_mut(load.initrd_addr, initrd_size as usize) };
        let (embedded, user) = initrd_dest.split_at_mut(initrd.user_offset().min(initrd_size) as usize);
        embedded[..initrd.embedded].copy_from_slice(&EMBEDDED_INIT[..initrd.embedded]);
        embedded[initrd.embedded..].fill(0);
        if initrd.user > 0 {
            fw_cfg.read(key::INITRD_DATA, user);
        }
    }

    let blobs = [
        Blob { qemu_addr: qemu_kernel_addr, bytes: kernel_dest },
        Blob { qemu_addr: qemu_cmdline_addr, bytes: cmdline },
    ];
    // SAFETY: the setup_data area of layout.rs.
    let setup_data_dest = unsafe { phys_mut(layout::SETUP_DATA, layout::SETUP_DATA_MAX) };
    let setup_data = setup_data::relocate_chain(kernel.setup_data, &blobs, setup_data_dest, layout::SETUP_DATA)
        .map_err(BootError::SetupData)?;

    write_boot_params(&kernel, &load, initrd_size, platform, layout::TIMELINE);
    Ok(Handoff { entry64: load.entry64, boot_params: layout::BOOT_PARAMS, setup_data })
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
