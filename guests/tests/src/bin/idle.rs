//! An idle domain for benchmarks and scheduling tests (not a test on its own): prints
//! `idle: blocking`, then blocks (`SCHEDOP_block`) for as long as the machine runs,
//! blocking again whenever an event wakes it. It never reports a result: the run stops
//! on another guest's output.
//!
//! Command line: `[tick_us=<n>]`: with it, the domain wakes every `n` µs instead (a
//! single-shot timer, then blocks until it fires), printing `idle: ticking every <n> us`
//! first: a domain whose timers keep its CPU busy while doing nothing else. Or
//! `until_ms=<n>`: one single-shot timer at `n` ms of system time (absolute, so that
//! every such domain of a run wakes at the same moment), blocked until it fires; then
//! it prints `idle: woke at <ms> ms` and reports SUCCESS (the machine can end).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::println;
use rxen_guest::StartInfo;

rxen_guest::entry!(main);

fn main(si: &StartInfo) {
    rxen_guest::cpu::cli();
    if let Some(tick) = si.arg_u64("tick_us").filter(|&t| t > 0) {
        if rxen_guest::time::map_shared_info() != 0 {
            rxen_guest::error!("cannot map shared info");
        }
        rxen_guest::events::set_up_timer_events();
        println!("idle: ticking every {tick} us");
        loop {
            rxen_guest::events::sleep_until(
                rxen_guest::time::now().saturating_add(tick.saturating_mul(1000)),
            );
        }
    }
    if let Some(until_ms) = si.arg_u64("until_ms") {
        if rxen_guest::time::map_shared_info() != 0 {
            rxen_guest::error!("cannot map shared info");
        }
        rxen_guest::events::set_up_timer_events();
        println!("idle: sleeping until {until_ms} ms");
        rxen_guest::events::sleep_until(until_ms.saturating_mul(1_000_000));
        println!("idle: woke at {} ms", rxen_guest::time::now() / 1_000_000);
        return;
    }
    println!("idle: blocking");
    loop {
        rxen_guest::events::block_once();
    }
}
