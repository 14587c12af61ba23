//! A test-only simulator: drives any [`Scheduler`] as the hypervisor would
//! (do_schedule at each `until`, at tickles and when a vCPU blocks), with
//! CPU-bound and periodic vCPUs, checks the invariants on every decision
//! (a vCPU on one pCPU at a time, only runnable ones, only on a pCPU of its
//! hard affinity, `until` in the future) and records what each vCPU got.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::Errno;

use super::{CpuMask, Scheduler, VcpuRef};

/// What a simulated vCPU does.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Always runnable (spins).
    Hog,
    /// Wakes at `first`, `first + period`, ... with `work` ns to do, and
    /// blocks once it is done.
    Periodic { first: u64, period: u64, work: u64 },
}

/// A simulated vCPU and its statistics.
#[derive(Debug)]
pub struct SimVcpu {
    pub r: VcpuRef,
    pub load: Load,
    runnable: bool,
    work_left: u64,
    next_wake: u64,
    woke_at: Option<u64>,
    waiting_since: Option<u64>,
    /// Total run time.
    pub run_ns: u64,
    /// Longest wake-to-run time.
    pub max_latency: u64,
    /// Wake-ups that waited: (wake time, latency).
    pub late: Vec<(u64, u64)>,
    /// Longest time runnable without running.
    pub max_wait: u64,
    /// Jobs released and jobs finished (periodic loads).
    pub jobs: u64,
    pub jobs_done: u64,
    /// Jobs released while the previous one was unfinished.
    pub overruns: u64,
    /// Run intervals (merged when contiguous).
    pub runs: Vec<(u64, u64)>,
}

impl SimVcpu {
    /// Run time within [from, to).
    pub fn run_in(&self, from: u64, to: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }
}

#[derive(Clone, Copy, Debug)]
struct SimCpu {
    curr: Option<usize>,
    since: u64,
    until: u64,
    resched: bool,
}

/// The simulator.
pub struct Sim {
    pub sched: Box<dyn Scheduler>,
    pub now: u64,
    cpus: Vec<SimCpu>,
    pub vcpus: Vec<SimVcpu>,
    /// Time some pCPU idled while some vCPU that may run there was runnable
    /// and not running.
    pub idle_with_work_ns: u64,
    /// Total idle pCPU time.
    pub idle_ns: u64,
    /// do_schedule calls.
    pub decisions: u64,
}

impl Sim {
    /// A simulator of `nr_cpus` pCPUs around `sched`.
    pub fn new(sched: Box<dyn Scheduler>, nr_cpus: usize) -> Self {
        Self {
            sched,
            now: 0,
            cpus: vec![
                SimCpu {
                    curr: None,
                    since: 0,
                    until: 0,
                    resched: true,
                };
                nr_cpus
            ],
            vcpus: Vec::new(),
            idle_with_work_ns: 0,
            idle_ns: 0,
            decisions: 0,
        }
    }

    /// Adds a vCPU with `load` (its domain must exist); returns its index.
    pub fn add(&mut self, r: VcpuRef, load: Load) -> usize {
        self.sched.add_vcpu(r, self.now);
        let idx = self.vcpus.len();
        self.vcpus.push(SimVcpu {
            r,
            load,
            runnable: false,
            work_left: 0,
            next_wake: u64::MAX,
            woke_at: None,
            waiting_since: None,
            run_ns: 0,
            max_latency: 0,
            max_wait: 0,
            late: Vec::new(),
            jobs: 0,
            jobs_done: 0,
            overruns: 0,
            runs: Vec::new(),
        });
        match load {
            Load::Hog => self.wake(idx),
            Load::Periodic { first, .. } => self.vcpus[idx].next_wake = first,
        }
        idx
    }

    fn wake(&mut self, i: usize) {
        let v = &mut self.vcpus[i];
        v.runnable = true;
        v.woke_at = Some(self.now);
        v.waiting_since = Some(self.now);
        if let Some(c) = self.sched.wake(v.r, self.now) {
            self.cpus[c].resched = true;
        }
    }

    /// Sets the affinity of vCPU `i` (as the control domain's
    /// `setvcpuaffinity`); the pCPUs the scheduler asks for reschedule.
    pub fn pin(
        &mut self,
        i: usize,
        hard: Option<CpuMask>,
        soft: Option<CpuMask>,
    ) -> Result<(), Errno> {
        let r = self.vcpus[i].r;
        let set = self.sched.set_affinity(r, hard, soft);
        self.take_tickles();
        set
    }

    fn take_tickles(&mut self) {
        for c in self.sched.take_tickles().iter() {
            if let Some(cpu) = self.cpus.get_mut(c) {
                cpu.resched = true;
            }
        }
    }

    /// Makes every pCPU reschedule now (after a domain was removed); pCPUs
    /// running a vCPU the simulator no longer has become idle first.
    pub fn reschedule_all(&mut self) {
        let known: Vec<VcpuRef> = self.vcpus.iter().map(|v| v.r).collect();
        for c in &mut self.cpus {
            c.resched = true;
            c.curr = None;
        }
        // Indices changed: find the pCPUs' vCPUs again.
        for c in 0..self.cpus.len() {
            if let Some(r) = self.sched.running_on(c) {
                self.cpus[c].curr = known.iter().position(|k| *k == r);
            }
        }
    }

    /// Blocks vCPU `i` (as SCHEDOP_block would); its pCPU reschedules.
    pub fn block(&mut self, i: usize) {
        let v = &mut self.vcpus[i];
        v.runnable = false;
        v.woke_at = None;
        v.waiting_since = None;
        self.sched.sleep(v.r, self.now);
        for c in &mut self.cpus {
            if c.curr == Some(i) {
                c.resched = true;
            }
        }
    }

    fn next_event(&self) -> u64 {
        let mut t = u64::MAX;
        for c in &self.cpus {
            t = t.min(if c.resched { self.now } else { c.until });
            if let Some(i) = c.curr {
                let v = &self.vcpus[i];
                if matches!(v.load, Load::Periodic { .. }) && v.runnable {
                    t = t.min(c.since + v.work_left);
                }
            }
        }
        for v in &self.vcpus {
            t = t.min(v.next_wake);
        }
        t
    }

    fn advance(&mut self, t: u64) {
        let waiting: Vec<VcpuRef> = self
            .vcpus
            .iter()
            .enumerate()
            .filter(|(i, v)| v.runnable && !self.cpus.iter().any(|c| c.curr == Some(*i)))
            .map(|(_, v)| v.r)
            .collect();
        let sched = &self.sched;
        let could_run = |cpu: usize| {
            waiting
                .iter()
                .any(|r| sched.affinity(*r).is_some_and(|a| a.hard.contains(cpu)))
        };
        for (index, c) in self.cpus.iter_mut().enumerate() {
            let dt = t - c.since;
            match c.curr {
                Some(i) => {
                    let v = &mut self.vcpus[i];
                    v.run_ns += dt;
                    v.work_left = v.work_left.saturating_sub(dt);
                    if dt > 0 {
                        match v.runs.last_mut() {
                            Some(last) if last.1 == c.since => last.1 = t,
                            _ => v.runs.push((c.since, t)),
                        }
                    }
                }
                None => {
                    self.idle_ns += dt;
                    if could_run(index) {
                        self.idle_with_work_ns += dt;
                    }
                }
            }
            c.since = t;
        }
        self.now = t;
    }

    /// Runs until `end`.
    pub fn run_until(&mut self, end: u64) {
        loop {
            let t = self.next_event().min(end);
            assert!(t >= self.now);
            self.advance(t);
            if t >= end {
                break;
            }
            self.step();
        }
        let now = self.now;
        for v in &mut self.vcpus {
            if let Some(w) = v.waiting_since {
                v.max_wait = v.max_wait.max(now - w);
            }
        }
    }

    fn step(&mut self) {
        let t = self.now;
        // Periodic vCPUs that finished their work block.
        for c in 0..self.cpus.len() {
            if let Some(i) = self.cpus[c].curr {
                let v = &mut self.vcpus[i];
                if matches!(v.load, Load::Periodic { .. }) && v.runnable && v.work_left == 0 {
                    v.jobs_done += 1;
                    self.block(i);
                }
            }
        }
        // Releases.
        for i in 0..self.vcpus.len() {
            if let Load::Periodic { period, work, .. } = self.vcpus[i].load {
                if self.vcpus[i].next_wake <= t {
                    let v = &mut self.vcpus[i];
                    v.next_wake += period;
                    v.jobs += 1;
                    v.work_left += work;
                    if v.runnable {
                        v.overruns += 1;
                    } else {
                        self.wake(i);
                    }
                }
            }
        }
        // Reschedules.
        for c in 0..self.cpus.len() {
            if !(self.cpus[c].resched || self.cpus[c].until <= t) {
                continue;
            }
            let d = self.sched.do_schedule(c, t);
            self.take_tickles();
            self.decisions += 1;
            assert!(d.until > t, "until {} not after now {}", d.until, t);
            assert_eq!(self.sched.running_on(c), d.next);
            if let Some(prev) = self.cpus[c].curr.take() {
                if self.vcpus[prev].runnable {
                    self.vcpus[prev].waiting_since = Some(t);
                }
            }
            let next = d.next.map(|r| {
                let i = self
                    .vcpus
                    .iter()
                    .position(|v| v.r == r)
                    .expect("scheduler picked an unknown vCPU");
                assert!(self.vcpus[i].runnable, "picked a sleeping {r:?}");
                assert!(
                    self.sched.affinity(r).is_some_and(|a| a.hard.contains(c)),
                    "{r:?} picked on pCPU {c}, outside its hard affinity"
                );
                for (o, oc) in self.cpus.iter().enumerate() {
                    assert!(o == c || oc.curr != Some(i), "{r:?} on two pCPUs");
                }
                let v = &mut self.vcpus[i];
                if let Some(w) = v.woke_at.take() {
                    v.max_latency = v.max_latency.max(t - w);
                    if t > w {
                        v.late.push((w, t - w));
                    }
                }
                if let Some(w) = v.waiting_since.take() {
                    v.max_wait = v.max_wait.max(t - w);
                }
                i
            });
            self.cpus[c] = SimCpu {
                curr: next,
                since: t,
                until: d.until,
                resched: false,
            };
        }
    }

    /// Total run time of the vCPUs of `domain`.
    pub fn domain_ns(&self, domain: u16) -> u64 {
        self.vcpus
            .iter()
            .filter(|v| v.r.domain == domain)
            .map(|v| v.run_ns)
            .sum()
    }
}
