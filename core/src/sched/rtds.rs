//! The RTDS scheduler: Xen's real-time deferrable-server scheduler, global
//! earliest deadline first (the SEDF of the seed documents).
//!
//! It owns each domain's period, budget and extratime flag and each vCPU's
//! current deadline, remaining budget and extratime level.
//!
//! # Semantics (as in Xen's RTDS)
//!
//! - Every vCPU of a domain gets `budget` of CPU time in every `period`;
//!   periods of a vCPU start when it is added and follow each other back to
//!   back. The current deadline is the end of the current period. At each
//!   period boundary the budget is replenished (unused budget is lost) and
//!   the deadline moves on by whole periods (a vCPU that slept long skips the
//!   periods it missed, like Xen's `rt_update_deadline`).
//! - Among runnable vCPUs, the one with budget left and the earliest deadline
//!   runs (global EDF over all pCPUs; ties go round robin).
//! - A vCPU out of budget does not run until its next replenishment, unless
//!   its domain has extratime: then, like Xen, its budget is refilled at a
//!   lower priority level (level 1, 2, ... each time it is used up within the
//!   period), and a vCPU at a lower level only runs when no vCPU at a higher
//!   one (with budget) is runnable. Extratime vCPUs thus share the idle time
//!   round robin, one budget at a time, and never delay one with budget.
//! - A pCPU is told to come back ([`Decision::until`]) at its vCPU's budget
//!   exhaustion, at its deadline, and at the earliest deadline of any other
//!   waiting vCPU (whose replenishment could preempt).
//! - A vCPU runs only on the pCPUs of its hard affinity
//!   ([`super::affinity`]); as Xen's RTDS, the soft affinity is kept and
//!   reported but not used.
//!
//! # Parameters
//!
//! `period_us` and `budget_us`, in µs: both at least [`MIN_US`] (Xen's
//! `RTDS_MIN_PERIOD`/`RTDS_MIN_BUDGET` are 10 µs), budget at most the period,
//! period at most [`MAX_PERIOD_US`] (10 s); else `EINVAL`.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{Errno, EEXIST, EINVAL, ESRCH};

use super::affinity::{tickle_target, Affinity, CpuMask};
use super::{Decision, SchedParams, Scheduler, VcpuRef};
use crate::domain::DomId;

/// Smallest period and budget, in µs.
pub const MIN_US: u32 = 10;
/// Largest period, in µs (10 s).
pub const MAX_PERIOD_US: u32 = 10_000_000;

/// Per-domain state.
#[derive(Clone, Copy, Debug)]
struct Dom {
    params: SchedParams,
    period: u64,
    budget: u64,
}

impl Dom {
    fn new(params: SchedParams) -> Self {
        Self {
            params,
            period: params.period_us as u64 * 1000,
            budget: params.budget_us as u64 * 1000,
        }
    }
}

/// Per-vCPU state.
#[derive(Clone, Copy, Debug, Default)]
struct Vc {
    runnable: bool,
    /// Waiting (runnable, not running).
    queued: bool,
    /// Queue order (round robin among equal deadlines).
    seq: u64,
    on: Option<usize>,
    yielded: bool,
    /// End of the current period.
    deadline: u64,
    /// Budget left at the current level.
    left: u64,
    /// 0: within budget; n > 0: the n-th extratime round of this period.
    level: u32,
    /// Where it may run.
    affinity: Affinity,
}

impl Vc {
    /// Lower is more urgent.
    fn key(&self) -> (u32, u64, u64) {
        (self.level, self.deadline, self.seq)
    }

    /// Moves to the period containing `now` if the current one is over.
    fn replenish(&mut self, dom: &Dom, now: u64) {
        if now >= self.deadline && dom.period > 0 {
            let k = (now - self.deadline) / dom.period + 1;
            self.deadline = self.deadline.saturating_add(k.saturating_mul(dom.period));
            self.left = dom.budget;
            self.level = 0;
        }
    }

    /// Charges `dt` ns of running.
    fn charge(&mut self, dom: &Dom, dt: u64) {
        if dt < self.left {
            self.left -= dt;
        } else if dom.params.extratime && dom.budget > 0 {
            let over = dt - self.left;
            let rounds = 1 + over / dom.budget;
            self.level = self
                .level
                .saturating_add(u32::try_from(rounds).unwrap_or(u32::MAX));
            self.left = dom.budget - over % dom.budget;
        } else {
            self.left = 0;
        }
    }
}

/// Per-pCPU state.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    curr: Option<VcpuRef>,
    charged_at: u64,
    tickled: bool,
}

/// The RTDS scheduler.
#[derive(Debug)]
pub struct Rtds {
    doms: BTreeMap<DomId, Dom>,
    vcpus: BTreeMap<VcpuRef, Vc>,
    cpus: Vec<Cpu>,
    seq: u64,
    /// pCPUs to reschedule, for [`Scheduler::take_tickles`].
    tickles: CpuMask,
}

impl Rtds {
    /// An RTDS scheduler for `nr_cpus` pCPUs (at least one).
    pub fn new(nr_cpus: usize) -> Self {
        Self {
            doms: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            cpus: vec![Cpu::default(); nr_cpus.max(1)],
            seq: 0,
            tickles: CpuMask::empty(),
        }
    }

    /// A vCPU's current deadline, budget left and extratime level (for logs
    /// and tests).
    pub fn budget(&self, vcpu: VcpuRef) -> Option<(u64, u64, u32)> {
        self.vcpus.get(&vcpu).map(|v| (v.deadline, v.left, v.level))
    }

    fn validate(p: &SchedParams) -> Result<(), Errno> {
        if p.period_us < MIN_US
            || p.budget_us < MIN_US
            || p.budget_us > p.period_us
            || p.period_us > MAX_PERIOD_US
        {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn enqueue(&mut self, vcpu: VcpuRef) {
        self.seq += 1;
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.queued = true;
            v.seq = self.seq;
        }
    }

    /// May run now: runnable with budget (extratime vCPUs always have some).
    fn eligible(v: &Vc) -> bool {
        v.runnable && v.left > 0
    }

    /// Charges every running vCPU up to `now` and replenishes every vCPU
    /// whose period ended.
    fn update(&mut self, now: u64) {
        for cpu in &mut self.cpus {
            let Some(r) = cpu.curr else { continue };
            let dt = now.saturating_sub(cpu.charged_at);
            cpu.charged_at = cpu.charged_at.max(now);
            if let (Some(v), Some(d)) = (self.vcpus.get_mut(&r), self.doms.get(&r.domain)) {
                v.charge(d, dt);
            }
        }
        for (r, v) in &mut self.vcpus {
            if let Some(d) = self.doms.get(&r.domain) {
                v.replenish(d, now);
            }
        }
    }

    /// The most urgent eligible queued vCPU other than `exclude` that may
    /// run on `cpu`.
    fn best_queued(&self, cpu: usize, exclude: Option<VcpuRef>) -> Option<VcpuRef> {
        self.vcpus
            .iter()
            .filter(|(r, v)| {
                v.queued
                    && Self::eligible(v)
                    && Some(**r) != exclude
                    && v.affinity.hard.contains(cpu)
            })
            .min_by_key(|(_, v)| v.key())
            .map(|(r, _)| *r)
    }

    /// The pCPU an eligible queued `vcpu` should be run on now, marked
    /// tickled: an idle one it may run on, else the one running the least
    /// urgent vCPU if `vcpu` is more urgent.
    fn tickle_for(&mut self, vcpu: VcpuRef) -> Option<usize> {
        let v = self.vcpus.get(&vcpu)?;
        let key = v.key();
        // Soft affinity is not RTDS's: every allowed pCPU is as good.
        let hard_only = Affinity {
            hard: v.affinity.hard,
            soft: v.affinity.hard,
        };
        let cpus = &self.cpus;
        let cpu = tickle_target(
            cpus.len(),
            &hard_only,
            |c| cpus[c].curr.is_none() && !cpus[c].tickled,
            |c| {
                let cur = &cpus[c];
                if cur.tickled {
                    return None;
                }
                let k = cur.curr.and_then(|r| self.vcpus.get(&r))?.key();
                (k > key).then_some((k, c))
            },
        )?;
        self.cpus[cpu].tickled = true;
        Some(cpu)
    }

    /// Earliest deadline among waiting vCPUs: their replenishment may let
    /// them preempt (or run at all).
    fn next_release(&self) -> u64 {
        self.vcpus
            .values()
            .filter(|v| v.queued)
            .map(|v| v.deadline)
            .min()
            .unwrap_or(u64::MAX)
    }
}

impl Scheduler for Rtds {
    fn name(&self) -> &'static str {
        "rtds"
    }

    fn add_domain(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno> {
        Self::validate(&params)?;
        if self.doms.contains_key(&domain) {
            return Err(EEXIST);
        }
        self.doms.insert(domain, Dom::new(params));
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
            self.vcpus.remove(&r);
        }
    }

    fn set_params(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno> {
        let dom = self.doms.get_mut(&domain).ok_or(ESRCH)?;
        Self::validate(&params)?;
        *dom = Dom::new(params);
        let dom = *dom;
        // The new budget applies from now on, within the current period.
        for v in self
            .vcpus
            .range_mut(VcpuRef::first(domain)..=VcpuRef::last(domain))
            .map(|(_, v)| v)
        {
            v.left = v.left.min(dom.budget);
            if v.left == 0 && dom.params.extratime {
                v.level = v.level.saturating_add(1);
                v.left = dom.budget;
            }
        }
        Ok(())
    }

    fn params(&self, domain: DomId) -> Option<SchedParams> {
        self.doms.get(&domain).map(|d| d.params)
    }

    fn add_vcpu(&mut self, vcpu: VcpuRef, now: u64) {
        let Some(d) = self.doms.get(&vcpu.domain) else {
            return;
        };
        if self.vcpus.contains_key(&vcpu) {
            return;
        }
        self.vcpus.insert(
            vcpu,
            Vc {
                deadline: now.saturating_add(d.period),
                left: d.budget,
                affinity: Affinity::all(self.cpus.len()),
                ..Vc::default()
            },
        );
    }

    fn wake(&mut self, vcpu: VcpuRef, now: u64) -> Option<usize> {
        let dom = *self.doms.get(&vcpu.domain)?;
        let v = self.vcpus.get_mut(&vcpu)?;
        if v.runnable {
            return None;
        }
        v.runnable = true;
        if v.on.is_some() {
            // Still on its pCPU (slept and woke before it rescheduled).
            return None;
        }
        v.replenish(&dom, now);
        self.enqueue(vcpu);
        self.update(now);
        if !Self::eligible(self.vcpus.get(&vcpu)?) {
            return None;
        }
        self.tickle_for(vcpu)
    }

    fn sleep(&mut self, vcpu: VcpuRef, _now: u64) {
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.runnable = false;
            v.queued = false;
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
        self.update(now);
        let prev = self.cpus[cpu].curr.take();
        self.cpus[cpu].tickled = false;
        let mut yielder = None;
        if let Some(r) = prev {
            if let Some(v) = self.vcpus.get_mut(&r) {
                v.on = None;
                let yielded = core::mem::take(&mut v.yielded);
                let allowed = v.affinity.hard.contains(cpu);
                if v.runnable {
                    self.enqueue(r);
                    if yielded {
                        yielder = Some(r);
                    }
                    if !allowed && self.vcpus.get(&r).is_some_and(Self::eligible) {
                        // Pinned elsewhere: another pCPU takes it.
                        if let Some(c) = self.tickle_for(r) {
                            self.tickles.insert(c);
                        }
                    }
                }
            }
        }

        let Some(r) = self
            .best_queued(cpu, yielder)
            .or_else(|| self.best_queued(cpu, None))
        else {
            return Decision::idle(self.next_release());
        };
        let Some(v) = self.vcpus.get_mut(&r) else {
            return Decision::idle(u64::MAX);
        };
        v.queued = false;
        v.on = Some(cpu);
        let until = now.saturating_add(v.left).min(v.deadline);
        let until = until.min(self.next_release()).max(now.saturating_add(1));
        self.cpus[cpu] = Cpu {
            curr: Some(r),
            charged_at: now,
            tickled: false,
        };
        Decision {
            next: Some(r),
            until,
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
        let (on, queued, hard, eligible) = (v.on, v.queued, v.affinity.hard, Self::eligible(v));
        if let Some(c) = on.filter(|&c| !hard.contains(c)) {
            // Its pCPU gives it up at once (and tickles one it may run on).
            self.tickles.insert(c);
            if let Some(cpu) = self.cpus.get_mut(c) {
                cpu.tickled = true;
            }
        } else if queued && eligible {
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

    fn rt(period_ms: u32, budget_ms: u32, extratime: bool) -> SchedParams {
        SchedParams {
            period_us: period_ms * 1000,
            budget_us: budget_ms * 1000,
            extratime,
            ..SchedParams::default()
        }
    }

    fn sim(nr_cpus: usize) -> Sim {
        Sim::new(Box::new(Rtds::new(nr_cpus)), nr_cpus)
    }

    /// Smallest run time of vCPU `i` over its periods within [0, end).
    fn worst_period(s: &Sim, i: usize, period: u64, end: u64) -> u64 {
        (0..end / period)
            .map(|k| s.vcpus[i].run_in(k * period, (k + 1) * period))
            .min()
            .unwrap_or(0)
    }

    #[test]
    fn rt_domain_meets_every_deadline_beside_extratime_hogs() {
        let mut s = sim(1);
        s.sched.add_domain(1, rt(10, 3, false)).unwrap();
        let rt_vcpu = s.add(v(1, 0), Load::Hog);
        for d in 2..=4 {
            s.sched.add_domain(d, rt(10, 2, true)).unwrap();
            s.add(v(d, 0), Load::Hog);
        }
        s.run_until(10 * SEC);
        let worst = worst_period(&s, rt_vcpu, 10 * MS, 10 * SEC);
        let best = (0..1000)
            .map(|k| s.vcpus[rt_vcpu].run_in(k * 10 * MS, (k + 1) * 10 * MS))
            .max()
            .unwrap_or(0);
        let hogs: Vec<u64> = (2..=4).map(|d| s.domain_ns(d)).collect();
        std::println!("rt per period: min {worst} max {best}; hogs {hogs:?}");
        assert_eq!(worst, 3 * MS);
        // Without extratime it never gets more than its budget.
        assert_eq!(best, 3 * MS);
        // The rest of the pCPU goes to the extratime hogs, evenly.
        assert_eq!(s.idle_ns, 0);
        for h in &hogs {
            assert!(h.abs_diff(7 * SEC / 3) <= 7 * SEC / 3 / 20, "{hogs:?}");
        }
        for d in 2..=4 {
            let i = s.vcpus.iter().position(|x| x.r.domain == d).unwrap();
            assert!(worst_period(&s, i, 10 * MS, 10 * SEC) >= 2 * MS);
        }
    }

    #[test]
    fn periodic_rt_vcpu_gets_its_work_done_promptly() {
        // An RT vCPU that wakes every 10 ms with 2 ms of work, beside six
        // extratime hogs on 2 pCPUs (budgets: 150 % of 200 %).
        let mut s = sim(2);
        s.sched.add_domain(1, rt(10, 3, false)).unwrap();
        let io = s.add(
            v(1, 0),
            Load::Periodic {
                first: 0,
                period: 10 * MS,
                work: 2 * MS,
            },
        );
        for d in 2..=4 {
            s.sched.add_domain(d, rt(10, 2, true)).unwrap();
            s.add(v(d, 0), Load::Hog);
            s.add(v(d, 1), Load::Hog);
        }
        s.run_until(10 * SEC);
        let x = &s.vcpus[io];
        std::println!(
            "rt io: latency {} jobs {}/{} overruns {}",
            x.max_latency,
            x.jobs_done,
            x.jobs,
            x.overruns
        );
        // Every job finishes within its period.
        assert_eq!(x.overruns, 0);
        assert!(x.jobs_done + 1 >= x.jobs);
        assert!(x.max_latency <= 8 * MS);
        assert_eq!(s.idle_with_work_ns, 0);
    }

    #[test]
    fn overload_is_handled() {
        // Budgets add up to 160 % of one pCPU: some periods miss, nothing
        // panics, the pCPU never idles and nobody exceeds its budget.
        let mut s = sim(1);
        for d in 1..=4 {
            s.sched.add_domain(d, rt(10, 4, false)).unwrap();
            s.add(v(d, 0), Load::Hog);
        }
        s.run_until(10 * SEC);
        assert_eq!(s.idle_ns, 0);
        for i in 0..4 {
            let most = (0..1000)
                .map(|k| s.vcpus[i].run_in(k * 10 * MS, (k + 1) * 10 * MS))
                .max()
                .unwrap_or(0);
            assert!(most <= 4 * MS);
            std::println!("overload: {:?} got {}", s.vcpus[i].r, s.vcpus[i].run_ns);
            assert!(s.vcpus[i].run_ns >= 2 * SEC, "{}", s.vcpus[i].run_ns);
        }
    }

    #[test]
    fn no_budget_no_extratime_does_not_run() {
        let mut s = sim(1);
        s.sched.add_domain(1, rt(10, 2, false)).unwrap();
        let i = s.add(v(1, 0), Load::Hog);
        s.run_until(SEC);
        assert_eq!(s.vcpus[i].run_ns, 200 * MS);
        assert_eq!(s.idle_ns, 800 * MS);
        // With extratime it takes the whole pCPU.
        let mut s = sim(1);
        s.sched.add_domain(1, rt(10, 2, true)).unwrap();
        let i = s.add(v(1, 0), Load::Hog);
        s.run_until(SEC);
        assert_eq!(s.vcpus[i].run_ns, SEC);
    }

    #[test]
    fn until_covers_exhaustion_and_release() {
        let mut r = Rtds::new(1);
        r.add_domain(1, rt(10, 3, false)).unwrap();
        r.add_domain(2, rt(20, 5, true)).unwrap();
        r.add_vcpu(v(1, 0), 0);
        r.add_vcpu(v(2, 0), 0);
        assert_eq!(r.wake(v(2, 0), 0), Some(0));
        // Alone: until its budget runs out.
        assert_eq!(
            r.do_schedule(0, 0),
            Decision {
                next: Some(v(2, 0)),
                until: 5 * MS
            }
        );
        // d1 (deadline 10 ms) preempts d2 (deadline 20 ms).
        assert_eq!(r.wake(v(1, 0), MS), Some(0));
        assert_eq!(
            r.do_schedule(0, MS),
            Decision {
                next: Some(v(1, 0)),
                until: 4 * MS
            }
        );
        // d1 out of budget: d2 for its last 4 ms, but back at d1's release.
        assert_eq!(
            r.do_schedule(0, 4 * MS),
            Decision {
                next: Some(v(2, 0)),
                until: 8 * MS
            }
        );
        // d2 in extratime (level 1): d1's release at 10 ms preempts it.
        assert_eq!(r.budget(v(2, 0)), Some((20 * MS, 4 * MS, 0)));
        let d = r.do_schedule(0, 8 * MS);
        assert_eq!(
            d,
            Decision {
                next: Some(v(2, 0)),
                until: 10 * MS
            }
        );
        assert_eq!(r.budget(v(2, 0)), Some((20 * MS, 5 * MS, 1)));
        assert_eq!(r.do_schedule(0, 10 * MS).next, Some(v(1, 0)));
        assert_eq!(r.budget(v(1, 0)), Some((20 * MS, 3 * MS, 0)));
        // Idle with a budgetless vCPU: until its release.
        r.sleep(v(2, 0), 13 * MS);
        assert_eq!(r.do_schedule(0, 13 * MS), Decision::idle(20 * MS));
    }

    #[test]
    fn bad_params_and_unknown_domains() {
        let mut r = Rtds::new(1);
        for (p, b) in [
            (0, 0),
            (10_000, 0),
            (0, 10),
            (100, 200),
            (10_000_001, 1000),
            (5, 5),
        ] {
            let params = SchedParams {
                period_us: p,
                budget_us: b,
                ..SchedParams::default()
            };
            assert_eq!(r.add_domain(1, params), Err(EINVAL), "{p} {b}");
        }
        let ok = SchedParams {
            period_us: MAX_PERIOD_US,
            budget_us: MAX_PERIOD_US,
            ..SchedParams::default()
        };
        r.add_domain(1, ok).unwrap();
        assert_eq!(r.add_domain(1, ok), Err(EEXIST));
        assert_eq!(r.set_params(1, rt(1, 2, true)), Err(EINVAL));
        assert_eq!(r.params(1), Some(ok));
        assert_eq!(r.set_params(2, rt(10, 2, true)), Err(ESRCH));
        // Credit fields are not RTDS's business.
        let odd = SchedParams {
            weight: 0,
            ..SchedParams::default()
        };
        assert_eq!(r.set_params(1, odd), Ok(()));
        assert_eq!(r.params(1), Some(odd));
    }

    #[test]
    fn remove_running_domain_on_many_pcpus() {
        let mut s = sim(2);
        s.sched.add_domain(1, rt(10, 4, true)).unwrap();
        s.sched.add_domain(2, rt(10, 4, true)).unwrap();
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
