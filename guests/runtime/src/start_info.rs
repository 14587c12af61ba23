//! The PVH start info (`struct hvm_start_info`) the guest is entered with (EBX).

use crate::xen::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC};

/// Read-only view of the `hvm_start_info` and what it points to.
#[derive(Clone, Copy)]
pub struct StartInfo {
    raw: &'static HvmStartInfo,
}

impl StartInfo {
    /// Wraps the start info at physical address `paddr`, if its magic is right.
    ///
    /// # Safety
    /// `paddr` must be identity-mapped and point to memory that stays valid and unchanged
    /// for the rest of the run (the loader's start info, or a test's static).
    pub unsafe fn from_paddr(paddr: u64) -> Option<StartInfo> {
        if paddr == 0 || !paddr.is_multiple_of(4) {
            return None;
        }
        // SAFETY: per the caller's contract.
        let raw = unsafe { &*(paddr as *const HvmStartInfo) };
        (raw.magic == HVM_START_MAGIC).then_some(StartInfo { raw })
    }

    /// The raw structure.
    pub fn raw(&self) -> &'static HvmStartInfo {
        self.raw
    }

    /// `version` (0, or 1 with the memory map).
    pub fn version(&self) -> u32 {
        self.raw.version
    }

    /// `SIF_*` flags.
    pub fn flags(&self) -> u32 {
        self.raw.flags
    }

    /// The command line (empty if none or not UTF-8).
    pub fn cmdline(&self) -> &'static str {
        // SAFETY: the loader's pointers are identity-mapped, NUL-terminated strings.
        unsafe { c_string(self.raw.cmdline_paddr) }
    }

    /// The module list.
    pub fn modules(&self) -> &'static [HvmModlistEntry] {
        if self.raw.modlist_paddr == 0 || self.raw.nr_modules == 0 {
            return &[];
        }
        // SAFETY: the loader's module list, `nr_modules` entries, identity-mapped.
        unsafe {
            core::slice::from_raw_parts(
                self.raw.modlist_paddr as *const HvmModlistEntry,
                self.raw.nr_modules as usize,
            )
        }
    }

    /// The memory map (empty before version 1).
    pub fn memmap(&self) -> &'static [HvmMemmapEntry] {
        if self.raw.version < 1 || self.raw.memmap_paddr == 0 {
            return &[];
        }
        // SAFETY: the loader's memory map, `memmap_entries` entries, identity-mapped.
        unsafe {
            core::slice::from_raw_parts(
                self.raw.memmap_paddr as *const HvmMemmapEntry,
                self.raw.memmap_entries as usize,
            )
        }
    }

    /// Physical address of the ACPI RSDP (0 if none).
    pub fn rsdp(&self) -> u64 {
        self.raw.rsdp_paddr
    }

    /// Whether the command line has the word `word` (space-separated).
    pub fn has_arg(&self, word: &str) -> bool {
        self.cmdline().split(' ').any(|w| w == word)
    }

    /// The value of the first `key=value` word of the command line (see
    /// [`cmdline_value`]).
    pub fn arg_value(&self, key: &str) -> Option<&'static str> {
        cmdline_value(self.cmdline(), key)
    }

    /// The value of `key=<number>` (see [`parse_u64`]); `None` if absent or not a number.
    pub fn arg_u64(&self, key: &str) -> Option<u64> {
        self.arg_value(key).and_then(parse_u64)
    }
}

/// The value of the first word `key=value` of `cmdline` (words are separated by spaces
/// or tabs; the value is everything after the first `=`, possibly empty).
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split([' ', '\t'])
        .find_map(|w| w.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// A decimal or `0x` hexadecimal number (`_` allowed between digits), `None` otherwise.
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let mut v: u64 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(radix)?;
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// The NUL-terminated string at `paddr` (at most 4 KiB), `""` if 0 or not UTF-8.
///
/// # Safety
/// `paddr` must be 0 or an identity-mapped, readable, NUL-terminated string.
pub unsafe fn c_string(paddr: u64) -> &'static str {
    if paddr == 0 {
        return "";
    }
    let p = paddr as *const u8;
    let mut len = 0;
    // SAFETY: per the caller's contract; bounded at 4 KiB.
    while len < 4096 && unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes just read.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// Total bytes of e820 RAM (type 1) in `map`.
pub fn ram_bytes(map: &[HvmMemmapEntry]) -> u64 {
    map.iter()
        .filter(|e| e.type_ == crate::xen::E820_RAM)
        .map(|e| e.size)
        .sum()
}

/// The entry of `map` that contains `addr`, if any.
pub fn entry_at(map: &[HvmMemmapEntry], addr: u64) -> Option<&HvmMemmapEntry> {
    map.iter()
        .find(|e| addr >= e.addr && addr - e.addr < e.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memmap_helpers() {
        let map = [
            HvmMemmapEntry {
                addr: 0,
                size: 0x9f000,
                type_: 1,
                reserved: 0,
            },
            HvmMemmapEntry {
                addr: 0x100000,
                size: 0x100000,
                type_: 1,
                reserved: 0,
            },
            HvmMemmapEntry {
                addr: 0xf0000,
                size: 0x10000,
                type_: 2,
                reserved: 0,
            },
        ];
        assert_eq!(ram_bytes(&map), 0x9f000 + 0x100000);
        assert_eq!(entry_at(&map, 0x1fffff).unwrap().addr, 0x100000);
        assert_eq!(entry_at(&map, 0x200000), None);
        assert_eq!(entry_at(&map, 0xf8000).unwrap().type_, 2);
    }

    #[test]
    fn cmdline_values() {
        let c = "role=server  peer=2 rounds=0x10\tempty= x=1=2 peer=3 flag";
        assert_eq!(cmdline_value(c, "role"), Some("server"));
        assert_eq!(cmdline_value(c, "peer"), Some("2"));
        assert_eq!(cmdline_value(c, "rounds").and_then(parse_u64), Some(16));
        assert_eq!(cmdline_value(c, "empty"), Some(""));
        assert_eq!(cmdline_value(c, "x"), Some("1=2"));
        assert_eq!(cmdline_value(c, "flag"), None);
        assert_eq!(cmdline_value(c, "rol"), None);
        assert_eq!(cmdline_value("", "peer"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("1000"), Some(1000));
        assert_eq!(parse_u64("1_000"), Some(1000));
        assert_eq!(parse_u64("0x7ff0"), Some(0x7ff0));
        assert_eq!(parse_u64("0XFF"), Some(255));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        for bad in ["", "0x", "_1", "-1", "12a", "1.5", " 1"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn start_info_from_static() {
        static CMD: &[u8] = b"hello world\0";
        static MAP: [HvmMemmapEntry; 1] = [HvmMemmapEntry {
            addr: 0,
            size: 4096,
            type_: 1,
            reserved: 0,
        }];
        let si = std::boxed::Box::leak(std::boxed::Box::new(HvmStartInfo {
            magic: HVM_START_MAGIC,
            version: 1,
            flags: 3,
            nr_modules: 0,
            modlist_paddr: 0,
            cmdline_paddr: CMD.as_ptr() as u64,
            rsdp_paddr: 0,
            memmap_paddr: MAP.as_ptr() as u64,
            memmap_entries: 1,
            reserved: 0,
        }));
        // SAFETY: a leaked, valid structure whose pointers are static.
        let s = unsafe { StartInfo::from_paddr(si as *const _ as u64) }.unwrap();
        assert_eq!(s.cmdline(), "hello world");
        assert!(s.has_arg("world"));
        assert!(!s.has_arg("wor"));
        assert_eq!(s.arg_value("hello"), None);
        assert_eq!(s.memmap().len(), 1);
        assert!(s.modules().is_empty());
        // SAFETY: 0 is rejected before any access.
        assert!(unsafe { StartInfo::from_paddr(0) }.is_none());
    }

    extern crate std;
}
