//! Where the firmware puts things in low memory (below 640 KiB, all of it reclaimed by Linux
//! once booted). `arch/reset.s` and `layout.ld` own 0x1000-0x1ffff: page tables, .data/.bss,
//! stack. Linux's decompressor places its trampoline just below the EBDA (0x9fc00), so nothing
//! here may live above 0x90000. Above 1 MiB the loader decides (`loader::low_window` for the
//! ACPI tables and small initrds).

/// Where `arch/reset.s`'s page tables, `.data`/`.bss` and stack end.
pub const FIRMWARE_END: u64 = 0x20000;
/// The lowest address `layout.ld`'s ROM may start at: fw.bin, up to 4 GiB, is 128 or 192 KiB.
pub const ROM: u64 = 0xfffd_0000;
/// The zero page handed to the kernel in RSI.
pub const BOOT_PARAMS: u64 = 0x20000;
/// The kernel command line (and any setup_data QEMU appended to it).
pub const CMDLINE: u64 = 0x21000;
pub const CMDLINE_MAX: usize = 0x0f000;
/// flint's timeline node, head of the setup_data chain (`timeline.rs`).
pub const TIMELINE: u64 = 0x2ff00;
/// The relocated setup_data chain (RNG seed and friends).
pub const SETUP_DATA: u64 = 0x30000;
pub const SETUP_DATA_MAX: usize = 0x10000;
/// Scratch copy of the kernel's real-mode setup blob, read to parse its header.
pub const SETUP_BLOB: u64 = 0x40000;
pub const SETUP_BLOB_MAX: usize = 0x10000;
/// `hvm_start_info`, its module list and memory map, for PVH boots.
pub const PVH_START_INFO: u64 = 0x50000;
/// Memory for virtio queues when booting from a disk, used only before the hand-off.
pub const DMA_POOL: u64 = 0x60000;
pub const DMA_POOL_SIZE: usize = 0x20000;
/// The disk's block cache (`disk.rs`), also only before the hand-off.
pub const DISK_CACHE: u64 = 0x80000;
pub const DISK_CACHE_SIZE: usize = 0x10000;
/// Kernels loaded from a disk must stay above low memory, where everything above lives.
pub const LOW_MEMORY_END: u64 = 0x100000;
