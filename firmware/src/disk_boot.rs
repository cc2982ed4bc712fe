//! Booting without `-kernel`: the first virtio-blk disk (PCI functions first, then microvm's
//! virtio-mmio transports) whose GPT has a flint boot partition (docs/disk-image.md) supplies
//! the kernel, initrd and command line. `loader` reads the GPT and the UKI or vmlinux headers
//! and says where each piece lies; this module reads the pieces straight to where the
//! hand-offs want them. The disk is any `ReadAt`, so all but finding the devices runs in
//! host tests.

use crate::bzimage;
use crate::disk::{Disk, DiskError};
use crate::error::BootError;
use crate::handoff::{Handoff, Platform};
use crate::layout;
use crate::memory::Memory;
use crate::payload::{self, Initrd, Source};
use crate::pci::{ConfigSpace, Function};
use crate::pvh;
use crate::virtio;
use loader::boot_image::{self, BootImage, Extent, ImageError, Segment};
use loader::bzimage::{BzImage, KernelError};
use loader::gpt::{Gpt, GptError, Partition, FLINT_BOOT};
use loader::plan::PlanError;
use loader::read_at::{ReadAt, Window, WindowError};

#[cfg(test)]
mod tests;

/// Boots the first disk that has a boot partition; when none has, the first disk's problem
/// is the one reported. `add_init` puts the embedded init in front of the disk's initrd.
pub fn prepare<C: ConfigSpace + Clone>(
    config: &C,
    pci: &[Function],
    probe_mmio: bool,
    add_init: bool,
    platform: &Platform,
    memory: &mut impl Memory,
) -> Result<Handoff, BootError> {
    let mut config = config.clone();
    let pci_disks =
        pci.iter().filter(|f| virtio::is_block_device(f)).map(|function| virtio::pci_device(&mut config, function));
    let mut first_problem = None;
    for device in pci_disks.chain(virtio::mmio_block_devices(probe_mmio)) {
        let mut disk = Disk::new(device.map_err(|_| BootError::Virtio)?);
        let size = disk.size();
        match find_boot_partition(&mut disk, size) {
            Ok(partition) => return boot_partition(&mut disk, &partition, add_init, platform, memory),
            Err(problem) => first_problem = first_problem.or(Some(problem)),
        }
    }
    Err(first_problem.unwrap_or(BootError::NoKernel))
}

fn find_boot_partition<D: ReadAt<Error = DiskError>>(disk: &mut D, len: u64) -> Result<Partition, BootError> {
    let gpt = Gpt::read(disk, len).map_err(gpt_error)?;
    gpt.find(disk, &FLINT_BOOT).map_err(gpt_error)?.ok_or(BootError::NoBootPartition)
}

/// The boot partition as the hand-offs' `Source`: where the kernel and initrd lie in it.
struct Pieces<'a, D> {
    partition: Window<'a, D>,
    kernel: Extent,
    initrd: Option<Extent>,
}

impl<D: ReadAt<Error = DiskError>> Pieces<'_, D> {
    /// Reads `extent` of the partition into `dest`.
    fn read(&mut self, extent: Extent, dest: &mut [u8]) -> Result<(), BootError> {
        self.partition.read_at(extent.offset, dest).map_err(window_error)
    }
}

impl<D: ReadAt<Error = DiskError>> Source for Pieces<'_, D> {
    fn read_kernel(&mut self, dest: &mut [u8]) -> Result<(), BootError> {
        self.read(self.kernel, dest)
    }

    fn read_initrd(&mut self, dest: &mut [u8]) -> Result<(), BootError> {
        match self.initrd {
            Some(initrd) => self.read(initrd, dest),
            None => Ok(()),
        }
    }
}

fn boot_partition<D: ReadAt<Error = DiskError>>(
    disk: &mut D,
    partition: &Partition,
    add_init: bool,
    platform: &Platform,
    memory: &mut impl Memory,
) -> Result<Handoff, BootError> {
    let mut window = Window::new(disk, partition.start, partition.len);
    let image = boot_image::probe(&mut window, partition.len).map_err(image_error)?;
    match image {
        BootImage::Uki { linux, initrd, cmdline } => {
            let cmdline_len = read_cmdline(memory, &mut window, cmdline)?;
            let setup = memory.bytes_mut(layout::SETUP_BLOB, linux.len.min(layout::SETUP_BLOB_MAX as u64) as usize);
            window.read_at(linux.offset, setup).map_err(window_error)?;
            let kernel = BzImage::parse(setup).map_err(BootError::Kernel)?;
            let setup_size = (u64::from(kernel.setup_sects()) + 1) * 512;
            let truncated = KernelError::Truncated { len: linux.len as usize, need: setup_size as usize + 1 };
            let kernel_size = linux.len.checked_sub(setup_size).filter(|&size| size > 0);
            let kernel_size = kernel_size.ok_or(BootError::Kernel(truncated))?;
            let initrd_size = initrd.map_or(0, |e| e.len);
            let initrd_plan = Initrd::new(initrd_size, add_init);
            let mut pieces = Pieces {
                partition: window,
                kernel: Extent { offset: linux.offset + setup_size, len: kernel_size },
                initrd,
            };
            let load = bzimage::load(memory, &kernel, platform, kernel_size, cmdline_len, &initrd_plan, &mut pieces)?;
            Ok(bzimage::hand_off(memory, &kernel, &load, initrd_plan.size(), platform, 0))
        }
        BootImage::Pvh { entry, kernel, segments, segment_count, initrd, cmdline } => {
            let cmdline_len = read_cmdline(memory, &mut window, cmdline)?;
            let mut pieces = Pieces { partition: window, kernel: Extent { offset: 0, len: 0 }, initrd };
            for segment in segments.iter().take(segment_count) {
                load_segment(memory, &mut pieces, segment, platform)?;
            }
            let initrd_plan = Initrd::new(initrd.map_or(0, |e| e.len), add_init);
            pvh::hand_off(memory, platform, entry, kernel.segments(), cmdline_len, &initrd_plan, &mut pieces)
        }
    }
}

fn read_cmdline<D: ReadAt<Error = DiskError>>(
    memory: &mut impl Memory,
    window: &mut Window<'_, D>,
    cmdline: Option<Extent>,
) -> Result<usize, BootError> {
    let Some(extent) = cmdline else {
        return payload::store_cmdline(memory, 0, |_| Ok(()));
    };
    payload::store_cmdline(memory, extent.len, |dest| window.read_at(extent.offset, dest).map_err(window_error))
}

/// A PVH kernel's segment goes to its physical address, which must be RAM above the
/// firmware's low-memory areas and within the identity map.
fn load_segment<D: ReadAt<Error = DiskError>>(
    memory: &mut impl Memory,
    pieces: &mut Pieces<'_, D>,
    segment: &Segment,
    platform: &Platform,
) -> Result<(), BootError> {
    let fits = segment.paddr >= layout::LOW_MEMORY_END
        && segment.paddr.checked_add(segment.memsz).is_some_and(|end| end <= 1 << 32)
        && platform.map.is_ram(segment.paddr, segment.memsz);
    if !fits {
        let need = segment.paddr.saturating_add(segment.memsz);
        return Err(BootError::Plan(PlanError::KernelDoesNotFit { need, ram: platform.map.total_ram() }));
    }
    // The initrd is placed clear of the kernel's segments afterwards.
    let dest = memory.bytes_mut(segment.paddr, segment.memsz as usize);
    // The loader checked that the file part fits in memory.
    let (file, zero) = dest
        .split_at_mut_checked(segment.file.len as usize)
        .ok_or(BootError::Image(ImageError::Damaged("a PT_LOAD segment's file size exceeds its memory size")))?;
    pieces.read(segment.file, file)?;
    zero.fill(0);
    Ok(())
}

/// The loader's errors carry the reader's error type; the disk's own failures are reported
/// as such, the rest as what is wrong with the image.
fn gpt_error(e: GptError<DiskError>) -> BootError {
    match e {
        GptError::Io(e) => BootError::Disk(e),
        GptError::NoGpt => BootError::Gpt(GptError::NoGpt),
        GptError::BadHeaderCrc => BootError::Gpt(GptError::BadHeaderCrc),
        GptError::BadEntriesCrc => BootError::Gpt(GptError::BadEntriesCrc),
        GptError::Damaged(what) => BootError::Gpt(GptError::Damaged(what)),
        GptError::BadPartition { number, problem } => BootError::Gpt(GptError::BadPartition { number, problem }),
    }
}

fn window_error(e: WindowError<DiskError>) -> BootError {
    match e {
        WindowError::Inner(e) => BootError::Disk(e),
        WindowError::OutOfRange => BootError::Image(ImageError::Truncated { what: "a part of the boot image" }),
    }
}

fn image_error(e: ImageError<WindowError<DiskError>>) -> BootError {
    BootError::Image(match e {
        ImageError::Io(e) => return window_error(e),
        ImageError::UnknownFormat => ImageError::UnknownFormat,
        ImageError::NotX86_64 => ImageError::NotX86_64,
        ImageError::NoLinuxSection => ImageError::NoLinuxSection,
        ImageError::Truncated { what } => ImageError::Truncated { what },
        ImageError::Damaged(what) => ImageError::Damaged(what),
        ImageError::Pvh(e) => ImageError::Pvh(e),
        ImageError::Unsupported(what) => ImageError::Unsupported(what),
    })
}
