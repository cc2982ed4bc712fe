//! PVH boot: the x86/HVM direct boot ABI (Xen's `arch-x86/hvm/start_info.h`, also used by
//! QEMU, Firecracker and cloud-hypervisor). An uncompressed ELF vmlinux with a
//! `XEN_ELFNOTE_PHYS32_ENTRY` note is entered in 32-bit protected mode, paging off, with EBX
//! pointing at `hvm_start_info`, which names the command line, the initrd (as module 0), the
//! RSDP and the memory map. No decompression, no relocation: the fastest way into Linux.
//!
//! For `-kernel vmlinux`, QEMU loads the ELF's segments into guest RAM itself and publishes the
//! entry (FW_CFG_KERNEL_ENTRY) and the range it loaded them in (FW_CFG_KERNEL_ADDR and _SIZE),
//! which [`place_initrd`] keeps clear. A vmlinux on disk is read through [`ReadAt`]
//! ([`ElfHeaders`]): headers and notes only, never the whole file.

use crate::e820::MemoryMap;
use crate::le;
use crate::low_window;
use crate::range::FOUR_GIB;
use crate::read_at::{OutOfRange, ReadAt};
use core::fmt;
use goblin::elf64::header::{Header, EM_X86_64, SIZEOF_EHDR};
use goblin::elf64::program_header::{ProgramHeader, PT_LOAD, PT_NOTE, SIZEOF_PHDR};

/// `XEN_ELFNOTE_PHYS32_ENTRY`, in a note named "Xen".
pub(crate) const NOTE_PHYS32_ENTRY: u32 = 18;
const START_INFO_MAGIC: u32 = 0x336e_c578;
const START_INFO_VERSION: u32 = 1;
const START_INFO_LEN: usize = 56;
const MODLIST_ENTRY_LEN: usize = 32;
const MEMMAP_ENTRY_LEN: usize = 24;
/// Kernels have a handful of PT_LOAD segments.
pub const MAX_SEGMENTS: usize = 8;
const PAGE: u64 = 4096;

/// Offsets inside the block [`build_start_info`] fills: start_info, one module, memory map.
const MODLIST_OFFSET: usize = 64;
const _: () = assert!(START_INFO_LEN <= MODLIST_OFFSET);
const MEMMAP_OFFSET: usize = MODLIST_OFFSET + MODLIST_ENTRY_LEN;
pub const START_INFO_BLOCK: usize = MEMMAP_OFFSET + MEMMAP_ENTRY_LEN * crate::e820::MAX_ENTRIES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    NotElf,
    NotX86_64,
    Truncated,
    NoLoadSegments,
    TooManySegments,
    TooManyProgramHeaders,
    NoPvhNote,
    InitrdDoesNotFit { size: u64 },
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not a 64-bit ELF kernel: pass a vmlinux or a bzImage with -kernel"),
            Self::NotX86_64 => f.write_str("the ELF kernel is not for x86-64: pass an x86-64 vmlinux"),
            Self::Truncated => f.write_str("the ELF kernel is truncated: pass the whole vmlinux"),
            Self::NoLoadSegments => f.write_str("the ELF kernel has no loadable segment: pass a real vmlinux"),
            Self::TooManySegments => {
                f.write_str("the ELF kernel has more than 8 loadable segments: pass a Linux vmlinux")
            }
            Self::TooManyProgramHeaders => {
                f.write_str("the ELF kernel has more than 16 program headers: pass a Linux vmlinux")
            }
            Self::NoPvhNote => {
                f.write_str("the vmlinux has no PVH entry note: build it with CONFIG_PVH=y or boot the bzImage")
            }
            Self::InitrdDoesNotFit { size } => write!(
                f,
                "initrd of {} MiB does not fit in RAM beside the kernel: raise -m or shrink the initrd",
                size.div_ceil(1 << 20)
            ),
        }
    }
}

impl core::error::Error for PvhError {}

/// Linux's vmlinux has about five program headers.
const MAX_PROGRAM_HEADERS: usize = 16;
const NOTE_HEADER_LEN: u64 = 12;

/// A [`PvhError`], or the failure of a read of the ELF file it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError<E> {
    Io(E),
    Pvh(PvhError),
}

impl<E> From<PvhError> for ReadError<E> {
    fn from(e: PvhError) -> Self {
        Self::Pvh(e)
    }
}

/// Reads `buf.len()` bytes at `offset`; a range past `elf_len` is [`PvhError::Truncated`].
pub(crate) fn read_exact<R: ReadAt>(
    elf: &mut R,
    elf_len: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), ReadError<R::Error>> {
    if offset.checked_add(buf.len() as u64).is_none_or(|end| end > elf_len) {
        return Err(PvhError::Truncated.into());
    }
    elf.read_at(offset, buf).map_err(ReadError::Io)
}

/// Reads a `T` from the start of `raw`; the caller sized `raw` to `T`'s ELF size.
pub(crate) fn from_bytes<T: plain::Plain + Default>(raw: &[u8]) -> Result<T, PvhError> {
    let mut value = T::default();
    // Copies rather than casts, so the input's alignment does not matter.
    plain::copy_from_bytes(&mut value, raw).map_err(|_| PvhError::Truncated)?;
    Ok(value)
}

/// The results of reads from a whole file in memory: bounds were checked, so no read fails.
fn in_memory<T>(result: Result<T, ReadError<OutOfRange>>) -> Result<T, PvhError> {
    result.map_err(|e| match e {
        ReadError::Io(OutOfRange) => PvhError::Truncated,
        ReadError::Pvh(e) => e,
    })
}

/// The ELF header and program headers of an x86-64 kernel, read through [`ReadAt`].
#[derive(Clone, Copy, Debug)]
pub struct ElfHeaders {
    pub header: Header,
    program_headers: [ProgramHeader; MAX_PROGRAM_HEADERS],
    count: usize,
}

impl ElfHeaders {
    /// Reads the headers at the start of the `elf_len`-byte file `elf`.
    pub fn read<R: ReadAt>(elf: &mut R, elf_len: u64) -> Result<Self, ReadError<R::Error>> {
        let mut raw = [0u8; SIZEOF_EHDR];
        // Read what there is first, so a short non-ELF file is "not ELF" rather than "truncated".
        let have = &mut raw[..elf_len.min(SIZEOF_EHDR as u64) as usize];
        read_exact(elf, elf_len, 0, have)?;
        if have.get(..4) != Some(b"\x7fELF".as_slice()) || have.get(4) != Some(&2) {
            return Err(PvhError::NotElf.into());
        }
        if have.len() < SIZEOF_EHDR {
            return Err(PvhError::Truncated.into());
        }
        let header: Header = from_bytes(&raw)?;
        if header.e_machine != EM_X86_64 {
            return Err(PvhError::NotX86_64.into());
        }
        let count = usize::from(header.e_phnum);
        if count > MAX_PROGRAM_HEADERS {
            return Err(PvhError::TooManyProgramHeaders.into());
        }
        let mut table = [0u8; MAX_PROGRAM_HEADERS * SIZEOF_PHDR];
        let table = &mut table[..count * SIZEOF_PHDR];
        read_exact(elf, elf_len, header.e_phoff, table)?;
        let mut program_headers = [ProgramHeader::default(); MAX_PROGRAM_HEADERS];
        for (phdr, raw) in program_headers.iter_mut().zip(table.chunks_exact(SIZEOF_PHDR)) {
            *phdr = from_bytes(raw)?;
        }
        Ok(Self { header, program_headers, count })
    }

    pub fn program_headers(&self) -> &[ProgramHeader] {
        self.program_headers.get(..self.count).unwrap_or_default()
    }

    /// Where the load segments go in physical memory.
    pub fn kernel_image(&self) -> Result<KernelImage, PvhError> {
        let mut image = KernelImage::default();
        for phdr in self.program_headers().iter().filter(|p| p.p_type == PT_LOAD && p.p_memsz > 0) {
            let slot = image.segments.get_mut(image.count).ok_or(PvhError::TooManySegments)?;
            *slot = (phdr.p_paddr, phdr.p_memsz);
            image.count += 1;
        }
        if image.count == 0 {
            return Err(PvhError::NoLoadSegments);
        }
        Ok(image)
    }

    /// The 32-bit PVH entry, from the `XEN_ELFNOTE_PHYS32_ENTRY` note: reads only the notes.
    pub fn entry_point<R: ReadAt>(&self, elf: &mut R, elf_len: u64) -> Result<u32, ReadError<R::Error>> {
        for phdr in self.program_headers().iter().filter(|p| p.p_type == PT_NOTE) {
            let end = phdr.p_offset.checked_add(phdr.p_filesz).ok_or(PvhError::Truncated)?;
            if end > elf_len {
                return Err(PvhError::Truncated.into());
            }
            if let Some(entry) = find_entry_note(elf, phdr.p_offset, end)? {
                return Ok(entry);
            }
        }
        Err(PvhError::NoPvhNote.into())
    }
}

/// Where an ELF kernel's segments lie in physical memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelImage {
    segments: [(u64, u64); MAX_SEGMENTS],
    count: usize,
}

impl KernelImage {
    /// Reads the load segments from a whole ELF file in memory, for tests.
    #[cfg(test)]
    pub fn parse(elf: &[u8]) -> Result<Self, PvhError> {
        in_memory(ElfHeaders::read(&mut &elf[..], elf.len() as u64))?.kernel_image()
    }

    /// `(start, size)` of each segment in physical memory.
    pub fn segments(&self) -> &[(u64, u64)] {
        self.segments.get(..self.count).unwrap_or_default()
    }
}

/// A page-aligned place for an initrd clear of the kernel's `(start, size)` ranges in RAM (its
/// segments, or the extent QEMU loaded them in): in the low window when it fits there,
/// otherwise the highest below 4 GiB.
#[inline(always)]
pub fn place_initrd(map: &MemoryMap, size: u64, kernel: &[(u64, u64)]) -> Result<u64, PvhError> {
    low_window::highest_fit(map, size, PAGE, FOUR_GIB, kernel).ok_or(PvhError::InitrdDoesNotFit { size })
}

/// The 32-bit PVH entry of a whole vmlinux file, from its `XEN_ELFNOTE_PHYS32_ENTRY` note.
pub fn entry_point(elf: &[u8]) -> Result<u32, PvhError> {
    let (mut reader, len) = (elf, elf.len() as u64);
    in_memory(ElfHeaders::read(&mut reader, len).and_then(|headers| headers.entry_point(&mut reader, len)))
}

/// Walks the `namesz, descsz, type, name, desc` records in [start, end), each part padded to
/// 4 bytes, reading one record header at a time.
fn find_entry_note<R: ReadAt>(elf: &mut R, start: u64, end: u64) -> Result<Option<u32>, ReadError<R::Error>> {
    let pad = |n: u32| u64::from(n).next_multiple_of(4);
    let mut at = start;
    while at.checked_add(NOTE_HEADER_LEN).is_some_and(|head_end| head_end <= end) {
        let mut head = [0u8; NOTE_HEADER_LEN as usize];
        elf.read_at(at, &mut head).map_err(ReadError::Io)?;
        let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let (namesz, descsz, kind) = (word(0), word(4), word(8));
        let name_at = at + NOTE_HEADER_LEN;
        // "Xen" with or without its NUL, then the descriptor: the entry as a 32- or 64-bit
        // value whose low half is the address.
        if kind == NOTE_PHYS32_ENTRY && (namesz == 3 || namesz == 4) && name_at.checked_add(8).is_some_and(|e| e <= end)
        {
            let mut name_desc = [0u8; 8];
            elf.read_at(name_at, &mut name_desc).map_err(ReadError::Io)?;
            let name = &name_desc[..namesz as usize];
            if name.strip_suffix(b"\0").unwrap_or(name) == b"Xen" {
                return Ok(le::u32_at(&name_desc, 4));
            }
        }
        at = name_at.saturating_add(pad(namesz)).saturating_add(pad(descsz));
    }
    Ok(None)
}

/// What goes into `hvm_start_info`.
pub struct StartInfoInput<'a> {
    pub cmdline_addr: u64,
    pub rsdp_addr: u64,
    /// `(address, size)` of the initrd, passed as module 0.
    pub initrd: Option<(u64, u64)>,
    pub map: &'a MemoryMap,
}

/// Fills `block` (at physical `block_addr`) with `hvm_start_info` at its start, followed by
/// the module list and the memory map it points to. Returns the start_info address for EBX.
/// Inlined into its caller, the PVH hand-off, which each boot runs at most once: under TCG
/// a call's set-up and return are instructions to translate too.
#[inline(always)]
pub fn build_start_info(block: &mut [u8; START_INFO_BLOCK], block_addr: u64, input: &StartInfoInput) -> u64 {
    block.fill(0);
    let entries = input.map.entries();
    // Field by field: constant offsets into the fixed-size block need no checks at run time.
    let _ = le::put(block, 0, &START_INFO_MAGIC.to_le_bytes());
    let _ = le::put(block, 4, &START_INFO_VERSION.to_le_bytes());
    let _ = le::put(block, 16, &(block_addr + MODLIST_OFFSET as u64).to_le_bytes());
    let _ = le::put(block, 24, &input.cmdline_addr.to_le_bytes());
    let _ = le::put(block, 32, &input.rsdp_addr.to_le_bytes());
    let _ = le::put(block, 40, &(block_addr + MEMMAP_OFFSET as u64).to_le_bytes());
    let _ = le::put(block, 48, &(entries.len() as u32).to_le_bytes());
    if let Some((addr, size)) = input.initrd {
        let _ = le::put(block, 12, &1u32.to_le_bytes());
        let _ = le::put(block, MODLIST_OFFSET, &addr.to_le_bytes());
        let _ = le::put(block, MODLIST_OFFSET + 8, &size.to_le_bytes());
    }
    input.map.write_slots::<MEMMAP_ENTRY_LEN>(&mut block[MEMMAP_OFFSET..]);
    block_addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ram_map, tiny_vmlinux};

    #[test]
    fn finds_segments_and_entry() {
        let elf = tiny_vmlinux(true);
        let image = KernelImage::parse(&elf).unwrap();
        assert_eq!(image.segments(), &[(0x100_0000, 0x20_0000)]);
        assert_eq!(entry_point(&elf), Ok(0x0100_0ab0));
        assert_eq!(entry_point(&tiny_vmlinux(false)), Err(PvhError::NoPvhNote));
    }

    #[test]
    fn rejects_what_is_not_an_x86_64_elf() {
        assert_eq!(KernelImage::parse(b"MZ\0\0"), Err(PvhError::NotElf));
        let mut elf = tiny_vmlinux(true);
        elf[18] = 183; // EM_AARCH64
        assert_eq!(KernelImage::parse(&elf), Err(PvhError::NotX86_64));
        assert_eq!(KernelImage::parse(&tiny_vmlinux(true)[..100]), Err(PvhError::Truncated));
    }

    #[test]
    fn reads_only_what_it_needs_and_caps_the_headers() {
        let mut elf = tiny_vmlinux(true);
        elf[56] = 17; // e_phnum
        assert_eq!(KernelImage::parse(&elf), Err(PvhError::TooManyProgramHeaders));
        // The note segment reaches past the file's end.
        let elf = tiny_vmlinux(true);
        assert_eq!(entry_point(&elf[..0x110]), Err(PvhError::Truncated));
        // A note named "Xen" without its NUL counts too.
        let mut elf = tiny_vmlinux(true);
        elf[0x100] = 3;
        assert_eq!(entry_point(&elf), Ok(0x0100_0ab0));
    }

    #[test]
    fn counts_non_empty_loads_up_to_eight() {
        let with_loads = |count: usize, memsz: u64| {
            let mut elf = tiny_vmlinux(true);
            elf.resize(elf.len().max(64 + count * SIZEOF_PHDR), 0);
            elf[56..58].copy_from_slice(&(count as u16).to_le_bytes());
            for i in 0..count {
                let at = 64 + i * SIZEOF_PHDR;
                elf[at..at + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
                elf[at + 24..at + 32].copy_from_slice(&((i as u64) << 24).to_le_bytes());
                elf[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
            }
            elf
        };
        let eight = KernelImage::parse(&with_loads(8, 0x1000)).unwrap();
        assert_eq!(eight.segments().len(), 8);
        assert_eq!(eight.segments()[7], (7 << 24, 0x1000));
        assert_eq!(KernelImage::parse(&with_loads(9, 0x1000)), Err(PvhError::TooManySegments));
        assert_eq!(KernelImage::parse(&with_loads(9, 0)), Err(PvhError::NoLoadSegments));
    }

    #[test]
    fn initrd_goes_low_if_it_fits_else_high_and_clear_of_the_kernel() {
        let map = ram_map(&[(0x10_0000, 0x200_0000 - 0x10_0000)]);
        let image = KernelImage::parse(&tiny_vmlinux(true)).unwrap();
        let place = |size| place_initrd(&map, size, image.segments());
        assert_eq!(place(0x1000), Ok(0x1f_f000));
        assert_eq!(place(0x10_0000), Ok(0x10_0000));
        assert_eq!(place(0x10_1000), Ok(0x1ef_f000));
        assert_eq!(place(0x1f0_0000), Err(PvhError::InitrdDoesNotFit { size: 0x1f0_0000 }));
        // Every range given is avoided.
        assert_eq!(place_initrd(&map, 0x1000, &[(0x10_0000, 0x10_0000), (0x1ff_f000, 1)]), Ok(0x1ff_e000));
    }

    #[test]
    fn start_info_layout() {
        let map = ram_map(&[(0x10_0000, 0x700_0000)]);
        let mut block = [0u8; START_INFO_BLOCK];
        let input = StartInfoInput {
            cmdline_addr: 0x2_1000,
            rsdp_addr: 0xf_fff0,
            initrd: Some((0x600_0000, 0x1234)),
            map: &map,
        };
        assert_eq!(build_start_info(&mut block, 0x5_0000, &input), 0x5_0000);
        assert_eq!(le::u32_at(&block, 0), Some(START_INFO_MAGIC));
        assert_eq!(le::u32_at(&block, 12), Some(1));
        assert_eq!(le::u64_at(&block, 16), Some(0x5_0000 + MODLIST_OFFSET as u64));
        assert_eq!(le::u64_at(&block, MODLIST_OFFSET + 8), Some(0x1234));
        assert_eq!(le::u32_at(&block, 48), Some(map.entries().len() as u32));
        assert_eq!(le::u64_at(&block, MEMMAP_OFFSET + 8), Some(0x700_0000));
        assert_eq!(le::u32_at(&block, MEMMAP_OFFSET + 16), Some(1));
        // Several entries land in order, each in its 24-byte slot; the slots after them stay zero.
        let mut map = ram_map(&[(0, 0x9_FC00), (0x10_0000, 0x700_0000)]);
        map.mark(0x9_FC00, 0x400, crate::e820::RESERVED).unwrap();
        let mut block = [0xeeu8; START_INFO_BLOCK];
        build_start_info(&mut block, 0x5_0000, &StartInfoInput { map: &map, ..input });
        assert_eq!(le::u32_at(&block, 48), Some(3));
        let slot = |i: usize| {
            let at = MEMMAP_OFFSET + i * MEMMAP_ENTRY_LEN;
            (le::u64_at(&block, at).unwrap(), le::u64_at(&block, at + 8).unwrap(), le::u32_at(&block, at + 16).unwrap())
        };
        assert_eq!([slot(0), slot(1), slot(2)], [(0, 0x9_FC00, 1), (0x9_FC00, 0x400, 2), (0x10_0000, 0x700_0000, 1)]);
        assert!(block[MEMMAP_OFFSET + 2 * MEMMAP_ENTRY_LEN + 20..].iter().all(|&b| b == 0));
    }
}
