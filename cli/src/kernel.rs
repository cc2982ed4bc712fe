//! Kernels: the cached ones (`debian-cloud`, downloaded; `minimal`, built from Debian's
//! kernel source) and any bzImage given by path, with what each has built in.
//!
//! A cached kernel is a directory `kernels/<name>/` in the cache holding `vmlinuz`, its
//! `config`, a `version` file and, when it uses modules, a `modules/` tree; the minimal kernel
//! also keeps its `System.map` (symbol addresses, for scripts/profile.py; Debian's package
//! carries only a placeholder).

use crate::env::{self, progress, Fix};
use crate::modules::ModuleTree;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const DEFAULT: &str = "debian-cloud";
/// The kernels `flint kernel` knows how to get.
pub const KNOWN: [(&str, &str); 2] = [
    ("debian-cloud", "Debian 12's cloud kernel (linux-image-cloud-amd64), downloaded; virtio drivers are modules"),
    ("minimal", "built from Debian's linux-source-6.1 with scripts/kernel/minimal.config; everything built in"),
];

/// The config fragment of the `minimal` kernel (the file in the source tree is the original).
pub const MINIMAL_CONFIG: &str = include_str!("../../scripts/kernel/minimal.config");
/// The `minimal` kernel's changes to Debian's source (scripts/kernel/patches/), in order;
/// each file says why.
const MINIMAL_PATCHES: [&str; 1] = [include_str!("../../scripts/kernel/patches/no-initmem-poison.patch")];
/// Where a build tree records the patches its source carries (scripts/ab-revs.sh reads it).
const APPLIED_PATCHES: &str = "applied.patch";
const DEBIAN_CLOUD_META: &str = "linux-image-cloud-amd64";
const MINIMAL_SOURCE_PACKAGE: &str = "linux-source-6.1";

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

/// Whether a kernel has a feature, from its config (or its module tree when it has no config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provided {
    BuiltIn,
    Module,
    Absent,
}

impl Kernel {
    /// `--kernel` as given: a cached name (the default fetched on first use) or a path to a
    /// bzImage or to a directory holding `vmlinuz`.
    pub fn resolve(spec: Option<&str>) -> Result<Kernel> {
        let spec = spec.unwrap_or(DEFAULT);
        let is_path = spec.contains('/') || Path::new(spec).exists();
        let kernel = if is_path {
            Kernel::from_path(Path::new(spec))?
        } else {
            let dir = env::cache_dir()?.join("kernels").join(spec);
            if !dir.join("vmlinuz").is_file() {
                match spec {
                    "debian-cloud" => {
                        fetch_debian_cloud(false)?;
                    }
                    "minimal" => bail!("kernel minimal is not built yet: run `flint kernel minimal` (it compiles Linux, which takes several minutes)"),
                    _ => bail!("no kernel named {spec:?}: pass a path to a bzImage, or one of {} (see `flint kernel --list`)", names()),
                }
            }
            if spec == "minimal"
                && std::fs::read_to_string(dir.join("recipe.sha256")).map(|h| h.trim().to_string()).ok()
                    != Some(recipe_hash(MINIMAL_CONFIG))
            {
                progress("note: the cached minimal kernel was built from another scripts/kernel/minimal.config or patches: run `flint kernel minimal` to rebuild it");
            }
            let mut kernel = Kernel::from_dir(&dir)?;
            kernel.label = spec.to_string();
            kernel
        };
        kernel.check_image()?;
        Ok(kernel)
    }

    fn from_dir(dir: &Path) -> Result<Kernel> {
        let image = dir.join("vmlinuz");
        if !image.is_file() {
            bail!("{} has no vmlinuz: pass the bzImage itself with --kernel PATH", dir.display());
        }
        Ok(Kernel {
            label: dir.display().to_string(),
            image,
            modules: Some(dir.join("modules")).filter(|m| m.is_dir()),
            config: Some(dir.join("config")).filter(|c| c.is_file()),
            version: std::fs::read_to_string(dir.join("version")).ok().map(|v| v.trim().to_string()),
            parsed_config: OnceLock::new(),
        })
    }

    fn from_path(path: &Path) -> Result<Kernel> {
        let meta = std::fs::metadata(path).fix(
            format_args!("kernel {}", path.display()),
            &format!("pass an existing bzImage with --kernel PATH, or a cached name ({})", names()),
        )?;
        if meta.is_dir() {
            return Kernel::from_dir(path);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut kernel = Kernel {
            label: path.display().to_string(),
            image: path.to_path_buf(),
            modules: Some(dir.join("modules")).filter(|m| m.is_dir()),
            config: Some(dir.join("config")).filter(|c| c.is_file()),
            version: None,
            parsed_config: OnceLock::new(),
        };
        // A distribution layout: /boot/vmlinuz-<version> with /boot/config-<version> and
        // /lib/modules/<version>.
        if let Some(version) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("vmlinuz-")) {
            kernel.version = Some(version.to_string());
            if kernel.config.is_none() {
                kernel.config = Some(dir.join(format!("config-{version}"))).filter(|c| c.is_file());
            }
            if kernel.modules.is_none() {
                kernel.modules = Some(PathBuf::from(format!("/lib/modules/{version}"))).filter(|m| m.is_dir());
            }
        }
        Ok(kernel)
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

/// The first `linux-image-<version>` package the cloud meta-package depends on.
fn debian_cloud_package() -> Result<String> {
    let find = || -> Result<Option<String>> {
        let out = env::tool_output(Command::new("apt-cache").args(["depends", DEBIAN_CLOUD_META])).unwrap_or_default();
        Ok(out
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Depends: "))
            .find(|pkg| pkg.starts_with("linux-image-") && pkg.as_bytes().get(12).is_some_and(u8::is_ascii_digit))
            .map(str::to_string))
    };
    env::require_tool("apt-cache", "apt")?;
    if let Some(pkg) = find()? {
        return Ok(pkg);
    }
    progress("updating the apt package lists (apt-get update)");
    env::run_tool(Command::new("apt-get").args(["update", "-qq"]))?;
    find()?
        .with_context(|| format!("apt cannot resolve {DEBIAN_CLOUD_META}: add Debian 12 (bookworm) to the apt sources"))
}

/// Downloads a Debian package into `work` and unpacks it into `work/root`.
fn download_and_unpack(pkg: &str, work: &Path) -> Result<PathBuf> {
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

pub fn fetch_debian_cloud(force: bool) -> Result<PathBuf> {
    let kernels = env::cache_subdir("kernels")?;
    let dest = kernels.join("debian-cloud");
    if !force && dest.join("vmlinuz").is_file() && dest.join("modules").is_dir() {
        return Ok(dest);
    }
    let pkg = debian_cloud_package()?;
    let version = pkg.strip_prefix("linux-image-").unwrap_or(&pkg).to_string();
    let work = env::temp_sibling(&kernels.join("debian-cloud-download"));
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
    progress(format!("kernel debian-cloud {version} is in {}", dest.display()));
    Ok(dest)
}

/// What building Linux needs on the host, as (program or header, Debian package).
const BUILD_NEEDS: [(&str, &str); 10] = [
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("perl", "perl"),
    ("xz", "xz-utils"),
    // scripts/kernel/minimal.config compresses the kernel with lz4.
    ("lz4", "lz4"),
    ("/usr/include/gelf.h", "libelf-dev"),
    ("patch", "patch"),
];

fn check_build_tools() -> Result<()> {
    let missing: Vec<&str> = BUILD_NEEDS
        .iter()
        .filter(
            |(what, _)| {
                if what.starts_with('/') {
                    !Path::new(what).exists()
                } else {
                    env::find_program(what).is_none()
                }
            },
        )
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        bail!(
            "building the minimal kernel needs {}: run scripts/setup.sh (or apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn source_version() -> Result<String> {
    let show =
        || env::tool_output(Command::new("apt-cache").args(["show", "--no-all-versions", MINIMAL_SOURCE_PACKAGE])).ok();
    let version = |text: String| text.lines().find_map(|l| l.strip_prefix("Version: ")).map(str::to_string);
    if let Some(v) = show().and_then(version) {
        return Ok(v);
    }
    progress("updating the apt package lists (apt-get update)");
    env::run_tool(Command::new("apt-get").args(["update", "-qq"]))?;
    show().and_then(version).with_context(|| {
        format!("apt cannot find {MINIMAL_SOURCE_PACKAGE}: add Debian 12 (bookworm) to the apt sources")
    })
}

/// What `recipe.sha256` of a built minimal kernel holds: its fragment and the patches.
fn recipe_hash(fragment: &str) -> String {
    env::sha256_hex(format!("{fragment}\n{}", MINIMAL_PATCHES.concat()).as_bytes())
}

/// What `flint kernel minimal` builds: the fragment (scripts/kernel/minimal.config unless
/// `--config` names another) and where the kernel goes (the cache unless `-o`).
pub struct MinimalBuild {
    pub fragment: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub force: bool,
}

/// The `minimal` kernel: Debian's kernel source with `allnoconfig` plus the fragment, cached
/// by the hash of the fragment and the source package version. The source and object tree
/// stay in the cache, so a build after a fragment change recompiles only what the changed
/// options touch (Kbuild tracks which files read which option).
pub fn build_minimal(build: &MinimalBuild) -> Result<PathBuf> {
    let kernels = env::cache_subdir("kernels")?;
    let dest = match &build.output {
        Some(dir) => std::path::absolute(dir)?,
        None => kernels.join("minimal"),
    };
    let fragment = match &build.fragment {
        Some(path) => std::fs::read_to_string(path)
            .fix(format_args!("config fragment {}", path.display()), "pass a readable file of CONFIG_X=y lines")?,
        None => MINIMAL_CONFIG.to_string(),
    };
    env::require_tool("apt-get", "apt")?;
    let source = source_version()?;
    let key = env::sha256_hex(format!("{MINIMAL_SOURCE_PACKAGE} {source}\n{}", recipe_hash(&fragment)).as_bytes())
        [..16]
        .to_string();
    if !build.force
        && dest.join("vmlinuz").is_file()
        && std::fs::read_to_string(dest.join("key")).is_ok_and(|k| k.trim() == key)
    {
        return Ok(dest);
    }
    check_build_tools()?;
    // Named by the source version only: every fragment shares one tree.
    let work = kernels.join(format!(".minimal-build-{}", &env::sha256_hex(source.as_bytes())[..12]));
    std::fs::create_dir_all(&work)?;
    let lock = std::fs::File::create(work.join(".lock"))?;
    if lock.try_lock().is_err() {
        progress(format!("waiting for another kernel build in {}", work.display()));
        lock.lock()?;
    }
    let started = Instant::now();
    let tmp = env::temp_sibling(&dest);
    let result = build_minimal_in(&work, &source, &fragment, build.force)
        .and_then(|()| collect_minimal(&work, &tmp, &source, &key, &fragment))
        .and_then(|()| env::publish(&tmp, &dest, true));
    if let Err(error) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("building the minimal kernel failed: {error:#} (the source stays in {} for the next try; delete it to free its space)", work.display());
    }
    progress(format!(
        "kernel built in {:.0?}: {} (the build tree stays in {} so the next build is incremental; delete it to free about 2 GB)",
        started.elapsed(),
        dest.display(),
        work.display()
    ));
    Ok(dest)
}

/// Unpacks the source once, configures it from `fragment` and compiles it in the kept object
/// tree (from scratch with `force`).
fn build_minimal_in(work: &Path, source: &str, fragment: &str, force: bool) -> Result<()> {
    let src = work.join("src");
    // `.unpacked` is written last, so a half-extracted tree is never taken for a whole one.
    if !work.join(".unpacked").is_file() {
        for leftover in ["src", "root", "obj"] {
            let _ = std::fs::remove_dir_all(work.join(leftover));
        }
        for entry in std::fs::read_dir(work)?.flatten().filter(|e| e.file_name() != ".lock") {
            let _ = std::fs::remove_file(entry.path());
        }
        let root = download_and_unpack(MINIMAL_SOURCE_PACKAGE, work)?;
        let tarball = std::fs::read_dir(root.join("usr/src"))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
            .context("linux-source has no usr/src/*.tar.xz")?;
        std::fs::create_dir_all(&src)?;
        progress(format!("extracting {} (about a minute)", tarball.file_name().unwrap_or_default().to_string_lossy()));
        env::run_tool(Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&src).arg("--strip-components=1"))?;
        std::fs::remove_dir_all(&root)?;
        for deb in
            std::fs::read_dir(work)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "deb"))
        {
            let _ = std::fs::remove_file(deb);
        }
        std::fs::write(work.join(".unpacked"), format!("{source}\n"))?;
    }

    apply_patches(work, &MINIMAL_PATCHES.concat())?;
    let obj = work.join("obj");
    if force {
        let _ = std::fs::remove_dir_all(&obj);
    }
    let incremental = obj.join("vmlinux").is_file();
    std::fs::create_dir_all(&obj)?;
    let fragment_file = work.join("fragment.config");
    std::fs::write(&fragment_file, fragment)?;
    progress("configuring: allnoconfig + the fragment");
    env::run_tool(&mut make(work, &["-s", "allnoconfig", &format!("KCONFIG_ALLCONFIG={}", fragment_file.display())]))?;
    check_config(&std::fs::read_to_string(obj.join(".config"))?, fragment)?;

    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    progress(if incremental {
        format!("compiling Linux with {jobs} jobs, only what changed since the last build")
    } else {
        format!("compiling Linux with {jobs} jobs (6+ minutes on 2 cores)")
    });
    compile_with_progress(&mut make(work, &[&format!("-j{jobs}"), "bzImage"]))?;
    Ok(())
}

/// Brings the shared source tree to carry `patches` and nothing else: what the last build
/// applied (recorded in `applied.patch`) is reverted first when it differs; Kbuild then
/// recompiles the files the change touched.
fn apply_patches(work: &Path, patches: &str) -> Result<()> {
    let record = work.join(APPLIED_PATCHES);
    let applied = std::fs::read_to_string(&record).unwrap_or_default();
    if applied == patches {
        return Ok(());
    }
    // A patch that fails leaves no .rej or .orig files behind in the shared tree.
    let patch = |file: &Path, revert: bool| {
        let mut command = Command::new("patch");
        command
            .args(["-s", "-p1", "--forward", "--reject-file=-", "--no-backup-if-mismatch"])
            .arg("-d")
            .arg(work.join("src"))
            .arg("-i")
            .arg(file);
        command.stdin(std::process::Stdio::null());
        if revert {
            command.arg("-R");
        }
        env::run_tool(&mut command)
    };
    if !applied.is_empty() {
        progress("reverting the patches of the last build");
        patch(&record, true).context("cannot revert the last build's patches: delete the build tree")?;
        std::fs::remove_file(&record)?;
    }
    if !patches.is_empty() {
        progress("patching the source (scripts/kernel/patches)");
        let wanted = work.join("wanted.patch");
        std::fs::write(&wanted, patches)?;
        patch(&wanted, false).with_context(|| {
            format!("the patches do not apply to this source: delete {} to start from a fresh tree", work.display())
        })?;
        std::fs::rename(&wanted, &record)?;
    }
    Ok(())
}

/// `make` on the build tree `work`: the source in `src/`, the objects in `obj/`.
fn make(work: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("make");
    command.arg("-C").arg(work.join("src")).arg(format!("O={}", work.join("obj").display()));
    command.arg("ARCH=x86_64").args(args);
    command
}

/// Copies the kernel built in the tree `work` and what describes it into `dir`.
fn collect_minimal(work: &Path, dir: &Path, source: &str, key: &str, fragment: &str) -> Result<()> {
    let obj = work.join("obj");
    let release = env::tool_output(&mut make(work, &["-s", "kernelrelease"]))?.trim().to_string();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    std::fs::copy(obj.join("arch/x86/boot/bzImage"), dir.join("vmlinuz"))?;
    std::fs::copy(obj.join(".config"), dir.join("config"))?;
    std::fs::copy(obj.join("System.map"), dir.join("System.map"))?;
    std::fs::write(dir.join("version"), format!("{release} (from {MINIMAL_SOURCE_PACKAGE} {source})\n"))?;
    std::fs::write(dir.join("key"), format!("{key}\n"))?;
    std::fs::write(dir.join("recipe.sha256"), format!("{}\n", recipe_hash(fragment)))?;
    Ok(())
}

/// Every `CONFIG_X=y` of the fragment must survive `allnoconfig` (an option whose
/// dependencies are off is silently dropped, so the fragment must list them too).
fn check_config(config: &str, fragment: &str) -> Result<()> {
    let set: BTreeMap<&str, &str> = config.lines().filter_map(|l| l.split_once('=')).collect();
    let dropped: Vec<&str> = fragment
        .lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .filter(|(key, value)| match *value {
            // Off is written `# CONFIG_X is not set`, or not at all when its menu is off.
            "n" => set.get(key).is_some_and(|v| *v != "n"),
            _ => set.get(key) != Some(value),
        })
        .map(|(key, _)| key)
        .collect();
    if !dropped.is_empty() {
        bail!("the kernel config did not take {} (unmet dependencies, or selected by another option): add what they depend on to the fragment", dropped.join(", "));
    }
    Ok(())
}

/// Runs the kernel build, printing a progress line every few seconds instead of make's
/// thousands of lines; the tail of the output is shown if it fails.
fn compile_with_progress(command: &mut Command) -> Result<()> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("cannot start make")?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let started = Instant::now();
    let mut last = Instant::now();
    let mut compiled = 0usize;
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        if line.trim_start().starts_with("CC") {
            compiled += 1;
        }
        if last.elapsed() >= Duration::from_secs(10) {
            progress(format!("compiling Linux: {compiled} files so far ({:.0?})", started.elapsed()));
            last = Instant::now();
        }
        tail.push_back(line);
        if tail.len() > 20 {
            tail.pop_front();
        }
    }
    let status = child.wait()?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        for line in tail.iter().chain(errors.iter().rev().take(40).collect::<Vec<_>>().into_iter().rev()) {
            eprintln!("  {line}");
        }
        bail!("make bzImage failed ({status}); its last lines are above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, new: &str) -> String {
        format!("Why, in prose.\n\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    }

    #[test]
    fn a_build_tree_carries_one_set_of_patches_at_a_time() {
        let work = env::TempDir::new("flint-patch-test").unwrap();
        let src = work.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f.c"), "a\n").unwrap();
        let read = || std::fs::read_to_string(src.join("f.c")).unwrap();
        apply_patches(work.path(), &diff("a", "b")).unwrap();
        assert_eq!(read(), "b\n");
        // The same set again is left as it is (patching twice would fail).
        apply_patches(work.path(), &diff("a", "b")).unwrap();
        assert_eq!(read(), "b\n");
        // Another set: the first is reverted, then the second applies to the original.
        apply_patches(work.path(), &diff("a", "c")).unwrap();
        assert_eq!(read(), "c\n");
        apply_patches(work.path(), "").unwrap();
        assert_eq!(read(), "a\n");
        assert!(!work.path().join(APPLIED_PATCHES).exists());
        let error = apply_patches(work.path(), &diff("x", "y")).unwrap_err();
        assert!(format!("{error:#}").contains("do not apply"), "{error:#}");
    }
}
