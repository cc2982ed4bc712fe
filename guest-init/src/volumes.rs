//! Host directories (`flint.volumes=`), mounted once the root is in place and before the
//! workload starts. The list is encoded as `flint.argv` is (see `argv`); item N is
//! `TYPE:MODE:PATH` for the device the host tagged `flint-vol<N>`: TYPE `virtiofs` or `9p`,
//! MODE `ro` or `rw`, PATH the absolute mount point, made (with its parents) if missing.

use crate::argv::Decoder;
use crate::report::Failure;
use crate::status;
use core::ffi::CStr;
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::MountFlags;

const PATH_MAX: usize = 4096;
/// 9p's largest message with Linux's virtio transport (its ring of 128 pages, less 3): the
/// default (8 KiB) splits every large read or write into many round trips.
const NINE_P_OPTIONS: &CStr = c"trans=virtio,version=9p2000.L,msize=512000";

pub fn mount_all(encoded: &[u8]) -> Result<(), Failure> {
    let mut decoder = Decoder::new(encoded).map_err(|_| bad("is not a list encoded as flint.argv is"))?;
    // The item with room for a NUL after it.
    let mut item = [0u8; PATH_MAX + 16];
    let mut index = 0;
    while let Some(len) = decoder.next_into(&mut item[..PATH_MAX + 15]) {
        let len = len.map_err(|_| bad("has an item that is not unpadded base64url, or too long"))?;
        item[len] = 0;
        let (fstype, read_only, path) = split(&item[..=len])
            .ok_or_else(|| bad("has an item that is not TYPE:ro|rw:PATH (TYPE virtiofs or 9p, PATH absolute)"))?;
        mount_one(index, fstype, read_only, path)?;
        index += 1;
    }
    Ok(())
}

/// `TYPE:MODE:PATH\0` into the filesystem type, read-only or not, and the path.
fn split(item: &[u8]) -> Option<(&'static CStr, bool, &CStr)> {
    let (fstype, rest) = if let Some(rest) = item.strip_prefix(b"virtiofs:") {
        (c"virtiofs", rest)
    } else {
        (c"9p", item.strip_prefix(b"9p:")?)
    };
    let (read_only, path) =
        if let Some(path) = rest.strip_prefix(b"ro:") { (true, path) } else { (false, rest.strip_prefix(b"rw:")?) };
    let path = CStr::from_bytes_with_nul(path).ok()?;
    path.to_bytes().starts_with(b"/").then_some((fstype, read_only, path))
}

fn mount_one(index: u32, fstype: &CStr, read_only: bool, path: &CStr) -> Result<(), Failure> {
    make_dirs(path);
    // `flint-vol<N>`, NUL-terminated.
    let mut tag = *b"flint-vol\0\0\0\0\0\0\0\0\0\0\0";
    let digits = decimal(index, &mut tag[9..]);
    let tag = CStr::from_bytes_until_nul(&tag[..9 + digits + 1]).expect("NUL-terminated");
    let flags = if read_only { MountFlags::RDONLY } else { MountFlags::empty() };
    let data = if fstype == c"9p" { NINE_P_OPTIONS } else { c"" };
    rustix::mount::mount(tag, path, fstype, flags, data).map_err(|errno| {
        Failure::new(status::MOUNT_FAILED)
            .text("cannot mount volume ")
            .bytes(tag.to_bytes())
            .text(" (")
            .bytes(fstype.to_bytes())
            .text(") on ")
            .bytes(path.to_bytes())
            .text(": ")
            .errno(errno)
            .text(match errno {
                Errno::NOENT => {
                    ": the mount point is missing and the root is read-only: create that directory in the root image, or use --overlay"
                }
                Errno::NODEV => ": the kernel lacks this filesystem: list its module in flint.modules",
                _ => ": see the console (dmesg) for the kernel's reason",
            })
    })
}

/// Makes `path` and its missing parents (best effort: on a read-only root the mount then says
/// what is missing).
fn make_dirs(path: &CStr) {
    let bytes = path.to_bytes_with_nul();
    let mut prefix = [0u8; PATH_MAX + 16];
    for (end, _) in bytes.iter().enumerate().skip(1).filter(|&(_, &byte)| byte == b'/' || byte == 0) {
        prefix[..end].copy_from_slice(&bytes[..end]);
        prefix[end] = 0;
        if let Ok(dir) = CStr::from_bytes_with_nul(&prefix[..=end]) {
            let _ = rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755));
        }
    }
}

/// Writes `value` in decimal at the start of `out`; returns how many digits.
fn decimal(mut value: u32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(digits[..len].iter().rev()) {
        *slot = *digit;
    }
    len
}

fn bad(problem: &str) -> Failure {
    Failure::new(status::BAD_PARAMETERS).text("flint.volumes ").text(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_name_the_filesystem_the_mode_and_the_mount_point() {
        assert_eq!(split(b"virtiofs:rw:/data\0"), Some((c"virtiofs", false, c"/data")));
        assert_eq!(split(b"9p:ro:/a:b\0"), Some((c"9p", true, c"/a:b")));
        for bad in [&b"nfs:rw:/x\0"[..], b"virtiofs:/x\0", b"9p:rx:/x\0", b"9p:ro:x\0", b"9p:ro:/x\0y\0"] {
            assert_eq!(split(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tags_count_in_decimal() {
        let mut out = [0u8; 10];
        assert_eq!(decimal(0, &mut out), 1);
        assert_eq!(&out[..1], b"0");
        assert_eq!(decimal(4021, &mut out), 4);
        assert_eq!(&out[..4], b"4021");
    }
}
