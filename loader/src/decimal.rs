//! Unsigned decimal formatting without `core::fmt`, for the firmware and the guest init:
//! `core::fmt` would cost more code than either's own (and under TCG every line of code run
//! once is translated once).

/// The digits of `value`, written at the end of `buf`.
pub fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_display() {
        for value in [0, 7, 10, 4_294_967_296, u64::MAX] {
            assert_eq!(super::decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }
}
