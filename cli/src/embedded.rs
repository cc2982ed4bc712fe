//! The firmware image and guest init built into this binary by cli/build.rs: `flint` runs
//! jobs from any directory, installed or not. QEMU and disk images want files, so each is
//! written once into the cache under its content hash.

use crate::env;
use anyhow::Result;
use std::path::PathBuf;

const FIRMWARE: &[u8] = include_bytes!(env!("FLINT_EMBEDDED_FW"));
const INIT: &[u8] = include_bytes!(env!("FLINT_EMBEDDED_INIT"));

/// The embedded fw.bin as a file.
pub fn firmware() -> Result<PathBuf> {
    materialize(&format!("fw-{}.bin", env!("FLINT_EMBEDDED_FW_SHA")), FIRMWARE)
}

/// The embedded guest init (stripped) as a file.
pub fn guest_init() -> Result<PathBuf> {
    materialize(&format!("flint-init-{}", env!("FLINT_EMBEDDED_INIT_SHA")), INIT)
}

/// `bytes` in `embedded/<name>` of the cache; written (atomically) unless the file there holds
/// them already (compared, not trusted: a crash may have cut an older flint's copy short).
fn materialize(name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = env::cache_subdir("embedded")?.join(name);
    env::cache_bytes(&path, bytes)?;
    Ok(path)
}
