//! Single-call xz decoding, the way a kernel payload is unpacked: the whole
//! stream in one buffer, the output buffer itself as the LZMA dictionary
//! (xz-embedded's `XZ_SINGLE` mode, which Linux's own boot decompressor
//! uses), matches copied eight bytes at a time, the x86 BCJ filter run once
//! over the finished output.
//!
//! The general decoder ([`xz4rust`], in [`crate::bzimage`]) keeps a separate
//! dictionary and copies every byte out of it, and repeats matches a byte at
//! a time: for Debian's kernel (8 MB of xz to 63 MB) that is 4.6 billion
//! instructions (valgrind), half of a Linux domU's boot under QEMU's
//! emulation (issue 12). This one takes about 4.0 billion for the same
//! stream and, under emulation, about 0.7 of the time (more than the count
//! says; presumably the second 32 MiB buffer it does not touch). It handles
//! what kernel builds produce — one stream with one block, LZMA2 optionally
//! behind the x86 BCJ filter, a CRC32 or no check — and answers
//! [`Error::Unsupported`] for anything else, which the caller hands to the
//! general decoder.
//!
//! Every header field, size and CRC is checked (the stream and block
//! headers, LZMA2's chunk rules as xz-embedded applies them, the block's
//! sizes, the check, the index and the footer); any input gives a length or
//! an error, never a panic or a write outside `out`.
// Firmware input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use crate::bzimage::crc32;

/// Why a stream was not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Valid xz perhaps, but not the kernel's kind (the general decoder's).
    Unsupported(&'static str),
    /// The stream breaks a rule of the format.
    Corrupt(&'static str),
    /// The input ends early.
    Truncated,
    /// The output does not fit in the buffer.
    OutputTooSmall,
}

const MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
const FOOTER_MAGIC: &[u8] = b"YZ";
const FILTER_X86: u64 = 0x04;
const FILTER_LZMA2: u64 = 0x21;
const CHECK_NONE: u8 = 0;
const CHECK_CRC32: u8 = 1;

/// The `N` bytes at `at`.
fn bytes_at<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], Error> {
    let bytes = data
        .get(at..at.checked_add(N).ok_or(Error::Truncated)?)
        .ok_or(Error::Truncated)?;
    let mut word = [0u8; N];
    word.copy_from_slice(bytes);
    Ok(word)
}

/// Little-endian u32 at `at`.
fn le32(data: &[u8], at: usize) -> Result<u32, Error> {
    bytes_at(data, at).map(u32::from_le_bytes)
}

/// An xz variable-length integer at `*at`.
fn vli(data: &[u8], at: &mut usize) -> Result<u64, Error> {
    let mut value = 0u64;
    for i in 0..9u32 {
        let byte = *data.get(*at).ok_or(Error::Truncated)?;
        *at = at.checked_add(1).ok_or(Error::Truncated)?;
        value |= u64::from(byte & 0x7F) << (7u32.wrapping_mul(i));
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(Error::Corrupt("integer not in its shortest form"));
            }
            return Ok(value);
        }
    }
    Err(Error::Corrupt("integer longer than 9 bytes"))
}

/// Decodes the xz stream at the start of `input` into `out`; returns the
/// decoded length. Bytes after the stream's footer are ignored; bytes of
/// `out` past the decoded length may have been written (a match's last
/// word), and on an error `out` holds whatever was decoded.
pub fn decode(input: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    // Stream header: magic, flags, CRC32 of the flags.
    if input.get(..6).ok_or(Error::Truncated)? != MAGIC {
        return Err(Error::Corrupt("no xz magic"));
    }
    let flags = input.get(6..8).ok_or(Error::Truncated)?;
    if le32(input, 8)? != crc32(flags) {
        return Err(Error::Corrupt("stream header CRC"));
    }
    let check = match flags {
        [0, CHECK_NONE] => 0usize,
        [0, CHECK_CRC32] => 4,
        [0, c] if *c < 16 => return Err(Error::Unsupported("check other than CRC32")),
        _ => return Err(Error::Corrupt("stream flags")),
    };

    // Block header.
    let block = 12usize;
    let size_byte = *input.get(block).ok_or(Error::Truncated)?;
    if size_byte == 0 {
        return Err(Error::Unsupported("a stream without blocks"));
    }
    // At most 1024 bytes.
    let header_size = usize::from(size_byte).wrapping_add(1).wrapping_mul(4);
    let header = input
        .get(block..block.wrapping_add(header_size))
        .ok_or(Error::Truncated)?;
    let (body, crc) = header.split_at(header_size.wrapping_sub(4));
    if le32(crc, 0)? != crc32(body) {
        return Err(Error::Corrupt("block header CRC"));
    }
    let block_flags = *body.get(1).ok_or(Error::Truncated)?;
    if block_flags & 0x3C != 0 {
        return Err(Error::Unsupported("reserved block flags"));
    }
    let mut at = 2usize;
    let compressed_size = (block_flags & 0x40 != 0)
        .then(|| vli(body, &mut at))
        .transpose()?;
    let uncompressed_size = (block_flags & 0x80 != 0)
        .then(|| vli(body, &mut at))
        .transpose()?;
    let mut bcj = false;
    let mut dict_size = None;
    let filters = (block_flags & 3).wrapping_add(1);
    for n in 0..filters {
        let id = vli(body, &mut at)?;
        let props_size = vli(body, &mut at)?;
        let last = n.wrapping_add(1) == filters;
        let props_end = at
            .checked_add(usize::try_from(props_size).map_err(|_| Error::Truncated)?)
            .ok_or(Error::Truncated)?;
        let props = body.get(at..props_end).ok_or(Error::Truncated)?;
        at = props_end;
        match (id, last, props) {
            (FILTER_X86, false, []) if !bcj => bcj = true,
            (FILTER_X86, false, [0, 0, 0, 0]) if !bcj => bcj = true,
            (FILTER_LZMA2, true, &[d]) => {
                if d > 40 {
                    return Err(Error::Corrupt("LZMA2 dictionary size"));
                }
                dict_size = Some(if d == 40 {
                    u32::MAX
                } else {
                    (2 | u32::from(d & 1)) << (u32::from(d / 2).wrapping_add(11))
                });
            }
            _ => return Err(Error::Unsupported("filters other than x86 BCJ + LZMA2")),
        }
    }
    if body
        .get(at..)
        .is_some_and(|pad| pad.iter().any(|&b| b != 0))
    {
        return Err(Error::Corrupt("block header padding"));
    }
    let dict_size = dict_size.ok_or(Error::Unsupported("no LZMA2 filter"))?;

    // The compressed data, its padding and the check.
    let data_start = block.wrapping_add(header_size);
    let data = input.get(data_start..).ok_or(Error::Truncated)?;
    let (consumed, produced) = lzma2(data, out, dict_size as usize)?;
    if compressed_size.is_some_and(|s| s != consumed as u64)
        || uncompressed_size.is_some_and(|s| s != produced as u64)
    {
        return Err(Error::Corrupt("block sizes"));
    }
    let unpadded = header_size.checked_add(consumed).ok_or(Error::Truncated)?;
    let mut at = data_start.checked_add(consumed).ok_or(Error::Truncated)?;
    while !at.wrapping_sub(block).is_multiple_of(4) {
        if *input.get(at).ok_or(Error::Truncated)? != 0 {
            return Err(Error::Corrupt("block padding"));
        }
        at = at.wrapping_add(1);
    }
    let decoded = out.get_mut(..produced).ok_or(Error::OutputTooSmall)?;
    if bcj {
        bcj_x86(decoded);
    }
    if check == 4 && le32(input, at)? != crc32(decoded) {
        return Err(Error::Corrupt("CRC32 of the data"));
    }
    at = at.wrapping_add(check);

    // The index: one record with the block's sizes.
    let index = at;
    if *input.get(at).ok_or(Error::Truncated)? != 0 {
        return Err(Error::Unsupported("more than one block"));
    }
    at = at.wrapping_add(1);
    if vli(input, &mut at)? != 1 {
        return Err(Error::Unsupported("more than one block"));
    }
    if vli(input, &mut at)? != unpadded.wrapping_add(check) as u64
        || vli(input, &mut at)? != produced as u64
    {
        return Err(Error::Corrupt("index record"));
    }
    while !at.wrapping_sub(index).is_multiple_of(4) {
        if *input.get(at).ok_or(Error::Truncated)? != 0 {
            return Err(Error::Corrupt("index padding"));
        }
        at = at.wrapping_add(1);
    }
    let index_bytes = input.get(index..at).ok_or(Error::Truncated)?;
    if le32(input, at)? != crc32(index_bytes) {
        return Err(Error::Corrupt("index CRC"));
    }
    at = at.wrapping_add(4);

    // The footer: CRC32, backward size, the flags again, magic.
    let footer = input.get(at..at.wrapping_add(12)).ok_or(Error::Truncated)?;
    let crc_covered = footer.get(4..10).ok_or(Error::Truncated)?;
    if le32(footer, 0)? != crc32(crc_covered)
        || u64::from(le32(footer, 4)?) != (index_bytes.len() / 4) as u64
        || footer.get(8..10) != Some(flags)
        || footer.get(10..12) != Some(FOOTER_MAGIC)
    {
        return Err(Error::Corrupt("stream footer"));
    }
    Ok(produced)
}

// ---- the x86 BCJ filter ----

/// Where the first byte `0xE8` or `0xE9` (CALL, JMP) in `data` is: eight
/// bytes a step while none is among them (a word with a zero byte after
/// XOR with `0xE8` and the low bit masked has one).
fn next_call_or_jump(data: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = data.chunks_exact(8);
    let mut at = 0usize;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let v = (u64::from_le_bytes(bytes) ^ (0xE8 * ONES)) & (0xFE * ONES);
        if v.wrapping_sub(ONES) & !v & HIGHS != 0 {
            break;
        }
        at = at.wrapping_add(8);
    }
    data.get(at..)?
        .iter()
        .position(|&b| b & 0xFE == 0xE8)
        .map(|k| at.wrapping_add(k))
}

/// Undoes the x86 branch converter over `buf` (start offset 0) in one pass,
/// as xz-embedded's `bcj_x86` over a whole buffer: CALL and JMP targets
/// turned back from absolute to relative.
fn bcj_x86(buf: &mut [u8]) {
    const ALLOWED: [bool; 8] = [true, true, true, false, true, false, false, false];
    const BIT_NUM: [u32; 8] = [0, 1, 2, 2, 3, 3, 3, 3];
    let msbyte = |b: u8| b == 0x00 || b == 0xFF;
    let Some(size) = buf.len().checked_sub(4) else {
        return;
    };
    let mut prev_pos = usize::MAX;
    let mut prev_mask = 0u32;
    let mut i = 0usize;
    while i < size {
        // The next CALL or JMP opcode.
        let Some(skip) = buf.get(i..size).and_then(next_call_or_jump) else {
            break;
        };
        i = i.wrapping_add(skip);
        let distance = i.wrapping_sub(prev_pos);
        if distance > 3 {
            prev_mask = 0;
        } else {
            // distance is 1 to 3.
            prev_mask = (prev_mask << distance.wrapping_sub(1)) & 7;
            if prev_mask != 0 {
                let bits = BIT_NUM.get(prev_mask as usize).copied().unwrap_or(0) as usize;
                let b = buf
                    .get(i.wrapping_add(4).wrapping_sub(bits))
                    .copied()
                    .unwrap_or(0);
                if !ALLOWED.get(prev_mask as usize).copied().unwrap_or(false) || msbyte(b) {
                    prev_pos = i;
                    prev_mask = (prev_mask << 1) | 1;
                    i = i.wrapping_add(1);
                    continue;
                }
            }
        }
        prev_pos = i;
        let Some(operand) = buf.get_mut(i.wrapping_add(1)..i.wrapping_add(5)) else {
            break;
        };
        if msbyte(operand.get(3).copied().unwrap_or(1)) {
            let mut word = [0u8; 4];
            word.copy_from_slice(operand);
            let mut src = u32::from_le_bytes(word);
            let mut dest;
            loop {
                dest = src.wrapping_sub((i as u32).wrapping_add(5));
                if prev_mask == 0 {
                    break;
                }
                // 8, 16 or 24.
                let j = BIT_NUM.get(prev_mask as usize).copied().unwrap_or(1) << 3;
                if !msbyte((dest >> 24u32.wrapping_sub(j)) as u8) {
                    break;
                }
                src = dest ^ (1u32 << 32u32.wrapping_sub(j)).wrapping_sub(1);
            }
            dest &= 0x01FF_FFFF;
            dest |= 0u32.wrapping_sub(dest & 0x0100_0000);
            operand.copy_from_slice(&dest.to_le_bytes());
            i = i.wrapping_add(5);
        } else {
            prev_mask = (prev_mask << 1) | 1;
            i = i.wrapping_add(1);
        }
    }
}

// ---- LZMA2 and LZMA ----

/// The range decoder over one LZMA chunk's compressed bytes. Reading past
/// them yields zeros and marks the chunk bad (checked at its end), so the
/// bit decoders need no error path.
struct RangeDecoder<'a> {
    input: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
    bad: bool,
}

const PROB_INIT: u16 = 1 << 10;

impl<'a> RangeDecoder<'a> {
    fn new(input: &'a [u8]) -> Result<Self, Error> {
        let init = input.get(..5).ok_or(Error::Truncated)?;
        if init.first() != Some(&0) {
            return Err(Error::Corrupt("range coder start"));
        }
        let mut code = [0u8; 4];
        code.copy_from_slice(init.get(1..).ok_or(Error::Truncated)?);
        Ok(Self {
            input,
            pos: 5,
            range: u32::MAX,
            code: u32::from_be_bytes(code),
            bad: false,
        })
    }

    #[inline(always)]
    fn normalize(&mut self) {
        if self.range < 1 << 24 {
            let byte = match self.input.get(self.pos) {
                Some(&b) => b,
                None => {
                    self.bad = true;
                    0
                }
            };
            self.pos = self.pos.wrapping_add(1);
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(byte);
        }
    }

    /// One bit with probability `probs[i]` (updated). Every index the
    /// decoder forms is below the probabilities' end; masked anyway.
    #[inline(always)]
    fn bit(&mut self, probs: &mut [u16; PROBS], i: usize) -> u32 {
        self.normalize();
        let Some(p) = probs.get_mut(i & PROB_MASK) else {
            return 0;
        };
        let bound = (self.range >> 11).wrapping_mul(u32::from(*p));
        if self.code < bound {
            self.range = bound;
            *p = p.wrapping_add((2048u16.wrapping_sub(*p)) >> 5);
            0
        } else {
            self.range = self.range.wrapping_sub(bound);
            self.code = self.code.wrapping_sub(bound);
            *p = p.wrapping_sub(*p >> 5);
            1
        }
    }

    /// A bit tree of `limit` symbols at `probs[base..]`; returns the symbol
    /// plus `limit`.
    #[inline(always)]
    fn bittree(&mut self, probs: &mut [u16; PROBS], base: usize, limit: u32) -> u32 {
        let mut symbol = 1u32;
        while symbol < limit {
            let bit = self.bit(probs, base.wrapping_add(symbol as usize));
            symbol = (symbol << 1) | bit;
        }
        symbol
    }

    /// A reverse bit tree of `bits` bits at `probs[base..]`, added to `dest`.
    fn bittree_reverse(
        &mut self,
        probs: &mut [u16; PROBS],
        base: usize,
        dest: &mut u32,
        bits: u32,
    ) {
        let mut symbol = 1u32;
        for i in 0..bits {
            let bit = self.bit(probs, base.wrapping_add(symbol as usize));
            symbol = (symbol << 1) | bit;
            *dest = dest.wrapping_add(bit << i);
        }
    }

    /// `count` bits of equal probability, appended to `dest`.
    fn direct(&mut self, dest: &mut u32, count: u32) {
        for _ in 0..count {
            self.normalize();
            self.range >>= 1;
            self.code = self.code.wrapping_sub(self.range);
            let mask = 0u32.wrapping_sub(self.code >> 31);
            self.code = self.code.wrapping_add(self.range & mask);
            *dest = (*dest << 1).wrapping_add(mask.wrapping_add(1));
        }
    }
}

/// The output buffer as the dictionary: `start` is where the last
/// dictionary reset happened, `limit` the end of the current chunk.
struct Dict<'a> {
    buf: &'a mut [u8],
    pos: usize,
    start: usize,
    limit: usize,
    size: usize,
}

impl Dict<'_> {
    /// The byte `dist + 1` back (0 before the dictionary's start).
    #[inline(always)]
    fn get(&self, dist: usize) -> u8 {
        if dist >= self.pos.wrapping_sub(self.start) {
            return 0;
        }
        self.buf
            .get(self.pos.wrapping_sub(dist).wrapping_sub(1))
            .copied()
            .unwrap_or(0)
    }

    #[inline(always)]
    fn put(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = byte;
        }
        self.pos = self.pos.wrapping_add(1);
    }

    /// Copies `len` bytes from `dist + 1` back, as far as the chunk goes;
    /// `len` keeps what did not fit.
    #[inline(always)]
    fn repeat(&mut self, dist: u32, len: &mut u32) -> Result<(), Error> {
        let dist = dist as usize;
        if dist >= self.pos.wrapping_sub(self.start) || dist >= self.size {
            return Err(Error::Corrupt("match distance beyond the dictionary"));
        }
        let n = (*len as usize).min(self.limit.wrapping_sub(self.pos));
        let src = self.pos.wrapping_sub(dist).wrapping_sub(1);
        // Eight bytes at a time when the source is at least eight back (each
        // word reads only bytes already written), rounded up: the bytes past
        // the match are not output yet and get overwritten later.
        let words = n.div_ceil(8);
        if dist >= 7 && self.pos.wrapping_add(words.wrapping_mul(8)) <= self.buf.len() {
            for w in 0..words {
                let from = src.wrapping_add(w.wrapping_mul(8));
                let to = self.pos.wrapping_add(w.wrapping_mul(8));
                let mut word = [0u8; 8];
                if let Some(bytes) = self.buf.get(from..from.wrapping_add(8)) {
                    word.copy_from_slice(bytes);
                }
                if let Some(slot) = self.buf.get_mut(to..to.wrapping_add(8)) {
                    slot.copy_from_slice(&word);
                }
            }
        } else {
            for i in 0..n {
                let byte = self.buf.get(src.wrapping_add(i)).copied().unwrap_or(0);
                if let Some(slot) = self.buf.get_mut(self.pos.wrapping_add(i)) {
                    *slot = byte;
                }
            }
        }
        self.pos = self.pos.wrapping_add(n);
        *len = len.wrapping_sub(n as u32);
        Ok(())
    }
}

// The probability array's layout (xz-embedded's `struct lzma_dec`).
const STATES: usize = 12;
const POS_STATES: usize = 16;
const IS_MATCH: usize = 0;
const IS_REP: usize = IS_MATCH + STATES * POS_STATES;
const IS_REP0: usize = IS_REP + STATES;
const IS_REP1: usize = IS_REP0 + STATES;
const IS_REP2: usize = IS_REP1 + STATES;
const IS_REP0_LONG: usize = IS_REP2 + STATES;
const DIST_SLOT: usize = IS_REP0_LONG + STATES * POS_STATES;
const DIST_SPECIAL: usize = DIST_SLOT + 4 * 64;
const DIST_ALIGN: usize = DIST_SPECIAL + 114;
const MATCH_LEN: usize = DIST_ALIGN + 16;
const LEN_SIZE: usize = 2 + 2 * POS_STATES * 8 + 256;
const REP_LEN: usize = MATCH_LEN + LEN_SIZE;
const LITERAL: usize = REP_LEN + LEN_SIZE;
/// The probabilities used (`LITERAL + 0x300 * 16` = 14,134), rounded up to
/// a power of two so that a masked index needs no bounds check.
const PROBS: usize = 1 << 14;
const PROB_MASK: usize = PROBS - 1;
const _: () = assert!(LITERAL + 0x300 * 16 <= PROBS);
// Offsets inside a length coder.
const LEN_CHOICE2: usize = 1;
const LEN_LOW: usize = 2;
const LEN_MID: usize = LEN_LOW + POS_STATES * 8;
const LEN_HIGH: usize = LEN_MID + POS_STATES * 8;

/// The LZMA state carried between chunks.
struct Lzma {
    probs: [u16; PROBS],
    state: usize,
    reps: [u32; 4],
    lc: u32,
    lp_mask: usize,
    pb_mask: usize,
}

impl Lzma {
    fn reset(&mut self) {
        self.probs.fill(PROB_INIT);
        self.state = 0;
        self.reps = [0; 4];
    }

    /// The match length from the coder at `base`.
    #[inline(always)]
    fn len(&mut self, rc: &mut RangeDecoder<'_>, base: usize, pos_state: usize) -> u32 {
        let probs = &mut self.probs;
        if rc.bit(probs, base) == 0 {
            // (A bit tree of n symbols returns n to 2n - 1.)
            let tree = base.wrapping_add(LEN_LOW).wrapping_add(pos_state << 3);
            rc.bittree(probs, tree, 8).wrapping_sub(8 - 2)
        } else if rc.bit(probs, base.wrapping_add(LEN_CHOICE2)) == 0 {
            let tree = base.wrapping_add(LEN_MID).wrapping_add(pos_state << 3);
            rc.bittree(probs, tree, 8).wrapping_add(10 - 8)
        } else {
            let tree = base.wrapping_add(LEN_HIGH);
            rc.bittree(probs, tree, 256).wrapping_sub(256 - 18)
        }
    }

    /// One chunk's LZMA data until the chunk's output is complete.
    fn chunk(&mut self, rc: &mut RangeDecoder<'_>, dict: &mut Dict<'_>) -> Result<(), Error> {
        while dict.pos < dict.limit && !rc.bad {
            let pos_state = dict.pos & self.pb_mask;
            let state = self.state;
            let is_match = IS_MATCH.wrapping_add(state.wrapping_mul(POS_STATES) | pos_state);
            if rc.bit(&mut self.probs, is_match) == 0 {
                self.literal(rc, dict);
                continue;
            }
            let mut len = if rc.bit(&mut self.probs, IS_REP.wrapping_add(state)) == 0 {
                self.simple_match(rc, pos_state)
            } else {
                self.rep_match(rc, pos_state)
            };
            dict.repeat(self.reps[0], &mut len)?;
            if len != 0 {
                return Err(Error::Corrupt("match past the chunk's end"));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn literal(&mut self, rc: &mut RangeDecoder<'_>, dict: &mut Dict<'_>) {
        let prev = usize::from(dict.get(0));
        // lc <= 4 and lc + lp <= 4: below 16.
        let lit_state =
            ((dict.pos & self.lp_mask) << self.lc) | (prev >> 8u32.wrapping_sub(self.lc));
        let base = LITERAL.wrapping_add(lit_state.wrapping_mul(0x300));
        let probs = &mut self.probs;
        let mut symbol = 1u32;
        if self.state < 7 {
            while symbol < 0x100 {
                let bit = rc.bit(probs, base.wrapping_add(symbol as usize));
                symbol = (symbol << 1) | bit;
            }
        } else {
            let mut match_byte = u32::from(dict.get(self.reps[0] as usize)) << 1;
            let mut offset = 0x100u32;
            while symbol < 0x100 {
                let match_bit = match_byte & offset;
                match_byte <<= 1;
                let i = offset.wrapping_add(match_bit).wrapping_add(symbol);
                if rc.bit(probs, base.wrapping_add(i as usize)) == 1 {
                    symbol = (symbol << 1) | 1;
                    offset &= match_bit;
                } else {
                    symbol <<= 1;
                    offset &= !match_bit;
                }
            }
        }
        dict.put(symbol as u8);
        self.state = match self.state {
            0..=3 => 0,
            4..=9 => self.state.wrapping_sub(3),
            _ => self.state.wrapping_sub(6),
        };
    }

    fn simple_match(&mut self, rc: &mut RangeDecoder<'_>, pos_state: usize) -> u32 {
        self.state = if self.state < 7 { 7 } else { 10 };
        self.reps = [0, self.reps[0], self.reps[1], self.reps[2]];
        let len = self.len(rc, MATCH_LEN, pos_state);
        // len is 2 to 273.
        let dist_state = (len as usize).wrapping_sub(2).min(3);
        let probs = &mut self.probs;
        let tree = DIST_SLOT.wrapping_add(dist_state << 6);
        let slot = rc.bittree(probs, tree, 64).wrapping_sub(64);
        let mut dist = slot;
        if slot >= 4 {
            // slot is 4 to 63: limit 1 to 30.
            let limit = (slot >> 1).wrapping_sub(1);
            dist = 2 | (slot & 1);
            if slot < 14 {
                dist <<= limit;
                let base = DIST_SPECIAL
                    .wrapping_add(dist as usize)
                    .wrapping_sub(slot as usize)
                    .wrapping_sub(1);
                rc.bittree_reverse(probs, base, &mut dist, limit);
            } else {
                rc.direct(&mut dist, limit.wrapping_sub(4));
                dist <<= 4;
                rc.bittree_reverse(probs, DIST_ALIGN, &mut dist, 4);
            }
        }
        self.reps[0] = dist;
        len
    }

    fn rep_match(&mut self, rc: &mut RangeDecoder<'_>, pos_state: usize) -> u32 {
        let state = self.state;
        let probs = &mut self.probs;
        if rc.bit(probs, IS_REP0.wrapping_add(state)) == 0 {
            let long = IS_REP0_LONG.wrapping_add(state.wrapping_mul(POS_STATES) | pos_state);
            if rc.bit(probs, long) == 0 {
                self.state = if state < 7 { 9 } else { 11 };
                return 1;
            }
        } else {
            let dist = if rc.bit(probs, IS_REP1.wrapping_add(state)) == 0 {
                self.reps[1]
            } else {
                let dist = if rc.bit(probs, IS_REP2.wrapping_add(state)) == 0 {
                    self.reps[2]
                } else {
                    let dist = self.reps[3];
                    self.reps[3] = self.reps[2];
                    dist
                };
                self.reps[2] = self.reps[1];
                dist
            };
            self.reps[1] = self.reps[0];
            self.reps[0] = dist;
        }
        self.state = if state < 7 { 8 } else { 11 };
        self.len(rc, REP_LEN, pos_state)
    }
}

/// Big-endian u16 at `at`, plus one.
fn be16_plus_one(data: &[u8], at: usize) -> Result<usize, Error> {
    bytes_at(data, at).map(|word| usize::from(u16::from_be_bytes(word)).wrapping_add(1))
}

/// Chunks decoded by kind (uncompressed, LZMA), for the tests to see that
/// their sample has both.
#[cfg(test)]
static CHUNKS: [core::sync::atomic::AtomicUsize; 2] = [
    core::sync::atomic::AtomicUsize::new(0),
    core::sync::atomic::AtomicUsize::new(0),
];

/// LZMA2 chunks from `data` into `out`: (compressed bytes consumed, bytes
/// produced).
fn lzma2(data: &[u8], out: &mut [u8], dict_size: usize) -> Result<(usize, usize), Error> {
    let mut lzma = alloc::boxed::Box::new(Lzma {
        probs: [PROB_INIT; PROBS],
        state: 0,
        reps: [0; 4],
        lc: 0,
        lp_mask: 0,
        pb_mask: 0,
    });
    let mut dict = Dict {
        buf: out,
        pos: 0,
        start: 0,
        limit: 0,
        size: dict_size,
    };
    let (mut need_dict_reset, mut need_props) = (true, true);
    let mut at = 0usize;
    loop {
        let control = *data.get(at).ok_or(Error::Truncated)?;
        at = at.wrapping_add(1);
        if control == 0 {
            return Ok((at, dict.pos));
        }
        if control >= 0xE0 || control == 1 {
            need_props = true;
            need_dict_reset = false;
            dict.start = dict.pos;
        } else if need_dict_reset {
            return Err(Error::Corrupt("LZMA2 chunk without the dictionary reset"));
        }
        if control < 0x80 {
            if control > 2 {
                return Err(Error::Corrupt("LZMA2 control byte"));
            }
            // An uncompressed chunk.
            let size = be16_plus_one(data, at)?;
            at = at.wrapping_add(2);
            let bytes = data
                .get(at..at.wrapping_add(size))
                .ok_or(Error::Truncated)?;
            let end = dict.pos.checked_add(size).ok_or(Error::OutputTooSmall)?;
            dict.buf
                .get_mut(dict.pos..end)
                .ok_or(Error::OutputTooSmall)?
                .copy_from_slice(bytes);
            dict.pos = end;
            at = at.wrapping_add(size);
            #[cfg(test)]
            CHUNKS[0].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let unpacked = (usize::from(control & 0x1F) << 16) | be16_plus_one(data, at)?;
        let packed = be16_plus_one(data, at.wrapping_add(2))?;
        at = at.wrapping_add(4);
        if control >= 0xC0 {
            let props = *data.get(at).ok_or(Error::Truncated)?;
            at = at.wrapping_add(1);
            if props >= 9 * 5 * 5 {
                return Err(Error::Corrupt("LZMA properties"));
            }
            let (lc, lp, pb) = (props % 9, props / 9 % 5, props / 45);
            if lc.wrapping_add(lp) > 4 {
                return Err(Error::Corrupt("LZMA lc + lp above 4"));
            }
            lzma.lc = u32::from(lc);
            lzma.lp_mask = (1usize << lp).wrapping_sub(1);
            lzma.pb_mask = (1usize << pb).wrapping_sub(1);
            need_props = false;
            lzma.reset();
        } else if need_props {
            return Err(Error::Corrupt("LZMA2 chunk without properties"));
        } else if control >= 0xA0 {
            lzma.reset();
        }
        let compressed = data
            .get(at..at.wrapping_add(packed))
            .ok_or(Error::Truncated)?;
        dict.limit = dict
            .pos
            .checked_add(unpacked)
            .ok_or(Error::OutputTooSmall)?;
        if dict.limit > dict.buf.len() {
            return Err(Error::OutputTooSmall);
        }
        let mut rc = RangeDecoder::new(compressed)?;
        lzma.chunk(&mut rc, &mut dict)?;
        rc.normalize();
        if rc.bad || rc.pos != packed || rc.code != 0 || dict.pos != dict.limit {
            return Err(Error::Corrupt("LZMA chunk does not end where it says"));
        }
        at = at.wrapping_add(packed);
        #[cfg(test)]
        CHUNKS[1].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// [`sample`] compressed as kernel builds do (`xz --check=crc32 --x86
    /// --lzma2=dict=1MiB`), by another encoder than xz's own (made once per
    /// test run): several LZMA chunks, an uncompressed one, BCJ.
    pub(crate) fn sample_xz() -> &'static [u8] {
        static SAMPLE: std::sync::OnceLock<alloc::vec::Vec<u8>> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| {
            use lzma_rust2::{CheckType, FilterType, LzmaOptions, XzOptions, XzWriter};
            use std::io::Write;
            let mut options = XzOptions::with_preset(6);
            options.lzma_options = LzmaOptions::with_preset(6);
            options.lzma_options.dict_size = 1 << 20;
            options.set_check_sum_type(CheckType::Crc32);
            options.prepend_pre_filter(FilterType::BcjX86, 0);
            let mut writer = XzWriter::new(alloc::vec::Vec::new(), options).expect("encoder");
            writer.write_all(&sample()).expect("compress");
            writer.finish().expect("finish")
        })
    }

    /// What [`sample_xz`] holds: pseudo-random bytes (incompressible: the
    /// encoder stores the first chunk uncompressed), x86-like code (calls and
    /// jumps with short displacements among a few instruction patterns,
    /// which the BCJ filter converts), text.
    fn sample() -> alloc::vec::Vec<u8> {
        let mut data = alloc::vec::Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const PATTERNS: [[u8; 3]; 6] = [
            [0x48, 0x89, 0xE5],
            [0x48, 0x83, 0xEC],
            [0x31, 0xC0, 0x90],
            [0x48, 0x8B, 0x45],
            [0x0F, 0x1F, 0x00],
            [0xC3, 0x90, 0x90],
        ];
        for _ in 0..66_000 {
            data.push(next() as u8);
        }
        for _ in 0..40_000 {
            let r = next();
            match r % 5 {
                0 | 1 => {
                    data.push(if r % 5 == 0 { 0xE8 } else { 0xE9 });
                    let disp = ((r >> 8) % 0x20000) as i32 - 0x10000;
                    data.extend_from_slice(&disp.to_le_bytes());
                }
                _ => data.extend_from_slice(&PATTERNS[(r >> 8) as usize % PATTERNS.len()]),
            }
        }
        for i in 0..5_000 {
            data.extend_from_slice(alloc::format!("line {i}: the quick brown fox\n").as_bytes());
        }
        data
    }

    #[test]
    fn decodes_a_bcj_lzma2_stream_with_every_kind_of_chunk() {
        let want = sample();
        let mut out = alloc::vec![0u8; want.len() + 100];
        let before = [0, 1].map(|k| CHUNKS[k].load(core::sync::atomic::Ordering::Relaxed));
        assert_eq!(decode(sample_xz(), &mut out), Ok(want.len()));
        assert!(out[..want.len()] == want[..], "output differs");
        let after = [0, 1].map(|k| CHUNKS[k].load(core::sync::atomic::Ordering::Relaxed));
        assert!(after[0] > before[0], "an uncompressed chunk");
        assert!(after[1] >= before[1] + 2, "LZMA chunks");
    }

    #[test]
    fn calls_and_jumps_are_found_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                let mut data = alloc::vec![0x90u8; len];
                let want = (at < len).then_some(at);
                if let Some(at) = want {
                    data[at] = if at % 2 == 0 { 0xE8 } else { 0xE9 };
                    // Neighbours that must not match.
                    for (i, b) in data.iter_mut().enumerate().skip(at + 1) {
                        *b = [0xEA, 0xE0, 0x68, 0xE8][i % 4];
                    }
                }
                assert_eq!(next_call_or_jump(&data), want, "len {len} at {at}");
            }
        }
    }

    #[test]
    fn too_small_an_output_is_an_error_not_a_panic() {
        let mut out = alloc::vec![0u8; 1000];
        assert_eq!(decode(sample_xz(), &mut out), Err(Error::OutputTooSmall));
    }

    #[test]
    fn every_truncation_and_many_corruptions_are_errors() {
        let len = sample().len();
        let mut out = alloc::vec![0u8; len];
        for cut in (0..sample_xz().len())
            .step_by(3001)
            .chain([sample_xz().len() - 1])
        {
            assert!(
                decode(&sample_xz()[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = sample_xz().to_vec();
        for i in (0..bad.len()).step_by(1009) {
            bad[i] ^= 0x5A;
            assert!(decode(&bad, &mut out).is_err(), "byte {i} flipped");
            bad[i] ^= 0x5A;
        }
    }

    #[test]
    fn other_checks_and_filters_are_left_to_the_general_decoder() {
        let mut out = [0u8; 16];
        let mut crc64 = sample_xz()[..12].to_vec();
        crc64[7] = 4;
        let crc = crc32(&crc64[6..8]).to_le_bytes();
        crc64[8..12].copy_from_slice(&crc);
        assert!(matches!(
            decode(&crc64, &mut out),
            Err(Error::Unsupported(_))
        ));
    }
}
