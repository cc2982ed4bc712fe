//! What the user gave QEMU besides the kernel: the command line and the initrd, plus flint's
//! embedded init. Shared by the bzImage and PVH hand-offs, from fw_cfg or from a disk.

use crate::error::BootError;
use crate::fw_cfg::{key, FwCfg, Transport};
use crate::layout;
use crate::memory::phys_mut;
use loader::plan::PlanError;

/// flint's guest init as a newc archive (empty when the image was built without one), in a
/// section of its own so the firmware's code size can be measured without it.
#[link_section = ".initramfs"]
static EMBEDDED_INIT: [u8; INIT_CPIO.len()] = *INIT_CPIO;
const INIT_CPIO: &[u8; include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio")).len()] =
    include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio"));

/// With this fw_cfg file present, the embedded init is put in front of the user's initrd.
const ADD_INIT_SWITCH: &[u8] = b"opt/flint/add-init";

/// Reads QEMU's command-line blob to `layout::CMDLINE`; returns it (with anything QEMU
/// appended after the NUL) and the length of the command line itself.
pub fn read_cmdline<T: Transport>(fw_cfg: &mut FwCfg<T>) -> (&'static mut [u8], usize) {
    let size = (fw_cfg.read_u32(key::CMDLINE_SIZE) as usize).min(layout::CMDLINE_MAX);
    // SAFETY: the command-line area of layout.rs, reserved for this blob.
    let cmdline = unsafe { phys_mut(layout::CMDLINE, size.max(1)) };
    cmdline[0] = 0;
    if size > 0 {
        fw_cfg.read(key::CMDLINE_DATA, cmdline);
    }
    let len = cmdline.iter().position(|&b| b == 0).unwrap_or(cmdline.len());
    (cmdline, len)
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

    pub fn from_fw_cfg<T: Transport>(fw_cfg: &mut FwCfg<T>) -> Self {
        Initrd::new(u64::from(fw_cfg.read_u32(key::INITRD_SIZE)), add_init_requested(fw_cfg))
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

    /// Copies the embedded init from ROM to `addr` and has `source` fill in the user's initrd.
    ///
    /// # Safety
    /// `[addr, addr + self.size())` must be RAM that the load plan set aside for the initrd.
    pub unsafe fn load(&self, source: &mut impl Source, addr: u64) -> Result<(), BootError> {
        let size = self.size();
        if size == 0 {
            return Ok(());
        }
        // SAFETY: forwarded to the caller.
        let dest = unsafe { phys_mut(addr, size as usize) };
        let (embedded, user) = dest.split_at_mut(self.user_offset().min(size) as usize);
        // `embedded` is at least `self.embedded` bytes, at most the archive's size.
        if let (Some(to), Some(from)) = (embedded.get_mut(..self.embedded), EMBEDDED_INIT.get(..self.embedded)) {
            to.copy_from_slice(from);
        }
        embedded.get_mut(self.embedded..).unwrap_or_default().fill(0);
        if self.user > 0 {
            source.read_initrd(user)?;
        }
        Ok(())
    }
}

pub fn add_init_requested<T: Transport>(fw_cfg: &mut FwCfg<T>) -> bool {
    fw_cfg.find(ADD_INIT_SWITCH).is_some()
}

/// Where the kernel and the user's initrd are read from: QEMU's fw_cfg blobs or a disk image.
pub trait Source {
    /// The bzImage's protected-mode part (not used for PVH, whose segments are loaded apart).
    fn read_kernel(&mut self, dest: &mut [u8]) -> Result<(), BootError>;
    fn read_initrd(&mut self, dest: &mut [u8]) -> Result<(), BootError>;
}

impl<T: Transport> Source for FwCfg<T> {
    fn read_kernel(&mut self, dest: &mut [u8]) -> Result<(), BootError> {
        self.read(key::KERNEL_DATA, dest);
        Ok(())
    }

    fn read_initrd(&mut self, dest: &mut [u8]) -> Result<(), BootError> {
        self.read(key::INITRD_DATA, dest);
        Ok(())
    }
}

/// Puts a command line that came from elsewhere than fw_cfg (a disk image) at
/// `layout::CMDLINE`: `read` fills the buffer it is given; trailing NULs and line ends are
/// dropped, and it ends at its first NUL. Returns the command line's length.
pub fn store_cmdline(len: u64, read: impl FnOnce(&mut [u8]) -> Result<(), BootError>) -> Result<usize, BootError> {
    let max = layout::CMDLINE_MAX - 1;
    let too_long =
        BootError::Plan(PlanError::CmdlineTooLong { len: len.try_into().unwrap_or(usize::MAX), max: max as u32 });
    let len = usize::try_from(len).ok().filter(|&len| len <= max).ok_or(too_long)?;
    // SAFETY: the command-line area of layout.rs, reserved for the command line.
    let cmdline = unsafe { phys_mut(layout::CMDLINE, len + 1) };
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
