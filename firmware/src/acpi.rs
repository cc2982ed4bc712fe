//! QEMU's ACPI tables, installed by running its linker/loader script `etc/table-loader`: which
//! fw_cfg files to place in memory, which pointers between them to patch, which checksums to
//! fix and which addresses to report back to QEMU.
//!
//! Ordering: QEMU builds the tables again the first time the guest selects one of its ACPI
//! files (hw/i386/acpi-build.c, `acpi_build_update` as fw_cfg select callback), and that build
//! reads the PM base, MMCONFIG and PCI resources programmed so far. So `chipset` and `pci`
//! setup must come before `install_tables`, and nothing may read an ACPI file earlier.

mod command;

use crate::fw_cfg::{File, FwCfg, Transport};
use crate::put;
use crate::report::{Hex, Sink, Text};
use command::{Command, Name, NAME_LEN, ZONE_FSEG, ZONE_HIGH};
use core::fmt;

const LOADER_FILE: &[u8] = b"etc/table-loader";
/// As the script names it: in a NUL-padded field.
const RSDP_FILE: [u8; NAME_LEN] = padded(b"etc/acpi/rsdp");

const fn padded(name: &[u8]) -> [u8; NAME_LEN] {
    let mut field = [0; NAME_LEN];
    let mut i = 0;
    while i < name.len() {
        field[i] = name[i];
        i += 1;
    }
    field
}

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
            AcpiError::NoRsdp => put!(out, "etc/table-loader never allocates {}; without an RSDP Linux finds no ACPI tables", Name(&RSDP_FILE).file_name()),
        }
    }
}

/// QEMU's `etc/table-loader`, when it offers ACPI tables (not with `-machine acpi=off` or
/// `-no-acpi`): without it no arena need be chosen.
pub fn table_loader<T: Transport>(fw_cfg: &FwCfg<T>) -> Option<File> {
    fw_cfg.find(LOADER_FILE)
}

/// Runs `etc/table-loader` (`loader_file`, from [`table_loader`]) with `arena` (physical
/// address `arena_base`, identity-mapped) as the memory to place tables in, top down. `None`
/// when QEMU withdraws the tables after all. The script is read into the arena's bottom
/// first; files must then fit above it.
pub fn install_tables<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    loader_file: &File,
    arena: &mut [u8],
    arena_base: u64,
) -> Result<Option<AcpiTables>, AcpiError> {
    // The first select of an ACPI file makes QEMU rebuild the tables (with the PCI and PM state
    // programmed so far), which can change the sizes the directory read at probe time gave.
    fw_cfg.select_file(loader_file);
    fw_cfg.read_directory();
    let Some(loader_file) = fw_cfg.find(LOADER_FILE) else {
        return Ok(None);
    };
    let script_len = loader_file.size as usize;
    if !script_len.is_multiple_of(command::LEN) {
        return Err(AcpiError::ScriptSize { len: script_len });
    }
    let arena_len = arena.len();
    let Some((script, space)) = arena.split_at_mut_checked(script_len) else {
        return Err(AcpiError::ArenaTooSmall {
            file: FileName::new(LOADER_FILE),
            size: script_len,
            align: 1,
            arena: arena_len,
        });
    };
    fw_cfg.read_file(&loader_file, script);
    let mut files = [const { None }; MAX_FILES];
    let mut loader = Loader { space, base: arena_base + script_len as u64, arena_len, files: &mut files };
    // Whole records only: the length was checked above.
    for raw in script.as_chunks::<{ command::LEN }>().0 {
        match command::parse(raw) {
            Command::Allocate { file, align, zone } => loader.allocate(fw_cfg, file, align, zone)?,
            Command::AddPointer { dest, src, offset, size } => loader.add_pointer(dest, src, offset, size)?,
            Command::AddChecksum { file, offset, start, length } => loader.add_checksum(file, offset, start, length)?,
            Command::WritePointer { dest, src, dest_offset, src_offset, size } => {
                loader.write_pointer(fw_cfg, dest, src, dest_offset, src_offset, size)?
            }
            Command::Skip => {}
        }
    }
    let used_start = loader.base + loader.space.len() as u64;
    let rsdp = find(loader.files, Name(&RSDP_FILE)).map_err(|_| AcpiError::NoRsdp)?;
    Ok(Some(AcpiTables { rsdp: rsdp.address, used_start }))
}

/// The allocation named `name`, or else the first free slot (`None` if the table is full): the
/// table fills in order, so that slot is past every allocation. Out of line: every command
/// looks up one or two names. The free slot itself rather than its index, so an allocation
/// fills it without an index check; over the table alone, so it can be held while the
/// allocation takes its space from the loader.
#[inline(never)]
fn find<'s, 'a>(
    files: &'s mut [Option<Allocation<'a>>; MAX_FILES],
    name: Name,
) -> Result<&'s mut Allocation<'a>, Option<&'s mut Option<Allocation<'a>>>> {
    for slot in files {
        let Some(file) = slot else {
            return Err(Some(slot));
        };
        if file.name.is(name) {
            return Ok(file);
        }
    }
    Err(None)
}

/// A file placed in the arena: its name borrows from the script, its bytes from the arena.
struct Allocation<'a> {
    name: Name<'a>,
    address: u64,
    bytes: &'a mut [u8],
}

impl Allocation<'_> {
    fn out_of_bounds(&self, offset: u32, len: u32) -> AcpiError {
        AcpiError::OutOfBounds { file: self.name.file_name(), offset: offset.into(), len: len.into() }
    }
}

struct Loader<'f, 'a> {
    /// The arena between the script and the lowest allocation; `base` is its address.
    space: &'a mut [u8],
    base: u64,
    arena_len: usize,
    /// Apart from the rest, whose fields then stay in registers: the lookups take the table's
    /// address, and would take the whole loader's.
    files: &'f mut [Option<Allocation<'a>>; MAX_FILES],
}

impl<'a> Loader<'_, 'a> {
    fn allocate<T: Transport>(
        &mut self,
        fw_cfg: &mut FwCfg<T>,
        name: Name<'a>,
        align: u32,
        zone: u8,
    ) -> Result<(), AcpiError> {
        let bytes = name.bytes().ok_or(AcpiError::UnterminatedName)?;
        if zone != ZONE_HIGH && zone != ZONE_FSEG {
            return Err(AcpiError::BadZone { file: FileName::new(bytes), zone });
        }
        if !align.is_power_of_two() {
            return Err(AcpiError::BadAlignment { file: FileName::new(bytes), align });
        }
        let slot = match find(self.files, name) {
            Ok(_) => return Err(AcpiError::DuplicateAllocation(FileName::new(bytes))),
            Err(None) => return Err(AcpiError::TooManyFiles),
            Err(Some(slot)) => slot,
        };
        let Some(file) = fw_cfg.find(bytes) else {
            return Err(AcpiError::UnknownFile(FileName::new(bytes)));
        };
        let size = file.size as usize;
        // Top down, aligned in physical memory. Where the file does not fit the start wraps
        // below the space, and the split refuses it.
        let end = self.base + self.space.len() as u64;
        let address = end.wrapping_sub(size as u64) & !(u64::from(align) - 1);
        let offset = address.wrapping_sub(self.base) as usize;
        let space = core::mem::take(&mut self.space);
        let placed =
            space.split_at_mut_checked(offset).and_then(|(below, above)| Some((below, above.get_mut(..size)?)));
        let Some((below, bytes_at)) = placed else {
            let arena = self.arena_len;
            return Err(AcpiError::ArenaTooSmall { file: FileName::new(bytes), size, align, arena });
        };
        fw_cfg.read_file(&file, bytes_at);
        *slot = Some(Allocation { name, address, bytes: bytes_at });
        self.space = below;
        Ok(())
    }

    fn add_pointer(&mut self, dest: Name, src: Name, offset: u32, size: u8) -> Result<(), AcpiError> {
        let target = find(self.files, src).map_err(|_| src.unknown())?.address;
        let dest = find(self.files, dest).map_err(|_| dest.unknown())?;
        let Some(width) = pointer_width(size) else {
            return Err(AcpiError::BadPointerSize { file: dest.name.file_name(), size });
        };
        let at = offset as usize;
        let Some(field) = dest.bytes.get_mut(at..at + width) else {
            return Err(dest.out_of_bounds(offset, size.into()));
        };
        // Copies rather than byte loops: under TCG a loop's body is translated twice (entered
        // by falling through, then again as the target of its jump back).
        let mut value = [0u8; 8];
        value[..width].copy_from_slice(field);
        let Some(value) = u64::from_le_bytes(value).checked_add(target).filter(|&value| fits(value, size)) else {
            return Err(AcpiError::PointerOverflow { file: dest.name.file_name(), size });
        };
        field.copy_from_slice(&value.to_le_bytes()[..width]);
        Ok(())
    }

    fn add_checksum(&mut self, name: Name, offset: u32, start: u32, length: u32) -> Result<(), AcpiError> {
        let file = find(self.files, name).map_err(|_| name.unknown())?;
        let at = offset as usize;
        if at >= file.bytes.len() {
            return Err(file.out_of_bounds(offset, 1));
        }
        let from = start as usize;
        let Some(summed) = file.bytes.get(from..from + length as usize) else {
            return Err(file.out_of_bounds(start, length));
        };
        let mut sum = 0u8;
        // Backwards, so the loop counts down to zero: no separate end compare to translate.
        for &byte in summed.iter().rev() {
            sum = sum.wrapping_add(byte);
        }
        file.bytes[at] = file.bytes[at].wrapping_sub(sum);
        Ok(())
    }

    fn write_pointer<T: Transport>(
        &mut self,
        fw_cfg: &mut FwCfg<T>,
        dest: Name,
        src: Name,
        dest_offset: u32,
        src_offset: u32,
        size: u8,
    ) -> Result<(), AcpiError> {
        // The destination is a writable fw_cfg file, not necessarily loaded into memory.
        let dest_file = dest.bytes().and_then(|bytes| fw_cfg.find(bytes)).ok_or_else(|| dest.unknown())?;
        let src = find(self.files, src).map_err(|_| src.unknown())?;
        let Some(width) = pointer_width(size) else {
            return Err(AcpiError::BadPointerSize { file: dest.file_name(), size });
        };
        if u64::from(dest_offset) + u64::from(size) > u64::from(dest_file.size) {
            return Err(AcpiError::OutOfBounds {
                file: dest.file_name(),
                offset: dest_offset.into(),
                len: size.into(),
            });
        }
        if src_offset as usize >= src.bytes.len() {
            return Err(src.out_of_bounds(src_offset, 1));
        }
        let pointer = src.address + u64::from(src_offset);
        if !fits(pointer, size) {
            return Err(AcpiError::PointerOverflow { file: dest.file_name(), size });
        }
        let bytes = pointer.to_le_bytes();
        fw_cfg
            .write_file(&dest_file, dest_offset, &bytes[..width])
            .map_err(|_| AcpiError::WriteFailed(dest.file_name()))
    }
}

/// `size` as a width if it is 1, 2, 4 or 8: a bit of one mask rather than four compares; the
/// bound tells the compiler a width fits an 8-byte buffer.
fn pointer_width(size: u8) -> Option<usize> {
    (size <= 8 && 0x116 >> size & 1 != 0).then_some(usize::from(size))
}

/// Whether `value` fits in `size` bytes; two shifts, as one by 64 would not do for 8 bytes.
fn fits(value: u64, size: u8) -> bool {
    value >> (u32::from(size) * 8 - 1) >> 1 == 0
}

#[cfg(test)]
mod tests;
