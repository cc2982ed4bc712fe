//! The network: the loopback interface always, and with `flint.ip=` the one network card
//! (QEMU's user network) with a fixed address, a default route and a name server. Set with
//! the ioctls `ifconfig` and `route` use, so nothing waits on DHCP.

use crate::clock::{self, Deadline};
use crate::fdio::write_all;
use crate::params::RootMode;
use crate::report::Failure;
use crate::status;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;
use rustix::ioctl::{Opcode, Setter, Updater};
use rustix::net::{AddressFamily, SocketType};

/// `flint.ip=ADDRESS/PREFIX,GATEWAY,NAMESERVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    pub address: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
    pub nameserver: [u8; 4],
}

/// What `flint.ip=` takes, for its error message.
pub const IP_FORMAT: &str = "ADDRESS/PREFIX,GATEWAY,NAMESERVER in IPv4, e.g. 10.0.2.15/24,10.0.2.2,10.0.2.3";

/// Parses `flint.ip=`'s value: dotted quads without leading zeros, a prefix from 1 to 32.
pub fn parse(value: &[u8]) -> Option<Ipv4> {
    let mut parts = value.split(|&byte| byte == b',');
    let (interface, gateway, nameserver) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let slash = interface.iter().position(|&byte| byte == b'/')?;
    let prefix = number(&interface[slash + 1..]).filter(|prefix| (1..=32).contains(prefix))?;
    Some(Ipv4 {
        address: address(&interface[..slash])?,
        prefix: prefix as u8,
        gateway: address(gateway)?,
        nameserver: address(nameserver)?,
    })
}

fn address(text: &[u8]) -> Option<[u8; 4]> {
    let mut octets = [0; 4];
    let mut parts = text.split(|&byte| byte == b'.');
    for octet in &mut octets {
        *octet = u8::try_from(number(parts.next()?)?).ok()?;
    }
    parts.next().is_none().then_some(octets)
}

/// 1 to 3 digits, no leading zero (which some tools read as octal).
fn number(digits: &[u8]) -> Option<u64> {
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    (digits.len() <= 3 && !leading_zero).then(|| crate::params::decimal(digits)).flatten()
}

/// The kernel's `struct sockaddr_in`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn {
    family: u16,
    port: u16,
    address: [u8; 4],
    zero: [u8; 8],
}

const fn inet(address: [u8; 4]) -> SockaddrIn {
    SockaddrIn { family: AddressFamily::INET.as_raw(), port: 0, address, zero: [0; 8] }
}

/// `struct ifreq` with an address (SIOCSIFADDR, SIOCSIFNETMASK).
#[repr(C)]
struct IfAddr {
    name: [u8; IFNAMSIZ],
    address: SockaddrIn,
    rest: [u8; 8],
}

/// `struct ifreq` with flags (SIOCGIFFLAGS, SIOCSIFFLAGS).
#[repr(C)]
struct IfFlags {
    name: [u8; IFNAMSIZ],
    flags: i16,
    rest: [u8; 22],
}

/// The kernel's `struct rtentry` (SIOCADDRT) on x86-64.
#[repr(C)]
struct RtEntry {
    pad1: usize,
    destination: SockaddrIn,
    gateway: SockaddrIn,
    genmask: SockaddrIn,
    flags: u16,
    pad2: i16,
    pad3: usize,
    pad4: usize,
    metric: i16,
    /// `char *rt_dev`: none, the kernel finds the interface from the gateway.
    device: usize,
    mtu: usize,
    window: usize,
    irtt: u16,
}

const _: () = assert!(size_of::<IfAddr>() == 40 && size_of::<IfFlags>() == 40 && size_of::<RtEntry>() == 120);

const IFNAMSIZ: usize = 16;
const SIOCADDRT: Opcode = 0x890b;
const SIOCGIFFLAGS: Opcode = 0x8913;
const SIOCSIFFLAGS: Opcode = 0x8914;
const SIOCSIFADDR: Opcode = 0x8916;
const SIOCSIFNETMASK: Opcode = 0x891c;
const IFF_UP: i16 = 1;
const RTF_UP: u16 = 1;
const RTF_GATEWAY: u16 = 2;

const LOOPBACK: [u8; IFNAMSIZ] = *b"lo\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
const SYS_CLASS_NET: &CStr = c"/sys/class/net";
const RESOLV_CONF: &CStr = c"/etc/resolv.conf";
/// The name server file for a root the init must not write: on /dev (devtmpfs), bound over
/// the root's own /etc/resolv.conf.
const RESOLV_CONF_SPARE: &CStr = c"/dev/flint-resolv.conf";

/// Brings `lo` up, and with `ip` the network card as it says, waiting up to `wait_ms` for
/// the card to appear (its driver probes asynchronously). `root` is the root's mode (`None`:
/// the initramfs), which decides how /etc/resolv.conf is given.
pub fn configure(ip: Option<&Ipv4>, root: Option<RootMode>, wait_ms: u64) -> Result<(), Failure> {
    let socket = match rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None) {
        Ok(socket) => socket,
        // A kernel without IPv4 has no loopback address to bring up either.
        Err(_) if ip.is_none() => return Ok(()),
        Err(errno) => {
            return Err(failure("cannot open an IPv4 socket: ", errno, ": the kernel needs CONFIG_INET (flint.ip)"))
        }
    };
    // Best effort: lo only serves workloads that talk to themselves.
    let _ = up(socket.as_fd(), LOOPBACK);
    let Some(ip) = ip else { return Ok(()) };
    let card = clock::retry(Deadline::after_ms(wait_ms), find_card, |errno| errno == Errno::NODEV).map_err(|errno| {
        match errno {
            Errno::NODEV => Failure::new(status::SETUP_FAILED).text("no network card appeared within ").number(wait_ms).text(
                " ms (flint.ip): attach a virtio-net device and list virtio_net in flint.modules (or raise flint.rootwait)",
            ),
            errno => failure("cannot list /sys/class/net: ", errno, ": mount sysfs on /sys"),
        }
    })?;
    let mask = u32::MAX << (32 - u32::from(ip.prefix));
    let check = |what: &str, result: Result<(), Errno>| {
        result.map_err(|errno| failure(what, errno, ": check flint.ip (the gateway must be on the card's network)"))
    };
    check("cannot set the address: ", set_address::<SIOCSIFADDR>(socket.as_fd(), card, ip.address))?;
    check("cannot set the netmask: ", set_address::<SIOCSIFNETMASK>(socket.as_fd(), card, mask.to_be_bytes()))?;
    check("cannot bring the network card up: ", up(socket.as_fd(), card))?;
    check("cannot add the default route: ", default_route(socket.as_fd(), ip.gateway))?;
    name_server(ip.nameserver, root)
}

/// The first interface with a device behind it (`lo`, and tunnels like `sit0`, have none),
/// as `struct ifreq` names it; ENODEV while there is none.
fn find_card() -> Result<[u8; IFNAMSIZ], Errno> {
    let dir = rustix::fs::open(SYS_CLASS_NET, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut buf = [MaybeUninit::uninit(); 1024];
    let mut entries = RawDir::new(&dir, &mut buf);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name.starts_with(b".") || name.len() >= IFNAMSIZ {
            continue;
        }
        let mut path = [0u8; IFNAMSIZ + 7];
        path[..name.len()].copy_from_slice(name);
        path[name.len()..name.len() + 7].copy_from_slice(b"/device");
        if rustix::fs::statat(&dir, &path[..name.len() + 7], rustix::fs::AtFlags::empty()).is_ok() {
            let mut card = [0; IFNAMSIZ];
            card[..name.len()].copy_from_slice(name);
            return Ok(card);
        }
    }
    Err(Errno::NODEV)
}

fn set_address<const OPCODE: Opcode>(
    socket: BorrowedFd<'_>,
    card: [u8; IFNAMSIZ],
    address: [u8; 4],
) -> Result<(), Errno> {
    let request = IfAddr { name: card, address: inet(address), rest: [0; 8] };
    // SAFETY: both opcodes read a `struct ifreq` holding a `sockaddr_in`, which IfAddr is.
    unsafe { rustix::ioctl::ioctl(socket, Setter::<OPCODE, IfAddr>::new(request)) }
}

/// Adds IFF_UP to the interface's flags, keeping the others (IFF_MULTICAST is one a plain
/// write would clear).
fn up(socket: BorrowedFd<'_>, card: [u8; IFNAMSIZ]) -> Result<(), Errno> {
    let mut request = IfFlags { name: card, flags: 0, rest: [0; 22] };
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into a `struct ifreq`,
    // which IfFlags is, and it lives for the call.
    unsafe { rustix::ioctl::ioctl(socket, Updater::<SIOCGIFFLAGS, IfFlags>::new(&mut request)) }?;
    request.flags |= IFF_UP;
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq` with flags, which IfFlags is.
    unsafe { rustix::ioctl::ioctl(socket, Setter::<SIOCSIFFLAGS, IfFlags>::new(request)) }
}

fn default_route(socket: BorrowedFd<'_>, gateway: [u8; 4]) -> Result<(), Errno> {
    let route = RtEntry {
        pad1: 0,
        destination: inet([0; 4]),
        gateway: inet(gateway),
        genmask: inet([0; 4]),
        flags: RTF_UP | RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        pad4: 0,
        metric: 0,
        device: 0,
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    // SAFETY: SIOCADDRT reads a `struct rtentry`, which RtEntry is (its size is asserted), and
    // its one pointer, rt_dev, is null.
    unsafe { rustix::ioctl::ioctl(socket, Setter::<SIOCADDRT, RtEntry>::new(route)) }
}

/// Writes `nameserver A.B.C.D` to /etc/resolv.conf: in place on a root whose writes are
/// thrown away (the overlay, the initramfs); else, so the root image stays as it is, into a
/// file on /dev bound over the root's /etc/resolv.conf, when the root has one.
fn name_server(address: [u8; 4], root: Option<RootMode>) -> Result<(), Failure> {
    let mut line = [0u8; 32];
    let text = resolv_conf(address, &mut line);
    let written = |path: &CStr| {
        // The file may be a link, to a place that need not exist: replaced by a file.
        let _ = rustix::fs::unlink(path);
        let file = rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        write_all(&file, text)
    };
    let failed = |what: &str, errno| failure(what, errno, " (flint.ip)");
    match root {
        None | Some(RootMode::Overlay) => {
            let _ = rustix::fs::mkdir(c"/etc", Mode::from_raw_mode(0o755));
            written(RESOLV_CONF).map_err(|errno| failed("cannot write /etc/resolv.conf: ", errno))
        }
        Some(RootMode::ReadOnly | RootMode::ReadWrite) => {
            written(RESOLV_CONF_SPARE).map_err(|errno| failed("cannot write /dev/flint-resolv.conf: ", errno))?;
            match rustix::mount::mount_bind(RESOLV_CONF_SPARE, RESOLV_CONF) {
                // Nothing to bind over: the root's programs get no name server.
                Ok(()) | Err(Errno::NOENT | Errno::NOTDIR) => Ok(()),
                Err(errno) => Err(failed("cannot bind a name server file over /etc/resolv.conf: ", errno)),
            }
        }
    }
}

/// `nameserver A.B.C.D\n` in `line`.
fn resolv_conf(address: [u8; 4], line: &mut [u8; 32]) -> &[u8] {
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        line[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    push(b"nameserver ");
    for (index, octet) in address.into_iter().enumerate() {
        push(loader::decimal::decimal(octet.into(), &mut [0; 20]));
        push(if index < 3 { b"." } else { b"\n" });
    }
    &line[..len]
}

fn failure(what: &str, errno: Errno, fix: &str) -> Failure {
    Failure::new(status::SETUP_FAILED).text(what).errno(errno).text(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_parameters_are_read_strictly() {
        let user = Ipv4 { address: [10, 0, 2, 15], prefix: 24, gateway: [10, 0, 2, 2], nameserver: [10, 0, 2, 3] };
        assert_eq!(parse(b"10.0.2.15/24,10.0.2.2,10.0.2.3"), Some(user));
        assert_eq!(parse(b"255.255.255.255/32,0.0.0.0,1.2.3.4").map(|ip| ip.prefix), Some(32));
        for bad in [
            "",
            "10.0.2.15/24",
            "10.0.2.15/24,10.0.2.2",
            "10.0.2.15/24,10.0.2.2,10.0.2.3,",
            "10.0.2.15,10.0.2.2,10.0.2.3",
            "10.0.2.15/0,10.0.2.2,10.0.2.3",
            "10.0.2.15/33,10.0.2.2,10.0.2.3",
            "10.0.2.15/024,10.0.2.2,10.0.2.3",
            "10.0.2.256/24,10.0.2.2,10.0.2.3",
            "10.0.2.015/24,10.0.2.2,10.0.2.3",
            "10.0.2/24,10.0.2.2,10.0.2.3",
            "10.0.2.15.1/24,10.0.2.2,10.0.2.3",
            "10.0..15/24,10.0.2.2,10.0.2.3",
            "10.0.2.15/24,10.0.2.2,10.0.2.-3",
            "10.0.2.15/24,10.0.2.2,99999999999999999999999.0.0.1",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_name_server_line() {
        assert_eq!(resolv_conf([10, 0, 2, 3], &mut [0; 32]), b"nameserver 10.0.2.3\n");
        assert_eq!(resolv_conf([255; 4], &mut [0; 32]), b"nameserver 255.255.255.255\n");
    }
}
