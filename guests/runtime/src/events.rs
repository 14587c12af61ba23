//! Event delivery through `HVM_PARAM_CALLBACK_IRQ` of type vector: Xen injects
//! [`EVENT_VECTOR`] while `vcpu_info.evtchn_upcall_pending` is set (and RFLAGS.IF is 1);
//! the handler clears it, takes the pending events and counts them per port, and logs
//! the order they came in ([`delivered`]).
//!
//! Two ABIs: the 2-level pending bitmap in the shared-info page (the default), and the
//! FIFO ABI once [`init_control`] succeeded: then the handler takes, for each `ready`
//! priority from 0 (highest) up, one event at a time from the head of the queue in the
//! vCPU's control block, following the LINK fields of the event words in the event
//! array ([`expand_array`]), clearing LINKED and PENDING with atomics as Xen writes the
//! same words.

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

/// How many deliveries [`delivered`] logs.
pub const LOGGED_EVENTS: usize = 256;
static LOG: [AtomicU32; LOGGED_EVENTS] = [const { AtomicU32::new(0) }; LOGGED_EVENTS];
static LOGGED: AtomicU32 = AtomicU32::new(0);

/// Counts an event on `port`.
fn record(port: u32) {
    if let Some(c) = COUNTS.get(port as usize) {
        c.fetch_add(1, Ordering::SeqCst);
    }
    let i = LOGGED.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(slot) = LOG.get(i) {
        slot.store(port, Ordering::SeqCst);
    }
}

/// Events delivered so far (any port).
pub fn delivered_count() -> u32 {
    LOGGED.load(Ordering::SeqCst)
}

/// The port of the `i`-th event delivered (for the first [`LOGGED_EVENTS`]).
pub fn delivered(i: u32) -> Option<u32> {
    (i < delivered_count())
        .then(|| LOG.get(i as usize).map(|p| p.load(Ordering::SeqCst)))
        .flatten()
}

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
    if fifo::active() {
        // SAFETY: as below.
        unsafe { write_volatile(addr_of_mut!((*si).vcpu_info[v].evtchn_upcall_pending), 0) };
        fifo::handle(v);
        return;
    }
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
                    record((word * 64 + bit) as u32);
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

/// Waits until `done()` holds, blocking on events with a 1 ms single-shot timer each
/// time (so that a condition nobody signals is still seen); gives up after
/// `timeout_ns`. Whether `done()` held. Needs what [`sleep_until`] needs.
pub fn wait_until(timeout_ns: u64, done: impl FnMut() -> bool) -> bool {
    wait_until_every(timeout_ns, 1_000_000, done)
}

/// [`wait_until`], looking at `done` at least every `step_ns` (and on every
/// event): a longer step for waits that expect nothing to come.
pub fn wait_until_every(timeout_ns: u64, step_ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = crate::time::now().saturating_add(timeout_ns);
    loop {
        if done() {
            return true;
        }
        let t = crate::time::now();
        if t > deadline {
            return false;
        }
        crate::time::set_singleshot_timer(t.saturating_add(step_ns.max(1)));
        block_once();
    }
}

pub use fifo::{event_word, expand_array, init_control, set_priority, unmask};

/// The FIFO ABI, guest side.
mod fifo {
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use rxen_abi::event_channel as ec;

    use crate::boot::MAX_VCPUS;

    const LINKED: u32 = 1 << ec::EVTCHN_FIFO_LINKED;
    const PENDING: u32 = 1 << ec::EVTCHN_FIFO_PENDING;
    const MASKED: u32 = 1 << ec::EVTCHN_FIFO_MASKED;
    const WORDS_PER_PAGE: u32 = 1024;
    const MAX_PAGES: usize = (ec::EVTCHN_FIFO_NR_CHANNELS / WORDS_PER_PAGE) as usize;

    static ACTIVE: AtomicBool = AtomicBool::new(false);
    /// Per vCPU: the control block's address (0: none).
    static CONTROL: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
    /// Per vCPU and priority: the next port to take (0: read the control block's head).
    static HEADS: [[AtomicU32; ec::EVTCHN_FIFO_MAX_QUEUES]; MAX_VCPUS] =
        [const { [const { AtomicU32::new(0) }; ec::EVTCHN_FIFO_MAX_QUEUES] }; MAX_VCPUS];
    /// Per vCPU: the priorities with events left, as far as the handler knows.
    static READY: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
    /// The event-array pages' addresses.
    static ARRAY: [AtomicU64; MAX_PAGES] = [const { AtomicU64::new(0) }; MAX_PAGES];
    static PAGES: AtomicU32 = AtomicU32::new(0);

    pub(super) fn active() -> bool {
        ACTIVE.load(Ordering::SeqCst)
    }

    /// `EVTCHNOP_init_control` {control_gfn, offset, vcpu}: `link_bits`, or the errno.
    /// On success the upcall handler uses the FIFO ABI, with the control block at
    /// `control_gfn * 4096 + offset` (identity-mapped) for `vcpu`.
    pub fn init_control(control_gfn: u64, offset: u32, vcpu: u32) -> Result<u8, i64> {
        let mut op = ec::EvtchnInitControl {
            control_gfn,
            offset,
            vcpu,
            ..Default::default()
        };
        // SAFETY: `op` is an `evtchn_init_control`.
        match unsafe { super::evtchn_op(ec::EVTCHNOP_INIT_CONTROL, &mut op) } {
            0 => {
                if let Some(cb) = CONTROL.get(vcpu as usize) {
                    cb.store(control_gfn * 4096 + u64::from(offset), Ordering::SeqCst);
                }
                ACTIVE.store(true, Ordering::SeqCst);
                Ok(op.link_bits)
            }
            e => Err(e),
        }
    }

    /// `EVTCHNOP_expand_array` {array_gfn}: 0 or the errno. On success the page
    /// (identity-mapped) holds the next 1024 event words.
    pub fn expand_array(array_gfn: u64) -> i64 {
        let mut op = ec::EvtchnExpandArray { array_gfn };
        // SAFETY: `op` is an `evtchn_expand_array`.
        let rc = unsafe { super::evtchn_op(ec::EVTCHNOP_EXPAND_ARRAY, &mut op) };
        if rc == 0 {
            let n = PAGES.load(Ordering::SeqCst) as usize;
            if let Some(slot) = ARRAY.get(n) {
                slot.store(array_gfn * 4096, Ordering::SeqCst);
                PAGES.store(n as u32 + 1, Ordering::SeqCst);
            }
        }
        rc
    }

    /// `EVTCHNOP_set_priority` {port, priority}: 0 or the errno.
    pub fn set_priority(port: u32, priority: u32) -> i64 {
        let mut op = ec::EvtchnSetPriority { port, priority };
        // SAFETY: `op` is an `evtchn_set_priority`.
        unsafe { super::evtchn_op(ec::EVTCHNOP_SET_PRIORITY, &mut op) }
    }

    /// `EVTCHNOP_unmask` of `port`: 0 or the errno.
    pub fn unmask(port: u32) -> i64 {
        let mut op = ec::EvtchnUnmask { port };
        // SAFETY: `op` is an `evtchn_unmask`.
        unsafe { super::evtchn_op(ec::EVTCHNOP_UNMASK, &mut op) }
    }

    /// The event word of `port`, if the event array covers it.
    pub fn event_word(port: u32) -> Option<&'static AtomicU32> {
        let page = port / WORDS_PER_PAGE;
        if page >= PAGES.load(Ordering::SeqCst) {
            return None;
        }
        let base = ARRAY[page as usize].load(Ordering::SeqCst);
        let at = base + u64::from(port % WORDS_PER_PAGE) * 4;
        // SAFETY: an aligned word of an event-array page this guest registered (it lives
        // for the whole run, identity-mapped); Xen writes it concurrently, hence atomic.
        Some(unsafe { &*(at as *const AtomicU32) })
    }

    /// The control block's `ready` word and `head[priority]`.
    fn control(v: usize) -> Option<(&'static AtomicU32, *const u32)> {
        let cb = CONTROL.get(v)?.load(Ordering::SeqCst);
        if cb == 0 {
            return None;
        }
        let ready = core::mem::offset_of!(ec::EvtchnFifoControlBlock, ready) as u64;
        let head = core::mem::offset_of!(ec::EvtchnFifoControlBlock, head) as u64;
        // SAFETY: the control block this guest registered, 8-byte aligned, alive for the
        // whole run; Xen writes `ready` concurrently, hence atomic.
        Some((
            unsafe { &*((cb + ready) as *const AtomicU32) },
            (cb + head) as *const u32,
        ))
    }

    /// Takes the events of vCPU `v`: the highest ready priority first, one event at a
    /// time, looking at `ready` again after each (an event of higher priority raised
    /// meanwhile comes next).
    pub(super) fn handle(v: usize) {
        let Some((ready_word, heads)) = control(v) else {
            return;
        };
        for _ in 0..1_000_000 {
            READY[v].fetch_or(ready_word.swap(0, Ordering::SeqCst), Ordering::SeqCst);
            let ready = READY[v].load(Ordering::SeqCst);
            if ready == 0 {
                return;
            }
            let priority = ready.trailing_zeros() as usize;
            let local = &HEADS[v][priority];
            let mut port = local.load(Ordering::SeqCst);
            if port == 0 {
                // SAFETY: `heads` points at the control block's `head[16]`; Xen writes
                // the head before it sets the ready bit we saw.
                port = unsafe { core::ptr::read_volatile(heads.add(priority)) };
            }
            let next = take(port);
            local.store(next, Ordering::SeqCst);
            if next == 0 {
                READY[v].fetch_and(!(1 << priority), Ordering::SeqCst);
            }
        }
    }

    /// Takes `port` off its queue: clears LINKED and the LINK field in one step (Xen may
    /// be linking a new event after it), then PENDING, and counts the event unless it is
    /// masked. Returns the next port in the queue (0: the queue is empty).
    fn take(port: u32) -> u32 {
        let Some(word) = event_word(port).filter(|_| port != 0) else {
            return 0;
        };
        let mut w = word.load(Ordering::SeqCst);
        loop {
            let new = w & !(LINKED | ec::EVTCHN_FIFO_LINK_MASK);
            match word.compare_exchange(w, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if w & MASKED == 0 && word.fetch_and(!PENDING, Ordering::SeqCst) & PENDING != 0 {
            super::record(port);
        }
        w & ec::EVTCHN_FIFO_LINK_MASK
    }
}

/// Binds to `remote_port` of `peer`, or (None) to the first of its ports 1 to 16 that
/// it offers us (the ports below may be taken by the console and xenstore channels the
/// hypervisor or toolstack sets up, as on Xen), retrying every 1 ms for `timeout` ns
/// (the peer may not have offered it yet). Returns (local port, remote port) or the
/// last error.
pub fn bind_offered(
    peer: DomId,
    remote_port: Option<u32>,
    timeout: u64,
) -> Result<(u32, u32), i64> {
    const MS: u64 = 1_000_000;
    let start = crate::time::now();
    loop {
        let mut last = 0;
        let candidates = match remote_port {
            Some(port) => port..=port,
            None => 1..=16,
        };
        for port in candidates {
            match bind_interdomain(peer, port) {
                Ok(local) => return Ok((local, port)),
                Err(e) => last = e,
            }
        }
        if crate::time::now() - start > timeout {
            return Err(last);
        }
        sleep_until(crate::time::now() + MS);
    }
}

/// Sets a guest up to wait for events: stops the periodic timer, binds `VIRQ_TIMER`
/// (for the single-shot timers used to bound waits) and enables the callback vector;
/// ERROR if any of it fails.
pub fn set_up_timer_events() {
    // SAFETY: VCPUOP_stop_periodic_timer takes no argument.
    let rc = unsafe { crate::hypercall::vcpu_op(crate::xen::vcpu::STOP_PERIODIC_TIMER, 0, 0) };
    crate::check_eq!(rc, 0, "VCPUOP_stop_periodic_timer");
    if let Err(e) = bind_virq_timer() {
        crate::error!("EVTCHNOP_bind_virq(VIRQ_TIMER): {e}");
    }
    let rc = enable_callback_vector();
    if rc != 0 {
        crate::error!("HVM_PARAM_CALLBACK_IRQ: {rc}");
    }
}

/// An interdomain event channel between two guests that take turns (one event
/// outstanding at a time), and the events seen on it.
pub struct Link {
    port: u32,
    seen: u32,
    deadline: u64,
}

impl Link {
    /// The link over local `port`; waits end in ERROR `timeout` ns from now.
    pub fn new(port: u32, timeout: u64) -> Link {
        if port as usize >= TRACKED_PORTS {
            crate::error!("port {port} is beyond the runtime's event counters");
        }
        Link {
            port,
            seen: 0,
            deadline: crate::time::now() + timeout,
        }
    }

    /// Binds to the port `peer` offers us (see [`bind_offered`]) and takes the event
    /// Xen sets pending on the new port.
    pub fn bind(peer: DomId, remote_port: Option<u32>, timeout: u64) -> Link {
        let (port, _) = match bind_offered(peer, remote_port, 5_000_000_000) {
            Ok(ports) => ports,
            Err(e) => crate::error!("EVTCHNOP_bind_interdomain(d{peer}): {e}"),
        };
        let mut link = Link::new(port, timeout);
        link.wait("the event pending on a new interdomain port");
        link
    }

    /// The local port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Blocks until the next event from the peer; ERROR at the deadline, FAILURE if
    /// more than one arrived.
    pub fn wait(&mut self, what: &str) {
        while count(self.port) <= self.seen {
            let t = crate::time::now();
            if t >= self.deadline {
                crate::error!("timed out waiting for {what}");
            }
            crate::time::set_singleshot_timer(self.deadline.min(t + 100_000_000));
            block_once();
        }
        self.seen += 1;
        crate::check_eq!(count(self.port), self.seen, "one event at a time ({what})");
    }

    /// Notifies the peer.
    pub fn signal(&self, what: &str) {
        crate::check_eq!(send(self.port), 0, "EVTCHNOP_send: {what}");
    }
}
