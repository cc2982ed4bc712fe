//! flint's guest init (guest-init/) booted for real: fw.bin embeds it as the initramfs, and
//! each test boots one of two kernels with an ext4 root image (made with `mkfs.ext4 -d` by
//! flint's own `rootfs::make_image`) holding busybox-static and small shell workloads:
//!
//! - Debian's cloud kernel, whose virtio drivers are modules: they travel in an initrd that
//!   `opt/flint/add-init` puts the embedded init in front of, named in `flint.modules` in the
//!   order flint's `ModuleTree` works out;
//! - the minimal kernel (`flint kernel minimal`), everything built in, no initrd.
//!
//! The status comes back exactly from the init's `flint-status <n>` line on COM2 (`-serial
//! file:`, `flint.status=/dev/ttyS1`), and is checked against QEMU's isa-debug-exit code too.
//! Each boot takes seconds under TCG, so every boot checks several things (9 boots in all).
//! scripts/test.sh builds fw.bin, fetches the Debian kernel and builds the minimal one first.

use flint::initramfs::Initramfs;
use flint::modules::ModuleTree;
use flint::qemu::{Drive, Outcome, PortBackend, VirtioPort, Vm};
use flint::rootfs::{make_image, FsType};
use flint_guest_init::argv::encode;
use flint_guest_init::status;
use flint_tests::*;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guest {
    /// Debian's cloud kernel: virtio-pci, virtio-blk, virtio-console are modules.
    Debian,
    /// The minimal kernel: everything built in.
    Minimal,
}

fn minimal_kernel() -> Kernel {
    let dir = cache_dir().join("kernels/minimal");
    assert!(
        dir.join("vmlinuz").is_file(),
        "minimal kernel missing at {}: run `cargo run -p flint -- kernel minimal` (scripts/test.sh does)",
        dir.display()
    );
    Kernel { dir }
}

impl Guest {
    fn kernel(self) -> Kernel {
        match self {
            Guest::Debian => debian_kernel(),
            Guest::Minimal => minimal_kernel(),
        }
    }
}

// The workloads, in /t of the root image. Facts go to the console as `@@key=value` lines.

/// Reports, byte-exact where it matters, what the init gave this process; reads stdin to EOF.
const REPORT: &str = r#"#!/bin/sh
hex() { od -An -v -tx1 | tr -d ' \n'; }
echo "@@argc=$#"
printf '@@cmdline='; hex < /proc/$$/cmdline; echo
printf '@@environ='; hex < /proc/$$/environ; echo
printf '@@cwd='; readlink /proc/$$/cwd
echo "@@ppid=$PPID"
awk '/^(Uid|Gid|Groups):/ { sub(":", "", $1); name = $1; $1 = ""; print "@@" name "=" substr($0, 2) }' /proc/$$/status
printf '@@root='; awk '$2 == "/" { root = $1 " " $3 " " $4 } END { print root }' /proc/mounts
printf '@@stdin='; hex; echo
echo "@@report=done"
"#;

/// Leaves orphans (some exiting with other codes, one zombie its parent never reaps, one that
/// never ends), waits until the init has reaped the finished ones, then exits 1 leaving an
/// unreaped child behind.
const ZOMBIES: &str = r#"#!/bin/sh
: > /tmp/orphans
for code in 3 5 7; do ( sh -c "sleep 0.$code; exit $code" & echo $! >> /tmp/orphans ); done
# `sleep 2` never waits for its child, which stays a zombie until the init adopts it.
( sh -c 'sleep 0.2 & exec sleep 2' & echo $! >> /tmp/orphans )
( sleep 1000 & echo $! > /tmp/sleeper )
printf '@@sleeper_ppid='; awk '{ print $4 }' /proc/$(cat /tmp/sleeper)/stat
left() {
    n=0
    for p in $(cat /tmp/orphans); do [ -e /proc/$p ] && n=$((n + 1)); done
    for s in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null < "$s" || continue
        set -- $line
        [ "$3" = Z ] && n=$((n + 1))
    done
    echo $n
}
i=0
while [ $i -lt 300 ]; do
    n=$(left)
    [ "$n" = 0 ] && break
    sleep 0.1
    i=$((i + 1))
done
echo "@@orphans_left=$n"
sh -c 'exit 9' &
exit 1
"#;

/// Writes files on a read-write root and exits 255 without syncing: the init must.
const DURABLE: &str = r#"#!/bin/sh
mkdir /out
printf 'written by the workload\n' > /out/note.txt
head -c 1048576 /dev/urandom > /out/big.bin
printf '@@big_sha256='; sha256sum /out/big.bin | awk '{ print $1 }'
printf '@@root='; awk '$2 == "/" { root = $1 " " $3 " " $4 } END { print root }' /proc/mounts
exit 255
"#;

const KILLED: &str = "#!/bin/sh\necho @@started\nkill -KILL $$\necho @@survived\n";

const SLOW: &str = "#!/bin/sh\necho @@started\nsleep 1000\necho @@woke\n";

/// busybox-static with the applets the workloads use, the workloads, and a directory whose
/// name has a space (for `flint.cwd`).
fn root_tree(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed (scripts/setup.sh)");
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in ["sh", "od", "tr", "cat", "readlink", "awk", "sleep", "mkdir", "head", "sha256sum"] {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    let t = dir.join("t");
    std::fs::create_dir_all(t.join("my dir")).unwrap();
    for (name, script) in [
        ("report.sh", REPORT),
        ("zombies.sh", ZOMBIES),
        ("durable.sh", DURABLE),
        ("killed.sh", KILLED),
        ("slow.sh", SLOW),
    ] {
        std::fs::write(t.join(name), script).unwrap();
        std::fs::set_permissions(t.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // make_image adds /dev, /proc, /sys and /tmp, which a read-only root must have.
}

/// One boot: the kernel, the init's parameters, and what is attached.
struct Setup {
    guest: Guest,
    argv: Vec<Vec<u8>>,
    /// `flint.env`; `None` leaves the init's default.
    env: Option<Vec<Vec<u8>>>,
    root_device: &'static str,
    /// More command-line words: `flint.rw`, `flint.timeout=1`, ...
    words: Vec<String>,
    /// Modules the Debian kernel loads besides virtio-pci and virtio-blk.
    extra_modules: Vec<&'static str>,
    /// Given to the workload as stdin, then EOF, through a virtio-serial port
    /// (`/dev/vport0p1`) whose host side is a Unix socket.
    stdin: Option<Vec<u8>>,
    rw: bool,
}

impl Setup {
    fn new(guest: Guest, argv: &[&[u8]]) -> Self {
        Setup {
            guest,
            argv: argv.iter().map(|a| a.to_vec()).collect(),
            env: None,
            root_device: "/dev/vda",
            words: Vec::new(),
            extra_modules: Vec::new(),
            stdin: None,
            rw: false,
        }
    }

    fn word(mut self, word: &str) -> Self {
        self.words.push(word.to_string());
        self
    }

    fn run(self) -> Ran {
        let scratch = tempfile::Builder::new().prefix("flint-guest-init-").tempdir().unwrap();
        let dir = scratch.path();
        let tree = dir.join("tree");
        root_tree(&tree);
        let image = dir.join("root.ext4");
        make_image(&tree, &image, FsType::Ext4, None).expect("mkfs.ext4 -d makes the root image");

        let kernel = self.guest.kernel();
        let mut vm = Vm::new(firmware());
        vm.kernel = Some(kernel.image());
        vm.drives.push(Drive::new(image, !self.rw));
        let mut cmdline = vec![
            "console=ttyS0".to_string(),
            "quiet".into(),
            "panic=-1".into(),
            format!("flint.root={}", self.root_device),
            "flint.status=/dev/ttyS1".into(),
        ];
        if self.guest == Guest::Debian {
            let mut wanted = vec!["virtio_pci", "virtio_blk"];
            if self.stdin.is_some() {
                wanted.push("virtio_console");
            }
            wanted.extend(&self.extra_modules);
            let tree = ModuleTree::open(&kernel.dir.join("modules")).expect("the Debian kernel's module tree");
            let modules = tree.load_order(&wanted).expect("modules and their dependencies are in the tree");
            let mut initrd = Initramfs::new();
            for module in &modules {
                initrd.file(&format!("/lib/modules/{}.ko", module.name), 0o644, module.data.clone());
            }
            std::fs::write(dir.join("modules.cpio"), initrd.to_bytes()).unwrap();
            vm.initrd = Some(dir.join("modules.cpio"));
            vm.fw_cfg_strings.push(("opt/flint/add-init".into(), "1".into()));
            let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
            cmdline.push(format!("flint.modules={}", names.join(",")));
        } else {
            assert!(self.extra_modules.is_empty(), "the minimal kernel has no modules");
        }
        cmdline.push(format!("flint.argv={}", encode(&self.argv)));
        if let Some(env) = &self.env {
            cmdline.push(format!("flint.env={}", encode(env)));
        }
        cmdline.extend(self.words.iter().cloned());

        // COM2 carries the status line; COM1 (the console) is QEMU's stdout.
        let status_path = dir.join("status.txt");
        vm.extra_args.extend(["-serial".into(), format!("file:{}", status_path.display())]);
        if let Some(input) = &self.stdin {
            let socket = dir.join("stdin.sock");
            vm.virtio_ports
                .push(VirtioPort { name: "flint.stdin".into(), backend: PortBackend::Socket(socket.clone()) });
            feed_stdin(&socket, input.clone());
            cmdline.push("flint.stdin=/dev/vport0p1".into());
        }
        let cmdline = cmdline.join(" ");
        assert!(cmdline.len() <= 2047, "command line too long ({} bytes): {cmdline}", cmdline.len());
        vm.append = Some(cmdline);

        let (outcome, console) = boot(&vm);
        let status_file = std::fs::read(&status_path).unwrap_or_default();
        Ran { guest: self.guest, outcome, console, status_file, scratch }
    }
}

/// Listens on `socket` for QEMU's stdin port, sends `data` and then EOF: the write side is
/// shut down, but the socket stays open (read until QEMU closes it) so that QEMU still reads
/// the data before it sees the end. The thread ends with QEMU.
fn feed_stdin(socket: &Path, data: Vec<u8>) {
    let listener = UnixListener::bind(socket).expect("listening for QEMU's stdin port");
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        if stream.write_all(&data).is_ok() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.read_to_end(&mut Vec::new());
        }
    });
}

struct Ran {
    guest: Guest,
    outcome: Outcome,
    console: String,
    /// Everything the init wrote on COM2.
    status_file: Vec<u8>,
    scratch: tempfile::TempDir,
}

impl Ran {
    fn image(&self) -> PathBuf {
        self.scratch.path().join("root.ext4")
    }

    /// All that is known about the boot, for assertion messages.
    fn context(&self) -> String {
        format!(
            "kernel: {:?}\nqemu exit: {:?}\nstatus device:\n{}\nconsole:\n{}\nqemu stderr:\n{}",
            self.guest,
            self.outcome.exit_code(),
            String::from_utf8_lossy(&self.status_file),
            self.console,
            String::from_utf8_lossy(&self.outcome.qemu_stderr)
        )
    }

    /// The status from the status device: exactly one `flint-status` line, the last one,
    /// after the ready line.
    fn status(&self) -> Option<u8> {
        let text = self.status_file.strip_suffix(b"\n")?;
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let ready = status::READY_LINE.trim_end().as_bytes();
        assert_eq!(lines[0], ready, "the ready line first\n{}", self.context());
        let statuses: Vec<u8> = lines.iter().filter_map(|line| status::parse_line(line)).collect();
        assert!(statuses.len() <= 1, "more than one status line\n{}", self.context());
        status::parse_line(lines.last()?)
    }

    #[track_caller]
    fn assert_status(&self, expected: u8) {
        assert_eq!(self.status(), Some(expected), "status line\n{}", self.context());
        // isa-debug-exit makes QEMU exit with (status << 1) | 1, of which the host keeps 8 bits.
        let qemu = (i32::from(expected) << 1 | 1) & 0xff;
        assert_eq!(self.outcome.exit_code(), Some(qemu), "QEMU's exit code\n{}", self.context());
    }

    #[track_caller]
    fn fact(&self, key: &str) -> String {
        fact(&self.console, key).unwrap_or_else(|| panic!("no @@{key}= line\n{}", self.context()))
    }

    /// The init's own `flint-init: ...` lines.
    fn init_lines(&self) -> Vec<&str> {
        self.console.lines().filter(|line| line.starts_with("flint-init:")).collect()
    }

    #[track_caller]
    fn assert_no_init_failure(&self) {
        assert!(self.init_lines().is_empty(), "the init reported a failure\n{}", self.context());
    }

    /// The one `flint-init:` line, which must be `expected`.
    #[track_caller]
    fn assert_init_line(&self, expected: &str) {
        assert_eq!(self.init_lines(), [expected], "the init's failure line\n{}", self.context());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// NUL-terminated items, as /proc/PID/cmdline and /proc/PID/environ hold them.
fn nul_list(items: &[Vec<u8>]) -> Vec<u8> {
    items.iter().flat_map(|item| item.iter().copied().chain([0])).collect()
}

/// Arguments a shell, a bootloader or a kernel command line would mangle.
fn hostile_args() -> Vec<Vec<u8>> {
    [
        b"two  spaces".as_slice(),
        b"",
        b"\"double quotes\"",
        b"'single quotes'",
        "ünïcødé ✓ 日本語".as_bytes(),
        b"",
        b"tab\there\nnewline",
        b"back\\slash $HOME `id` *",
        b"--",
        b"flint.argv=x quiet",
        b"a=b,c",
        b"\xff\xfe not UTF-8 \x80",
        b"-",
    ]
    .iter()
    .map(|a| a.to_vec())
    .collect()
}

fn hostile_env() -> Vec<Vec<u8>> {
    [
        b"PATH=/bin".as_slice(),
        b"SPACED=two  words ",
        b"QUOTES=\"double\" 'single'",
        "UTF8=ünïcødé ✓".as_bytes(),
        b"EMPTY=",
        b"EQUALS=a=b==c",
        b"NEWLINE=one\ntwo",
        b"flint.root=/dev/evil",
    ]
    .iter()
    .map(|a| a.to_vec())
    .collect()
}

/// Every byte value, and text with what a terminal would alter (CR, ^C, ^D, NUL).
fn stdin_bytes() -> Vec<u8> {
    let mut data = b"stdin line\r\n\x03\x04\x00 ^C^D \xff\n".to_vec();
    data.extend(0..=255u8);
    data
}

/// argv, environment, cwd, uid/gid, stdin and the read-only root in one boot; status 0.
fn argv_env_cwd_stdin(guest: Guest, ids: Option<u32>) {
    let mut argv: Vec<Vec<u8>> = vec![b"sh".to_vec(), b"/t/report.sh".to_vec()];
    argv.extend(hostile_args());
    let env = hostile_env();
    let mut setup = Setup::new(guest, &[]);
    setup.argv = argv.clone();
    setup.env = Some(env.clone());
    setup.stdin = Some(stdin_bytes());
    // Quoted the kernel's way: a space inside a value.
    setup = setup.word("\"flint.cwd=/t/my dir\"");
    if let Some(id) = ids {
        setup = setup.word(&format!("flint.uid={id}")).word(&format!("flint.gid={id}"));
    }
    let ran = setup.run();
    ran.assert_status(0);
    ran.assert_no_init_failure();
    assert_eq!(ran.fact("report"), "done", "{}", ran.context());
    assert_eq!(ran.fact("argc"), hostile_args().len().to_string(), "{}", ran.context());
    assert_eq!(ran.fact("cmdline"), hex(&nul_list(&argv)), "argv differs\n{}", ran.context());
    assert_eq!(ran.fact("environ"), hex(&nul_list(&env)), "environment differs\n{}", ran.context());
    assert_eq!(ran.fact("cwd"), "/t/my dir", "{}", ran.context());
    assert_eq!(ran.fact("ppid"), "1", "the workload is the init's child\n{}", ran.context());
    let id = ids.unwrap_or(0);
    assert_eq!(ran.fact("Uid"), format!("{id} {id} {id} {id}"), "{}", ran.context());
    assert_eq!(ran.fact("Gid"), format!("{id} {id} {id} {id}"), "{}", ran.context());
    assert_eq!(ran.fact("Groups"), "", "supplementary groups are cleared\n{}", ran.context());
    let root = ran.fact("root");
    assert!(
        root.starts_with("/dev/vda ext4 ro,"),
        "the root is /dev/vda, ext4, read-only by default: {root}\n{}",
        ran.context()
    );
    assert_eq!(ran.fact("stdin"), hex(&stdin_bytes()), "stdin differs\n{}", ran.context());
}

#[test]
fn debian_argv_env_cwd_stdin_exact() {
    argv_env_cwd_stdin(Guest::Debian, None);
}

#[test]
fn minimal_argv_env_cwd_stdin_uid_exact() {
    argv_env_cwd_stdin(Guest::Minimal, Some(1000));
}

#[test]
fn debian_rw_root_keeps_the_workloads_writes_and_status_255() {
    let mut setup = Setup::new(Guest::Debian, &[b"/t/durable.sh"]).word("flint.rw");
    setup.rw = true;
    let ran = setup.run();
    ran.assert_status(255);
    ran.assert_no_init_failure();
    let root = ran.fact("root");
    assert!(root.starts_with("/dev/vda ext4 rw,"), "flint.rw mounts the root read-write: {root}\n{}", ran.context());

    let image = ran.image();
    let debugfs = |request: &str| {
        let output =
            Command::new("debugfs").arg("-R").arg(request).arg(&image).output().expect("debugfs runs (e2fsprogs)");
        assert!(output.status.success(), "debugfs -R {request:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    };
    assert_eq!(
        String::from_utf8_lossy(&debugfs("cat /out/note.txt")),
        "written by the workload\n",
        "{}",
        ran.context()
    );
    let dumped = ran.scratch.path().join("big.bin");
    debugfs(&format!("dump /out/big.bin {}", dumped.display()));
    let big = std::fs::read(&dumped).expect("debugfs dumped /out/big.bin");
    assert_eq!(big.len(), 1 << 20, "{}", ran.context());
    assert_eq!(flint::env::sha256_hex(&big), ran.fact("big_sha256"), "the file on disk is what the guest wrote");
    // The init remounted the root read-only before powering off: the filesystem is clean.
    let fsck = Command::new("e2fsck").arg("-fn").arg(&image).output().expect("e2fsck runs (e2fsprogs)");
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {:?}\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn minimal_orphans_are_reaped_and_the_status_stays_exact() {
    let ran = Setup::new(Guest::Minimal, &[b"/t/zombies.sh"]).run();
    ran.assert_status(1);
    ran.assert_no_init_failure();
    assert_eq!(ran.fact("sleeper_ppid"), "1", "orphans are adopted by the init\n{}", ran.context());
    assert_eq!(ran.fact("orphans_left"), "0", "finished orphans are reaped\n{}", ran.context());
}

#[test]
fn minimal_death_by_sigkill_is_137() {
    let ran = Setup::new(Guest::Minimal, &[b"sh", b"/t/killed.sh"]).run();
    ran.assert_status(137);
    ran.assert_no_init_failure();
    assert!(ran.console.contains("@@started"), "the workload ran\n{}", ran.context());
    assert!(!ran.console.contains("@@survived"), "{}", ran.context());
}

#[test]
fn minimal_timeout_kills_the_workload_with_124() {
    let ran = Setup::new(Guest::Minimal, &[b"/t/slow.sh"]).word("flint.timeout=1").run();
    ran.assert_status(124);
    assert!(ran.console.contains("@@started"), "the workload ran\n{}", ran.context());
    assert!(!ran.console.contains("@@woke"), "{}", ran.context());
    ran.assert_init_line(
        "flint-init: workload killed after flint.timeout=1000 ms: raise flint.timeout if it needs longer",
    );
}

#[test]
fn minimal_missing_workload_is_127() {
    let ran = Setup::new(Guest::Minimal, &[b"/bin/no-such-program", b"arg"]).run();
    ran.assert_status(127);
    ran.assert_init_line(
        "flint-init: cannot execute /bin/no-such-program: ENOENT (no such file or directory): check flint.argv's program and the image's PATH",
    );
}

#[test]
fn debian_missing_root_device_is_122() {
    let mut setup = Setup::new(Guest::Debian, &[b"sh", b"-c", b"echo @@ran"]).word("flint.rootwait=0.5");
    setup.root_device = "/dev/vdz";
    let ran = setup.run();
    ran.assert_status(122);
    assert!(!ran.console.contains("@@ran"), "{}", ran.context());
    ran.assert_init_line(
        "flint-init: root device /dev/vdz did not appear within 500 ms: attach the disk and list its driver modules in flint.modules (or raise flint.rootwait)",
    );
}

#[test]
fn debian_wrong_root_filesystem_type_is_123() {
    let mut setup = Setup::new(Guest::Debian, &[b"sh", b"-c", b"echo @@ran"]).word("flint.rootfstype=erofs");
    // erofs itself is loaded: the mount fails on the image, not for a missing driver.
    setup.extra_modules.push("erofs");
    let ran = setup.run();
    ran.assert_status(123);
    assert!(!ran.console.contains("@@ran"), "{}", ran.context());
    ran.assert_init_line(
        "flint-init: cannot mount root device /dev/vda as erofs read-only: EINVAL (invalid argument): check that flint.rootfstype matches the image",
    );
}
