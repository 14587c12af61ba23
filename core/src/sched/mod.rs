//! The schedulers: which vCPU each physical CPU runs, and until when.
//!
//! This module owns the scheduler interface ([`Scheduler`]), the types it
//! speaks ([`VcpuRef`], [`SchedParams`], [`Decision`]) and the factory that
//! builds a scheduler from Xen's `sched=` name ([`create`]). The algorithms
//! live in submodules: [`credit`] (Xen's credit1, the default) and [`rtds`]
//! (Xen's RTDS, earliest deadline first).
//!
//! A scheduler is pure bookkeeping: it never touches hardware or timers. The
//! hypervisor keeps one scheduler behind one global lock and drives it:
//!
//! - [`Scheduler::add_domain`] / [`Scheduler::add_vcpu`] when a domain is
//!   built (vCPUs start asleep), [`Scheduler::remove_domain`] when it dies
//!   (then it reschedules every pCPU whose vCPU was dropped);
//! - [`Scheduler::wake`] / [`Scheduler::sleep`] when a vCPU becomes runnable
//!   or blocks or goes offline; when `wake` returns a pCPU, that pCPU must
//!   call [`Scheduler::do_schedule`] soon (an IPI to it, as Xen's tickle);
//! - [`Scheduler::do_schedule`] on a pCPU when its [`Decision::until`] comes,
//!   when it was tickled, and when its vCPU blocked or yielded;
//! - [`Scheduler::set_affinity`] when the control domain pins a vCPU
//!   ([`affinity`]); after it and after every `do_schedule`, the pCPUs
//!   [`Scheduler::take_tickles`] returns must reschedule soon too.
//!
//! All times are nanoseconds of system time. Everything is deterministic and
//! uses integer arithmetic only.
//!
//! # Adding a scheduler
//!
//! 1. Write `core/src/sched/<name>.rs` with a type implementing
//!    [`Scheduler`]: keep its own per-domain and per-vCPU state (keyed by
//!    [`DomId`] and [`VcpuRef`]), validate the [`SchedParams`] fields it uses
//!    (`EINVAL`), return `ESRCH` for unknown domains, ignore unknown vCPUs,
//!    and never hand out a vCPU another pCPU is running. Put its tests in
//!    the same file; the simulator of `sim.rs` (test-only) runs any
//!    scheduler against CPU-bound and periodic loads and checks the
//!    invariants on every decision.
//! 2. Declare it here (`pub mod <name>;`), add a match arm to [`create`] and
//!    its name to [`SCHEDULERS`].

use alloc::boxed::Box;

use rxen_abi::errno::Errno;

use crate::domain::DomId;

pub mod affinity;
pub mod credit;
pub mod rtds;

pub use affinity::{Affinity, CpuListError, CpuMask};

#[cfg(test)]
mod sim;

/// The scheduler used when the command line names none (Xen's default).
pub const DEFAULT_SCHEDULER: &str = "credit";

/// The `sched=` names [`create`] knows.
pub const SCHEDULERS: &[&str] = &["credit", "rtds"];

/// A vCPU as the scheduler names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRef {
    /// The domain.
    pub domain: DomId,
    /// The vCPU number within the domain.
    pub vcpu: u32,
}

impl VcpuRef {
    /// The first possible vCPU of `domain` (for range look-ups).
    pub(crate) fn first(domain: DomId) -> Self {
        Self { domain, vcpu: 0 }
    }

    /// The last possible vCPU of `domain` (for range look-ups).
    pub(crate) fn last(domain: DomId) -> Self {
        Self {
            domain,
            vcpu: u32::MAX,
        }
    }
}

/// Per-domain scheduling parameters, with Xen's names; each scheduler reads
/// (and validates) the ones it knows and keeps the others as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// credit: relative share (Xen's default 256; valid 1..=65535).
    pub weight: u16,
    /// credit: most CPU time in percent of one pCPU, 0 = no cap (may exceed
    /// 100 for a domain with several vCPUs).
    pub cap: u16,
    /// rtds: period in µs (Xen's default 10000).
    pub period_us: u32,
    /// rtds: budget per period in µs (Xen's default 4000).
    pub budget_us: u32,
    /// rtds: may run beyond its budget when nothing with budget left is
    /// runnable (`XEN_DOMCTL_SCHEDRT_extra`; Xen's default on).
    pub extratime: bool,
}

impl Default for SchedParams {
    /// Xen's defaults: weight 256, no cap, 10 ms period, 4 ms budget,
    /// extratime on.
    fn default() -> Self {
        Self {
            weight: 256,
            cap: 0,
            period_us: 10_000,
            budget_us: 4_000,
            extratime: true,
        }
    }
}

/// What a pCPU runs next and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run, or None to idle.
    pub next: Option<VcpuRef>,
    /// When `do_schedule` must be called again on this pCPU at the latest
    /// (slice end, budget exhaustion, replenishment, accounting); when idle,
    /// the next time something may become eligible, or `u64::MAX`. Always
    /// later than the `now` of the call.
    pub until: u64,
}

impl Decision {
    /// Idle until `until`.
    pub(crate) fn idle(until: u64) -> Self {
        Self { next: None, until }
    }
}

/// A scheduling algorithm. One instance schedules all pCPUs (0..nr_cpus);
/// the caller serializes calls (one global lock).
pub trait Scheduler: Send + Sync {
    /// Xen's `sched=` name of the algorithm ("credit", "rtds").
    fn name(&self) -> &'static str;

    /// Registers a domain with its parameters (`EINVAL` for bad values of
    /// the ones this scheduler uses, `EEXIST` if already known).
    fn add_domain(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno>;

    /// Forgets a domain and its vCPUs. A pCPU running one of them becomes
    /// idle as far as the scheduler knows; the caller reschedules it.
    fn remove_domain(&mut self, domain: DomId);

    /// Changes a domain's parameters (`ESRCH` unknown domain, `EINVAL` bad
    /// values).
    fn set_params(&mut self, domain: DomId, params: SchedParams) -> Result<(), Errno>;

    /// A domain's parameters, if it is known.
    fn params(&self, domain: DomId) -> Option<SchedParams>;

    /// Registers a vCPU of a known domain, asleep (not runnable). Unknown
    /// domains and vCPUs already known are ignored.
    fn add_vcpu(&mut self, vcpu: VcpuRef, now: u64);

    /// Makes a vCPU runnable; returns a pCPU that should reschedule now (an
    /// idle one, or one running something the woken vCPU should preempt),
    /// if any. Unknown or already runnable vCPUs: None.
    fn wake(&mut self, vcpu: VcpuRef, now: u64) -> Option<usize>;

    /// Makes a vCPU not runnable (blocked or offline). If it is running, it
    /// keeps its pCPU until that pCPU's next `do_schedule`.
    fn sleep(&mut self, vcpu: VcpuRef, now: u64);

    /// SCHEDOP_yield: the running vCPU lets the others go first at its
    /// pCPU's next `do_schedule` (which the caller then calls).
    fn yield_now(&mut self, vcpu: VcpuRef, now: u64);

    /// Charges the vCPU `cpu` ran since it was picked, puts it back if it is
    /// still runnable, and picks the next one. Never returns a vCPU another
    /// pCPU is running. Out-of-range `cpu`: idle forever.
    fn do_schedule(&mut self, cpu: usize, now: u64) -> Decision;

    /// The vCPU `cpu` runs, as of its last `do_schedule`.
    fn running_on(&self, cpu: usize) -> Option<VcpuRef>;

    /// A known vCPU's hard and soft affinity (every pCPU until set).
    fn affinity(&self, vcpu: VcpuRef) -> Option<Affinity>;

    /// Sets a vCPU's hard and/or soft affinity ([`Affinity::set`]'s rules:
    /// `EINVAL` for a hard affinity with no pCPU, nothing changed; `ESRCH`
    /// for an unknown vCPU). From then on the vCPU is picked only on its hard
    /// affinity's pCPUs; a pCPU running it elsewhere, and an idle one where
    /// it may now run, are left in [`Scheduler::take_tickles`].
    fn set_affinity(
        &mut self,
        vcpu: VcpuRef,
        hard: Option<CpuMask>,
        soft: Option<CpuMask>,
    ) -> Result<(), Errno>;

    /// The pCPUs that must reschedule because of something other than a
    /// wake-up (an affinity change, or a vCPU a pCPU gave up because it may
    /// no longer run there), each once.
    fn take_tickles(&mut self) -> CpuMask;
}

/// Builds the scheduler Xen's `sched=` option names, for `nr_cpus` pCPUs
/// (at least one): "credit" or "rtds"; any other name gives None.
pub fn create(name: &str, nr_cpus: usize) -> Option<Box<dyn Scheduler>> {
    match name {
        "credit" => Some(Box::new(credit::Credit::new(nr_cpus))),
        "rtds" => Some(Box::new(rtds::Rtds::new(nr_cpus))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::sim::{Load, Sim};
    use super::*;
    use rxen_abi::errno::{EEXIST, EINVAL, ESRCH};

    fn v(domain: DomId, vcpu: u32) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    #[test]
    fn factory_knows_xen_names() {
        assert_eq!(create("credit", 2).map(|s| s.name()), Some("credit"));
        assert_eq!(create("rtds", 2).map(|s| s.name()), Some("rtds"));
        assert_eq!(
            create(DEFAULT_SCHEDULER, 1).map(|s| s.name()),
            Some("credit")
        );
        assert!(create("credit2", 1).is_none());
        assert!(create("", 1).is_none());
        for name in SCHEDULERS {
            assert_eq!(create(name, 1).map(|s| s.name()), Some(*name));
        }
    }

    #[test]
    fn defaults_are_xens() {
        let p = SchedParams::default();
        assert_eq!(
            (p.weight, p.cap, p.period_us, p.budget_us),
            (256, 0, 10_000, 4_000)
        );
        assert!(p.extratime);
    }

    /// Behaviour every scheduler shares.
    fn common(name: &str) {
        let mut s = create(name, 1).expect("scheduler");
        let d = SchedParams::default();
        assert_eq!(s.set_params(7, d), Err(ESRCH));
        assert_eq!(s.params(7), None);
        s.add_domain(1, d).expect("add");
        assert_eq!(s.params(1), Some(d));
        // Unknown vCPUs and domains are ignored.
        assert_eq!(s.wake(v(9, 0), 0), None);
        s.sleep(v(9, 0), 0);
        s.yield_now(v(9, 0), 0);
        s.add_vcpu(v(9, 0), 0);
        s.remove_domain(9);
        assert_eq!(s.wake(v(1, 3), 0), None);
        // Out-of-range pCPU.
        assert_eq!(s.do_schedule(5, 0), Decision::idle(u64::MAX));
        assert_eq!(s.running_on(5), None);

        // Sleep of a running vCPU takes effect at the next do_schedule.
        s.add_vcpu(v(1, 0), 0);
        assert_eq!(s.do_schedule(0, 0).next, None);
        assert_eq!(s.wake(v(1, 0), 10), Some(0));
        let dec = s.do_schedule(0, 10);
        assert_eq!(dec.next, Some(v(1, 0)));
        assert!(dec.until > 10);
        s.sleep(v(1, 0), 20);
        assert_eq!(s.running_on(0), Some(v(1, 0)));
        assert_eq!(s.do_schedule(0, 30).next, None);
        assert_eq!(s.running_on(0), None);
        assert_eq!(s.wake(v(1, 0), 40), Some(0));
        assert_eq!(s.do_schedule(0, 40).next, Some(v(1, 0)));
        // Waking it again while still on the pCPU: no tickle, and it runs on.
        s.sleep(v(1, 0), 50);
        assert_eq!(s.wake(v(1, 0), 60), None);
        assert_eq!(s.do_schedule(0, 70).next, Some(v(1, 0)));

        // Removing the domain of a running vCPU is safe.
        s.remove_domain(1);
        assert_eq!(s.params(1), None);
        assert_eq!(s.running_on(0), None);
        assert_eq!(s.do_schedule(0, 80).next, None);
        s.sleep(v(1, 0), 90);
        assert_eq!(s.wake(v(1, 0), 90), None);

        // Yield lets the other runnable vCPU go first.
        s.add_domain(2, d).expect("add");
        s.add_domain(3, d).expect("add");
        s.add_vcpu(v(2, 0), 100);
        s.add_vcpu(v(3, 0), 100);
        s.wake(v(2, 0), 100);
        assert_eq!(s.do_schedule(0, 100).next, Some(v(2, 0)));
        s.wake(v(3, 0), 100);
        s.yield_now(v(2, 0), 200);
        assert_eq!(s.do_schedule(0, 200).next, Some(v(3, 0)));
        // A yield with nobody else runnable keeps the vCPU running.
        s.sleep(v(2, 0), 300);
        s.yield_now(v(3, 0), 300);
        assert_eq!(s.do_schedule(0, 300).next, Some(v(3, 0)));

        // Duplicate domain; bad values of the parameters this scheduler uses.
        assert_eq!(s.add_domain(2, d), Err(EEXIST));
        let bad = match name {
            "credit" => SchedParams { weight: 0, ..d },
            _ => SchedParams { budget_us: 0, ..d },
        };
        assert_eq!(s.add_domain(4, bad), Err(EINVAL));
        assert_eq!(s.set_params(2, bad), Err(EINVAL));
        assert_eq!(s.params(2), Some(d));
    }

    /// A deterministic mix of CPU-bound and periodic vCPUs of domains with
    /// varied parameters on 4 pCPUs, with domains coming and going: the
    /// simulator checks on every decision that no vCPU runs on two pCPUs, that
    /// only runnable vCPUs are picked and that `until` is in the future.
    fn stress(name: &str) -> Sim {
        const MS: u64 = 1_000_000;
        let mut sim = Sim::new(create(name, 4).expect("scheduler"), 4);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for d in 1..=8u16 {
            let budget = 1 + rand(5) as u32;
            let params = SchedParams {
                weight: 64 << rand(4),
                cap: 0,
                period_us: 10_000,
                budget_us: budget * 1000,
                extratime: true,
            };
            sim.sched.add_domain(d, params).expect("params");
            for i in 0..1 + rand(3) as u32 {
                let load = if rand(2) == 0 {
                    Load::Hog
                } else {
                    Load::Periodic {
                        first: rand(20) * MS,
                        period: (5 + rand(50)) * MS,
                        work: (1 + rand(4)) * MS,
                    }
                };
                sim.add(v(d, i), load);
            }
        }
        sim.run_until(2_000 * MS);
        assert_eq!(sim.idle_with_work_ns, 0, "{name}: idle with work");
        // Kill two domains while they run, change parameters, run on.
        sim.sched.remove_domain(2);
        sim.sched.remove_domain(5);
        sim.vcpus.retain(|x| x.r.domain != 2 && x.r.domain != 5);
        sim.reschedule_all();
        sim.sched
            .set_params(3, SchedParams::default())
            .expect("params");
        sim.run_until(4_000 * MS);
        for x in &sim.vcpus {
            assert!(x.run_ns > 0, "{name}: {:?} never ran", x.r);
        }
        sim
    }

    #[test]
    fn credit_stress_invariants() {
        let sim = stress("credit");
        assert_eq!(sim.idle_with_work_ns, 0);
    }

    #[test]
    fn rtds_stress_invariants() {
        let sim = stress("rtds");
        assert_eq!(sim.idle_with_work_ns, 0);
    }

    /// Affinity as every scheduler keeps it: every pCPU to begin with, Xen's
    /// errnos, pinned vCPUs only where they are pinned (the simulator checks
    /// every decision) and still served there, a re-pinned running vCPU moved
    /// at once.
    fn affinity(name: &str) {
        const MS: u64 = 1_000_000;
        let mut s = create(name, 4).expect("scheduler");
        s.add_domain(1, SchedParams::default()).expect("add");
        s.add_vcpu(v(1, 0), 0);
        assert_eq!(s.affinity(v(1, 0)), Some(Affinity::all(4)));
        assert_eq!(s.affinity(v(1, 1)), None);
        assert_eq!(
            s.set_affinity(v(1, 1), Some(CpuMask::all(1)), None),
            Err(ESRCH)
        );
        assert_eq!(
            s.set_affinity(v(1, 0), Some(CpuMask::empty()), None),
            Err(EINVAL)
        );
        assert_eq!(
            s.set_affinity(v(1, 0), Some(CpuMask::from_bits(1 << 7)), None),
            Err(EINVAL),
            "pCPU 7 does not exist"
        );
        assert_eq!(s.affinity(v(1, 0)), Some(Affinity::all(4)));
        assert!(s.take_tickles().is_empty());

        // Three hogs on four pCPUs: two pinned to pCPU 1, one free.
        let mut sim = Sim::new(create(name, 4).expect("scheduler"), 4);
        for d in 1..=3 {
            sim.sched
                .add_domain(d, SchedParams::default())
                .expect("add");
        }
        let a = sim.add(v(1, 0), Load::Hog);
        let b = sim.add(v(2, 0), Load::Hog);
        let c = sim.add(v(3, 0), Load::Hog);
        for i in [a, b] {
            sim.pin(i, Some(CpuMask::from_bits(0b10)), None)
                .expect("pin");
        }
        sim.run_until(300 * MS);
        for i in [a, b] {
            assert!(
                sim.vcpus[i].run_in(0, 300 * MS) > 100 * MS,
                "{name}: pinned {i} got {} ns",
                sim.vcpus[i].run_ns
            );
        }
        assert!(
            sim.vcpus[c].run_in(0, 300 * MS) > 290 * MS,
            "{name}: free hog"
        );
        assert_eq!(sim.idle_with_work_ns, 0, "{name}: a free pCPU idled");
        // The free hog, wherever it runs, is pinned to pCPU 3: it is there at once.
        sim.pin(c, Some(CpuMask::from_bits(0b1000)), None)
            .expect("pin");
        sim.run_until(300 * MS + 1);
        assert_eq!(sim.sched.running_on(3), Some(v(3, 0)), "{name}");
        sim.run_until(600 * MS);
        assert!(sim.vcpus[c].run_in(300 * MS, 600 * MS) > 290 * MS, "{name}");
        // Soft affinity is stored and reported, and changes no hard rule.
        sim.pin(a, None, Some(CpuMask::from_bits(0b100)))
            .expect("soft");
        let got = sim.sched.affinity(v(1, 0)).expect("known");
        assert_eq!(
            (got.hard, got.soft),
            (CpuMask::from_bits(0b10), CpuMask::from_bits(0b100))
        );
        sim.run_until(700 * MS);
    }

    #[test]
    fn credit_affinity() {
        affinity("credit");
    }

    #[test]
    fn rtds_affinity() {
        affinity("rtds");
    }

    /// Credit's soft affinity: a woken vCPU tickles the idle pCPU it prefers.
    #[test]
    fn credit_wakes_a_vcpu_on_the_idle_pcpu_it_prefers() {
        let mut s = create("credit", 4).expect("scheduler");
        s.add_domain(1, SchedParams::default()).expect("add");
        s.add_vcpu(v(1, 0), 0);
        s.set_affinity(v(1, 0), None, Some(CpuMask::from_bits(0b100)))
            .expect("soft");
        assert_eq!(s.wake(v(1, 0), 10), Some(2));
        assert_eq!(s.do_schedule(2, 10).next, Some(v(1, 0)));
    }

    #[test]
    fn credit_common_behaviour() {
        common("credit");
    }

    #[test]
    fn rtds_common_behaviour() {
        common("rtds");
    }

    /// The hypervisor's calling pattern, at random: CPUs take exits of the vCPU they
    /// run (which may yield or block), other CPUs wake blocked vCPUs, and every CPU
    /// asks for its next vCPU; a vCPU is never handed to a CPU while another runs it.
    #[test]
    fn never_two_cpus_for_one_vcpu_under_the_loops_calling_pattern() {
        for name in SCHEDULERS {
            let nr_cpus = 2;
            let mut sched = create(name, nr_cpus).unwrap();
            let vcpus: Vec<VcpuRef> = (1..=3).map(|d| VcpuRef { domain: d, vcpu: 0 }).collect();
            for v in &vcpus {
                sched.add_domain(v.domain, SchedParams::default()).unwrap();
                sched.add_vcpu(*v, 0);
                sched.wake(*v, 0);
            }
            let mut running: Vec<Option<VcpuRef>> = vec![None; nr_cpus];
            let mut blocked: Vec<bool> = vec![false; vcpus.len()];
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut now = 0u64;
            for step in 0..200_000u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                now += x % 50_000;
                let cpu = (x % nr_cpus as u64) as usize;
                match (x >> 8) % 5 {
                    // An exit on `cpu`: the vCPU may yield or block.
                    0 | 1 => {
                        if let Some(r) = running[cpu] {
                            let i = (r.domain - 1) as usize;
                            match (x >> 16) % 3 {
                                0 => sched.yield_now(r, now),
                                1 => {
                                    blocked[i] = true;
                                    sched.sleep(r, now);
                                }
                                _ => {}
                            }
                        }
                        let d = sched.do_schedule(cpu, now);
                        running[cpu] = d.next;
                    }
                    // Another CPU wakes a blocked vCPU (an event for it).
                    2 => {
                        let i = ((x >> 20) % vcpus.len() as u64) as usize;
                        if blocked[i] {
                            blocked[i] = false;
                            sched.wake(vcpus[i], now);
                        }
                    }
                    // The control domain pins a vCPU (to one CPU, or both).
                    3 => {
                        let i = ((x >> 20) % vcpus.len() as u64) as usize;
                        let mask = CpuMask::from_bits((x >> 24) % 3 + 1);
                        sched.set_affinity(vcpus[i], Some(mask), None).unwrap();
                        for c in sched.take_tickles().iter() {
                            running[c] = sched.do_schedule(c, now).next;
                        }
                    }
                    // A pass without an exit (a kick, a timer while idle).
                    _ => {
                        let d = sched.do_schedule(cpu, now);
                        running[cpu] = d.next;
                    }
                }
                for c in sched.take_tickles().iter() {
                    running[c] = sched.do_schedule(c, now).next;
                }
                for (c, r) in running.iter().enumerate() {
                    if let Some(r) = r {
                        let hard = sched.affinity(*r).unwrap().hard;
                        assert!(hard.contains(c), "{name}: step {step}: {r:?} on CPU {c}");
                    }
                }
                if let (Some(a), Some(b)) = (running[0], running[1]) {
                    assert_ne!(a, b, "{name}: step {step}: {a:?} on both CPUs");
                }
                for r in running.iter().flatten() {
                    assert!(
                        !blocked[(r.domain - 1) as usize],
                        "{name}: step {step}: blocked {r:?} picked"
                    );
                }
            }
        }
    }
}
