//! Load order, as modprobe works it out: a wanted name is a module, else an alias, else
//! built in; a module comes after its hard dependencies and then its `pre:` soft dependencies
//! (modprobe's order, checked against `modprobe --show-depends` on Debian's kernel), and
//! before its `post:` soft dependencies.

use super::index::Softdeps;
use super::{canonical, modinfo, Module, ModuleTree};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

impl ModuleTree {
    /// `wanted` (module names or aliases) and everything they need, dependencies first, each
    /// once. Built-in modules are left out (already in the kernel); a wanted name that is none
    /// of those is an error.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<Module>> {
        let mut walk = Walk { tree: self, done: BTreeSet::new(), path: Vec::new(), order: Vec::new() };
        for name in wanted {
            let Some(modules) = self.lookup(name) else {
                bail!(
                    "module {name} is neither in {} nor built into the kernel: use a kernel that has it",
                    self.dir.display()
                );
            };
            for module in modules {
                walk.visit(&module)?;
            }
        }
        Ok(walk.order)
    }

    /// The modules loading `name` means: itself if the tree has a module of that name, else
    /// those an alias names, else none if it is built in; `None` if it is nothing known.
    ///
    /// Where an alias names several modules, modprobe loads them all and ignores a soft
    /// dependency that fails to load; flint's init stops at the first failure, so flint leaves
    /// out those bound to a CPU feature when there are others, or when the kernel has it built
    /// in: `crypto-crc32c` names crc32c-intel, which refuses CPUs without SSE4.2 (QEMU's default
    /// TCG one), and crc32c_generic, which loads anywhere.
    fn lookup(&self, name: &str) -> Option<Vec<String>> {
        let name = canonical(name);
        if self.index.modules.contains_key(&name) {
            return Some(vec![name]);
        }
        let (cpu_bound, portable): (Vec<String>, Vec<String>) =
            self.index.alias_targets(&name).into_iter().partition(|module| self.index.is_cpu_bound(module));
        if !portable.is_empty() {
            Some(portable)
        } else if self.index.is_builtin(&name) {
            Some(Vec::new())
        } else {
            (!cpu_bound.is_empty()).then_some(cpu_bound)
        }
    }
}

struct Walk<'a> {
    tree: &'a ModuleTree,
    done: BTreeSet<String>,
    /// The modules being visited, outermost first: how a cycle is seen and reported.
    path: Vec<String>,
    order: Vec<Module>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str) -> Result<()> {
        if self.done.contains(name) {
            return Ok(());
        }
        if self.path.iter().any(|visiting| visiting == name) {
            bail!("modules depend on each other in a cycle: {} -> {name}", self.path.join(" -> "));
        }
        let Some(entry) = self.tree.index.modules.get(name) else {
            let needed_by = self.path.last().map(|parent| format!(" (needed by {parent})")).unwrap_or_default();
            bail!(
                "module {name}{needed_by} is not in {}: reinstall the kernel's modules, or rerun depmod if the tree has a stale modules.dep",
                self.tree.dir.display()
            );
        };
        let file = self.tree.dir.join(&entry.path);
        let data = read_module(&file)?;
        let softdeps = match self.tree.index.softdeps.get(name) {
            Some(softdeps) => softdeps.clone(),
            None => Softdeps::from_modinfo(&modinfo(&data).with_context(|| format!("module {}", file.display()))?),
        };
        self.path.push(name.to_string());
        for dependency in entry.depends() {
            self.visit(&dependency)?;
        }
        self.visit_soft(&softdeps.pre)?;
        self.path.pop();
        self.done.insert(name.to_string());
        self.order.push(Module { name: name.to_string(), data });
        self.visit_soft(&softdeps.post)
    }

    /// Soft dependencies the tree has no module for are skipped, as modprobe skips them; so
    /// is one on a module being visited, whose load is already under way (vfio's `post:
    /// vfio_iommu_type1`, which depends on vfio).
    fn visit_soft(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            for module in self.tree.lookup(name).unwrap_or_default() {
                if !self.path.contains(&module) {
                    self.visit(&module)?;
                }
            }
        }
        Ok(())
    }
}

/// A module file, decompressed (the guest loads it with `finit_module`, uncompressed).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))?;
    if path.extension().is_some_and(|extension| extension == "ko") {
        return Ok(data);
    }
    crate::decompress::decompress(&data).with_context(|| format!("cannot decompress module {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;
    use crate::modules::fake::{fake_module, gzip, write, xz, zstd};

    /// Writes `files` (path, contents) under a new directory.
    fn tree(files: &[(&str, Vec<u8>)]) -> TempDir {
        let dir = TempDir::new("flint-modules-tree").unwrap();
        for (path, data) in files {
            write(dir.path(), path, data);
        }
        dir
    }

    fn open(dir: &TempDir) -> ModuleTree {
        ModuleTree::open_in(dir.path(), || panic!("a tree with modules.dep needs no depmod")).unwrap()
    }

    fn names(tree: &ModuleTree, wanted: &[&str]) -> Vec<String> {
        tree.load_order(wanted).unwrap().into_iter().map(|module| module.name).collect()
    }

    fn error(tree: &ModuleTree, wanted: &[&str]) -> String {
        tree.load_order(wanted).err().unwrap().to_string()
    }

    fn module(name: &str) -> Vec<u8> {
        fake_module(format!("name={name}\0").as_bytes())
    }

    #[test]
    fn resolves_soft_and_hard_dependencies_from_the_trees_index() {
        let dir = tree(&[
            ("kernel/fs/ext4/ext4.ko.xz", xz(&module("ext4"))),
            ("kernel/fs/jbd2/jbd2.ko.zst", zstd(&module("jbd2"))),
            ("kernel/fs/mbcache.ko.gz", gzip(&module("mbcache"))),
            ("kernel/lib/crc16.ko", module("crc16")),
            ("kernel/crypto/crc32c_generic.ko", module("crc32c_generic")),
            ("kernel/crypto/crypto_hash.ko", module("crypto_hash")),
            ("kernel/arch/x86/crypto/crc32c-intel.ko", module("crc32c_intel")),
            ("kernel/fs/overlayfs/overlay.ko", module("overlay")),
            ("kernel/fs/ovl_helper.ko", module("ovl_helper")),
            ("kernel/arch/x86/crypto/sha256-ssse3.ko", module("sha256_ssse3")),
            ("kernel/arch/x86/crypto/aesni-intel.ko", module("aesni_intel")),
            ("kernel/misc/loop1.ko", module("loop1")),
            ("kernel/misc/loop2.ko", module("loop2")),
            ("kernel/misc/broken.ko", module("broken")),
            ("kernel/vfio/vfio.ko", module("vfio")),
            ("kernel/vfio/vfio_iommu_type1.ko", module("vfio_iommu_type1")),
            (
                "modules.dep",
                b"kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko kernel/fs/mbcache.ko.gz kernel/fs/jbd2/jbd2.ko.zst\n\
                  kernel/fs/jbd2/jbd2.ko.zst:\n\
                  kernel/fs/mbcache.ko.gz:\n\
                  kernel/lib/crc16.ko:\n\
                  kernel/crypto/crc32c_generic.ko: kernel/crypto/crypto_hash.ko\n\
                  kernel/crypto/crypto_hash.ko:\n\
                  kernel/arch/x86/crypto/crc32c-intel.ko:\n\
                  kernel/fs/overlayfs/overlay.ko:\n\
                  kernel/arch/x86/crypto/sha256-ssse3.ko:\n\
                  kernel/arch/x86/crypto/aesni-intel.ko:\n\
                  kernel/fs/ovl_helper.ko:\n\
                  kernel/misc/loop1.ko: kernel/misc/loop2.ko\n\
                  kernel/misc/loop2.ko: kernel/misc/loop1.ko\n\
                  kernel/misc/broken.ko: kernel/misc/gone.ko\n\
                  kernel/vfio/vfio.ko:\n\
                  kernel/vfio/vfio_iommu_type1.ko: kernel/vfio/vfio.ko\n"
                    .to_vec(),
            ),
            (
                "modules.softdep",
                b"# Soft dependencies extracted from modules themselves.\n\
                  softdep ext4 pre: crypto-crc32c\n\
                  softdep jbd2 pre: crypto-crc32c\n\
                  softdep overlay pre: crypto-sha256 crypto-missing post: fs-ovl-helper\n\
                  softdep vfio post: vfio_iommu_type1\n"
                    .to_vec(),
            ),
            (
                "modules.alias",
                b"# Aliases extracted from modules themselves.\n\
                  alias crypto-crc32c crc32c_intel\n\
                  alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n\
                  alias crypto-crc32c crc32c_generic\n\
                  alias fs-ovl-* ovl_helper\n\
                  alias crypto-sha256 sha256_ssse3\n\
                  alias cpu:type:x86,ven*fam*mod*:feature:*0089* sha256_ssse3\n\
                  alias crypto-aes aesni_intel\n\
                  alias cpu:type:x86,ven*fam*mod*:feature:*0099* aesni_intel\n"
                    .to_vec(),
            ),
            ("modules.builtin", b"kernel/lib/crc-ccitt.ko\n".to_vec()),
            ("modules.builtin.modinfo", b"sha256_generic.license=GPL\0sha256_generic.alias=crypto-sha256\0".to_vec()),
        ]);
        let tree = open(&dir);
        // ext4's hard dependencies in modules.dep's load order, jbd2's soft dependency first
        // (through its alias, with what it needs); ext4's own is already there.
        assert_eq!(names(&tree, &["ext4"]), ["crypto_hash", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]);
        let modules = tree.load_order(&["ext4"]).unwrap();
        for module in &modules {
            assert_eq!(module.data, self::module(&module.name), "{} decompressed", module.name);
        }
        // A built-in (by alias) and an unknown soft dependency need nothing; `post:` comes after.
        assert_eq!(names(&tree, &["overlay"]), ["overlay", "ovl_helper"]);
        assert_eq!(
            names(&tree, &["fs-ovl-x", "jbd2", "ext4"]),
            ["ovl_helper", "crypto_hash", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]
        );
        // Built in, or by alias: nothing to load, not even sha256-ssse3, bound to a CPU feature.
        assert!(names(&tree, &["crc-ccitt", "crypto-sha256"]).is_empty());
        // A module bound to a CPU feature when it is all there is.
        assert_eq!(names(&tree, &["crypto-aes"]), ["aesni_intel"]);
        assert!(tree.has("crc32c-intel") && !tree.is_builtin("crc32c-intel") && tree.is_builtin("crc_ccitt"));
        assert!(error(&tree, &["nope"]).contains("module nope is neither in"));
        // A soft dependency back on a module on its way in is met by it.
        assert_eq!(names(&tree, &["vfio_iommu_type1"]), ["vfio", "vfio_iommu_type1"]);
        assert_eq!(names(&tree, &["vfio"]), ["vfio", "vfio_iommu_type1"]);
        assert!(error(&tree, &["loop1"]).contains("cycle: loop1 -> loop2 -> loop1"));
        assert!(error(&tree, &["broken"]).contains("module gone (needed by broken) is not in"));
    }

    #[test]
    fn takes_soft_dependencies_from_modinfo_when_the_index_has_none() {
        let dir = tree(&[
            ("kernel/fs/ext4.ko", fake_module(b"softdep=pre: crypto-crc32c\0name=ext4\0")),
            ("kernel/lib/crc16.ko", module("crc16")),
            ("kernel/crypto/crc32c_generic.ko", module("crc32c_generic")),
            (
                "modules.dep",
                b"kernel/fs/ext4.ko: kernel/lib/crc16.ko\nkernel/lib/crc16.ko:\nkernel/crypto/crc32c_generic.ko:\n"
                    .to_vec(),
            ),
            ("modules.alias", b"alias crypto-crc32c crc32c_generic\n".to_vec()),
        ]);
        assert_eq!(names(&open(&dir), &["ext4"]), ["crc16", "crc32c_generic", "ext4"]);
    }
}
