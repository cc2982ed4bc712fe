//! What `virtio-drivers` needs from the firmware: DMA memory (physical addresses are pointers
//! under the identity map) and configuration-space access through the firmware's own
//! `pci::ConfigSpace` (QEMU's `pc` has no ECAM, so port I/O it is).

use crate::layout;
use crate::memory::phys_mut;
use crate::pci::{reg, BarKind, Bdf, ConfigSpace, Function};
use core::cell::Cell;
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

/// `virtio-drivers`' view of configuration space, over the firmware's, for one function
/// whose BARs `pci::setup` has sized and placed. To map each capability the driver sizes its
/// BAR again: decoding off, all-ones written and read back, then everything restored. QEMU
/// rebuilds its memory map at each such change (about a millisecond apiece under TCG, a
/// dozen of them per device), so writes to the function's command register and BARs are
/// kept here instead, and a BAR being sized reads back the size already known.
pub struct ConfigAccess<C> {
    config: C,
    function: Function,
    /// Bit `i`: BAR register `i` holds all-ones, as far as the driver knows.
    sizing: Cell<u8>,
}

fn bdf(function: DeviceFunction) -> Bdf {
    Bdf::new(function.bus, function.device, function.function)
}

impl<C> ConfigAccess<C> {
    /// The BAR register index `offset` names, for this function only.
    fn bar_register(&self, function: DeviceFunction, offset: u8) -> Option<usize> {
        let index = usize::from(offset.checked_sub(reg::BAR0)? / 4);
        (bdf(function) == self.function.bdf && index < self.function.bars.len()).then_some(index)
    }

    /// What BAR register `index` reads after all-ones were written: the size's mask (the
    /// driver ignores the flag bits). The upper half of a 64-bit BAR reads all-ones, as every
    /// BAR `pci::setup` places is below 4 GiB.
    fn size_mask(&self, index: usize) -> u32 {
        let bars = &self.function.bars;
        match bars[index] {
            Some(bar) => !(bar.size - 1) as u32,
            None if index > 0 && bars[index - 1].is_some_and(|low| low.kind == BarKind::Mem64) => u32::MAX,
            None => 0,
        }
    }
}

impl<C: ConfigSpace + Clone> ConfigurationAccess for ConfigAccess<C> {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        match self.bar_register(function, offset) {
            Some(index) if self.sizing.get() & 1 << index != 0 => self.size_mask(index),
            _ => self.config.clone().read32(bdf(function), offset),
        }
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, value: u32) {
        if let Some(index) = self.bar_register(function, offset) {
            let bit = 1 << index;
            self.sizing.set(if value == u32::MAX { self.sizing.get() | bit } else { self.sizing.get() & !bit });
        } else if !(offset == reg::COMMAND && bdf(function) == self.function.bdf) {
            self.config.write32(bdf(function), offset, value)
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        ConfigAccess { config: self.config.clone(), function: self.function, sizing: self.sizing.clone() }
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
    let mut root = PciRoot::new(ConfigAccess { config, function: *function, sizing: Cell::new(0) });
    let Bdf { bus, device, function } = function.bdf;
    PciTransport::new::<FirmwareHal, _>(&mut root, DeviceFunction { bus, device, function })
}
