//! A periodic real-time-style task for the scheduler tests (several domains; not a test
//! on its own).
//!
//! Command line: `period_us=<p> work_us=<w> periods=<n>`. Periods are laid on a fixed
//! grid from the start (period i is [t0 + i p, t0 + (i + 1) p)). In each period the
//! guest runs `w` us of its own running time (measured with `VCPUOP_get_runstate_info`'s
//! running time, so time spent preempted does not count), then sleeps (single-shot timer
//! at the period's end + `SCHEDOP_block`) until the next boundary. Work that finishes
//! after the period's end is a deadline miss; slack is end - finish (negative for a
//! miss). At the end it prints
//!
//! `rt_periodic: <n> periods, <misses> deadline misses, worst slack <ns>`
//!
//! and reports SUCCESS: the host-side test decides how many misses are acceptable.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::events::{bind_virq_timer, enable_callback_vector, sleep_until};
use rxen_guest::hypercall::vcpu_op;
use rxen_guest::time::{map_shared_info, now, running_ns};
use rxen_guest::xen::vcpu;
use rxen_guest::{check, error, println, StartInfo};

rxen_guest::entry!(main);

/// Runs until this vCPU has run `work_ns` more: spins on the pvclock for the part still
/// missing (running time grows at most as fast as system time, so this never
/// overshoots by more than a hypercall), then asks the runstate again.
fn work(work_ns: u64) {
    let ran0 = running_ns();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    loop {
        let ran = running_ns() - ran0;
        if ran >= work_ns {
            break;
        }
        let until = now() + (work_ns - ran);
        while now() < until {
            x = x.rotate_left(7).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x55;
        }
    }
    core::hint::black_box(x);
}

fn main(si: &StartInfo) {
    let (Some(period_us), Some(work_us), Some(periods)) = (
        si.arg_u64("period_us"),
        si.arg_u64("work_us"),
        si.arg_u64("periods"),
    ) else {
        error!(
            "usage: period_us=<p> work_us=<w> periods=<n> (got {:?})",
            si.cmdline()
        );
    };
    if period_us == 0 {
        error!("period_us must be > 0");
    }
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    // SAFETY: VCPUOP_stop_periodic_timer takes no argument.
    let rc = unsafe { vcpu_op(vcpu::STOP_PERIODIC_TIMER, 0, 0) };
    check!(rc == 0, "VCPUOP_stop_periodic_timer: {rc}");
    if let Err(e) = bind_virq_timer() {
        error!("EVTCHNOP_bind_virq(VIRQ_TIMER): {e}");
    }
    let rc = enable_callback_vector();
    if rc != 0 {
        error!("HVM_PARAM_CALLBACK_IRQ: {rc}");
    }
    println!("rt_periodic: period {period_us} us, work {work_us} us, {periods} periods");
    let period = period_us * 1000;
    let work_ns = work_us * 1000;
    let mut misses = 0u64;
    let mut worst_slack = i64::MAX;
    let t0 = now();
    for i in 0..periods {
        let end = t0 + (i + 1) * period;
        work(work_ns);
        let done = now();
        let slack = end as i64 - done as i64;
        if slack < 0 {
            misses += 1;
        }
        worst_slack = worst_slack.min(slack);
        sleep_until(end);
    }
    if periods == 0 {
        worst_slack = 0;
    }
    println!("rt_periodic: {periods} periods, {misses} deadline misses, worst slack {worst_slack}");
}
