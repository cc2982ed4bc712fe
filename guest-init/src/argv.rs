//! The encoding of byte-string lists on the kernel command line (`flint.argv=`, `flint.env=`).
//!
//! Each item is written as unpadded base64url (RFC 4648 §5: `A-Z a-z 0-9 - _`) followed by a
//! `,`. So `["sh", "-c", "exit 3"]` is `c2g,LWM,ZXhpdCAz,` and the empty list is the empty
//! string. Why this encoding:
//!  - the alphabet has no space, quote, `=` or non-ASCII byte, so the kernel's own command
//!    line parsing and any bootloader leave it alone, and any byte string round-trips,
//!    including empty strings, spaces, quotes and invalid UTF-8;
//!  - base64 costs 4/3 of the raw size; the x86 command line is only 2048 bytes;
//!  - a terminator rather than a separator keeps `[]` and `[""]` apart (`` and `,`).
//!
//! Decoding is strict (no padding, no stray bits, no missing final comma) so every list has
//! exactly one spelling. `encode` is what the host CLI uses to build the command line.

use base64::display::Base64Display;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::Engine as _;
use base64::DecodeSliceError;
use core::fmt;

/// Displays `items` in the command-line encoding: `encode(&["a", ""]).to_string()` is `YQ,,`.
pub fn encode<T: AsRef<[u8]>>(items: &[T]) -> Encoded<'_, T> {
    Encoded(items)
}

/// A list being encoded; format it (`to_string`, `write!`) to get the text.
pub struct Encoded<'a, T>(&'a [T]);

impl<T: AsRef<[u8]>> fmt::Display for Encoded<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in self.0 {
            write!(f, "{},", Base64Display::new(item.as_ref(), &URL_SAFE_NO_PAD))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The text does not end with the `,` that closes every item.
    Unterminated,
    /// Item `index` (from 0) is not canonical unpadded base64url.
    Invalid { index: usize },
    /// The decoded items do not fit the space the caller gave.
    TooLong,
}

impl DecodeError {
    /// Says what is wrong in words, for the `flint-init:` line.
    pub fn describe(self) -> &'static str {
        match self {
            DecodeError::Unterminated => "every item must end with ','",
            DecodeError::Invalid { .. } => "an item is not unpadded base64url",
            DecodeError::TooLong => "the decoded list is too long",
        }
    }
}

/// Decodes a list item by item into caller-provided space (the init has no heap).
pub struct Decoder<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(encoded: &'a [u8]) -> Result<Self, DecodeError> {
        if !encoded.is_empty() && encoded.last() != Some(&b',') {
            return Err(DecodeError::Unterminated);
        }
        Ok(Decoder { rest: encoded, index: 0 })
    }

    /// Decodes the next item into the start of `out` and returns its length, or `None` at the
    /// end of the list.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<usize, DecodeError>> {
        // `new` checked the text ends with ',', so every item has one.
        let end = self.rest.iter().position(|&byte| byte == b',')?;
        let item = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        let index = self.index;
        self.index += 1;
        Some(URL_SAFE_NO_PAD.decode_slice(item, out).map_err(|error| match error {
            DecodeSliceError::OutputSliceTooSmall => DecodeError::TooLong,
            DecodeSliceError::DecodeError(_) => DecodeError::Invalid { index },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(encoded: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut decoder = Decoder::new(encoded)?;
        let mut items = Vec::new();
        let mut out = vec![0; encoded.len()];
        while let Some(len) = decoder.next_into(&mut out) {
            items.push(out[..len?].to_vec());
        }
        Ok(items)
    }

    #[test]
    fn known_spellings() {
        assert_eq!(encode(&["sh", "-c", "exit 3"]).to_string(), "c2g,LWM,ZXhpdCAz,");
        assert_eq!(encode::<&str>(&[]).to_string(), "");
        assert_eq!(encode(&[""]).to_string(), ",");
        assert_eq!(encode(&["a", ""]).to_string(), "YQ,,");
        assert_eq!(encode(&[[0xfbu8, 0xff]]).to_string(), "-_8,");
        assert_eq!(decode(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(decode(b",").unwrap(), vec![b"".to_vec()]);
        assert_eq!(decode(b",,").unwrap(), vec![b"".to_vec(), b"".to_vec()]);
    }

    #[test]
    fn awkward_arguments_round_trip() {
        let items: [&[u8]; 7] = [b"", b" ", b"a b", b"'\"\\", "héllo ✓".as_bytes(), b"\0\xff\n", b"--"];
        let text = encode(&items).to_string();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_,".contains(&b)));
        assert_eq!(decode(text.as_bytes()).unwrap(), items.map(<[u8]>::to_vec));
    }

    #[test]
    fn invalid_encodings_are_errors() {
        assert_eq!(decode(b"YQ"), Err(DecodeError::Unterminated));
        assert_eq!(decode(b"YQ,Yg"), Err(DecodeError::Unterminated));
        assert_eq!(decode(b"YQ==,"), Err(DecodeError::Invalid { index: 0 }));
        assert_eq!(decode(b"YQ,a+b/,"), Err(DecodeError::Invalid { index: 1 }));
        assert_eq!(decode(b"Y,"), Err(DecodeError::Invalid { index: 0 }));
        assert_eq!(decode(b"YR,"), Err(DecodeError::Invalid { index: 0 }), "non-zero trailing bits");
        assert_eq!(decode(b"Y Q,"), Err(DecodeError::Invalid { index: 0 }));
        assert_eq!(decode("é,".as_bytes()), Err(DecodeError::Invalid { index: 0 }));
    }

    #[test]
    fn output_space_is_respected() {
        let mut decoder = Decoder::new(b"aGVsbG8,").unwrap();
        let mut small = [0u8; 4];
        assert_eq!(decoder.next_into(&mut small), Some(Err(DecodeError::TooLong)));
    }

    proptest! {
        #[test]
        fn any_list_round_trips(items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..12)) {
            let text = encode(&items).to_string();
            prop_assert_eq!(decode(text.as_bytes()).unwrap(), items);
        }

        #[test]
        fn decoding_garbage_never_panics(text in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&text);
        }

        #[test]
        fn decoding_base64ish_garbage_never_panics(text in "[A-Za-z0-9_=+/,-]{0,40}") {
            if let Ok(items) = decode(text.as_bytes()) {
                prop_assert_eq!(encode(&items).to_string(), text);
            }
        }

        /// Into space of any size, an item decodes whole and within it, or is `TooLong`;
        /// the bytes past the item are left alone.
        #[test]
        fn decoding_stays_within_the_space_given(
            items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6),
            room in 0..64usize,
        ) {
            let text = encode(&items).to_string();
            let mut decoder = Decoder::new(text.as_bytes()).unwrap();
            for item in &items {
                let mut out = vec![0xa5u8; room + 8];
                match decoder.next_into(&mut out[..room]) {
                    Some(Ok(len)) => {
                        prop_assert!(len <= room);
                        prop_assert_eq!(&out[..len], item.as_slice());
                    }
                    Some(Err(error)) => {
                        prop_assert_eq!(error, DecodeError::TooLong);
                        prop_assert!(item.len() > room, "{} bytes did not fit {}", item.len(), room);
                    }
                    None => prop_assert!(false, "an item went missing"),
                }
                prop_assert!(out[room..].iter().all(|&byte| byte == 0xa5));
            }
            prop_assert!(decoder.next_into(&mut [0; 64]).is_none());
        }
    }
}
