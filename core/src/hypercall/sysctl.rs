//! `sysctl` (Xen's common/sysctl.c): the control domain's operations on the
//! whole machine, with Xen 4.17's interface version (0x15), layouts and
//! privilege rule (`-EACCES` for a wrong version, then `-EPERM` for a domain
//! other than the control domain). rxen serves:
//! - `physinfo`: CPUs, the TSC's kHz, host and free pages, the CPU's
//!   feature words; capabilities `hvm`, `hap` and `gnttab_v1` (rxen runs
//!   PVH guests on nested paging and has grant tables v1 only);
//! - `sched_id`: credit (5) or RTDS (8);
//! - `getdomaininfolist`: the domains from `first_domain` on, at most
//!   `max_domains` of them, as `domctl getdomaininfo` reports each;
//! - `cpupool_op` `INFO` and `FREEINFO` of the one pool (see [`cpupool_op`]);
//! - `readconsole` (`xl dmesg`): the console history, whole or from an index
//!   an earlier read returned, optionally cleared ([`crate::conring`]);
//! - `debug_keys` (`xl debug-keys`): the keys pressed as if typed on the
//!   hypervisor's console, at most [`MAX_DEBUG_KEYS`] per call (Xen takes any
//!   number; each key's work is bounded, their count is too).
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

use super::domctl::{domain_ids, info_of};
use super::{from_result, read_prefix, write_prefix, Ctx, Outcome};
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
            write_prefix(&mut op.u, &info);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_SCHED_ID => {
            write_prefix(&mut op.u, &ctx.env.machine_facts().sched_id);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_GETDOMAININFOLIST => {
            let mut list = read_prefix::<XenSysctlGetdomaininfolist>(&op.u);
            let buffer = GuestHandle::<XenDomctlGetdomaininfo>::new(list.buffer);
            let mut written = 0u32;
            let (facts, now) = (ctx.env.machine_facts(), ctx.env.now_ns());
            for id in domain_ids(ctx) {
                if written >= list.max_domains {
                    break;
                }
                if id < list.first_domain {
                    continue;
                }
                let Some(info) = info_of(ctx, id, &facts, now) else {
                    continue;
                };
                buffer.offset(u64::from(written))?.write(ctx.env, &info)?;
                // At most the number of domains: below max_domains (u32).
                written = written.saturating_add(1);
            }
            list.num_domains = written;
            write_prefix(&mut op.u, &list);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_READCONSOLE => {
            let mut request = read_prefix::<XenSysctlReadconsole>(&op.u);
            let buffer = request.buffer;
            let max = request.count as usize;
            let from = (request.incremental != 0).then_some(request.index);
            // Read into a bounce buffer (the ring's lock is not held across
            // guest copies); cleared only once the caller has the bytes.
            let mut copied = alloc::vec::Vec::new();
            let mut index = 0;
            ctx.env
                .with_conring(&mut |ring| index = ring.read(from, max, &mut copied));
            ctx.env.copy_out(buffer, &copied)?;
            if request.clear != 0 {
                ctx.env.with_conring(&mut |ring| ring.clear_to(index));
            }
            let count = copied.len();
            request.count = u32::try_from(count).unwrap_or(u32::MAX);
            request.index = index;
            write_prefix(&mut op.u, &request);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_SYSCTL_DEBUG_KEYS => {
            let request = read_prefix::<XenSysctlDebugKeys>(&op.u);
            let n = request.nr_keys as usize;
            if n > MAX_DEBUG_KEYS {
                return Err(errno::E2BIG);
            }
            let mut keys = alloc::vec![0u8; n];
            ctx.env.copy_in(request.keys, &mut keys)?;
            ctx.env.debug_keys(&keys)?;
            Ok(0)
        }
        XEN_SYSCTL_CPUPOOL_OP => {
            let mut pool = read_prefix::<XenSysctlCpupoolOp>(&op.u);
            cpupool_op(ctx, &mut pool)?;
            write_prefix(&mut op.u, &pool);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

/// Most keys one `debug_keys` call presses.
pub const MAX_DEBUG_KEYS: usize = 64;

/// Most bytes of a CPU map rxen writes (64 CPUs need 8; Xen's maps are as
/// long as the caller says, up to its CPU count).
const MAX_CPUMAP_BYTES: usize = 512;

/// `XEN_SYSCTL_cpupool_op`: rxen has one pool, Pool-0, with every CPU and
/// every domain. `INFO` answers it for any id up to 0 (as Xen, the first
/// pool from the id asked) and `-ENOENT` past it; `FREEINFO` an empty map.
/// Creating, destroying or changing pools is `-EOPNOTSUPP`.
fn cpupool_op(ctx: &mut Ctx<'_>, pool: &mut XenSysctlCpupoolOp) -> Result<(), Errno> {
    let nr_cpus = ctx.env.machine_facts().nr_cpus;
    let cpus = match pool.op {
        XEN_SYSCTL_CPUPOOL_OP_INFO => {
            if pool.cpupool_id != 0 {
                return Err(errno::ENOENT);
            }
            pool.sched_id = ctx.env.machine_facts().sched_id;
            pool.n_dom = u32::try_from(domain_ids(ctx).len()).unwrap_or(u32::MAX);
            nr_cpus
        }
        XEN_SYSCTL_CPUPOOL_OP_FREEINFO => 0,
        _ => return Err(errno::EOPNOTSUPP),
    };
    // Xen's cpumask_to_xenctl_bitmap: the caller's bytes, the CPUs' bits set,
    // the rest zero.
    let bytes = (pool.cpumap.nr_bits.div_ceil(8) as usize).min(MAX_CPUMAP_BYTES);
    let mut map = [0u8; MAX_CPUMAP_BYTES];
    for cpu in 0..cpus {
        if let Some(byte) = map.get_mut((cpu / 8) as usize) {
            *byte |= 1 << (cpu % 8);
        }
    }
    let out = map.get(..bytes).unwrap_or(&[]);
    ctx.env.copy_out(pool.cpumap.bitmap, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;
    use crate::test_support::{call, ret, two_domains, FakeEnv};
    use rxen_abi::xen::HYPERVISOR_SYSCTL;
    use zerocopy::{FromBytes, IntoBytes};

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
        assert_eq!(sysctl(&mut d0, &mut env, &op(9999)), ret(errno::ENOSYS));
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

    fn pool_op(op_: u32, id: u32, nr_bits: u32) -> XenSysctl {
        let mut o = op(XEN_SYSCTL_CPUPOOL_OP);
        let p = XenSysctlCpupoolOp {
            op: op_,
            cpupool_id: id,
            cpumap: XenctlBitmap {
                bitmap: BUFFER,
                nr_bits,
                pad: 0,
            },
            ..Default::default()
        };
        o.u[..40].copy_from_slice(p.as_bytes());
        o
    }

    fn readconsole(incremental: Option<u32>, count: u32, clear: bool) -> XenSysctl {
        let mut o = op(XEN_SYSCTL_READCONSOLE);
        let r = XenSysctlReadconsole {
            clear: clear.into(),
            incremental: incremental.is_some().into(),
            index: incremental.unwrap_or(0),
            buffer: BUFFER,
            count,
            ..Default::default()
        };
        o.u[..24].copy_from_slice(r.as_bytes());
        o
    }

    fn read_back(env: &FakeEnv) -> (Vec<u8>, u32) {
        let o: XenSysctl = env.get(AT);
        let r = XenSysctlReadconsole::read_from_prefix(&o.u).unwrap().0;
        let at = BUFFER as usize;
        (env.mem[at..at + r.count as usize].to_vec(), r.index)
    }

    fn debug_keys(keys: u64, nr_keys: u32) -> XenSysctl {
        let mut o = op(XEN_SYSCTL_DEBUG_KEYS);
        let k = XenSysctlDebugKeys {
            keys,
            nr_keys,
            pad: 0,
        };
        o.u[..16].copy_from_slice(k.as_bytes());
        o
    }

    #[test]
    fn debug_keys_as_xl_debug_keys() {
        let (mut d, mut env) = dom0_and_domu();
        env.mem[BUFFER as usize..BUFFER as usize + 2].copy_from_slice(b"gq");
        assert_eq!(sysctl(&mut d, &mut env, &debug_keys(BUFFER, 2)), 0);
        assert_eq!(env.debug_keys, b"gq");
        // None is fine; too many, or keys out of the guest's memory, are not,
        // and press nothing.
        assert_eq!(sysctl(&mut d, &mut env, &debug_keys(BUFFER, 0)), 0);
        assert_eq!(
            sysctl(&mut d, &mut env, &debug_keys(BUFFER, 65)),
            ret(errno::E2BIG)
        );
        assert_eq!(
            sysctl(&mut d, &mut env, &debug_keys(u64::MAX - 1, 2)),
            ret(errno::EFAULT)
        );
        assert_eq!(
            sysctl(&mut d, &mut env, &debug_keys(BUFFER, u32::MAX)),
            ret(errno::E2BIG)
        );
        assert_eq!(env.debug_keys, b"gq");
        // A domU may not.
        let (mut domu, mut env) = two_domains();
        assert_eq!(
            sysctl(&mut domu, &mut env, &debug_keys(BUFFER, 1)),
            ret(errno::EPERM)
        );
        assert!(env.debug_keys.is_empty());
    }

    #[test]
    fn readconsole_as_xl_dmesg() {
        let (mut d, mut env) = dom0_and_domu();
        env.conring.put(b"(XEN) boot\n");
        assert_eq!(sysctl(&mut d, &mut env, &readconsole(None, 4096, false)), 0);
        let (text, index) = read_back(&env);
        assert_eq!((text.as_slice(), index), (&b"(XEN) boot\n"[..], 11));
        env.conring.put(b"(d1) hi\n");
        assert_eq!(
            sysctl(&mut d, &mut env, &readconsole(Some(index), 4096, false)),
            0
        );
        assert_eq!(read_back(&env).0, b"(d1) hi\n");
        // A 4-byte buffer gets 4 bytes; clear drops those (as Xen), not the rest.
        assert_eq!(sysctl(&mut d, &mut env, &readconsole(None, 4, true)), 0);
        assert_eq!(read_back(&env), (b"(XEN".to_vec(), 4));
        assert_eq!(sysctl(&mut d, &mut env, &readconsole(None, 4096, true)), 0);
        assert_eq!(read_back(&env).0, b") boot\n(d1) hi\n");
        assert_eq!(sysctl(&mut d, &mut env, &readconsole(None, 4096, false)), 0);
        assert!(read_back(&env).0.is_empty());
        // A buffer the caller does not have: nothing is cleared.
        env.conring.put(b"x");
        let mut bad = readconsole(None, 16, true);
        bad.u[8..16].copy_from_slice(&crate::test_support::BAD.to_le_bytes());
        assert_eq!(sysctl(&mut d, &mut env, &bad), ret(errno::EFAULT));
        assert_eq!(sysctl(&mut d, &mut env, &readconsole(None, 4096, false)), 0);
        assert_eq!(read_back(&env).0, b"x");
        // Not for a domU.
        let (mut u, mut env) = two_domains();
        assert_eq!(
            sysctl(&mut u, &mut env, &readconsole(None, 16, false)),
            ret(errno::EPERM)
        );
    }

    #[test]
    fn one_cpupool_with_every_cpu() {
        let (mut d, mut env) = dom0_and_domu();
        env.mem[BUFFER as usize..BUFFER as usize + 4].fill(0xEE);
        assert_eq!(
            sysctl(
                &mut d,
                &mut env,
                &pool_op(XEN_SYSCTL_CPUPOOL_OP_INFO, 0, 16)
            ),
            0
        );
        let o: XenSysctl = env.get(AT);
        let p = XenSysctlCpupoolOp::read_from_prefix(&o.u).unwrap().0;
        assert_eq!(
            (p.cpupool_id, p.sched_id, p.n_dom),
            (0, XEN_SCHEDULER_CREDIT, 2)
        );
        // Two CPUs: bits 0 and 1 of a 2-byte map; the byte after it untouched.
        assert_eq!(
            env.mem[BUFFER as usize..BUFFER as usize + 3],
            [0b11, 0, 0xEE]
        );
        assert_eq!(
            sysctl(
                &mut d,
                &mut env,
                &pool_op(XEN_SYSCTL_CPUPOOL_OP_INFO, 1, 16)
            ),
            ret(errno::ENOENT)
        );
        assert_eq!(
            sysctl(
                &mut d,
                &mut env,
                &pool_op(XEN_SYSCTL_CPUPOOL_OP_FREEINFO, 0, 8)
            ),
            0
        );
        assert_eq!(env.mem[BUFFER as usize], 0, "no free CPU");
        assert_eq!(
            sysctl(
                &mut d,
                &mut env,
                &pool_op(XEN_SYSCTL_CPUPOOL_OP_CREATE, 0, 8)
            ),
            ret(errno::EOPNOTSUPP)
        );
        // A map the caller does not have.
        let mut bad = pool_op(XEN_SYSCTL_CPUPOOL_OP_INFO, 0, 8);
        bad.u[24..32].copy_from_slice(&crate::test_support::BAD.to_le_bytes());
        assert_eq!(sysctl(&mut d, &mut env, &bad), ret(errno::EFAULT));
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
