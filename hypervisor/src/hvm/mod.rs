//! HVM/PVH domains on SVM: building them, running their vCPUs, serving
//! their exits and hypercalls, and ending them (poweroff, reboot, crash).

pub mod build;
pub mod ctrlreg;
pub mod debugreg;
mod emulate;
pub mod env;
pub mod exits;
pub mod grant;
pub mod memory;
mod regs;
pub mod tlb;
pub mod vcpu;
pub mod vlapic;
pub mod vpci;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use rxen_core::domain::{DomId, Domain, ShutdownReason};
use rxen_core::mm::Gfn;
use rxen_x86::printk;

use self::build::BootSpec;
use self::memory::GuestMemory;
use self::vcpu::SvmVcpu;

/// A running PVH domain.
pub struct HvmDomain {
    /// Core bookkeeping (hypercall state).
    pub core: Domain,
    /// Guest memory and nested page table.
    pub memory: GuestMemory,
    /// The vCPUs.
    pub vcpus: Vec<SvmVcpu>,
    /// The domain's console output: its partial line and output budget.
    pub console: rxen_core::console::GuestConsole,
    /// Guest frame of the hypercall page, once installed.
    pub hypercall_page: Option<u64>,
    /// The physical CPU each vCPU is running on right now.
    pub running_on: Vec<Option<usize>>,
    /// Whether the scheduler was last told that each vCPU is runnable.
    pub sched_runnable: Vec<bool>,
    /// Set once the domain has ended: it is destroyed when none of its
    /// vCPUs is on a CPU any more.
    pub dying: Option<ShutdownReason>,
    /// A 1:1 dom0's emulated IO-APICs, at the host's addresses (registers
    /// only for now: no interrupt reaches them yet).
    pub vioapics: Option<rxen_core::vioapic::VIoApics>,
    /// A 1:1 dom0's PCI configuration space mediation (its conf1 latch,
    /// its MSI messages).
    pub pci: Option<vpci::Dom0Pci>,
    /// A domain the control domain created, not yet known to the
    /// scheduler and the grant tables: its config (the next scheduling pass
    /// adopts it).
    pub to_adopt: Option<rxen_core::platform::DomainConfig>,
    /// Built by the control domain's toolstack (`XEN_DOMCTL_createdomain`):
    /// when it shuts down it stays, shut down, until the toolstack destroys
    /// it, as on Xen (boot-time domains are torn down at once).
    pub toolstack: bool,
    /// vCPUs handed to the scheduler (`max_vcpus` adds vCPUs later).
    pub sched_vcpus: usize,
    /// The domain's exits by reason, with the time spent serving them
    /// (printed at its end with `exit-stats`, and by the `p` debug key).
    pub exit_stats: rxen_core::exit_stats::ExitStats,
    /// The emulated PIT channel 2 and port `0x61` (rxen's addition: Xen
    /// gives PVH guests no PIT; see `rxen_core::i8254`).
    pub pit: rxen_core::i8254::Pit,
    /// Held by a CPU serving one of the domain's exits without the
    /// machine lock held exclusively (an exit that stays within the domain,
    /// see `schedule`): two of its vCPUs on two CPUs take turns, while other
    /// domains' exits go on beside them. Shared with the CPUs running the
    /// domain's vCPUs, which take it without looking the domain up.
    pub exit_lock: alloc::sync::Arc<spin::Mutex<()>>,
}

/// Every domain of the machine, by ID. Boxed, so that a domain (and the
/// vCPUs a CPU is running) stays put while the table changes.
///
/// Beside each domain the table keeps what the last scheduling pass found of
/// it when it had nothing for the scheduler ([`Quiet`]), so that a pass looks
/// only at the domains that may have changed, as Xen's scheduler sees only
/// its run queues and its timers: a pass costs the same beside any number of
/// blocked domains. Every mutable access to a domain through the table
/// ([`DomainTable::get_mut`], [`DomainTable::iter_mut`], taking it out)
/// forgets that, so the next pass looks at the domain again; shared access
/// leaves it. A domain is quiet only while none of its vCPUs is on a CPU, so
/// the exits a CPU serves of its own vCPU without the table (`schedule`'s
/// local exits) never reach a quiet domain. An event send served with the
/// machine held shared reaches its peer without changing the table
/// ([`DomainTable::lend_shared`]); if it leaves a quiet domain other than
/// its record says, it marks the domain stirred, and the next pass looks at
/// it again ([`DomainTable::wake_stirred`]).
#[derive(Default)]
pub struct DomainTable {
    entries: BTreeMap<DomId, Entry>,
    /// Whether some entry is stirred ([`DomainTable::wake_stirred`]).
    any_stirred: AtomicBool,
    /// The domains not quiet (a pass looks at these), in no order. Its
    /// capacity covers every domain, so keeping it never allocates.
    active: Vec<DomId>,
    /// The quiet domains that have a timer, in no order (same capacity).
    timers: Vec<(DomId, Quiet)>,
    /// An empty list with the same capacity, lent to a pass that collects
    /// the domains it will take out ([`DomainTable::lend_list`]).
    spare: Vec<DomId>,
}

/// A domain in the table (None while taken out, [`DomainTable::take_out`]).
struct Entry {
    domain: Option<Box<HvmDomain>>,
    quiet: Option<Quiet>,
    /// The boxed domain, for a CPU holding the machine shared
    /// ([`DomainTable::lend_shared`]); None while it is taken out. Taken from
    /// the box when it is put in the table.
    shared: Option<NonNull<HvmDomain>>,
    /// The domain's exit lock (`HvmDomain::exit_lock`), reached without
    /// the domain.
    lock: Arc<spin::Mutex<()>>,
    /// Reached while quiet, and left other than its record says.
    stirred: AtomicBool,
}

// SAFETY: `shared`'s pointer is the entry's own boxed domain, reached only as
// `DomainTable::lend_shared` says (under the domain's exit lock, with the
// machine held shared); the rest of the entry is plain data.
unsafe impl Send for Entry {}
// SAFETY: as above; shared access to an entry only reads it, or sets
// `stirred` (an atomic).
unsafe impl Sync for Entry {}

impl Entry {
    /// An entry for `domain`, put in the table now.
    fn new(mut domain: Box<HvmDomain>) -> Self {
        let mut e = Entry {
            domain: None,
            quiet: None,
            shared: None,
            lock: domain.exit_lock.clone(),
            stirred: AtomicBool::new(false),
        };
        e.place(&mut domain);
        e.domain = Some(domain);
        e
    }

    /// Records where `domain`, about to be this entry's, lives (and its exit
    /// lock, if it is not the one the entry knows).
    fn place(&mut self, domain: &mut Box<HvmDomain>) {
        if !Arc::ptr_eq(&self.lock, &domain.exit_lock) {
            self.lock = domain.exit_lock.clone();
        }
        self.shared = Some(NonNull::from(&mut **domain));
    }
}

/// A domain reached with the machine held shared ([`DomainTable::lend_shared`]).
pub struct SharedDomain<'a> {
    /// The domain, to be reached only with `lock` held.
    pub ptr: NonNull<HvmDomain>,
    /// Its exit lock.
    pub lock: &'a spin::Mutex<()>,
    /// Whether a pass recorded it as quiet.
    pub quiet: bool,
    stirred: &'a AtomicBool,
    any_stirred: &'a AtomicBool,
}

impl SharedDomain<'_> {
    /// Has the next pass look at the domain again (it changed other than
    /// its quiet record says).
    pub fn stir(&self) {
        self.stirred.store(true, Ordering::Release);
        self.any_stirred.store(true, Ordering::Release);
    }
}

/// What a scheduling pass found of a domain with nothing to do: it is not
/// ending, none of its vCPUs is on a CPU or waits for a context, and the
/// scheduler knows which of them are runnable. Only its timers can change
/// that without an access through the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quiet {
    /// Its earliest timer (vCPU timers and watchdogs), if any.
    pub next_due: Option<u64>,
    /// The CPU that owns all its timers (`Vcpu::processor`; the watchdogs go
    /// with vCPU 0), or None if several do.
    pub owner: Option<u32>,
}

impl Quiet {
    /// The domain's earliest timer if CPU `cpu` must arm its timer for it:
    /// it owns the timers, or they have several owners (then every CPU does).
    pub fn due_on(&self, cpu: u32) -> Option<u64> {
        self.next_due
            .filter(|_| self.owner.is_none_or(|owner| owner == cpu))
    }
}

impl DomainTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Domain `id`, to read.
    pub fn get(&self, id: &DomId) -> Option<&HvmDomain> {
        self.entries.get(id)?.domain.as_deref()
    }

    /// Domain `id`, to change: the next pass looks at it again.
    pub fn get_mut(&mut self, id: &DomId) -> Option<&mut HvmDomain> {
        let e = self.entries.get_mut(id)?;
        if let Some(quiet) = e.quiet.take() {
            Self::wake(&mut self.active, &mut self.timers, *id, quiet);
        }
        e.domain.as_deref_mut()
    }

    /// Takes domain `id` out for a while, so that the rest of the table can
    /// be lent beside it (the next pass looks at it again); the caller puts
    /// it back ([`Self::put_back`]). Until then the table does not show it.
    /// Cheaper than [`Self::remove`] and [`Self::insert`]: the table's
    /// shape does not change.
    pub fn take_out(&mut self, id: &DomId) -> Option<Box<HvmDomain>> {
        let e = self.entries.get_mut(id)?;
        if let Some(quiet) = e.quiet.take() {
            Self::wake(&mut self.active, &mut self.timers, *id, quiet);
        }
        e.shared = None;
        e.domain.take()
    }

    /// Puts back domain `id` taken out by [`Self::take_out`].
    pub fn put_back(&mut self, id: DomId, mut domain: Box<HvmDomain>) {
        match self.entries.get_mut(&id) {
            Some(e) if e.domain.is_none() => {
                e.place(&mut domain);
                e.domain = Some(domain);
            }
            _ => self.insert(id, domain),
        }
    }

    /// Domain `id` for a CPU that holds the machine shared and serves an
    /// exit that reaches it (an event send): its address and its exit lock.
    /// The caller reaches the domain only while it holds that lock; the
    /// table does not change, so a quiet domain stays recorded as quiet
    /// unless the caller stirs it ([`SharedDomain::stir`]).
    pub fn lend_shared(&self, id: &DomId) -> Option<SharedDomain<'_>> {
        let e = self.entries.get(id)?;
        Some(SharedDomain {
            ptr: e.shared?,
            lock: &e.lock,
            quiet: e.quiet.is_some(),
            stirred: &e.stirred,
            any_stirred: &self.any_stirred,
        })
    }

    /// Forgets the quiet record of every domain stirred since the last call
    /// ([`SharedDomain::stir`]), so that this pass looks at them again.
    pub fn wake_stirred(&mut self) {
        if !self.any_stirred.swap(false, Ordering::AcqRel) {
            return;
        }
        for (id, e) in self.entries.iter_mut() {
            if e.stirred.swap(false, Ordering::AcqRel) {
                if let Some(quiet) = e.quiet.take() {
                    Self::wake(&mut self.active, &mut self.timers, *id, quiet);
                }
            }
        }
    }

    /// An empty list with room for every domain, for a pass to collect the
    /// domains it then takes out one by one without allocating; given back
    /// with [`Self::give_back_list`] (a list not given back is only
    /// allocated again).
    pub fn lend_list(&mut self) -> Vec<DomId> {
        core::mem::take(&mut self.spare)
    }

    /// Gives back a list lent by [`Self::lend_list`], emptied.
    pub fn give_back_list(&mut self, mut list: Vec<DomId>) {
        list.clear();
        if list.capacity() >= self.spare.capacity() {
            self.spare = list;
        }
    }

    /// Moves quiet domain `id` back among the active ones.
    fn wake(active: &mut Vec<DomId>, timers: &mut Vec<(DomId, Quiet)>, id: DomId, quiet: Quiet) {
        if quiet.next_due.is_some() {
            if let Some(i) = timers.iter().position(|(t, _)| *t == id) {
                timers.swap_remove(i);
            }
        }
        active.push(id);
    }

    /// Adds (or replaces) domain `id`.
    pub fn insert(&mut self, id: DomId, domain: Box<HvmDomain>) {
        // Room for every domain in the lists (so that keeping them never
        // allocates), as the entry itself needs room.
        let n = self.entries.len().saturating_add(1);
        self.active.reserve(n.saturating_sub(self.active.len()));
        self.timers.reserve(n.saturating_sub(self.timers.len()));
        self.spare.reserve(n);
        self.forget(&id);
        self.entries.insert(id, Entry::new(domain));
        self.active.push(id);
    }

    /// Takes domain `id` out.
    pub fn remove(&mut self, id: &DomId) -> Option<Box<HvmDomain>> {
        self.forget(id);
        self.entries.remove(id)?.domain
    }

    /// Takes domain `id` off both lists.
    fn forget(&mut self, id: &DomId) {
        if let Some(i) = self.active.iter().position(|a| a == id) {
            self.active.swap_remove(i);
        }
        if let Some(i) = self.timers.iter().position(|(t, _)| t == id) {
            self.timers.swap_remove(i);
        }
        if let Some(e) = self.entries.get_mut(id) {
            e.quiet = None;
        }
    }

    /// Whether domain `id` is in the table.
    pub fn contains_key(&self, id: &DomId) -> bool {
        self.get(id).is_some()
    }

    /// The domains' IDs, in order.
    pub fn keys(&self) -> impl Iterator<Item = &DomId> {
        self.iter().map(|(id, _)| id)
    }

    /// Whether there is no domain.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Every domain, to read.
    pub fn iter(&self) -> impl Iterator<Item = (&DomId, &HvmDomain)> {
        self.entries
            .iter()
            .filter_map(|(id, e)| Some((id, e.domain.as_deref()?)))
    }

    /// Every domain, to read.
    pub fn values(&self) -> impl Iterator<Item = &HvmDomain> {
        self.iter().map(|(_, d)| d)
    }

    /// Every domain, to change: the next pass looks at each one.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&DomId, &mut HvmDomain)> {
        for (id, e) in self.entries.iter_mut() {
            if let Some(quiet) = e.quiet.take() {
                Self::wake(&mut self.active, &mut self.timers, *id, quiet);
            }
        }
        self.entries
            .iter_mut()
            .filter_map(|(id, e)| Some((id, e.domain.as_deref_mut()?)))
    }

    /// Every domain, to change: the next pass looks at each one.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut HvmDomain> {
        self.iter_mut().map(|(_, d)| d)
    }

    /// The domains a scheduling pass looks at (those not quiet), in no
    /// order; [`Self::get_mut`] on them leaves this list as it is.
    pub fn active(&self) -> &[DomId] {
        &self.active
    }

    /// The quiet domains that have a timer, with what the pass found.
    pub fn quiet_timers(&self) -> &[(DomId, Quiet)] {
        &self.timers
    }

    /// Records what a pass found of active domain `id`, the `index`th of
    /// [`Self::active`]: it leaves that list (the last one takes its
    /// place), and the passes look only at its timers until it is reached
    /// mutably.
    pub fn set_quiet(&mut self, index: usize, quiet: Quiet) {
        let Some(&id) = self.active.get(index) else {
            return;
        };
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        self.active.swap_remove(index);
        e.quiet = Some(quiet);
        if quiet.next_due.is_some() {
            // Within the capacity reserved for every domain.
            self.timers.push((id, quiet));
        }
    }
}

/// Every domain's grant table, by ID (beside the domain table, so that the
/// core's grant code can hold a table and the domains' memory at once).
pub type GrantMap = BTreeMap<DomId, rxen_core::grant_table::GrantTable>;

/// The other domains as an exit served with the machine held shared
/// reaches them: one at a time, under its exit lock, for an event send
/// (`rxen_core::hypercall::reaches_one_peer`).
pub struct Peers<'a> {
    /// The domains, not to be changed (see [`DomainTable::lend_shared`]).
    pub domains: &'a DomainTable,
    /// The scheduler, told of a vCPU the event woke.
    pub sched: &'a spin::Mutex<Box<dyn rxen_core::sched::Scheduler>>,
}

/// The rest of the machine as a hypercall of one domain sees it: the other
/// domains and all grant tables.
pub struct World<'a> {
    /// The other domains (the caller is taken out while it is served).
    pub domains: &'a mut DomainTable,
    /// Every domain's grant table.
    pub grants: &'a mut GrantMap,
    /// The scheduler (for the control domain's `scheduler_op`).
    pub sched: &'a mut (dyn rxen_core::sched::Scheduler + 'static),
}

/// Guest frame of a domU's PV console ring page: in the hole below 4 GiB,
/// where Xen's HVM special pages are.
pub const CONSOLE_GFN: Gfn = Gfn(0xFEFFF);

/// Why a domain could not be built.
#[derive(Debug)]
pub enum CreateError {
    /// No memory for the domain's RAM (of this many MiB).
    OutOfMemory(u64),
    /// The paging pool (of this many pages) cannot map the domain's RAM.
    PoolTooSmall(u64),
    /// The kernel, its modules or the boot structures could not be loaded.
    Build(build::BuildError),
    /// No memory for the PV console ring page.
    ConsolePage,
    /// No event channel for the console.
    ConsolePort,
    /// No memory for the vCPUs' control blocks.
    Vcpus,
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory(mib) => write!(f, "out of memory for {mib} MiB"),
            Self::PoolTooSmall(pages) => write!(
                f,
                "a paging pool of {pages} pages cannot map the domain's RAM"
            ),
            Self::Build(e) => write!(f, "{e}"),
            Self::ConsolePage => write!(f, "out of memory for the console page"),
            Self::ConsolePort => write!(f, "no port for the console"),
            Self::Vcpus => write!(f, "out of memory for the vCPUs"),
        }
    }
}

/// The ASID of domain `domid`'s vCPUs.
pub fn asid_of(domid: DomId) -> u32 {
    1 + domid as u32 % 15
}

/// An empty domain `domid` for the control domain (`XEN_DOMCTL_createdomain`):
/// no RAM, no vCPU yet (`max_vcpus` adds them), born paused, with a paging
/// pool for the RAM it may get later.
pub fn create_empty(
    domid: DomId,
    config: &rxen_core::platform::DomainConfig,
) -> Result<HvmDomain, CreateError> {
    let pool_pages = rxen_core::frame_alloc::default_paging_pages(config.max_vcpus, 0);
    let memory = GuestMemory::new(domid, 0, pool_pages).map_err(|error| match error {
        memory::MemoryError::OutOfMemory => CreateError::OutOfMemory(0),
        memory::MemoryError::PoolTooSmall => CreateError::PoolTooSmall(pool_pages),
    })?;
    let now = crate::time::now_ns();
    let mut core = Domain::created(domid, config.max_vcpus, config.max_evtchn_port, now);
    core.handle = config.handle;
    Ok(HvmDomain {
        core,
        memory,
        vcpus: Vec::new(),
        console: rxen_core::console::GuestConsole::new(now),
        hypercall_page: None,
        running_on: Vec::new(),
        sched_runnable: Vec::new(),
        dying: None,
        vioapics: None,
        pci: None,
        to_adopt: Some(*config),
        toolstack: true,
        sched_vcpus: 0,
        exit_stats: rxen_core::exit_stats::ExitStats::new(),
        pit: rxen_core::i8254::Pit::new(),
        exit_lock: alloc::sync::Arc::new(spin::Mutex::new(())),
    })
}

/// Builds a PVH domain `domid` from `spec`.
pub fn create(domid: DomId, spec: &BootSpec) -> Result<HvmDomain, CreateError> {
    let pages = spec.memory_bytes / 4096;
    let heap_before = crate::heap::used();
    let pool_pages = spec.paging_pages();
    let memory = match &spec.direct {
        Some(direct) => GuestMemory::new_direct(domid, &direct.ram, pool_pages),
        None => GuestMemory::new(domid, spec.memory_bytes, pool_pages),
    };
    let mut memory = memory.map_err(|error| match error {
        memory::MemoryError::OutOfMemory => CreateError::OutOfMemory(spec.memory_bytes >> 20),
        memory::MemoryError::PoolTooSmall => CreateError::PoolTooSmall(pool_pages),
    })?;
    let is_domu = spec.flags & rxen_abi::start_info::SIF_INITDOMAIN == 0;
    let mut map = match &spec.direct {
        Some(direct) => direct.map.clone(),
        None => build::guest_memory_map(spec.memory_bytes, spec.builds_acpi_tables()),
    };
    if is_domu {
        // The PV console page (below), reserved in the map the guest gets.
        map.push(rxen_core::domain::GuestMemRegion {
            addr: CONSOLE_GFN.0 * 4096,
            size: 4096,
            kind: 2,
        });
    }
    let layout = build::load(spec, &mut memory, &map).map_err(CreateError::Build)?;
    let now = crate::time::now_ns();
    let privileged = spec.flags & rxen_abi::start_info::SIF_PRIVILEGED != 0;
    let mut core = Domain::new(domid, privileged, pages, spec.vcpus, now);
    if let Some(max) = spec.max_pages {
        core.max_pages = max.max(pages);
    }
    core.events.set_max_port(spec.max_evtchn_port);
    core.memory_map = map;
    if is_domu {
        // A domU's PV console: a ring page outside RAM and a port to the
        // hypervisor's console backend, found through the HVM params as a
        // domU finds the ones its toolstack sets up.
        memory
            .add_console_page(CONSOLE_GFN)
            .map_err(|_| CreateError::ConsolePage)?;
        let port = core
            .events
            .bind_console()
            .map_err(|_| CreateError::ConsolePort)?;
        core.hvm_params[rxen_abi::hvm::HVM_PARAM_CONSOLE_PFN as usize] = CONSOLE_GFN.0;
        core.hvm_params[rxen_abi::hvm::HVM_PARAM_CONSOLE_EVTCHN as usize] = port as u64;
    }
    // A 1:1 dom0 gets an emulated IO-APIC per host IO-APIC, as Xen's
    // hardware domain does.
    let vioapics =
        spec.direct
            .as_ref()
            .and_then(|_| {
                match rxen_core::vioapic::VIoApics::for_hardware_domain(crate::acpi::host_ioapics())
                {
                    Ok(apics) if !apics.apics().is_empty() => Some(apics),
                    Ok(_) => None,
                    Err(why) => {
                        printk!("d{domid}: no emulated IO-APIC: {why:?}");
                        None
                    }
                }
            });
    let asid = asid_of(domid);
    // Every vCPU exists from the start: vCPU 0 at the PVH entry, the others
    // offline until VCPUOP_initialise gives them a state and VCPUOP_up.
    let nr_vcpus = core.vcpus.len();
    let mut vcpus = Vec::with_capacity(nr_vcpus);
    for _ in 0..nr_vcpus {
        let vcpu = SvmVcpu::new_pvh(layout.entry, layout.start_info, memory.npt.root(), asid)
            .ok_or(CreateError::Vcpus)?;
        vcpus.push(vcpu);
    }
    // A 1:1 dom0 reaches the machine's I/O ports but those rxen traps.
    if let Some(iopm) = spec
        .direct
        .as_ref()
        .and_then(|_| crate::ioports::dom0_iopm())
    {
        for vcpu in &mut vcpus {
            vcpu.set_iopm(iopm);
        }
        printk!("d{domid}: I/O ports: the machine's, but those rxen traps (PIC, PIT, PM timer, its UART, ...)");
    }
    printk!(
        "d{domid}: PVH domain: {} MiB, {} vCPU(s), entry {:#x}, start info at {:#x}",
        spec.memory_bytes >> 20,
        spec.vcpus,
        layout.entry,
        layout.start_info,
    );
    if layout.rsdp != 0 && is_domu {
        printk!(
            "d{domid}: ACPI tables at {:#x}-{:#x} (RSDP at {:#x}), {} local APIC(s)",
            build::ACPI_TABLES_BASE,
            build::ACPI_TABLES_BASE + build::ACPI_TABLES_SIZE - 1,
            layout.rsdp,
            spec.vcpus
        );
    }
    // What the hypervisor spends on the domain besides its RAM.
    let (pool, tables) = memory.paging_pool();
    printk!(
        "d{domid}: memory cost: {} heap bytes, {} frames for nested page tables and control pages",
        crate::heap::used().saturating_sub(heap_before),
        memory.overhead_frames()
    );
    printk!("d{domid}: paging pool: {pool} pages, {tables} in use");
    Ok(HvmDomain {
        core,
        memory,
        vcpus,
        console: rxen_core::console::GuestConsole::new(crate::time::now_ns()),
        hypercall_page: None,
        running_on: alloc::vec![None; nr_vcpus],
        sched_runnable: alloc::vec![false; nr_vcpus],
        dying: None,
        vioapics,
        pci: spec.direct.as_ref().map(|_| vpci::Dom0Pci::default()),
        to_adopt: None,
        toolstack: false,
        sched_vcpus: nr_vcpus,
        exit_stats: rxen_core::exit_stats::ExitStats::new(),
        pit: rxen_core::i8254::Pit::new(),
        exit_lock: alloc::sync::Arc::new(spin::Mutex::new(())),
    })
}

impl HvmDomain {
    /// Prints a pending partial console line (and what was dropped).
    pub fn flush_console(&mut self) {
        env::flush_console(self.core.id, &mut self.console);
    }

    /// Prints the domain's exits by reason ([`rxen_core::exit_stats`]).
    pub fn print_exit_stats(&self) {
        for line in self.exit_stats.table(self.core.id) {
            printk!("{line}");
        }
    }
}
