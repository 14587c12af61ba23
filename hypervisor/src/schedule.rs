//! The machine's domains and the loop every physical CPU runs (Xen's
//! `schedule.c`): serve the exit of the vCPU it ran, fire timers, tell the
//! scheduler which vCPUs became runnable or blocked, destroy domains that
//! ended, ask the scheduler what to run next, and enter that vCPU.
//!
//! One lock, [`MACHINE`], guards the domain table and the scheduler. A CPU
//! holds it exclusively while it decides and while it serves an exit that
//! may reach beyond its domain, and releases it while its guest runs or
//! while it idles; a vCPU is entered by one CPU at a time because the
//! scheduler never picks a vCPU that another CPU is running. A CPU that
//! must look again (an event woke a vCPU it should run, a domain it runs is
//! ending) gets a kick IPI, which makes its guest exit or ends its HLT.
//!
//! Exits that stay within their domain (CPUID, MSRs, port I/O, nested page
//! faults, the interrupt window and the hypercalls the core serves with the
//! caller alone: `exits::is_local_exit`) are served with the machine held
//! shared and the domain's own exit lock (`serve_local`): CPUs running
//! different domains serve them side by side, and two vCPUs of one domain
//! take turns. So is an event send (`exits::is_peer_send`), which reaches
//! its peer under the peer's exit lock if that is free (a woken vCPU goes to
//! the scheduler under its own lock); a send whose peer is taken is served
//! again with the machine held exclusively (the peer's holder may be a send
//! the other way, waiting for this domain's lock). Such an exit that leaves nothing for the scheduler goes
//! straight back into the guest; otherwise the CPU goes on to the
//! scheduling pass with the machine held exclusively, handing over what the
//! exit asked for. A CPU waiting to hold the machine exclusively keeps new
//! local exits off it (they wait until it is done), so it is not starved.
//!
//! Most exits change nothing the scheduler knows: after one of those the
//! vCPU goes straight back into its guest without the scheduling pass, with
//! any number of domains (issue 12). The pass runs when something may have
//! changed: the exit changed another domain as the scheduler sees it
//! (paused, blocked or re-timed one of its vCPUs, or woke one that should
//! preempt the vCPU here; a vCPU it woke for another CPU is handed to the
//! scheduler during the exit and that CPU kicked, and one running elsewhere
//! with a kick due is kicked, with no pass here: `settle_lent`; a sibling
//! running elsewhere with a kick due is kicked the same way)
//! or set scheduler parameters (the hypercall environment then asks for it;
//! grant operations and foreign mappings, which change only memory, do
//! not), woke or blocked a vCPU of its own domain, another CPU
//! kicked this one, a timer is due, a device interrupt came, the control
//! domain changed the domains (see `serve_exit`). The exit profile
//! (`exit-stats`) counts the exits that went straight back.
//!
//! Each CPU arms its timer for its slice and for the timers it owns: those of
//! the vCPUs it runs or last ran (`Vcpu::processor`, a domain's watchdogs with
//! its vCPU 0), as Xen keeps a vCPU's timers on its processor; a timer moved
//! before its owner's armed time has the owner kicked (`kick_timer_owners`).
//! A CPU's pass fires whatever is due machine-wide, so a vCPU that moved is
//! never late; only the wake-ups are the owner's.
//!
//! A pass looks only at the domains that may have changed since a pass last
//! looked at them (`DomainTable`): a domain none of whose vCPUs is on a CPU,
//! with nothing waiting for the scheduler, is recorded as quiet, with its
//! earliest timer and the CPU that owns it; later passes see only that record
//! until the domain is reached mutably through the table (an event, a control
//! operation, its vCPU picked) or its timer comes due. So a pass costs the
//! same beside any number of blocked domains, as Xen's scheduler sees only its
//! run queues and its timers (the lock profile counts the domains the passes
//! looked at).
//!
//! The machine lock is a plain spin lock (`spin`'s reader-writer lock), not
//! a ticket lock: a fair lock was
//! tried (issue 9) and, under QEMU TCG where each CPU is a host thread that
//! the host may deschedule, the hand-off to a descheduled waiter stalled
//! every CPU behind it (the domains test took twice as long and an event
//! ping-pong beside four busy domains missed its deadline). The local exits
//! above take the per-domain exit locks instead of waiting their turn.
//!
//! Lock order (take only in this order; never wait for an earlier one while
//! holding a later one):
//! 1. `MACHINE` (here): domains, scheduler, grant tables; a reader-writer
//!    lock (exclusive for the scheduling pass and every exit but the local
//!    ones and event sends, shared for those).
//! 2. A domain's exit lock (`HvmDomain::exit_lock`): taken only with the
//!    machine held shared, by the CPU serving a local exit or an event send
//!    of that domain. A send also takes its peer's, only with `try_lock`
//!    (never waiting for a second domain's lock while holding one: two
//!    domains sending to each other cannot deadlock).
//! 3. The scheduler's lock (`Machine::sched`): taken under 1 shared and 2 by
//!    an event send that woke a vCPU; with the machine held exclusively it
//!    is reached without locking (`get_mut`).
//! 4. `console_input::DOM0_INPUT`: typed bytes for dom0 (taken under 1 and
//!    2). `pci::PCI`, the PCI registry, is a leaf at the same rank (taken
//!    under 1 by physdev_op, under 2 by dom0's PCI configuration exits,
//!    nothing taken under it).
//! 5. The heap's growth lock (`heap::DualHeap::growing`, only `try_lock`:
//!    an allocation that finds it busy does not wait).
//! 6. `memory::FRAMES`, the frame allocator (under 1, 2 and 5; nothing
//!    allocates from the heap while it is held).
//! 7. The heap's arena locks (early, main, each extension): inside every
//!    allocation, leaves.
//! 8. `rxen_x86::console::SERIAL`: the UART and its buffer, a leaf (nothing
//!    allocates or takes another lock under it).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rxen_core::domain::{DomId, ShutdownReason};
use rxen_core::lock_profile::{LockCounters, LockProfile};
use rxen_core::sched::{SchedParams, Scheduler, VcpuRef};
use rxen_core::time::RunstateKind;
use rxen_x86::{apic, cpu, printk, stop};

use crate::console_input::{DebugKey, InputFocus, Typed};
use crate::hvm::build::BootSpec;
use crate::hvm::exits::{self, Flow};
use crate::hvm::grant::Platform;
use crate::hvm::{self, CreateError, DomainTable, GrantMap, HvmDomain, World};

/// The longest a CPU runs or idles without looking at timers.
const HOUSEKEEPING_NS: u64 = 100_000_000;
/// How soon a CPU looks again while console output waits for the UART
/// (about what a 16-byte FIFO takes at 115200 baud).
const CONSOLE_DRAIN_NS: u64 = 1_000_000;
/// Most reboots in a row before rxen gives up on a domain.
const MAX_REBOOTS: u32 = 16;

/// A boot domain: how to build it again on reboot.
pub struct BootDomain {
    /// Domain ID.
    pub id: DomId,
    /// What it is built from.
    pub spec: BootSpec,
    /// Its scheduling parameters.
    pub params: SchedParams,
    /// The pCPUs its vCPUs may run on (`cpus=`; None: all).
    pub cpus: Option<rxen_core::sched::CpuMask>,
    /// vCPU n pinned to pCPU n instead (`dom0_vcpus_pin`).
    pub pin_each: bool,
}

/// Everything behind the lock.
struct Machine {
    domains: DomainTable,
    grants: GrantMap,
    /// The scheduler: reached through `get_mut` with the machine held
    /// exclusively, locked by an event send served with it held shared
    /// (`hvm::Peers`).
    sched: spin::Mutex<alloc::boxed::Box<dyn Scheduler>>,
    boot: BTreeMap<DomId, (BootDomain, u32)>,
    /// Rebooted domains waiting to be built again (with their reboot count):
    /// a CPU builds them outside the lock (unpacking a distribution kernel
    /// takes seconds), see [`run_cpu`].
    rebuilds: Vec<(BootDomain, u32)>,
    /// Free frames before the first domain was built.
    baseline_free: u64,
    /// How the last domain to end ended.
    last_end: Option<ShutdownReason>,
    /// Where serial input goes.
    input: InputFocus,
    /// Print each domain's exit profile when it ends (`exit-stats`).
    exit_stats: bool,
}

/// The machine: held exclusively ([`lock_machine`]) by a CPU that
/// schedules or serves an exit that may reach beyond its domain, shared by
/// CPUs serving local exits ([`serve_local`]).
static MACHINE: spin::RwLock<Option<Machine>> = spin::RwLock::new(None);
/// CPUs waiting to hold [`MACHINE`] exclusively: while one waits, no local
/// exit takes it shared (those exits wait until it is done), so that local
/// exits on other CPUs cannot keep it from the writer.
static WRITERS_WAITING: AtomicU32 = AtomicU32::new(0);

/// The machine held exclusively by one CPU; the time it is held goes to that
/// CPU's lock profile when it is let go.
struct MachineGuard {
    guard: spin::RwLockWriteGuard<'static, Option<Machine>>,
    cpu_index: usize,
    since: u64,
}

impl core::ops::Deref for MachineGuard {
    type Target = Option<Machine>;
    fn deref(&self) -> &Option<Machine> {
        &self.guard
    }
}

impl core::ops::DerefMut for MachineGuard {
    fn deref_mut(&mut self) -> &mut Option<Machine> {
        &mut self.guard
    }
}

impl Drop for MachineGuard {
    fn drop(&mut self) {
        if let Some(counts) = LOCK_PROFILE.get(self.cpu_index) {
            counts.released(crate::time::now_ns().saturating_sub(self.since));
        }
    }
}

/// Holds the machine exclusively, from CPU `cpu_index` (counted in its lock
/// profile, with the time it is held).
fn lock_machine(cpu_index: usize) -> MachineGuard {
    let (guard, waited) = take_timed(
        || MACHINE.try_write(),
        || {
            WRITERS_WAITING.fetch_add(1, Ordering::AcqRel);
            let guard = MACHINE.write();
            WRITERS_WAITING.fetch_sub(1, Ordering::AcqRel);
            guard
        },
    );
    if let Some(counts) = LOCK_PROFILE.get(cpu_index) {
        counts.held(waited);
    }
    MachineGuard {
        guard,
        cpu_index,
        since: crate::time::now_ns(),
    }
}

/// Takes domain exit lock `lock` for a local exit on CPU `cpu_index`
/// (counted in its lock profile).
fn lock_domain(lock: &spin::Mutex<()>, cpu_index: usize) -> spin::MutexGuard<'_, ()> {
    let (guard, waited) = take_timed(|| lock.try_lock(), || lock.lock());
    if let Some(counts) = LOCK_PROFILE.get(cpu_index) {
        counts.served_shared(waited);
    }
    guard
}

/// A lock taken at once with `try_take`, or else waited for with `take`;
/// with how long the wait took (ns), if there was one.
fn take_timed<G>(
    try_take: impl FnOnce() -> Option<G>,
    take: impl FnOnce() -> G,
) -> (G, Option<u64>) {
    if let Some(guard) = try_take() {
        return (guard, None);
    }
    let started = crate::time::now_ns();
    let guard = take();
    (guard, Some(crate::time::now_ns().saturating_sub(started)))
}

/// Each CPU's lock profile counters.
static LOCK_PROFILE: [LockCounters; cpu::MAX_CPUS] = [const { LockCounters::new() }; cpu::MAX_CPUS];

/// Prints the machine lock's profile summed over the CPUs (debug key `l`,
/// and at the end with `exit-stats`); `reset` zeroes it (`L`).
fn print_lock_profile(reset: bool) {
    let sum = LOCK_PROFILE
        .iter()
        .fold(LockProfile::default(), |sum, c| sum.plus(c.take(reset)));
    let take = |counter: &core::sync::atomic::AtomicU64| {
        if reset {
            counter.swap(0, Ordering::Relaxed)
        } else {
            counter.load(Ordering::Relaxed)
        }
    };
    let (passes, looked_at) = (take(&PASSES), take(&LOOKED_AT));
    let sum = LockProfile {
        peer_sends: PEER_SENDS.iter().map(take).fold(0, u64::saturating_add),
        peer_busy: take(&PEER_BUSY_SENDS),
        ..sum
    };
    let cr4_changes = rxen_x86::svm::host_cr4_changes(reset);
    if !reset {
        for line in sum.lines() {
            printk!("{line}");
        }
        let tenths = looked_at.saturating_mul(10) / passes.max(1);
        printk!(
            "scheduling passes: {passes} looked at {looked_at} domains ({}.{} a pass)",
            tenths / 10,
            tenths % 10
        );
        printk!(
            "host CR4: changed {cr4_changes} times to follow its guests' PSE, PGE, SMEP and SMAP"
        );
    }
}

/// Scheduling passes made, and the domains they looked at (those not quiet,
/// see [`DomainTable`]): printed with the lock profile.
static PASSES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// See [`PASSES`].
static LOOKED_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// Set once the domains exist: every CPU then enters [`run_cpu`].
static STARTED: AtomicBool = AtomicBool::new(false);

/// Builds the boot domains with scheduler `sched` and runs them on every
/// CPU until none is left; never returns.
pub fn start(sched: alloc::boxed::Box<dyn Scheduler>, domains: Vec<BootDomain>) -> ! {
    // Frames the heap grows by later are the hypervisor's, not a leak.
    let baseline_free = crate::memory::free_frame_count() + (crate::heap::grown() / 4096) as u64;
    let mut machine = Machine {
        domains: DomainTable::new(),
        grants: GrantMap::new(),
        sched: spin::Mutex::new(sched),
        boot: BTreeMap::new(),
        rebuilds: Vec::new(),
        baseline_free,
        last_end: None,
        input: InputFocus::new(None),
        exit_stats: rxen_core::cmdline::parse(crate::start::hypervisor_cmdline())
            .0
            .exit_stats,
    };
    printk!("Scheduler: {}", machine.sched.get_mut().name());
    SCHED_ID.store(
        match machine.sched.get_mut().name() {
            "rtds" => rxen_abi::sysctl::XEN_SCHEDULER_RTDS,
            _ => rxen_abi::sysctl::XEN_SCHEDULER_CREDIT,
        },
        Ordering::Relaxed,
    );
    for boot in domains {
        let id = boot.id;
        if machine.build(&boot).is_ok() {
            machine.boot.insert(id, (boot, 0));
        }
    }
    if machine.domains.is_empty() {
        printk!("No domain could be built: halting");
        stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
    }
    // Input goes to dom0 first, or to the first domU without one (as Xen).
    machine.input = InputFocus::new(machine.domains.keys().next().copied());
    machine.announce_input();
    *lock_machine(cpu::current_index()) = Some(machine);
    STARTED.store(true, Ordering::Release);
    // Wake the other CPUs out of their idle HLT.
    kick_all_others();
    run_cpu(cpu::current_index())
}

/// The scheduler's `XEN_SCHEDULER_*` id (`sysctl sched_id`), set at start.
static SCHED_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The control domain created or destroyed a domain, or gave one vCPUs:
/// the next scheduling pass ends, adopts or extends it (and only then walks
/// the domains for it, not at every exit).
static CONTROL_CHANGED: AtomicBool = AtomicBool::new(false);

/// Asks the next scheduling pass to act on a control-domain change.
pub fn note_control_change() {
    CONTROL_CHANGED.store(true, Ordering::Release);
}

/// The running scheduler's `XEN_SCHEDULER_*` id.
pub fn sched_id() -> u32 {
    SCHED_ID.load(Ordering::Relaxed)
}

/// Whether the domains exist (the other CPUs then call [`run_cpu`]).
pub fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Set when another CPU wants this one to make a scheduling pass (it may
/// not go straight back into its guest), or the exit it serves reached
/// beyond its domain ([`need_pass_here`]). Set and cleared under the
/// machine lock (a pass clears it before it chooses, since that choice
/// answers every request made so far); the fast return consumes it too.
static NEED_RESCHED: [core::sync::atomic::AtomicBool; cpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; cpu::MAX_CPUS];

/// Per CPU: when its timer fires at the latest (the `armed_until` of its last
/// pass, published under the machine lock held exclusively; 0 before its first
/// pass, which looks at everything). Each CPU arms its timer only for the
/// timers of the vCPUs it runs or last ran (`Vcpu::processor`; a domain's
/// watchdogs go with its vCPU 0), as Xen keeps a vCPU's timers on its
/// processor: a timer that comes due before its CPU looks again has that CPU
/// kicked ([`kick_timer_owners`]).
static ARMED_UNTIL: [core::sync::atomic::AtomicU64; cpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; cpu::MAX_CPUS];

/// Kicks each CPU that owns a timer of `domain` ([`ARMED_UNTIL`]) due before
/// that CPU's timer fires, so that it arms its timer again (this CPU's kick is
/// its own flag: the pass comes next). Called where a domain's timers may have
/// moved earlier while its CPUs are elsewhere: after an exit that reached it,
/// before an exit goes straight back, and for every domain a pass looks at (which
/// passes `skip`: the CPU arming its own timer right then).
pub fn kick_timer_owners(domain: &HvmDomain, skip: Option<usize>) {
    for (owner, due) in timer_dues(domain) {
        if Some(owner as usize) != skip {
            kick_if_late(owner, due);
        }
    }
}

/// Each vCPU of `domain` with a timer: the CPU that owns it
/// (`Vcpu::processor`) and its earliest timer (vCPU 0's with the domain's
/// watchdogs).
fn timer_dues(domain: &HvmDomain) -> impl Iterator<Item = (u32, u64)> + '_ {
    domain
        .core
        .vcpus
        .iter()
        .enumerate()
        .filter_map(|(w, state)| {
            let watchdog = if w == 0 {
                exits::next_watchdog(domain)
            } else {
                None
            };
            let due = [state.next_deadline(), watchdog]
                .into_iter()
                .flatten()
                .min()?;
            Some((state.processor, due))
        })
}

/// Kicks CPU `owner` if a timer it owns is due (`due`) before its timer fires
/// ([`ARMED_UNTIL`]).
fn kick_if_late(owner: u32, due: u64) {
    let owner = owner as usize;
    if ARMED_UNTIL
        .get(owner)
        .is_some_and(|armed| due < armed.load(Ordering::Acquire))
    {
        kick(owner);
    }
}

/// Asks CPU `cpu_index` for a scheduling pass: its flag now, its kick IPI
/// when this CPU lets the machine go ([`send_kicks`]), so that the CPU
/// woken does not spin for the lock this one still holds (and this one
/// does not send IPIs while others wait for it).
fn kick(cpu_index: usize) {
    if let Some(flag) = NEED_RESCHED.get(cpu_index) {
        flag.store(true, Ordering::Release);
    }
    let me = cpu::current_index();
    if cpu_index == me || cpu_index >= cpu::MAX_CPUS {
        return;
    }
    if let Some(pending) = KICKS.get(me) {
        pending.fetch_or(1 << cpu_index, Ordering::Relaxed);
    }
}

/// Per CPU: the CPUs it kicked while it held the machine (a bit each).
static KICKS: [core::sync::atomic::AtomicU64; cpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; cpu::MAX_CPUS];

/// Sends the kick IPIs CPU `cpu_index` (this one) raised while it held the
/// machine (call after letting it go, before entering a guest or idling).
fn send_kicks(cpu_index: usize) {
    let Some(pending) = KICKS.get(cpu_index) else {
        return;
    };
    // A plain read first: most calls (every exit) find nothing.
    if pending.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut mask = pending.swap(0, Ordering::Relaxed);
    for (index, apic_id) in cpu::online_apic_ids() {
        if index < cpu::MAX_CPUS && mask & (1 << index) != 0 {
            mask &= !(1 << index);
            apic::send_ipi(apic_id, apic::ICR_KICK);
        }
    }
}

fn kick_all_others() {
    let me = cpu::current_index();
    for (index, apic_id) in cpu::online_apic_ids() {
        if index != me {
            apic::send_ipi(apic_id, apic::ICR_KICK);
        }
    }
}

/// Debug keys the control domain pressed (`XEN_SYSCTL_debug_keys`), not
/// served yet; at most [`MAX_PRESSED_KEYS`] wait.
static PRESSED_KEYS: spin::Mutex<alloc::collections::VecDeque<u8>> =
    spin::Mutex::new(alloc::collections::VecDeque::new());
/// Most keys waiting to be served (more are refused with `-EBUSY`).
const MAX_PRESSED_KEYS: usize = 256;
/// Most pressed keys one scheduling pass serves (each may walk every domain).
const KEYS_PER_PASS: usize = 8;
/// Whether [`PRESSED_KEYS`] may hold keys (a pass looks at the queue only then).
static KEYS_PRESSED: AtomicBool = AtomicBool::new(false);

/// Queues `keys` to be served as debug keys on this CPU's next scheduling
/// pass (Xen runs most key handlers from a tasklet, after the sysctl too).
pub fn press_keys(keys: &[u8]) -> Result<(), rxen_abi::errno::Errno> {
    let mut queue = PRESSED_KEYS.lock();
    if queue.len().saturating_add(keys.len()) > MAX_PRESSED_KEYS {
        return Err(rxen_abi::errno::EBUSY);
    }
    queue.extend(keys.iter().copied());
    KEYS_PRESSED.store(!queue.is_empty(), Ordering::Release);
    drop(queue);
    need_pass_here();
    Ok(())
}

/// Up to [`KEYS_PER_PASS`] pressed keys to serve now (the rest wait for the
/// next pass, which this CPU is asked for).
fn take_pressed_keys() -> alloc::vec::Vec<u8> {
    if !KEYS_PRESSED.load(Ordering::Acquire) {
        return alloc::vec::Vec::new();
    }
    let mut queue = PRESSED_KEYS.lock();
    let n = queue.len().min(KEYS_PER_PASS);
    let keys = queue.drain(..n).collect();
    KEYS_PRESSED.store(!queue.is_empty(), Ordering::Release);
    if !queue.is_empty() {
        need_pass_here();
    }
    keys
}

/// Asks this CPU for a scheduling pass after the exit it serves: the exit
/// reached beyond its own domain (another domain, the grant tables, the
/// scheduler), so it may have woken, paused, re-timed or notified a vCPU
/// that the pass must see.
pub fn need_pass_here() {
    if let Some(flag) = NEED_RESCHED.get(cpu::current_index()) {
        flag.store(true, Ordering::Release);
    }
}

/// Per CPU: event sends it served with the machine held shared (the lock
/// profile's; beside [`LOCK_PROFILE`], whose counters stay one cache line).
static PEER_SENDS: [AtomicU64; cpu::MAX_CPUS] = [const { AtomicU64::new(0) }; cpu::MAX_CPUS];
/// Event sends that found their peer taken (rare: one counter for all CPUs).
static PEER_BUSY_SENDS: AtomicU64 = AtomicU64::new(0);

/// Whether vCPU `v` of `domain` can run: the domain alive, not shut down
/// or paused, the vCPU up and not blocked.
fn vcpu_runnable(domain: &HvmDomain, v: usize) -> bool {
    let state = &domain.core.vcpus[v];
    domain.dying.is_none()
        && domain.core.shutdown.is_none()
        && domain.core.controller_pause_count == 0
        && state.up
        && state.blocked.is_none()
}

/// The runstate vCPU `v` of `domain` is in, as the scheduling pass sets it.
fn runstate_of(domain: &HvmDomain, v: usize) -> RunstateKind {
    let state = &domain.core.vcpus[v];
    if domain.running_on[v].is_some() {
        RunstateKind::Running
    } else if !state.up || domain.dying.is_some() {
        RunstateKind::Offline
    } else if state.blocked.is_some() {
        RunstateKind::Blocked
    } else {
        RunstateKind::Runnable
    }
}

/// Whether the exit vCPU `v` just took left the domain's other vCPUs as
/// the last scheduling pass saw them: none woken, blocked, taken up or down
/// or given a state to load (IPIs, events within the domain, VCPUOP_up).
/// A sibling running on another CPU with a kick due (`exits::kick_due`) is
/// kicked there. Otherwise the full pass runs.
fn siblings_settled(domain: &mut HvmDomain, v: usize) -> bool {
    settle(domain, Some(v), None)
}

/// Brings the scheduler up to date with `domain` (`id`), which an exit of
/// another domain just reached (an event, a domctl), without a scheduling
/// pass where that is all it needs: a vCPU it woke is made runnable at once
/// and the pCPU the scheduler names is kicked (this one only when the woken
/// vCPU should preempt what runs here), and a vCPU running on another CPU
/// with a kick due is kicked there. Returns whether the domain is then as
/// the last pass saw it; anything else it changed (a vCPU blocked, paused,
/// taken down or given a state to load) needs this CPU's pass.
pub fn settle_lent(sched: &mut dyn Scheduler, id: DomId, domain: &mut HvmDomain, now: u64) -> bool {
    settle(domain, None, Some((sched, id, now)))
}

/// Whether the vCPUs of `domain` (all but `except`) are as the last pass saw
/// them, after kicking those running on another CPU with a kick due and,
/// given the scheduler (`wake`: it, the domain's id and the time), telling
/// it of the vCPUs that became runnable ([`siblings_settled`],
/// [`settle_lent`]).
fn settle(
    domain: &mut HvmDomain,
    except: Option<usize>,
    mut wake: Option<(&mut dyn Scheduler, DomId, u64)>,
) -> bool {
    let me = cpu::current_index();
    for w in 0..domain.vcpus.len() {
        if Some(w) == except {
            continue;
        }
        if domain.core.vcpus[w].pending_context.is_some() {
            return false;
        }
        let runnable = vcpu_runnable(domain, w);
        if runnable != domain.sched_runnable[w] {
            let Some((sched, id, now)) = wake.as_mut().filter(|_| runnable) else {
                return false;
            };
            domain.sched_runnable[w] = true;
            let r = VcpuRef {
                domain: *id,
                vcpu: w as u32,
            };
            if let Some(cpu_index) = sched.wake(r, *now) {
                kick(cpu_index);
            }
            let state = runstate_of(domain, w);
            rxen_core::hypercall::set_runstate(&mut domain.core, w, state, *now);
        }
        if runstate_of(domain, w) != domain.core.vcpus[w].runstate.state {
            return false;
        }
        if let Some(other) = domain.running_on[w].filter(|&c| c != me) {
            if exits::kick_due(domain, w) {
                domain.core.vcpus[w].kick = false;
                kick(other);
            }
        }
    }
    true
}

/// What a pass may record of `domain` so that the next passes need not look
/// at it ([`hvm::Quiet`]), if it has nothing for the scheduler: not ending or
/// destroyed, not waiting to be adopted, none of its vCPUs on a CPU or
/// waiting for a context, and the scheduler told which are runnable (this
/// pass's `sync_runnable`). None otherwise.
fn quiet_summary(domain: &HvmDomain, timers: &TimerScan) -> Option<hvm::Quiet> {
    let still = domain.dying.is_none()
        && !domain.core.destroy_requested
        && domain.to_adopt.is_none()
        && domain.sched_vcpus == domain.vcpus.len()
        && domain.running_on.iter().all(Option::is_none)
        && (0..domain.vcpus.len()).all(|v| {
            domain.core.vcpus[v].pending_context.is_none()
                && domain.sched_runnable.get(v) == Some(&vcpu_runnable(domain, v))
                && domain.core.vcpus[v].runstate.state == runstate_of(domain, v)
        });
    still.then_some(hvm::Quiet {
        next_due: timers.next_due,
        owner: timers.owner,
    })
}

/// What one look at a domain's timers found ([`scan_timers`]).
struct TimerScan {
    /// The earliest timer CPU `cpu` owns.
    mine: Option<u64>,
    /// The earliest of all ([`exits::next_due`]).
    next_due: Option<u64>,
    /// The CPU that owns every timer, or None if several do (or none).
    owner: Option<u32>,
}

/// One look at `domain`'s timers for a pass on CPU `cpu` (those it owns, as Xen
/// keeps a vCPU's timers on its processor, the earliest of all as
/// [`exits::next_due`], and who owns them), kicking as [`kick_timer_owners`]
/// (`cpu` itself excepted) each other owner of a timer due before it looks again.
fn scan_timers(domain: &HvmDomain, cpu: usize) -> TimerScan {
    let mut scan = TimerScan {
        mine: None,
        next_due: None,
        owner: None,
    };
    for (n, (owner, due)) in timer_dues(domain).enumerate() {
        if owner as usize == cpu {
            scan.mine = Some(scan.mine.map_or(due, |m| m.min(due)));
        } else {
            kick_if_late(owner, due);
        }
        scan.next_due = Some(scan.next_due.map_or(due, |m| m.min(due)));
        // One owner while every timer so far had it.
        scan.owner = (n == 0 || scan.owner == Some(owner)).then_some(owner);
    }
    scan
}

/// Serves the exit vCPU `v` of `domain` took (`world` the rest of the
/// machine, None for a local exit) and counts it in the domain's exit
/// profile; returns what the exit asks of the scheduler and its exit code.
fn serve(domain: &mut HvmDomain, v: usize, world: exits::Others) -> (Flow, u64) {
    use rxen_x86::svm::vmcb::{control, exit, save};
    let vmcb = &domain.vcpus[v].vmcb;
    let code = vmcb.read64(control::EXIT_CODE);
    // The hypercall number, before the handler puts its result in RAX.
    let hypercall = (code == exit::VMMCALL).then(|| vmcb.read64(save::RAX));
    // The port of a port I/O exit (EXITINFO1 bits 31:16).
    let port = (code == exit::IOIO).then(|| (vmcb.read64(control::EXIT_INFO1) >> 16) as u16);
    let started = crate::time::now_ns();
    let flow = exits::handle_exit(domain, v, world);
    let took = crate::time::now_ns().saturating_sub(started);
    if matches!(flow, Flow::Retry) {
        // Not served (its peer was taken): served again, and counted, with
        // the machine held exclusively.
        return (flow, code);
    }
    domain
        .exit_stats
        .record(rxen_x86::svm::exit::reason(code), took);
    if let Some(nr) = hypercall {
        domain.exit_stats.record_hypercall(nr, took);
    }
    if let Some(port) = port {
        domain.exit_stats.record_port(port, took);
    }
    (flow, code)
}

fn reason_text(reason: ShutdownReason) -> String {
    match reason {
        ShutdownReason::Other(code) => alloc::format!("unknown reason {code}"),
        other => String::from(other.name()),
    }
}

impl Machine {
    /// Builds boot domain `boot` and hands its vCPUs to the scheduler.
    fn build(&mut self, boot: &BootDomain) -> Result<(), CreateError> {
        let created = hvm::create(boot.id, &boot.spec);
        self.install(boot, created)
    }

    /// Hands a domain built from `boot` (or the reason it could not be
    /// built) to the machine: the domain table, the scheduler, a grant table.
    fn install(
        &mut self,
        boot: &BootDomain,
        created: Result<HvmDomain, CreateError>,
    ) -> Result<(), CreateError> {
        let id = boot.id;
        let domain = match created {
            Ok(domain) => domain,
            Err(why) => {
                printk!("d{id}: cannot build the domain: {why}");
                self.last_end = Some(ShutdownReason::Crash);
                return Err(why);
            }
        };
        if let Err(e) = self.sched.get_mut().add_domain(id, boot.params) {
            printk!(
                "d{id}: scheduling parameters refused ({e:?}): using the defaults of {}",
                self.sched.get_mut().name()
            );
            let _ = self.sched.get_mut().add_domain(id, SchedParams::default());
        }
        let now = crate::time::now_ns();
        for v in 0..domain.vcpus.len() {
            let r = VcpuRef {
                domain: id,
                vcpu: v as u32,
            };
            self.sched.get_mut().add_vcpu(r, now);
            let cpus = if boot.pin_each {
                Some(rxen_core::sched::CpuMask::single(v))
            } else {
                boot.cpus
            };
            if let Some(cpus) = cpus {
                if self
                    .sched
                    .get_mut()
                    .set_affinity(r, Some(cpus), None)
                    .is_err()
                {
                    printk!("d{id}v{v}: pinned to no CPU of this machine: it runs anywhere");
                }
            }
        }
        self.domains.insert(id, alloc::boxed::Box::new(domain));
        self.add_grant_table(id, None, None);
        Ok(())
    }

    /// Gives domain `id` a grant table: the command line's limits (Xen's
    /// defaults for domains whose toolstack sets none) unless given.
    fn add_grant_table(&mut self, id: DomId, frames: Option<u32>, maptrack: Option<u32>) {
        let (options, _) = rxen_core::cmdline::parse(crate::start::hypervisor_cmdline());
        let table = rxen_core::grant_table::GrantTable::new(
            id,
            frames.unwrap_or(options.gnttab_max_frames),
            maptrack.unwrap_or(options.gnttab_max_maptrack_frames),
            &mut Platform::new(None, &mut self.domains),
        );
        match table {
            Ok(table) => {
                self.grants.insert(id, table);
            }
            // The domain runs without grant tables (its grant calls answer
            // -ENOSYS).
            Err(e) => printk!("d{id}: no grant table ({e:?})"),
        }
    }

    /// Hands the domains the control domain created, and the vCPUs
    /// `max_vcpus` gave them, to the scheduler (and a new domain a grant
    /// table).
    fn adopt_created(&mut self, now: u64) {
        let pending: Vec<DomId> = self
            .domains
            .iter()
            .filter(|(_, d)| d.to_adopt.is_some() || d.sched_vcpus < d.vcpus.len())
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            let Some(domain) = self.domains.get_mut(&id) else {
                continue;
            };
            let config = domain.to_adopt.take();
            let (known, total) = (domain.sched_vcpus, domain.vcpus.len());
            domain.sched_vcpus = total;
            if let Some(config) = config {
                if let Err(e) = self.sched.get_mut().add_domain(id, SchedParams::default()) {
                    printk!("d{id}: the scheduler refused the domain ({e:?})");
                }
                self.add_grant_table(id, config.max_grant_frames, config.max_maptrack_frames);
            }
            for v in known..total {
                self.sched.get_mut().add_vcpu(
                    VcpuRef {
                        domain: id,
                        vcpu: v as u32,
                    },
                    now,
                );
            }
        }
    }

    /// Serves the exit vCPU `r` took on this CPU, and counts it in the
    /// domain's exit profile.
    /// Returns whether the vCPU may go straight back into the guest without
    /// a scheduling pass, as far as the kind of exit can tell: one of
    /// [`exits::FAST_EXITS`] that asks nothing of the scheduler itself
    /// (served here, not already by [`serve_local`]). What it did to the
    /// machine the caller checks with [`straight_back`].
    fn serve_exit(&mut self, r: VcpuRef, served: Option<Flow>) -> bool {
        let v = r.vcpu as usize;
        let Some(mut domain) = self.domains.take_out(&r.domain) else {
            return false;
        };
        domain.running_on[v] = None;
        let mut fast = false;
        if domain.dying.is_none() {
            // An exit served already without the machine lock held
            // exclusively ([`serve_local`]) only needs its outcome here.
            let flow = match served {
                Some(flow) => flow,
                None => {
                    let world = World {
                        domains: &mut self.domains,
                        grants: &mut self.grants,
                        sched: &mut **self.sched.get_mut(),
                    };
                    let (flow, code) = serve(&mut domain, v, exits::Others::Machine(world));
                    fast = matches!(flow, Flow::Continue) && exits::FAST_EXITS.contains(&code);
                    flow
                }
            };
            match flow {
                // Retry: only a send served shared (never here); the guest
                // would make the call again.
                Flow::Continue | Flow::Retry => {}
                Flow::Yield => self.sched.get_mut().yield_now(r, crate::time::now_ns()),
                Flow::End(reason) => self.end_domain(&mut domain, reason),
            }
        }
        self.domains.put_back(r.domain, domain);
        fast
    }

    /// Marks `domain` as ending: its vCPUs stop being scheduled, and the
    /// CPUs running them are kicked out.
    fn end_domain(&mut self, domain: &mut HvmDomain, reason: ShutdownReason) {
        let reason = exits::end(domain, reason);
        if domain.toolstack && !domain.core.destroy_requested {
            // Xen: the toolstack sees the shutdown (VIRQ_DOM_EXC, then
            // getdomaininfo's flags and code) and destroys the domain; its
            // vCPUs run no more (`sync_runnable`), its memory stays until then.
            printk!(
                "d{}: shut down ({}); kept for its toolstack to destroy",
                domain.core.id,
                reason_text(reason)
            );
            for cpu_index in domain.running_on.iter().flatten() {
                kick(*cpu_index);
            }
            self.send_dom_exc();
            return;
        }
        domain.dying = Some(reason);
        for cpu_index in domain.running_on.iter().flatten() {
            kick(*cpu_index);
        }
        self.send_dom_exc();
    }

    /// Raises VIRQ_DOM_EXC in dom0, as Xen does when a domain shuts down or
    /// is destroyed (the toolstack then looks at which one).
    fn send_dom_exc(&mut self) {
        self.raise_global_virq(rxen_abi::xen::VIRQ_DOM_EXC);
    }

    /// Raises the global VIRQ `virq` in dom0, on the vCPU it bound it to;
    /// without dom0 (or while dom0 itself is served) nobody gets it.
    fn raise_global_virq(&mut self, virq: u32) {
        self.with_domain(0, |core, env| {
            let bound =
                (0..core.vcpus.len()).find(|&v| core.events.virq_port(virq, v as u32).is_some());
            if let Some(v) = bound {
                rxen_core::hypercall::raise_virq(core, v, virq, env);
            }
        });
    }

    /// Runs `f` on live domain `id` with an environment over the machine
    /// (nothing if there is no such domain, or it is being served).
    fn with_domain(
        &mut self,
        id: DomId,
        f: impl FnOnce(&mut rxen_core::domain::Domain, &mut crate::hvm::env::Env),
    ) {
        let Some(mut domain) = self.domains.take_out(&id) else {
            return;
        };
        if domain.dying.is_none() {
            let world = World {
                domains: &mut self.domains,
                grants: &mut self.grants,
                sched: &mut **self.sched.get_mut(),
            };
            exits::with_domain_env(&mut domain, world, f);
        }
        self.domains.put_back(id, domain);
    }

    /// Says where serial input goes now.
    fn announce_input(&self) {
        match self.input.domain {
            None => printk!("*** Serial input to rxen (type 'CTRL-a' three times to switch input)"),
            Some(id) => {
                printk!("*** Serial input to d{id} (type 'CTRL-a' three times to switch input)")
            }
        }
    }

    /// Takes what was typed on the serial console: switches the input, or
    /// hands the bytes to the domain that has it.
    fn take_console_input(&mut self) {
        while let Some(byte) = rxen_x86::console::try_read_byte() {
            match self.input.typed(byte) {
                Typed::Nothing => {}
                Typed::Byte(None, byte) => self.debug_key(byte),
                Typed::Switch => {
                    let ids: Vec<DomId> = self
                        .domains
                        .iter()
                        .filter(|(_, d)| d.dying.is_none())
                        .map(|(id, _)| *id)
                        .collect();
                    self.input.switch(&ids);
                    self.announce_input();
                }
                Typed::Byte(Some(id), byte) => self.console_input_to(id, byte),
            }
        }
    }

    /// A key typed while rxen has the input: a debug key (Xen's keyhandlers)
    /// or nothing.
    fn debug_key(&mut self, byte: u8) {
        match DebugKey::from_byte(byte) {
            Some(DebugKey::Help) => {
                printk!("'h' pressed -> showing installed handlers");
                for (key, _, what) in DebugKey::ALL {
                    printk!(" key '{}' (ascii '{key:02x}') => {what}", key as char);
                }
            }
            Some(DebugKey::ExitStats) => {
                printk!("'p' pressed -> dumping exit counters");
                for domain in self.domains.values() {
                    domain.print_exit_stats();
                }
            }
            Some(DebugKey::ResetExitStats) => {
                printk!("'P' pressed -> resetting exit counters");
                for domain in self.domains.values_mut() {
                    domain.exit_stats.reset();
                }
            }
            Some(DebugKey::GrantTables) => {
                printk!("'g' pressed -> dumping grant table info");
                for (id, table) in &self.grants {
                    printk!("d{id}: {}", table.usage());
                }
            }
            Some(DebugKey::LockProfile) => {
                printk!("'l' pressed -> dumping lock profile info");
                print_lock_profile(false);
            }
            Some(DebugKey::ResetLockProfile) => {
                printk!("'L' pressed -> resetting lock profile info");
                print_lock_profile(true);
            }
            Some(DebugKey::EventChannels) => {
                printk!("'e' pressed -> dumping event-channel info");
                for (id, domain) in self.domains.iter() {
                    printk!("d{id}: {}", domain.core.events.usage());
                }
            }
            None => {}
        }
    }

    /// One typed byte for domain `id`: into its PV console ring (a domU) or
    /// dom0's CONSOLEIO_read queue, and a notification.
    fn console_input_to(&mut self, id: DomId, byte: u8) {
        let Some(domain) = self.domains.get_mut(&id) else {
            return;
        };
        if let Some(page) = domain.memory.console_page() {
            if rxen_core::console_ring::put_input(page, byte) {
                self.with_domain(id, |core, env| {
                    rxen_core::hypercall::notify_console(core, env)
                });
            }
        } else if domain.core.privileged {
            crate::console_input::push_dom0(byte);
            self.raise_global_virq(rxen_abi::xen::VIRQ_CONSOLE);
        }
    }

    /// Delivers the device interrupts that arrived on any CPU: to the
    /// domain whose MSI holds the vector, or on dom0's IO-APIC pin of the
    /// GSI bound to it (an interrupt on a vector just unbound is dropped).
    /// Returns whether any was delivered.
    fn route_device_interrupts(&mut self) -> bool {
        if !rxen_x86::irq::any_pending() {
            return false;
        }
        let mut delivered = false;
        let domains = &mut self.domains;
        // Found by reading, then reached mutably: only the domain that gets
        // the interrupt is looked at again by the next pass.
        rxen_x86::irq::take_pending(|vector| {
            let target = domains.iter().find_map(|(id, d)| {
                let (_, message) = d.pci.as_ref()?.binding(vector)?;
                Some((*id, message))
            });
            if let Some((id, message)) = target {
                if let Some(domain) = domains.get_mut(&id) {
                    hvm::vpci::deliver(domain, message);
                    delivered = true;
                }
                return;
            }
            // A GSI bound to dom0: asserted on its emulated IO-APIC pin (and
            // let go at once: a level line's host pin stays masked until
            // dom0's EOI, and fires again then if still asserted).
            let Some(gsi) = crate::gsi::gsi_of(vector) else {
                return;
            };
            let Some(id) = domains
                .iter()
                .find(|(_, d)| d.vioapics.is_some())
                .map(|(id, _)| *id)
            else {
                return;
            };
            let Some(domain) = domains.get_mut(&id) else {
                return;
            };
            let Some(apics) = domain.vioapics.as_mut() else {
                return;
            };
            let action = apics.assert_gsi(gsi);
            apics.deassert_gsi(gsi);
            if let Some(action) = action {
                hvm::vlapic::deliver_ioapic(domain, action);
                delivered = true;
            }
        });
        delivered
    }

    /// Kicks the CPUs running a vCPU with a kick due (`exits::kick_due`: an
    /// upcall raised since it entered its guest, or a deliverable APIC
    /// interrupt; an event or IPI from this CPU), so that they inject it now.
    fn kick_running_with_upcalls(&mut self) {
        let me = cpu::current_index();
        // A quiet domain has no vCPU on a CPU.
        for i in 0..self.domains.active().len() {
            let id = self.domains.active()[i];
            let Some(domain) = self.domains.get_mut(&id) else {
                continue;
            };
            for v in 0..domain.vcpus.len() {
                let Some(cpu_index) = domain.running_on[v].filter(|&c| c != me) else {
                    continue;
                };
                if exits::kick_due(domain, v) {
                    domain.core.vcpus[v].kick = false;
                    kick(cpu_index);
                }
            }
        }
    }

    /// Fires the due timers of every live domain.
    fn expire_timers(&mut self, now: u64) {
        // Most passes find nothing due: no domain moved. A quiet domain's
        // earliest timer is known without looking at it. The list is the
        // table's own (no allocation).
        let mut due = self.domains.lend_list();
        let domains = &self.domains;
        let active = domains.active().iter().filter(|id| {
            domains
                .get(id)
                .is_some_and(|d| d.dying.is_none() && exits::next_due(d).is_some_and(|t| t <= now))
        });
        let quiet = domains
            .quiet_timers()
            .iter()
            .filter(|(_, q)| q.next_due.is_some_and(|t| t <= now))
            .map(|(id, _)| id);
        due.extend(active.chain(quiet).copied());
        for &id in &due {
            let Some(mut domain) = self.domains.take_out(&id) else {
                continue;
            };
            if let Some(reason) = exits::expire_timers(&mut domain, now) {
                self.end_domain(&mut domain, reason);
            }
            self.domains.put_back(id, domain);
        }
        self.domains.give_back_list(due);
    }

    /// Ends the domains the control domain destroyed (`XEN_DOMCTL_destroydomain`):
    /// their vCPUs stop now, and the reap tears them down.
    fn end_destroyed(&mut self) {
        let destroyed: Vec<DomId> = self
            .domains
            .iter()
            .filter(|(_, d)| d.core.destroy_requested && d.dying.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in destroyed {
            if let Some(mut domain) = self.domains.take_out(&id) {
                let reason = domain.core.shutdown.unwrap_or(ShutdownReason::Poweroff);
                self.end_domain(&mut domain, reason);
                self.domains.put_back(id, domain);
            }
        }
    }

    /// Tells the scheduler about vCPUs that became runnable or stopped
    /// being runnable, kicks the CPUs it wants to reschedule, and keeps
    /// every vCPU's runstate true.
    fn sync_runnable(&mut self, now: u64) {
        // A quiet domain's vCPUs are as the scheduler knows them.
        PASSES.fetch_add(1, Ordering::Relaxed);
        LOOKED_AT.fetch_add(self.domains.active().len() as u64, Ordering::Relaxed);
        for i in 0..self.domains.active().len() {
            let id = self.domains.active()[i];
            let Some(domain) = self.domains.get_mut(&id) else {
                continue;
            };
            let id = &id;
            for v in 0..domain.vcpus.len() {
                // A state from VCPUOP_initialise goes into the (offline,
                // so not running) vCPU before it can come up.
                if let Some(context) = domain.core.vcpus[v].pending_context.take() {
                    domain.vcpus[v].load_hvm_context(&context);
                }
                let runnable = vcpu_runnable(domain, v);
                let r = VcpuRef {
                    domain: *id,
                    vcpu: v as u32,
                };
                if runnable != domain.sched_runnable[v] {
                    domain.sched_runnable[v] = runnable;
                    if runnable {
                        if let Some(cpu_index) = self.sched.get_mut().wake(r, now) {
                            kick(cpu_index);
                        }
                    } else {
                        self.sched.get_mut().sleep(r, now);
                        // Paused while on a CPU: off it now.
                        if let Some(cpu_index) = domain.running_on[v] {
                            kick(cpu_index);
                        }
                    }
                }
                let runstate = runstate_of(domain, v);
                rxen_core::hypercall::set_runstate(&mut domain.core, v, runstate, now);
            }
        }
    }

    /// The earliest timer CPU `cpu_index` owns ([`ARMED_UNTIL`]), and of the
    /// vCPU `next` it is about to run (it becomes the owner as it enters it);
    /// kicks the CPUs that own a timer due before they look again.
    ///
    /// Then records as quiet each domain it looked at that has nothing for
    /// the scheduler ([`quiet_summary`]): the next passes see only its
    /// timers, until it is reached mutably. The domain of `next` is not: it
    /// is about to run.
    fn earliest_deadline(&mut self, cpu_index: usize, next: Option<VcpuRef>) -> Option<u64> {
        // The quiet domains' timers have not moved since they went quiet:
        // their owners were kicked then if they had to be.
        let quiet = self
            .domains
            .quiet_timers()
            .iter()
            .filter_map(|(_, q)| q.due_on(cpu_index as u32));
        // The vCPU about to run here (its domain may be quiet until then).
        let next_due = next.and_then(|n| {
            let domain = self.domains.get(&n.domain)?;
            domain.core.vcpus.get(n.vcpu as usize)?.next_deadline()
        });
        let mut earliest = quiet.chain(next_due).min();
        // From the last: a domain that goes quiet leaves the list, the last
        // one (already seen) taking its place.
        for i in (0..self.domains.active().len()).rev() {
            let id = self.domains.active()[i];
            let Some(domain) = self.domains.get(&id).filter(|d| d.dying.is_none()) else {
                continue;
            };
            let timers = scan_timers(domain, cpu_index);
            earliest = [earliest, timers.mine].into_iter().flatten().min();
            if next.is_none_or(|n| n.domain != id) {
                if let Some(q) = quiet_summary(domain, &timers) {
                    self.domains.set_quiet(i, q);
                }
            }
        }
        earliest
    }

    /// Destroys every ended domain that no CPU is running any more, and
    /// rebuilds those that rebooted. Stops the machine when none is left.
    fn reap(&mut self) {
        // A quiet domain is not ending.
        let domains = &self.domains;
        let ended: Vec<DomId> = domains
            .active()
            .iter()
            .filter(|id| {
                domains
                    .get(id)
                    .is_some_and(|d| d.dying.is_some() && d.running_on.iter().all(Option::is_none))
            })
            .copied()
            .collect();
        for id in ended {
            let Some(mut domain) = self.domains.take_out(&id) else {
                continue;
            };
            let reason = domain.dying.unwrap_or(ShutdownReason::Crash);
            let destroyed = domain.core.destroy_requested;
            let world = World {
                domains: &mut self.domains,
                grants: &mut self.grants,
                sched: &mut **self.sched.get_mut(),
            };
            exits::with_domain_env(&mut domain, world, |core, env| {
                rxen_core::hypercall::close_interdomain_channels(core, env)
            });
            // Grant mappings both ways go before the memory does: the
            // domain's own mappings of others, and others' of its pages.
            self.domains.put_back(id, domain);
            let mut platform = Platform::new(None, &mut self.domains);
            let torn_down =
                rxen_core::grant_table::release_domain(id, &mut self.grants, &mut platform);
            // No CPU may use a mapping of the domain's frames once they are
            // freed: the mappers' TLBs are flushed first, synchronously.
            let mut flushed = platform.flush_changed();
            // The control domain's foreign maps of its RAM (privcmd) go too.
            let (revoked, all_revoked) = self.revoke_foreign_maps_of(id);
            flushed &= all_revoked;
            if revoked > 0 {
                printk!("d{id}: {revoked} foreign mappings of its memory removed");
            }
            self.grants.remove(&id);
            let Some(domain) = self.domains.remove(&id) else {
                continue;
            };
            if self.exit_stats {
                domain.print_exit_stats();
            }
            if torn_down > 0 {
                printk!("d{id}: {torn_down} grant mappings torn down");
            }
            self.sched.get_mut().remove_domain(id);
            let frames = domain.memory.frames_in_use() as u64;
            let free_before = crate::memory::free_frame_count();
            if flushed {
                drop(domain);
            } else {
                // A CPU did not acknowledge the flush (it stopped?): never
                // free a frame it may still reach. The memory is lost.
                printk!("d{id}: memory kept (not freed): a TLB flush was not acknowledged");
                core::mem::forget(domain);
            }
            let returned = crate::memory::free_frame_count().saturating_sub(free_before);
            // Alone, the whole machine can be checked: everything since
            // the first build must be back. Otherwise the domain's own count.
            let leaked = if self.domains.is_empty() {
                self.baseline_free.saturating_sub(
                    crate::memory::free_frame_count() + (crate::heap::grown() / 4096) as u64,
                )
            } else {
                frames.saturating_sub(returned)
            };
            let how = if destroyed {
                String::from("destroyed by the control domain")
            } else {
                alloc::format!("shut down ({})", reason_text(reason))
            };
            printk!("d{id}: {how}; {frames} frames returned, {leaked} frames not returned");
            self.last_end = Some(reason);
            self.send_dom_exc();
            if reason == ShutdownReason::Reboot && !destroyed {
                self.reboot(id);
            } else if id == 0 && !destroyed && !self.domains.is_empty() {
                // Xen's hwdom_shutdown: the machine ends with its hardware
                // domain, whatever domUs still run ("Hardware Dom0 halted").
                printk!(
                    "d0, the hardware domain, ended ({}): stopping the machine with it, as Xen does",
                    reason_text(reason)
                );
                // Nothing is freed: the other CPUs may still be in their
                // guests; the machine stops under them.
                if self.exit_stats {
                    print_lock_profile(false);
                }
                match reason {
                    ShutdownReason::Poweroff => stop::machine_stop(),
                    _ => stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED),
                }
            }
        }
        if self.domains.is_empty() && self.rebuilds.is_empty() {
            if self.exit_stats {
                print_lock_profile(false);
            }
            printk!("No domain left: halting");
            match self.last_end {
                Some(ShutdownReason::Poweroff) => stop::machine_stop(),
                _ => stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED),
            }
        }
    }

    /// Removes every other domain's `XENMAPSPACE_gmfn_foreign` mapping of
    /// domain `id`'s RAM and flushes those domains' TLBs. Returns how many
    /// went, and false if one could not be removed or flushed (the frames
    /// must then never be freed).
    fn revoke_foreign_maps_of(&mut self, id: DomId) -> (usize, bool) {
        let Some(runs) = self.domains.get(&id).map(|d| d.memory.host_runs()) else {
            return (0, true);
        };
        let Ok(runs) = runs else {
            // No heap for the list: keep the frames rather than guess.
            return (0, false);
        };
        let (mut revoked, mut all) = (0, true);
        for (&other, domain) in self.domains.iter_mut() {
            if other == id {
                continue;
            }
            let n = match domain.memory.revoke_foreign_gmfn(&runs) {
                Ok(n) => n,
                Err(n) => {
                    all = false;
                    n
                }
            };
            if n > 0 {
                revoked += n;
                all &= crate::hvm::tlb::flush_domain(other, &mut domain.vcpus, &domain.running_on);
            }
        }
        (revoked, all)
    }

    fn reboot(&mut self, id: DomId) {
        let Some((boot, mut reboots)) = self.boot.remove(&id) else {
            return;
        };
        if reboots >= MAX_REBOOTS {
            printk!("d{id}: rebooted {MAX_REBOOTS} times in a row: giving up");
            self.last_end = Some(ShutdownReason::Crash);
            return;
        }
        reboots += 1;
        printk!("d{id}: rebooting (reboot {reboots})");
        self.rebuilds.push((boot, reboots));
    }

    /// Saves the FPU state of vCPU `owner`, which is in this CPU's registers.
    fn save_fpu(&mut self, owner: VcpuRef) {
        if let Some(domain) = self.domains.get_mut(&owner.domain) {
            let vcpu = &mut domain.vcpus[owner.vcpu as usize];
            let xcr0 = vcpu.xcr0;
            vcpu.fpu.save(xcr0);
        }
    }

    /// Installs a domain rebuilt outside the lock; stops the machine if it
    /// could not be built and nothing else is left.
    fn finish_rebuild(
        &mut self,
        boot: BootDomain,
        reboots: u32,
        created: Result<HvmDomain, CreateError>,
    ) {
        if self.install(&boot, created).is_ok() {
            self.boot.insert(boot.id, (boot, reboots));
        }
        if self.domains.is_empty() && self.rebuilds.is_empty() {
            printk!("No domain left: halting");
            stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED);
        }
    }
}

/// Arms this CPU's timer for `deadline` (at most the housekeeping interval
/// away, at least 1 µs).
fn arm_timer(cpu_index: usize, deadline: Option<u64>, now: u64) {
    // Console output waiting for the UART is drained on the next pass.
    let limit = if rxen_x86::console::pending() {
        CONSOLE_DRAIN_NS
    } else {
        HOUSEKEEPING_NS
    };
    let delta = deadline
        .map(|d| d.saturating_sub(now))
        .unwrap_or(HOUSEKEEPING_NS)
        .clamp(1_000, limit);
    apic::arm_oneshot_ns(cpu_index, delta);
}

/// Times the scheduler offered a vCPU that another CPU was running.
static DOUBLE_PICKS: rxen_core::log::RateLimit = rxen_core::log::RateLimit::new();

/// The vCPU a CPU runs, as that CPU reaches it for a local exit without
/// looking its domain up ([`serve_local`]).
struct Claimed {
    /// The vCPU's SVM state.
    vcpu: *mut hvm::vcpu::SvmVcpu,
    /// Its domain.
    domain: *mut HvmDomain,
    /// The domain's exit lock.
    exit_lock: alloc::sync::Arc<spin::Mutex<()>>,
}

/// Makes vCPU `v` of `domain` this CPU's to run (under the machine lock
/// held exclusively, or for a local exit its shared hold and the domain's
/// exit lock): marks it running here and queues its pending upcall. The
/// pointers stay valid after the locks are dropped: the domain is boxed in
/// the table and is destroyed only once `running_on` of all its vCPUs is
/// None, which for `v` this CPU sets only when it serves an exit with the
/// machine held exclusively; the scheduling loop never enters a vCPU
/// another CPU runs. The vCPU's VMCB and registers are this CPU's alone
/// until then (other CPUs only set flags in the core state, under the
/// locks). The domain is reached through `domain` only for a local exit
/// ([`serve_local`]), with the machine held shared (so no CPU holds it
/// exclusively, and no other CPU serves an exit of another domain that could
/// reach this one) and the domain's exit lock (so no other CPU serves an
/// exit of this domain).
fn claim(domain: &mut HvmDomain, v: usize, cpu_index: usize) -> Claimed {
    domain.running_on[v] = Some(cpu_index);
    domain.core.vcpus[v].processor = cpu_index as u32;
    exits::inject_upcall(domain, v);
    Claimed {
        vcpu: &mut domain.vcpus[v],
        exit_lock: domain.exit_lock.clone(),
        domain,
    }
}

/// Whether vCPU `v` of `domain`, whose exit CPU `cpu_index` just served
/// (one of [`exits::FAST_EXITS`], asking nothing of the scheduler itself),
/// goes straight back into its guest without a scheduling pass: neither
/// another CPU nor the exit (it reached another domain) asked this CPU for
/// one (the request is taken), no control change or device interrupt waits,
/// the slice and the armed timer (`armed_until`) are not over and this CPU's
/// timer has not fired (one kept from an earlier pass may fire before
/// `armed_until`, see [`apic::arm_oneshot_ns`]), no timer of the domain is
/// due before the CPU that owns it looks again (that CPU is kicked, this one
/// included: [`kick_timer_owners`]), and the vCPU and its siblings are as the
/// last pass saw them ([`siblings_settled`]). Counted in the exit profile.
fn straight_back(domain: &mut HvmDomain, v: usize, cpu_index: usize, armed_until: u64) -> bool {
    // First: this CPU's own kick is the flag taken just below.
    kick_timer_owners(domain, None);
    let resched = NEED_RESCHED
        .get(cpu_index)
        .is_some_and(|f| f.swap(false, Ordering::AcqRel));
    // A control change asks for the pass too (its flag stays for it).
    let back = !resched
        && crate::time::now_ns() < armed_until
        && apic::oneshot_armed(cpu_index)
        && !CONTROL_CHANGED.load(Ordering::Acquire)
        && !rxen_x86::irq::any_pending()
        && vcpu_runnable(domain, v)
        && siblings_settled(domain, v);
    if back {
        domain.exit_stats.record_straight_back();
    }
    back
}

/// What [`serve_local`] did with an exit.
enum Local {
    /// Served; the vCPU goes straight back into its guest.
    Back(*mut hvm::vcpu::SvmVcpu),
    /// Served, with this outcome; the scheduling pass comes next.
    Served(Flow),
    /// Not served: not a local exit, or the machine is wanted exclusively.
    Machine,
}

/// Serves the exit of vCPU `r`, which this CPU ran (`claimed`), without
/// holding the machine exclusively, if the exit is one that stays within
/// its domain ([`exits::is_local_exit`]) or an event send
/// ([`exits::is_peer_send`]): with the machine held shared and the domain's
/// exit lock, so that CPUs running other domains serve their exits at the
/// same time; a send reaches its peer under the peer's exit lock, if that
/// is free (`hvm::env`'s `lend_peer`), and is otherwise left for the
/// machine held exclusively. Goes straight back into the guest when
/// [`straight_back`] says so, as the exclusive path does.
fn serve_local(cpu_index: usize, r: VcpuRef, claimed: &Claimed, armed_until: u64) -> Local {
    // SAFETY: see `claim`: the vCPU's VMCB is this CPU's alone until it
    // serves the exit with the machine held exclusively.
    let vcpu = unsafe { &*claimed.vcpu };
    let local = exits::is_local_exit(vcpu);
    let send = !local && exits::is_peer_send(vcpu);
    // Neither, a control change or a device interrupt: the machine's turn
    // (before any lock is taken).
    if !(local || send) || CONTROL_CHANGED.load(Ordering::Acquire) || rxen_x86::irq::any_pending() {
        return Local::Machine;
    }
    // While another CPU holds the machine exclusively or waits to (its
    // scheduling pass), wait for it to finish rather than queue behind it:
    // an exit that took the machine exclusively would make a whole pass
    // of its own, and two CPUs would go on colliding pass after pass.
    // Nothing is held while waiting.
    let shared = loop {
        if WRITERS_WAITING.load(Ordering::Acquire) == 0 {
            if let Some(shared) = MACHINE.try_read() {
                break shared;
            }
        }
        core::hint::spin_loop();
    };
    let world = match shared.as_ref() {
        Some(machine) if send => exits::Others::Peers(hvm::Peers {
            domains: &machine.domains,
            sched: &machine.sched,
        }),
        _ if send => return Local::Machine,
        _ => exits::Others::Own,
    };
    let _own = lock_domain(&claimed.exit_lock, cpu_index);
    // SAFETY: see `claim`: the domain lives while vCPU `r` is on this CPU,
    // and the shared hold and the exit lock make this the only reference
    // (a send reaches another domain only through `world`).
    let domain = unsafe { &mut *claimed.domain };
    let v = r.vcpu as usize;
    if domain.dying.is_some() {
        return Local::Machine;
    }
    // Every local exit is one of `exits::FAST_EXITS`, and so is a hypercall.
    let (flow, _) = serve(domain, v, world);
    if matches!(flow, Flow::Retry) {
        PEER_BUSY_SENDS.fetch_add(1, Ordering::Relaxed);
        // Nothing was done (the call stands as the guest made it): served
        // again with the machine held exclusively.
        return Local::Machine;
    }
    if send {
        if let Some(sends) = PEER_SENDS.get(cpu_index) {
            sends.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !matches!(flow, Flow::Continue) {
        return Local::Served(flow);
    }
    if !straight_back(domain, v, cpu_index, armed_until) {
        return Local::Served(Flow::Continue);
    }
    exits::inject_upcall(domain, v);
    Local::Back(&mut domain.vcpus[v])
}

/// The scheduling loop of CPU `cpu_index`; never returns.
pub fn run_cpu(cpu_index: usize) -> ! {
    x86_64::instructions::interrupts::disable();
    // The vCPU this CPU ran last (its exit is served next), and the vCPU
    // whose FPU state is in this CPU's registers.
    let mut current: Option<VcpuRef> = None;
    let mut fpu_owner: Option<VcpuRef> = None;
    // How this CPU reaches `current` for its local exits.
    let mut claimed: Option<Claimed> = None;
    // When this CPU's timer fires (the slice end or the earliest timer).
    let mut armed_until = 0u64;
    loop {
        // Kicks raised in the last pass (the machine is let go by now).
        send_kicks(cpu_index);
        // Queued console output, a bounded slice per pass.
        rxen_x86::console::poll();
        // An exit that stays within its domain, served beside the other
        // CPUs (`serve_local`); the machine exclusively for the rest.
        let mut served = None;
        if let (Some(r), Some(c)) = (current, claimed.as_ref()) {
            match serve_local(cpu_index, r, c, armed_until) {
                Local::Back(vcpu) => {
                    // A timer owner kicked by `straight_back`.
                    send_kicks(cpu_index);
                    // SAFETY: see `claim`.
                    unsafe { (*vcpu).run() };
                    continue;
                }
                Local::Served(flow) => served = Some(flow),
                Local::Machine => {}
            }
        }
        let mut guard = lock_machine(cpu_index);
        let Some(machine) = guard.as_mut() else {
            drop(guard);
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
            continue;
        };
        // Domains an event send served shared left other than their quiet
        // record says: this pass looks at them.
        machine.domains.wake_stirred();
        // Device interrupts first: a vCPU they wake is not passed over.
        let routed = machine.route_device_interrupts();
        if routed {
            machine.kick_running_with_upcalls();
        }
        if let Some(r) = current.take() {
            claimed = None;
            let fast = machine.serve_exit(r, served) && !routed;
            if fast {
                if let Some(domain) = machine.domains.get_mut(&r.domain) {
                    if straight_back(domain, r.vcpu as usize, cpu_index, armed_until) {
                        let c = claim(domain, r.vcpu as usize, cpu_index);
                        let vcpu = c.vcpu;
                        claimed = Some(c);
                        drop(guard);
                        send_kicks(cpu_index);
                        // SAFETY: see `claim`.
                        unsafe { (*vcpu).run() };
                        current = Some(r);
                        continue;
                    }
                }
            }
            machine.kick_running_with_upcalls();
        }
        let now = crate::time::now_ns();
        if cpu_index == 0 {
            machine.take_console_input();
        }
        // Keys dom0 pressed (XEN_SYSCTL_debug_keys), served on this pass.
        for key in take_pressed_keys() {
            machine.debug_key(key);
        }
        machine.expire_timers(now);
        if CONTROL_CHANGED.swap(false, Ordering::AcqRel) {
            machine.end_destroyed();
            machine.adopt_created(now);
        }
        machine.sync_runnable(now);
        machine.reap();
        if let Some((boot, reboots)) = machine.rebuilds.pop() {
            // A rebooted domain is built without the lock: loading (and
            // unpacking) its kernel takes long, and the other CPUs keep
            // scheduling meanwhile. Nothing else creates domains, and the
            // id stays out of the table until the domain is installed.
            // The FPU state this CPU holds goes to memory first: another CPU
            // may pick its vCPU up meanwhile.
            if let Some(owner) = fpu_owner.take() {
                machine.save_fpu(owner);
            }
            drop(guard);
            send_kicks(cpu_index);
            let started = crate::time::now_ns();
            let created = hvm::create(boot.id, &boot.spec);
            let took_us = crate::time::now_ns().saturating_sub(started) / 1000;
            rxen_x86::log!(
                Info,
                "d{}: rebuilt in {took_us} us outside the machine lock",
                boot.id
            );
            if let Some(machine) = lock_machine(cpu_index).as_mut() {
                machine.finish_rebuild(boot, reboots, created);
            }
            continue;
        }
        // This pass is what a request for one asked for: the requests made
        // so far (an exit that reached another domain, a vCPU woken onto
        // this CPU by `sync_runnable` just above, another CPU's kick) changed
        // the machine under the lock this pass holds, and the choice below
        // sees them. A request left standing would only send the next exit
        // of the vCPU chosen here (typically its APIC EOI right after the
        // event that woke it) through a second pass for nothing.
        if let Some(flag) = NEED_RESCHED.get(cpu_index) {
            flag.store(false, Ordering::Release);
        }
        let decision = machine.sched.get_mut().do_schedule(cpu_index, now);
        // Other pCPUs to look again: one that runs a vCPU pinned away from
        // it, or where a vCPU this one gave up (or one just pinned) may run.
        for other in machine.sched.get_mut().take_tickles().iter() {
            if other != cpu_index {
                kick(other);
            }
        }
        // The FPU state of the vCPU this CPU ran goes to memory before any
        // other CPU may pick that vCPU up (the lock is still held).
        if let Some(owner) = fpu_owner.filter(|o| Some(*o) != decision.next) {
            machine.save_fpu(owner);
            fpu_owner = None;
        }
        let deadline = [
            Some(decision.until),
            machine.earliest_deadline(cpu_index, decision.next),
        ]
        .into_iter()
        .flatten()
        .min();
        armed_until = deadline
            .unwrap_or(now + HOUSEKEEPING_NS)
            .min(now + HOUSEKEEPING_NS);
        if let Some(armed) = ARMED_UNTIL.get(cpu_index) {
            armed.store(armed_until, Ordering::Release);
        }
        let Some(next) = decision.next else {
            drop(guard);
            send_kicks(cpu_index);
            arm_timer(cpu_index, deadline, now);
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
            continue;
        };
        let Some(domain) = machine.domains.get_mut(&next.domain) else {
            continue;
        };
        let v = next.vcpu as usize;
        if v >= domain.vcpus.len() || domain.dying.is_some() {
            continue;
        }
        if let Some(other) = domain.running_on[v] {
            // Never enter a vCPU twice: its VMCB belongs to the CPU running
            // it. The scheduler should not offer it; if it does, skip it.
            if DOUBLE_PICKS.allow() {
                printk!(
                    "CPU{cpu_index}: d{}v{v} picked while it runs on CPU{other}: skipped",
                    next.domain
                );
            }
            continue;
        }
        rxen_core::hypercall::set_runstate(&mut domain.core, v, RunstateKind::Running, now);
        // Spectre v2 between domains: an IBPB when this CPU last ran
        // another domain (`spec-ctrl=ibpb`).
        rxen_x86::spec_ctrl::switch_to_domain(cpu_index, next.domain);
        if fpu_owner != Some(next) {
            let vcpu = &mut domain.vcpus[v];
            vcpu.fpu.restore(vcpu.xcr0);
            // Other vCPUs may have used this CPU's TLB with the same ASID.
            vcpu.flush_tlb = true;
            fpu_owner = Some(next);
        }
        let c = claim(domain, v, cpu_index);
        let vcpu = c.vcpu;
        claimed = Some(c);
        drop(guard);
        send_kicks(cpu_index);
        arm_timer(cpu_index, deadline, now);
        // SAFETY: see `claim`.
        unsafe { (*vcpu).run() };
        current = Some(next);
    }
}
