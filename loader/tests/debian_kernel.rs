//! Checks the crate against a real distribution kernel: Debian's cloud bzImage, which
//! scripts/setup.sh downloads into the cache.

use loader::bzimage::BzImage;
use loader::e820::{MemoryMap, RAM};
use loader::plan::{plan, PlanError};
use std::path::PathBuf;

const MIB: u64 = 1 << 20;

fn vmlinuz() -> Vec<u8> {
    let cache = std::env::var_os("FLINT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is unset")).join(".cache/flint"));
    let path = cache.join("kernels/debian-cloud/vmlinuz");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run scripts/setup.sh to fetch it", path.display()))
}

fn ram(size: u64) -> MemoryMap {
    let mut map = MemoryMap::new();
    map.mark(0, size.min(3 * 1024 * MIB), RAM).unwrap();
    if size > 3 * 1024 * MIB {
        map.mark(4 * 1024 * MIB, size - 3 * 1024 * MIB, RAM).unwrap();
    }
    map.with_legacy_low_memory().unwrap()
}

#[test]
fn debian_cloud_kernel_parses_and_plans() {
    let file = vmlinuz();
    // In the file setup_sects is as built (QEMU serves the same bytes, header-patched).
    let setup_len = (usize::from(file[0x1F1]) + 1) * 512;
    let kernel = BzImage::parse(&file[..setup_len]).unwrap();
    assert!(kernel.protocol() >= 0x20F, "protocol {:#x}", kernel.protocol());
    assert!(kernel.xloadflags() & 1 != 0);
    let kernel_size = (file.len() - setup_len) as u64;
    let initrd = 8 * MIB;
    for size in [128 * MIB, 6 * 1024 * MIB] {
        let p = plan(&kernel, &ram(size), kernel_size, initrd, 100, &[]).unwrap();
        assert_eq!(p.kernel_addr, kernel.pref_address());
        assert!(p.initrd_addr >= p.kernel_addr + p.kernel_extent && p.initrd_addr + initrd <= 4096 * MIB);
    }
    let err = plan(&kernel, &ram(32 * MIB), kernel_size, initrd, 100, &[]).unwrap_err();
    assert!(matches!(err, PlanError::KernelDoesNotFit { .. }), "{err}");
    assert!(err.to_string().ends_with(": raise -m"), "{err}");
}
