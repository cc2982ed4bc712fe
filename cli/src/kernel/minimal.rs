//! The `minimal` kernel: Debian's kernel source with `allnoconfig` plus
//! scripts/kernel/minimal.config and scripts/kernel/patches/, built in a build tree kept in
//! the cache.

use super::debian::download_and_unpack;
use crate::env::{self, progress, Fix};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The config fragment of the `minimal` kernel (the file in the source tree is the original).
pub const MINIMAL_CONFIG: &str = include_str!("../../../scripts/kernel/minimal.config");
/// The `minimal` kernel's changes to Debian's source (scripts/kernel/patches/), in order;
/// each file says why.
const MINIMAL_PATCHES: [&str; 1] = [include_str!("../../../scripts/kernel/patches/no-initmem-poison.patch")];
/// Where a build tree records the patches its source carries (scripts/ab-revs.sh reads it).
const APPLIED_PATCHES: &str = "applied.patch";
const MINIMAL_SOURCE_PACKAGE: &str = "linux-source-6.1";

/// Whether the minimal kernel in `dir` was built from this flint's fragment and patches.
pub fn is_current(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("recipe.sha256")).is_ok_and(|h| h.trim() == recipe_hash(MINIMAL_CONFIG))
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
