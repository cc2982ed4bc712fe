//! What the user gave QEMU besides the kernel: the command line and the initrd, plus flint's
//! embedded init. Shared by the bzImage and PVH hand-offs.

use crate::fw_cfg::{key, FwCfg, Transport};
use crate::layout;
use crate::memory::phys_mut;

/// flint's guest init as a newc archive (empty when the image was built without one), in a
/// section of its own so the firmware's code size can be measured without it.
#[link_section = ".initramfs"]
static EMBEDDED_INIT: [u8; INIT_CPIO.len()] = *INIT_CPIO;
const INIT_CPIO: &[u8; include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio")).len()] =
    include_bytes!(concat!(env!("OUT_DIR"), "/init.cpio"));

/// With this fw_cfg file present, the embedded init is put in front of the user's initrd.
const ADD_INIT_SWITCH: &str = "opt/flint/add-init";

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
    pub fn choose<T: Transport>(fw_cfg: &mut FwCfg<T>) -> Self {
        let user = u64::from(fw_cfg.read_u32(key::INITRD_SIZE));
        let add_init = fw_cfg.find(ADD_INIT_SWITCH).is_some();
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

    /// Copies the embedded init from ROM and the user's initrd by DMA to `addr`.
    ///
    /// # Safety
    /// `[addr, addr + self.size())` must be RAM that the load plan set aside for the initrd.
    pub unsafe fn load<T: Transport>(&self, fw_cfg: &mut FwCfg<T>, addr: u64) {
        let size = self.size();
        if size == 0 {
            return;
        }
        // SAFETY: forwarded to the caller.
        let dest = unsafe { phys_mut(addr, size as usize) };
        let (embedded, user) = dest.split_at_mut(self.user_offset().min(size) as usize);
        embedded[..self.embedded].copy_from_slice(&EMBEDDED_INIT[..self.embedded]);
        embedded[self.embedded..].fill(0);
        if self.user > 0 {
            fw_cfg.read(key::INITRD_DATA, user);
        }
    }
}
