//! Link the init binary as a freestanding static executable (it brings its own `_start`).
//! `-bins` keeps these arguments off the library, which is also built for host tests and the CLI.
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
