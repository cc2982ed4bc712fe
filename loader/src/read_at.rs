//! Random access to a disk, a partition or a file by byte offset: the one I/O primitive the
//! GPT and boot image readers need, so the firmware (virtio-blk), the guest init (a block
//! device) and host tests (byte slices) share them.

/// Random access to a disk or partition, by byte offset.
pub trait ReadAt {
    type Error: core::fmt::Debug;
    /// Fills all of `buf` from byte `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// A read reached past the end of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// Byte slices for tests and host tools: reading past the end is `OutOfRange`.
impl ReadAt for &[u8] {
    type Error = OutOfRange;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let start = usize::try_from(offset).map_err(|_| OutOfRange)?;
        let src = start.checked_add(buf.len()).and_then(|end| self.get(start..end)).ok_or(OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A window [start, start+len) of another reader (a partition of a disk); reads past `len` fail.
pub struct Window<'a, R> {
    inner: &'a mut R,
    start: u64,
    len: u64,
}

impl<'a, R> Window<'a, R> {
    pub fn new(inner: &'a mut R, start: u64, len: u64) -> Self {
        Self { inner, start, len }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError<E> {
    /// The read reached past the window's end.
    OutOfRange,
    /// The underlying reader failed.
    Inner(E),
}

impl<R: ReadAt> ReadAt for Window<'_, R> {
    type Error = WindowError<R::Error>;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let end = offset.checked_add(buf.len() as u64).ok_or(WindowError::OutOfRange)?;
        if end > self.len {
            return Err(WindowError::OutOfRange);
        }
        // Only a window placed near 2^64 overflows here; no disk is that large.
        let at = self.start.checked_add(offset).ok_or(WindowError::OutOfRange)?;
        self.inner.read_at(at, buf).map_err(WindowError::Inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_within_bounds_only() {
        let data: &[u8] = &[1, 2, 3, 4, 5];
        let mut reader = data;
        let mut buf = [0; 2];
        assert_eq!(reader.read_at(3, &mut buf), Ok(()));
        assert_eq!(buf, [4, 5]);
        assert_eq!(reader.read_at(4, &mut buf), Err(OutOfRange));
        assert_eq!(reader.read_at(u64::MAX, &mut buf), Err(OutOfRange));
        assert_eq!(reader.read_at(5, &mut []), Ok(()));
    }

    #[test]
    fn windows_offset_and_bound_reads() {
        let mut data: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7];
        let mut window = Window::new(&mut data, 2, 4);
        let mut buf = [0; 2];
        assert_eq!(window.read_at(2, &mut buf), Ok(()));
        assert_eq!(buf, [4, 5]);
        assert_eq!(window.read_at(3, &mut buf), Err(WindowError::OutOfRange));
        assert_eq!(window.read_at(u64::MAX, &mut buf), Err(WindowError::OutOfRange));
        // The window may claim more than the disk holds; the disk's own error comes through.
        let mut past = Window::new(&mut data, 6, 4);
        assert_eq!(past.read_at(1, &mut buf), Err(WindowError::Inner(OutOfRange)));
    }
}
