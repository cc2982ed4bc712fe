//! Image tarballs: `docker save`'s docker-archive, whose `manifest.json` names each image's
//! config and layer files and tags it with `RepoTags`, or an OCI layout in a tar. Members are
//! read in place: one pass over the headers (seeking past the data) notes where each is.

use super::{Image, Store};
use crate::env::Fix;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most members a tarball may have: an image has a handful per layer.
const MEMBERS_MAX: usize = 1 << 20;

/// A tarball's members by normalised name (`dir/file`, no `./`).
pub(super) struct Tarball {
    path: PathBuf,
    members: HashMap<String, Member>,
}

enum Member {
    Data {
        offset: u64,
        size: u64,
    },
    /// A link (symbolic or hard) to another member: `docker save` links a layer that several
    /// images share.
    Link(String),
}

impl Tarball {
    pub fn open(path: &Path) -> Result<Tarball> {
        let not_tar = || {
            format!("{} is not a tar archive: pass an OCI layout directory or a `docker save` tarball", path.display())
        };
        let file = File::open(path).fix(format_args!("cannot read {}", path.display()), "pass a readable tarball")?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().with_context(not_tar)? {
            let entry = entry.with_context(not_tar)?;
            let Some(name) = normalise("", &entry.path_bytes()) else { continue };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    Member::Data { offset: entry.raw_file_position(), size: entry.size() }
                }
                tar::EntryType::Symlink => {
                    let Some(target) = entry.link_name_bytes() else { continue };
                    let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                    let Some(target) = normalise(dir, &target) else { continue };
                    Member::Link(target)
                }
                tar::EntryType::Link => {
                    let Some(target) = entry.link_name_bytes().and_then(|target| normalise("", &target)) else {
                        continue;
                    };
                    Member::Link(target)
                }
                _ => continue,
            };
            members.insert(name, member);
            if members.len() > MEMBERS_MAX {
                bail!(
                    "{} has more than {MEMBERS_MAX} members, more than any image: pass an image tarball",
                    path.display()
                );
            }
        }
        Ok(Tarball { path: path.to_path_buf(), members })
    }

    /// Where the data of member `name` is (links followed).
    fn find(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalise("", name.as_bytes())?;
        for _ in 0..8 {
            match self.members.get(&name)? {
                Member::Data { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn member(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let Some((offset, size)) = self.find(name) else {
            bail!("{} has no member {name}, which the image names: the tarball is incomplete", self.path.display());
        };
        let mut file = File::open(&self.path).with_context(|| format!("cannot read {}", self.path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file.take(size)))
    }
}

/// `name` (relative to the member directory `dir`, or to the top when it starts with `/`) as
/// a member name; None when it climbs out of the tarball or is not UTF-8.
fn normalise(dir: &str, name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    let mut parts: Vec<&str> = if name.starts_with('/') { Vec::new() } else { dir.split('/').collect() };
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    parts.retain(|part| !part.is_empty());
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Saved {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The image of the docker-archive `store` tagged `wanted` (REPO:TAG, as `docker` names it),
/// or its only image.
pub(super) fn image(store: &Store, wanted: Option<&str>, shown: &Path) -> Result<Image> {
    let saved: Vec<Saved> = serde_json::from_slice(&store.read_json("manifest.json")?).map_err(|e| {
        anyhow::anyhow!("{}: manifest.json is not docker-archive's ({e}): the tarball is malformed", shown.display())
    })?;
    let tags: Vec<&str> = saved.iter().flat_map(|s| s.repo_tags.iter().flatten()).map(String::as_str).collect();
    let listed = if tags.is_empty() { "it has no tags".to_string() } else { format!("its tags: {}", tags.join(", ")) };
    let found = match wanted {
        Some(wanted) => {
            let wanted = docker_name(wanted);
            saved.iter().find(|s| s.repo_tags.iter().flatten().any(|tag| docker_name(tag) == wanted))
        }
        None if saved.len() == 1 => saved.first(),
        None => None,
    };
    let Some(found) = found else {
        match wanted {
            Some(wanted) => {
                bail!("{} has no image {wanted} ({listed}): pass FILE:REPO:TAG with one of them", shown.display())
            }
            None if saved.is_empty() => bail!("{} holds no image (its manifest.json is empty)", shown.display()),
            None => {
                bail!("{} holds {} images ({listed}): pass {}:REPO:TAG", shown.display(), saved.len(), shown.display())
            }
        }
    };
    Ok(Image { config: store.read_json(&found.config)?, layers: found.layers.clone() })
}

/// A reference as Docker completes it: `alpine` is `docker.io/library/alpine:latest`.
fn docker_name(name: &str) -> String {
    let has_tag = name.rsplit_once('/').map_or(name, |(_, last)| last).contains(':') || name.contains('@');
    let name = if has_tag { name.to_string() } else { format!("{name}:latest") };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, name.contains('/')) {
        (true, _) => name,
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_completed_as_docker_completes_them() {
        assert_eq!(docker_name("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(docker_name("img:t"), "docker.io/library/img:t");
        assert_eq!(docker_name("docker.io/library/img:t"), "docker.io/library/img:t");
        assert_eq!(docker_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(docker_name("registry.example:5000/app"), "registry.example:5000/app:latest");
    }

    #[test]
    fn member_names_stay_inside_the_tarball() {
        assert_eq!(normalise("", b"./manifest.json").as_deref(), Some("manifest.json"));
        assert_eq!(normalise("abc", b"../def.tar").as_deref(), Some("def.tar"));
        assert_eq!(normalise("abc", b"/x/./y").as_deref(), Some("x/y"));
        assert_eq!(normalise("", b"../../etc/passwd"), None);
        assert_eq!(normalise("", b"./"), None);
    }
}
