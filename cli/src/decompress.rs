//! Decompressing what Linux compresses: a bzImage's payload (every compression x86 kernels can
//! be built with) and modules (`.ko.xz`, `.ko.zst`, `.ko.gz`). The format is recognised by its
//! magic bytes, never by a file name.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, Read};

/// More than any kernel or module decompresses to: corrupt or hostile data stops here instead
/// of exhausting memory.
const LIMIT: usize = 1 << 30;
/// The memory liblzma may use; `xz -9` needs 65 MiB, Linux's build uses a 32 MiB dictionary.
const LZMA_MEMLIMIT: u64 = 256 << 20;
/// The largest block of Linux's lz4 legacy frame (`lz4 -l`).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

struct Format {
    magic: &'static [u8],
    name: &'static str,
    /// Decompresses data that starts with `magic` into at most `limit` bytes.
    decode: fn(&[u8], usize) -> Result<Vec<u8>>,
}

/// What Linux's build compresses kernels (`CONFIG_KERNEL_*`) and modules with. Its build
/// appends the uncompressed size (4 bytes) to a kernel's stream: each decoder stops at the
/// stream's end and ignores it.
const FORMATS: [Format; 7] = [
    Format { magic: &[0x1f, 0x8b], name: "gzip", decode: gzip },
    Format { magic: b"BZh", name: "bzip2", decode: bzip2 },
    // The .lzma header: properties 0x5d (lc=3 lp=0 pb=2), then a dictionary size whose low two
    // bytes are 0 (a multiple of 64 KiB), as every lzma preset's is.
    Format { magic: &[0x5d, 0, 0], name: "lzma", decode: lzma },
    Format { magic: b"\xfd7zXZ\0", name: "xz", decode: xz },
    Format { magic: &lzop::MAGIC, name: "lzo", decode: lzop::decode },
    Format { magic: &[0x02, 0x21, 0x4c, 0x18], name: "lz4", decode: lz4_legacy },
    Format { magic: &[0x28, 0xb5, 0x2f, 0xfd], name: "zstd", decode: zstd },
];

fn format(data: &[u8]) -> Option<&'static Format> {
    FORMATS.iter().find(|format| data.starts_with(format.magic))
}

/// The compression `data` is in, by its magic bytes: "gzip", "bzip2", "lzma", "xz", "lzo",
/// "lz4" or "zstd".
pub fn format_name(data: &[u8]) -> Option<&'static str> {
    format(data).map(|format| format.name)
}

/// Decompresses a kernel payload or a module, recognising the format by its magic bytes.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    decompress_at_most(data, LIMIT)
}

fn decompress_at_most(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    if data.is_empty() {
        bail!("there is no data to decompress: it is empty");
    }
    let Some(format) = format(data) else {
        let start: Vec<String> = data.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
        bail!(
            "unknown compression: the data starts with {}, the magic bytes of none of gzip, bzip2, lzma, xz, lzo, \
             lz4 and zstd",
            start.join(" ")
        );
    };
    (format.decode)(data, limit).map_err(|e| {
        // Decoders' messages for data that ends early vary, and some repeat their sources.
        let reason = if truncated(&e) { "it is truncated".to_string() } else { e.to_string() };
        anyhow!("{} data is corrupt: {reason}", format.name)
    })
}

/// Whether decoding failed because the data ended early: the readers say so with an I/O error
/// somewhere in the chain.
fn truncated(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof))
}

fn too_big(limit: usize) -> anyhow::Error {
    anyhow!("it decompresses to more than {} MiB, more than any kernel or module", limit >> 20)
}

/// Reads `decoder` to its end, refusing more than `limit` bytes.
fn read_at_most(decoder: impl Read, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decoder.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(too_big(limit));
    }
    Ok(out)
}

/// One gzip member: a multi-member reader would take the kernel's size trailer for another.
fn gzip(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    read_at_most(flate2::bufread::GzDecoder::new(data), limit)
}

fn bzip2(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    read_at_most(bzip2::bufread::BzDecoder::new(data), limit)
}

fn lzma(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let stream = liblzma::stream::Stream::new_lzma_decoder(LZMA_MEMLIMIT)?;
    read_at_most(liblzma::bufread::XzDecoder::new_stream(data, stream), limit)
}

/// One xz stream, with any filter chain (distribution kernels use x86 BCJ + LZMA2) and check.
fn xz(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let stream = liblzma::stream::Stream::new_stream_decoder(LZMA_MEMLIMIT, 0)?;
    read_at_most(liblzma::bufread::XzDecoder::new_stream(data, stream), limit)
}

/// One zstd frame; ruzstd computes the frame's checksum but leaves comparing it to the caller.
fn zstd(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(data)?;
    let out = read_at_most(&mut decoder, limit)?;
    let frame = &decoder.decoder;
    if frame.get_checksum_from_data().is_some_and(|stored| Some(stored) != frame.get_calculated_checksum()) {
        bail!("its checksum does not match");
    }
    Ok(out)
}

/// Linux's lz4 legacy frame (`lz4 -l`): the magic, then blocks each prefixed by their length
/// (u32le), up to the end of the data or the kernel's size trailer.
fn lz4_legacy(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut rest = &data[4..];
    let mut out = Vec::new();
    while !rest.is_empty() && rest != (out.len() as u32).to_le_bytes() {
        let (len, blocks) = rest.split_first_chunk::<4>().context("it is truncated")?;
        let len = u32::from_le_bytes(*len) as usize;
        let block = blocks.get(..len).context("it is truncated")?;
        out.extend(lz4_flex::block::decompress(block, LZ4_LEGACY_BLOCK)?);
        if out.len() > limit {
            return Err(too_big(limit));
        }
        rest = &blocks[len..];
    }
    Ok(out)
}

/// The lzop file format, which Linux's build writes for lzo (`lzop -9`): a header, then
/// blocks of LZO1X data until a block of length 0.
mod lzop {
    use anyhow::{bail, Context, Result};

    pub const MAGIC: [u8; 9] = [0x89, b'L', b'Z', b'O', 0, 0x0d, 0x0a, 0x1a, 0x0a];
    /// The header flags that change what follows (lzop's `F_*`).
    const ADLER32_D: u32 = 0x1;
    const ADLER32_C: u32 = 0x2;
    const EXTRA_FIELD: u32 = 0x40;
    const CRC32_D: u32 = 0x100;
    const CRC32_C: u32 = 0x200;
    const FILTER: u32 = 0x800;
    /// Headers from lzop 0.94 on have these fields: version needed, level, mtime's high half.
    const V0940: u16 = 0x0940;
    /// lzop's block size limit (`MAX_BLOCK_SIZE`): no header may make us allocate more.
    const MAX_BLOCK: usize = 64 << 20;

    /// The data not read yet; each read fails, instead of panicking, past its end.
    struct Input<'a>(&'a [u8]);

    impl<'a> Input<'a> {
        fn bytes(&mut self, len: usize) -> Result<&'a [u8]> {
            let (bytes, rest) = self.0.split_at_checked(len).context("it is truncated")?;
            self.0 = rest;
            Ok(bytes)
        }

        fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
            let (array, rest) = self.0.split_first_chunk().context("it is truncated")?;
            self.0 = rest;
            Ok(*array)
        }

        fn u8(&mut self) -> Result<u8> {
            Ok(self.array::<1>()?[0])
        }

        fn u16(&mut self) -> Result<u16> {
            Ok(u16::from_be_bytes(self.array()?))
        }

        fn u32(&mut self) -> Result<u32> {
            Ok(u32::from_be_bytes(self.array()?))
        }
    }

    /// Reads the header past the magic; returns its flags.
    fn header(input: &mut Input) -> Result<u32> {
        let version = input.u16()?;
        input.u16()?; // the LZO library's version
        if version >= V0940 {
            input.u16()?;
        }
        // 1, 2 and 3 are LZO1X-1, LZO1X-1(15) and LZO1X-999: one decoder for all three.
        let method = input.u8()?;
        if !(1..=3).contains(&method) {
            bail!("its method {method} is not LZO1X");
        }
        if version >= V0940 {
            input.u8()?;
        }
        let flags = input.u32()?;
        if flags & FILTER != 0 {
            bail!("it was made with lzop's --filter, which flint does not undo");
        }
        input.bytes(8)?; // mode, mtime
        if version >= V0940 {
            input.u32()?;
        }
        let name_len = input.u8()?;
        input.bytes(usize::from(name_len))?;
        input.u32()?; // the header's checksum
        if flags & EXTRA_FIELD != 0 {
            let len = input.u32()?;
            input.bytes(len as usize)?;
            input.u32()?;
        }
        Ok(flags)
    }

    pub fn decode(data: &[u8], limit: usize) -> Result<Vec<u8>> {
        let mut input = Input(&data[MAGIC.len()..]);
        let flags = header(&mut input)?;
        let mut out = Vec::new();
        loop {
            let len = input.u32()? as usize;
            if len == 0 {
                return Ok(out);
            }
            let compressed_len = input.u32()? as usize;
            if len > MAX_BLOCK || compressed_len > len {
                bail!("a block's header is invalid (length {len}, compressed {compressed_len})");
            }
            if out.len() + len > limit {
                return Err(super::too_big(limit));
            }
            let adler32 = if flags & ADLER32_D != 0 { Some(input.u32()?) } else { None };
            let crc32 = if flags & CRC32_D != 0 { Some(input.u32()?) } else { None };
            // A block that did not shrink is stored as it is, without the compressed data's
            // checksums (the uncompressed data's are checked).
            let stored = compressed_len == len;
            for flag in [ADLER32_C, CRC32_C] {
                if !stored && flags & flag != 0 {
                    input.u32()?;
                }
            }
            let block = input.bytes(compressed_len)?;
            let start = out.len();
            if stored {
                out.extend_from_slice(block);
            } else {
                out.resize(start + len, 0);
                let decoded = lzokay::decompress::decompress(block, &mut out[start..])
                    .map_err(|e| anyhow::anyhow!("a block does not decode ({e})"))?;
                if decoded != len {
                    bail!("a block decodes to {decoded} bytes, its header says {len}");
                }
            }
            let block = &out[start..];
            if adler32.is_some_and(|sum| sum != adler2::adler32_slice(block))
                || crc32.is_some_and(|sum| sum != crc32fast::hash(block))
            {
                bail!("a block's checksum does not match");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liblzma::stream::{Check, Filters, LzmaOptions, Stream};
    use proptest::prelude::*;
    use std::io::Write;
    use std::sync::OnceLock;

    /// Text with x86 calls (0xe8 rel32, what the BCJ filter rewrites) for two thirds, random
    /// bytes (which do not shrink) for the last third.
    fn sample(len: usize) -> Vec<u8> {
        let text = b"flint boots Linux in QEMU fast\xe8\x10\x20\x00\x00\n";
        let mut seed = 0x2545_f491u32;
        let mut random = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        (0..len).map(|i| if i < len * 2 / 3 { text[i % text.len()] } else { random() }).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn liblzma(data: &[u8], stream: Stream) -> Vec<u8> {
        let mut out = Vec::new();
        liblzma::read::XzEncoder::new_stream(data, stream).read_to_end(&mut out).unwrap();
        out
    }

    /// As Linux's build compresses a kernel: x86 BCJ, then LZMA2, with a CRC32 check.
    fn xz_bcj(data: &[u8]) -> Vec<u8> {
        let mut filters = Filters::new();
        filters.x86().lzma2(&LzmaOptions::new_preset(6).unwrap());
        liblzma(data, Stream::new_stream_encoder(&filters, Check::Crc32).unwrap())
    }

    /// Data in blocks of a third of it: several blocks, and the last one random.
    fn blocks(data: &[u8]) -> std::slice::Chunks<'_, u8> {
        data.chunks(data.len().div_ceil(3).max(1))
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x02, 0x21, 0x4c, 0x18];
        for chunk in blocks(data) {
            let block = lz4_flex::block::compress(chunk);
            out.extend((block.len() as u32).to_le_bytes());
            out.extend(block);
        }
        out
    }

    /// An lzop file like `lzop -9`'s, with every checksum lzop can write (of the data and of
    /// the compressed blocks); a block that does not shrink is stored.
    fn lzop(data: &[u8]) -> Vec<u8> {
        let mut out = lzop::MAGIC.to_vec();
        out.extend([0x10, 0x40, 0x20, 0xa0, 0x09, 0x40]); // versions: lzop, LZO, needed
        out.extend([3, 9]); // LZO1X-999, level 9
        out.extend(0x0000_0303u32.to_be_bytes()); // F_ADLER32_D | F_ADLER32_C | F_CRC32_D | F_CRC32_C
        out.extend([0; 12]); // mode, mtime
        out.push(7); // the name's length
        out.extend(b"vmlinux");
        out.extend(adler2::adler32_slice(&out[lzop::MAGIC.len()..]).to_be_bytes()); // the header's
        for chunk in blocks(data) {
            let packed = lzokay::compress::compress(chunk).unwrap();
            let body = if packed.len() < chunk.len() { &packed[..] } else { chunk };
            out.extend((chunk.len() as u32).to_be_bytes());
            out.extend((body.len() as u32).to_be_bytes());
            out.extend(adler2::adler32_slice(chunk).to_be_bytes());
            out.extend(crc32fast::hash(chunk).to_be_bytes());
            if body.len() < chunk.len() {
                out.extend(adler2::adler32_slice(body).to_be_bytes());
                out.extend(crc32fast::hash(body).to_be_bytes());
            }
            out.extend(body);
        }
        out.extend([0; 4]);
        out
    }

    /// `data` compressed by real encoders in each format, with the name it must be found as.
    fn streams(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("gzip", gzip(data)),
            ("bzip2", bzip2(data)),
            ("lzma", liblzma(data, Stream::new_lzma_encoder(&LzmaOptions::new_preset(6).unwrap()).unwrap())),
            ("xz", xz_bcj(data)),
            // As xz compresses a module by default: LZMA2 with a CRC64 check.
            ("xz", liblzma(data, Stream::new_easy_encoder(6, Check::Crc64).unwrap())),
            ("lzo", lzop(data)),
            ("lz4", lz4_legacy(data)),
            ("zstd", ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)),
        ]
    }

    #[test]
    fn round_trips_every_format() {
        let data = sample(300_000);
        for (name, stream) in streams(&data) {
            assert_eq!(format_name(&stream), Some(name));
            assert_eq!(decompress(&stream).unwrap(), data, "{name}");
            // A kernel's payload: Linux's build appends the uncompressed size.
            let payload = [&stream[..], &(data.len() as u32).to_le_bytes()].concat();
            assert_eq!(decompress(&payload).unwrap(), data, "{name} with the size trailer");
        }
    }

    #[test]
    fn truncated_data_is_an_error() {
        for (name, stream) in streams(&sample(100_000)) {
            for len in [10, stream.len() / 2, stream.len() - 1] {
                let error = decompress(&stream[..len]).unwrap_err().to_string();
                assert_eq!(error, format!("{name} data is corrupt: it is truncated"));
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // lzma and lz4 have no checksum: corrupt data may decode to something else.
        for (name, mut stream) in
            streams(&sample(100_000)).into_iter().filter(|(name, _)| !["lzma", "lz4"].contains(name))
        {
            let middle = stream.len() / 2;
            stream[middle] ^= 0x55;
            assert!(decompress(&stream).is_err(), "{name}");
        }
    }

    #[test]
    fn refuses_to_decompress_past_the_limit() {
        // Zeros: cheap to compress in every format.
        for (name, stream) in streams(&[0; 1_100_000]) {
            let error = decompress_at_most(&stream, 1 << 20).unwrap_err().to_string();
            assert_eq!(
                error,
                format!("{name} data is corrupt: it decompresses to more than 1 MiB, more than any kernel or module")
            );
        }
    }

    #[test]
    fn names_what_it_does_not_know() {
        assert_eq!(format_name(b"\x7fELF"), None);
        let error = decompress(b"\x7fELF\x02\x01\x01").unwrap_err().to_string();
        assert!(error.starts_with("unknown compression: the data starts with 7f 45 4c 46 02 01, "), "{error}");
        assert_eq!(decompress(b"").unwrap_err().to_string(), "there is no data to decompress: it is empty");
    }

    /// Small streams, for many decodes.
    fn small_streams() -> &'static [(&'static str, Vec<u8>)] {
        static STREAMS: OnceLock<Vec<(&str, Vec<u8>)>> = OnceLock::new();
        STREAMS.get_or_init(|| streams(&sample(6_000)))
    }

    proptest! {
        #[test]
        fn random_data_never_panics(magic in 0..=FORMATS.len(), tail in prop::collection::vec(any::<u8>(), 0..4096)) {
            let magic = FORMATS.get(magic).map_or(&[][..], |format| format.magic);
            let _ = decompress(&[magic, &tail].concat());
        }

        #[test]
        fn mutated_streams_never_panic(
            stream in any::<prop::sample::Index>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            len in any::<prop::sample::Index>(),
        ) {
            let mut stream = stream.get(small_streams()).1.clone();
            for (at, byte) in edits {
                *at.get_mut(&mut stream) = byte;
            }
            stream.truncate(len.index(stream.len()) + 1);
            let _ = decompress(&stream);
        }
    }
}
