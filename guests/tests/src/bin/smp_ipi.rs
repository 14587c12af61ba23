//! A second vCPU and IPIs: vCPU 0 starts vCPU 1 with `VCPUOP_initialise` (a 64-bit
//! `vcpu_hvm_context`, hvm_vcpu.h) and `VCPUOP_up`, binds an IPI port per vCPU
//! (`EVTCHNOP_bind_ipi`), and the two exchange 100 IPIs; then vCPU 0 takes vCPU 1
//! down. Prints `smp_ipi: <n> IPI round trips, mean <ns> ns`. With `spin=1` vCPU 0
//! waits for each answer spinning on null hypercalls (interrupts on) instead of
//! blocking: its IPI must still wake vCPU 1 at once, though vCPU 0's hypercalls return
//! straight into it (issue 12).
//!
//! Needs two vCPUs (e.g. `dom0_max_vcpus=2`); SKIP with one. Xen 4.17's answers
//! (`common/domain.c` do_vcpu_op, `arch/x86/domain.c` arch_initialise_vcpu) are next to
//! each check.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rxen_guest::events::{bind_ipi, block_once, count, send, sleep_until, TRACKED_PORTS};
use rxen_guest::smp::{down, initialise, is_up, up};
use rxen_guest::time::{map_shared_info, now, set_singleshot_timer};
use rxen_guest::{check, check_eq, err, error, println, skip, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
const ROUNDS: u32 = 100;
/// For the whole exchange (QEMU TCG is slow).
const TIMEOUT: u64 = 30_000 * MS;

/// The IPI ports of vCPU 0 and vCPU 1.
static PORTS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
/// Set by vCPU 1 when it has answered every IPI.
static DONE: AtomicBool = AtomicBool::new(false);
/// Failed sends on vCPU 1.
static SEND_ERRORS: AtomicU32 = AtomicU32::new(0);
/// The vCPU number vCPU 1 was started with.
static STARTED_AS: AtomicU32 = AtomicU32::new(u32::MAX);

/// vCPU 1: answers each IPI with one to vCPU 0, then waits to be taken down.
fn secondary(v: u32) {
    STARTED_AS.store(v, Ordering::SeqCst);
    let mine = PORTS[1].load(Ordering::SeqCst);
    let theirs = PORTS[0].load(Ordering::SeqCst);
    for i in 0..ROUNDS {
        while count(mine) <= i {
            block_once();
        }
        if send(theirs) != 0 {
            SEND_ERRORS.fetch_add(1, Ordering::SeqCst);
        }
    }
    DONE.store(true, Ordering::SeqCst);
    loop {
        block_once();
    }
}

/// Spins on null hypercalls, interrupts on, until `port` has seen more than `seen`
/// events or `deadline` has passed.
fn spin_for_event(port: u32, seen: u32, deadline: u64) {
    rxen_guest::cpu::sti();
    while count(port) <= seen && now() < deadline {
        // SAFETY: XENVER_version takes no pointer.
        unsafe { rxen_guest::hypercall::xen_version(0, 0) };
    }
    rxen_guest::cpu::cli();
}

fn main(si: &StartInfo) {
    let spin = si.arg_u64("spin").unwrap_or(0) != 0;
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    rxen_guest::events::set_up_timer_events();

    // do_vcpu_op: a vCPU id at or beyond max_vcpus -> -ENOENT.
    match is_up(1) {
        0 => {}
        e if e == err::ENOENT => skip!("needs 2 vCPUs"),
        r => error!("VCPUOP_is_up(1) = {r} before it was started"),
    }
    check_eq!(is_up(1000), err::ENOENT, "VCPUOP_is_up of vCPU 1000");
    // VCPUOP_up of a vCPU never initialised -> -EINVAL.
    check_eq!(up(1), err::EINVAL, "VCPUOP_up before VCPUOP_initialise");

    let (p0, p1) = match (bind_ipi(0), bind_ipi(1)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => error!("EVTCHNOP_bind_ipi: {a:?} {b:?}"),
    };
    println!("smp_ipi: IPI ports {p0} (vCPU 0) and {p1} (vCPU 1)");
    if p0 as usize >= TRACKED_PORTS || p1 as usize >= TRACKED_PORTS {
        error!("ports beyond the runtime's event counters");
    }
    PORTS[0].store(p0, Ordering::SeqCst);
    PORTS[1].store(p1, Ordering::SeqCst);

    let rc = initialise(1, secondary);
    if rc != 0 {
        error!("VCPUOP_initialise(1): {rc}");
    }
    // Initialised but still down (VPF_down stays until VCPUOP_up).
    check_eq!(is_up(1), 0, "initialised, not yet up");
    // arch_initialise_vcpu: v->is_initialised -> -EEXIST.
    check_eq!(
        initialise(1, secondary),
        err::EEXIST,
        "VCPUOP_initialise twice"
    );
    check_eq!(up(1), 0, "VCPUOP_up(1)");
    check_eq!(is_up(1), 1, "vCPU 1 is up");

    let deadline = now() + TIMEOUT;
    set_singleshot_timer(deadline);
    let mut total = 0;
    for i in 0..ROUNDS {
        let t0 = now();
        check_eq!(send(p1), 0, "IPI {i} to vCPU 1");
        while count(p0) <= i {
            if now() >= deadline {
                error!(
                    "no answer to IPI {i} (vCPU 1 saw {} IPIs, started as {})",
                    count(p1),
                    STARTED_AS.load(Ordering::SeqCst)
                );
            }
            if spin {
                spin_for_event(p0, i, deadline);
            } else {
                block_once();
            }
        }
        total += now() - t0;
    }
    println!(
        "smp_ipi: {ROUNDS} IPI round trips, mean {} ns",
        total / u64::from(ROUNDS)
    );
    while !DONE.load(Ordering::SeqCst) {
        if now() >= deadline {
            error!("vCPU 1 did not finish");
        }
        sleep_until(now() + MS);
    }
    check_eq!(STARTED_AS.load(Ordering::SeqCst), 1, "vCPU 1 ran as vCPU 1");
    check_eq!(SEND_ERRORS.load(Ordering::SeqCst), 0, "vCPU 1's sends");
    check_eq!(count(p1), ROUNDS, "vCPU 1 got every IPI once");
    check_eq!(count(p0), ROUNDS, "vCPU 0 got every answer once");

    check_eq!(down(1), 0, "VCPUOP_down(1)");
    check_eq!(is_up(1), 0, "vCPU 1 is down");
    // Still initialised: a second VCPUOP_initialise is refused the same way.
    check_eq!(
        initialise(1, secondary),
        err::EEXIST,
        "VCPUOP_initialise of a downed vCPU"
    );
    check!(is_up(0) == 1, "vCPU 0 is up");
}
