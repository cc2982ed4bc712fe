//! Applying image layers to a root tree, as a container runtime does: each layer is a tar
//! archive whose entries replace what lower layers left, `.wh.NAME` deletes NAME and
//! `.wh..wh..opq` hides a directory's lower content.
//!
//! The tree is written by whoever runs flint, often not root: files keep the builder as their
//! owner and permissions the builder can work with, while the owners, modes and device
//! numbers the layers ask for are recorded and applied to the ext4 image afterwards, with
//! `debugfs` ([`Tree::ownership_script`]). A layer is untrusted input: every path is resolved
//! inside the tree (`..` refused, symbolic links followed as the guest would, never out of
//! the tree), and nothing is written through a symbolic link.

use crate::rootfs;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A layer's tar stream, decompressed as its first bytes say (gzip, zstd, or plain tar), so
/// media types that lie or are unknown do not matter.
pub fn decompressed<'a>(blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut blob = BufReader::new(blob);
    let head = blob.fill_buf().context("cannot read the layer")?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(blob))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(blob).context("the layer's zstd header is corrupt")?)
    } else {
        Box::new(blob)
    })
}

/// What a layer said an entry is: owner, full `st_mode` (type and permissions) and, for
/// device nodes and FIFOs, which the builder may not be allowed to make (an empty file holds
/// their place in the tree and `debugfs` makes the real node in the image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    uid: u32,
    gid: u32,
    mode: u32,
    node: Option<Node>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// A root tree being built from layers.
pub struct Tree {
    root: PathBuf,
    /// By path relative to the root ("" is the root): what the image must say.
    wanted: BTreeMap<PathBuf, Wanted>,
    /// The paths the current layer wrote, with their ancestors: whiteouts and opaque
    /// directories hide lower layers' content only.
    this_layer: HashSet<PathBuf>,
}

impl Tree {
    /// A tree in `root`, an existing empty directory.
    pub fn new(root: &Path) -> Tree {
        // The root directory is root's, unless a layer says otherwise ("./").
        let top = Wanted { uid: 0, gid: 0, mode: S_IFDIR | 0o755, node: None };
        Tree { root: root.to_path_buf(), wanted: BTreeMap::from([(PathBuf::new(), top)]), this_layer: HashSet::new() }
    }

    /// Applies one layer, an uncompressed tar stream; `layer` names it in errors.
    pub fn apply(&mut self, tar: impl Read, layer: &str) -> Result<()> {
        self.this_layer.clear();
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().with_context(|| format!("{layer} is not a tar archive"))?;
        for entry in entries {
            let mut entry = entry.with_context(|| format!("{layer} is not a valid tar archive"))?;
            let raw = entry.path_bytes().into_owned();
            self.apply_entry(&mut entry, &raw)
                .with_context(|| format!("{layer}: entry {}", String::from_utf8_lossy(&raw)))?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, raw: &[u8]) -> Result<()> {
        let parts = components(raw)?;
        let header = entry.header();
        let kind = header.entry_type();
        let Some((name, parent)) = parts.split_last() else {
            // The root directory itself ("./"): only its owner and mode.
            if kind.is_dir() {
                let wanted = self.wanted_of(header, S_IFDIR, None)?;
                self.wanted.insert(PathBuf::new(), wanted);
            }
            return Ok(());
        };
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return if hidden == b".wh..opq" { self.opaque(parent) } else { self.whiteout(parent, hidden) };
        }
        let dir = self.dir(parent)?;
        let path = dir.join(OsStr::from_bytes(name));
        let key = self.key(&path);
        let existing = std::fs::symlink_metadata(&path).ok();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                if !existing.as_ref().is_some_and(|meta| meta.is_dir()) {
                    self.remove(&path)?;
                    std::fs::create_dir(&path)?;
                }
                let wanted = self.wanted_of(header, S_IFDIR, None)?;
                // The builder must be able to fill it; the image gets the mode.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted.mode & 0o7777 | 0o700))?;
                self.wanted.insert(key.clone(), wanted);
            }
            T::Regular | T::Continuous => {
                let wanted = self.wanted_of(header, S_IFREG, None)?;
                self.remove(&path)?;
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
                std::io::copy(entry, &mut file)?;
                // The builder must be able to read it for mkfs.ext4; the image gets the mode.
                file.set_permissions(std::fs::Permissions::from_mode(wanted.mode & 0o7777 | 0o400))?;
                self.wanted.insert(key.clone(), wanted);
            }
            T::Symlink => {
                let target = entry.link_name_bytes().context("a symbolic link without a target")?.into_owned();
                let wanted = self.wanted_of(entry.header(), S_IFLNK, None)?;
                self.remove(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)?;
                self.wanted.insert(key.clone(), Wanted { mode: S_IFLNK | 0o777, ..wanted });
            }
            T::Link => {
                let target = entry.link_name_bytes().context("a hard link without a target")?.into_owned();
                let source = self.existing(&components(&target)?).with_context(|| {
                    format!("hard link to {}, which no earlier entry made", String::from_utf8_lossy(&target))
                })?;
                if std::fs::symlink_metadata(&source)?.is_dir() {
                    bail!("a hard link to a directory: the image is malformed");
                }
                if source != path {
                    self.remove(&path)?;
                    std::fs::hard_link(&source, &path)?;
                }
                let wanted = self.wanted.get(&self.key(&source)).copied();
                let wanted = match wanted {
                    Some(wanted) => wanted,
                    None => self.wanted_of(entry.header(), S_IFREG, None)?,
                };
                self.wanted.insert(key.clone(), wanted);
            }
            T::Char | T::Block | T::Fifo => {
                let number = |n: std::io::Result<Option<u32>>| n.map(Option::unwrap_or_default);
                let (major, minor) = (number(header.device_major())?, number(header.device_minor())?);
                let (node, format) = match kind {
                    T::Char => (Node::Char(major, minor), S_IFCHR),
                    T::Block => (Node::Block(major, minor), S_IFBLK),
                    _ => (Node::Fifo, S_IFIFO),
                };
                let wanted = self.wanted_of(header, format, Some(node))?;
                self.remove(&path)?;
                std::fs::write(&path, b"")?;
                self.wanted.insert(key.clone(), wanted);
            }
            // PAX and GNU extension headers are read by the tar crate itself; anything else
            // (sockets cannot be archived) carries no file.
            _ => return Ok(()),
        }
        self.written(key);
        Ok(())
    }

    /// Makes the directory `guest_path` unless it is there (the config's WorkingDir).
    pub fn make_dir(&mut self, guest_path: &str) -> Result<()> {
        self.dir(&components(guest_path.as_bytes())?).map(drop)
    }

    /// The host directory for `parts` inside the tree, following symbolic links as the guest
    /// would and making missing directories (root-owned, 0755, as runtimes make them).
    fn dir(&mut self, parts: &[&[u8]]) -> Result<PathBuf> {
        if let Some(found) = self.existing(parts) {
            if std::fs::symlink_metadata(&found)?.is_dir() {
                return Ok(found);
            }
            bail!("{} is not a directory in the layers below", show(parts));
        }
        let Some((name, parent)) = parts.split_last() else { return Ok(self.root.clone()) };
        let parent = self.dir(parent)?;
        let path = parent.join(OsStr::from_bytes(name));
        if std::fs::symlink_metadata(&path).is_ok() {
            bail!("{} is a symbolic link that leads nowhere in the image", show(parts));
        }
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        let key = self.key(&path);
        self.wanted.insert(key.clone(), Wanted { uid: 0, gid: 0, mode: S_IFDIR | 0o755, node: None });
        self.written(key);
        Ok(path)
    }

    /// The host path of `parts` when it exists, symbolic links followed inside the tree.
    fn existing(&self, parts: &[&[u8]]) -> Option<PathBuf> {
        rootfs::resolve_in_root(&self.root, &parts.join(&b'/'))
    }

    /// `.wh.NAME` in `parent`: NAME from the layers below goes.
    fn whiteout(&mut self, parent: &[&[u8]], name: &[u8]) -> Result<()> {
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            bail!("a whiteout of {:?}, which names no file", String::from_utf8_lossy(name));
        }
        let Some(dir) = self.existing(parent) else { return Ok(()) };
        let path = dir.join(OsStr::from_bytes(name));
        if !self.this_layer.contains(&self.key(&path)) {
            self.remove(&path)?;
        }
        Ok(())
    }

    /// `.wh..wh..opq` in `parent`: what the layers below put in it goes, this layer's stays.
    fn opaque(&mut self, parent: &[&[u8]]) -> Result<()> {
        let dir = self.dir(parent)?;
        let key = self.key(&dir);
        self.written(key);
        self.clear_lower(&dir)
    }

    fn clear_lower(&mut self, dir: &Path) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !self.this_layer.contains(&self.key(&path)) {
                self.remove(&path)?;
            } else if std::fs::symlink_metadata(&path)?.is_dir() {
                self.clear_lower(&path)?;
            }
        }
        Ok(())
    }

    /// Removes whatever is at `path` (a directory with its content; a link, not what it points
    /// at), and forgets what was wanted for it.
    fn remove(&mut self, path: &Path) -> Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
        if meta.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
        let key = self.key(path);
        let below: Vec<PathBuf> =
            self.wanted.range(key.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&key)).cloned().collect();
        for gone in below {
            self.wanted.remove(&gone);
        }
        Ok(())
    }

    fn key(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }

    fn written(&mut self, key: PathBuf) {
        let mut key = Some(key.as_path());
        while let Some(path) = key {
            if !self.this_layer.insert(path.to_path_buf()) {
                break;
            }
            key = path.parent();
        }
    }

    fn wanted_of(&self, header: &tar::Header, format: u32, node: Option<Node>) -> Result<Wanted> {
        let id = |n: std::io::Result<u64>| -> Result<u32> {
            let n = n.context("a corrupt owner field")?;
            u32::try_from(n).ok().filter(|&n| n != u32::MAX).context("an owner id out of range")
        };
        let mode = header.mode().context("a corrupt mode field")? & 0o7777;
        Ok(Wanted { uid: id(header.uid())?, gid: id(header.gid())?, mode: format | mode, node })
    }

    /// `debugfs` commands that give the image made from the tree (`mkfs.ext4 -d`) the owners,
    /// modes, device nodes and FIFOs the layers asked for, where the tree could not hold them.
    pub fn ownership_script(&self) -> Result<Vec<u8>> {
        let mut script = Vec::new();
        for (key, wanted) in &self.wanted {
            let Ok(meta) = std::fs::symlink_metadata(self.root.join(key)) else { continue };
            let guest = quoted_path(key)?;
            let set = |script: &mut Vec<u8>, field: &str, value: String| {
                script.extend_from_slice(b"sif ");
                script.extend_from_slice(&guest);
                script.extend_from_slice(format!(" {field} {value}\n").as_bytes());
            };
            if let Some(node) = wanted.node {
                let (Some(parent), Some(name)) = (key.parent(), key.file_name()) else { continue };
                let name = quoted(name.as_bytes());
                let spec = match node {
                    Node::Char(major, minor) => format!("c {major} {minor}"),
                    Node::Block(major, minor) => format!("b {major} {minor}"),
                    Node::Fifo => "p".into(),
                };
                for line in [&b"rm "[..], &guest, b"\ncd ", &quoted_path(parent)?, b"\nmknod ", &name] {
                    script.extend_from_slice(line);
                }
                script.extend_from_slice(format!(" {spec}\ncd /\n").as_bytes());
                set(&mut script, "mode", format!("0{:o}", wanted.mode));
                set(&mut script, "uid", wanted.uid.to_string());
                set(&mut script, "gid", wanted.gid.to_string());
                continue;
            }
            if meta.mode() != wanted.mode && wanted.mode & 0o170000 != S_IFLNK {
                set(&mut script, "mode", format!("0{:o}", wanted.mode));
            }
            if meta.uid() != wanted.uid {
                set(&mut script, "uid", wanted.uid.to_string());
            }
            if meta.gid() != wanted.gid {
                set(&mut script, "gid", wanted.gid.to_string());
            }
        }
        Ok(script)
    }
}

/// The path's components, refusing `..` (a layer must not reach out of the tree): leading
/// `/` and `.` components are dropped, as runtimes do.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>> {
    let parts: Vec<&[u8]> = raw.split(|&b| b == b'/').filter(|part| !part.is_empty() && *part != b".").collect();
    if parts.iter().any(|part| *part == b"..") {
        bail!("the path leaves the root ('..'): the image is malformed or hostile, and flint refuses it");
    }
    Ok(parts)
}

fn show(parts: &[&[u8]]) -> String {
    format!("/{}", String::from_utf8_lossy(&parts.join(&b'/')))
}

/// A name as one `debugfs` argument: in double quotes, a quote doubled.
fn quoted(name: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &byte in name {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
    out
}

/// The guest path of `key` as one `debugfs` argument; `debugfs` reads its commands line by
/// line, so a name with a line break cannot be given to it.
fn quoted_path(key: &Path) -> Result<Vec<u8>> {
    let bytes = key.as_os_str().as_bytes();
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        bail!(
            "/{} has a line break in its name, and flint cannot set its owner in the image: rename it in the image",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut path = b"/".to_vec();
    path.extend_from_slice(bytes);
    Ok(quoted(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;

    /// One entry of a test layer: path, kind, uid (and gid), mode, content or link target.
    type Entry<'a> = (&'a str, tar::EntryType, u64, u32, &'a [u8]);

    /// A layer built in memory. Paths are written into the header as they are, `..`
    /// included, as a hostile image would.
    fn layer(entries: &[Entry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for &(path, kind, uid, mode, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(kind);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_mode(mode);
            let data = if kind.is_symlink() || kind.is_hard_link() {
                header.as_old_mut().linkname[..data.len()].copy_from_slice(data);
                &[][..]
            } else {
                data
            };
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    use tar::EntryType::{Directory as Dir, Link, Regular as File, Symlink};

    #[test]
    fn whiteouts_delete_and_opaque_directories_hide_lower_layers_only() {
        let scratch = TempDir::new("flint-oci-layers").unwrap();
        let root = scratch.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        let mut tree = Tree::new(&root);
        let lower = layer(&[
            ("a/", Dir, 0, 0o755, b""),
            ("a/gone", File, 0, 0o644, b"1"),
            ("a/kept", File, 0, 0o644, b"2"),
            ("d/old/deep", File, 0, 0o644, b"3"),
            ("d/sub/old", File, 0, 0o644, b"4"),
        ]);
        tree.apply(&lower[..], "lower").unwrap();
        let upper = layer(&[
            ("a/.wh.gone", File, 0, 0o644, b""),
            ("d/sub/new", File, 0, 0o644, b"5"),
            ("d/.wh..wh..opq", File, 0, 0o644, b""),
            ("tool", File, 1000, 0o4755, b"6"),
            // A whiteout of something this very layer made leaves it.
            ("fresh", File, 0, 0o644, b"7"),
            (".wh.fresh", File, 0, 0o644, b""),
        ]);
        tree.apply(&upper[..], "upper").unwrap();
        assert!(!root.join("a/gone").exists());
        assert_eq!(std::fs::read(root.join("a/kept")).unwrap(), b"2");
        assert!(!root.join("d/old").exists(), "hidden by the opaque directory");
        assert!(!root.join("d/sub/old").exists(), "hidden by the opaque directory");
        assert_eq!(std::fs::read(root.join("d/sub/new")).unwrap(), b"5", "this layer's own stays");
        assert!(root.join("fresh").exists());
        let script = String::from_utf8(tree.ownership_script().unwrap()).unwrap();
        assert!(script.contains("sif \"/tool\" uid 1000\n"), "{script}");
        assert!(script.contains("sif \"/tool\" gid 1000\n"), "{script}");
        assert!(!script.contains("/a/gone"), "{script}");
    }

    #[test]
    fn nothing_is_written_outside_the_tree() {
        let scratch = TempDir::new("flint-oci-escape").unwrap();
        let (root, outside) = (scratch.path().join("tree"), scratch.path().join("outside"));
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("file"), b"host").unwrap();
        let outside_file = outside.join("file");
        let outside_text = outside.to_str().unwrap().as_bytes();
        let outside_file_text = outside_file.to_str().unwrap().as_bytes();
        let hostile: &[&[Entry]] = &[
            &[("../escape", File, 0, 0o644, b"x")],
            &[("a/../../escape", File, 0, 0o644, b"x")],
            &[("link", Symlink, 0, 0o777, b"../../.."), ("link/escape", File, 0, 0o644, b"x")],
            &[("abs", Symlink, 0, 0o777, outside_text), ("abs/escape", File, 0, 0o644, b"x")],
            &[("victim", Symlink, 0, 0o777, outside_file_text), ("victim", File, 0, 0o644, b"x")],
            &[("hard", Link, 0, 0o644, outside_file_text)],
            &[("hard", Link, 0, 0o644, b"../outside/file")],
            &[(".wh...", File, 0, 0o644, b"")],
        ];
        for entries in hostile {
            let mut tree = Tree::new(&root);
            // Refused or kept inside: either way the host is untouched.
            let _ = tree.apply(&layer(entries)[..], "hostile");
            assert_eq!(std::fs::read(outside.join("file")).unwrap(), b"host", "{entries:?}");
            let names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["file"], "{entries:?}");
            assert!(!scratch.path().join("escape").exists(), "{entries:?}");
        }
        let mut tree = Tree::new(&root);
        let error = tree.apply(&layer(&[("../escape", File, 0, 0o644, b"x")])[..], "layer 1").unwrap_err();
        assert!(format!("{error:#}").contains("the path leaves the root ('..')"), "{error:#}");
        // A link into the tree's own root lands inside it.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        let mut tree = Tree::new(&root);
        tree.apply(&layer(&[("up", Symlink, 0, 0o777, b"../../.."), ("up/inside", File, 0, 0o644, b"x")])[..], "l")
            .unwrap();
        assert_eq!(std::fs::read(root.join("inside")).unwrap(), b"x");
    }
}
