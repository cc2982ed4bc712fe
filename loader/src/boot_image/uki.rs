//! A Unified Kernel Image in the boot partition: a PE32+ file whose `.linux` section is a
//! bzImage, with optional `.initrd` and `.cmdline`. Only the PE headers and the section table
//! are read; goblin parses them (its PE support needs an allocator, hence the `uki` feature).

use super::{extent, BootImage, Extent, ImageError};
use crate::read_at::ReadAt;
use goblin::pe::header::{Header, COFF_MACHINE_X86_64, SIZEOF_COFF_HEADER, SIZEOF_PE_MAGIC};
use goblin::pe::optional_header::MAGIC_64;
use goblin::pe::section_table::{SectionTable, SIZEOF_SECTION_TABLE};

/// The DOS, PE and optional headers must lie within this much of the start (they take a few
/// hundred bytes in systemd's stub).
const HEADERS: usize = 4096;
/// The PE format's limit.
const MAX_SECTIONS: usize = 96;

pub(super) fn probe<R: ReadAt>(image: &mut R, image_len: u64) -> Result<BootImage, ImageError<R::Error>> {
    let mut buf = [0u8; HEADERS];
    let head = &mut buf[..image_len.min(HEADERS as u64) as usize];
    image.read_at(0, head).map_err(ImageError::Io)?;
    let header = Header::parse(head).map_err(|_| match head.len() < HEADERS {
        true => ImageError::Truncated { what: "the UKI's PE headers" },
        false => ImageError::Damaged("the UKI's PE headers are malformed"),
    })?;
    let coff = header.coff_header;
    let pe32_plus = header.optional_header.is_some_and(|o| o.standard_fields.magic == MAGIC_64);
    if coff.machine != COFF_MACHINE_X86_64 || !pe32_plus {
        return Err(ImageError::NotX86_64);
    }
    let count = usize::from(coff.number_of_sections);
    if count > MAX_SECTIONS {
        return Err(ImageError::Damaged("the UKI has more than 96 sections"));
    }
    // The section table follows the optional header.
    let table_offset = u64::from(header.dos_header.pe_pointer)
        + (SIZEOF_PE_MAGIC + SIZEOF_COFF_HEADER) as u64
        + u64::from(coff.size_of_optional_header);
    let table_len = (count * SIZEOF_SECTION_TABLE) as u64;
    extent(table_offset, table_len, image_len, "the UKI's section table")?;
    let mut buf = [0u8; MAX_SECTIONS * SIZEOF_SECTION_TABLE];
    let table = &mut buf[..count * SIZEOF_SECTION_TABLE];
    image.read_at(table_offset, table).map_err(ImageError::Io)?;

    let (mut linux, mut initrd, mut cmdline) = (None, None, None);
    let mut offset = 0;
    for _ in 0..count {
        // Long names live in a string table that is not read: the sections wanted have short ones.
        let section = SectionTable::parse(table, &mut offset, 0)
            .map_err(|_| ImageError::Damaged("the UKI's section table is malformed"))?;
        let (slot, what) = match &section.name {
            b".linux\0\0" => (&mut linux, "the UKI's .linux section"),
            b".initrd\0" => (&mut initrd, "the UKI's .initrd section"),
            b".cmdline" => (&mut cmdline, "the UKI's .cmdline section"),
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(content(&section, image_len, what)?);
        }
    }
    let linux = linux.ok_or(ImageError::NoLinuxSection)?;
    Ok(BootImage::Uki { linux, initrd, cmdline })
}

/// The section's bytes in the file: its raw data, less the padding to the file alignment when
/// the virtual size says how much is real.
fn content<E>(section: &SectionTable, image_len: u64, what: &'static str) -> Result<Extent, ImageError<E>> {
    let raw = section.size_of_raw_data;
    let len = match section.virtual_size {
        size if size != 0 && size <= raw => size,
        _ => raw,
    };
    extent(u64::from(section.pointer_to_raw_data), u64::from(len), image_len, what)
}
