//! What `virtio-drivers` needs from the firmware: DMA memory (physical addresses are pointers
//! under the identity map) and configuration-space access through the firmware's own
//! `pci::ConfigSpace` (QEMU's `pc` has no ECAM, so port I/O it is).

use crate::layout;
use crate::memory::phys_mut;
use crate::pci::{Bdf, ConfigSpace, Function};
use core::ptr::{read_volatile, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk's transitional (legacy numbering) and modern PCI device IDs.
const BLOCK_DEVICE_IDS: [u16; 2] = [0x1001, 0x1042];

pub struct FirmwareHal;

/// Pages handed out so far from `layout::DMA_POOL`. The firmware drives one disk for one boot,
/// so pages are never reused: freeing is a no-op and no allocator is needed.
static DMA_PAGES_USED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: pages come zeroed and page-aligned from a pool nothing else uses, and each is handed
// out once; every address the firmware uses is below 4 GiB and identity-mapped, so the physical
// address the device sees is the pointer itself.
unsafe impl Hal for FirmwareHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = DMA_PAGES_USED.fetch_add(pages, Ordering::Relaxed);
        if (first + pages) * PAGE_SIZE > layout::DMA_POOL_SIZE {
            // The driver turns a zero address into an error.
            return (0, NonNull::dangling());
        }
        let addr = layout::DMA_POOL + (first * PAGE_SIZE) as u64;
        // SAFETY: these pages of the pool were never handed out before.
        let memory = unsafe { phys_mut(addr, pages * PAGE_SIZE) };
        memory.fill(0);
        (addr, NonNull::from(memory).cast())
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("BARs are never at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// `virtio-drivers`' view of configuration space, over the firmware's.
pub struct ConfigAccess<C>(pub C);

fn bdf(function: DeviceFunction) -> Bdf {
    Bdf::new(function.bus, function.device, function.function)
}

impl<C: ConfigSpace + Clone> ConfigurationAccess for ConfigAccess<C> {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        self.0.clone().read32(bdf(function), offset)
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, value: u32) {
        self.0.write32(bdf(function), offset, value)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        ConfigAccess(self.0.clone())
    }
}

/// QEMU's microvm puts its virtio-mmio transports in 512-byte windows from here (the
/// addresses it also passes to Linux as `virtio_mmio.device=`), 24 of them at most.
const MMIO_BASE: u64 = 0xfeb0_0000;
const MMIO_WINDOW: usize = 0x200;
const MMIO_SLOTS: usize = 24;
/// "virt", the first register of every virtio-mmio transport.
const MMIO_MAGIC: u32 = 0x7472_6976;
const MMIO_DEVICE_ID: u64 = 8;
const DEVICE_ID_BLOCK: u32 = 2;

/// microvm's virtio-mmio block devices in slot order; nothing when `probe` is false (on
/// `pc` and `q35` those addresses are not virtio's).
pub fn mmio_block_transports(probe: bool) -> impl Iterator<Item = MmioTransport<'static>> {
    (0..if probe { MMIO_SLOTS } else { 0 }).filter_map(|slot| {
        let base = MMIO_BASE + (slot * MMIO_WINDOW) as u64;
        // SAFETY: the magic and device-ID registers of a microvm transport slot (below 4 GiB,
        // identity-mapped); reading them has no side effect, and an empty slot reads as 0.
        let (magic, device) =
            unsafe { (read_volatile(base as *const u32), read_volatile((base + MMIO_DEVICE_ID) as *const u32)) };
        if magic != MMIO_MAGIC || device != DEVICE_ID_BLOCK {
            return None;
        }
        let header = NonNull::new(base as *mut VirtIOHeader)?;
        // SAFETY: a virtio-mmio transport with its configuration space, which QEMU keeps mapped
        // for as long as the VM runs.
        unsafe { MmioTransport::new(header, MMIO_WINDOW) }.ok()
    })
}

pub fn is_block_device(function: &Function) -> bool {
    function.vendor == VIRTIO_VENDOR && BLOCK_DEVICE_IDS.contains(&function.device)
}

/// The virtio transport of a PCI function whose BARs `pci::setup` has placed and enabled.
pub fn pci_transport<C: ConfigSpace + Clone>(config: C, function: &Function) -> Result<PciTransport, VirtioPciError> {
    let mut root = PciRoot::new(ConfigAccess(config));
    let Bdf { bus, device, function } = function.bdf;
    PciTransport::new::<FirmwareHal, _>(&mut root, DeviceFunction { bus, device, function })
}
