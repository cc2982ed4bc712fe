//! Debian 12's kernels, downloaded with apt into the cache: `debian-cloud` (the cloud flavour,
//! flint's default) and `debian-generic` (the default kernel of a Debian host).

use crate::env::{self, progress, Fix};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Debian kernel flavour: the cache name and the meta-package that points at its newest
/// `linux-image-<version>` package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Cloud,
    Generic,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Cloud => "debian-cloud",
            Flavour::Generic => "debian-generic",
        }
    }

    fn meta_package(self) -> &'static str {
        match self {
            Flavour::Cloud => "linux-image-cloud-amd64",
            Flavour::Generic => "linux-image-amd64",
        }
    }

    pub fn from_name(name: &str) -> Option<Flavour> {
        [Flavour::Cloud, Flavour::Generic].into_iter().find(|f| f.name() == name)
    }
}

/// The first `linux-image-<version>` package the meta-package depends on.
fn image_package(flavour: Flavour) -> Result<String> {
    let meta = flavour.meta_package();
    let find = || {
        let out = env::tool_output(Command::new("apt-cache").args(["depends", meta])).unwrap_or_default();
        out.lines()
            .filter_map(|line| line.trim().strip_prefix("Depends: "))
            .find(|pkg| pkg.starts_with("linux-image-") && pkg.as_bytes().get(12).is_some_and(u8::is_ascii_digit))
            .map(str::to_string)
    };
    env::require_tool("apt-cache", "apt")?;
    if let Some(pkg) = find() {
        return Ok(pkg);
    }
    progress("updating the apt package lists (apt-get update)");
    env::run_tool(Command::new("apt-get").args(["update", "-qq"]))?;
    find().with_context(|| format!("apt cannot resolve {meta}: add Debian 12 (bookworm) to the apt sources"))
}

/// Downloads a Debian package into `work` and unpacks it into `work/root`.
pub fn download_and_unpack(pkg: &str, work: &Path) -> Result<PathBuf> {
    env::require_tool("apt-get", "apt")?;
    env::require_tool("dpkg-deb", "dpkg")?;
    progress(format!("downloading {pkg}"));
    env::run_tool(Command::new("apt-get").args(["download", pkg]).current_dir(work))
        .fix(format_args!("cannot download {pkg}"), "check the network and the apt sources (apt-get update)")?;
    let deb = std::fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", work.display()))?;
    let root = work.join("root");
    progress(format!("unpacking {}", deb.file_name().unwrap_or_default().to_string_lossy()));
    env::run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    Ok(root)
}

/// The kernel of `flavour` in the cache (`kernels/<name>/`), downloaded unless already there.
pub fn fetch(flavour: Flavour, force: bool) -> Result<PathBuf> {
    let kernels = env::cache_subdir("kernels")?;
    let dest = kernels.join(flavour.name());
    if !force && dest.join("vmlinuz").is_file() && dest.join("modules").is_dir() {
        return Ok(dest);
    }
    let pkg = image_package(flavour)?;
    let version = pkg.strip_prefix("linux-image-").unwrap_or(&pkg).to_string();
    let work = env::temp_sibling(&kernels.join(format!("{}-download", flavour.name())));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        let root = download_and_unpack(&pkg, &work)?;
        let tmp = work.join("kernel");
        std::fs::create_dir_all(&tmp)?;
        std::fs::copy(root.join(format!("boot/vmlinuz-{version}")), tmp.join("vmlinuz"))
            .context("the package has no boot/vmlinuz")?;
        std::fs::copy(root.join(format!("boot/config-{version}")), tmp.join("config"))
            .context("the package has no boot/config")?;
        let modules = [root.join(format!("lib/modules/{version}")), root.join(format!("usr/lib/modules/{version}"))]
            .into_iter()
            .find(|m| m.is_dir())
            .context("the package has no lib/modules tree")?;
        std::fs::rename(modules, tmp.join("modules"))?;
        std::fs::write(tmp.join("version"), format!("{version}\n"))?;
        // Keep a complete kernel that a concurrent flint put there meanwhile (it may be in use).
        let complete = dest.join("vmlinuz").is_file() && dest.join("modules").is_dir();
        env::publish(&tmp, &dest, force || !complete)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    progress(format!("kernel {} {version} is in {}", flavour.name(), dest.display()));
    Ok(dest)
}
