//! Flushing guest TLBs on other CPUs after a nested page table lost a
//! mapping (a grant unmap, a domain's teardown), synchronously: when
//! [`flush_cpus`] returns, no CPU can still translate through the removed
//! entry, so the caller may return to the guest (the unmap is complete,
//! the granter may reuse its page) or free the frame.
//!
//! Why synchronous, with an acknowledgement, rather than Xen's tlbflush
//! clock: a grant unmap must take effect before the hypercall returns
//! (the granter is told it may reuse its page right after), and rxen
//! frees a dying domain's frames at once; the clock would need every
//! freed frame stamped and held back. A CPU here is in its guest only
//! between two points of [`crate::hvm::vcpu::SvmVcpu::run`], and leaving
//! the guest needs no lock, so waiting for it while holding the machine
//! lock cannot deadlock.
//!
//! Protocol, per CPU: a generation counter, odd while the CPU may be in its
//! guest ([`enter`] .. [`exit`]), and a flush-pending flag. [`enter`]
//! makes the generation odd and then takes the flag (a set flag makes that
//! VMRUN flush the whole TLB, every ASID); [`exit`] makes it even. The
//! requester sets the flag of each target CPU, then reads its generation
//! (all sequentially consistent): even means the CPU is outside its guest
//! and will see the flag before it enters again; odd means it may be
//! inside, so the requester sends it an interrupt (which makes it leave
//! its guest at once) and waits, boundedly, until the generation changes.
//! Leaving the guest drops its TLB entries from use; the flag, still set
//! if that entry did not take it, makes the next VMRUN flush.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rxen_x86::{apic, cpu};

/// Per CPU: odd while it may be running a guest.
static GENERATION: [AtomicU64; cpu::MAX_CPUS] = [const { AtomicU64::new(0) }; cpu::MAX_CPUS];
/// Per CPU: its next VMRUN must flush the whole guest TLB.
static FLUSH: [AtomicBool; cpu::MAX_CPUS] = [const { AtomicBool::new(false) }; cpu::MAX_CPUS];

/// How long [`flush_cpus`] waits for a CPU to leave its guest. An
/// interrupt makes a guest exit within microseconds; this bound only
/// matters if a CPU has stopped.
const WAIT_NS: u64 = 1_000_000_000;

/// CPU `me` (this one) is about to enter a guest: returns whether that
/// VMRUN must flush the whole TLB (another CPU asked).
pub fn enter(me: usize) -> bool {
    if let Some(generation) = GENERATION.get(me) {
        generation.fetch_add(1, Ordering::SeqCst);
    }
    FLUSH
        .get(me)
        .is_some_and(|flag| flag.load(Ordering::SeqCst) && flag.swap(false, Ordering::SeqCst))
}

/// CPU `me` (this one) has left its guest.
pub fn exit(me: usize) {
    if let Some(generation) = GENERATION.get(me) {
        generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes every CPU in `cpus` (other than this one, which is not in a
/// guest) stop using its guest TLB entries before this returns: each flushes
/// at its next VMRUN, and those that may be in a guest now are made to
/// leave it. Returns false if a CPU did not leave its guest within the
/// bound (its flush is still pending).
pub fn flush_cpus(cpus: impl Iterator<Item = usize>) -> bool {
    let me = cpu::current_index();
    let mut waiting = [None::<u64>; cpu::MAX_CPUS];
    for target in cpus.filter(|&c| c != me && c < cpu::MAX_CPUS) {
        FLUSH[target].store(true, Ordering::SeqCst);
        let generation = GENERATION[target].load(Ordering::SeqCst);
        if generation % 2 == 1 && waiting[target].is_none() {
            waiting[target] = Some(generation);
            if let Some((_, apic_id)) = cpu::online_apic_ids().find(|&(i, _)| i == target) {
                apic::send_ipi(apic_id, apic::ICR_KICK);
            }
        }
    }
    let deadline = crate::time::now_ns().saturating_add(WAIT_NS);
    for (target, seen) in waiting.iter().enumerate() {
        let Some(seen) = *seen else {
            continue;
        };
        while GENERATION[target].load(Ordering::SeqCst) == seen {
            if crate::time::now_ns() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }
    true
}

/// Messages about CPUs that did not acknowledge a flush (rate limit).
static STUCK_LOGGED: rxen_core::log::RateLimit = rxen_core::log::RateLimit::new();

/// Makes every vCPU of a domain (its `vcpus`, running where `running_on`
/// says) stop using its TLB entries before this returns: those not on a
/// CPU flush at their next entry, the CPUs running the others flush now
/// ([`flush_cpus`]). Returns false (and logs) if a CPU did not acknowledge.
pub fn flush_domain(
    domid: rxen_core::domain::DomId,
    vcpus: &mut [super::vcpu::SvmVcpu],
    running_on: &[Option<usize>],
) -> bool {
    for (vcpu, cpu) in vcpus.iter_mut().zip(running_on) {
        // A running vCPU belongs to its CPU; its flag is left alone.
        if cpu.is_none() {
            vcpu.flush_tlb = true;
        }
    }
    let done = flush_cpus(running_on.iter().flatten().copied());
    if !done && STUCK_LOGGED.allow() {
        rxen_x86::printk!("d{domid}: a CPU did not acknowledge a TLB flush");
    }
    done
}
