//! The OCI image layout (image-spec, image-layout.md): `index.json` lists manifests, tagged
//! by their `org.opencontainers.image.ref.name` annotation; every blob is `blobs/sha256/HEX`.

use super::{Image, Store, JSON_MAX};
use crate::env;
use anyhow::{bail, Result};
use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, MediaType, Os, ANNOTATION_REF_NAME};
use std::path::Path;

/// The image tagged `tag` in the layout `store` (`shown` in messages): without a tag, the only
/// one, or the one tagged `latest`.
pub(super) fn image(store: &Store, tag: Option<&str>, shown: &Path) -> Result<Image> {
    if !store.contains("index.json") {
        bail!(
            "{} is neither an OCI image layout (no index.json) nor a docker-archive (no manifest.json): pass an image made by `skopeo copy`, `umoci` or `docker save`",
            shown.display()
        );
    }
    let index: ImageIndex = parse(&store.read_json("index.json")?, "index.json", shown)?;
    let mut descriptor = choose(&index, tag, shown)?.clone();
    // A multi-platform image: an index of manifests, one per platform.
    for _ in 0..4 {
        if !is_index(descriptor.media_type()) {
            break;
        }
        let nested: ImageIndex = parse(&blob(store, &descriptor)?, "a nested index", shown)?;
        let amd64 = nested
            .manifests()
            .iter()
            .find(|m| m.platform().as_ref().is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64));
        let Some(amd64) = amd64 else {
            bail!("image {} has no linux/amd64 variant, which flint's guests need", shown.display());
        };
        descriptor = amd64.clone();
    }
    let manifest: ImageManifest = parse(&blob(store, &descriptor)?, "its manifest", shown)?;
    let config = blob(store, manifest.config())?;
    let layers = manifest.layers().iter().map(blob_name).collect::<Result<_>>()?;
    Ok(Image { config, layers })
}

fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(other) => other == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str, shown: &Path) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        anyhow::anyhow!("image {}: {what} is not valid OCI JSON ({e}): the image is malformed", shown.display())
    })
}

/// The manifest `tag` names, or the only one, or the one tagged `latest`.
fn choose<'a>(index: &'a ImageIndex, tag: Option<&str>, shown: &Path) -> Result<&'a Descriptor> {
    let name = |m: &Descriptor| m.annotations().as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)).cloned();
    let manifests = index.manifests();
    let tags: Vec<String> = manifests.iter().filter_map(name).collect();
    let listed = if tags.is_empty() { "it has no tags".to_string() } else { format!("its tags: {}", tags.join(", ")) };
    let found = match tag {
        Some(tag) => manifests.iter().find(|m| name(m).as_deref() == Some(tag)),
        None if manifests.len() == 1 => manifests.first(),
        None => manifests.iter().find(|m| name(m).as_deref() == Some("latest")),
    };
    match (found, tag) {
        (Some(found), _) => Ok(found),
        (None, Some(tag)) => {
            bail!("image {} has no tag {tag} ({listed}): pass DIR:TAG with one of them", shown.display())
        }
        (None, None) if manifests.is_empty() => {
            bail!("image {} is an empty OCI layout (no manifests in index.json)", shown.display())
        }
        (None, None) => bail!(
            "image {} holds {} images and none is tagged latest ({listed}): pass {}:TAG",
            shown.display(),
            manifests.len(),
            shown.display()
        ),
    }
}

/// Where the blob `descriptor` names lives in the layout.
fn blob_name(descriptor: &Descriptor) -> Result<String> {
    match descriptor.as_digest_sha256() {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(format!("blobs/sha256/{hex}")),
        _ => bail!(
            "the image names a blob by {}, and flint reads sha256 digests only: copy the image with `skopeo copy` to get one",
            descriptor.digest()
        ),
    }
}

/// A JSON blob, checked against the size and digest its descriptor gives.
fn blob(store: &Store, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let name = blob_name(descriptor)?;
    if descriptor.size() > JSON_MAX {
        bail!("{name} is {} bytes, more than any image's metadata: the image is malformed", descriptor.size());
    }
    let bytes = store.read_json(&name)?;
    let digest = env::sha256_hex(&bytes);
    if bytes.len() as u64 != descriptor.size() || descriptor.as_digest_sha256() != Some(digest.as_str()) {
        bail!("{name} does not match its digest or size: the image is corrupt: copy it again");
    }
    Ok(bytes)
}
