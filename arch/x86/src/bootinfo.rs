//! Reading what the boot loader passed: multiboot (v1) from QEMU's
//! `-kernel`, multiboot2 from GRUB, or the PVH `hvm_start_info`. Everything
//! is copied into a [`BootInfo`] (on the early heap) and checked for sanity;
//! nothing the loader wrote is trusted to be well-formed.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

/// Multiboot (v1) magic that the loader leaves in EAX.
pub const MULTIBOOT1_BOOT_MAGIC: u32 = 0x2BAD_B002;
/// Multiboot2 magic that the loader leaves in EAX.
pub const MULTIBOOT2_BOOT_MAGIC: u32 = 0x36D7_6289;
/// Magic of `hvm_start_info` (the PVH entry stub puts it in EAX).
pub const PVH_BOOT_MAGIC: u32 = rxen_abi::start_info::XEN_HVM_START_MAGIC_VALUE;

/// Longest command line we read from loader memory.
const MAX_STRING: usize = 4096;
/// Most memory-map entries we accept.
const MAX_MEMORY_ENTRIES: usize = 512;
/// Most modules we accept.
const MAX_MODULES: usize = 64;

/// How the machine was booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Multiboot v1 (QEMU `-kernel`, GRUB `multiboot`).
    Multiboot1,
    /// Multiboot2 (GRUB `multiboot2`).
    Multiboot2,
    /// PVH (`hvm_start_info`).
    Pvh,
}

/// One firmware memory-map entry, as the loader gave it.
#[derive(Clone, Copy, Debug)]
pub struct FirmwareMemEntry {
    /// Start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// E820 type (1 = usable).
    pub kind: u32,
}

/// One boot module.
#[derive(Clone, Debug)]
pub struct BootModule {
    /// Physical start.
    pub start: u64,
    /// Physical end (exclusive).
    pub end: u64,
    /// Its command line as the loader gave it.
    pub cmdline: String,
}

/// Where to find the ACPI tables.
#[derive(Clone, Copy, Debug)]
pub enum AcpiRoot {
    /// Search the BIOS areas for the RSDP.
    SearchBios,
    /// The RSDP is at this physical address.
    Rsdp(u64),
    /// An RSDT (revision 0) or XSDT (revision 2) at this address.
    Sdt {
        /// ACPI revision: 0 means RSDT, 2 or more XSDT.
        revision: u8,
        /// Physical address.
        address: u64,
    },
}

/// Everything rxen uses from the boot loader.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// Protocol.
    pub protocol: BootProtocol,
    /// Loader's name ("qemu", "GRUB 2.06", ...), empty if none.
    pub loader_name: String,
    /// The raw command line.
    pub cmdline: String,
    /// The memory map as given.
    pub memory: Vec<FirmwareMemEntry>,
    /// Modules in order.
    pub modules: Vec<BootModule>,
    /// ACPI root.
    pub acpi: AcpiRoot,
    /// Physical ranges that hold the loader's data (to keep out of the
    /// frame allocator).
    pub occupied: Vec<Range<u64>>,
    /// Problems found while reading.
    pub problems: Vec<String>,
}

/// Why the boot information could not be read at all.
#[derive(Clone, Copy, Debug)]
pub enum BootInfoError {
    /// EAX held no known magic.
    UnknownMagic(u32),
    /// The info pointer is null or misaligned.
    BadPointer(u32),
    /// The multiboot2 structure failed to parse.
    Multiboot2Invalid,
    /// The PVH start info has a wrong magic or version.
    PvhInvalid,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownMagic(m) => write!(f, "unknown boot loader magic {m:#x}"),
            Self::BadPointer(p) => write!(f, "bad boot information pointer {p:#x}"),
            Self::Multiboot2Invalid => f.write_str("malformed multiboot2 information"),
            Self::PvhInvalid => f.write_str("malformed PVH start info"),
        }
    }
}

fn read_u32(address: u64) -> u32 {
    // SAFETY: the boot page tables identity-map 0..4 GiB and every caller
    // passes a 32-bit address from the loader; unaligned reads are allowed.
    unsafe { core::ptr::read_unaligned(address as *const u32) }
}

fn read_u64(address: u64) -> u64 {
    // SAFETY: as in `read_u32`.
    unsafe { core::ptr::read_unaligned(address as *const u64) }
}

fn below_4g(address: u64, len: u64) -> bool {
    address.checked_add(len).is_some_and(|end| end <= 1 << 32)
}

/// Reads a NUL-terminated string of at most [`MAX_STRING`] bytes.
fn read_cstr(address: u64, problems: &mut Vec<String>) -> (String, Range<u64>) {
    if address == 0 || !below_4g(address, 1) {
        return (String::new(), 0..0);
    }
    let mut bytes = Vec::new();
    let mut at = address;
    while bytes.len() < MAX_STRING && below_4g(at, 1) {
        // SAFETY: `at` is below 4 GiB, identity-mapped (see `read_u32`).
        let byte = unsafe { core::ptr::read_volatile(at as *const u8) };
        if byte == 0 {
            break;
        }
        bytes.push(byte);
        at += 1;
    }
    if bytes.len() == MAX_STRING {
        problems.push(alloc::format!(
            "string at {address:#x} longer than {MAX_STRING} bytes: truncated"
        ));
    }
    (String::from_utf8_lossy(&bytes).to_string(), address..at + 1)
}

/// Reads the boot information that `magic` (EAX at entry) announces at
/// physical address `pointer` (EBX at entry).
pub fn parse(magic: u32, pointer: u32) -> Result<BootInfo, BootInfoError> {
    if pointer == 0 || !pointer.is_multiple_of(4) {
        return Err(BootInfoError::BadPointer(pointer));
    }
    match magic {
        MULTIBOOT1_BOOT_MAGIC => Ok(parse_multiboot1(pointer as u64)),
        MULTIBOOT2_BOOT_MAGIC => parse_multiboot2(pointer),
        PVH_BOOT_MAGIC => parse_pvh(pointer as u64),
        other => Err(BootInfoError::UnknownMagic(other)),
    }
}

fn empty(protocol: BootProtocol) -> BootInfo {
    BootInfo {
        protocol,
        loader_name: String::new(),
        cmdline: String::new(),
        memory: Vec::new(),
        modules: Vec::new(),
        acpi: AcpiRoot::SearchBios,
        occupied: Vec::new(),
        problems: Vec::new(),
    }
}

fn parse_multiboot1(info: u64) -> BootInfo {
    const FLAG_MEM: u32 = 1 << 0;
    const FLAG_CMDLINE: u32 = 1 << 2;
    const FLAG_MODS: u32 = 1 << 3;
    const FLAG_MMAP: u32 = 1 << 6;
    const FLAG_LOADER_NAME: u32 = 1 << 9;
    let mut boot = empty(BootProtocol::Multiboot1);
    boot.occupied.push(info..info + 88);
    let flags = read_u32(info);
    if flags & FLAG_CMDLINE != 0 {
        let (cmdline, range) = read_cstr(read_u32(info + 16) as u64, &mut boot.problems);
        boot.cmdline = cmdline;
        boot.occupied.push(range);
    }
    if flags & FLAG_LOADER_NAME != 0 {
        let (name, range) = read_cstr(read_u32(info + 64) as u64, &mut boot.problems);
        boot.loader_name = name;
        boot.occupied.push(range);
    }
    if flags & FLAG_MODS != 0 {
        let count = read_u32(info + 20) as u64;
        let table = read_u32(info + 24) as u64;
        if count as usize > MAX_MODULES || !below_4g(table, count * 16) {
            boot.problems.push(alloc::format!(
                "module list ({count} modules at {table:#x}) makes no sense: ignored"
            ));
        } else {
            boot.occupied.push(table..table + count * 16);
            for index in 0..count {
                let entry = table + index * 16;
                let (cmdline, range) = read_cstr(read_u32(entry + 8) as u64, &mut boot.problems);
                boot.occupied.push(range);
                boot.modules.push(BootModule {
                    start: read_u32(entry) as u64,
                    end: read_u32(entry + 4) as u64,
                    cmdline,
                });
            }
        }
    }
    if flags & FLAG_MMAP != 0 {
        let length = read_u32(info + 44) as u64;
        let address = read_u32(info + 48) as u64;
        if !below_4g(address, length) {
            boot.problems.push(alloc::format!(
                "memory map at {address:#x} out of range: ignored"
            ));
        } else {
            boot.occupied.push(address..address + length);
            let mut at = address;
            while at + 24 <= address + length && boot.memory.len() < MAX_MEMORY_ENTRIES {
                let size = read_u32(at) as u64;
                boot.memory.push(FirmwareMemEntry {
                    base: read_u64(at + 4),
                    len: read_u64(at + 12),
                    kind: read_u32(at + 20),
                });
                if size < 20 {
                    boot.problems.push(alloc::format!(
                        "memory map entry size {size} too small: map cut short"
                    ));
                    break;
                }
                at += size + 4;
            }
        }
    } else if flags & FLAG_MEM != 0 {
        let lower = read_u32(info + 4) as u64 * 1024;
        let upper = read_u32(info + 8) as u64 * 1024;
        boot.memory.push(FirmwareMemEntry {
            base: 0,
            len: lower,
            kind: 1,
        });
        boot.memory.push(FirmwareMemEntry {
            base: 1 << 20,
            len: upper,
            kind: 1,
        });
    }
    boot
}

fn parse_multiboot2(pointer: u32) -> Result<BootInfo, BootInfoError> {
    use multiboot2::{BootInformation, BootInformationHeader};
    // SAFETY: the loader announced multiboot2 with this 8-byte aligned
    // pointer; `load` checks the header, size and alignment before use.
    let mbi = unsafe { BootInformation::load(pointer as usize as *const BootInformationHeader) }
        .map_err(|_| BootInfoError::Multiboot2Invalid)?;
    let mut boot = empty(BootProtocol::Multiboot2);
    boot.occupied
        .push(mbi.start_address() as u64..mbi.end_address() as u64);
    if let Some(tag) = mbi.command_line_tag() {
        boot.cmdline = tag.cmdline().unwrap_or_default().to_string();
    }
    if let Some(tag) = mbi.boot_loader_name_tag() {
        boot.loader_name = tag.name().unwrap_or_default().to_string();
    }
    for module in mbi.module_tags().take(MAX_MODULES) {
        boot.modules.push(BootModule {
            start: module.start_address() as u64,
            end: module.end_address() as u64,
            cmdline: module.cmdline().unwrap_or_default().to_string(),
        });
    }
    if let Some(tag) = mbi.memory_map_tag() {
        for area in tag.memory_areas().iter().take(MAX_MEMORY_ENTRIES) {
            boot.memory.push(FirmwareMemEntry {
                base: area.start_address(),
                len: area.size(),
                kind: u32::from(area.typ()),
            });
        }
    }
    if let Some(tag) = mbi.rsdp_v2_tag() {
        boot.acpi = AcpiRoot::Sdt {
            revision: 2,
            address: tag.xsdt_address() as u64,
        };
    } else if let Some(tag) = mbi.rsdp_v1_tag() {
        boot.acpi = AcpiRoot::Sdt {
            revision: 0,
            address: tag.rsdt_address() as u64,
        };
    }
    Ok(boot)
}

fn parse_pvh(info: u64) -> Result<BootInfo, BootInfoError> {
    let mut boot = empty(BootProtocol::Pvh);
    let version = read_u32(info + 4);
    if read_u32(info) != PVH_BOOT_MAGIC {
        return Err(BootInfoError::PvhInvalid);
    }
    boot.occupied.push(info..info + 56);
    let (cmdline, range) = read_cstr(read_u64(info + 24), &mut boot.problems);
    boot.cmdline = cmdline;
    boot.occupied.push(range);
    let rsdp = read_u64(info + 32);
    if rsdp != 0 {
        boot.acpi = AcpiRoot::Rsdp(rsdp);
    }
    let count = read_u32(info + 12) as u64;
    let list = read_u64(info + 16);
    if count as usize <= MAX_MODULES && below_4g(list, count * 32) {
        boot.occupied.push(list..list + count * 32);
        for index in 0..count {
            let entry = list + index * 32;
            let start = read_u64(entry);
            let (cmdline, range) = read_cstr(read_u64(entry + 16), &mut boot.problems);
            boot.occupied.push(range);
            boot.modules.push(BootModule {
                start,
                end: start.saturating_add(read_u64(entry + 8)),
                cmdline,
            });
        }
    } else {
        boot.problems.push(alloc::format!(
            "PVH module list ({count} at {list:#x}) makes no sense: ignored"
        ));
    }
    if version >= 1 {
        let map = read_u64(info + 40);
        let entries = read_u32(info + 48) as u64;
        if entries as usize <= MAX_MEMORY_ENTRIES && below_4g(map, entries * 24) {
            boot.occupied.push(map..map + entries * 24);
            for index in 0..entries {
                let entry = map + index * 24;
                boot.memory.push(FirmwareMemEntry {
                    base: read_u64(entry),
                    len: read_u64(entry + 8),
                    kind: read_u32(entry + 16),
                });
            }
        }
    }
    Ok(boot)
}
