//! `flint build`: fw.bin from the source tree, into `out/fw.bin`, for firmware work (a built
//! `flint` carries its own copy, see `embedded`).

pub mod recipe;

use crate::env::{self, progress};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

/// Builds `out/fw.bin` in the source tree and returns its path.
pub fn build() -> Result<PathBuf> {
    let tree = env::source_tree()
        .context("not in the flint source tree (no firmware/ and guest-init/ here or above): run `flint build` from the flint checkout")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built =
        recipe::build(&tree, &freestanding_target(&tree), &cargo, &|step| progress(step)).map_err(|e| anyhow!(e))?;

    let out = tree.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let image = out.join("fw.bin");
    let tmp = env::temp_sibling(&image);
    std::fs::copy(&built.firmware, &tmp)?;
    std::fs::rename(&tmp, &image)?;
    progress(format!(
        "firmware image {} ({} KiB: firmware code {} bytes, init {} bytes)",
        image.display(),
        std::fs::metadata(&image)?.len() / 1024,
        built.code_size,
        std::fs::metadata(&built.init)?.len()
    ));
    Ok(image)
}

/// Where the freestanding crates are built: `freestanding/` in cargo's target directory
/// (`$CARGO_TARGET_DIR` or the workspace's `target/`), which cli/build.rs uses too, so
/// `flint build` after a `cargo build` recompiles nothing.
fn freestanding_target(tree: &Path) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => tree.join(dir),
        None => tree.join("target"),
    };
    target.join("freestanding")
}
