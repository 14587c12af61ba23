//! Benchmark guest (not a test): the round trip of a null hypercall
//! (`xen_version(XENVER_version)` through the hypercall page) against a bare
//! `VMMCALL` exit whose handler does nothing but answer `-ENOSYS` (an unknown
//! hypercall number), and of a read of the local APIC's TPR in xAPIC mode (an
//! emulated MMIO access: a nested page fault, the instruction fetched and
//! decoded), then of the same read in x2APIC mode (`RDMSR` of MSR 0x808: an
//! MSR exit, nothing to decode). Prints `BENCH <name> <ns per call>` lines
//! that `cargo xtask bench` reads; runs unchanged on rxen and on Xen.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::cpu::{cpuid, rdmsr, rdtsc, wrmsr, xen_cpuid_base};
use rxen_guest::hypercall::{vmmcall, xen_version};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

/// Calls per measurement.
const ROUNDS: u64 = 5_000;
/// Measurements of each kind.
const TRIALS: u32 = 5;
/// A hypercall number no hypervisor implements.
const UNKNOWN_HYPERCALL: u64 = 0xFFFF;
/// The local APIC's task priority register at the default xAPIC base.
const APIC_TPR: u64 = 0xFEE0_0080;

/// IA32_APIC_BASE and its x2APIC-mode bit.
const APIC_BASE_MSR: u32 = 0x1B;
const APIC_BASE_EXTD: u64 = 1 << 10;
/// The TPR in x2APIC mode.
const X2APIC_TPR: u32 = 0x808;

/// Reads the TPR through the xAPIC page (an MMIO exit).
fn apic_tpr() -> u32 {
    // SAFETY: the xAPIC page is mapped (the runtime maps the low 4 GiB) and
    // the hypervisor emulates it; reading the TPR has no side effect.
    unsafe { core::ptr::read_volatile(APIC_TPR as *const u32) }
}

fn main(_si: &StartInfo) {
    let base = xen_cpuid_base().unwrap_or(0x4000_0000);
    let leaf = cpuid(base + 3, 0);
    let khz = if leaf.ecx != 0 {
        leaf.ecx
    } else {
        cpuid(base + 3, 2).eax
    };
    check!(khz > 0, "TSC frequency known");
    let ns = |ticks: u64| ticks as u128 * 1_000_000 / u128::from(khz.max(1));

    // Warm up the three paths.
    for _ in 0..1000 {
        // SAFETY: no pointers.
        unsafe {
            xen_version(0, 0);
            vmmcall(UNKNOWN_HYPERCALL, [0; 5]);
        }
        apic_tpr();
    }

    // Alternate the three measurements and keep the best of each: emulation
    // shares the host with other work, and the minimum is the least disturbed.
    let (mut null_hypercall, mut empty_exit, mut mmio) = (u128::MAX, u128::MAX, u128::MAX);
    for _ in 0..TRIALS {
        let start = rdtsc();
        for _ in 0..ROUNDS {
            // SAFETY: XENVER_version takes no pointer.
            check_eq!(unsafe { xen_version(0, 0) } >> 16, 4, "xen_version");
        }
        null_hypercall = null_hypercall.min(ns(rdtsc() - start) / u128::from(ROUNDS));

        let start = rdtsc();
        for _ in 0..ROUNDS {
            // SAFETY: no pointers; the hypervisor answers -ENOSYS.
            unsafe { vmmcall(UNKNOWN_HYPERCALL, [0; 5]) };
        }
        empty_exit = empty_exit.min(ns(rdtsc() - start) / u128::from(ROUNDS));

        let start = rdtsc();
        for _ in 0..ROUNDS {
            core::hint::black_box(apic_tpr());
        }
        mmio = mmio.min(ns(rdtsc() - start) / u128::from(ROUNDS));
    }

    // x2APIC mode (offered by CPUID leaf 1 on both hypervisors), the TPR by MSR.
    check!(cpuid(1, 0).ecx & (1 << 21) != 0, "x2APIC offered");
    // SAFETY: the switch to x2APIC mode only changes how this vCPU's emulated
    // APIC is reached; reading the TPR has no side effect.
    let x2apic = unsafe {
        wrmsr(APIC_BASE_MSR, rdmsr(APIC_BASE_MSR) | APIC_BASE_EXTD);
        for _ in 0..1000 {
            rdmsr(X2APIC_TPR);
        }
        let mut best = u128::MAX;
        for _ in 0..TRIALS {
            let start = rdtsc();
            for _ in 0..ROUNDS {
                core::hint::black_box(rdmsr(X2APIC_TPR));
            }
            best = best.min(ns(rdtsc() - start) / u128::from(ROUNDS));
        }
        best
    };

    println!("BENCH null_hypercall_ns {null_hypercall}");
    println!("BENCH empty_vmmcall_ns {empty_exit}");
    println!("BENCH apic_read_ns {mmio}");
    println!("BENCH x2apic_read_ns {x2apic}");
}
