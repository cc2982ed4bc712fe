//! Turning a bzImage into a PVH-bootable vmlinux: the compressed payload is located through the
//! setup header (`payload_offset`, `payload_length`), decompressed, and the result checked for
//! the PVH entry note with the `loader` crate. Booting the vmlinux skips the kernel's own
//! decompression and relocation.

use crate::decompress::decompress;
use crate::env;
use crate::kernel::Kernel;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};

const SETUP_SECTS: usize = 0x1f1;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

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

/// Why a bzImage's vmlinux cannot be had: no payload, an unknown or corrupt compression, or
/// not an ELF file inside. A distinct error, for the callers that can boot the bzImage instead.
#[derive(Debug)]
struct Unextractable {
    image: PathBuf,
    reason: anyhow::Error,
}

impl fmt::Display for Unextractable {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "cannot extract a PVH vmlinux from {}: {:#}", self.image.display(), self.reason)
    }
}

impl std::error::Error for Unextractable {}

/// The bzImage's vmlinux, or `None` when it has no PVH entry note.
fn extract(bzimage: &[u8]) -> Result<Option<Vec<u8>>> {
    let vmlinux = decompress(payload(bzimage)?)?;
    match loader::pvh::entry_point(&vmlinux) {
        Ok(_) => Ok(Some(vmlinux)),
        Err(loader::pvh::PvhError::NoPvhNote) => Ok(None),
        Err(e) => bail!("{e}"),
    }
}

/// Where the cache keeps what it found in the bzImage whose hash is the key: the vmlinux, or
/// a marker that it has no PVH entry. Either counts once complete ([`env::is_cached`]): a
/// vmlinux cut short by a crash or a full disk is extracted again.
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
        if env::is_cached(&self.image) {
            Some(Some(self.image.clone()))
        } else {
            env::is_cached(&self.no_pvh).then_some(None)
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
    // Concurrent flints extract it once; the others find it made when the lock is theirs.
    let _lock = env::lock_cache(&dir);
    if let Some(answer) = entry.answer() {
        return Ok(answer);
    }
    let CacheEntry { image, no_pvh } = entry;
    env::progress(format!("extracting a PVH vmlinux from {}", kernel.image.display()));
    match extract(&bzimage).map_err(|reason| Unextractable { image: kernel.image.clone(), reason })? {
        Some(vmlinux) => {
            env::make_cached_file(&image, |tmp| Ok(std::fs::write(tmp, vmlinux)?))?;
            Ok(Some(image))
        }
        None => {
            env::make_cached_file(&no_pvh, |tmp| Ok(std::fs::write(tmp, b"")?))?;
            Ok(None)
        }
    }
}

/// `pvh_image` for callers that can boot the bzImage instead (`--boot auto`): a kernel whose
/// vmlinux cannot be extracted gets a note and `None`, as one without a PVH entry does.
pub fn pvh_image_or_note(kernel: &Kernel) -> Result<Option<PathBuf>> {
    match pvh_image(kernel) {
        Err(error) => match error.downcast::<Unextractable>() {
            Ok(Unextractable { image, reason }) => {
                env::progress(format!(
                    "note: cannot extract a PVH vmlinux from {} ({reason:#}): booting its bzImage",
                    image.display()
                ));
                Ok(None)
            }
            Err(error) => Err(error),
        },
        found => found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        assert!(payload(b"not a kernel").is_err());
        assert!(extract(b"not a kernel").is_err());
    }
}
