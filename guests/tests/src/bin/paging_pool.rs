//! A hostile guest against the domain's paging pool (Xen's HAP pool): it makes rxen build
//! nested page tables for guest frames it scatters over the guest-physical space (a
//! multi-domain guest: `tests/domains.rs` runs it as a domU beside a domain doing real
//! work, with `domid=<its own id>` on its command line).
//!
//! 1. `XENMEM_add_to_physmap` of the shared-info page at 2000 guest frames 2 MiB apart
//!    (each a page table of its own): as in Xen the page moves, so every call succeeds
//!    and the tables of the old place go back to the pool (without that, the pool would
//!    run dry). Moved back home, shared info still works.
//! 2. Its own grant, mapped (`GNTTABOP_map_grant_ref`) at guest frames 1 GiB apart
//!    until a map fails: each needs a page directory and a page table, so the pool runs
//!    out after a few hundred maps, not 4096; the failing map gets Xen's
//!    `GNTST_general_error`. With the pool empty, moving shared info or a grant frame to
//!    a new place is `-ENOMEM`, and shared info stays where it was.
//! 3. Every mapping undone, the pool is full again: the same maps succeed once more.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::grant_table::{self as gt, GrantRef};
use rxen_guest::abi::xen::DomId;
use rxen_guest::grant::{free_gfn_above_ram, map, place_frame, unmap, Page, Table};
use rxen_guest::hypercall::{memory_op, ptr};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::{memory, AddToPhysmap};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

/// `-ENOMEM`.
const ENOMEM: i64 = rxen_guest::abi::errno::ENOMEM.to_hypercall_ret();
/// Shared-info moves, 2 MiB apart from 16 MiB up (all below 4 GiB).
const MOVES: u64 = 2000;
/// Most grant maps tried: far more than any default pool allows.
const MAX_MAPS: usize = 4096;
/// The grant mapped again and again.
const REF: GrantRef = 8;
/// First frame of the grant maps (8 GiB), then one every 1 GiB.
const MAP_BASE_GFN: u64 = 8 << 18;
const MAP_STRIDE: u64 = 1 << 18;

static mut PAGE: Page = Page::new();

/// `XENMEM_add_to_physmap` of the shared-info page at `gfn`.
fn place_shared_info(gfn: u64) -> i64 {
    let xatp = AddToPhysmap {
        domid: memory::DOMID_SELF,
        size: 0,
        space: memory::MAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: gfn,
    };
    // SAFETY: `xatp` is a valid `xen_add_to_physmap`, only read.
    unsafe { memory_op(memory::ADD_TO_PHYSMAP, ptr(&xatp)) }
}

fn map_gfn(k: usize) -> u64 {
    MAP_BASE_GFN + k as u64 * MAP_STRIDE
}

/// Maps `REF` at successive far frames until a map fails or every slot of `handles` is
/// used: how many were made and the failing status.
fn map_until_failure(me: DomId, handles: &mut [u32]) -> (usize, Option<i16>) {
    for (k, slot) in handles.iter_mut().enumerate() {
        let (rc, op) = map(me, REF, map_gfn(k), gt::GNTMAP_HOST_MAP);
        if rc != 0 {
            error!("GNTTABOP_map_grant_ref: {rc}");
        }
        if op.status != gt::GNTST_OKAY {
            return (k, Some(op.status));
        }
        *slot = op.handle;
    }
    (handles.len(), None)
}

/// Unmaps the maps of `handles`: how many unmaps were refused.
fn unmap_all(handles: &[u32]) -> usize {
    handles
        .iter()
        .enumerate()
        .filter(|&(k, &handle)| {
            let (rc, status) = unmap(map_gfn(k) * 4096, handle);
            rc != 0 || status != gt::GNTST_OKAY
        })
        .count()
}

fn main(si: &StartInfo) {
    let Some(me) = si.arg_u64("domid").and_then(|d| DomId::try_from(d).ok()) else {
        error!("usage: domid=<our domain id> (got {:?})", si.cmdline());
    };
    check_eq!(map_shared_info(), 0, "shared info at home");

    // 1. Shared info moves; the tables of its old places go back to the pool.
    let mut failed = 0;
    for i in 0..MOVES {
        let rc = place_shared_info((16 << 8) + i * 512);
        if rc != 0 {
            if failed == 0 {
                println!("paging_pool: move {i} of shared info: {rc}");
            }
            failed += 1;
        }
    }
    check_eq!(failed, 0, "shared-info moves refused");
    check_eq!(map_shared_info(), 0, "shared info back home");
    let t0 = now();
    check!(t0 > 0, "shared info works again (system time {t0})");
    println!("paging_pool: shared info moved {MOVES} times");

    // 2. Our own grant, mapped at far frames until the pool is empty.
    let table_gfn = free_gfn_above_ram(si.memmap(), 0);
    check_eq!(place_frame(0, table_gfn), 0, "grant frame 0");
    // SAFETY: frame 0 of our grant table is at `table_gfn` from now on.
    let table = unsafe { Table::at(table_gfn) };
    let page_gfn = (&raw const PAGE as u64) >> 12;
    table.grant(REF, me, page_gfn as u32, false);
    // 16 KiB of the 64 KiB stack.
    let handles = &mut [0u32; MAX_MAPS];
    let (made, status) = map_until_failure(me, handles);
    println!("paging_pool: {made} grant maps, then status {status:?}");
    check!(made > 0, "no grant map at all");
    check_eq!(
        status,
        Some(gt::GNTST_GENERAL_ERROR),
        "a map beyond the paging pool ({made} made)"
    );
    check!(
        made < 1024,
        "the pool should run out after a few hundred maps, not {made}"
    );
    // The pool is empty (but for a frame the failed map gave back, which makes no pair):
    // a new place for a grant frame 1 GiB away needs a page directory and a table.
    check_eq!(
        place_frame(0, map_gfn(made)),
        ENOMEM,
        "grant frame where two tables are needed"
    );
    // Shared info to fresh 2 MiB regions below 4 GiB (from 3 GiB + 18 MiB), each needing
    // a table: the first or the second is refused, and shared info then stays home.
    let mut moved = 0;
    let refused = (0..4u64).any(|j| match place_shared_info((3 << 18) + 0x1234 + j * 512) {
        0 => {
            moved += 1;
            false
        }
        rc => {
            check_eq!(rc, ENOMEM, "shared info where a table is needed");
            true
        }
    });
    check!(
        refused && moved <= 1,
        "shared-info moves past the pool: {moved}"
    );
    check_eq!(map_shared_info(), 0, "shared info home with the pool empty");
    check!(now() >= t0, "shared info works at home");

    // 3. Undone, every table is back: the same maps succeed again.
    check_eq!(unmap_all(&handles[..made]), 0, "unmaps refused");
    let (again, _) = map_until_failure(me, handles);
    check_eq!(again, made, "maps after the pool was refilled");
    check_eq!(unmap_all(&handles[..again]), 0, "unmaps refused");
    check!(table.end_access(REF), "grant still in use after the unmaps");
    println!("paging_pool: done");
}
