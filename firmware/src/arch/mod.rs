//! Hardware access that only makes sense on the real machine: port I/O, the fw_cfg DMA
//! transport, PCI configuration ports and the ELCR. The mode-switch code lives in `reset.s`,
//! pulled in by the binary.

pub mod elcr;
pub mod fw_cfg_io;
pub mod pci_io;

use x86_64::instructions::port::Port;

/// # Safety
/// The port must belong to a device whose side effects the caller intends.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller.
    unsafe { Port::new(port).write(value) }
}

/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: forwarded to the caller.
    unsafe { Port::new(port).write(value) }
}

/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: forwarded to the caller.
    unsafe { Port::new(port).write(value) }
}

/// # Safety
/// As for [`outb`]; reads can have side effects too.
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: forwarded to the caller.
    unsafe { Port::new(port).read() }
}

/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: forwarded to the caller.
    unsafe { Port::new(port).read() }
}

/// Stops the CPU for good: interrupts off, then halt.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Reads the time-stamp counter (the timeline's clock).
pub fn tsc() -> u64 {
    // SAFETY: rdtsc has no side effects; the firmware runs at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Jumps to the kernel's 64-bit entry as Linux's boot protocol asks: long mode, identity
/// paging, CS = __BOOT_CS and data segments = __BOOT_DS (set by `reset.s`), interrupts off,
/// RSI = boot_params. Interrupts have been off since reset (nothing enables them) and the
/// direction flag is clear at every call, as the ABI requires, so neither is set again here.
///
/// # Safety
/// `entry` must be a loaded kernel's 64-bit entry and `boot_params` its complete zero page.
pub unsafe fn enter_linux64(entry: u64, boot_params: u64) -> ! {
    // SAFETY: forwarded to the caller; nothing of the firmware is used after the jump.
    unsafe {
        core::arch::asm!("jmp {entry}", entry = in(reg) entry, in("rsi") boot_params, options(noreturn, nostack));
    }
}

extern "C" {
    /// In `reset.s`, in 32-bit code at its physical address: turns paging and long mode off
    /// and jumps to EDI with EBX = ESI.
    fn pvh_compat_mode() -> !;
}

/// Enters a vmlinux at its PVH entry as the x86/HVM direct boot ABI asks (interrupts are
/// off, as for [`enter_linux64`]).
///
/// # Safety
/// `entry` must be a loaded kernel's PVH entry and `start_info` a complete `hvm_start_info`.
pub unsafe fn enter_pvh(entry: u32, start_info: u32) -> ! {
    // SAFETY: forwarded to the caller. A far return to the 32-bit code segment (0x08 in
    // reset.s's GDT) lands in compatibility mode at the routine, which sits in the
    // identity-mapped boot section below 4 GiB, where paging can be switched off under it.
    unsafe {
        core::arch::asm!(
            "push 0x08",
            "movabs rax, offset {target}",
            "push rax",
            "retfq",
            target = sym pvh_compat_mode,
            in("edi") entry,
            in("esi") start_info,
            options(noreturn),
        );
    }
}
