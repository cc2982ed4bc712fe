//! Property tests: no input, however malformed, makes any entry point panic, and whatever
//! succeeds keeps its promises.

use crate::bzimage::BzImage;
use crate::e820::{MemoryMap, RAM};
use crate::layout::{INITRD_ADDR_MAX, INIT_SIZE, KERNEL_ALIGNMENT, PREF_ADDRESS};
use crate::plan::plan;
use crate::range::{self, FOUR_GIB, MIB};
use crate::setup_data::{relocate_chain, Blob, MAX_NODES};
use crate::testutil::{e820_bytes, node, setup_blob, write};
use proptest::collection::vec;
use proptest::prelude::*;

/// Mostly small MiB-granular values so ranges collide, sometimes anything at all.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => (0u64..96).prop_map(|m| m * MIB), 1 => any::<u64>()]
}

/// Mostly RAM.
fn kind() -> impl Strategy<Value = u32> {
    prop_oneof![2 => Just(RAM), 1 => 0u32..7]
}

/// Map edits as (start, size, kind).
fn edits(max: usize) -> impl Strategy<Value = Vec<(u64, u64, u32)>> {
    vec((addr(), addr(), kind()), 0..max)
}

/// The table stays sorted, disjoint, non-empty and merged.
fn assert_normal(map: &MemoryMap) {
    let e = map.entries();
    assert!(e.iter().all(|e| e.size > 0));
    assert!(e.windows(2).all(|w| {
        let (a, b) = (w[0], w[1]);
        a.addr + a.size < b.addr || (a.addr + a.size == b.addr && a.kind != b.kind)
    }));
}

fn kind_at(map: &MemoryMap, x: u64) -> Option<u32> {
    map.entries().iter().find(|e| e.addr <= x && x - e.addr < e.size).map(|e| e.kind)
}

/// Inside the edited range the map holds the new kind, outside it what it held before;
/// probed at every boundary of either map and of the range, and next to each.
fn assert_edited(before: &MemoryMap, after: &MemoryMap, (start, size, kind): (u64, u64, Option<u32>)) {
    let bounds = before.entries().iter().chain(after.entries()).flat_map(|e| [e.addr, e.addr + e.size]);
    for b in bounds.chain([start, start.saturating_add(size)]) {
        for x in [b.wrapping_sub(1), b] {
            let inside = x >= start && x - start < size;
            assert_eq!(kind_at(after, x), if inside { kind } else { kind_at(before, x) }, "at {x:#x}");
        }
    }
}

/// Kind 6 punches a hole; a failed edit must leave the map as it was.
fn apply(map: &mut MemoryMap, edits: &[(u64, u64, u32)]) {
    for &(start, size, kind) in edits {
        let before = map.clone();
        let result = if kind == 6 { map.set(start, size, None) } else { map.mark(start, size, kind) };
        if result.is_err() {
            assert_eq!(*map, before);
        } else {
            assert_edited(&before, map, (start, size, (kind != 6).then_some(kind)));
        }
        assert_normal(map);
    }
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_never_panics(noise in vec(any::<u8>(), 0..1200), edits in vec((0x1F0usize..0x270, any::<u8>()), 0..8),
                       len in prop_oneof![0usize..1024, Just(1024)]) {
        let _ = BzImage::parse(&noise);
        let mut b = setup_blob();
        for (off, v) in edits {
            b[off] = v;
        }
        b.truncate(len);
        if let Ok(k) = BzImage::parse(&b) {
            prop_assert_eq!(k.header().len(), k.header_end() - 0x1F1);
        }
    }

    #[test]
    fn map_edits_keep_the_table_normal(raw in vec(any::<u8>(), 0..100), entries in edits(20),
                                       edits in edits(40), size in 0..16 * MIB, align in addr(), limit in addr(),
                                       avoid in vec((addr(), addr()), 0..4)) {
        let _ = MemoryMap::from_qemu(&raw);
        let Ok(mut map) = MemoryMap::from_qemu(&e820_bytes(&entries)) else { return Ok(()) };
        assert_normal(&map);
        apply(&mut map, &edits);
        if let Ok(legacy) = map.clone().with_legacy_low_memory() {
            map = legacy;
        }
        prop_assert!(map.ram_top_below_4g() <= FOUR_GIB);
        prop_assert!(map.total_ram() >= size || map.highest_fit(size, 1, u64::MAX, &[]).is_none());
        let clear = |s: u64| map.is_ram(s, size) && s.is_multiple_of(align.max(1)) && !avoid.iter().any(|&a| range::overlaps(a, (s, size)));
        if let Some(s) = map.highest_fit(size, align, limit, &avoid) {
            prop_assert!(clear(s) && s + size <= limit);
        }
        if let Some(s) = map.lowest_fit(size, align, limit, &avoid) {
            prop_assert!(clear(s) && s >= limit);
        }
    }

    #[test]
    fn relocation_never_panics(nodes in vec((0usize..10, 0u32..24), 1..8), cut in 0usize..400, base in addr(),
                               dest_len in 0usize..400, dest_addr in addr(), noise in vec(any::<u8>(), 0..64)) {
        // Nodes back to back; each `next` names a node by index, the end, or the noise blob.
        let mut offsets = vec![];
        let mut at = 0u64;
        for &(_, len) in &nodes {
            offsets.push(at);
            at += 16 + u64::from(len);
        }
        let mut blob = vec![];
        for &(next, len) in &nodes {
            let next = match offsets.get(next) {
                Some(o) => base.wrapping_add(*o),
                None if next == 9 => 0x1000,
                None => 0,
            };
            blob.extend(node(next, 9, &vec![0x5A; len as usize]));
        }
        blob.truncate(cut);
        let blobs = [Blob { qemu_addr: base, bytes: &blob }, Blob { qemu_addr: 0x1000, bytes: &noise }];
        let mut dest = vec![0; dest_len];
        if let Ok(mut addr) = relocate_chain(base, &blobs, &mut dest, dest_addr) {
            let mut walked = 0;
            while addr != 0 {
                prop_assert!(addr.is_multiple_of(8) && walked < MAX_NODES);
                addr = crate::le::u64_at(&dest, (addr - dest_addr) as usize).unwrap();
                walked += 1;
            }
        }
    }

    #[test]
    fn plans_are_sound(pref in addr(), init_size in 1u32..64 << 20, align_log in 0u32..32, initrd_max in any::<u32>(),
                       edits in edits(6), kernel_size in 0..40 * MIB, initrd_size in 0..40 * MIB, cmdline_len in 0usize..2100,
                       reserved in vec((addr(), addr()), 0..4)) {
        let mut b = setup_blob();
        write(&mut b, PREF_ADDRESS, &pref.to_le_bytes());
        write(&mut b, INIT_SIZE, &init_size.to_le_bytes());
        write(&mut b, KERNEL_ALIGNMENT, &(1u32 << align_log).to_le_bytes());
        write(&mut b, INITRD_ADDR_MAX, &initrd_max.to_le_bytes());
        let kernel = BzImage::parse(&b).unwrap();
        let mut map = MemoryMap::new();
        map.mark(0, 96 * MIB, RAM).unwrap();
        apply(&mut map, &edits);
        let free = |r| !reserved.iter().any(|&a| range::overlaps(a, r));
        if let Ok(p) = plan(&kernel, &map, kernel_size, initrd_size, cmdline_len, &reserved) {
            let k = (p.kernel_addr, p.kernel_extent);
            prop_assert!(map.is_ram(k.0, k.1) && free(k) && p.kernel_addr >= MIB);
            if initrd_size > 0 {
                let i = (p.initrd_addr, initrd_size);
                prop_assert!(map.is_ram(i.0, i.1) && free(i) && !range::overlaps(i, k));
                prop_assert!(i.0.is_multiple_of(4096) && i.0 + i.1 <= FOUR_GIB.min(u64::from(initrd_max) + 1));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// ELF parsing of arbitrary bytes, and of a valid kernel with bytes overwritten, never panics.
    #[test]
    fn pvh_parsing_never_panics(bytes in vec(any::<u8>(), 0..512), at in 0usize..512, patch in vec(any::<u8>(), 0..16)) {
        let _ = crate::pvh::KernelImage::parse(&bytes);
        let _ = crate::pvh::entry_point(&bytes);
        let mut elf = crate::testutil::tiny_vmlinux(true);
        for (i, b) in patch.iter().enumerate() {
            if let Some(slot) = elf.get_mut(at + i) { *slot = *b; }
        }
        let _ = crate::pvh::KernelImage::parse(&elf);
        let _ = crate::pvh::entry_point(&elf);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// GPT reading of noise, and of a valid disk with header or entry bytes overwritten (CRCs
    /// fixed up or not, so the field checks are reached too), never panics.
    #[test]
    fn gpt_reading_never_panics(noise in vec(any::<u8>(), 0..2048), patches in vec((512usize..1024 + 512, any::<u8>()), 0..12),
                                reseal in any::<bool>(), claimed_len in prop_oneof![Just(None), any::<u64>().prop_map(Some)]) {
        use crate::gpt::{Gpt, FLINT_BOOT, ROOT_X86_64};
        use crate::testutil::{gpt_disk, reseal_gpt, DISK_SECTORS};
        let _ = Gpt::read(&mut &noise[..], noise.len() as u64);
        let mut disk = gpt_disk(&[(FLINT_BOOT, 40, 60), (ROOT_X86_64, 61, DISK_SECTORS - 34)]);
        for (at, value) in patches {
            disk[at] = value;
        }
        if reseal {
            reseal_gpt(&mut disk);
        }
        let len = claimed_len.unwrap_or(disk.len() as u64);
        if let Ok(gpt) = Gpt::read(&mut &disk[..], len) {
            for kind in [FLINT_BOOT, ROOT_X86_64] {
                if let Ok(Some(part)) = gpt.find(&mut &disk[..], &kind) {
                    prop_assert!(part.len > 0 && part.start.checked_add(part.len).is_some_and(|end| end <= len));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Boot image probing of noise, and of valid UKIs and vmlinuxes with bytes overwritten,
    /// never panics; whatever it accepts lies within the image.
    #[test]
    fn boot_image_probing_never_panics(noise in vec(any::<u8>(), 0..600), pvh in any::<bool>(),
                                       patches in vec((0usize..0x700, any::<u8>()), 0..8), cut in 0usize..0x800) {
        use crate::boot_image::{probe, BootImage, Extent};
        use crate::testutil::{tiny_uki, vmlinux_with};
        let _ = probe(&mut &noise[..], noise.len() as u64);
        let mut image = if pvh {
            vmlinux_with(true, &[(".initrd", b"070701", 0), (".cmdline", b"quiet", 0)])
        } else {
            tiny_uki(&[(b".linux\0\0", &[0xb0; 0x100]), (b".initrd\0", b"070701"), (b".cmdline", b"quiet")])
        };
        for (at, value) in patches {
            if let Some(byte) = image.get_mut(at) {
                *byte = value;
            }
        }
        image.truncate(cut);
        let len = image.len() as u64;
        let inside = |e: &Extent| e.offset.checked_add(e.len).is_some_and(|end| end <= len);
        match probe(&mut &image[..], len) {
            Ok(BootImage::Uki { linux, initrd, cmdline }) => {
                prop_assert!(inside(&linux) && initrd.iter().chain(&cmdline).all(inside));
            }
            Ok(BootImage::Pvh { segments, segment_count, initrd, cmdline, .. }) => {
                prop_assert!(segments[..segment_count].iter().all(|s| inside(&s.file) && s.file.len <= s.memsz));
                prop_assert!(initrd.iter().chain(&cmdline).all(inside));
            }
            Err(_) => {}
        }
    }
}
