//! Turning a bzImage into a PVH-bootable vmlinux: the compressed payload is located through the
//! setup header (`payload_offset`, `payload_length`), decompressed, and the result checked for
//! the PVH entry note with the `loader` crate. Booting the vmlinux skips the kernel's own
//! decompression and relocation.

use crate::env;
use crate::kernel::Kernel;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const SETUP_SECTS: usize = 0x1f1;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// The lz4 legacy frame Linux uses: magic, then blocks each prefixed by their length.
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?))
}

/// The compressed kernel inside a bzImage file.
pub fn payload(bzimage: &[u8]) -> Result<&[u8]> {
    if !loader::bzimage::is_linux_kernel(bzimage) {
        bail!("not a bzImage (no HdrS header): pass a Linux bzImage");
    }
    let setup_sects = match bzimage[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512;
    let offset = u32_at(bzimage, PAYLOAD_OFFSET).context("truncated setup header")? as usize;
    let length = u32_at(bzimage, PAYLOAD_LENGTH).context("truncated setup header")? as usize;
    bzimage
        .get(start + offset..start + offset + length)
        .context("the bzImage is truncated: its payload runs past the end of the file")
}

/// Decompresses a payload, recognising the format by its magic bytes.
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match payload {
        [0x1f, 0x8b, ..] => {
            flate2::read::GzDecoder::new(payload).read_to_end(&mut out).context("gzip payload is corrupt")?;
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            ruzstd::decoding::StreamingDecoder::new(payload)
                .context("zstd payload is corrupt")?
                .read_to_end(&mut out)
                .context("zstd payload is corrupt")?;
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            lzma_rs::xz_decompress(&mut &payload[..], &mut out)
                .map_err(|e| anyhow::anyhow!("xz payload is corrupt: {e:?}"))?;
        }
        [a, b, c, d, ..] if [*a, *b, *c, *d] == LZ4_LEGACY_MAGIC => out = lz4_legacy(&payload[4..])?,
        _ => bail!("unknown kernel compression (supported: gzip, zstd, xz, lz4): pass a vmlinux instead"),
    }
    Ok(out)
}

/// Blocks until the data ends; Linux's build appends the uncompressed size (4 bytes) after
/// the last block, which reads as a length with no block behind it.
fn lz4_legacy(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(len) = u32_at(data, 0) {
        let Some(block) = data.get(4..4 + len as usize) else { break };
        let decoded = lz4_flex::block::decompress(block, LZ4_LEGACY_BLOCK).context("lz4 payload is corrupt")?;
        out.extend_from_slice(&decoded);
        data = &data[4 + len as usize..];
    }
    if out.is_empty() {
        bail!("lz4 payload is empty or corrupt");
    }
    Ok(out)
}

/// Where the cache keeps what it found in the bzImage whose hash is the key: the vmlinux, or
/// a marker that it has no PVH entry.
struct CacheEntry {
    image: PathBuf,
    no_pvh: PathBuf,
}

impl CacheEntry {
    fn new(dir: &Path, key: &str) -> CacheEntry {
        CacheEntry { image: dir.join(format!("{key}.elf")), no_pvh: dir.join(format!("{key}.no-pvh")) }
    }

    /// The answer, once that bzImage was looked at: its vmlinux, or `None` (no PVH entry).
    fn answer(&self) -> Option<Option<PathBuf>> {
        if self.image.is_file() {
            Some(Some(self.image.clone()))
        } else {
            self.no_pvh.is_file().then_some(None)
        }
    }
}

/// The kernel's PVH-bootable vmlinux, extracted once into the cache (keyed by the bzImage's
/// content); `None` when the kernel has no PVH entry (built without `CONFIG_PVH`).
pub fn pvh_image(kernel: &Kernel) -> Result<Option<PathBuf>> {
    let dir = env::cache_subdir("vmlinux")?;
    // The bzImage's hash from the last run, while the file is the same one: no reading it.
    let identity = env::file_identity(&kernel.image);
    let known = identity.as_deref().and_then(|identity| env::recall("vmlinux-key", identity));
    if let Some(answer) = known.and_then(|key| CacheEntry::new(&dir, &key).answer()) {
        return Ok(answer);
    }
    let bzimage = std::fs::read(&kernel.image).with_context(|| format!("cannot read {}", kernel.image.display()))?;
    let key = &env::sha256_hex(&bzimage)[..32];
    if let Some(identity) = &identity {
        env::remember("vmlinux-key", identity, key);
    }
    let entry = CacheEntry::new(&dir, key);
    if let Some(answer) = entry.answer() {
        return Ok(answer);
    }
    let CacheEntry { image, no_pvh } = entry;
    env::progress(format!("extracting a PVH vmlinux from {}", kernel.image.display()));
    let vmlinux = decompress(payload(&bzimage)?)?;
    let (path, content) = match loader::pvh::entry_point(&vmlinux) {
        Ok(_) => (&image, vmlinux),
        Err(loader::pvh::PvhError::NoPvhNote) => (&no_pvh, Vec::new()),
        Err(e) => bail!("{}: {e}", kernel.image.display()),
    };
    let tmp = env::temp_sibling(path);
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)?;
    Ok(Some(image).filter(|image| image.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        assert!(payload(b"not a kernel").is_err());
        assert!(decompress(b"\0\0\0\0plain").is_err());
    }

    #[test]
    fn decompresses_gzip_and_lz4_legacy() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        assert_eq!(decompress(&gz.finish().unwrap()).unwrap(), data);

        let block = lz4_flex::block::compress(&data);
        let mut legacy = LZ4_LEGACY_MAGIC.to_vec();
        legacy.extend((block.len() as u32).to_le_bytes());
        legacy.extend(&block);
        legacy.extend((data.len() as u32).to_le_bytes());
        assert_eq!(decompress(&legacy).unwrap(), data);
    }
}
