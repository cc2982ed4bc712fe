//! Whole reads and writes on a descriptor: the kernel may move fewer bytes than asked, or be
//! interrupted by a signal before moving any.

use rustix::fd::AsFd;
use rustix::io::Errno;

/// Writes all of `bytes`.
pub fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Fills `into`; EPIPE if the other end closed first.
pub fn read_all(fd: impl AsFd, mut into: &mut [u8]) -> Result<(), Errno> {
    while !into.is_empty() {
        match rustix::io::read(&fd, &mut *into) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(read) => into = &mut into[read..],
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}
