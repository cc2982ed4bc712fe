//! Root filesystems: images made from directories (`mkfs.ext4 -d`, `mkfs.erofs`), cached by
//! the content of the directory; the default busybox root; looking programs up in a root.

use crate::env::{self, progress, Fix};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FsType {
    Ext4,
    Erofs,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Erofs => "erofs",
        }
    }

    /// The filesystem in an image, from its superblock magic.
    pub fn detect(image: &Path) -> Result<FsType> {
        let mut header = [0u8; 2048];
        let mut file = std::fs::File::open(image)
            .fix(format_args!("root image {}", image.display()), "pass a readable image file")?;
        if !file.metadata()?.is_file() && !file.metadata()?.file_type().is_block_device() {
            bail!("root image {} is not a file: pass an image (make one with `flint rootfs DIR -o IMAGE`), or use --root DIR", image.display());
        }
        file.read_exact(&mut header).fix(
            format_args!("root image {} is too small to hold a filesystem", image.display()),
            "make one with `flint rootfs DIR -o IMAGE`",
        )?;
        if header[1080..1082] == [0x53, 0xef] {
            Ok(FsType::Ext4)
        } else if header[1024..1028] == 0xe0f5_e1e2u32.to_le_bytes() {
            Ok(FsType::Erofs)
        } else {
            bail!("root image {} is neither ext4 nor erofs: make one with `flint rootfs DIR -o IMAGE`", image.display())
        }
    }
}

/// What a directory holds, for sizing an image and naming it in the cache.
pub struct Scan {
    /// Bytes the content needs in 4 KiB blocks.
    pub bytes: u64,
    pub entries: u64,
    /// SHA-256 of every path, type, mode, owner and content; empty unless [`Reading::Hash`].
    pub hash: String,
    /// SHA-256 of every entry's file identity (path, type, mode, owner, size, modification and
    /// status change times, inode, device, link target): the same while nothing in the tree
    /// changes, so an unchanged tree is recognised without reading its files. The status
    /// change time (ctime) is what makes it safe: any write, chmod, rename or link moves it
    /// forward, and no one can set it back.
    pub identity: String,
    /// Whether an entry (or the directory itself) changed less than [`SETTLE`] before the
    /// scan began: a change within the same timestamp tick could then leave its identity as
    /// it is (git's "racily clean" entries), so it identifies nothing yet.
    pub changed_lately: bool,
    /// Standard mount points the directory lacks (the init mounts filesystems there).
    pub missing_mount_points: Vec<&'static str>,
}

/// How much of each file [`scan`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Nothing: its metadata is enough for [`Scan::identity`].
    Nothing,
    /// Opens it, so that a file this user cannot read is named before mkfs meets it.
    Open,
    /// Every byte, for [`Scan::hash`].
    Hash,
}

const MOUNT_POINTS: [&str; 4] = ["dev", "proc", "sys", "tmp"];
const BLOCK: u64 = 4096;

/// How long after its last change an entry's times tell every later change: filesystem
/// timestamps come from a clock that ticks coarsely (a few milliseconds on Linux, 1 s on
/// some filesystems, 2 s on FAT), so a change within the tick of an earlier one can leave
/// them as they were.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`walk_dir`] gathers on its way.
struct Walk {
    reading: Reading,
    scan: Scan,
    content: Sha256,
    identity: Sha256,
    /// The latest status change of any entry, in nanoseconds since the epoch.
    newest_change: i128,
}

/// Walks `dir` in a fixed order, without following symlinks, reading its files as `reading`
/// says.
pub fn scan(dir: &Path, reading: Reading) -> Result<Scan> {
    let started = std::time::SystemTime::now();
    let meta =
        std::fs::metadata(dir).fix(format_args!("root directory {}", dir.display()), "pass an existing directory")?;
    if !meta.is_dir() {
        bail!("{} is not a directory: pass a directory with --root, or an image with --root-image", dir.display());
    }
    let scan = Scan {
        bytes: 0,
        entries: 0,
        hash: String::new(),
        identity: String::new(),
        changed_lately: false,
        missing_mount_points: Vec::new(),
    };
    let mut walk = Walk { reading, scan, content: Sha256::new(), identity: Sha256::new(), newest_change: 0 };
    walk.content.update(b"flint-root-v1\0");
    walk.identity.update(b"flint-root-identity-v1\0");
    identify(&mut walk, Path::new(""), &meta);
    walk_dir(&mut dir.to_path_buf(), &mut PathBuf::new(), &mut walk)?;
    let mut scan = walk.scan;
    scan.missing_mount_points = MOUNT_POINTS.into_iter().filter(|m| !dir.join(m).is_dir()).collect();
    if reading == Reading::Hash {
        scan.hash = env::hex(&walk.content.finalize());
    }
    scan.identity = env::hex(&walk.identity.finalize());
    let settled = started.checked_sub(SETTLE).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    scan.changed_lately = settled.is_none_or(|settled| walk.newest_change >= settled.as_nanos() as i128);
    Ok(scan)
}

/// Walks the directory at `path` (`rel` inside the root). Both are pushed to and popped
/// back for each entry: one path each for the whole walk, not two allocations per entry.
fn walk_dir(path: &mut PathBuf, rel: &mut PathBuf, walk: &mut Walk) -> Result<()> {
    let unreadable = |path: &Path, e: std::io::Error| {
        anyhow::anyhow!(
            "cannot read {}: {e}: make it readable by this user, or leave it out of the root",
            path.display()
        )
    };
    // Each entry's metadata through the open directory (no whole path to resolve again);
    // the directory is closed before descending, so a deep tree holds one descriptor only.
    let mut entries: Vec<(std::ffi::OsString, Metadata)> = std::fs::read_dir(&*path)
        .map_err(|e| unreadable(path, e))?
        .map(|entry| entry.and_then(|e| Ok((e.file_name(), e.metadata()?))))
        .collect::<std::io::Result<_>>()
        .map_err(|e| unreadable(path, e))?;
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in entries {
        path.push(&name);
        rel.push(&name);
        walk.scan.entries += 1;
        let kind = meta.file_type();
        identify(walk, rel, &meta);
        if walk.reading == Reading::Hash {
            hash_entry(&mut walk.content, rel, &meta);
        }
        if kind.is_dir() {
            walk.scan.bytes += BLOCK;
            walk_dir(path, rel, walk)?;
        } else if kind.is_file() {
            walk.scan.bytes += meta.len().div_ceil(BLOCK) * BLOCK;
            match walk.reading {
                Reading::Nothing => {}
                Reading::Open => drop(std::fs::File::open(&*path).map_err(|e| unreadable(path, e))?),
                Reading::Hash => {
                    let mut file = std::fs::File::open(&*path).map_err(|e| unreadable(path, e))?;
                    std::io::copy(&mut file, &mut walk.content).map_err(|e| unreadable(path, e))?;
                }
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&*path).map_err(|e| unreadable(path, e))?;
            if target.as_os_str().len() >= 60 {
                walk.scan.bytes += BLOCK;
            }
            let hashers = [Some(&mut walk.identity), (walk.reading == Reading::Hash).then_some(&mut walk.content)];
            for h in hashers.into_iter().flatten() {
                h.update(target.as_os_str().as_bytes());
                h.update(b"\0");
            }
        } else if kind.is_socket() {
            bail!("{} is a socket, which a filesystem image cannot hold: leave it out of the root", path.display());
        }
        path.pop();
        rel.pop();
    }
    Ok(())
}

fn hash_entry(h: &mut Sha256, rel: &Path, meta: &Metadata) {
    h.update(rel.as_os_str().as_bytes());
    h.update(b"\0");
    let fields = [meta.mode() as u64, meta.uid() as u64, meta.gid() as u64, meta.rdev(), meta.len()];
    for field in fields {
        h.update(field.to_le_bytes());
    }
}

/// Adds an entry's file identity to [`Scan::identity`].
fn identify(walk: &mut Walk, rel: &Path, meta: &Metadata) {
    let h = &mut walk.identity;
    h.update(rel.as_os_str().as_bytes());
    h.update(b"\0");
    let fields = [
        meta.mode() as u64,
        meta.uid() as u64,
        meta.gid() as u64,
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
        meta.ino(),
        meta.dev(),
        meta.rdev(),
    ];
    for field in fields {
        h.update(field.to_le_bytes());
    }
    let changed = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
    walk.newest_change = walk.newest_change.max(changed);
}

/// The image size for `scan`: content, inode tables and a journal with room to spare (the
/// file is sparse, so spare room costs no disk space).
fn auto_size(scan: &Scan) -> u64 {
    let size = scan.bytes + scan.bytes / 8 + inodes(scan) * 256 + (64 << 20);
    size.div_ceil(1 << 20) << 20
}

fn inodes(scan: &Scan) -> u64 {
    scan.entries + scan.entries / 4 + 1024
}

/// Makes an image of `dir` at `out`. `size` is for ext4 only (default: from the content).
pub fn make_image(dir: &Path, out: &Path, fs: FsType, size: Option<u64>) -> Result<Scan> {
    let scan = scan(dir, Reading::Open)?;
    match fs {
        FsType::Ext4 => make_ext4(dir, out, &scan, size, Journal::Keep)?,
        FsType::Erofs => {
            if size.is_some() {
                bail!("--size applies to ext4 only: erofs images are exactly as big as their content");
            }
            env::require_tool("mkfs.erofs", "erofs-utils")?;
            env::tool_output(tool("mkfs.erofs").arg("--quiet").arg(out).arg(dir))
                .with_context(|| format!("cannot make an erofs image of {}", dir.display()))?;
        }
    }
    Ok(scan)
}

/// A filesystem tool whose messages are strerror's English words, which is how a full host
/// disk is told apart from a full image ([`env::disk_full_or`]).
fn tool(program: &str) -> Command {
    let mut command = env::command(program);
    command.env("LC_ALL", "C");
    command
}

/// Whether an ext4 image gets a journal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Journal {
    /// For images a user may mount read-write and keep (`flint rootfs`).
    Keep,
    /// For flint's cached images, which flint only mounts read-only (alone or under an
    /// overlay) or writes as a throwaway copy: loading a journal costs every mount a few
    /// milliseconds under TCG (BENCHMARKS.md, "Tuning") and protects nothing there.
    Omit,
}

fn make_ext4(dir: &Path, out: &Path, scan: &Scan, size: Option<u64>, journal: Journal) -> Result<()> {
    env::require_tool("mkfs.ext4", "e2fsprogs")?;
    let mut size = size.unwrap_or_else(|| auto_size(scan));
    let mut attempt = 0;
    loop {
        let file = std::fs::File::create(out)
            .fix(format_args!("cannot create {}", out.display()), "pass a writable output path")?;
        file.set_len(size).with_context(|| format!("cannot size {}", out.display()))?;
        drop(file);
        let output = tool("mkfs.ext4")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", "flint-root"])
            .args(if journal == Journal::Omit { &["-O", "^has_journal"][..] } else { &[] })
            .arg("-N")
            .arg(inodes(scan).to_string())
            .arg("-d")
            .arg(dir)
            .arg(out)
            .output()
            .context("cannot start mkfs.ext4")?;
        if output.status.success() {
            break;
        }
        let message = String::from_utf8_lossy(&output.stderr).trim().replace('\n', "; ");
        // The image's own filesystem is full: libext2fs's words. A full host disk is ENOSPC's
        // "No space left on device" instead, which a bigger image cannot cure; the caller
        // reports it ([`env::disk_full_or`]).
        let full = ["Could not allocate", "Not enough space", "No free space", "too small"]
            .iter()
            .any(|words| message.contains(words));
        if full && attempt < 2 {
            attempt += 1;
            size *= 2;
            continue;
        }
        let _ = std::fs::remove_file(out);
        bail!("mkfs.ext4 cannot make an image of {} ({}): {message}", dir.display(), output.status);
    }
    if !scan.missing_mount_points.is_empty() {
        // The init mounts /dev, /proc, /sys and /tmp; on a read-only root it cannot create
        // the directories itself.
        let commands: String = scan.missing_mount_points.iter().map(|m| format!("mkdir /{m}\n")).collect();
        // A name the directory holds as something else (a symbolic link) keeps it: complaints
        // about those are not failures.
        debugfs(out, commands.as_bytes())
            .context("cannot add the mount points /dev, /proc, /sys, /tmp to the image")?;
    }
    Ok(())
}

/// Runs the `debugfs` commands `script` on the ext4 image `image`, returning its complaints:
/// debugfs exits 0 whatever command fails, and says so on stderr.
fn debugfs(image: &Path, script: &[u8]) -> Result<Vec<String>> {
    let file = env::temp_sibling(image);
    std::fs::write(&file, script)?;
    let output = tool("debugfs").arg("-w").arg("-f").arg(&file).arg(image).output();
    let _ = std::fs::remove_file(&file);
    let output = output.context("cannot start debugfs")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<String> = stderr
        .lines()
        .filter(|line| !line.starts_with("debugfs ") && !line.trim().is_empty())
        .map(String::from)
        .collect();
    if !output.status.success() {
        bail!("debugfs failed on {} ({}): {}", image.display(), output.status, complaints.join("; "));
    }
    Ok(complaints)
}

/// A cached ext4 image at `out` of the tree `dir`, then changed by the `debugfs` commands
/// `fixes` (what the tree could not hold: owners and device nodes an ordinary user cannot
/// make, `--root-oci`).
pub(crate) fn cached_ext4_of_tree(dir: &Path, out: &Path, fixes: &[u8]) -> Result<()> {
    make_ext4(dir, out, &scan(dir, Reading::Open)?, None, Journal::Omit)?;
    let complaints = debugfs(out, fixes).context("cannot set the owners and modes the image's layers give")?;
    if !complaints.is_empty() {
        bail!("debugfs cannot set the owners and modes the image's layers give: {}", complaints.join("; "));
    }
    Ok(())
}

/// `flint rootfs`: an image of `dir` at `out`.
pub fn rootfs(dir: &Path, out: &Path, fs: FsType, size: Option<u64>) -> Result<()> {
    if !std::fs::metadata(dir).fix(format_args!("directory {}", dir.display()), "pass an existing directory")?.is_dir()
    {
        bail!("{} is not a directory: pass the directory whose contents become the image", dir.display());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        bail!("cannot write {}: the directory {} does not exist: create it first", out.display(), parent.display());
    }
    progress(format!("making an {} image of {}", fs.name(), dir.display()));
    let mut missing_mount_points = Vec::new();
    env::make_file(out, |tmp| {
        missing_mount_points = make_image(dir, tmp, fs, size)?.missing_mount_points;
        Ok(())
    })?;
    if fs == FsType::Erofs && !missing_mount_points.is_empty() {
        progress(format!(
            "note: {} has no /{}: erofs is read-only, so run it with --overlay (the default), or add them to the directory",
            dir.display(),
            missing_mount_points.join(", /")
        ));
    }
    Ok(())
}

/// Whether an ext4 image's superblock says its journal needs recovery (the incompatible
/// feature `needs_recovery`, set while mounted and cleared by a clean unmount).
pub fn ext4_needs_recovery(image: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    // The superblock starts at byte 1024: magic 0xEF53 at 0x38, s_feature_incompat at 0x60.
    const RECOVER: u32 = 0x4;
    let mut superblock = [0u8; 0x64];
    let read = std::fs::File::open(image)
        .and_then(|mut file| file.seek(SeekFrom::Start(1024)).and_then(|_| file.read_exact(&mut superblock)));
    read.is_ok()
        && superblock[0x38..0x3a] == [0x53, 0xef]
        && u32::from_le_bytes(superblock[0x60..0x64].try_into().unwrap_or_default()) & RECOVER != 0
}

/// A private copy of `image` at `copy`, to write without touching the cache: sparse, and a
/// reflink where the filesystem allows.
pub fn private_copy(image: &Path, copy: &Path) -> Result<()> {
    env::tool_output(tool("cp").arg("--sparse=always").arg("--reflink=auto").arg(image).arg(copy))
        .map(drop)
        .map_err(|error| env::disk_full_or(error, copy))
}

/// Ends every cached image's name, changed whenever flint makes them differently so that
/// older ones are not reused (f2: no journal).
pub(crate) const CACHE_FORMAT: &str = "f2";

/// The ext4 image of `dir` in the cache, made on first use; named by the content's hash,
/// which is worked out again only when the tree's file identities changed.
pub fn cached_ext4(dir: &Path) -> Result<PathBuf> {
    let images = env::cache_subdir("images")?;
    let suffix = format!("-{CACHE_FORMAT}.ext4");
    // The tree flint hashed last time at this path, unchanged since: its image, found by a
    // walk that reads no file.
    let identified = scan(dir, Reading::Nothing)?;
    let path = std::fs::canonicalize(dir)
        .fix(format_args!("root directory {}", dir.display()), "pass an existing directory")?;
    let memo = format!("root-{}", &env::sha256_hex(path.as_os_str().as_bytes())[..16]);
    let recalled = env::recall(&memo, &identified.identity).filter(|name| name.ends_with(&suffix));
    if let Some(image) = recalled.map(|name| images.join(name)).filter(|image| env::is_cached(image)) {
        return Ok(image);
    }
    progress(format!("hashing {} to find its cached image (new to flint, or changed)", dir.display()));
    let scan = scan(dir, Reading::Hash)?;
    let name = format!("{}{suffix}", &scan.hash[..32]);
    let image = images.join(&name);
    if !env::is_cached(&image) {
        // Concurrent flints make it once; the others find it made when the lock is theirs.
        let _lock = env::lock_cache(&images);
        if !env::is_cached(&image) {
            progress(format!(
                "making an ext4 image of {} ({} MiB, cached by content)",
                dir.display(),
                scan.bytes.div_ceil(1 << 20)
            ));
            env::make_cached_file(&image, |tmp| make_ext4(dir, tmp, &scan, None, Journal::Omit))?;
        }
    }
    // The identity was taken before each file was read: a change since moved some entry's
    // ctime past it, so it names this content only.
    if !scan.changed_lately {
        env::remember(&memo, &scan.identity, &name);
    }
    Ok(image)
}

/// The default root: Debian's static busybox with a symlink per applet, plus the usual
/// directories; its tree is kept next to the image so programs can be checked on the host.
pub struct DefaultRoot {
    pub image: PathBuf,
    pub tree: PathBuf,
}

impl DefaultRoot {
    fn in_dir(dir: &Path) -> DefaultRoot {
        DefaultRoot { image: dir.join("root.ext4"), tree: dir.join("tree") }
    }
}

pub fn busybox_root() -> Result<DefaultRoot> {
    let roots = env::cache_subdir("roots")?;
    // The root made last time from this very /bin/busybox: no package query, no hashing.
    let installed = env::file_identity(Path::new(INSTALLED_BUSYBOX));
    let recalled = installed.as_deref().and_then(|identity| env::recall("default-root", identity));
    if let Some(dir) = recalled.filter(|name| name.ends_with(CACHE_FORMAT)).map(|name| roots.join(name)) {
        if env::is_cached(&dir) {
            return Ok(DefaultRoot::in_dir(&dir));
        }
    }
    // Concurrent flints make it once; the others find it made when the lock is theirs.
    let _lock = env::lock_cache(&roots);
    let (busybox, _download) = busybox_binary(&roots)?;
    let bytes = std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    let name = format!("busybox-{}-{CACHE_FORMAT}", &env::sha256_hex(&bytes)[..16]);
    let dir = roots.join(&name);
    if !env::is_cached(&dir) {
        progress("making the default root filesystem from busybox-static (once)");
        env::make_dir(&dir, |tmp| make_busybox_root(tmp, &bytes)).context("cannot make the default busybox root")?;
    }
    if let (true, Some(identity)) = (busybox == Path::new(INSTALLED_BUSYBOX), &installed) {
        env::remember("default-root", identity, &name);
    }
    Ok(DefaultRoot::in_dir(&dir))
}

/// The default root's tree and image in `dir`, from the busybox binary `busybox`.
fn make_busybox_root(dir: &Path, busybox: &[u8]) -> Result<()> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin"))?;
    std::fs::write(tree.join("bin/busybox"), busybox)?;
    std::fs::set_permissions(tree.join("bin/busybox"), std::fs::Permissions::from_mode(0o755))?;
    let applets = env::tool_output(Command::new(tree.join("bin/busybox")).arg("--list-full"))
        .context("cannot list busybox's applets")?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "bin/busybox") {
        let link = tree.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("/bin/busybox", &link)?;
        }
    }
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("etc", 0o755),
        ("run", 0o755),
        ("var/tmp", 0o1777),
    ] {
        std::fs::create_dir_all(tree.join(dir))?;
        std::fs::set_permissions(tree.join(dir), std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(tree.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let scan = scan(&tree, Reading::Open)?;
    make_ext4(&tree, &dir.join("root.ext4"), &scan, None, Journal::Omit)
}

/// Where Debian's busybox-static puts its binary.
const INSTALLED_BUSYBOX: &str = "/bin/busybox";

/// Debian's static busybox: the installed one if `busybox-static` is installed, else
/// downloaded with apt-get. Returns its path and the download directory to remove.
fn busybox_binary(roots: &Path) -> Result<(PathBuf, Option<env::TempDir>)> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "busybox-static"])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.ends_with(b" installed"));
    if installed && Path::new(INSTALLED_BUSYBOX).is_file() {
        return Ok((PathBuf::from(INSTALLED_BUSYBOX), None));
    }
    let cached = roots.join("busybox-static.bin");
    if env::is_cached(&cached) {
        return Ok((cached, None));
    }
    env::require_tool("apt-get", "apt")?;
    let work = env::TempDir::new("flint-busybox")?;
    progress("downloading busybox-static");
    env::run_tool(Command::new("apt-get").args(["download", "busybox-static"]).current_dir(work.path())).fix(
        "cannot download busybox-static",
        "check the network and the apt sources (apt-get update), or install it (apt-get install busybox-static)",
    )?;
    let deb =
        std::fs::read_dir(work.path())?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "deb"));
    let deb = deb.context("apt-get download busybox-static left no .deb")?;
    env::run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(work.path().join("root")))?;
    env::make_cached_file(&cached, |tmp| {
        std::fs::copy(work.path().join("root/bin/busybox"), tmp).context("busybox-static has no bin/busybox")?;
        Ok(())
    })?;
    Ok((cached, Some(work)))
}

/// Where a program would be found, as the guest's `execvp` looks for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Its host path, and its path in the root as found (before symlinks).
    Found(PathBuf, Vec<u8>),
    NotExecutable(PathBuf),
    NotFound,
}

/// Looks `program` up in the root directory `root` the way the guest init does: a name
/// with a `/` is a path (relative to `cwd`), anything else is searched in `search_path`.
/// Symlinks are followed inside the root.
pub fn find_in_root(root: &Path, program: &[u8], search_path: &[u8], cwd: &[u8]) -> Lookup {
    let check = |guest_path: &[u8]| -> Option<Lookup> {
        let host = resolve_in_root(root, guest_path)?;
        let meta = std::fs::metadata(&host).ok()?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            Some(Lookup::Found(host, guest_path.to_vec()))
        } else {
            Some(Lookup::NotExecutable(host))
        }
    };
    let join = |dir: &[u8], name: &[u8]| -> Vec<u8> {
        let mut path = dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        path
    };
    if program.contains(&b'/') {
        let path = if program.starts_with(b"/") { program.to_vec() } else { join(cwd, program) };
        return check(&path).unwrap_or(Lookup::NotFound);
    }
    let mut result = Lookup::NotFound;
    for dir in search_path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { cwd } else { dir };
        let dir = if dir.starts_with(b"/") { dir.to_vec() } else { join(cwd, dir) };
        match check(&join(&dir, program)) {
            Some(found @ Lookup::Found(..)) => return found,
            Some(Lookup::NotExecutable(path)) if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) => {
                result = Lookup::NotExecutable(path)
            }
            _ => {}
        }
    }
    result
}

/// The host path of `guest_path` inside `root`, following symlinks as the guest would
/// (absolute targets start again from `root`). `None` if it does not exist.
pub fn resolve_in_root(root: &Path, guest_path: &[u8]) -> Option<PathBuf> {
    let mut pending: Vec<Vec<u8>> = Vec::new();
    push_components(&mut pending, guest_path);
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_slice() {
            b"." => continue,
            b".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let host = host_path(root, &current).join(OsStr::from_bytes(&part));
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                current.clear();
            }
            push_components(&mut pending, target);
        } else {
            current.push(part);
        }
    }
    Some(host_path(root, &current))
}

/// Pushes the components of `path` so that popping yields them in order.
fn push_components(pending: &mut Vec<Vec<u8>>, path: &[u8]) {
    for component in Path::new(OsStr::from_bytes(path)).components().rev() {
        if let Component::Normal(name) = component {
            pending.push(name.as_bytes().to_vec());
        } else if component == Component::ParentDir {
            pending.push(b"..".to_vec());
        }
    }
}

fn host_path(root: &Path, parts: &[Vec<u8>]) -> PathBuf {
    let mut path = root.to_path_buf();
    for part in parts {
        path.push(OsStr::from_bytes(part));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_programs_through_symlinks_inside_the_root() {
        let root = env::TempDir::new("flint-rootfs-test").unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(r.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(r.join("bin/data"), b"x").unwrap();
        symlink("/bin/busybox", r.join("bin/cat")).unwrap();
        symlink("../../bin/busybox", r.join("usr/bin/head")).unwrap();
        // An absolute link must stay inside the root, not point at the host's /etc.
        symlink("/etc/hostname", r.join("bin/escape")).unwrap();
        let path = b"/usr/bin:/bin";
        let found = |guest: &str| Lookup::Found(r.join("bin/busybox"), guest.as_bytes().to_vec());
        assert_eq!(find_in_root(r, b"cat", path, b"/"), found("/bin/cat"));
        assert_eq!(find_in_root(r, b"head", path, b"/"), found("/usr/bin/head"));
        assert_eq!(find_in_root(r, b"/bin/cat", path, b"/"), found("/bin/cat"));
        assert_eq!(find_in_root(r, b"bin/cat", path, b"/"), found("//bin/cat"));
        assert_eq!(find_in_root(r, b"./cat", path, b"/bin"), found("/bin/./cat"));
        assert_eq!(find_in_root(r, b"nope", path, b"/"), Lookup::NotFound);
        assert_eq!(find_in_root(r, b"escape", path, b"/"), Lookup::NotFound);
        assert_eq!(find_in_root(r, b"data", path, b"/"), Lookup::NotExecutable(r.join("bin/data")));
        assert_eq!(find_in_root(r, b"/bin", path, b"/"), Lookup::NotExecutable(r.join("bin")));
    }

    #[test]
    fn content_hash_follows_content() {
        let root = env::TempDir::new("flint-rootfs-hash").unwrap();
        let r = root.path();
        std::fs::write(r.join("a"), b"one").unwrap();
        let first = scan(r, Reading::Hash).unwrap();
        std::fs::write(r.join("a"), b"two").unwrap();
        let second = scan(r, Reading::Hash).unwrap();
        assert_ne!(first.hash, second.hash);
        assert_eq!(second.hash, scan(r, Reading::Hash).unwrap().hash);
        assert_eq!(second.missing_mount_points, ["dev", "proc", "sys", "tmp"]);
        assert!(scan(&r.join("a"), Reading::Open).is_err());
    }

    #[test]
    fn identity_follows_every_change_without_reading_a_file() {
        let root = env::TempDir::new("flint-rootfs-identity").unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/a"), b"one").unwrap();
        std::fs::write(r.join("secret"), b"x").unwrap();
        std::fs::set_permissions(r.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let fifo = std::ffi::CString::new(r.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // Not followed: the walk would otherwise cover the host's whole filesystem.
        symlink("/", r.join("host")).unwrap();
        let identity = || scan(r, Reading::Nothing).unwrap().identity;
        let mut last = identity();
        assert_eq!(identity(), last, "nothing changed");
        assert!(scan(r, Reading::Nothing).unwrap().changed_lately, "just made: a change in the same tick could hide");

        let a = r.join("etc/a");
        let changes: [(&str, &dyn Fn()); 7] = [
            ("content of the same size, mtime put back", &|| {
                let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
                std::fs::write(&a, b"two").unwrap();
                std::fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
                assert_eq!(std::fs::metadata(&a).unwrap().modified().unwrap(), mtime);
            }),
            ("chmod", &|| std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap()),
            ("a file added", &|| std::fs::write(r.join("etc/b"), b"").unwrap()),
            ("a file renamed", &|| std::fs::rename(r.join("etc/b"), r.join("etc/c")).unwrap()),
            ("a hard link made elsewhere", &|| std::fs::hard_link(&a, r.join("link")).unwrap()),
            ("a symlink pointed elsewhere", &|| {
                std::fs::remove_file(r.join("host")).unwrap();
                symlink("/etc", r.join("host")).unwrap();
            }),
            ("a directory's mode", &|| {
                std::fs::set_permissions(r.join("etc"), std::fs::Permissions::from_mode(0o700)).unwrap()
            }),
        ];
        for (what, change) in changes {
            // The filesystem's clock ticks a few milliseconds apart: without a tick between
            // them, a write could keep the ctime the last one left.
            std::thread::sleep(std::time::Duration::from_millis(50));
            change();
            let now = identity();
            assert_ne!(now, last, "{what}");
            assert_eq!(identity(), now, "{what}: then nothing changed");
            last = now;
        }
        // SAFETY: geteuid(2) cannot fail and has no side effects.
        if unsafe { libc::geteuid() } != 0 {
            assert!(scan(r, Reading::Open).is_err(), "secret is unreadable, though its identity is known");
        }
    }
}
