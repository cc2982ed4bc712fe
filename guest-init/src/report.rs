//! Failures and the one line each prints: `flint-init: <problem>: <fix>`.
//!
//! There is no heap and no `core::fmt` on this path (it would cost more than the rest of the
//! init), so a failure carries its message in a fixed buffer built piece by piece.

use rustix::fd::BorrowedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Longer messages are cut: one console line is plenty for a problem and its fix.
const MESSAGE_MAX: usize = 400;

/// Why the init stops early: the status the VM ends with and the line that explains it.
pub struct Failure {
    pub status: u8,
    len: usize,
    message: [u8; MESSAGE_MAX],
}

impl Failure {
    pub fn new(status: u8) -> Self {
        Failure { status, len: 0, message: [0; MESSAGE_MAX] }
    }

    /// Appends trusted text as is.
    pub fn text(mut self, text: &str) -> Self {
        for &byte in text.as_bytes() {
            self.push(byte);
        }
        self
    }

    /// Appends bytes from outside (command line, file names), escaping anything that is not
    /// printable ASCII so hostile input cannot drive the console.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            if byte.is_ascii_graphic() || byte == b' ' {
                self.push(byte);
            } else {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for escaped in [b'\\', b'x', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]] {
                    self.push(escaped);
                }
            }
        }
        self
    }

    pub fn number(mut self, value: u64) -> Self {
        for &digit in loader::decimal::decimal(value, &mut [0; 20]) {
            self.push(digit);
        }
        self
    }

    /// Appends an errno as its symbolic name and meaning, e.g. `ENOENT (no such file or directory)`.
    pub fn errno(self, errno: Errno) -> Self {
        match errno_name(errno) {
            Some((name, meaning)) => self.text(name).text(" (").text(meaning).text(")"),
            None => self.text("errno ").number(errno.raw_os_error().unsigned_abs().into()),
        }
    }

    pub fn message(&self) -> &[u8] {
        &self.message[..self.len]
    }

    fn push(&mut self, byte: u8) {
        if self.len < MESSAGE_MAX {
            self.message[self.len] = byte;
            self.len += 1;
        }
    }
}

impl core::fmt::Debug for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Outside bytes are escaped, so this is UTF-8 unless the length cap split a character.
        let message = core::str::from_utf8(self.message()).unwrap_or_default();
        write!(f, "Failure({}: {message})", self.status)
    }
}

/// Prints `flint-init: <message>` as one line on the console, or in the kernel log when
/// there is no console (the kernel leaves fds 0-2 closed if it cannot open /dev/console).
pub fn print(failure: &Failure) {
    let mut line = [0u8; MESSAGE_MAX + 16];
    let prefix = b"flint-init: ";
    let len = prefix.len() + failure.len + 1;
    line[..prefix.len()].copy_from_slice(prefix);
    line[prefix.len()..len - 1].copy_from_slice(failure.message());
    line[len - 1] = b'\n';
    // SAFETY: fd 2 is never closed by the init; if the kernel did not open it, the write fails
    // with EBADF and we fall back to the kernel log.
    let stderr = unsafe { BorrowedFd::borrow_raw(2) };
    if rustix::io::write(stderr, &line[..len]).is_ok() {
        return;
    }
    if let Ok(kmsg) = rustix::fs::open("/dev/kmsg", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        // "<3>" is KERN_ERR, which `quiet` still lets through to the console.
        line.copy_within(..len, 3);
        line[..3].copy_from_slice(b"<3>");
        let _ = rustix::io::write(kmsg, &line[..len + 3]);
    }
}

/// The errnos the init can plausibly meet, so messages read as words rather than numbers.
fn errno_name(errno: Errno) -> Option<(&'static str, &'static str)> {
    Some(match errno {
        Errno::PERM => ("EPERM", "operation not permitted"),
        Errno::NOENT => ("ENOENT", "no such file or directory"),
        Errno::IO => ("EIO", "input/output error"),
        Errno::NXIO => ("ENXIO", "no such device or address"),
        Errno::TOOBIG => ("E2BIG", "argument list too long"),
        Errno::NOEXEC => ("ENOEXEC", "exec format error"),
        Errno::BADF => ("EBADF", "bad file descriptor"),
        Errno::AGAIN => ("EAGAIN", "resource temporarily unavailable"),
        Errno::NOMEM => ("ENOMEM", "out of memory"),
        Errno::ACCESS => ("EACCES", "permission denied"),
        Errno::FAULT => ("EFAULT", "bad address"),
        Errno::NOTBLK => ("ENOTBLK", "block device required"),
        Errno::BUSY => ("EBUSY", "device or resource busy"),
        Errno::EXIST => ("EEXIST", "file exists"),
        Errno::NODEV => ("ENODEV", "no such device"),
        Errno::NOTDIR => ("ENOTDIR", "not a directory"),
        Errno::ISDIR => ("EISDIR", "is a directory"),
        Errno::INVAL => ("EINVAL", "invalid argument"),
        Errno::NOTTY => ("ENOTTY", "not a terminal"),
        Errno::TXTBSY => ("ETXTBSY", "text file busy"),
        Errno::NOSPC => ("ENOSPC", "no space left on device"),
        Errno::ROFS => ("EROFS", "read-only file system"),
        Errno::NAMETOOLONG => ("ENAMETOOLONG", "file name too long"),
        Errno::NOSYS => ("ENOSYS", "function not implemented"),
        Errno::LOOP => ("ELOOP", "too many levels of symbolic links"),
        Errno::NOPKG => ("ENOPKG", "package not installed"),
        Errno::NOKEY => ("ENOKEY", "required key not available"),
        Errno::KEYREJECTED => ("EKEYREJECTED", "key was rejected"),
        Errno::UCLEAN => ("EUCLEAN", "structure needs cleaning"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_messages_and_escapes_outside_bytes() {
        let failure = Failure::new(7).text("cannot open ").bytes(b"/dev/v\x1bda\xff").text(": ").errno(Errno::NOENT);
        assert_eq!(failure.message(), b"cannot open /dev/v\\x1bda\\xff: ENOENT (no such file or directory)".as_slice());
        assert_eq!(Failure::new(0).number(0).number(18446744073709551615).message(), b"018446744073709551615");
        assert_eq!(Failure::new(0).errno(Errno::from_raw_os_error(4095)).message(), b"errno 4095");
    }

    #[test]
    fn long_messages_are_cut_not_overflowed() {
        let failure = Failure::new(1).bytes(&[0u8; 1000]);
        assert_eq!(failure.message().len(), MESSAGE_MAX);
    }
}
