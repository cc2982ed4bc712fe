//! The QEMU floor: a 64 KiB `-bios` ROM whose reset vector exits QEMU at once. Its wall time
//! is QEMU's own start-up and tear-down, which every firmware pays as well, so subtracting it
//! leaves what the firmware itself costs.

use super::exit_stub::Entry;

/// The smallest `-bios` image QEMU accepts on `pc`.
const SIZE: usize = 64 * 1024;
/// QEMU maps the ROM to end at 4 GiB and the CPU starts at 0xFFFFFFF0, 16 bytes below.
const RESET_VECTOR: usize = SIZE - 16;

pub fn image() -> Vec<u8> {
    let mut rom = vec![0xFF; SIZE];
    let code = Entry::ResetVector.code();
    rom[RESET_VECTOR..RESET_VECTOR + code.len()].copy_from_slice(&code);
    rom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_from_the_reset_vector() {
        let rom = image();
        assert_eq!(rom.len(), 65536);
        let code = Entry::ResetVector.code();
        assert!(code.len() <= 16, "the reset vector has 16 bytes");
        // mov dx, 0x501; mov al, 0; out dx, al
        assert_eq!(rom[0xFFF0..0xFFF7], [0xBA, 0x01, 0x05, 0xB0, 0x00, 0xEE, 0xF4]);
    }
}
