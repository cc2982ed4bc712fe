//! Validates a bzImage's real-mode setup part against Linux Documentation/arch/x86/boot.rst
//! and keeps what the planner and the zero page need.
//!
//! The input is QEMU's FW_CFG_SETUP_DATA: the file's first (setup_sects + 1) * 512 bytes,
//! with some header fields (cmd_line_ptr, type_of_loader, ramdisk_*) already patched.

use crate::layout::*;
use crate::le;
use core::fmt;

/// Protocol 2.12 added xloadflags, the only way a kernel advertises its 64-bit entry.
const MIN_PROTOCOL: u16 = 0x020C;
const XLF_KERNEL_64: u16 = 1 << 0;
const BOOT_FLAG_MAGIC: u16 = 0xAA55;
const MAGIC: &[u8; 4] = b"HdrS";
/// The 64-bit entry sits this far past the protected-mode kernel's load address.
const ENTRY64_OFFSET: u64 = 0x200;
/// The header must reach through init_size, the last field read here.
const MIN_HEADER_END: usize = INIT_SIZE + 4;
const HEADER_BYTES: usize = HEADER_LIMIT - SETUP_SECTS;

/// A validated 64-bit, relocatable kernel; only [`BzImage::parse`] makes one. It keeps
/// boot_params' whole header room and reads each field from it when asked: parsing is the
/// checks and one copy, with no field stored twice.
#[derive(Clone, Debug, PartialEq, Eq)]
// Aligned as KernelError is, so both of parse's outcomes sit at the same offset in its
// Result: borrowing the one returned takes no choice between two addresses.
#[repr(align(8))]
pub struct BzImage {
    header: [u8; HEADER_BYTES],
}

/// Whether `bytes` (at least the first 0x206 bytes of a file) carry Linux's "HdrS" header.
pub fn is_linux_kernel(bytes: &[u8]) -> bool {
    // As one 32-bit compare rather than a byte loop.
    le::u32_at(bytes, HEADER_MAGIC) == Some(u32::from_le_bytes(*MAGIC))
}

/// Real-mode sectors after the boot sector, with boot.rst's "0 means 4" applied.
fn setup_sects(raw: u8) -> u8 {
    match raw {
        0 => 4,
        n => n,
    }
}

/// boot_params' header room, [0x1F1, 0x290), whose fields are read at their boot_params offsets.
#[derive(Clone, Copy)]
struct Header<'a>(&'a [u8; HEADER_BYTES]);

impl Header<'_> {
    /// The field at `off` in boot_params; every caller's `off` is a constant inside the room.
    fn bytes<const N: usize>(self, off: usize) -> [u8; N] {
        let field = self.0.get(off - SETUP_SECTS..).and_then(|rest| rest.first_chunk());
        *field.expect("a header field")
    }

    fn u16_at(self, off: usize) -> u16 {
        u16::from_le_bytes(self.bytes(off))
    }

    fn u32_at(self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes(off))
    }

    fn u8_at(self, off: usize) -> u8 {
        self.bytes::<1>(off)[0]
    }
}

impl BzImage {
    pub fn parse(setup: &[u8]) -> Result<Self, KernelError> {
        if !is_linux_kernel(setup) {
            return Err(KernelError::NotLinux);
        }
        // The setup part's own size first: it covers boot_params' header room (0x290 bytes
        // fit in the two sectors the smallest one has), so no field read after it can miss.
        let need = (usize::from(setup_sects(setup.get(SETUP_SECTS).copied().unwrap_or(0))) + 1) * 512;
        let Some(room) = setup.get(..need).and_then(|setup| setup.first_chunk::<HEADER_LIMIT>()) else {
            return Err(KernelError::Truncated { len: setup.len(), need });
        };
        // Checked where QEMU put it, then copied whole: the copy is one memcpy.
        let checked = Header(room.last_chunk().expect("the room ends the header"));
        if checked.u16_at(BOOT_FLAG) != BOOT_FLAG_MAGIC {
            return Err(KernelError::Damaged("boot flag at 0x1FE is not 0xAA55"));
        }
        let protocol = checked.u16_at(VERSION);
        if protocol < MIN_PROTOCOL {
            return Err(KernelError::OldProtocol { version: protocol });
        }
        if HEADER_MAGIC + usize::from(checked.u8_at(JUMP + 1)) < MIN_HEADER_END {
            return Err(KernelError::Damaged("setup header ends before init_size"));
        }
        if checked.u16_at(XLOADFLAGS) & XLF_KERNEL_64 == 0 {
            return Err(KernelError::No64BitEntry);
        }
        if checked.u8_at(RELOCATABLE_KERNEL) == 0 {
            return Err(KernelError::NotRelocatable);
        }
        if !checked.u32_at(KERNEL_ALIGNMENT).is_power_of_two() {
            return Err(KernelError::Damaged("kernel_alignment is not a power of two"));
        }
        if checked.u32_at(INIT_SIZE) == 0 {
            return Err(KernelError::Damaged("init_size is zero"));
        }
        Ok(Self { header: *checked.0 })
    }

    fn fields(&self) -> Header<'_> {
        Header(&self.header)
    }

    pub fn protocol(&self) -> u16 {
        self.fields().u16_at(VERSION)
    }

    /// Real-mode sectors after the boot sector, with boot.rst's "0 means 4" applied.
    pub fn setup_sects(&self) -> u8 {
        setup_sects(self.header[0])
    }

    pub fn xloadflags(&self) -> u16 {
        self.fields().u16_at(XLOADFLAGS)
    }

    pub fn kernel_alignment(&self) -> u32 {
        self.fields().u32_at(KERNEL_ALIGNMENT)
    }

    /// log2 of the smallest alignment the kernel tolerates.
    pub fn min_alignment(&self) -> u8 {
        self.fields().u8_at(MIN_ALIGNMENT)
    }

    pub fn pref_address(&self) -> u64 {
        u64::from_le_bytes(self.fields().bytes(PREF_ADDRESS))
    }

    pub fn init_size(&self) -> u32 {
        self.fields().u32_at(INIT_SIZE)
    }

    pub fn initrd_addr_max(&self) -> u32 {
        self.fields().u32_at(INITRD_ADDR_MAX)
    }

    /// Longest command line the kernel accepts, without its terminating NUL.
    pub fn cmdline_size(&self) -> u32 {
        self.fields().u32_at(CMDLINE_SIZE)
    }

    /// Head of the setup_data chain as QEMU left it, in QEMU's addresses (see setup_data).
    pub fn setup_data(&self) -> u64 {
        u64::from_le_bytes(self.fields().bytes(SETUP_DATA))
    }

    pub const fn entry64_offset(&self) -> u64 {
        ENTRY64_OFFSET
    }

    /// Offset just past the setup header, capped at 0x290 where boot_params' room ends.
    pub fn header_end(&self) -> usize {
        (HEADER_MAGIC + usize::from(self.fields().u8_at(JUMP + 1))).min(HEADER_LIMIT)
    }

    /// The setup header bytes [0x1F1, header_end), as the zero page must receive them.
    pub fn header(&self) -> &[u8] {
        self.header.get(..self.header_end() - SETUP_SECTS).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    NotLinux,
    Truncated { len: usize, need: usize },
    Damaged(&'static str),
    OldProtocol { version: u16 },
    No64BitEntry,
    NotRelocatable,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotLinux => f.write_str("not a Linux kernel (no HdrS header): pass a bzImage with -kernel"),
            Self::Truncated { len, need } => write!(
                f,
                "kernel setup part is {len} bytes but its header needs {need}: pass the whole bzImage with -kernel"
            ),
            Self::Damaged(what) => {
                write!(f, "kernel header is damaged ({what}): pass an intact bzImage with -kernel")
            }
            Self::OldProtocol { version } => write!(
                f,
                "kernel boot protocol {}.{} is older than 2.12: use Linux 3.8 or newer",
                version >> 8,
                version & 0xFF
            ),
            Self::No64BitEntry => {
                f.write_str("kernel has no 64-bit entry (XLF_KERNEL_64 unset): pass an x86_64 bzImage")
            }
            Self::NotRelocatable => f.write_str("kernel is not relocatable: rebuild it with CONFIG_RELOCATABLE=y"),
        }
    }
}

impl core::error::Error for KernelError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_one_line, setup_blob, write};

    #[test]
    fn parses_a_valid_header() {
        let k = BzImage::parse(&setup_blob()).unwrap();
        assert_eq!((k.protocol(), k.setup_sects(), k.xloadflags()), (0x20F, 1, 3));
        assert_eq!((k.kernel_alignment(), k.min_alignment()), (0x20_0000, 21));
        assert_eq!((k.pref_address(), k.init_size()), (0x100_0000, 0x200_0000));
        assert_eq!((k.initrd_addr_max(), k.cmdline_size()), (0x7FFF_FFFF, 2047));
        assert_eq!((k.header_end(), k.setup_data(), k.entry64_offset()), (0x26C, 0, 0x200));
        assert_eq!(k.header(), &setup_blob()[0x1F1..0x26C]);
    }

    #[test]
    fn rejects_malformed_headers() {
        use KernelError::*;
        let check = |mutate: fn(&mut Vec<u8>), want: KernelError| {
            let mut b = setup_blob();
            mutate(&mut b);
            assert_eq!(BzImage::parse(&b), Err(want));
            assert_one_line(&want);
        };
        check(|b| b.truncate(0x100), NotLinux);
        check(|b| b.truncate(0x240), Truncated { len: 0x240, need: 1024 });
        // The setup size is checked before any field past the magic is read.
        check(|b| b.truncate(0x207), Truncated { len: 0x207, need: 1024 });
        check(|b| b[SETUP_SECTS] = 0, Truncated { len: 1024, need: 2560 });
        check(|b| b[HEADER_MAGIC] = b'h', NotLinux);
        check(|b| b[BOOT_FLAG] = 0, Damaged("boot flag at 0x1FE is not 0xAA55"));
        check(|b| b[VERSION] = 0x0B, OldProtocol { version: 0x20B });
        check(|b| b[JUMP + 1] = 0x20, Damaged("setup header ends before init_size"));
        check(|b| b[XLOADFLAGS] = 2, No64BitEntry);
        check(|b| b[RELOCATABLE_KERNEL] = 0, NotRelocatable);
        check(|b| b[KERNEL_ALIGNMENT] = 3, Damaged("kernel_alignment is not a power of two"));
        check(|b| write(b, INIT_SIZE, &[0; 4]), Damaged("init_size is zero"));
    }

    #[test]
    fn caps_the_header_at_boot_params_room() {
        let mut b = setup_blob();
        b[JUMP + 1] = 0xFF;
        assert_eq!(BzImage::parse(&b).unwrap().header().len(), HEADER_LIMIT - SETUP_SECTS);
        assert!(is_linux_kernel(&b) && !is_linux_kernel(&b[..0x205]));
    }
}
