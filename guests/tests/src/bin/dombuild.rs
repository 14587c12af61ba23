//! dom0 builds a PVH domain and starts it, the way Xen's toolstack does (issue 13;
//! libxl's create sequence, `xg_dom_x86.c`): `createdomain`, `max_vcpus`, `max_mem`,
//! `populate_physmap` of the new domain's RAM in 2 MiB extents, foreign maps of its
//! frames into a window of dom0's physical space (`XENMAPSPACE_gmfn_foreign`, as
//! privcmd's `MMAPBATCH_V2`), the kernel's ELF segments, `hvm_start_info` (v1, with
//! its command line and memory map) and `set_memory_map` written there, the window
//! unmapped (`remove_from_physmap`), the vCPU's state set with `gethvmcontext` and
//! `sethvmcontext` as libxc's `vcpu_hvm` does, then `unpausedomain`. The new domain
//! (the first module: a test guest's ELF image) runs and reports; dom0 sees it shut
//! down (kept, as Xen keeps it for its toolstack, until destroyed), destroys it and
//! sees it go.
//!
//! Bad input on the way: a populate past `max_mem`, a foreign map of a frame the
//! domain does not have, of dom0's own frames, over a page already mapped; removing
//! what is not mapped. Last, a second domain is populated, mapped and destroyed while
//! dom0 still maps its pages: the hypervisor removes dom0's mappings before it frees
//! the frames (its log says how many).
//!
//! Command line: `mib=<n>` (the new domain's RAM, default 16).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::domctl::*;
use rxen_guest::abi::grant_table as gt;
use rxen_guest::abi::hvm_save::*;
use rxen_guest::abi::memory::E820Entry;
use rxen_guest::abi::start_info::{HvmMemmapTableEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};
use rxen_guest::control::{
    acquire_grant_frames, create, current_reservation, domctl, dop, info, map_foreign, max_mem,
    max_vcpus, populate, remove_from_physmap, set_memory_map, simple, MAP_BATCH,
};
use rxen_guest::events::{set_up_timer_events, sleep_until};
use rxen_guest::grant;
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::{check, check_eq, err, error, println, StartInfo};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

rxen_guest::entry!(main);

/// Where dom0 maps the new domain's frames: 2 GiB, a hole of the 256 MiB q35
/// machine the tests boot (the runtime identity-maps the low 4 GiB).
const WINDOW: u64 = 0x8000_0000;
/// Where the new domain's `hvm_start_info`, command line and memory map go.
const START_INFO: u64 = 0x1000;
const CMDLINE: u64 = 0x1800;
const MEMMAP: u64 = 0x1c00;
/// The new domain's page dom0 grants itself in the new domain's table (as libxc
/// seeds the console and xenstore pages), and what dom0 writes there.
const SEEDED: u64 = 3;
const SEED_TEXT: &[u8] = b"seeded by dom0";

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    set_up_timer_events();
    let Some(module) = si.modules().first() else {
        error!("no module: the new domain's kernel is the first module");
    };
    // SAFETY: the loader's module, identity-mapped and kept for the whole run.
    let image =
        unsafe { core::slice::from_raw_parts(module.paddr as *const u8, module.size as usize) };
    let mib = si.arg_u64("mib").unwrap_or(16);
    let pages = mib * 256;

    let domid = build(image, mib);
    println!("dombuild: d{domid} built ({pages} pages); unpausing it");
    check_eq!(simple(XEN_DOMCTL_UNPAUSEDOMAIN, domid), 0, "unpause");
    // It runs, reports and powers off; it stays, shut down, for dom0 to destroy.
    let shut = wait_for(30_000, || {
        info(domid).is_ok_and(|i| i.domain == domid && i.flags & XEN_DOMINF_SHUTDOWN != 0)
    });
    if !shut {
        error!("d{domid} did not shut down within 30 s");
    }
    let i = info(domid).unwrap_or_else(|e| error!("getdomaininfo: {e}"));
    check_eq!(
        (i.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & 0xff,
        0,
        "shut down by poweroff"
    );
    // Its memory stays until it is destroyed. Xen frees the RAM page the guest put
    // its shared-info page over (rxen keeps it under the page): one less there.
    check!(
        i.tot_pages == pages || i.tot_pages == pages - 1,
        "its memory stays until it is destroyed: {} pages",
        i.tot_pages
    );
    println!("dombuild: d{domid} shut down (poweroff); destroying it");
    check_eq!(simple(XEN_DOMCTL_DESTROYDOMAIN, domid), 0, "destroy");
    if !wait_for(10_000, || info(domid).map_or(true, |i| i.domain != domid)) {
        error!("d{domid} still there 10 s after destroydomain");
    }
    destroyed_while_mapped();
    println!("dombuild: done");
}

/// Polls `done` every millisecond for at most `ms` milliseconds.
fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = now() + ms * 1_000_000;
    while now() < until {
        if done() {
            return true;
        }
        sleep_until(now() + 1_000_000);
    }
    done()
}

/// Creates a paused domain with `mib` MiB of RAM (in 2 MiB extents) and one vCPU.
fn new_domain(mib: u64) -> u16 {
    let domid = create(0, 1, |_| {}).unwrap_or_else(|e| error!("createdomain: {e}"));
    check_eq!(max_vcpus(domid, 1), 0, "max_vcpus");
    check_eq!(max_mem(domid, mib << 10), 0, "max_mem");
    let extents: [u64; 64] = core::array::from_fn(|i| i as u64 * 512);
    let n = (mib / 2) as usize;
    if n == 0 || n > extents.len() {
        error!("mib={mib}: between 2 and 128");
    }
    check_eq!(
        populate(domid, &extents[..n], 9),
        n as i64,
        "2 MiB extents populated"
    );
    domid
}

/// Maps frames `first..first + count` of `owner` at `WINDOW`, in batches.
fn map_window(owner: u16, first: u64, count: u64) {
    let mut idxs = [0u64; MAP_BATCH];
    let mut gpfns = [0u64; MAP_BATCH];
    let mut errs = [0i32; MAP_BATCH];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(MAP_BATCH as u64) as usize;
        for i in 0..n {
            idxs[i] = first + done + i as u64;
            gpfns[i] = WINDOW / 4096 + done + i as u64;
        }
        let rc = map_foreign(owner, &idxs[..n], &gpfns[..n], &mut errs[..n]);
        if rc != 0 || errs[..n].iter().any(|&e| e != 0) {
            let bad = errs[..n].iter().position(|&e| e != 0);
            error!("foreign map of d{owner}'s frames: {rc}, first bad entry {bad:?}");
        }
        done += n as u64;
    }
}

/// Unmaps `count` pages of the window.
fn unmap_window(count: u64) {
    for i in 0..count {
        let rc = remove_from_physmap(WINDOW / 4096 + i);
        if rc != 0 {
            error!("remove_from_physmap of window page {i}: {rc}");
        }
    }
}

/// The window as bytes (the new domain's RAM from guest-physical 0).
fn window(bytes: u64) -> &'static mut [u8] {
    // SAFETY: `bytes` of the window are mapped to the new domain's frames, which
    // nothing else in this guest uses; the slice is dropped before they are unmapped.
    unsafe { core::slice::from_raw_parts_mut(WINDOW as *mut u8, bytes as usize) }
}

/// Builds the domain: memory, image, start info, vCPU state; returns its id.
fn build(image: &[u8], mib: u64) -> u16 {
    let pages = mib * 256;
    let domid = new_domain(mib);
    check_eq!(
        current_reservation(domid),
        pages as i64,
        "current_reservation"
    );
    check_eq!(populate(domid, &[pages], 0), 0, "a page past max_mem");
    check_eq!(
        info(domid).map(|i| i.tot_pages),
        Ok(pages),
        "getdomaininfo tot_pages"
    );
    bad_maps(domid, pages);

    map_window(domid, 0, pages);
    let ram = window(mib << 20);
    check!(
        ram.iter().step_by(4093).all(|&b| b == 0),
        "new RAM is zeroed"
    );
    let entry = load_elf(image, ram);
    // hvm_start_info v1: the command line and the memory map.
    let cmdline = b"dombuild-child\0";
    ram[CMDLINE as usize..][..cmdline.len()].copy_from_slice(cmdline);
    let map = [HvmMemmapTableEntry {
        addr: 0,
        size: mib << 20,
        type_: 1,
        reserved: 0,
    }];
    ram[MEMMAP as usize..][..size_of_val(&map)].copy_from_slice(map.as_bytes());
    let start = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: 1,
        ..Default::default()
    };
    ram[START_INFO as usize..][..size_of::<HvmStartInfo>()].copy_from_slice(start.as_bytes());
    ram[(SEEDED * 4096) as usize..][..SEED_TEXT.len()].copy_from_slice(SEED_TEXT);
    unmap_window(pages);
    check_eq!(
        remove_from_physmap(WINDOW / 4096),
        err::ENOENT,
        "nothing left to remove"
    );
    seed_grant_table(domid);
    let e820 = [E820Entry {
        addr: 0,
        size: mib << 20,
        type_: 1,
    }];
    check_eq!(set_memory_map(domid, &e820), 0, "set_memory_map");
    set_vcpu_context(domid, entry, START_INFO);
    domid
}

/// libxc's `xc_dom_gnttab_seed`: the new domain's grant frame 0 mapped through
/// `XENMEM_acquire_resource`, entry 0 written to grant dom0 the [`SEEDED`] page, the
/// frame unmapped; then dom0 maps that grant, as xenconsoled maps a console page,
/// and finds what it wrote there.
fn seed_grant_table(domid: u16) {
    check_eq!(
        acquire_grant_frames(domid, 0, &[]),
        Ok(32),
        "grant frames the table may have"
    );
    let gfn = WINDOW / 4096 + 0x8000;
    check_eq!(
        acquire_grant_frames(domid, 0, &[gfn]),
        Ok(1),
        "grant frame 0 mapped"
    );
    check_eq!(
        acquire_grant_frames(domid, 32, &[gfn + 1]),
        Err(err::EINVAL),
        "past the table"
    );
    // SAFETY: the new domain's grant frame 0 is mapped at `gfn` until removed below.
    let table = unsafe { grant::Table::at(gfn) };
    table.grant(0, 0, SEEDED as u32, false);
    check_eq!(remove_from_physmap(gfn), 0, "grant frame unmapped");
    let (rc, op) = grant::map(domid, 0, gfn + 2, gt::GNTMAP_HOST_MAP);
    check_eq!((rc, op.status), (0, 0), "dom0 maps the seeded grant");
    // SAFETY: the granted page is mapped at `gfn + 2` until the unmap below.
    let seen =
        unsafe { core::slice::from_raw_parts(((gfn + 2) * 4096) as *const u8, SEED_TEXT.len()) };
    check_eq!(seen, SEED_TEXT, "the seeded page through the grant");
    check_eq!(
        grant::unmap((gfn + 2) * 4096, op.handle),
        (0, 0),
        "grant unmapped"
    );
}

/// Foreign maps the hypervisor refuses, entry by entry.
fn bad_maps(domid: u16, pages: u64) {
    let gpfn = WINDOW / 4096;
    let mut errs = [0x5555; 3];
    check_eq!(
        map_foreign(domid, &[0, pages, 1], &[gpfn, gpfn + 1, gpfn], &mut errs),
        0,
        "a batch with a bad entry"
    );
    check_eq!(
        errs,
        [0, err::EINVAL as i32, err::ENXIO as i32],
        "a frame past its RAM, a foreign page over another"
    );
    let mut own = [0x5555; 1];
    check_eq!(
        map_foreign(0, &[0x100], &[gpfn + 2], &mut own),
        0,
        "own frames"
    );
    check_eq!(
        own,
        [err::EPERM as i32],
        "dom0's own frames are not foreign"
    );
    check_eq!(remove_from_physmap(gpfn), 0, "unmapped");
    check_eq!(remove_from_physmap(gpfn), err::ENOENT, "nothing left");
    check_eq!(remove_from_physmap(gpfn + 1), err::ENOENT, "never mapped");
}

/// Copies the PT_LOAD segments of ELF `image` into `ram` (guest-physical from 0);
/// returns the `XEN_ELFNOTE_PHYS32_ENTRY` entry point.
fn load_elf(image: &[u8], ram: &mut [u8]) -> u64 {
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(image[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(image[o..o + 8].try_into().unwrap());
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 {
        error!("the module is not a 64-bit ELF image");
    }
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54), u16_at(56));
    let mut entry = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (kind, offset, paddr) = (
            u32_at(ph),
            u64_at(ph + 8) as usize,
            u64_at(ph + 24) as usize,
        );
        let (filesz, memsz) = (u64_at(ph + 32) as usize, u64_at(ph + 40) as usize);
        match kind {
            // PT_LOAD: the file's bytes, then zeros (the RAM is zeroed already).
            1 => {
                if paddr + memsz > ram.len() || offset + filesz > image.len() {
                    error!("segment {i} ({paddr:#x}+{memsz:#x}) does not fit");
                }
                ram[paddr..paddr + filesz].copy_from_slice(&image[offset..offset + filesz]);
            }
            // PT_NOTE: Xen's notes ("Xen\0"), PHYS32_ENTRY (18).
            4 => {
                let mut at = offset;
                while at + 12 <= offset + filesz {
                    let (namesz, descsz, kind) =
                        (u32_at(at) as usize, u32_at(at + 4) as usize, u32_at(at + 8));
                    let name = at + 12;
                    let desc = name + namesz.next_multiple_of(4);
                    if kind == 18 && &image[name..name + 3] == b"Xen" {
                        entry = Some(if descsz >= 8 {
                            u64_at(desc)
                        } else {
                            u32_at(desc) as u64
                        });
                    }
                    at = desc + descsz.next_multiple_of(4);
                }
            }
            _ => {}
        }
    }
    entry.unwrap_or_else(|| error!("no XEN_ELFNOTE_PHYS32_ENTRY note"))
}

/// The context buffer (one vCPU: 1.3 KiB on rxen, about 5 KiB on Xen 4.17, which
/// saves more records).
static mut CONTEXT: [u8; 16384] = [0; 16384];

/// libxc's `vcpu_hvm`: the full context (its size first), its HEADER and vCPU 0's
/// MTRR kept, a new context of HEADER, CPU (32-bit flat protected mode at `entry`,
/// RBX = the start info), MTRR (write-back, enabled) and END set.
fn set_vcpu_context(domid: u16, entry: u64, start_info: u64) {
    // SAFETY: this guest's only use of the buffer, on one vCPU.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(CONTEXT) };
    let mut op = dop(
        XEN_DOMCTL_GETHVMCONTEXT,
        domid,
        XenDomctlHvmcontext::new_zeroed().as_bytes(),
    );
    check_eq!(domctl(&mut op), 0, "gethvmcontext size");
    let size = XenDomctlHvmcontext::read_from_prefix(&op.u).unwrap().0.size as usize;
    if size == 0 || size > buf.len() {
        error!("gethvmcontext: a context of {size} bytes");
    }
    let ask = XenDomctlHvmcontext {
        size: size as u32,
        pad: 0,
        buffer: buf.as_mut_ptr() as u64,
    };
    let mut op = dop(XEN_DOMCTL_GETHVMCONTEXT, domid, ask.as_bytes());
    check_eq!(domctl(&mut op), 0, "gethvmcontext");
    let (mut header, mut mtrr) = (None, None);
    let mut at = 0;
    while at + 8 <= size {
        let d = HvmSaveDescriptor::read_from_prefix(&buf[at..]).unwrap().0;
        let body = &buf[at + 8..];
        match d.typecode {
            HVM_SAVE_CODE_HEADER => {
                header = HvmSaveHeader::read_from_prefix(body).ok().map(|r| r.0)
            }
            HVM_SAVE_CODE_MTRR if d.instance == 0 => {
                mtrr = HvmHwMtrr::read_from_prefix(body).ok().map(|r| r.0)
            }
            HVM_SAVE_CODE_END => break,
            _ => {}
        }
        at += 8 + d.length as usize;
    }
    let (Some(header), Some(mut mtrr)) = (header, mtrr) else {
        error!("gethvmcontext: no HEADER or no MTRR record");
    };
    check_eq!(header.magic, HVM_FILE_MAGIC, "the header's magic");
    let cpu = HvmHwCpu::pvh_start(entry, start_info);
    mtrr.msr_mtrr_def_type = MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE;
    let mut len = 0;
    let mut put = |typecode: u16, body: &[u8]| {
        let d = HvmSaveDescriptor {
            typecode,
            instance: 0,
            length: body.len() as u32,
        };
        buf[len..len + 8].copy_from_slice(d.as_bytes());
        buf[len + 8..len + 8 + body.len()].copy_from_slice(body);
        len += 8 + body.len();
    };
    put(HVM_SAVE_CODE_HEADER, header.as_bytes());
    put(HVM_SAVE_CODE_CPU, cpu.as_bytes());
    put(HVM_SAVE_CODE_MTRR, mtrr.as_bytes());
    put(HVM_SAVE_CODE_END, &[]);
    let set = XenDomctlHvmcontext {
        size: len as u32,
        pad: 0,
        buffer: buf.as_mut_ptr() as u64,
    };
    check_eq!(
        domctl(&mut dop(XEN_DOMCTL_SETHVMCONTEXT, domid, set.as_bytes())),
        0,
        "sethvmcontext"
    );
}

/// A second domain, populated, mapped by dom0 and written, destroyed while the
/// mappings are still there. rxen removes them at once (dom0's later removals find
/// nothing) and frees the domain; Xen keeps the domain, dying, until dom0 removes
/// them. Either way dom0 goes on and the domain goes.
fn destroyed_while_mapped() {
    let domid = new_domain(4);
    map_window(domid, 0, 1024);
    window(4 << 20).fill(0x5a);
    check_eq!(
        simple(XEN_DOMCTL_DESTROYDOMAIN, domid),
        0,
        "destroy while mapped"
    );
    let (mut removed, mut gone) = (0, 0);
    for i in 0..1024 {
        match remove_from_physmap(WINDOW / 4096 + i) {
            0 => removed += 1,
            e if e == err::ENOENT => gone += 1,
            e => error!("remove_from_physmap of page {i} of a destroyed domain: {e}"),
        }
    }
    check!(
        removed == 1024 || gone == 1024,
        "all removed by dom0 or all gone before"
    );
    if !wait_for(10_000, || info(domid).map_or(true, |i| i.domain != domid)) {
        error!("d{domid} still there 10 s after destroydomain");
    }
    println!(
        "dombuild: d{domid} destroyed while dom0 mapped 1024 of its pages; dom0 then removed {removed}"
    );
}
