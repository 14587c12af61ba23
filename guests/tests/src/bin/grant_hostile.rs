//! A guest that abuses its own grants (issue 14): a multi-domain guest (the host-side
//! tests in `tests/domains.rs` start it as a domU and give it its domain id), not in the
//! single-dom0 suite.
//!
//! Command line: `domid=<our id> mode=<mode>`. The guest grants its own page G to itself
//! (ref 8) and, by mode:
//! - `tlb` (defect 7, two vCPUs): vCPU 1 reads through a read-only mapping of G in a
//!   loop while vCPU 0 unmaps it and then rewrites G. Once the unmap has returned, vCPU 1
//!   must never see the new contents through the old address (a stale TLB entry); it
//!   must see what Xen gives for an unbacked frame (all ones). 20 rounds.
//! - `race` (defect 12a, two vCPUs): vCPU 1 writes in a loop to one of our RAM pages
//!   while vCPU 0 maps G read-only over it and unmaps it again, 300 times. Xen's answer:
//!   a write to the read-only mapping is dropped (no #GP), a write that races the unmap
//!   goes to whatever is mapped when it is retried; the domain lives and G is unchanged.
//! - `batch` (defect 4): one `GNTTABOP_copy` of 2^20 elements (40 MiB of arguments at
//!   16 MiB: needs `mem=64M`), 8 bytes each from G into 8 of our pages. Every status is
//!   GNTST_okay and the pages hold G; beside a CPU hog on one CPU, the vCPU was runnable
//!   (preempted) for at least a quarter of the call, so the batch did not hold the CPU.
//! - `fill` (defect 3): maps G at consecutive free frames above RAM, 512 mappings a call,
//!   until an element fails; prints how many succeeded and the first failing status
//!   (`grant_hostile: fill: <n> mappings, then status <s>`). A full maptrack is
//!   GNTST_no_space; the host test checks the count against the limit. The mappings go
//!   with the domain.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rxen_guest::abi::grant_table::{self as gt, GnttabCopy};
use rxen_guest::abi::xen::DomId;
use rxen_guest::events::{block_once, set_up_timer_events};
use rxen_guest::grant::{
    copy_frame, copy_gref, free_gfn_above_ram, grant_table_op, map, place_frame, unmap, Page,
    Table, PAGE_SIZE,
};
use rxen_guest::smp::{initialise, is_up, up};
use rxen_guest::time::{map_shared_info, now, runstate};
use rxen_guest::{check, check_eq, err, error, println, skip, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
const REF: gt::GrantRef = 8;
/// What G holds while mapped, and what vCPU 0 writes after the unmap.
const OLD: u64 = 0x0123_4567_89ab_cdef;
const NEW: u64 = 0xfeed_f00d_dead_beef;

/// The page we grant to ourselves.
static mut GRANTED: Page = Page::new();
/// A RAM page that the read-only mapping is put over (`race`).
static mut SPARE: Page = Page::new();
/// Destination pages of the batch copy.
static mut DEST: [Page; 8] = [const { Page::new() }; 8];

/// Guest-physical address vCPU 1 reads or writes.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// Set by vCPU 0 to stop vCPU 1's loop; vCPU 1 then sets `DONE`.
static STOP: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);
/// What vCPU 1 read: OLD, NEW, all ones, anything else.
static READ_OLD: AtomicU64 = AtomicU64::new(0);
static READ_NEW: AtomicU64 = AtomicU64::new(0);
static READ_ONES: AtomicU64 = AtomicU64::new(0);
static READ_OTHER: AtomicU64 = AtomicU64::new(0);
/// Writes vCPU 1 made, and #GPs it took.
static WRITES: AtomicU64 = AtomicU64::new(0);
static GP_SEEN: AtomicU32 = AtomicU32::new(0);
/// 1 for `tlb`, 2 for `race`.
static MODE: AtomicU32 = AtomicU32::new(0);

/// Trap hook: a #GP(0) from the 2-byte `mov [rdi], eax` is counted and skipped.
fn skip_gp(frame: &mut rxen_guest::boot::TrapFrame) -> bool {
    if frame.vector != 13 || frame.error != 0 {
        return false;
    }
    GP_SEEN.fetch_add(1, Ordering::SeqCst);
    frame.rip += 2;
    true
}

/// vCPU 1: reads (`tlb`) or writes (`race`) `TARGET` until told to stop.
fn secondary(_v: u32) {
    let mut n = 0u32;
    while !STOP.load(Ordering::SeqCst) {
        let at = TARGET.load(Ordering::SeqCst);
        if MODE.load(Ordering::SeqCst) == 1 {
            // SAFETY: `at` is a page of our identity-mapped low 4 GiB; what is mapped
            // there (the grant, nothing) is what is being tested.
            let value = unsafe { read_volatile(at as *const u64) };
            let counter = match value {
                OLD => &READ_OLD,
                NEW => &READ_NEW,
                u64::MAX => &READ_ONES,
                _ => &READ_OTHER,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        } else {
            n = n.wrapping_add(1);
            // SAFETY: `at` is our RAM page SPARE, or G mapped read-only over it; a
            // write to the latter is dropped (or, wrongly, #GP, skipped by the hook).
            unsafe {
                core::arch::asm!("mov dword ptr [rdi], eax", in("rdi") at, in("eax") n, options(nostack));
            }
            WRITES.fetch_add(1, Ordering::SeqCst);
        }
    }
    DONE.store(true, Ordering::SeqCst);
    loop {
        block_once();
    }
}

fn granted_word() -> u64 {
    // SAFETY: our own page, read volatile as the hypervisor copies from it.
    unsafe { read_volatile(addr_of!(GRANTED.0[0])) }
}

fn set_granted_word(value: u64) {
    // SAFETY: our own page.
    unsafe { write_volatile(addr_of_mut!(GRANTED.0[0]), value) }
}

/// Waits up to `ms` for `done`.
fn wait_for(ms: u64, done: impl Fn() -> bool) -> bool {
    let deadline = now() + ms * MS;
    while !done() {
        if now() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn start_secondary(mode: u32) {
    MODE.store(mode, Ordering::SeqCst);
    match is_up(1) {
        0 => {}
        e if e == err::ENOENT => skip!("needs 2 vCPUs"),
        r => error!("VCPUOP_is_up(1) = {r}"),
    }
    check_eq!(initialise(1, secondary), 0, "VCPUOP_initialise(1)");
    check_eq!(up(1), 0, "VCPUOP_up(1)");
}

fn stop_secondary() {
    STOP.store(true, Ordering::SeqCst);
    check!(
        wait_for(10_000, || DONE.load(Ordering::SeqCst)),
        "vCPU 1 stopped"
    );
}

/// Defect 7: after the unmap returns, vCPU 1 no longer reaches G.
fn tlb(domid: DomId, at_gfn: u64) {
    const ROUNDS: u32 = 20;
    TARGET.store(at_gfn * PAGE_SIZE, Ordering::SeqCst);
    start_secondary(1);
    for round in 0..ROUNDS {
        set_granted_word(OLD);
        let (rc, m) = map(
            domid,
            REF,
            at_gfn,
            gt::GNTMAP_HOST_MAP | gt::GNTMAP_READONLY,
        );
        if rc != 0 || m.status != gt::GNTST_OKAY {
            error!("round {round}: map: rc {rc} status {}", m.status);
        }
        let seen = READ_OLD.load(Ordering::SeqCst);
        if !wait_for(5_000, || READ_OLD.load(Ordering::SeqCst) > seen + 100) {
            error!("round {round}: vCPU 1 does not read G through the mapping");
        }
        let (rc, status) = unmap(at_gfn * PAGE_SIZE, m.handle);
        if rc != 0 || status != gt::GNTST_OKAY {
            error!("round {round}: unmap: rc {rc} status {status}");
        }
        // The unmap has returned: G is ours alone again.
        set_granted_word(NEW);
        let ones = READ_ONES.load(Ordering::SeqCst);
        // vCPU 1 keeps reading meanwhile (a stale TLB entry would show NEW).
        let until = now() + 20 * MS;
        while now() < until {
            core::hint::spin_loop();
        }
        if !wait_for(5_000, || READ_ONES.load(Ordering::SeqCst) > ones) {
            error!("round {round}: vCPU 1 never saw the unbacked frame");
        }
    }
    stop_secondary();
    println!(
        "grant_hostile: tlb: {ROUNDS} rounds; vCPU 1 read G {} times, all ones {} times, the rewritten G {} times, other {}",
        READ_OLD.load(Ordering::SeqCst),
        READ_ONES.load(Ordering::SeqCst),
        READ_NEW.load(Ordering::SeqCst),
        READ_OTHER.load(Ordering::SeqCst)
    );
    check_eq!(
        READ_NEW.load(Ordering::SeqCst),
        0,
        "reads of G through the address it was unmapped from"
    );
    check_eq!(
        READ_OTHER.load(Ordering::SeqCst),
        0,
        "reads of anything else"
    );
}

/// Defect 12a: writes through a read-only mapping racing its unmap.
fn race(domid: DomId) {
    const ROUNDS: u32 = 300;
    let spare_gfn = addr_of!(SPARE) as u64 / PAGE_SIZE;
    TARGET.store(spare_gfn * PAGE_SIZE, Ordering::SeqCst);
    set_granted_word(OLD);
    rxen_guest::boot::set_trap_hook(Some(skip_gp));
    start_secondary(2);
    for round in 0..ROUNDS {
        let (rc, m) = map(
            domid,
            REF,
            spare_gfn,
            gt::GNTMAP_HOST_MAP | gt::GNTMAP_READONLY,
        );
        if rc != 0 || m.status != gt::GNTST_OKAY {
            error!("round {round}: map: rc {rc} status {}", m.status);
        }
        let writes = WRITES.load(Ordering::SeqCst);
        wait_for(100, || {
            WRITES.load(Ordering::SeqCst) > writes + u64::from(round % 4)
        });
        let (rc, status) = unmap(spare_gfn * PAGE_SIZE, m.handle);
        if rc != 0 || status != gt::GNTST_OKAY {
            error!("round {round}: unmap: rc {rc} status {status}");
        }
        let writes = WRITES.load(Ordering::SeqCst);
        wait_for(100, || {
            WRITES.load(Ordering::SeqCst) > writes + u64::from(round % 3)
        });
    }
    stop_secondary();
    rxen_guest::boot::set_trap_hook(None);
    // SAFETY: our own page.
    let spare = unsafe { read_volatile(addr_of!(SPARE.0[0])) };
    println!(
        "grant_hostile: race: {ROUNDS} rounds, {} writes by vCPU 1, {} #GP, SPARE holds {spare:#x}",
        WRITES.load(Ordering::SeqCst),
        GP_SEEN.load(Ordering::SeqCst)
    );
    check_eq!(
        granted_word(),
        OLD,
        "G after writes through its read-only mapping"
    );
    check_eq!(GP_SEEN.load(Ordering::SeqCst), 0, "#GP for dropped writes");
    check!(
        spare != 0,
        "writes reached SPARE while G was not mapped over it"
    );
}

/// Defect 4: a 2^20-element copy batch.
fn batch(domid: DomId) {
    const N: usize = 1 << 20;
    const ARRAY: u64 = 16 << 20;
    let size = core::mem::size_of::<GnttabCopy>();
    if ARRAY + (N * size) as u64 > 64 << 20 {
        error!("the argument array does not fit below 64 MiB");
    }
    for (i, word) in (0..512).zip(0u64..) {
        // SAFETY: our own page.
        unsafe { write_volatile(addr_of_mut!(GRANTED.0[i]), word * 0x0101_0101 + 7) };
    }
    let dest = addr_of!(DEST) as u64 / PAGE_SIZE;
    // SAFETY: 16..56 MiB is RAM of this 64 MiB domain that nothing else uses,
    // identity-mapped.
    let ops = unsafe { core::slice::from_raw_parts_mut(ARRAY as *mut GnttabCopy, N) };
    for (i, op) in ops.iter_mut().enumerate() {
        let offset = ((i % 512) * 8) as u16;
        *op = GnttabCopy {
            source: copy_gref(domid, REF, offset),
            dest: copy_frame(dest + ((i / 512) % 8) as u64, offset),
            len: 8,
            flags: gt::GNTCOPY_SOURCE_GREF,
            status: 99,
            ..Default::default()
        };
    }
    let before = runstate(0).unwrap_or_default();
    let t0 = now();
    // SAFETY: N `gnttab_copy` structures at ARRAY.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_COPY, ARRAY, N as u32) };
    let took = now() - t0;
    let after = runstate(0).unwrap_or_default();
    check_eq!(rc, 0, "GNTTABOP_copy of 2^20 elements");
    let bad = ops.iter().filter(|op| op.status != gt::GNTST_OKAY).count();
    check_eq!(bad, 0, "elements without GNTST_okay");
    // SAFETY: our own pages, no longer written by the hypervisor.
    let dest_pages = unsafe { &*addr_of!(DEST) };
    for (page, words) in dest_pages.iter().enumerate() {
        let wrong = (0..512)
            // SAFETY: a word of our own page.
            .filter(|&i| unsafe { read_volatile(&words.0[i]) } != i as u64 * 0x0101_0101 + 7)
            .count();
        check_eq!(wrong, 0, "words of destination page {page} unlike G");
    }
    let runnable = after.time[1].saturating_sub(before.time[1]);
    println!(
        "grant_hostile: batch: {N} copies in {} ms; runnable (preempted) for {} ms meanwhile",
        took / MS,
        runnable / MS
    );
    // Beside a CPU hog on one CPU, a fair share is half; one exit for the whole batch
    // would leave it running (runnable only around the call).
    check!(
        runnable >= took / 4,
        "the vCPU was preempted during the batch for a quarter of it at least (another domain ran)"
    );
}

/// Map operations of one `fill` call.
static mut FILL_OPS: [gt::GnttabMapGrantRef; 512] = [const {
    gt::GnttabMapGrantRef {
        host_addr: 0,
        flags: 0,
        ref_: 0,
        dom: 0,
        status: 0,
        handle: 0,
        dev_bus_addr: 0,
    }
}; 512];

/// Defect 3: maps G until the hypervisor refuses; returns without unmapping.
fn fill(domid: DomId, first_gfn: u64) {
    const MOST: u64 = 1 << 20;
    let mut mapped = 0u64;
    let t0 = now();
    while mapped < MOST {
        // SAFETY: our own static array, used by this vCPU alone.
        let ops = unsafe { &mut *addr_of_mut!(FILL_OPS) };
        for (i, op) in ops.iter_mut().enumerate() {
            *op = gt::GnttabMapGrantRef {
                host_addr: (first_gfn + mapped + i as u64) * PAGE_SIZE,
                flags: gt::GNTMAP_HOST_MAP,
                ref_: REF,
                dom: domid,
                status: 99,
                ..Default::default()
            };
        }
        // SAFETY: 512 `gnttab_map_grant_ref` structures in FILL_OPS.
        let rc =
            unsafe { grant_table_op(gt::GNTTABOP_MAP_GRANT_REF, ops.as_mut_ptr() as u64, 512) };
        check_eq!(rc, 0, "GNTTABOP_map_grant_ref of 512 elements");
        if let Some(failed) = ops.iter().find(|op| op.status != gt::GNTST_OKAY) {
            let ok = ops.iter().filter(|op| op.status == gt::GNTST_OKAY).count() as u64;
            println!(
                "grant_hostile: fill: {} mappings, then status {} ({} ms)",
                mapped + ok,
                failed.status,
                (now() - t0) / MS
            );
            return;
        }
        mapped += 512;
    }
    error!("{MOST} mappings and no refusal");
}

fn main(si: &StartInfo) {
    let (Some(domid), Some(mode)) = (si.arg_u64("domid"), si.arg_value("mode")) else {
        error!(
            "usage: domid=<our id> mode=tlb|race|batch|fill (got {:?})",
            si.cmdline()
        );
    };
    let domid = domid as DomId;
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    set_up_timer_events();
    let table_gfn = free_gfn_above_ram(si.memmap(), 0);
    check_eq!(
        place_frame(0, table_gfn),
        0,
        "grant frame 0 into the physmap"
    );
    // SAFETY: frame 0 of our table is at `table_gfn` from now on.
    let table = unsafe { Table::at(table_gfn) };
    let g = addr_of!(GRANTED) as u64 / PAGE_SIZE;
    table.grant(REF, domid, g as u32, false);
    match mode {
        "tlb" => tlb(domid, free_gfn_above_ram(si.memmap(), 1)),
        "race" => race(domid),
        "batch" => batch(domid),
        "fill" => {
            fill(domid, free_gfn_above_ram(si.memmap(), 2));
            println!("grant_hostile: {mode} done");
            return;
        }
        other => error!("unknown mode {other}"),
    }
    check!(table.end_access(REF), "G no longer in use");
    println!("grant_hostile: {mode} done");
}
