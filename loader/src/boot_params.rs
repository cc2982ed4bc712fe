//! Builds the zero page (`struct boot_params`) the kernel's 64-bit entry receives in %rsi,
//! per Linux Documentation/arch/x86/boot.rst and arch/x86/include/uapi/asm/bootparam.h.

use crate::bzimage::BzImage;
use crate::e820::{MemoryMap, ENTRY_SIZE};
use crate::layout::*;
use crate::le;
use crate::plan::LoadPlan;

pub const ZERO_PAGE_SIZE: usize = 4096;
/// boot.rst: 0xFF is the type_of_loader of a boot loader without an assigned ID.
const LOADER_UNDEFINED: u8 = 0xFF;

pub struct BootParamsInput<'a> {
    /// Supplies the setup header, which must be copied verbatim.
    pub kernel: &'a BzImage,
    pub plan: &'a LoadPlan,
    pub cmdline_addr: u64,
    pub initrd_size: u64,
    pub map: &'a MemoryMap,
    /// 0 lets the kernel search for the RSDP itself.
    pub acpi_rsdp_addr: u64,
    /// Head of the relocated setup_data chain, 0 for none.
    pub setup_data: u64,
}

/// Inlined into the hand-offs, of which a boot runs one: the input is read where the caller
/// has it rather than through a struct on the stack.
#[inline(always)]
pub fn build(out: &mut [u8; ZERO_PAGE_SIZE], input: &BootParamsInput) {
    out.fill(0);
    // Every offset is a constant well inside the page and the map holds at most
    // MAX_ENTRIES (48) entries, so no write can miss.
    let _ = fill(out, input);
}

#[inline(always)]
fn fill(out: &mut [u8], input: &BootParamsInput) -> Option<()> {
    le::put(out, SETUP_SECTS, input.kernel.header())?;
    le::put(out, TYPE_OF_LOADER, &[LOADER_UNDEFINED])?;
    // The 64-bit entry ignores code32_start (32 bits wide); boot.rst has loaders set it anyway.
    le::put(out, CODE32_START, &(input.plan.kernel_addr as u32).to_le_bytes())?;
    put_split(out, CMD_LINE_PTR, EXT_CMD_LINE_PTR, input.cmdline_addr)?;
    put_split(out, RAMDISK_IMAGE, EXT_RAMDISK_IMAGE, input.plan.initrd_addr)?;
    put_split(out, RAMDISK_SIZE, EXT_RAMDISK_SIZE, input.initrd_size)?;
    le::put(out, SETUP_DATA, &input.setup_data.to_le_bytes())?;
    le::put(out, ACPI_RSDP_ADDR, &input.acpi_rsdp_addr.to_le_bytes())?;
    le::put(out, E820_ENTRIES, &[u8::try_from(input.map.entries().len()).ok()?])?;
    input.map.write_slots::<ENTRY_SIZE>(out.get_mut(E820_TABLE..)?);
    Some(())
}

/// 64-bit values go in a legacy 32-bit header field plus its ext_* upper half.
fn put_split(out: &mut [u8], low: usize, high: usize, value: u64) -> Option<()> {
    le::put(out, low, &(value as u32).to_le_bytes())?;
    le::put(out, high, &((value >> 32) as u32).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::RESERVED;
    use crate::testutil::{ram_map, setup_blob};

    fn u32_at(b: &[u8], off: usize) -> u32 {
        le::u32_at(b, off).unwrap()
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        le::u64_at(b, off).unwrap()
    }

    #[test]
    fn fills_every_field_at_its_offset() {
        let mut setup = setup_blob();
        setup[0x1F0] = 0x55; // outside the header: must not be copied
        setup[SETUP_DATA] = 0x77; // QEMU's address: must be replaced
        let kernel = BzImage::parse(&setup).unwrap();
        let plan =
            LoadPlan { kernel_addr: 0x100_0000, entry64: 0x100_0200, kernel_extent: 1, initrd_addr: 0x1_2345_6000 };
        let mut map = ram_map(&[(0, 0x9_FC00), (0x10_0000, 0x7F0_0000)]);
        map.mark(0x9_FC00, 0x400, RESERVED).unwrap();
        let input = BootParamsInput {
            kernel: &kernel,
            plan: &plan,
            cmdline_addr: 0x2_0000,
            initrd_size: 0x1_0000_0010,
            map: &map,
            acpi_rsdp_addr: 0xF_5A40,
            setup_data: 0x8_0008,
        };
        let mut out = [0xEE; ZERO_PAGE_SIZE];
        build(&mut out, &input);
        assert_eq!(out[0x210], 0xFF);
        assert_eq!((u32_at(&out, 0x214), u32_at(&out, 0x228), u32_at(&out, 0x0C8)), (0x100_0000, 0x2_0000, 0));
        assert_eq!((u32_at(&out, 0x218), u32_at(&out, 0x0C0)), (0x2345_6000, 1));
        assert_eq!((u32_at(&out, 0x21C), u32_at(&out, 0x0C4)), (0x10, 1));
        assert_eq!((u64_at(&out, 0x250), u64_at(&out, 0x070)), (0x8_0008, 0xF_5A40));
        assert_eq!(out[0x1E8], 3);
        assert_eq!(
            (u64_at(&out, 0x2D0 + 20), u64_at(&out, 0x2D8 + 20), u32_at(&out, 0x2E0 + 20)),
            (0x9_FC00, 0x400, 2)
        );
        assert_eq!((u64_at(&out, 0x2D0 + 40), out[0x2D0 + 60]), (0x10_0000, 0));
        assert_eq!(out[0x1F1..0x210], setup[0x1F1..0x210]);
        assert_eq!(out[0x258..0x26C], setup[0x258..0x26C]);
        assert!(out[..0x70].iter().chain(&out[0x78..0xC0]).chain(&out[0xCC..0x1E8]).all(|&b| b == 0));
        assert!(out[0x1E9..0x1F1].iter().chain(&out[0x26C..0x2D0]).chain(&out[0x2D0 + 60..]).all(|&b| b == 0));
    }
}
