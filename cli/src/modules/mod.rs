//! Kernel modules: which ones the guest needs and in what order, worked out on the host as
//! modprobe would, from the module tree's index (depmod's modules.dep, modules.softdep and
//! modules.alias; `depmod.rs` makes them for a tree that ships without).
//!
//! The guest init has no modprobe: it loads `flint.modules=` in the order given from
//! `/lib/modules/<name>.ko`.

mod depmod;
mod elf;
#[cfg(test)]
mod fake;
mod index;
mod resolve;
mod signature;

pub use elf::{depends, modinfo};
pub use signature::Signatures;

use crate::initramfs::Initramfs;
use crate::kernel::{Kernel, Provided};
use anyhow::{bail, Context, Result};
use index::Index;
use std::path::{Path, PathBuf};

/// A module name or alias as the kernel's tools compare them: `-` and `_` are the same, `_`
/// is canonical; a `-` inside an alias's `[...]` range stays (kmod's alias_normalize).
pub fn canonical(name: &str) -> String {
    let mut in_range = false;
    name.chars()
        .map(|c| match c {
            '[' => {
                in_range = true;
                c
            }
            ']' => {
                in_range = false;
                c
            }
            '-' if !in_range => '_',
            c => c,
        })
        .collect()
}

/// A kernel's module tree (`modules/` of a cached kernel, or `/lib/modules/<version>`) and its
/// index.
pub struct ModuleTree {
    dir: PathBuf,
    index: Index,
}

/// A module ready for the initramfs: its canonical name and its uncompressed `.ko`.
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

impl ModuleTree {
    pub fn open(dir: &Path) -> Result<ModuleTree> {
        ModuleTree::open_in(dir, || crate::env::cache_subdir("depmod"))
    }

    /// With depmod's output for a tree without an index kept under `cache()`.
    fn open_in(dir: &Path, cache: impl FnOnce() -> Result<PathBuf>) -> Result<ModuleTree> {
        let index_dir = depmod::index_dir(dir, cache)?;
        Ok(ModuleTree { dir: dir.to_path_buf(), index: Index::read(&index_dir, dir)? })
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.modules.contains_key(&canonical(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.index.is_builtin(&canonical(name))
    }
}

/// A driver or filesystem the guest needs: the kernel option that provides it, the module
/// that holds it when it is not built in, and what it is for (named in errors).
pub struct Need {
    pub option: &'static str,
    pub module: &'static str,
    pub purpose: &'static str,
}

/// Puts `modules` in `archive` where flint's init loads them from (`flint.modules`):
/// `/lib/modules/<name>.ko`.
pub fn add_to_initramfs(archive: &mut Initramfs, modules: &[Module], signatures: Signatures) {
    for module in modules {
        archive.file(&format!("/lib/modules/{}.ko", module.name), 0o644, signatures.apply(&module.data).to_vec());
    }
}

/// The modules among `needs` that `kernel` has as modules (built-in ones need nothing), with
/// what they need, in load order; an error names everything the kernel lacks.
pub fn load_list(kernel: &Kernel, needs: &[Need]) -> Result<Vec<Module>> {
    let tree = kernel.modules.as_deref().map(ModuleTree::open).transpose()?;
    let mut wanted = Vec::new();
    let mut absent = Vec::new();
    for need in needs {
        match kernel.provides(need.option, need.module, tree.as_ref()) {
            Provided::BuiltIn => {}
            Provided::Module => wanted.push(need.module),
            Provided::Absent => absent.push(need),
        }
    }
    if !absent.is_empty() {
        bail!(lacking(&kernel.label, &absent));
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let tree = tree.with_context(|| {
        format!(
            "kernel {} needs modules ({}) but has no modules/ directory next to it: put its module tree there",
            kernel.label,
            wanted.join(", ")
        )
    })?;
    tree.load_order(&wanted)
}

/// The error for a kernel without what the guest `absent` needs, all named at once.
fn lacking(label: &str, absent: &[&Need]) -> String {
    let options: Vec<String> = absent.iter().map(|need| format!("{} ({})", need.option, need.purpose)).collect();
    format!(
        "kernel {label} lacks {}: use a kernel that has them, built in or as modules (`flint kernel config` prints the fragment to merge into a kernel config)",
        options.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_use_underscores_outside_ranges() {
        assert_eq!(canonical("crc32c-intel"), "crc32c_intel");
        assert_eq!(canonical("usb:v13FDp3940d0[0-2]*dc-x"), "usb:v13FDp3940d0[0-2]*dc_x");
    }

    #[test]
    fn names_every_option_the_kernel_lacks() {
        let console =
            Need { option: "CONFIG_VIRTIO_CONSOLE", module: "virtio_console", purpose: "the workload's stdio" };
        let erofs = Need { option: "CONFIG_EROFS_FS", module: "erofs", purpose: "the erofs root" };
        assert_eq!(
            lacking("debian-x", &[&console, &erofs]),
            "kernel debian-x lacks CONFIG_VIRTIO_CONSOLE (the workload's stdio), CONFIG_EROFS_FS (the erofs root): \
             use a kernel that has them, built in or as modules (`flint kernel config` prints the fragment to merge into a kernel config)"
        );
    }
}
