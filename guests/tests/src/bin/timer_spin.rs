//! Single-shot timers fire on time while the vCPU spins on null hypercalls (a
//! scheduling test, not in the single-dom0 suite): each hypercall returns straight into
//! the guest (issue 12), and the timer set by one of them must still fire when due, not
//! when the hypervisor next happens to look.
//!
//! Command line: `[rounds=<n>]` (default 100). Each round sets a single-shot timer 1 ms
//! ahead and spins on `xen_version` with interrupts on until `VIRQ_TIMER` arrives; then
//! prints `timer_spin: <n> timers, mean lateness <ns> ns, worst <ns> ns`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::events::{bind_virq_timer, count, enable_callback_vector};
use rxen_guest::hypercall::{vcpu_op, xen_version};
use rxen_guest::time::{map_shared_info, now, set_singleshot_timer};
use rxen_guest::xen::vcpu;
use rxen_guest::{check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
/// A timer this late is lost: the round fails.
const GIVE_UP: u64 = 5_000 * MS;

fn main(si: &StartInfo) {
    let rounds = si.arg_u64("rounds").unwrap_or(100);
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    // SAFETY: VCPUOP_stop_periodic_timer takes no argument.
    let rc = unsafe { vcpu_op(vcpu::STOP_PERIODIC_TIMER, 0, 0) };
    check_eq!(rc, 0, "VCPUOP_stop_periodic_timer");
    let port = match bind_virq_timer() {
        Ok(p) => p,
        Err(e) => error!("EVTCHNOP_bind_virq(VIRQ_TIMER): {e}"),
    };
    check_eq!(enable_callback_vector(), 0, "HVM_PARAM_CALLBACK_IRQ");
    let (mut total, mut worst) = (0u64, 0u64);
    for i in 0..rounds {
        let seen = count(port);
        let due = now() + MS;
        check_eq!(set_singleshot_timer(due), 0, "VCPUOP_set_singleshot_timer");
        rxen_guest::cpu::sti();
        while count(port) == seen {
            if now() > due + GIVE_UP {
                rxen_guest::cpu::cli();
                error!("timer {i} did not fire within 5 s of its deadline");
            }
            // SAFETY: XENVER_version takes no pointer.
            unsafe { xen_version(0, 0) };
        }
        rxen_guest::cpu::cli();
        let late = now().saturating_sub(due);
        total += late;
        worst = worst.max(late);
    }
    println!(
        "timer_spin: {rounds} timers, mean lateness {} ns, worst {worst} ns",
        total.checked_div(rounds).unwrap_or(0)
    );
}
