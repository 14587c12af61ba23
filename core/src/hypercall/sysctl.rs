//! `sysctl` (Xen's common/sysctl.c): the control domain's operations on the
//! whole machine, with Xen 4.17's interface version (0x15), layouts and
//! privilege rule (`-EACCES` for a wrong version, then `-EPERM` for a domain
//! other than the control domain). rxen serves:
//! - `physinfo`: CPUs, the TSC's kHz, host and free pages, the CPU's
//!   feature words; capabilities `hvm`, `hap` and `gnttab_v1` (rxen runs
//!   PVH guests on nested paging and has grant tables v1 only);
//! - `sched_id`: credit (5) or RTDS (8);
//! - `getdomaininfolist`: the domains from `first_domain` on, at most
//!   `max_domains` of them, as `domctl getdomaininfo` reports each.
//!
//! Every other command is `-ENOSYS`.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::domctl::XenDomctlGetdomaininfo;
use rxen_abi::errno::{self, Errno};
use rxen_abi::sysctl::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::domctl::{domain_ids, info_of};
use super::{from_result, Ctx, Outcome};
use crate::guest_handle::GuestHandle;

/// `sysctl(op)`.
pub(super) fn do_sysctl(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(sysctl(ctx, args[0]))
}

fn sysctl(ctx: &mut Ctx<'_>, arg: u64) -> Result<i64, Errno> {
    let handle = GuestHandle::<XenSysctl>::new(arg);
    let mut op = handle.read(ctx.env)?;
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(errno::EACCES);
    }
    if !ctx.domain.privileged {
        return Err(errno::EPERM);
    }
    match op.cmd {
        XEN_SYSCTL_PHYSINFO => {
            let facts = ctx.env.machine_facts();
            let nr_cpus = facts.nr_cpus.max(1);
            let info = XenSysctlPhysinfo {
                threads_per_core: 1,
                cores_per_socket: nr_cpus,
                nr_cpus,
                max_cpu_id: nr_cpus.saturating_sub(1),
                nr_nodes: 1,
                max_node_id: 0,
                cpu_khz: facts.cpu_khz,
                capabilities: XEN_SYSCTL_PHYSCAP_HVM
                    | XEN_SYSCTL_PHYSCAP_HAP
                    | XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
                total_pages: facts.total_pages,
                free_pages: facts.free_pages,
                max_mfn: ctx.env.host_max_page().saturating_sub(1),
                hw_cap: facts.hw_cap,
                ..Default::default()
            };
            write_union(&mut op, &info);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_SCHED_ID => {
            write_union(&mut op, &ctx.env.machine_facts().sched_id);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_GETDOMAININFOLIST => {
            let mut list = read_union::<XenSysctlGetdomaininfolist>(&op);
            let buffer = GuestHandle::<XenDomctlGetdomaininfo>::new(list.buffer);
            let mut written = 0u32;
            for id in domain_ids(ctx) {
                if written >= list.max_domains {
                    break;
                }
                if id < list.first_domain {
                    continue;
                }
                let Some(info) = info_of(ctx, id) else {
                    continue;
                };
                buffer.offset(u64::from(written))?.write(ctx.env, &info)?;
                // At most the number of domains: below max_domains (u32).
                written = written.saturating_add(1);
            }
            list.num_domains = written;
            write_union(&mut op, &list);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

/// Reads a `T` from the start of the op's union.
fn read_union<T: FromBytes>(op: &XenSysctl) -> T {
    T::read_from_prefix(&op.u)
        .map(|(t, _)| t)
        .unwrap_or_else(|_| T::new_zeroed())
}

/// Writes `value` at the start of the op's union.
fn write_union<T: IntoBytes + Immutable>(op: &mut XenSysctl, value: &T) {
    let bytes = value.as_bytes();
    if let Some(dst) = op.u.get_mut(..bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;
    use crate::test_support::{call, ret, two_domains, FakeEnv};
    use rxen_abi::xen::HYPERVISOR_SYSCTL;

    const AT: u64 = 0x400;
    const BUFFER: u64 = 0x1000;

    fn op(cmd: u32) -> XenSysctl {
        XenSysctl {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: [0; XEN_SYSCTL_UNION_SIZE],
        }
    }

    fn sysctl(d: &mut Domain, env: &mut FakeEnv, op: &XenSysctl) -> i64 {
        env.put(AT, op);
        call(d, env, HYPERVISOR_SYSCTL, [AT, 0, 0, 0, 0]).ret
    }

    fn dom0_and_domu() -> (Domain, FakeEnv) {
        let (mut d, env) = two_domains();
        d.id = 0;
        d.privileged = true;
        (d, env)
    }

    fn list(first: u16, max: u32) -> XenSysctl {
        let mut o = op(XEN_SYSCTL_GETDOMAININFOLIST);
        let l = XenSysctlGetdomaininfolist {
            first_domain: first,
            max_domains: max,
            buffer: BUFFER,
            ..Default::default()
        };
        o.u[..24].copy_from_slice(l.as_bytes());
        o
    }

    fn listed(env: &FakeEnv) -> u32 {
        let o: XenSysctl = env.get(AT);
        XenSysctlGetdomaininfolist::read_from_prefix(&o.u)
            .unwrap()
            .0
            .num_domains
    }

    #[test]
    fn version_first_then_privilege() {
        let (mut d, mut env) = two_domains();
        let mut bad = op(XEN_SYSCTL_PHYSINFO);
        bad.interface_version = 0x14;
        assert_eq!(sysctl(&mut d, &mut env, &bad), ret(errno::EACCES));
        assert_eq!(
            sysctl(&mut d, &mut env, &op(XEN_SYSCTL_PHYSINFO)),
            ret(errno::EPERM)
        );
        let (mut d0, mut env) = dom0_and_domu();
        assert_eq!(
            sysctl(&mut d0, &mut env, &op(XEN_SYSCTL_READCONSOLE)),
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn physinfo_and_sched_id() {
        let (mut d, mut env) = dom0_and_domu();
        assert_eq!(sysctl(&mut d, &mut env, &op(XEN_SYSCTL_PHYSINFO)), 0);
        let o: XenSysctl = env.get(AT);
        let p = XenSysctlPhysinfo::read_from_prefix(&o.u).unwrap().0;
        assert_eq!((p.nr_cpus, p.max_cpu_id, p.cpu_khz), (2, 1, 2_000_000));
        assert_eq!((p.total_pages, p.free_pages), (1 << 18, 1000));
        assert_eq!(p.max_mfn, (1 << 18) - 1);
        assert_eq!(p.hw_cap, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_ne!(p.capabilities & XEN_SYSCTL_PHYSCAP_GNTTAB_V1, 0);
        assert_eq!(p.capabilities & XEN_SYSCTL_PHYSCAP_PV, 0);
        assert_eq!(sysctl(&mut d, &mut env, &op(XEN_SYSCTL_SCHED_ID)), 0);
        assert_eq!(env.get::<u32>(AT + 8), XEN_SCHEDULER_CREDIT);
    }

    #[test]
    fn getdomaininfolist_from_first_domain_within_max() {
        let (mut d, mut env) = dom0_and_domu();
        assert_eq!(sysctl(&mut d, &mut env, &list(0, 1024)), 0);
        assert_eq!(listed(&env), 2);
        let second: XenDomctlGetdomaininfo = env.get(BUFFER + 112);
        assert_eq!(second.domain, 2);
        assert_eq!(sysctl(&mut d, &mut env, &list(1, 1024)), 0);
        assert_eq!(listed(&env), 1);
        assert_eq!(env.get::<XenDomctlGetdomaininfo>(BUFFER).domain, 2);
        assert_eq!(sysctl(&mut d, &mut env, &list(0, 1)), 0);
        assert_eq!(listed(&env), 1);
        assert_eq!(sysctl(&mut d, &mut env, &list(3, 1024)), 0);
        assert_eq!(listed(&env), 0);
        // A buffer that is not there.
        let mut bad = list(0, 1024);
        bad.u[8..16].copy_from_slice(&crate::test_support::BAD.to_le_bytes());
        assert_eq!(sysctl(&mut d, &mut env, &bad), ret(errno::EFAULT));
    }
}
