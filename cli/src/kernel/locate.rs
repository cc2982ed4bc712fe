//! Where a kernel's image, config and module tree are, for each layout users have: flint's
//! cache directories, a distribution's `/boot` (or an unpacked package or chroot), a kernel
//! build tree, and the running host's kernel.

use super::Kernel;
use crate::env::Fix;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// A directory: flint's layout (`vmlinuz`, `config`, `modules/`, `version`) or a kernel
/// build tree (`arch/x86/boot/bzImage` and `.config`, `O=` object trees included).
pub fn from_dir(dir: &Path) -> Result<Kernel> {
    if dir.join("vmlinuz").is_file() {
        let mut kernel = Kernel::new(dir.display().to_string(), dir.join("vmlinuz"));
        kernel.modules = Some(dir.join("modules")).filter(|m| m.is_dir());
        kernel.config = Some(dir.join("config")).filter(|c| c.is_file());
        kernel.version = std::fs::read_to_string(dir.join("version")).ok().map(|v| v.trim().to_string());
        return Ok(kernel);
    }
    if dir.join(BUILD_TREE_IMAGE).is_file() {
        return Ok(build_tree(dir));
    }
    bail!(
        "{} holds no kernel (neither vmlinuz nor a built {BUILD_TREE_IMAGE}): pass the bzImage itself, or run `make bzImage` in that tree",
        dir.display()
    )
}

/// Where Kbuild leaves the bzImage, relative to the (object) tree.
const BUILD_TREE_IMAGE: &str = "arch/x86/boot/bzImage";

/// A kernel build tree: its `.config`, its release from `include/config/kernel.release`,
/// and the modules `make modules_install` put in `/lib/modules/<release>` (pass `--modules`
/// when they went under another `INSTALL_MOD_PATH`).
fn build_tree(dir: &Path) -> Kernel {
    let mut kernel = Kernel::new(dir.display().to_string(), dir.join(BUILD_TREE_IMAGE));
    kernel.config = Some(dir.join(".config")).filter(|c| c.is_file());
    kernel.version =
        std::fs::read_to_string(dir.join("include/config/kernel.release")).ok().map(|v| v.trim().to_string());
    kernel.modules = kernel.version.as_ref().map(|v| Path::new("/lib/modules").join(v)).filter(|m| m.is_dir());
    kernel
}

/// A path to a kernel image or a directory.
pub fn from_path(path: &Path) -> Result<Kernel> {
    let meta = std::fs::metadata(path).fix(
        format_args!("kernel {}", path.display()),
        &format!(
            "pass an existing bzImage or kernel directory with --kernel PATH, `host`, or a cached name ({})",
            super::names()
        ),
    )?;
    if meta.is_dir() {
        return from_dir(path);
    }
    // The bzImage of a build tree: the tree knows its config and release.
    if let Some(tree) = path.ends_with(BUILD_TREE_IMAGE).then(|| path.ancestors().nth(4)).flatten() {
        return Ok(build_tree(tree));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(version) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("vmlinuz-")) {
        return Ok(distribution(path, version));
    }
    let mut kernel = Kernel::new(path.display().to_string(), path.to_path_buf());
    kernel.modules = Some(dir.join("modules")).filter(|m| m.is_dir());
    kernel.config = Some(dir.join("config")).filter(|c| c.is_file());
    Ok(kernel)
}

/// A distribution's layout, in `/` or in an unpacked package or chroot `ROOT`:
/// `ROOT/boot/vmlinuz-<version>` with `ROOT/boot/config-<version>` and the modules in
/// `ROOT/lib/modules/<version>` (or `ROOT/usr/lib/modules/<version>`).
fn distribution(image: &Path, version: &str) -> Kernel {
    let boot = image.parent().unwrap_or(Path::new("."));
    let root = boot.parent().unwrap_or(Path::new("/"));
    let mut kernel = Kernel::new(image.display().to_string(), image.to_path_buf());
    kernel.version = Some(version.to_string());
    kernel.config = Some(boot.join(format!("config-{version}"))).filter(|c| c.is_file());
    kernel.modules =
        ["lib/modules", "usr/lib/modules"].iter().map(|modules| root.join(modules).join(version)).find(|m| m.is_dir());
    kernel
}

/// The running kernel: `/boot/vmlinuz-$(uname -r)` and its modules.
pub fn host() -> Result<Kernel> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .fix("cannot read the running kernel's release (/proc/sys/kernel/osrelease)", "pass --kernel PATH")?;
    let release = release.trim();
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    match std::fs::File::open(&image) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the running kernel {release} has no image at {} (a container, or a VM booted with an external kernel): pass --kernel PATH or a cached name ({})",
            image.display(),
            super::names()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "{} is readable by root only (as on Ubuntu): copy it where you can read it (sudo install -m 0644 {} ~/vmlinuz-{release}) and pass --kernel ~/vmlinuz-{release} --modules /lib/modules/{release}",
            image.display(),
            image.display()
        ),
        Err(e) => bail!("cannot read {}: {e}: pass --kernel PATH", image.display()),
    }
    let mut kernel = distribution(&image, release);
    kernel.label = format!("host ({release})");
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_parts_of_an_unpacked_package() {
        let root = crate::env::TempDir::new("flint-locate-test").unwrap();
        let root = root.path();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::create_dir_all(root.join("lib/modules/6.1.0-9-amd64/kernel")).unwrap();
        std::fs::write(root.join("boot/vmlinuz-6.1.0-9-amd64"), "image").unwrap();
        std::fs::write(root.join("boot/config-6.1.0-9-amd64"), "CONFIG_X=y\n").unwrap();
        let kernel = from_path(&root.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap();
        assert_eq!(kernel.version.as_deref(), Some("6.1.0-9-amd64"));
        assert_eq!(kernel.config, Some(root.join("boot/config-6.1.0-9-amd64")));
        assert_eq!(kernel.modules, Some(root.join("lib/modules/6.1.0-9-amd64")));
    }

    #[test]
    fn finds_the_parts_of_a_build_tree() {
        let tree = crate::env::TempDir::new("flint-locate-test").unwrap();
        let tree = tree.path();
        std::fs::create_dir_all(tree.join("arch/x86/boot")).unwrap();
        std::fs::create_dir_all(tree.join("include/config")).unwrap();
        std::fs::write(tree.join(BUILD_TREE_IMAGE), "image").unwrap();
        std::fs::write(tree.join(".config"), "CONFIG_X=y\n").unwrap();
        std::fs::write(tree.join("include/config/kernel.release"), "6.1.99-test\n").unwrap();
        for kernel in [from_path(tree).unwrap(), from_path(&tree.join(BUILD_TREE_IMAGE)).unwrap()] {
            assert_eq!(kernel.image, tree.join(BUILD_TREE_IMAGE));
            assert_eq!(kernel.config, Some(tree.join(".config")));
            assert_eq!(kernel.version.as_deref(), Some("6.1.99-test"));
        }
        let error = from_path(&tree.join("include")).unwrap_err().to_string();
        assert!(error.contains("holds no kernel"), "{error}");
    }
}
