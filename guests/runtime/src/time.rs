//! Xen's pvclock (`struct vcpu_time_info`) and the shared-info page.

use core::ptr::{addr_of, read_volatile};
use core::sync::atomic::{fence, Ordering};

use crate::xen::{SharedInfo, VcpuTimeInfo};

/// Scales a TSC delta to nanoseconds with the pvclock's multiplier and shift.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift < 0 {
        delta >> (-(shift as i32)) as u32
    } else {
        delta << shift as u32
    };
    ((u128::from(d) * u128::from(mul)) >> 32) as u64
}

/// A consistent copy of the time record at `t` (retries while Xen updates it, i.e.
/// while the version is odd or changes under us; gives up after many tries).
///
/// # Safety
/// `t` must point to a mapped `vcpu_time_info` (in the shared-info page or a registered
/// `vcpu_info`).
pub unsafe fn snapshot(t: *const VcpuTimeInfo) -> Option<VcpuTimeInfo> {
    for _ in 0..1_000_000 {
        // SAFETY: per the caller's contract; volatile because Xen writes it.
        let v1 = unsafe { read_volatile(addr_of!((*t).version)) };
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let copy = unsafe { read_volatile(t) };
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let v2 = unsafe { read_volatile(addr_of!((*t).version)) };
        if v1 == v2 && v1 % 2 == 0 {
            return Some(copy);
        }
    }
    None
}

/// System time in ns from a consistent record and a TSC value.
pub fn system_time_at(rec: &VcpuTimeInfo, tsc: u64) -> u64 {
    rec.system_time
        + scale_delta(
            tsc.wrapping_sub(rec.tsc_timestamp),
            rec.tsc_to_system_mul,
            rec.tsc_shift,
        )
}

/// Current system time (ns) from the pvclock at `t`.
///
/// # Safety
/// As [`snapshot`].
pub unsafe fn system_time(t: *const VcpuTimeInfo) -> u64 {
    loop {
        // SAFETY: forwarded from the caller.
        let rec = unsafe { snapshot(t) }.expect("pvclock version never settles");
        let tsc = crate::cpu::rdtsc();
        // SAFETY: forwarded from the caller.
        let v = unsafe { read_volatile(addr_of!((*t).version)) };
        if v == rec.version {
            return system_time_at(&rec, tsc);
        }
    }
}

/// The page Xen's shared info is mapped at (by [`map_shared_info`]).
#[repr(C, align(4096))]
struct SharedPage([u8; 4096]);

static mut SHARED_PAGE: SharedPage = SharedPage([0; 4096]);

/// Whether [`map_shared_info`] succeeded.
static MAPPED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Maps the shared-info page (`XENMEM_add_to_physmap`, `XENMAPSPACE_shared_info`, index 0)
/// over a page of the image, as Linux does; returns the hypercall's result.
pub fn map_shared_info() -> i64 {
    let gpfn = (&raw mut SHARED_PAGE as u64) >> 12;
    let xatp = crate::xen::AddToPhysmap {
        domid: crate::xen::memory::DOMID_SELF,
        size: 0,
        space: crate::xen::memory::MAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn,
    };
    // SAFETY: `xatp` is a valid `xen_add_to_physmap`; the page it names is ours.
    let rc = unsafe {
        crate::hypercall::memory_op(
            crate::xen::memory::ADD_TO_PHYSMAP,
            crate::hypercall::ptr(&xatp),
        )
    };
    if rc == 0 {
        MAPPED.store(true, Ordering::SeqCst);
    }
    rc
}

/// The shared-info page (mapped or not: check [`shared_info_mapped`]).
pub fn shared_info() -> *mut SharedInfo {
    (&raw mut SHARED_PAGE).cast()
}

/// Whether the shared-info page has been mapped.
pub fn shared_info_mapped() -> bool {
    MAPPED.load(Ordering::SeqCst)
}

/// vCPU 0's time record in the shared-info page.
pub fn vcpu0_time() -> *const VcpuTimeInfo {
    // SAFETY: only computes an address inside the static page.
    unsafe { addr_of!((*shared_info()).vcpu_info[0].time) }
}

/// Current system time (ns) from vCPU 0's pvclock in the shared-info page.
///
/// # Panics
/// If the shared-info page is not mapped.
pub fn now() -> u64 {
    assert!(shared_info_mapped(), "shared info not mapped");
    // SAFETY: the page is mapped and holds vCPU 0's time record.
    unsafe { system_time(vcpu0_time()) }
}

/// Waits with interrupts on until `done()` or `timeout` ns pass (interrupts
/// off again on return); whether `done()` held at the end.
pub fn wait_interruptible(timeout: u64, done: impl Fn() -> bool) -> bool {
    let deadline = now() + timeout;
    crate::cpu::sti();
    while !done() && now() < deadline {
        core::hint::spin_loop();
    }
    crate::cpu::cli();
    done()
}

/// `VCPUOP_set_singleshot_timer` for vCPU 0 at `timeout_abs_ns` (no flags): 0 or the
/// errno. The timer raises `VIRQ_TIMER`.
pub fn set_singleshot_timer(timeout_abs_ns: u64) -> i64 {
    let t = crate::xen::SetSingleshotTimer {
        timeout_abs_ns,
        flags: 0,
        _pad0: [0; 4],
    };
    // SAFETY: `t` is a `vcpu_set_singleshot_timer`, only read by Xen.
    unsafe {
        crate::hypercall::vcpu_op(
            crate::xen::vcpu::SET_SINGLESHOT_TIMER,
            0,
            crate::hypercall::ptr(&t),
        )
    }
}

/// `VCPUOP_get_runstate_info` of `vcpu` (Xen adds the time since `state_entry_time` to
/// the current state, so the times are up to date); the errno if refused.
pub fn runstate(vcpu: u32) -> Result<crate::xen::RunstateInfo, i64> {
    let mut r = crate::xen::RunstateInfo::default();
    // SAFETY: `r` is a `vcpu_runstate_info`, written by Xen.
    let rc = unsafe {
        crate::hypercall::vcpu_op(
            crate::xen::vcpu::GET_RUNSTATE_INFO,
            u64::from(vcpu),
            crate::hypercall::mut_ptr(&mut r),
        )
    };
    if rc == 0 {
        Ok(r)
    } else {
        Err(rc)
    }
}

/// vCPU 0's time spent running (ns), from [`runstate`].
///
/// # Panics
/// If Xen refuses `VCPUOP_get_runstate_info`.
pub fn running_ns() -> u64 {
    runstate(0).expect("VCPUOP_get_runstate_info").time[crate::xen::vcpu::RUNSTATE_RUNNING as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling() {
        // 1 GHz TSC: mul = 2^32 (not representable), so shift 1, mul 2^31.
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        // 2 GHz TSC: shift 0, mul 2^31: 2000 ticks = 1000 ns.
        assert_eq!(scale_delta(2000, 1 << 31, 0), 1000);
        // negative shift.
        assert_eq!(scale_delta(4000, 1 << 31, -1), 1000);
        let rec = VcpuTimeInfo {
            system_time: 5000,
            tsc_timestamp: 100,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
            ..Default::default()
        };
        assert_eq!(system_time_at(&rec, 2100), 6000);
    }
}
