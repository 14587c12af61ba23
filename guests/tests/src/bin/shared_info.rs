//! `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`, then the shared-info page: the
//! wallclock (version even, a plausible date), vCPU 0's pvclock (version even, system
//! time advancing), and no events pending or masked at start.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::ptr::{addr_of, read_volatile};

use rxen_guest::time::{map_shared_info, now, shared_info, snapshot, vcpu0_time};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    check_eq!(map_shared_info(), 0, "add_to_physmap shared_info");
    let si = shared_info();
    // SAFETY: the page is mapped; fields read volatile as Xen writes them.
    let (wc_version, wc_sec, wc_nsec, wc_sec_hi) = unsafe {
        (
            read_volatile(addr_of!((*si).wc_version)),
            read_volatile(addr_of!((*si).wc_sec)),
            read_volatile(addr_of!((*si).wc_nsec)),
            read_volatile(addr_of!((*si).wc_sec_hi)),
        )
    };
    println!("wallclock: version {wc_version} sec {wc_sec} nsec {wc_nsec} sec_hi {wc_sec_hi}");
    check!(
        wc_version % 2 == 0,
        "wallclock version {wc_version} is even"
    );
    // The wallclock is the boot time from the RTC; QEMU's RTC follows the host clock.
    let secs = (u64::from(wc_sec_hi) << 32) | u64::from(wc_sec);
    check!(secs > 1_600_000_000, "wallclock {secs} is after 2020");
    check!(wc_nsec < 1_000_000_000, "wc_nsec {wc_nsec} < 1e9");

    // SAFETY: vCPU 0's time record in the mapped page.
    let rec = unsafe { snapshot(vcpu0_time()) };
    check!(rec.is_some(), "pvclock version settles");
    if let Some(rec) = rec {
        println!("vcpu0 time: {:x?}", rec);
        check!(rec.version % 2 == 0, "version even");
        check!(rec.tsc_to_system_mul != 0, "multiplier set");
        check!(rec.system_time > 0, "system time set");
    }
    let t1 = now();
    for _ in 0..100_000 {
        core::hint::spin_loop();
    }
    let t2 = now();
    println!("system time {t1} -> {t2}");
    check!(t2 > t1, "system time advances");
    check!(t2 - t1 < 10_000_000_000, "by less than 10 s");

    // SAFETY: as above.
    let (pending, mask, sel) = unsafe {
        (
            read_volatile(addr_of!((*si).evtchn_pending[0])),
            read_volatile(addr_of!((*si).evtchn_mask[0])),
            read_volatile(addr_of!((*si).vcpu_info[0].evtchn_pending_sel)),
        )
    };
    println!("evtchn pending[0] {pending:#x} mask[0] {mask:#x} sel {sel:#x}");
    check_eq!(pending & !1, 0, "no events pending (port 0 is reserved)");

    // Mapping it again somewhere else is allowed (it moves).
    check_eq!(
        map_shared_info(),
        0,
        "second add_to_physmap at the same gpfn"
    );
}
