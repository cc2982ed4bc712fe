//! The standard filesystems a workload expects, mounted in the initramfs first (the init
//! needs /proc and /dev itself) and again inside the new root.

use crate::report::Failure;
use crate::status;
use core::ffi::CStr;
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

pub struct Mount {
    fstype: &'static CStr,
    target: &'static CStr,
    flags: MountFlags,
    data: &'static CStr,
}

const fn mount(fstype: &'static CStr, target: &'static CStr, flags: MountFlags, data: &'static CStr) -> Mount {
    Mount { fstype, target, flags, data }
}

const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);
const KERNEL_FS: MountFlags = NOSUID_NODEV.union(MountFlags::NOEXEC);

/// What the init itself needs: device nodes (the root device), /proc (the command line), /sys.
pub const BASIC: [Mount; 3] = [
    mount(c"devtmpfs", c"/dev", MountFlags::NOSUID, c"mode=0755"),
    mount(c"proc", c"/proc", KERNEL_FS, c""),
    mount(c"sysfs", c"/sys", KERNEL_FS, c""),
];

/// What workloads expect on top: ptys, POSIX shared memory and a writable /tmp even on a
/// read-only root.
pub const EXTRA: [Mount; 3] = [
    mount(c"devpts", c"/dev/pts", MountFlags::NOSUID.union(MountFlags::NOEXEC), c"mode=0620,ptmxmode=0666"),
    mount(c"tmpfs", c"/dev/shm", NOSUID_NODEV, c"mode=1777"),
    mount(c"tmpfs", c"/tmp", NOSUID_NODEV, c"mode=1777"),
];

pub fn mount_all(mounts: &[Mount]) -> Result<(), Failure> {
    for mount in mounts {
        // The mount point may be missing; creating it fails harmlessly on a read-only root,
        // and then the mount error below explains what to do.
        let _ = rustix::fs::mkdir(mount.target, Mode::from_raw_mode(0o755));
        rustix::mount::mount(mount.fstype, mount.target, mount.fstype, mount.flags, mount.data).map_err(|errno| {
            Failure::new(status::MOUNT_FAILED)
                .text("cannot mount ")
                .bytes(mount.fstype.to_bytes())
                .text(" on ")
                .bytes(mount.target.to_bytes())
                .text(": ")
                .errno(errno)
                .text(match errno {
                    Errno::NOENT => ": create that directory in the root image",
                    _ => ": the kernel needs this filesystem built in",
                })
        })?;
    }
    Ok(())
}

/// Detaches `mounts` (they are about to be hidden under the new root); errors are moot then.
pub fn detach_all(mounts: &[Mount]) {
    for mount in mounts.iter().rev() {
        let _ = rustix::mount::unmount(mount.target, UnmountFlags::DETACH);
    }
}
