//! Booting from a disk with plain QEMU and no `-kernel` (docs/disk-image.md): images made by
//! `flint image` and by hand (sfdisk, objcopy, systemd's EFI stub) run their command, whose
//! output reaches the console and whose status ends QEMU; bad disks end with the firmware's one
//! `flint: error:` line and its status (QEMU exits with 2 * status + 1).

use flint::qemu::{Drive, Machine, Vm};
use flint_tests::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BOOT_TYPE: &str = "6AF119E6-6761-4A72-BB47-A541EDCC1854";
const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const UKI_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const MIB: u64 = 1 << 20;

/// What every good image runs: output on stdout and stderr, stdin at EOF, status 3.
const JOB: [&str; 3] = ["sh", "-c", "echo out:$(uname -r); echo err >&2; read line; echo eof:$?; exit 3"];

fn flint_image(output: &Path, options: &[&str]) {
    let mut args = vec!["flint", "-q", "image", "-o", output.to_str().unwrap()];
    args.extend(options);
    args.push("--");
    args.extend(JOB);
    assert_eq!(flint::cli::main_with(args.into_iter().map(Into::into)), 0, "flint image {options:?}");
}

/// Boots `disk` alone; returns QEMU's exit code and the console.
fn boot_disk(disk: &Path, machine: Machine, memory: &str) -> (i32, String) {
    let mut vm = Vm::new(firmware());
    vm.machine = machine;
    vm.memory = memory.into();
    vm.drives.push(Drive::new(disk, true));
    let (outcome, console) = boot(&vm);
    (outcome.exit_code().expect("QEMU exited normally"), console)
}

fn expect_job_ran(disk: &Path, machine: Machine) {
    let (code, console) = boot_disk(disk, machine, "512M");
    assert_eq!(code, 2 * 3 + 1, "console:\n{console}");
    for line in ["out:6.1", "err", "eof:1"] {
        assert!(console.lines().any(|l| l.starts_with(line)), "{line:?} missing from the console:\n{console}");
    }
}

fn expect_error(disk: &Path, memory: &str, status: i32, words: &str) {
    let (code, console) = boot_disk(disk, Machine::Pc, memory);
    let line = console.lines().find(|l| l.starts_with("flint: error: ")).unwrap_or_default();
    assert_eq!(code, 2 * status + 1, "console:\n{console}");
    assert!(line.contains(words), "error line {line:?} should mention {words:?}");
}

/// A GPT disk laid out by sfdisk, each partition 1 MiB aligned and holding a file's content.
fn sfdisk_disk(dir: &Path, name: &str, partitions: &[(&str, &Path)]) -> PathBuf {
    let sizes: Vec<u64> =
        partitions.iter().map(|(_, file)| std::fs::metadata(file).unwrap().len().div_ceil(MIB).max(1)).collect();
    let disk = dir.join(name);
    std::fs::File::create(&disk).unwrap().set_len((sizes.iter().sum::<u64>() + 2) * MIB).unwrap();
    // Explicit starts: on disks of a few MiB, sfdisk's own choice is LBA 34, not 1 MiB.
    let mut script = String::from("label: gpt\n");
    let mut start = 1;
    for ((kind, _), size) in partitions.iter().zip(&sizes) {
        script.push_str(&format!("start={start}MiB, size={size}MiB, type={kind}\n"));
        start += size;
    }
    let mut sfdisk = Command::new("sfdisk").arg("--quiet").arg(&disk).stdin(Stdio::piped()).spawn().expect("sfdisk");
    sfdisk.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut start = 1;
    for ((_, file), size) in partitions.iter().zip(&sizes) {
        let status = Command::new("dd")
            .arg(format!("if={}", file.display()))
            .arg(format!("of={}", disk.display()))
            .args(["bs=1M", &format!("seek={start}"), "conv=notrunc,sparse", "status=none"])
            .status()
            .unwrap();
        assert!(status.success());
        start += size;
    }
    disk
}

/// systemd's stub with `sections` (name, file) placed one after another past its image.
fn uki(dir: &Path, sections: &[(&str, &Path)]) -> PathBuf {
    let out = dir.join("uki.efi");
    let mut objcopy = Command::new("objcopy");
    // Debian 12's stub ends at 0x19300 (ImageBase 0 + SizeOfImage in `objdump -p`).
    let mut address = 0x1a000;
    for (name, file) in sections {
        objcopy.arg("--add-section").arg(format!("{name}={}", file.display()));
        objcopy.arg("--change-section-vma").arg(format!("{name}={address:#x}"));
        address += std::fs::metadata(file).unwrap().len().next_multiple_of(4096);
    }
    assert!(objcopy.arg(UKI_STUB).arg(&out).status().expect("objcopy").success(), "objcopy on {UKI_STUB}");
    out
}

fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn minimal_kernel() -> PathBuf {
    let path = cache_dir().join("kernels/minimal/vmlinuz");
    assert!(path.is_file(), "minimal kernel missing: run scripts/test.sh (or `flint kernel minimal`)");
    path
}

#[test]
fn flint_image_with_debians_kernel_boots_as_pvh_on_pc_and_q35() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("job.img");
    flint_image(&disk, &[]);
    expect_job_ran(&disk, Machine::Pc);
    expect_job_ran(&disk, Machine::Q35);
}

#[test]
fn flint_image_for_microvm_boots_from_virtio_mmio() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("job.img");
    flint_image(&disk, &["--machine", "microvm"]);
    expect_job_ran(&disk, Machine::Microvm);
}

#[test]
fn flint_image_with_the_minimal_kernel_boots_without_an_initrd() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("job.img");
    flint_image(&disk, &["--kernel", "minimal", "--ro"]);
    expect_job_ran(&disk, Machine::Pc);
}

/// Whether the ext4 file system starting `offset` bytes into `file` has a journal: the
/// superblock's compatible features (at byte 0x5C of the superblock, itself at byte 1024).
fn has_journal(file: &Path, offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const HAS_JOURNAL: u32 = 0x4;
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset + 1024 + 0x5C)).unwrap();
    let mut features = [0u8; 4];
    f.read_exact(&mut features).unwrap();
    u32::from_le_bytes(features) & HAS_JOURNAL != 0
}

/// The byte offset of the second partition (flint's root) in a GPT disk.
fn root_partition_start(disk: &Path) -> u64 {
    let json = Command::new("sfdisk").arg("--json").arg(disk).output().unwrap().stdout;
    let table: serde_json::Value = serde_json::from_slice(&json).unwrap();
    table["partitiontable"]["partitions"][1]["start"].as_u64().unwrap() * 512
}

#[test]
fn flint_image_rw_journals_its_root_which_flints_cached_root_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("rw.img");
    flint_image(&disk, &["--kernel", "minimal", "--rw"]);
    assert!(has_journal(&disk, root_partition_start(&disk)), "a --rw disk is written at every boot and kept");
    let cached = flint::rootfs::busybox_root().unwrap().image;
    assert!(!has_journal(&cached, 0), "flint only reads its cached root, or writes a throwaway copy");

    let mut vm = Vm::new(firmware());
    vm.drives.push(Drive::new(disk.clone(), false));
    let (outcome, console) = boot(&vm);
    assert_eq!(outcome.exit_code(), Some(2 * 3 + 1), "console:\n{console}");
    assert!(console.lines().any(|l| l.starts_with("out:6.1")), "the job's output is missing:\n{console}");
}

#[test]
fn a_uki_on_a_disk_laid_out_by_sfdisk_boots() {
    let dir = tempfile::tempdir().unwrap();
    let argv = flint_guest_init::argv::encode(&JOB);
    let cmdline = format!("console=ttyS0 quiet panic=-1 flint.root=gpt-auto flint.stdin=/dev/null flint.argv={argv}");
    let cmdline = file(dir.path(), "cmdline", cmdline.as_bytes());
    let boot = uki(dir.path(), &[(".cmdline", &cmdline), (".linux", &minimal_kernel())]);
    let root = flint::rootfs::busybox_root().unwrap().image;
    let disk = sfdisk_disk(dir.path(), "job.img", &[(BOOT_TYPE, &boot), (ROOT_TYPE, &root)]);
    expect_job_ran(&disk, Machine::Q35);
}

#[test]
fn a_disk_without_a_gpt_or_with_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let raw = file(dir.path(), "raw.img", &vec![0; 2 * MIB as usize]);
    expect_error(&raw, "128M", 25, "no GPT");
    let junk = file(dir.path(), "junk", b"junk");
    let mut disk = std::fs::read(sfdisk_disk(dir.path(), "gpt.img", &[(BOOT_TYPE, &junk)])).unwrap();
    disk[512 + 16] ^= 1; // the header's CRC32
    let damaged = file(dir.path(), "damaged.img", &disk);
    expect_error(&damaged, "128M", 25, "CRC32");
}

#[test]
fn a_disk_without_a_boot_partition() {
    let dir = tempfile::tempdir().unwrap();
    let root = file(dir.path(), "root", &[0; 4096]);
    let disk = sfdisk_disk(dir.path(), "root-only.img", &[(ROOT_TYPE, &root)]);
    expect_error(&disk, "128M", 26, "no flint boot partition");
}

#[test]
fn boot_partitions_that_hold_no_bootable_image() {
    let dir = tempfile::tempdir().unwrap();
    let junk = file(dir.path(), "junk", &[0x5a; 4096]);
    let disk = sfdisk_disk(dir.path(), "junk.img", &[(BOOT_TYPE, &junk)]);
    expect_error(&disk, "128M", 27, "neither a UKI");
    let cmdline = file(dir.path(), "cmdline", b"console=ttyS0");
    let no_linux = uki(dir.path(), &[(".cmdline", &cmdline)]);
    let disk = sfdisk_disk(dir.path(), "no-linux.img", &[(BOOT_TYPE, &no_linux)]);
    expect_error(&disk, "128M", 27, ".linux");
}

#[test]
fn a_boot_image_larger_than_ram() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = file(dir.path(), "initrd", &vec![0x07; 80 * MIB as usize]);
    let boot = uki(dir.path(), &[(".initrd", &initrd), (".linux", &minimal_kernel())]);
    let disk = sfdisk_disk(dir.path(), "big.img", &[(BOOT_TYPE, &boot)]);
    expect_error(&disk, "64M", 21, "-m");
}

#[test]
fn a_disk_that_fails_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let junk = file(dir.path(), "junk", b"junk");
    let disk = sfdisk_disk(dir.path(), "good.img", &[(BOOT_TYPE, &junk)]);
    // QEMU's blkdebug driver fails every read of the disk with EIO.
    let rules = file(dir.path(), "rules.conf", b"[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n");
    let failing = PathBuf::from(format!("blkdebug:{}:{}", rules.display(), disk.display()));
    expect_error(&failing, "128M", 28, "-drive");
}
