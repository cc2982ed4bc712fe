//! `--volume HOST:GUEST[:ro]`: host directories mounted in the guest, over virtiofs (a
//! virtiofsd per volume, which flint starts, serving QEMU's vhost-user-fs device) or over 9p
//! (QEMU's own virtio-9p). The guest init mounts them after the root switch
//! (`flint.volumes=`, guest-init's `volumes`); device N is tagged `flint-vol<N>`.

use super::*;
use crate::modules::Need;
use crate::qemu::{Share, ShareKind};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;

/// QEMU's C virtiofsd, as Debian's qemu-system-common installs it.
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

/// How volumes reach the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VolumeFs {
    /// virtio-fs: a virtiofsd per volume and shared guest memory; in Debian's cloud kernel
    /// (as a module).
    Virtiofs,
    /// virtio-9p, served by QEMU itself; not in Debian's cloud kernel.
    #[value(name = "9p")]
    NineP,
}

impl VolumeFs {
    fn name(self) -> &'static str {
        match self {
            VolumeFs::Virtiofs => "virtiofs",
            VolumeFs::NineP => "9p",
        }
    }
}

/// One `--volume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Absolute, an existing directory (checked before booting).
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// `HOST:GUEST[:ro|:rw]`, as docker takes it.
pub fn parse_volume(text: &str) -> Result<Volume, String> {
    let (rest, read_only) = match text.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (text, false),
    };
    let Some((host, guest)) = rest.split_once(':') else {
        return Err("expected HOST:GUEST or HOST:GUEST:ro (GUEST an absolute path in the guest)".into());
    };
    if host.is_empty() {
        return Err("the host directory is empty: write HOST:GUEST".into());
    }
    let plain = guest.split('/').all(|part| part != "." && part != "..");
    if !guest.starts_with('/') || guest == "/" || !plain || guest.chars().any(char::is_control) {
        return Err(format!(
            "guest path {guest:?}: give an absolute path other than / (no . or .. parts, no control characters)"
        ));
    }
    let host = std::path::absolute(host).map_err(|e| format!("{host}: {e}"))?;
    Ok(Volume { host, guest: guest.trim_end_matches('/').to_string(), read_only })
}

/// Checks the host directories before booting.
pub(super) fn check(volumes: &[Volume]) -> Result<()> {
    for (index, volume) in volumes.iter().enumerate() {
        if !volume.host.is_dir() {
            bail!("--volume {}: no such directory on the host: create it, or fix the path", volume.host.display());
        }
        if volumes[..index].iter().any(|earlier| earlier.guest == volume.guest) {
            bail!("--volume: two volumes are mounted at {}: give each its own guest path", volume.guest);
        }
    }
    Ok(())
}

/// What the guest's kernel needs for `fs`.
pub(crate) fn needs(fs: VolumeFs) -> Vec<Need> {
    match fs {
        VolumeFs::Virtiofs => vec![
            Need { option: "CONFIG_FUSE_FS", module: "fuse", purpose: "--volume over virtiofs (FUSE)" },
            Need { option: "CONFIG_VIRTIO_FS", module: "virtiofs", purpose: "--volume over virtiofs" },
        ],
        VolumeFs::NineP => vec![
            Need { option: "CONFIG_NET_9P", module: "9pnet", purpose: "--volume over 9p (its protocol)" },
            Need { option: "CONFIG_NET_9P_VIRTIO", module: "9pnet_virtio", purpose: "--volume over 9p (virtio)" },
            Need { option: "CONFIG_9P_FS", module: "9p", purpose: "--volume over 9p" },
        ],
    }
}

/// The `flint.volumes=` word: one `TYPE:ro|rw:GUEST` item per volume, in the device order.
pub(super) fn param(volumes: &[Volume], fs: VolumeFs) -> String {
    let items: Vec<String> = volumes
        .iter()
        .map(|volume| format!("{}:{}:{}", fs.name(), if volume.read_only { "ro" } else { "rw" }, volume.guest))
        .collect();
    format!("flint.volumes={}", flint_guest_init::argv::encode(&items))
}

/// The guest tag of volume `index`.
fn tag(index: usize) -> String {
    format!("flint-vol{index}")
}

/// The 9p shares, QEMU's own: nothing to start.
pub(super) fn nine_p_shares(volumes: &[Volume]) -> Vec<Share> {
    volumes
        .iter()
        .enumerate()
        .map(|(index, volume)| Share {
            tag: tag(index),
            kind: ShareKind::NineP { path: volume.host.clone(), read_only: volume.read_only },
        })
        .collect()
}

/// Who QEMU runs as, when flint is root, to serve 9p shares: QEMU reads and writes them as
/// itself (`security_model=none`), so it becomes the owner of the directories, whose files
/// the guest's then are, rather than `nobody`, who could not write there; for directories
/// of root's, it stays root (still under its seccomp filter).
pub(super) fn nine_p_runas(volumes: &[Volume]) -> Result<Option<String>> {
    let mut owners = std::collections::BTreeSet::new();
    for volume in volumes {
        let meta = std::fs::metadata(&volume.host).with_context(|| format!("cannot stat {}", volume.host.display()))?;
        owners.insert(meta.uid());
    }
    let owner = match owners.into_iter().collect::<Vec<_>>()[..] {
        [0] => return Ok(None),
        [owner] => owner,
        _ => bail!("--volume-fs 9p serves the volumes as one user (QEMU's), and these directories have different owners: give them one owner, or use virtiofs"),
    };
    // SAFETY: getpwuid(3) returns a static entry or null; its name is copied at once.
    let name = unsafe {
        let entry = libc::getpwuid(owner);
        (!entry.is_null()).then(|| CStr::from_ptr((*entry).pw_name).to_string_lossy().into_owned())
    };
    // QEMU 7.2's -runas takes a user name only.
    name.map(Some).with_context(|| {
        format!("--volume-fs 9p runs QEMU as the volumes' owner, uid {owner}, who has no user name (QEMU's -runas needs one): use virtiofs")
    })
}

/// Starts a virtiofsd for each volume, listening on a socket in `dir` that QEMU connects to;
/// they die with flint (as QEMU does) and end by themselves when QEMU disconnects. Returns
/// them with the shares for the VM.
/// Their messages are appended to `log` (the console's log, shown when a run fails).
pub(super) fn start_virtiofsd(volumes: &[Volume], dir: &Path, log: &Path) -> Result<(Vec<Running>, Vec<Share>)> {
    if !Path::new(VIRTIOFSD).is_file() {
        bail!("--volume needs virtiofsd, and {VIRTIOFSD} is missing: install it (apt-get install qemu-system-common), or use --volume-fs 9p with a kernel that has 9p");
    }
    let mut daemons = Vec::new();
    let mut shares = Vec::new();
    for (index, volume) in volumes.iter().enumerate() {
        let socket = dir.join(format!("vol{index}.sock"));
        // Bound here and handed over (`--fd`): QEMU can connect as soon as this returns, and
        // the daemon writes no pid file (which it would put in /run as an ordinary user).
        let listener = UnixListener::bind(&socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
        let mut command = std::process::Command::new(VIRTIOFSD);
        let messages = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        // FUSE's option syntax: commas separate options, a backslash escapes.
        let source = volume.host.to_string_lossy().replace('\\', "\\\\").replace(',', "\\,");
        command
            .arg(format!("--fd={}", listener.as_raw_fd()))
            .args(["-o", &format!("source={source}")])
            // Keeps the host's open-file limit: an ordinary user cannot raise it.
            .arg("--rlimit-nofile=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(messages);
        isolate(&mut command, volume, listener.as_raw_fd())?;
        crate::qemu::die_with_this_process(&mut command, None);
        command.process_group(0);
        let daemon = command.spawn().with_context(|| format!("cannot start {VIRTIOFSD}"))?;
        daemons.push(Running::from(daemon));
        shares.push(Share { tag: tag(index), kind: ShareKind::VirtioFs { socket } });
    }
    Ok((daemons, shares))
}

/// Prepares virtiofsd's process for `volume`. As an ordinary user, in a user namespace of its
/// own where that user is root (the C daemon needs root to set up its sandbox and switch to
/// the guest's uids): what the guest's root writes belongs to the user, and other guest users
/// cannot create files (their uids have no host mapping). As root, the guest's uids are the
/// host's. `:ro` makes the directory a read-only bind mount in a mount namespace of its own,
/// so the host refuses the writes whatever the guest does.
fn isolate(command: &mut std::process::Command, volume: &Volume, listener: RawFd) -> Result<()> {
    // SAFETY: getuid(2) and getgid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // Made here: the forked child must not allocate.
    let maps = (uid != 0).then(|| (format!("0 {uid} 1"), format!("0 {gid} 1")));
    let read_only = if volume.read_only {
        let path = CString::new(volume.host.as_os_str().as_bytes())?;
        Some((path, locked_flags(&volume.host)?))
    } else {
        None
    };
    // SAFETY: the closure makes raw system calls only, on data made before the fork.
    unsafe {
        command.pre_exec(move || {
            // The listener stays open across the exec (std made it close-on-exec).
            if libc::fcntl(listener, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid_map, gid_map)) = &maps {
                sys(libc::unshare(libc::CLONE_NEWUSER))?;
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
            }
            if let Some((path, locked)) = &read_only {
                sys(libc::unshare(libc::CLONE_NEWNS))?;
                let none = std::ptr::null();
                sys(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
                sys(libc::mount(path.as_ptr(), path.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | locked;
                sys(libc::mount(none, path.as_ptr(), none, flags, std::ptr::null()))?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// The flags of the mount holding `path` that a remount in a user namespace must keep (the
/// kernel refuses to clear them there).
fn locked_flags(path: &Path) -> Result<libc::c_ulong> {
    let stat = env::statvfs(path).with_context(|| format!("cannot stat the filesystem of {}", path.display()))?;
    let pairs = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs.iter().filter(|(st, _)| stat.f_flag & st != 0).fold(0, |flags, (_, ms)| flags | ms))
}

fn sys(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `data` to a /proc file with raw calls (in a forked child: no allocation).
fn write_proc(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open(2) with a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: write(2) of `data`, valid for its length, to the descriptor opened above, which
    // is then closed once.
    let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    if written != data.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_as_docker_writes_them() {
        let volume = parse_volume("/srv/data:/data").unwrap();
        assert_eq!(volume, Volume { host: "/srv/data".into(), guest: "/data".into(), read_only: false });
        assert!(parse_volume("/srv:/mnt/in/:ro").unwrap().read_only);
        assert_eq!(parse_volume("/srv:/mnt/in/:ro").unwrap().guest, "/mnt/in");
        assert!(!parse_volume("/srv:/in:rw").unwrap().read_only);
        assert!(parse_volume("rel:/in").unwrap().host.is_absolute());
        for bad in ["/srv", "/srv:in", "/srv:/", ":/in", "/srv:/a/../b", "/srv:/a\nb", "/srv::ro"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_guest_gets_one_item_per_volume() {
        let volumes = [parse_volume("/a:/in:ro").unwrap(), parse_volume("/b:/out").unwrap()];
        let word = param(&volumes, VolumeFs::Virtiofs);
        let expected = flint_guest_init::argv::encode(&["virtiofs:ro:/in", "virtiofs:rw:/out"]).to_string();
        assert_eq!(word, format!("flint.volumes={expected}"));
    }
}
