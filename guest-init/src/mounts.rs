//! The standard filesystems a workload expects, mounted in the initramfs first (the init
//! needs /proc and /dev itself) and moved into the new root.

use crate::report::Failure;
use crate::status;
use core::ffi::CStr;
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::MountFlags;

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
        make_mount_point(mount.target);
        rustix::mount::mount(mount.fstype, mount.target, mount.fstype, mount.flags, mount.data)
            .map_err(|errno| failure("cannot mount ", mount, errno))?;
    }
    Ok(())
}

/// Moves `mounts` to the same places under the current directory (the new root): cheaper
/// than unmounting and mounting them again, and what they hold stays.
pub fn move_all_here(mounts: &[Mount]) -> Result<(), Failure> {
    for mount in mounts {
        let relative = relative(mount.target);
        make_mount_point(relative);
        rustix::mount::mount_move(mount.target, relative).map_err(|errno| failure("cannot move ", mount, errno))?;
    }
    Ok(())
}

/// The mount point may be missing; creating it fails harmlessly on a read-only root, and
/// then the mount error explains what to do.
fn make_mount_point(path: &CStr) {
    let _ = rustix::fs::mkdir(path, Mode::from_raw_mode(0o755));
}

/// `/dev` as `dev`.
fn relative(absolute: &'static CStr) -> &'static CStr {
    let bytes = absolute.to_bytes_with_nul();
    CStr::from_bytes_with_nul(bytes.strip_prefix(b"/").unwrap_or(bytes)).unwrap_or(absolute)
}

fn failure(what: &str, mount: &Mount, errno: Errno) -> Failure {
    Failure::new(status::MOUNT_FAILED)
        .text(what)
        .bytes(mount.fstype.to_bytes())
        .text(" on ")
        .bytes(mount.target.to_bytes())
        .text(": ")
        .errno(errno)
        .text(match errno {
            Errno::NOENT => ": create that directory in the root image",
            _ => ": the kernel needs this filesystem built in",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_relative_to_the_new_root() {
        assert_eq!(relative(c"/dev"), c"dev");
        assert_eq!(relative(c"/dev/pts"), c"dev/pts");
        assert_eq!(relative(c"sys"), c"sys");
    }
}
