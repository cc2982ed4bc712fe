//! The `-bios` image: a thin shell over the `firmware` library.
#![no_std]
#![no_main]

mod runtime;

use firmware::acpi::AcpiError;
use firmware::arch::{self, elcr::PortElcr, fw_cfg_io::PortTransport, pci_io::PortConfigSpace};
use firmware::chipset::Chipset;
use firmware::error::{status, BootError};
use firmware::fw_cfg::{File, FwCfg, Transport};
use firmware::handoff::{Handoff, Platform};
use firmware::memory::{IdentityMapped, Memory};
use firmware::pci::{self, Windows};
use firmware::report::Hex;
use firmware::timeline::{self, Stamps};
use firmware::{acpi, chipset, console, disk_boot, exit, fw_cfg_boot, log, put};
use loader::e820::{self, MemoryMap};
use loader::low_window;

core::arch::global_asm!(include_str!("arch/reset.s"), options(att_syntax));

/// Called by `arch/reset.s` in 64-bit mode with the TSC read at the reset vector.
#[no_mangle]
pub extern "C" fn firmware_main(reset_tsc: u64) -> ! {
    // SAFETY: the one handle, made before anything refers to the memory it lends.
    let mut memory = unsafe { IdentityMapped::new() };
    match boot(&mut memory) {
        Ok(handoff) => {
            if timeline::requested() {
                let mut stamps = Stamps { reset: reset_tsc, loaded: arch::tsc(), handoff: 0 };
                stamps.handoff = arch::tsc();
                timeline::record(&handoff, &mut memory, &stamps);
            }
            match handoff {
                // SAFETY: `prepare` loaded the kernel and built its zero page.
                Handoff::Linux64 { entry, boot_params, .. } => unsafe { arch::enter_linux64(entry, boot_params) },
                // SAFETY: `prepare` placed the initrd and built hvm_start_info; the kernel's
                // segments are loaded.
                Handoff::Pvh32 { entry, start_info, .. } => unsafe { arch::enter_pvh(entry, start_info) },
            }
        }
        Err(error) => {
            console::error(&error);
            exit::power_off(error.status())
        }
    }
}

/// Less than this and the kernel cannot even decompress; say so plainly.
const MIN_RAM: u64 = 16 << 20;
/// PCI memory BARs go above RAM and above q35's MMCONFIG window (0xB000_0000-0xBFFF_FFFF),
/// below the IO-APIC; I/O BARs above the legacy ports.
const PCI_MEM_FLOOR: u64 = 0xC000_0000;
const PCI_MEM_END: u64 = 0xFEC0_0000;
const PCI_IO: (u64, u64) = (0xC000, 0x10000);

#[inline(always)]
fn boot(memory: &mut IdentityMapped) -> Result<Handoff, BootError> {
    let mut pci_config = PortConfigSpace;
    let chipset = chipset::detect(&mut pci_config);
    // No host bridge at all: microvm, whose disks are on virtio-mmio and whose power-off is
    // its GED device.
    let microvm = chipset == Chipset::Absent;
    if microvm {
        exit::set_microvm();
    }
    // First, so that even early errors can power off through ACPI S5.
    chipset::enable_power_management(&mut pci_config, chipset);

    let mut fw_cfg = FwCfg::new(PortTransport);
    if !fw_cfg.detect() {
        return Err(BootError::NoFwCfg);
    }
    console::set_verbose(fw_cfg.find(b"opt/flint/log").is_some());
    timeline::set_requested(fw_cfg.find(timeline::SWITCH).is_some());

    // Built where it stays: moving the map into a Platform later would copy it.
    let mut platform = Platform { map: MemoryMap::new(), acpi_rsdp: 0 };
    let map = &mut platform.map;
    read_memory_map(&mut fw_cfg, map)?;
    let ram_top = map.ram_top_below_4g();
    // QEMU's RAM starts at 0, so its top below 4 GiB is how much the boot can use.
    if ram_top < MIN_RAM {
        return Err(BootError::TooLittleRam { ram_mib: ram_top >> 20 });
    }

    if chipset == Chipset::Q35 {
        // As SeaBIOS does, so Linux trusts the MCFG table at once.
        map.mark(chipset::MMCONFIG_BASE, chipset::MMCONFIG_SIZE, e820::RESERVED).map_err(BootError::Map)?;
    }
    // On microvm nothing answers on the PCI ports; skipping the scan skips translating its
    // code, and the summary (5 KB) is not even made.
    let mut summary;
    let devices = if microvm {
        &[]
    } else {
        chipset::route_interrupts(&mut pci_config, &mut PortElcr, chipset);
        let windows = Windows { mem: (ram_top.max(PCI_MEM_FLOOR), PCI_MEM_END), io: PCI_IO };
        summary = pci::Summary::none();
        pci::setup(&mut pci_config, chipset, &windows, &mut summary).map_err(BootError::Pci)?;
        summary.functions()
    };
    // One line for both, and none on entering the kernel (the placement lines come last): each
    // log site is a branch, under TCG a block to translate even when logging is off.
    log!(
        "fw_cfg DMA {}, chipset {}, {} PCI functions set up",
        if fw_cfg.has_dma() { "on" } else { "off" },
        chipset,
        devices.len()
    );

    // Before the ACPI tables are placed: QEMU may have loaded the kernel where they would go.
    let kernel = fw_cfg_boot::GivenKernel::read(&mut fw_cfg);
    // After PCI: QEMU builds the ACPI tables when they are first read, from the BARs and PM
    // base programmed by then.
    if let Some(loader_file) = acpi::table_loader(&fw_cfg) {
        let loaded = kernel.map(|kernel| kernel.loaded);
        platform.acpi_rsdp = install_acpi(&mut fw_cfg, &loader_file, memory, map, loaded)?;
    }

    let handoff = match kernel {
        Some(kernel) => fw_cfg_boot::prepare(&mut fw_cfg, kernel, &platform, memory)?,
        None => {
            let add_init = fw_cfg_boot::add_init_requested(&fw_cfg);
            disk_boot::prepare(&pci_config, devices, microvm, add_init, &platform, memory)?
        }
    };
    Ok(handoff)
}

/// Installs the ACPI tables and returns the RSDP's address: in the low window when they fit
/// there, else at the top of RAM (`loader::low_window`). What they occupy is marked ACPI in the
/// memory map, so no later placement overlaps it. Inlined: under TCG a call is code too.
#[inline(always)]
fn install_acpi<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    loader_file: &File,
    memory: &mut IdentityMapped,
    map: &mut MemoryMap,
    loaded: Option<(u64, u64)>,
) -> Result<u64, BootError> {
    let mut window = low_window::acpi_arena(map, loaded);
    // One call site: under TCG a second copy of the loader would be code to translate.
    let (installed, base, size) = loop {
        let (base, size) = window.unwrap_or_else(|| low_window::top_arena(map));
        match acpi::install_tables(fw_cfg, loader_file, memory.bytes_mut(base, size as usize), base) {
            // QEMU's tables grow with the devices: more than the window has room for.
            Err(AcpiError::ArenaTooSmall { .. }) if window.is_some() => window = None,
            installed => break (installed, base, size),
        }
    };
    let Some(tables) = installed.map_err(BootError::Acpi)? else {
        return Ok(0);
    };
    let start = tables.used_start & !0xfff;
    map.mark(start, base + size - start, e820::ACPI).map_err(BootError::Map)?;
    log!("ACPI tables at {}, RSDP at {}", Hex(tables.used_start), Hex(tables.rsdp));
    Ok(tables.rsdp)
}

/// QEMU's `etc/e820` (RAM below and above the PCI hole, reserved ranges) with a PC's low
/// memory: no RAM from the EBDA to 1 MiB.
fn read_memory_map<T: Transport>(fw_cfg: &mut FwCfg<T>, map: &mut MemoryMap) -> Result<(), BootError> {
    let file = fw_cfg.find(b"etc/e820").ok_or(BootError::NoMemoryMap)?;
    let mut raw = [0u8; e820::ENTRY_SIZE * 32];
    let raw = raw.get_mut(..file.size as usize).ok_or(BootError::NoMemoryMap)?;
    fw_cfg.read_file(&file, raw);
    map.add_qemu(raw).and_then(|()| map.add_legacy_low_memory()).map_err(BootError::Map)
}

/// File and line only: formatting the message would link `core::fmt` back in.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut out = console::start("flint: error: internal error");
    if let Some(location) = info.location() {
        put!(&mut out, " at {}:{}", location.file(), location.line());
    }
    console::end(out);
    exit::power_off(status::INTERNAL)
}
