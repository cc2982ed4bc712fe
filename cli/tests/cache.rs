//! flint's cache under stress, through the binary: cold caches filled by concurrent runs,
//! entries cut short (by a crash or a full disk) made again rather than used, and a full disk
//! reported as one. Each test has a cache of its own (FLINT_CACHE); the minimal kernel comes
//! from the real cache, by path (scripts/test.sh builds it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{assert_status, busybox_tree, text};

fn flint(cache: &Path) -> Command {
    let mut command = common::flint();
    command.env("FLINT_CACHE", cache);
    command
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("flint-cache-{name}"))
}

/// The minimal kernel's directory in the real cache: outside the tests' caches, so they
/// need not build it.
fn minimal_kernel() -> String {
    common::minimal_kernel().to_str().unwrap().to_string()
}

/// `flint run` of a shell script on the minimal kernel with `cache`, and more arguments.
fn run(cache: &Path, args: &[&str], script: &str) -> Output {
    flint(cache)
        .args(["run", "--kernel", &minimal_kernel()])
        .args(args)
        .args(["--", "sh", "-c", script])
        .output()
        .expect("flint starts")
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.symlink_metadata().unwrap().is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}

#[track_caller]
fn assert_no_temporary_files(cache: &Path) {
    let left: Vec<_> = walk(cache).into_iter().filter(|p| p.to_string_lossy().contains(".tmp.")).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The one entry in `dir` whose name ends with `suffix`.
#[track_caller]
fn only(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix) && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn cut_short(file: &Path) -> u64 {
    let len = std::fs::metadata(file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len / 2).unwrap();
    len
}

/// Four runs on an empty cache at once: each gets its own status back; one of them makes the
/// default root and extracts the vmlinux (the others wait for it), and nothing half-made or
/// temporary is left.
#[test]
fn concurrent_runs_on_a_cold_cache_all_succeed() {
    let cache = scratch("concurrent").join("cache");
    let kernel = minimal_kernel();
    let children: Vec<_> = (0..4)
        .map(|i| {
            flint(&cache)
                .args(["run", "--kernel", &kernel, "--", "sh", "-c", &format!("echo {i}; exit {}", 10 + i)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("flint starts")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert_status(&output, 10 + i as i32);
        assert_eq!(text(&output.stdout), format!("{i}\n"));
    }
    assert!(flint::env::is_cached(&only(&cache.join("roots"), "-f2")));
    assert!(flint::env::is_cached(&only(&cache.join("vmlinux"), ".elf")));
    assert_no_temporary_files(&cache);
}

/// A vmlinux and images cut short, the default root without its completion marker (as a
/// crash, a full disk or an older flint leaves them): made again, not booted.
#[test]
fn cache_entries_cut_short_or_unmarked_are_made_again() {
    let dir = scratch("cut-short");
    let (cache, tree) = (dir.join("cache"), dir.join("tree"));
    busybox_tree(&tree, &["sh"], b"data\n");
    let tree = tree.to_str().unwrap();
    assert_status(&run(&cache, &[], "exit 0"), 0);
    assert_status(&run(&cache, &["--root", tree], "exit 0"), 0);

    let vmlinux = only(&cache.join("vmlinux"), ".elf");
    let image = only(&cache.join("images"), ".ext4");
    let root = only(&cache.join("roots"), "-f2");
    let root_image = root.join("root.ext4");
    let lengths: Vec<u64> = [&vmlinux, &image, &root_image].map(|file| cut_short(file)).to_vec();
    std::fs::remove_file(root.join(".complete")).unwrap();

    assert_status(&run(&cache, &[], "exit 3"), 3);
    let output = run(&cache, &["--root", tree], "cat /data.bin; exit 4");
    assert_status(&output, 4);
    assert_eq!(text(&output.stdout), "data\n");
    for (file, len) in [&vmlinux, &image, &root_image].into_iter().zip(lengths) {
        assert_eq!(std::fs::metadata(file).unwrap().len(), len, "{} made again", file.display());
    }
    for entry in [&vmlinux, &image, &root] {
        assert!(flint::env::is_cached(entry), "{} complete again", entry.display());
    }
    assert_no_temporary_files(&cache);
}

/// A `--root` tree that has not changed since flint hashed it is recognised by its file
/// identities, its files not read again: `--print-cmd` on it says nothing about hashing. A
/// file rewritten at the same size with its mtime put back is hashed again (flint says so
/// without --quiet).
#[test]
fn an_unchanged_root_tree_is_not_hashed_again() {
    let dir = scratch("identity");
    let (cache, tree) = (dir.join("cache"), dir.join("tree"));
    busybox_tree(&tree, &["sh"], b"one\n");
    let print_cmd = || {
        let output = Command::new(env!("CARGO_BIN_EXE_flint"))
            .env("FLINT_CACHE", &cache)
            .args(["run", "--print-cmd", "--kernel", &minimal_kernel(), "--root"])
            .arg(&tree)
            .args(["--", "sh", "-c", "true"])
            .output()
            .expect("flint starts");
        assert_status(&output, 0);
        text(&output.stderr).contains(&format!("hashing {}", tree.display()))
    };
    assert!(print_cmd(), "a new tree is hashed");
    // Longer than flint's SETTLE: the tree's times now tell any change, and the next run
    // records them (unless the first, slower than that, did).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    print_cmd();
    assert!(!print_cmd(), "unchanged: found by its identity");
    assert!(!print_cmd());

    let data = tree.join("data.bin");
    let mtime = std::fs::metadata(&data).unwrap().modified().unwrap();
    std::fs::write(&data, b"two\n").unwrap();
    std::fs::File::options().write(true).open(&data).unwrap().set_modified(mtime).unwrap();
    assert!(print_cmd(), "the same size and mtime, but another ctime");
    assert_eq!(
        std::fs::read_dir(cache.join("images"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ext4"))
            .count(),
        2,
        "an image for each content"
    );
    assert_no_temporary_files(&cache);
}

/// A tmpfs mounted while it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not allowed: it needs root.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid(2) cannot fail and has no side effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a tmpfs on {} (no CAP_SYS_ADMIN?)", dir.display());
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A cache on a 2 MiB disk: the default root's busybox, and an image from `--root` (where
/// mkfs.ext4 meets the full disk), fail as "disk full", not as a failed or too-small image;
/// so does `flint rootfs` writing there. Nothing half-made is left.
#[test]
fn a_full_disk_is_reported_as_full() {
    let dir = scratch("full");
    let (small, tree) = (dir.join("small"), dir.join("tree"));
    std::fs::create_dir(&small).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&small, "2m") else { return };
    let noise: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    busybox_tree(&tree, &["sh"], &noise);

    let full_cache = |dir: &str| {
        format!("the disk holding {}/{dir} is full: free space or set FLINT_CACHE to another disk", small.display())
    };
    let output = run(&small, &[], "true");
    assert_status(&output, 125);
    assert!(text(&output.stderr).contains(&full_cache("roots")), "{}", text(&output.stderr));
    let output = run(&small, &["--root", tree.to_str().unwrap()], "true");
    assert_status(&output, 125);
    assert!(text(&output.stderr).contains(&full_cache("images")), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("too small"), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_dir(small.join("images")).unwrap().count(), 0, "no image is left");
    assert_no_temporary_files(&small);

    let output = Command::new(env!("CARGO_BIN_EXE_flint"))
        .args(["--quiet", "rootfs"])
        .arg(&tree)
        .arg("-o")
        .arg(small.join("out.ext4"))
        .output()
        .unwrap();
    assert_status(&output, 125);
    let expected = format!("the disk holding {} is full: free space or write to another disk", small.display());
    assert!(text(&output.stderr).contains(&expected), "{}", text(&output.stderr));
    assert!(!small.join("out.ext4").exists());
    assert_no_temporary_files(&small);
}
