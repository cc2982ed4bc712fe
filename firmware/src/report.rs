//! Console text without `core::fmt`: a line is a list of pieces (static strings, decimal and
//! hexadecimal numbers, errors) written one after the other into a [`Sink`]. `core::fmt` and
//! the `Display` impls built on it were a sixth of the firmware's code, and under TCG every
//! line of code run once is translated once.
//!
//! The loader's errors keep their `Display` for the host; the firmware writes the same text
//! through [`Text`] (the tests below check the two agree, variant by variant).

use loader::boot_image::ImageError;
use loader::bzimage::KernelError;
use loader::decimal;
use loader::e820::MapError;
use loader::gpt::GptError;
use loader::plan::PlanError;
use loader::pvh::PvhError;
use loader::setup_data::{SetupDataError, MAX_NODES};

/// Where text goes: COM1 in the firmware, a `String` in tests.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// Text made of parts: errors, PCI addresses, file names.
pub trait Text {
    fn write(&self, out: &mut dyn Sink);
}

/// One value for a `{}` of a template.
pub enum Arg<'a> {
    /// As `{}` formats an unsigned integer.
    Dec(u64),
    /// As `{:#x}` formats it.
    Hex(u64),
    Text(&'a dyn Text),
}

/// What [`put!`](crate::put) accepts for a `{}`: unsigned integers (decimal), [`Hex`], and
/// anything [`Text`] (`&str` included).
pub trait AsArg {
    fn as_arg(&self) -> Arg<'_>;
}

/// Writes `template` into `out` (a `&mut dyn Sink`), each `{}` replaced by the next argument.
/// One call per message: the message is data, not code.
#[macro_export]
macro_rules! put {
    ($out:expr, $template:expr $(, $arg:expr)* $(,)?) => {
        $crate::report::emit($out, $template, &[$($crate::report::AsArg::as_arg(&$arg)),*])
    };
}

/// See [`put!`](crate::put).
#[inline(never)]
pub fn emit(out: &mut dyn Sink, template: &str, args: &[Arg]) {
    let mut rest = template.as_bytes();
    let mut args = args.iter();
    while let Some(at) = rest.windows(2).position(|pair| pair == b"{}") {
        // `at + 2 <= rest.len()`: checked lookups keep a bounds-check panic out.
        out.put(rest.get(..at).unwrap_or_default());
        match args.next() {
            Some(Arg::Dec(value)) => out.put(decimal::decimal(*value, &mut [0; 20])),
            Some(Arg::Hex(value)) => {
                out.put(b"0x");
                out.put(decimal::hex(*value, &mut [0; 16]));
            }
            Some(Arg::Text(text)) => text.write(out),
            None => {}
        }
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    out.put(rest);
}

impl Text for str {
    fn write(&self, out: &mut dyn Sink) {
        out.put(self.as_bytes());
    }
}

impl<T: Text + ?Sized> Text for &T {
    fn write(&self, out: &mut dyn Sink) {
        (**self).write(out);
    }
}

impl<T: Text> AsArg for T {
    fn as_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

macro_rules! decimal_arg {
    ($($t:ty),*) => {$(
        impl AsArg for $t {
            fn as_arg(&self) -> Arg<'_> {
                Arg::Dec(*self as u64)
            }
        }
    )*};
}
decimal_arg!(u8, u16, u32, u64, usize);

/// `{:#x}`: `0x` and lowercase hexadecimal digits.
#[derive(Clone, Copy)]
pub struct Hex(pub u64);

impl AsArg for Hex {
    fn as_arg(&self) -> Arg<'_> {
        Arg::Hex(self.0)
    }
}

/// `{:0N$x}`: lowercase hexadecimal digits, zero-padded to `N` (at most 16).
#[derive(Clone, Copy)]
pub struct PaddedHex<const N: usize>(pub u64);

impl<const N: usize> Text for PaddedHex<N> {
    #[inline(never)]
    fn write(&self, out: &mut dyn Sink) {
        let digits = decimal::hex(self.0, &mut [0; 16]).len();
        for _ in digits..N {
            out.put(b"0");
        }
        out.put(decimal::hex(self.0, &mut [0; 16]));
    }
}

/// `n` bytes in MiB, rounded up (the loader's messages count RAM so).
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl Text for KernelError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::NotLinux => put!(out, "not a Linux kernel (no HdrS header): pass a bzImage with -kernel"),
            Self::Truncated { len, need } => put!(
                out,
                "kernel setup part is {} bytes but its header needs {}: pass the whole bzImage with -kernel",
                len,
                need
            ),
            Self::Damaged(what) => {
                put!(out, "kernel header is damaged ({}): pass an intact bzImage with -kernel", what)
            }
            Self::OldProtocol { version } => put!(
                out,
                "kernel boot protocol {}.{} is older than 2.12: use Linux 3.8 or newer",
                version >> 8,
                version & 0xff
            ),
            Self::No64BitEntry => {
                put!(out, "kernel has no 64-bit entry (XLF_KERNEL_64 unset): pass an x86_64 bzImage")
            }
            Self::NotRelocatable => put!(out, "kernel is not relocatable: rebuild it with CONFIG_RELOCATABLE=y"),
        }
    }
}

impl Text for PlanError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::CmdlineTooLong { len, max } => {
                put!(out, "command line is {} bytes, kernel accepts {}: shorten -append", len, max)
            }
            Self::KernelDoesNotFit { need, ram } => put!(
                out,
                "kernel needs {} MiB of free RAM above 1 MiB but the VM has {} MiB in all: raise -m",
                mib(need),
                mib(ram)
            ),
            Self::InitrdDoesNotFit { size } => put!(
                out,
                "initrd of {} MiB does not fit in free RAM below 4 GiB: raise -m or shrink the initrd",
                mib(size)
            ),
        }
    }
}

impl Text for PvhError {
    fn write(&self, out: &mut dyn Sink) {
        let text = match *self {
            Self::NotElf => "not a 64-bit ELF kernel: pass a vmlinux or a bzImage with -kernel",
            Self::NotX86_64 => "the ELF kernel is not for x86-64: pass an x86-64 vmlinux",
            Self::Truncated => "the ELF kernel is truncated: pass the whole vmlinux",
            Self::NoLoadSegments => "the ELF kernel has no loadable segment: pass a real vmlinux",
            Self::TooManySegments => "the ELF kernel has more than 8 loadable segments: pass a Linux vmlinux",
            Self::TooManyProgramHeaders => "the ELF kernel has more than 16 program headers: pass a Linux vmlinux",
            Self::NoPvhNote => "the vmlinux has no PVH entry note: build it with CONFIG_PVH=y or boot the bzImage",
            Self::InitrdDoesNotFit { size } => {
                return put!(
                    out,
                    "initrd of {} MiB does not fit in RAM beside the kernel: raise -m or shrink the initrd",
                    mib(size)
                )
            }
        };
        out.put(text.as_bytes());
    }
}

impl Text for MapError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::PartialEntry { len } => put!(
                out,
                "fw_cfg etc/e820 is {} bytes, not whole 20-byte entries: run flint under an unmodified QEMU",
                len
            ),
            Self::Wraps { start, size } => put!(
                out,
                "memory range {}+{} wraps past the top of memory: fix the VM's memory layout",
                Hex(start),
                Hex(size)
            ),
            Self::TableFull => put!(out, "memory map needs more than 48 entries: give the VM fewer memory regions"),
        }
    }
}

impl Text for SetupDataError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::Dangling { addr } => put!(
                out,
                "QEMU's setup_data points at {}, outside every blob it loads: drop -dtb or use another QEMU",
                Hex(addr)
            ),
            Self::Truncated { addr } => {
                put!(out, "QEMU's setup_data node at {} runs past its blob: drop -dtb or use another QEMU", Hex(addr))
            }
            Self::TooManyNodes => put!(
                out,
                "QEMU's setup_data chain has over {} nodes (a loop?): drop -dtb or use another QEMU",
                MAX_NODES
            ),
            Self::NoRoom { have } => put!(
                out,
                "QEMU's setup_data does not fit the firmware's {}-byte area: enlarge it in flint's firmware",
                have
            ),
        }
    }
}

/// The firmware's disk reads cannot fail inside the loader (`Infallible`): its own I/O errors
/// become `BootError::Disk`.
impl Text for GptError<core::convert::Infallible> {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::Io(never) => match never {},
            Self::NoGpt => put!(out, "the disk has no GPT: make it with `flint image` (see docs/disk-image.md)"),
            Self::BadHeaderCrc => put!(out, "the GPT header's CRC32 does not match: the disk image is damaged, rebuild it with `flint image`"),
            Self::BadEntriesCrc => put!(out, "the GPT partition array's CRC32 does not match: the disk image is damaged, rebuild it with `flint image`"),
            Self::Damaged(what) => {
                put!(out, "the GPT header is damaged ({}): rebuild the disk image with `flint image`", what)
            }
            Self::BadPartition { number, problem } => put!(out, "GPT partition {} is damaged ({}): fix the partition table or rebuild the disk image", number, problem),
        }
    }
}

impl Text for ImageError<core::convert::Infallible> {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            Self::Io(never) => match never {},
            Self::UnknownFormat => {
                put!(out, "the boot partition holds neither a UKI (PE) nor a PVH vmlinux (ELF): see docs/disk-image.md")
            }
            Self::NotX86_64 => {
                put!(out, "the UKI is not a PE32+ image for x86-64: build it on systemd's linuxx64.efi.stub")
            }
            Self::NoLinuxSection => put!(
                out,
                "the UKI has no .linux section: add the bzImage with `objcopy --add-section .linux=bzImage` or ukify"
            ),
            Self::Truncated { what } => put!(
                out,
                "{} reaches past the end of the boot partition: make the partition hold the whole boot image",
                what
            ),
            Self::Damaged(what) => {
                put!(out, "the boot image is damaged ({}): rebuild the disk image with `flint image`", what)
            }
            Self::Pvh(e) => e.write(out),
            Self::Unsupported(what) => put!(out, "{}: see docs/disk-image.md", what),
        }
    }
}

#[cfg(test)]
impl Sink for String {
    fn put(&mut self, bytes: &[u8]) {
        self.push_str(core::str::from_utf8(bytes).expect("console text is UTF-8"));
    }
}

/// What `text` writes, for tests.
#[cfg(test)]
pub fn string(text: &impl Text) -> String {
    let mut out = String::new();
    text.write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    fn same_as_display<T: Text + core::fmt::Display>(values: &[T]) {
        for value in values {
            assert_eq!(string(value), value.to_string());
        }
    }

    fn put_string(template: &str, args: &[Arg]) -> String {
        let mut out = String::new();
        emit(&mut out, template, args);
        out
    }

    #[test]
    fn numbers_format_like_core_fmt() {
        for value in [0u64, 9, 10, 0xabc, 0x1_0000_0000, u64::MAX] {
            assert_eq!(put_string("{}", &[value.as_arg()]), value.to_string());
            assert_eq!(put_string("{}", &[Hex(value).as_arg()]), format!("{value:#x}"));
            assert_eq!(string(&PaddedHex::<2>(value)), format!("{value:02x}"));
            assert_eq!(string(&PaddedHex::<4>(value)), format!("{value:04x}"));
        }
        assert_eq!(put_string("{}", &[255u8.as_arg()]), "255");
        assert_eq!(put_string("{}", &[usize::MAX.as_arg()]), usize::MAX.to_string());
    }

    #[test]
    fn templates_take_their_arguments_in_order() {
        let mut out = String::new();
        put!(&mut out, "a{}b{}{}c", 1u32, Hex(2), "x");
        assert_eq!(out, "a1b0x2xc");
        assert_eq!(put_string("no arguments", &[]), "no arguments");
        assert_eq!(put_string("{}{}", &[1u8.as_arg()]), "1", "a missing argument writes nothing");
    }

    #[test]
    fn loader_errors_read_as_their_display() {
        use KernelError::*;
        same_as_display(&[
            NotLinux,
            Truncated { len: 0x240, need: 1024 },
            Damaged("init_size is zero"),
            OldProtocol { version: 0x20b },
            No64BitEntry,
            NotRelocatable,
        ]);
        same_as_display(&[
            PlanError::CmdlineTooLong { len: 3000, max: 2047 },
            PlanError::KernelDoesNotFit { need: (30 << 20) + 1, ram: 48 << 20 },
            PlanError::InitrdDoesNotFit { size: 90 << 20 },
        ]);
        same_as_display(&[
            PvhError::NotElf,
            PvhError::NotX86_64,
            PvhError::Truncated,
            PvhError::NoLoadSegments,
            PvhError::TooManySegments,
            PvhError::TooManyProgramHeaders,
            PvhError::NoPvhNote,
            PvhError::InitrdDoesNotFit { size: 1 },
        ]);
        same_as_display(&[
            MapError::PartialEntry { len: 21 },
            MapError::Wraps { start: 0xffff_ffff_ffff_f000, size: 0x2000 },
            MapError::TableFull,
        ]);
        same_as_display(&[
            SetupDataError::Dangling { addr: 0x1234 },
            SetupDataError::Truncated { addr: 0 },
            SetupDataError::TooManyNodes,
            SetupDataError::NoRoom { have: 4096 },
        ]);
        same_as_display(&[
            GptError::<Infallible>::NoGpt,
            GptError::BadHeaderCrc,
            GptError::BadEntriesCrc,
            GptError::Damaged("entry size is not 128"),
            GptError::BadPartition { number: 3, problem: "ends past the disk" },
        ]);
        same_as_display(&[
            ImageError::<Infallible>::UnknownFormat,
            ImageError::NotX86_64,
            ImageError::NoLinuxSection,
            ImageError::Truncated { what: "the .linux section" },
            ImageError::Damaged("PE header offset"),
            ImageError::Pvh(PvhError::NoPvhNote),
            ImageError::Unsupported("a compressed vmlinux"),
        ]);
    }
}
