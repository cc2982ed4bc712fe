//! Disk boots from GPT images built in the test (a UKI or a PVH vmlinux in the flint boot
//! partition), read through a fake disk into the fake VM of `handoff::fake`. Only finding the
//! virtio devices is left to the integration tests.

use super::*;
use crate::handoff::fake::{
    assert_apart, entries, map_at, memory, platform, ACPI_TABLES, KERNEL_ADDR, KERNEL_EXTENT, PVH_ENTRY, PVH_SEGMENT,
};
use crate::memory::fake::FakeMemory;
use crate::timeline::{self, Stamps, NODE_LEN};
use loader::pvh::START_INFO_BLOCK;
use loader::testutil::{gpt_disk, setup_blob, tiny_uki, vmlinux_with, write, DISK_SECTORS};

/// A disk image in host memory, failing as the virtio disk does.
struct FakeDisk(Vec<u8>);

impl FakeDisk {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

impl ReadAt for FakeDisk {
    type Error = DiskError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        (&self.0[..]).read_at(offset, buf).map_err(|_| DiskError)
    }
}

const BOOT_START: u64 = 100;

/// A GPT disk with another partition first, then the flint boot partition holding `image`.
fn disk_with(image: &[u8]) -> FakeDisk {
    let mut disk = gpt_disk(&[([7; 16], 34, BOOT_START - 1), (FLINT_BOOT, BOOT_START, DISK_SECTORS - 34)]);
    write(&mut disk, BOOT_START as usize * 512, image);
    FakeDisk(disk)
}

fn boot(disk: &mut FakeDisk, memory: &mut FakeMemory) -> Result<Handoff, BootError> {
    let len = disk.len();
    let partition = find_boot_partition(disk, len)?;
    assert_eq!(partition.start, BOOT_START * 512);
    boot_partition(disk, &partition, false, &platform(), memory)
}

#[test]
fn a_uki_boots_like_a_bzimage() {
    let kernel = [0xcc; 0x3000];
    let linux = [setup_blob(), kernel.to_vec()].concat();
    let initrd = b"070701 an initrd".repeat(50);
    let uki = tiny_uki(&[(b".linux\0\0", &linux), (b".initrd\0", &initrd), (b".cmdline", b"quiet console=ttyS0\n")]);
    let mut memory = memory();
    let handoff = boot(&mut disk_with(&uki), &mut memory).unwrap();
    let boot_params = layout::BOOT_PARAMS;
    assert_eq!(handoff, Handoff::Linux64 { entry: KERNEL_ADDR + 0x200, boot_params, setup_data: 0 });

    // The kernel without its setup part, the initrd, the command line without its newline.
    assert_eq!(memory.read(KERNEL_ADDR, kernel.len()), kernel);
    let initrd_addr = u64::from(memory.u32_at(boot_params + 0x218));
    assert_eq!(memory.u32_at(boot_params + 0x21c), initrd.len() as u32);
    assert_eq!(memory.read(initrd_addr, initrd.len()), initrd);
    assert_eq!(memory.u32_at(boot_params + 0x228), layout::CMDLINE as u32);
    assert_eq!(memory.read(layout::CMDLINE, 20), b"quiet console=ttyS0\0");
    assert_eq!(memory.read(boot_params + 0x202, 4), b"HdrS");
    let count = memory.read(boot_params + 0x1e8, 1)[0] as usize;
    assert_eq!(map_at(&memory, boot_params + 0x2d0, count, 20), entries(&platform().map));

    // No QEMU chain on a disk boot: the timeline node is the whole of it.
    assert_eq!(memory.u64_at(boot_params + 0x250), layout::TIMELINE);
    let stamps = Stamps { reset: 4, loaded: 5, handoff: 6 };
    timeline::record(&handoff, &mut memory, &stamps);
    assert_eq!(memory.read(layout::TIMELINE, NODE_LEN), timeline::node(0, &stamps));

    assert!(platform().map.is_ram(initrd_addr, initrd.len() as u64));
    assert_apart(&[
        ("ACPI tables", ACPI_TABLES.0, ACPI_TABLES.1),
        ("zero page", boot_params, 4096),
        ("command line", layout::CMDLINE, 20),
        ("timeline", layout::TIMELINE, NODE_LEN as u64),
        ("kernel", KERNEL_ADDR, KERNEL_EXTENT),
        ("initrd", initrd_addr, initrd.len() as u64),
    ]);
}

#[test]
fn a_pvh_vmlinux_is_loaded_segment_by_segment() {
    let initrd = b"070701 an initrd".repeat(50);
    let elf = vmlinux_with(true, &[(".initrd", &initrd, 0), (".cmdline", b"quiet\n", 0)]);
    let mut memory = memory();
    // Stale bytes where the segment's zeroed part goes.
    memory.bytes_mut(PVH_SEGMENT.0, PVH_SEGMENT.1 as usize).fill(0xee);
    let handoff = boot(&mut disk_with(&elf), &mut memory).unwrap();
    let start_info = layout::PVH_START_INFO;
    assert_eq!(handoff, Handoff::Pvh32 { entry: PVH_ENTRY, start_info: start_info as u32, cmdline_len: 5 });

    // The segment's file part (the first 0x100 bytes of the file), then zeroes to memsz.
    let (paddr, memsz) = PVH_SEGMENT;
    assert_eq!(memory.read(paddr, 0x100), &elf[..0x100]);
    assert!(memory.read(paddr + 0x100, memsz as usize - 0x100).iter().all(|&b| b == 0));

    assert_eq!(memory.u32_at(start_info), 0x336e_c578);
    assert_eq!(memory.u32_at(start_info + 12), 1);
    let modlist = memory.u64_at(start_info + 16);
    let (initrd_addr, initrd_size) = (memory.u64_at(modlist), memory.u64_at(modlist + 8));
    assert_eq!(memory.read(initrd_addr, initrd.len()), initrd);
    assert_eq!(initrd_size, initrd.len() as u64);
    assert_eq!(memory.u64_at(start_info + 24), layout::CMDLINE);
    assert_eq!(memory.read(layout::CMDLINE, 6), b"quiet\0");
    let count = memory.u32_at(start_info + 48) as usize;
    assert_eq!(map_at(&memory, memory.u64_at(start_info + 40), count, 24), entries(&platform().map));
    assert_apart(&[
        ("ACPI tables", ACPI_TABLES.0, ACPI_TABLES.1),
        ("start_info", start_info, START_INFO_BLOCK as u64),
        ("command line", layout::CMDLINE, 6),
        ("kernel", paddr, memsz),
        ("initrd", initrd_addr, initrd_size),
    ]);
}

#[test]
fn what_cannot_be_booted_is_refused() {
    let mut memory = memory();
    let mut no_gpt = FakeDisk(vec![0; 0x10_0000]);
    assert!(matches!(find_boot_partition(&mut no_gpt, 0x10_0000), Err(BootError::Gpt(GptError::NoGpt))));
    let mut no_boot = FakeDisk(gpt_disk(&[([7; 16], 34, 99)]));
    let len = no_boot.len();
    assert!(matches!(find_boot_partition(&mut no_boot, len), Err(BootError::NoBootPartition)));

    let err = boot(&mut disk_with(b"neither PE nor ELF"), &mut memory).unwrap_err();
    assert!(matches!(err, BootError::Image(ImageError::UnknownFormat)), "{err:?}");
    // A .linux section holding the setup part only.
    let err = boot(&mut disk_with(&tiny_uki(&[(b".linux\0\0", &setup_blob())])), &mut memory).unwrap_err();
    assert!(matches!(err, BootError::Kernel(KernelError::Truncated { .. })), "{err:?}");
    // A segment in the firmware's low memory.
    let mut low = vmlinux_with(true, &[]);
    write(&mut low, 64 + 24, &0x8_0000u64.to_le_bytes()); // p_paddr of the PT_LOAD
    let err = boot(&mut disk_with(&low), &mut memory).unwrap_err();
    assert!(matches!(err, BootError::Plan(PlanError::KernelDoesNotFit { .. })), "{err:?}");
    // The disk fails to read a part: found on the whole disk, read from a shortened one.
    let mut short = disk_with(&tiny_uki(&[(b".linux\0\0", &[setup_blob(), vec![0xcc; 0x3000]].concat())]));
    let len = short.len();
    let partition = find_boot_partition(&mut short, len).unwrap();
    short.0.truncate(BOOT_START as usize * 512 + 0x1000);
    let err = boot_partition(&mut short, &partition, false, &platform(), &mut memory).unwrap_err();
    assert!(matches!(err, BootError::Disk(_)), "{err:?}");
}
