//! A module tree's index, as modprobe reads it: `modules.dep`, `modules.softdep` and
//! `modules.alias` (written by depmod), `modules.builtin` and `modules.builtin.modinfo`
//! (shipped by the kernel build).

use super::canonical;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub(super) struct Index {
    /// Module name -> its file and hard dependencies.
    pub modules: BTreeMap<String, Entry>,
    /// Module name -> its soft dependencies, when modules.softdep gives them.
    pub softdeps: BTreeMap<String, Softdeps>,
    /// modules.alias: `alias PATTERN MODULE` lines, PATTERN an fnmatch glob. Tens of thousands
    /// of them, scanned by the few lookups of a run rather than parsed up front.
    aliases: String,
    builtin: BTreeSet<String>,
    /// The built-in modules' aliases, as `alias PATTERN MODULE` lines too.
    builtin_aliases: String,
    /// Modules bound to a CPU feature (a `cpu:` alias): they refuse to load on CPUs without it.
    cpu_bound: BTreeSet<String>,
}

pub(super) struct Entry {
    /// Relative to the tree (or absolute).
    pub path: PathBuf,
    /// The paths of the modules it needs, as modules.dep lists them: parsed when visited, as
    /// few modules of the thousands are.
    depends: String,
}

impl Entry {
    /// Every module it needs, directly or not, in load order (modules.dep lists the last to
    /// load first).
    pub fn depends(&self) -> Vec<String> {
        self.depends.split_whitespace().rev().filter_map(module_name).collect()
    }
}

/// What a module wants loaded before (`pre:`) and after (`post:`) it: module names or aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Softdeps {
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

impl Index {
    /// `dir` holds modules.dep, modules.softdep and modules.alias (the tree, or depmod's output
    /// for it); `tree` the kernel build's modules.builtin and modules.builtin.modinfo.
    pub fn read(dir: &Path, tree: &Path) -> Result<Index> {
        let read = |path: PathBuf| match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let text = |path: PathBuf| Ok::<_, anyhow::Error>(String::from_utf8_lossy(&read(path)?).into_owned());
        Ok(Index::parse(
            &text(dir.join("modules.dep"))?,
            &text(dir.join("modules.softdep"))?,
            text(dir.join("modules.alias"))?,
            &text(tree.join("modules.builtin"))?,
            &read(tree.join("modules.builtin.modinfo"))?,
        ))
    }

    fn parse(dep: &str, softdep: &str, aliases: String, builtin: &str, builtin_modinfo: &[u8]) -> Index {
        let cpu_bound = aliases
            .lines()
            .filter_map(|line| Some(canonical(line.strip_prefix("alias cpu:")?.split_whitespace().nth(1)?)))
            .collect();
        Index {
            modules: parse_dep(dep),
            softdeps: parse_softdeps(softdep),
            aliases,
            builtin: parse_builtin(builtin),
            builtin_aliases: builtin_aliases(builtin_modinfo),
            cpu_bound,
        }
    }

    /// Whether `name` (canonical) is built into the kernel, by module name or alias.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name) || matching(&self.builtin_aliases, name).next().is_some()
    }

    /// The modules an alias names for `name` (canonical), in modules.alias order, each once.
    pub fn alias_targets(&self, name: &str) -> Vec<String> {
        let mut modules: Vec<String> = Vec::new();
        for module in matching(&self.aliases, name).map(canonical) {
            if !modules.contains(&module) {
                modules.push(module);
            }
        }
        modules
    }

    /// Whether `module` is bound to a CPU feature (it has a `cpu:` alias), so that it refuses
    /// to load (ENODEV) on a CPU without it.
    pub fn is_cpu_bound(&self, module: &str) -> bool {
        self.cpu_bound.contains(module)
    }
}

/// The modules of the `alias PATTERN MODULE` lines whose PATTERN matches `name` (canonical).
fn matching<'a>(aliases: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    aliases.lines().filter_map(move |line| {
        let (pattern, module) = line.strip_prefix("alias ")?.split_once(' ')?;
        glob_matches(pattern, name).then_some(module.trim())
    })
}

/// fnmatch without flags, as modprobe matches (`*` matches `/` too), `-` in `pattern` as `_`.
fn glob_matches(pattern: &str, name: &str) -> bool {
    // The literal start, compared byte by byte, rules most patterns out without allocating.
    for (at, &c) in pattern.as_bytes().iter().enumerate() {
        match c {
            b'*' | b'?' | b'[' => {
                return glob::Pattern::new(&canonical(pattern)).is_ok_and(|glob| glob.matches(name));
            }
            _ if name.as_bytes().get(at).is_some_and(|&n| n == c || (c, n) == (b'-', b'_')) => {}
            _ => return false,
        }
    }
    pattern.len() == name.len()
}

/// The module a path names: its file name up to the first `.`, canonical.
fn module_name(path: &str) -> Option<String> {
    Some(canonical(Path::new(path).file_name()?.to_str()?.split('.').next()?))
}

/// `modules.dep`: `path: dependency-path...`.
fn parse_dep(text: &str) -> BTreeMap<String, Entry> {
    text.lines()
        .filter_map(|line| {
            let (path, depends) = line.split_once(':')?;
            Some((module_name(path)?, Entry { path: PathBuf::from(path), depends: depends.to_string() }))
        })
        .collect()
}

/// `modules.softdep`: `softdep MODULE pre: A B post: C`, one line per `softdep=` of a module.
/// All of a module's lines count (kmod 30's modprobe reads only the first; the module asked
/// for all of them).
fn parse_softdeps(text: &str) -> BTreeMap<String, Softdeps> {
    let mut softdeps: BTreeMap<String, Softdeps> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("softdep"), Some(module)) = (words.next(), words.next()) {
            let parsed = Softdeps::parse(words);
            let entry = softdeps.entry(canonical(module)).or_default();
            entry.pre.extend(parsed.pre);
            entry.post.extend(parsed.post);
        }
    }
    softdeps
}

impl Softdeps {
    /// `pre: A B post: C`; words before the first `pre:` or `post:` mean nothing to modprobe.
    fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Softdeps {
        let mut softdeps = Softdeps::default();
        let mut list = None;
        for word in words {
            match word {
                "pre:" => list = Some(&mut softdeps.pre),
                "post:" => list = Some(&mut softdeps.post),
                name => {
                    if let Some(list) = list.as_mut() {
                        list.push(name.to_string());
                    }
                }
            }
        }
        softdeps
    }

    /// From a module's own `.modinfo` (`softdep=pre: A`), for a tree whose modules.softdep
    /// does not have it (depmod before kmod 20 did not write one).
    pub fn from_modinfo(modinfo: &[(String, String)]) -> Softdeps {
        let mut softdeps = Softdeps::default();
        for (_, value) in modinfo.iter().filter(|(key, _)| key == "softdep") {
            let parsed = Softdeps::parse(value.split_whitespace());
            softdeps.pre.extend(parsed.pre);
            softdeps.post.extend(parsed.post);
        }
        softdeps
    }
}

/// `modules.builtin`: the paths built-in modules would have.
fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(module_name).collect()
}

/// The aliases in `modules.builtin.modinfo` (the built-in modules' `.modinfo` as
/// `MODULE.KEY=VALUE` strings separated by NULs) as `alias PATTERN MODULE` lines: depmod turns
/// them into modules.builtin.alias.bin only, so flint reads them here.
fn builtin_aliases(modinfo: &[u8]) -> String {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let (module, pattern) = std::str::from_utf8(entry).ok()?.split_once(".alias=")?;
            Some(format!("alias {pattern} {module}\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modules_dep_in_load_order() {
        let modules = parse_dep(
            "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz\n\
             kernel/arch/x86/crypto/crc32c-intel.ko:\n",
        );
        let ext4 = &modules["ext4"];
        assert_eq!(ext4.path, Path::new("kernel/fs/ext4/ext4.ko.xz"));
        assert_eq!(ext4.depends(), ["jbd2", "mbcache", "crc16"]);
        assert!(modules["crc32c_intel"].depends().is_empty());
    }

    #[test]
    fn reads_every_softdep_line_of_a_module() {
        let softdeps = parse_softdeps(
            "# Soft dependencies extracted from modules themselves.\n\
             softdep ext4 pre: crypto-crc32c\n\
             softdep cifs gcm\n\
             softdep ksmbd pre: crc32 post: md5\n\
             softdep ksmbd pre: gcm\n",
        );
        assert_eq!(softdeps["ext4"], Softdeps { pre: vec!["crypto-crc32c".into()], post: vec![] });
        assert_eq!(softdeps["cifs"], Softdeps::default());
        assert_eq!(softdeps["ksmbd"], Softdeps { pre: vec!["crc32".into(), "gcm".into()], post: vec!["md5".into()] });
        let modinfo = [("softdep".to_string(), "pre: a post: b c".to_string()), ("depends".into(), "x".into())];
        assert_eq!(
            Softdeps::from_modinfo(&modinfo),
            Softdeps { pre: vec!["a".into()], post: vec!["b".into(), "c".into()] }
        );
    }

    fn index(aliases: &str, builtin_modinfo: &[u8]) -> Index {
        Index::parse("", "", aliases.to_string(), "kernel/lib/crc-ccitt.ko\n", builtin_modinfo)
    }

    #[test]
    fn matches_aliases_as_fnmatch_globs_with_dashes_as_underscores() {
        let index = index(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
             alias usb:v13FDp3940d0[0-2]*dc* some-usb\n\
             alias crc32c-generic crc32c_generic\n",
            b"",
        );
        assert_eq!(index.alias_targets("pci:v00001AF4d00001041sv00001AF4sd00001100bc01sc00i00"), ["virtio_pci"]);
        assert!(index.alias_targets("pci:v00008086d00001041sv00001AF4sd00001100bc01sc00i00").is_empty());
        // The `-` of a range is a range, not an underscore.
        assert_eq!(index.alias_targets("usb:v13FDp3940d01xxdc00"), ["some_usb"]);
        assert!(index.alias_targets("usb:v13FDp3940d05xxdc00").is_empty());
        assert_eq!(index.alias_targets(&canonical("crc32c-generic")), ["crc32c_generic"]);
    }

    #[test]
    fn lists_each_module_an_alias_names_once_and_knows_cpu_bound_ones() {
        let index = index(
            "alias crypto-crc32c crc32c_intel\n\
             alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n\
             alias crypto-crc32c crc32c_generic\n\
             alias crypto-crc32c crc32c_generic\n",
            b"",
        );
        assert_eq!(index.alias_targets("crypto_crc32c"), ["crc32c_intel", "crc32c_generic"]);
        assert!(index.is_cpu_bound("crc32c_intel") && !index.is_cpu_bound("crc32c_generic"));
    }

    #[test]
    fn knows_built_in_modules_by_name_and_alias() {
        let index =
            index("", b"crc32c_generic.license=GPL\0crc32c_generic.alias=crypto-crc32c\0crc32c_generic.alias=crc32c\0");
        assert!(index.is_builtin("crypto_crc32c"));
        assert!(index.is_builtin("crc32c"));
        assert!(index.is_builtin("crc_ccitt"));
        assert!(!index.is_builtin("crc32c_generic_x"));
    }
}
