//! A virtio-blk disk as `loader`'s byte-addressed `ReadAt`. Each request costs a round trip
//! through QEMU's main loop, which under TCG outweighs the bytes it moves: large reads go
//! straight to the caller's buffer in as few requests as possible, and everything small
//! (the GPT, ELF and PE headers and tables, partial sectors) is served from one cached
//! 64 KiB block, so reading a GPT or probing a vmlinux takes a request or two, not dozens.

use crate::layout;
use crate::memory::phys_mut;
use crate::virtio::{self, Device};
use loader::read_at::ReadAt;

const SECTOR_SIZE: usize = 512;
/// virtio-blk's request header (type, reserved, sector) and status byte (virtio 1.0, 5.2.6),
/// in the DMA pool.
const HEADER: u64 = virtio::REQUEST;
const HEADER_LEN: u32 = 16;
const STATUS: u64 = HEADER + HEADER_LEN as u64;
const REQUEST_READ: u32 = 0;
const STATUS_OK: u8 = 0;

pub struct Disk {
    device: Device,
    size: u64,
    /// The disk offset of the block in `layout::DISK_CACHE`, if any.
    cached: Option<u64>,
}

/// The device rejected or failed a request (reads past the disk's end included: the
/// loader keeps every read inside the partitions, which the GPT checks keep inside the disk).
#[derive(Debug)]
pub struct DiskError;

impl Disk {
    /// A started virtio-blk device; its capacity is the first field of its configuration.
    pub fn new(device: Device) -> Self {
        let sectors = u64::from(device.config32(0)) | u64::from(device.config32(4)) << 32;
        Disk { device, size: sectors * SECTOR_SIZE as u64, cached: None }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// One request, however large: QEMU's virtio-blk sets no size limit, and a descriptor
    /// holds up to 4 GiB, more than the identity-mapped RAM a destination can be in.
    fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let len = u32::try_from(buf.len()).map_err(|_| DiskError)?;
        // SAFETY: the request area of the DMA pool, which only this disk's requests use.
        let request = unsafe { phys_mut(HEADER, HEADER_LEN as usize + 1) };
        request[..4].copy_from_slice(&REQUEST_READ.to_le_bytes());
        request[4..8].fill(0);
        request[8..16].copy_from_slice(&sector.to_le_bytes());
        request[16] = !STATUS_OK;
        let data = buf.as_mut_ptr() as u64;
        self.device.request(&[(HEADER, HEADER_LEN, false), (data, len, true), (STATUS, 1, true)]);
        // SAFETY: as above; the device has written the status byte.
        match unsafe { core::ptr::read_volatile(STATUS as *const u8) } {
            STATUS_OK => Ok(()),
            _ => Err(DiskError),
        }
    }

    /// The cached block holding `offset` (read first if another one is cached), and where
    /// `offset` lies in it.
    fn cached_block(&mut self, offset: u64) -> Result<(&'static [u8], usize), DiskError> {
        let block = offset / CACHE_BLOCK as u64 * CACHE_BLOCK as u64;
        // The disk's size is whole sectors, so a short last block still is.
        let len = (self.size.saturating_sub(block)).min(CACHE_BLOCK as u64) as usize;
        if len == 0 {
            return Err(DiskError);
        }
        // SAFETY: the disk cache area of layout.rs, used by this one disk only.
        let cache = unsafe { phys_mut(layout::DISK_CACHE, len) };
        if self.cached != Some(block) {
            self.cached = None;
            self.read_sectors(block / SECTOR_SIZE as u64, cache)?;
            self.cached = Some(block);
        }
        Ok((cache, (offset - block) as usize))
    }
}

/// Reads smaller than this, or not starting on a sector, go through the cache.
const CACHE_BLOCK: usize = layout::DISK_CACHE_SIZE;

impl ReadAt for Disk {
    type Error = DiskError;

    fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> Result<(), DiskError> {
        while !buf.is_empty() {
            let whole_sectors = buf.len() / SECTOR_SIZE * SECTOR_SIZE;
            let done = if offset.is_multiple_of(SECTOR_SIZE as u64) && whole_sectors >= CACHE_BLOCK {
                self.read_sectors(offset / SECTOR_SIZE as u64, &mut buf[..whole_sectors])?;
                whole_sectors
            } else {
                let (block, at) = self.cached_block(offset)?;
                let cached = block.get(at..).unwrap_or_default();
                let n = buf.len().min(cached.len());
                if n == 0 {
                    return Err(DiskError);
                }
                buf[..n].copy_from_slice(&cached[..n]);
                n
            };
            offset += done as u64;
            buf = &mut buf[done..];
        }
        Ok(())
    }
}
