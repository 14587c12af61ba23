//! The hypercall page: Xen's stubs (`mov $nr, %eax; vmmcall; ret`, `ud2` for iret) and
//! hypercalls through it give the same answers as raw `VMMCALL`s.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{hypercall_via_page, page, vmmcall};
use rxen_guest::xen::{hypercall as nr, xenver};
use rxen_guest::{check, check_eq, error, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    let Some(p) = page() else {
        error!("no hypercall page installed");
    };
    // SAFETY: the installed hypercall page is one readable page.
    let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, 4096) };
    for op in [0u64, 17, 18, 29, 34, 127] {
        let s = &bytes[op as usize * 32..op as usize * 32 + 9];
        let mut want = [0xb8, op as u8, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3];
        want[1] = op as u8;
        check_eq!(s, &want[..], "stub {op}: mov $op, %eax; vmmcall; ret");
    }
    // __HYPERVISOR_iret (23) is not supported for HVM: the stub is ud2.
    check_eq!(
        &bytes[23 * 32..23 * 32 + 2],
        &[0x0f, 0x0b][..],
        "iret stub is ud2"
    );

    let calls: [(u64, [u64; 5]); 4] = [
        (nr::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0]),
        (nr::XEN_VERSION, [xenver::PAGESIZE, 0, 0, 0, 0]),
        (nr::XEN_VERSION, [999, 0, 0, 0, 0]),
        (60, [0; 5]),
    ];
    for (op, args) in calls {
        // SAFETY: none of these calls takes a pointer.
        let (a, b) = unsafe { (hypercall_via_page(p, op, args), vmmcall(op, args)) };
        check_eq!(a, b, "op {op} args {args:?}: page vs vmmcall");
    }
    // Rewriting the MSR with the same page is allowed.
    let msr = rxen_guest::cpu::cpuid(0x4000_0002, 0).ebx;
    // SAFETY: the MSR Xen named; our own page again.
    unsafe { rxen_guest::cpu::wrmsr(msr, p) };
    check_eq!(
        // SAFETY: no pointer arguments.
        unsafe { hypercall_via_page(p, nr::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0]) },
        0x0004_0011
    );
    check!(
        bytes[4095] == 0xcc || bytes[4095] == 0,
        "rest of the page is padding"
    );
}
