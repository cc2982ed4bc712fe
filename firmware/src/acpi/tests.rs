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
    (load(&mut cfg, arena, BASE), select)
}

/// As `main.rs` does: the loader only when QEMU offers one.
fn load<T: Transport>(cfg: &mut FwCfg<T>, arena: &mut [u8], base: u64) -> Result<Option<AcpiTables>, AcpiError> {
    match table_loader(cfg) {
        Some(loader_file) => install_tables(cfg, &loader_file, arena, base),
        None => Ok(None),
    }
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
        (vec![unterminated(allocate(TABLES, 64, ZONE_HIGH), 4)], AcpiError::UnterminatedName),
        (with(unterminated(add_pointer(TABLES, RSDP, 0, 4), 60)), AcpiError::UnterminatedName),
        (with(unterminated(add_checksum(RSDP, 8, 0, 20), 4)), AcpiError::UnterminatedName),
    ];
    for (script, expected) in cases {
        assert_eq!(install(&script, 4096), Err(expected), "{}", crate::report::string(&expected));
    }
}

/// `raw` with the 56-byte name field at `at` filled, leaving no room for its NUL.
fn unterminated(mut raw: [u8; 128], at: usize) -> [u8; 128] {
    raw[at..at + 56].fill(b'a');
    raw
}

#[test]
fn names_end_at_their_nul() {
    let mut script = good_script();
    // Bytes after the NUL in the FACP checksum's name are padding, not part of the name.
    script[3][4 + TABLES.len() + 1] = b'x';
    assert!(install(&script, 4096).unwrap().is_some());
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
fn pointers_are_1_2_4_or_8_bytes() {
    for size in 0..=u8::MAX {
        assert_eq!(pointer_width(size), matches!(size, 1 | 2 | 4 | 8).then_some(usize::from(size)), "{size}");
    }
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
        let message = crate::report::string(&error);
        assert!(!message.contains('\n') && !message.is_empty(), "{message}");
    }
}

mod fuzz {
    //! The script and the files are QEMU's bytes: whatever they hold, the loader writes only
    //! inside the arena above the script, reports pointers only into fw_cfg files that have
    //! room for them, and ends in tables or an error, never a panic.
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// Names the scripts use: the device's files and a few it lacks.
    const NAMES: [&str; 7] = [RSDP, TABLES, VMGENID_ADDR, "etc/f1", "etc/f2", "etc/nope", ""];
    const GUARD: usize = 256;
    const FILL: u8 = 0xa5;

    fn name() -> impl Strategy<Value = &'static str> {
        select(NAMES.to_vec())
    }

    /// Offsets and lengths near the files' sizes, where the bounds checks are, and anywhere.
    fn number() -> impl Strategy<Value = u32> {
        prop_oneof![0..300u32, select(vec![u32::MAX, u32::MAX - 3, 1 << 31]), any::<u32>()]
    }

    fn pointer_size() -> impl Strategy<Value = u8> {
        prop_oneof![select(vec![1u8, 2, 4, 8]), any::<u8>()]
    }

    fn record() -> impl Strategy<Value = [u8; 128]> {
        let align = prop_oneof![select(vec![0u32, 1, 2, 3, 4, 16, 64, 4096, 1 << 31]), any::<u32>()];
        let zone = prop_oneof![select(vec![ZONE_HIGH, ZONE_FSEG]), any::<u8>()];
        prop_oneof![
            (name(), align, zone).prop_map(|(file, align, zone)| allocate(file, align, zone)),
            (name(), name(), number(), pointer_size()).prop_map(|(d, s, offset, size)| add_pointer(d, s, offset, size)),
            (name(), number(), number(), number())
                .prop_map(|(f, offset, start, len)| add_checksum(f, offset, start, len)),
            (name(), name(), number(), number(), pointer_size())
                .prop_map(|(d, s, dest_offset, src_offset, size)| write_pointer(d, s, dest_offset, src_offset, size)),
            Just([0u8; 128]),
            prop::array::uniform32(any::<u8>()).prop_map(|bytes| {
                let mut raw = [0u8; 128];
                for (i, chunk) in raw.chunks_mut(32).enumerate() {
                    chunk.copy_from_slice(&bytes.map(|b| b.rotate_left(i as u32)));
                }
                raw
            }),
        ]
    }

    /// A script: the good one or random records, then a few bytes changed and perhaps cut
    /// to a length that is not whole records.
    fn script() -> impl Strategy<Value = Vec<u8>> {
        let allocated = prop::collection::vec(record(), 0..24).prop_map(|records| {
            let mut script =
                vec![allocate(RSDP, 16, ZONE_FSEG), allocate(TABLES, 64, ZONE_HIGH), allocate("etc/f1", 4, ZONE_HIGH)];
            script.extend(records);
            script
        });
        // QEMU's script, random records, and random records after the allocations (so more of
        // them reach the bounds checks).
        let records = prop_oneof![Just(good_script()), prop::collection::vec(record(), 0..24), allocated];
        let changes = prop::collection::vec((any::<Index>(), any::<u8>()), 0..6);
        (records, changes, prop::option::weighted(0.1, any::<Index>())).prop_map(|(records, changes, cut)| {
            let mut script = records.concat();
            if !script.is_empty() {
                for (at, byte) in changes {
                    let at = at.index(script.len());
                    script[at] = byte;
                }
            }
            if let Some(cut) = cut.filter(|_| !script.is_empty()) {
                script.truncate(cut.index(script.len()));
            }
            script
        })
    }

    /// The device's files: the real shapes or random ones, of random sizes.
    fn files() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
        let blob = |len: usize| prop::collection::vec(any::<u8>(), 0..len);
        (blob(600), blob(64), blob(16), blob(64), blob(300), any::<bool>()).prop_map(
            |(tables, rsdp, vmgenid, f1, f2, real)| {
                if real {
                    vec![(TABLES, tables_blob()), (RSDP, rsdp_blob()), (VMGENID_ADDR, vec![0; 8]), ("etc/f1", f1)]
                } else {
                    vec![(TABLES, tables), (RSDP, rsdp), (VMGENID_ADDR, vmgenid), ("etc/f1", f1), ("etc/f2", f2)]
                }
            },
        )
    }

    fn base() -> impl Strategy<Value = u64> {
        prop_oneof![Just(BASE), Just(0u64), Just(0xffff_f000u64), (0..1u64 << 48)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_script_stays_inside_its_arena(
            script in script(),
            files in files(),
            arena_len in prop_oneof![1 => 0..1024usize, 4 => 1024..8192usize],
            base in base(),
            dma in any::<bool>(),
        ) {
            let mut all = vec![(LOADER, script.clone())];
            all.extend(files.iter().cloned());
            let mut dev = FakeFwCfg::with_files(dma, &all);
            let mut memory = vec![FILL; GUARD + arena_len + GUARD];
            let result = {
                let mut cfg = FwCfg::probe(&mut dev).expect("signature");
                load(&mut cfg, &mut memory[GUARD..GUARD + arena_len], base)
            };
            // Nothing outside the arena was touched.
            prop_assert!(memory[..GUARD].iter().chain(&memory[GUARD + arena_len..]).all(|&b| b == FILL));
            let arena = &memory[GUARD..GUARD + arena_len];
            let size_of = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, data)| data.len());
            // Pointers went to writable files, within them, in a pointer's width.
            for (select, offset, bytes) in &dev.writes {
                let (name, data) = &all[usize::from(*select) - 0x20];
                prop_assert!([1, 2, 4, 8].contains(&bytes.len()), "{}", name);
                prop_assert!(*offset as usize + bytes.len() <= data.len(), "{} at {}", name, offset);
            }
            match result {
                Ok(Some(tables)) => {
                    let script_end = base + script.len() as u64;
                    let arena_end = base + arena_len as u64;
                    let rsdp_len = size_of(RSDP).unwrap() as u64;
                    prop_assert!(script_end <= tables.used_start && tables.used_start <= tables.rsdp);
                    prop_assert!(tables.rsdp + rsdp_len <= arena_end);
                    // The script is read into the arena's bottom and stays as read; the space
                    // between it and the lowest table stays untouched.
                    prop_assert_eq!(&arena[..script.len()], script.as_slice());
                    let used = (tables.used_start - base) as usize;
                    prop_assert!(arena[script.len()..used].iter().all(|&b| b == FILL));
                }
                Ok(None) => prop_assert!(false, "the device has a table-loader"),
                Err(error) => {
                    let message = crate::report::string(&error);
                    prop_assert!(!message.is_empty() && !message.contains('\n'), "{}", message);
                }
            }
        }

        /// QEMU's script over tables of any content, anywhere below 4 GiB: the pointers hold
        /// the tables' addresses and every checksum comes out zero.
        #[test]
        fn the_good_script_patches_any_tables(
            tables in prop::array::uniform32(any::<u8>()),
            rsdp_bytes in prop::array::uniform32(any::<u8>()),
            base in (0..0xfff0_0000u64).prop_map(|base| base & !0xfff),
        ) {
            // Random table bodies, with the headers and pointer fields the script patches.
            let mut blob = tables_blob();
            for (i, byte) in blob.iter_mut().enumerate().skip(HEADER_LEN) {
                if !(RSDT_AT..RSDT_AT + RSDT_LEN).contains(&i) {
                    *byte = tables[i % 32];
                }
            }
            let mut rsdp = rsdp_blob();
            rsdp[8..15].copy_from_slice(&rsdp_bytes[..7]);
            let mut dev = FakeFwCfg::with_files(
                true,
                &[(LOADER, good_script().concat()), (TABLES, blob.clone()), (RSDP, rsdp), (VMGENID_ADDR, vec![0; 8])],
            );
            let mut arena = vec![0u8; 4096];
            let tables = {
                let mut cfg = FwCfg::probe(&mut dev).unwrap();
                load(&mut cfg, &mut arena, base).unwrap().unwrap()
            };
            let at = |address: u64| (address - base) as usize;
            let rsdp = &arena[at(tables.rsdp)..at(tables.rsdp) + 36];
            let blob_address = u32_at(rsdp, 16) - RSDT_AT as u64;
            let placed = &arena[at(blob_address)..at(blob_address) + blob.len()];
            prop_assert_eq!(u64::from_le_bytes(rsdp[24..32].try_into().unwrap()), blob_address + RSDT_AT as u64);
            prop_assert_eq!(u32_at(placed, RSDT_AT + HEADER_LEN), blob_address + FACP_AT as u64);
            prop_assert_eq!(checksum(&rsdp[..20]), 0);
            prop_assert_eq!(checksum(rsdp), 0);
            prop_assert_eq!(checksum(&placed[FACP_AT..FACP_AT + 64]), 0);
            prop_assert_eq!(checksum(&placed[RSDT_AT..RSDT_AT + RSDT_LEN]), 0);
            // Bytes the script does not patch arrive as QEMU sent them.
            prop_assert_eq!(&placed[RSDT_AT + RSDT_LEN..], &blob[RSDT_AT + RSDT_LEN..]);
        }

        /// Any single record decodes, and each of its names reads as the bytes before its NUL
        /// or is refused as having none.
        #[test]
        fn any_record_decodes_or_is_refused(raw in prop::collection::vec(any::<u8>(), 128), kind in 0..6u32) {
            let mut raw: [u8; 128] = raw.try_into().unwrap();
            raw[..4].copy_from_slice(&kind.to_le_bytes());
            let names = match command::parse(&raw) {
                Command::Allocate { file, .. } | Command::AddChecksum { file, .. } => vec![file],
                Command::AddPointer { dest, src, .. } | Command::WritePointer { dest, src, .. } => vec![dest, src],
                Command::Skip => vec![],
            };
            for name in names {
                match name.bytes() {
                    Some(bytes) => prop_assert!(name.0[bytes.len()] == 0 && !bytes.contains(&0) && name.is(name)),
                    None => prop_assert!(!name.0.contains(&0) && name.unknown() == AcpiError::UnterminatedName),
                }
            }
        }
    }
}
