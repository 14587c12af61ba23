//! `HYPERVISOR_vcpu_op`: is_up, get_runstate_info (times add up, running time grows),
//! register_runstate_memory_area, register_vcpu_info (the pvclock appears there), bad
//! vCPU ids, unknown commands.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::ptr::{addr_of, read_volatile};

use rxen_guest::hypercall::{mut_ptr, ptr, vcpu_op};
use rxen_guest::xen::{vcpu, RegisterVcpuInfo, RunstateInfo, VcpuInfo};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn op(cmd: u64, vcpu: u64, arg: u64) -> i64 {
    // SAFETY: Xen validates the pointers; the tests pass real buffers or unmapped ones.
    unsafe { vcpu_op(cmd, vcpu, arg) }
}

fn runstate() -> RunstateInfo {
    let mut r = RunstateInfo::default();
    check_eq!(
        op(vcpu::GET_RUNSTATE_INFO, 0, mut_ptr(&mut r)),
        0,
        "get_runstate_info"
    );
    r
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut VCPU_INFO_PAGE: Page = Page([0; 4096]);

static mut RUNSTATE_AREA: RunstateInfo = RunstateInfo {
    state: -1,
    _pad0: [0; 4],
    state_entry_time: 0,
    time: [0; 4],
};

fn main(_si: &StartInfo) {
    let rc = op(vcpu::IS_UP, 0, 0);
    println!("is_up(0): {rc}");
    check_eq!(rc, 1, "vCPU 0 is up");
    check_eq!(
        op(vcpu::IS_UP, 1, 0),
        err::ENOENT,
        "vCPU 1 does not exist (dom0_max_vcpus 1)"
    );
    check_eq!(op(vcpu::IS_UP, 5000, 0), err::ENOENT, "vCPU 5000");

    let r1 = runstate();
    println!("runstate: {:?}", r1);
    check_eq!(r1.state, vcpu::RUNSTATE_RUNNING, "we are running");
    let sum: u64 = r1.time.iter().sum();
    check!(r1.state_entry_time > 0, "state entry time set");
    check!(
        sum <= r1.state_entry_time,
        "time[] ({sum}) <= state_entry_time"
    );
    check!(r1.time[vcpu::RUNSTATE_OFFLINE as usize] <= r1.state_entry_time);
    // Spend some time, block briefly through a yield, and look again.
    for _ in 0..200_000 {
        core::hint::spin_loop();
    }
    // SAFETY: SCHEDOP_yield has no argument.
    unsafe { rxen_guest::hypercall::sched_op(rxen_guest::xen::sched::YIELD, 0) };
    let r2 = runstate();
    println!("runstate: {:?}", r2);
    check!(
        r2.state_entry_time >= r1.state_entry_time,
        "entry time monotonic"
    );
    // Xen adds the time since state_entry_time to the current state's slot when asked,
    // so running time grows even without a state change.
    check!(
        r2.time[0] > r1.time[0],
        "running time grows: {} -> {}",
        r1.time[0],
        r2.time[0]
    );
    let sum2: u64 = r2.time.iter().sum();
    check!(sum2 >= sum, "accumulated time does not shrink");
    check_eq!(
        op(vcpu::GET_RUNSTATE_INFO, 0, UNMAPPED),
        err::EFAULT,
        "bad pointer"
    );
    check_eq!(
        op(
            vcpu::GET_RUNSTATE_INFO,
            7,
            mut_ptr(&mut RunstateInfo::default())
        ),
        err::ENOENT
    );

    // The runstate area is written at once for the current vCPU.
    let area = &raw mut RUNSTATE_AREA as u64;
    check_eq!(
        op(vcpu::REGISTER_RUNSTATE_MEMORY_AREA, 0, ptr(&area)),
        0,
        "register runstate area"
    );
    // SAFETY: Xen writes the static area; read volatile.
    let a = unsafe { read_volatile(&raw const RUNSTATE_AREA) };
    println!("runstate area: {:?}", a);
    check_eq!(a.state, vcpu::RUNSTATE_RUNNING, "area says running");
    check!(a.state_entry_time > 0, "area has the entry time");
    let zero = 0u64;
    check_eq!(
        op(vcpu::REGISTER_RUNSTATE_MEMORY_AREA, 0, ptr(&zero)),
        0,
        "unregister (addr 0)"
    );

    // register_vcpu_info: move vCPU 0's vcpu_info into our page at offset 128.
    let gfn = (&raw mut VCPU_INFO_PAGE as u64) >> 12;
    let bad = RegisterVcpuInfo {
        mfn: gfn,
        offset: 4096 - 32,
        rsvd: 0,
    };
    // Xen 4.17 answers a vcpu_info that would cross the page end with -ENXIO.
    check_eq!(
        op(vcpu::REGISTER_VCPU_INFO, 0, ptr(&bad)),
        -6,
        "vcpu_info across a page end"
    );
    let reg = RegisterVcpuInfo {
        mfn: gfn,
        offset: 128,
        rsvd: 0,
    };
    check_eq!(
        op(vcpu::REGISTER_VCPU_INFO, 0, ptr(&reg)),
        0,
        "register_vcpu_info"
    );
    // SAFETY: the vcpu_info now lives at offset 128 of our page.
    let vi = unsafe { (&raw mut VCPU_INFO_PAGE as *mut u8).add(128) as *const VcpuInfo };
    // SAFETY: as above.
    let rec = unsafe { rxen_guest::time::snapshot(addr_of!((*vi).time)) };
    println!("registered vcpu_info time: {:x?}", rec);
    check!(
        rec.is_some_and(|r| r.version % 2 == 0 && r.system_time > 0 && r.tsc_to_system_mul != 0),
        "pvclock published in the registered vcpu_info"
    );
    check_eq!(
        op(vcpu::REGISTER_VCPU_INFO, 0, ptr(&reg)),
        err::EINVAL,
        "registering twice"
    );

    // VCPUOP_initialise on a vCPU that is already up: -EEXIST.
    check_eq!(op(0, 0, 0x10_0000), err::EEXIST, "initialise vCPU 0 again");
    // VCPUOP_up on a running vCPU: 0. (VCPUOP_down on ourselves would stop us.)
    check_eq!(op(1, 0, 0), 0, "up vCPU 0");
    for cmd in [11u64, 12, 13, 14] {
        let rc = op(cmd, 0, 0x10_0000_0000);
        println!("vcpu_op({cmd}, bad pointer): {rc}");
    }
    check_eq!(op(100, 0, 0), err::ENOSYS, "unknown command 100");
}
