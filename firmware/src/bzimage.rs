//! The bzImage hand-off: with the kernel's setup header parsed, let `loader` plan where the
//! protected-mode kernel and the initrd go, have the source put them there, build the zero
//! page for the 64-bit entry.

use crate::error::BootError;
use crate::handoff::{Handoff, Platform};
use crate::layout;
use crate::log;
use crate::memory::Memory;
use crate::payload::{Initrd, Source};
use crate::report::Hex;
use loader::boot_params::{self, BootParamsInput, ZERO_PAGE_SIZE};
use loader::bzimage::BzImage;
use loader::plan::{plan, LoadPlan};

/// Plans where the protected-mode part (`kernel_size` bytes) and the initrd go and has
/// `source` put them there.
pub fn load(
    memory: &mut impl Memory,
    kernel: &BzImage,
    platform: &Platform,
    kernel_size: u64,
    cmdline_len: usize,
    initrd: &Initrd,
    source: &mut impl Source,
) -> Result<LoadPlan, BootError> {
    let load = plan(kernel, &platform.map, kernel_size, initrd.size(), cmdline_len, &[]).map_err(BootError::Plan)?;
    log!("kernel at {}, initrd at {}", Hex(load.kernel_addr), Hex(load.initrd_addr));
    source.read_kernel(memory.bytes_mut(load.kernel_addr, kernel_size as usize))?;
    initrd.load(memory, source, load.initrd_addr)?;
    Ok(load)
}

/// Builds the zero page (command line at `layout::CMDLINE`, `setup_data` chained after the
/// timeline node) for the 64-bit entry. Inlined into each boot source's path, of which a boot
/// runs one: a call's set-up and return are instructions to translate too.
#[inline(always)]
pub fn hand_off(
    memory: &mut impl Memory,
    kernel: &BzImage,
    load: &LoadPlan,
    initrd_size: u64,
    platform: &Platform,
    setup_data: u64,
) -> Handoff {
    let zero_page = memory.bytes_mut(layout::BOOT_PARAMS, ZERO_PAGE_SIZE);
    boot_params::build(
        zero_page.try_into().expect("exact size"),
        &BootParamsInput {
            kernel,
            plan: load,
            cmdline_addr: layout::CMDLINE,
            initrd_size,
            map: &platform.map,
            acpi_rsdp_addr: platform.acpi_rsdp,
            setup_data: layout::TIMELINE,
        },
    );
    Handoff::Linux64 { entry: load.entry64, boot_params: layout::BOOT_PARAMS, setup_data }
}
