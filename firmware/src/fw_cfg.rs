//! QEMU's firmware configuration device (QEMU `docs/specs/fw_cfg.rst`): a keyed store of
//! blobs (kernel, initrd, command line, ACPI tables, memory map) that the firmware reads once.
//! Bulk data moves by DMA straight to its final address; byte-wise port reads are the fallback.

/// Well-known item keys.
pub mod key {
    pub const SIGNATURE: u16 = 0x00;
    pub const ID: u16 = 0x01;
    pub const KERNEL_ADDR: u16 = 0x07;
    pub const KERNEL_SIZE: u16 = 0x08;
    pub const KERNEL_ENTRY: u16 = 0x10;
    pub const INITRD_SIZE: u16 = 0x0b;
    pub const KERNEL_DATA: u16 = 0x11;
    pub const INITRD_DATA: u16 = 0x12;
    pub const CMDLINE_ADDR: u16 = 0x13;
    pub const CMDLINE_SIZE: u16 = 0x14;
    pub const CMDLINE_DATA: u16 = 0x15;
    pub const SETUP_ADDR: u16 = 0x16;
    pub const SETUP_SIZE: u16 = 0x17;
    pub const SETUP_DATA: u16 = 0x18;
    pub const FILE_DIR: u16 = 0x19;
}

const FEATURE_DMA: u32 = 1 << 1;
/// QEMU serves at most 32 files unless its `x-file-slots` property is raised.
const MAX_FILES: usize = 64;
const NAME_LEN: usize = 56;
const DIR_ENTRY_LEN: usize = 64;

/// The device's registers, behind a trait so the protocol logic runs in host tests.
pub trait Transport {
    fn select(&mut self, key: u16);
    /// Reads the next bytes of the selected item through the data register.
    fn read(&mut self, buf: &mut [u8]);
    /// Selects `key` and reads `dest.len()` bytes into `dest` by DMA.
    fn dma_read(&mut self, key: u16, dest: &mut [u8]) -> Result<(), DmaError>;
    /// Selects `key`, skips `offset` bytes and writes `src` by DMA.
    fn dma_write(&mut self, key: u16, offset: u32, src: &[u8]) -> Result<(), DmaError>;
}

#[derive(Debug, PartialEq, Eq)]
pub struct DmaError;

#[derive(Clone, Copy)]
pub struct File {
    pub select: u16,
    pub size: u32,
}

pub struct FwCfg<T: Transport> {
    transport: T,
    dma: bool,
    /// The directory as QEMU serves it, searched in place: a big-endian count, then per file a
    /// big-endian size and select key, two reserved bytes and a NUL-padded name.
    directory: [u8; 4 + DIR_ENTRY_LEN * MAX_FILES],
    file_count: usize,
}

impl<T: Transport> FwCfg<T> {
    /// An unprobed device, made where it stays: `detect` fills it in place, as returning a
    /// probed one would copy its 4 KiB directory.
    pub fn new(transport: T) -> Self {
        FwCfg { transport, dma: false, directory: [0; 4 + DIR_ENTRY_LEN * MAX_FILES], file_count: 0 }
    }

    /// Checks the "QEMU" signature, learns whether DMA works and reads the file directory.
    pub fn detect(&mut self) -> bool {
        if &self.port_read4(key::SIGNATURE) != b"QEMU" {
            return false;
        }
        self.dma = u32::from_le_bytes(self.port_read4(key::ID)) & FEATURE_DMA != 0;
        self.read_directory();
        true
    }

    /// An item's first four bytes through the data register, as DMA is not known to work yet.
    /// Out of line: inlined, each of the two calls would be translated.
    #[inline(never)]
    fn port_read4(&mut self, key: u16) -> [u8; 4] {
        let mut bytes = [0u8; 4];
        self.transport.select(key);
        self.transport.read(&mut bytes);
        bytes
    }

    /// `new` and `detect` in one, for tests.
    #[cfg(test)]
    pub fn probe(transport: T) -> Option<Self> {
        let mut cfg = Self::new(transport);
        cfg.detect().then_some(cfg)
    }

    /// Re-reads the file directory: selecting some files makes QEMU regenerate and resize them.
    /// Out of line: probing and the ACPI loader both call it.
    #[inline(never)]
    pub fn read_directory(&mut self) {
        // One transfer for the count and every entry the buffer holds: by DMA that is one exit
        // instead of thousands, and QEMU gives zeroes past the directory's end. (Without DMA,
        // which x86 QEMU has had since 2.9, that is 4 KiB of port reads.)
        read(&mut self.transport, self.dma, key::FILE_DIR, &mut self.directory);
        let count = u32::from_be_bytes([self.directory[0], self.directory[1], self.directory[2], self.directory[3]]);
        self.file_count = (count as usize).min(MAX_FILES);
    }

    pub fn has_dma(&self) -> bool {
        self.dma
    }

    pub fn find(&self, name: &[u8]) -> Option<File> {
        let entries = self.directory.get(4..4 + DIR_ENTRY_LEN * self.file_count).unwrap_or_default();
        for entry in entries.chunks_exact(DIR_ENTRY_LEN) {
            let stored = &entry[8..];
            let len = stored.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
            if &stored[..len] == name {
                return Some(File {
                    size: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
                    select: u16::from_be_bytes([entry[4], entry[5]]),
                });
            }
        }
        None
    }

    /// Reads the first `dest.len()` bytes of an item (out of line, in `read`).
    pub fn read(&mut self, key: u16, dest: &mut [u8]) {
        read(&mut self.transport, self.dma, key, dest)
    }

    #[inline(never)]
    pub fn read_u32(&mut self, key: u16) -> u32 {
        let mut value = [0u8; 4];
        self.read(key, &mut value);
        u32::from_le_bytes(value)
    }

    /// Selects a file without reading it, which runs QEMU's callbacks for it.
    pub fn select_file(&mut self, file: &File) {
        self.transport.select(file.select);
    }

    pub fn read_file(&mut self, file: &File, dest: &mut [u8]) {
        self.read(file.select, dest)
    }

    /// Writes into a writable file (ACPI's WRITE_POINTER); QEMU only accepts writes by DMA.
    pub fn write_file(&mut self, file: &File, offset: u32, src: &[u8]) -> Result<(), DmaError> {
        if !self.dma {
            return Err(DmaError);
        }
        self.transport.dma_write(file.select, offset, src)
    }
}

/// `FwCfg::read` on the parts it needs, so the directory can be read into the device's own
/// buffer. Out of line, as `read_u32`: under TCG each inlined copy would be translated again,
/// and reads come from a dozen places.
#[inline(never)]
fn read<T: Transport>(transport: &mut T, dma: bool, key: u16, dest: &mut [u8]) {
    if dma && transport.dma_read(key, dest).is_ok() {
        return;
    }
    transport.select(key);
    transport.read(dest);
}

#[cfg(test)]
pub mod fake {
    //! An in-memory fw_cfg device for host tests of everything that reads it.
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeFwCfg {
        pub items: BTreeMap<u16, Vec<u8>>,
        pub dma: bool,
        selected: u16,
        offset: usize,
        pub writes: Vec<(u16, u32, Vec<u8>)>,
    }

    impl FakeFwCfg {
        /// A device with the signature, the feature bits and a directory of `files`.
        pub fn with_files(dma: bool, files: &[(&str, Vec<u8>)]) -> Self {
            let mut fake = FakeFwCfg { dma, ..Default::default() };
            fake.items.insert(key::SIGNATURE, b"QEMU".to_vec());
            fake.items.insert(key::ID, (1 | if dma { FEATURE_DMA } else { 0 }).to_le_bytes().to_vec());
            let mut dir = (files.len() as u32).to_be_bytes().to_vec();
            for (i, (name, data)) in files.iter().enumerate() {
                let select = 0x20 + i as u16;
                dir.extend((data.len() as u32).to_be_bytes());
                dir.extend(select.to_be_bytes());
                dir.extend([0, 0]);
                let mut padded = [0u8; NAME_LEN];
                padded[..name.len()].copy_from_slice(name.as_bytes());
                dir.extend(padded);
                fake.items.insert(select, data.clone());
            }
            fake.items.insert(key::FILE_DIR, dir);
            fake
        }
    }

    impl Transport for &mut FakeFwCfg {
        fn select(&mut self, key: u16) {
            self.selected = key;
            self.offset = 0;
        }
        fn read(&mut self, buf: &mut [u8]) {
            let item = self.items.get(&self.selected).cloned().unwrap_or_default();
            for b in buf.iter_mut() {
                *b = item.get(self.offset).copied().unwrap_or(0);
                self.offset += 1;
            }
        }
        fn dma_read(&mut self, key: u16, dest: &mut [u8]) -> Result<(), DmaError> {
            assert!(self.dma, "DMA used on a device without DMA");
            self.select(key);
            self.read(dest);
            Ok(())
        }
        fn dma_write(&mut self, key: u16, offset: u32, src: &[u8]) -> Result<(), DmaError> {
            self.writes.push((key, offset, src.to_vec()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeFwCfg;
    use super::*;

    #[test]
    fn finds_files_and_reads_them_with_and_without_dma() {
        for dma in [false, true] {
            let mut dev = FakeFwCfg::with_files(dma, &[("etc/e820", vec![1, 2, 3]), ("etc/acpi/rsdp", vec![9; 36])]);
            let mut cfg = FwCfg::probe(&mut dev).expect("signature");
            assert_eq!(cfg.has_dma(), dma);
            let file = cfg.find(b"etc/acpi/rsdp").expect("file present");
            assert_eq!(file.size, 36);
            let mut buf = [0u8; 36];
            cfg.read_file(&file, &mut buf);
            assert_eq!(buf, [9; 36]);
            assert!(cfg.find(b"etc/acpi").is_none(), "prefix must not match");
        }
    }

    #[test]
    fn rejects_a_device_without_signature() {
        let mut dev = FakeFwCfg::default();
        assert!(FwCfg::probe(&mut dev).is_none());
    }

    #[test]
    fn writes_need_dma() {
        let mut dev = FakeFwCfg::with_files(false, &[("etc/vmgenid_addr", vec![0; 8])]);
        let mut cfg = FwCfg::probe(&mut dev).unwrap();
        let file = cfg.find(b"etc/vmgenid_addr").unwrap();
        assert_eq!(cfg.write_file(&file, 0, &[1]), Err(DmaError));
    }

    mod fuzz {
        //! The directory is QEMU's bytes: whatever they hold, probing keeps to its limits and
        //! finds exactly the entries a straightforward reading of the format gives.
        use super::super::fake::FakeFwCfg;
        use super::super::*;
        use proptest::prelude::*;

        /// One directory entry as QEMU lays it out (big-endian size and select, a 56-byte name).
        fn entry(size: u32, select: u16, name: &[u8]) -> Vec<u8> {
            let mut entry = size.to_be_bytes().to_vec();
            entry.extend(select.to_be_bytes());
            entry.extend([0, 0]);
            let mut padded = [0u8; NAME_LEN];
            padded[..name.len().min(NAME_LEN)].copy_from_slice(&name[..name.len().min(NAME_LEN)]);
            entry.extend(padded);
            entry
        }

        /// Directories with any count (above the 64 entries kept too), names that repeat,
        /// lack a NUL or hold one early, and items cut short or padded with junk.
        fn directory() -> impl Strategy<Value = Vec<u8>> {
            let name = prop::collection::vec(prop::sample::select(b"ab/\0\xff".to_vec()), 0..=NAME_LEN + 2);
            let entries = prop::collection::vec((any::<u32>(), any::<u16>(), name), 0..140);
            let count = prop_oneof![Just(None), Just(Some(u32::MAX)), Just(Some(129)), (0..200u32).prop_map(Some)];
            let end = prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)];
            (entries, count, end, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(entries, count, end, junk)| {
                let count = count.unwrap_or(entries.len() as u32);
                let mut raw = count.to_be_bytes().to_vec();
                for (size, select, name) in &entries {
                    raw.extend(entry(*size, *select, name));
                }
                if let Some(end) = end {
                    raw.truncate(end.index(raw.len() + 1));
                }
                raw.extend(junk);
                raw
            })
        }

        /// The directory read plainly, with the fake's zeroes past an item's end.
        fn model(raw: &[u8]) -> Vec<(u32, u16, Vec<u8>)> {
            let byte = |at: usize| raw.get(at).copied().unwrap_or(0);
            let count = u32::from_be_bytes([byte(0), byte(1), byte(2), byte(3)]).min(MAX_FILES as u32) as usize;
            (0..count)
                .map(|i| {
                    let at = 4 + i * DIR_ENTRY_LEN;
                    let size = u32::from_be_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)]);
                    let select = u16::from_be_bytes([byte(at + 4), byte(at + 5)]);
                    let name: Vec<u8> = (0..NAME_LEN).map(|j| byte(at + 8 + j)).take_while(|&b| b != 0).collect();
                    (size, select, name)
                })
                .collect()
        }

        fn device(dma: bool, raw: Vec<u8>) -> FakeFwCfg {
            let mut fake = FakeFwCfg::with_files(dma, &[]);
            fake.items.insert(key::FILE_DIR, raw);
            fake
        }

        fn check_against_model(cfg: &FwCfg<&mut FakeFwCfg>, raw: &[u8]) -> Result<(), TestCaseError> {
            let model = model(raw);
            prop_assert!(cfg.file_count <= MAX_FILES);
            prop_assert_eq!(cfg.file_count, model.len());
            for (_, _, name) in &model {
                let found = cfg.find(name);
                prop_assert!(found.is_some(), "{:?} not found", name);
                let found = found.unwrap();
                // The first entry of that name wins.
                let first = model.iter().find(|(_, _, other)| other == name).unwrap();
                prop_assert_eq!((found.size, found.select), (first.0, first.1));
            }
            // Names the directory cannot hold are never found.
            prop_assert!(cfg.find(&[b'a'; NAME_LEN + 1]).is_none());
            prop_assert!(cfg.find(b"a\0").is_none());
            Ok(())
        }

        /// A transport that regenerates the directory when a file is selected, as QEMU does
        /// for its ACPI files.
        struct Regenerating<'a> {
            fake: &'a mut FakeFwCfg,
            next: Option<Vec<u8>>,
        }

        impl Transport for &mut Regenerating<'_> {
            fn select(&mut self, key: u16) {
                if key > key::FILE_DIR {
                    if let Some(next) = self.next.take() {
                        self.fake.items.insert(key::FILE_DIR, next);
                    }
                }
                (&mut *self.fake).select(key)
            }
            fn read(&mut self, buf: &mut [u8]) {
                (&mut *self.fake).read(buf)
            }
            fn dma_read(&mut self, key: u16, dest: &mut [u8]) -> Result<(), DmaError> {
                (&mut *self.fake).dma_read(key, dest)
            }
            fn dma_write(&mut self, key: u16, offset: u32, src: &[u8]) -> Result<(), DmaError> {
                (&mut *self.fake).dma_write(key, offset, src)
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_directory_is_read_within_limits(raw in directory(), dma in any::<bool>()) {
                let mut dev = device(dma, raw.clone());
                let cfg = FwCfg::probe(&mut dev).expect("signature");
                check_against_model(&cfg, &raw)?;
            }

            /// Re-reading a directory that changed (grown, shrunk, garbled) forgets the old one.
            #[test]
            fn a_reread_directory_replaces_the_old(first in directory(), second in directory(), dma in any::<bool>()) {
                let mut dev = device(dma, first.clone());
                let mut regenerating = Regenerating { fake: &mut dev, next: Some(second.clone()) };
                let mut cfg = FwCfg::probe(&mut regenerating).expect("signature");
                let model_first = model(&first);
                prop_assert_eq!(cfg.file_count, model_first.len());
                cfg.select_file(&File { select: key::FILE_DIR + 1, size: 0 });
                cfg.read_directory();
                let model_second = model(&second);
                prop_assert_eq!(cfg.file_count, model_second.len());
                for (_, _, name) in &model_first {
                    let found = cfg.find(name);
                    let expected = model_second.iter().find(|(_, _, other)| other == name);
                    prop_assert_eq!(found.map(|f| (f.size, f.select)), expected.map(|e| (e.0, e.1)));
                }
            }

            /// Reading any item into any buffer, with and without DMA, fills exactly the buffer.
            #[test]
            fn items_read_into_buffers_of_any_size(data in prop::collection::vec(any::<u8>(), 0..300), len in 0..400usize, dma in any::<bool>()) {
                let mut dev = FakeFwCfg::with_files(dma, &[("etc/x", data.clone())]);
                let mut cfg = FwCfg::probe(&mut dev).unwrap();
                let file = cfg.find(b"etc/x").unwrap();
                prop_assert_eq!(file.size as usize, data.len());
                let mut buf = vec![0xa5; len];
                cfg.read_file(&file, &mut buf);
                let expected: Vec<u8> = (0..len).map(|i| data.get(i).copied().unwrap_or(0)).collect();
                prop_assert_eq!(buf, expected);
            }
        }
    }
}
