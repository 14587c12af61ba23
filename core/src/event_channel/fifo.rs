//! Event channels, FIFO ABI (`EVTCHNOP_init_control`, `expand_array`,
//! `set_priority`): per-vCPU control blocks with 16 priority queues, and
//! event words in guest pages (the event array), linked into queues by the
//! hypervisor and unlinked by the guest. The semantics follow Xen's
//! `common/event_fifo.c`; the code is our own.
//!
//! State: the domain's [`crate::event_channel::EventChannels`] keeps a
//! [`Fifo`] once the domain switched. The hypervisor keeps, per vCPU, the
//! guest-physical address of the control block and the tail port of each
//! queue (Xen's `evtchn_fifo_queue`), and per port its priority, the queue
//! it was last linked into, and whether an event arrived while its event
//! word did not exist yet (Xen's `evtchn->pending`).
//!
//! Concurrency: the guest writes event words and the control block while
//! the hypervisor does, so every access to them is one atomic operation on
//! guest memory, through the [`SharedPage`] of its page (the domain's own
//! RAM only: [`guest_page`](crate::platform::GuestAccess::guest_page)), and
//! every update of an event word is one compare-and-exchange:
//! - queuing a port sets PENDING and (when neither MASKED nor LINKED) LINKED
//!   with a zero LINK field in one step (Xen uses separate bit operations);
//! - linking a port after the queue's tail sets the tail's LINK field only
//!   while its LINKED bit is still set (the guest may unlink it at any time);
//!   when the guest unlinked it first, the queue is empty and the port
//!   becomes the head.
//!
//! The BUSY bit: Xen sets it on a tail word it failed to update at the
//! first try, so that the guest's conditional unmask (which waits for BUSY
//! to clear) does not race its later tries. Each of our updates is a single
//! compare-and-exchange, so there is nothing for the guest to wait for: we
//! never set BUSY, and keep whatever value the guest left in it.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::event_channel::{
    EvtchnFifoControlBlock, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_LINK_MASK,
    EVTCHN_FIFO_MASKED, EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PENDING,
    EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHN_FIFO_PRIORITY_MIN,
};

use super::{mark_events_pending, EventChannels, PortOps};
use crate::domain::Domain;
use crate::hypercall::GuestEnv;
use crate::mm::Gpa;
use crate::shared_page::SharedPage;

/// Event words (32 bits) in one event-array page (Xen's
/// `EVTCHN_FIFO_EVENT_WORDS_PER_PAGE`).
pub const EVENT_WORDS_PER_PAGE: u32 = 4096 / 4;
/// Most event-array pages: enough for every FIFO port (Xen's
/// `EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`), 128.
pub const MAX_EVENT_ARRAY_PAGES: usize = (EVTCHN_FIFO_NR_CHANNELS / EVENT_WORDS_PER_PAGE) as usize;
/// The link width EVTCHNOP_init_control reports.
pub const LINK_BITS: u8 = EVTCHN_FIFO_LINK_BITS as u8;

const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;

/// Compare-and-exchange attempts on a tail word the guest keeps changing
/// before giving up (Xen gives up after a few tries as well).
const SET_LINK_TRIES: usize = 64;

/// Offset of `ready` in the control block.
const READY_AT: u64 = core::mem::offset_of!(EvtchnFifoControlBlock, ready) as u64;
/// Offset of `head[0]` in the control block.
const HEAD_AT: u64 = core::mem::offset_of!(EvtchnFifoControlBlock, head) as u64;

/// One vCPU's queues.
#[derive(Clone, Debug, Default)]
struct VcpuQueues {
    /// Guest-physical address of the control block, once registered.
    control_block: Option<u64>,
    /// The last port linked into each priority queue (0: none).
    tail: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

/// The FIFO view of one port.
#[derive(Clone, Copy, Debug)]
struct PortFifo {
    /// Its priority (0 highest).
    priority: u8,
    /// The queue it was last linked into: (vCPU, priority).
    last: (u32, u8),
    /// An event arrived while the port had no event word.
    pending: bool,
}

impl Default for PortFifo {
    fn default() -> Self {
        Self {
            priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
            last: (0, EVTCHN_FIFO_PRIORITY_DEFAULT as u8),
            pending: false,
        }
    }
}

/// A domain's FIFO event channel state.
#[derive(Clone, Debug)]
pub struct Fifo {
    vcpus: Vec<VcpuQueues>,
    /// Guest-physical addresses of the event-array pages, in order.
    array: Vec<u64>,
    /// Per port, grown on demand.
    ports: Vec<PortFifo>,
}

impl Fifo {
    /// Empty state for `nr_vcpus` vCPUs: no control block, no event array.
    pub fn new(nr_vcpus: usize) -> Self {
        Self {
            vcpus: vec![VcpuQueues::default(); nr_vcpus],
            array: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Guest-physical address of vCPU `vcpu`'s control block.
    pub fn control_block(&self, vcpu: u32) -> Option<u64> {
        self.vcpus.get(vcpu as usize)?.control_block
    }

    /// Guest-physical addresses of the event-array pages.
    pub fn event_array(&self) -> &[u64] {
        &self.array
    }

    /// Ports that have an event word.
    pub fn nr_event_words(&self) -> u32 {
        // At most EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES pages: fits.
        (self.array.len() as u32).saturating_mul(EVENT_WORDS_PER_PAGE)
    }

    /// The priority of `port`.
    pub fn priority(&self, port: u32) -> u32 {
        u32::from(self.port(port).priority)
    }

    /// The tail port of queue `priority` of `vcpu` (0: none).
    pub fn tail(&self, vcpu: u32, priority: u32) -> u32 {
        self.vcpus
            .get(vcpu as usize)
            .and_then(|v| v.tail.get(priority as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Whether an event on `port` waits for its event word.
    pub fn waits_for_word(&self, port: u32) -> bool {
        self.port(port).pending
    }

    /// Guest-physical address of `port`'s event word, if its page exists.
    pub fn word_address(&self, port: u32) -> Option<u64> {
        let page = self.array.get((port / EVENT_WORDS_PER_PAGE) as usize)?;
        page.checked_add(u64::from(port % EVENT_WORDS_PER_PAGE).wrapping_mul(4))
    }

    fn port(&self, port: u32) -> PortFifo {
        self.ports.get(port as usize).copied().unwrap_or_default()
    }

    /// The FIFO state of `port`, grown to it on demand (`None` when the
    /// heap cannot hold it: ports are bounded by the domain's limit, and
    /// [`Fifo::port_allocated`] grew the table when the port was made).
    fn port_mut(&mut self, port: u32) -> Option<&mut PortFifo> {
        let index = port as usize;
        if index >= self.ports.len() {
            let len = index.checked_add(1)?;
            self.ports
                .try_reserve(len.saturating_sub(self.ports.len()))
                .ok()?;
            self.ports.resize(len, PortFifo::default());
        }
        self.ports.get_mut(index)
    }

    /// A port was (re)allocated: default priority and nothing pending, as
    /// Xen's `evtchn_fifo_init`. The queue it was last in is kept (it may
    /// still be that queue's tail). `-ENOMEM` when the table cannot grow.
    pub(crate) fn port_allocated(&mut self, port: u32) -> Result<(), Errno> {
        let p = self.port_mut(port).ok_or(errno::ENOMEM)?;
        p.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
        p.pending = false;
        Ok(())
    }
}

/// The FIFO ABI's port operations (Xen's `evtchn_port_ops_fifo`).
pub struct FifoOps;

impl PortOps for FifoOps {
    fn nr_channels(&self) -> u32 {
        EVTCHN_FIFO_NR_CHANNELS
    }

    fn init(&self, events: &mut EventChannels, port: u32) -> Result<(), Errno> {
        match events.fifo_mut() {
            Some(fifo) => fifo.port_allocated(port),
            None => Ok(()),
        }
    }

    fn set_pending(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        if let Some(vcpu) = set_pending(&mut domain.events, env, port) {
            mark_events_pending(domain, vcpu as usize, env);
        }
    }

    fn clear_pending(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        clear_pending(&mut domain.events, env, port);
    }

    fn unmask(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        if let Some(vcpu) = unmask(&mut domain.events, env, port) {
            mark_events_pending(domain, vcpu as usize, env);
        }
    }

    fn is_pending(&self, domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool {
        is_pending(&domain.events, env, port)
    }

    fn is_masked(&self, domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool {
        is_masked(&domain.events, env, port)
    }

    fn set_priority(
        &self,
        events: &mut EventChannels,
        port: u32,
        priority: u32,
    ) -> Result<(), Errno> {
        set_priority(events, port, priority)
    }
}

/// Runs `f` on the page of the guest's 32-bit word at `gpa`, with the
/// word's offset in it; `None` when the page is not the domain's own RAM
/// (the guest moved something over it), or when `f` gives `None` (the
/// [`SharedPage`] refuses a word that is not 4-byte aligned).
fn with_word<R>(
    env: &mut dyn GuestEnv,
    gpa: u64,
    f: impl FnOnce(SharedPage<'_>, usize) -> Option<R>,
) -> Option<R> {
    let mut f = Some(f);
    let mut result = None;
    let gpa = Gpa(gpa);
    // Below 4096: fits.
    let at = gpa.page_offset() as usize;
    env.guest_page(gpa.gfn(), &mut |page| {
        if let Some(f) = f.take() {
            result = f(page, at);
        }
    })
    .ok()?;
    result
}

/// EVTCHNOP_init_control for `vcpu`: registers the control block at
/// `offset` of guest frame `gfn` (`gfn_is_ram`: whether the domain's memory
/// map has RAM there). The first call switches the domain to FIFO.
///
/// Errnos, as Xen: `-ENOENT` for a vCPU that does not exist; `-EINVAL` for
/// a control block that would cross the page end or an offset that is not
/// 8-byte aligned, for a vCPU that already has one, and for a frame that is
/// not RAM. Nothing changes on failure.
///
/// Ports pending in the 2-level bitmap at the switch are carried over as
/// Xen does: they are remembered as pending and queued when their event
/// word arrives (EVTCHNOP_expand_array; there are no event words yet).
/// Every port gets the default priority.
pub fn init_control(
    events: &mut EventChannels,
    env: &mut dyn GuestEnv,
    vcpu: u32,
    gfn: u64,
    offset: u32,
    gfn_is_ram: bool,
) -> Result<(), Errno> {
    if vcpu as usize >= events.nr_vcpus() {
        return Err(errno::ENOENT);
    }
    let size = core::mem::size_of::<EvtchnFifoControlBlock>() as u32;
    if offset > 4096u32.saturating_sub(size) || !offset.is_multiple_of(8) {
        return Err(errno::EINVAL);
    }
    if events
        .fifo()
        .is_some_and(|f| f.control_block(vcpu).is_some())
    {
        return Err(errno::EINVAL);
    }
    let gpa = gfn
        .checked_mul(4096)
        .filter(|_| gfn_is_ram)
        .and_then(|page| page.checked_add(u64::from(offset)))
        .ok_or(errno::EINVAL)?;
    if !events.is_fifo() {
        let mut fifo = Fifo::new(events.nr_vcpus());
        let pending: Vec<u32> = crate::hypercall::with_shared_info(env, |page| {
            (1..events.port_limit())
                .filter(|&port| {
                    events.port(port).is_some()
                        && crate::event_channel::two_level::is_pending(&page, port)
                })
                .collect()
        })
        .unwrap_or_default();
        for port in pending {
            if let Some(p) = fifo.port_mut(port) {
                p.pending = true;
            }
        }
        events.switch_to_fifo(fifo);
    }
    if let Some(queues) = events
        .fifo_mut()
        .and_then(|fifo| fifo.vcpus.get_mut(vcpu as usize))
    {
        queues.control_block = Some(gpa);
    }
    Ok(())
}

/// EVTCHNOP_expand_array: appends the event-array page at guest frame
/// `gfn`, then queues the events that waited for a word on it. Returns the
/// vCPUs to notify.
///
/// Errnos, as Xen: `-EOPNOTSUPP` before EVTCHNOP_init_control (Xen's
/// `evtchn_fifo_expand_array` answers so when the domain has no FIFO
/// state); `-ENOSPC` when the array already covers every port (128 pages,
/// checked first, as Xen); `-EINVAL` for a frame that is not RAM.
pub fn expand_array(
    events: &mut EventChannels,
    env: &mut dyn GuestEnv,
    gfn: u64,
    gfn_is_ram: bool,
) -> Result<Vec<u32>, Errno> {
    let fifo = events.fifo_mut().ok_or(errno::EOPNOTSUPP)?;
    if fifo.array.len() >= MAX_EVENT_ARRAY_PAGES {
        return Err(errno::ENOSPC);
    }
    let gpa = gfn
        .checked_mul(4096)
        .filter(|_| gfn_is_ram)
        .ok_or(errno::EINVAL)?;
    let first = fifo.nr_event_words();
    fifo.array.try_reserve(1).map_err(|_| errno::ENOMEM)?;
    fifo.array.push(gpa);
    let end = fifo.nr_event_words().min(events.port_limit());
    let mut notify = Vec::new();
    for port in first..end {
        let waiting = events.fifo().is_some_and(|f| f.waits_for_word(port));
        if waiting && events.port(port).is_some() {
            if let Some(vcpu) = set_pending(events, env, port) {
                if !notify.contains(&vcpu) {
                    notify.push(vcpu);
                }
            }
        }
    }
    Ok(notify)
}

/// EVTCHNOP_set_priority. Errnos, as Xen: `-EINVAL` for a port that is not
/// allocated (Xen: not valid), then `-ENOSYS` in 2-level mode (the 2-level
/// ABI has no priorities), then `-EINVAL` for a priority above
/// `EVTCHN_FIFO_PRIORITY_MIN`. The new priority applies from the next time
/// the port is queued.
pub fn set_priority(events: &mut EventChannels, port: u32, priority: u32) -> Result<(), Errno> {
    events.port(port).ok_or(errno::EINVAL)?;
    let fifo = events.fifo_mut().ok_or(errno::ENOSYS)?;
    if priority > EVTCHN_FIFO_PRIORITY_MIN {
        return Err(errno::EINVAL);
    }
    fifo.port_mut(port).ok_or(errno::ENOMEM)?.priority = priority as u8;
    Ok(())
}

/// Raises an event on `port` (FIFO mode): sets PENDING and, unless the port
/// is masked or already linked, queues it on its vCPU's queue of its
/// priority. Returns the vCPU to notify (`evtchn_upcall_pending`) when the
/// queue was empty and its `ready` bit was clear.
///
/// A port without event word remembers the event until
/// [`expand_array`] gives it one. A vCPU without control block gets only
/// the PENDING bit (Xen drops such an event with a warning: a guest must
/// not unmask ports of a vCPU before registering its control block).
pub fn set_pending(events: &mut EventChannels, env: &mut dyn GuestEnv, port: u32) -> Option<u32> {
    let vcpu = events.port(port)?.vcpu;
    let fifo = events.fifo_mut()?;
    let Some(word_at) = fifo.word_address(port) else {
        fifo.port_mut(port)?.pending = true;
        return None;
    };
    fifo.port_mut(port)?.pending = false;
    let control_block = fifo.control_block(vcpu);
    // PENDING, and LINKED (with an empty LINK field) if it is to be queued,
    // in one step.
    let link = with_word(env, word_at, |page, at| {
        let mut link = false;
        // `f` never declines: an `Err` means the guest kept rewriting the
        // word's other half through every round (see `SharedPage`), and the
        // event is lost to it; nothing is linked then.
        let updated = page.fetch_update_u32(at, |w| {
            link = w & (MASKED | LINKED) == 0 && control_block.is_some();
            Some(if link {
                (w | PENDING | LINKED) & !EVTCHN_FIFO_LINK_MASK
            } else {
                w | PENDING
            })
        })?;
        Some(link && updated.is_ok())
    })?;
    let control_block = control_block.filter(|_| link)?;
    let priority = fifo.port(port).priority;
    // The port left its last queue (the guest unlinked it): if it was that
    // queue's tail, the queue is empty now, and a port queued there later
    // must not be linked after this one.
    let (last_vcpu, last_priority) = fifo.port(port).last;
    if let Some(tail) = fifo
        .vcpus
        .get_mut(last_vcpu as usize)
        .and_then(|q| q.tail.get_mut(last_priority as usize))
    {
        if *tail == port {
            *tail = 0;
        }
    }
    fifo.port_mut(port)?.last = (vcpu, priority);
    let queue_tail = fifo
        .vcpus
        .get_mut(vcpu as usize)?
        .tail
        .get_mut(priority as usize)?;
    let tail = core::mem::replace(queue_tail, port);
    let linked = tail != 0
        && fifo
            .word_address(tail)
            .is_some_and(|tail_at| set_link(env, tail_at, port));
    if linked {
        return None;
    }
    // The queue was empty: the port is its head.
    // Within the control block (checked at EVTCHNOP_init_control).
    let head_at = control_block
        .wrapping_add(HEAD_AT)
        .wrapping_add(u64::from(priority).wrapping_mul(4));
    with_word(env, head_at, |page, at| {
        page.store_u32(at, port).then_some(())
    })?;
    let ready_was = with_word(env, control_block.wrapping_add(READY_AT), |page, at| {
        page.fetch_or_u32(at, 1 << priority)
    })?;
    (ready_was & (1 << priority) == 0).then_some(vcpu)
}

/// Sets the LINK field of the tail word at `tail_at` to `port` while its
/// LINKED bit is set. False when the guest already unlinked the tail (the
/// queue is empty). A guest that keeps changing the word defeats the
/// compare-and-exchange: after [`SET_LINK_TRIES`] the port is taken as
/// linked (as Xen does; the guest loses that event).
fn set_link(env: &mut dyn GuestEnv, tail_at: u64, port: u32) -> bool {
    with_word(env, tail_at, |page, at| {
        let mut w = page.load_u32(at)?;
        for _ in 0..SET_LINK_TRIES {
            if w & LINKED == 0 {
                return Some(false);
            }
            let new = (w & !EVTCHN_FIFO_LINK_MASK) | port;
            match page.compare_exchange_u32(at, w, new)? {
                Ok(_) => return Some(true),
                Err(now) => w = now,
            }
        }
        Some(true)
    })
    .unwrap_or(false)
}

/// EVTCHNOP_unmask in FIFO mode: clears MASKED; a pending port is queued
/// (Xen's `evtchn_fifo_unmask`). Returns the vCPU to notify. A port without
/// event word has nothing to unmask.
pub fn unmask(events: &mut EventChannels, env: &mut dyn GuestEnv, port: u32) -> Option<u32> {
    let word_at = events.fifo()?.word_address(port)?;
    let was = with_word(env, word_at, |page, at| page.fetch_and_u32(at, !MASKED))?;
    if was & PENDING != 0 {
        set_pending(events, env, port)
    } else {
        None
    }
}

/// A port is being closed (FIFO mode): its PENDING bit is cleared so that
/// a port allocated again does not start pending (Xen's
/// `evtchn_fifo_clear_pending`; a port still linked stays in its queue,
/// where the guest skips it).
pub fn clear_pending(events: &mut EventChannels, env: &mut dyn GuestEnv, port: u32) {
    let Some(fifo) = events.fifo_mut() else {
        return;
    };
    if let Some(p) = fifo.port_mut(port) {
        p.pending = false;
    }
    if let Some(word_at) = fifo.word_address(port) {
        let _ = with_word(env, word_at, |page, at| page.fetch_and_u32(at, !PENDING));
    }
}

/// Whether `port` is pending (FIFO mode).
pub fn is_pending(events: &EventChannels, env: &mut dyn GuestEnv, port: u32) -> bool {
    let Some(fifo) = events.fifo() else {
        return false;
    };
    match fifo.word_address(port) {
        Some(at) => {
            with_word(env, at, |page, at| Some(page.load_u32(at)? & PENDING != 0)).unwrap_or(false)
        }
        None => fifo.waits_for_word(port),
    }
}

/// Whether `port` is masked (FIFO mode): its MASKED bit, and a port
/// without event word counts as masked (Xen's `evtchn_fifo_is_masked`).
pub fn is_masked(events: &EventChannels, env: &mut dyn GuestEnv, port: u32) -> bool {
    let Some(at) = events.fifo().and_then(|fifo| fifo.word_address(port)) else {
        return true;
    };
    with_word(env, at, |page, at| Some(page.load_u32(at)? & MASKED != 0)).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;
    use crate::hypercall::upcall_pending;
    use crate::test_support::{domu, evtchn, peer, ret, two_domains, FakeEnv, MEM};
    use rxen_abi::event_channel as ev;

    /// vCPU 0's control block: frame 1, offset 0.
    const CB0: u64 = 0x1000;
    /// The event array: frames 2, 3, ... in order.
    const ARRAY_GFN: u64 = 2;

    fn init(d: &mut Domain, env: &mut FakeEnv, vcpu: u32, gfn: u64, offset: u32) -> i64 {
        let op = ev::EvtchnInitControl {
            control_gfn: gfn,
            offset,
            vcpu,
            ..Default::default()
        };
        evtchn(d, env, ev::EVTCHNOP_INIT_CONTROL, &op)
    }

    fn expand(d: &mut Domain, env: &mut FakeEnv, gfn: u64) -> i64 {
        let op = ev::EvtchnExpandArray { array_gfn: gfn };
        evtchn(d, env, ev::EVTCHNOP_EXPAND_ARRAY, &op)
    }

    fn set_priority(d: &mut Domain, env: &mut FakeEnv, port: u32, priority: u32) -> i64 {
        let op = ev::EvtchnSetPriority { port, priority };
        evtchn(d, env, ev::EVTCHNOP_SET_PRIORITY, &op)
    }

    fn send(d: &mut Domain, env: &mut FakeEnv, port: u32) -> i64 {
        evtchn(d, env, ev::EVTCHNOP_SEND, &ev::EvtchnSend { port })
    }

    fn unmask(d: &mut Domain, env: &mut FakeEnv, port: u32) -> i64 {
        evtchn(d, env, ev::EVTCHNOP_UNMASK, &ev::EvtchnUnmask { port })
    }

    /// The event word of `port` (array pages at frames 2, 3, ...).
    fn word(env: &FakeEnv, port: u32) -> u32 {
        env.get(ARRAY_GFN * 4096 + u64::from(port) * 4)
    }

    fn set_word(env: &mut FakeEnv, port: u32, value: u32) {
        env.put(ARRAY_GFN * 4096 + u64::from(port) * 4, &value);
    }

    fn control_block(env: &FakeEnv, at: u64) -> EvtchnFifoControlBlock {
        env.get(at)
    }

    /// A domain in FIFO mode: vCPU 0's control block at [`CB0`], `pages`
    /// event-array pages.
    fn fifo_domain(pages: u64) -> (Domain, FakeEnv) {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        make_fifo(&mut d, &mut env, pages);
        (d, env)
    }

    fn make_fifo(d: &mut Domain, env: &mut FakeEnv, pages: u64) {
        assert_eq!(init(d, env, 0, CB0 / 4096, 0), 0);
        for page in 0..pages {
            assert_eq!(expand(d, env, ARRAY_GFN + page), 0);
        }
    }

    /// What a guest does with queue `priority` of the control block at
    /// `cb`: from the head, clears LINKED, the LINK field and PENDING of
    /// each port and follows the link; clears the ready bit. Returns the
    /// ports in order.
    fn consume(env: &mut FakeEnv, cb: u64, priority: u32) -> Vec<u32> {
        let block = control_block(env, cb);
        let mut port = block.head[priority as usize];
        let mut ports = Vec::new();
        while port != 0 {
            let w = word(env, port);
            assert!(w & LINKED != 0, "port {port} in the queue is linked");
            set_word(env, port, w & !(LINKED | PENDING | EVTCHN_FIFO_LINK_MASK));
            ports.push(port);
            port = w & EVTCHN_FIFO_LINK_MASK;
            assert!(ports.len() < 10_000, "a loop in the queue");
        }
        env.put(cb, &(block.ready & !(1 << priority)));
        ports
    }

    fn upcall_flag_clear(d: &Domain, env: &mut FakeEnv) {
        let at = core::mem::offset_of!(rxen_abi::xen::SharedInfo, vcpu_info)
            + core::mem::offset_of!(rxen_abi::xen::VcpuInfo, evtchn_upcall_pending);
        env.si().store_u8(at, 0);
        assert!(!upcall_pending(d, 0, env));
    }

    #[test]
    fn init_control_follows_xens_rules() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        // Before the switch: no priorities, no array.
        assert_eq!(
            set_priority(&mut d, &mut env, port, 3),
            ret(errno::ENOSYS),
            "2-level"
        );
        assert_eq!(
            expand(&mut d, &mut env, ARRAY_GFN),
            ret(errno::EOPNOTSUPP),
            "no FIFO state yet"
        );
        assert_eq!(
            init(&mut d, &mut env, 2, 1, 0),
            ret(errno::ENOENT),
            "vCPU 2"
        );
        assert_eq!(init(&mut d, &mut env, 99, 1, 0), ret(errno::ENOENT));
        assert_eq!(
            init(&mut d, &mut env, 0, 1, 4),
            ret(errno::EINVAL),
            "unaligned"
        );
        assert_eq!(
            init(&mut d, &mut env, 0, 1, 4094),
            ret(errno::EINVAL),
            "crosses the page end"
        );
        assert_eq!(
            init(&mut d, &mut env, 0, 1, 4096 - 72 + 8),
            ret(errno::EINVAL)
        );
        let not_ram = MEM as u64 / 4096;
        assert_eq!(init(&mut d, &mut env, 0, not_ram, 0), ret(errno::EINVAL));
        assert_eq!(init(&mut d, &mut env, 0, u64::MAX, 0), ret(errno::EINVAL));
        let untouched: ev::EvtchnInitControl = env.get(0x300);
        assert_eq!(untouched.link_bits, 0, "nothing copied back on failure");
        assert!(!d.events.is_fifo(), "failures leave the domain 2-level");
        // The last block that fits.
        assert_eq!(init(&mut d, &mut env, 0, 1, 4096 - 72), 0);
        let done: ev::EvtchnInitControl = env.get(0x300);
        assert_eq!(done.link_bits, 17);
        assert!(d.events.is_fifo());
        let fifo = d.events.fifo().unwrap();
        assert_eq!(fifo.control_block(0), Some(0x1000 + 4096 - 72));
        assert_eq!(fifo.control_block(1), None);
        assert_eq!(fifo.priority(port), EVTCHN_FIFO_PRIORITY_DEFAULT);
        assert_eq!(
            init(&mut d, &mut env, 0, 2, 0),
            ret(errno::EINVAL),
            "already set up"
        );
        assert_eq!(init(&mut d, &mut env, 1, 1, 0), 0, "vCPU 1, same page");
        assert_eq!(d.events.fifo().unwrap().control_block(1), Some(0x1000));
    }

    #[test]
    fn expand_array_takes_128_pages_of_ram() {
        let (mut d, mut env) = fifo_domain(0);
        assert_eq!(
            expand(&mut d, &mut env, MEM as u64 / 4096),
            ret(errno::EINVAL),
            "not RAM"
        );
        assert_eq!(d.events.fifo().unwrap().nr_event_words(), 0);
        for _ in 0..MAX_EVENT_ARRAY_PAGES {
            assert_eq!(expand(&mut d, &mut env, ARRAY_GFN), 0);
        }
        assert_eq!(
            d.events.fifo().unwrap().nr_event_words(),
            EVTCHN_FIFO_NR_CHANNELS
        );
        assert_eq!(expand(&mut d, &mut env, ARRAY_GFN), ret(errno::ENOSPC));
        assert_eq!(
            expand(&mut d, &mut env, u64::MAX),
            ret(errno::ENOSPC),
            "full comes first"
        );
    }

    #[test]
    fn set_priority_rules() {
        let (mut d, mut env) = fifo_domain(1);
        let port = d.events.bind_ipi(0).unwrap();
        assert_eq!(
            set_priority(&mut d, &mut env, port + 1, 3),
            ret(errno::EINVAL),
            "unbound"
        );
        assert_eq!(
            set_priority(&mut d, &mut env, 200_000, 3),
            ret(errno::EINVAL)
        );
        assert_eq!(set_priority(&mut d, &mut env, port, 16), ret(errno::EINVAL));
        assert_eq!(d.events.fifo().unwrap().priority(port), 7, "default");
        assert_eq!(set_priority(&mut d, &mut env, port, 15), 0);
        assert_eq!(set_priority(&mut d, &mut env, port, 0), 0);
        assert_eq!(d.events.fifo().unwrap().priority(port), 0);
        // A closed and reallocated port starts at the default again.
        d.events.close(port).unwrap();
        assert_eq!(d.events.bind_ipi(0), Ok(port));
        assert_eq!(d.events.fifo().unwrap().priority(port), 7);
    }

    #[test]
    fn sends_queue_ports_in_order_and_notify_once() {
        let (mut d, mut env) = fifo_domain(1);
        let ports: Vec<u32> = (0..3).map(|_| d.events.bind_ipi(0).unwrap()).collect();
        d.vcpus[0].blocked = Some(None);
        assert_eq!(send(&mut d, &mut env, ports[0]), 0);
        let block = control_block(&env, CB0);
        assert_eq!(block.head[7], ports[0]);
        assert_eq!(block.ready, 1 << 7);
        assert!(upcall_pending(&d, 0, &mut env));
        assert_eq!(d.vcpus[0].blocked, None, "the event ended the block");
        upcall_flag_clear(&d, &mut env);
        for &port in &ports[1..] {
            assert_eq!(send(&mut d, &mut env, port), 0);
        }
        assert!(
            !upcall_pending(&d, 0, &mut env),
            "the queue was not empty: no new upcall"
        );
        assert_eq!(word(&env, ports[0]), PENDING | LINKED | ports[1]);
        assert_eq!(word(&env, ports[1]), PENDING | LINKED | ports[2]);
        assert_eq!(word(&env, ports[2]), PENDING | LINKED);
        assert_eq!(d.events.fifo().unwrap().tail(0, 7), ports[2]);
        // A linked port sent again changes nothing.
        assert_eq!(send(&mut d, &mut env, ports[1]), 0);
        assert_eq!(word(&env, ports[1]), PENDING | LINKED | ports[2]);
        assert_eq!(word(&env, ports[2]), PENDING | LINKED, "no self link");
        assert_eq!(consume(&mut env, CB0, 7), ports);
        assert!(!is_pending(&d.events, &mut env, ports[0]));
    }

    #[test]
    fn masked_ports_only_set_pending_until_unmasked() {
        let (mut d, mut env) = fifo_domain(1);
        let port = d.events.bind_ipi(0).unwrap();
        set_word(&mut env, port, MASKED);
        assert_eq!(send(&mut d, &mut env, port), 0);
        assert_eq!(word(&env, port), MASKED | PENDING);
        assert!(is_pending(&d.events, &mut env, port));
        let block = control_block(&env, CB0);
        assert_eq!((block.ready, block.head[7]), (0, 0));
        assert!(!upcall_pending(&d, 0, &mut env));
        // Unmasking an idle port does nothing; a pending one is queued.
        let idle = d.events.bind_ipi(0).unwrap();
        set_word(&mut env, idle, MASKED);
        assert_eq!(unmask(&mut d, &mut env, idle), 0);
        assert_eq!(word(&env, idle), 0);
        assert!(!upcall_pending(&d, 0, &mut env));
        assert_eq!(unmask(&mut d, &mut env, port), 0);
        assert_eq!(word(&env, port), PENDING | LINKED);
        let block = control_block(&env, CB0);
        assert_eq!((block.ready, block.head[7]), (1 << 7, port));
        assert!(upcall_pending(&d, 0, &mut env));
        assert_eq!(
            unmask(&mut d, &mut env, 99),
            ret(errno::EINVAL),
            "unbound port"
        );
    }

    #[test]
    fn a_consumed_queue_gets_a_new_head() {
        let (mut d, mut env) = fifo_domain(1);
        let (a, b) = (d.events.bind_ipi(0).unwrap(), d.events.bind_ipi(0).unwrap());
        assert_eq!(send(&mut d, &mut env, a), 0);
        assert_eq!(consume(&mut env, CB0, 7), vec![a]);
        upcall_flag_clear(&d, &mut env);
        // The tail (a) is no longer linked: b is the new head, not a's link.
        assert_eq!(send(&mut d, &mut env, b), 0);
        assert_eq!(word(&env, a), 0, "a is not linked to b");
        let block = control_block(&env, CB0);
        assert_eq!((block.ready, block.head[7]), (1 << 7, b));
        assert!(upcall_pending(&d, 0, &mut env), "empty queue: new upcall");
        assert_eq!(consume(&mut env, CB0, 7), vec![b]);
        // The consumed tail itself again: a head, not a link to itself.
        assert_eq!(send(&mut d, &mut env, b), 0);
        assert_eq!(word(&env, b), PENDING | LINKED);
        assert_eq!(control_block(&env, CB0).head[7], b);
        assert_eq!(send(&mut d, &mut env, a), 0);
        assert_eq!(consume(&mut env, CB0, 7), vec![b, a]);
        // The guest unlinks the tail while we link after it: a partially
        // consumed queue (head consumed, tail still linked) keeps growing.
        let c = d.events.bind_ipi(0).unwrap();
        for port in [a, b] {
            assert_eq!(send(&mut d, &mut env, port), 0);
        }
        let w = word(&env, a);
        set_word(&mut env, a, w & !(LINKED | PENDING | EVTCHN_FIFO_LINK_MASK));
        assert_eq!(send(&mut d, &mut env, c), 0);
        assert_eq!(word(&env, b), PENDING | LINKED | c, "linked after b");
    }

    #[test]
    fn priorities_have_their_own_queues() {
        let (mut d, mut env) = fifo_domain(1);
        let ports: Vec<u32> = (0..4).map(|_| d.events.bind_ipi(0).unwrap()).collect();
        assert_eq!(set_priority(&mut d, &mut env, ports[0], 15), 0);
        assert_eq!(set_priority(&mut d, &mut env, ports[1], 0), 0);
        assert_eq!(set_priority(&mut d, &mut env, ports[3], 0), 0);
        for &port in &ports {
            assert_eq!(send(&mut d, &mut env, port), 0);
        }
        let block = control_block(&env, CB0);
        assert_eq!(block.ready, 1 << 15 | 1 << 7 | 1 << 0);
        assert_eq!(block.head[15], ports[0]);
        assert_eq!(block.head[7], ports[2]);
        assert_eq!(block.head[0], ports[1]);
        assert_eq!(consume(&mut env, CB0, 0), vec![ports[1], ports[3]]);
        assert_eq!(consume(&mut env, CB0, 7), vec![ports[2]]);
        assert_eq!(consume(&mut env, CB0, 15), vec![ports[0]]);
        // A new priority applies from the next queuing; the old queue's tail
        // is forgotten, so its next port does not link after the mover.
        assert_eq!(set_priority(&mut d, &mut env, ports[0], 2), 0);
        assert_eq!(send(&mut d, &mut env, ports[0]), 0);
        assert_eq!(control_block(&env, CB0).head[2], ports[0]);
        assert_eq!(d.events.fifo().unwrap().tail(0, 15), 0);
    }

    #[test]
    fn vcpus_without_a_control_block_only_get_pending() {
        let (mut d, mut env) = fifo_domain(1);
        let port = d.events.bind_ipi(1).unwrap();
        assert_eq!(send(&mut d, &mut env, port), 0);
        assert_eq!(word(&env, port), PENDING);
        assert!(!upcall_pending(&d, 1, &mut env));
        // With its own control block (frame 1, offset 0x100), vCPU 1 gets it.
        assert_eq!(init(&mut d, &mut env, 1, 1, 0x100), 0);
        assert_eq!(unmask(&mut d, &mut env, port), 0);
        assert_eq!(word(&env, port), PENDING | LINKED);
        assert_eq!(control_block(&env, 0x1100).head[7], port);
        assert_eq!(control_block(&env, CB0).ready, 0);
        assert!(upcall_pending(&d, 1, &mut env));
    }

    #[test]
    fn ports_beyond_the_array_are_delivered_when_their_page_arrives() {
        let (mut d, mut env) = fifo_domain(1);
        let mut port = 0;
        while port < 1050 {
            port = d.events.bind_ipi(0).unwrap();
        }
        assert_eq!(send(&mut d, &mut env, port), 0);
        assert!(d.events.fifo().unwrap().waits_for_word(port));
        assert!(is_pending(&d.events, &mut env, port));
        assert_eq!(control_block(&env, CB0).ready, 0);
        assert!(!upcall_pending(&d, 0, &mut env));
        assert_eq!(unmask(&mut d, &mut env, port), 0, "no word: nothing to do");
        assert_eq!(expand(&mut d, &mut env, ARRAY_GFN + 1), 0);
        assert!(!d.events.fifo().unwrap().waits_for_word(port));
        assert_eq!(word(&env, port), PENDING | LINKED);
        let block = control_block(&env, CB0);
        assert_eq!((block.ready, block.head[7]), (1 << 7, port));
        assert!(upcall_pending(&d, 0, &mut env));
    }

    #[test]
    fn more_than_4096_ports() {
        let (mut d, mut env) = fifo_domain(5);
        for expected in 1..=5000 {
            assert_eq!(d.events.bind_ipi(0), Ok(expected));
        }
        assert_eq!(send(&mut d, &mut env, 4500), 0);
        assert_eq!(send(&mut d, &mut env, 3), 0);
        assert_eq!(word(&env, 4500), PENDING | LINKED | 3);
        let block = control_block(&env, CB0);
        assert_eq!((block.ready, block.head[7]), (1 << 7, 4500));
        assert_eq!(consume(&mut env, CB0, 7), vec![4500, 3]);
        // Status knows ports past the 2-level limit.
        let status = ev::EvtchnStatus {
            dom: 0x7ff0,
            port: 4999,
            ..Default::default()
        };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_STATUS, &status), 0);
        assert_eq!(
            env.get::<ev::EvtchnStatus>(0x300).status,
            ev::EVTCHNSTAT_IPI
        );
    }

    #[test]
    fn two_level_pending_ports_carry_over() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let (a, b) = (d.events.bind_ipi(0).unwrap(), d.events.bind_ipi(0).unwrap());
        assert_eq!(send(&mut d, &mut env, b), 0);
        assert!(crate::event_channel::two_level::is_pending(&env.si(), b));
        make_fifo(&mut d, &mut env, 0);
        assert!(d.events.fifo().unwrap().waits_for_word(b));
        assert!(!d.events.fifo().unwrap().waits_for_word(a));
        upcall_flag_clear(&d, &mut env);
        assert_eq!(expand(&mut d, &mut env, ARRAY_GFN), 0);
        assert_eq!(word(&env, b), PENDING | LINKED);
        assert_eq!(word(&env, a), 0);
        assert_eq!(control_block(&env, CB0).head[7], b);
        assert!(upcall_pending(&d, 0, &mut env));
    }

    #[test]
    fn close_clears_pending() {
        let (mut d, mut env) = fifo_domain(1);
        let port = d.events.bind_ipi(0).unwrap();
        set_word(&mut env, port, MASKED);
        assert_eq!(send(&mut d, &mut env, port), 0);
        let close = ev::EvtchnClose { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert_eq!(word(&env, port), MASKED);
    }

    #[test]
    fn interdomain_sends_between_fifo_domains() {
        let (mut d1, mut env) = two_domains();
        make_fifo(&mut d1, &mut env, 1);
        let (d2, env2) = peer(&mut env);
        make_fifo(d2, env2, 1);
        let offered = d2.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: offered,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        // The bind-time event, queued in FIFO mode.
        assert_eq!(consume(&mut env, CB0, 7), vec![local]);
        peer(&mut env).0.vcpus[0].blocked = Some(None);
        assert_eq!(send(&mut d1, &mut env, local), 0);
        let (d2, env2) = peer(&mut env);
        assert_eq!(word(env2, offered), PENDING | LINKED);
        assert_eq!(control_block(env2, CB0).head[7], offered);
        assert!(upcall_pending(d2, 0, env2));
        assert_eq!(d2.vcpus[0].blocked, None);
        assert_eq!(consume(env2, CB0, 7), vec![offered]);
        // And back.
        let (d2, env2) = peer(&mut env);
        let back = ev::EvtchnSend { port: offered };
        let mut d2 = d2.clone();
        let mut env2 = core::mem::replace(env2, FakeEnv::new());
        // d2 calls with d1 as its peer.
        let d1_taken = core::mem::replace(&mut d1, domu());
        let env_taken = core::mem::replace(&mut env, FakeEnv::new());
        env2.peer = Some(alloc::boxed::Box::new((d1_taken, env_taken)));
        assert_eq!(evtchn(&mut d2, &mut env2, ev::EVTCHNOP_SEND, &back), 0);
        let (d1, env1) = peer(&mut env2);
        assert_eq!(word(env1, local), PENDING | LINKED);
        assert_eq!(control_block(env1, CB0).head[7], local);
        assert!(upcall_pending(d1, 0, env1));
    }

    #[test]
    fn interdomain_sends_between_fifo_and_two_level_domains() {
        let (mut d1, mut env) = two_domains();
        let (d2, env2) = peer(&mut env);
        make_fifo(d2, env2, 1);
        let offered = d2.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: offered,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        // 2-level side: the bind-time event in the bitmap.
        assert!(crate::event_channel::two_level::is_pending(
            &env.si(),
            local
        ));
        env.si_clear();
        // 2-level -> FIFO.
        assert_eq!(send(&mut d1, &mut env, local), 0);
        let (d2, env2) = peer(&mut env);
        assert_eq!(word(env2, offered), PENDING | LINKED);
        assert_eq!(control_block(env2, CB0).head[7], offered);
        assert!(upcall_pending(d2, 0, env2));
        // FIFO -> 2-level: d2 sends with d1 as its peer.
        let mut d2 = d2.clone();
        let mut env2 = core::mem::replace(env2, FakeEnv::new());
        env2.peer = Some(alloc::boxed::Box::new((d1, env)));
        let back = ev::EvtchnSend { port: offered };
        assert_eq!(evtchn(&mut d2, &mut env2, ev::EVTCHNOP_SEND, &back), 0);
        let (d1, env1) = peer(&mut env2);
        assert!(crate::event_channel::two_level::is_pending(
            &env1.si(),
            local
        ));
        assert!(upcall_pending(d1, 0, env1));
        assert!(!d1.events.is_fifo());
    }
}
