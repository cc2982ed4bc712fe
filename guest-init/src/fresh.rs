//! What a VM restored from a snapshot must not share with the snapshot or with the other VMs
//! restored from it: the random number generator's state and the wall-clock time. The host
//! sends both with every job (`flint.seed`, `flint.time`); a cold boot takes them too.

use crate::report::Failure;
use crate::status;
use rustix::fd::AsRawFd;
use rustix::fs::{Mode, OFlags};
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

fn reseed(seed: [u8; 32]) -> Result<(), Failure> {
    let failed = |what: &str, errno| {
        Failure::new(status::SETUP_FAILED)
            .text(what)
            .errno(errno)
            .text(": a kernel without RNDRESEEDCRNG (Linux 4.17) cannot get fresh entropy")
    };
    let random = rustix::fs::open(c"/dev/urandom", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|errno| failed("cannot open /dev/urandom: ", errno))?;
    let info = PoolInfo { entropy_bits: 256, size: 32, bytes: seed };
    let fd = random.as_raw_fd() as usize;
    // SAFETY: the kernel reads a rand_pool_info of `size` bytes from a valid pointer.
    unsafe { syscall!(Sysno::ioctl, fd, RNDADDENTROPY, &info as *const PoolInfo) }
        .map_err(|errno| failed("cannot add entropy: ", rustix::io::Errno::from_raw_os_error(errno.into_raw())))?;
    // SAFETY: an ioctl without an argument.
    unsafe { syscall!(Sysno::ioctl, fd, RNDRESEEDCRNG, 0) }
        .map_err(|errno| failed("cannot reseed the RNG: ", rustix::io::Errno::from_raw_os_error(errno.into_raw())))?;
    Ok(())
}
