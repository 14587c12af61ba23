//! `HYPERVISOR_hvm_op`: get/set params (the callback IRQ a guest may set, params it may
//! not, bad indices, other domains), pagetable_dying, unknown sub-ops.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{hvm_get_param, hvm_op, hvm_set_param, ptr};
use rxen_guest::xen::{hvm, memory::DOMID_SELF, HvmPagetableDying, HvmParam};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn main(_si: &StartInfo) {
    // The callback IRQ: a guest may set it and read it back.
    check_eq!(
        hvm_get_param(hvm::PARAM_CALLBACK_IRQ),
        Ok(0),
        "callback irq unset at boot"
    );
    let via = hvm::CALLBACK_TYPE_VECTOR | 0xf3;
    check_eq!(
        hvm_set_param(hvm::PARAM_CALLBACK_IRQ, via),
        0,
        "set callback vector"
    );
    check_eq!(hvm_get_param(hvm::PARAM_CALLBACK_IRQ), Ok(via), "read back");
    check_eq!(
        hvm_set_param(hvm::PARAM_CALLBACK_IRQ, 0),
        0,
        "clear it again"
    );

    // Params a guest may not read for itself: -EPERM (Xen 4.17's hvm_allow_get_param).
    check_eq!(
        hvm_get_param(hvm::PARAM_TIMER_MODE),
        Err(err::EPERM),
        "get TIMER_MODE"
    );
    check_eq!(
        hvm_get_param(hvm::PARAM_HPET_ENABLED),
        Err(err::EPERM),
        "get HPET_ENABLED"
    );
    check_eq!(
        hvm_get_param(hvm::PARAM_STORE_PFN),
        Ok(0),
        "dom0 has no xenstore page"
    );
    check_eq!(
        hvm_get_param(hvm::PARAM_CONSOLE_PFN),
        Ok(0),
        "dom0 has no console page"
    );
    // NESTEDHVM: -EINVAL for get and set (nested HVM is not compiled into this Xen's
    // param handling for a guest; measured on 4.17).
    check_eq!(
        hvm_get_param(hvm::PARAM_NESTEDHVM),
        Err(err::EINVAL),
        "get NESTEDHVM"
    );
    check_eq!(
        hvm_set_param(hvm::PARAM_NESTEDHVM, 1),
        err::EINVAL,
        "set NESTEDHVM"
    );

    // A few params read as dom0 sees them (printed for the record).
    for idx in [
        hvm::PARAM_STORE_PFN,
        hvm::PARAM_STORE_EVTCHN,
        hvm::PARAM_TIMER_MODE,
        hvm::PARAM_HPET_ENABLED,
        hvm::PARAM_CONSOLE_PFN,
        hvm::PARAM_NESTEDHVM,
    ] {
        println!("get_param({idx}) = {:?}", hvm_get_param(idx));
    }

    // Params a guest may not set for itself: -EPERM.
    for idx in [
        hvm::PARAM_STORE_PFN,
        hvm::PARAM_IDENT_PT,
        hvm::PARAM_TIMER_MODE,
    ] {
        check_eq!(
            hvm_set_param(idx, 1),
            err::EPERM,
            "set_param({idx}) by the guest"
        );
    }
    // ... but the event channel ones it may (STORE_EVTCHN is guest-settable).
    let old = hvm_get_param(hvm::PARAM_STORE_EVTCHN).unwrap_or(0);
    check_eq!(
        hvm_set_param(hvm::PARAM_STORE_EVTCHN, 5),
        0,
        "set STORE_EVTCHN"
    );
    check_eq!(hvm_get_param(hvm::PARAM_STORE_EVTCHN), Ok(5));
    check_eq!(hvm_set_param(hvm::PARAM_STORE_EVTCHN, old), 0);

    // Bad index: -EINVAL.
    for idx in [hvm::NR_PARAMS, 1000, u32::MAX] {
        check_eq!(hvm_get_param(idx), Err(err::EINVAL), "get_param({idx})");
        check_eq!(hvm_set_param(idx, 0), err::EINVAL, "set_param({idx})");
    }
    // Another domain that does not exist: -ESRCH.
    let p = HvmParam {
        domid: 1234,
        index: hvm::PARAM_CALLBACK_IRQ,
        ..Default::default()
    };
    check_eq!(
        // SAFETY: a valid xen_hvm_param.
        unsafe { hvm_op(hvm::GET_PARAM, ptr(&p)) },
        err::ESRCH,
        "no such domain"
    );
    check_eq!(
        // SAFETY: Xen validates the pointer.
        unsafe { hvm_op(hvm::GET_PARAM, UNMAPPED) },
        err::EFAULT,
        "bad pointer"
    );

    // pagetable_dying is a shadow-paging hint: with HAP Xen 4.17 refuses it (-EINVAL).
    let pd = HvmPagetableDying {
        domid: DOMID_SELF,
        gpa: 0x20_0000,
        ..Default::default()
    };
    // SAFETY: a valid xen_hvm_pagetable_dying.
    let rc = unsafe { hvm_op(hvm::PAGETABLE_DYING, ptr(&pd)) };
    println!("pagetable_dying: {rc}");
    check!(
        rc == PAGETABLE_DYING_HAP,
        "pagetable_dying with HAP gave {rc}"
    );

    for cmd in [3u64, 100, 0xffff] {
        // SAFETY: no pointer for these.
        let rc = unsafe { hvm_op(cmd, 0) };
        println!("hvm_op({cmd}): {rc}");
        check_eq!(rc, err::ENOSYS, "unknown sub-op {cmd}");
    }
}

/// What Xen 4.17 answers `HVMOP_pagetable_dying` on a HAP domain.
const PAGETABLE_DYING_HAP: i64 = err::EINVAL;
