//! The PVH domain builder: loads a kernel ELF by physical address, places
//! the modules, the command line, the memory map and `hvm_start_info`
//! (version 1) in guest memory, and sets the vCPU's initial state as
//! `docs/misc/pvh.pandoc` describes.
//!
//! A domU also gets ACPI tables ([`rxen_core::acpi_tables`]: RSDP, XSDT,
//! hardware-reduced FADT, DSDT, MADT with its vCPUs' local APICs), as Xen's
//! toolstack builds them for a PVH guest: they sit at [`ACPI_TABLES_BASE`],
//! the top 16 KiB of the legacy hole below 1 MiB, which the memory map marks
//! ACPI (E820 type 3); `hvm_start_info.rsdp_paddr` points at the RSDP. A 1:1
//! dom0 gets the host's tables through a new RSDP, XSDT and MADT
//! ([`rxen_core::dom0_acpi`], as Xen builds them for a PVH dom0), in the
//! last page of its RAM below 4 GiB.
//!
//! The kernel is a PVH ELF, or a Linux bzImage as distributions ship it:
//! then the ELF inside is decompressed first ([`rxen_core::bzimage`]) into
//! frames taken from the frame allocator for the time of the build (a
//! distribution kernel unpacks to tens of MiB, more than the hypervisor
//! heap), with the xz dictionary in frames too, and the frames go back as
//! soon as the segments are copied.

use alloc::string::String;
use alloc::vec::Vec;

use rxen_abi::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, SIF_INITDOMAIN, XEN_HVM_START_MAGIC_VALUE,
};
use rxen_core::acpi_tables::{self, AcpiError};
use rxen_core::bzimage::{self, BzImageError};
use rxen_core::domain::GuestMemRegion;
use rxen_core::elf::{self, ElfError};
use rxen_core::mm::Gpa;
use rxen_x86::printk;
use zerocopy::IntoBytes;

use super::memory::GuestMemory;

/// What a domain is built from (kept for reboots).
#[derive(Clone, Debug)]
pub struct BootSpec {
    /// The kernel image bytes' host location.
    pub kernel: (u64, u64),
    /// The kernel command line.
    pub cmdline: String,
    /// Further modules (initrd first): host range and command line.
    pub modules: Vec<((u64, u64), String)>,
    /// RAM in bytes.
    pub memory_bytes: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of vCPUs (vCPU 0 starts; the others wait for VCPUOP_up).
    pub vcpus: u32,
    /// Size of the paging pool in MiB (xl.cfg's `shadow_memory`); unset:
    /// Xen's default for the vCPUs and RAM.
    pub shadow_memory_mb: Option<u64>,
    /// The highest event-channel port the domain may use (Xen's
    /// `max_evtchn_port`; xl's `max_event_channels`).
    pub max_evtchn_port: u32,
    /// The most pages the domain may have (`max_pages`; dom0's from
    /// `dom0_mem=max:`, as Xen); `None`: the pages it is built with.
    pub max_pages: Option<u64>,
    /// For a 1:1 dom0: its RAM (host ranges at the same guest address) and
    /// memory map; `None`: RAM from the frame allocator from address 0.
    pub direct: Option<rxen_core::dom0_memory::Dom0Memory>,
}

/// xl's default `max_event_channels` for a domU.
pub const DOMU_MAX_EVTCHN_PORT: u32 = 1023;

impl BootSpec {
    /// Whether the domain gets ACPI tables in the ACPI area of its memory
    /// map ([`ACPI_TABLES_BASE`]): every domain whose RAM is not 1:1, a domU
    /// a PVH domU's tables, a dom0 the host's rewritten. A 1:1 dom0's go in
    /// its own RAM ([`rxen_core::dom0_memory::Dom0Memory::take_acpi_page`]).
    pub fn builds_acpi_tables(&self) -> bool {
        self.direct.is_none()
    }

    /// Whether the domain is dom0.
    fn is_dom0(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }

    /// Frames of the domain's paging pool (its nested page tables).
    pub fn paging_pages(&self) -> u64 {
        self.shadow_memory_mb
            .map(|mb| mb.saturating_mul(256))
            .unwrap_or_else(|| {
                rxen_core::frame_alloc::default_paging_pages(self.vcpus, self.memory_bytes)
            })
    }
}

pub use rxen_core::acpi_tables::{guest_memory_map, ACPI_TABLES_BASE, ACPI_TABLES_SIZE};

/// Where things went in the guest.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// 32-bit entry point.
    pub entry: u32,
    /// Guest-physical address of `hvm_start_info`.
    pub start_info: u64,
    /// Guest-physical address of the ACPI RSDP (0: no ACPI tables).
    pub rsdp: u64,
}

/// Why a domain could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The kernel image is not a usable PVH ELF.
    Elf(ElfError),
    /// The kernel is a bzImage that cannot be unpacked.
    BzImage(BzImageError),
    /// No contiguous frames to unpack the kernel into.
    NoMemory(&'static str),
    /// The image or its modules do not fit in the domain's memory.
    DoesNotFit(&'static str),
    /// No ACPI tables for this domain.
    Acpi(AcpiError),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Elf(e) => write!(f, "kernel image: {e}"),
            Self::BzImage(e) => write!(f, "kernel image: {e}"),
            Self::NoMemory(what) => write!(f, "no free frames for {what}"),
            Self::DoesNotFit(what) => write!(f, "{what} does not fit in the domain's memory"),
            Self::Acpi(e) => write!(f, "{e}"),
        }
    }
}

/// Builds a 1:1 dom0's ACPI tables from the host's ([`rxen_core::dom0_acpi`])
/// into its page at `page`; returns the RSDP's address, or 0 when there are
/// none (no host RSDP known, or tables that do not check out: dom0 then
/// finds the host's by itself, as without a hypervisor).
fn dom0_acpi(memory: &mut GuestMemory, page: u64, vcpus: u32) -> u64 {
    let Some(rsdp) = crate::acpi::rsdp() else {
        printk!("d0: no host RSDP known: no ACPI tables built for dom0");
        return 0;
    };
    match rxen_core::dom0_acpi::build(&crate::acpi::HostPhys, rsdp, vcpus, page) {
        Ok(tables) if tables.bytes.len() <= 4096 => {
            if memory.write_phys(Gpa(page), &tables.bytes).is_err() {
                return 0;
            }
            if !memory.is_direct() && !map_host_tables(memory, &tables.host_tables) {
                printk!("d0: the host's ACPI tables overlap its RAM: no ACPI tables built");
                return 0;
            }
            printk!(
                "d0: ACPI tables at {page:#x} (RSDP, XSDT of the host's tables, MADT with {vcpus} local APIC(s))"
            );
            tables.rsdp
        }
        Ok(_) => {
            printk!("d0: ACPI tables larger than a page: none built");
            0
        }
        Err(why) => {
            printk!("d0: no ACPI tables built from the host's: {why}");
            0
        }
    }
}

/// Maps the pages of the host's ACPI tables `tables` (address, length)
/// read-only at their addresses into a dom0 whose RAM is not 1:1; false if
/// one of them is where the domain has RAM (its tables would then point at
/// its own memory). At most 4 MiB per table ([`rxen_core::dom0_acpi`]).
fn map_host_tables(memory: &mut GuestMemory, tables: &[(u64, u32)]) -> bool {
    for &(at, len) in tables {
        let (first, end) = (at & !0xFFF, at.saturating_add(u64::from(len)));
        let mut page = first;
        while page < end {
            let mapped = memory.host_address(Gpa(page), false);
            if mapped.is_some_and(|hpa| hpa.0 != page) {
                return false;
            }
            if mapped.is_none() && !memory.map_host_readonly(Gpa(page)) {
                return false;
            }
            page = page.saturating_add(4096);
        }
    }
    true
}

/// The bytes of a boot module at host range `range`.
pub fn host_bytes(range: (u64, u64)) -> &'static [u8] {
    // SAFETY: boot modules are identity-mapped RAM that the frame allocator
    // never hands out (they are reserved at boot) and nobody writes.
    unsafe { core::slice::from_raw_parts(range.0 as *const u8, (range.1 - range.0) as usize) }
}

/// Contiguous frames borrowed from the frame allocator, returned on drop.
struct ScratchFrames(Option<rxen_x86::frame::HostFrames>);

impl ScratchFrames {
    fn new(bytes: usize, what: &'static str) -> Result<Self, BuildError> {
        let count = bytes.div_ceil(4096);
        if count == 0 {
            return Ok(Self(None));
        }
        let frames = crate::memory::alloc_owned(count).ok_or(BuildError::NoMemory(what))?;
        Ok(Self(Some(frames)))
    }

    fn bytes(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Some(frames) => frames.as_bytes_mut(),
            None => &mut [],
        }
    }
}

/// The largest zstd window accepted: it is allocated on the hypervisor heap.
const ZSTD_MAX_WINDOW: u64 = 8 << 20;

/// Unpacks a bzImage's kernel into scratch frames; `.0` holds the ELF.
fn unpack(image: &[u8]) -> Result<(ScratchFrames, usize), BuildError> {
    let started = crate::time::now_ns();
    let payload = bzimage::payload(image).map_err(BuildError::BzImage)?;
    let mut out = ScratchFrames::new(payload.size, "the decompressed kernel")?;
    // A kernel build's xz unpacks into `out` alone; anything else gets the
    // dictionary it names (32 MiB for Debian's) only now.
    let size = match bzimage::decompress_single(&payload, out.bytes()) {
        Some(size) => size,
        None => {
            let mut dict = ScratchFrames::new(
                payload.scratch_size().map_err(BuildError::BzImage)?,
                "the xz dictionary",
            )?;
            bzimage::decompress_general(&payload, out.bytes(), dict.bytes(), ZSTD_MAX_WINDOW)
                .map_err(BuildError::BzImage)?
        }
    };
    printk!(
        "kernel: bzImage (boot protocol {}.{:02}), {} payload: {} -> {} bytes in {} ms",
        payload.protocol >> 8,
        payload.protocol & 0xff,
        payload.compression,
        payload.data.len(),
        size,
        crate::time::now_ns().saturating_sub(started) / 1_000_000
    );
    Ok((out, size))
}

/// Loads the kernel and boot data into `memory`.
pub fn load(
    spec: &BootSpec,
    memory: &mut GuestMemory,
    map: &[GuestMemRegion],
) -> Result<Layout, BuildError> {
    let mut unpacked = None;
    let mut image_bytes: &[u8] = host_bytes(spec.kernel);
    if bzimage::is_bzimage(image_bytes) {
        let (frames, size) = unpacked.insert(unpack(image_bytes)?);
        image_bytes = &frames.bytes()[..*size];
    }
    let image = elf::parse_pvh(image_bytes).map_err(BuildError::Elf)?;
    let (_, kernel_end) = image.extent();
    if kernel_end > memory.ram_bytes {
        return Err(BuildError::DoesNotFit("the kernel"));
    }
    let acpi = spec.builds_acpi_tables();
    for segment in &image.segments {
        if acpi && segment.paddr < 0x10_0000 && segment.paddr + segment.mem_size > ACPI_TABLES_BASE
        {
            return Err(BuildError::DoesNotFit(
                "a kernel segment (over the ACPI tables)",
            ));
        }
        let start = segment.offset as usize;
        let bytes = &image_bytes[start..start + segment.file_size as usize];
        memory
            .write_phys(Gpa(segment.paddr), bytes)
            .map_err(|_| BuildError::DoesNotFit("a kernel segment"))?;
        // The rest of the segment (its BSS) is zero, as Xen's ELF loader
        // leaves it: a 1:1 dom0's RAM is not zeroed beforehand.
        // (`parse_pvh` checked file_size <= mem_size and paddr + mem_size.)
        memory
            .zero_phys(
                Gpa(segment.paddr + segment.file_size),
                (segment.mem_size - segment.file_size) as usize,
            )
            .map_err(|_| BuildError::DoesNotFit("a kernel segment"))?;
    }
    drop(unpacked);

    // Modules, then the start info page, above the kernel.
    let mut next = kernel_end.next_multiple_of(4096);
    let mut modlist = Vec::new();
    for (range, _) in &spec.modules {
        let bytes = host_bytes(*range);
        memory
            .write_phys(Gpa(next), bytes)
            .map_err(|_| BuildError::DoesNotFit("a module"))?;
        modlist.push(HvmModlistEntry {
            paddr: next,
            size: bytes.len() as u64,
            cmdline_paddr: 0,
            reserved: 0,
        });
        next = (next + bytes.len() as u64).next_multiple_of(4096);
    }

    let start_info_at = next;
    let modlist_at = start_info_at + core::mem::size_of::<HvmStartInfo>() as u64;
    let memmap_at = modlist_at + (modlist.len() * core::mem::size_of::<HvmModlistEntry>()) as u64;
    let mut strings_at =
        memmap_at + (map.len() * core::mem::size_of::<HvmMemmapTableEntry>()) as u64;
    let mut strings: Vec<u8> = Vec::new();
    let mut push_string = |text: &str, strings: &mut Vec<u8>| {
        let at = strings_at;
        strings.extend_from_slice(text.as_bytes());
        strings.push(0);
        strings_at += text.len() as u64 + 1;
        at
    };
    let cmdline_at = push_string(&spec.cmdline, &mut strings);
    for (entry, (_, cmdline)) in modlist.iter_mut().zip(&spec.modules) {
        entry.cmdline_paddr = if cmdline.is_empty() {
            0
        } else {
            push_string(cmdline, &mut strings)
        };
    }
    let end = strings_at;
    if end > memory.ram_bytes {
        return Err(BuildError::DoesNotFit("the start info"));
    }

    let rsdp_paddr = if acpi && spec.is_dom0() {
        dom0_acpi(memory, ACPI_TABLES_BASE, spec.vcpus)
    } else if acpi {
        let tables = acpi_tables::build(ACPI_TABLES_BASE, spec.vcpus).map_err(BuildError::Acpi)?;
        if tables.bytes.len() as u64 > ACPI_TABLES_SIZE {
            return Err(BuildError::DoesNotFit("the ACPI tables"));
        }
        memory
            .write_phys(Gpa(tables.base), &tables.bytes)
            .map_err(|_| BuildError::DoesNotFit("the ACPI tables"))?;
        tables.rsdp
    } else if let Some(page) = spec.direct.as_ref().and_then(|d| d.acpi_page) {
        dom0_acpi(memory, page, spec.vcpus)
    } else {
        0
    };

    let start_info = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        flags: spec.flags,
        nr_modules: modlist.len() as u32,
        modlist_paddr: if modlist.is_empty() { 0 } else { modlist_at },
        cmdline_paddr: cmdline_at,
        rsdp_paddr,
        memmap_paddr: memmap_at,
        memmap_entries: map.len() as u32,
        reserved: 0,
    };
    let fail = |_| BuildError::DoesNotFit("the start info");
    memory
        .write_phys(Gpa(start_info_at), start_info.as_bytes())
        .map_err(fail)?;
    memory
        .write_phys(Gpa(modlist_at), modlist.as_bytes())
        .map_err(fail)?;
    let entries: Vec<HvmMemmapTableEntry> = map
        .iter()
        .map(|r| HvmMemmapTableEntry {
            addr: r.addr,
            size: r.size,
            type_: r.kind,
            reserved: 0,
        })
        .collect();
    memory
        .write_phys(Gpa(memmap_at), entries.as_bytes())
        .map_err(fail)?;
    memory
        .write_phys(Gpa(memmap_at + entries.as_bytes().len() as u64), &strings)
        .map_err(fail)?;
    Ok(Layout {
        entry: image.phys32_entry,
        start_info: start_info_at,
        rsdp: rsdp_paddr,
    })
}
