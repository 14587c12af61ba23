//! vCPU context-switch cost: two domains on one physical CPU, each yielding
//! (`SCHEDOP_yield`) in a loop, so that every yield switches to the other domain and
//! back. Command line: `yields=<n>` (default 2000). The mean time of one yield is a
//! round trip of two switches (away and back) plus the other side's yield; the guest
//! prints `bench_switch: <n> yields, mean <ns> ns per round trip, null hypercall <ns>
//! ns` (parsed by `cargo xtask bench`) and its running share, which must be about half
//! when both run at once (checked by the host).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{null_hypercall_ns, sched_op};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::sched;
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

fn main(si: &StartInfo) {
    let n = si.arg_u64("yields").unwrap_or(2000).max(1);
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    let null = null_hypercall_ns(1000);
    check!(null.is_some(), "xen_version calls failed");
    let mut failed = 0;
    let t0 = now();
    for _ in 0..n {
        // SAFETY: SCHEDOP_yield takes no argument.
        if unsafe { sched_op(sched::YIELD, 0) } != 0 {
            failed += 1;
        }
    }
    let mean = (now() - t0) / n;
    check_eq!(failed, 0, "yields that failed");
    println!(
        "bench_switch: {n} yields, mean {mean} ns per round trip, null hypercall {} ns",
        null.unwrap_or(0)
    );
}
