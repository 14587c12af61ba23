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

use super::{from_result, own_domain, write_shared_info_time, Ctx, GuestEnv, Outcome};
use crate::domain::GuestMemRegion;
use crate::guest_handle::GuestHandle;
use crate::mm::Gfn;

/// `MEMOP_CMD_MASK`: the low bits of a memory_op command.
const MEMOP_CMD_MASK: u64 = 0x3F;

/// `memory_op(cmd, arg)`.
pub(super) fn do_memory_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(memory_op(ctx, args[0], args[1]))
}

fn memory_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, env) = (&mut *ctx.domain, &mut *ctx.env);
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    match op {
        memory::XENMEM_CURRENT_RESERVATION | memory::XENMEM_MAXIMUM_RESERVATION => {
            // A `domid_t`.
            let domid = GuestHandle::<u16>::new(arg).read(env)?;
            own_domain(domain, domid)?;
            Ok(if op == memory::XENMEM_CURRENT_RESERVATION {
                domain.tot_pages as i64
            } else {
                domain.max_pages as i64
            })
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
}
