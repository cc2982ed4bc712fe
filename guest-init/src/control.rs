//! What the host sends the init on the status port (the one port that carries data both
//! ways): one byte per message, so a message never arrives in pieces.
//!
//! - `N` (1 to 64): send signal N to the workload (flint got it: Ctrl-C, `kill`, a hangup);
//! - `0x80 | N`: stop now: SIGKILL the workload and end the VM as usual (leftovers killed,
//!   root synced and made read-only) with status 128+N, as a shell reports death by signal
//!   N (flint asks after a second Ctrl-C, or when the grace period after a signal ran out).
//!
//! - `0x7e` and then [`FRESH_LEN`] bytes: fresh entropy and the host's clock for a VM just
//!   restored from a snapshot taken while its workload ran (`flint run --warm=ready`): 32
//!   bytes of seed, the seconds (8 bytes) and nanoseconds (4 bytes) since the epoch, little
//!   endian. The init answers with the `flint-fresh` line once they are applied.
//!
//! Other bytes are ignored, so later messages can be added without breaking older inits.

/// The byte that marks "stop now" (its low bits carry the signal that asked).
const STOP: u8 = 0x80;
/// The byte that announces fresh entropy and time.
const FRESH: u8 = 0x7e;
/// The length of what follows [`Message::Fresh`]'s byte.
pub const FRESH_LEN: usize = 44;
/// The highest signal number (the last real-time signal).
const SIGNAL_MAX: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Send this signal to the workload.
    Forward(u8),
    /// SIGKILL the workload; the VM ends with status 128 + this signal.
    Stop(u8),
    /// [`FRESH_LEN`] bytes follow: see [`fresh`] and [`parse_fresh`].
    Fresh,
}

/// The whole fresh-entropy-and-time message: its byte, the seed and the time.
pub fn fresh(seed: [u8; 32], (secs, nanos): (u64, u32)) -> [u8; 1 + FRESH_LEN] {
    let mut message = [0; 1 + FRESH_LEN];
    message[0] = FRESH;
    message[1..33].copy_from_slice(&seed);
    message[33..41].copy_from_slice(&secs.to_le_bytes());
    message[41..].copy_from_slice(&nanos.to_le_bytes());
    message
}

/// The seed and time in what follows [`Message::Fresh`]'s byte; `None` for nanoseconds
/// past a second or seconds past what the clock takes.
pub fn parse_fresh(payload: &[u8; FRESH_LEN]) -> Option<([u8; 32], (u64, u32))> {
    let seed: [u8; 32] = payload[..32].try_into().ok()?;
    let secs = u64::from_le_bytes(payload[32..40].try_into().ok()?);
    let nanos = u32::from_le_bytes(payload[40..].try_into().ok()?);
    (nanos < 1_000_000_000 && secs <= i64::MAX as u64).then_some((seed, (secs, nanos)))
}

impl Message {
    pub fn encode(self) -> Option<u8> {
        match self {
            Message::Forward(signal @ 1..=SIGNAL_MAX) => Some(signal),
            Message::Stop(signal @ 1..=SIGNAL_MAX) => Some(STOP | signal),
            Message::Fresh => Some(FRESH),
            _ => None,
        }
    }

    pub fn decode(byte: u8) -> Option<Message> {
        if byte == FRESH {
            return Some(Message::Fresh);
        }
        match (byte & STOP, byte & !STOP) {
            (0, signal @ 1..=SIGNAL_MAX) => Some(Message::Forward(signal)),
            (STOP, signal @ 1..=SIGNAL_MAX) => Some(Message::Stop(signal)),
            _ => None,
        }
    }

    /// The VM's status after this stop: 128 + the signal, as a shell reports death by it.
    pub fn stop_status(signal: u8) -> u8 {
        128u8.wrapping_add(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_through_one_byte() {
        for signal in 1..=SIGNAL_MAX {
            for message in [Message::Forward(signal), Message::Stop(signal)] {
                assert_eq!(Message::decode(message.encode().unwrap()), Some(message));
            }
        }
        assert_eq!(Message::Forward(15).encode(), Some(15));
        assert_eq!(Message::Stop(2).encode(), Some(0x82));
        assert_eq!(Message::stop_status(2), 130);
    }

    #[test]
    fn fresh_entropy_and_time_round_trip() {
        let message = fresh([7; 32], (1_700_000_000, 999_999_999));
        assert_eq!(Message::decode(message[0]), Some(Message::Fresh));
        let payload: &[u8; FRESH_LEN] = message[1..].try_into().unwrap();
        assert_eq!(parse_fresh(payload), Some(([7; 32], (1_700_000_000, 999_999_999))));
        let mut bad = *payload;
        bad[40..].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        assert_eq!(parse_fresh(&bad), None);
    }

    #[test]
    fn other_bytes_mean_nothing() {
        for byte in [0, 65, 0x7f, 0x80, 0xc1, 0xff] {
            assert_eq!(Message::decode(byte), None, "{byte}");
        }
        assert_eq!(Message::Forward(0).encode(), None);
        assert_eq!(Message::Stop(65).encode(), None);
    }
}
