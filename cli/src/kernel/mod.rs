//! Kernels: the cached ones (`debian-cloud` and `debian-generic`, downloaded; `minimal`, built
//! from Debian's kernel source), the host's, and any kernel given by path, with what each has
//! built in.
//!
//! A cached kernel is a directory `kernels/<name>/` in the cache holding `vmlinuz`, its
//! `config`, a `version` file and, when it uses modules, a `modules/` tree; the minimal kernel
//! also keeps its `System.map` (symbol addresses, for scripts/profile.py; Debian's package
//! carries only a placeholder).

pub mod debian;
mod locate;
pub mod minimal;

pub use debian::Flavour;
pub use minimal::{build_minimal, MinimalBuild, MINIMAL_CONFIG};

use crate::env::{self, progress, Fix};
use crate::modules::ModuleTree;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const DEFAULT: &str = "debian-cloud";
/// The kernels `flint kernel` knows how to get.
pub const KNOWN: [(&str, &str); 3] = [
    ("debian-cloud", "Debian 12's cloud kernel (linux-image-cloud-amd64), downloaded; virtio drivers are modules"),
    ("debian-generic", "Debian 12's generic kernel (linux-image-amd64), downloaded; virtio drivers are modules"),
    ("minimal", "built from Debian's linux-source-6.1 with scripts/kernel/minimal.config; everything built in"),
];

/// A bzImage and what is known about it.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// How the user named it: a cache name or a path.
    pub label: String,
    pub image: PathBuf,
    pub modules: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub version: Option<String>,
    /// `config` parsed, on first use: every driver check reads it.
    parsed_config: OnceLock<Option<BTreeMap<String, String>>>,
}

/// `--kernel` and `--modules`, as `flint run` and `flint image` take them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelChoice {
    /// Kernel: a cached name (debian-cloud, debian-generic, minimal), `host` (the running
    /// kernel), or a path to a bzImage, a `boot/vmlinuz-VERSION` (its modules in
    /// `../lib/modules/VERSION`), a kernel directory or a kernel build tree.
    #[arg(long, value_name = "NAME|PATH")]
    pub kernel: Option<String>,
    /// The kernel's module tree (`lib/modules/VERSION`), when it is not where flint looks:
    /// e.g. a build tree's `make modules_install INSTALL_MOD_PATH=DIR`.
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
}

impl KernelChoice {
    pub fn named(kernel: &str) -> KernelChoice {
        KernelChoice { kernel: Some(kernel.to_string()), modules: None }
    }

    pub fn resolve(&self) -> Result<Kernel> {
        Kernel::resolve(self.kernel.as_deref(), self.modules.as_deref())
    }
}

/// Whether a kernel has a feature, from its config (or its module tree when it has no config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provided {
    BuiltIn,
    Module,
    Absent,
}

impl Kernel {
    /// `--kernel` as given: a cached name (fetched on first use), `host` (the running
    /// kernel), or a path: a bzImage, a directory holding `vmlinuz`, or a kernel build tree.
    /// `modules` (`--modules`) names the module tree when it is not where flint looks.
    pub fn resolve(spec: Option<&str>, modules: Option<&Path>) -> Result<Kernel> {
        let spec = spec.unwrap_or(DEFAULT);
        let is_path = spec.contains('/') || Path::new(spec).exists();
        let mut kernel = if is_path {
            locate::from_path(Path::new(spec))?
        } else if spec == "host" {
            locate::host()?
        } else {
            let dir = env::cache_dir()?.join("kernels").join(spec);
            if !dir.join("vmlinuz").is_file() {
                match (Flavour::from_name(spec), spec) {
                    (Some(flavour), _) => {
                        debian::fetch(flavour, false)?;
                    }
                    (None, "minimal") => bail!("kernel minimal is not built yet: run `flint kernel minimal` (it compiles Linux, which takes several minutes)"),
                    _ => bail!("no kernel named {spec:?}: pass a path to a bzImage or a kernel build tree, `host`, or one of {} (see `flint kernel --list`)", names()),
                }
            }
            if spec == "minimal" && !minimal::is_current(&dir) {
                progress("note: the cached minimal kernel was built from another scripts/kernel/minimal.config or patches: run `flint kernel minimal` to rebuild it");
            }
            let mut kernel = locate::from_dir(&dir)?;
            kernel.label = spec.to_string();
            kernel
        };
        if let Some(dir) = modules {
            if !dir.is_dir() {
                bail!(
                    "--modules {}: no such directory: pass the kernel's module tree (lib/modules/<version>)",
                    dir.display()
                );
            }
            kernel.modules = Some(dir.to_path_buf());
        }
        kernel.check_image()?;
        Ok(kernel)
    }

    fn new(label: String, image: PathBuf) -> Kernel {
        Kernel { label, image, modules: None, config: None, version: None, parsed_config: OnceLock::new() }
    }

    /// Checks the image is a readable bzImage; a clear error beats a firmware failure.
    fn check_image(&self) -> Result<()> {
        let header = read_header(&self.image)?;
        if !loader::bzimage::is_linux_kernel(&header) {
            bail!(
                "{} is not a Linux bzImage (no HdrS header): pass a kernel built for x86_64 (arch/x86/boot/bzImage)",
                self.image.display()
            );
        }
        Ok(())
    }

    /// The longest command line the kernel takes (its `cmdline_size`).
    pub fn cmdline_max(&self) -> usize {
        let Ok(header) = read_header(&self.image) else { return 2047 };
        let version = u16::from_le_bytes([header[0x206], header[0x207]]);
        if version >= 0x206 {
            u32::from_le_bytes(header[0x238..0x23c].try_into().unwrap()) as usize
        } else {
            255
        }
    }

    fn config_values(&self) -> Option<&BTreeMap<String, String>> {
        self.parsed_config
            .get_or_init(|| {
                let text = std::fs::read_to_string(self.config.as_ref()?).ok()?;
                Some(
                    text.lines()
                        .filter_map(|line| line.split_once('='))
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect(),
                )
            })
            .as_ref()
    }

    /// Whether the kernel's configuration is known to set `option` (e.g.
    /// `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`) to `y`.
    pub fn has_builtin(&self, option: &str) -> bool {
        self.config_values().is_some_and(|config| config.get(option).is_some_and(|value| value == "y"))
    }

    /// Whether the kernel has `option` (e.g. `CONFIG_VIRTIO_BLK`), built in or as `module`.
    pub fn provides(&self, option: &str, module: &str, tree: Option<&ModuleTree>) -> Provided {
        if let Some(config) = self.config_values() {
            return match config.get(option).map(String::as_str) {
                Some("y") => Provided::BuiltIn,
                Some("m") => Provided::Module,
                _ => Provided::Absent,
            };
        }
        match tree {
            Some(tree) if tree.has(module) && !tree.is_builtin(module) => Provided::Module,
            // Without a config we cannot know; a kernel without modules has it built in or
            // the guest says what is missing.
            _ => Provided::BuiltIn,
        }
    }
}

fn read_header(image: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut header = vec![0u8; 0x240];
    let mut file = std::fs::File::open(image)
        .fix(format_args!("kernel {}", image.display()), "make it readable, or pass another with --kernel")?;
    file.read_exact(&mut header)
        .fix(format_args!("kernel {}", image.display()), "it is too short to be a kernel: pass a bzImage")?;
    Ok(header)
}

fn names() -> String {
    KNOWN.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// `flint kernel --list`: every cached kernel, and the names that can be fetched.
pub fn list() -> Result<String> {
    let dir = env::cache_dir()?.join("kernels");
    let mut out = String::new();
    let mut cached = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.join("vmlinuz").is_file() {
                continue;
            }
            let version = std::fs::read_to_string(path.join("version"))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            let modules = if path.join("modules").is_dir() { "modules" } else { "all built in" };
            cached.push(format!("{name}\t{version}\t{modules}\t{}\n", path.display()));
        }
    }
    cached.sort();
    out.push_str(&format!("cached kernels in {}:\n", dir.display()));
    if cached.is_empty() {
        out.push_str("  (none)\n");
    }
    for line in cached {
        out.push_str("  ");
        out.push_str(&line);
    }
    out.push_str("available (flint kernel NAME):\n");
    for (name, about) in KNOWN {
        out.push_str(&format!("  {name}\t{about}\n"));
    }
    Ok(out)
}
