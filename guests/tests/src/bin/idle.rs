//! An idle domain for benchmarks and scheduling tests (not a test on its own): prints
//! `idle: blocking`, then blocks (`SCHEDOP_block`) for as long as the machine runs,
//! blocking again whenever an event wakes it. It never reports a result: the run stops
//! on another guest's output.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::println;
use rxen_guest::StartInfo;

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    println!("idle: blocking");
    rxen_guest::cpu::cli();
    loop {
        rxen_guest::events::block_once();
    }
}
