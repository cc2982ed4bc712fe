//! What the kernel gets besides itself, wherever it comes from (fw_cfg or a disk): the
//! command line and the initrd, which may carry flint's embedded init. Shared by the bzImage
//! and PVH hand-offs.

use crate::error::BootError;
use crate::layout;
use crate::memory::Memory;
use loader::plan::PlanError;

/// flint's guest init as a newc archive (empty when the image was built without one), in a
/// section of its own so the firmware's code size can be measured without it.
#[link_section = ".initramfs"]
static EMBEDDED_INIT: [u8; INIT_CPIO.len()] = *INIT_CPIO;
const INIT_CPIO: &[u8; include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio")).len()] =
    include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio"));

/// Where the kernel and the user's initrd are read from: QEMU's fw_cfg blobs or a disk image.
pub trait Source {
    /// The bzImage's protected-mode part (not used for PVH, whose segments are loaded apart).
    fn read_kernel(&mut self, dest: &mut [u8]) -> Result<(), BootError>;
    fn read_initrd(&mut self, dest: &mut [u8]) -> Result<(), BootError>;
}

/// The initrd the kernel gets: the embedded init alone when the user gave none, the user's
/// unchanged, or (on request) both concatenated, which Linux unpacks in order.
pub struct Initrd {
    embedded: &'static [u8],
    user: u64,
}

impl Initrd {
    /// `user` is the size of the user's initrd (0: none); `add_init` puts the embedded init in
    /// front of it.
    pub fn new(user: u64, add_init: bool) -> Self {
        let embedded: &[u8] = if user == 0 || add_init { &EMBEDDED_INIT } else { &[] };
        Initrd { embedded, user }
    }

    /// The user's archive starts 4-byte aligned, as the cpio unpacker expects.
    fn user_offset(&self) -> u64 {
        (self.embedded.len() as u64).next_multiple_of(4)
    }

    pub fn size(&self) -> u64 {
        if self.user == 0 {
            self.embedded.len() as u64
        } else {
            self.user_offset() + self.user
        }
    }

    /// Copies the embedded init from ROM to `addr`, where the hand-off placed the initrd, and
    /// has `source` fill in the user's initrd after it. Inlined: each hand-off calls it once,
    /// and the call's own instructions would be translated too.
    #[inline(always)]
    pub fn load(&self, memory: &mut impl Memory, source: &mut impl Source, addr: u64) -> Result<(), BootError> {
        let size = self.size();
        if size == 0 {
            return Ok(());
        }
        let dest = memory.bytes_mut(addr, size as usize);
        let (init, rest) = dest.split_at_mut(self.embedded.len());
        init.copy_from_slice(self.embedded);
        if self.user > 0 {
            let (padding, user) = rest.split_at_mut((self.user_offset() - self.embedded.len() as u64) as usize);
            padding.fill(0);
            source.read_initrd(user)?;
        }
        Ok(())
    }
}

/// Puts a command line that came from elsewhere than fw_cfg (a disk image) at
/// `layout::CMDLINE`: `read` fills the buffer it is given; trailing NULs and line ends are
/// dropped, and it ends at its first NUL. Returns the command line's length.
pub fn store_cmdline(
    memory: &mut impl Memory,
    len: u64,
    read: impl FnOnce(&mut [u8]) -> Result<(), BootError>,
) -> Result<usize, BootError> {
    let max = layout::CMDLINE_MAX - 1;
    let too_long =
        BootError::Plan(PlanError::CmdlineTooLong { len: len.try_into().unwrap_or(usize::MAX), max: max as u32 });
    let len = usize::try_from(len).ok().filter(|&len| len <= max).ok_or(too_long)?;
    let cmdline = memory.bytes_mut(layout::CMDLINE, len + 1);
    read(&mut cmdline[..len])?;
    let end = cmdline[..len].iter().position(|&b| b == 0).unwrap_or(len);
    let text = cmdline.get(..end).unwrap_or_default();
    let kept = text.iter().rposition(|&b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1);
    // `kept` <= `len`: the buffer has room for the NUL.
    if let Some(nul) = cmdline.get_mut(kept) {
        *nul = 0;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::fake::FakeMemory;

    /// Kernel and initrd bytes as a disk or fw_cfg would give them.
    struct Pieces {
        initrd: Vec<u8>,
    }

    impl Source for Pieces {
        fn read_kernel(&mut self, _: &mut [u8]) -> Result<(), BootError> {
            unreachable!("the initrd's load reads no kernel")
        }

        fn read_initrd(&mut self, dest: &mut [u8]) -> Result<(), BootError> {
            dest.copy_from_slice(&self.initrd);
            Ok(())
        }
    }

    #[test]
    fn the_embedded_init_goes_alone_or_in_front_of_the_users_initrd() {
        assert_eq!(Initrd::new(0, false).size(), EMBEDDED_INIT.len() as u64);
        assert_eq!(Initrd::new(10, false).size(), 10);
        let mut memory = FakeMemory::new(0x10_0000, 0x1000);
        memory.bytes_mut(0x10_0000, 16).fill(0xee);
        let both = Initrd { embedded: b"07070", user: 4 };
        assert_eq!(both.size(), 12);
        both.load(&mut memory, &mut Pieces { initrd: vec![9; 4] }, 0x10_0000).unwrap();
        // The user's archive 4-byte aligned after the embedded one, the gap zeroed.
        assert_eq!(memory.read(0x10_0000, 13), b"07070\0\0\0\x09\x09\x09\x09\xee");
        // Alone, the embedded init takes just its own bytes.
        memory.bytes_mut(0x10_0000, 16).fill(0xee);
        let alone = Initrd { embedded: b"07070", user: 0 };
        alone.load(&mut memory, &mut Pieces { initrd: vec![] }, 0x10_0000).unwrap();
        assert_eq!(memory.read(0x10_0000, 6), b"07070\xee");
    }

    #[test]
    fn a_stored_command_line_ends_at_its_nul_without_line_ends() {
        let mut memory = FakeMemory::new(0, 0x4_0000);
        let cases: [(&[u8], &[u8]); 3] =
            [(b"quiet console=ttyS0\r\n\0\0", b"quiet console=ttyS0"), (b"a\0b", b"a"), (b"\n", b"")];
        for (given, kept) in cases {
            let len = store_cmdline(&mut memory, given.len() as u64, |dest| {
                dest.copy_from_slice(given);
                Ok(())
            });
            assert_eq!(len.unwrap(), kept.len());
            assert_eq!(memory.read(layout::CMDLINE, kept.len() + 1), [kept, b"\0"].concat());
        }
        let too_long = store_cmdline(&mut memory, layout::CMDLINE_MAX as u64, |_| unreachable!());
        assert!(matches!(too_long, Err(BootError::Plan(PlanError::CmdlineTooLong { .. }))));
    }
}
