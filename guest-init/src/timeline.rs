//! The boot timeline: TSC stamps from the firmware (first instruction, kernel loaded, kernel
//! entered), which it hands over as a `setup_data` node Linux shows in sysfs, and the init's
//! own (start, root mounted, workload started, workload ended). The init writes them with the
//! TSC rate it measured as one line on the status device, before the status line:
//!
//! `flint-timeline tsc_hz=<n> fw_reset=<tsc> fw_loaded=<tsc> fw_handoff=<tsc> init=<tsc>
//! root=<tsc> exec=<tsc> exit=<tsc> poweroff=<tsc>` (one line; a stamp that was not taken
//! is 0; `poweroff` is when the line itself was written, after syncing and unmounting).
//!
//! Under QEMU the guest TSC counts from the VM's start, so every stamp is also the time since
//! then.

use core::sync::atomic::{AtomicU64, Ordering};

pub const LINE_PREFIX: &str = "flint-timeline ";
/// flint's `setup_data` type ("FLNT"), as sysfs prints it.
const SETUP_TYPE: &[u8] = b"0x464c4e54\n";
const SETUP_DATA_DIR: &str = "/sys/kernel/boot_params/setup_data/";

/// The stamps, in boot order; the names are the line's keys.
#[derive(Clone, Copy)]
pub enum Stamp {
    FwReset,
    FwLoaded,
    FwHandoff,
    Init,
    Root,
    Exec,
    Exit,
    Poweroff,
}

pub const NAMES: [&str; STAMPS_LEN] =
    ["fw_reset", "fw_loaded", "fw_handoff", "init", "root", "exec", "exit", "poweroff"];
pub const STAMPS_LEN: usize = 8;

static STAMPS: [AtomicU64; STAMPS_LEN] = [const { AtomicU64::new(0) }; STAMPS_LEN];
static INIT_MONOTONIC_NS: AtomicU64 = AtomicU64::new(0);

fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter, which Linux lets user space read.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn mark(stamp: Stamp) {
    STAMPS[stamp as usize].store(tsc(), Ordering::Relaxed);
    if let Stamp::Init = stamp {
        INIT_MONOTONIC_NS.store(crate::clock::now_ns(), Ordering::Relaxed);
    }
}

/// Reads the firmware's node from sysfs; absent under other firmwares, which is fine.
pub fn read_firmware_stamps() {
    let mut path = [0u8; 64];
    for index in 0..16u8 {
        let mut digits = [0; 20];
        let dir = [SETUP_DATA_DIR.as_bytes(), loader::decimal::decimal(u64::from(index), &mut digits)];
        let mut kind = [0u8; 16];
        let Some(read) = read_file(&dir, b"/type", &mut path, &mut kind) else { return };
        if &kind[..read] != SETUP_TYPE {
            continue;
        }
        let mut data = [0u8; 24];
        if read_file(&dir, b"/data", &mut path, &mut data) == Some(data.len()) {
            for (i, chunk) in data.chunks_exact(8).enumerate() {
                STAMPS[i].store(u64::from_le_bytes(chunk.try_into().unwrap_or_default()), Ordering::Relaxed);
            }
        }
        return;
    }
}

/// Takes the firmware's stamps from `flint.fwtsc=<reset>,<loaded>,<handoff>` (hexadecimal TSC
/// values, which the firmware writes with 16 digits each), which flint's firmware appends to a
/// PVH kernel's command line; a malformed value leaves the stamps unset, since the timeline is
/// only a diagnostic.
pub fn set_firmware_stamps(value: &[u8]) {
    if let Some(stamps) = parse_firmware_stamps(value) {
        for (slot, stamp) in STAMPS.iter().zip(stamps) {
            slot.store(stamp, Ordering::Relaxed);
        }
    }
}

fn parse_firmware_stamps(value: &[u8]) -> Option<[u64; 3]> {
    let mut stamps = [0u64; 3];
    let mut fields = value.split(|&b| b == b',');
    for slot in &mut stamps {
        *slot = u64::from_str_radix(core::str::from_utf8(fields.next()?).ok()?, 16).ok()?;
    }
    fields.next().is_none().then_some(stamps)
}

/// Reads `dir` + `name` into `buf`; the number of bytes read, `None` when it cannot be opened.
fn read_file(dir: &[&[u8]; 2], name: &[u8], path: &mut [u8; 64], buf: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    for part in [dir[0], dir[1], name] {
        path.get_mut(len..len + part.len())?.copy_from_slice(part);
        len += part.len();
    }
    *path.get_mut(len)? = 0;
    let path = core::ffi::CStr::from_bytes_until_nul(&path[..=len]).ok()?;
    let fd = rustix::fs::open(path, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).ok()?;
    rustix::io::read(&fd, buf).ok()
}

/// The timeline line, with the TSC rate measured from the init's start until now.
pub fn line(buf: &mut [u8; 320]) -> &[u8] {
    mark(Stamp::Poweroff);
    let elapsed_ns = crate::clock::now_ns().saturating_sub(INIT_MONOTONIC_NS.load(Ordering::Relaxed));
    let ticks = tsc().saturating_sub(STAMPS[Stamp::Init as usize].load(Ordering::Relaxed));
    let tsc_hz = if elapsed_ns == 0 { 0 } else { (u128::from(ticks) * 1_000_000_000 / u128::from(elapsed_ns)) as u64 };
    format_line(tsc_hz, STAMPS.each_ref().map(|stamp| stamp.load(Ordering::Relaxed)), buf)
}

/// The timeline line for these values: 320 bytes hold it even with every value at its
/// largest (some 270 bytes).
pub fn format_line(tsc_hz: u64, stamps: [u64; STAMPS_LEN], buf: &mut [u8; 320]) -> &[u8] {
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = [0; 20];
    push(LINE_PREFIX.as_bytes());
    push(b"tsc_hz=");
    push(loader::decimal::decimal(tsc_hz, &mut digits));
    for (name, stamp) in NAMES.iter().zip(stamps) {
        push(b" ");
        push(name.as_bytes());
        push(b"=");
        push(loader::decimal::decimal(stamp, &mut digits));
    }
    push(b"\n");
    &buf[..len]
}

/// The host's side: the TSC rate and the stamps, in [`NAMES`] order, from a timeline line.
pub fn parse_line(line: &[u8]) -> Option<(u64, [u64; STAMPS_LEN])> {
    let text = core::str::from_utf8(line).ok()?.trim_end();
    let mut fields = text.strip_prefix(LINE_PREFIX)?.split(' ');
    let tsc_hz = fields.next()?.strip_prefix("tsc_hz=")?.parse().ok()?;
    let mut stamps = [0; STAMPS_LEN];
    for (slot, name) in stamps.iter_mut().zip(NAMES) {
        let (key, value) = fields.next()?.split_once('=')?;
        if key != name {
            return None;
        }
        *slot = value.parse().ok()?;
    }
    fields.next().is_none().then_some((tsc_hz, stamps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn firmware_stamps_are_hex() {
        let value = b"0000000000000001,0000000000000016,ffffffffffffffff";
        assert_eq!(parse_firmware_stamps(value), Some([1, 0x16, u64::MAX]));
        assert_eq!(parse_firmware_stamps(b"1,2"), None);
        assert_eq!(parse_firmware_stamps(b"1,2,3,4"), None);
        assert_eq!(parse_firmware_stamps(b"1,2,x"), None);
    }

    #[test]
    fn lines_round_trip() {
        let line = b"flint-timeline tsc_hz=2000000000 fw_reset=1 fw_loaded=2 fw_handoff=3 init=4 root=5 exec=6 exit=7 poweroff=8\n";
        assert_eq!(parse_line(line), Some((2_000_000_000, [1, 2, 3, 4, 5, 6, 7, 8])));
        assert_eq!(parse_line(b"flint-timeline tsc_hz=1 fw_reset=1"), None);
        assert_eq!(parse_line(b"flint-status 0\n"), None);
    }

    #[test]
    fn the_longest_line_fits() {
        let line = format_line(u64::MAX, [u64::MAX; STAMPS_LEN], &mut [0; 320]).to_vec();
        assert!(line.len() < 320, "{}", line.len());
        assert_eq!(parse_line(&line), Some((u64::MAX, [u64::MAX; STAMPS_LEN])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// What the init writes is what the host reads, whatever the values.
        #[test]
        fn any_values_round_trip(tsc_hz in any::<u64>(), stamps in any::<[u64; STAMPS_LEN]>()) {
            let mut buf = [0; 320];
            let line = format_line(tsc_hz, stamps, &mut buf);
            prop_assert_eq!(parse_line(line), Some((tsc_hz, stamps)));
            prop_assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
        }

        /// Mutated lines (a byte changed, dropped or inserted, or the line cut short) and
        /// plain garbage parse cleanly: to values that format back to a line that parses the
        /// same, or to nothing.
        #[test]
        fn mutated_lines_parse_or_are_rejected(
            tsc_hz in any::<u64>(),
            stamps in any::<[u64; STAMPS_LEN]>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0..4u8,
            garbage in prop::collection::vec(any::<u8>(), 0..320),
        ) {
            let mut line = format_line(tsc_hz, stamps, &mut [0; 320]).to_vec();
            let index = at.index(line.len());
            match how {
                0 => line[index] = byte,
                1 => { line.remove(index); }
                2 => line.insert(index, byte),
                _ => line.truncate(index),
            }
            for candidate in [line, garbage] {
                if let Some((tsc_hz, stamps)) = parse_line(&candidate) {
                    let again = format_line(tsc_hz, stamps, &mut [0; 320]).to_vec();
                    prop_assert_eq!(parse_line(&again), Some((tsc_hz, stamps)));
                }
            }
        }

        /// `flint.fwtsc=` from the command line never panics, whatever it holds.
        #[test]
        fn firmware_stamps_from_any_value(value in prop::collection::vec(prop::sample::select(b"0123456789abcdef,x".to_vec()), 0..80)) {
            let _ = parse_firmware_stamps(&value);
        }
    }
}
