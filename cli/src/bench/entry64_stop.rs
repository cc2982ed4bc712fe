//! A real bzImage that ends QEMU at its 64-bit entry: `startup_64`, offset 0x200 of the
//! protected-mode part, overwritten with the exit stub (`exit_stub::Entry::Long64`). The null
//! kernels end at whichever entry a firmware takes; this one ends where every road into Linux
//! meets. flint jumps there itself; qboot and SeaBIOS enter the kernel's 16-bit setup code,
//! which runs (its BIOS calls answered by the firmware) and goes on through the 32-bit
//! `startup_32`, which jumps to `startup_64` where the kernel was loaded. The decompressor's
//! head is not compressed, so the bytes at that offset are its first instructions.

use super::exit_stub::Entry;
use loader::bzimage::BzImage;

/// `kernel` (a bzImage's bytes) with its 64-bit entry replaced by the exit stub.
pub fn stopped_at_entry64(kernel: &[u8]) -> Result<Vec<u8>, String> {
    let header = BzImage::parse(kernel).map_err(|e| e.to_string())?;
    let protected_mode = (usize::from(header.setup_sects()) + 1) * 512;
    let entry = protected_mode + header.entry64_offset() as usize;
    let stub = Entry::Long64.code();
    let mut stopped = kernel.to_vec();
    let Some(code) = stopped.get_mut(entry..entry + stub.len()) else {
        return Err(format!("the kernel ends before its 64-bit entry at file offset {entry:#x}"));
    };
    code.copy_from_slice(&stub);
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::super::null_bzimage;
    use super::*;

    #[test]
    fn the_stub_replaces_the_code_at_the_64_bit_entry_only() {
        // The null bzImage: 7 setup sectors after the boot sector, its 64-bit entry at 0x1200.
        let kernel = null_bzimage::image();
        let stopped = stopped_at_entry64(&kernel).unwrap();
        let stub = Entry::Long64.code();
        assert_eq!(stopped.len(), kernel.len());
        assert_eq!(&stopped[0x1200..0x1200 + stub.len()], stub.as_slice());
        assert_eq!(stopped[..0x1200], kernel[..0x1200]);
        assert_eq!(stopped[0x1200 + stub.len()..], kernel[0x1200 + stub.len()..]);
    }

    #[test]
    fn refuses_what_is_not_a_whole_64_bit_bzimage() {
        let not_linux = stopped_at_entry64(&[0; 4096]).unwrap_err();
        assert!(not_linux.contains("not a Linux kernel"), "{not_linux}");
        let short = stopped_at_entry64(&null_bzimage::image()[..0x1204]).unwrap_err();
        assert!(short.contains("ends before its 64-bit entry at file offset 0x1200"), "{short}");
    }
}
