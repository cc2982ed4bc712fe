//! `flint.root=gpt-auto`: the root partition found by its GPT type, whatever the disk is
//! called. Every whole disk in /sys/block is read through the loader's GPT reader; the first
//! disk (by name: vda before vdb) with a "Root Partition (x86-64)" wins, and its partition's
//! device is the child of /sys/block/<disk> whose `partition` file holds that number.

use crate::clock::{self, Deadline};
use crate::params::decimal;
use crate::report::Failure;
use crate::status;
use core::mem::MaybeUninit;
use loader::gpt::{Gpt, GptError, ROOT_X86_64};
use loader::read_at::ReadAt;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};
use rustix::io::Errno;

/// The kernel's DISK_NAME_LEN: no disk or partition name is longer.
const NAME_MAX: usize = 32;
/// Room for `<dev dir>/<name>`; the directories are `/dev` and `/sys/block` outside tests.
const PATH_MAX: usize = 128;

/// A path built on the stack.
pub struct StackPath {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl StackPath {
    fn join(dir: &[u8], name: &[u8]) -> Option<StackPath> {
        let mut path = StackPath { buf: [0; PATH_MAX], len: 0 };
        for part in [dir, b"/", name] {
            path.buf.get_mut(path.len..path.len + part.len())?.copy_from_slice(part);
            path.len += part.len();
        }
        Some(path)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A disk or partition name, copied out of a directory listing.
#[derive(Clone, Copy)]
struct Name {
    buf: [u8; NAME_MAX],
    len: usize,
}

impl Name {
    fn new(name: &[u8]) -> Option<Name> {
        let mut buf = [0; NAME_MAX];
        buf.get_mut(..name.len())?.copy_from_slice(name);
        Some(Name { buf, len: name.len() })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A disk whose GPT could not be used, named in the final message.
#[derive(Clone, Copy)]
pub struct Skipped {
    disk: Name,
    problem: &'static str,
}

/// Waits up to `wait_ms` for a root partition on any disk; returns its `/dev` path.
pub fn find(wait_ms: u64) -> Result<StackPath, Failure> {
    let mut skipped = None;
    clock::retry(
        Deadline::after_ms(wait_ms),
        || scan(b"/sys/block", b"/dev", &mut skipped).ok_or(Errno::NOENT),
        |_| true,
    )
    .map_err(|_| not_found(wait_ms, skipped))
}

fn not_found(wait_ms: u64, skipped: Option<Skipped>) -> Failure {
    let failure = Failure::new(status::ROOT_NOT_FOUND)
        .text("flint.root=gpt-auto: no disk with a root partition ")
        .text("(GPT type 4f68bce3-e8cd-4db1-96e7-fbcaf984b709) appeared within ")
        .number(wait_ms)
        .text(" ms");
    let failure = match skipped {
        Some(skipped) => {
            failure.text(" (skipped ").bytes(skipped.disk.as_bytes()).text(": ").text(skipped.problem).text(")")
        }
        None => failure,
    };
    failure
        .text(": attach a disk laid out as docs/disk-image.md says, list its driver modules in flint.modules ")
        .text("(or raise flint.rootwait)")
}

/// One look at every disk: the root partition's device if a disk has one and its node exists.
/// Disks whose GPT is damaged are skipped (another disk may hold the root) and remembered.
fn scan(sys_block: &[u8], dev: &[u8], skipped: &mut Option<Skipped>) -> Option<StackPath> {
    let disks = open_dir(sys_block)?;
    let mut listing = [MaybeUninit::uninit(); 1024];
    let mut entries = RawDir::new(&disks, &mut listing);
    let mut found: Option<(Name, u32)> = None;
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        let Some(disk) = Name::new(name).filter(|_| !name.starts_with(b".")) else { continue };
        if found.is_some_and(|(first, _)| !comes_before(name, first.as_bytes())) {
            continue;
        }
        match root_partition(StackPath::join(dev, name)?.as_bytes()) {
            Ok(Some(number)) => found = Some((disk, number)),
            Ok(None) => {}
            Err(problem) => *skipped = Some(Skipped { disk, problem }),
        }
    }
    let (disk, number) = found?;
    let partition = partition_name(disks.as_fd(), disk.as_bytes(), number)?;
    let device = StackPath::join(dev, partition.as_bytes())?;
    rustix::fs::stat(device.as_bytes()).ok()?;
    Some(device)
}

/// Disk names in the kernel's order: shorter first (vdz before vdaa), then bytewise.
fn comes_before(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// The number of the disk's first root partition; `Ok(None)` for a disk that is not there yet,
/// has no GPT, or no such partition; `Err` says what is wrong with a damaged GPT.
fn root_partition(device: &[u8]) -> Result<Option<u32>, &'static str> {
    let Ok(fd) = rustix::fs::open(device, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else { return Ok(None) };
    let Ok(len) = rustix::fs::seek(&fd, SeekFrom::End(0)) else { return Ok(None) };
    let mut disk = Disk(fd);
    let found = Gpt::read(&mut disk, len).and_then(|gpt| gpt.find(&mut disk, &ROOT_X86_64));
    match found {
        Ok(partition) => Ok(partition.map(|partition| partition.number)),
        Err(GptError::NoGpt) => Ok(None),
        Err(GptError::Io(_)) => Err("reading its GPT failed"),
        Err(GptError::BadHeaderCrc) => Err("its GPT header's CRC32 does not match"),
        Err(GptError::BadEntriesCrc) => Err("its GPT partition array's CRC32 does not match"),
        Err(GptError::Damaged(problem) | GptError::BadPartition { problem, .. }) => Err(problem),
    }
}

/// The child of `<sys_block>/<disk>` whose `partition` file holds `number` (vda2, nvme0n1p2).
fn partition_name(disks: rustix::fd::BorrowedFd<'_>, disk: &[u8], number: u32) -> Option<Name> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let children = rustix::fs::openat(disks, disk, flags, Mode::empty()).ok()?;
    let mut listing = [MaybeUninit::uninit(); 2048];
    let mut entries = RawDir::new(&children, &mut listing);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        let Ok(child) = rustix::fs::openat(&children, name, flags, Mode::empty()) else { continue };
        let Ok(file) = rustix::fs::openat(&child, c"partition", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
            continue;
        };
        let mut text = [0u8; 12];
        let Ok(len) = rustix::io::read(&file, &mut text) else { continue };
        let digits = text[..len].strip_suffix(b"\n").unwrap_or(&text[..len]);
        if decimal(digits) == Some(u64::from(number)) {
            return Name::new(name.to_bytes());
        }
    }
    None
}

fn open_dir(path: &[u8]) -> Option<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// A block device read with `pread`, for the GPT reader.
struct Disk(OwnedFd);

impl ReadAt for Disk {
    type Error = Errno;

    fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> Result<(), Errno> {
        while !buf.is_empty() {
            match rustix::io::pread(&self.0, &mut *buf, offset) {
                // Past the end of the device.
                Ok(0) => return Err(Errno::IO),
                Ok(read) => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
                Err(Errno::INTR) => {}
                Err(errno) => return Err(errno),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    /// A disk with a boot partition (1) and a root partition (2), laid out by sfdisk.
    fn gpt_disk(dir: &std::path::Path) -> Vec<u8> {
        use std::io::Write;
        let file = dir.join("disk.img");
        std::fs::File::create(&file).unwrap().set_len(4 << 20).unwrap();
        let mut sfdisk = std::process::Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&file)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (apt-get install fdisk) makes the test disk");
        let script = "label: gpt\nsize=2048, type=6AF119E6-6761-4A72-BB47-A541EDCC1854\n\
                      size=2048, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n";
        sfdisk.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(sfdisk.wait().unwrap().success());
        std::fs::read(&file).unwrap()
    }

    /// A fake /sys/block and /dev: disk contents are files, partitions are directories with a
    /// `partition` file, as in sysfs.
    struct Fake {
        dir: PathBuf,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let dir = std::env::temp_dir().join(format!("flint-gpt-root-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("sys/block")).unwrap();
            std::fs::create_dir_all(dir.join("dev")).unwrap();
            Fake { dir }
        }

        fn disk(&self, name: &str, content: &[u8], partitions: &[&str]) {
            std::fs::write(self.dir.join("dev").join(name), content).unwrap();
            let sys = self.dir.join("sys/block").join(name);
            std::fs::create_dir_all(sys.join("queue")).unwrap();
            for (index, partition) in partitions.iter().enumerate() {
                std::fs::create_dir_all(sys.join(partition)).unwrap();
                std::fs::write(sys.join(partition).join("partition"), format!("{}\n", index + 1)).unwrap();
                std::fs::write(self.dir.join("dev").join(partition), b"").unwrap();
            }
        }

        /// The device found (relative to the fake root) and the last skipped disk's problem.
        fn scan(&self) -> (Option<String>, Option<(String, &'static str)>) {
            let (sys, dev) = (self.dir.join("sys/block"), self.dir.join("dev"));
            let mut skipped = None;
            let found = scan(sys.as_os_str().as_bytes(), dev.as_os_str().as_bytes(), &mut skipped);
            let prefix = self.dir.as_os_str().as_bytes().len();
            let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
            (
                found.map(|path| text(&path.as_bytes()[prefix..])),
                skipped.map(|skipped: Skipped| (text(skipped.disk.as_bytes()), skipped.problem)),
            )
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn finds_the_root_partition_on_the_first_disk_that_has_one() {
        let fake = Fake::new("find");
        let gpt = gpt_disk(&fake.dir);
        fake.disk("vda", &[0; 8192], &[]);
        fake.disk("vdc", &gpt, &["vdc1", "vdc2"]);
        fake.disk("nvme0n1", &gpt, &["nvme0n1p1", "nvme0n1p2"]);
        assert_eq!(fake.scan(), (Some("/dev/vdc2".into()), None));
        fake.disk("vdb", &gpt, &["vdb1", "vdb2"]);
        assert_eq!(fake.scan(), (Some("/dev/vdb2".into()), None));
    }

    #[test]
    fn skips_and_names_a_damaged_gpt() {
        let fake = Fake::new("damaged");
        let mut gpt = gpt_disk(&fake.dir);
        fake.disk("vdb", &gpt, &["vdb1", "vdb2"]);
        gpt[1024 + 40] ^= 1; // a byte of the partition array
        fake.disk("vda", &gpt, &["vda1", "vda2"]);
        assert_eq!(
            fake.scan(),
            (Some("/dev/vdb2".into()), Some(("vda".into(), "its GPT partition array's CRC32 does not match")))
        );
        std::fs::remove_dir_all(fake.dir.join("sys/block/vdb")).unwrap();
        assert_eq!(fake.scan().0, None);
    }

    #[test]
    fn waits_for_the_partition_and_its_node() {
        let fake = Fake::new("wait");
        let gpt = gpt_disk(&fake.dir);
        // The kernel has not listed the partitions yet.
        fake.disk("vda", &gpt, &[]);
        assert_eq!(fake.scan(), (None, None));
        fake.disk("vda", &gpt, &["vda1", "vda2"]);
        std::fs::remove_file(fake.dir.join("dev/vda2")).unwrap();
        assert_eq!(fake.scan(), (None, None));
    }

    #[test]
    fn the_message_names_the_parameter_and_the_document() {
        let skipped = Skipped { disk: Name::new(b"vdb").unwrap(), problem: "its GPT header's CRC32 does not match" };
        let failure = not_found(10_000, Some(skipped));
        let message = core::str::from_utf8(failure.message()).unwrap();
        assert_eq!(failure.status, status::ROOT_NOT_FOUND);
        for words in ["flint.root=gpt-auto", "10000 ms", "skipped vdb: its GPT header", "docs/disk-image.md"] {
            assert!(message.contains(words), "{message}");
        }
    }
}
