//! A virtio-blk disk as `loader`'s byte-addressed `ReadAt`: whole sectors go straight to the
//! caller's buffer in as few requests as possible; only a partial first or last sector passes
//! through a bounce buffer.

use crate::virtio::FirmwareHal;
use core::fmt;
use loader::read_at::ReadAt;
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;

/// QEMU's virtio-blk takes any size in one descriptor; this keeps one request's buffer
/// mapping modest on the host side while kernels still take only a handful of requests.
const MAX_REQUEST: usize = 16 << 20;

pub struct Disk<T: Transport> {
    device: VirtIOBlk<FirmwareHal, T>,
    size: u64,
}

/// The device rejected or failed a request (reads past the disk's end included: the
/// loader keeps every read inside the partitions, which the GPT checks keep inside the disk).
#[derive(Debug)]
pub struct DiskError;

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // virtio-drivers' own messages cover every device type; they would double the
        // firmware's strings for a case the host side explains better.
        f.write_str("the virtio-blk device failed a request: check the -drive image and its format")
    }
}

impl<T: Transport> Disk<T> {
    pub fn new(transport: T) -> Result<Self, DiskError> {
        let device = VirtIOBlk::new(transport).map_err(|_| DiskError)?;
        let size = device.capacity() * SECTOR_SIZE as u64;
        Ok(Disk { device, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        for (i, chunk) in buf.chunks_mut(MAX_REQUEST).enumerate() {
            let first = sector + (i * MAX_REQUEST / SECTOR_SIZE) as u64;
            self.device.read_blocks(first as usize, chunk).map_err(|_| DiskError)?;
        }
        Ok(())
    }

    /// Reads the sector holding `offset` and copies the part of it `buf` wants.
    fn read_partial(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let mut bounce = [0u8; SECTOR_SIZE];
        self.read_sectors(offset / SECTOR_SIZE as u64, &mut bounce)?;
        let start = (offset % SECTOR_SIZE as u64) as usize;
        buf.copy_from_slice(&bounce[start..start + buf.len()]);
        Ok(())
    }
}

impl<T: Transport> ReadAt for Disk<T> {
    type Error = DiskError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let sector = SECTOR_SIZE as u64;
        let head = (((sector - offset % sector) % sector) as usize).min(buf.len());
        let (head_buf, rest) = buf.split_at_mut(head);
        if head > 0 {
            self.read_partial(offset, head_buf)?;
        }
        let body_offset = offset + head as u64;
        let body = rest.len() / SECTOR_SIZE * SECTOR_SIZE;
        let (body_buf, tail_buf) = rest.split_at_mut(body);
        if body > 0 {
            self.read_sectors(body_offset / sector, body_buf)?;
        }
        if !tail_buf.is_empty() {
            self.read_partial(body_offset + body as u64, tail_buf)?;
        }
        Ok(())
    }
}
