//! The records of QEMU's linker/loader script: 128 bytes each, little-endian, laid out as
//! `BiosLinkerLoaderEntry` in QEMU's hw/acpi/bios-linker-loader.c (a u32 command, then a
//! union of per-command fields starting at byte 4).

use super::AcpiError;

pub const LEN: usize = 128;
/// fw_cfg file names are at most 56 bytes, NUL included.
pub const NAME_LEN: usize = 56;

const KIND: usize = 0;
const FIRST_NAME: usize = 4;
const SECOND_NAME: usize = FIRST_NAME + NAME_LEN;
const ALLOCATE_ALIGN: usize = 60;
const ALLOCATE_ZONE: usize = 64;
const POINTER_OFFSET: usize = 116;
const POINTER_SIZE: usize = 120;
const CHECKSUM_OFFSET: usize = 60;
const CHECKSUM_START: usize = 64;
const CHECKSUM_LENGTH: usize = 68;
const WRITE_DEST_OFFSET: usize = 116;
const WRITE_SRC_OFFSET: usize = 120;
const WRITE_SIZE: usize = 124;

const ALLOCATE: u32 = 1;
const ADD_POINTER: u32 = 2;
const ADD_CHECKSUM: u32 = 3;
const WRITE_POINTER: u32 = 4;

/// Allocation zones: QEMU asks for FSEG (below 1 MiB) only for the RSDP, which a BIOS-booted
/// OS scans for; the firmware passes Linux the RSDP address instead, so both zones are alike.
pub const ZONE_HIGH: u8 = 1;
pub const ZONE_FSEG: u8 = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Load fw_cfg file `file` into memory aligned to `align`.
    Allocate { file: &'a [u8], align: u32, zone: u8 },
    /// Add the address of `src` to the `size`-byte value at `offset` in `dest`.
    AddPointer { dest: &'a [u8], src: &'a [u8], offset: u32, size: u8 },
    /// Subtract the byte sum of `start..start + length` from the byte at `offset`.
    AddChecksum { file: &'a [u8], offset: u32, start: u32, length: u32 },
    /// Write the address of `src` plus `src_offset` into fw_cfg file `dest` at `dest_offset`.
    WritePointer { dest: &'a [u8], src: &'a [u8], dest_offset: u32, src_offset: u32, size: u8 },
    /// Zero padding (QEMU rounds the script up to 4 KiB) and commands newer than this loader,
    /// which SeaBIOS skips too.
    Skip,
}

fn u32_at(raw: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([raw[offset], raw[offset + 1], raw[offset + 2], raw[offset + 3]])
}

/// The name in the 56-byte field at `offset`, which must hold its NUL terminator. Out of
/// line: inlined, its NUL search would be translated again at each of its five uses.
#[inline(never)]
fn name_at(raw: &[u8], offset: usize) -> Result<&[u8], AcpiError> {
    let field = &raw[offset..offset + NAME_LEN];
    let len = field.iter().position(|&b| b == 0).ok_or(AcpiError::UnterminatedName)?;
    Ok(&field[..len])
}

/// Decodes one record; `raw` is `LEN` bytes long.
pub fn parse(raw: &[u8]) -> Result<Command<'_>, AcpiError> {
    Ok(match u32_at(raw, KIND) {
        ALLOCATE => Command::Allocate {
            file: name_at(raw, FIRST_NAME)?,
            align: u32_at(raw, ALLOCATE_ALIGN),
            zone: raw[ALLOCATE_ZONE],
        },
        ADD_POINTER => Command::AddPointer {
            dest: name_at(raw, FIRST_NAME)?,
            src: name_at(raw, SECOND_NAME)?,
            offset: u32_at(raw, POINTER_OFFSET),
            size: raw[POINTER_SIZE],
        },
        ADD_CHECKSUM => Command::AddChecksum {
            file: name_at(raw, FIRST_NAME)?,
            offset: u32_at(raw, CHECKSUM_OFFSET),
            start: u32_at(raw, CHECKSUM_START),
            length: u32_at(raw, CHECKSUM_LENGTH),
        },
        WRITE_POINTER => Command::WritePointer {
            dest: name_at(raw, FIRST_NAME)?,
            src: name_at(raw, SECOND_NAME)?,
            dest_offset: u32_at(raw, WRITE_DEST_OFFSET),
            src_offset: u32_at(raw, WRITE_SRC_OFFSET),
            size: raw[WRITE_SIZE],
        },
        _ => Command::Skip,
    })
}

/// Encoders for tests, mirroring the layout above.
#[cfg(test)]
pub mod encode {
    use super::*;

    fn record(kind: u32) -> [u8; LEN] {
        let mut raw = [0u8; LEN];
        raw[KIND..KIND + 4].copy_from_slice(&kind.to_le_bytes());
        raw
    }

    fn put_name(raw: &mut [u8; LEN], offset: usize, name: &str) {
        raw[offset..offset + name.len()].copy_from_slice(name.as_bytes());
    }

    fn put_u32(raw: &mut [u8; LEN], offset: usize, value: u32) {
        raw[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    pub fn allocate(file: &str, align: u32, zone: u8) -> [u8; LEN] {
        let mut raw = record(ALLOCATE);
        put_name(&mut raw, FIRST_NAME, file);
        put_u32(&mut raw, ALLOCATE_ALIGN, align);
        raw[ALLOCATE_ZONE] = zone;
        raw
    }

    pub fn add_pointer(dest: &str, src: &str, offset: u32, size: u8) -> [u8; LEN] {
        let mut raw = record(ADD_POINTER);
        put_name(&mut raw, FIRST_NAME, dest);
        put_name(&mut raw, SECOND_NAME, src);
        put_u32(&mut raw, POINTER_OFFSET, offset);
        raw[POINTER_SIZE] = size;
        raw
    }

    pub fn add_checksum(file: &str, offset: u32, start: u32, length: u32) -> [u8; LEN] {
        let mut raw = record(ADD_CHECKSUM);
        put_name(&mut raw, FIRST_NAME, file);
        put_u32(&mut raw, CHECKSUM_OFFSET, offset);
        put_u32(&mut raw, CHECKSUM_START, start);
        put_u32(&mut raw, CHECKSUM_LENGTH, length);
        raw
    }

    pub fn write_pointer(dest: &str, src: &str, dest_offset: u32, src_offset: u32, size: u8) -> [u8; LEN] {
        let mut raw = record(WRITE_POINTER);
        put_name(&mut raw, FIRST_NAME, dest);
        put_name(&mut raw, SECOND_NAME, src);
        put_u32(&mut raw, WRITE_DEST_OFFSET, dest_offset);
        put_u32(&mut raw, WRITE_SRC_OFFSET, src_offset);
        raw[WRITE_SIZE] = size;
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    #[test]
    fn decodes_each_command() {
        assert_eq!(
            parse(&allocate("etc/acpi/rsdp", 16, ZONE_FSEG)),
            Ok(Command::Allocate { file: b"etc/acpi/rsdp", align: 16, zone: ZONE_FSEG })
        );
        assert_eq!(
            parse(&add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4)),
            Ok(Command::AddPointer { dest: b"etc/acpi/rsdp", src: b"etc/acpi/tables", offset: 16, size: 4 })
        );
        assert_eq!(
            parse(&add_checksum("etc/acpi/tables", 9, 64, 40)),
            Ok(Command::AddChecksum { file: b"etc/acpi/tables", offset: 9, start: 64, length: 40 })
        );
        assert_eq!(
            parse(&write_pointer("etc/vmgenid_addr", "etc/vmgenid_guid", 0, 40, 8)),
            Ok(Command::WritePointer {
                dest: b"etc/vmgenid_addr",
                src: b"etc/vmgenid_guid",
                dest_offset: 0,
                src_offset: 40,
                size: 8
            })
        );
        assert_eq!(parse(&[0; LEN]), Ok(Command::Skip));
    }

    #[test]
    fn a_name_must_end_within_its_field() {
        let mut raw = allocate("x", 1, ZONE_HIGH);
        raw[FIRST_NAME..FIRST_NAME + NAME_LEN].fill(b'a');
        assert_eq!(parse(&raw), Err(AcpiError::UnterminatedName));
    }
}
