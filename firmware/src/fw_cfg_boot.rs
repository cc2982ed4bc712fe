//! Booting what QEMU was given with `-kernel`, `-initrd` and `-append`, read from fw_cfg:
//! a bzImage as setup and kernel blobs, or an ELF vmlinux with a PVH note, whose segments
//! QEMU loads into RAM itself.
//!
//! The helpers both kinds share are inlined into each (`#[inline(always)]`): a boot runs one
//! kind only, and under TCG a call's set-up and return are instructions to translate too.

use crate::bzimage;
use crate::error::BootError;
use crate::fw_cfg::{key, FwCfg, Transport};
use crate::handoff::{Handoff, Platform};
use crate::layout;
use crate::memory::Memory;
use crate::payload::{Initrd, Source};
use crate::pvh;
use loader::bzimage::BzImage;
use loader::setup_data::{self, Blob};

/// With this fw_cfg file present, the embedded init is put in front of the user's initrd.
const ADD_INIT_SWITCH: &[u8] = b"opt/flint/add-init";

/// What QEMU says about its `-kernel`, read once, before anything is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GivenKernel {
    /// A vmlinux's PVH entry; 0 for a bzImage.
    pvh_entry: u32,
    /// A bzImage's protected-mode part; a vmlinux's extent in RAM.
    size: u32,
    /// `(start, size)` of what QEMU loaded into RAM itself: a vmlinux's segments, which
    /// nothing the firmware places may overwrite. Empty for a bzImage, which the firmware
    /// places.
    pub loaded: (u64, u64),
}

impl GivenKernel {
    /// `None` when QEMU was given no `-kernel`: then the firmware looks for a disk to boot.
    pub fn read<T: Transport>(fw_cfg: &mut FwCfg<T>) -> Option<Self> {
        let size = fw_cfg.read_u32(key::KERNEL_SIZE);
        let pvh_entry = fw_cfg.read_u32(key::KERNEL_ENTRY);
        if pvh_entry != 0 {
            let loaded = (u64::from(fw_cfg.read_u32(key::KERNEL_ADDR)), u64::from(size));
            return Some(GivenKernel { pvh_entry, size, loaded });
        }
        (size != 0).then_some(GivenKernel { pvh_entry, size, loaded: (0, 0) })
    }
}

/// Whether the user asked for the embedded init in front of their initrd (for disk boots too).
pub fn add_init_requested<T: Transport>(fw_cfg: &FwCfg<T>) -> bool {
    fw_cfg.find(ADD_INIT_SWITCH).is_some()
}

pub fn prepare<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    given: GivenKernel,
    platform: &Platform,
    memory: &mut impl Memory,
) -> Result<Handoff, BootError> {
    // QEMU sets the entry only for PVH, having loaded and checked the vmlinux itself: its
    // headers need not be read again, the extent it loaded is all the initrd must avoid.
    if given.pvh_entry != 0 {
        let (_, cmdline_len) = read_cmdline(fw_cfg, memory);
        let initrd = initrd(fw_cfg);
        return pvh::hand_off(memory, platform, given.pvh_entry, &[given.loaded], cmdline_len, &initrd, fw_cfg);
    }
    let kernel_size = u64::from(given.size);
    let setup_size = fw_cfg.read_u32(key::SETUP_SIZE) as usize;
    if kernel_size == 0 || setup_size == 0 {
        return Err(BootError::NoKernel);
    }
    prepare_bzimage(fw_cfg, platform, memory, kernel_size, setup_size)
}

fn prepare_bzimage<T: Transport>(
    fw_cfg: &mut FwCfg<T>,
    platform: &Platform,
    memory: &mut impl Memory,
    kernel_size: u64,
    setup_size: usize,
) -> Result<Handoff, BootError> {
    // QEMU 7.2 patches the setup_data pointer into the header only once this item is read.
    fw_cfg.read_u32(key::SETUP_ADDR);
    let kernel = BzImage::parse(read_setup_blob(fw_cfg, memory, setup_size));
    // Borrowed where it was returned: the header is too big to move for nothing.
    let kernel = kernel.as_ref().map_err(|e| BootError::Kernel(*e))?;

    let (cmdline_blob_len, cmdline_len) = read_cmdline(fw_cfg, memory);
    let initrd = initrd(fw_cfg);
    let load = bzimage::load(memory, kernel, platform, kernel_size, cmdline_len, &initrd, fw_cfg)?;

    // QEMU's setup_data chain lies in the blobs it expected its option ROM to load at its
    // addresses; flint loaded them elsewhere, so the chain is copied out and relinked. Most
    // boots have none: then nothing is lent or walked, nor are QEMU's addresses read.
    let setup_data = if kernel.setup_data() == 0 {
        0
    } else {
        let qemu_kernel_addr = u64::from(fw_cfg.read_u32(key::KERNEL_ADDR));
        let qemu_cmdline_addr = u64::from(fw_cfg.read_u32(key::CMDLINE_ADDR));
        let [kernel_blob, cmdline_blob, setup_data_dest] = memory.disjoint_mut([
            (load.kernel_addr, kernel_size as usize),
            (layout::CMDLINE, cmdline_blob_len),
            (layout::SETUP_DATA, layout::SETUP_DATA_MAX),
        ]);
        let blobs = [
            Blob { qemu_addr: qemu_kernel_addr, bytes: kernel_blob },
            Blob { qemu_addr: qemu_cmdline_addr, bytes: cmdline_blob },
        ];
        setup_data::relocate_chain(kernel.setup_data(), &blobs, setup_data_dest, layout::SETUP_DATA)
            .map_err(BootError::SetupData)?
    };
    Ok(bzimage::hand_off(memory, kernel, &load, initrd.size(), platform, setup_data))
}

/// The first `size` bytes of the kernel file as QEMU serves them, in a firmware scratch area.
#[inline(always)]
fn read_setup_blob<'m, T: Transport>(fw_cfg: &mut FwCfg<T>, memory: &'m mut impl Memory, size: usize) -> &'m [u8] {
    let setup = memory.bytes_mut(layout::SETUP_BLOB, size.min(layout::SETUP_BLOB_MAX));
    fw_cfg.read(key::SETUP_DATA, setup);
    setup
}

/// Reads QEMU's command-line blob to `layout::CMDLINE`; returns the blob's length (it may
/// hold more after the NUL) and the command line's.
#[inline(always)]
fn read_cmdline<T: Transport>(fw_cfg: &mut FwCfg<T>, memory: &mut impl Memory) -> (usize, usize) {
    let size = (fw_cfg.read_u32(key::CMDLINE_SIZE) as usize).min(layout::CMDLINE_MAX);
    let cmdline = memory.bytes_mut(layout::CMDLINE, size.max(1));
    cmdline[0] = 0;
    if size > 0 {
        fw_cfg.read(key::CMDLINE_DATA, cmdline);
    }
    let len = cmdline.iter().position(|&b| b == 0).unwrap_or(cmdline.len());
    (cmdline.len(), len)
}

#[inline(always)]
fn initrd<T: Transport>(fw_cfg: &mut FwCfg<T>) -> Initrd {
    let user = u64::from(fw_cfg.read_u32(key::INITRD_SIZE));
    // Without an initrd of the user's the embedded init goes anyway: no need to look up the switch.
    Initrd::new(user, user == 0 || add_init_requested(fw_cfg))
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

#[cfg(test)]
mod tests;
