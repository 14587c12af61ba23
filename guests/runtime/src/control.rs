//! The control domain's calls, as Xen's toolstack libraries make them (libxenctrl's
//! `xc_domain_*`, libxenforeignmemory): `domctl` with Xen 4.17's interface version,
//! `memory_op` reservations for another domain, foreign maps by frame number, and
//! the memory map of a domain being built. Thin wrappers: each returns Xen's answer
//! as the hypercall gave it.

use zerocopy::{FromBytes, IntoBytes};

use crate::abi::domctl::*;
use crate::abi::memory::{
    E820Entry, XenAddToPhysmapBatch, XenForeignMemoryMap, XenMemAcquireResource, XenMemoryMap,
    XenMemoryReservation, XenRemoveFromPhysmap, XENMAPSPACE_GMFN_FOREIGN, XENMEM_ACQUIRE_RESOURCE,
    XENMEM_ADD_TO_PHYSMAP_BATCH, XENMEM_CURRENT_RESERVATION, XENMEM_POPULATE_PHYSMAP,
    XENMEM_REMOVE_FROM_PHYSMAP, XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
    XENMEM_SET_MEMORY_MAP,
};
use crate::abi::xen::{DomId, HYPERVISOR_DOMCTL, HYPERVISOR_MEMORY_OP};
use crate::hypercall::{hypercall, mut_ptr, ptr};

/// Most entries one [`map_foreign`] call takes (a `u16` count in Xen's ABI; the
/// arrays live on the caller's stack).
pub const MAP_BATCH: usize = 512;

/// `HYPERVISOR_domctl(op)`.
pub fn domctl(op: &mut XenDomctl) -> i64 {
    // SAFETY: the argument is a live, writable `xen_domctl`.
    unsafe { hypercall(HYPERVISOR_DOMCTL, mut_ptr(op), 0, 0, 0, 0) }
}

/// A `xen_domctl` for `cmd` on `domain` with Xen 4.17's interface version and
/// `arg` at the start of its union.
pub fn dop(cmd: u32, domain: DomId, arg: &[u8]) -> XenDomctl {
    XenDomctl::new(cmd, domain, arg)
}

/// A domctl without argument (pause, unpause, destroy...).
pub fn simple(cmd: u32, domain: DomId) -> i64 {
    domctl(&mut dop(cmd, domain, &[]))
}

/// `getdomaininfo`: the first domain whose id is at least `domain`.
pub fn info(domain: DomId) -> Result<XenDomctlGetdomaininfo, i64> {
    let mut op = dop(XEN_DOMCTL_GETDOMAININFO, domain, &[]);
    match domctl(&mut op) {
        0 => XenDomctlGetdomaininfo::read_from_prefix(&op.u)
            .map(|(info, _)| info)
            .map_err(|_| i64::MIN),
        e => Err(e),
    }
}

/// `createdomain` as libxl issues it for a PVH guest (hvm and hap, the local APIC
/// emulated, grant table v1) with `max_vcpus`, after `edit`; the new domain's id.
pub fn create(
    requested: DomId,
    max_vcpus: u32,
    edit: impl FnOnce(&mut XenDomctlCreatedomain),
) -> Result<DomId, i64> {
    let mut c = XenDomctlCreatedomain::pvh(max_vcpus);
    edit(&mut c);
    let mut op = dop(XEN_DOMCTL_CREATEDOMAIN, requested, c.as_bytes());
    match domctl(&mut op) {
        0 => Ok(op.domain),
        e => Err(e),
    }
}

/// `max_vcpus`: creates the domain's vCPUs.
pub fn max_vcpus(domain: DomId, n: u32) -> i64 {
    domctl(&mut dop(XEN_DOMCTL_MAX_VCPUS, domain, &n.to_le_bytes()))
}

/// `max_mem` in KiB.
pub fn max_mem(domain: DomId, kib: u64) -> i64 {
    domctl(&mut dop(XEN_DOMCTL_MAX_MEM, domain, &kib.to_le_bytes()))
}

/// `HYPERVISOR_memory_op(cmd, arg)`.
///
/// # Safety
/// `arg` must point to what `cmd` reads and writes.
pub unsafe fn memory_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(HYPERVISOR_MEMORY_OP, cmd as u64, arg, 0, 0, 0) }
}

/// `XENMEM_populate_physmap` for `domain`: one extent of 2^`order` pages at each
/// frame of `gfns`; the number of extents done.
pub fn populate(domain: DomId, gfns: &[u64], order: u32) -> i64 {
    let mut r = XenMemoryReservation {
        extent_start: gfns.as_ptr() as u64,
        nr_extents: gfns.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid: domain,
        _pad0: [0; 6],
    };
    // SAFETY: a live reservation whose list holds `nr_extents` frames.
    unsafe { memory_op(XENMEM_POPULATE_PHYSMAP, mut_ptr(&mut r)) }
}

/// `XENMEM_current_reservation` of `domain` (pages).
pub fn current_reservation(domain: DomId) -> i64 {
    let domid = domain;
    // SAFETY: a `domid_t`.
    unsafe { memory_op(XENMEM_CURRENT_RESERVATION, ptr(&domid)) }
}

/// `XENMEM_add_to_physmap_batch`, `XENMAPSPACE_gmfn_foreign`: maps `owner`'s frames
/// `idxs` at the caller's `gpfns` (as many as `idxs`, at most [`MAP_BATCH`]); the
/// call's result, each entry's in `errs`.
pub fn map_foreign(owner: DomId, idxs: &[u64], gpfns: &[u64], errs: &mut [i32]) -> i64 {
    let n = idxs.len().min(gpfns.len()).min(errs.len()).min(MAP_BATCH);
    let mut batch = XenAddToPhysmapBatch {
        domid: crate::abi::xen::DOMID_SELF,
        space: XENMAPSPACE_GMFN_FOREIGN as u16,
        size: n as u16,
        u: owner,
        idxs: idxs.as_ptr() as u64,
        gpfns: gpfns.as_ptr() as u64,
        errs: errs.as_mut_ptr() as u64,
    };
    // SAFETY: the three arrays hold `size` entries; Xen writes only `errs`.
    unsafe { memory_op(XENMEM_ADD_TO_PHYSMAP_BATCH, mut_ptr(&mut batch)) }
}

/// `XENMEM_remove_from_physmap` of the caller's `gpfn`.
pub fn remove_from_physmap(gpfn: u64) -> i64 {
    let r = XenRemoveFromPhysmap {
        domid: crate::abi::xen::DOMID_SELF,
        _pad0: [0; 6],
        gpfn,
    };
    // SAFETY: a live `xen_remove_from_physmap`.
    unsafe { memory_op(XENMEM_REMOVE_FROM_PHYSMAP, ptr(&r)) }
}

/// `XENMEM_set_memory_map` of `domain`.
pub fn set_memory_map(domain: DomId, entries: &[E820Entry]) -> i64 {
    let map = XenForeignMemoryMap {
        domid: domain,
        _pad0: [0; 6],
        map: XenMemoryMap {
            nr_entries: entries.len() as u32,
            _pad0: [0; 4],
            buffer: entries.as_ptr() as u64,
        },
    };
    // SAFETY: a live map whose buffer holds `nr_entries` entries.
    unsafe { memory_op(XENMEM_SET_MEMORY_MAP, ptr(&map)) }
}

/// `XENMEM_acquire_resource` of `domain`'s shared grant-table frames from `frame`,
/// mapped at the caller's `gfns` (libxc's grant-table seeding); with no `gfns`, the
/// size query: `Ok(frames)` the table may have.
pub fn acquire_grant_frames(domain: DomId, frame: u64, gfns: &[u64]) -> Result<u32, i64> {
    let mut r = XenMemAcquireResource {
        domid: domain,
        type_: XENMEM_RESOURCE_GRANT_TABLE,
        id: XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
        nr_frames: gfns.len() as u32,
        pad: 0,
        frame,
        frame_list: if gfns.is_empty() {
            0
        } else {
            gfns.as_ptr() as u64
        },
    };
    // SAFETY: a live request whose list holds `nr_frames` frames.
    match unsafe { memory_op(XENMEM_ACQUIRE_RESOURCE, mut_ptr(&mut r)) } {
        0 => Ok(r.nr_frames),
        e => Err(e),
    }
}
