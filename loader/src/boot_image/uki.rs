//! A Unified Kernel Image in the boot partition: a PE32+ file whose `.linux` section is a
//! bzImage, with optional `.initrd` and `.cmdline`. Only the PE headers and the section table
//! are read. They are decoded here with the little-endian helpers rather than goblin: its PE
//! support needs an allocator and costs the firmware several KiB of its 64 KiB code budget
//! for fields a UKI boot never looks at (data directories, imports, certificates).

use super::{extent, BootImage, Extent, ImageError};
use crate::le::{u16_at, u32_at};
use crate::read_at::ReadAt;

/// The DOS, PE and optional headers must lie within this much of the start (they take a few
/// hundred bytes in systemd's stub).
const HEADERS: usize = 4096;
/// The PE format's limit.
const MAX_SECTIONS: usize = 96;
/// Where the DOS header keeps the PE header's offset.
const PE_POINTER_OFFSET: usize = 0x3c;
const PE_MAGIC: u32 = 0x0000_4550;
const COFF_HEADER_SIZE: usize = 20;
const MACHINE_X86_64: u16 = 0x8664;
const OPTIONAL_MAGIC_PE32_PLUS: u16 = 0x20b;
const SECTION_HEADER_SIZE: usize = 40;

pub(super) fn probe<R: ReadAt>(image: &mut R, image_len: u64) -> Result<BootImage, ImageError<R::Error>> {
    let mut buf = [0u8; HEADERS];
    let head = &mut buf[..image_len.min(HEADERS as u64) as usize];
    image.read_at(0, head).map_err(ImageError::Io)?;
    let head = &*head;
    let malformed = || match head.len() < HEADERS {
        true => ImageError::Truncated { what: "the UKI's PE headers" },
        false => ImageError::Damaged("the UKI's PE headers are malformed"),
    };
    let pe = u32_at(head, PE_POINTER_OFFSET).ok_or_else(malformed)? as usize;
    if u32_at(head, pe) != Some(PE_MAGIC) {
        return Err(malformed());
    }
    // COFF header: machine, section count, ..., optional header size at +16.
    let coff = pe + 4;
    let (machine, count) = (u16_at(head, coff).ok_or_else(malformed)?, u16_at(head, coff + 2).ok_or_else(malformed)?);
    let optional_size = usize::from(u16_at(head, coff + 16).ok_or_else(malformed)?);
    let optional = coff + COFF_HEADER_SIZE;
    let pe32_plus = optional_size >= 2 && u16_at(head, optional) == Some(OPTIONAL_MAGIC_PE32_PLUS);
    if machine != MACHINE_X86_64 || !pe32_plus {
        return Err(ImageError::NotX86_64);
    }
    if optional + optional_size > head.len() {
        return Err(malformed());
    }
    let count = usize::from(count);
    if count > MAX_SECTIONS {
        return Err(ImageError::Damaged("the UKI has more than 96 sections"));
    }
    // The section table follows the optional header.
    let table_offset = (optional + optional_size) as u64;
    let table_len = count * SECTION_HEADER_SIZE;
    extent(table_offset, table_len as u64, image_len, "the UKI's section table")?;
    let mut buf = [0u8; MAX_SECTIONS * SECTION_HEADER_SIZE];
    let table = &mut buf[..table_len];
    image.read_at(table_offset, table).map_err(ImageError::Io)?;

    let (mut linux, mut initrd, mut cmdline) = (None, None, None);
    for section in table.chunks_exact(SECTION_HEADER_SIZE) {
        // Long names live in a string table that is not read: the sections wanted have short ones.
        let (slot, what) = match &section[..8] {
            b".linux\0\0" => (&mut linux, "the UKI's .linux section"),
            b".initrd\0" => (&mut initrd, "the UKI's .initrd section"),
            b".cmdline" => (&mut cmdline, "the UKI's .cmdline section"),
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(content(section, image_len, what)?);
        }
    }
    let linux = linux.ok_or(ImageError::NoLinuxSection)?;
    Ok(BootImage::Uki { linux, initrd, cmdline })
}

/// The section's bytes in the file: its raw data, less the padding to the file alignment when
/// the virtual size says how much is real. `section` is one 40-byte section header.
fn content<E>(section: &[u8], image_len: u64, what: &'static str) -> Result<Extent, ImageError<E>> {
    let field = |offset| u32_at(section, offset).expect("a whole section header");
    let (virtual_size, raw_size, raw_pointer) = (field(8), field(16), field(20));
    let len = match virtual_size {
        size if size != 0 && size <= raw_size => size,
        _ => raw_size,
    };
    extent(u64::from(raw_pointer), u64::from(len), image_len, what)
}
