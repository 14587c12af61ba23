//! Hypercall dispatch: the table from hypercall number to handler, the
//! outcome of a hypercall ([`Outcome`], [`Next`]), and the copies to and from
//! the calling guest by untyped address ([`read_guest`], [`write_guest`];
//! the handlers use typed [`crate::guest_handle::GuestHandle`]s). The
//! handlers live in one module per Xen family, under Xen's names:
//! `multicall` (common/multicall.c), `version` (xen_version, common/version.c),
//! `console` (console_io, drivers/char/console.c), `memory` (memory_op,
//! common/memory.c), `hvm` (hvm_op, arch/x86/hvm/hvm.c), `vcpu` (vcpu_op and
//! runstate, common/domain.c), `sched_op` (sched_op, poll, watchdog,
//! set_timer_op and the timers, common/sched/core.c) and `shared_info` (the
//! shared-info page, `vcpu_info` and pvclock time, arch/x86/time.c);
//! event_channel_op is [`crate::event_channel`]'s and grant_table_op
//! [`crate::grant_table`]'s. Every argument comes from the guest and is
//! validated; every failure is a Xen errno, never a panic.
//!
//! Every handler in the table gets one [`Ctx`] (the calling domain, the
//! calling vCPU and the platform) and the five argument registers.
//! The platform gives access to the calling guest through the narrow
//! traits of [`crate::platform`] (guest memory, clock, console, host facts,
//! physmap changes, the other domains), whose sum is [`GuestEnv`].
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

mod console;
mod context;
mod domctl;
mod hvm;
mod memory;
mod multicall;
mod physdev;
mod platform_op;
mod sched_op;
pub(crate) mod shared_info;
mod sysctl;
mod vcpu;
mod version;

use rxen_abi::errno::{self, Errno};
use rxen_abi::xen;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::{DomId, Domain, ShutdownReason};

// The hypervisor reaches these through `hypercall::`.
pub use crate::event_channel::{
    close_interdomain_channels, notify_console, raise_virq, reset_event_channels,
};
pub use crate::platform::{
    Clock, Console, Domains, GuestAccess, GuestCopy, GuestEnv, HostInfo, Physmap,
};
pub use console::CONSOLE_WRITE_BATCH;
pub use context::Ctx;
pub use multicall::MULTICALL_BATCH;
pub use sched_op::{expire_timers, STIME_DELTA_MAX};
pub(crate) use shared_info::with_shared_info;
pub use shared_info::{upcall_pending, write_shared_info_time, write_vcpu_time};
pub use vcpu::set_runstate;
pub use version::feature_submap0;

pub(crate) use rxen_abi::xen::DOMID_SELF;

/// What the vCPU does after the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Return to the guest.
    Continue,
    /// Give up the CPU, then continue.
    Yield,
    /// Block until an event or the deadline (system time).
    Block(Option<u64>),
    /// The domain shut down.
    Shutdown(ShutdownReason),
    /// Xen's `hypercall_create_continuation`: the hypercall stopped after a
    /// bounded amount of work. The platform puts `args` into the guest's
    /// argument registers and leaves its instruction pointer on the
    /// hypercall instruction, so that the guest issues the same hypercall
    /// again with these arguments (after any interrupt it takes first);
    /// the outcome's `ret` is not the guest's result and is not written.
    Continuation {
        /// The hypercall's five arguments for the next round.
        args: [u64; 5],
    },
}

/// The result of a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Value for the guest's RAX.
    pub ret: i64,
    /// What happens next.
    pub next: Next,
}

impl Outcome {
    /// Re-issue the hypercall with `args` (its number stays in RAX).
    pub(crate) fn continuation(nr: u64, args: [u64; 5]) -> Self {
        Self {
            ret: nr as i64,
            next: Next::Continuation { args },
        }
    }

    fn value(ret: i64) -> Self {
        Self {
            ret,
            next: Next::Continue,
        }
    }

    fn error(e: Errno) -> Self {
        Self::value(e.to_hypercall_ret())
    }
}

pub(crate) fn from_result(result: Result<i64, Errno>) -> Outcome {
    match result {
        Ok(value) => Outcome::value(value),
        Err(e) => Outcome::error(e),
    }
}

/// The `T` at the start of `bytes` (the union of a `platform_op`, `domctl`
/// or `sysctl`, larger than every argument read from it), zeros where
/// `bytes` is shorter.
pub(crate) fn read_prefix<T: FromBytes>(bytes: &[u8]) -> T {
    T::read_from_prefix(bytes)
        .map(|(t, _)| t)
        .unwrap_or_else(|_| T::new_zeroed())
}

/// Writes `value` at the start of `bytes` (nothing if it does not fit).
pub(crate) fn write_prefix<T: IntoBytes + Immutable>(bytes: &mut [u8], value: &T) {
    let value = value.as_bytes();
    if let Some(dst) = bytes.get_mut(..value.len()) {
        dst.copy_from_slice(value);
    }
}

/// Reads a `T` from guest linear address `addr`.
pub fn read_guest<T: FromBytes + IntoBytes>(
    env: &mut (impl GuestCopy + ?Sized),
    addr: u64,
) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    env.copy_in(addr, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes `value` to guest linear address `addr`.
pub fn write_guest<T: IntoBytes + Immutable>(
    env: &mut (impl GuestCopy + ?Sized),
    addr: u64,
    value: &T,
) -> Result<(), Errno> {
    env.copy_out(addr, value.as_bytes())
}

/// Runs hypercall `nr` with `args` for the calling vCPU of `ctx`, called
/// at privilege level `cpl`.
pub fn dispatch(ctx: &mut Ctx<'_>, nr: u64, args: [u64; 5], cpl: u8) -> Outcome {
    if cpl != 0 {
        return Outcome::error(errno::EPERM);
    }
    if ctx.vcpu >= ctx.domain.vcpus.len() {
        return Outcome::error(errno::EINVAL);
    }
    call(ctx, nr, args)
}

/// A hypercall handler: the call's context (the calling domain, its
/// calling vCPU, one that exists, and the platform) and the five argument
/// registers.
type Handler = fn(&mut Ctx<'_>, [u64; 5]) -> Outcome;

/// The hypercall table (Xen's `hvm_hypercall_table`), by number: a number
/// that is not in it is `-ENOSYS`.
const HYPERCALLS: [(u64, Handler); 15] = [
    (xen::HYPERVISOR_PLATFORM_OP, platform_op::do_platform_op),
    (xen::HYPERVISOR_MEMORY_OP, memory::do_memory_op),
    // Xen takes `unsigned int nr_calls`.
    (xen::HYPERVISOR_MULTICALL, multicall::multicall),
    (xen::HYPERVISOR_SET_TIMER_OP, sched_op::do_set_timer_op),
    (xen::HYPERVISOR_XEN_VERSION, version::do_xen_version),
    (xen::HYPERVISOR_CONSOLE_IO, console::do_console_io),
    (xen::HYPERVISOR_GRANT_TABLE_OP, do_grant_table_op),
    (xen::HYPERVISOR_VM_ASSIST, do_vm_assist),
    (xen::HYPERVISOR_VCPU_OP, vcpu::do_vcpu_op),
    (xen::HYPERVISOR_SCHED_OP, sched_op::do_sched_op),
    (
        xen::HYPERVISOR_EVENT_CHANNEL_OP,
        crate::event_channel::do_event_channel_op,
    ),
    (xen::HYPERVISOR_PHYSDEV_OP, physdev::do_physdev_op),
    (xen::HYPERVISOR_HVM_OP, hvm::do_hvm_op),
    (xen::HYPERVISOR_SYSCTL, sysctl::do_sysctl),
    (xen::HYPERVISOR_DOMCTL, domctl::do_domctl),
];

/// The hypercalls served with the calling domain alone: whatever their
/// arguments, they never reach another domain, the grant tables or the
/// scheduler (no [`crate::platform::Domains`] method), so a platform may
/// serve them without the rest of the machine (rxen: without the machine
/// lock, beside other CPUs serving other domains). A number the table does
/// not have (`-ENOSYS`) is served alone too ([`is_local`]).
pub const LOCAL_HYPERCALLS: [u64; 5] = [
    xen::HYPERVISOR_SET_TIMER_OP,
    xen::HYPERVISOR_XEN_VERSION,
    xen::HYPERVISOR_CONSOLE_IO,
    xen::HYPERVISOR_VM_ASSIST,
    xen::HYPERVISOR_VCPU_OP,
];

/// Whether hypercall `nr` with first argument `arg0` reaches at most one
/// other domain, and that one only through [`crate::platform::Domains::with_domain`]
/// before the call has any effect: an event send (`EVTCHNOP_send`), whose
/// peer is the other end of the port. A platform may serve it beside other
/// CPUs, lending the peer when it can take it and answering `ERESTART` from
/// `with_domain` when it cannot: the guest then makes the same call again
/// (a continuation), as if it had not been made.
pub fn reaches_one_peer(nr: u64, arg0: u64) -> bool {
    // Xen takes `int cmd`.
    nr == xen::HYPERVISOR_EVENT_CHANNEL_OP && arg0 as u32 == rxen_abi::event_channel::EVTCHNOP_SEND
}

/// Whether hypercall `nr` is served with the calling domain alone (see
/// [`LOCAL_HYPERCALLS`]).
pub fn is_local(nr: u64) -> bool {
    LOCAL_HYPERCALLS.contains(&nr) || !HYPERCALLS.iter().any(|(number, _)| *number == nr)
}

/// Runs hypercall `nr` through [`HYPERCALLS`].
fn call(ctx: &mut Ctx<'_>, nr: u64, args: [u64; 5]) -> Outcome {
    match HYPERCALLS.iter().find(|(number, _)| *number == nr) {
        Some((_, handler)) => handler(ctx, args),
        None => Outcome::error(errno::ENOSYS),
    }
}

/// `grant_table_op(cmd, arg, count)`: [`crate::grant_table::grant_table_op`]
/// on the grant tables and memory the registry lends (`-ENOSYS` where there
/// are none). Xen takes `unsigned int cmd, ..., unsigned int count`.
fn do_grant_table_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    use crate::grant_table::{grant_table_op, Progress};
    let caller = ctx.domain.id;
    let (cmd, arg, count) = (args[0] as u32, args[1], args[2] as u32);
    let mut result = Err(errno::ENOSYS);
    ctx.env.with_grants(caller, &mut |tables, platform| {
        result = grant_table_op(caller, cmd, arg, count, tables, platform);
    });
    match result {
        Ok(Progress::Done(ret)) => Outcome::value(ret),
        // A preempted batch: the same command on the rest.
        Ok(Progress::More { arg, count }) => {
            let mut next = args;
            next[1] = arg;
            next[2] = u64::from(count);
            Outcome::continuation(xen::HYPERVISOR_GRANT_TABLE_OP, next)
        }
        Err(e) => Outcome::error(e),
    }
}

/// `vm_assist`: no VM assist type is valid for HVM/PVH guests, every
/// request is -EINVAL, as on Xen.
fn do_vm_assist(_: &mut Ctx<'_>, _: [u64; 5]) -> Outcome {
    Outcome::error(errno::EINVAL)
}

/// Resolves a `domid_t` argument to the caller itself.
fn own_domain(domain: &Domain, domid: DomId) -> Result<(), Errno> {
    if domid == DOMID_SELF || domid == domain.id {
        Ok(())
    } else if domain.privileged {
        Err(errno::ESRCH)
    } else {
        Err(errno::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, domu, ret, FakeEnv};

    #[test]
    fn the_hypercall_table_has_each_number_once_in_order() {
        // A second entry for a number would never be reached.
        assert!(HYPERCALLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// The local hypercalls, with random sub-ops and arguments (pointers
    /// mostly into the guest's memory, which holds random bytes), from a
    /// domain beside another with grant tables, never reach beyond their
    /// domain; an interdomain call does (the check can fail).
    #[test]
    fn local_hypercalls_never_reach_another_domain() {
        use crate::test_support::{two_domains, FakeGrants, Rng};
        let mut rng = Rng(0x1234_5678_9abc_def0);
        assert!(is_local(xen::HYPERVISOR_XEN_VERSION) && is_local(42));
        assert!(!is_local(xen::HYPERVISOR_EVENT_CHANNEL_OP) && !is_local(xen::HYPERVISOR_DOMCTL));
        for &nr in &LOCAL_HYPERCALLS {
            for round in 0..500 {
                let (mut d, mut env) = two_domains();
                env.grants = Some(FakeGrants::new(&[1, 2], 4));
                for chunk in env.mem.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
                }
                let mut arg = || match rng.below(4) {
                    0 => rng.next(),
                    1 => rng.below(64),
                    _ => rng.below(crate::test_support::MEM as u64),
                };
                let mut args = [arg(), arg(), arg(), arg(), arg()];
                if round % 2 == 0 {
                    // Mostly a sub-op the handler knows.
                    args[0] %= 64;
                }
                call(&mut d, &mut env, nr, args);
                assert_eq!(
                    env.reached.get(),
                    0,
                    "hypercall {nr} {args:x?} reached beyond"
                );
            }
        }
        // EVTCHNOP_bind_interdomain to the peer: not local, and seen.
        let (mut d, mut env) = two_domains();
        let op = rxen_abi::event_channel::EvtchnBindInterdomain {
            remote_dom: 2,
            _pad0: [0; 2],
            remote_port: 1,
            local_port: 0,
        };
        crate::test_support::evtchn(
            &mut d,
            &mut env,
            rxen_abi::event_channel::EVTCHNOP_BIND_INTERDOMAIN,
            &op,
        );
        assert!(env.reached.get() > 0);
    }

    #[test]
    fn user_mode_and_unknown_calls() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let mut ctx = Ctx::new(&mut d, 0, &mut env);
        let out = dispatch(&mut ctx, xen::HYPERVISOR_XEN_VERSION, [0; 5], 3);
        assert_eq!(out.ret, ret(errno::EPERM));
        for nr in [1u64, 23, 42, 127, 128, u64::MAX] {
            assert_eq!(
                call(&mut d, &mut env, nr, [0; 5]).ret,
                ret(errno::ENOSYS),
                "hypercall {nr}"
            );
        }
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_VM_ASSIST, [0, 0, 0, 0, 0]).ret,
            ret(errno::EINVAL)
        );
        let mut ctx = Ctx::new(&mut d, 7, &mut env);
        assert_eq!(
            dispatch(&mut ctx, xen::HYPERVISOR_XEN_VERSION, [0; 5], 0).ret,
            ret(errno::EINVAL)
        );
    }
}
