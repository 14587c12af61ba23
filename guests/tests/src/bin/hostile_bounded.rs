//! A hostile domU for issue 14's "bounded work per exit" (with `watch`, the domain
//! beside it that must keep running). Not a test on its own: `domains.rs` runs the
//! two on one physical CPU.
//!
//! Hostile (no argument), each answer checked against Xen's:
//! - `VCPUOP_set_periodic_timer` with a period near 2^64 or above `STIME_DELTA_MAX`:
//!   -EINVAL (it used to be taken, wrap and fire on every pass);
//! - a local-APIC periodic timer with a 1 ns period ticks at most every 100 µs;
//! - 8 KiB to port 0xE9 without a newline (the log must show 199-character lines);
//! - `console_io` write of 1 GiB from a buffer that runs off the end of RAM: -EFAULT;
//! - a multicall of 2^32 - 1 entries whose list runs off the end of RAM: -EFAULT,
//!   the entries in RAM done.
//!
//! The last two run with a 1 ms local-APIC timer: it must interrupt the guest with
//! RIP on the VMMCALL, which only happens when the hypercall stops and is issued again
//! (a continuation). Prints `hostile_bounded: done` at the end.
//!
//! `watch for_ms=<n>`: spins for `n` ms with interrupts on, printing `watch: tick <k>`
//! every 500 ms, then `watch: longest gap <ms> ms` (the longest it did not run).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU32, Ordering};

use rxen_guest::boot::{set_trap_hook, TrapFrame};
use rxen_guest::cpu::{cli, sti};
use rxen_guest::hypercall::{hypercall, vcpu_op};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::{hypercall as nr, vcpu, xenver, MulticallEntry, E820_RAM};
use rxen_guest::{check, check_eq, err, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;

const APIC: u64 = 0xFEE0_0000;
const EOI: u32 = 0xB0;
const SVR: u32 = 0xF0;
const LVT_TIMER: u32 = 0x320;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_DIVIDE: u32 = 0x3E0;
const TIMER_VECTOR: u8 = 0x41;
const PERIODIC: u32 = 1 << 17;

/// Where the floods start: above the guest's image, stack and tables.
const FLOOD_BASE: u64 = 8 << 20;

/// Local-APIC timer interrupts taken, and those taken with RIP on a VMMCALL.
static TICKS: AtomicU32 = AtomicU32::new(0);
static TICKS_ON_VMMCALL: AtomicU32 = AtomicU32::new(0);

fn apic_write(reg: u32, value: u32) {
    // SAFETY: the APIC page is identity-mapped by the runtime; the registers written
    // are the ones this guest programs.
    unsafe {
        core::arch::asm!("mov [{1}], {0:e}", in(reg) value, in(reg) APIC + u64::from(reg),
            options(nostack))
    };
}

fn hook(frame: &mut TrapFrame) -> bool {
    if frame.vector != u64::from(TIMER_VECTOR) {
        return false;
    }
    apic_write(EOI, 0);
    TICKS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `rip` is where this guest's own code was interrupted, identity-mapped.
    let at = unsafe { core::ptr::read_unaligned(frame.rip as *const [u8; 3]) };
    if at == [0x0F, 0x01, 0xD9] {
        TICKS_ON_VMMCALL.fetch_add(1, Ordering::SeqCst);
    }
    true
}

/// Runs the local-APIC timer periodically every `period_ns` (0 stops it).
fn apic_timer(period_ns: u32) {
    apic_write(TIMER_DIVIDE, 0xB); // divide by 1: 1 ns per count
    apic_write(LVT_TIMER, PERIODIC | u32::from(TIMER_VECTOR));
    apic_write(TIMER_INITIAL, period_ns);
}

fn spin_for(ns: u64) {
    let end = now() + ns;
    while now() < end {
        core::hint::spin_loop();
    }
}

fn set_periodic(period_ns: u64) -> i64 {
    let mut request = period_ns;
    // SAFETY: struct vcpu_set_periodic_timer is one u64, read by the hypervisor.
    unsafe { vcpu_op(vcpu::SET_PERIODIC_TIMER, 0, &mut request as *mut u64 as u64) }
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    if si.has_arg("watch") {
        watch(si.arg_u64("for_ms").unwrap_or(5_000));
        return;
    }
    set_trap_hook(Some(hook));
    apic_write(SVR, 0x1FF);

    // Periodic timers of 2^64 - 1 ns and just above STIME_DELTA_MAX: -EINVAL (Xen).
    check_eq!(set_periodic(u64::MAX), err::EINVAL, "period 2^64 - 1");
    check_eq!(
        set_periodic((u64::MAX >> 2) + 1),
        err::EINVAL,
        "period STIME_DELTA_MAX + 1"
    );
    check_eq!(
        // SAFETY: VCPUOP_stop_periodic_timer takes no argument.
        unsafe { vcpu_op(vcpu::STOP_PERIODIC_TIMER, 0, 0) },
        0,
        "stop periodic"
    );

    // A 1 ns local-APIC period: at most one tick per 100 us (Xen's minimum).
    apic_timer(1);
    sti();
    let t0 = now();
    spin_for(50 * MS);
    cli();
    apic_timer(0);
    let elapsed = now() - t0;
    let ticks = TICKS.swap(0, Ordering::SeqCst) as u64;
    println!(
        "hostile_bounded: 1 ns APIC period: {ticks} ticks in {} us",
        elapsed / 1000
    );
    check!(ticks > 0, "the 1 ns timer ticks");
    check!(
        ticks <= elapsed / 100_000 + 2,
        "the 1 ns timer ticks at most every 100 us: {ticks} in {} us",
        elapsed / 1000
    );

    // Port 0xE9: 8 KiB without a newline, then the newline.
    for _ in 0..8192 {
        // SAFETY: port 0xE9 is the hypervisor's debug console.
        unsafe { core::arch::asm!("out 0xE9, al", in("al") b'y', options(nomem, nostack)) };
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("out 0xE9, al", in("al") b'\n', options(nomem, nostack)) };

    let Some(ram) = si
        .memmap()
        .iter()
        .find(|e| e.type_ == E820_RAM && e.addr <= FLOOD_BASE && FLOOD_BASE - e.addr < e.size)
    else {
        error!("no RAM at {FLOOD_BASE:#x}");
    };
    let ram_end = ram.addr + ram.size;
    let flood = (ram_end - FLOOD_BASE) as usize;
    println!("hostile_bounded: floods from {FLOOD_BASE:#x} to the end of RAM at {ram_end:#x}");

    // 1 GiB of console output from a buffer that runs off the end of RAM.
    // SAFETY: [FLOOD_BASE, ram_end) is RAM this guest does not otherwise use,
    // identity-mapped.
    let buffer = unsafe { core::slice::from_raw_parts_mut(FLOOD_BASE as *mut u8, flood) };
    buffer.fill(b'x');
    apic_timer(1_000_000);
    sti();
    let t0 = now();
    // SAFETY: the hypervisor only reads the buffer.
    let rc = unsafe { hypercall(nr::CONSOLE_IO, 0, 1 << 30, FLOOD_BASE, 0, 0) };
    cli();
    let console_ms = (now() - t0) / MS;
    let console_preempted = TICKS_ON_VMMCALL.swap(0, Ordering::SeqCst);

    // A multicall of 2^32 - 1 entries whose list runs off the end of RAM.
    let entries = flood / core::mem::size_of::<MulticallEntry>();
    // SAFETY: as above, now as multicall entries (64-byte aligned).
    let list =
        unsafe { core::slice::from_raw_parts_mut(FLOOD_BASE as *mut MulticallEntry, entries) };
    list.fill(MulticallEntry {
        op: nr::XEN_VERSION,
        result: 0x5555,
        args: [xenver::VERSION, 0, 0, 0, 0, 0],
    });
    sti();
    let t1 = now();
    // SAFETY: the list is this guest's memory, then unbacked addresses.
    let mc = unsafe { hypercall(nr::MULTICALL, FLOOD_BASE, u32::MAX as u64, 0, 0, 0) };
    cli();
    let multicall_ms = (now() - t1) / MS;
    let multicall_preempted = TICKS_ON_VMMCALL.swap(0, Ordering::SeqCst);
    apic_timer(0);
    // SAFETY: xen_version(XENVER_version) takes no argument.
    let version = unsafe { hypercall(nr::XEN_VERSION, xenver::VERSION, 0, 0, 0, 0) };
    let (first, last) = (list[0].result as i64, list[entries - 1].result as i64);

    // The floods used up this domain's console budget: let it refill before reporting.
    spin_for(2_000 * MS);
    println!(
        "hostile_bounded: console write of 1 GiB: {rc} after {console_ms} ms, \
         {console_preempted} ticks on the VMMCALL"
    );
    println!(
        "hostile_bounded: multicall of 2^32 - 1 entries ({entries} in RAM): {mc} after \
         {multicall_ms} ms, {multicall_preempted} ticks on the VMMCALL"
    );
    check_eq!(rc, err::EFAULT, "console write running off RAM");
    check_eq!(mc, err::EFAULT, "multicall list running off RAM");
    check_eq!(first, version, "first multicall entry");
    check_eq!(last, version, "last multicall entry in RAM");
    check!(
        console_preempted > 0,
        "the console write was preempted (continued)"
    );
    check!(
        multicall_preempted > 0,
        "the multicall was preempted (continued)"
    );
    println!("hostile_bounded: done");
}

/// The domain beside the hostile one: how long did it not run?
fn watch(for_ms: u64) {
    sti();
    let start = now();
    let end = start + for_ms * MS;
    let (mut last, mut longest, mut tick) = (start, 0, 0);
    loop {
        let t = now();
        longest = longest.max(t - last);
        last = t;
        if t >= end {
            break;
        }
        if t - start >= (tick + 1) * 500 * MS {
            tick += 1;
            println!("watch: tick {tick}");
        }
    }
    cli();
    println!("watch: longest gap {} ms", longest / MS);
}
