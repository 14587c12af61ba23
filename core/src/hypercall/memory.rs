//! `memory_op` (Xen's common/memory.c and the x86 sub-ops of
//! arch/x86/mm.c): reservations, memory maps and add_to_physmap.

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::memory;

use super::{from_result, own_domain, write_shared_info_time, Ctx, GuestEnv, Outcome};
use crate::domain::GuestMemRegion;
use crate::guest_handle::GuestHandle;

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
                    env.map_shared_info(request.gpfn)?;
                    write_shared_info_time(domain, env);
                    Ok(0)
                }
                memory::XENMAPSPACE_GRANT_TABLE => env
                    .map_grant_frame(domain.id, request.idx, request.gpfn)
                    .map(|_| 0),
                _ => Err(errno::EINVAL),
            }
        }
        _ => Err(errno::ENOSYS),
    }
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
}
