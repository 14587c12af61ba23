//! Hypercall dispatch: the table from hypercall number to handler, the
//! outcome of a hypercall ([`Outcome`], [`Next`]), and the copies to and from
//! the calling guest ([`GuestCopy`], [`read_guest`], [`write_guest`]). The
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
//! The platform gives access to the calling guest through [`GuestEnv`]:
//! copies by guest linear address (the guest's own page tables), the clock,
//! the console and the few changes to the nested page tables that
//! hypercalls make.

mod console;
mod hvm;
mod memory;
mod multicall;
mod sched_op;
pub(crate) mod shared_info;
mod vcpu;
mod version;

use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use rxen_abi::errno::{self, Errno};
use rxen_abi::xen;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::{DomId, Domain, GuestMemRegion, ShutdownReason};
use crate::shared_page::SharedPage;

// The hypervisor reaches these through `hypercall::`.
pub use crate::event_channel::{
    close_interdomain_channels, notify_console, raise_virq, reset_event_channels,
};
pub use console::CONSOLE_WRITE_BATCH;
pub use multicall::MULTICALL_BATCH;
pub use sched_op::{expire_timers, STIME_DELTA_MAX};
pub(crate) use shared_info::with_shared_info;
pub use shared_info::{upcall_pending, write_shared_info_time, write_vcpu_time};
pub use vcpu::set_runstate;
pub use version::feature_submap0;

/// `DOMID_SELF`.
pub(crate) const DOMID_SELF: DomId = 0x7FF0;

/// What the platform provides to hypercall handlers for the calling vCPU.
pub trait GuestEnv {
    /// Copies from the guest's linear address `addr`.
    fn copy_from_guest(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies to the guest's linear address `addr`.
    fn copy_to_guest(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Writes guest-physical memory (a plain copy: for memory the guest
    /// does not share with the hypervisor at that moment).
    fn write_guest_phys(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Reads guest-physical memory.
    fn read_guest_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Runs `f` once on the domain's shared-info page (mapped into the
    /// guest or not), which the guest's vCPUs may be writing meanwhile.
    fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>));
    /// Runs `f` once on guest frame `gfn` of the domain's own RAM (a
    /// registered `vcpu_info`), which the guest's vCPUs may be writing
    /// meanwhile: `-EFAULT` if `gfn` is not (or no longer) the domain's
    /// own RAM.
    fn guest_page(&mut self, gfn: u64, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno>;
    /// System time in nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// The guest's TSC now and the system time at that instant.
    fn time_snapshot(&self) -> (u64, u64);
    /// The TSC-to-ns scale.
    fn time_scale(&self) -> crate::time::TimeScale;
    /// Wall-clock time (seconds, nanoseconds) at system time 0.
    fn wallclock_base(&self) -> (u64, u32);
    /// Writes guest console output (the platform prefixes the domain).
    fn console_write(&mut self, domid: DomId, text: &[u8]);
    /// Reads pending console input.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// Maps the domain's shared-info page at `gfn` in its physical map.
    fn map_shared_info(&mut self, gfn: u64) -> Result<(), Errno>;
    /// The hypervisor command line (XENVER_commandline).
    fn hypervisor_cmdline(&self) -> &str;
    /// The host's memory map (XENMEM_machine_memory_map).
    fn host_memory_map(&self) -> Vec<GuestMemRegion>;
    /// The highest host RAM page + 1.
    fn host_max_page(&self) -> u64;
    /// Runs `f` on another domain `domid` (never the caller) with an
    /// environment over that domain's memory; `-ESRCH` if there is none.
    fn with_domain(
        &mut self,
        domid: DomId,
        f: &mut dyn FnMut(&mut Domain, &mut dyn GuestEnv),
    ) -> Result<(), Errno> {
        let _ = (domid, f);
        Err(errno::ESRCH)
    }
    /// `grant_table_op(cmd, arg, count)` of domain `caller`: the platform
    /// runs [`crate::grant_table::grant_table_op`] with the machine's grant
    /// tables and memory (`-ENOSYS` where there are none).
    fn grant_table_op(
        &mut self,
        caller: DomId,
        cmd: u32,
        arg: u64,
        count: u32,
    ) -> Result<crate::grant_table::Progress, Errno> {
        let _ = (caller, cmd, arg, count);
        Err(errno::ENOSYS)
    }
    /// The guest notified the hypervisor's console backend: take what it
    /// wrote to its PV console ring. Returns whether anything was taken (the
    /// guest is then notified back, as xenconsoled does).
    fn console_ring_kick(&mut self, domid: DomId) -> bool {
        let _ = domid;
        false
    }
    /// XENMEM_add_to_physmap, space `XENMAPSPACE_grant_table`: maps grant
    /// frame `idx` of `caller` at `gpfn` (through
    /// [`crate::grant_table::GrantTable::add_to_physmap`]).
    fn map_grant_frame(&mut self, caller: DomId, idx: u64, gpfn: u64) -> Result<(), Errno> {
        let _ = (caller, idx, gpfn);
        Err(errno::EINVAL)
    }
    /// Runs `f` on the aligned 32-bit word of guest-physical memory at
    /// `gpa`, which the guest may be writing at the same time (FIFO event
    /// words and control blocks): `-EFAULT` if `gpa` is not 4-byte aligned
    /// or not the domain's RAM.
    fn guest_atomic_u32(&mut self, gpa: u64, f: &mut dyn FnMut(&AtomicU32)) -> Result<(), Errno> {
        let _ = (gpa, f);
        Err(errno::EFAULT)
    }
}

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
    fn continuation(nr: u64, args: [u64; 5]) -> Self {
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

/// Copies between the hypervisor and the calling vCPU's linear memory: all
/// that reading and writing hypercall arguments needs. Every [`GuestEnv`]
/// is one; other environments (the grant-table platform) can be one too.
pub trait GuestCopy {
    /// Copies from guest linear memory (`-EFAULT` if unmapped).
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies to guest linear memory (`-EFAULT` if unmapped or read-only).
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno>;
}

impl<E: GuestEnv + ?Sized> GuestCopy for E {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.copy_from_guest(addr, buf)
    }
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.copy_to_guest(addr, buf)
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

/// Runs hypercall `nr` with `args` for vCPU `vcpu` of `domain`, called at
/// privilege level `cpl`.
pub fn dispatch(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    nr: u64,
    args: [u64; 5],
    cpl: u8,
) -> Outcome {
    if cpl != 0 {
        return Outcome::error(errno::EPERM);
    }
    if vcpu >= domain.vcpus.len() {
        return Outcome::error(errno::EINVAL);
    }
    call(domain, vcpu, env, nr, args)
}

/// A hypercall handler: the calling domain, the calling vCPU (one that
/// exists), the platform and the five argument registers.
type Handler = fn(&mut Domain, usize, &mut dyn GuestEnv, [u64; 5]) -> Outcome;

/// The hypercall table (Xen's `hvm_hypercall_table`), by number: a number
/// that is not in it is `-ENOSYS`.
const HYPERCALLS: [(u64, Handler); 11] = [
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
    (xen::HYPERVISOR_HVM_OP, hvm::do_hvm_op),
];

/// Runs hypercall `nr` through [`HYPERCALLS`].
fn call(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    nr: u64,
    args: [u64; 5],
) -> Outcome {
    match HYPERCALLS.iter().find(|(number, _)| *number == nr) {
        Some((_, handler)) => handler(domain, vcpu, env, args),
        None => Outcome::error(errno::ENOSYS),
    }
}

/// `grant_table_op(cmd, arg, count)`: the platform runs
/// [`crate::grant_table::grant_table_op`]. Xen takes `unsigned int cmd,
/// ..., unsigned int count`.
fn do_grant_table_op(
    domain: &mut Domain,
    _vcpu: usize,
    env: &mut dyn GuestEnv,
    args: [u64; 5],
) -> Outcome {
    use crate::grant_table::Progress;
    match env.grant_table_op(domain.id, args[0] as u32, args[1], args[2] as u32) {
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
fn do_vm_assist(_: &mut Domain, _: usize, _: &mut dyn GuestEnv, _: [u64; 5]) -> Outcome {
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

    #[test]
    fn user_mode_and_unknown_calls() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let out = dispatch(&mut d, 0, &mut env, xen::HYPERVISOR_XEN_VERSION, [0; 5], 3);
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
        assert_eq!(
            dispatch(&mut d, 7, &mut env, xen::HYPERVISOR_XEN_VERSION, [0; 5], 0).ret,
            ret(errno::EINVAL)
        );
    }
}
