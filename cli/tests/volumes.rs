//! `flint run --volume HOST:GUEST[:ro]`: host directories in the guest, over virtiofs and 9p,
//! on microvm and pc, with Debian's cloud kernel (virtiofs as a module) and the minimal one.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_status, cache, flint, minimal_kernel, scratch, text};

/// Reads the read-only volume, writes the other, and tries to write the read-only one, even
/// after remounting it read-write (the host must refuse that too).
const SCRIPT: &str = "cat /in/host.txt; echo guest > /data/out.txt; \
    echo x 2>/dev/null > /in/new && echo ro-written; \
    mount -o remount,rw /in 2>/dev/null; echo x 2>/dev/null > /in/new && echo ro-written-after-remount; true";

/// Runs [`SCRIPT`] with `dir/rw` at /data and `dir/ro` at /in (read-only).
fn run_script(dir: &Path, options: &[&str]) -> Output {
    for sub in ["rw", "ro"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("ro/host.txt"), "from the host\n").unwrap();
    let (rw, ro) = (dir.join("rw"), dir.join("ro"));
    flint()
        .arg("run")
        .args(options)
        .arg("-v")
        .arg(format!("{}:/data", rw.display()))
        .arg("--volume")
        .arg(format!("{}:/in:ro", ro.display()))
        .args(["--", "sh", "-c", SCRIPT])
        .output()
        .unwrap()
}

/// The guest read the host's file, its file is on the host, owned by `owner`, and the
/// read-only volume took no write.
#[track_caller]
fn check(dir: &Path, output: &Output, owner: u32) {
    assert_status(output, 0);
    assert_eq!(text(&output.stdout), "from the host\n", "stderr: {}", text(&output.stderr));
    let written = dir.join("rw/out.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "guest\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), owner, "owner of {}", written.display());
    assert!(!dir.join("ro/new").exists(), "the read-only volume was written");
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn virtiofs_with_the_default_kernel_on_microvm_and_pc() {
    for machine in ["microvm", "pc"] {
        let dir = scratch(&format!("vol-cloud-{machine}"));
        let output = run_script(&dir, &["--machine", machine]);
        check(&dir, &output, euid());
    }
}

#[test]
fn virtiofs_and_9p_with_the_minimal_kernel_on_microvm_and_pc() {
    let kernel = minimal_kernel();
    for fs in ["virtiofs", "9p"] {
        for machine in ["microvm", "pc"] {
            let dir = scratch(&format!("vol-min-{fs}-{machine}"));
            let output =
                run_script(&dir, &["--kernel", kernel.to_str().unwrap(), "--volume-fs", fs, "--machine", machine]);
            check(&dir, &output, euid());
        }
    }
}

/// As an ordinary user, what the guest's root writes belongs to that user: virtiofsd runs in
/// a user namespace of its own, and 9p is served by QEMU, which runs as the user. (Run as
/// `nobody` when the tests run as root, with a cache of its own holding the minimal kernel.)
#[test]
fn an_ordinary_user_owns_what_the_guest_writes() {
    if euid() != 0 {
        for fs in ["virtiofs", "9p"] {
            let dir = scratch(&format!("vol-user-{fs}"));
            let output = run_script(&dir, &["--kernel", minimal_kernel().to_str().unwrap(), "--volume-fs", fs]);
            check(&dir, &output, euid());
        }
        return;
    }
    const NOBODY: u32 = 65534;
    let user_cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vol-nobody-cache");
    let kernel = user_cache.join("kernels/minimal");
    std::fs::create_dir_all(&kernel).unwrap();
    for file in ["vmlinuz", "config", "version"] {
        std::fs::copy(cache().join("kernels/minimal").join(file), kernel.join(file)).unwrap();
    }
    for fs in ["virtiofs", "9p"] {
        let dir = scratch(&format!("vol-nobody-{fs}"));
        for sub in ["rw", "ro"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("ro/host.txt"), "from the host\n").unwrap();
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&user_cache)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let output = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
            .arg(format!("HOME={}", user_cache.display()))
            .arg(format!("FLINT_CACHE={}", user_cache.display()))
            .arg(env!("CARGO_BIN_EXE_flint"))
            .args(["--quiet", "run", "--kernel", "minimal", "--volume-fs", fs])
            .arg("-v")
            .arg(format!("{}:/data", dir.join("rw").display()))
            .arg("-v")
            .arg(format!("{}:/in:ro", dir.join("ro").display()))
            .args(["--", "sh", "-c", SCRIPT])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        check(&dir, &output, NOBODY);
    }
}

#[test]
fn volumes_are_refused_clearly_where_they_cannot_apply() {
    let dir = scratch("vol-refused");
    let volume = format!("{}:/data", dir.display());
    let cases: [(&[&str], &str); 5] = [
        (&["--warm", "-v", &volume], "--warm cannot apply with --volume"),
        (&["-v", "/no/such/dir:/data"], "no such directory on the host"),
        (&["-v", "relative-guest:data"], "give an absolute path"),
        (&["--print-cmd", "-v", &volume], "--print-cmd cannot show --volume over virtiofs"),
        (&["-v", &volume, "-v", &format!("{}:/data:ro", dir.display())], "two volumes are mounted at /data"),
    ];
    for (options, message) in cases {
        let output = flint().arg("run").args(options).args(["--", "true"]).output().unwrap();
        assert_status(&output, 125);
        assert!(text(&output.stderr).contains(message), "{options:?}: {}", text(&output.stderr));
    }
}

#[test]
fn a_missing_mount_point_on_a_read_only_root_is_named() {
    let dir = scratch("vol-ro-root");
    let output = flint()
        .args(["run", "--ro", "--kernel", minimal_kernel().to_str().unwrap(), "-v"])
        .arg(format!("{}:/no/such/dir", dir.display()))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_status(&output, 125);
    assert!(
        text(&output.stderr).contains("the mount point is missing and the root is read-only"),
        "{}",
        text(&output.stderr)
    );
}

/// A virtiofsd that dies under a running job (its requests would wait forever) makes flint
/// stop the VM and say why, instead of hanging.
#[test]
fn a_dead_virtiofsd_stops_the_run() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("vol-dead-daemon");
    let mut flint = common::Flint(
        flint()
            // The timeout only bounds the test should flint not notice.
            .args(["run", "--timeout", "30", "--kernel", minimal_kernel().to_str().unwrap(), "-v"])
            .arg(format!("{}:/data", dir.display()))
            .args(["--", "sh", "-c", "echo started; sleep 2; ls /data"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(flint.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let daemon = common::children(flint.0.id())
        .into_iter()
        .find(|&pid| common::comm(pid) == "virtiofsd")
        .expect("virtiofsd is flint's child");
    // SAFETY: kill(2) on a process of this test's.
    unsafe { libc::kill(daemon as libc::pid_t, libc::SIGKILL) };
    let started = std::time::Instant::now();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut flint.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = flint.0.wait().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "flint took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("a volume's virtiofsd ended while the job ran"), "{stderr}");
}
