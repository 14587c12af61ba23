//! `vcpu_op` (Xen's common/domain.c): bringing vCPUs up and down, their
//! timers, the runstate area and the registered `vcpu_info`; runstate
//! accounting.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::hvm_vcpu::{VcpuHvmContext, VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B};
use rxen_abi::{vcpu, xen};
use zerocopy::{FromZeros, IntoBytes};

use super::Ctx;
use super::{from_result, write_vcpu_time, Next, Outcome, STIME_DELTA_MAX};
use crate::domain::{Domain, ShutdownReason};
use crate::guest_handle::GuestHandle;
use crate::mm::Gfn;
use crate::time::RunstateKind;

/// Shortest period of VCPUOP_set_periodic_timer (Xen's `MILLISECS(1)`).
const MIN_PERIODIC_NS: u64 = 1_000_000;

/// Checks a `vcpu_hvm_context` the way Xen's `arch_set_info_hvm_guest`
/// does in substance: a known mode; in 64-bit mode paging, PAE and long
/// mode on and a canonical RIP; in 32-bit mode protected mode and present
/// code, data and stack segments.
fn check_hvm_context(context: &VcpuHvmContext) -> Result<(), Errno> {
    const CR0_PE: u64 = 1;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const AR_PRESENT: u16 = 1 << 7;
    const AR_CODE: u16 = 1 << 3;
    match context.mode {
        VCPU_HVM_MODE_64B => {
            let r = context.x86_64();
            let canonical = (r.rip as i64) << 16 >> 16 == r.rip as i64;
            let ok = r.cr0 & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG
                && r.cr4 & CR4_PAE != 0
                && r.efer & EFER_LME != 0
                && canonical;
            ok.then_some(()).ok_or(errno::EINVAL)
        }
        VCPU_HVM_MODE_32B => {
            let r = context.x86_32();
            let data_ok = |ar: u16| ar & AR_PRESENT != 0 && ar & AR_CODE == 0;
            let ok = r.cr0 as u64 & CR0_PE != 0
                && r.cs_ar & AR_PRESENT != 0
                && r.cs_ar & AR_CODE != 0
                && data_ok(r.ds_ar)
                && data_ok(r.ss_ar)
                && data_ok(r.es_ar);
            ok.then_some(()).ok_or(errno::EINVAL)
        }
        _ => Err(errno::EINVAL),
    }
}

/// `vcpu_op(cmd, vcpuid, arg)`: VCPUOP_down of the last vCPU up powers the
/// domain off, and the vCPU's next step is the shutdown.
pub(super) fn do_vcpu_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    let running = ctx.domain.shutdown.is_none();
    let outcome = from_result(vcpu_op(ctx, args[0], args[1], args[2]));
    match ctx.domain.shutdown {
        // VCPUOP_down of the last vCPU powered the domain off.
        Some(reason) if running => Outcome {
            ret: outcome.ret,
            next: Next::Shutdown(reason),
        },
        _ => outcome,
    }
}

fn vcpu_op(ctx: &mut Ctx<'_>, cmd: u64, vcpuid: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, current, env) = (&mut *ctx.domain, ctx.vcpu, &mut *ctx.env);
    // Xen takes `int cmd, unsigned int vcpuid`.
    let target = vcpuid as u32 as usize;
    if target >= domain.vcpus.len() {
        return Err(errno::ENOENT);
    }
    let now = env.now_ns();
    match cmd as u32 {
        vcpu::VCPUOP_IS_UP => Ok(domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?.up as i64),
        vcpu::VCPUOP_INITIALISE => {
            // As Xen: a vCPU gets its initial state once.
            if domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .initialised
            {
                return Err(errno::EEXIST);
            }
            let context = GuestHandle::<VcpuHvmContext>::new(arg).read(env)?;
            check_hvm_context(&context)?;
            let v = domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?;
            v.initialised = true;
            v.pending_context = Some(context);
            Ok(0)
        }
        vcpu::VCPUOP_UP => {
            let v = domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?;
            if !v.initialised {
                return Err(errno::EINVAL);
            }
            v.up = true;
            Ok(0)
        }
        vcpu::VCPUOP_DOWN => {
            if !domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?.up {
                return Ok(0);
            }
            // As Xen: the last vCPU going down powers the domain off.
            let others_up = domain
                .vcpus
                .iter()
                .enumerate()
                .any(|(i, v)| i != target && v.up);
            if !others_up {
                domain.shut_down(ShutdownReason::Poweroff);
                return Ok(0);
            }
            let v = domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?;
            v.up = false;
            v.blocked = None;
            Ok(0)
        }
        vcpu::VCPUOP_GET_RUNSTATE_INFO => {
            let info = runstate_info(domain.vcpus.get(target).ok_or(errno::ENOENT)?, now);
            GuestHandle::new(arg).write(env, &info).map(|_| 0)
        }
        vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let area = GuestHandle::<vcpu::VcpuRegisterRunstateMemoryArea>::new(arg).read(env)?;
            let info = runstate_info(domain.vcpus.get(target).ok_or(errno::ENOENT)?, now);
            if area.addr != 0 {
                // Xen ignores a failed first write; so do we.
                let _ = GuestHandle::new(area.addr).write(env, &info);
            }
            domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .runstate_area = (area.addr != 0).then_some(area.addr);
            Ok(0)
        }
        vcpu::VCPUOP_SET_PERIODIC_TIMER => {
            let request = GuestHandle::<vcpu::VcpuSetPeriodicTimer>::new(arg).read(env)?;
            // As Xen: at least 1 ms, at most STIME_DELTA_MAX (a longer
            // period would overflow the expiry arithmetic).
            if request.period_ns < MIN_PERIODIC_NS || request.period_ns > STIME_DELTA_MAX {
                return Err(errno::EINVAL);
            }
            // Xen: the first tick is due at once.
            domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?.periodic =
                Some((request.period_ns, now));
            Ok(0)
        }
        vcpu::VCPUOP_STOP_PERIODIC_TIMER => {
            domain.vcpus.get_mut(target).ok_or(errno::ENOENT)?.periodic = None;
            Ok(0)
        }
        vcpu::VCPUOP_SET_SINGLESHOT_TIMER => {
            if target != current {
                return Err(errno::EINVAL);
            }
            let request = GuestHandle::<vcpu::VcpuSetSingleshotTimer>::new(arg).read(env)?;
            // Xen 4.17.7 no longer answers -ETIME for VCPU_SSHOTTMR_future with
            // a time in the past: the timer fires at once.
            domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .singleshot_deadline = Some(request.timeout_abs_ns);
            Ok(0)
        }
        vcpu::VCPUOP_STOP_SINGLESHOT_TIMER => {
            if target != current {
                return Err(errno::EINVAL);
            }
            domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .singleshot_deadline = None;
            Ok(0)
        }
        vcpu::VCPUOP_REGISTER_VCPU_INFO => {
            let request = GuestHandle::<vcpu::VcpuRegisterVcpuInfo>::new(arg).read(env)?;
            let size = core::mem::size_of::<xen::VcpuInfo>() as u64;
            if request.offset as u64 > 4096u64.saturating_sub(size) {
                return Err(errno::ENXIO);
            }
            if domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .vcpu_info_gpa
                .is_some()
            {
                return Err(errno::EINVAL);
            }
            if !domain.gfn_is_ram(request.mfn) {
                return Err(errno::EINVAL);
            }
            let gpa = Gfn(request.mfn)
                .gpa()
                .and_then(|page| page.checked_add(u64::from(request.offset)))
                .ok_or(errno::EINVAL)?;
            env.write_guest_phys(gpa, xen::VcpuInfo::new_zeroed().as_bytes())?;
            domain
                .vcpus
                .get_mut(target)
                .ok_or(errno::ENOENT)?
                .vcpu_info_gpa = Some(gpa.0);
            write_vcpu_time(domain, target, env);
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

fn runstate_info(vcpu: &crate::domain::Vcpu, now: u64) -> vcpu::VcpuRunstateInfo {
    let mut info = vcpu::VcpuRunstateInfo::new_zeroed();
    info.state = vcpu.runstate.state as i32;
    info.state_entry_time = vcpu.runstate.entry_time;
    info.time = vcpu.runstate.times_at(now);
    info
}

/// Marks the running state of a vCPU at `now` (for runstate accounting).
pub fn set_runstate(domain: &mut Domain, vcpu: usize, state: RunstateKind, now: u64) {
    if let Some(v) = domain.vcpus.get_mut(vcpu) {
        if v.runstate.state != state {
            v.runstate.change(state, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::expire_timers;
    use crate::test_support::{call, domu, ret, FakeEnv, BAD};

    #[test]
    fn vcpu_op_validates_every_argument() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_VCPU_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 0, 0, 0, 0]
            )
            .ret,
            1
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 1, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 2, 0, 0, 0]
            )
            .ret,
            ret(errno::ENOENT)
        );
        env.put(0x100, &vcpu::VcpuSetPeriodicTimer { period_ns: 999_999 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_PERIODIC_TIMER as u64, 0, 0x100, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x100,
            &vcpu::VcpuSetSingleshotTimer {
                timeout_abs_ns: 10,
                flags: vcpu::VCPU_SSHOTTMR_FUTURE,
                _pad0: [0; 4],
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_SINGLESHOT_TIMER as u64, 0, 0x100, 0, 0]
            )
            .ret,
            0
        );
        assert!(
            expire_timers(&mut d, 0, env.now, &mut env),
            "a timer set in the past fires at once"
        );
        // Single-shot timers are for the calling vCPU only.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_SINGLESHOT_TIMER as u64, 1, 0x100, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 4096 - 32,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::ENXIO)
        );
        let initialise = [vcpu::VCPUOP_INITIALISE as u64, 0, 0x200, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, nr, initialise).ret,
            ret(errno::EEXIST)
        );
        let up = [vcpu::VCPUOP_UP as u64, 0, 0, 0, 0];
        assert_eq!(call(&mut d, &mut env, nr, up).ret, 0);
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 1000,
                offset: 0,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 64,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::EINVAL),
            "only once"
        );
        let time: xen::VcpuTimeInfo =
            env.get(3 * 4096 + 64 + core::mem::offset_of!(xen::VcpuInfo, time) as u64);
        assert_eq!(time.version % 2, 0);
        assert_eq!(time.system_time, env.now);
        // Runstate: vCPU 0 was runnable since 0; times add up to now.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_GET_RUNSTATE_INFO as u64, 0, 0x300, 0, 0]
            )
            .ret,
            0
        );
        let info: vcpu::VcpuRunstateInfo = env.get(0x300);
        assert_eq!(info.time.iter().sum::<u64>(), env.now);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_GET_RUNSTATE_INFO as u64, 0, BAD, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [77, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }
}
