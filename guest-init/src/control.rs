//! What the host sends the init on the status port (the one port that carries data both
//! ways): one byte per message, so a message never arrives in pieces.
//!
//! - `N` (1 to 64): send signal N to the workload (flint got it: Ctrl-C, `kill`, a hangup);
//! - `0x80 | N`: stop now: SIGKILL the workload and end the VM as usual (leftovers killed,
//!   root synced and made read-only) with status 128+N, as a shell reports death by signal
//!   N (flint asks after a second Ctrl-C, or when the grace period after a signal ran out).
//!
//! Other bytes are ignored, so later messages can be added without breaking older inits.

/// The byte that marks "stop now" (its low bits carry the signal that asked).
const STOP: u8 = 0x80;
/// The highest signal number (the last real-time signal).
const SIGNAL_MAX: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Send this signal to the workload.
    Forward(u8),
    /// SIGKILL the workload; the VM ends with status 128 + this signal.
    Stop(u8),
}

impl Message {
    pub fn encode(self) -> Option<u8> {
        match self {
            Message::Forward(signal @ 1..=SIGNAL_MAX) => Some(signal),
            Message::Stop(signal @ 1..=SIGNAL_MAX) => Some(STOP | signal),
            _ => None,
        }
    }

    pub fn decode(byte: u8) -> Option<Message> {
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
    fn other_bytes_mean_nothing() {
        for byte in [0, 65, 0x7f, 0x80, 0xc1, 0xff] {
            assert_eq!(Message::decode(byte), None, "{byte}");
        }
        assert_eq!(Message::Forward(0).encode(), None);
        assert_eq!(Message::Stop(65).encode(), None);
    }
}
