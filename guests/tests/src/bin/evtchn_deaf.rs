//! An event flood at a vCPU that keeps interrupts off (a multi-domain guest: the
//! host-side test starts both roles; not in the single-dom0 suite). Xen kicks a running
//! vCPU only when its `evtchn_upcall_pending` goes from 0 to 1
//! (`vcpu_mark_events_pending`): events that arrive while the upcall waits to be taken
//! cost the receiver's CPU nothing. The host test reads the receiver's INTR exits in
//! rxen's exit profile.
//!
//! Command line: `role=deaf peer=<domid> [ms=<n>]` or
//! `role=flood peer=<domid> [count=<n>] [gap_us=<n>]`.
//! - deaf: offers its first port to the peer (`EVTCHNOP_alloc_unbound`), waits
//!   (blocking) for the peer's first event, then spins `ms` ms (default 1000) with
//!   interrupts off and without any exit while the peer floods it, then opens an
//!   interrupt window, checks that the flood is there (one upcall takes it) and prints
//!   `deaf: <n> ms deaf, <u> upcalls`.
//! - flood: binds to the peer's first offered port, sends one event, sleeps 50 ms (the
//!   peer goes deaf meanwhile), sends `count` events (default 1000), back to back or
//!   sleeping `gap_us` µs between two (so that a CPU kicked for each has the time to
//!   take each kick, even where the emulator runs both CPUs on one thread), and prints
//!   `flood: <count> events in <ns> ns`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::xen::{DomId, DOMID_SELF};
use rxen_guest::events::{
    alloc_unbound, bind_offered, count, send, set_up_timer_events, sleep_until, upcalls,
    wait_until, TRACKED_PORTS,
};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
/// How long either side waits for the other before it gives up.
const TIMEOUT: u64 = 10_000 * MS;

fn main(si: &StartInfo) {
    let Some(peer) = si.arg_u64("peer").and_then(|p| DomId::try_from(p).ok()) else {
        error!(
            "usage: role=deaf|flood peer=<domid> (got {:?})",
            si.cmdline()
        );
    };
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    match si.arg_value("role") {
        Some("deaf") => {
            // First, so that it is the first port offered to the peer.
            let port = match alloc_unbound(DOMID_SELF, peer) {
                Ok(p) => p,
                Err(e) => error!("EVTCHNOP_alloc_unbound(remote d{peer}): {e}"),
            };
            set_up_timer_events();
            deaf(port, si.arg_u64("ms").unwrap_or(1000));
        }
        Some("flood") => {
            set_up_timer_events();
            flood(
                peer,
                si.arg_u64("count").unwrap_or(1000),
                si.arg_u64("gap_us").unwrap_or(0).saturating_mul(1000),
            );
        }
        _ => error!("role must be deaf or flood (got {:?})", si.cmdline()),
    }
}

fn deaf(port: u32, ms: u64) {
    if port as usize >= TRACKED_PORTS {
        error!("port {port} is beyond the runtime's event counters");
    }
    println!("deaf: offering port {port}");
    check!(
        wait_until(TIMEOUT, || count(port) > 0),
        "no first event from the peer within 10 s"
    );
    // Interrupts are off (the wait returns so). No exit from here until the end:
    // reading the pvclock needs none.
    let before = upcalls();
    let end = now().saturating_add(ms.saturating_mul(MS));
    while now() < end {
        core::hint::spin_loop();
    }
    check_eq!(upcalls(), before, "no upcall while interrupts are off");
    // The flood left the port pending: one upcall takes it.
    check!(
        wait_until(TIMEOUT, || count(port) > 1),
        "the flood's events never arrived"
    );
    println!("deaf: {ms} ms deaf, {} upcalls", upcalls() - before);
}

fn flood(peer: DomId, events: u64, gap: u64) {
    let (port, _) = match bind_offered(peer, None, TIMEOUT) {
        Ok(p) => p,
        Err(e) => error!("EVTCHNOP_bind_interdomain(d{peer}): {e}"),
    };
    check_eq!(send(port), 0, "the first event");
    sleep_until(now() + 50 * MS);
    let start = now();
    for i in 0..events {
        check_eq!(send(port), 0, "flood event {i}");
        if gap > 0 {
            sleep_until(now().saturating_add(gap));
        }
    }
    println!("flood: {events} events in {} ns", now() - start);
}
