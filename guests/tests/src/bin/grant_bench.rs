//! Grant copy throughput (a multi-domain guest: the host side starts a granter and a
//! mapper).
//!
//! Command line: `role=granter peer=<domid>` or `role=mapper peer=<domid>
//! [copies=<n>]` (default 2000); both take `timeout_ms=<ms>` (default 60000).
//!
//! The granter offers an event-channel port to the peer (the first it offers), places its
//! grant-table frame 0 at the first free frame above its RAM, grants one writable page
//! as ref 8, and waits. The mapper binds to the first port offered to it, says hello, waits for the grant,
//! then does `copies` `GNTTABOP_copy` of 4096 bytes from the granter's ref 8 into its
//! own page, one copy per hypercall, and as many null hypercalls
//! (`xen_version(XENVER_version)`), both timed with the pvclock; it prints
//! `grant_bench: <n> copies of 4096 bytes, mean <ns> ns, null hypercall <ns> ns` (parsed
//! by benchmarks) and signals the granter, which revokes its grant.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::grant_table::{self as gt, GnttabCopy, GrantRef};
use rxen_guest::abi::xen::{DomId, DOMID_SELF};
use rxen_guest::events::{alloc_unbound, set_up_timer_events, Link};
use rxen_guest::grant::{
    copy, copy_frame, copy_gref, fill, free_gfn_above_ram, mismatches, place_frame, Page, Table,
    PAGE_SIZE,
};
use rxen_guest::hypercall::null_hypercall_ns;
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
/// The granted page.
const REF: GrantRef = 8;
const SEED: u64 = 0x6b6b_0000_0000_006b;

static mut GRANTED: Page = Page::new();
static mut COPY: Page = Page::new();

fn main(si: &StartInfo) {
    let role = si.arg_value("role");
    let Some(peer) = si.arg_u64("peer").and_then(|p| DomId::try_from(p).ok()) else {
        error!(
            "usage: role=granter|mapper peer=<domid> [copies=<n>] (got {:?})",
            si.cmdline()
        );
    };
    let timeout = si.arg_u64("timeout_ms").unwrap_or(60_000) * MS;
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    match role {
        Some("granter") => {
            let port = match alloc_unbound(DOMID_SELF, peer) {
                Ok(p) => p,
                Err(e) => error!("EVTCHNOP_alloc_unbound(remote d{peer}): {e}"),
            };
            set_up_timer_events();
            let mut link = Link::new(port, timeout);
            granter(si, peer, &mut link);
            println!("grant_bench: granter done");
        }
        Some("mapper") => {
            let Ok(n) = u32::try_from(si.arg_u64("copies").unwrap_or(2000)) else {
                error!("copies= out of range");
            };
            set_up_timer_events();
            let mut link = Link::bind(peer, None, timeout);
            mapper(peer, n, &mut link);
            println!("grant_bench: mapper done");
        }
        _ => error!("role must be granter or mapper (got {:?})", si.cmdline()),
    }
}

fn granter(si: &StartInfo, peer: DomId, link: &mut Link) {
    let table_gfn = free_gfn_above_ram(si.memmap(), 0);
    if place_frame(0, table_gfn) != 0 {
        error!("XENMEM_add_to_physmap(grant_table, 0, {table_gfn:#x}) failed");
    }
    // SAFETY: frame 0 is at `table_gfn` for the rest of the run.
    let t = unsafe { Table::at(table_gfn) };
    let page = &raw mut GRANTED;
    // SAFETY: our own static page.
    unsafe { fill(page as u64, SEED) };
    t.grant(REF, peer, (page as u64 / PAGE_SIZE) as u32, false);
    link.wait("the mapper's hello");
    link.signal("grant ready");
    link.wait("the end of the benchmark");
    check!(t.end_access(REF), "revoke ref {REF}");
}

fn mapper(peer: DomId, n: u32, link: &mut Link) {
    link.signal("hello");
    link.wait("the granter's grant");
    let own = &raw const COPY as u64 / PAGE_SIZE;
    let mut failed = 0u32;
    let t0 = now();
    for _ in 0..n {
        let mut op = [GnttabCopy {
            source: copy_gref(peer, REF, 0),
            dest: copy_frame(own, 0),
            len: 4096,
            flags: gt::GNTCOPY_SOURCE_GREF,
            ..Default::default()
        }];
        if copy(&mut op) != 0 || op[0].status != gt::GNTST_OKAY {
            failed += 1;
        }
    }
    let t1 = now();
    let null = null_hypercall_ns(n);
    check_eq!(failed, 0, "copies that failed");
    check!(null.is_some(), "xen_version calls failed");
    check_eq!(
        // SAFETY: our own static page.
        unsafe { mismatches(own * PAGE_SIZE, SEED) },
        0,
        "the granted page copied"
    );
    let per = |ns: u64| ns.checked_div(u64::from(n)).unwrap_or(0);
    println!(
        "grant_bench: {n} copies of 4096 bytes, mean {} ns, null hypercall {} ns",
        per(t1 - t0),
        null.unwrap_or(0)
    );
    link.signal("done");
}
