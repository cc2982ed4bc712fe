//! QEMU's ACPI tables, installed by running its linker/loader script `etc/table-loader`: which
//! fw_cfg files to place in memory, which pointers between them to patch, which checksums to
//! fix and which addresses to report back to QEMU.
//!
//! Ordering: QEMU builds the tables again the first time the guest selects one of its ACPI
//! files (hw/i386/acpi-build.c, `acpi_build_update` as fw_cfg select callback), and that build
//! reads the PM base, MMCONFIG and PCI resources programmed so far. So `chipset` and `pci`
//! setup must come before `install_tables`, and nothing may read an ACPI file earlier.

mod command;

use crate::fw_cfg::{FwCfg, Transport};
use crate::put;
use crate::report::{Hex, Sink, Text};
use command::{Command, NAME_LEN, ZONE_FSEG, ZONE_HIGH};
use core::fmt;
use core::ops::Range;

const LOADER_FILE: &str = "etc/table-loader";
const RSDP_FILE: &[u8] = b"etc/acpi/rsdp";

/// Files one script may allocate; QEMU's x86 machines use two to five.
pub const MAX_FILES: usize = 16;

/// Where the tables ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// The RSDP, for `boot_params.acpi_rsdp_addr`.
    pub rsdp: u64,
    /// The lowest address the tables use; everything from here to the arena's top is ACPI data.
    pub used_start: u64,
}

/// A file name carried by an error, printable without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileName {
    bytes: [u8; NAME_LEN],
    len: usize,
}

impl FileName {
    fn new(name: &[u8]) -> Self {
        let len = name.len().min(NAME_LEN);
        let mut bytes = [0; NAME_LEN];
        bytes[..len].copy_from_slice(&name[..len]);
        FileName { bytes, len }
    }
}

impl Text for FileName {
    fn write(&self, out: &mut dyn Sink) {
        for &b in self.bytes.iter().take(self.len) {
            out.put(&[if b.is_ascii_graphic() { b } else { b'?' }]);
        }
    }
}

/// For tests' assertions: the name in quotes.
impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut name = [0; NAME_LEN];
        for (to, &b) in name.iter_mut().zip(&self.bytes[..self.len]) {
            *to = if b.is_ascii_graphic() { b } else { b'?' };
        }
        write!(f, "\"{}\"", core::str::from_utf8(&name[..self.len]).unwrap_or_default())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    ScriptSize { len: usize },
    UnterminatedName,
    UnknownFile(FileName),
    DuplicateAllocation(FileName),
    TooManyFiles,
    BadAlignment { file: FileName, align: u32 },
    BadZone { file: FileName, zone: u8 },
    ArenaTooSmall { file: FileName, size: usize, align: u32, arena: usize },
    OutOfBounds { file: FileName, offset: u64, len: u64 },
    BadPointerSize { file: FileName, size: u8 },
    PointerOverflow { file: FileName, size: u8 },
    WriteFailed(FileName),
    NoRsdp,
}

impl Text for AcpiError {
    fn write(&self, out: &mut dyn Sink) {
        match *self {
            AcpiError::ScriptSize { len } => {
                put!(out, "etc/table-loader is {} bytes, not whole 128-byte commands; this QEMU's linker/loader format is unsupported", len)
            }
            AcpiError::UnterminatedName => {
                put!(out, "etc/table-loader has a file name without NUL in its 56 bytes; the script is corrupt")
            }
            AcpiError::UnknownFile(file) => put!(out, "etc/table-loader uses {}, which fw_cfg lacks or which was not allocated first; the script is corrupt", file),
            AcpiError::DuplicateAllocation(file) => put!(out, "etc/table-loader allocates {} twice; the script is corrupt", file),
            AcpiError::TooManyFiles => {
                put!(out, "etc/table-loader allocates more than {} files; raise acpi::MAX_FILES", MAX_FILES)
            }
            AcpiError::BadAlignment { file, align } => {
                put!(out, "etc/table-loader aligns {} to {}, not a power of two; the script is corrupt", file, align)
            }
            AcpiError::BadZone { file, zone } => {
                put!(out, "etc/table-loader puts {} in unknown zone {}; this QEMU's linker/loader format is unsupported", file, zone)
            }
            AcpiError::ArenaTooSmall { file, size, align, arena } => put!(out, "the {}-byte ACPI arena has no room left for {} ({} bytes, aligned to {}); give acpi::install_tables a larger arena", arena, file, size, align),
            AcpiError::OutOfBounds { file, offset, len } => put!(out, "etc/table-loader reaches {} bytes at offset {} of {}, past its end; the script is corrupt", len, Hex(offset), file),
            AcpiError::BadPointerSize { file, size } => put!(out, "etc/table-loader patches a {}-byte pointer in {}, not 1, 2, 4 or 8; the script is corrupt", size, file),
            AcpiError::PointerOverflow { file, size } => put!(out, "a pointer patched into {} does not fit in {} bytes; place the ACPI arena lower in memory", file, size),
            AcpiError::WriteFailed(file) => {
                put!(out, "fw_cfg refused a pointer written into {}; QEMU takes such writes only by DMA", file)
            }
            AcpiError::NoRsdp => put!(out, "etc/table-loader never allocates {}; without an RSDP Linux finds no ACPI tables", FileName::new(RSDP_FILE)),
        }
    }
}

/// Runs `etc/table-loader` with `arena` (physical address `arena_base`, identity-mapped) as
/// the memory to place tables in, top down. `None` when QEMU offers no tables (`-no-acpi`).
/// The script is read into the arena's bottom first; files must then fit above it.
pub fn install_tables<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    arena: &mut [u8],
    arena_base: u64,
) -> Result<Option<AcpiTables>, AcpiError> {
    let Some(loader_file) = fw_cfg.find(LOADER_FILE.as_bytes()) else {
        return Ok(None);
    };
    // The first select of an ACPI file makes QEMU rebuild the tables (with the PCI and PM state
    // programmed so far), which can change the sizes the directory read at probe time gave.
    fw_cfg.select_file(&loader_file);
    fw_cfg.read_directory();
    let Some(loader_file) = fw_cfg.find(LOADER_FILE.as_bytes()) else {
        return Ok(None);
    };
    let script_len = loader_file.size as usize;
    if !script_len.is_multiple_of(command::LEN) {
        return Err(AcpiError::ScriptSize { len: script_len });
    }
    if script_len > arena.len() {
        return Err(AcpiError::ArenaTooSmall {
            file: FileName::new(LOADER_FILE.as_bytes()),
            size: script_len,
            align: 1,
            arena: arena.len(),
        });
    }
    let arena_len = arena.len();
    let (script, space) = arena.split_at_mut(script_len);
    fw_cfg.read_file(&loader_file, script);
    let mut loader = Loader {
        top: space.len(),
        space,
        base: arena_base + script_len as u64,
        arena_len,
        files: [Allocation { name: &[], offset: 0, size: 0 }; MAX_FILES],
        count: 0,
    };
    for raw in script.chunks_exact(command::LEN) {
        match command::parse(raw)? {
            Command::Allocate { file, align, zone } => loader.allocate(fw_cfg, file, align, zone)?,
            Command::AddPointer { dest, src, offset, size } => loader.add_pointer(dest, src, offset, size)?,
            Command::AddChecksum { file, offset, start, length } => loader.add_checksum(file, offset, start, length)?,
            Command::WritePointer { dest, src, dest_offset, src_offset, size } => {
                loader.write_pointer(fw_cfg, dest, src, dest_offset, src_offset, size)?
            }
            Command::Skip => {}
        }
    }
    let rsdp = loader.find(RSDP_FILE).map_err(|_| AcpiError::NoRsdp)?;
    Ok(Some(AcpiTables { rsdp: loader.address(&rsdp), used_start: loader.base + loader.top as u64 }))
}

/// A file placed in the arena; its name borrows from the script.
#[derive(Clone, Copy)]
struct Allocation<'s> {
    name: &'s [u8],
    offset: usize,
    size: usize,
}

struct Loader<'s, 'a> {
    /// The arena above the script; `base` is its physical address.
    space: &'a mut [u8],
    base: u64,
    arena_len: usize,
    /// Offset in `space` of the lowest allocation so far.
    top: usize,
    files: [Allocation<'s>; MAX_FILES],
    count: usize,
}

impl<'s> Loader<'s, '_> {
    fn find(&self, name: &[u8]) -> Result<Allocation<'s>, AcpiError> {
        let mut files = self.files.iter().take(self.count);
        files.find(|f| f.name == name).copied().ok_or_else(|| AcpiError::UnknownFile(FileName::new(name)))
    }

    fn address(&self, file: &Allocation) -> u64 {
        self.base + file.offset as u64
    }

    /// The arena bytes `offset..offset + len` of `file`, if inside it.
    fn range(&self, file: &Allocation, offset: u32, len: u32) -> Result<Range<usize>, AcpiError> {
        let (offset, len) = (u64::from(offset), u64::from(len));
        if offset + len > file.size as u64 {
            return Err(AcpiError::OutOfBounds { file: FileName::new(file.name), offset, len });
        }
        let start = file.offset + offset as usize;
        Ok(start..start + len as usize)
    }

    fn allocate<T: Transport>(
        &mut self,
        fw_cfg: &mut FwCfg<T>,
        name: &'s [u8],
        align: u32,
        zone: u8,
    ) -> Result<(), AcpiError> {
        // Error values are built only on failure: each copies the name, which costs code run
        // (and, under TCG, translated) for every command otherwise.
        let file_name = || FileName::new(name);
        if zone != ZONE_HIGH && zone != ZONE_FSEG {
            return Err(AcpiError::BadZone { file: file_name(), zone });
        }
        if !align.is_power_of_two() {
            return Err(AcpiError::BadAlignment { file: file_name(), align });
        }
        if self.find(name).is_ok() {
            return Err(AcpiError::DuplicateAllocation(file_name()));
        }
        if self.count >= MAX_FILES {
            return Err(AcpiError::TooManyFiles);
        }
        let file = fw_cfg.find(name).ok_or_else(|| AcpiError::UnknownFile(file_name()))?;
        let size = file.size as usize;
        let arena = self.arena_len;
        let too_small = || AcpiError::ArenaTooSmall { file: file_name(), size, align, arena };
        let start = (self.base + self.top as u64)
            .checked_sub(size as u64)
            .map(|end| end & !(u64::from(align) - 1))
            .filter(|&start| start >= self.base)
            .ok_or_else(too_small)?;
        let offset = (start - self.base) as usize;
        fw_cfg.read_file(&file, self.space.get_mut(offset..offset + size).ok_or_else(too_small)?);
        self.files[self.count] = Allocation { name, offset, size };
        self.count += 1;
        self.top = offset;
        Ok(())
    }

    fn add_pointer(&mut self, dest: &[u8], src: &[u8], offset: u32, size: u8) -> Result<(), AcpiError> {
        let dest = self.find(dest)?;
        let target = self.address(&self.find(src)?);
        let width = pointer_width(dest.name, size)?;
        let range = self.range(&dest, offset, u32::from(size))?;
        // The file lies inside the arena, so the lookup always succeeds; the field is `width`
        // bytes, copied by zipping rather than by slicing so that no bounds check can panic.
        let out_of_bounds =
            || AcpiError::OutOfBounds { file: FileName::new(dest.name), offset: offset.into(), len: size.into() };
        let field = self.space.get_mut(range).ok_or_else(out_of_bounds)?;
        let mut value = [0u8; 8];
        value.iter_mut().zip(field.iter()).for_each(|(to, &from)| *to = from);
        let patched = u64::from_le_bytes(value).checked_add(target).filter(|&v| fits(v, width));
        let patched = patched.ok_or_else(|| AcpiError::PointerOverflow { file: FileName::new(dest.name), size })?;
        field.iter_mut().zip(patched.to_le_bytes()).for_each(|(to, from)| *to = from);
        Ok(())
    }

    fn add_checksum(&mut self, name: &[u8], offset: u32, start: u32, length: u32) -> Result<(), AcpiError> {
        let file = self.find(name)?;
        let at = self.range(&file, offset, 1)?.start;
        let summed = self.range(&file, start, length)?;
        // Allocations lie inside the arena, so these lookups always succeed.
        let out_of_bounds =
            || AcpiError::OutOfBounds { file: FileName::new(name), offset: start.into(), len: length.into() };
        let sum = self.space.get(summed).ok_or_else(out_of_bounds)?.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
        let byte = self.space.get_mut(at).ok_or_else(out_of_bounds)?;
        *byte = byte.wrapping_sub(sum);
        Ok(())
    }

    fn write_pointer<T: Transport>(
        &mut self,
        fw_cfg: &mut FwCfg<T>,
        dest: &[u8],
        src: &[u8],
        dest_offset: u32,
        src_offset: u32,
        size: u8,
    ) -> Result<(), AcpiError> {
        let dest_name = FileName::new(dest);
        // The destination is a writable fw_cfg file, not necessarily loaded into memory.
        let dest_file = fw_cfg.find(dest).ok_or(AcpiError::UnknownFile(dest_name))?;
        let src = self.find(src)?;
        let width = pointer_width(dest, size)?;
        if u64::from(dest_offset) + u64::from(size) > u64::from(dest_file.size) {
            return Err(AcpiError::OutOfBounds { file: dest_name, offset: dest_offset.into(), len: size.into() });
        }
        self.range(&src, src_offset, 1)?;
        let pointer = self.address(&src) + u64::from(src_offset);
        if !fits(pointer, width) {
            return Err(AcpiError::PointerOverflow { file: dest_name, size });
        }
        fw_cfg
            .write_file(&dest_file, dest_offset, pointer.to_le_bytes().get(..width).unwrap_or_default())
            .map_err(|_| AcpiError::WriteFailed(dest_name))
    }
}

/// `size` as a byte count, if it is a pointer width the script may use in `file`.
fn pointer_width(file: &[u8], size: u8) -> Result<usize, AcpiError> {
    match size {
        1 | 2 | 4 | 8 => Ok(usize::from(size)),
        _ => Err(AcpiError::BadPointerSize { file: FileName::new(file), size }),
    }
}

fn fits(value: u64, width: usize) -> bool {
    width == 8 || value >> (width * 8) == 0
}

#[cfg(test)]
mod tests;
