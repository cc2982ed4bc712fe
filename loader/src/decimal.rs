//! Unsigned decimal and hexadecimal formatting without `core::fmt`, for the firmware and the
//! guest init: `core::fmt` would cost more code than either's own (and under TCG every line of
//! code run once is translated once).

/// The digits of `value`, written at the end of `buf`.
/// The digits are written by iterating (not indexing) so that no bounds check can panic: a
/// panic would link `core::fmt` back into the firmware.
pub fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = 0;
    for (at, digit) in buf.iter_mut().enumerate().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
        start = at;
        if value == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// The lowercase hexadecimal digits of `value`, no prefix, written at the end of `buf`
/// (as `{:x}` formats it).
pub fn hex(mut value: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut start = 0;
    for (at, digit) in buf.iter_mut().enumerate().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
        start = at;
        if value == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    const VALUES: [u64; 8] = [0, 7, 10, 15, 16, 0xdead_beef, 4_294_967_296, u64::MAX];

    #[test]
    fn formats_like_display() {
        for value in VALUES {
            assert_eq!(super::decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }

    #[test]
    fn formats_like_lower_hex() {
        for value in VALUES {
            assert_eq!(super::hex(value, &mut [0; 16]), format!("{value:x}").as_bytes());
        }
    }
}
