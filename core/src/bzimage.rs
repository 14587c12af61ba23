//! Unpacking a Linux x86 `bzImage` into the `vmlinux` ELF inside it, so that
//! the PVH builder can load a kernel as distributions ship it.
//!
//! A bzImage is the real-mode setup code (`setup_sects` sectors after the
//! boot sector) followed by the protected-mode part, which holds the
//! compressed kernel at `payload_offset` for `payload_length` bytes (boot
//! protocol 2.08 and later). The kernel build appends the uncompressed size
//! as a little-endian 32-bit word to every payload (for gzip it coincides
//! with the gzip trailer's ISIZE), which bounds the output buffer before a
//! byte is decompressed.
//!
//! Payloads: xz (with the x86 BCJ filter, as the kernel build makes them:
//! `xz4rust`), gzip (header parsed here, deflate by `miniz_oxide`, CRC-32
//! and size checked here) and zstd (`ruzstd`, content checksum checked).
//! Everything is bounds-checked: any input gives a value or an error, never
//! a panic.
//!
//! [`decode`] returns the ELF in a `Vec`; [`decompress_into`] writes it into
//! a caller's buffer (the hypervisor uses frames from its frame allocator,
//! not its heap, for the tens of MiB a distribution kernel unpacks to).
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// The largest decompressed kernel accepted (Debian's is about 63 MiB).
pub const MAX_DECOMPRESSED: usize = 128 << 20;

/// The largest zstd window accepted by [`decode`] (the window lives on the
/// heap while decoding).
pub const DEFAULT_ZSTD_MAX_WINDOW: u64 = 128 << 20;

const SETUP_SECTS: usize = 0x1F1;
const HEADER_MAGIC_AT: usize = 0x202;
const VERSION_AT: usize = 0x206;
const PAYLOAD_OFFSET_AT: usize = 0x248;
const PAYLOAD_LENGTH_AT: usize = 0x24C;
/// First boot protocol with `payload_offset`/`payload_length`.
const MIN_PROTOCOL: u16 = 0x0208;

const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];

/// The payload's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952).
    Gzip,
    /// xz (LZMA2, usually behind the x86 BCJ filter).
    Xz,
    /// Zstandard.
    Zstd,
}

impl core::fmt::Display for Compression {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        })
    }
}

/// Why a bzImage cannot be unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// No boot protocol header (`HdrS` at 0x202).
    NotABzImage,
    /// A boot protocol older than 2.08 (no payload fields).
    UnsupportedProtocol(u16),
    /// The image ends before its payload does, or the payload ends early.
    Truncated,
    /// The payload is not gzip, xz or zstd (its first bytes).
    UnknownPayload([u8; 4]),
    /// The payload does not decompress (what the decoder said).
    Corrupt(String),
    /// It would decompress to more than [`MAX_DECOMPRESSED`] bytes, or needs
    /// more decoder memory than allowed (the size asked for).
    TooLarge(u64),
    /// The caller's output or scratch buffer is smaller than
    /// [`Payload::size`] or [`Payload::scratch_size`].
    BufferTooSmall,
}

impl core::fmt::Display for BzImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotABzImage => f.write_str("not a bzImage (no HdrS boot protocol header)"),
            Self::UnsupportedProtocol(v) => write!(
                f,
                "bzImage boot protocol {}.{:02} is older than 2.08 (no payload fields)",
                v >> 8,
                v & 0xff
            ),
            Self::Truncated => f.write_str("truncated bzImage (the payload runs past the end)"),
            Self::UnknownPayload(magic) => write!(
                f,
                "bzImage payload is not gzip, xz or zstd (starts {:02x} {:02x} {:02x} {:02x})",
                magic[0], magic[1], magic[2], magic[3]
            ),
            Self::Corrupt(why) => write!(f, "corrupt bzImage payload: {why}"),
            Self::TooLarge(n) => write!(
                f,
                "bzImage payload needs {n} bytes, above the limit of {MAX_DECOMPRESSED}"
            ),
            Self::BufferTooSmall => f.write_str("output or scratch buffer too small"),
        }
    }
}

/// The compressed kernel inside a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Boot protocol version (e.g. 0x020f).
    pub protocol: u16,
    /// How it is compressed.
    pub compression: Compression,
    /// The compressed bytes (without the appended size word for xz and
    /// zstd; gzip keeps its own trailer).
    pub data: &'a [u8],
    /// The decompressed size, from the appended size word.
    pub size: usize,
}

fn le16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Whether `image` starts with a Linux x86 boot protocol header.
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) == Some(b"HdrS")
}

/// Finds the compressed kernel in `image`.
pub fn payload(image: &[u8]) -> Result<Payload<'_>, BzImageError> {
    if !is_bzimage(image) {
        return Err(BzImageError::NotABzImage);
    }
    let protocol = le16(image, VERSION_AT).ok_or(BzImageError::Truncated)?;
    if protocol < MIN_PROTOCOL {
        return Err(BzImageError::UnsupportedProtocol(protocol));
    }
    let setup_sects = match image.get(SETUP_SECTS).ok_or(BzImageError::Truncated)? {
        0 => 4,
        &n => n as usize,
    };
    let offset = le32(image, PAYLOAD_OFFSET_AT).ok_or(BzImageError::Truncated)? as usize;
    let length = le32(image, PAYLOAD_LENGTH_AT).ok_or(BzImageError::Truncated)? as usize;
    let start = setup_sects
        .checked_add(1)
        .and_then(|sects| sects.checked_mul(512))
        .and_then(|setup| setup.checked_add(offset))
        .ok_or(BzImageError::Truncated)?;
    let end = start.checked_add(length).ok_or(BzImageError::Truncated)?;
    let bytes = image.get(start..end).ok_or(BzImageError::Truncated)?;
    let compression = if bytes.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if bytes.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if bytes.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        let mut magic = [0; 4];
        for (to, from) in magic.iter_mut().zip(bytes) {
            *to = *from;
        }
        return Err(BzImageError::UnknownPayload(magic));
    };
    if bytes.len() < 4 + 8 {
        return Err(BzImageError::Truncated);
    }
    // Everything but the size word appended at the end.
    let body_len = bytes.len().checked_sub(4).ok_or(BzImageError::Truncated)?;
    let size = le32(bytes, body_len).ok_or(BzImageError::Truncated)? as usize;
    if size > MAX_DECOMPRESSED {
        return Err(BzImageError::TooLarge(size as u64));
    }
    if size == 0 {
        return Err(BzImageError::Corrupt(String::from(
            "the appended size word says 0 bytes",
        )));
    }
    let data = match compression {
        Compression::Gzip => bytes,
        Compression::Xz | Compression::Zstd => {
            bytes.get(..body_len).ok_or(BzImageError::Truncated)?
        }
    };
    Ok(Payload {
        protocol,
        compression,
        data,
        size,
    })
}

impl Payload<'_> {
    /// Scratch bytes [`decompress_into`] needs besides the output: the xz
    /// dictionary (from the first block header), nothing for the others.
    pub fn scratch_size(&self) -> Result<usize, BzImageError> {
        match self.compression {
            Compression::Xz => {
                let dict = xz_dictionary_size(self.data)?;
                if dict > MAX_DECOMPRESSED as u64 {
                    return Err(BzImageError::TooLarge(dict));
                }
                Ok(dict as usize)
            }
            Compression::Gzip | Compression::Zstd => Ok(0),
        }
    }
}

/// Decompresses `image`'s kernel into a new vector (the `vmlinux` ELF).
pub fn decode(image: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let payload = payload(image)?;
    let mut scratch = vec![0u8; payload.scratch_size()?];
    let mut out = vec![0u8; payload.size];
    decompress_into(&payload, &mut out, &mut scratch, DEFAULT_ZSTD_MAX_WINDOW)?;
    Ok(out)
}

/// Decompresses an xz `payload` of the kind kernel builds make into `out`
/// with the single-call decoder ([`crate::unxz`]), which needs no scratch
/// buffer; `None` for anything else (another compression, another kind of
/// xz, a damaged stream, too small an `out`): [`decompress_general`] then.
pub fn decompress_single(payload: &Payload<'_>, out: &mut [u8]) -> Option<usize> {
    if payload.compression != Compression::Xz {
        return None;
    }
    let out = out.get_mut(..payload.size)?;
    crate::unxz::decode(payload.data, out)
        .ok()
        .filter(|&size| size == payload.size)
}

/// Decompresses `payload` into `out` (at least [`Payload::size`] bytes)
/// with `scratch` (at least [`Payload::scratch_size`] bytes) and returns the
/// number of bytes written, which is always [`Payload::size`]: the
/// single-call decoder first ([`decompress_single`]), then
/// [`decompress_general`]. A zstd frame whose window is above
/// `zstd_max_window` is refused (`TooLarge`): its window is allocated on the
/// heap.
pub fn decompress_into(
    payload: &Payload<'_>,
    out: &mut [u8],
    scratch: &mut [u8],
    zstd_max_window: u64,
) -> Result<usize, BzImageError> {
    if scratch.len() < payload.scratch_size()? {
        return Err(BzImageError::BufferTooSmall);
    }
    match decompress_single(payload, out) {
        Some(size) => Ok(size),
        None => decompress_general(payload, out, scratch, zstd_max_window),
    }
}

/// As [`decompress_into`], without trying the single-call decoder (for a
/// caller that did, and allocates `scratch` only when it failed).
pub fn decompress_general(
    payload: &Payload<'_>,
    out: &mut [u8],
    scratch: &mut [u8],
    zstd_max_window: u64,
) -> Result<usize, BzImageError> {
    if out.len() < payload.size || scratch.len() < payload.scratch_size()? {
        return Err(BzImageError::BufferTooSmall);
    }
    let out = out
        .get_mut(..payload.size)
        .ok_or(BzImageError::BufferTooSmall)?;
    let written = match payload.compression {
        Compression::Xz => unxz_general(payload.data, out, scratch)?,
        Compression::Gzip => gunzip(payload.data, out)?,
        Compression::Zstd => unzstd(payload.data, out, zstd_max_window)?,
    };
    if written != payload.size {
        return Err(BzImageError::Corrupt(format!(
            "{} bytes decompressed, the size word says {}",
            written, payload.size
        )));
    }
    Ok(written)
}

// ---- xz ----

fn xz_error(e: xz4rust::XzError) -> BzImageError {
    BzImageError::Corrupt(format!("xz: {e}"))
}

/// Reads an xz variable-length integer at `*at`.
fn xz_vli(data: &[u8], at: &mut usize) -> Result<u64, BzImageError> {
    let mut value = 0u64;
    // Nine groups of 7 bits: shifts 0, 7, ..., 56.
    for shift in (0..63).step_by(7) {
        let byte = *data.get(*at).ok_or(BzImageError::Truncated)?;
        *at = at.checked_add(1).ok_or(BzImageError::Truncated)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(BzImageError::Corrupt(String::from(
        "xz: integer longer than 9 bytes",
    )))
}

/// The LZMA2 dictionary size of the first block (0 for an empty stream).
fn xz_dictionary_size(data: &[u8]) -> Result<u64, BzImageError> {
    const STREAM_HEADER: usize = 12;
    let header_size = match *data.get(STREAM_HEADER).ok_or(BzImageError::Truncated)? {
        0 => return Ok(0), // the index: no block
        b => (usize::from(b))
            .checked_add(1)
            .and_then(|words| words.checked_mul(4))
            .ok_or(BzImageError::Truncated)?,
    };
    let header = STREAM_HEADER
        .checked_add(header_size)
        .and_then(|end| data.get(STREAM_HEADER..end))
        .ok_or(BzImageError::Truncated)?;
    let flags = *header.get(1).ok_or(BzImageError::Truncated)?;
    let mut at = 2;
    if flags & 0x40 != 0 {
        xz_vli(header, &mut at)?;
    }
    if flags & 0x80 != 0 {
        xz_vli(header, &mut at)?;
    }
    for _ in 0..=(flags & 3) {
        let id = xz_vli(header, &mut at)?;
        let props_size = xz_vli(header, &mut at)? as usize;
        let end = at.checked_add(props_size).ok_or(BzImageError::Truncated)?;
        let props = header.get(at..end).ok_or(BzImageError::Truncated)?;
        at = end;
        if id == 0x21 {
            let bits = *props.first().ok_or_else(|| {
                BzImageError::Corrupt(String::from("xz: LZMA2 filter without properties"))
            })?;
            if bits > 40 {
                return Err(BzImageError::Corrupt(String::from(
                    "xz: invalid LZMA2 dictionary size",
                )));
            }
            if bits == 40 {
                return Ok(u32::MAX as u64);
            }
            return Ok((2 | u64::from(bits & 1)) << (bits / 2) << 11);
        }
    }
    Err(BzImageError::Corrupt(String::from(
        "xz: first block has no LZMA2 filter",
    )))
}

/// An xz payload through [`xz4rust`] with the dictionary in `dict`.
fn unxz_general(data: &[u8], out: &mut [u8], dict: &mut [u8]) -> Result<usize, BzImageError> {
    // The decoder state is about 30 KiB: keep it off the stack's critical path.
    let mut decoder = Box::new(xz4rust::XzDecoder::with_fixed_size_dict(dict));
    let (mut read, mut written) = (0, 0);
    loop {
        // The decoder never reports more than it was given; checked anyway.
        let input = data.get(read..).ok_or(BzImageError::Truncated)?;
        let output = out.get_mut(written..).ok_or(BzImageError::Truncated)?;
        match decoder.decode(input, output) {
            Ok(xz4rust::XzNextBlockResult::EndOfStream(_, produced)) => {
                return written.checked_add(produced).ok_or(BzImageError::Truncated);
            }
            Ok(xz4rust::XzNextBlockResult::NeedMoreData(consumed, produced)) => {
                read = read.checked_add(consumed).ok_or(BzImageError::Truncated)?;
                written = written
                    .checked_add(produced)
                    .ok_or(BzImageError::Truncated)?;
                if consumed == 0 && produced == 0 {
                    return Err(if written == out.len() {
                        BzImageError::Corrupt(format!(
                            "xz: more than the {} bytes the size word says",
                            out.len()
                        ))
                    } else {
                        BzImageError::Truncated
                    });
                }
            }
            Err(xz4rust::XzError::NeedsLargerInputBuffer) => return Err(BzImageError::Truncated),
            Err(e) => return Err(xz_error(e)),
        }
    }
}

// ---- gzip ----

// Evaluated at compile time only (for `CRC32`): an overflow or a bad index
// here would fail the build, not run.
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
const fn crc32_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][n] = c;
        n += 1;
    }
    // Table t: the CRC of a byte followed by t zero bytes (slicing-by-8).
    let mut t = 1;
    while t < 8 {
        let mut n = 0;
        while n < 256 {
            let prev = tables[t - 1][n];
            tables[t][n] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            n += 1;
        }
        t += 1;
    }
    tables
}

static CRC32: [[u32; 256]; 8] = crc32_tables();

/// Table `t`'s entry for the low byte of `index` (always in range).
fn crc32_entry(t: usize, index: u32) -> u32 {
    CRC32
        .get(t)
        .and_then(|table| table.get((index & 0xFF) as usize))
        .copied()
        .unwrap_or(0)
}

/// The CRC-32 of gzip (and zlib, PNG, xz, ...), eight bytes a step.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) ^ crc;
        let hi = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        crc = crc32_entry(7, lo)
            ^ crc32_entry(6, lo >> 8)
            ^ crc32_entry(5, lo >> 16)
            ^ crc32_entry(4, lo >> 24)
            ^ crc32_entry(3, hi)
            ^ crc32_entry(2, hi >> 8)
            ^ crc32_entry(1, hi >> 16)
            ^ crc32_entry(0, hi >> 24);
    }
    for &byte in words.remainder() {
        crc = crc32_entry(0, crc ^ u32::from(byte)) ^ (crc >> 8);
    }
    !crc
}

/// Skips a zero-terminated string at `*at`.
fn skip_cstr(data: &[u8], at: &mut usize) -> Result<(), BzImageError> {
    let rest = data.get(*at..).ok_or(BzImageError::Truncated)?;
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(BzImageError::Truncated)?;
    *at = nul
        .checked_add(1)
        .and_then(|len| at.checked_add(len))
        .ok_or(BzImageError::Truncated)?;
    Ok(())
}

fn gunzip(data: &[u8], out: &mut [u8]) -> Result<usize, BzImageError> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let Some(&[_, _, method, flags, ..]) = data.get(..10) else {
        return Err(BzImageError::Truncated);
    };
    if method != 8 {
        return Err(BzImageError::Corrupt(String::from(
            "gzip: compression method is not deflate",
        )));
    }
    if flags & 0xE0 != 0 {
        return Err(BzImageError::Corrupt(String::from(
            "gzip: reserved header flags set",
        )));
    }
    let mut at = 10;
    if flags & 0x04 != 0 {
        let extra = le16(data, at).ok_or(BzImageError::Truncated)? as usize;
        at = extra
            .checked_add(2)
            .and_then(|len| at.checked_add(len))
            .ok_or(BzImageError::Truncated)?;
    }
    if flags & 0x08 != 0 {
        skip_cstr(data, &mut at)?;
    }
    if flags & 0x10 != 0 {
        skip_cstr(data, &mut at)?;
    }
    if flags & 0x02 != 0 {
        at = at.checked_add(2).ok_or(BzImageError::Truncated)?;
    }
    let deflate = data.get(at..).ok_or(BzImageError::Truncated)?;
    let mut state = Box::<DecompressorOxide>::default();
    let (status, consumed, produced) = decompress(
        &mut state,
        deflate,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
            return Err(BzImageError::Truncated)
        }
        TINFLStatus::HasMoreOutput => {
            return Err(BzImageError::Corrupt(format!(
                "gzip: more than the {} bytes the size word says",
                out.len()
            )))
        }
        other => return Err(BzImageError::Corrupt(format!("gzip: deflate: {other:?}"))),
    }
    let trailer = consumed
        .checked_add(8)
        .and_then(|end| deflate.get(consumed..end))
        .ok_or(BzImageError::Truncated)?;
    let crc = le32(trailer, 0).ok_or(BzImageError::Truncated)?;
    let isize = le32(trailer, 4).ok_or(BzImageError::Truncated)?;
    let produced_bytes = out.get(..produced).ok_or(BzImageError::Truncated)?;
    if crc != crc32(produced_bytes) {
        return Err(BzImageError::Corrupt(String::from("gzip: CRC-32 mismatch")));
    }
    if isize != produced as u32 {
        return Err(BzImageError::Corrupt(String::from("gzip: size mismatch")));
    }
    Ok(produced)
}

// ---- zstd ----

fn unzstd(data: &[u8], out: &mut [u8], max_window: u64) -> Result<usize, BzImageError> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    use ruzstd::decoding::FrameDecoder;
    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(max_window);
    match decoder.decode_all(data, out) {
        Ok(written) => {
            if let (Some(stored), Some(computed)) = (
                decoder.get_checksum_from_data(),
                decoder.get_calculated_checksum(),
            ) {
                if stored != computed {
                    return Err(BzImageError::Corrupt(String::from(
                        "zstd: content checksum mismatch",
                    )));
                }
            }
            Ok(written)
        }
        Err(FrameDecoderError::WindowSizeTooBig { requested, .. }) => {
            Err(BzImageError::TooLarge(requested))
        }
        Err(FrameDecoderError::ReadFrameHeaderError(
            ReadFrameHeaderError::MagicNumberReadError(_),
        )) => Err(BzImageError::Truncated),
        Err(e) => Err(BzImageError::Corrupt(format!("zstd: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf;

    // A 396-byte ELF64 PVH kernel (entry 0x100040, one PT_LOAD at 1 MiB),
    // compressed with `xz --check=crc32 --x86 --lzma2=preset=6,dict=1MiB`
    // (as the kernel build does, with a smaller dictionary), `gzip -9 -n`
    // and `zstd -19`.
    const ELF_SIZE: usize = 396;
    const ELF_XZ: &[u8] = &[
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x01, 0x04,
        0x00, 0x21, 0x01, 0x10, 0x00, 0x8b, 0x21, 0x6f, 0x49, 0xe0, 0x01, 0x8b, 0x00, 0x5d, 0x5d,
        0x00, 0x3f, 0x91, 0x45, 0x84, 0x68, 0x3d, 0x89, 0xa6, 0xda, 0x8a, 0xcc, 0x93, 0xe2, 0x4e,
        0xd9, 0x05, 0x05, 0x75, 0xbe, 0x44, 0xf8, 0x5d, 0x1b, 0x1e, 0x70, 0xf6, 0x2e, 0xf1, 0x6f,
        0xa0, 0x34, 0xfa, 0x92, 0x09, 0x8e, 0x0d, 0x1b, 0x8e, 0x8f, 0x8a, 0xad, 0x63, 0xda, 0x88,
        0xe6, 0x60, 0xaa, 0x3a, 0x44, 0xa5, 0x5b, 0x90, 0x60, 0xd6, 0x7f, 0x64, 0xa9, 0xcf, 0xe8,
        0x05, 0x5e, 0xdd, 0x7d, 0x38, 0xda, 0x8a, 0xd2, 0x5e, 0x88, 0x53, 0x8f, 0xa0, 0xcc, 0x1e,
        0x08, 0x91, 0x93, 0x1d, 0xc6, 0x46, 0x05, 0x16, 0x9b, 0x60, 0x9c, 0xb7, 0xc4, 0x48, 0xa4,
        0xf5, 0x25, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3e, 0xa0, 0xce, 0x79, 0x00, 0x01, 0x75,
        0x8c, 0x03, 0x00, 0x00, 0x00, 0xd2, 0xba, 0x19, 0xfe, 0x3e, 0x30, 0x0d, 0x8b, 0x02, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x59, 0x5a,
    ];
    const ELF_GZ: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x77, 0xf5, 0x71, 0x63,
        0x62, 0x64, 0x64, 0x80, 0x01, 0x26, 0x06, 0x3b, 0x06, 0x10, 0xcf, 0x81, 0x41, 0x00, 0xcc,
        0x77, 0x60, 0xc0, 0x04, 0x0e, 0x0c, 0x16, 0x40, 0x75, 0x10, 0xc0, 0x02, 0xc4, 0xac, 0x40,
        0xbc, 0x81, 0x01, 0x3b, 0x10, 0x41, 0xa3, 0x59, 0xa0, 0x34, 0x23, 0x54, 0xdf, 0x11, 0xb8,
        0x4a, 0x01, 0x14, 0xfa, 0x04, 0x4c, 0x58, 0x01, 0x55, 0x1f, 0x0b, 0x14, 0x0b, 0x01, 0x71,
        0x44, 0x6a, 0x1e, 0xd8, 0x9d, 0x45, 0x15, 0xa9, 0x79, 0x0a, 0x49, 0x55, 0x9e, 0xb9, 0x89,
        0xe9, 0xa9, 0x0a, 0x25, 0xa9, 0xc5, 0x25, 0x0a, 0xd9, 0xa9, 0x45, 0x79, 0xa9, 0x39, 0x5c,
        0x43, 0x4c, 0x02, 0x00, 0x3e, 0xa0, 0xce, 0x79, 0x8c, 0x01, 0x00, 0x00,
    ];
    const ELF_ZST: &[u8] = &[
        0x28, 0xb5, 0x2f, 0xfd, 0x64, 0x8c, 0x00, 0x55, 0x03, 0x00, 0x72, 0x08, 0x15, 0x1e, 0x90,
        0x2b, 0xad, 0x01, 0xf8, 0x76, 0xff, 0xff, 0xf1, 0x9a, 0xff, 0xa1, 0x86, 0xf4, 0x25, 0x52,
        0x34, 0xf9, 0x16, 0x1b, 0xda, 0xad, 0xd3, 0x7f, 0x17, 0x7d, 0x1b, 0xee, 0x9d, 0x02, 0x00,
        0xc7, 0xb5, 0xe6, 0x1a, 0x2b, 0x02, 0xb9, 0xc8, 0x3a, 0x86, 0xe2, 0x71, 0x98, 0x2c, 0x56,
        0x3b, 0x49, 0x53, 0x65, 0xdb, 0x25, 0x1e, 0x78, 0x9a, 0xfe, 0xf5, 0x7f, 0x51, 0xff, 0x2d,
        0x67, 0x7e, 0xfe, 0x49, 0xb0, 0x72, 0xe6, 0xe9, 0x8f, 0x0e, 0xb2, 0xec, 0xab, 0xec, 0x27,
        0x21, 0x7a, 0x0e, 0x32, 0x20, 0x0a, 0x94, 0x07, 0x20, 0x70, 0x2d, 0x1d, 0x61, 0x31, 0x2d,
        0x6c, 0xf6, 0x0e, 0x7c, 0x27, 0x50, 0x1a, 0x1f, 0x08, 0x17, 0x07, 0x9c, 0x12, 0xcf, 0xdd,
    ];

    /// A bzImage around `compressed` (boot protocol 2.15, 3 setup sectors),
    /// with the size word appended as the kernel build does.
    fn bzimage(compressed: &[u8], append_size: bool) -> Vec<u8> {
        let setup_sects = 3usize;
        let mut image = vec![0u8; (setup_sects + 1) * 512];
        image[SETUP_SECTS] = setup_sects as u8;
        image[0x1FE] = 0x55;
        image[0x1FF] = 0xAA;
        image[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(b"HdrS");
        image[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        // Some protected-mode "code" before the payload.
        let offset = 0x40usize;
        image.extend(core::iter::repeat_n(0x90u8, offset));
        let mut payload = compressed.to_vec();
        if append_size {
            payload.extend_from_slice(&(ELF_SIZE as u32).to_le_bytes());
        }
        image[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4]
            .copy_from_slice(&(offset as u32).to_le_bytes());
        image[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(&payload);
        image.extend_from_slice(&[0u8; 64]); // trailing padding
        image
    }

    fn all_formats() -> [(Compression, Vec<u8>); 3] {
        [
            (Compression::Xz, bzimage(ELF_XZ, true)),
            (Compression::Gzip, bzimage(ELF_GZ, false)),
            (Compression::Zstd, bzimage(ELF_ZST, true)),
        ]
    }

    #[test]
    fn decodes_each_format_to_the_pvh_elf() {
        for (compression, image) in all_formats() {
            assert!(is_bzimage(&image));
            let found = payload(&image).expect("payload");
            assert_eq!(found.compression, compression);
            assert_eq!(found.size, ELF_SIZE);
            assert_eq!(found.protocol, 0x020f);
            let elf_bytes = decode(&image).unwrap_or_else(|e| panic!("{compression}: {e}"));
            assert_eq!(elf_bytes.len(), ELF_SIZE);
            let pvh = elf::parse_pvh(&elf_bytes).expect("a PVH ELF");
            assert_eq!(pvh.phys32_entry, 0x10_0040);
            assert_eq!(pvh.segments[0].paddr, 0x10_0000);
            assert_eq!(
                &elf_bytes[pvh.segments[0].offset as usize..][..25],
                b"rxen bzImage test kernel\n"
            );
        }
    }

    /// xz decodes without scratch (the test kernel's is of the kernel's
    /// kind); gzip, zstd and too small an output are left to
    /// `decompress_into`.
    #[test]
    fn single_call_decoding_is_for_kernel_xz_only() {
        for (compression, image) in all_formats() {
            let found = payload(&image).unwrap();
            let mut out = vec![0u8; found.size];
            let want = (compression == Compression::Xz).then_some(ELF_SIZE);
            assert_eq!(decompress_single(&found, &mut out), want, "{compression}");
            assert_eq!(decompress_single(&found, &mut out[..ELF_SIZE - 1]), None);
        }
        let image = bzimage(ELF_XZ, true);
        let found = payload(&image).unwrap();
        let mut out = vec![0u8; found.size];
        decompress_single(&found, &mut out).unwrap();
        assert_eq!(out, decode(&image).unwrap(), "the same bytes as decode");
    }

    #[test]
    fn xz_dictionary_size_comes_from_the_block_header() {
        let image = bzimage(ELF_XZ, true);
        assert_eq!(payload(&image).unwrap().scratch_size(), Ok(1 << 20));
    }

    #[test]
    fn gzip_with_the_size_word_appended_also_decodes() {
        let image = bzimage(ELF_GZ, true);
        assert_eq!(decode(&image).map(|v| v.len()), Ok(ELF_SIZE));
    }

    #[test]
    fn headers_that_are_not_bzimages() {
        assert_eq!(decode(b"\x7fELF"), Err(BzImageError::NotABzImage));
        assert_eq!(decode(&[0u8; 4096]), Err(BzImageError::NotABzImage));
        let mut old = bzimage(ELF_XZ, true);
        old[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert_eq!(decode(&old), Err(BzImageError::UnsupportedProtocol(0x0206)));
        let mut unknown = bzimage(ELF_XZ, true);
        let at = 4 * 512 + 0x40;
        unknown[at..at + 4].copy_from_slice(b"\x5d\0\0\x80"); // lzma
        assert_eq!(
            decode(&unknown),
            Err(BzImageError::UnknownPayload([0x5d, 0, 0, 0x80]))
        );
        let text = BzImageError::UnknownPayload([0x5d, 0, 0, 0x80]).to_string();
        assert!(text.contains("5d 00 00 80"), "{text}");
    }

    #[test]
    fn a_size_word_above_the_cap_is_too_large() {
        let mut image = bzimage(ELF_XZ, true);
        let end = 4 * 512 + 0x40 + ELF_XZ.len() + 4;
        image[end - 4..end].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&image), Err(BzImageError::TooLarge(u32::MAX as u64)));
    }

    #[test]
    fn a_size_word_below_the_real_size_is_corrupt() {
        for (compression, mut image) in all_formats() {
            // gzip's word is its own ISIZE: changing it breaks the gzip trailer.
            let payload_end = image.len() - 64;
            image[payload_end - 4..payload_end].copy_from_slice(&100u32.to_le_bytes());
            match decode(&image) {
                Err(BzImageError::Corrupt(_)) => {}
                other => panic!("{compression}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_refused_without_a_panic() {
        for (compression, image) in all_formats() {
            let payload_end = image.len() - 64;
            for len in 0..payload_end {
                let result = decode(&image[..len]);
                assert!(result.is_err(), "{compression}: length {len} accepted");
            }
            // Past the header, a cut image is reported as truncated.
            for len in 0x250..payload_end {
                assert_eq!(
                    decode(&image[..len]),
                    Err(BzImageError::Truncated),
                    "{compression}: length {len}"
                );
            }
        }
    }

    #[test]
    fn a_truncated_payload_inside_an_intact_header_is_refused() {
        // payload_length says less than there is: the stream ends early.
        for (compression, mut image) in all_formats() {
            let length = le32(&image, PAYLOAD_LENGTH_AT).unwrap();
            for cut in [5u32, 9, 17, 40] {
                image[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
                    .copy_from_slice(&(length - cut).to_le_bytes());
                assert!(decode(&image).is_err(), "{compression}: cut {cut} accepted");
            }
        }
    }

    /// A small xorshift generator: deterministic "random" corruptions.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn corrupted_payloads_are_refused_without_a_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for (compression, image) in all_formats() {
            let start = 4 * 512 + 0x40;
            let end = image.len() - 64;
            // A single-byte flip in the compressed stream is caught
            // (checksums, sizes or decoder errors) unless it is in a byte
            // the decoders ignore (gzip's mtime, the range coder's first
            // byte): then the kernel comes out unchanged.
            let reference = decode(&image).unwrap();
            let mut refused = 0;
            for at in start..end {
                let mut copy = image.clone();
                copy[at] ^= 0x55;
                match decode(&copy) {
                    Ok(elf) => assert_eq!(elf, reference, "{compression}: flip at {at}"),
                    Err(_) => refused += 1,
                }
            }
            assert!(
                refused + 8 >= end - start,
                "{compression}: {refused} of {}",
                end - start
            );
            // Random multi-byte corruption anywhere: never a panic.
            for _ in 0..2000 {
                let mut copy = image.clone();
                for _ in 0..1 + xorshift(&mut seed) % 8 {
                    let at = (xorshift(&mut seed) as usize) % copy.len();
                    copy[at] = xorshift(&mut seed) as u8;
                }
                let _ = decode(&copy);
            }
        }
    }

    #[test]
    fn decompress_into_checks_the_buffers() {
        let image = bzimage(ELF_XZ, true);
        let found = payload(&image).unwrap();
        let mut small = vec![0u8; ELF_SIZE - 1];
        let mut dict = vec![0u8; 1 << 20];
        assert_eq!(
            decompress_into(&found, &mut small, &mut dict, 0),
            Err(BzImageError::BufferTooSmall)
        );
        let mut out = vec![0u8; ELF_SIZE];
        assert_eq!(
            decompress_into(&found, &mut out, &mut dict[..4096], 0),
            Err(BzImageError::BufferTooSmall)
        );
        assert_eq!(
            decompress_into(&found, &mut out, &mut dict, 0),
            Ok(ELF_SIZE)
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // Eight bytes a step agrees with one bit a step, at every length and
        // alignment of the tail.
        let bitwise = |data: &[u8]| {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        0xEDB8_8320 ^ (crc >> 1)
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        };
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc32(&data[..len]), bitwise(&data[..len]), "length {len}");
        }
    }

    /// Mutated and cut xz streams: whatever the single-call decoder accepts,
    /// the general one decodes to the same bytes (and neither panics).
    #[test]
    fn the_single_call_decoder_agrees_with_the_general_one_on_damaged_streams() {
        let sample = crate::unxz::tests::sample_xz();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        };
        let mut dict = vec![0u8; 1 << 20];
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..60 {
            let mut bad = sample.to_vec();
            // Case 0 is the stream itself; the others are changed mostly in
            // the headers.
            for _ in 0..(1 + next() % 3) * usize::from(case > 0) {
                let at = next() % if case % 2 == 0 { 64 } else { bad.len() };
                bad[at] = next() as u8;
            }
            if case % 7 == 6 {
                bad.truncate(next() % bad.len());
            }
            let (mut fast, mut general) = (vec![0u8; 400_000], vec![0u8; 400_000]);
            match crate::unxz::decode(&bad, &mut fast) {
                Ok(n) => {
                    accepted += 1;
                    assert_eq!(unxz_general(&bad, &mut general, &mut dict), Ok(n));
                    assert!(fast[..n] == general[..n], "case {case}");
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            refused > 30 && accepted > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// Debian's kernel, if a harness run has cached it (never downloaded
    /// here): `cargo test -p rxen-core -- --ignored debian`.
    #[test]
    #[ignore = "needs the Debian kernel in target/rxen/cache/linux (cargo test -p rxen-tests --test linux fetches it)"]
    fn debian_kernel_decodes_to_a_pvh_elf() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rxen/cache/linux");
        let path = std::env::var_os("RXEN_LINUX")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::fs::read_dir(&dir).ok()?.find_map(|e| {
                    let p = e.ok()?.path();
                    let name = p.file_name()?.to_str()?.to_owned();
                    name.starts_with("vmlinuz-").then_some(p)
                })
            })
            .expect("no cached Debian kernel");
        let image = std::fs::read(&path).unwrap();
        let found = payload(&image).unwrap();
        assert_eq!(found.compression, Compression::Xz);
        let started = std::time::Instant::now();
        let vmlinux = decode(&image).unwrap();
        let single = started.elapsed();
        assert_eq!(vmlinux.len(), found.size);
        // The general decoder gives the same bytes.
        let started = std::time::Instant::now();
        let mut general = vec![0u8; found.size];
        let mut dict = vec![0u8; found.scratch_size().unwrap()];
        assert_eq!(
            unxz_general(found.data, &mut general, &mut dict),
            Ok(found.size)
        );
        std::println!(
            "single-call decoder {single:?}, general {:?}",
            started.elapsed()
        );
        assert!(general == vmlinux, "the two decoders differ");
        let pvh = elf::parse_pvh(&vmlinux).expect("Debian's vmlinux has the PVH note");
        assert!(pvh.is_64bit);
        assert!(pvh.phys32_entry >= 0x100_0000, "{:#x}", pvh.phys32_entry);
        std::println!(
            "{}: protocol {:#x}, {} -> {} bytes, entry {:#x}, extent {:x?}",
            path.display(),
            found.protocol,
            found.data.len(),
            vmlinux.len(),
            pvh.phys32_entry,
            pvh.extent()
        );
    }
}
