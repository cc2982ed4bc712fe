//! The records of QEMU's linker/loader script: 128 bytes each, little-endian, laid out as
//! `BiosLinkerLoaderEntry` in QEMU's hw/acpi/bios-linker-loader.c (a u32 command, then a
//! union of per-command fields starting at byte 4).

use super::{AcpiError, FileName};

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

/// A 56-byte file name field as the script holds it: the name, then NUL padding. Kept as the
/// field, not decoded: names are compared field to field, and only a name read from fw_cfg's
/// directory (or put in an error) needs its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name<'a>(pub &'a [u8; NAME_LEN]);

impl<'a> Name<'a> {
    /// The name without its NUL, `None` if the field has no NUL. Left to inline: a boot decodes
    /// names only to allocate (elsewhere only for WRITE_POINTER and errors), so one copy is
    /// translated, and no call.
    pub fn bytes(self) -> Option<&'a [u8]> {
        let len = self.0.iter().position(|&b| b == 0)?;
        self.0.get(..len)
    }

    /// Whether both fields name the same file: equal up to the first NUL (which bytes follow
    /// it does not matter, as to SeaBIOS's strcmp).
    pub fn is(self, other: Name) -> bool {
        for (&a, &b) in self.0.iter().zip(other.0) {
            if a != b {
                return false;
            }
            if a == 0 {
                return true;
            }
        }
        true
    }

    /// For messages: the name, or the whole field if it has no NUL.
    pub fn file_name(self) -> FileName {
        FileName::new(self.bytes().unwrap_or(self.0))
    }

    /// The error for a name no file answers to, or which is no name at all.
    pub fn unknown(self) -> AcpiError {
        match self.bytes() {
            Some(name) => AcpiError::UnknownFile(FileName::new(name)),
            None => AcpiError::UnterminatedName,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Load fw_cfg file `file` into memory aligned to `align`.
    Allocate { file: Name<'a>, align: u32, zone: u8 },
    /// Add the address of `src` to the `size`-byte value at `offset` in `dest`.
    AddPointer { dest: Name<'a>, src: Name<'a>, offset: u32, size: u8 },
    /// Subtract the byte sum of `start..start + length` from the byte at `offset`.
    AddChecksum { file: Name<'a>, offset: u32, start: u32, length: u32 },
    /// Write the address of `src` plus `src_offset` into fw_cfg file `dest` at `dest_offset`.
    WritePointer { dest: Name<'a>, src: Name<'a>, dest_offset: u32, src_offset: u32, size: u8 },
    /// Zero padding (QEMU rounds the script up to 4 KiB) and commands newer than this loader,
    /// which SeaBIOS skips too.
    Skip,
}

fn u32_at(raw: &[u8; LEN], at: usize) -> u32 {
    u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]])
}

fn name_at(raw: &[u8; LEN], at: usize) -> Name<'_> {
    let (_, field) = raw.split_at(at);
    // `at` is a constant below LEN - NAME_LEN, so this folds away; the fallback never runs.
    Name(field.first_chunk().unwrap_or(&[0; NAME_LEN]))
}

/// Decodes one record. Its names are checked where they are used: a name that matches an
/// allocated one ends within its field, as that one does.
pub fn parse(raw: &[u8; LEN]) -> Command<'_> {
    match u32_at(raw, KIND) {
        ALLOCATE => Command::Allocate {
            file: name_at(raw, FIRST_NAME),
            align: u32_at(raw, ALLOCATE_ALIGN),
            zone: raw[ALLOCATE_ZONE],
        },
        ADD_POINTER => Command::AddPointer {
            dest: name_at(raw, FIRST_NAME),
            src: name_at(raw, SECOND_NAME),
            offset: u32_at(raw, POINTER_OFFSET),
            size: raw[POINTER_SIZE],
        },
        ADD_CHECKSUM => Command::AddChecksum {
            file: name_at(raw, FIRST_NAME),
            offset: u32_at(raw, CHECKSUM_OFFSET),
            start: u32_at(raw, CHECKSUM_START),
            length: u32_at(raw, CHECKSUM_LENGTH),
        },
        WRITE_POINTER => Command::WritePointer {
            dest: name_at(raw, FIRST_NAME),
            src: name_at(raw, SECOND_NAME),
            dest_offset: u32_at(raw, WRITE_DEST_OFFSET),
            src_offset: u32_at(raw, WRITE_SRC_OFFSET),
            size: raw[WRITE_SIZE],
        },
        _ => Command::Skip,
    }
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

    fn field(name: &str) -> [u8; NAME_LEN] {
        let mut field = [0; NAME_LEN];
        field[..name.len()].copy_from_slice(name.as_bytes());
        field
    }

    #[test]
    fn decodes_each_command() {
        let (rsdp, tables) = (field("etc/acpi/rsdp"), field("etc/acpi/tables"));
        let (addr, guid) = (field("etc/vmgenid_addr"), field("etc/vmgenid_guid"));
        assert_eq!(
            parse(&allocate("etc/acpi/rsdp", 16, ZONE_FSEG)),
            Command::Allocate { file: Name(&rsdp), align: 16, zone: ZONE_FSEG }
        );
        assert_eq!(
            parse(&add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4)),
            Command::AddPointer { dest: Name(&rsdp), src: Name(&tables), offset: 16, size: 4 }
        );
        assert_eq!(
            parse(&add_checksum("etc/acpi/tables", 9, 64, 40)),
            Command::AddChecksum { file: Name(&tables), offset: 9, start: 64, length: 40 }
        );
        assert_eq!(
            parse(&write_pointer("etc/vmgenid_addr", "etc/vmgenid_guid", 0, 40, 8)),
            Command::WritePointer { dest: Name(&addr), src: Name(&guid), dest_offset: 0, src_offset: 40, size: 8 }
        );
        assert_eq!(parse(&[0; LEN]), Command::Skip);
        assert_eq!(Name(&rsdp).bytes(), Some(&b"etc/acpi/rsdp"[..]));
    }

    #[test]
    fn a_name_must_end_within_its_field() {
        let mut raw = allocate("x", 1, ZONE_HIGH);
        raw[FIRST_NAME..FIRST_NAME + NAME_LEN].fill(b'a');
        let Command::Allocate { file, .. } = parse(&raw) else { panic!("not an allocation") };
        assert_eq!(file.bytes(), None);
        assert_eq!(file.unknown(), AcpiError::UnterminatedName);
    }

    #[test]
    fn names_are_equal_up_to_their_nul() {
        let rsdp = field("etc/acpi/rsdp");
        let mut trailing = rsdp;
        trailing[20] = b'x';
        assert!(Name(&rsdp).is(Name(&trailing)));
        assert!(!Name(&rsdp).is(Name(&field("etc/acpi/rsd"))));
        assert!(!Name(&field("etc/acpi/rsd")).is(Name(&rsdp)));
        assert!(!Name(&rsdp).is(Name(&field("etc/acpi/tables"))));
    }
}
