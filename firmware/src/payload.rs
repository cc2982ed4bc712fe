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
    embedded: usize,
    user: u64,
}

impl Initrd {
    /// `user` is the size of the user's initrd (0: none); `add_init` puts the embedded init in
    /// front of it.
    pub fn new(user: u64, add_init: bool) -> Self {
        let embedded = if user == 0 || add_init { EMBEDDED_INIT.len() } else { 0 };
        Initrd { embedded, user }
    }

    /// The user's archive starts 4-byte aligned, as the cpio unpacker expects.
    fn user_offset(&self) -> u64 {
        (self.embedded as u64).next_multiple_of(4)
    }

    pub fn size(&self) -> u64 {
        if self.user == 0 {
            self.embedded as u64
        } else {
            self.user_offset() + self.user
        }
    }

    /// Copies the embedded init from ROM to `addr`, where the hand-off placed the initrd, and
    /// has `source` fill in the user's initrd after it.
    pub fn load(&self, memory: &mut impl Memory, source: &mut impl Source, addr: u64) -> Result<(), BootError> {
        let size = self.size();
        if size == 0 {
            return Ok(());
        }
        let dest = memory.bytes_mut(addr, size as usize);
        let (embedded, user) = dest.split_at_mut(self.user_offset().min(size) as usize);
        embedded[..self.embedded].copy_from_slice(&EMBEDDED_INIT[..self.embedded]);
        embedded[self.embedded..].fill(0);
        if self.user > 0 {
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
    let kept = cmdline[..end].iter().rposition(|&b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1);
    cmdline[kept] = 0;
    Ok(kept)
}
