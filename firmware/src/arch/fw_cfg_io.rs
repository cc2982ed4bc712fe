//! fw_cfg on the x86 I/O ports of the `pc` and `q35` machines.

use super::{inb, outl, outw};
use crate::fw_cfg::{DmaError, Transport};
use core::ptr::{addr_of, read_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const DMA_LOW: u16 = 0x518;

const CONTROL_ERROR: u32 = 1 << 0;
const CONTROL_READ: u32 = 1 << 1;
const CONTROL_SKIP: u32 = 1 << 2;
const CONTROL_SELECT: u32 = 1 << 3;
const CONTROL_WRITE: u32 = 1 << 4;

/// The DMA descriptor; every field is big-endian.
#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

pub struct PortTransport;

impl PortTransport {
    fn run(&mut self, control: u32, length: u32, address: u64) -> Result<(), DmaError> {
        let access = DmaAccess { control: control.to_be(), length: length.to_be(), address: address.to_be() };
        // On the stack, below 4 GiB (reset.s), so the address's high half is zero: QEMU clears
        // the address after every transfer, so only the low half is written, as SeaBIOS does.
        let descriptor = addr_of!(access) as u32;
        // The device reads the descriptor and target memory behind the compiler's back.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the descriptor and the buffer it names stay alive until the device clears
        // `control`; writing the low half starts the transfer, which QEMU completes synchronously.
        unsafe { outl(DMA_LOW, descriptor.to_be()) }
        loop {
            // SAFETY: `access` is a live local; volatile because the device writes it.
            let control = u32::from_be(unsafe { read_volatile(addr_of!(access.control)) });
            compiler_fence(Ordering::SeqCst);
            if control & CONTROL_ERROR != 0 {
                return Err(DmaError);
            }
            if control == 0 {
                return Ok(());
            }
        }
    }
}

impl Transport for PortTransport {
    fn select(&mut self, key: u16) {
        // SAFETY: the fw_cfg selector register; selecting has no other effect.
        unsafe { outw(SELECTOR, key) }
    }

    fn read(&mut self, buf: &mut [u8]) {
        for byte in buf {
            // SAFETY: the fw_cfg data register; reading advances within the selected item.
            *byte = unsafe { inb(DATA) };
        }
    }

    fn dma_read(&mut self, key: u16, dest: &mut [u8]) -> Result<(), DmaError> {
        let length = u32::try_from(dest.len()).map_err(|_| DmaError)?;
        let control = (u32::from(key) << 16) | CONTROL_SELECT | CONTROL_READ;
        // Identity paging: the buffer's virtual address is its physical address.
        self.run(control, length, dest.as_mut_ptr() as u64)
    }

    fn dma_write(&mut self, key: u16, offset: u32, src: &[u8]) -> Result<(), DmaError> {
        let length = u32::try_from(src.len()).map_err(|_| DmaError)?;
        self.run((u32::from(key) << 16) | CONTROL_SELECT | CONTROL_SKIP, offset, 0)?;
        self.run(CONTROL_WRITE, length, src.as_ptr() as u64)
    }
}
