//! A CPU hog for the scheduler tests (several domains; not a test on its own).
//!
//! Command line: `until_ms=<n> [hypercalls=1]`. Spins (arithmetic, interrupts on) until
//! the pvclock's system time reaches `n` ms: absolute system time since boot, not since
//! this guest started, so that every hog of a run stops at the same moment. With
//! `hypercalls=1` it spins on null hypercalls (`xen_version`) instead, so that nearly
//! all its time is exits that return straight into it (issue 12's fast return), and
//! prints how many it made (`cpu_hog: <k> hypercalls`); without, how many rounds of
//! arithmetic (`cpu_hog: <k> rounds`). Prints
//! `cpu_hog: <k> s` each second of system time while spinning, then its own runstate:
//!
//! `cpu_hog: running <ns> runnable <ns> blocked <ns> at <system time ns>`
//!
//! and reports SUCCESS (the host-side test compares the running times of the hogs).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::xen_version;
use rxen_guest::time::{map_shared_info, now, runstate};
use rxen_guest::xen::vcpu;
use rxen_guest::{error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// Some arithmetic that the compiler cannot drop (an xorshift step).
fn churn(x: u64) -> u64 {
    let mut x = x;
    for _ in 0..256 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    core::hint::black_box(x)
}

fn main(si: &StartInfo) {
    let Some(until_ms) = si.arg_u64("until_ms") else {
        error!("usage: until_ms=<n> (got {:?})", si.cmdline());
    };
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    let until = until_ms.saturating_mul(MS);
    let start = now();
    println!(
        "cpu_hog: spinning from {} ms to {until_ms} ms system time",
        start / MS
    );
    let hypercalls = si.arg_u64("hypercalls").unwrap_or(0) != 0;
    rxen_guest::cpu::sti();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut calls = 0u64;
    let mut rounds = 0u64;
    let mut next_report = start + S;
    loop {
        if hypercalls {
            // SAFETY: XENVER_version takes no pointer.
            unsafe { xen_version(0, 0) };
            calls += 1;
        } else {
            x = churn(x);
            rounds += 1;
        }
        let t = now();
        if t >= until {
            break;
        }
        if t >= next_report {
            let k = (t - start) / S;
            println!("cpu_hog: {k} s");
            next_report = start + (k + 1) * S;
        }
    }
    rxen_guest::cpu::cli();
    if hypercalls {
        println!("cpu_hog: {calls} hypercalls");
    } else {
        println!("cpu_hog: {rounds} rounds");
    }
    let r = match runstate(0) {
        Ok(r) => r,
        Err(e) => error!("VCPUOP_get_runstate_info: {e}"),
    };
    let at = now();
    println!(
        "cpu_hog: running {} runnable {} blocked {} at {at}",
        r.time[vcpu::RUNSTATE_RUNNING as usize],
        r.time[vcpu::RUNSTATE_RUNNABLE as usize],
        r.time[vcpu::RUNSTATE_BLOCKED as usize],
    );
    core::hint::black_box(x);
}
