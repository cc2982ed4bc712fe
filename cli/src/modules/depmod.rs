//! A module tree without `modules.dep` (Debian's kernel packages leave it to depmod at
//! install time) is indexed by the real depmod, once, into flint's cache: never into the tree,
//! which may be read-only or the host's own.

use crate::env::{self, progress};
use anyhow::{Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// depmod indexes `<base>/lib/modules/<version>/` and insists on a version-like name
/// ("Bad version passed" otherwise); the tree's real version does not matter to it.
const VERSION: &str = "0.0-flint";
/// The files of a tree depmod reads besides the modules; its other `modules.*` are what it
/// writes, and a stale copy in the tree is not passed on.
const INPUTS: [&str; 3] = ["modules.order", "modules.builtin", "modules.builtin.modinfo"];

/// The directory holding the tree's modules.dep, modules.softdep and modules.alias: the tree
/// itself when it has them, else depmod's output for it under `cache()`, made on first use and
/// named for the tree's files, so a changed tree gets a fresh index.
pub(super) fn index_dir(tree: &Path, cache: impl FnOnce() -> Result<PathBuf>) -> Result<PathBuf> {
    if tree.join("modules.dep").is_file() {
        return Ok(tree.to_path_buf());
    }
    let key = identity(tree).with_context(|| format!("cannot read the module tree {}", tree.display()))?;
    let dest = cache()?.join(key);
    if !dest.join("modules.dep").is_file() {
        progress(format_args!("indexing the kernel modules in {} with depmod (once)", tree.display()));
        run_depmod(tree, &dest)?;
    }
    Ok(dest)
}

/// A hash of every file's path, size and modification time: cheap (no file is read) and
/// different whenever a module is added, removed or replaced.
fn identity(tree: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    list_files(tree, Path::new(""), &mut files)?;
    files.sort();
    Ok(env::sha256_hex(files.join("\n").as_bytes()))
}

/// Symbolic links to directories (a tree's `build` and `source`) are not followed: depmod
/// skips them too.
fn list_files(dir: &Path, relative: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = relative.join(entry.file_name());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            list_files(&path, &relative, files)?;
            continue;
        }
        // A link to a module stands for the module (depmod follows it).
        let meta = if file_type.is_symlink() { std::fs::metadata(&path) } else { entry.metadata() };
        if let Some(meta) = meta.ok().filter(|meta| meta.is_file()) {
            files.push(format!("{} {} {}.{}", relative.display(), meta.size(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    Ok(())
}

/// depmod, which is often in /sbin or /usr/sbin, outside an ordinary user's PATH.
fn depmod_program() -> Option<PathBuf> {
    ["depmod", "/usr/sbin/depmod", "/sbin/depmod"].into_iter().find_map(env::find_program)
}

/// Runs depmod on `tree` and puts its index files in `dest`.
///
/// depmod writes into the tree it indexes (kmod 31's `--outdir` is not in Debian 12's kmod
/// 30), so it indexes a staging tree of symbolic links to the real tree's entries, in the
/// cache; the links are removed afterwards, leaving depmod's files.
fn run_depmod(tree: &Path, dest: &Path) -> Result<()> {
    let depmod = depmod_program().with_context(|| {
        format!(
            "depmod not found (in PATH, /usr/sbin or /sbin): flint needs it to index the kernel modules in {}, which has no modules.dep: install kmod (apt-get install kmod)",
            tree.display()
        )
    })?;
    // The links must not depend on the current directory.
    let tree = std::fs::canonicalize(tree).with_context(|| format!("cannot read {}", tree.display()))?;
    let staging = env::temp_sibling(dest);
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| -> Result<()> {
        let out = staging.join("lib/modules").join(VERSION);
        // An empty configuration: the host's /etc/depmod.d is about the host's modules.
        let config = staging.join("depmod.d");
        for dir in [&out, &config] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut links = Vec::new();
        for entry in std::fs::read_dir(&tree).with_context(|| format!("cannot read {}", tree.display()))? {
            let name = entry?.file_name();
            let name_text = name.to_string_lossy();
            if name_text.starts_with("modules.") && !INPUTS.contains(&&*name_text) {
                continue;
            }
            std::os::unix::fs::symlink(tree.join(&name), out.join(&name))
                .with_context(|| format!("cannot make a link in {}", out.display()))?;
            links.push(out.join(name));
        }
        env::tool_output(Command::new(&depmod).arg("-C").arg(&config).arg("-b").arg(&staging).arg(VERSION))?;
        for link in links {
            std::fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
        }
        env::publish(&out, dest, false)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use crate::env::TempDir;
    use crate::modules::fake::{linking_module, write, xz};
    use crate::modules::ModuleTree;

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Debian's packages ship no modules.dep: the real depmod indexes the tree into the cache,
    /// once per version of the tree, and the tree is left as it was.
    #[test]
    fn indexes_a_tree_without_modules_dep_with_depmod_into_the_cache() {
        let scratch = TempDir::new("flint-depmod").unwrap();
        let (tree, cache) = (scratch.path().join("tree"), scratch.path().join("cache"));
        let write = |path: &str, data: Vec<u8>| write(&tree, path, &data);
        write(
            "kernel/fs/ext4/ext4.ko.xz",
            xz(&linking_module(
                b"softdep=pre: crypto-crc32c\0name=ext4\0",
                &[],
                &["jbd2_journal_start", "mb_cache_create"],
            )),
        );
        write("kernel/fs/jbd2/jbd2.ko", linking_module(b"softdep=pre: crypto-crc32c\0", &["jbd2_journal_start"], &[]));
        write("kernel/fs/mbcache.ko", linking_module(b"name=mbcache\0", &["mb_cache_create"], &[]));
        write(
            "kernel/crypto/crc32c_generic.ko",
            linking_module(b"alias=crypto-crc32c\0", &[], &["crypto_register_shash"]),
        );
        write("kernel/crypto/crypto_hash.ko", linking_module(b"name=crypto_hash\0", &["crypto_register_shash"], &[]));
        write(
            "kernel/arch/x86/crypto/crc32c-intel.ko",
            linking_module(b"alias=crypto-crc32c\0alias=cpu:type:x86,ven*fam*mod*:feature:*0094*\0", &[], &[]),
        );
        write("modules.builtin", b"kernel/lib/crc16.ko\n".to_vec());
        // Left over from elsewhere: depmod writes its own.
        write("modules.alias", b"alias crypto-crc32c stale\n".to_vec());
        let open = || ModuleTree::open_in(&tree, || Ok(cache.clone())).unwrap();
        // jbd2 and mbcache need nothing of each other: their order is depmod's.
        let check = |tree: &ModuleTree| {
            let mut order: Vec<String> =
                tree.load_order(&["ext4", "crc16"]).unwrap().into_iter().map(|module| module.name).collect();
            order[2..4].sort();
            assert_eq!(order, ["crypto_hash", "crc32c_generic", "jbd2", "mbcache", "ext4"]);
        };

        check(&open());
        assert!(!tree.join("modules.dep").exists(), "the tree is not written to");
        let indexed = entries(&cache);
        assert_eq!(indexed.len(), 1);
        assert!(entries(&cache.join(&indexed[0])).contains(&"modules.softdep".to_string()));
        assert!(!entries(&cache.join(&indexed[0])).contains(&"kernel".to_string()), "only depmod's files are kept");

        // Reopened, the same index; with a module replaced, a new one.
        open();
        assert_eq!(entries(&cache), indexed);
        write("kernel/fs/mbcache.ko", linking_module(b"name=mbcache\0version=2\0", &["mb_cache_create"], &[]));
        check(&open());
        assert_eq!(entries(&cache).len(), 2);
    }
}
