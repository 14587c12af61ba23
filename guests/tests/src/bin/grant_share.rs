//! Two domains share pages through grant tables v1 (a multi-domain guest: the host-side
//! test starts a granter and a mapper; not in the single-dom0 suite).
//!
//! Command line: `role=granter peer=<domid>` or `role=mapper peer=<domid>`; both take
//! `timeout_ms=<ms>` (default 30000) for the whole exchange.
//!
//! Conventions instead of xenstore: the granter offers its first event-channel port
//! (the first port it offers) to the peer, places its grant-table frame 0 at the first free guest frame
//! above its RAM (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`) and grants
//! ref 8 (page A, writable), ref 9 (page B, read-only) and ref 10 (page C, writable, for
//! copies); ref 11 stays invalid. The mapper maps grants at free frames above its RAM.
//!
//! The hand-shakes go over the event channel; each side sends only after the other's
//! previous event has arrived, so no two events are ever pending at once:
//! 1. granter: fills A and B, writes the entries, waits for the mapper's hello, signals.
//! 2. mapper: maps 8 and reads A, writes the reply into A, maps 9 read-only and reads B;
//!    checks the statuses of bad maps (Xen 4.17 `common/grant_table.c`); signals.
//! 3. granter: A holds the reply; entries 8 and 9 show `GTF_reading` (8 `GTF_writing`
//!    too); revoking 8 the Linux way fails while it is mapped; signals.
//! 4. mapper: unmaps both (and bad handles), the frame no longer shows the page;
//!    `GNTTABOP_copy` both ways through ref 10, a batch with a bad element, a copy into
//!    the read-only ref 9; signals and ends.
//! 5. granter: the marks are gone, C holds the mapper's data, B is unchanged; revokes
//!    every grant and ends.
//!
//! The granter also checks `GNTTABOP_query_size`, `set_version` (2 refused with
//! `-ENOSYS`, as Xen when v2 is not allowed), `get_version` and `setup_table`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU32, Ordering};
use rxen_guest::abi::grant_table::{
    self as gt, GnttabCopy, GnttabGetVersion, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
    GrantRef,
};

use rxen_guest::abi::xen::{DomId, DOMID_SELF};
use rxen_guest::events::{alloc_unbound, set_up_timer_events, Link};
use rxen_guest::grant::{
    copy, copy_frame, copy_gref, fill, free_gfn_above_ram, grant_table_op, map, mismatches,
    pattern_word, place_frame, unmap, Page, Table, PAGE_SIZE,
};
use rxen_guest::hypercall::mut_ptr;
use rxen_guest::time::map_shared_info;
use rxen_guest::{check, check_eq, err, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
/// A domain id in the ordinary range that no domain has.
const NO_SUCH_DOMAIN: DomId = 0x7fef;

/// Page A: writable grant.
const REF_A: GrantRef = 8;
/// Page B: read-only grant.
const REF_B: GrantRef = 9;
/// Page C: writable grant, for copies.
const REF_C: GrantRef = 10;
/// Never granted.
const REF_NONE: GrantRef = 11;
/// Beyond the table.
const REF_HUGE: GrantRef = 100_000;
/// A handle the mapper never got.
const BAD_HANDLE: u32 = 9999;

const SEED_A: u64 = 0xa0a0_0000_0000_00a0;
const SEED_B: u64 = 0xb0b0_0000_0000_00b0;
const SEED_C: u64 = 0xc0c0_0000_0000_00c0;
/// What the mapper writes into A through its mapping.
const SEED_REPLY: u64 = 0x5e5e_0000_0000_005e;
/// What the mapper copies into C.
const SEED_MAPPER: u64 = 0x3a3a_0000_0000_003a;

// The granter's pages.
static mut PAGE_A: Page = Page::new();
static mut PAGE_B: Page = Page::new();
static mut PAGE_C: Page = Page::new();
// The mapper's pages.
static mut OWN: Page = Page::new();
static mut SRC: Page = Page::new();
static mut DST: Page = Page::new();

fn main(si: &StartInfo) {
    let role = si.arg_value("role");
    let Some(peer) = si.arg_u64("peer").and_then(|p| DomId::try_from(p).ok()) else {
        error!(
            "usage: role=granter|mapper peer=<domid> (got {:?})",
            si.cmdline()
        );
    };
    let timeout = si.arg_u64("timeout_ms").unwrap_or(30_000) * MS;
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    if si.memmap().is_empty() {
        error!("no memory map in the start info");
    }
    match role {
        Some("granter") => {
            // Before anything else allocates a port: the mapper binds to our first one.
            let port = match alloc_unbound(DOMID_SELF, peer) {
                Ok(p) => p,
                Err(e) => error!("EVTCHNOP_alloc_unbound(remote d{peer}): {e}"),
            };
            println!("grant_share granter: offering port {port} to d{peer}");
            set_up_timer_events();
            let mut link = Link::new(port, timeout);
            granter(si, peer, &mut link);
            println!("grant_share: granter done");
        }
        Some("mapper") => {
            set_up_timer_events();
            let mut link = Link::bind(peer, None, timeout);
            println!(
                "grant_share mapper: bound to d{peer}, our port {}",
                link.port()
            );
            mapper(si, peer, &mut link);
            println!("grant_share: mapper done");
        }
        _ => error!("role must be granter or mapper (got {:?})", si.cmdline()),
    }
}

fn gfn_of(page: *const Page) -> u64 {
    page as u64 / PAGE_SIZE
}

// ---------------------------------------------------------------------------------------
// Granter.

fn granter(si: &StartInfo, peer: DomId, link: &mut Link) {
    table_ops();

    // Frame 0 of our grant table at the first free frame above RAM.
    let table_gfn = free_gfn_above_ram(si.memmap(), 0);
    check_eq!(
        place_frame(0, table_gfn),
        0,
        "XENMEM_add_to_physmap(grant_table, 0, {table_gfn:#x})"
    );
    let mut frames = [0u64; 1];
    let mut st = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: frames.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: one `gnttab_setup_table` naming a one-element frame list.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_SETUP_TABLE, mut_ptr(&mut st), 1) };
    check_eq!(rc, 0, "GNTTABOP_setup_table(1)");
    check_eq!(st.status, gt::GNTST_OKAY, "GNTTABOP_setup_table(1) status");
    // HVM: Xen reports the gfn the frame was placed at.
    check_eq!(
        frames[0],
        table_gfn,
        "setup_table reports frame 0 where we put it"
    );
    println!("grant_share granter: grant frame 0 at gfn {table_gfn:#x}");
    // SAFETY: frame 0 is at `table_gfn` for the rest of the run.
    let t = unsafe { Table::at(table_gfn) };

    // Step 1.
    let (a, b, c) = (&raw mut PAGE_A, &raw mut PAGE_B, &raw mut PAGE_C);
    // SAFETY: our own static pages.
    unsafe {
        fill(a as u64, SEED_A);
        fill(b as u64, SEED_B);
        fill(c as u64, SEED_C);
    }
    t.grant(REF_A, peer, gfn_of(a) as u32, false);
    t.grant(REF_B, peer, gfn_of(b) as u32, true);
    t.grant(REF_C, peer, gfn_of(c) as u32, false);
    t.clear(REF_NONE);
    println!(
        "grant_share granter: granted A (ref {REF_A}, rw, gfn {:#x}), B (ref {REF_B}, ro, gfn {:#x}), C (ref {REF_C}, rw, gfn {:#x}) to d{peer}",
        gfn_of(a),
        gfn_of(b),
        gfn_of(c)
    );
    link.wait("the mapper's hello");
    link.signal("grants ready");

    // Step 3.
    link.wait("the mapper's maps");
    check_eq!(
        // SAFETY: our own static page.
        unsafe { mismatches(a as u64, SEED_REPLY) },
        0,
        "page A holds the mapper's reply"
    );
    check_eq!(
        t.flags(REF_A),
        gt::GTF_PERMIT_ACCESS | gt::GTF_READING | gt::GTF_WRITING,
        "ref 8 while mapped writable"
    );
    check_eq!(
        t.flags(REF_B),
        gt::GTF_PERMIT_ACCESS | gt::GTF_READONLY | gt::GTF_READING,
        "ref 9 while mapped read-only"
    );
    check_eq!(t.flags(REF_C), gt::GTF_PERMIT_ACCESS, "ref 10 not in use");
    // Revoking the Linux way: the compare-and-exchange from GTF_permit_access fails as
    // Xen has set GTF_reading/GTF_writing.
    let revoke = t.cmpxchg_flags(REF_A, gt::GTF_PERMIT_ACCESS, 0);
    check!(
        revoke.is_err(),
        "revoking mapped ref 8 must fail: {revoke:?}"
    );
    check!(!t.end_access(REF_A), "end_access of mapped ref 8 must fail");
    check_eq!(
        t.flags(REF_A),
        gt::GTF_PERMIT_ACCESS | gt::GTF_READING | gt::GTF_WRITING,
        "ref 8 still granted"
    );
    println!(
        "grant_share granter: reply seen in A; flags ref 8 {:#x}, ref 9 {:#x}; revoke of ref 8 refused (flags held {:#x})",
        t.flags(REF_A),
        t.flags(REF_B),
        revoke.err().unwrap_or(0)
    );
    link.signal("checked while mapped");

    // Step 5.
    link.wait("the mapper's unmaps and copies");
    check_eq!(t.flags(REF_A), gt::GTF_PERMIT_ACCESS, "ref 8 after unmap");
    check_eq!(
        t.flags(REF_B),
        gt::GTF_PERMIT_ACCESS | gt::GTF_READONLY,
        "ref 9 after unmap"
    );
    check_eq!(t.flags(REF_C), gt::GTF_PERMIT_ACCESS, "ref 10 after copies");
    // SAFETY: our own static pages.
    unsafe {
        check_eq!(
            mismatches(c as u64, SEED_MAPPER),
            0,
            "page C holds the mapper's copy"
        );
        check_eq!(
            mismatches(b as u64, SEED_B),
            0,
            "read-only page B unchanged"
        );
    }
    for r in [REF_A, REF_B, REF_C] {
        check!(t.end_access(r), "revoke ref {r}");
        check_eq!(t.flags(r), gt::GTF_INVALID, "ref {r} revoked");
    }
    println!("grant_share granter: page C holds the mapper's data; grants 8, 9, 10 revoked");
}

/// `GNTTABOP_query_size`, `set_version`, `get_version` on our own table.
fn table_ops() {
    let mut q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    // SAFETY: one `gnttab_query_size`.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_QUERY_SIZE, mut_ptr(&mut q), 1) };
    check_eq!(rc, 0, "GNTTABOP_query_size");
    check_eq!(q.status, gt::GNTST_OKAY, "query_size status");
    check!(q.nr_frames >= 1, "nr_frames {} >= 1", q.nr_frames);
    check!(
        q.max_nr_frames >= 1,
        "max_nr_frames {} >= 1",
        q.max_nr_frames
    );
    check!(q.max_nr_frames >= q.nr_frames, "max_nr_frames >= nr_frames");

    // gnttab_set_version: v2 not allowed -> -ENOSYS ("behave as before set_version was
    // introduced"); the current version is written back either way.
    let mut v = GnttabSetVersion { version: 2 };
    // SAFETY: one `gnttab_set_version`.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_SET_VERSION, mut_ptr(&mut v), 1) };
    check_eq!(rc, err::ENOSYS, "GNTTABOP_set_version(2)");
    check_eq!(v.version, 1, "set_version writes back the version in force");
    let mut v = GnttabSetVersion { version: 1 };
    // SAFETY: as above.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_SET_VERSION, mut_ptr(&mut v), 1) };
    check_eq!(rc, 0, "GNTTABOP_set_version(1)");
    let mut g = GnttabGetVersion {
        dom: DOMID_SELF,
        ..Default::default()
    };
    // SAFETY: one `gnttab_get_version`.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_GET_VERSION, mut_ptr(&mut g), 1) };
    check_eq!(rc, 0, "GNTTABOP_get_version");
    check_eq!(g.version, 1, "still version 1");
    println!(
        "grant_share granter: query_size {} of {} frames; set_version(2) refused; version {}",
        q.nr_frames, q.max_nr_frames, g.version
    );
}

// ---------------------------------------------------------------------------------------
// Mapper.

/// #GP faults the trap hook took (error code 0 only).
static GP_SEEN: AtomicU32 = AtomicU32::new(0);

/// Trap hook: a #GP(0) from the 2-byte `mov [rdi], eax` is counted and skipped.
fn skip_gp(frame: &mut rxen_guest::boot::TrapFrame) -> bool {
    if frame.vector != 13 || frame.error != 0 {
        return false;
    }
    GP_SEEN.fetch_add(1, Ordering::SeqCst);
    frame.rip += 2;
    true
}

fn mapper(si: &StartInfo, peer: DomId, link: &mut Link) {
    let map_a = free_gfn_above_ram(si.memmap(), 0);
    let map_b = free_gfn_above_ram(si.memmap(), 1);
    let spare = free_gfn_above_ram(si.memmap(), 2);
    link.signal("hello");

    // Step 2.
    link.wait("the granter's grants");
    let (rc, m) = map(peer, REF_A, map_a, gt::GNTMAP_HOST_MAP);
    check_eq!(rc, 0, "GNTTABOP_map_grant_ref(ref 8)");
    check_eq!(m.status, gt::GNTST_OKAY, "map ref 8 writable");
    let handle_a = m.handle;
    let (rc, m) = map(
        peer,
        REF_B,
        map_b,
        gt::GNTMAP_HOST_MAP | gt::GNTMAP_READONLY,
    );
    check_eq!(rc, 0, "GNTTABOP_map_grant_ref(ref 9)");
    check_eq!(m.status, gt::GNTST_OKAY, "map ref 9 read-only");
    let handle_b = m.handle;
    if !check!(handle_a != handle_b, "two mappings, two handles") {
        error!("cannot go on with one handle for two mappings");
    }
    let a = map_a * PAGE_SIZE;
    let b = map_b * PAGE_SIZE;
    // SAFETY: the granted pages are mapped at these frames (checked above), identity-
    // mapped in our page tables; B is only read.
    unsafe {
        check_eq!(mismatches(a, SEED_A), 0, "page A through the mapping");
        fill(a, SEED_REPLY);
        check_eq!(mismatches(b, SEED_B), 0, "page B through the mapping");
    }
    println!(
        "grant_share mapper: ref 8 at gfn {map_a:#x} (handle {handle_a}), ref 9 read-only at gfn {map_b:#x} (handle {handle_b}); pattern read, reply written"
    );

    // A write through the read-only mapping: for an HVM guest Xen emulates it with
    // the write discarded (p2m_grant_map_ro is a write-discard p2m type), and the
    // guest goes on; the page keeps its contents (the granter checks B at the end).
    GP_SEEN.store(0, Ordering::SeqCst);
    rxen_guest::boot::set_trap_hook(Some(skip_gp));
    // SAFETY: B is mapped read-only at `b`; the write is dropped (or, if it faulted,
    // the hook resumes after the 2-byte `mov [rdi], eax`).
    unsafe {
        core::arch::asm!("mov dword ptr [rdi], eax", in("rdi") b, in("eax") 0xdead_beef_u32, options(nostack));
    }
    rxen_guest::boot::set_trap_hook(None);
    check_eq!(
        GP_SEEN.load(Ordering::SeqCst),
        0,
        "a write through a read-only grant mapping is dropped, without #GP"
    );
    // SAFETY: as above; B is only read.
    unsafe {
        check_eq!(mismatches(b, SEED_B), 0, "page B after the dropped write");
    }

    // _set_status_v1: a writable pin of a GTF_readonly entry -> GNTST_general_error.
    let (rc, m) = map(peer, REF_B, spare, gt::GNTMAP_HOST_MAP);
    check_eq!(rc, 0, "map ref 9 writable: hypercall");
    check_eq!(
        m.status,
        gt::GNTST_GENERAL_ERROR,
        "map read-only ref 9 writable"
    );
    // An entry without GTF_permit_access -> GNTST_general_error.
    let (rc, m) = map(peer, REF_NONE, spare, gt::GNTMAP_HOST_MAP);
    check_eq!(rc, 0, "map ref 11: hypercall");
    check_eq!(m.status, gt::GNTST_GENERAL_ERROR, "map ungranted ref 11");
    // ref >= nr_grant_entries -> GNTST_bad_gntref.
    let (rc, m) = map(peer, REF_HUGE, spare, gt::GNTMAP_HOST_MAP);
    check_eq!(rc, 0, "map ref 100000: hypercall");
    check_eq!(m.status, gt::GNTST_BAD_GNTREF, "map ref beyond the table");
    // rcu_lock_domain_by_id fails -> GNTST_bad_domain.
    let (rc, m) = map(NO_SUCH_DOMAIN, REF_A, spare, gt::GNTMAP_HOST_MAP);
    check_eq!(rc, 0, "map from d0x7fef: hypercall");
    check_eq!(
        m.status,
        gt::GNTST_BAD_DOMAIN,
        "map from a domain that does not exist"
    );
    println!("grant_share mapper: bad maps refused");
    link.signal("maps done");

    // Step 4.
    link.wait("the granter's checks");
    let (rc, status) = unmap(a, handle_a);
    check_eq!((rc, status), (0, gt::GNTST_OKAY), "unmap ref 8");
    let (rc, status) = unmap(b, handle_b);
    check_eq!((rc, status), (0, gt::GNTST_OKAY), "unmap ref 9");
    let (rc, status) = unmap(a, handle_a);
    check_eq!((rc, status), (0, gt::GNTST_BAD_HANDLE), "unmap ref 8 twice");
    let (rc, status) = unmap(a, BAD_HANDLE);
    check_eq!((rc, status), (0, gt::GNTST_BAD_HANDLE), "unmap handle 9999");
    // Nothing is at the frame any more: reads give whatever backs it (all ones), not A.
    // SAFETY: a read of a guest frame within the identity map.
    let word = unsafe { core::ptr::read_volatile(a as *const u64) };
    check!(
        word != pattern_word(SEED_REPLY, 0) && word != pattern_word(SEED_A, 0),
        "gfn {map_a:#x} still shows page A after unmap: {word:#x}"
    );
    println!("grant_share mapper: unmapped; gfn {map_a:#x} now reads {word:#x}");

    copies(peer);
    link.signal("unmaps and copies done");
}

fn copy_op(source: gt::GnttabCopyPtr, dest: gt::GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
    GnttabCopy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    }
}

/// `GNTTABOP_copy` through the granter's ref 10 (and ref 9).
fn copies(peer: DomId) {
    let (own, src, dst) = (
        gfn_of(&raw const OWN),
        gfn_of(&raw const SRC),
        gfn_of(&raw const DST),
    );
    // (a) granter's C -> our page.
    let mut op = [copy_op(
        copy_gref(peer, REF_C, 0),
        copy_frame(own, 0),
        4096,
        gt::GNTCOPY_SOURCE_GREF,
    )];
    check_eq!(copy(&mut op), 0, "GNTTABOP_copy from ref 10");
    check_eq!(op[0].status, gt::GNTST_OKAY, "copy from ref 10");
    check_eq!(
        // SAFETY: our own static page.
        unsafe { mismatches(own * PAGE_SIZE, SEED_C) },
        0,
        "page C copied into our page"
    );

    // (b) our page -> granter's C.
    // SAFETY: our own static page.
    unsafe { fill(src * PAGE_SIZE, SEED_MAPPER) };
    let mut op = [copy_op(
        copy_frame(src, 0),
        copy_gref(peer, REF_C, 0),
        4096,
        gt::GNTCOPY_DEST_GREF,
    )];
    check_eq!(copy(&mut op), 0, "GNTTABOP_copy into ref 10");
    check_eq!(op[0].status, gt::GNTST_OKAY, "copy into ref 10");

    // (c) a batch: the middle element crosses the end of the page -> GNTST_bad_copy_arg;
    // the others are done.
    let mut ops = [
        copy_op(
            copy_gref(peer, REF_C, 0),
            copy_frame(dst, 0),
            4096,
            gt::GNTCOPY_SOURCE_GREF,
        ),
        copy_op(
            copy_gref(peer, REF_C, 4000),
            copy_frame(dst, 0),
            200,
            gt::GNTCOPY_SOURCE_GREF,
        ),
        copy_op(
            copy_frame(src, 96),
            copy_gref(peer, REF_C, 96),
            1000,
            gt::GNTCOPY_DEST_GREF,
        ),
    ];
    check_eq!(copy(&mut ops), 0, "GNTTABOP_copy batch of 3");
    let statuses = [ops[0].status, ops[1].status, ops[2].status];
    check_eq!(
        statuses,
        [gt::GNTST_OKAY, gt::GNTST_BAD_COPY_ARG, gt::GNTST_OKAY],
        "batch statuses"
    );
    check_eq!(
        // SAFETY: our own static page.
        unsafe { mismatches(dst * PAGE_SIZE, SEED_MAPPER) },
        0,
        "our copy is back from ref 10"
    );

    // (d) into the read-only ref 9: a writable pin of a GTF_readonly entry ->
    // GNTST_general_error.
    let mut op = [copy_op(
        copy_frame(src, 0),
        copy_gref(peer, REF_B, 0),
        4096,
        gt::GNTCOPY_DEST_GREF,
    )];
    check_eq!(copy(&mut op), 0, "GNTTABOP_copy into ref 9");
    check_eq!(
        op[0].status,
        gt::GNTST_GENERAL_ERROR,
        "copy into read-only ref 9"
    );
    println!(
        "grant_share mapper: copies: from ref 10 ok, into ref 10 ok, batch {statuses:?}, into read-only ref 9 {}",
        op[0].status
    );
}
