//! The credit scheduler: Xen's credit1 (weighted fair share with caps and
//! wake-up boost), the default of `sched=`.
//!
//! It owns the per-domain weights, caps and cap budgets, the per-vCPU credit
//! and priority, and one global run queue (Xen keeps one queue per pCPU and
//! steals work between them; one queue served in priority order by every
//! pCPU, each taking only the vCPUs whose hard affinity names it, is the
//! same policy, and it is work conserving by construction). The queue holds
//! only the vCPUs waiting to run, so a choice costs the same beside any
//! number of blocked vCPUs.
//!
//! # How it maps to Xen's credit1
//!
//! - **Credit in nanoseconds.** Xen burns 100 credits per 10 ms tick; here
//!   a running vCPU burns exactly the nanoseconds it ran.
//! - **Accounting every 30 ms** ([`ACCT_PERIOD_NS`], Xen's 3 ticks): the
//!   pCPU time of the period (`nr_cpus * 30 ms`) is shared among the
//!   *active* domains (those with a vCPU runnable, running, or that ran
//!   during the period) in proportion to their weight. A domain's share is
//!   at most what its active vCPUs can use (`30 ms` each) and at most its
//!   cap, and is split evenly among its active vCPUs, as Xen does: the
//!   weight is **per domain**, not per vCPU. Credit is kept within
//!   ±[`TSLICE_NS`], so that a sleeper cannot hoard credit and a hog's debt
//!   stays bounded (Xen bounds credit too). A new vCPU starts with
//!   [`INITIAL_CREDIT`] (UNDER, as in Xen).
//! - **Priorities** `BOOST > UNDER > OVER`: UNDER while credit is positive,
//!   OVER once it is spent. Within a priority, round robin. OVER vCPUs still
//!   run when nothing UNDER is runnable (work conserving), so a vCPU that
//!   spins forever only takes its share from the others.
//! - **Slices.** A picked vCPU runs for up to [`TSLICE_NS`] (Xen's
//!   `sched_credit_tslice_ms` default 30 ms), but an UNDER vCPU is
//!   rescheduled when its credit runs out (not before [`RATELIMIT_NS`], Xen's
//!   default `sched_ratelimit_us`), and every pCPU reschedules at the
//!   accounting boundary. Charging exact time at those points gives the exact
//!   weighted shares Xen approximates with sampled ticks.
//! - **Boost.** A vCPU waking from sleep with no debt (credit ≥ 0) gets
//!   BOOST, preempts a pCPU running an UNDER or OVER vCPU (the pCPU `wake`
//!   returns), and keeps BOOST until its pCPU next reschedules, at most
//!   [`BOOST_NS`] after it started running (Xen unboosts at the next tick);
//!   then it carries on as UNDER within the same slice.
//! - **Cap** (percent of one pCPU, 0 = none): a domain may run `cap% * 30 ms`
//!   per accounting period across its vCPUs; once that is used up, its vCPUs
//!   are parked (not picked, even if the pCPU idles) until the next period.
//!   An overrun is carried to the next period as debt.
//! - **Yield** makes the vCPU go behind every other eligible vCPU at its
//!   pCPU's next reschedule.
//! - **Affinity** ([`super::affinity`]): a pCPU picks only vCPUs whose hard
//!   affinity names it, and within a priority one that prefers it (soft
//!   affinity) before round-robin order; a woken vCPU tickles an idle pCPU
//!   it may run on, a preferred one first (Xen's `__runq_tickle`).
//!
//! # Parameters
//!
//! `weight` must be 1..=65535 (`EINVAL` for 0); every `cap` is accepted
//! (0 = none; above 100 for domains with several vCPUs). The RTDS fields are
//! kept but not used.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;

use rxen_abi::errno::{Errno, EEXIST, EINVAL, ESRCH};

use super::affinity::{tickle_target, Affinity, CpuMask};
use super::{Decision, SchedParams, Scheduler, VcpuRef};
use crate::domain::DomId;

/// Xen's credit tick (`CSCHED_TICK`): 10 ms.
pub const TICK_NS: u64 = 10_000_000;
/// Accounting period (Xen: 3 ticks): credit is handed out every 30 ms.
pub const ACCT_PERIOD_NS: u64 = 3 * TICK_NS;
/// Default time slice (`sched_credit_tslice_ms` = 30).
pub const TSLICE_NS: u64 = 30_000_000;
/// Shortest slice cut short by credit exhaustion (`sched_ratelimit_us` =
/// 1000).
pub const RATELIMIT_NS: u64 = 1_000_000;
/// How long a boost lasts once the vCPU runs (Xen unboosts at the next
/// tick, up to 10 ms later; a fixed 1 ms bounds how long boosted vCPUs
/// delay each other).
pub const BOOST_NS: u64 = RATELIMIT_NS;
/// Credit of a new vCPU: one tick, so that it starts UNDER (as in Xen) and
/// its first wake-ups are boosted until an accounting period includes it.
pub const INITIAL_CREDIT: i64 = TICK_NS as i64;
/// Credit is kept within ±this.
const CREDIT_CLAMP: i64 = TSLICE_NS as i64;

/// A vCPU's scheduling priority (higher runs first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Credit spent: runs only when nothing UNDER or BOOST is runnable.
    Over,
    /// Credit left.
    Under,
    /// Just woke from sleep with credit: runs as soon as possible.
    Boost,
}

/// Per-domain state.
#[derive(Clone, Copy, Debug)]
struct Dom {
    params: SchedParams,
    /// CPU time the domain may still use this period (cap only; may be
    /// negative after an overrun).
    cap_left: i64,
    /// Cap used up: its vCPUs are not picked until the next period.
    parked: bool,
}

impl Dom {
    /// Cap in ns per accounting period, if capped.
    fn cap_ns(&self) -> Option<i64> {
        (self.params.cap != 0).then(|| (ACCT_PERIOD_NS * self.params.cap as u64 / 100) as i64)
    }
}

/// Per-vCPU state.
#[derive(Clone, Copy, Debug, Default)]
struct Vc {
    /// Credit in ns (may be negative).
    credit: i64,
    boost: bool,
    runnable: bool,
    /// Waiting in the run queue (runnable, not running).
    queued: bool,
    /// Queue order (round robin within a priority).
    seq: u64,
    /// The pCPU running it.
    on: Option<usize>,
    yielded: bool,
    /// Ran during the current accounting period.
    ran: bool,
    /// Where it may run and where it prefers to.
    affinity: Affinity,
}

impl Vc {
    fn priority(&self) -> Priority {
        if self.boost {
            Priority::Boost
        } else if self.credit > 0 {
            Priority::Under
        } else {
            Priority::Over
        }
    }
}

/// Per-pCPU state.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    curr: Option<VcpuRef>,
    /// Time up to which `curr` has been charged.
    charged_at: u64,
    /// End of `curr`'s slice.
    slice_end: u64,
    /// Told to reschedule by `wake`, not done yet.
    tickled: bool,
}

/// The credit scheduler.
#[derive(Debug)]
pub struct Credit {
    doms: BTreeMap<DomId, Dom>,
    vcpus: BTreeMap<VcpuRef, Vc>,
    cpus: Vec<Cpu>,
    /// Start of the next accounting period.
    next_acct: u64,
    seq: u64,
    /// pCPUs to reschedule, for [`Scheduler::take_tickles`].
    tickles: CpuMask,
    /// The run queue: the vCPUs marked `queued`, in no order (the choice
    /// orders them by priority and `seq`). Its capacity covers every known
    /// vCPU, so queueing never allocates.
    runq: Vec<VcpuRef>,
}

impl Credit {
    /// A credit scheduler for `nr_cpus` pCPUs (at least one).
    pub fn new(nr_cpus: usize) -> Self {
        Self {
            doms: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            cpus: vec![Cpu::default(); nr_cpus.max(1)],
            next_acct: 0,
            seq: 0,
            tickles: CpuMask::empty(),
            runq: Vec::new(),
        }
    }

    /// A vCPU's credit in ns and priority (for logs and tests).
    pub fn credit(&self, vcpu: VcpuRef) -> Option<(i64, Priority)> {
        self.vcpus.get(&vcpu).map(|v| (v.credit, v.priority()))
    }

    fn validate(params: &SchedParams) -> Result<(), Errno> {
        if params.weight == 0 {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn parked(&self, domain: DomId) -> bool {
        self.doms.get(&domain).is_none_or(|d| d.parked)
    }

    fn enqueue(&mut self, vcpu: VcpuRef) {
        self.seq += 1;
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            if !v.queued {
                self.runq.push(vcpu);
            }
            v.queued = true;
            v.seq = self.seq;
        }
    }

    /// Takes `vcpu` off the run queue (it runs, sleeps or is gone).
    fn dequeue(&mut self, vcpu: VcpuRef) {
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.queued = false;
        }
        if let Some(i) = self.runq.iter().position(|r| *r == vcpu) {
            self.runq.swap_remove(i);
        }
    }

    /// Charges every running vCPU up to `now`.
    fn charge_all(&mut self, now: u64) {
        for cpu in &mut self.cpus {
            let Some(r) = cpu.curr else { continue };
            let dt = now.saturating_sub(cpu.charged_at);
            cpu.charged_at = cpu.charged_at.max(now);
            let dt = i64::try_from(dt).unwrap_or(i64::MAX);
            if let Some(v) = self.vcpus.get_mut(&r) {
                v.credit = v.credit.saturating_sub(dt).max(-CREDIT_CLAMP);
                v.ran = true;
            }
            if let Some(d) = self.doms.get_mut(&r.domain) {
                if d.params.cap != 0 {
                    d.cap_left = d.cap_left.saturating_sub(dt);
                    d.parked |= d.cap_left <= 0;
                }
            }
        }
    }

    /// Hands out credit if an accounting period ended by `now`.
    fn account(&mut self, now: u64) {
        if now < self.next_acct {
            return;
        }
        let missed = (now - self.next_acct) / ACCT_PERIOD_NS + 1;
        self.next_acct = self
            .next_acct
            .saturating_add(missed.saturating_mul(ACCT_PERIOD_NS));

        let mut active: BTreeMap<DomId, u64> = BTreeMap::new();
        for (r, v) in &self.vcpus {
            if v.runnable || v.on.is_some() || v.ran {
                *active.entry(r.domain).or_default() += 1;
            }
        }
        let total_weight: u128 = active
            .keys()
            .filter_map(|d| self.doms.get(d))
            .map(|d| d.params.weight as u128)
            .sum();
        let total = self.cpus.len() as u128 * ACCT_PERIOD_NS as u128;

        let mut per_vcpu: BTreeMap<DomId, i64> = BTreeMap::new();
        for (id, dom) in &mut self.doms {
            let n = active.get(id).copied().unwrap_or(0);
            let mut share = match total_weight {
                0 => 0,
                tw => (total * dom.params.weight as u128 / tw) as u64,
            };
            share = share.min(n.saturating_mul(ACCT_PERIOD_NS));
            match dom.cap_ns() {
                Some(cap) => {
                    dom.cap_left = dom.cap_left.clamp(-cap, 0) + cap;
                    dom.parked = dom.cap_left <= 0;
                    share = share.min(cap as u64);
                }
                None => {
                    dom.cap_left = 0;
                    dom.parked = false;
                }
            }
            if let Some(each) = share.checked_div(n) {
                per_vcpu.insert(*id, each as i64);
            }
        }
        for (r, v) in &mut self.vcpus {
            if v.runnable || v.on.is_some() || v.ran {
                let add = per_vcpu.get(&r.domain).copied().unwrap_or(0);
                v.credit = (v.credit + add).min(CREDIT_CLAMP);
            }
            v.ran = false;
        }
    }

    /// The best eligible queued vCPU other than `exclude` that may run on
    /// `cpu`: the highest priority, then one that prefers `cpu`, then the
    /// longest queued.
    fn best_queued(&self, cpu: usize, exclude: Option<VcpuRef>) -> Option<(VcpuRef, Priority)> {
        self.runq
            .iter()
            .filter_map(|r| Some((r, self.vcpus.get(r)?)))
            .filter(|(r, v)| {
                v.queued
                    && Some(**r) != exclude
                    && v.affinity.hard.contains(cpu)
                    && !self.parked(r.domain)
            })
            .max_by_key(|(_, v)| (v.priority(), v.affinity.prefers(cpu), Reverse(v.seq)))
            .map(|(r, v)| (*r, v.priority()))
    }

    /// The pCPU a queued `vcpu` should be run on now, marked tickled: an idle
    /// one it may run on, else one running a lower priority.
    fn tickle_for(&mut self, vcpu: VcpuRef) -> Option<usize> {
        let v = self.vcpus.get(&vcpu)?;
        let pri = v.priority();
        let cpus = &self.cpus;
        let cpu = tickle_target(
            cpus.len(),
            &v.affinity,
            |c| cpus[c].curr.is_none() && !cpus[c].tickled,
            |c| {
                let cur = &cpus[c];
                if cur.tickled {
                    return None;
                }
                let p = cur.curr.and_then(|r| self.vcpus.get(&r))?.priority();
                (p < pri).then_some((Reverse(p), Reverse(c)))
            },
        )?;
        self.cpus[cpu].tickled = true;
        Some(cpu)
    }

    /// Puts `vcpu` on `cpu` at `now`; `slice_end` None starts a new slice.
    fn run(&mut self, cpu: usize, vcpu: VcpuRef, now: u64, slice_end: Option<u64>) -> Decision {
        let running_in_dom = 1 + self
            .cpus
            .iter()
            .enumerate()
            .filter(|(i, c)| *i != cpu && c.curr.is_some_and(|r| r.domain == vcpu.domain))
            .count() as i64;
        self.dequeue(vcpu);
        let Some(v) = self.vcpus.get_mut(&vcpu) else {
            return Decision::idle(u64::MAX);
        };
        v.on = Some(cpu);
        let pri = v.priority();
        let slice_end = slice_end.unwrap_or_else(|| now.saturating_add(TSLICE_NS));
        let mut until = slice_end.min(self.next_acct);
        if pri == Priority::Boost {
            until = until.min(now.saturating_add(BOOST_NS));
        } else if pri == Priority::Under {
            let left = (v.credit as u64).max(RATELIMIT_NS);
            until = until.min(now.saturating_add(left));
        }
        if let Some(d) = self.doms.get(&vcpu.domain) {
            if d.params.cap != 0 {
                let left = (d.cap_left / running_in_dom).max(1) as u64;
                until = until.min(now.saturating_add(left));
            }
        }
        self.cpus[cpu] = Cpu {
            curr: Some(vcpu),
            charged_at: now,
            slice_end,
            tickled: false,
        };
        Decision {
            next: Some(vcpu),
            until: until.max(now.saturating_add(1)),
        }
    }
}

impl Scheduler for Credit {
    fn name(&self) -> &'static str {
        "credit"
    }

    fn add_domain(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno> {
        Self::validate(&params)?;
        if self.doms.contains_key(&domain) {
            return Err(EEXIST);
        }
        let mut dom = Dom {
            params,
            cap_left: 0,
            parked: false,
        };
        dom.cap_left = dom.cap_ns().unwrap_or(0);
        self.doms.insert(domain, dom);
        Ok(())
    }

    fn remove_domain(&mut self, domain: DomId) {
        self.doms.remove(&domain);
        for cpu in &mut self.cpus {
            if cpu.curr.is_some_and(|r| r.domain == domain) {
                cpu.curr = None;
            }
        }
        let gone: Vec<VcpuRef> = self
            .vcpus
            .range(VcpuRef::first(domain)..=VcpuRef::last(domain))
            .map(|(r, _)| *r)
            .collect();
        for r in gone {
            self.dequeue(r);
            self.vcpus.remove(&r);
        }
    }

    fn set_params(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno> {
        let dom = self.doms.get_mut(&domain).ok_or(ESRCH)?;
        Self::validate(&params)?;
        let cap_changed = dom.params.cap != params.cap;
        dom.params = params;
        if cap_changed {
            dom.cap_left = dom.cap_ns().unwrap_or(0);
            dom.parked = false;
        }
        Ok(())
    }

    fn params(&self, domain: DomId) -> Option<SchedParams> {
        self.doms.get(&domain).map(|d| d.params)
    }

    fn add_vcpu(&mut self, vcpu: VcpuRef, _now: u64) {
        if self.doms.contains_key(&vcpu.domain) && !self.vcpus.contains_key(&vcpu) {
            self.vcpus.insert(
                vcpu,
                Vc {
                    credit: INITIAL_CREDIT,
                    affinity: Affinity::all(self.cpus.len()),
                    ..Vc::default()
                },
            );
            // Room for every known vCPU in the run queue.
            self.runq
                .reserve(self.vcpus.len().saturating_sub(self.runq.len()));
        }
    }

    fn wake(&mut self, vcpu: VcpuRef, now: u64) -> Option<usize> {
        let v = self.vcpus.get_mut(&vcpu)?;
        if v.runnable {
            return None;
        }
        v.runnable = true;
        if v.on.is_some() {
            // Still on its pCPU (slept and woke before it rescheduled).
            return None;
        }
        if v.credit >= 0 && !self.parked(vcpu.domain) {
            if let Some(v) = self.vcpus.get_mut(&vcpu) {
                v.boost = true;
            }
        }
        self.enqueue(vcpu);
        if self.parked(vcpu.domain) {
            return None;
        }
        self.charge_all(now);
        // An idle pCPU first, else the one running the lowest priority below
        // the woken vCPU's.
        self.tickle_for(vcpu)
    }

    fn sleep(&mut self, vcpu: VcpuRef, _now: u64) {
        self.dequeue(vcpu);
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.runnable = false;
            v.yielded = false;
        }
    }

    fn yield_now(&mut self, vcpu: VcpuRef, _now: u64) {
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            if v.on.is_some() {
                v.yielded = true;
            }
        }
    }

    fn do_schedule(&mut self, cpu: usize, now: u64) -> Decision {
        if cpu >= self.cpus.len() {
            return Decision::idle(u64::MAX);
        }
        self.charge_all(now);
        self.account(now);
        let slice_end = self.cpus[cpu].slice_end;
        let prev = self.cpus[cpu].curr.take();
        self.cpus[cpu].tickled = false;

        let mut yielder = None;
        if let Some(r) = prev {
            if let Some(v) = self.vcpus.get_mut(&r) {
                v.on = None;
                v.boost = false;
                let yielded = core::mem::take(&mut v.yielded);
                if v.runnable {
                    let pri = v.priority();
                    let allowed = v.affinity.hard.contains(cpu);
                    let keep = !yielded
                        && allowed
                        && now < slice_end
                        && !self.parked(r.domain)
                        && self.best_queued(cpu, None).is_none_or(|(_, p)| p <= pri);
                    if keep {
                        return self.run(cpu, r, now, Some(slice_end));
                    }
                    self.enqueue(r);
                    if yielded {
                        yielder = Some(r);
                    }
                    if !allowed && !self.parked(r.domain) {
                        // Pinned elsewhere: another pCPU takes it.
                        if let Some(c) = self.tickle_for(r) {
                            self.tickles.insert(c);
                        }
                    }
                }
            }
        }

        match self
            .best_queued(cpu, yielder)
            .or_else(|| self.best_queued(cpu, None))
        {
            Some((r, _)) => self.run(cpu, r, now, None),
            None => {
                // Parked vCPUs become eligible at the next accounting.
                let waiting = !self.runq.is_empty();
                Decision::idle(if waiting { self.next_acct } else { u64::MAX })
            }
        }
    }

    fn running_on(&self, cpu: usize) -> Option<VcpuRef> {
        self.cpus.get(cpu).and_then(|c| c.curr)
    }

    fn affinity(&self, vcpu: VcpuRef) -> Option<Affinity> {
        self.vcpus.get(&vcpu).map(|v| v.affinity)
    }

    fn set_affinity(
        &mut self,
        vcpu: VcpuRef,
        hard: Option<CpuMask>,
        soft: Option<CpuMask>,
    ) -> Result<(), Errno> {
        let nr_cpus = self.cpus.len();
        let v = self.vcpus.get_mut(&vcpu).ok_or(ESRCH)?;
        v.affinity.set(hard, soft, nr_cpus)?;
        let (on, queued, hard) = (v.on, v.queued, v.affinity.hard);
        if let Some(c) = on.filter(|&c| !hard.contains(c)) {
            // Its pCPU gives it up at once (and tickles one it may run on).
            self.tickles.insert(c);
            if let Some(cpu) = self.cpus.get_mut(c) {
                cpu.tickled = true;
            }
        } else if queued && !self.parked(vcpu.domain) {
            if let Some(c) = self.tickle_for(vcpu) {
                self.tickles.insert(c);
            }
        }
        Ok(())
    }

    fn take_tickles(&mut self) -> CpuMask {
        core::mem::take(&mut self.tickles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::sim::{Load, Sim};
    use alloc::boxed::Box;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn v(domain: DomId, vcpu: u32) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    fn with(weight: u16, cap: u16) -> SchedParams {
        SchedParams {
            weight,
            cap,
            ..SchedParams::default()
        }
    }

    fn sim(nr_cpus: usize) -> Sim {
        Sim::new(Box::new(Credit::new(nr_cpus)), nr_cpus)
    }

    /// Relative error of `got` against `want`, in per mille.
    fn err_permille(got: u64, want: u64) -> u64 {
        got.abs_diff(want) * 1000 / want.max(1)
    }

    #[test]
    fn the_run_queue_holds_only_the_vcpus_waiting_to_run() {
        // 40 domains asleep, two woken: the choice looks at those two only,
        // and every way off the queue (run, sleep, the domain's end) leaves it.
        let mut c = Credit::new(1);
        for d in 1..=40 {
            c.add_domain(d, SchedParams::default()).unwrap();
            c.add_vcpu(v(d, 0), 0);
        }
        assert!(c.runq.is_empty());
        assert!(c.runq.capacity() >= 40, "queueing must not allocate");
        c.wake(v(7, 0), 10);
        c.wake(v(30, 0), 20);
        c.wake(v(30, 0), 25); // already runnable: queued once
        assert_eq!(c.runq.len(), 2);
        let first = c.do_schedule(0, 30).next;
        assert_eq!(first, Some(v(7, 0)), "the longest queued of equal priority");
        assert_eq!(c.runq, [v(30, 0)]);
        c.sleep(v(30, 0), 40);
        assert!(c.runq.is_empty());
        c.wake(v(30, 0), 50);
        c.remove_domain(30);
        assert!(c.runq.is_empty());
        // The vCPU it ran, blocked, is not queued again; nothing else waits.
        c.sleep(v(7, 0), 60);
        assert_eq!(c.do_schedule(0, 70), Decision::idle(u64::MAX));
        assert!(c.runq.is_empty());
    }

    #[test]
    fn weights_1_2_4_share_one_pcpu_in_ratio() {
        let mut s = sim(1);
        for (d, w) in [(1, 64), (2, 128), (3, 256)] {
            s.sched.add_domain(d, with(w, 0)).unwrap();
            s.add(v(d, 0), Load::Hog);
        }
        s.run_until(10 * SEC);
        let (a, b, c) = (s.domain_ns(1), s.domain_ns(2), s.domain_ns(3));
        std::println!("1:2:4 -> {a} {b} {c}");
        assert_eq!(a + b + c, 10 * SEC);
        assert_eq!(s.idle_ns, 0);
        assert!(err_permille(a, 10 * SEC / 7) <= 50, "{a}");
        assert!(err_permille(b, 20 * SEC / 7) <= 50, "{b}");
        assert!(err_permille(c, 40 * SEC / 7) <= 50, "{c}");
    }

    #[test]
    fn two_domains_two_pcpus_work_conserving_and_fair() {
        let mut s = sim(2);
        for d in [1, 2] {
            s.sched.add_domain(d, SchedParams::default()).unwrap();
            for i in 0..2 {
                s.add(v(d, i), Load::Hog);
            }
        }
        s.run_until(10 * SEC);
        assert_eq!(s.idle_ns, 0);
        assert_eq!(s.idle_with_work_ns, 0);
        for vc in &s.vcpus {
            std::println!("{:?}: {}", vc.r, vc.run_ns);
            assert!(err_permille(vc.run_ns, 5 * SEC) <= 50, "{:?}", vc.r);
        }
    }

    #[test]
    fn weight_is_per_domain_split_among_its_vcpus() {
        // Equal weights, 1 vCPU vs 3 vCPUs on 2 pCPUs: each domain gets one
        // pCPU's worth, as in Xen.
        let mut s = sim(2);
        s.sched.add_domain(1, SchedParams::default()).unwrap();
        s.sched.add_domain(2, SchedParams::default()).unwrap();
        s.add(v(1, 0), Load::Hog);
        for i in 0..3 {
            s.add(v(2, i), Load::Hog);
        }
        s.run_until(10 * SEC);
        let (a, b) = (s.domain_ns(1), s.domain_ns(2));
        std::println!("1 vs 3 vCPUs: {a} {b}");
        assert_eq!(s.idle_with_work_ns, 0);
        assert!(err_permille(a, 10 * SEC) <= 50);
        assert!(err_permille(b, 10 * SEC) <= 50);
    }

    #[test]
    fn cap_limits_a_lone_domain_and_idles_the_pcpu() {
        let mut s = sim(1);
        s.sched.add_domain(1, with(256, 25)).unwrap();
        s.add(v(1, 0), Load::Hog);
        s.run_until(10 * SEC);
        let a = s.domain_ns(1);
        std::println!("capped 25% alone: {a}");
        assert!(a <= 10 * SEC * 26 / 100, "{a}");
        assert!(a >= 10 * SEC * 24 / 100, "{a}");
        assert_eq!(s.idle_ns, 10 * SEC - a);
    }

    #[test]
    fn capped_domain_beside_a_hog_stays_under_its_cap() {
        let mut s = sim(1);
        s.sched.add_domain(1, with(256, 25)).unwrap();
        s.sched.add_domain(2, with(256, 0)).unwrap();
        s.add(v(1, 0), Load::Hog);
        s.add(v(2, 0), Load::Hog);
        s.run_until(10 * SEC);
        let (a, b) = (s.domain_ns(1), s.domain_ns(2));
        std::println!("capped 25% vs hog: {a} {b}");
        assert!(a <= 10 * SEC * 26 / 100, "{a}");
        assert!(a >= 10 * SEC * 20 / 100, "{a}");
        assert_eq!(a + b, 10 * SEC);
    }

    #[test]
    fn cap_over_100_spans_pcpus() {
        // 150% for a 2-vCPU domain on 2 pCPUs, beside nothing.
        let mut s = sim(2);
        s.sched.add_domain(1, with(256, 150)).unwrap();
        s.add(v(1, 0), Load::Hog);
        s.add(v(1, 1), Load::Hog);
        s.run_until(10 * SEC);
        let a = s.domain_ns(1);
        std::println!("capped 150% on 2 pCPUs: {a}");
        assert!(a <= 10 * SEC * 151 / 100, "{a}");
        assert!(a >= 10 * SEC * 145 / 100, "{a}");
    }

    #[test]
    fn io_vcpu_is_boosted_among_hogs() {
        let mut s = sim(1);
        for d in 1..=3 {
            s.sched.add_domain(d, SchedParams::default()).unwrap();
        }
        s.add(v(1, 0), Load::Hog);
        s.add(v(2, 0), Load::Hog);
        let io = s.add(
            v(3, 0),
            Load::Periodic {
                first: 5 * MS,
                period: 10 * MS,
                work: MS,
            },
        );
        s.run_until(10 * SEC);
        let io = &s.vcpus[io];
        std::println!("late wake-ups: {:?}", io.late);
        std::println!(
            "io: latency {} jobs {}/{} overruns {} run {}",
            io.max_latency,
            io.jobs_done,
            io.jobs,
            io.overruns,
            io.run_ns
        );
        assert!(io.max_latency <= MS, "latency {}", io.max_latency);
        assert_eq!(io.overruns, 0);
        assert!(io.jobs_done + 1 >= io.jobs);
        assert_eq!(s.idle_ns, 0);
        let (a, b) = (s.domain_ns(1), s.domain_ns(2));
        assert!(err_permille(a, b) <= 50, "hogs {a} {b}");
    }

    #[test]
    fn spinners_never_starve_others() {
        // Four spinners of different weights and a sleeper that wakes now
        // and then, on 2 pCPUs.
        let mut s = sim(2);
        for (d, w) in [(1, 256), (2, 512), (3, 128), (4, 256), (5, 256)] {
            s.sched.add_domain(d, with(w, 0)).unwrap();
        }
        for d in 1..=4 {
            s.add(v(d, 0), Load::Hog);
            s.add(v(d, 1), Load::Hog);
        }
        let sleeper = s.add(
            v(5, 0),
            Load::Periodic {
                first: 7 * MS,
                period: 97 * MS,
                work: 3 * MS,
            },
        );
        s.run_until(10 * SEC);
        assert_eq!(s.idle_with_work_ns, 0);
        let worst = s.vcpus.iter().map(|v| v.max_wait).max().unwrap_or(0);
        std::println!(
            "longest wait {} sleeper latency {}",
            worst,
            s.vcpus[sleeper].max_latency
        );
        for vc in &s.vcpus {
            assert!(vc.run_ns > 0);
            assert!(vc.max_wait <= 300 * MS, "{:?} waited {}", vc.r, vc.max_wait);
        }
        assert!(s.vcpus[sleeper].max_latency <= MS);
        assert_eq!(s.vcpus[sleeper].overruns, 0);
    }

    #[test]
    fn boost_preempts_and_is_reported() {
        let mut c = Credit::new(1);
        c.add_domain(1, SchedParams::default()).unwrap();
        c.add_domain(2, SchedParams::default()).unwrap();
        c.add_vcpu(v(1, 0), 0);
        c.add_vcpu(v(2, 0), 0);
        assert_eq!(c.wake(v(1, 0), 0), Some(0));
        assert_eq!(c.do_schedule(0, 0).next, Some(v(1, 0)));
        // Unboosted at the next reschedule, still UNDER.
        let d = c.do_schedule(0, 5 * MS);
        assert_eq!(d.next, Some(v(1, 0)));
        assert_eq!(c.credit(v(1, 0)).map(|x| x.1), Some(Priority::Under));
        // The waking vCPU preempts it.
        assert_eq!(c.wake(v(2, 0), 6 * MS), Some(0));
        assert_eq!(c.credit(v(2, 0)).map(|x| x.1), Some(Priority::Boost));
        assert_eq!(c.do_schedule(0, 6 * MS).next, Some(v(2, 0)));
        // Waking an already runnable vCPU tickles nothing.
        assert_eq!(c.wake(v(1, 0), 7 * MS), None);
    }

    #[test]
    fn bad_params_and_unknown_domains() {
        let mut c = Credit::new(1);
        assert_eq!(c.add_domain(1, with(0, 0)), Err(EINVAL));
        assert_eq!(c.params(1), None);
        c.add_domain(1, with(1, 0)).unwrap();
        assert_eq!(c.add_domain(1, with(1, 0)), Err(EEXIST));
        assert_eq!(c.set_params(1, with(0, 0)), Err(EINVAL));
        assert_eq!(c.params(1), Some(with(1, 0)));
        assert_eq!(c.set_params(2, with(5, 0)), Err(ESRCH));
        c.set_params(1, with(65535, 400)).unwrap();
        assert_eq!(c.params(1), Some(with(65535, 400)));
        // RTDS fields are not the credit scheduler's business.
        let odd = SchedParams {
            period_us: 0,
            budget_us: 0,
            ..SchedParams::default()
        };
        assert_eq!(c.set_params(1, odd), Ok(()));
    }

    #[test]
    fn remove_running_domain_on_many_pcpus() {
        let mut s = sim(2);
        s.sched.add_domain(1, SchedParams::default()).unwrap();
        s.sched.add_domain(2, SchedParams::default()).unwrap();
        s.add(v(1, 0), Load::Hog);
        s.add(v(1, 1), Load::Hog);
        s.add(v(2, 0), Load::Hog);
        s.run_until(100 * MS);
        s.sched.remove_domain(1);
        for cpu in 0..2 {
            let d = s.sched.do_schedule(cpu, 100 * MS);
            assert_ne!(d.next.map(|r| r.domain), Some(1));
        }
        assert_eq!(s.sched.wake(v(1, 0), 100 * MS), None);
    }
}
