//! Links the firmware binary as a flat, freestanding image placed by `layout.ld`, and packs the
//! guest init named by `FLINT_INIT` (a path to the built `flint-init`) into the newc archive
//! the firmware embeds. Without `FLINT_INIT` the archive is empty and the firmware only boots
//! what it is given (`flint build` always sets it). `FLINT_ROM_SIZE` is the image's size
//! (128 KiB unless set; `flint build` falls back to 192 KiB when the two do not fit).
use std::path::PathBuf;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    // Only the binary gets these: the library is also built for host tests.
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    // The image's size (layout.ld): `flint build` tries the smaller first.
    let rom_size = std::env::var("FLINT_ROM_SIZE").unwrap_or_else(|_| "0x20000".into());
    println!("cargo:rustc-link-arg-bins=-Wl,--defsym=ROM_SIZE={rom_size}");
    println!("cargo:rerun-if-env-changed=FLINT_ROM_SIZE");
    println!("cargo:rustc-link-arg-bins=-T{dir}/layout.ld");
    println!("cargo:rerun-if-changed=layout.ld");
    println!("cargo:rerun-if-changed=src/arch/reset.s");
    println!("cargo:rerun-if-env-changed=FLINT_INIT");

    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("init.cpio");
    let archive = match std::env::var_os("FLINT_INIT") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            let init =
                std::fs::read(&path).unwrap_or_else(|e| panic!("FLINT_INIT={}: {e}", PathBuf::from(&path).display()));
            init_archive(&init)
        }
        None => Vec::new(),
    };
    std::fs::write(out, archive).unwrap();
}

/// `/init` plus the mount points it needs before devtmpfs and proc exist.
fn init_archive(init: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 0;
    let mut entry = |out: Vec<u8>, name: &str, mode: u32, data: &[u8]| {
        ino += 1;
        let mut writer = cpio::newc::Builder::new(name).ino(ino).mode(mode).nlink(1).write(out, data.len() as u32);
        std::io::Write::write_all(&mut writer, data).unwrap();
        writer.finish().unwrap()
    };
    for dir in ["dev", "proc", "sys"] {
        out = entry(out, dir, 0o040755, &[]);
    }
    out = entry(out, "init", 0o100755, init);
    cpio::newc::trailer(out).unwrap()
}
