//! Building and starting a PVH domain from a [`DomainConfig`], in the order of
//! libxl's create (`libxl_create.c`, `libxl_dom.c`) and libxc's PVH builder
//! (`xg_dom_x86.c`): `createdomain`, `max_vcpus`, `max_mem`; the RAM and the special
//! pages populated (2 MiB extents where aligned); event channels for the console
//! and xenstore offered to dom0; the kernel (a bzImage unpacked and its ELF
//! segments parsed by the same code the hypervisor uses for boot-time domains,
//! `rxen_core::bzimage` and `rxen_core::elf`), the ACPI tables and memory map of a
//! PVH guest (`rxen_core::acpi_tables`, as for boot-time domUs), the ramdisk,
//! `hvm_start_info` (v1: command line, module, memory map, RSDP) written through
//! foreign maps; the HVM params; the grant table seeded (entries 0 and 1 for the console
//! and xenstore pages, through `XENMEM_acquire_resource`); the memory map set; the
//! vCPU's state set (`gethvmcontext`/`sethvmcontext`); then unpaused. A failure
//! after `createdomain` destroys the half-built domain.

use rxen_abi::grant_table::{GrantEntryV1, GTF_PERMIT_ACCESS};
use rxen_abi::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use rxen_abi::hvm_save::*;
use rxen_abi::memory::{
    E820Entry, XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
};
use rxen_abi::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE,
};
use rxen_abi::xen::DomId;
use rxen_core::acpi_tables::{self, ACPI_TABLES_BASE, ACPI_TABLES_SIZE};
use rxen_core::domain::GuestMemRegion;
use rxen_ctrl::foreignmemory;
use rxen_ctrl::xc::Xc;
use zerocopy::{FromBytes, IntoBytes};

use crate::config::DomainConfig;

/// libxc's special pages: the last ones below `X86_HVM_END_SPECIAL_REGION`
/// (0xff000); the console's is the last, xenstore's three below.
pub const SPECIAL_START: u64 = 0xfeff8;
/// The PV console ring's frame.
pub const CONSOLE_GFN: u64 = 0xfefff;
/// The xenstore ring's frame.
pub const XENSTORE_GFN: u64 = 0xfeffc;
/// `LIBXL_MAXMEM_CONSTANT`: KiB libxl adds to `max_mem` for what a domain needs
/// beyond its RAM.
const MAXMEM_SLACK_KIB: u64 = 1024;
const PAGE: u64 = 4096;

/// With `rxl -v`: the time since `create` started at each step, on stderr (as
/// xl -v says what it does).
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn step(started: std::time::Instant, what: &str) {
    if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("rxl: {:8.3} s  {what}", started.elapsed().as_secs_f64());
    }
}

/// What was built.
#[derive(Debug)]
pub struct Built {
    /// The new domain.
    pub domid: DomId,
    /// Its console and xenstore ports (offered to dom0).
    pub console_port: u32,
    /// Its xenstore port.
    pub store_port: u32,
}

/// Builds `config`'s domain from `kernel` (and `ramdisk`), paused; destroys it
/// again if any step fails.
pub fn build(
    xc: &Xc,
    config: &DomainConfig,
    kernel: &[u8],
    ramdisk: Option<&[u8]>,
    xenstore: bool,
) -> Result<Built, String> {
    let started = std::time::Instant::now();
    // A distribution's bzImage is unpacked here, as libxc does, by the same
    // code the hypervisor uses for boot-time domains.
    let unpacked;
    let kernel = if rxen_core::bzimage::is_bzimage(kernel) {
        unpacked =
            rxen_core::bzimage::decode(kernel).map_err(|e| format!("{}: {e}", config.kernel))?;
        &unpacked[..]
    } else {
        kernel
    };
    step(started, "kernel unpacked");
    let image = rxen_core::elf::parse_pvh(kernel)
        .map_err(|e| format!("{}: not a PVH kernel: {e:?}", config.kernel))?;
    let ram = config.memory_mib << 20;
    let (_, kernel_end) = image.extent();
    if kernel_end > ram {
        return Err(format!(
            "{}: the kernel ends at {kernel_end:#x}, past the domain's {} MiB",
            config.kernel, config.memory_mib
        ));
    }
    let domid = xc
        .create_pvh(config.vcpus, [0; 16])
        .map_err(|e| e.to_string())?;
    step(started, "domain created");
    let images = Images {
        image: &image,
        kernel,
        ramdisk,
    };
    match fill(xc, config, &images, domid, xenstore, started) {
        Ok(built) => Ok(built),
        Err(e) => {
            let _ = xc.destroy(domid);
            Err(e)
        }
    }
}

/// The kernel (parsed and raw) and the ramdisk to load.
struct Images<'a> {
    image: &'a rxen_core::elf::PvhImage,
    kernel: &'a [u8],
    ramdisk: Option<&'a [u8]>,
}

fn fill(
    xc: &Xc,
    config: &DomainConfig,
    images: &Images,
    domid: DomId,
    xenstore: bool,
    started: std::time::Instant,
) -> Result<Built, String> {
    let Images {
        image,
        kernel,
        ramdisk,
    } = *images;
    let e = |e: rxen_ctrl::Error| e.to_string();
    let ram = config.memory_mib << 20;
    let pages = ram / PAGE;
    xc.max_vcpus(domid, config.vcpus).map_err(e)?;
    set_affinities(xc, config, domid)?;
    xc.max_mem(domid, (config.maxmem_mib << 10) + MAXMEM_SLACK_KIB)
        .map_err(e)?;
    // RAM in 2 MiB extents, the rest in pages; then the special pages.
    let big: Vec<u64> = (0..pages / 512).map(|i| i * 512).collect();
    let small: Vec<u64> = (pages / 512 * 512..pages).collect();
    let done = xc.populate_physmap(domid, &big, 9).map_err(e)?;
    let done_small = xc.populate_physmap(domid, &small, 0).map_err(e)?;
    let special = [CONSOLE_GFN, XENSTORE_GFN];
    let done_special = xc.populate_physmap(domid, &special, 0).map_err(e)?;
    if done != big.len() || done_small != small.len() || done_special != special.len() {
        return Err(format!(
            "d{domid}: out of memory for {} MiB",
            config.memory_mib
        ));
    }
    step(started, "memory populated");
    let console_port = xc.alloc_unbound(domid, 0).map_err(e)?;
    let store_port = xc.alloc_unbound(domid, 0).map_err(e)?;

    // Where things go: the ACPI tables at the top of the legacy hole (as the
    // hypervisor's builder puts them); the kernel's segments; then,
    // page-aligned, the ramdisk, the start info, the command line, the module
    // list and the memory map.
    let (kernel_low, kernel_end) = image.extent();
    if kernel_low < ACPI_TABLES_BASE + ACPI_TABLES_SIZE {
        return Err(format!(
            "{}: the kernel loads at {kernel_low:#x}, below 1 MiB",
            config.kernel
        ));
    }
    let acpi = acpi_tables::build(ACPI_TABLES_BASE, config.vcpus)
        .map_err(|e| format!("d{domid}: ACPI tables: {e}"))?;
    let mut map = acpi_tables::guest_memory_map(ram, true);
    map.push(GuestMemRegion {
        addr: SPECIAL_START * PAGE,
        size: (0xff000 - SPECIAL_START) * PAGE,
        kind: 2,
    });
    let ramdisk_at = kernel_end.next_multiple_of(PAGE);
    let ramdisk_len = ramdisk.map_or(0, |r| r.len() as u64);
    let info_at = (ramdisk_at + ramdisk_len).next_multiple_of(PAGE);
    let cmdline_at = info_at + size_of::<HvmStartInfo>() as u64;
    let modlist_at = (cmdline_at + config.cmdline.len() as u64 + 1).next_multiple_of(8);
    let memmap_at = modlist_at + size_of::<HvmModlistEntry>() as u64;
    let end = memmap_at + (map.len() * size_of::<HvmMemmapTableEntry>()) as u64;
    if end > ram {
        return Err(format!(
            "d{domid}: kernel, ramdisk and start info need {end:#x} bytes, more than {} MiB",
            config.memory_mib
        ));
    }
    // Only the pages written are mapped: the ACPI area, then from the kernel up.
    let acpi_pages = ACPI_TABLES_BASE / PAGE..(ACPI_TABLES_BASE + ACPI_TABLES_SIZE) / PAGE;
    let map_pages: Vec<u64> = acpi_pages
        .clone()
        .chain(kernel_low / PAGE..end.div_ceil(PAGE))
        .collect();
    let (mut mapping, errs) =
        foreignmemory::map(xc.call().privcmd(), domid, &map_pages).map_err(e)?;
    if let Some(bad) = errs.iter().position(|&err| err != 0) {
        return Err(format!(
            "d{domid}: frame {:#x} could not be mapped: {}",
            map_pages[bad], errs[bad]
        ));
    }
    // The mapping's offset of guest-physical `gpa` (in the ranges above).
    let window = (acpi_pages.end - acpi_pages.start) * PAGE;
    let at = |gpa: u64| -> usize {
        if gpa < ACPI_TABLES_BASE + ACPI_TABLES_SIZE {
            (gpa - ACPI_TABLES_BASE) as usize
        } else {
            (window + gpa - (kernel_low & !(PAGE - 1))) as usize
        }
    };
    step(started, "memory mapped");
    let memory = mapping.bytes_mut();
    memory[at(acpi.base)..][..acpi.bytes.len()].copy_from_slice(&acpi.bytes);
    for s in &image.segments {
        let (start, from, len) = (at(s.paddr), s.offset as usize, s.file_size as usize);
        let bytes = kernel
            .get(from..from + len)
            .ok_or_else(|| format!("{}: a segment past the file", config.kernel))?;
        memory[start..start + len].copy_from_slice(bytes);
        memory[start + len..start + s.mem_size as usize].fill(0);
    }
    if let Some(r) = ramdisk {
        memory[at(ramdisk_at)..][..r.len()].copy_from_slice(r);
    }
    let cmdline = config.cmdline.as_bytes();
    memory[at(cmdline_at)..][..cmdline.len()].copy_from_slice(cmdline);
    memory[at(cmdline_at) + cmdline.len()] = 0;
    let module = HvmModlistEntry {
        paddr: ramdisk_at,
        size: ramdisk_len,
        ..Default::default()
    };
    memory[at(modlist_at)..][..size_of_val(&module)].copy_from_slice(module.as_bytes());
    let e820: Vec<E820Entry> = map
        .iter()
        .map(|r| E820Entry {
            addr: r.addr,
            size: r.size,
            type_: r.kind,
        })
        .collect();
    for (i, entry) in e820.iter().enumerate() {
        let table = HvmMemmapTableEntry::from(*entry);
        let offset = at(memmap_at) + i * size_of::<HvmMemmapTableEntry>();
        memory[offset..][..size_of_val(&table)].copy_from_slice(table.as_bytes());
    }
    let info = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        nr_modules: u32::from(ramdisk.is_some()),
        modlist_paddr: if ramdisk.is_some() { modlist_at } else { 0 },
        cmdline_paddr: cmdline_at,
        rsdp_paddr: acpi.rsdp,
        memmap_paddr: memmap_at,
        memmap_entries: e820.len() as u32,
        ..Default::default()
    };
    memory[at(info_at)..][..size_of_val(&info)].copy_from_slice(info.as_bytes());
    step(started, "kernel, ramdisk and start info written");
    drop(mapping);
    step(started, "memory unmapped");

    // The console and xenstore pages start zeroed (populated so); the params and
    // the grant entries tell the guest and dom0's daemons where they are. The
    // xenstore page is announced only when a xenstore daemon will serve it (a
    // guest whose xenstore never answers waits for it forever).
    let mut params = vec![
        (HVM_PARAM_CONSOLE_PFN, CONSOLE_GFN),
        (HVM_PARAM_CONSOLE_EVTCHN, u64::from(console_port)),
    ];
    if xenstore {
        params.push((HVM_PARAM_STORE_PFN, XENSTORE_GFN));
        params.push((HVM_PARAM_STORE_EVTCHN, u64::from(store_port)));
    }
    for (index, value) in params {
        xc.set_hvm_param(domid, index, value).map_err(e)?;
    }
    seed_grants(xc, domid)?;
    xc.set_memory_map(domid, &e820).map_err(e)?;
    set_vcpu(xc, domid, u64::from(image.phys32_entry), info_at)?;
    step(started, "grants, params, memory map and vCPU set");
    Ok(Built {
        domid,
        console_port,
        store_port,
    })
}

/// libxc's `xc_dom_gnttab_seed`: grant entries 0 (console page) and 1 (xenstore
/// page) of the new domain's table, for dom0.
/// `cpus` and `cpus_soft` (xl's `libxl__build_pre`): each vCPU's hard and
/// soft affinity, CPU lists checked against the machine's pCPUs; a list the
/// machine cannot take fails the build.
fn set_affinities(xc: &Xc, config: &DomainConfig, domid: DomId) -> Result<(), String> {
    if config.cpus.is_none() && config.cpus_soft.is_none() {
        return Ok(());
    }
    let nr_cpus = xc.physinfo().map_err(|e| e.to_string())?.nr_cpus;
    for v in 0..config.vcpus {
        let mask = |key: &str, a: &Option<crate::config::Affinities>| {
            a.as_ref()
                .map(|a| crate::cpulist::parse(a.of(v as usize), nr_cpus))
                .transpose()
                .map_err(|reason| format!("{key}: {reason}"))
        };
        let hard = mask("cpus", &config.cpus)?;
        let soft = mask("cpus_soft", &config.cpus_soft)?;
        xc.set_vcpu_affinity(domid, v, hard, soft)
            .map_err(|e| format!("vCPU {v}: {e}"))?;
    }
    Ok(())
}

fn seed_grants(xc: &Xc, domid: DomId) -> Result<(), String> {
    let mut frame = foreignmemory::map_resource(
        xc.call().privcmd(),
        domid,
        u32::from(XENMEM_RESOURCE_GRANT_TABLE),
        XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
        0,
        1,
    )
    .map_err(|e| e.to_string())?;
    let bytes = frame.bytes_mut();
    for (gref, gfn) in [(0usize, CONSOLE_GFN), (1, XENSTORE_GFN)] {
        let entry = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 0,
            frame: gfn as u32,
        };
        bytes[gref * 8..][..8].copy_from_slice(entry.as_bytes());
    }
    Ok(())
}

/// libxc's `vcpu_hvm`: the full context's HEADER and vCPU 0's MTRR kept; HEADER,
/// CPU (32-bit flat protected mode at `entry`, RBX = the start info), MTRR
/// (write-back) and END set.
fn set_vcpu(xc: &Xc, domid: DomId, entry: u64, start_info: u64) -> Result<(), String> {
    let full = xc.hvm_context(domid).map_err(|e| e.to_string())?;
    let (mut header, mut mtrr) = (None, None);
    let mut at = 0;
    while let Ok((d, _)) = HvmSaveDescriptor::read_from_prefix(&full[at..]) {
        let body = &full[at + 8..];
        match d.typecode {
            HVM_SAVE_CODE_HEADER => header = HvmSaveHeader::read_from_prefix(body).ok(),
            HVM_SAVE_CODE_MTRR if d.instance == 0 => mtrr = HvmHwMtrr::read_from_prefix(body).ok(),
            HVM_SAVE_CODE_END => break,
            _ => {}
        }
        at += 8 + d.length as usize;
        if at >= full.len() {
            break;
        }
    }
    let (Some((header, _)), Some((mut mtrr, _))) = (header, mtrr) else {
        return Err(format!(
            "d{domid}: its HVM context has no HEADER or MTRR record"
        ));
    };
    let cpu = HvmHwCpu::pvh_start(entry, start_info);
    mtrr.msr_mtrr_def_type = MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE;
    let mut blob = Vec::new();
    let mut put = |typecode: u16, body: &[u8]| {
        let d = HvmSaveDescriptor {
            typecode,
            instance: 0,
            length: body.len() as u32,
        };
        blob.extend_from_slice(d.as_bytes());
        blob.extend_from_slice(body);
    };
    put(HVM_SAVE_CODE_HEADER, header.as_bytes());
    put(HVM_SAVE_CODE_CPU, cpu.as_bytes());
    put(HVM_SAVE_CODE_MTRR, mtrr.as_bytes());
    put(HVM_SAVE_CODE_END, &[]);
    xc.set_hvm_context(domid, &blob).map_err(|e| e.to_string())
}
