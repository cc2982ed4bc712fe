//! What the guest gets: the root image, the environment, the modules and the kernel command
//! line, checked on the host where possible.

use super::*;

pub(super) fn prepare_root(args: &RunArgs) -> Result<Root> {
    if let (RootMode::Rw, Some(image)) = (args.mode, &args.root_image) {
        std::fs::OpenOptions::new().write(true).open(image).fix(
            format_args!("--rw needs a writable root image, and {} cannot be opened for writing", image.display()),
            "make it writable, or use --overlay for throwaway writes",
        )?;
    }
    resolve_root(args.root.as_ref(), args.root_image.as_ref(), args.root_oci.as_deref(), args.mode)
}

/// The root filesystem that `--root DIR` (an ext4 image made from it, cached), `--root-image`,
/// `--root-oci` (an ext4 image of the container image, cached) or none of them (flint's
/// busybox root) names, for `flint run` and `flint image`.
pub(crate) fn resolve_root(
    dir: Option<&PathBuf>,
    image: Option<&PathBuf>,
    oci: Option<&str>,
    mode: RootMode,
) -> Result<Root> {
    let root = match (dir, image, oci) {
        (Some(dir), None, None) => {
            let image = rootfs::cached_ext4(dir)?;
            Root { image, fs: FsType::Ext4, tree: Some(dir.clone()), cached: true, oci: None }
        }
        (None, Some(image), None) => {
            Root { image: image.clone(), fs: FsType::detect(image)?, tree: None, cached: false, oci: None }
        }
        (None, None, Some(reference)) => {
            let oci = crate::oci::root(reference)?;
            Root { image: oci.image.clone(), fs: FsType::Ext4, tree: None, cached: true, oci: Some(oci) }
        }
        (None, None, None) => {
            let root = rootfs::busybox_root()?;
            Root { image: root.image, fs: FsType::Ext4, tree: Some(root.tree), cached: true, oci: None }
        }
        _ => bail!("--root, --root-image and --root-oci each name the root: pass only one"),
    };
    if mode == RootMode::Rw && root.fs == FsType::Erofs {
        bail!("--rw with an erofs image: erofs is read-only; use --overlay, or an ext4 image");
    }
    Ok(root)
}

/// What runs in the guest: the command, its environment, working directory and user.
pub(crate) struct Workload {
    pub command: Vec<OsString>,
    pub environment: Vec<Vec<u8>>,
    /// Checked with [`check_cwd`].
    pub cwd: String,
    pub user: Option<(u32, u32)>,
    /// Where [`check_in_root`] found the program along `PATH`.
    pub program: Option<String>,
}

/// The workload from the user's command, `--env`, `--cwd` and `--user`, over an OCI image's
/// config (`--root-oci`: docker's rules, [`crate::oci::RunConfig`]), over flint's defaults.
pub(crate) fn workload(
    root: &Root,
    command: &[OsString],
    env: &[OsString],
    cwd: Option<&str>,
    user: Option<(u32, u32)>,
) -> Result<Workload> {
    let Some(oci) = &root.oci else {
        if command.is_empty() {
            bail!("no command given: put the program to run and its arguments after --");
        }
        let cwd = cwd.unwrap_or("/").to_string();
        check_cwd(&cwd)?;
        return Ok(Workload {
            command: command.to_vec(),
            environment: environment(&[], env)?,
            cwd,
            user,
            program: None,
        });
    };
    let config = &oci.run;
    let command = config.command(command, &oci.reference)?;
    let (user, home) = match (user, &oci.user) {
        (Some(user), _) => (Some(user), None),
        (None, None) => (None, None),
        (None, Some(crate::oci::UserLookup::Found { uid, gid, home })) => (Some((*uid, *gid)), home.clone()),
        (None, Some(crate::oci::UserLookup::Unresolved(why))) => bail!("image {}: {why}", oci.reference),
    };
    let mut image_env: Vec<Vec<u8>> = config.env.iter().map(|var| var.as_bytes().to_vec()).collect();
    // As runtimes do: the image's user's home, unless the image sets HOME itself.
    if let Some(home) = home.filter(|_| !image_env.iter().any(|var| var.starts_with(b"HOME="))) {
        image_env.push(format!("HOME={home}").into_bytes());
    }
    let cwd = cwd.map(String::from).or_else(|| config.working_dir()).unwrap_or_else(|| "/".into());
    check_cwd(&cwd)?;
    Ok(Workload { command, environment: environment(&image_env, env)?, cwd, user, program: None })
}

/// The workload's environment: PATH and HOME, then an image's `NAME=VALUE` entries, then
/// `--env`, each overriding what came before. `--env NAME` without `=` passes the host's
/// value of NAME.
pub(crate) fn environment(image: &[Vec<u8>], given: &[OsString]) -> Result<Vec<Vec<u8>>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b"PATH".to_vec(), DEFAULT_PATH.into()), (b"HOME".to_vec(), b"/root".to_vec())];
    for entry in image {
        if let Some(eq) = entry.iter().position(|&b| b == b'=').filter(|&eq| eq > 0) {
            let name = entry[..eq].to_vec();
            vars.retain(|(existing, _)| *existing != name);
            vars.push((name, entry[eq + 1..].to_vec()));
        }
    }
    for entry in given {
        let bytes = entry.as_bytes();
        let (name, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(0) => bail!("--env {}: the variable has no name: write NAME=VALUE", entry.to_string_lossy()),
            Some(eq) => (bytes[..eq].to_vec(), bytes[eq + 1..].to_vec()),
            None if bytes.is_empty() => bail!("--env needs NAME=VALUE (or NAME to pass the host's value)"),
            None => match std::env::var_os(entry) {
                Some(value) => (bytes.to_vec(), value.as_bytes().to_vec()),
                None => bail!("--env {}: no such variable on the host: write NAME=VALUE", entry.to_string_lossy()),
            },
        };
        vars.retain(|(existing, _)| *existing != name);
        vars.push((name, value));
    }
    Ok(vars
        .into_iter()
        .map(|(mut name, value)| {
            name.push(b'=');
            name.extend(value);
            name
        })
        .collect())
}

/// With the root's directory at hand, checks the program and the working directory on the
/// host, before spending a boot on them. Returns where a program named without a `/` was
/// found along `PATH`, for the guest to execute without searching again (`flint.program`;
/// none for a path with a newline or not in UTF-8, which the job's lines cannot carry).
pub(crate) fn check_in_root(tree: &Path, workload: &Workload) -> Result<Option<String>> {
    let (environment, cwd) = (&workload.environment, workload.cwd.as_str());
    let program = workload.command[0].as_bytes();
    if program.is_empty() {
        bail!("the command is empty: give the program to run after --");
    }
    match rootfs::resolve_in_root(tree, cwd.as_bytes()) {
        Some(dir) if dir.is_dir() => {}
        _ => bail!(
            "--cwd {cwd}: no such directory in the root filesystem ({}): create it there or pick another",
            tree.display()
        ),
    }
    let search_path = environment.iter().find_map(|var| var.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH.as_bytes());
    let shown = String::from_utf8_lossy(program);
    match rootfs::find_in_root(tree, program, search_path, cwd.as_bytes()) {
        Lookup::Found(_, _) if program.contains(&b'/') => Ok(None),
        Lookup::Found(_, found) => Ok(String::from_utf8(found).ok().filter(|found| !found.contains('\n'))),
        Lookup::NotExecutable(path) => Err(Exit::new(
            EXIT_NOT_EXECUTABLE,
            format!("{shown}: {} in the root filesystem is not an executable file: make it one (chmod +x) or run another program", path.display()),
        )
        .into()),
        Lookup::NotFound if program.contains(&b'/') => Err(Exit::new(
            EXIT_NOT_FOUND,
            format!("{shown}: no such file in the root filesystem ({}): check the path, or add the program to the root", tree.display()),
        )
        .into()),
        Lookup::NotFound => Err(Exit::new(
            EXIT_NOT_FOUND,
            format!(
                "{shown}: command not found in the root filesystem ({}, PATH={}): check the name, or add the program to the root",
                tree.display(),
                String::from_utf8_lossy(search_path)
            ),
        )
        .into()),
    }
}

/// The transport of the run's volumes, if it has any.
pub(super) fn volume_fs(args: &RunArgs) -> Option<VolumeFs> {
    (!args.volumes.is_empty()).then_some(args.volume_fs)
}

/// The modules the guest must load, dependencies first: the virtio drivers (the network
/// card's with `--net`, the volumes' with `--volume`) and the root's filesystem, when the
/// kernel has them as modules rather than built in.
pub(super) fn modules_for(kernel: &Kernel, args: &RunArgs, root: &Root) -> Result<Vec<crate::modules::Module>> {
    let mut needs = needs_on(args.machine, root.fs, args.mode, true);
    if args.net.is_some() {
        needs.push(VIRTIO_NET);
    }
    needs.extend(volume_fs(args).map(super::volumes::needs).unwrap_or_default());
    crate::modules::load_list(kernel, &needs)
}

/// The network card `--net` gives the guest.
const VIRTIO_NET: Need = Need { option: "CONFIG_VIRTIO_NET", module: "virtio_net", purpose: "--net (virtio-net)" };

/// `flint.ip=` for QEMU's user network, whose defaults these are: the guest's address (the
/// first its DHCP server would give), the host (its loopback, as the gateway) and QEMU's DNS
/// forwarder.
const USER_NET_IP: &str = "10.0.2.15/24,10.0.2.2,10.0.2.3";

/// The root disk for `mode`. An ext4 image that was not unmounted cleanly (its journal needs
/// recovery) cannot be mounted from a read-only disk, and `--ro`/`--overlay` must not change
/// it: there the guest gets a writable disk whose writes (the replayed journal) go to a layer
/// QEMU throws away.
pub(crate) fn root_drive(image: PathBuf, fs: FsType, mode: RootMode) -> Drive {
    let mut drive = Drive::new(image, mode != RootMode::Rw);
    if drive.read_only && fs == FsType::Ext4 && rootfs::ext4_needs_recovery(&drive.path) {
        env::progress(format!(
            "note: {} was not unmounted cleanly (its journal needs recovery): the guest replays it on a throwaway layer, the image stays as it is",
            drive.path.display()
        ));
        drive.read_only = false;
        drive.throwaway_writes = true;
    }
    drive
}

/// What the guest needs from the kernel on `machine` for a virtio-blk root of type `fs` in
/// `mode`, and for `ports`, the virtio-serial ports `flint run` carries stdio on (a disk
/// image's job uses the serial console instead).
pub(crate) fn needs_on(machine: Machine, fs: FsType, mode: RootMode, ports: bool) -> Vec<Need> {
    let transport = match machine {
        Machine::Pc | Machine::Q35 => {
            Need { option: "CONFIG_VIRTIO_PCI", module: "virtio_pci", purpose: "virtio-pci devices" }
        }
        Machine::Microvm => {
            Need { option: "CONFIG_VIRTIO_MMIO", module: "virtio_mmio", purpose: "microvm's virtio-mmio devices" }
        }
    };
    // virtio_console before virtio_blk: its ports are created asynchronously, so they get the
    // time the other modules take to load before the init opens them.
    let mut needs = vec![transport];
    if ports {
        needs.push(Need {
            option: "CONFIG_VIRTIO_CONSOLE",
            module: "virtio_console",
            purpose: "the workload's stdin/stdout/stderr (virtio-serial)",
        });
    }
    needs.push(Need { option: "CONFIG_VIRTIO_BLK", module: "virtio_blk", purpose: "the root disk (virtio-blk)" });
    needs.push(match fs {
        FsType::Ext4 => Need { option: "CONFIG_EXT4_FS", module: "ext4", purpose: "the ext4 root" },
        FsType::Erofs => Need { option: "CONFIG_EROFS_FS", module: "erofs", purpose: "the erofs root" },
    });
    if mode == RootMode::Overlay {
        needs.push(Need { option: "CONFIG_OVERLAY_FS", module: "overlay", purpose: "--overlay" });
    }
    needs
}

/// What every flint guest needs built in, whatever the machine and root, with why.
const BUILT_IN: [(&str, &str); 17] = [
    ("CONFIG_64BIT", "the firmware enters a 64-bit kernel"),
    ("CONFIG_PVH", "microvm boots the uncompressed vmlinux through its PVH entry"),
    ("CONFIG_BLK_DEV_INITRD", "flint's init arrives as an initramfs"),
    ("CONFIG_BINFMT_ELF", "the init and the workload"),
    ("CONFIG_BINFMT_SCRIPT", "#! workloads"),
    ("CONFIG_TTY", "the console"),
    ("CONFIG_SERIAL_8250", "the console (COM1)"),
    ("CONFIG_SERIAL_8250_CONSOLE", "the console (COM1)"),
    ("CONFIG_DEVTMPFS", "/dev"),
    ("CONFIG_UNIX98_PTYS", "/dev/pts"),
    ("CONFIG_PROC_FS", "/proc"),
    ("CONFIG_SYSFS", "/sys"),
    ("CONFIG_TMPFS", "/tmp and the overlay root's upper layer"),
    ("CONFIG_TMPFS_XATTR", "the overlay root's upper layer"),
    ("CONFIG_PCI", "pc and q35's virtio-pci devices"),
    ("CONFIG_VIRTIO_MENU", "the virtio drivers below"),
    (
        "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
        "microvm without ACPI: QEMU lists its virtio-mmio devices on the command line",
    ),
];

/// What `flint kernel config` prints: the options flint's guests use on any machine with
/// any root, as a fragment to merge into a kernel's own config. The drivers may be modules
/// (`=m`): flint loads them; `=y` boots faster.
pub fn config_fragment() -> String {
    let mut out = String::from("# flint's guests: merge into a kernel config (scripts/kconfig/merge_config.sh)\n");
    for (option, why) in BUILT_IN {
        out.push_str(&format!("# {why}\n{option}=y\n"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for machine in [Machine::Microvm, Machine::Pc] {
        for fs in [FsType::Ext4, FsType::Erofs] {
            for need in needs_on(machine, fs, RootMode::Overlay, true) {
                if seen.insert(need.option) {
                    out.push_str(&format!("# {}\n{}=y\n", need.purpose, need.option));
                }
            }
        }
    }
    // The card's driver, and what it and the init's configuration of it need built in.
    for (option, why) in [
        ("CONFIG_NET", "--net: networking"),
        ("CONFIG_INET", "--net: IPv4, which the init configures"),
        ("CONFIG_NETDEVICES", "--net: network card drivers"),
        (VIRTIO_NET.option, VIRTIO_NET.purpose),
    ] {
        out.push_str(&format!("# {why}\n{option}=y\n"));
    }
    for fs in [VolumeFs::Virtiofs, VolumeFs::NineP] {
        for need in super::volumes::needs(fs) {
            out.push_str(&format!("# {}\n{}=y\n", need.purpose, need.option));
        }
    }
    out
}

/// An initramfs with the modules at `/lib/modules/<name>.ko`, kept in the cache by content
/// (compared with the file there at each use: it is small, and at hand).
pub(super) fn module_initrd(modules: &[crate::modules::Module], signatures: Signatures) -> Result<PathBuf> {
    let mut archive = Initramfs::new();
    crate::modules::add_to_initramfs(&mut archive, modules, signatures);
    let bytes = archive.to_bytes();
    let path = env::cache_subdir("initrds")?.join(format!("{}.cpio", &env::sha256_hex(&bytes)[..32]));
    env::cache_bytes(&path, &bytes)?;
    Ok(path)
}

/// Kernel parameters that skip start-up work a one-job VM never needs: probing the PS/2
/// keyboard controller, the clocksource watchdog and IO-APIC timer check, the crypto
/// self-tests, rewriting every lock prefix of the kernel when it finds one CPU. Each is
/// measured with `scripts/ab.sh` (BENCHMARKS.md, "Tuning").
const BOOT_TUNING: [&str; 7] = [
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "tsc=reliable",
    "no_timer_check",
    "cryptomgr.notests",
    "noreplace-smp",
];

pub(super) fn kernel_cmdline(
    args: &RunArgs,
    accel: &str,
    root: &Root,
    modules: &[crate::modules::Module],
    workload: &Workload,
    on_port: bool,
) -> Result<(String, Option<JobText>)> {
    let job = Job {
        root_device: "/dev/vda",
        fs: root.fs,
        mode: args.mode,
        modules,
        command: &workload.command,
        environment: &workload.environment,
        cwd: &workload.cwd,
        user: workload.user,
        timeout: args.timeout,
        grace: Some(args.grace),
        tuned: !args.untuned,
        on_port,
        ready: (args.warm == Some(WarmPoint::Ready)).then_some(super::warm::READY_FIFO),
        program: workload.program.as_deref(),
    };
    let mut words = init_words(&job);
    words.extend(args.machine.kernel_params(accel));
    for (name, device) in PORTS {
        words.push(format!("flint.{name}={device}"));
    }
    if args.net.is_some() {
        words.push(format!("flint.ip={USER_NET_IP}"));
    }
    if !args.volumes.is_empty() {
        words.push(super::volumes::param(&args.volumes, args.volume_fs));
    }
    // The root's shell run once before the snapshot, so its files are in the page cache of
    // every restored VM (guest-init's `warmup`). A workload's own snapshot has its own files.
    if args.warm == Some(WarmPoint::Boot) {
        words.push("flint.warmup".into());
    }
    words.extend(args.append.iter().cloned());
    Ok((words.join(" "), on_port.then(|| JobText::of(&job))))
}

/// One job as the guest init is told about it, whatever carries its stdio.
pub(crate) struct Job<'a> {
    /// `flint.root=`: a device path, or `gpt-auto`.
    pub root_device: &'a str,
    pub fs: FsType,
    pub mode: RootMode,
    pub modules: &'a [crate::modules::Module],
    pub command: &'a [OsString],
    pub environment: &'a [Vec<u8>],
    /// Checked with [`check_cwd`].
    pub cwd: &'a str,
    pub user: Option<(u32, u32)>,
    pub timeout: Option<Duration>,
    /// After the timeout's SIGTERM, how long until SIGKILL (`None`: SIGKILL at once).
    pub grace: Option<Duration>,
    /// With [`BOOT_TUNING`].
    pub tuned: bool,
    /// The command, environment, cwd and user go over the status port ([`JobText`]),
    /// not on the command line, which then says `flint.job=port`.
    pub on_port: bool,
    /// The FIFO the workload writes to once ready (`flint.ready`), with the job on the port.
    pub ready: Option<&'static str>,
    /// Where the program is in the root (`flint.program`), with the job on the port.
    pub program: Option<&'a str>,
}

/// What the host writes first on the status port for a job with `on_port`: its command,
/// environment, working directory, user and time limits (flint_guest_init::job), and fresh
/// entropy and the wall-clock time, taken when the message is made: a VM restored from a
/// snapshot has the snapshot's.
#[derive(Debug)]
pub(crate) struct JobText {
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    cwd: String,
    user: Option<(u32, u32)>,
    timeout_ms: Option<(u64, u64)>,
    ready: Option<&'static str>,
    program: Option<String>,
}

impl JobText {
    fn of(job: &Job) -> JobText {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        JobText {
            argv: job.command.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
            env: job.environment.to_vec(),
            cwd: job.cwd.to_string(),
            user: job.user,
            timeout_ms: job.timeout.map(|timeout| (millis(timeout), job.grace.map_or(0, millis))),
            ready: job.ready,
            program: job.program.map(str::to_string),
        }
    }

    /// The job as the guest takes it, with `fresh` entropy and time.
    fn with(&self, fresh: ([u8; 32], (u64, u32))) -> flint_guest_init::job::Job<'_, Vec<u8>, Vec<u8>> {
        flint_guest_init::job::Job {
            argv: &self.argv,
            env: &self.env,
            cwd: &self.cwd,
            user: self.user,
            timeout_ms: self.timeout_ms,
            fresh: Some(fresh),
            ready: self.ready,
            program: self.program.as_deref(),
        }
    }

    /// The message, as of now.
    pub(crate) fn message(&self) -> Result<Vec<u8>> {
        Ok(flint_guest_init::job::message(&self.with(fresh()?)).to_string().into_bytes())
    }

    /// The length of the message's lines (what the guest's limit counts), without making it:
    /// the seed's encoding is as long whatever its bytes.
    pub(crate) fn body_len(&self) -> usize {
        flint_guest_init::job::message(&self.with(([0; 32], now()))).body_len()
    }
}

/// Fresh entropy and the wall-clock time as the init takes them after a restore in the
/// middle of the workload (`flint_guest_init::control::fresh`).
pub(crate) fn fresh_message() -> Result<Vec<u8>> {
    let (seed, now) = fresh()?;
    Ok(flint_guest_init::control::fresh(seed, now).to_vec())
}

/// 32 bytes of entropy and the wall-clock time (seconds and nanoseconds since the epoch).
fn fresh() -> Result<([u8; 32], (u64, u32))> {
    Ok((random_seed()?, now()))
}

fn now() -> (u64, u32) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_secs(), now.subsec_nanos())
}

/// 32 bytes from the host kernel's CSPRNG.
fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .context("cannot read /dev/urandom for the guest's entropy")?;
    Ok(seed)
}

/// The kernel command line for `job`, as words: the console, boot tuning and the init's
/// `flint.*` parameters (stdio stays on the console unless the caller adds devices).
pub(crate) fn init_words(job: &Job) -> Vec<String> {
    use flint_guest_init::argv::encode;
    let mut words: Vec<String> = ["console=ttyS0", "quiet", "panic=-1"].map(String::from).to_vec();
    if job.tuned {
        words.extend(BOOT_TUNING.iter().map(|word| word.to_string()));
    }
    words.push(format!("flint.root={}", job.root_device));
    words.push(format!("flint.rootfstype={}", job.fs.name()));
    words.push(format!("flint.rootwait={ROOT_WAIT_SECS}"));
    words.push(
        match job.mode {
            RootMode::Ro => "flint.ro",
            RootMode::Rw => "flint.rw",
            RootMode::Overlay => "flint.overlay",
        }
        .into(),
    );
    if !job.modules.is_empty() {
        words.push(format!(
            "flint.modules={}",
            job.modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(",")
        ));
    }
    if job.on_port {
        words.push("flint.job=port".into());
    } else {
        let argv: Vec<&[u8]> = job.command.iter().map(|arg| arg.as_bytes()).collect();
        words.push(format!("flint.argv={}", encode(&argv)));
        words.push(format!("flint.env={}", encode(job.environment)));
        let cwd = job.cwd;
        if cwd != "/" {
            words.push(if cwd.contains(char::is_whitespace) {
                format!("\"flint.cwd={cwd}\"")
            } else {
                format!("flint.cwd={cwd}")
            });
        }
        if let Some((uid, gid)) = job.user {
            words.push(format!("flint.uid={uid}"));
            words.push(format!("flint.gid={gid}"));
        }
    }
    // With the job on the port, its limits go there too: the command line stays the same for
    // every job (a warm start's snapshot has one command line for them all).
    if let Some(timeout) = job.timeout.filter(|_| !job.on_port) {
        words.push(format!("flint.timeout={}.{:03}", timeout.as_secs(), timeout.subsec_millis()));
        if let Some(grace) = job.grace {
            words.push(format!("flint.grace={}.{:03}", grace.as_secs(), grace.subsec_millis()));
        }
    }
    words
}

/// `--cwd`: the init takes absolute paths, and the command line cannot quote `"`.
pub(crate) fn check_cwd(cwd: &str) -> Result<()> {
    if !cwd.starts_with('/') || cwd.contains('"') || cwd.chars().any(char::is_control) {
        bail!("--cwd {cwd:?}: give an absolute path without '\"' or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_takes_the_user_network_addresses() {
        let ip = flint_guest_init::net::parse(USER_NET_IP.as_bytes()).expect("a valid flint.ip");
        assert_eq!(
            (ip.address, ip.prefix, ip.gateway, ip.nameserver),
            ([10, 0, 2, 15], 24, [10, 0, 2, 2], [10, 0, 2, 3])
        );
    }

    #[test]
    fn a_jobs_length_is_known_without_making_it() {
        let job = JobText {
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), vec![b'x'; 5000]],
            env: vec![b"A=b".to_vec()],
            cwd: "/tmp".into(),
            user: Some((1, 2)),
            timeout_ms: Some((2500, 10_000)),
            ready: Some("/dev/flint-ready"),
            program: Some("/bin/sh".into()),
        };
        let message = job.message().unwrap();
        let header = message.iter().position(|&byte| byte == b'\n').unwrap() + 1;
        assert_eq!(job.body_len(), message.len() - header);
    }
}
