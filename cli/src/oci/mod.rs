//! `--root-oci REF`: a container image as the root filesystem. REF is an OCI image layout
//! (`DIR`, `DIR:TAG`) or a tarball (`docker save`'s docker-archive, or an OCI layout in a tar:
//! `FILE`, `FILE:REPO:TAG`). Its layers are applied in order into a tree, which becomes an
//! ext4 image cached by the digest of the image's config (which names every layer's content
//! by its own digest, checked while unpacking), so a second run only reads the image's JSON.
//! The config's Env, WorkingDir, User, Entrypoint and Cmd are the job's defaults (`config`).

mod archive;
mod config;
mod layers;
mod layout;

pub use config::{RunConfig, UserLookup};

use crate::env::{self, progress, Fix};
use crate::rootfs;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Arch, ImageConfiguration, Os};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Ends the cache entries' names with the root images' own format version; changed whenever
/// flint unpacks images differently.
const FORMAT: &str = "o1";
/// The most a JSON document of an image (index, manifest, config) may take.
const JSON_MAX: u64 = 4 << 20;
/// The most layers an image may have (Docker's own limit is 127).
const LAYERS_MAX: usize = 1000;

/// An image ready to boot: its root filesystem and how it says to run.
pub struct OciRoot {
    pub image: PathBuf,
    pub run: RunConfig,
    /// The config's User, resolved in the image (None when it names none).
    pub user: Option<UserLookup>,
    /// REF as given, for messages.
    pub reference: String,
}

/// Where an image's files are read from: a directory, or the members of a tarball.
enum Store {
    Dir(PathBuf),
    Tar(archive::Tarball),
}

impl Store {
    /// The file `name`, a relative path taken from the image's own metadata.
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        match self {
            Store::Dir(dir) => {
                if Path::new(name).components().any(|c| !matches!(c, Component::Normal(_))) {
                    bail!("the image names the file {name:?}, outside its directory: the image is malformed");
                }
                let path = dir.join(name);
                let file = std::fs::File::open(&path)
                    .fix(format_args!("cannot read {}", path.display()), "the image is incomplete: copy it again")?;
                Ok(Box::new(file))
            }
            Store::Tar(tarball) => tarball.member(name),
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Store::Dir(dir) => dir.join(name).is_file(),
            Store::Tar(tarball) => tarball.contains(name),
        }
    }

    /// A JSON document of at most [`JSON_MAX`] bytes.
    fn read_json(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(name)?.take(JSON_MAX + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {name}"))?;
        if bytes.len() as u64 > JSON_MAX {
            bail!(
                "{name} is larger than {} MiB, more than any image's metadata: the image is malformed",
                JSON_MAX >> 20
            );
        }
        Ok(bytes)
    }
}

/// One image of a store: its config's bytes and its layers' files, base layer first.
struct Image {
    config: Vec<u8>,
    layers: Vec<String>,
}

/// The image REF names, unpacked into the cache unless it is there.
pub fn root(reference: &str) -> Result<OciRoot> {
    let (path, tag) = split_reference(reference)?;
    let (store, image) = if path.is_dir() {
        let store = Store::Dir(path.clone());
        let image = if store.contains("index.json") || !store.contains("manifest.json") {
            layout::image(&store, tag, &path)?
        } else {
            archive::image(&store, tag, &path)?
        };
        (store, image)
    } else {
        let store = Store::Tar(archive::Tarball::open(&path)?);
        // docker save writes manifest.json (and since Docker 25, an OCI index.json too); an
        // oci-archive has the OCI layout only.
        let image = if store.contains("manifest.json") {
            archive::image(&store, tag, &path)?
        } else {
            layout::image(&store, tag, &path)?
        };
        (store, image)
    };
    let digest = env::sha256_hex(&image.config);
    let config = ImageConfiguration::from_reader(&image.config[..]).map_err(|e| {
        anyhow::anyhow!("image {reference}: its config is not an OCI image config ({e}): the image is malformed")
    })?;
    if *config.os() != Os::Linux || *config.architecture() != Arch::Amd64 {
        bail!(
            "image {reference} is for {}/{}: flint's guests are linux/amd64: use that variant of the image (e.g. skopeo copy --override-arch amd64 --override-os linux ...)",
            config.os(),
            config.architecture()
        );
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != image.layers.len() || image.layers.len() > LAYERS_MAX {
        bail!(
            "image {reference} lists {} layers and its config {}: the image is malformed",
            image.layers.len(),
            diff_ids.len()
        );
    }
    let run = RunConfig::of(&config);
    let images = env::cache_subdir("images")?;
    let dir = images.join(format!("oci-{}-{}{FORMAT}", &digest[..32], rootfs::CACHE_FORMAT));
    if !env::is_cached(&dir) {
        // Concurrent flints make it once; the others find it made when the lock is theirs.
        let _lock = env::lock_cache(&images);
        if !env::is_cached(&dir) {
            progress(format!("unpacking image {reference} ({} layers; cached by its digest)", image.layers.len()));
            env::make_dir(&dir, |tmp| unpack(tmp, &store, &image, diff_ids, &run))
                .with_context(|| format!("cannot unpack image {reference}"))?;
        }
    }
    let user = match &run.user {
        None => None,
        Some(_) => {
            let saved = std::fs::read(dir.join(USER_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
            Some(saved.context("the cached image has lost its user.json: delete it from the cache and run again")?)
        }
    };
    Ok(OciRoot { image: dir.join("root.ext4"), run, user, reference: reference.to_string() })
}

/// Beside the root image: the config's User as resolved in the image's tree ([`UserLookup`]).
const USER_FILE: &str = "user.json";

/// Fills the cache directory `dir`: the layers applied into a tree, whose ext4 image and
/// resolved user are kept, the tree itself not.
fn unpack(dir: &Path, store: &Store, image: &Image, diff_ids: &[String], run: &RunConfig) -> Result<()> {
    let tree_dir = dir.join("tree");
    std::fs::create_dir(&tree_dir)?;
    let mut tree = layers::Tree::new(&tree_dir);
    let count = image.layers.len();
    for (index, (name, diff_id)) in image.layers.iter().zip(diff_ids).enumerate() {
        let label = format!("layer {} of {count} ({name})", index + 1);
        let mut layer = Hashing { inner: layers::decompressed(store.open(name)?)?, hasher: Sha256::new() };
        // Some writers (umoci 0.4) end a layer after its last file's data, without the
        // padding and end-of-archive blocks, which Go's readers accept: zeros stand in for
        // them (outside the digest, which a truncated layer then fails).
        tree.apply((&mut layer).chain(std::io::repeat(0).take(1536)), &label)?;
        // What follows the tar's end marker counts for the digest too.
        std::io::copy(&mut layer, &mut std::io::sink()).with_context(|| format!("cannot read {label}"))?;
        let digest = format!("sha256:{}", env::hex(&layer.hasher.finalize()));
        if digest != *diff_id {
            bail!("{label} is {digest}, but the image's config says {diff_id}: the image is corrupt: copy it again");
        }
    }
    if let Some(cwd) = run.working_dir() {
        // Runtimes make the WorkingDir when the image lacks it.
        tree.make_dir(&cwd).with_context(|| format!("the image's WorkingDir {cwd}"))?;
    }
    if let Some(spec) = &run.user {
        let user = config::lookup_user(spec, &tree_dir);
        std::fs::write(dir.join(USER_FILE), serde_json::to_vec(&user)?)?;
    }
    rootfs::cached_ext4_of_tree(&tree_dir, &dir.join("root.ext4"), &tree.ownership_script()?)?;
    std::fs::remove_dir_all(&tree_dir).context("cannot remove the unpacked tree")
}

/// A reader that hashes what passes through it (a layer's uncompressed bytes, to compare with
/// the config's `diff_ids`).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// REF's path and what follows it (a tag, or REPO:TAG): the whole of REF when it exists, else
/// the shortest prefix before a `:` that does. skopeo's transport names (`oci:`,
/// `oci-archive:`, `docker-archive:`) may lead.
fn split_reference(reference: &str) -> Result<(PathBuf, Option<&str>)> {
    let transports = ["oci:", "oci-archive:", "docker-archive:"];
    let bare = transports.iter().find_map(|t| reference.strip_prefix(t)).filter(|_| !Path::new(reference).exists());
    let reference_path = bare.unwrap_or(reference);
    if Path::new(reference_path).exists() {
        return Ok((reference_path.into(), None));
    }
    for (colon, _) in reference_path.match_indices(':') {
        let (path, rest) = (&reference_path[..colon], &reference_path[colon + 1..]);
        if !path.is_empty() && Path::new(path).exists() {
            return Ok((path.into(), Some(rest).filter(|rest| !rest.is_empty())));
        }
    }
    bail!(
        "--root-oci {reference}: no such OCI layout directory or image tarball: pass DIR or DIR:TAG (an OCI layout, e.g. from `skopeo copy docker://IMAGE oci:DIR:TAG`), or FILE.tar or FILE.tar:REPO:TAG (from `docker save`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_first_colon_after_an_existing_path() {
        let dir = env::TempDir::new("flint-oci-ref").unwrap();
        let layout = dir.path().join("lay");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(dir.path().join("img.tar"), b"").unwrap();
        let text = |path: &Path| path.to_str().unwrap().to_string();
        let tar = text(&dir.path().join("img.tar"));
        assert_eq!(split_reference(&text(&layout)).unwrap(), (layout.clone(), None));
        assert_eq!(split_reference(&format!("{}:v1", text(&layout))).unwrap(), (layout.clone(), Some("v1")));
        assert_eq!(split_reference(&format!("oci:{}:v1", text(&layout))).unwrap(), (layout, Some("v1")));
        let repo = format!("{tar}:registry.example:5000/app:v2");
        assert_eq!(split_reference(&repo).unwrap(), (dir.path().join("img.tar"), Some("registry.example:5000/app:v2")));
        let missing = split_reference("/nonexistent:tag").unwrap_err().to_string();
        assert!(missing.contains("no such OCI layout directory or image tarball: pass DIR"), "{missing}");
    }
}
