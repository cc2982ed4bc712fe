//! GUID Partition Table: the primary header at LBA 1 and its partition array, checked
//! against their CRC32s (UEFI 2.10, section 5.3). No allocation: the guest init, which has no
//! allocator, finds its root partition with this too. The backup GPT is never used: a disk
//! whose primary GPT is damaged is refused (docs/disk-image.md).

use crate::le;
use crate::read_at::ReadAt;
use core::fmt;

/// A GUID in its on-disk byte order (the first three fields little-endian).
pub type Guid = [u8; 16];

/// The flint boot image partition, 6af119e6-6761-4a72-bb47-a541edcc1854.
pub const FLINT_BOOT: Guid = guid(0x6af1_19e6, 0x6761, 0x4a72, [0xbb, 0x47, 0xa5, 0x41, 0xed, 0xcc, 0x18, 0x54]);
/// The Discoverable Partitions Specification's "Root Partition (x86-64)",
/// 4f68bce3-e8cd-4db1-96e7-fbcaf984b709.
pub const ROOT_X86_64: Guid = guid(0x4f68_bce3, 0xe8cd, 0x4db1, [0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09]);
/// The logical sector size flint's disks use.
pub const SECTOR: u64 = 512;

/// GPT's CRC32 (the zlib/Ethernet one). Table-less: a firmware image is small, and the GPT
/// is a few KiB.
const CRC32: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

const SIGNATURE: &[u8; 8] = b"EFI PART";
const HEADER_LBA: u64 = 1;
const MIN_HEADER_SIZE: u32 = 92;
const HEADER_CRC: usize = 16;
const MIN_ENTRY_SIZE: u32 = 128;
/// The partition array is read this much at a time, on the stack.
const CHUNK: usize = 2048;
/// Real arrays hold 128 entries of 128 bytes (16 KiB); anything far larger is damage.
const MAX_ARRAY_BYTES: u64 = 1 << 20;
/// Type GUID (16), unique GUID (16), first LBA (8), last LBA (8): all that is read of an entry.
const ENTRY_FIELDS: usize = 48;

/// The GUID `a-b-c-d` written the way GPT stores it.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
    let (a, b, c) = (a.to_le_bytes(), b.to_le_bytes(), c.to_le_bytes());
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// One used entry of the partition array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as Linux numbers it (array index + 1).
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A primary GPT header whose CRC32s (header and partition array) matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpt {
    disk_guid: Guid,
    first_usable_lba: u64,
    last_usable_lba: u64,
    entries_offset: u64,
    entry_count: u32,
    entry_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptError<E> {
    /// Reading the disk failed.
    Io(E),
    /// No "EFI PART" signature at LBA 1.
    NoGpt,
    BadHeaderCrc,
    BadEntriesCrc,
    /// The header's fields contradict the spec or the disk size.
    Damaged(&'static str),
    /// The partition found by [`Gpt::find`] does not fit in the disk.
    BadPartition {
        number: u32,
        problem: &'static str,
    },
}

impl<E: fmt::Debug> fmt::Display for GptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "reading the disk's GPT failed ({e:?}): check the disk device"),
            Self::NoGpt => f.write_str("the disk has no GPT: make it with `flint image` (see docs/disk-image.md)"),
            Self::BadHeaderCrc => f.write_str(
                "the GPT header's CRC32 does not match: the disk image is damaged, rebuild it with `flint image`",
            ),
            Self::BadEntriesCrc => f.write_str(
                "the GPT partition array's CRC32 does not match: the disk image is damaged, rebuild it with `flint image`",
            ),
            Self::Damaged(what) => {
                write!(f, "the GPT header is damaged ({what}): rebuild the disk image with `flint image`")
            }
            Self::BadPartition { number, problem } => write!(
                f,
                "GPT partition {number} is damaged ({problem}): fix the partition table or rebuild the disk image"
            ),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for GptError<E> {}

fn u32_at<E>(bytes: &[u8], off: usize) -> Result<u32, GptError<E>> {
    le::u32_at(bytes, off).ok_or(GptError::Damaged("header shorter than its fields"))
}

fn u64_at<E>(bytes: &[u8], off: usize) -> Result<u64, GptError<E>> {
    le::u64_at(bytes, off).ok_or(GptError::Damaged("header shorter than its fields"))
}

impl Gpt {
    /// Reads and checks the primary header at LBA 1 and the CRC32 of its partition array.
    /// `disk_len` is the disk's size in bytes.
    pub fn read<R: ReadAt>(disk: &mut R, disk_len: u64) -> Result<Gpt, GptError<R::Error>> {
        let sectors = disk_len / SECTOR;
        if sectors <= HEADER_LBA {
            return Err(GptError::NoGpt);
        }
        let mut header = [0u8; SECTOR as usize];
        disk.read_at(HEADER_LBA * SECTOR, &mut header).map_err(GptError::Io)?;
        if !header.starts_with(SIGNATURE) {
            return Err(GptError::NoGpt);
        }
        if u32_at(&header, 8)? >> 16 != 1 {
            return Err(GptError::Damaged("revision is not 1.x"));
        }
        let header_size = u32_at(&header, 12)?;
        if !(MIN_HEADER_SIZE..=SECTOR as u32).contains(&header_size) {
            return Err(GptError::Damaged("header size is not between 92 and 512 bytes"));
        }
        let stored_crc = u32_at(&header, HEADER_CRC)?;
        // The CRC covers the header with its own CRC field zeroed.
        let mut zeroed = header;
        zeroed[HEADER_CRC..HEADER_CRC + 4].fill(0);
        if CRC32.checksum(&zeroed[..header_size as usize]) != stored_crc {
            return Err(GptError::BadHeaderCrc);
        }
        if u64_at(&header, 24)? != HEADER_LBA {
            return Err(GptError::Damaged("the primary header does not name LBA 1 as its own"));
        }
        let (first_usable_lba, last_usable_lba) = (u64_at(&header, 40)?, u64_at(&header, 48)?);
        if first_usable_lba > last_usable_lba || last_usable_lba >= sectors {
            return Err(GptError::Damaged("the usable area is empty or lies past the end of the disk"));
        }
        let (entries_lba, entry_count, entry_size) = (u64_at(&header, 72)?, u32_at(&header, 80)?, u32_at(&header, 84)?);
        if entry_size < MIN_ENTRY_SIZE || entry_size % 8 != 0 || entry_size as usize > CHUNK {
            return Err(GptError::Damaged("partition entry size is not 128 to 2048 bytes in steps of 8"));
        }
        let array_len = u64::from(entry_count) * u64::from(entry_size);
        if array_len > MAX_ARRAY_BYTES {
            return Err(GptError::Damaged("the partition array is larger than 1 MiB"));
        }
        let entries_offset = entries_lba.saturating_mul(SECTOR);
        // The array sits between the header and the usable area, so it is within the disk.
        if entries_lba <= HEADER_LBA || entries_offset.saturating_add(array_len) > first_usable_lba * SECTOR {
            return Err(GptError::Damaged("the partition array overlaps the header or the usable area"));
        }
        let gpt = Gpt {
            disk_guid: header[56..72].try_into().expect("16 bytes"),
            first_usable_lba,
            last_usable_lba,
            entries_offset,
            entry_count,
            entry_size,
        };
        let mut crc = CRC32.digest();
        gpt.for_each_chunk(disk, |_, chunk| {
            crc.update(chunk);
            None::<()>
        })?;
        if crc.finalize() != u32_at(&header, 88)? {
            return Err(GptError::BadEntriesCrc);
        }
        Ok(gpt)
    }

    /// The disk's own GUID.
    pub fn disk_guid(&self) -> &Guid {
        &self.disk_guid
    }

    /// First partition (array order) with this type; `Ok(None)` if none. A match that lies
    /// outside the usable area or ends before it starts is an error.
    pub fn find<R: ReadAt>(&self, disk: &mut R, type_guid: &Guid) -> Result<Option<Partition>, GptError<R::Error>> {
        let size = self.entry_size as usize;
        let found = self.for_each_chunk(disk, |first_index, chunk| {
            chunk.chunks_exact(size).zip(first_index..).find_map(|(entry, index)| {
                let fields: [u8; ENTRY_FIELDS] = entry.get(..ENTRY_FIELDS)?.try_into().ok()?;
                (fields[..16] == type_guid[..]).then_some((index, fields))
            })
        })?;
        found.map(|(index, entry)| self.partition(index, &entry)).transpose()
    }

    fn partition<E>(&self, index: u32, entry: &[u8; ENTRY_FIELDS]) -> Result<Partition, GptError<E>> {
        let number = index + 1;
        let (first, last) = (u64_at(entry, 32)?, u64_at(entry, 40)?);
        if last < first {
            return Err(GptError::BadPartition { number, problem: "it ends before it starts" });
        }
        if first < self.first_usable_lba || last > self.last_usable_lba {
            return Err(GptError::BadPartition { number, problem: "it lies outside the disk's usable area" });
        }
        Ok(Partition {
            number,
            type_guid: entry[..16].try_into().expect("16 bytes"),
            unique_guid: entry[16..32].try_into().expect("16 bytes"),
            // Within the disk (checked above and in `read`), so these cannot overflow.
            start: first * SECTOR,
            len: (last - first + 1) * SECTOR,
        })
    }

    /// Reads the partition array in whole-entry chunks, calling `visit(index of the chunk's
    /// first entry, chunk)` until it returns `Some`.
    fn for_each_chunk<R: ReadAt, T>(
        &self,
        disk: &mut R,
        mut visit: impl FnMut(u32, &[u8]) -> Option<T>,
    ) -> Result<Option<T>, GptError<R::Error>> {
        // `read` checked the entry size (128 to 2048 bytes): no division by zero, and a chunk
        // holds at least one entry. The `min`s keep the compiler's bounds checks away.
        let per_chunk = (CHUNK / self.entry_size.max(1) as usize) as u32;
        let mut buf = [0u8; CHUNK];
        let mut index = 0;
        while index < self.entry_count {
            let count = per_chunk.min(self.entry_count - index);
            let chunk = &mut buf[..((count * self.entry_size) as usize).min(CHUNK)];
            let offset = self.entries_offset + u64::from(index) * u64::from(self.entry_size);
            disk.read_at(offset, chunk).map_err(GptError::Io)?;
            if let Some(found) = visit(index, chunk) {
                return Ok(Some(found));
            }
            index += count;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_at::OutOfRange;
    use crate::testutil::{assert_one_line, gpt_disk, reseal_gpt, DISK_SECTORS};

    const OTHER: Guid = [7; 16];

    fn read(disk: &[u8]) -> Result<Gpt, GptError<OutOfRange>> {
        Gpt::read(&mut &disk[..], disk.len() as u64)
    }

    #[test]
    fn guids_are_stored_mixed_endian() {
        assert_eq!(FLINT_BOOT[..4], [0xe6, 0x19, 0xf1, 0x6a]);
        assert_eq!(FLINT_BOOT[4..8], [0x61, 0x67, 0x72, 0x4a]);
        assert_eq!(FLINT_BOOT[8..], [0xbb, 0x47, 0xa5, 0x41, 0xed, 0xcc, 0x18, 0x54]);
        assert_eq!(ROOT_X86_64[..8], [0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d]);
    }

    #[test]
    fn finds_the_first_partition_of_a_type() {
        let disk =
            gpt_disk(&[(OTHER, 34, 99), (FLINT_BOOT, 100, 199), (ROOT_X86_64, 200, 299), (FLINT_BOOT, 300, 399)]);
        let gpt = read(&disk).unwrap();
        let boot = gpt.find(&mut &disk[..], &FLINT_BOOT).unwrap().unwrap();
        assert_eq!((boot.number, boot.start, boot.len), (2, 100 * 512, 100 * 512));
        assert_eq!((boot.type_guid, boot.unique_guid), (FLINT_BOOT, [2; 16]));
        let root = gpt.find(&mut &disk[..], &ROOT_X86_64).unwrap().unwrap();
        assert_eq!((root.number, root.start, root.len), (3, 200 * 512, 100 * 512));
        assert_eq!(gpt.find(&mut &disk[..], &[9; 16]), Ok(None));
        assert_eq!(gpt.disk_guid(), &[0xd1; 16]);
    }

    #[test]
    fn finds_partitions_past_the_first_chunk() {
        let mut parts = vec![(OTHER, 34, 34); 40];
        parts.push((ROOT_X86_64, 40, 49));
        let disk = gpt_disk(&parts);
        let root = read(&disk).unwrap().find(&mut &disk[..], &ROOT_X86_64).unwrap().unwrap();
        assert_eq!((root.number, root.start), (41, 40 * 512));
    }

    #[test]
    fn rejects_damaged_headers() {
        use GptError::*;
        let check = |mutate: &dyn Fn(&mut Vec<u8>), want: GptError<OutOfRange>| {
            let mut disk = gpt_disk(&[(FLINT_BOOT, 100, 199)]);
            mutate(&mut disk);
            assert_eq!(read(&disk), Err(want));
            assert_one_line(&want);
        };
        // Sets a little-endian header field of `width` bytes and fixes the CRCs.
        let field = |off: usize, width: usize, value: u64| {
            move |d: &mut Vec<u8>| {
                d[512 + off..512 + off + width].copy_from_slice(&value.to_le_bytes()[..width]);
                reseal_gpt(d);
            }
        };
        check(&|d| d[512] = b'e', NoGpt);
        check(&|d| d.truncate(1000), NoGpt);
        check(&|d| d[512 + 40] ^= 1, BadHeaderCrc);
        check(&|d| d[1024 + 200] ^= 1, BadEntriesCrc);
        check(&field(8, 4, 2), Damaged("revision is not 1.x"));
        check(&field(12, 4, 600), Damaged("header size is not between 92 and 512 bytes"));
        check(&field(24, 8, 5), Damaged("the primary header does not name LBA 1 as its own"));
        let past_end = Damaged("the usable area is empty or lies past the end of the disk");
        check(&field(48, 8, DISK_SECTORS), past_end);
        check(&field(48, 8, 33), past_end);
        let entry_size = Damaged("partition entry size is not 128 to 2048 bytes in steps of 8");
        check(&field(84, 4, 120), entry_size);
        check(&field(84, 4, 132), entry_size);
        check(&field(80, 4, 100_000), Damaged("the partition array is larger than 1 MiB"));
        let overlap = Damaged("the partition array overlaps the header or the usable area");
        check(&field(72, 8, 1), overlap);
        check(&field(80, 4, 200), overlap);
    }

    #[test]
    fn rejects_partitions_outside_the_disk() {
        let check = |part: (Guid, u64, u64), problem| {
            let disk = gpt_disk(&[(OTHER, 34, 40), part]);
            let found = read(&disk).unwrap().find(&mut &disk[..], &FLINT_BOOT);
            let want = GptError::BadPartition { number: 2, problem };
            assert_eq!(found, Err(want));
            assert_one_line(&want);
        };
        check((FLINT_BOOT, DISK_SECTORS - 10, DISK_SECTORS + 5), "it lies outside the disk's usable area");
        check((FLINT_BOOT, 10, 50), "it lies outside the disk's usable area");
        check((FLINT_BOOT, 60, 50), "it ends before it starts");
    }

    #[test]
    fn passes_read_errors_through() {
        let disk = gpt_disk(&[(FLINT_BOOT, 100, 199)]);
        // The disk claims more than the reader holds: reading the array fails.
        let short = &disk[..1024 + 300];
        assert_eq!(Gpt::read(&mut &short[..], disk.len() as u64), Err(GptError::Io(OutOfRange)));
        assert_one_line(&GptError::Io(OutOfRange));
    }
}
