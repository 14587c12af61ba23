//! Event delivery through `HVM_PARAM_CALLBACK_IRQ` of type vector: Xen injects
//! [`EVENT_VECTOR`] while `vcpu_info.evtchn_upcall_pending` is set (and RFLAGS.IF is 1);
//! the handler clears it, scans the 2-level pending bitmap and counts events per port.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rxen_abi::event_channel as ec;
use rxen_abi::xen::DomId;

use crate::time::shared_info;

/// The vector the runtime asks Xen to inject for events.
pub const EVENT_VECTOR: u8 = 0xf3;

/// How many ports [`count`] tracks.
pub const TRACKED_PORTS: usize = 64;

static COUNTS: [AtomicU32; TRACKED_PORTS] = [const { AtomicU32::new(0) }; TRACKED_PORTS];
static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Events seen on `port` so far (ports below [`TRACKED_PORTS`]).
pub fn count(port: u32) -> u32 {
    COUNTS
        .get(port as usize)
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Upcalls (injections of [`EVENT_VECTOR`]) taken so far.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::SeqCst)
}

/// Sets `HVM_PARAM_CALLBACK_IRQ` to vector delivery on [`EVENT_VECTOR`].
pub fn enable_callback_vector() -> i64 {
    crate::hypercall::hvm_set_param(
        crate::xen::hvm::PARAM_CALLBACK_IRQ,
        crate::xen::hvm::CALLBACK_TYPE_VECTOR | u64::from(EVENT_VECTOR),
    )
}

/// The `vcpu_info` slot in the shared-info page of the vCPU this runs on.
fn my_slot() -> usize {
    crate::boot::current_vcpu() as usize
}

/// The `evtchn_upcall_pending` flag of the vCPU this runs on.
pub fn upcall_pending() -> bool {
    let v = my_slot();
    // SAFETY: reads a byte of the static shared-info page; volatile as Xen writes it.
    unsafe {
        read_volatile(addr_of!(
            (*shared_info()).vcpu_info[v].evtchn_upcall_pending
        )) != 0
    }
}

/// The upcall: called by the trap code for [`EVENT_VECTOR`] (interrupts off), on any
/// vCPU: it takes the pending, unmasked ports its own `vcpu_info` selects (a port is
/// counted once, by whichever vCPU clears its pending bit).
pub fn handle_upcall() {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    let si = shared_info();
    let v = my_slot();
    // SAFETY: the shared-info page is mapped (the callback is only set up after it is);
    // the accesses are volatile/atomic because Xen writes the page concurrently.
    unsafe {
        write_volatile(addr_of_mut!((*si).vcpu_info[v].evtchn_upcall_pending), 0);
        let sel_ptr = addr_of_mut!((*si).vcpu_info[v].evtchn_pending_sel);
        let sel = (*sel_ptr.cast::<AtomicU64>()).swap(0, Ordering::SeqCst);
        for word in 0..64 {
            if sel & (1 << word) == 0 {
                continue;
            }
            let pending = &*addr_of!((*si).evtchn_pending[word]).cast::<AtomicU64>();
            let mask = read_volatile(addr_of!((*si).evtchn_mask[word]));
            let bits = pending.load(Ordering::SeqCst) & !mask;
            pending.fetch_and(!bits, Ordering::SeqCst);
            for bit in 0..64 {
                if bits & (1 << bit) != 0 {
                    let port = word * 64 + bit;
                    if let Some(c) = COUNTS.get(port) {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

/// Binds `VIRQ_TIMER` of vCPU 0 to a new port; returns the port or the negative errno.
pub fn bind_virq_timer() -> Result<u32, i64> {
    let mut b = crate::xen::EvtchnBindVirq {
        virq: crate::xen::evtchn::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: `b` is a valid `evtchn_bind_virq`.
    let rc = unsafe {
        crate::hypercall::event_channel_op(
            crate::xen::evtchn::BIND_VIRQ,
            crate::hypercall::mut_ptr(&mut b),
        )
    };
    if rc == 0 {
        Ok(b.port)
    } else {
        Err(rc)
    }
}

/// Blocks (`SCHEDOP_block`, with `sti` in the same instruction shadow so an event cannot
/// slip in between) until an event is delivered, unless one is already pending; returns
/// with interrupts off. Call with interrupts off.
pub fn block_once() -> i64 {
    if upcall_pending() {
        // Deliver it: open a window for the injection.
        crate::cpu::interrupt_window();
        return 0;
    }
    let ret: i64;
    // SAFETY: SCHEDOP_block takes no pointer; `sti; vmmcall` keeps the STI shadow over
    // the hypercall instruction, so the wake-up event is injected only after it returns.
    unsafe {
        core::arch::asm!(
            "sti",
            "vmmcall",
            "cli",
            inlateout("rax") crate::xen::hypercall::SCHED_OP => ret,
            inlateout("rdi") crate::xen::sched::BLOCK => _,
            inlateout("rsi") 0u64 => _,
            lateout("rdx") _, lateout("r10") _, lateout("r8") _,
            lateout("rcx") _, lateout("r9") _, lateout("r11") _,
        );
    }
    // A pending event not yet injected is taken here.
    crate::cpu::interrupt_window();
    ret
}

/// `HYPERVISOR_event_channel_op(cmd, arg)` with one of the ABI crate's `evtchn_*`
/// structures.
///
/// # Safety
/// `arg` must be the structure `cmd` takes (Xen reads and writes it by that layout).
pub unsafe fn evtchn_op<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { crate::hypercall::event_channel_op(u64::from(cmd), crate::hypercall::mut_ptr(arg)) }
}

/// `EVTCHNOP_alloc_unbound` {dom, remote_dom}: the new port of `dom`, or the errno.
pub fn alloc_unbound(dom: DomId, remote_dom: DomId) -> Result<u32, i64> {
    let mut a = ec::EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    // SAFETY: `a` is an `evtchn_alloc_unbound`.
    match unsafe { evtchn_op(ec::EVTCHNOP_ALLOC_UNBOUND, &mut a) } {
        0 => Ok(a.port),
        e => Err(e),
    }
}

/// `EVTCHNOP_bind_interdomain` {remote_dom, remote_port}: the local port, or the errno.
pub fn bind_interdomain(remote_dom: DomId, remote_port: u32) -> Result<u32, i64> {
    let mut b = ec::EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        ..Default::default()
    };
    // SAFETY: `b` is an `evtchn_bind_interdomain`.
    match unsafe { evtchn_op(ec::EVTCHNOP_BIND_INTERDOMAIN, &mut b) } {
        0 => Ok(b.local_port),
        e => Err(e),
    }
}

/// `EVTCHNOP_bind_ipi` for `vcpu`: the port, or the errno.
pub fn bind_ipi(vcpu: u32) -> Result<u32, i64> {
    let mut b = ec::EvtchnBindIpi { vcpu, port: 0 };
    // SAFETY: `b` is an `evtchn_bind_ipi`.
    match unsafe { evtchn_op(ec::EVTCHNOP_BIND_IPI, &mut b) } {
        0 => Ok(b.port),
        e => Err(e),
    }
}

/// `EVTCHNOP_send` on `port`: 0 or the errno.
pub fn send(port: u32) -> i64 {
    let mut s = ec::EvtchnSend { port };
    // SAFETY: `s` is an `evtchn_send`.
    unsafe { evtchn_op(ec::EVTCHNOP_SEND, &mut s) }
}

/// `EVTCHNOP_close` of `port`: 0 or the errno.
pub fn close(port: u32) -> i64 {
    let mut c = ec::EvtchnClose { port };
    // SAFETY: `c` is an `evtchn_close`.
    unsafe { evtchn_op(ec::EVTCHNOP_CLOSE, &mut c) }
}

/// `EVTCHNOP_status` of `port` of `dom`: the filled-in structure, or the errno.
pub fn status(dom: DomId, port: u32) -> Result<ec::EvtchnStatus, i64> {
    let mut s = ec::EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    // SAFETY: `s` is an `evtchn_status`.
    match unsafe { evtchn_op(ec::EVTCHNOP_STATUS, &mut s) } {
        0 => Ok(s),
        e => Err(e),
    }
}

/// Sleeps until the system time reaches `deadline` (ns): single-shot timer at the
/// deadline, then [`block_once`], again if woken early (by another event, or by timer
/// slop). Needs `VIRQ_TIMER` bound ([`bind_virq_timer`]) and the callback vector
/// enabled; call with interrupts off. Returns the system time on waking.
pub fn sleep_until(deadline: u64) -> u64 {
    loop {
        let t = crate::time::now();
        if t >= deadline {
            return t;
        }
        crate::time::set_singleshot_timer(deadline);
        block_once();
    }
}
