//! Builds fw.bin (the firmware with flint's guest init) from this workspace and hands both to
//! the crate (`embedded.rs`), so an installed `flint` needs no checkout and no `flint build`.

#[path = "src/fwbuild/recipe.rs"]
mod recipe;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let tree = manifest.parent().unwrap().to_path_buf();
    for source in ["firmware", "guest-init", "loader", "freestanding", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", tree.join(source).display());
    }
    println!("cargo:rerun-if-changed=src/fwbuild/recipe.rs");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let log = |step: &str| eprintln!("flint build.rs: {step}");
    let built = recipe::build(&tree, &freestanding_target(&out), &cargo, &log).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1)
    });
    log(&format!("fw.bin built: firmware code {} bytes", built.code_size));
    for (name, path) in [("FW", &built.firmware), ("INIT", &built.init)] {
        let bytes = std::fs::read(path).unwrap();
        let hash: String = Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
        println!("cargo:rustc-env=FLINT_EMBEDDED_{name}={}", path.display());
        println!("cargo:rustc-env=FLINT_EMBEDDED_{name}_SHA={hash}");
    }
}

/// `freestanding/` in cargo's target directory, found from `OUT_DIR`
/// (`<target>/<profile>/build/<package>-<hash>/out`; cargo tags the target directory with
/// CACHEDIR.TAG), the same directory `flint build` uses; `OUT_DIR` itself if the layout is
/// another.
fn freestanding_target(out: &Path) -> PathBuf {
    match out.ancestors().nth(4) {
        Some(target) if target.join("CACHEDIR.TAG").is_file() => target.join("freestanding"),
        _ => out.join("freestanding"),
    }
}
