//! `memory_op` (Xen's common/memory.c and the x86 sub-ops of
//! arch/x86/mm.c): reservations, memory maps and add_to_physmap.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::memory;

use super::{from_result, own_domain, write_shared_info_time, Ctx, GuestEnv, Outcome, DOMID_SELF};
use crate::domain::{DomId, GuestMemRegion};
use crate::guest_handle::GuestHandle;
use crate::mm::Gfn;
use crate::platform::{lend_domain, ForeignFrame};

/// `MEMOP_CMD_MASK`: the low bits of a memory_op command.
const MEMOP_CMD_MASK: u64 = 0x3F;

/// `MEMOP_EXTENT_SHIFT`: where a continued memory_op keeps the extent it
/// goes on from, above the command.
const MEMOP_EXTENT_SHIFT: u32 = 6;

/// Xen's largest extent order for a domU (`CONFIG_DOMU_MAX_ORDER`) and for
/// the control domain (`CONFIG_CTLDOM_MAX_ORDER`).
const DOMU_MAX_ORDER: u32 = 9;
const CTLDOM_MAX_ORDER: u32 = 12;

/// Pages one `populate_physmap` call gives before it continues (at least
/// one extent): the zeroing of 4 MiB bounds the work of one exit.
const POPULATE_BATCH_PAGES: u64 = 1024;

/// Entries one `add_to_physmap_batch` call maps before it continues.
const PHYSMAP_BATCH: u64 = 256;

/// `E820MAX` in Xen: the most entries `XENMEM_set_memory_map` takes.
const E820_MAX: u32 = 128;

/// `memory_op(cmd, arg)`.
pub(super) fn do_memory_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    let (cmd, arg) = (args[0], args[1]);
    match (cmd & MEMOP_CMD_MASK) as u32 {
        memory::XENMEM_INCREASE_RESERVATION
        | memory::XENMEM_POPULATE_PHYSMAP
        | memory::XENMEM_DECREASE_RESERVATION => reservation_op(ctx, cmd, arg),
        memory::XENMEM_ADD_TO_PHYSMAP_BATCH => add_to_physmap_batch(ctx, cmd, arg),
        memory::XENMEM_ACQUIRE_RESOURCE => match acquire_resource(ctx, cmd, arg) {
            Ok(None) => Outcome::value(0),
            Ok(Some(next)) => Outcome::continuation(
                rxen_abi::xen::HYPERVISOR_MEMORY_OP,
                [
                    (cmd & MEMOP_CMD_MASK) | (next << MEMOP_EXTENT_SHIFT),
                    arg,
                    0,
                    0,
                    0,
                ],
            ),
            Err(e) => Outcome::error(e),
        },
        // Those Xen's common code serves take no continuation: extent bits
        // are -EINVAL there; an unknown op is -ENOSYS whatever they hold.
        memory::XENMEM_CURRENT_RESERVATION
        | memory::XENMEM_MAXIMUM_RESERVATION
        | memory::XENMEM_MAXIMUM_GPFN
        | memory::XENMEM_MAXIMUM_RAM_PAGE
        | memory::XENMEM_REMOVE_FROM_PHYSMAP
            if cmd >> MEMOP_EXTENT_SHIFT != 0 =>
        {
            Outcome::error(errno::EINVAL)
        }
        _ => from_result(memory_op(ctx, cmd, arg)),
    }
}

/// `XENMEM_populate_physmap`, `XENMEM_increase_reservation` and
/// `XENMEM_decrease_reservation` (Linux's balloon driver uses the first and
/// last): the domain (the caller's own, or any for the control domain) gets
/// zeroed RAM at the guest frames listed, one extent of 2^`extent_order`
/// pages each, within its `max_pages`; or gets extents it cannot reach
/// (increase: a translated domain is given no frame number, as on Xen, and
/// they go back when it is destroyed); or gives back the
/// RAM at those frames (not a page another domain maps: that stops the
/// walk, where Xen would free it when the last mapping goes). Returns the
/// number of extents done, as Xen: a bad argument, an unknown or forbidden
/// domain, an order above Xen's limit, populate-on-demand, an extent
/// already (partly) mapped or not RAM, or no memory, all stop the walk
/// there. Continued after [`POPULATE_BATCH_PAGES`] pages, the next extent
/// in the command's upper bits as Xen's `MEMOP_EXTENT_SHIFT`.
fn reservation_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Outcome {
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    let decrease = op == memory::XENMEM_DECREASE_RESERVATION;
    let increase = op == memory::XENMEM_INCREASE_RESERVATION;
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    let done = |n: u64| Outcome::value(i64::try_from(n).unwrap_or(i64::MAX));
    let Ok(r) = GuestHandle::<memory::XenMemoryReservation>::new(arg).read(ctx.env) else {
        return done(start);
    };
    if r.nr_extents > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) || start >= r.nr_extents {
        return done(start);
    }
    let caller = ctx.domain.id;
    let target = if r.domid == DOMID_SELF {
        caller
    } else {
        r.domid
    };
    let max_order = if ctx.domain.privileged {
        CTLDOM_MAX_ORDER
    } else {
        DOMU_MAX_ORDER
    };
    if (target != caller && !ctx.domain.privileged)
        || r.extent_order > max_order
        || r.mem_flags & memory::XENMEMF_POPULATE_ON_DEMAND != 0
    {
        return done(start);
    }
    let pages = 1u64 << r.extent_order;
    let end = r
        .nr_extents
        .min(start.saturating_add(POPULATE_BATCH_PAGES.checked_div(pages).unwrap_or(1).max(1)));
    // The frame numbers come from the caller's memory, the frames go to
    // the target's: read this round's first.
    let list = GuestHandle::<u64>::new(r.extent_start);
    let mut gfns = Vec::new();
    if gfns
        .try_reserve(usize::try_from(end.saturating_sub(start)).unwrap_or(0))
        .is_err()
    {
        return done(start);
    }
    // increase_reservation reads no frame numbers: a translated domain is
    // told none (Xen writes machine frames only for a PV guest's list).
    for i in (start..end).filter(|_| !increase) {
        match list.offset(i).and_then(|h| h.read(ctx.env)) {
            Ok(gfn) => gfns.push(gfn),
            Err(_) => break,
        }
    }
    let grown = if increase {
        end.saturating_sub(start)
    } else {
        gfns.len() as u64
    };
    let mut next = start;
    if decrease {
        let (extents, freed) = ctx.env.decrease_reservation(target, &gfns, r.extent_order);
        let _ = lend_domain(ctx.domain, ctx.env, target, |d, _| {
            d.tot_pages = d.tot_pages.saturating_sub(freed);
        });
        next = next.saturating_add(extents);
    } else {
        let _ = lend_domain(ctx.domain, ctx.env, target, |d, env| {
            if d.destroy_requested {
                return;
            }
            for i in 0..grown {
                // Xen's assign_pages: never past max_pages.
                let Some(total) = d.tot_pages.checked_add(pages).filter(|&t| t <= d.max_pages)
                else {
                    return;
                };
                let given = match gfns.get(i as usize) {
                    Some(&gfn) if !increase => env.populate(Gfn(gfn), pages),
                    _ => env.allocate_unmapped(pages),
                };
                if given.is_err() {
                    return;
                }
                d.tot_pages = total;
                next = next.saturating_add(1);
            }
        });
    }
    if next == end && end < r.nr_extents {
        let op = cmd & MEMOP_CMD_MASK;
        Outcome::continuation(
            rxen_abi::xen::HYPERVISOR_MEMORY_OP,
            [op | (end << MEMOP_EXTENT_SHIFT), arg, 0, 0, 0],
        )
    } else {
        done(next)
    }
}

/// `XENMEM_add_to_physmap_batch`: for `XENMAPSPACE_gmfn_foreign`, the
/// control domain maps pages of another domain's RAM (`idxs`, its frame
/// numbers) into its own physical map (`gpfns`), as privcmd's
/// `MMAPBATCH_V2` asks; each entry's result goes to `errs` (0, or `-EINVAL`
/// for a frame that is not the owner's RAM, `-ENXIO` over another foreign
/// page, as Xen 4.17, `-ENOMEM`...). The call itself fails for a bad domain (`-ESRCH`),
/// a domU (`-EPERM`), the caller's own pages (`-EPERM`, as Xen's "remote"
/// lookup), a continuation past the batch (`-EILSEQ`) or unreadable arrays
/// (`-EFAULT`). rxen changes only the caller's own physical map this way,
/// and only for foreign pages: other domains and spaces are `-EOPNOTSUPP`.
fn add_to_physmap_batch(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Outcome {
    match physmap_batch(ctx, cmd, arg) {
        Ok(None) => Outcome::value(0),
        Ok(Some(next)) => Outcome::continuation(
            rxen_abi::xen::HYPERVISOR_MEMORY_OP,
            [
                (cmd & MEMOP_CMD_MASK) | (next << MEMOP_EXTENT_SHIFT),
                arg,
                0,
                0,
                0,
            ],
        ),
        Err(e) => Outcome::error(e),
    }
}

/// [`add_to_physmap_batch`]'s work: `Some(next entry)` when it stopped
/// after [`PHYSMAP_BATCH`] entries.
fn physmap_batch(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<Option<u64>, Errno> {
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    if start > u64::from(u16::MAX) {
        return Err(errno::EDOM);
    }
    let batch = GuestHandle::<memory::XenAddToPhysmapBatch>::new(arg).read(ctx.env)?;
    if u32::from(batch.space) == memory::XENMAPSPACE_GMFN_RANGE {
        return Err(errno::EOPNOTSUPP);
    }
    let caller = ctx.domain.id;
    if batch.domid != DOMID_SELF && batch.domid != caller {
        if !ctx.domain.privileged {
            return Err(errno::EPERM);
        }
        if !ctx.env.other_domains().contains(&batch.domid) {
            return Err(errno::ESRCH);
        }
        return Err(errno::EOPNOTSUPP);
    }
    if u32::from(batch.space) != memory::XENMAPSPACE_GMFN_FOREIGN {
        return Err(errno::EOPNOTSUPP);
    }
    let size = u64::from(batch.size);
    if size < start || (size == start && start != 0) {
        return Err(errno::EILSEQ);
    }
    let owner = batch.u;
    let (idxs, gpfns) = (
        GuestHandle::<u64>::new(batch.idxs),
        GuestHandle::<u64>::new(batch.gpfns),
    );
    let errs = GuestHandle::<i32>::new(batch.errs);
    for i in start..size {
        if i.saturating_sub(start) == PHYSMAP_BATCH {
            return Ok(Some(i));
        }
        let idx = idxs.offset(i)?.read(ctx.env)?;
        let gpfn = gpfns.offset(i)?.read(ctx.env)?;
        if gpfn == u64::MAX {
            return Err(errno::EINVAL);
        }
        let rc = match map_foreign_one(ctx, owner, idx, gpfn) {
            Ok(()) => 0,
            Err(e) => i32::try_from(e.to_hypercall_ret()).unwrap_or(i32::MIN),
        };
        errs.offset(i)?.write(ctx.env, &rc)?;
    }
    Ok(None)
}

/// Frames one `acquire_resource` call maps before it continues (Xen's
/// stride).
const ACQUIRE_BATCH: u64 = 32;

/// `XENMEM_acquire_resource` (privcmd's `MMAP_RESOURCE`): the control
/// domain maps frames of another domain's resource at its own frames
/// (`frame_list`); with a null list it learns the resource's size in
/// `nr_frames`. rxen serves Xen's grant-table resource, shared frames (id
/// 0), which the toolstack seeds a new domain's table through, growing
/// the table as needed. As Xen: `-EINVAL` for a nonzero pad, a range past
/// 32 bits, another type or id (status frames need grant table v2), a size
/// query with frames, frames past the table's maximum; `-EPERM` for the
/// caller's own domain or a domU; `-ESRCH` for no domain; `-EIO` when a
/// later frame of a round fails. Continued every [`ACQUIRE_BATCH`] frames.
fn acquire_resource(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<Option<u64>, Errno> {
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    let handle = GuestHandle::<memory::XenMemAcquireResource>::new(arg);
    let mut r = handle.read(ctx.env)?;
    if r.pad != 0 {
        return Err(errno::EINVAL);
    }
    let end = r
        .frame
        .checked_add(u64::from(r.nr_frames))
        .ok_or(errno::EINVAL)?;
    if r.frame >> 32 != 0 || end >> 32 != 0 {
        return Err(errno::EINVAL);
    }
    let owner = r.domid;
    if owner == ctx.domain.id {
        return Err(errno::EPERM);
    }
    if !ctx.env.other_domains().contains(&owner) {
        return Err(errno::ESRCH);
    }
    if !ctx.domain.privileged {
        return Err(errno::EPERM);
    }
    let mut max_frames = 0;
    if r.type_ == memory::XENMEM_RESOURCE_GRANT_TABLE
        && r.id == memory::XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED
    {
        let caller = ctx.domain.id;
        ctx.env.with_grants(caller, &mut |tables, _| {
            max_frames = tables.table(owner).map_or(0, |t| t.max_frames());
        });
    }
    if max_frames == 0 {
        return Err(errno::EINVAL);
    }
    if r.frame_list == 0 {
        if r.nr_frames != 0 || start != 0 {
            return Err(errno::EINVAL);
        }
        r.nr_frames = max_frames;
        handle.write(ctx.env, &r)?;
        return Ok(None);
    }
    let nr = u64::from(r.nr_frames);
    if start >= nr || nr > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) {
        return Err(errno::EINVAL);
    }
    let todo = nr.saturating_sub(start).min(ACQUIRE_BATCH);
    let first = r.frame.saturating_add(start);
    // Both below 2^32 (checked above).
    let (first, last) = (first as u32, first.saturating_add(todo) as u32);
    let caller = ctx.domain.id;
    let mut grown = Err(errno::EINVAL);
    ctx.env.with_grants(caller, &mut |tables, platform| {
        grown = match tables.table(owner) {
            Some(table) => table.ensure_frames(platform, last),
            None => Err(errno::EINVAL),
        };
    });
    grown?;
    let list = GuestHandle::<u64>::new(r.frame_list);
    for (i, index) in (first..last).enumerate() {
        let at = start.saturating_add(i as u64);
        let mapped = list
            .offset(at)
            .and_then(|h| h.read(ctx.env))
            .and_then(|gfn| {
                ctx.env
                    .map_foreign(owner, ForeignFrame::GrantTable(index), Gfn(gfn))
            });
        if let Err(e) = mapped {
            return Err(if i == 0 { e } else { errno::EIO });
        }
    }
    let next = start.saturating_add(todo);
    Ok((next < nr).then_some(next))
}

/// One `XENMAPSPACE_gmfn_foreign` entry (Xen's `p2m_add_foreign`): the
/// owner is another domain (`-EPERM` for the caller itself, `-ESRCH` for
/// none), the caller is the control domain (`-EPERM`), and `idx` is the
/// owner's RAM (`-EINVAL`).
fn map_foreign_one(ctx: &mut Ctx<'_>, owner: DomId, idx: u64, gpfn: u64) -> Result<(), Errno> {
    if owner == ctx.domain.id || owner == DOMID_SELF {
        return Err(errno::EPERM);
    }
    if !ctx.domain.privileged {
        return Err(if ctx.env.other_domains().contains(&owner) {
            errno::EPERM
        } else {
            errno::ESRCH
        });
    }
    ctx.env
        .map_foreign(owner, ForeignFrame::Ram(Gfn(idx)), Gfn(gpfn))
}

fn memory_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, env) = (&mut *ctx.domain, &mut *ctx.env);
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    match op {
        memory::XENMEM_CURRENT_RESERVATION | memory::XENMEM_MAXIMUM_RESERVATION => {
            // A `domid_t`: the caller's own, or any for the control domain.
            let domid = GuestHandle::<u16>::new(arg).read(env)?;
            let target = if domid == DOMID_SELF {
                domain.id
            } else {
                domid
            };
            if target != domain.id && !domain.privileged {
                return Err(errno::EPERM);
            }
            let pages = lend_domain(domain, env, target, |d, _| {
                if op == memory::XENMEM_CURRENT_RESERVATION {
                    d.tot_pages
                } else {
                    d.max_pages
                }
            })?;
            Ok(i64::try_from(pages).unwrap_or(i64::MAX))
        }
        memory::XENMEM_SET_MEMORY_MAP => {
            // The control domain gives a domain it builds its memory map
            // (libxl's xc_domain_set_memory_map), at most E820MAX entries.
            let map = GuestHandle::<memory::XenForeignMemoryMap>::new(arg).read(env)?;
            if !domain.privileged {
                return Err(errno::EPERM);
            }
            if map.map.nr_entries > E820_MAX {
                return Err(errno::EINVAL);
            }
            let buffer = GuestHandle::<memory::E820Entry>::new(map.map.buffer);
            let mut entries = Vec::new();
            entries
                .try_reserve(map.map.nr_entries as usize)
                .map_err(|_| errno::ENOMEM)?;
            for i in 0..u64::from(map.map.nr_entries) {
                let e = buffer.offset(i)?.read(env)?;
                entries.push(GuestMemRegion {
                    addr: e.addr,
                    size: e.size,
                    kind: e.type_,
                });
            }
            let target = if map.domid == DOMID_SELF {
                domain.id
            } else {
                map.domid
            };
            lend_domain(domain, env, target, |d, _| d.memory_map = entries)?;
            Ok(0)
        }
        memory::XENMEM_REMOVE_FROM_PHYSMAP => {
            // Takes out a page the caller (or, for the control domain, any
            // domain) mapped by XENMAPSPACE_gmfn_foreign; -ENOENT where
            // nothing is mapped. Other pages are -EINVAL on rxen (Xen would
            // free RAM or unhook a special page there).
            let request = GuestHandle::<memory::XenRemoveFromPhysmap>::new(arg).read(env)?;
            let target = if request.domid == DOMID_SELF {
                domain.id
            } else {
                request.domid
            };
            if target != domain.id && !domain.privileged {
                return Err(errno::EPERM);
            }
            lend_domain(domain, env, target, |_, env| {
                env.remove_foreign_gmfn(Gfn(request.gpfn))
            })??;
            Ok(0)
        }
        memory::XENMEM_MAXIMUM_RAM_PAGE => Ok(env.host_max_page() as i64),
        memory::XENMEM_MAXIMUM_GPFN => {
            let end = domain
                .memory_map
                .iter()
                .map(|r| r.addr.saturating_add(r.size))
                .max()
                .unwrap_or(0);
            Ok((end / 4096).saturating_sub(1) as i64)
        }
        memory::XENMEM_MEMORY_MAP => {
            let entries: Vec<GuestMemRegion> = domain.memory_map.clone();
            copy_memory_map(env, arg, &entries)
        }
        memory::XENMEM_MACHINE_MEMORY_MAP => {
            if !domain.privileged {
                return Err(errno::EPERM);
            }
            let entries = env.host_memory_map();
            copy_memory_map(env, arg, &entries)
        }
        memory::XENMEM_ADD_TO_PHYSMAP => {
            let request = GuestHandle::<memory::XenAddToPhysmap>::new(arg).read(env)?;
            own_domain(domain, request.domid)?;
            match request.space {
                memory::XENMAPSPACE_SHARED_INFO => {
                    if request.idx != 0 {
                        return Err(errno::EINVAL);
                    }
                    env.map_shared_info(Gfn(request.gpfn))?;
                    write_shared_info_time(domain, env);
                    Ok(0)
                }
                memory::XENMAPSPACE_GRANT_TABLE => {
                    map_grant_frame(ctx, request.idx, request.gpfn).map(|_| 0)
                }
                _ => Err(errno::EINVAL),
            }
        }
        _ => Err(errno::ENOSYS),
    }
}

/// XENMEM_add_to_physmap, space `XENMAPSPACE_grant_table`: places grant
/// frame `idx` of the caller's table at `gpfn`
/// ([`crate::grant_table::GrantTable::add_to_physmap`], which may grow the
/// table) and maps it there; `-EINVAL` without grant tables. A frame the
/// physical map refuses is not left recorded at `gpfn`.
fn map_grant_frame(ctx: &mut Ctx<'_>, idx: u64, gpfn: u64) -> Result<(), Errno> {
    let caller = ctx.domain.id;
    let mut placed = Err(errno::EINVAL);
    ctx.env.with_grants(caller, &mut |tables, platform| {
        placed = match tables.table(caller) {
            Some(table) => table.add_to_physmap(platform, idx, gpfn),
            None => Err(errno::EINVAL),
        };
    });
    let placed = placed?;
    if let Err(e) = ctx.env.map_grant_frame(placed.index, Gfn(placed.gfn)) {
        ctx.env.with_grants(caller, &mut |tables, _| {
            if let Some(table) = tables.table(caller) {
                table.forget_frame_gfn(placed.gfn);
            }
        });
        return Err(e);
    }
    Ok(())
}

/// XENMEM_memory_map / machine_memory_map: copies at most `nr_entries`
/// entries and writes back how many it copied.
fn copy_memory_map(
    env: &mut dyn GuestEnv,
    arg: u64,
    entries: &[GuestMemRegion],
) -> Result<i64, Errno> {
    let handle = GuestHandle::<memory::XenMemoryMap>::new(arg);
    let mut map = handle.read(env)?;
    if entries.is_empty() {
        return Err(errno::ENOSYS);
    }
    let buffer = GuestHandle::<memory::E820Entry>::new(map.buffer);
    let n = (map.nr_entries as usize).min(entries.len());
    for (index, region) in entries.iter().take(n).enumerate() {
        let entry = memory::E820Entry {
            addr: region.addr,
            size: region.size,
            type_: region.kind,
        };
        buffer.offset(index as u64)?.write(env, &entry)?;
    }
    map.nr_entries = n as u32;
    handle.write(env, &map).map(|_| 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, domu, ret, FakeEnv, BAD, MEM};
    use rxen_abi::xen;
    use zerocopy::{FromZeros, IntoBytes};

    #[test]
    fn memory_op_maps_and_reservations() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.memory_map.push(GuestMemRegion {
            addr: 0x10_0000,
            size: 0x1000,
            kind: 2,
        });
        let nr = xen::HYPERVISOR_MEMORY_OP;
        // A buffer for one entry gets one entry, and nr_entries says so.
        env.put(
            0x100,
            &memory::XenMemoryMap {
                nr_entries: 1,
                _pad0: [0; 4],
                buffer: 0x200,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.get::<memory::XenMemoryMap>(0x100).nr_entries, 1);
        let first: memory::E820Entry = env.get(0x200);
        assert_eq!({ first.size }, MEM as u64);
        env.put(
            0x100,
            &memory::XenMemoryMap {
                nr_entries: 8,
                _pad0: [0; 4],
                buffer: BAD,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        // Reservations of self; of another domain: -EPERM for a domU.
        env.put(0x300, &0x7FF0u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_CURRENT_RESERVATION as u64, 0x300, 0, 0, 0]
            )
            .ret,
            16
        );
        env.put(0x300, &0u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MAXIMUM_RESERVATION as u64, 0x300, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MACHINE_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        // Shared info: idx must be 0; the page is mapped and the wall clock published.
        let mut xatp = memory::XenAddToPhysmap::new_zeroed();
        xatp.domid = 0x7FF0;
        xatp.space = memory::XENMAPSPACE_SHARED_INFO;
        xatp.idx = 1;
        xatp.gpfn = 8;
        env.put(0x400, &xatp);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_ADD_TO_PHYSMAP as u64, 0x400, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        xatp.idx = 0;
        env.put(0x400, &xatp);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_ADD_TO_PHYSMAP as u64, 0x400, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.shared_info_at, Some(0x8000));
        let mut info = xen::SharedInfo::new_zeroed();
        info.as_mut_bytes()
            .copy_from_slice(&env.si_bytes()[..core::mem::size_of::<xen::SharedInfo>()]);
        assert_ne!(info.wc_version, 0, "the wall clock was published");
        assert_eq!(
            info.wc_version % 2,
            0,
            "wall clock version is even when published"
        );
        assert_eq!(info.wc_sec, 1_700_000_000);
        assert_eq!(info.vcpu_info[0].time.version % 2, 0);
        assert_eq!(info.vcpu_info[0].time.system_time, env.now);
        assert_eq!(
            call(&mut d, &mut env, nr, [63, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn grant_frames_are_placed_by_core_and_mapped_by_the_platform() {
        use crate::test_support::FakeGrants;
        use rxen_abi::grant_table as gnt;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_MEMORY_OP;
        let add = [memory::XENMEM_ADD_TO_PHYSMAP as u64, 0x400, 0, 0, 0];
        let mut xatp = memory::XenAddToPhysmap::new_zeroed();
        xatp.domid = 0x7FF0;
        xatp.space = memory::XENMAPSPACE_GRANT_TABLE;
        xatp.idx = 2;
        xatp.gpfn = 0x50;
        env.put(0x400, &xatp);
        let query = gnt::GnttabQuerySize {
            dom: 0x7FF0,
            ..gnt::GnttabQuerySize::new_zeroed()
        };
        env.put(0x500, &query);
        let query_size = [u64::from(gnt::GNTTABOP_QUERY_SIZE), 0x500, 1, 0, 0];
        // Without grant tables: -EINVAL and -ENOSYS, as before.
        assert_eq!(call(&mut d, &mut env, nr, add).ret, ret(errno::EINVAL));
        let gnttab = xen::HYPERVISOR_GRANT_TABLE_OP;
        assert_eq!(
            call(&mut d, &mut env, gnttab, query_size).ret,
            ret(errno::ENOSYS)
        );
        assert!(env.grant_frames_mapped.is_empty());

        env.grants = Some(FakeGrants::new(&[d.id], 4));
        // The table grows to frame 2, which is placed and mapped at 0x50.
        assert_eq!(call(&mut d, &mut env, nr, add).ret, 0);
        assert_eq!(env.grant_frames_mapped, [(2, 0x50)]);
        fn table(env: &FakeEnv) -> &crate::grant_table::GrantTable {
            &env.grants.as_ref().unwrap().tables[&1]
        }
        assert_eq!(table(&env).nr_frames(), 3);
        assert_eq!(table(&env).frame_gfn(2), Some(0x50));
        // grant_table_op reaches the same table through the registry.
        assert_eq!(call(&mut d, &mut env, gnttab, query_size).ret, 0);
        let answer: gnt::GnttabQuerySize = env.get(0x500);
        assert_eq!((answer.nr_frames, answer.max_nr_frames), (3, 4));
        // Beyond the table's limit: -EINVAL, nothing mapped.
        xatp.idx = 4;
        env.put(0x400, &xatp);
        assert_eq!(call(&mut d, &mut env, nr, add).ret, ret(errno::EINVAL));
        assert_eq!(env.grant_frames_mapped.len(), 1);
        // A frame the physical map refuses is not left recorded there.
        env.refuse_grant_frames = true;
        xatp.idx = 1;
        xatp.gpfn = 0x60;
        env.put(0x400, &xatp);
        assert_eq!(call(&mut d, &mut env, nr, add).ret, ret(errno::ENOMEM));
        assert_eq!(table(&env).frame_gfn(1), None);
        assert_eq!(table(&env).frame_gfn(2), Some(0x50));
    }

    use crate::test_support::{call_to_end, peer, two_domains};

    /// Reservation op `cmd` of `nr` extents of `order` for `domid`, the frame
    /// list at `list`, run to the end: the final result and the rounds it took.
    fn reservation(
        d: &mut Domain,
        env: &mut FakeEnv,
        cmd: u32,
        (domid, list, nr, order): (u16, u64, u64, u32),
    ) -> (i64, usize) {
        env.put(
            0x100,
            &memory::XenMemoryReservation {
                extent_start: list,
                nr_extents: nr,
                extent_order: order,
                mem_flags: 0,
                domid,
                _pad0: [0; 6],
            },
        );
        let (out, rounds) = call_to_end(
            d,
            env,
            xen::HYPERVISOR_MEMORY_OP,
            [u64::from(cmd), 0x100, 0, 0, 0],
        );
        assert_eq!(out.next, crate::hypercall::Next::Continue);
        (out.ret, rounds.len())
    }

    /// populate_physmap of the frames `gfns` (written at 0x1000), each an
    /// extent of `order`, for `domid`.
    fn populate(
        d: &mut Domain,
        env: &mut FakeEnv,
        domid: u16,
        gfns: &[u64],
        order: u32,
    ) -> (i64, usize) {
        for (i, gfn) in gfns.iter().enumerate() {
            env.put(0x1000 + 8 * i as u64, gfn);
        }
        let args = (domid, 0x1000, gfns.len() as u64, order);
        reservation(d, env, memory::XENMEM_POPULATE_PHYSMAP, args)
    }

    use crate::domain::Domain;

    /// `XENMEM_increase_reservation` of `nr` extents of order `order` for `domid`,
    /// its list at `list`.
    fn increase(
        d: &mut Domain,
        env: &mut FakeEnv,
        domid: u16,
        list: u64,
        nr: u64,
        order: u32,
    ) -> (i64, usize) {
        let args = (domid, list, nr, order);
        reservation(d, env, memory::XENMEM_INCREASE_RESERVATION, args)
    }

    #[test]
    fn increase_reservation_gives_unreachable_frames_within_max_pages() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.tot_pages = 100;
        d.max_pages = 100 + 2 * 512 + 3;
        env.put(0x1000, &[0xAAAA_AAAA_AAAA_AAAAu64; 8]);
        // Two 2 MiB extents, counted in the domain's pages and mapped nowhere;
        // the list is not written (a translated domain is given no frame).
        assert_eq!(increase(&mut d, &mut env, DOMID_SELF, 0x1000, 2, 9), (2, 0));
        assert_eq!((d.tot_pages, env.unmapped), (100 + 1024, 1024));
        assert!(env.populated.is_empty());
        assert_eq!(env.get::<[u64; 8]>(0x1000), [0xAAAA_AAAA_AAAA_AAAA; 8]);
        // A null list is fine (the count is what matters); max_pages stops the
        // walk after three pages.
        assert_eq!(increase(&mut d, &mut env, DOMID_SELF, 0, 5, 0), (3, 0));
        assert_eq!(d.tot_pages, d.max_pages);
        // Out of memory stops it with nothing counted; a domU may not grow
        // another domain nor ask above its order limit.
        d.max_pages = u64::MAX;
        env.populate_left = 1;
        assert_eq!(increase(&mut d, &mut env, DOMID_SELF, 0, 2, 1), (0, 0));
        env.populate_left = u64::MAX;
        assert_eq!(increase(&mut d, &mut env, 2, 0, 1, 0), (0, 0));
        assert_eq!(increase(&mut d, &mut env, DOMID_SELF, 0, 1, 10), (0, 0));
        assert_eq!(env.unmapped, 1027);
        // A huge count goes in bounded rounds (continuations).
        let before = env.unmapped;
        let (done, rounds) = increase(&mut d, &mut env, DOMID_SELF, 0, 3 * 4096, 0);
        assert_eq!(done, 3 * 4096);
        assert!(rounds >= 2, "{rounds} rounds");
        assert_eq!(env.unmapped - before, 3 * 4096);
    }

    #[test]
    fn populate_physmap_gives_frames_within_max_pages() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.tot_pages = 0;
        d.max_pages = 1024 + 3;
        // Two 2 MiB extents, then 4 KiB pages: the fourth is over max_pages.
        assert_eq!(
            populate(&mut d, &mut env, DOMID_SELF, &[0, 0x200], 9),
            (2, 0)
        );
        assert_eq!(d.tot_pages, 1024);
        assert_eq!(
            populate(
                &mut d,
                &mut env,
                DOMID_SELF,
                &[0x400, 0x401, 0x402, 0x403],
                0
            ),
            (3, 0)
        );
        assert_eq!(d.tot_pages, 1027);
        assert_eq!(env.populated.len(), 1027);
        // A frame already there stops the walk at that extent.
        d.max_pages = 2000;
        assert_eq!(
            populate(&mut d, &mut env, DOMID_SELF, &[0x500, 0x401, 0x501], 0),
            (1, 0)
        );
        // Out of memory: stops, nothing counted.
        env.populate_left = 1;
        assert_eq!(
            populate(&mut d, &mut env, DOMID_SELF, &[0x600, 0x601], 0),
            (1, 0)
        );
        assert_eq!(d.tot_pages, 1029);
        // A domU: order 10 is above its limit, populate-on-demand refused,
        // another domain's reservation refused; all report 0 extents done.
        env.populate_left = u64::MAX;
        assert_eq!(populate(&mut d, &mut env, DOMID_SELF, &[0x800], 10), (0, 0));
        assert_eq!(populate(&mut d, &mut env, 2, &[0x800], 0), (0, 0));
        env.put(
            0x100,
            &memory::XenMemoryReservation {
                extent_start: 0x1000,
                nr_extents: 1,
                extent_order: 0,
                mem_flags: memory::XENMEMF_POPULATE_ON_DEMAND,
                domid: DOMID_SELF,
                _pad0: [0; 6],
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [6, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        // A bad list is 0 done; a continuation past the end returns it.
        env.put(
            0x100,
            &memory::XenMemoryReservation {
                extent_start: BAD,
                nr_extents: 4,
                extent_order: 0,
                mem_flags: 0,
                domid: DOMID_SELF,
                _pad0: [0; 6],
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [6, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [6 | (9 << 6), 0x100, 0, 0, 0]
            )
            .ret,
            9
        );
        // A count too large to continue, and an unreadable argument.
        env.put(
            0x100,
            &memory::XenMemoryReservation {
                extent_start: 0x1000,
                nr_extents: 1 << 60,
                extent_order: 0,
                mem_flags: 0,
                domid: DOMID_SELF,
                _pad0: [0; 6],
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [6, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [6, BAD, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(d.tot_pages, 1029);
        // Other commands take no extent bits.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [memory::XENMEM_MAXIMUM_RAM_PAGE as u64 | 1 << 6, 0, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
    }

    #[test]
    fn the_control_domain_populates_another_domain_in_rounds() {
        let (mut d, mut env) = two_domains();
        d.privileged = true;
        peer(&mut env).0.tot_pages = 0;
        peer(&mut env).0.max_pages = 4096;
        // 4096 pages in order-0 extents: four rounds of 1024.
        let gfns: Vec<u64> = (0..4096).collect();
        assert_eq!(populate(&mut d, &mut env, 2, &gfns[..4000], 0), (4000, 3));
        assert_eq!(peer(&mut env).0.tot_pages, 4000);
        assert_eq!(peer(&mut env).1.populated.len(), 4000);
        assert!(env.populated.is_empty());
        // Order 12 is the control domain's limit, one extent per round.
        peer(&mut env).0.max_pages = 4000 + 2 * 4096;
        assert_eq!(
            populate(&mut d, &mut env, 2, &[0x10000, 0x20000], 12),
            (2, 1)
        );
        assert_eq!(populate(&mut d, &mut env, 2, &[0x40000], 13), (0, 0));
        // An unknown domain, or one being destroyed: nothing done.
        assert_eq!(populate(&mut d, &mut env, 7, &[0x50000], 0), (0, 0));
        peer(&mut env).0.destroy_requested = true;
        assert_eq!(populate(&mut d, &mut env, 2, &[0x50000], 0), (0, 0));
        assert_eq!(peer(&mut env).0.tot_pages, 4000 + 2 * 4096);
    }

    /// add_to_physmap_batch, gmfn_foreign from `owner`: the call's result
    /// and each entry's.
    fn map_batch(
        d: &mut Domain,
        env: &mut FakeEnv,
        domid: u16,
        owner: u16,
        pairs: &[(u64, u64)],
    ) -> (i64, Vec<i32>) {
        for (i, &(idx, gpfn)) in pairs.iter().enumerate() {
            env.put(0x2000 + 8 * i as u64, &idx);
            env.put(0x4000 + 8 * i as u64, &gpfn);
            env.put(0x6000 + 4 * i as u64, &0x5555_5555i32);
        }
        env.put(
            0x100,
            &memory::XenAddToPhysmapBatch {
                domid,
                space: memory::XENMAPSPACE_GMFN_FOREIGN as u16,
                size: pairs.len() as u16,
                u: owner,
                idxs: 0x2000,
                gpfns: 0x4000,
                errs: 0x6000,
            },
        );
        let (out, _) = call_to_end(
            d,
            env,
            xen::HYPERVISOR_MEMORY_OP,
            [memory::XENMEM_ADD_TO_PHYSMAP_BATCH as u64, 0x100, 0, 0, 0],
        );
        let errs = (0..pairs.len())
            .map(|i| env.get::<i32>(0x6000 + 4 * i as u64))
            .collect();
        (out.ret, errs)
    }

    fn remove(d: &mut Domain, env: &mut FakeEnv, domid: u16, gpfn: u64) -> i64 {
        env.put(
            0x100,
            &memory::XenRemoveFromPhysmap {
                domid,
                _pad0: [0; 6],
                gpfn,
            },
        );
        call(
            d,
            env,
            xen::HYPERVISOR_MEMORY_OP,
            [memory::XENMEM_REMOVE_FROM_PHYSMAP as u64, 0x100, 0, 0, 0],
        )
        .ret
    }

    #[test]
    fn the_control_domain_maps_another_domains_ram_by_frame_number() {
        let (mut d, mut env) = two_domains();
        d.privileged = true;
        peer(&mut env).1.populated.extend(0..8);
        let e = |x| ret(x) as i32;
        let (rc, errs) = map_batch(
            &mut d,
            &mut env,
            DOMID_SELF,
            2,
            &[(0, 0x1_0000), (7, 0x1_0001), (8, 0x1_0002), (1, 0x1_0000)],
        );
        assert_eq!(rc, 0);
        // Not RAM of the owner, over a foreign page: per-entry errors (Xen
        // 4.17's, seen in the reference run).
        assert_eq!(errs, [0, 0, e(errno::EINVAL), e(errno::ENXIO)]);
        assert_eq!(env.foreign.get(&0x1_0001), Some(&(2, 7)));
        assert_eq!(env.foreign.get(&0x1_0000), Some(&(2, 0)));
        // Its own pages, an unknown owner: per entry, as Xen.
        let (rc, errs) = map_batch(&mut d, &mut env, DOMID_SELF, 1, &[(0, 0x2_0000)]);
        assert_eq!((rc, errs), (0, vec![e(errno::EPERM)]));
        let (rc, errs) = map_batch(&mut d, &mut env, DOMID_SELF, 9, &[(0, 0x2_0000)]);
        assert_eq!((rc, errs), (0, vec![e(errno::ESRCH)]));
        // An invalid gfn fails the call; another domain's physmap is not
        // changed this way.
        assert_eq!(
            map_batch(&mut d, &mut env, DOMID_SELF, 2, &[(0, u64::MAX)]).0,
            ret(errno::EINVAL)
        );
        assert_eq!(
            map_batch(&mut d, &mut env, 2, 2, &[(0, 0x3_0000)]).0,
            ret(errno::EOPNOTSUPP)
        );
        assert_eq!(
            map_batch(&mut d, &mut env, 9, 2, &[(0, 0x3_0000)]).0,
            ret(errno::ESRCH)
        );
        // 600 entries: three rounds, every entry done.
        peer(&mut env).1.populated.extend(0..600);
        let pairs: Vec<(u64, u64)> = (0..600).map(|i| (i, 0x5_0000 + i)).collect();
        let (rc, errs) = map_batch(&mut d, &mut env, DOMID_SELF, 2, &pairs);
        assert_eq!(rc, 0);
        assert!(errs.iter().all(|&e| e == 0));
        assert_eq!(env.foreign.len(), 602);
        // Continuations that do not fit the batch are -EILSEQ; too large -EDOM.
        let cont = |n: u64| memory::XENMEM_ADD_TO_PHYSMAP_BATCH as u64 | (n << 6);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [cont(601), 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EILSEQ)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [cont(600), 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EILSEQ)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [cont(1 << 16), 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EDOM)
        );
        // Unmapped again one by one; nothing there is -ENOENT.
        assert_eq!(remove(&mut d, &mut env, DOMID_SELF, 0x1_0001), 0);
        assert_eq!(
            remove(&mut d, &mut env, DOMID_SELF, 0x1_0001),
            ret(errno::ENOENT)
        );
        assert!(!env.foreign.contains_key(&0x1_0001));
    }

    #[test]
    fn a_domu_maps_no_foreign_page_and_changes_no_other_physmap() {
        let (mut d, mut env) = two_domains();
        peer(&mut env).1.populated.extend(0..8);
        let e = |x| ret(x) as i32;
        let (rc, errs) = map_batch(&mut d, &mut env, DOMID_SELF, 2, &[(0, 0x1_0000)]);
        assert_eq!((rc, errs), (0, vec![e(errno::EPERM)]));
        let (rc, errs) = map_batch(&mut d, &mut env, DOMID_SELF, 9, &[(0, 0x1_0000)]);
        assert_eq!((rc, errs), (0, vec![e(errno::ESRCH)]));
        assert!(env.foreign.is_empty());
        assert_eq!(
            map_batch(&mut d, &mut env, 2, 2, &[(0, 0x1_0000)]).0,
            ret(errno::EPERM)
        );
        assert_eq!(remove(&mut d, &mut env, 2, 0), ret(errno::EPERM));
        // Its own RAM is not removed this way on rxen.
        env.populated.insert(5);
        assert_eq!(remove(&mut d, &mut env, DOMID_SELF, 5), ret(errno::EINVAL));
        // Another domain's reservation and memory map are the control domain's.
        env.put(0x100, &2u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [memory::XENMEM_CURRENT_RESERVATION as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        env.put(
            0x100,
            &memory::XenForeignMemoryMap {
                domid: 2,
                _pad0: [0; 6],
                map: memory::XenMemoryMap {
                    nr_entries: 0,
                    _pad0: [0; 4],
                    buffer: 0x200,
                },
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                [memory::XENMEM_SET_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
    }

    #[test]
    fn the_control_domain_sets_and_reads_another_domains_memory() {
        let (mut d, mut env) = two_domains();
        d.privileged = true;
        peer(&mut env).0.tot_pages = 77;
        peer(&mut env).0.max_pages = 88;
        env.put(0x100, &2u16);
        let op = |cmd: u32| [cmd as u64, 0x100, 0, 0, 0];
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_CURRENT_RESERVATION)
            )
            .ret,
            77
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_MAXIMUM_RESERVATION)
            )
            .ret,
            88
        );
        env.put(0x100, &9u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_CURRENT_RESERVATION)
            )
            .ret,
            ret(errno::ESRCH)
        );
        // A memory map of two entries for domain 2; then too many entries.
        let entries = [
            memory::E820Entry {
                addr: 0,
                size: 0x1000_0000,
                type_: 1,
            },
            memory::E820Entry {
                addr: 0xfc00_0000,
                size: 0x400_0000,
                type_: 2,
            },
        ];
        env.put(0x200, &entries);
        let map = |domid, nr_entries| memory::XenForeignMemoryMap {
            domid,
            _pad0: [0; 6],
            map: memory::XenMemoryMap {
                nr_entries,
                _pad0: [0; 4],
                buffer: 0x200,
            },
        };
        env.put(0x100, &map(2, 2));
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_SET_MEMORY_MAP)
            )
            .ret,
            0
        );
        assert_eq!(
            peer(&mut env).0.memory_map[1],
            GuestMemRegion {
                addr: 0xfc00_0000,
                size: 0x400_0000,
                kind: 2
            }
        );
        env.put(0x100, &map(2, E820_MAX + 1));
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_SET_MEMORY_MAP)
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x100,
            &memory::XenForeignMemoryMap {
                map: memory::XenMemoryMap {
                    buffer: BAD,
                    ..map(2, 2).map
                },
                ..map(2, 2)
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MEMORY_OP,
                op(memory::XENMEM_SET_MEMORY_MAP)
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(peer(&mut env).0.memory_map.len(), 2);
    }

    fn acquire(d: &mut Domain, env: &mut FakeEnv, r: memory::XenMemAcquireResource) -> (i64, u32) {
        env.put(0x100, &r);
        let (out, _) = call_to_end(
            d,
            env,
            xen::HYPERVISOR_MEMORY_OP,
            [memory::XENMEM_ACQUIRE_RESOURCE as u64, 0x100, 0, 0, 0],
        );
        (
            out.ret,
            env.get::<memory::XenMemAcquireResource>(0x100).nr_frames,
        )
    }

    #[test]
    fn the_control_domain_maps_another_domains_grant_frames() {
        use crate::test_support::{FakeGrants, GRANT_FRAME_TAG};
        let (mut d, mut env) = two_domains();
        d.privileged = true;
        env.grants = Some(FakeGrants::new(&[1, 2], 40));
        let grant = |nr_frames, frame, frame_list| memory::XenMemAcquireResource {
            domid: 2,
            type_: memory::XENMEM_RESOURCE_GRANT_TABLE,
            id: memory::XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
            nr_frames,
            pad: 0,
            frame,
            frame_list,
        };
        // The size query: the table's maximum.
        assert_eq!(acquire(&mut d, &mut env, grant(0, 0, 0)), (0, 40));
        assert_eq!(
            acquire(&mut d, &mut env, grant(1, 0, 0)).0,
            ret(errno::EINVAL)
        );
        // Frames 0..40 at gfns 0x9000.. in two rounds; the table grows.
        let gfns: [u64; 40] = core::array::from_fn(|i| 0x9000 + i as u64);
        env.put(0x3000, &gfns);
        assert_eq!(acquire(&mut d, &mut env, grant(40, 0, 0x3000)).0, 0);
        assert_eq!(env.foreign.get(&0x9000), Some(&(2, GRANT_FRAME_TAG)));
        assert_eq!(env.foreign.get(&0x9027), Some(&(2, GRANT_FRAME_TAG | 39)));
        let table = |env: &mut FakeEnv| {
            env.grants
                .as_mut()
                .unwrap()
                .tables
                .get(&2)
                .unwrap()
                .nr_frames()
        };
        assert_eq!(table(&mut env), 40);
        // Past the maximum, an offset past 32 bits, a nonzero pad: -EINVAL.
        assert_eq!(
            acquire(&mut d, &mut env, grant(1, 40, 0x3000)).0,
            ret(errno::EINVAL)
        );
        assert_eq!(
            acquire(&mut d, &mut env, grant(1, 1 << 32, 0x3000)).0,
            ret(errno::EINVAL)
        );
        assert_eq!(
            acquire(
                &mut d,
                &mut env,
                memory::XenMemAcquireResource {
                    pad: 1,
                    ..grant(1, 0, 0x3000)
                }
            )
            .0,
            ret(errno::EINVAL)
        );
        // Status frames (v1 table), another type: -EINVAL.
        let status = memory::XenMemAcquireResource {
            id: memory::XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS,
            ..grant(0, 0, 0)
        };
        assert_eq!(acquire(&mut d, &mut env, status).0, ret(errno::EINVAL));
        let ioreq = memory::XenMemAcquireResource {
            type_: memory::XENMEM_RESOURCE_IOREQ_SERVER,
            ..grant(0, 0, 0)
        };
        assert_eq!(acquire(&mut d, &mut env, ioreq).0, ret(errno::EINVAL));
        // Over pages already mapped: the first frame's error; a later one's
        // is -EIO.
        assert_eq!(
            acquire(&mut d, &mut env, grant(1, 0, 0x3000)).0,
            ret(errno::ENXIO)
        );
        env.put(0x3000, &[0xa000u64, 0x9000]);
        assert_eq!(
            acquire(&mut d, &mut env, grant(2, 0, 0x3000)).0,
            ret(errno::EIO)
        );
        // Its own domain, an unknown one; a domU.
        assert_eq!(
            acquire(
                &mut d,
                &mut env,
                memory::XenMemAcquireResource {
                    domid: 1,
                    ..grant(0, 0, 0)
                }
            )
            .0,
            ret(errno::EPERM)
        );
        assert_eq!(
            acquire(
                &mut d,
                &mut env,
                memory::XenMemAcquireResource {
                    domid: 9,
                    ..grant(0, 0, 0)
                }
            )
            .0,
            ret(errno::ESRCH)
        );
        d.privileged = false;
        assert_eq!(
            acquire(&mut d, &mut env, grant(0, 0, 0)).0,
            ret(errno::EPERM)
        );
    }

    /// decrease_reservation of `gfns` (extents of `order`) for `domid`.
    fn decrease(d: &mut Domain, env: &mut FakeEnv, domid: u16, gfns: &[u64], order: u32) -> i64 {
        for (i, gfn) in gfns.iter().enumerate() {
            env.put(0x1000 + 8 * i as u64, gfn);
        }
        env.put(
            0x100,
            &memory::XenMemoryReservation {
                extent_start: 0x1000,
                nr_extents: gfns.len() as u64,
                extent_order: order,
                mem_flags: 0,
                domid,
                _pad0: [0; 6],
            },
        );
        let (out, _) = call_to_end(
            d,
            env,
            xen::HYPERVISOR_MEMORY_OP,
            [memory::XENMEM_DECREASE_RESERVATION as u64, 0x100, 0, 0, 0],
        );
        out.ret
    }

    #[test]
    fn decrease_reservation_gives_back_ram_nobody_else_maps() {
        let (mut d, mut env) = two_domains();
        d.tot_pages = 0;
        d.max_pages = 2048;
        assert_eq!(
            populate(&mut d, &mut env, DOMID_SELF, &[0, 0x200], 9),
            (2, 0)
        );
        // A 2 MiB extent back, then single pages; a page another domain
        // maps stops the walk there (its extent not done, pages before it
        // freed, as Xen counts).
        assert_eq!(decrease(&mut d, &mut env, DOMID_SELF, &[0x200], 9), 1);
        assert_eq!(d.tot_pages, 512);
        env.busy.insert(0x12);
        assert_eq!(
            decrease(&mut d, &mut env, DOMID_SELF, &[0x4, 0x8, 0x10], 2),
            2
        );
        assert_eq!(d.tot_pages, 512 - 8 - 2);
        // Not its RAM (already given back, never populated): stops.
        assert_eq!(decrease(&mut d, &mut env, DOMID_SELF, &[0x5, 0x20], 0), 0);
        // Given back, it can be populated again.
        assert_eq!(populate(&mut d, &mut env, DOMID_SELF, &[0x5], 0), (1, 0));
        assert_eq!(d.tot_pages, 503);
        // A domU cannot shrink another domain; order above its limit.
        peer(&mut env).1.populated.extend(0..4);
        assert_eq!(decrease(&mut d, &mut env, 2, &[0], 0), 0);
        assert_eq!(decrease(&mut d, &mut env, DOMID_SELF, &[0x400], 10), 0);
        // The control domain can.
        d.privileged = true;
        peer(&mut env).0.tot_pages = 4;
        assert_eq!(decrease(&mut d, &mut env, 2, &[0, 1], 0), 2);
        assert_eq!(peer(&mut env).0.tot_pages, 2);
        assert_eq!(peer(&mut env).1.populated.len(), 2);
        // Rounds of 1024 pages: 2000 single pages in two.
        d.max_pages = 4096;
        let gfns: Vec<u64> = (0x1000..0x1000 + 2000).collect();
        assert_eq!(populate(&mut d, &mut env, DOMID_SELF, &gfns, 0).0, 2000);
        assert_eq!(decrease(&mut d, &mut env, DOMID_SELF, &gfns, 0), 2000);
        assert_eq!(d.tot_pages, 503);
    }
}
