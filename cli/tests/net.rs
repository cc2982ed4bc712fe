//! `flint run --net user` and `-p`: real VMs with Debian's cloud kernel (virtio_net is a
//! module there), talking to servers this test runs on the host's loopback, and the other
//! way round. The bad-input tests fail before any VM starts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_status, busybox_tree, flint, scratch, text, Flint};

/// Long enough for a boot under TCG on a busy host.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn without_net_the_guest_has_only_lo_and_it_is_up() {
    let output =
        flint().args(["run", "--", "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"]).output().unwrap();
    assert_status(&output, 0);
    // 0x9: IFF_UP | IFF_LOOPBACK.
    assert_eq!(text(&output.stdout), "lo\n0x9\n");
}

/// Answers one HTTP GET on the host's loopback with `body`; returns the port and the request
/// line it got.
fn serve_once(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let response = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(response.as_bytes()).unwrap();
        text(&request).lines().next().unwrap_or_default().to_string()
    });
    (port, server)
}

/// A read-only root that has its own /etc/resolv.conf: the init binds its name server file
/// over it, and the image stays as it is.
#[test]
fn the_guest_fetches_a_file_from_the_hosts_loopback() {
    let root = scratch("flint-net-root");
    busybox_tree(&root, &["sh", "cat", "ls", "wget"], b"");
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let (port, server) = serve_once("hello from the host\n");
    let script = format!("ls /sys/class/net; cat /etc/resolv.conf; wget -q -O- http://10.0.2.2:{port}/file");
    let output = flint()
        .args(["run", "--net", "user", "--ro", "--root", root.to_str().unwrap(), "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "eth0\nlo\nnameserver 10.0.2.3\nhello from the host\n");
    assert_eq!(server.join().unwrap(), "GET /file HTTP/1.1");
}

/// A host port of the loopback that nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_forwarded_port_reaches_a_server_in_the_guest() {
    let (host_port, unused) = (free_port(), free_port());
    let forward = format!("{host_port}:8080");
    // A second forward, to nothing: QEMU takes several.
    let other = format!("{unused}:9090");
    // One connection served; the overlay root's /etc/resolv.conf is written in place.
    let script =
        "cat /etc/resolv.conf; printf 'HTTP/1.0 200 OK\\r\\n\\r\\nhello from the guest\\n' | nc -l -p 8080 | head -1";
    let child = flint()
        .args(["run", "--net", "user", "-p", &forward, "-p", &other, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut flint = Flint(child);
    let start = Instant::now();
    // QEMU accepts on the host before the guest listens, and closes the connection when the
    // guest refuses it: until the server is up, a connection reads nothing.
    let response = loop {
        assert!(start.elapsed() < DEADLINE, "no answer through the forward");
        assert!(flint.0.try_wait().unwrap().is_none(), "flint ended before the guest answered");
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", host_port)) {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() {
                let mut response = Vec::new();
                let _ = stream.read_to_end(&mut response);
                if !response.is_empty() {
                    break text(&response);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(response, "HTTP/1.0 200 OK\r\n\r\nhello from the guest\n");
    // Its output is a few lines: the pipes cannot fill before it ends.
    let status = flint.0.wait().unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    flint.0.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    flint.0.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    let output = Output { status, stdout, stderr };
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "nameserver 10.0.2.3\nGET / HTTP/1.0\r\n");
}

#[test]
fn a_forward_without_the_network_is_refused_before_booting() {
    let output = flint().args(["run", "-p", "8080:80", "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("flint: error: -p 8080:80 ") && stderr.contains("add --net user"), "{stderr}");
    for bad in ["0:80", "8080", "65536:80", "80:80/udp"] {
        let output = flint().args(["run", "--net", "user", "-p", bad, "--", "true"]).output().unwrap();
        assert_status(&output, 125);
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("flint: error: ") && stderr.contains("HOST:GUEST"), "{bad}: {stderr}");
    }
    let output = flint().args(["run", "--net", "user", "-p", "80:80", "-p", "80:81", "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    assert!(text(&output.stderr).contains("host port 80 is forwarded twice"), "{}", text(&output.stderr));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let forward = format!("{}:80", taken.local_addr().unwrap().port());
    let output = flint().args(["run", "--net", "user", "-p", &forward, "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Address already in use") && stderr.contains("pick another host port"), "{stderr}");
}

/// The minimal kernel as it is built today, whatever its configuration says later: without
/// CONFIG_VIRTIO_NET.
#[test]
fn a_kernel_without_virtio_net_is_named() {
    let dir = scratch("flint-net-no-virtio-net");
    common::minimal_kernel_without(&dir, "CONFIG_VIRTIO_NET");
    let output =
        flint().args(["run", "--net", "user", "--kernel", dir.to_str().unwrap(), "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("flint: error: ") && stderr.contains("lacks CONFIG_VIRTIO_NET (--net"), "{stderr}");
}
