//! A null kernel in bzImage form: a valid boot protocol 2.15 header (Linux's
//! Documentation/arch/x86/boot.rst) and, instead of a kernel, three entry points that each end
//! QEMU with their own status (see `exit_stub`):
//!
//! ```text
//! file offset  what
//! 0x0000       boot sector; the setup header starts at 0x1F1
//! 0x0200       `jmp short 0x26C` over the rest of the header     <- real-mode entry
//! 0x026C       real-mode exit code
//! 0x1000       protected-mode part: 32-bit exit code              <- 32-bit entry
//! 0x1200       64-bit exit code (part offset 0x200)               <- 64-bit entry
//! 0x1300       kernel_info (part offset 0x300)
//! 0x1400       end
//! ```

use super::exit_stub::Entry;

/// One boot sector plus `SETUP_SECTS` sectors of real-mode setup: 4 KiB in all, because
/// OVMF's Linux loader refuses a setup part smaller than `struct boot_params`.
const SETUP_SECTS: u8 = 7;
const SETUP_SIZE: usize = (SETUP_SECTS as usize + 1) * 512;
const PROTECTED_SIZE: usize = 0x400;
/// Where the protected-mode part expects to be loaded, as Linux's own x86_64 default.
const PREF_ADDRESS: u64 = 0x100_0000;
const KERNEL_ALIGNMENT: u32 = 0x20_0000;
/// Memory the "kernel" needs from its load address: its own 1 KiB, rounded to a page.
const INIT_SIZE: u32 = 0x1000;
/// The first byte past the setup header of protocol 2.15 (after `kernel_info_offset`).
const HEADER_END: usize = 0x26C;
const ENTRY64_OFFSET: usize = 0x200;
const KERNEL_INFO_OFFSET: usize = 0x300;

/// `loadflags`: the protected-mode part is loaded at 1 MiB (or above), as every bzImage.
const LOADED_HIGH: u8 = 0x01;
/// `xloadflags`: a 64-bit entry at part offset 0x200, and any placement below 2^64.
const XLF_KERNEL_64: u16 = 1 << 0;
const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;

pub fn image() -> Vec<u8> {
    let mut image = vec![0; SETUP_SIZE + PROTECTED_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| image[offset..offset + bytes.len()].copy_from_slice(bytes);

    // The setup header, field by field (offsets from boot.rst).
    put(0x1F1, &[SETUP_SECTS]);
    put(0x1F4, &((PROTECTED_SIZE / 16) as u32).to_le_bytes()); // syssize, in paragraphs
    put(0x1FA, &0xFFFFu16.to_le_bytes()); // vid_mode: "normal"
    put(0x1FE, &0xAA55u16.to_le_bytes()); // boot_flag
                                          // jump: `jmp short HEADER_END`; its displacement also tells loaders where the header ends.
    put(0x200, &[0xEB, (HEADER_END - 0x202) as u8]);
    put(0x202, b"HdrS");
    put(0x206, &0x020Fu16.to_le_bytes()); // version 2.15
    put(0x211, &[LOADED_HIGH]);
    put(0x214, &0x10_0000u32.to_le_bytes()); // code32_start, the protocol's default
    put(0x22C, &0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
    put(0x230, &KERNEL_ALIGNMENT.to_le_bytes());
    put(0x234, &[1]); // relocatable_kernel
    put(0x235, &[KERNEL_ALIGNMENT.trailing_zeros() as u8]); // min_alignment (log2)
    put(0x236, &(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes());
    put(0x238, &2047u32.to_le_bytes()); // cmdline_size
    put(0x258, &PREF_ADDRESS.to_le_bytes());
    put(0x260, &INIT_SIZE.to_le_bytes());
    put(0x268, &(KERNEL_INFO_OFFSET as u32).to_le_bytes());

    put(HEADER_END, &Entry::RealMode.code());
    put(SETUP_SIZE, &Entry::Protected32.code());
    put(SETUP_SIZE + ENTRY64_OFFSET, &Entry::Long64.code());
    // kernel_info, which protocol 2.15 requires: magic "LToP", its size (fixed part only, so
    // both sizes are 16) and setup_type_max, Linux 6.1's value (SETUP_INDIRECT | SETUP_RNG_SEED);
    // the null kernel reads no setup_data, so any type is harmless.
    let kernel_info = [*b"LToP", 16u32.to_le_bytes(), 16u32.to_le_bytes(), 0x8000_0009u32.to_le_bytes()].concat();
    put(SETUP_SIZE + KERNEL_INFO_OFFSET, &kernel_info);
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use loader::bzimage::BzImage;

    #[test]
    fn header_passes_flints_kernel_checks() {
        let image = image();
        let kernel = BzImage::parse(&image[..SETUP_SIZE]).unwrap();
        assert_eq!((kernel.protocol(), kernel.setup_sects()), (0x20F, 7));
        assert_eq!(
            (kernel.pref_address(), kernel.init_size(), kernel.kernel_alignment()),
            (0x100_0000, 0x1000, 0x20_0000)
        );
        assert_eq!((kernel.min_alignment(), kernel.header_end()), (21, HEADER_END));
        assert_eq!(kernel.xloadflags() & 1, 1, "XLF_KERNEL_64");
    }

    #[test]
    fn each_entry_holds_its_own_exit() {
        let image = image();
        let at = |offset: usize, entry: Entry| {
            let code = entry.code();
            assert_eq!(image[offset..offset + code.len()], code, "{}", entry.describe());
        };
        // The real-mode entry is a short jump to the real-mode code.
        assert_eq!(image[0x200], 0xEB);
        at(0x202 + usize::from(image[0x201]), Entry::RealMode);
        at(SETUP_SIZE, Entry::Protected32);
        at(SETUP_SIZE + 0x200, Entry::Long64);
        // syssize covers the whole protected-mode part.
        assert_eq!(u32::from_le_bytes(image[0x1F4..0x1F8].try_into().unwrap()) as usize * 16, image.len() - SETUP_SIZE);
    }
}
