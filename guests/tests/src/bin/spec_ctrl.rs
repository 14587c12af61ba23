//! The speculation-control MSRs as Xen gives them to an HVM guest (`guest_rdmsr`,
//! `guest_wrmsr`): MSR_SPEC_CTRL (0x48) exists if CPUID offers IBRS (7.0 EDX IBRSB or
//! 8000_0008 EBX IBRS) and takes IBRS, STIBP and, if offered, SSBD; MSR_PRED_CMD (0x49)
//! is write-only and takes only IBPB, if offered; MSR_VIRT_SPEC_CTRL (0xC001_011F) keeps
//! only SSBD and ignores other bits, if VIRT_SSBD is offered. Everything else is #GP. A value the guest sets is
//! its own: it reads it back. Prints `spec_ctrl: offered ...`.
//!
//! `virt_ssbd_set=no` skips setting VIRT_SPEC_CTRL.SSBD: Xen 4.17.5 under QEMU's TCG
//! (`-cpu EPYC`) offers VIRT_SSBD through AMD's legacy LS_CFG method and hits a BUG
//! (`amd_set_legacy_ssbd`, arch/x86/cpu/amd.c:814: a host crash) when a guest sets it.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::boot::set_trap_hook;
use rxen_guest::cpu::cpuid;
use rxen_guest::cpu::{msr_gp_hook, try_rdmsr, try_wrmsr};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

const MSR_SPEC_CTRL: u32 = 0x48;
const MSR_PRED_CMD: u32 = 0x49;
const MSR_VIRT_SPEC_CTRL: u32 = 0xC001_011F;

/// RDMSR; None if it took #GP.
fn rdmsr(msr: u32) -> Option<u64> {
    try_rdmsr(msr)
}

/// WRMSR; false if it took #GP.
fn wrmsr(msr: u32, value: u64) -> bool {
    // SAFETY: these MSRs only change this vCPU's speculation controls.
    unsafe { try_wrmsr(msr, value) }
}

fn main(si: &StartInfo) {
    set_trap_hook(Some(msr_gp_hook));
    let l7_edx = cpuid(7, 0).edx;
    let max_ext = cpuid(0x8000_0000, 0).eax;
    let ext8_ebx = if max_ext >= 0x8000_0008 {
        cpuid(0x8000_0008, 0).ebx
    } else {
        0
    };
    let ibrs = l7_edx & (1 << 26) != 0 || ext8_ebx & (1 << 14) != 0;
    let ibpb = l7_edx & (1 << 26) != 0 || ext8_ebx & (1 << 12) != 0;
    let ssbd = l7_edx & (1 << 31) != 0 || ext8_ebx & (1 << 24) != 0;
    let virt_ssbd = ext8_ebx & (1 << 25) != 0;
    println!("spec_ctrl: offered ibrs={ibrs} ibpb={ibpb} ssbd={ssbd} virt_ssbd={virt_ssbd}");

    if ibrs {
        check_eq!(rdmsr(MSR_SPEC_CTRL), Some(0), "SPEC_CTRL starts at 0");
        let mine = 1 | 2 | if ssbd { 4 } else { 0 };
        check!(wrmsr(MSR_SPEC_CTRL, mine), "IBRS|STIBP(|SSBD) accepted");
        check_eq!(rdmsr(MSR_SPEC_CTRL), Some(mine), "SPEC_CTRL reads back");
        check!(
            !wrmsr(MSR_SPEC_CTRL, 1 << 63),
            "reserved SPEC_CTRL bit: #GP"
        );
        if !ssbd {
            check!(!wrmsr(MSR_SPEC_CTRL, 4), "SSBD not offered: #GP");
        }
        check!(wrmsr(MSR_SPEC_CTRL, 0), "SPEC_CTRL back to 0");
    } else {
        check_eq!(rdmsr(MSR_SPEC_CTRL), None, "no IBRS: SPEC_CTRL read #GP");
        check!(!wrmsr(MSR_SPEC_CTRL, 0), "no IBRS: SPEC_CTRL write #GP");
    }
    check_eq!(rdmsr(MSR_PRED_CMD), None, "PRED_CMD is write-only");
    if ibpb {
        check!(wrmsr(MSR_PRED_CMD, 1), "IBPB");
        check!(wrmsr(MSR_PRED_CMD, 0), "PRED_CMD 0");
        check!(!wrmsr(MSR_PRED_CMD, 2), "reserved PRED_CMD bit: #GP");
    } else {
        check!(!wrmsr(MSR_PRED_CMD, 1), "no IBPB: PRED_CMD #GP");
    }
    if virt_ssbd {
        check_eq!(
            rdmsr(MSR_VIRT_SPEC_CTRL),
            Some(0),
            "VIRT_SPEC_CTRL starts at 0"
        );
        // As Xen: bits other than SSBD are ignored, not refused.
        check!(
            wrmsr(MSR_VIRT_SPEC_CTRL, 1),
            "other VIRT_SPEC_CTRL bits ignored"
        );
        check_eq!(rdmsr(MSR_VIRT_SPEC_CTRL), Some(0), "and not kept");
        if si.arg_value("virt_ssbd_set") != Some("no") {
            check!(wrmsr(MSR_VIRT_SPEC_CTRL, 4), "VIRT_SPEC_CTRL.SSBD");
            check_eq!(
                rdmsr(MSR_VIRT_SPEC_CTRL),
                Some(4),
                "VIRT_SPEC_CTRL reads back"
            );
            check!(wrmsr(MSR_VIRT_SPEC_CTRL, 0), "VIRT_SPEC_CTRL back to 0");
        }
    } else {
        check_eq!(rdmsr(MSR_VIRT_SPEC_CTRL), None, "no VIRT_SSBD: #GP");
    }
    set_trap_hook(None);
}
