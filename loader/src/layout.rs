//! Byte offsets in `struct boot_params` (Linux arch/x86/include/uapi/asm/bootparam.h).
//! Its `setup_header` part, from 0x1F1, is also the layout of a bzImage's first sectors.

pub const ACPI_RSDP_ADDR: usize = 0x070;
pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
pub const E820_ENTRIES: usize = 0x1E8;
/// `setup_sects` is the setup header's first field.
pub const SETUP_SECTS: usize = 0x1F1;
pub const BOOT_FLAG: usize = 0x1FE;
/// A short jump whose 8-bit displacement at JUMP + 1 marks the end of the header.
pub const JUMP: usize = 0x200;
pub const HEADER_MAGIC: usize = 0x202;
pub const VERSION: usize = 0x206;
pub const TYPE_OF_LOADER: usize = 0x210;
pub const CODE32_START: usize = 0x214;
pub const RAMDISK_IMAGE: usize = 0x218;
pub const RAMDISK_SIZE: usize = 0x21C;
pub const CMD_LINE_PTR: usize = 0x228;
pub const INITRD_ADDR_MAX: usize = 0x22C;
pub const KERNEL_ALIGNMENT: usize = 0x230;
pub const RELOCATABLE_KERNEL: usize = 0x234;
pub const MIN_ALIGNMENT: usize = 0x235;
pub const XLOADFLAGS: usize = 0x236;
pub const CMDLINE_SIZE: usize = 0x238;
pub const SETUP_DATA: usize = 0x250;
pub const PREF_ADDRESS: usize = 0x258;
pub const INIT_SIZE: usize = 0x260;
/// `edd_mbr_sig_buffer` starts here, so no setup header can extend further.
pub const HEADER_LIMIT: usize = 0x290;
pub const E820_TABLE: usize = 0x2D0;
