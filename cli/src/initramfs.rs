//! newc cpio archives, the format Linux unpacks into its initial root filesystem.
//! Archives may be concatenated; Linux unpacks them in order.

use std::io::{self, Write};
use std::path::Path;

const MODE_DIR: u32 = 0o040000;
const MODE_FILE: u32 = 0o100000;
const MODE_SYMLINK: u32 = 0o120000;

/// Collects entries in memory, then writes them as one archive.
#[derive(Default)]
pub struct Initramfs {
    entries: Vec<(String, u32, Vec<u8>)>,
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory and, first, any parent directories not added yet.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        let path = path.trim_matches('/');
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.entries.iter().any(|(name, _, _)| *name == prefix) {
                self.entries.push((prefix.clone(), MODE_DIR | 0o755, Vec::new()));
            }
        }
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> &mut Self {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push((path.to_string(), MODE_FILE | (mode & 0o7777), data.into()));
        self
    }

    pub fn file_from(&mut self, path: &str, mode: u32, source: &Path) -> io::Result<&mut Self> {
        let data = std::fs::read(source).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
        Ok(self.file(path, mode, data))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push((path.to_string(), MODE_SYMLINK | 0o777, target.as_bytes().to_vec()));
        self
    }

    pub fn write_to<W: Write>(&self, mut out: W) -> io::Result<W> {
        for (ino, (name, mode, data)) in self.entries.iter().enumerate() {
            let size = u32::try_from(data.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: larger than 4 GiB")))?;
            let mut writer = cpio::newc::Builder::new(name)
                .ino(ino as u32 + 1)
                .mode(*mode)
                .nlink(if mode & MODE_DIR == MODE_DIR { 2 } else { 1 })
                .write(out, size);
            writer.write_all(data)?;
            out = writer.finish()?;
        }
        cpio::newc::trailer(out)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.write_to(Vec::new()).expect("writing to memory cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_cpio_reader() {
        let mut archive = Initramfs::new();
        archive.file("/bin/tool", 0o755, b"payload".to_vec()).symlink("/sbin/tool", "../bin/tool");
        let bytes = archive.to_bytes();
        let mut names = Vec::new();
        let mut rest = &bytes[..];
        loop {
            let reader = cpio::newc::Reader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            names.push((reader.entry().name().to_string(), reader.entry().file_size()));
            rest = reader.finish().unwrap();
        }
        assert_eq!(names, [("bin".into(), 0), ("bin/tool".into(), 7), ("sbin".into(), 0), ("sbin/tool".into(), 11)]);
    }
}
