use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

fn main() {
    // flint exits with the workload's status, so its own bugs must not look like one: with
    // panic = "abort" a panic would end flint with SIGABRT (134, "the workload died of
    // signal 6"). The hook runs before the abort and exits with flint's failure status.
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload_as_str().unwrap_or("a panic");
        let at = info.location().map(|location| format!(" at {location}")).unwrap_or_default();
        let line = format!("flint: error: internal error: {message}{at} (please report it)\n");
        // Straight to fd 2 in one write: another thread may hold the stderr lock, stuck on a
        // full pipe.
        // SAFETY: fd 2 is borrowed for one write and never closed (ManuallyDrop).
        let _ = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) }).write_all(line.as_bytes());
        std::process::exit(i32::from(flint::env::EXIT_FAILURE));
    }));
    std::process::exit(i32::from(flint::cli::main_with(std::env::args_os())));
}
