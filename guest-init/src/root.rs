//! Getting from the initramfs to the real root: wait for the device, mount it (optionally
//! under a tmpfs overlay), then switch to it the way busybox's `switch_root` does. The
//! initramfs is rootfs, which cannot be unmounted or pivoted away from, so the new root is
//! moved on top of it and the old files are deleted to give their memory back; /dev, /proc
//! and /sys move along.

use crate::clock::{self, Deadline};
use crate::gpt_root;
use crate::mounts;
use crate::params::{Root, RootDevice, RootMode};
use crate::report::Failure;
use crate::status;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use rustix::io::Errno;
use rustix::ioctl::{IntegerSetter, Opcode};
use rustix::mount::MountFlags;

/// Where the new root is assembled inside the initramfs.
const NEW_ROOT: &CStr = c"/newroot";
/// For `flint.overlay`: the device, read-only, and the tmpfs holding the writable layer.
const LOWER: &CStr = c"/lower";
const LAYER: &CStr = c"/layer";
const UPPER: &CStr = c"/layer/upper";
const WORK: &CStr = c"/layer/work";
const OVERLAY_OPTIONS: &CStr = c"lowerdir=/lower,upperdir=/layer/upper,workdir=/layer/work";

/// Mounts `root` and makes it `/`, with the initramfs's /dev, /proc and /sys moved into it.
pub fn switch_to(root: &Root<'_>, wait_ms: u64) -> Result<(), Failure> {
    let found;
    let device = match root.device {
        RootDevice::Path(device) => {
            if !clock::wait_for_path(device, Deadline::after_ms(wait_ms)) {
                return Err(Failure::new(status::ROOT_NOT_FOUND)
                    .text("root device ")
                    .bytes(device)
                    .text(" did not appear within ")
                    .number(wait_ms)
                    .text(
                        " ms: attach the disk and list its driver modules in flint.modules (or raise flint.rootwait)",
                    ));
            }
            device
        }
        RootDevice::GptAuto => {
            found = gpt_root::find(wait_ms)?;
            found.as_bytes()
        }
    };
    raise_read_ahead(device);
    mount(root, device)?;
    switch()
}

/// The root disk's read-ahead, in 512-byte sectors (2 MiB instead of the kernel's 128 KiB):
/// the workload's first program is then read in a few large requests rather than many small
/// ones, each a round trip through QEMU (busybox `true` took 0.80x the time, BENCHMARKS.md, "Tuning").
const ROOT_READ_AHEAD_SECTORS: usize = 4096;
const BLKRASET: Opcode = 0x1262;

/// Best effort: a device that refuses keeps the kernel's default.
fn raise_read_ahead(device: &[u8]) {
    let Ok(disk) = rustix::fs::open(device, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else { return };
    // SAFETY: BLKRASET takes its value as the argument itself and writes nothing back.
    let _ = unsafe { rustix::ioctl::ioctl(&disk, IntegerSetter::<BLKRASET>::new_usize(ROOT_READ_AHEAD_SECTORS)) };
}

fn mount(root: &Root<'_>, device: &[u8]) -> Result<(), Failure> {
    let _ = rustix::fs::mkdir(NEW_ROOT, Mode::from_raw_mode(0o755));
    match root.mode {
        RootMode::ReadOnly => mount_device(root, device, NEW_ROOT, MountFlags::RDONLY),
        RootMode::ReadWrite => mount_device(root, device, NEW_ROOT, MountFlags::empty()),
        RootMode::Overlay => {
            let _ = rustix::fs::mkdir(LOWER, Mode::from_raw_mode(0o755));
            mount_device(root, device, LOWER, MountFlags::RDONLY)?;
            let failure = |what: &str, errno| {
                Failure::new(status::MOUNT_FAILED)
                    .text("cannot set up the flint.overlay ")
                    .text(what)
                    .text(": ")
                    .errno(errno)
                    .text(match errno {
                        Errno::NODEV => ": list the overlay module in flint.modules",
                        _ => ": drop flint.overlay and use flint.ro or flint.rw",
                    })
            };
            let _ = rustix::fs::mkdir(LAYER, Mode::from_raw_mode(0o755));
            rustix::mount::mount(c"tmpfs", LAYER, c"tmpfs", MountFlags::empty(), c"mode=0755")
                .map_err(|errno| failure("tmpfs", errno))?;
            // The merged root takes its owner and mode from the upper directory: copy them
            // from the image's root so the overlay does not change them.
            let image_root = rustix::fs::stat(LOWER).map_err(|errno| failure("layer", errno))?;
            let mode = Mode::from_raw_mode(image_root.st_mode & 0o7777);
            for dir in [UPPER, WORK] {
                rustix::fs::mkdir(dir, mode).map_err(|errno| failure("layer", errno))?;
            }
            rustix::fs::chmod(UPPER, mode).map_err(|errno| failure("layer", errno))?;
            let owner = (rustix::fs::Uid::from_raw(image_root.st_uid), rustix::fs::Gid::from_raw(image_root.st_gid));
            rustix::fs::chown(UPPER, Some(owner.0), Some(owner.1)).map_err(|errno| failure("layer", errno))?;
            rustix::mount::mount(c"overlay", NEW_ROOT, c"overlay", MountFlags::empty(), OVERLAY_OPTIONS)
                .map_err(|errno| failure("mount", errno))
        }
    }
}

fn mount_device(root: &Root<'_>, device: &[u8], target: &CStr, flags: MountFlags) -> Result<(), Failure> {
    rustix::mount::mount(device, target, root.fstype, flags, c"").map_err(|errno| {
        Failure::new(status::MOUNT_FAILED)
            .text("cannot mount root device ")
            .bytes(device)
            .text(" as ")
            .bytes(root.fstype)
            .text(if flags.contains(MountFlags::RDONLY) { " read-only: " } else { " read-write: " })
            .errno(errno)
            .text(match errno {
                Errno::NODEV => ": the kernel lacks this filesystem: list its module in flint.modules",
                Errno::INVAL => ": check that flint.rootfstype matches the image",
                Errno::ROFS | Errno::ACCESS => ": the device is read-only: use flint.ro or flint.overlay",
                _ => ": check the root image and its filesystem type (see dmesg)",
            })
    })
}

fn switch() -> Result<(), Failure> {
    let failure = |step: &str, errno| {
        Failure::new(status::MOUNT_FAILED)
            .text("cannot switch to the new root (")
            .text(step)
            .text("): ")
            .errno(errno)
            .text(": this needs an initramfs (rootfs) as the first root")
    };
    let initramfs = rustix::fs::open(c"/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|errno| failure("open /", errno))?;
    let device = rustix::fs::fstat(&initramfs).map_err(|errno| failure("stat /", errno))?.st_dev;
    rustix::process::chdir(NEW_ROOT).map_err(|errno| failure("chdir", errno))?;
    mounts::move_all_here(&mounts::BASIC)?;
    delete_contents(initramfs.as_fd(), device);
    rustix::mount::mount_move(c".", c"/").map_err(|errno| failure("move mount", errno))?;
    rustix::process::chroot(c".").map_err(|errno| failure("chroot", errno))?;
    rustix::process::chdir(c"/").map_err(|errno| failure("chdir", errno))
}

/// Deletes everything under `dir` that lives on `device`, leaving mount points (the new
/// root among them) alone. Best effort: whatever stays only costs memory.
fn delete_contents(dir: BorrowedFd<'_>, device: u64) {
    let mut buf = [MaybeUninit::uninit(); 1024];
    let mut entries = RawDir::new(dir, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        // Try it as a file first: that is one syscall for the common case and needs no
        // file type (which some filesystems do not report).
        if rustix::fs::unlinkat(dir, name, AtFlags::empty()) != Err(Errno::ISDIR) {
            continue;
        }
        let Ok(subdir) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        if rustix::fs::fstat(&subdir).is_ok_and(|stat| stat.st_dev == device) {
            delete_contents(subdir.as_fd(), device);
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
        }
    }
}
