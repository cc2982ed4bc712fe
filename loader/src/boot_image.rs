//! What the flint boot partition holds (docs/disk-image.md): a Unified Kernel Image or a PVH
//! vmlinux, told apart by magic. [`probe`] reads only headers and tables through [`ReadAt`]
//! and says where each part lies in the partition; the firmware then reads the parts.

use crate::pvh::{self, KernelImage, PvhError, MAX_SEGMENTS};
use crate::read_at::ReadAt;
use core::fmt;

mod uki;
mod vmlinux;

/// A byte range within the partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// A PT_LOAD segment: `file` goes to `paddr`, the rest of `memsz` is zeroed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub file: Extent,
    pub paddr: u64,
    pub memsz: u64,
}

/// `.cmdline` extents are the raw section: a trailing NUL or newline is still there.
// Made once per boot, and without an allocator the segments cannot be boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootImage {
    /// A UKI: `linux` is a bzImage (boot it like -kernel bzImage).
    Uki { linux: Extent, initrd: Option<Extent>, cmdline: Option<Extent> },
    /// A PVH vmlinux: load each segment's file bytes at its physical address and zero the rest of memsz.
    Pvh {
        entry: u32,
        kernel: KernelImage,
        segments: [Segment; MAX_SEGMENTS],
        segment_count: usize,
        initrd: Option<Extent>,
        cmdline: Option<Extent>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError<E> {
    /// Reading the partition failed.
    Io(E),
    /// Neither `MZ` nor `\x7fELF` at the start.
    UnknownFormat,
    /// A PE file that is not PE32+ for x86-64.
    NotX86_64,
    NoLinuxSection,
    /// The named part reaches past the end of the partition.
    Truncated {
        what: &'static str,
    },
    /// The headers contradict themselves.
    Damaged(&'static str),
    /// A problem with the vmlinux as a PVH kernel.
    Pvh(PvhError),
    /// Valid, but not something flint boots.
    Unsupported(&'static str),
}

impl<E: fmt::Debug> fmt::Display for ImageError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "reading the boot partition failed ({e:?}): check the disk device"),
            Self::UnknownFormat => f.write_str(
                "the boot partition holds neither a UKI (PE) nor a PVH vmlinux (ELF): see docs/disk-image.md",
            ),
            Self::NotX86_64 => {
                f.write_str("the UKI is not a PE32+ image for x86-64: build it on systemd's linuxx64.efi.stub")
            }
            Self::NoLinuxSection => f.write_str(
                "the UKI has no .linux section: add the bzImage with `objcopy --add-section .linux=bzImage` or ukify",
            ),
            Self::Truncated { what } => write!(
                f,
                "{what} reaches past the end of the boot partition: make the partition hold the whole boot image"
            ),
            Self::Damaged(what) => {
                write!(f, "the boot image is damaged ({what}): rebuild the disk image with `flint image`")
            }
            Self::Pvh(e) => e.fmt(f),
            Self::Unsupported(what) => write!(f, "{what}: see docs/disk-image.md"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for ImageError<E> {}

impl<E> From<PvhError> for ImageError<E> {
    fn from(e: PvhError) -> Self {
        Self::Pvh(e)
    }
}

impl<E> From<pvh::ReadError<E>> for ImageError<E> {
    fn from(e: pvh::ReadError<E>) -> Self {
        match e {
            pvh::ReadError::Io(e) => Self::Io(e),
            pvh::ReadError::Pvh(e) => Self::Pvh(e),
        }
    }
}

/// Identifies the boot image in `image` (`image_len` bytes) and locates its parts.
pub fn probe<R: ReadAt>(image: &mut R, image_len: u64) -> Result<BootImage, ImageError<R::Error>> {
    let mut magic = [0u8; 4];
    let have = &mut magic[..image_len.min(4) as usize];
    image.read_at(0, have).map_err(ImageError::Io)?;
    if have.starts_with(b"MZ") {
        return uki::probe(image, image_len);
    }
    if have == b"\x7fELF" {
        return vmlinux::probe(image, image_len);
    }
    Err(ImageError::UnknownFormat)
}

/// The extent [offset, offset+len), if it lies within the image.
fn extent<E>(offset: u64, len: u64, image_len: u64, what: &'static str) -> Result<Extent, ImageError<E>> {
    match offset.checked_add(len) {
        Some(end) if end <= image_len => Ok(Extent { offset, len }),
        _ => Err(ImageError::Truncated { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{Gpt, FLINT_BOOT};
    use crate::read_at::{OutOfRange, Window, WindowError};
    use crate::testutil::{assert_one_line, gpt_disk, tiny_uki, vmlinux_with};

    fn probe_bytes(image: &[u8]) -> Result<BootImage, ImageError<OutOfRange>> {
        probe(&mut &image[..], image.len() as u64)
    }

    fn check_err(image: &[u8], want: ImageError<OutOfRange>) {
        assert_eq!(probe_bytes(image), Err(want));
        assert_one_line(&want);
    }

    const LINUX: &[u8] = &[0xb0; 0x345];

    #[test]
    fn finds_the_parts_of_a_uki() {
        let uki = tiny_uki(&[
            (b".text\0\0\0", &[0xc3; 16]),
            (b".linux\0\0", LINUX),
            (b".initrd\0", b"070701"),
            (b".cmdline", b"console=ttyS0\n"),
        ]);
        // Sections start 0x200 apart, but .linux takes two such blocks.
        let at = |i: u64| Extent { offset: 0x400 + 0x200 * i, len: 0 };
        assert_eq!(
            probe_bytes(&uki),
            Ok(BootImage::Uki {
                linux: Extent { len: 0x345, ..at(1) },
                initrd: Some(Extent { len: 6, ..at(3) }),
                cmdline: Some(Extent { len: 14, ..at(4) }),
            })
        );
        let only_linux = tiny_uki(&[(b".linux\0\0", LINUX)]);
        let want = BootImage::Uki { linux: Extent { offset: 0x400, len: 0x345 }, initrd: None, cmdline: None };
        assert_eq!(probe_bytes(&only_linux), Ok(want));
    }

    #[test]
    fn uki_section_sizes_fall_back_to_the_raw_size() {
        let mut uki = tiny_uki(&[(b".linux\0\0", LINUX)]);
        let virtual_size = 0x80 + 4 + 20 + 240 + 8;
        for (size, want) in [(0u32, 0x400), (0x401, 0x400), (0x3ff, 0x3ff)] {
            uki[virtual_size..virtual_size + 4].copy_from_slice(&size.to_le_bytes());
            let Ok(BootImage::Uki { linux, .. }) = probe_bytes(&uki) else { panic!("not a UKI") };
            assert_eq!(linux, Extent { offset: 0x400, len: want });
        }
    }

    #[test]
    fn rejects_bad_ukis() {
        check_err(&tiny_uki(&[(b".initrd\0", b"x"), (b".text\0\0\0", b"y")]), ImageError::NoLinuxSection);
        let mut cut = tiny_uki(&[(b".linux\0\0", LINUX), (b".initrd\0", b"x")]);
        cut.truncate(0x800);
        check_err(&cut, ImageError::Truncated { what: "the UKI's .initrd section" });
        let mut aarch64 = tiny_uki(&[(b".linux\0\0", LINUX)]);
        aarch64[0x84..0x86].copy_from_slice(&0xaa64u16.to_le_bytes());
        check_err(&aarch64, ImageError::NotX86_64);
        let mut no_optional_header = tiny_uki(&[(b".linux\0\0", LINUX)]);
        no_optional_header[0x84 + 16] = 0;
        check_err(&no_optional_header, ImageError::NotX86_64);
        let mut many = tiny_uki(&[(b".linux\0\0", LINUX)]);
        many[0x86] = 97;
        check_err(&many, ImageError::Damaged("the UKI has more than 96 sections"));
        many[0x86] = 96;
        check_err(&many, ImageError::Truncated { what: "the UKI's section table" });
        check_err(&tiny_uki(&[])[..0x100], ImageError::Truncated { what: "the UKI's PE headers" });
        let mut far_headers = tiny_uki(&[(b".linux\0\0", LINUX)]);
        far_headers[0x3c..0x40].copy_from_slice(&0x2000u32.to_le_bytes());
        far_headers.resize(0x3000, 0);
        check_err(&far_headers, ImageError::Damaged("the UKI's PE headers are malformed"));
    }

    #[test]
    fn finds_the_parts_of_a_pvh_vmlinux() {
        let Ok(BootImage::Pvh { entry, kernel, segments, segment_count, initrd, cmdline }) =
            probe_bytes(&vmlinux_with(true, &[]))
        else {
            panic!("not a PVH vmlinux")
        };
        assert_eq!((entry, initrd, cmdline), (0x0100_0ab0, None, None));
        assert_eq!(kernel.segments(), &[(0x100_0000, 0x20_0000)]);
        let want = Segment { file: Extent { offset: 0, len: 0x100 }, paddr: 0x100_0000, memsz: 0x20_0000 };
        assert_eq!(&segments[..segment_count], &[want]);

        let elf =
            vmlinux_with(true, &[(".comment", b"GCC", 0), (".initrd", b"070701", 0), (".cmdline", b"quiet\0", 0)]);
        let Ok(BootImage::Pvh { initrd, cmdline, .. }) = probe_bytes(&elf) else { panic!("not a PVH vmlinux") };
        assert_eq!(initrd, Some(Extent { offset: 0x203, len: 6 }));
        assert_eq!(cmdline, Some(Extent { offset: 0x209, len: 6 }));
        assert_eq!(&elf[0x209..0x20f], b"quiet\0");

        let elf = vmlinux_with(true, &[(".cmdline", b"quiet", 0), (".initrdx", b"no", 0)]);
        let Ok(BootImage::Pvh { initrd, cmdline, .. }) = probe_bytes(&elf) else { panic!("not a PVH vmlinux") };
        assert_eq!((initrd, cmdline), (None, Some(Extent { offset: 0x200, len: 5 })));
    }

    #[test]
    fn rejects_bad_vmlinuxes() {
        check_err(&vmlinux_with(false, &[]), ImageError::Pvh(PvhError::NoPvhNote));
        check_err(&vmlinux_with(false, &[(".initrd", b"x", 0)]), ImageError::Pvh(PvhError::NoPvhNote));
        let allocated = ImageError::Unsupported(
            "the vmlinux's .initrd or .cmdline is an allocated section (add them with `objcopy --add-section`)",
        );
        check_err(&vmlinux_with(true, &[(".initrd", b"x", 2)]), allocated);
        let mut past_end = vmlinux_with(true, &[]);
        past_end[64 + 32..64 + 40].copy_from_slice(&0x300u64.to_le_bytes()); // p_filesz
        check_err(&past_end, ImageError::Truncated { what: "a PT_LOAD segment" });
        let mut bigger_file = vmlinux_with(true, &[]);
        bigger_file[64 + 40..64 + 48].copy_from_slice(&0x80u64.to_le_bytes()); // p_memsz
        check_err(&bigger_file, ImageError::Damaged("a PT_LOAD segment's file size exceeds its memory size"));
        let mut huge_section = vmlinux_with(true, &[(".cmdline", b"quiet", 0)]);
        let shoff = u64::from_le_bytes(huge_section[40..48].try_into().unwrap()) as usize;
        huge_section[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        check_err(&huge_section, ImageError::Truncated { what: "the .cmdline section" });
        let mut bad_names = vmlinux_with(true, &[(".cmdline", b"quiet", 0)]);
        bad_names[62] = 9;
        check_err(&bad_names, ImageError::Damaged("the section name table's index is out of range"));
        bad_names[62] = 2;
        bad_names[58] = 40;
        check_err(&bad_names, ImageError::Damaged("ELF section headers are not 64 bytes long"));
        bad_names[58] = 64;
        bad_names.truncate(bad_names.len() - 1);
        check_err(&bad_names, ImageError::Truncated { what: "the ELF section header table" });
        let mut aarch64 = vmlinux_with(true, &[]);
        aarch64[18] = 183;
        check_err(&aarch64, ImageError::Pvh(PvhError::NotX86_64));
    }

    #[test]
    fn rejects_other_formats() {
        check_err(b"", ImageError::UnknownFormat);
        check_err(b"M", ImageError::UnknownFormat);
        check_err(b"\x7fELF\x01", ImageError::Pvh(PvhError::NotElf));
        check_err(&[0; 4096], ImageError::UnknownFormat);
        assert_one_line(&ImageError::Io(OutOfRange));
    }

    #[test]
    fn boots_from_the_boot_partition_of_a_disk() {
        let mut disk = gpt_disk(&[([7; 16], 34, 99), (FLINT_BOOT, 100, 199)]);
        let uki = tiny_uki(&[(b".linux\0\0", LINUX)]);
        disk[100 * 512..100 * 512 + uki.len()].copy_from_slice(&uki);
        let mut reader = &disk[..];
        let gpt = Gpt::read(&mut reader, disk.len() as u64).unwrap();
        let boot = gpt.find(&mut reader, &FLINT_BOOT).unwrap().unwrap();
        let mut partition = Window::new(&mut reader, boot.start, boot.len);
        let want = BootImage::Uki { linux: Extent { offset: 0x400, len: 0x345 }, initrd: None, cmdline: None };
        assert_eq!(probe(&mut partition, boot.len), Ok(want));
        // A partition that claims more than the disk holds fails on the read.
        let mut partition = Window::new(&mut reader, disk.len() as u64 - 2, 4);
        assert_eq!(probe(&mut partition, 4), Err(ImageError::Io(WindowError::Inner(OutOfRange))));
    }
}
