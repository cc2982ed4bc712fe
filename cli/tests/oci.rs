//! `--root-oci`: container images as the root, through the binary. The images are made here
//! with the real tools, offline: `umoci` builds an OCI layout from a busybox tree (a second
//! layer whites out a file of the first) and `skopeo` copies it into a docker-archive
//! (scripts/setup.sh installs both). Each boot takes a couple of seconds under TCG, so boots
//! are few and each checks several things; the bad references fail before any VM starts.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{assert_status, flint, text};

/// What the image runs when no command is given: its Env, WorkingDir and User, and whether
/// the first layer's /gone survived the second layer's whiteout.
const CMD: &str = "echo \"$GREETING from $(pwd) as $(id -u):$(id -g) home $HOME\"; test -e /gone || echo gone; exit 3";

fn tool(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} cannot start ({e}): install it (scripts/setup.sh)");
    });
    assert!(output.status.success(), "{program} {args:?}: {}", text(&output.stderr));
}

/// An OCI layout in `dir`: tag `t` (a busybox tree with /etc/passwd and /gone, then a layer
/// deleting /gone, then a config with Env, WorkingDir, User and Cmd) and tag `bare` (the
/// tree alone, no Cmd).
fn layout(dir: &Path) -> String {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("busybox-static is installed (scripts/setup.sh)");
    std::fs::set_permissions(tree.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in ["sh", "cat", "echo", "id", "pwd", "test"] {
        symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
        .unwrap();
    std::fs::write(tree.join("gone"), "from the first layer\n").unwrap();
    let layout = dir.join("layout");
    let (layout, tree) = (layout.to_str().unwrap(), tree.to_str().unwrap());
    let image = format!("{layout}:t");
    let bare = format!("{layout}:bare");
    tool("umoci", &["init", "--layout", layout]);
    for tag in [&image, &bare] {
        tool("umoci", &["new", "--image", tag]);
        tool("umoci", &["insert", "--image", tag, tree, "/"]);
    }
    tool("umoci", &["insert", "--image", &image, "--whiteout", "/gone"]);
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.env",
            "GREETING=hello",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "app",
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            CMD,
        ],
    );
    layout.to_string()
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("flint-oci-{name}"))
}

fn run(args: &[&str]) -> Output {
    flint().arg("run").args(args).output().unwrap()
}

#[track_caller]
fn assert_fails(output: &Output, words: &str) {
    assert_status(output, 125);
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("flint: error: ") && stderr.contains(words), "{words:?} not in:\n{stderr}");
}

#[test]
fn the_image_config_runs_when_no_command_is_given_and_whiteouts_delete() {
    let dir = scratch("config");
    let layout = layout(&dir);
    let output = run(&["--root-oci", &format!("{layout}:t")]);
    assert_status(&output, 3);
    assert_eq!(text(&output.stdout), "hello from /srv as 1000:1000 home /home/app\ngone\n");
}

#[test]
fn the_users_options_override_the_image_and_the_image_is_unpacked_once() {
    let dir = scratch("override");
    let image = format!("{}:t", layout(&dir));
    let output = run(&[
        "--root-oci",
        &image,
        "--env",
        "GREETING=hi",
        "--cwd",
        "/bin",
        "--user",
        "0:0",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING $(pwd) $(id -u) $HOME\"",
    ]);
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "hi /bin 0 /root\n");
    // Again, without --quiet: found in the cache by digest, not unpacked (no VM needed).
    let again =
        Command::new(env!("CARGO_BIN_EXE_flint")).args(["run", "--print-cmd", "--root-oci", &image]).output().unwrap();
    assert_status(&again, 0);
    assert!(!text(&again.stderr).contains("unpacking"), "unpacked again:\n{}", text(&again.stderr));
}

#[test]
fn a_docker_archive_boots_and_disk_images_take_oci_roots() {
    let dir = scratch("archive");
    let layout = layout(&dir);
    let archive = dir.join("image.tar");
    let archive = archive.to_str().unwrap();
    tool("skopeo", &["copy", &format!("oci:{layout}:t"), &format!("docker-archive:{archive}:example/app:1")]);
    let output = run(&["--root-oci", &format!("{archive}:example/app:1"), "--", "sh", "-c", "cat /etc/passwd; exit 5"]);
    assert_status(&output, 5);
    assert!(text(&output.stdout).contains("app:x:1000:1000"), "{}", text(&output.stdout));
    // Its only image needs no name.
    assert_status(&run(&["--print-cmd", "--root-oci", archive]), 0);

    // `flint image`: the image's Cmd, baked into a disk that boots with no -kernel.
    let disk = dir.join("disk.img");
    let made =
        flint().args(["image", "-o", disk.to_str().unwrap(), "--root-oci", &format!("{layout}:t")]).output().unwrap();
    assert_status(&made, 0);
    let mut vm = flint::qemu::Vm::new(flint::env::firmware(None).unwrap());
    vm.machine = flint::qemu::Machine::Pc;
    vm.drives.push(flint::qemu::Drive::new(&disk, true));
    let outcome = vm.run(std::time::Duration::from_secs(120)).expect("QEMU starts");
    let console = outcome.console_text();
    assert_eq!(outcome.exit_code(), Some(2 * 3 + 1), "console:\n{console}");
    assert!(console.contains("hello from /srv as 1000:1000 home /home/app"), "console:\n{console}");
}

#[test]
fn bad_references_are_named_before_booting() {
    let dir = scratch("bad");
    // umoci lists the tags in the order they were made.
    let layout = layout(&dir);
    assert_fails(&run(&["--root-oci", "/nonexistent/image", "--", "true"]), "no such OCI layout directory");
    assert_fails(&run(&["--root-oci", &layout]), "holds 2 images and none is tagged latest (its tags: bare, t)");
    assert_fails(&run(&["--root-oci", &format!("{layout}:nope")]), "has no tag nope (its tags: bare, t)");
    assert_fails(&run(&["--root-oci", &format!("{layout}:bare")]), "has no Entrypoint or Cmd: give the command");
    let not_an_image = dir.join("tree");
    assert_fails(&run(&["--root-oci", not_an_image.to_str().unwrap()]), "neither an OCI image layout");
    let tarball = dir.join("tree/bin/busybox");
    assert_fails(&run(&["--root-oci", tarball.to_str().unwrap()]), "is not a tar archive");
    assert_fails(&run(&["--root-oci", &layout, "--root", "/", "--", "true"]), "cannot be used with");
}
