//! Hypercalls: through the hypercall page Xen writes (the normal way), or with a raw
//! `VMMCALL` (AMD), with Xen's x86_64 convention: RAX = number, arguments in RDI, RSI,
//! RDX, R10, R8; the result comes back in RAX.
//!
//! [`hypercall`] uses the page once [`crate::cpu::install_hypercall_page`] has run, and a
//! raw `VMMCALL` before that. The typed wrappers below pass guest-virtual pointers, which
//! in these guests equal physical addresses (identity map of the low 4 GiB).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::xen::hypercall as nr;

/// Address of the installed hypercall page, 0 if none.
static PAGE: AtomicU64 = AtomicU64::new(0);

/// Records that the hypercall page at `addr` is installed (used by
/// [`crate::cpu::install_hypercall_page`]).
pub fn set_page(addr: u64) {
    PAGE.store(addr, Ordering::SeqCst);
}

/// The installed hypercall page, if any.
pub fn page() -> Option<u64> {
    match PAGE.load(Ordering::SeqCst) {
        0 => None,
        a => Some(a),
    }
}

/// A hypercall with up to five arguments, through the page if installed, else `VMMCALL`.
///
/// # Safety
/// The arguments must be valid for the hypercall: Xen writes through pointers it is given.
pub unsafe fn hypercall(op: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    match page() {
        // SAFETY: forwarded from the caller.
        Some(p) => unsafe { hypercall_via_page(p, op, [a1, a2, a3, a4, a5]) },
        // SAFETY: forwarded from the caller.
        None => unsafe { vmmcall(op, [a1, a2, a3, a4, a5]) },
    }
}

/// A hypercall through the hypercall page at `page`: `call page + op * 32`.
///
/// # Safety
/// `page` must be an installed hypercall page, `op` below 128, and the arguments valid.
pub unsafe fn hypercall_via_page(page: u64, op: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    let target = page + op * 32;
    // SAFETY: the stub at `target` is `mov $op, %eax; vmmcall; ret`; Xen may clobber the
    // argument registers (debug builds do), so all of them are marked clobbered.
    unsafe {
        core::arch::asm!(
            "call r11",
            inlateout("rax") op => ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            inlateout("r11") target => _,
            lateout("rcx") _,
            lateout("r9") _,
        );
    }
    ret
}

/// A raw `VMMCALL` hypercall (AMD SVM), without the hypercall page.
///
/// # Safety
/// The arguments must be valid for the hypercall.
pub unsafe fn vmmcall(op: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: VMMCALL traps to the hypervisor, which follows Xen's calling convention.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inlateout("rax") op => ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            lateout("rcx") _,
            lateout("r9") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Pointer of `r` as a hypercall argument.
pub fn ptr<T>(r: &T) -> u64 {
    r as *const T as u64
}

/// Mutable pointer of `r` as a hypercall argument.
pub fn mut_ptr<T>(r: &mut T) -> u64 {
    r as *mut T as u64
}

/// `HYPERVISOR_xen_version(cmd, arg)`.
///
/// # Safety
/// `arg` must be 0 or point to a buffer of the size `cmd` needs (or be a deliberately bad
/// pointer the test expects Xen to reject).
pub unsafe fn xen_version(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::XEN_VERSION, cmd, arg, 0, 0, 0) }
}

/// The round trip of a null hypercall (`xen_version(XENVER_version)`) in nanoseconds
/// of system time, the yardstick benchmarks report their figures against: the best
/// mean of 10 batches of `n / 10` calls (a batch during which another domain ran
/// shows a larger mean and is not the best); `None` if any call failed.
pub fn null_hypercall_ns(n: u32) -> Option<u64> {
    let batch = (n / 10).max(1);
    let mut best = u64::MAX;
    for _ in 0..10 {
        let t0 = crate::time::now();
        for _ in 0..batch {
            // SAFETY: XENVER_version takes no argument.
            if unsafe { xen_version(crate::xen::xenver::VERSION, 0) } <= 0 {
                return None;
            }
        }
        best = best.min((crate::time::now() - t0) / u64::from(batch));
    }
    Some(best)
}

/// `HYPERVISOR_console_io(CONSOLEIO_write, len, buf)` with a real buffer.
pub fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: Xen only reads `bytes`.
    unsafe {
        hypercall(
            nr::CONSOLE_IO,
            crate::xen::consoleio::WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    }
}

/// `HYPERVISOR_sched_op(cmd, arg)`.
///
/// # Safety
/// `arg` must be what `cmd` needs.
pub unsafe fn sched_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::SCHED_OP, cmd, arg, 0, 0, 0) }
}

/// `SCHEDOP_shutdown` with `reason` (returns only if Xen refuses).
pub fn shutdown(reason: u32) -> i64 {
    let r = reason;
    // SAFETY: `struct sched_shutdown` is one u32, read by Xen.
    unsafe { sched_op(crate::xen::sched::SHUTDOWN, ptr(&r)) }
}

/// `HYPERVISOR_memory_op(cmd, arg)`.
///
/// # Safety
/// `arg` must be what `cmd` needs.
pub unsafe fn memory_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::MEMORY_OP, cmd, arg, 0, 0, 0) }
}

/// `HYPERVISOR_hvm_op(cmd, arg)`.
///
/// # Safety
/// `arg` must be what `cmd` needs.
pub unsafe fn hvm_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::HVM_OP, cmd, arg, 0, 0, 0) }
}

/// `HYPERVISOR_vcpu_op(cmd, vcpu, arg)`.
///
/// # Safety
/// `arg` must be what `cmd` needs.
pub unsafe fn vcpu_op(cmd: u64, vcpu: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::VCPU_OP, cmd, vcpu, arg, 0, 0) }
}

/// `HYPERVISOR_event_channel_op(cmd, arg)`.
///
/// # Safety
/// `arg` must be what `cmd` needs.
pub unsafe fn event_channel_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hypercall(nr::EVENT_CHANNEL_OP, cmd, arg, 0, 0, 0) }
}

/// `HYPERVISOR_set_timer_op(timeout_abs_ns)` (0 cancels).
pub fn set_timer_op(timeout_abs_ns: u64) -> i64 {
    // SAFETY: no pointers.
    unsafe { hypercall(nr::SET_TIMER_OP, timeout_abs_ns, 0, 0, 0, 0) }
}

/// `HVMOP_get_param` for `DOMID_SELF`: the value, or the negative errno.
pub fn hvm_get_param(index: u32) -> Result<u64, i64> {
    let mut p = crate::xen::HvmParam {
        domid: crate::xen::memory::DOMID_SELF,
        index,
        ..Default::default()
    };
    // SAFETY: `p` is a valid `xen_hvm_param`.
    let rc = unsafe { hvm_op(crate::xen::hvm::GET_PARAM, mut_ptr(&mut p)) };
    if rc == 0 {
        Ok(p.value)
    } else {
        Err(rc)
    }
}

/// `HVMOP_set_param` for `DOMID_SELF`: 0 or the negative errno.
pub fn hvm_set_param(index: u32, value: u64) -> i64 {
    let p = crate::xen::HvmParam {
        domid: crate::xen::memory::DOMID_SELF,
        index,
        value,
        ..Default::default()
    };
    // SAFETY: `p` is a valid `xen_hvm_param`, only read by Xen.
    unsafe { hvm_op(crate::xen::hvm::SET_PARAM, ptr(&p)) }
}

/// `XENMEM_memory_map` into `out` (converted from Xen's packed e820 entries); returns the
/// number of entries written or the negative errno.
pub fn memory_map(out: &mut [crate::xen::HvmMemmapEntry]) -> Result<usize, i64> {
    let mut raw = [crate::xen::E820Entry::default(); 128];
    let n = out.len().min(raw.len());
    let mut mm = crate::xen::MemoryMap {
        nr_entries: n as u32,
        _pad0: [0; 4],
        buffer: raw.as_mut_ptr() as u64,
    };
    // SAFETY: `mm` names a buffer of `nr_entries` e820 entries.
    let rc = unsafe { memory_op(crate::xen::memory::MEMORY_MAP, mut_ptr(&mut mm)) };
    if rc != 0 {
        return Err(rc);
    }
    let got = (mm.nr_entries as usize).min(n);
    for (o, r) in out.iter_mut().zip(&raw[..got]) {
        *o = (*r).into();
    }
    Ok(got)
}
