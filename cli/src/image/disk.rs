//! The disk: a GPT made by `sfdisk` (boot partition, then root partition, 1 MiB aligned), then
//! each partition's content written at the offset sfdisk reports. The file stays sparse.

use super::{file_len, mib};
use crate::env::{self, progress, Fix};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Stdio;

/// The Discoverable Partitions Specification has no type for a boot image; this is flint's.
pub const BOOT_TYPE: &str = "6AF119E6-6761-4A72-BB47-A541EDCC1854";
/// "Root Partition (x86-64)" of the Discoverable Partitions Specification.
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// Writes the disk at `out` (through a temporary file, so a failure leaves nothing behind).
pub fn write(out: &Path, boot: &Path, root: &Path) -> Result<()> {
    env::require_tool("sfdisk", "fdisk")?;
    let (boot_len, root_len) = (file_len(boot)?, file_len(root)?);
    let (boot_size, root_size) = (boot_len.next_multiple_of(MIB), root_len.next_multiple_of(MIB));
    // 1 MiB in front for the protective MBR and the GPT, 1 MiB behind for the backup GPT.
    let disk_size = MIB + boot_size + root_size + MIB;
    let tmp = env::temp_sibling(out);
    let result = (|| {
        File::create(&tmp)
            .and_then(|file| file.set_len(disk_size))
            .fix(format_args!("cannot create {}", out.display()), "pass a writable output path")?;
        partition(&tmp, boot_size, root_size)?;
        let [boot_start, root_start] = starts(&tmp)?;
        let mut disk = std::fs::OpenOptions::new().write(true).open(&tmp)?;
        copy_sparse(boot, &mut disk, boot_start)?;
        copy_sparse(root, &mut disk, root_start)?;
        disk.sync_all()?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    progress(format!(
        "wrote {} ({}: boot partition {}, root partition {})",
        out.display(),
        mib(disk_size),
        mib(boot_size),
        mib(root_size)
    ));
    Ok(())
}

fn partition(disk: &Path, boot_size: u64, root_size: u64) -> Result<()> {
    let script = format!(
        "label: gpt\nsize={}, type={BOOT_TYPE}, name=flint-boot\nsize={}, type={ROOT_TYPE}, name=flint-root\n",
        boot_size / SECTOR,
        root_size / SECTOR
    );
    let mut child = env::command("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start sfdisk")?;
    child.stdin.take().expect("piped").write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("sfdisk failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Where sfdisk put the two partitions, in bytes.
fn starts(disk: &Path) -> Result<[u64; 2]> {
    let json = env::tool_output(env::command("sfdisk").arg("--json").arg(disk))?;
    let table: serde_json::Value = serde_json::from_str(&json).context("sfdisk --json printed something else")?;
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(SECTOR);
    let start = |index: usize| table["partitions"][index]["start"].as_u64().map(|lba| lba * sector);
    match (start(0), start(1)) {
        (Some(boot), Some(root)) => Ok([boot, root]),
        _ => bail!("sfdisk --json does not list the two partitions it was asked for: {json}"),
    }
}

/// Copies `source` into `disk` at `offset`, skipping blocks of zeros (the disk is sparse, and
/// root images are mostly empty room).
fn copy_sparse(source: &Path, disk: &mut File, offset: u64) -> Result<()> {
    const BLOCK: usize = 64 << 10;
    let mut input = File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut buf = vec![0u8; BLOCK];
    let mut at = offset;
    loop {
        let mut len = 0;
        while len < BLOCK {
            match input.read(&mut buf[len..])? {
                0 => break,
                read => len += read,
            }
        }
        if len == 0 {
            return Ok(());
        }
        if buf[..len].iter().any(|&b| b != 0) {
            disk.seek(SeekFrom::Start(at))?;
            disk.write_all(&buf[..len])?;
        }
        at += len as u64;
    }
}
