//! `flint build`: the guest init, then the firmware with the init embedded, flattened into
//! `out/fw.bin` for `qemu-system-x86_64 -bios`.

use crate::env::{self, progress};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `out/fw.bin` in the source tree and returns its path.
pub fn build() -> Result<PathBuf> {
    let tree = env::source_tree()
        .context("not in the flint source tree (no firmware/ and guest-init/ here or above): run `flint build` from the flint checkout")?;
    env::require_tool("objcopy", "binutils")?;
    env::require_tool("strip", "binutils")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir(&tree);
    let release = target.join("release");

    progress("building the guest init (cargo build --release -p flint-guest-init)");
    env::run_tool(Command::new(&cargo).args(["build", "--release", "-p", "flint-guest-init"]).current_dir(&tree))
        .context("building the guest init failed: fix the errors above")?;
    let init = release.join("flint-init");
    let stripped = release.join(STRIPPED_INIT);
    env::run_tool(Command::new("strip").arg("-o").arg(&stripped).arg(&init))?;

    progress("building the firmware with the init embedded (cargo build --release -p flint-firmware)");
    env::run_tool(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "flint-firmware", "--bin", "flint-fw"])
            .env("FLINT_INIT", &stripped)
            .current_dir(&tree),
    )
    .context("building the firmware failed: fix the errors above")?;

    let code = firmware_code_size(&release.join("flint-fw"))?;
    if code > CODE_BUDGET {
        bail!("the firmware's code is {code} bytes, over its 64 KiB budget (the embedded init does not count): make it smaller");
    }

    let out = tree.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let image = out.join("fw.bin");
    let tmp = env::temp_sibling(&image);
    env::run_tool(Command::new("objcopy").args(["-O", "binary"]).arg(release.join("flint-fw")).arg(&tmp))?;
    std::fs::rename(&tmp, &image)?;
    let size = std::fs::metadata(&image)?.len();
    progress(format!(
        "firmware image {} ({} KiB: firmware code {code} bytes, init {} bytes)",
        image.display(),
        size / 1024,
        std::fs::metadata(&stripped)?.len()
    ));
    Ok(image)
}

/// The stripped guest init that `flint build` made (for images that carry their own).
pub fn guest_init() -> Result<PathBuf> {
    let tree = env::source_tree()
        .context("flint's guest init is built in the flint source tree: run flint from the flint checkout")?;
    let init = target_dir(&tree).join("release").join(STRIPPED_INIT);
    if !init.is_file() {
        bail!("no guest init at {}: run `flint build` first", init.display());
    }
    Ok(init)
}

/// The init as the firmware embeds it, in cargo's release directory.
const STRIPPED_INIT: &str = "flint-init.stripped";
/// The firmware proper may take at most this much of the image.
const CODE_BUDGET: u64 = 64 * 1024;

/// Bytes of the firmware's own sections in its ELF (everything but `.initramfs`, the init).
fn firmware_code_size(elf: &Path) -> Result<u64> {
    let listing = env::tool_output(Command::new("size").arg("-A").arg(elf))?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, size) = (fields.next()?, fields.next()?);
            [".text", ".rodata", ".data", ".boot", ".reset"].contains(&name).then(|| size.parse::<u64>().ok())?
        })
        .sum())
}

/// Where cargo puts its output: `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn target_dir(tree: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => tree.join(dir),
        None => tree.join("target"),
    }
}
