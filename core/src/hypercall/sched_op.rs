//! `sched_op` and `set_timer_op` (Xen's common/sched/core.c): yield,
//! block, shutdown, poll, the watchdog, and the single-shot and periodic
//! timers that raise VIRQ_TIMER.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::{sched, xen};

use super::shared_info::set_upcall_mask;
use super::Ctx;
use super::{from_result, raise_virq, upcall_pending, GuestEnv, Next, Outcome};
use crate::domain::{Domain, ShutdownReason};
use crate::guest_handle::GuestHandle;

/// Most ports SCHEDOP_poll takes.
const MAX_POLL_PORTS: u32 = 128;

/// Xen's `STIME_DELTA_MAX`: the longest period or timer delta it takes.
pub const STIME_DELTA_MAX: u64 = u64::MAX >> 2;

/// set_timer_op: a timeout this far ahead or more (about 13 days) is a
/// guest's wrapped jiffies, as Xen reads it.
const HUGE_TIMEOUT_NS: u64 = 1 << 50;

/// set_timer_op: where Xen puts a huge or negative timeout instead.
const HUGE_TIMEOUT_RETRY_NS: u64 = 100_000_000;

/// `sched_op(cmd, arg)`.
pub(super) fn do_sched_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    sched_op(ctx, args[0], args[1])
}

fn sched_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Outcome {
    let (domain, vcpu, env) = (&mut *ctx.domain, ctx.vcpu, &mut *ctx.env);
    // Xen takes `int cmd`.
    match cmd as u32 {
        sched::SCHEDOP_YIELD => Outcome {
            ret: 0,
            next: Next::Yield,
        },
        sched::SCHEDOP_BLOCK => {
            // As Xen's do_block: event delivery on, and no sleep if an event
            // is already waiting.
            set_upcall_mask(domain, vcpu, env, 0);
            if let Some(v) = domain.vcpus.get_mut(vcpu) {
                v.poll_ports.clear();
            }
            if upcall_pending(domain, vcpu, env) {
                Outcome::value(0)
            } else {
                Outcome {
                    ret: 0,
                    next: Next::Block(None),
                }
            }
        }
        sched::SCHEDOP_SHUTDOWN => match GuestHandle::<sched::SchedShutdown>::new(arg).read(env) {
            Ok(request) => {
                let reason = domain.shut_down(ShutdownReason::from_code(request.reason));
                Outcome {
                    ret: 0,
                    next: Next::Shutdown(reason),
                }
            }
            Err(e) => Outcome::error(e),
        },
        sched::SCHEDOP_SHUTDOWN_CODE => {
            match GuestHandle::<sched::SchedShutdown>::new(arg).read(env) {
                Ok(request) => {
                    domain.shutdown_code = Some(request.reason as u8);
                    Outcome::value(0)
                }
                Err(e) => Outcome::error(e),
            }
        }
        sched::SCHEDOP_POLL => match poll(domain, vcpu, env, arg) {
            Ok(Some(deadline)) => Outcome {
                ret: 0,
                next: Next::Block(deadline),
            },
            Ok(None) => Outcome::value(0),
            Err(e) => Outcome::error(e),
        },
        sched::SCHEDOP_REMOTE_SHUTDOWN => {
            match GuestHandle::<sched::SchedRemoteShutdown>::new(arg).read(env) {
                Err(e) => Outcome::error(e),
                Ok(_) if !domain.privileged => Outcome::error(errno::EPERM),
                Ok(request) if request.domain_id == domain.id => {
                    let reason = domain.shut_down(ShutdownReason::from_code(request.reason));
                    Outcome {
                        ret: 0,
                        next: Next::Shutdown(reason),
                    }
                }
                Ok(_) => Outcome::error(errno::ESRCH),
            }
        }
        sched::SCHEDOP_WATCHDOG => from_result(watchdog(domain, env, arg)),
        sched::SCHEDOP_PIN_OVERRIDE => from_result(pin_override(domain, vcpu, env, arg)),
        _ => Outcome::error(errno::ENOSYS),
    }
}

/// SCHEDOP_pin_override, as Xen's `vcpu_temporary_affinity` for the
/// hardware domain's own vCPU (Linux's `xen_pin_vcpu`, for firmware calls
/// that must run on one physical CPU): `pcpu` ≥ 0 pins the caller there
/// until undone with a negative `pcpu`, which restores the hard affinity it
/// had. `-EPERM` for any other domain, `-EINVAL` for a pCPU that is not
/// online or an undo with nothing pinned, `-EBUSY` for a second pin. The
/// vCPU moves when it next leaves the hypercall (the pass after it).
fn pin_override(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    arg: u64,
) -> Result<i64, Errno> {
    use crate::sched::CpuMask;
    if !(domain.privileged && domain.id == 0) {
        return Err(errno::EPERM);
    }
    let request = GuestHandle::<sched::SchedPinOverride>::new(arg).read(env)?;
    let nr_cpus = env.machine_facts().nr_cpus as usize;
    let id = domain.id;
    let v = domain.vcpus.get_mut(vcpu).ok_or(errno::EINVAL)?;
    let Ok(cpu) = usize::try_from(request.pcpu) else {
        return undo_pin_override(id, vcpu as u32, v, env).map(|()| 0);
    };
    if cpu >= CpuMask::CAPACITY {
        return Err(errno::EINVAL);
    }
    if v.pin_override.is_some() {
        return Err(errno::EBUSY);
    }
    if cpu >= nr_cpus {
        return Err(errno::EINVAL);
    }
    let saved = env.vcpu_affinity(id, vcpu as u32)?.hard;
    env.set_vcpu_affinity(id, vcpu as u32, Some(CpuMask::single(cpu)), None)?;
    v.pin_override = Some(saved);
    Ok(0)
}

/// Ends the `SCHEDOP_pin_override` of vCPU `vcpu` (`v`) of domain `id`: its
/// saved hard affinity back (`-EINVAL` if it has none). Also what
/// `XEN_VCPUAFFINITY_FORCE` does first.
pub(super) fn undo_pin_override(
    id: crate::domain::DomId,
    vcpu: u32,
    v: &mut crate::domain::Vcpu,
    env: &mut dyn GuestEnv,
) -> Result<(), Errno> {
    let saved = v.pin_override.ok_or(errno::EINVAL)?;
    env.set_vcpu_affinity(id, vcpu, Some(saved), None)?;
    v.pin_override = None;
    Ok(())
}

/// Validates a `sched_poll`; returns the deadline (None: wait forever).
/// SCHEDOP_poll, as Xen's `do_poll`: -EINVAL for too many ports or a port
/// beyond the ABI's range; no sleep when an upcall is due or a polled port
/// is already pending; otherwise the vCPU blocks until one of the ports
/// becomes pending (masked or not), any event is delivered to it, or the
/// timeout passes. Returns the block's deadline, or None when it returns at
/// once.
fn poll(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    arg: u64,
) -> Result<Option<Option<u64>>, Errno> {
    let request = GuestHandle::<sched::SchedPoll>::new(arg).read(env)?;
    if request.nr_ports > MAX_POLL_PORTS {
        return Err(errno::EINVAL);
    }
    let mut bytes = [0u8; MAX_POLL_PORTS as usize * 4];
    // nr_ports <= MAX_POLL_PORTS (checked above).
    let bytes = bytes
        .get_mut(..(request.nr_ports as usize).saturating_mul(4))
        .ok_or(errno::EINVAL)?;
    env.copy_in(request.ports, bytes)?;
    // Kept while the vCPU blocks: a heap allocation, which may fail.
    let mut ports: Vec<u32> = Vec::new();
    ports
        .try_reserve_exact(request.nr_ports as usize)
        .map_err(|_| errno::ENOMEM)?;
    ports.extend(
        bytes
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes)),
    );
    if ports.iter().any(|&port| port >= domain.events.max_ports()) {
        return Err(errno::EINVAL);
    }
    if upcall_pending(domain, vcpu, env) {
        return Ok(None);
    }
    let ops = domain.events.ops();
    for &port in &ports {
        if ops.is_pending(domain, env, port) {
            return Ok(None);
        }
    }
    domain.vcpus.get_mut(vcpu).ok_or(errno::EINVAL)?.poll_ports = ports;
    Ok(Some((request.timeout != 0).then_some(request.timeout)))
}

fn watchdog(domain: &mut Domain, env: &mut dyn GuestEnv, arg: u64) -> Result<i64, Errno> {
    let request = GuestHandle::<sched::SchedWatchdog>::new(arg).read(env)?;
    let now = env.now_ns();
    // A u32 of seconds: fits in 64 bits of nanoseconds.
    let timeout_ns = u64::from(request.timeout).saturating_mul(crate::time::NSEC_PER_SEC);
    let deadline = now.saturating_add(timeout_ns);
    if request.id == 0 {
        let slot = domain
            .watchdogs
            .iter()
            .position(Option::is_none)
            .ok_or(errno::ENOSPC)?;
        *domain.watchdogs.get_mut(slot).ok_or(errno::ENOSPC)? = Some((timeout_ns, deadline));
        // At most NR_WATCHDOGS.
        return Ok((slot as i64).saturating_add(1));
    }
    let slot = (request.id as usize)
        .checked_sub(1)
        .filter(|s| *s < domain.watchdogs.len())
        .ok_or(errno::EINVAL)?;
    let watchdog = domain
        .watchdogs
        .get_mut(slot)
        .filter(|w| w.is_some())
        .ok_or(errno::EINVAL)?;
    *watchdog = (request.timeout != 0).then_some((timeout_ns, deadline));
    Ok(0)
}

/// `set_timer_op(timeout)`: 0 stops the single-shot timer; a negative
/// timeout or one 2^50 ns or more ahead fires in 100 ms instead, as Xen
/// does for Linux's wrapped jiffies.
pub(super) fn do_set_timer_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    set_timer_op(ctx.domain, ctx.vcpu, ctx.env, args[0]);
    Outcome::value(0)
}

fn set_timer_op(domain: &mut Domain, vcpu: usize, env: &mut dyn GuestEnv, timeout: u64) {
    let now = env.now_ns();
    let Some(v) = domain.vcpus.get_mut(vcpu) else {
        return;
    };
    v.singleshot_deadline = if timeout == 0 {
        None
    } else if (timeout as i64) < 0 || timeout.saturating_sub(now) >= HUGE_TIMEOUT_NS {
        Some(now.saturating_add(HUGE_TIMEOUT_RETRY_NS))
    } else {
        Some(timeout)
    };
}

/// Fires expired timers of vCPU `vcpu` at `now`, raising VIRQ_TIMER for
/// them (which wakes the vCPU if the VIRQ is bound, as on Xen), and ends a
/// poll whose deadline passed. As Xen stops a periodic timer while its vCPU
/// is not running, a blocked vCPU's periodic timer waits until it runs.
/// Returns whether a timer fired.
pub fn expire_timers(domain: &mut Domain, vcpu: usize, now: u64, env: &mut dyn GuestEnv) -> bool {
    let Some(v) = domain.vcpus.get_mut(vcpu) else {
        return false;
    };
    let mut fired = false;
    if v.singleshot_deadline.is_some_and(|d| d <= now) {
        v.singleshot_deadline = None;
        fired = true;
    }
    if let (Some((period, next)), None) = (v.periodic, v.blocked) {
        if next <= now {
            // Missed periods are skipped; the period is never 0 (checked
            // when set) and the sum saturates rather than wrap into the
            // past, which would fire the timer on every pass.
            let missed = now
                .saturating_sub(next)
                .checked_div(period)
                .unwrap_or(0)
                .saturating_add(1);
            let due = missed
                .checked_mul(period)
                .and_then(|skip| next.checked_add(skip))
                .unwrap_or(u64::MAX);
            v.periodic = Some((period, due));
            fired = true;
        }
    }
    if let Some(Some(deadline)) = v.blocked {
        if deadline <= now {
            v.blocked = None;
        }
    }
    // The local APIC's timer: its vector ends a block (HLT).
    if v.lapic.expire_timer(now) && v.lapic.has_pending() {
        v.blocked = None;
    }
    if fired {
        raise_virq(domain, vcpu, xen::VIRQ_TIMER, env);
    }
    fired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, domu, ret, FakeEnv, BAD};
    use rxen_abi::vcpu;
    use zerocopy::FromZeros;

    /// SCHEDOP_pin_override as Xen's: the hardware domain only, a pCPU that
    /// exists, one pin at a time, undone to the saved hard affinity; the control
    /// domain's setvcpuaffinity is -EBUSY meanwhile unless it forces.
    #[test]
    fn pin_override_as_xen() {
        use crate::sched::{Affinity, CpuMask};
        use rxen_abi::domctl::*;
        use zerocopy::IntoBytes;
        let nr = xen::HYPERVISOR_SCHED_OP;
        let pin = |d: &mut Domain, env: &mut FakeEnv, pcpu: i32| {
            env.put(0x500, &sched::SchedPinOverride { pcpu });
            call(
                d,
                env,
                nr,
                [sched::SCHEDOP_PIN_OVERRIDE as u64, 0x500, 0, 0, 0],
            )
            .ret
        };
        // A domU: -EPERM.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        assert_eq!(pin(&mut d, &mut env, 0), ret(errno::EPERM));
        // dom0, its vCPU 0 pinned to pCPU 1 and 0 before.
        d.id = 0;
        d.privileged = true;
        let mut before = Affinity::all(2);
        before.set(Some(CpuMask::from_bits(0b01)), None, 2).unwrap();
        env.affinity.insert((0, 0), before);
        let bad = call(
            &mut d,
            &mut env,
            nr,
            [sched::SCHEDOP_PIN_OVERRIDE as u64, BAD, 0, 0, 0],
        );
        assert_eq!(bad.ret, ret(errno::EFAULT));
        // Undo with nothing pinned; a pCPU that does not exist.
        assert_eq!(pin(&mut d, &mut env, -1), ret(errno::EINVAL));
        assert_eq!(pin(&mut d, &mut env, 2), ret(errno::EINVAL));
        assert_eq!(pin(&mut d, &mut env, i32::MAX), ret(errno::EINVAL));
        assert_eq!(env.affinity[&(0, 0)], before);
        // Pinned to pCPU 1; a second pin is -EBUSY, even to the same pCPU.
        assert_eq!(pin(&mut d, &mut env, 1), 0);
        assert_eq!(env.affinity[&(0, 0)].hard, CpuMask::from_bits(0b10));
        assert_eq!(pin(&mut d, &mut env, 1), ret(errno::EBUSY));
        assert_eq!(pin(&mut d, &mut env, 0), ret(errno::EBUSY));
        // Undone: the hard affinity it had.
        assert_eq!(pin(&mut d, &mut env, -1), 0);
        assert_eq!(env.affinity[&(0, 0)], before);
        assert_eq!(pin(&mut d, &mut env, -1), ret(errno::EINVAL));
        // Pinned again, dom0's toolstack re-pins the vCPU: -EBUSY, unless forced
        // (the pin undone, then the new affinity set).
        assert_eq!(pin(&mut d, &mut env, 1), 0);
        env.put(0x700, &0b11u8);
        let affinity = |flags: u32| {
            let a = XenDomctlVcpuaffinity {
                vcpu: 0,
                flags,
                cpumap_hard: rxen_abi::sysctl::XenctlBitmap {
                    bitmap: 0x700,
                    nr_bits: 8,
                    pad: 0,
                },
                cpumap_soft: Default::default(),
            };
            let mut op = XenDomctl {
                cmd: XEN_DOMCTL_SETVCPUAFFINITY,
                interface_version: XEN_DOMCTL_INTERFACE_VERSION,
                domain: 0,
                pad: [0; 3],
                u: [0; XEN_DOMCTL_UNION_SIZE],
            };
            op.u[..40].copy_from_slice(a.as_bytes());
            op
        };
        let domctl = xen::HYPERVISOR_DOMCTL;
        env.put(0x600, &affinity(XEN_VCPUAFFINITY_HARD));
        assert_eq!(
            call(&mut d, &mut env, domctl, [0x600, 0, 0, 0, 0]).ret,
            ret(errno::EBUSY)
        );
        assert_eq!(env.affinity[&(0, 0)].hard, CpuMask::from_bits(0b10));
        env.put(
            0x600,
            &affinity(XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_FORCE),
        );
        assert_eq!(call(&mut d, &mut env, domctl, [0x600, 0, 0, 0, 0]).ret, 0);
        assert_eq!(env.affinity[&(0, 0)].hard, CpuMask::from_bits(0b11));
        assert_eq!(d.vcpus[0].pin_override, None);
        assert_eq!(pin(&mut d, &mut env, -1), ret(errno::EINVAL));
    }

    #[test]
    fn sched_op_shutdown_poll_and_watchdog() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_SCHED_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_YIELD as u64, 0, 0, 0, 0]
            )
            .next,
            Next::Yield
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_SHUTDOWN as u64, BAD, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(d.shutdown, None, "a bad pointer shuts nothing down");
        // Too many ports.
        env.put(
            0x500,
            &sched::SchedPoll {
                ports: 0x600,
                nr_ports: 129,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_POLL as u64, 0x500, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        // No ports, a timeout: block until then.
        env.put(
            0x500,
            &sched::SchedPoll {
                ports: 0x600,
                nr_ports: 0,
                timeout: 5_000_000,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_POLL as u64, 0x500, 0, 0, 0]
            )
            .next,
            Next::Block(Some(5_000_000))
        );
        // Watchdogs: two slots, then -ENOSPC; an unknown id is -EINVAL.
        env.put(0x700, &sched::SchedWatchdog { id: 0, timeout: 10 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            1
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            2
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            ret(errno::ENOSPC)
        );
        env.put(0x700, &sched::SchedWatchdog { id: 9, timeout: 0 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        // Shutdown with an odd code: accepted as a byte, first one wins.
        env.put(0x800, &sched::SchedShutdown { reason: 3 });
        let out = call(
            &mut d,
            &mut env,
            nr,
            [sched::SCHEDOP_SHUTDOWN as u64, 0x800, 0, 0, 0],
        );
        assert_eq!(out.next, Next::Shutdown(ShutdownReason::Crash));
        // A domU cannot shut down others.
        env.put(
            0x900,
            &sched::SchedRemoteShutdown {
                domain_id: 0,
                _pad0: [0; 2],
                reason: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_REMOTE_SHUTDOWN as u64, 0x900, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
    }

    #[test]
    fn periodic_timers_take_xens_range_and_never_wrap() {
        // Defect 9: a period near 2^64 wrapped the expiry into the past, so
        // the timer fired on every pass.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_VCPU_OP;
        let set = [vcpu::VCPUOP_SET_PERIODIC_TIMER as u64, 0, 0x100, 0, 0];
        for (period_ns, expected) in [
            (u64::MAX, ret(errno::EINVAL)),
            (u64::MAX - 1_000_000, ret(errno::EINVAL)),
            (STIME_DELTA_MAX + 1, ret(errno::EINVAL)),
            (999_999, ret(errno::EINVAL)),
            (1_000_000, 0),
            (STIME_DELTA_MAX, 0),
        ] {
            env.put(0x100, &vcpu::VcpuSetPeriodicTimer { period_ns });
            assert_eq!(
                call(&mut d, &mut env, nr, set).ret,
                expected,
                "{period_ns:#x}"
            );
        }
        // The longest period: one tick now, the next one far ahead.
        let now = env.now;
        assert!(expire_timers(&mut d, 0, now, &mut env));
        assert_eq!(
            d.vcpus[0].periodic,
            Some((STIME_DELTA_MAX, now + STIME_DELTA_MAX))
        );
        assert!(!expire_timers(&mut d, 0, now + 1, &mut env));
        // Even a period past the limit (not settable) saturates, never wraps.
        d.vcpus[0].periodic = Some((u64::MAX - 5, now));
        assert!(expire_timers(&mut d, 0, now, &mut env));
        assert!(!expire_timers(&mut d, 0, now + 1, &mut env));
        assert_eq!(d.vcpus[0].periodic, Some((u64::MAX - 5, u64::MAX)));
    }

    #[test]
    fn set_timer_op_moves_huge_timeouts_to_100_ms_as_xen() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_SET_TIMER_OP;
        let now = env.now;
        for (timeout, deadline) in [
            (now + 5, Some(now + 5)),
            (5, Some(5)),
            (0, None),
            (u64::MAX, Some(now + 100_000_000)),
            (1 << 63, Some(now + 100_000_000)),
            (now + (1 << 50), Some(now + 100_000_000)),
            (now + (1 << 50) - 1, Some(now + (1 << 50) - 1)),
        ] {
            assert_eq!(call(&mut d, &mut env, nr, [timeout, 0, 0, 0, 0]).ret, 0);
            assert_eq!(d.vcpus[0].singleshot_deadline, deadline, "{timeout:#x}");
        }
    }

    #[test]
    fn timers_raise_virq_timer_and_wake_only_through_it() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.vcpus[0].periodic = Some((10, 100));
        d.vcpus[0].singleshot_deadline = Some(150);
        assert!(!expire_timers(&mut d, 0, 99, &mut env));
        assert!(expire_timers(&mut d, 0, 135, &mut env));
        assert_eq!(
            d.vcpus[0].periodic,
            Some((10, 140)),
            "missed periods are skipped, not replayed"
        );
        // Blocked, VIRQ_TIMER not bound: the single-shot fires but wakes nothing (Xen).
        d.vcpus[0].blocked = Some(None);
        assert!(expire_timers(&mut d, 0, 150, &mut env));
        assert_eq!(d.vcpus[0].blocked, Some(None));
        // Bound: the event is pending, the upcall flagged, the vCPU woken.
        let port = d.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        d.vcpus[0].singleshot_deadline = Some(160);
        // The periodic timer is stopped while the vCPU is blocked (Xen).
        assert!(expire_timers(&mut d, 0, 200, &mut env));
        assert_eq!(d.vcpus[0].periodic, Some((10, 140)));
        assert_eq!(d.vcpus[0].blocked, None);
        assert!(crate::event_channel::two_level::is_pending(&env.si(), port));
        assert!(upcall_pending(&d, 0, &mut env));
    }

    #[test]
    fn the_local_apic_timer_ends_a_halt() {
        use crate::vlapic::reg;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let lapic = &mut d.vcpus[0].lapic;
        lapic.write(reg::SVR, 0x1FF, 0);
        lapic.write(reg::TIMER_DIVIDE, 0xB, 0);
        lapic.write(reg::LVT_TIMER, 0x40, 0);
        lapic.write(reg::TIMER_INITIAL, 500, 100);
        assert_eq!(d.vcpus[0].next_deadline(), Some(600));
        d.vcpus[0].blocked = Some(Some(10_000));
        assert!(!expire_timers(&mut d, 0, 599, &mut env));
        assert!(d.vcpus[0].blocked.is_some());
        assert!(
            !expire_timers(&mut d, 0, 600, &mut env),
            "no Xen timer fired"
        );
        assert_eq!(d.vcpus[0].blocked, None);
        assert_eq!(d.vcpus[0].lapic.pending_vector(), Some(0x40));
    }

    #[test]
    fn poll_without_heap_is_enomem_not_a_crash() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        env.put(0x500, &port);
        env.put(
            0x400,
            &sched::SchedPoll {
                ports: 0x500,
                nr_ports: 1,
                timeout: 5_000_000,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        let args = [sched::SCHEDOP_POLL as u64, 0x400, 0, 0, 0];
        let out = crate::test_alloc::failing_allocations(|| {
            call(&mut d, &mut env, xen::HYPERVISOR_SCHED_OP, args)
        });
        assert_eq!(out, Outcome::error(errno::ENOMEM));
        assert!(d.vcpus[0].poll_ports.is_empty());
        // With a heap, the same call blocks.
        let out = call(&mut d, &mut env, xen::HYPERVISOR_SCHED_OP, args);
        assert_eq!(out.next, Next::Block(Some(5_000_000)));
        assert_eq!(d.vcpus[0].poll_ports, [port]);
    }

    #[test]
    fn poll_waits_for_its_ports_even_masked() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let a = d.events.bind_ipi(0).unwrap();
        let b = d.events.bind_ipi(0).unwrap();
        let poll = |d: &mut Domain, env: &mut FakeEnv, ports: &[u32], timeout: u64| {
            for (i, p) in ports.iter().enumerate() {
                env.put(0x500 + 4 * i as u64, p);
            }
            env.put(
                0x400,
                &sched::SchedPoll {
                    ports: 0x500,
                    nr_ports: ports.len() as u32,
                    timeout,
                    ..sched::SchedPoll::new_zeroed()
                },
            );
            call(
                d,
                env,
                xen::HYPERVISOR_SCHED_OP,
                [sched::SCHEDOP_POLL as u64, 0x400, 0, 0, 0],
            )
        };
        // Nothing pending: the vCPU blocks until the timeout.
        let out = poll(&mut d, &mut env, &[a], 5_000_000);
        assert_eq!(
            out,
            Outcome {
                ret: 0,
                next: Next::Block(Some(5_000_000))
            }
        );
        d.vcpus[0].blocked = Some(Some(5_000_000));
        // A send on the polled port, masked, ends the poll; no upcall.
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, a as usize);
        env.put(0x300, &ev::EvtchnSend { port: a });
        call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_EVENT_CHANNEL_OP,
            [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0],
        );
        assert_eq!(d.vcpus[0].blocked, None, "the polled port woke it");
        assert!(!upcall_pending(&d, 0, &mut env));
        // Already pending: returns at once.
        assert_eq!(poll(&mut d, &mut env, &[b, a], 0), Outcome::value(0));
        // A send on another port does not end a poll on `b`... unless it is
        // delivered as an upcall (it is not masked): any event ends it.
        assert_eq!(
            poll(&mut d, &mut env, &[b], 0),
            Outcome {
                ret: 0,
                next: Next::Block(None)
            }
        );
        // Bad input.
        assert_eq!(poll(&mut d, &mut env, &[4096], 0).ret, ret(errno::EINVAL));
        assert_eq!(
            poll(&mut d, &mut env, &[1; 129], 0).ret,
            ret(errno::EINVAL),
            "too many ports"
        );
    }
}
