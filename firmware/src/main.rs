//! The `-bios` image: a thin shell over the `firmware` library.
#![no_std]
#![no_main]

mod runtime;

use firmware::arch::{self, fw_cfg_io::PortTransport};
use firmware::error::{status, BootError};
use firmware::fw_cfg::FwCfg;
use firmware::linux::{self, Handoff, Platform};
use firmware::{console, exit, log};
use loader::e820::MemoryMap;

core::arch::global_asm!(include_str!("arch/reset.s"), options(att_syntax));

/// Called by `arch/reset.s` in 64-bit mode with the TSC read at the reset vector.
#[no_mangle]
pub extern "C" fn firmware_main(reset_tsc: u64) -> ! {
    let _ = reset_tsc;
    match boot() {
        // SAFETY: `prepare` loaded the kernel and built its zero page.
        Ok(handoff) => unsafe { arch::enter_linux64(handoff.entry64, handoff.boot_params) },
        Err(error) => {
            console::error(format_args!("{error}"));
            exit::power_off(error.status())
        }
    }
}

fn boot() -> Result<Handoff, BootError> {
    let mut fw_cfg = FwCfg::probe(PortTransport).ok_or(BootError::NoFwCfg)?;
    console::set_verbose(fw_cfg.find("opt/flint/log").is_some());
    log!("fw_cfg found, DMA {}", if fw_cfg.has_dma() { "on" } else { "off" });

    let e820 = fw_cfg.find("etc/e820").ok_or(BootError::NoMemoryMap)?;
    let mut raw = [0u8; 20 * 32];
    let raw = &mut raw[..(e820.size as usize).min(20 * 32)];
    fw_cfg.read_file(&e820, raw);
    let map = MemoryMap::from_qemu(raw).and_then(MemoryMap::with_legacy_low_memory).map_err(BootError::Map)?;

    let handoff = linux::prepare(&mut fw_cfg, &Platform { map, acpi_rsdp: 0 })?;
    log!("entering the kernel at {:#x}", handoff.entry64);
    Ok(handoff)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::error(format_args!("internal error: {info}"));
    exit::power_off(status::INTERNAL)
}
