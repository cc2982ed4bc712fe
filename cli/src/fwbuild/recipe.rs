//! How fw.bin is made, shared by `flint build` and cli/build.rs (which embeds the result in
//! the `flint` binary): the guest init, then the firmware with the init packed in, flattened
//! for `qemu-system-x86_64 -bios`. Only `std` here: build.rs includes this file as it is.
//!
//! The output is the same whoever builds it and wherever: panic locations name source files,
//! so the checkout and the cargo home are remapped to fixed prefixes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The firmware proper (everything but the embedded init) may take at most this much;
/// firmware/layout.ld asserts the same at link time.
pub const CODE_BUDGET: u64 = 48 * 1024;

/// fw.bin's size when the firmware and the init fit in it, and otherwise. QEMU reads and copies
/// the whole image at every start: the small one takes 32 fewer page faults a boot (BENCHMARKS.md).
const SMALL_ROM: u64 = 128 * 1024;
const LARGE_ROM: u64 = 192 * 1024;

/// What a build made, in `<target>/release/`.
pub struct Built {
    pub firmware: PathBuf,
    pub init: PathBuf,
    pub code_size: u64,
}

/// Builds the init and the firmware of the workspace `tree` with `cargo`, in the cargo
/// target directory `target` (kept apart from the host crates' one: the freestanding crates
/// must not share features with them, and a cargo run from a build script must not wait for
/// the lock of the build that runs it). `progress` gets a line per step.
pub fn build(tree: &Path, target: &Path, cargo: &OsString, progress: &dyn Fn(&str)) -> Result<Built, String> {
    for tool in ["objcopy", "strip", "size"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("building fw.bin needs {tool}: install binutils (apt-get install binutils)"));
        }
    }
    let release = target.join("release");
    let cargo_build = |args: &[&str]| {
        let mut command = Command::new(cargo);
        command.arg("build").arg("--release").args(args).current_dir(tree);
        // What the calling cargo set for its own build must not leak into this one.
        for var in ["RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
            command.env_remove(var);
        }
        command.env("CARGO_TARGET_DIR", target).env("CARGO_ENCODED_RUSTFLAGS", remap_flags(tree));
        command
    };

    progress("building the guest init (flint-guest-init)");
    run(cargo_build(&["-p", "flint-guest-init"]))?;
    let init = release.join("flint-init.stripped");
    run({
        let mut strip = Command::new("strip");
        // Its unwind tables too: it panics with abort, so nothing reads them, and the firmware
        // would copy their 8 KB into every VM it boots.
        strip.args(["-R", ".eh_frame", "-R", ".eh_frame_hdr", "-o"]).arg(&init).arg(release.join("flint-init"));
        strip
    })?;

    progress("building the firmware with the init embedded (flint-firmware)");
    let firmware_build = |rom_size: u64| {
        let mut build = cargo_build(&["-p", "flint-firmware", "--bin", "flint-fw"]);
        build.env("FLINT_INIT", &init).env("FLINT_ROM_SIZE", format!("{rom_size:#x}"));
        build
    };
    smallest_image(
        progress,
        || firmware_build(SMALL_ROM).output().is_ok_and(|output| output.status.success()),
        || run(firmware_build(LARGE_ROM)),
    )?;
    let elf = release.join("flint-fw");
    let code_size = code_size(&elf)?;
    if code_size > CODE_BUDGET {
        return Err(format!(
            "the firmware's code is {code_size} bytes, over its {CODE_BUDGET}-byte budget (the embedded init does not count): make it smaller (a panic the firmware can reach, an indexing or an unwrap, links core::fmt back in: about 4 KB)"
        ));
    }
    let firmware = release.join("fw.bin");
    run({
        let mut objcopy = Command::new("objcopy");
        objcopy.args(["-O", "binary"]).arg(&elf).arg(&firmware);
        objcopy
    })?;
    Ok(Built { firmware, init, code_size })
}

/// Links the small image if `link_small` can (quietly: its link fails when the firmware and
/// the init overflow it), else the large one with `link_large`, whose output shows any error
/// that is not about size. Returns the image's size.
fn smallest_image(
    progress: &dyn Fn(&str),
    link_small: impl FnOnce() -> bool,
    link_large: impl FnOnce() -> Result<(), String>,
) -> Result<u64, String> {
    if link_small() {
        return Ok(SMALL_ROM);
    }
    progress(&format!(
        "the firmware and the init overflow {} KiB: building a {} KiB image",
        SMALL_ROM / 1024,
        LARGE_ROM / 1024
    ));
    link_large()?;
    Ok(LARGE_ROM)
}

/// `--remap-path-prefix` for the checkout and the cargo home (where registry crates are),
/// as cargo's `CARGO_ENCODED_RUSTFLAGS` (flags separated by 0x1f). rustc applies the last
/// prefix that matches: the cargo home may lie inside the checkout, and crates.io's source
/// directory, named the same in every cargo home, gets a short name (every byte of a panic
/// location counts against the budget).
fn remap_flags(tree: &Path) -> OsString {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")));
    let mut remaps = vec![(tree.to_path_buf(), "/flint")];
    if let Some(home) = cargo_home {
        remaps.push((home.clone(), "/cargo"));
        remaps.push((home.join("registry/src").join(CRATES_IO_SOURCE), "/crates"));
    }
    let mut flags = OsString::new();
    for (from, to) in remaps {
        if !flags.is_empty() {
            flags.push("\x1f");
        }
        flags.push("--remap-path-prefix=");
        flags.push(from.as_os_str());
        flags.push("=");
        flags.push(to);
    }
    flags
}

/// Where cargo unpacks crates.io's crates, under `$CARGO_HOME/registry/src/` (the suffix is
/// a stable hash of the registry's address).
const CRATES_IO_SOURCE: &str = "index.crates.io-1949cf8c6b5b557f";

/// Bytes of the firmware's own sections in its ELF (everything but `.initramfs`, the init).
fn code_size(elf: &Path) -> Result<u64, String> {
    let output = Command::new("size").arg("-A").arg(elf).output().map_err(|e| format!("cannot run size: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, size) = (fields.next()?, fields.next()?);
            [".text", ".rodata", ".data", ".boot", ".reset"].contains(&name).then(|| size.parse::<u64>().ok())?
        })
        .sum())
}

/// Runs a build step; its output goes to stderr (a build script's stdout is read by cargo),
/// a failure names the command.
fn run(mut command: Command) -> Result<(), String> {
    let status = command.stdout(std::io::stderr()).status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{command:?} failed ({status}): fix the errors above")),
        Err(e) => Err(format!("cannot run {command:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn links_the_small_image_when_it_can_else_the_large_one() {
        let said = RefCell::new(Vec::new());
        let progress = |line: &str| said.borrow_mut().push(line.to_string());
        let large_linked = RefCell::new(false);
        let link_large = || {
            *large_linked.borrow_mut() = true;
            Ok(())
        };
        assert_eq!(smallest_image(&progress, || true, link_large), Ok(SMALL_ROM));
        assert!(!*large_linked.borrow() && said.borrow().is_empty());

        assert_eq!(smallest_image(&progress, || false, link_large), Ok(LARGE_ROM));
        assert!(*large_linked.borrow());
        assert_eq!(*said.borrow(), ["the firmware and the init overflow 128 KiB: building a 192 KiB image"]);

        // An error that is not about size fails the large link too, and is what is reported.
        let failed = smallest_image(&progress, || false, || Err("cargo failed: fix the errors above".to_string()));
        assert_eq!(failed, Err("cargo failed: fix the errors above".to_string()));
    }
}
