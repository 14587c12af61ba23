//! The pvclock: monotonic across many reads (also across hypercalls), and its rate
//! matches the TSC frequency Xen reports in CPUID leaf base+3 within 1%.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::cpu::{cpuid, rdtsc, xen_cpuid_base};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    let base = xen_cpuid_base().unwrap_or(0x4000_0000);
    let l3 = cpuid(base + 3, 0);
    let l3_1 = cpuid(base + 3, 1);
    let l3_2 = cpuid(base + 3, 2);
    println!("tsc leaf: {:x?} / {:x?} / {:x?}", l3, l3_1, l3_2);
    let khz = if l3.ecx != 0 { l3.ecx } else { l3_2.eax };
    check!(khz > 0, "TSC frequency known");

    // Monotonic: 20000 reads, some with hypercalls in between.
    let mut last = now();
    let mut backwards = 0u32;
    for i in 0..20_000u32 {
        if i % 1000 == 0 {
            // SAFETY: no pointer.
            unsafe { rxen_guest::hypercall::xen_version(0, 0) };
        }
        let t = now();
        if t < last {
            backwards += 1;
            if backwards < 5 {
                println!("pvclock went back: {last} -> {t}");
            }
        }
        last = t;
    }
    check_eq!(backwards, 0, "reads that went backwards");

    // Rate: over about 50 ms of pvclock time. Each sample is a TSC read with the
    // pvclock read just before and just after it close together, so that a vCPU
    // descheduled between the two reads (beside other domains) does not count.
    let (t0, c0) = paired();
    let (mut t1, mut c1) = (t0, c0);
    while t1 - t0 < 50_000_000 {
        (t1, c1) = paired();
    }
    let ns = t1 - t0;
    let from_tsc = (c1 - c0) as u128 * 1_000_000 / u128::from(khz.max(1));
    println!(
        "pvclock {ns} ns vs TSC {from_tsc} ns ({} ticks at {khz} kHz)",
        c1 - c0
    );
    let diff = (ns as i128 - from_tsc as i128).unsigned_abs();
    check!(
        diff * 100 <= ns as u128,
        "pvclock and TSC agree within 1% ({diff} ns)"
    );
}

/// A (pvclock, TSC) pair read within 200 us of each other (the last try after 1000).
fn paired() -> (u64, u64) {
    let mut pair = (0, 0);
    for _ in 0..1000 {
        let before = now();
        let tsc = rdtsc();
        let after = now();
        pair = (before + (after - before) / 2, tsc);
        if after - before < 200_000 {
            break;
        }
    }
    pair
}
