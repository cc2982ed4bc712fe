//! Just enough virtio (the OASIS virtio 1.x specification) to read a block device by polling:
//! the PCI transport of virtio 1.0 and microvm's virtio-mmio transport (legacy version 1 by
//! default, version 2 with `virtio-mmio.force-legacy=off`), one split virtqueue of
//! `QUEUE_SIZE` descriptors in `layout::DMA_POOL`, one request in flight.
//!
//! The virtio-drivers crate did this before, at 13.7 KB of the firmware's code (its generic
//! transports, HAL, queue bookkeeping and the assertions that pull `core::fmt` in); this
//! driver and `disk.rs` take about 3 KB.

use crate::layout;
use crate::memory::phys_mut;
use crate::pci::{Bdf, ConfigSpace, Function};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk's transitional (legacy numbering) and modern PCI device IDs.
const BLOCK_DEVICE_IDS: [u16; 2] = [0x1001, 0x1042];

pub fn is_block_device(function: &Function) -> bool {
    function.vendor == VIRTIO_VENDOR && BLOCK_DEVICE_IDS.contains(&function.device)
}

/// Device status bits.
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1, bit 32: the only feature the firmware asks for (none on legacy mmio).
const VERSION_1_HIGH: u32 = 1 << 0;

/// Three descriptors make a request; four keeps the size a power of two.
const QUEUE_SIZE: u16 = 4;
/// The queue's layout in the DMA pool, which also fits legacy virtio-mmio's fixed one
/// (descriptors, then the driver ring, the device ring on the next 4 KiB page).
const DESCRIPTORS: u64 = layout::DMA_POOL;
const DRIVER_RING: u64 = DESCRIPTORS + 16 * QUEUE_SIZE as u64;
const DEVICE_RING: u64 = layout::DMA_POOL + PAGE;
/// A request's header and status byte, after the device ring.
pub const REQUEST: u64 = DEVICE_RING + 0x800;
const PAGE: u64 = 0x1000;
const POOL_USED: usize = 2 * PAGE as usize;

const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
/// VRING_AVAIL_F_NO_INTERRUPT: the firmware polls.
const NO_INTERRUPT: u16 = 1;

/// Where a transport's registers are (all MMIO, identity-mapped below 4 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registers {
    /// virtio-pci: the common configuration structure, the queue's notify address and the
    /// device configuration.
    Pci { common: u64, notify: u64, multiplier: u32, device: u64 },
    /// virtio-mmio: the transport's window.
    Mmio { base: u64, legacy: bool },
}

/// A started device with its one queue.
pub struct Device {
    registers: Registers,
    /// Where writing the queue's index tells the device to look at it.
    notify: u64,
    /// Requests made so far (the driver ring's index).
    submitted: u16,
}

/// The device did not accept the driver or its queue.
pub struct StartError;

fn read32(addr: u64) -> u32 {
    // SAFETY: `addr` is a register of a transport found by this module (PCI BARs placed by
    // `pci::setup`, microvm's mmio windows), identity-mapped; reads have no side effect.
    unsafe { read_volatile(addr as *const u32) }
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as for `read32`; the writes follow the virtio driver initialisation sequence.
    unsafe { write_volatile(addr as *mut u32, value) }
}

fn read16(addr: u64) -> u16 {
    // SAFETY: as for `read32`.
    unsafe { read_volatile(addr as *const u16) }
}

fn read8(addr: u64) -> u8 {
    // SAFETY: as for `read32`.
    unsafe { read_volatile(addr as *const u8) }
}

fn write16(addr: u64, value: u16) {
    // SAFETY: as for `write32`.
    unsafe { write_volatile(addr as *mut u16, value) }
}

fn write8(addr: u64, value: u8) {
    // SAFETY: as for `write32`.
    unsafe { write_volatile(addr as *mut u8, value) }
}

/// virtio-pci common configuration registers (virtio 1.0, 4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

/// virtio-mmio registers (virtio 1.0, 4.2.2; the legacy ones from 4.2.4).
mod mmio {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const LEGACY_GUEST_PAGE_SIZE: u64 = 0x028;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const LEGACY_QUEUE_ALIGN: u64 = 0x03c;
    pub const LEGACY_QUEUE_PFN: u64 = 0x040;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const CONFIG: u64 = 0x100;
}

impl Registers {
    fn set_status(self, status: u32) {
        match self {
            Registers::Pci { common, .. } => write8(common + common::DEVICE_STATUS, status as u8),
            Registers::Mmio { base, .. } => write32(base + mmio::STATUS, status),
        }
    }

    fn status(self) -> u32 {
        match self {
            Registers::Pci { common, .. } => read8(common + common::DEVICE_STATUS).into(),
            Registers::Mmio { base, .. } => read32(base + mmio::STATUS),
        }
    }

    /// Feature bits 32-63 offered by the device, then the driver's choice of them (bits 0-31
    /// are left at zero, which is what a reset leaves them at).
    fn negotiate(self) -> bool {
        let (select, offered, choose_select, choose) = match self {
            Registers::Mmio { legacy: true, .. } => return true,
            Registers::Pci { common, .. } => (
                common + common::DEVICE_FEATURE_SELECT,
                common + common::DEVICE_FEATURE,
                common + common::DRIVER_FEATURE_SELECT,
                common + common::DRIVER_FEATURE,
            ),
            Registers::Mmio { base, .. } => (
                base + mmio::DEVICE_FEATURES_SEL,
                base + mmio::DEVICE_FEATURES,
                base + mmio::DRIVER_FEATURES_SEL,
                base + mmio::DRIVER_FEATURES,
            ),
        };
        write32(select, 1);
        if read32(offered) & VERSION_1_HIGH == 0 {
            return false;
        }
        write32(choose_select, 1);
        write32(choose, VERSION_1_HIGH);
        true
    }

    /// Sets up queue 0 at the pool's fixed layout; returns where to notify it.
    fn set_up_queue(self) -> Option<u64> {
        match self {
            Registers::Pci { common, notify, multiplier, .. } => {
                write16(common + common::QUEUE_SELECT, 0);
                if read16(common + common::QUEUE_SIZE) < QUEUE_SIZE {
                    return None;
                }
                write16(common + common::QUEUE_SIZE, QUEUE_SIZE);
                for (register, addr) in [
                    (common::QUEUE_DESC, DESCRIPTORS),
                    (common::QUEUE_DRIVER, DRIVER_RING),
                    (common::QUEUE_DEVICE, DEVICE_RING),
                ] {
                    write32(common + register, addr as u32);
                    write32(common + register + 4, 0);
                }
                let notify_off = read16(common + common::QUEUE_NOTIFY_OFF);
                write16(common + common::QUEUE_ENABLE, 1);
                Some(notify + u64::from(notify_off) * u64::from(multiplier))
            }
            Registers::Mmio { base, legacy } => {
                write32(base + mmio::QUEUE_SEL, 0);
                if read32(base + mmio::QUEUE_NUM_MAX) < u32::from(QUEUE_SIZE) {
                    return None;
                }
                write32(base + mmio::QUEUE_NUM, QUEUE_SIZE.into());
                if legacy {
                    write32(base + mmio::LEGACY_QUEUE_ALIGN, PAGE as u32);
                    write32(base + mmio::LEGACY_QUEUE_PFN, (DESCRIPTORS / PAGE) as u32);
                } else {
                    for (register, addr) in [
                        (mmio::QUEUE_DESC_LOW, DESCRIPTORS),
                        (mmio::QUEUE_DRIVER_LOW, DRIVER_RING),
                        (mmio::QUEUE_DEVICE_LOW, DEVICE_RING),
                    ] {
                        write32(base + register, addr as u32);
                        write32(base + register + 4, 0);
                    }
                    write32(base + mmio::QUEUE_READY, 1);
                }
                Some(base + mmio::QUEUE_NOTIFY)
            }
        }
    }
}

impl Device {
    /// Resets the device and brings it up with its first queue (virtio 1.0, 3.1.1).
    fn start(registers: Registers) -> Result<Device, StartError> {
        registers.set_status(0);
        if let Registers::Mmio { base, legacy: true } = registers {
            write32(base + mmio::LEGACY_GUEST_PAGE_SIZE, PAGE as u32);
        }
        registers.set_status(ACKNOWLEDGE | DRIVER);
        let mut status = ACKNOWLEDGE | DRIVER | FEATURES_OK;
        if !registers.negotiate() {
            return Err(StartError);
        }
        registers.set_status(status);
        if registers.status() & FEATURES_OK == 0 {
            return Err(StartError);
        }
        // SAFETY: the DMA pool of layout.rs, used by this one device until it is reset.
        unsafe { phys_mut(layout::DMA_POOL, POOL_USED) }.fill(0);
        write16(DRIVER_RING, NO_INTERRUPT);
        let notify = registers.set_up_queue().ok_or(StartError)?;
        status |= DRIVER_OK;
        registers.set_status(status);
        Ok(Device { registers, notify, submitted: 0 })
    }

    /// The device-specific configuration's dword at `offset`.
    pub fn config32(&self, offset: u64) -> u32 {
        match self.registers {
            Registers::Pci { device, .. } => read32(device + offset),
            Registers::Mmio { base, .. } => read32(base + mmio::CONFIG + offset),
        }
    }

    /// Makes one request of `parts` (address, length, whether the device writes it) chained
    /// in order, and waits until the device has used it.
    pub fn request(&mut self, parts: &[(u64, u32, bool); 3]) {
        for (index, &(addr, len, device_writes)) in parts.iter().enumerate() {
            let last = index == parts.len() - 1;
            let flags = if device_writes { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
            let descriptor = DESCRIPTORS + 16 * index as u64;
            write32(descriptor, addr as u32);
            write32(descriptor + 4, (addr >> 32) as u32);
            write32(descriptor + 8, len);
            write16(descriptor + 12, flags);
            write16(descriptor + 14, index as u16 + 1);
        }
        // The driver ring: the chain's head (descriptor 0) in the next slot, then the index.
        write16(DRIVER_RING + 4 + 2 * u64::from(self.submitted % QUEUE_SIZE), 0);
        self.submitted = self.submitted.wrapping_add(1);
        fence(Ordering::SeqCst);
        write16(DRIVER_RING + 2, self.submitted);
        fence(Ordering::SeqCst);
        match self.registers {
            Registers::Pci { .. } => write16(self.notify, 0),
            Registers::Mmio { .. } => write32(self.notify, 0),
        }
        // QEMU completes the request before the notify write returns; the loop is for form.
        // SAFETY: the device ring's index, in the pool this device uses.
        while unsafe { read_volatile((DEVICE_RING + 2) as *const u16) } != self.submitted {
            core::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
    }
}

/// Leaves the device reset, as Linux expects to find it.
impl Drop for Device {
    fn drop(&mut self) {
        self.registers.set_status(0);
    }
}

/// QEMU's microvm puts its virtio-mmio transports in 512-byte windows from here (the
/// addresses it also passes to Linux as `virtio_mmio.device=`), 24 of them at most.
const MMIO_BASE: u64 = 0xfeb0_0000;
const MMIO_WINDOW: u64 = 0x200;
const MMIO_SLOTS: u64 = 24;
/// "virt", the first register of every virtio-mmio transport.
const MMIO_MAGIC: u32 = 0x7472_6976;
const DEVICE_ID_BLOCK: u32 = 2;

/// microvm's virtio-mmio block devices in slot order, started; nothing when `probe` is false
/// (on `pc` and `q35` those addresses are not virtio's).
pub fn mmio_block_devices(probe: bool) -> impl Iterator<Item = Result<Device, StartError>> {
    (0..if probe { MMIO_SLOTS } else { 0 }).filter_map(|slot| {
        let base = MMIO_BASE + slot * MMIO_WINDOW;
        // An empty slot reads as 0.
        if read32(base + mmio::MAGIC) != MMIO_MAGIC || read32(base + mmio::DEVICE_ID) != DEVICE_ID_BLOCK {
            return None;
        }
        let legacy = match read32(base + mmio::VERSION) {
            1 => true,
            2 => false,
            _ => return Some(Err(StartError)),
        };
        Some(Device::start(Registers::Mmio { base, legacy }))
    })
}

/// PCI capability list: status bit, list head, and virtio's vendor-specific capability.
const STATUS_DWORD: u8 = 0x04;
const STATUS_CAPABILITIES: u32 = 1 << 20;
const CAPABILITIES: u8 = 0x34;
const CAP_VENDOR: u32 = 0x09;
/// virtio_pci_cap.cfg_type values.
const COMMON_CFG: u32 = 1;
const NOTIFY_CFG: u32 = 2;
const DEVICE_CFG: u32 = 4;
/// Enough for any real list; a looping one ends here.
const MAX_CAPABILITIES: usize = 48;

/// Starts a virtio 1.0 PCI function whose BARs `pci::setup` has placed and enabled, from
/// where its capabilities put the common, notify and device structures.
pub fn pci_device(config: &mut impl ConfigSpace, function: &Function) -> Result<Device, StartError> {
    Device::start(pci_registers(config, function).ok_or(StartError)?)
}

/// The function's common, notify and device structures, if its capabilities name all three.
fn pci_registers(config: &mut impl ConfigSpace, function: &Function) -> Option<Registers> {
    let bdf = function.bdf;
    let (mut common, mut notify, mut device) = (None, None, None);
    if config.read32(bdf, STATUS_DWORD) & STATUS_CAPABILITIES != 0 {
        let mut at = config.read8(bdf, CAPABILITIES);
        for _ in 0..MAX_CAPABILITIES {
            if at < 0x40 {
                break;
            }
            at &= !3;
            let header = config.read32(bdf, at);
            if header & 0xff == CAP_VENDOR {
                let place = capability_address(config, bdf, at, function);
                match header >> 24 {
                    COMMON_CFG => common = common.or(place),
                    NOTIFY_CFG => {
                        let multiplier = config.read32(bdf, at + 16);
                        notify = notify.or(place.map(|addr| (addr, multiplier)));
                    }
                    DEVICE_CFG => device = device.or(place),
                    _ => {}
                }
            }
            at = (header >> 8) as u8;
        }
    }
    let (common, (notify, multiplier), device) = (common?, notify?, device?);
    Some(Registers::Pci { common, notify, multiplier, device })
}

/// Where the structure a virtio capability at `at` describes lies: its BAR's base plus offset.
fn capability_address(config: &mut impl ConfigSpace, bdf: Bdf, at: u8, function: &Function) -> Option<u64> {
    let bar = config.read8(bdf, at + 4);
    let offset = config.read32(bdf, at + 8);
    let bar = function.bars.get(usize::from(bar))?.as_ref()?;
    Some(bar.base + u64::from(offset)).filter(|_| bar.base != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::FakeConfigSpace;
    use crate::pci::{Bar, BarKind};

    const BLK: Bdf = Bdf::new(0, 3, 0);
    const BAR_BASE: u64 = 0xc000_0000;

    /// virtio-blk-pci as QEMU lays it out: an MSI-X capability, then virtio's, all on BAR 4.
    fn device(config: &mut FakeConfigSpace, caps: &[(u8, u32, u32, u32)]) -> Function {
        config.add(BLK, VIRTIO_VENDOR, 0x1042, 0);
        config.write32(BLK, STATUS_DWORD, STATUS_CAPABILITIES);
        config.write32(BLK, 0x34, 0x40);
        // MSI-X (ID 0x11), which the walk steps over.
        config.write32(BLK, 0x40, 0x11 | 0x50 << 8);
        for (i, &(at, kind, offset, multiplier)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(0, |next| next.0);
            config.write32(BLK, at, CAP_VENDOR | u32::from(next) << 8 | 16 << 16 | kind << 24);
            config.write32(BLK, at + 4, 4);
            config.write32(BLK, at + 8, offset);
            config.write32(BLK, at + 16, multiplier);
        }
        let mut function = Function {
            bdf: BLK,
            vendor: VIRTIO_VENDOR,
            device: 0x1042,
            class: 0x0100,
            header: crate::pci::Header::Device,
            irq: None,
            bars: [None; 6],
        };
        function.bars[4] = Some(Bar { kind: BarKind::Mem64, size: 0x4000, base: BAR_BASE });
        function
    }

    #[test]
    fn finds_the_structures_the_capabilities_name() {
        let mut config = FakeConfigSpace::default();
        let caps = [
            (0x50, COMMON_CFG, 0, 0),
            (0x64, 3, 0x1000, 0),
            (0x74, DEVICE_CFG, 0x2000, 0),
            (0x84, NOTIFY_CFG, 0x3000, 4),
        ];
        let function = device(&mut config, &caps);
        assert_eq!(
            pci_registers(&mut config, &function),
            Some(Registers::Pci {
                common: BAR_BASE,
                notify: BAR_BASE + 0x3000,
                multiplier: 4,
                device: BAR_BASE + 0x2000
            })
        );
    }

    #[test]
    fn a_missing_structure_or_bar_is_no_device() {
        let mut config = FakeConfigSpace::default();
        let function = device(&mut config, &[(0x50, COMMON_CFG, 0, 0), (0x64, NOTIFY_CFG, 0x3000, 4)]);
        assert_eq!(pci_registers(&mut config, &function), None, "no device structure");
        let mut function =
            device(&mut config, &[(0x50, COMMON_CFG, 0, 0), (0x64, NOTIFY_CFG, 0, 4), (0x74, DEVICE_CFG, 0, 0)]);
        function.bars[4] = None;
        assert_eq!(pci_registers(&mut config, &function), None, "BAR not placed");
        config.write32(BLK, STATUS_DWORD, 0);
        function.bars[4] = Some(Bar { kind: BarKind::Mem64, size: 0x4000, base: BAR_BASE });
        assert_eq!(pci_registers(&mut config, &function), None, "no capability list");
    }

    #[test]
    fn a_looping_capability_list_ends() {
        let mut config = FakeConfigSpace::default();
        let function = device(&mut config, &[(0x50, COMMON_CFG, 0, 0)]);
        config.write32(BLK, 0x50, CAP_VENDOR | 0x40 << 8 | COMMON_CFG << 24);
        assert_eq!(pci_registers(&mut config, &function), None);
    }
}
