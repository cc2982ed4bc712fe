//! `-kernel` boots against a fake fw_cfg holding a made-up bzImage or vmlinux, into the fake
//! VM of `handoff::fake`: what lands where, what the kernel is told, and that nothing overlaps.

use super::*;
use crate::fw_cfg::fake::FakeFwCfg;
use crate::handoff::fake::{
    assert_apart, entries, map_at, memory, platform, ACPI_TABLES, KERNEL_ADDR, KERNEL_EXTENT, PVH_ENTRY, PVH_SEGMENT,
    RAM_SIZE, RSDP,
};
use crate::memory::fake::FakeMemory;
use crate::timeline::{self, Stamps, NODE_LEN};
use loader::plan::PlanError;
use loader::pvh::{PvhError, START_INFO_BLOCK};
use loader::testutil::{node, setup_blob, tiny_vmlinux, write};

/// Where QEMU expects its option ROM to load the kernel and command-line blobs; the
/// setup_data chain it builds points into them.
const QEMU_KERNEL_ADDR: u64 = 0x10_0000;
const QEMU_CMDLINE_ADDR: u64 = 0x2_0000;
const SETUP_DTB: u32 = 2;
const SETUP_RNG_SEED: u32 = 9;

fn word(value: usize) -> Vec<u8> {
    (value as u32).to_le_bytes().to_vec()
}

fn device(dma: bool, items: Vec<(u16, Vec<u8>)>) -> FakeFwCfg {
    let mut fake = FakeFwCfg::with_files(dma, &[]);
    fake.items.extend(items);
    fake
}

/// What QEMU serves for `-kernel bzImage -initrd ... -append ...`.
fn bzimage_items(setup: &[u8], kernel: &[u8], cmdline: &[u8], initrd: &[u8]) -> Vec<(u16, Vec<u8>)> {
    vec![
        (key::SETUP_SIZE, word(setup.len())),
        (key::SETUP_DATA, setup.to_vec()),
        (key::KERNEL_SIZE, word(kernel.len())),
        (key::KERNEL_DATA, kernel.to_vec()),
        (key::KERNEL_ADDR, word(QEMU_KERNEL_ADDR as usize)),
        (key::CMDLINE_ADDR, word(QEMU_CMDLINE_ADDR as usize)),
        (key::CMDLINE_SIZE, word(cmdline.len())),
        (key::CMDLINE_DATA, cmdline.to_vec()),
        (key::INITRD_SIZE, word(initrd.len())),
        (key::INITRD_DATA, initrd.to_vec()),
    ]
}

/// What QEMU adds for a vmlinux with a PVH note: the entry, and where it loaded the segments.
fn pvh_items() -> [(u16, Vec<u8>); 3] {
    [
        (key::KERNEL_ENTRY, word(PVH_ENTRY as usize)),
        (key::KERNEL_ADDR, word(PVH_SEGMENT.0 as usize)),
        (key::KERNEL_SIZE, word(PVH_SEGMENT.1 as usize)),
    ]
}

fn prepare_with(fake: &mut FakeFwCfg, memory: &mut FakeMemory) -> Result<Handoff, BootError> {
    let mut fw_cfg = FwCfg::probe(fake).expect("signature");
    let given = GivenKernel::read(&mut fw_cfg).expect("a -kernel");
    prepare(&mut fw_cfg, given, &platform(), memory)
}

#[test]
fn a_bzimage_is_loaded_and_described_in_the_zero_page() {
    // QEMU's chain: a DTB node appended to the kernel blob, linked to an RNG seed node
    // after the command line, in the command-line blob.
    let mut kernel = vec![0xcc; 0x1000];
    kernel.extend(node(QEMU_CMDLINE_ADDR + 16, SETUP_DTB, b"dtb!"));
    let mut setup = setup_blob();
    write(&mut setup, 0x250, &(QEMU_KERNEL_ADDR + 0x1000).to_le_bytes()); // header's setup_data
    let mut cmdline = b"console=ttyS0\0\0\0".to_vec();
    cmdline.extend(node(0, SETUP_RNG_SEED, &[7; 32]));
    let initrd = b"070701 an initrd".repeat(100);

    for dma in [true, false] {
        let mut fake = device(dma, bzimage_items(&setup, &kernel, &cmdline, &initrd));
        let mut memory = memory();
        let handoff = prepare_with(&mut fake, &mut memory).unwrap();
        let Handoff::Linux64 { entry, boot_params, setup_data } = handoff else { panic!("not a bzImage hand-off") };
        assert_eq!((entry, boot_params, setup_data), (KERNEL_ADDR + 0x200, layout::BOOT_PARAMS, layout::SETUP_DATA));

        // The zero page: the kernel's own header, then what flint tells it.
        let zero_page = |offset: u64| layout::BOOT_PARAMS + offset;
        assert_eq!(memory.read(zero_page(0x202), 4), b"HdrS");
        assert_eq!(memory.read(zero_page(0x210), 1), [0xff]); // type_of_loader: undefined
        assert_eq!(memory.u32_at(zero_page(0x214)), KERNEL_ADDR as u32); // code32_start
        assert_eq!(memory.u32_at(zero_page(0x228)), layout::CMDLINE as u32);
        let initrd_addr = u64::from(memory.u32_at(zero_page(0x218)));
        assert_eq!(memory.u32_at(zero_page(0x21c)), initrd.len() as u32);
        assert_eq!(memory.u64_at(zero_page(0x250)), layout::TIMELINE);
        assert_eq!(memory.u64_at(zero_page(0x70)), RSDP);
        let map = platform().map;
        let count = memory.read(zero_page(0x1e8), 1)[0] as usize;
        assert_eq!(map_at(&memory, zero_page(0x2d0), count, 20), entries(&map));

        // The pieces, where the zero page says.
        assert_eq!(memory.read(KERNEL_ADDR, kernel.len()), kernel);
        assert_eq!(memory.read(initrd_addr, initrd.len()), initrd);
        assert_eq!(memory.read(layout::CMDLINE, 14), b"console=ttyS0\0");
        assert!(initrd_addr.is_multiple_of(4096) && map.is_ram(initrd_addr, initrd.len() as u64));
        // Small: right below the ACPI tables, in the 2 MiB page the boot touches anyway.
        assert_eq!(initrd_addr, (ACPI_TABLES.0 - initrd.len() as u64) & !0xfff);
        assert!(map.is_ram(KERNEL_ADDR, KERNEL_EXTENT));

        // QEMU's chain, copied out and relinked: DTB, then the RNG seed.
        let seed = memory.u64_at(layout::SETUP_DATA);
        assert_eq!(memory.u32_at(layout::SETUP_DATA + 8), SETUP_DTB);
        assert_eq!(memory.read(layout::SETUP_DATA + 16, 4), b"dtb!");
        assert!(seed.is_multiple_of(8) && seed > layout::SETUP_DATA);
        assert_eq!(memory.read(seed, 16 + 32), node(0, SETUP_RNG_SEED, &[7; 32]));

        // The timeline node heads the chain once recorded.
        let stamps = Stamps { reset: 1, loaded: 2, handoff: 3 };
        timeline::record(&handoff, &mut memory, &stamps);
        assert_eq!(memory.read(layout::TIMELINE, NODE_LEN), timeline::node(layout::SETUP_DATA, &stamps));

        assert_apart(&[
            ("ACPI tables", ACPI_TABLES.0, ACPI_TABLES.1),
            ("zero page", layout::BOOT_PARAMS, 4096),
            ("command line", layout::CMDLINE, cmdline.len() as u64),
            ("timeline", layout::TIMELINE, NODE_LEN as u64),
            ("setup_data", layout::SETUP_DATA, seed + 48 - layout::SETUP_DATA),
            ("kernel", KERNEL_ADDR, KERNEL_EXTENT),
            ("initrd", initrd_addr, initrd.len() as u64),
        ]);
    }
}

#[test]
fn a_kernel_that_needs_less_than_the_low_window_loads_at_1_mib() {
    let kernel = vec![0xcc; 0x1000];
    let mut setup = setup_blob();
    write(&mut setup, 0x260, &0x4000u32.to_le_bytes()); // init_size
    let initrd = b"070701 an initrd".repeat(100);
    let mut fake = device(true, bzimage_items(&setup, &kernel, b"\0", &initrd));
    let mut memory = memory();
    let Handoff::Linux64 { entry, .. } = prepare_with(&mut fake, &mut memory).unwrap() else {
        panic!("not a bzImage hand-off")
    };
    let at_1_mib = loader::low_window::START;
    assert_eq!(entry, at_1_mib + 0x200);
    assert_eq!(memory.read(at_1_mib, kernel.len()), kernel);
    let zero_page = |offset: u64| layout::BOOT_PARAMS + offset;
    assert_eq!(memory.u32_at(zero_page(0x214)), at_1_mib as u32); // code32_start

    // The initrd still right below the ACPI tables, the three apart in the window.
    let initrd_addr = u64::from(memory.u32_at(zero_page(0x218)));
    assert_eq!(initrd_addr, (ACPI_TABLES.0 - initrd.len() as u64) & !0xfff);
    assert_apart(&[
        ("ACPI tables", ACPI_TABLES.0, ACPI_TABLES.1),
        ("kernel", at_1_mib, 0x4000),
        ("initrd", initrd_addr, initrd.len() as u64),
    ]);
}

#[test]
fn without_a_setup_data_chain_the_timeline_node_ends_it() {
    let mut fake = device(true, bzimage_items(&setup_blob(), &[0xcc; 0x1000], b"quiet\0", b""));
    let mut memory = memory();
    memory.bytes_mut(layout::SETUP_DATA, 8).fill(0xee);
    let handoff = prepare_with(&mut fake, &mut memory).unwrap();
    let Handoff::Linux64 { setup_data, .. } = handoff else { panic!("not a bzImage hand-off") };
    assert_eq!(setup_data, 0);
    // Nothing was copied where a chain would go.
    assert_eq!(memory.read(layout::SETUP_DATA, 8), [0xee; 8]);
    let stamps = Stamps { reset: 1, loaded: 2, handoff: 3 };
    timeline::record(&handoff, &mut memory, &stamps);
    assert_eq!(memory.read(layout::TIMELINE, NODE_LEN), timeline::node(0, &stamps));
}

#[test]
fn a_pvh_vmlinux_gets_its_start_info() {
    let elf = tiny_vmlinux(true);
    let initrd = b"070701 an initrd".repeat(300);
    let mut items = bzimage_items(&elf, &[], b"quiet\0", &initrd);
    items.extend(pvh_items());
    let mut fake = device(true, items);
    let given = GivenKernel::read(&mut FwCfg::probe(&mut fake).unwrap()).unwrap();
    assert_eq!(given.loaded, PVH_SEGMENT);
    let mut memory = memory();
    let handoff = prepare_with(&mut fake, &mut memory).unwrap();
    let start_info = layout::PVH_START_INFO;
    assert_eq!(handoff, Handoff::Pvh32 { entry: PVH_ENTRY, start_info: start_info as u32, cmdline_len: 5 });

    // hvm_start_info: magic, version, one module, and where the rest lies.
    assert_eq!(memory.u32_at(start_info), 0x336e_c578);
    assert_eq!(memory.u32_at(start_info + 4), 1);
    assert_eq!(memory.u32_at(start_info + 12), 1);
    let modlist = memory.u64_at(start_info + 16);
    assert_eq!(memory.u64_at(start_info + 24), layout::CMDLINE);
    assert_eq!(memory.u64_at(start_info + 32), RSDP);
    let memmap = memory.u64_at(start_info + 40);
    let count = memory.u32_at(start_info + 48) as usize;
    let map = platform().map;
    assert_eq!(map_at(&memory, memmap, count, 24), entries(&map));

    // Module 0 is the initrd, page-aligned in RAM, clear of the kernel's segment.
    let (initrd_addr, initrd_size) = (memory.u64_at(modlist), memory.u64_at(modlist + 8));
    assert_eq!(initrd_size, initrd.len() as u64);
    assert_eq!(memory.read(initrd_addr, initrd.len()), initrd);
    assert!(initrd_addr.is_multiple_of(4096) && map.is_ram(initrd_addr, initrd_size));
    assert_eq!(initrd_addr, (ACPI_TABLES.0 - initrd_size) & !0xfff);
    assert_eq!(memory.read(layout::CMDLINE, 6), b"quiet\0");
    let block_end = start_info + START_INFO_BLOCK as u64;
    assert!(modlist >= start_info && modlist + 32 <= block_end && memmap + 24 * count as u64 <= block_end);
    assert_apart(&[
        ("ACPI tables", ACPI_TABLES.0, ACPI_TABLES.1),
        ("start_info", start_info, START_INFO_BLOCK as u64),
        ("command line", layout::CMDLINE, 6),
        ("kernel", PVH_SEGMENT.0, PVH_SEGMENT.1),
        ("initrd", initrd_addr, initrd_size),
    ]);

    // The stamps go on the command line.
    timeline::record(&handoff, &mut memory, &Stamps { reset: 1, loaded: 22, handoff: 333 });
    let appended = b"quiet flint.fwtsc=0000000000000001,0000000000000016,000000000000014d\0";
    assert_eq!(memory.read(layout::CMDLINE, appended.len()), appended);
}

#[test]
fn what_cannot_be_booted_is_refused() {
    let setup = setup_blob();
    let kernel = [0xcc; 0x1000];
    let boot = |items| prepare_with(&mut device(true, items), &mut memory());

    let mut short = setup.clone();
    write(&mut short, 0x238, &8u32.to_le_bytes()); // cmdline_size
    let err = boot(bzimage_items(&short, &kernel, b"console=ttyS0\0", b"")).unwrap_err();
    assert!(matches!(err, BootError::Plan(PlanError::CmdlineTooLong { len: 13, max: 8 })), "{err:?}");

    // No data needed: the sizes alone say it does not fit beside a kernel at 16-48 MiB.
    let mut items = bzimage_items(&setup, &kernel, b"", b"");
    items.push((key::INITRD_SIZE, word(20 << 20)));
    let err = boot(items).unwrap_err();
    assert!(matches!(err, BootError::Plan(PlanError::InitrdDoesNotFit { .. })), "{err:?}");

    let mut items = bzimage_items(&tiny_vmlinux(true), &[], b"", b"");
    items.extend(pvh_items());
    items.push((key::INITRD_SIZE, word(RAM_SIZE as usize)));
    let err = boot(items).unwrap_err();
    assert!(matches!(err, BootError::Pvh(PvhError::InitrdDoesNotFit { .. })), "{err:?}");

    let err = boot(bzimage_items(&[0; 1024], &kernel, b"", b"")).unwrap_err();
    assert!(matches!(err, BootError::Kernel(_)), "{err:?}");

    let mut nothing = device(true, vec![]);
    assert_eq!(GivenKernel::read(&mut FwCfg::probe(&mut nothing).unwrap()), None);
    let mut no_setup = device(true, vec![(key::KERNEL_SIZE, word(0x1000))]);
    assert!(matches!(prepare_with(&mut no_setup, &mut memory()), Err(BootError::NoKernel)));
}
