//! `hvm_op` (Xen's arch/x86/hvm/hvm.c): HVM parameters, the time, the
//! per-vCPU upcall vector.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::hvm;

use super::Ctx;
use super::{from_result, upcall_pending, Outcome, DOMID_SELF};
use crate::guest_handle::GuestHandle;
use crate::platform::lend_domain;

/// May a guest set HVM param `index` on itself (Xen's hvm_allow_set_param)?
fn guest_may_set_param(index: u32) -> bool {
    matches!(
        index,
        hvm::HVM_PARAM_CALLBACK_IRQ
            | hvm::HVM_PARAM_VM86_TSS
            | hvm::HVM_PARAM_VM86_TSS_SIZED
            | hvm::HVM_PARAM_ACPI_IOPORTS_LOCATION
            | hvm::HVM_PARAM_VM_GENERATION_ID_ADDR
            | hvm::HVM_PARAM_STORE_EVTCHN
            | hvm::HVM_PARAM_CONSOLE_EVTCHN
            | hvm::HVM_PARAM_X87_FIP_WIDTH
    )
}

/// May a guest read HVM param `index` of itself (Xen's hvm_allow_get_param)?
fn guest_may_get_param(index: u32) -> bool {
    guest_may_set_param(index)
        || matches!(
            index,
            hvm::HVM_PARAM_STORE_PFN | hvm::HVM_PARAM_CONSOLE_PFN | hvm::HVM_PARAM_ALTP2M
        )
}

/// `hvm_op(op, arg)`.
pub(super) fn do_hvm_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(hvm_op(ctx, args[0], args[1]))
}

fn hvm_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, env) = (&mut *ctx.domain, &mut *ctx.env);
    // Xen takes `unsigned long op`: a value above 32 bits is no operation.
    let cmd = u32::try_from(cmd).map_err(|_| errno::ENOSYS)?;
    match cmd {
        hvm::HVMOP_SET_PARAM | hvm::HVMOP_GET_PARAM => {
            let mut param = GuestHandle::<hvm::XenHvmParam>::new(arg).read(env)?;
            // NESTEDHVM is refused outright (Xen: nested virtualization of a
            // PVH domain cannot be changed or read by it).
            if param.index >= hvm::HVM_NR_PARAMS || param.index == hvm::HVM_PARAM_NESTEDHVM {
                return Err(errno::EINVAL);
            }
            if param.domid != DOMID_SELF && param.domid != domain.id {
                // The toolstack sets and reads a domain it builds (the
                // store and console pages and ports...).
                if !domain.privileged {
                    return Err(errno::EPERM);
                }
                let slot = param.index as usize;
                let value = param.value;
                let read = lend_domain(domain, env, param.domid, |d, _| {
                    let p = d.hvm_params.get_mut(slot).ok_or(errno::EINVAL)?;
                    if cmd == hvm::HVMOP_SET_PARAM {
                        *p = value;
                    }
                    Ok::<u64, Errno>(*p)
                })??;
                if cmd == hvm::HVMOP_GET_PARAM {
                    param.value = read;
                    GuestHandle::new(arg).write(env, &param)?;
                }
                return Ok(0);
            }
            if cmd == hvm::HVMOP_SET_PARAM {
                if !guest_may_set_param(param.index) {
                    return Err(errno::EPERM);
                }
                *domain
                    .hvm_params
                    .get_mut(param.index as usize)
                    .ok_or(errno::EINVAL)? = param.value;
                Ok(0)
            } else {
                if !guest_may_get_param(param.index) {
                    return Err(errno::EPERM);
                }
                param.value = *domain
                    .hvm_params
                    .get(param.index as usize)
                    .ok_or(errno::EINVAL)?;
                GuestHandle::new(arg).write(env, &param).map(|_| 0)
            }
        }
        hvm::HVMOP_PAGETABLE_DYING => {
            let request = GuestHandle::<hvm::XenHvmPagetableDying>::new(arg).read(env)?;
            if request.domid != DOMID_SELF && request.domid != domain.id {
                return Err(errno::EINVAL);
            }
            // A shadow-paging hint: with nested paging (HAP) Xen 4.17 refuses
            // it with -EINVAL.
            Err(errno::EINVAL)
        }
        hvm::HVMOP_GET_TIME => {
            let now = env.now_ns();
            GuestHandle::new(arg).write(env, &now).map(|_| 0)
        }
        hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
            let request = GuestHandle::<hvm::XenHvmEvtchnUpcallVector>::new(arg).read(env)?;
            if request.vector < 0x10 {
                return Err(errno::EINVAL);
            }
            let vcpu = domain
                .vcpus
                .get_mut(request.vcpu as usize)
                .ok_or(errno::ENOENT)?;
            vcpu.upcall_vector = Some(request.vector);
            // An upcall already pending is raised on the new vector.
            let target = request.vcpu as usize;
            if upcall_pending(domain, target, env) {
                if let Some(vcpu) = domain.vcpus.get_mut(target) {
                    vcpu.lapic.set_irq(request.vector);
                }
            }
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, domu, ret, FakeEnv, BAD};
    use rxen_abi::xen;

    #[test]
    fn hvm_params_follow_xens_rules() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_HVM_OP;
        let mut param = hvm::XenHvmParam {
            domid: 0x7FF0,
            pad: 0,
            index: hvm::HVM_PARAM_CALLBACK_IRQ,
            value: 2 << 56 | 0xf3,
        };
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        param.value = 0;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.get::<hvm::XenHvmParam>(0x100).value, 2 << 56 | 0xf3);
        // Only the toolstack sets the console page; a guest gets -EPERM.
        param.index = hvm::HVM_PARAM_CONSOLE_PFN;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        param.index = hvm::HVM_NR_PARAMS;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        param.index = hvm::HVM_PARAM_CALLBACK_IRQ;
        param.domid = 0;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, BAD, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [1 << 32, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn the_toolstack_sets_and_reads_a_domains_params() {
        use crate::test_support::{peer, two_domains};
        let nr = xen::HYPERVISOR_HVM_OP;
        let (mut d, mut env) = two_domains();
        let op = |d: &mut crate::domain::Domain,
                  env: &mut FakeEnv,
                  cmd: u32,
                  param: hvm::XenHvmParam| {
            env.put(0x100, &param);
            let rc = call(d, env, nr, [cmd as u64, 0x100, 0, 0, 0]).ret;
            (rc, env.get::<hvm::XenHvmParam>(0x100).value)
        };
        let store = |domid, value| hvm::XenHvmParam {
            domid,
            index: hvm::HVM_PARAM_STORE_PFN,
            value,
            ..Default::default()
        };
        // A domU cannot reach another domain's params.
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_SET_PARAM, store(2, 0xfeffc)).0,
            ret(errno::EPERM)
        );
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_GET_PARAM, store(2, 0)).0,
            ret(errno::EPERM)
        );
        d.privileged = true;
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_SET_PARAM, store(2, 0xfeffc)),
            (0, 0xfeffc)
        );
        assert_eq!(
            peer(&mut env).0.hvm_params[hvm::HVM_PARAM_STORE_PFN as usize],
            0xfeffc
        );
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_GET_PARAM, store(2, 0)),
            (0, 0xfeffc)
        );
        assert_eq!(d.hvm_params[hvm::HVM_PARAM_STORE_PFN as usize], 0);
        // An unknown domain, a bad index.
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_SET_PARAM, store(9, 1)).0,
            ret(errno::ESRCH)
        );
        let bad = hvm::XenHvmParam {
            index: hvm::HVM_NR_PARAMS,
            ..store(2, 1)
        };
        assert_eq!(
            op(&mut d, &mut env, hvm::HVMOP_SET_PARAM, bad).0,
            ret(errno::EINVAL)
        );
    }
}
