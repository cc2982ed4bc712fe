//! Kernel modules: finding them in a kernel's module tree, reading their `.modinfo`
//! dependencies and ordering them so each loads after the modules it needs.
//!
//! The guest init has no modprobe: it loads `flint.modules=` in the order given from
//! `/lib/modules/<name>.ko`, so the host works the order out here.

use crate::initramfs::Initramfs;
use crate::kernel::{Kernel, Provided};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A module name as the kernel knows it: `-` and `_` are the same, `_` is canonical.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The `.modinfo` section of a module: `key=value` strings separated by NULs.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    let section = elf_section(elf, ".modinfo").context("no .modinfo section: not a kernel module")?;
    Ok(section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = std::str::from_utf8(entry).ok()?;
            let (key, value) = entry.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect())
}

/// The modules a module's `depends=` lists.
pub fn depends(elf: &[u8]) -> Result<Vec<String>> {
    Ok(modinfo(elf)?
        .into_iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(',').filter(|n| !n.is_empty()).map(canonical).collect::<Vec<_>>())
        .collect())
}

/// The contents of the section called `name` in a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // ELF magic, 64-bit class, little-endian.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let header = |index: usize| shoff.checked_add(index.checked_mul(shentsize)?);
    let section = |index: usize| -> Option<(u32, &'a [u8])> {
        let at = header(index)?;
        let offset = usize::try_from(u64_at(at + 24)?).ok()?;
        let size = usize::try_from(u64_at(at + 32)?).ok()?;
        Some((u32_at(at)?, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    (0..shnum).find_map(|index| {
        let (name_offset, data) = section(index)?;
        let rest = names.get(name_offset as usize..)?;
        let section_name = &rest[..rest.iter().position(|&b| b == 0)?];
        (section_name == name.as_bytes()).then_some(data)
    })
}

/// A kernel's module tree (`modules/` of a cached kernel, or `/lib/modules/<version>`).
pub struct ModuleTree {
    dir: PathBuf,
    /// Canonical name -> file.
    files: BTreeMap<String, PathBuf>,
    /// Canonical names of built-in modules, from `modules.builtin`.
    builtin: BTreeSet<String>,
}

/// A module ready for the initramfs: its canonical name and its uncompressed `.ko`.
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

impl ModuleTree {
    pub fn open(dir: &Path) -> Result<ModuleTree> {
        let mut files = BTreeMap::new();
        collect(dir, &mut files).with_context(|| format!("cannot read the module tree {}", dir.display()))?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| Some(canonical(Path::new(line).file_name()?.to_str()?.split('.').next()?)))
            .collect();
        Ok(ModuleTree { dir: dir.to_path_buf(), files, builtin })
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.contains_key(&canonical(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical(name))
    }

    /// `wanted` and everything they depend on, dependencies first. Built-in modules are
    /// left out (already in the kernel); a wanted module that is neither is an error.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut state = BTreeMap::new();
        for name in wanted {
            self.visit(&canonical(name), &mut state, &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        state: &mut BTreeMap<String, bool>,
        order: &mut Vec<Module>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => bail!("modules depend on each other in a cycle: {} -> {name}", path.join(" -> ")),
            None => {}
        }
        let Some(file) = self.files.get(name) else {
            if self.is_builtin(name) {
                state.insert(name.to_string(), true);
                return Ok(());
            }
            let needed_by = path.last().map(|parent| format!(" (needed by {parent})")).unwrap_or_default();
            bail!(
                "module {name}{needed_by} is neither in {} nor built into the kernel: use a kernel that has it",
                self.dir.display()
            );
        };
        state.insert(name.to_string(), false);
        let data = read_module(file)?;
        path.push(name.to_string());
        for dependency in depends(&data).with_context(|| format!("module {}", file.display()))? {
            self.visit(&dependency, state, order, path)?;
        }
        path.pop();
        state.insert(name.to_string(), true);
        order.push(Module { name: name.to_string(), data });
        Ok(())
    }
}

fn collect(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, files)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            for suffix in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] {
                if let Some(stem) = name.strip_suffix(suffix) {
                    files.entry(canonical(stem)).or_insert_with(|| path.clone());
                }
            }
        }
    }
    Ok(())
}

/// A module file, decompressed (the guest loads it with `finit_module`, uncompressed).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => std::fs::read(path).with_context(|| format!("cannot read module {}", path.display())),
        Some(tool) => {
            let output = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("cannot run {tool} to decompress {}: install it", path.display()))?;
            if !output.status.success() {
                bail!(
                    "{tool} cannot decompress {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(output.stdout)
        }
    }
}

/// A driver or filesystem the guest needs: the kernel option that provides it, the module
/// that holds it when it is not built in, and what it is for (named in errors).
pub struct Need {
    pub option: &'static str,
    pub module: &'static str,
    pub purpose: &'static str,
}

/// Whether the modules put in an initramfs keep their signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    Keep,
    /// Checking a signature costs the guest a SHA-256 of the whole module and an RSA
    /// verification: 32 ms for the six modules of Debian's kernel under TCG (BENCHMARKS.md),
    /// to vouch for files the host took from the kernel's own module tree.
    Strip,
}

impl Signatures {
    /// What flint's init gets: stripped, unless the kernel refuses unsigned modules, which it
    /// does with `CONFIG_MODULE_SIG_FORCE`, `module.sig_enforce` or kernel lockdown among
    /// `params` (the kernel command line's words).
    pub fn for_flint_init<'a>(kernel: &Kernel, params: impl IntoIterator<Item = &'a str>) -> Signatures {
        Signatures::unless_enforced(kernel.has_builtin("CONFIG_MODULE_SIG_FORCE"), params)
    }

    fn unless_enforced<'a>(forced_by_config: bool, params: impl IntoIterator<Item = &'a str>) -> Signatures {
        let enforces = |word: &str| {
            word == "module.sig_enforce" || word.starts_with("module.sig_enforce=") || word.starts_with("lockdown=")
        };
        if forced_by_config || params.into_iter().any(enforces) {
            Signatures::Keep
        } else {
            Signatures::Strip
        }
    }
}

/// What `sign-file` appends to a module, last.
const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`, between the signature and the marker; it ends with the
/// signature's length, big-endian.
const SIGNATURE_INFO_LEN: usize = 12;

/// `module` without its appended signature; unchanged if it has none (or a malformed one,
/// which the kernel then reports).
fn without_signature(module: &[u8]) -> &[u8] {
    let Some(signed) = module.strip_suffix(SIGNATURE_MARKER) else { return module };
    let Some(info_at) = signed.len().checked_sub(SIGNATURE_INFO_LEN) else { return module };
    let length_bytes: [u8; 4] = signed[signed.len() - 4..].try_into().unwrap_or_default();
    match info_at.checked_sub(u32::from_be_bytes(length_bytes) as usize) {
        Some(end) => &module[..end],
        None => module,
    }
}

/// Puts `modules` in `archive` where flint's init loads them from (`flint.modules`):
/// `/lib/modules/<name>.ko`.
pub fn add_to_initramfs(archive: &mut Initramfs, modules: &[Module], signatures: Signatures) {
    for module in modules {
        let data = match signatures {
            Signatures::Keep => &module.data[..],
            Signatures::Strip => without_signature(&module.data),
        };
        archive.file(&format!("/lib/modules/{}.ko", module.name), 0o644, data.to_vec());
    }
}

/// The modules among `needs` that `kernel` has as modules (built-in ones need nothing), with
/// their dependencies, in load order; an error names anything the kernel lacks.
pub fn load_list(kernel: &Kernel, needs: &[Need]) -> Result<Vec<Module>> {
    let tree = kernel.modules.as_deref().map(ModuleTree::open).transpose()?;
    let mut wanted = Vec::new();
    for need in needs {
        match kernel.provides(need.option, need.module, tree.as_ref()) {
            Provided::BuiltIn => {}
            Provided::Module => wanted.push(need.module),
            Provided::Absent => bail!(
                "kernel {} lacks {}, which flint needs for {}: use a kernel that has it (built in or as a module)",
                kernel.label,
                need.option,
                need.purpose
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a section-name table and a `.modinfo` section.
    fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        let shoff = elf.len();
        let header = |name: u32, offset: usize, size: usize| {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            sh[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            sh[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            sh
        };
        let headers = [header(0, 0, 0), header(1, names_at, names.len()), header(11, modinfo_at, modinfo.len())];
        for sh in headers {
            elf.extend_from_slice(&sh);
        }
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    fn signed(module: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut signed = module.to_vec();
        signed.extend_from_slice(signature);
        // algorithm, hash, id type, signer and key id lengths, padding: as sign-file writes them.
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
        signed.extend_from_slice(&(signature.len() as u32).to_be_bytes());
        signed.extend_from_slice(SIGNATURE_MARKER);
        signed
    }

    #[test]
    fn strips_an_appended_signature_and_nothing_else() {
        let module = fake_module(b"depends=virtio\0");
        assert_eq!(without_signature(&signed(&module, &[0x30; 681])), &module[..]);
        assert_eq!(without_signature(&module), &module[..]);
        // A length pointing before the start of the file leaves it as it is.
        let mut broken = signed(&module, b"sig");
        let length_at = broken.len() - SIGNATURE_MARKER.len() - 4;
        broken[length_at..length_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(without_signature(&broken), &broken[..]);
    }

    #[test]
    fn keeps_signatures_where_the_kernel_demands_them() {
        assert_eq!(Signatures::unless_enforced(true, ["quiet"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["quiet", "module.sig_enforce=1"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["module.sig_enforce"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["lockdown=integrity"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["quiet", "module.blacklist=x"]), Signatures::Strip);
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = fake_module(b"license=GPL\0depends=virtio_ring,virtio-pci-modern-dev\0name=virtio_pci\0");
        assert_eq!(depends(&elf).unwrap(), ["virtio_ring", "virtio_pci_modern_dev"]);
        assert!(depends(&fake_module(b"depends=\0")).unwrap().is_empty());
        assert!(modinfo(b"not an elf").is_err());
    }

    #[test]
    fn orders_dependencies_first_and_skips_builtins() {
        let dir = std::env::temp_dir().join(format!("flint-modules-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel/a")).unwrap();
        let write = |name: &str, depends: &str| {
            std::fs::write(
                dir.join(format!("kernel/a/{name}.ko")),
                fake_module(format!("depends={depends}\0").as_bytes()),
            )
            .unwrap()
        };
        write("top", "mid,base");
        write("mid", "base,core");
        write("base", "");
        write("other-one", "base");
        std::fs::write(dir.join("modules.builtin"), "kernel/b/core.ko\n").unwrap();
        let tree = ModuleTree::open(&dir).unwrap();
        let names = |wanted: &[&str]| tree.load_order(wanted).unwrap().into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(&["top"]), ["base", "mid", "top"]);
        assert_eq!(names(&["other_one", "top"]), ["base", "other_one", "mid", "top"]);
        assert_eq!(names(&["core"]), Vec::<String>::new());
        let missing = tree.load_order(&["nope"]).err().unwrap().to_string();
        assert!(missing.contains("module nope is neither"), "{missing}");
        write("loop1", "loop2");
        write("loop2", "loop1");
        let tree = ModuleTree::open(&dir).unwrap();
        assert!(tree.load_order(&["loop1"]).err().unwrap().to_string().contains("cycle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
