//! A PVH vmlinux in the boot partition: its load segments, entry note, and the non-allocated
//! `.initrd` / `.cmdline` sections `objcopy --add-section` appends.

use super::{extent, BootImage, Extent, ImageError, Segment};
use crate::pvh::{self, ElfHeaders, PvhError, MAX_SEGMENTS};
use crate::read_at::ReadAt;
use goblin::elf64::header::Header;
use goblin::elf64::program_header::PT_LOAD;
use goblin::elf64::section_header::{SectionHeader, SHF_ALLOC, SHT_NOBITS, SIZEOF_SHDR};

/// Section headers are read this many at a time, on the stack.
const SECTIONS_PER_READ: usize = 16;
const INITRD: &[u8] = b".initrd\0";
const CMDLINE: &[u8] = b".cmdline\0";

/// The `.initrd` and `.cmdline` sections, each if present.
type Extras = (Option<Extent>, Option<Extent>);

pub(super) fn probe<R: ReadAt>(image: &mut R, image_len: u64) -> Result<BootImage, ImageError<R::Error>> {
    let headers = ElfHeaders::read(image, image_len)?;
    let kernel = headers.kernel_image()?;
    let entry = headers.entry_point(image, image_len)?;
    let mut segments = [Segment::default(); MAX_SEGMENTS];
    let mut segment_count = 0;
    for phdr in headers.program_headers().iter().filter(|p| p.p_type == PT_LOAD && p.p_memsz > 0) {
        if phdr.p_filesz > phdr.p_memsz {
            return Err(ImageError::Damaged("a PT_LOAD segment's file size exceeds its memory size"));
        }
        let file = extent(phdr.p_offset, phdr.p_filesz, image_len, "a PT_LOAD segment")?;
        // `kernel_image` accepted at most MAX_SEGMENTS of these.
        let slot = segments.get_mut(segment_count).ok_or(PvhError::TooManySegments)?;
        *slot = Segment { file, paddr: phdr.p_paddr, memsz: phdr.p_memsz };
        segment_count += 1;
    }
    let (initrd, cmdline) = extra_sections(image, image_len, &headers.header)?;
    Ok(BootImage::Pvh { entry, kernel, segments, segment_count, initrd, cmdline })
}

/// Finds the `.initrd` and `.cmdline` sections by name through the section header table.
fn extra_sections<R: ReadAt>(image: &mut R, image_len: u64, header: &Header) -> Result<Extras, ImageError<R::Error>> {
    let (count, names_index) = (u64::from(header.e_shnum), u64::from(header.e_shstrndx));
    // No table, or no names (SHN_UNDEF): nothing was added.
    if header.e_shoff == 0 || count == 0 || names_index == 0 {
        return Ok((None, None));
    }
    if usize::from(header.e_shentsize) != SIZEOF_SHDR {
        return Err(ImageError::Damaged("ELF section headers are not 64 bytes long"));
    }
    if names_index >= count {
        return Err(ImageError::Damaged("the section name table's index is out of range"));
    }
    let table = extent(header.e_shoff, count * SIZEOF_SHDR as u64, image_len, "the ELF section header table")?;
    let mut raw = [0u8; SIZEOF_SHDR];
    read(image, image_len, table.offset + names_index * SIZEOF_SHDR as u64, &mut raw)?;
    let names: SectionHeader = pvh::from_bytes(&raw)?;
    let names = extent(names.sh_offset, names.sh_size, image_len, "the ELF section name table")?;

    let (mut initrd, mut cmdline) = (None, None);
    let mut buf = [0u8; SECTIONS_PER_READ * SIZEOF_SHDR];
    let mut index = 0;
    while index < count {
        let chunk = &mut buf[..(count - index).min(SECTIONS_PER_READ as u64) as usize * SIZEOF_SHDR];
        read(image, image_len, table.offset + index * SIZEOF_SHDR as u64, chunk)?;
        for raw in chunk.chunks_exact(SIZEOF_SHDR) {
            let section: SectionHeader = pvh::from_bytes(raw)?;
            let (slot, what) = match name(image, image_len, names, section.sh_name)? {
                Some(INITRD) => (&mut initrd, "the .initrd section"),
                Some(CMDLINE) => (&mut cmdline, "the .cmdline section"),
                _ => continue,
            };
            if slot.is_some() {
                continue; // the first of each name counts
            }
            if section.sh_type == SHT_NOBITS || section.sh_flags & u64::from(SHF_ALLOC) != 0 {
                return Err(ImageError::Unsupported(
                    "the vmlinux's .initrd or .cmdline is an allocated section (add them with `objcopy --add-section`)",
                ));
            }
            *slot = Some(extent(section.sh_offset, section.sh_size, image_len, what)?);
        }
        index += SECTIONS_PER_READ as u64;
    }
    Ok((initrd, cmdline))
}

/// The section name at `offset` in the name table, as far as needed to tell whether it is
/// `.initrd` or `.cmdline` (with its NUL); `None` for a name outside the table.
fn name<R: ReadAt>(
    image: &mut R,
    image_len: u64,
    names: Extent,
    offset: u32,
) -> Result<Option<&'static [u8]>, ImageError<R::Error>> {
    let offset = u64::from(offset);
    let Some(room) = names.len.checked_sub(offset) else { return Ok(None) };
    let mut buf = [0u8; 9];
    let buf = &mut buf[..room.min(9) as usize];
    read(image, image_len, names.offset + offset, buf)?;
    Ok([INITRD, CMDLINE].into_iter().find(|wanted| buf.starts_with(wanted)))
}

fn read<R: ReadAt>(image: &mut R, image_len: u64, offset: u64, buf: &mut [u8]) -> Result<(), ImageError<R::Error>> {
    Ok(pvh::read_exact(image, image_len, offset, buf)?)
}
