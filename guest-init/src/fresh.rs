//! What a VM restored from a snapshot must not share with the snapshot or with the other VMs
//! restored from it: the random number generator's state and the wall-clock time. The host
//! sends both with every job (`flint.seed`, `flint.time`); a cold boot takes them too.

use crate::report::Failure;
use crate::{control, job, poweroff, status};
use core::sync::atomic::{AtomicI32, Ordering};
use rustix::fd::IntoRawFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::time::{ClockId, Timespec};
use syscalls::{syscall, Sysno};

/// `RNDADDENTROPY` (`_IOW('R', 0x03, int[2])`): mixes bytes into the input pool, credited.
const RNDADDENTROPY: usize = 0x4008_5203;
/// `RNDRESEEDCRNG` (`_IO('R', 0x07)`): reseeds the kernel's CRNG from the input pool now, so
/// the very next read of /dev/urandom already differs from the snapshot's.
const RNDRESEEDCRNG: usize = 0x5207;

/// The kernel's `struct rand_pool_info` with room for one seed.
#[repr(C)]
struct PoolInfo {
    entropy_bits: i32,
    size: i32,
    bytes: [u8; 32],
}

/// How long the rest of a fresh-entropy message may take to arrive after its first byte.
const FRESH_WAIT_MS: u64 = 5_000;

/// Reads a fresh-entropy control message's payload (its first byte already read) from the
/// host's port, applies it, and says so on the status port.
pub fn take_from_host() -> Result<(), Failure> {
    let malformed = || Failure::new(status::BAD_PARAMETERS).text("the host's fresh entropy and time are malformed");
    let port = poweroff::host_port().ok_or_else(malformed)?;
    let mut payload = [0; control::FRESH_LEN];
    job::read_exact(port, &mut payload, FRESH_WAIT_MS)?;
    let (seed, time) = control::parse_fresh(&payload).ok_or_else(malformed)?;
    apply(Some(seed), Some(time))?;
    poweroff::write_status_line(status::FRESH_LINE);
    Ok(())
}

/// Mixes `seed` into the kernel's RNG and reseeds it, then sets the wall clock to `time`.
pub fn apply(seed: Option<[u8; 32]>, time: Option<(u64, u32)>) -> Result<(), Failure> {
    if let Some(seed) = seed {
        reseed(seed)?;
    }
    if let Some((secs, nanos)) = time {
        let now = Timespec { tv_sec: secs as i64, tv_nsec: i64::from(nanos) };
        rustix::time::clock_settime(ClockId::Realtime, now)
            .map_err(|errno| Failure::new(status::SETUP_FAILED).text("cannot set the guest's clock: ").errno(errno))?;
    }
    Ok(())
}

/// /dev/urandom once opened ([`urandom`]), for the life of the init.
static URANDOM: AtomicI32 = AtomicI32::new(-1);

/// Opens /dev/urandom ahead of [`apply`] (before a warm snapshot is taken); if it fails,
/// `apply` tries again and says why.
pub fn open_urandom() {
    let _ = urandom();
}

/// /dev/urandom's descriptor, opened the first time.
fn urandom() -> Result<i32, Errno> {
    match URANDOM.load(Ordering::Relaxed) {
        -1 => {
            let fd = rustix::fs::open(c"/dev/urandom", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?.into_raw_fd();
            URANDOM.store(fd, Ordering::Relaxed);
            Ok(fd)
        }
        fd => Ok(fd),
    }
}

fn reseed(seed: [u8; 32]) -> Result<(), Failure> {
    let failed = |what: &str, errno| {
        Failure::new(status::SETUP_FAILED)
            .text(what)
            .errno(errno)
            .text(": a kernel without RNDRESEEDCRNG (Linux 4.17) cannot get fresh entropy")
    };
    let fd = urandom().map_err(|errno| failed("cannot open /dev/urandom: ", errno))? as usize;
    let info = PoolInfo { entropy_bits: 256, size: 32, bytes: seed };
    // SAFETY: the kernel reads a rand_pool_info of `size` bytes from a valid pointer.
    unsafe { syscall!(Sysno::ioctl, fd, RNDADDENTROPY, &info as *const PoolInfo) }
        .map_err(|errno| failed("cannot add entropy: ", Errno::from_raw_os_error(errno.into_raw())))?;
    // SAFETY: an ioctl without an argument.
    unsafe { syscall!(Sysno::ioctl, fd, RNDRESEEDCRNG, 0) }
        .map_err(|errno| failed("cannot reseed the RNG: ", Errno::from_raw_os_error(errno.into_raw())))?;
    Ok(())
}
