//! The loader against a fake fw_cfg holding a small RSDP -> RSDT -> FACP chain shaped like
//! QEMU's (RSDP in its own file, every other table in one blob).

use super::command::encode::*;
use super::command::{ZONE_FSEG, ZONE_HIGH};
use super::*;
use crate::fw_cfg::fake::FakeFwCfg;

const BASE: u64 = 0x7ff0_0000;
const TABLES: &str = "etc/acpi/tables";
const RSDP: &str = "etc/acpi/rsdp";
const VMGENID_ADDR: &str = "etc/vmgenid_addr";
const LOADER: &str = "etc/table-loader";
/// In the tables blob: a FACP at 0 and the RSDT at 64, whose one entry points at the FACP.
const FACP_AT: usize = 0;
const RSDT_AT: usize = 64;
const RSDT_LEN: usize = 40;
const HEADER_LEN: usize = 36;
const CHECKSUM_AT: usize = 9;

fn table(signature: &[u8; 4], len: usize) -> Vec<u8> {
    let mut t = vec![0u8; len];
    t[..4].copy_from_slice(signature);
    t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    t[CHECKSUM_AT] = 0;
    t
}

fn tables_blob() -> Vec<u8> {
    let mut blob = table(b"FACP", 64);
    blob.extend(table(b"RSDT", RSDT_LEN));
    // The RSDT entry holds the FACP's offset; the loader adds the blob's address.
    blob[RSDT_AT + HEADER_LEN..RSDT_AT + RSDT_LEN].copy_from_slice(&(FACP_AT as u32).to_le_bytes());
    blob.resize(256, 0);
    blob
}

fn rsdp_blob() -> Vec<u8> {
    let mut rsdp = vec![0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[15] = 2;
    rsdp[16..20].copy_from_slice(&(RSDT_AT as u32).to_le_bytes());
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&(RSDT_AT as u64).to_le_bytes());
    rsdp
}

fn good_script() -> Vec<[u8; 128]> {
    vec![
        allocate(RSDP, 16, ZONE_FSEG),
        allocate(TABLES, 64, ZONE_HIGH),
        add_pointer(TABLES, TABLES, (RSDT_AT + HEADER_LEN) as u32, 4),
        add_checksum(TABLES, (FACP_AT + CHECKSUM_AT) as u32, FACP_AT as u32, 64),
        add_checksum(TABLES, (RSDT_AT + CHECKSUM_AT) as u32, RSDT_AT as u32, RSDT_LEN as u32),
        add_pointer(RSDP, TABLES, 16, 4),
        add_pointer(RSDP, TABLES, 24, 8),
        add_checksum(RSDP, 8, 0, 20),
        add_checksum(RSDP, 32, 0, 36),
        write_pointer(VMGENID_ADDR, TABLES, 0, 0x10, 8),
        // QEMU pads the script with zeroes to 4 KiB.
        [0; 128],
    ]
}

fn device(dma: bool, script: &[[u8; 128]]) -> FakeFwCfg {
    FakeFwCfg::with_files(
        dma,
        &[(LOADER, script.concat()), (TABLES, tables_blob()), (RSDP, rsdp_blob()), (VMGENID_ADDR, vec![0; 8])],
    )
}

/// Runs the loader over `dev`; also returns `VMGENID_ADDR`'s selector.
fn run(dev: &mut FakeFwCfg, arena: &mut [u8]) -> (Result<Option<AcpiTables>, AcpiError>, u16) {
    let mut cfg = FwCfg::probe(dev).expect("signature");
    let select = cfg.find(VMGENID_ADDR.as_bytes()).map_or(0, |f| f.select);
    (install_tables(&mut cfg, arena, BASE), select)
}

fn install(script: &[[u8; 128]], arena_len: usize) -> Result<Option<AcpiTables>, AcpiError> {
    run(&mut device(true, script), &mut vec![0u8; arena_len]).0
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

fn u32_at(bytes: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()).into()
}

#[test]
fn places_patches_and_checksums_the_tables() {
    let mut dev = device(true, &good_script());
    let mut arena = vec![0u8; 4096];
    let (result, vmgenid_select) = run(&mut dev, &mut arena);
    let tables = result.unwrap().expect("ACPI present");
    let at = |address: u64| (address - BASE) as usize;

    let rsdp = &arena[at(tables.rsdp)..at(tables.rsdp) + 36];
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(tables.rsdp % 16, 0);
    // The RSDP was allocated first, so it sits at the arena's top.
    assert_eq!(at(tables.rsdp) + 48, arena.len(), "36 bytes rounded down to 16-byte alignment");
    let blob = u32_at(rsdp, 16) - RSDT_AT as u64;
    assert_eq!(blob % 64, 0, "tables aligned as asked");
    assert_eq!(u64::from_le_bytes(rsdp[24..32].try_into().unwrap()), blob + RSDT_AT as u64);
    let blob_at = at(blob);
    let rsdt = &arena[blob_at + RSDT_AT..blob_at + RSDT_AT + RSDT_LEN];
    assert_eq!(&rsdt[..4], b"RSDT");
    assert_eq!(u32_at(rsdt, HEADER_LEN), blob + FACP_AT as u64, "RSDT entry points at the FACP");

    assert_eq!(checksum(&rsdp[..20]), 0, "RSDP checksum");
    assert_eq!(checksum(rsdp), 0, "RSDP extended checksum");
    assert_eq!(checksum(rsdt), 0, "RSDT checksum");
    assert_eq!(checksum(&arena[blob_at..blob_at + 64]), 0, "FACP checksum");
    assert_ne!(arena[blob_at + RSDT_AT + CHECKSUM_AT], 0, "checksum byte was patched");

    assert_eq!(tables.used_start, blob, "the tables blob is the lowest allocation");
    assert!(at(tables.used_start) >= 11 * 128, "allocations stay above the script");
    assert_eq!(dev.writes, vec![(vmgenid_select, 0, (blob + 0x10).to_le_bytes().to_vec())]);
}

#[test]
fn no_table_loader_means_no_acpi() {
    let mut dev = FakeFwCfg::with_files(true, &[(TABLES, tables_blob())]);
    assert_eq!(run(&mut dev, &mut [0u8; 1024]).0, Ok(None));
}

#[test]
fn a_script_must_be_whole_commands() {
    let mut dev = FakeFwCfg::with_files(true, &[(LOADER, vec![0; 100])]);
    assert_eq!(run(&mut dev, &mut [0u8; 1024]).0, Err(AcpiError::ScriptSize { len: 100 }));
}

#[test]
fn rejects_malformed_scripts() {
    let name = |s: &str| FileName::new(s.as_bytes());
    let with = |extra: [u8; 128]| {
        let mut script = good_script();
        script.insert(2, extra);
        script
    };
    let cases: Vec<(Vec<[u8; 128]>, AcpiError)> = vec![
        (vec![allocate("etc/acpi/nope", 16, ZONE_HIGH)], AcpiError::UnknownFile(name("etc/acpi/nope"))),
        (vec![add_pointer(TABLES, TABLES, 0, 4)], AcpiError::UnknownFile(name(TABLES))),
        (vec![allocate(TABLES, 48, ZONE_HIGH)], AcpiError::BadAlignment { file: name(TABLES), align: 48 }),
        (vec![allocate(TABLES, 0, ZONE_HIGH)], AcpiError::BadAlignment { file: name(TABLES), align: 0 }),
        (vec![allocate(TABLES, 64, 7)], AcpiError::BadZone { file: name(TABLES), zone: 7 }),
        (with(allocate(RSDP, 16, ZONE_HIGH)), AcpiError::DuplicateAllocation(name(RSDP))),
        (with(add_pointer(TABLES, RSDP, 254, 4)), AcpiError::OutOfBounds { file: name(TABLES), offset: 254, len: 4 }),
        (with(add_pointer(TABLES, RSDP, 0, 3)), AcpiError::BadPointerSize { file: name(TABLES), size: 3 }),
        // The 1-byte value at offset 0 ('F') plus the RSDP's address cannot fit in a byte.
        (with(add_pointer(TABLES, RSDP, 0, 1)), AcpiError::PointerOverflow { file: name(TABLES), size: 1 }),
        (with(add_checksum(RSDP, 36, 0, 20)), AcpiError::OutOfBounds { file: name(RSDP), offset: 36, len: 1 }),
        (with(add_checksum(RSDP, 8, 20, 17)), AcpiError::OutOfBounds { file: name(RSDP), offset: 20, len: 17 }),
        (
            with(write_pointer(VMGENID_ADDR, TABLES, 4, 0, 8)),
            AcpiError::OutOfBounds { file: name(VMGENID_ADDR), offset: 4, len: 8 },
        ),
        (
            with(write_pointer(VMGENID_ADDR, TABLES, 0, 256, 8)),
            AcpiError::OutOfBounds { file: name(TABLES), offset: 256, len: 1 },
        ),
        (
            with(write_pointer(VMGENID_ADDR, TABLES, 0, 0, 2)),
            AcpiError::PointerOverflow { file: name(VMGENID_ADDR), size: 2 },
        ),
        (with(write_pointer("etc/nope", TABLES, 0, 0, 8)), AcpiError::UnknownFile(name("etc/nope"))),
        (vec![allocate(TABLES, 64, ZONE_HIGH)], AcpiError::NoRsdp),
    ];
    for (script, expected) in cases {
        assert_eq!(install(&script, 4096), Err(expected), "{expected}");
    }
}

#[test]
fn reports_an_arena_too_small() {
    let script = good_script();
    let script_len = script.len() * 128;
    // Room for the script and the RSDP, not for the 256-byte tables blob.
    assert_eq!(
        install(&script, script_len + 100),
        Err(AcpiError::ArenaTooSmall {
            file: FileName::new(TABLES.as_bytes()),
            size: 256,
            align: 64,
            arena: script_len + 100
        })
    );
    assert!(matches!(install(&script, 512), Err(AcpiError::ArenaTooSmall { .. })), "script alone too big");
}

#[test]
fn too_many_files_is_an_error() {
    let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("etc/f{i}")).collect();
    let files: Vec<(&str, Vec<u8>)> = names.iter().map(|n| (n.as_str(), vec![1u8; 4])).collect();
    let script: Vec<[u8; 128]> = names.iter().map(|n| allocate(n, 4, ZONE_HIGH)).collect();
    let mut all = vec![(LOADER, script.concat())];
    all.extend(files);
    let mut dev = FakeFwCfg::with_files(true, &all);
    assert_eq!(run(&mut dev, &mut [0u8; 8192]).0, Err(AcpiError::TooManyFiles));
}

#[test]
fn write_pointer_needs_dma() {
    let mut dev = device(false, &good_script());
    let (result, _) = run(&mut dev, &mut [0u8; 4096]);
    assert_eq!(result, Err(AcpiError::WriteFailed(FileName::new(VMGENID_ADDR.as_bytes()))));
}

#[test]
fn messages_are_one_line() {
    let name = FileName::new(b"etc/acpi/\ntables");
    for error in [
        AcpiError::ScriptSize { len: 3 },
        AcpiError::UnterminatedName,
        AcpiError::UnknownFile(name),
        AcpiError::ArenaTooSmall { file: name, size: 1, align: 1, arena: 0 },
        AcpiError::NoRsdp,
    ] {
        let message = error.to_string();
        assert!(!message.contains('\n') && !message.is_empty(), "{message}");
    }
}
