//! Reading a guest kernel ELF image (ELF64 or ELF32, as real kernels come in
//! both) for the PVH domain builder: the loadable segments by physical
//! address and the entry point from the `XEN_ELFNOTE_PHYS32_ENTRY` note.
//! Everything is bounds-checked: a corrupt or truncated image gives an
//! error, never a panic.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

pub use rxen_abi::elfnote::XEN_ELFNOTE_PHYS32_ENTRY;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// A loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Offset of the file bytes.
    pub offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Bytes in memory (the rest is zeroed).
    pub mem_size: u64,
}

/// What the builder needs from a PVH kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhImage {
    /// Whether the container is ELF64.
    pub is_64bit: bool,
    /// The 32-bit PVH entry point.
    pub phys32_entry: u32,
    /// Loadable segments.
    pub segments: Vec<Segment>,
}

impl PvhImage {
    /// Lowest and highest (exclusive) guest-physical address loaded.
    pub fn extent(&self) -> (u64, u64) {
        let low = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let high = self
            .segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.mem_size))
            .max()
            .unwrap_or(0);
        (low, high)
    }
}

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file.
    NotElf,
    /// Not little-endian x86 (EM_386 or EM_X86_64).
    WrongArchitecture,
    /// A header or table runs past the end of the file.
    Truncated,
    /// A segment's numbers make no sense (file size above memory size,
    /// addresses that wrap).
    BadSegment,
    /// No loadable segment.
    NoSegments,
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: not a PVH kernel.
    NoPvhEntry,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotElf => "not an ELF image",
            Self::WrongArchitecture => "not a little-endian x86 ELF image",
            Self::Truncated => "truncated ELF image (a header or table runs past the end)",
            Self::BadSegment => "ELF segment with impossible sizes or addresses",
            Self::NoSegments => "ELF image without loadable segments",
            Self::NoPvhEntry => "no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel",
        })
    }
}

fn bytes(data: &[u8], offset: u64, len: u64) -> Result<&[u8], ElfError> {
    let start = usize::try_from(offset).map_err(|_| ElfError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| ElfError::Truncated)?;
    let end = start.checked_add(len).ok_or(ElfError::Truncated)?;
    data.get(start..end).ok_or(ElfError::Truncated)
}

fn u16_at(data: &[u8], offset: u64) -> Result<u16, ElfError> {
    let b = bytes(data, offset, 2)?;
    Ok(u16::from_le_bytes(
        b.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

fn u32_at(data: &[u8], offset: u64) -> Result<u32, ElfError> {
    let b = bytes(data, offset, 4)?;
    Ok(u32::from_le_bytes(
        b.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

fn u64_at(data: &[u8], offset: u64) -> Result<u64, ElfError> {
    let b = bytes(data, offset, 8)?;
    Ok(u64::from_le_bytes(
        b.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

/// Parses `data` as a PVH kernel.
pub fn parse_pvh(data: &[u8]) -> Result<PvhImage, ElfError> {
    if data.len() < 16 || data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    let is_64bit = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfError::NotElf),
    };
    if data.get(5) != Some(&1) {
        return Err(ElfError::WrongArchitecture);
    }
    let machine = u16_at(data, 18)?;
    if machine != 3 && machine != 62 {
        return Err(ElfError::WrongArchitecture);
    }
    let (phoff, phentsize, phnum) = if is_64bit {
        (
            u64_at(data, 32)?,
            u16_at(data, 54)? as u64,
            u16_at(data, 56)? as u64,
        )
    } else {
        (
            u32_at(data, 28)? as u64,
            u16_at(data, 42)? as u64,
            u16_at(data, 44)? as u64,
        )
    };
    let min_entry = if is_64bit { 56 } else { 32 };
    if phnum > 0 && phentsize < min_entry {
        return Err(ElfError::Truncated);
    }
    bytes(data, phoff, phentsize.saturating_mul(phnum))?;
    // The table fits in `data` (checked just above), so these offsets
    // cannot overflow; checked all the same.
    let at = |base: u64, off: u64| base.checked_add(off).ok_or(ElfError::Truncated);

    let mut segments = Vec::new();
    let mut entry = None;
    for index in 0..phnum {
        let ph = at(
            phoff,
            index.checked_mul(phentsize).ok_or(ElfError::Truncated)?,
        )?;
        let kind = u32_at(data, ph)?;
        let (offset, paddr, file_size, mem_size) = if is_64bit {
            (
                u64_at(data, at(ph, 8)?)?,
                u64_at(data, at(ph, 24)?)?,
                u64_at(data, at(ph, 32)?)?,
                u64_at(data, at(ph, 40)?)?,
            )
        } else {
            (
                u32_at(data, at(ph, 4)?)? as u64,
                u32_at(data, at(ph, 12)?)? as u64,
                u32_at(data, at(ph, 16)?)? as u64,
                u32_at(data, at(ph, 20)?)? as u64,
            )
        };
        match kind {
            PT_LOAD if mem_size > 0 => {
                if file_size > mem_size || paddr.checked_add(mem_size).is_none() {
                    return Err(ElfError::BadSegment);
                }
                bytes(data, offset, file_size)?;
                segments.push(Segment {
                    paddr,
                    offset,
                    file_size,
                    mem_size,
                });
            }
            PT_NOTE => {
                if let Some(found) = find_phys32_entry(bytes(data, offset, file_size)?)? {
                    entry = Some(found);
                }
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    let phys32_entry = entry.ok_or(ElfError::NoPvhEntry)?;
    Ok(PvhImage {
        is_64bit,
        phys32_entry,
        segments,
    })
}

/// Looks for the Xen PHYS32_ENTRY note in one PT_NOTE segment.
fn find_phys32_entry(notes: &[u8]) -> Result<Option<u32>, ElfError> {
    let mut at = 0u64;
    let total = notes.len() as u64;
    // Every offset is checked: a note's sizes come from the image.
    let add = |a: u64, b: u64| a.checked_add(b).ok_or(ElfError::Truncated);
    while at.saturating_add(12) <= total {
        let name_size = u32_at(notes, at)? as u64;
        let desc_size = u32_at(notes, add(at, 4)?)? as u64;
        let kind = u32_at(notes, add(at, 8)?)?;
        let name_at = add(at, 12)?;
        let desc_at = add(name_at, name_size.next_multiple_of(4))?;
        let name = bytes(notes, name_at, name_size)?;
        let desc = bytes(notes, desc_at, desc_size)?;
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
            if let Some(&[a, b, c, d]) = desc.first_chunk::<4>() {
                return Ok(Some(u32::from_le_bytes([a, b, c, d])));
            }
        }
        at = add(desc_at, desc_size.next_multiple_of(4))?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ELF with one PT_LOAD and one PT_NOTE.
    fn make_elf(is_64bit: bool, entry: u32) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&entry.to_le_bytes());
        let (ehsize, phentsize) = if is_64bit { (64u64, 56u64) } else { (52, 32) };
        let phoff = ehsize;
        let note_off = phoff + 2 * phentsize;
        let load_off = note_off + note.len() as u64;
        let payload = b"hello, guest";
        let mut elf = vec![0u8; ehsize as usize];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = if is_64bit { 2 } else { 1 };
        elf[5] = 1;
        elf[18..20].copy_from_slice(&(if is_64bit { 62u16 } else { 3 }).to_le_bytes());
        let mut ph = Vec::new();
        let mut push_ph = |kind: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
            let mut e = vec![0u8; phentsize as usize];
            e[..4].copy_from_slice(&kind.to_le_bytes());
            if is_64bit {
                e[8..16].copy_from_slice(&off.to_le_bytes());
                e[24..32].copy_from_slice(&paddr.to_le_bytes());
                e[32..40].copy_from_slice(&filesz.to_le_bytes());
                e[40..48].copy_from_slice(&memsz.to_le_bytes());
            } else {
                e[4..8].copy_from_slice(&(off as u32).to_le_bytes());
                e[12..16].copy_from_slice(&(paddr as u32).to_le_bytes());
                e[16..20].copy_from_slice(&(filesz as u32).to_le_bytes());
                e[20..24].copy_from_slice(&(memsz as u32).to_le_bytes());
            }
            ph.extend_from_slice(&e);
        };
        push_ph(PT_NOTE, note_off, 0, note.len() as u64, note.len() as u64);
        push_ph(PT_LOAD, load_off, 0x10_0000, payload.len() as u64, 0x2000);
        if is_64bit {
            elf[32..40].copy_from_slice(&phoff.to_le_bytes());
            elf[54..56].copy_from_slice(&(phentsize as u16).to_le_bytes());
            elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        } else {
            elf[28..32].copy_from_slice(&(phoff as u32).to_le_bytes());
            elf[42..44].copy_from_slice(&(phentsize as u16).to_le_bytes());
            elf[44..46].copy_from_slice(&2u16.to_le_bytes());
        }
        elf.extend_from_slice(&ph);
        elf.extend_from_slice(&note);
        elf.extend_from_slice(payload);
        elf
    }

    #[test]
    fn parses_elf64_and_elf32_pvh_kernels() {
        for is_64bit in [true, false] {
            let image = parse_pvh(&make_elf(is_64bit, 0x10_0040)).expect("valid image");
            assert_eq!(image.is_64bit, is_64bit);
            assert_eq!(image.phys32_entry, 0x10_0040);
            assert_eq!(image.segments.len(), 1);
            assert_eq!(image.segments[0].paddr, 0x10_0000);
            assert_eq!(image.segments[0].file_size, 12);
            assert_eq!(image.extent(), (0x10_0000, 0x10_2000));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let elf = make_elf(true, 0x10_0000);
        for len in 0..elf.len() {
            assert!(parse_pvh(&elf[..len]).is_err(), "length {len} accepted");
        }
    }

    #[test]
    fn corrupt_images_are_refused() {
        assert_eq!(parse_pvh(b"MZ not an elf at all"), Err(ElfError::NotElf));
        let mut elf = make_elf(true, 0x10_0000);
        elf[18] = 0x28; // EM_ARM
        assert_eq!(parse_pvh(&elf), Err(ElfError::WrongArchitecture));
        // Flip every byte in turn: never a panic.
        let base = make_elf(false, 0x10_0000);
        for at in 0..base.len() {
            let mut copy = base.clone();
            copy[at] ^= 0xff;
            let _ = parse_pvh(&copy);
        }
    }

    #[test]
    fn image_without_the_note_is_not_pvh() {
        let mut elf = make_elf(true, 0x10_0000);
        let note_type_at = 64 + 2 * 56 + 8;
        elf[note_type_at] = 17;
        assert_eq!(parse_pvh(&elf), Err(ElfError::NoPvhEntry));
    }
}
