//! Domains and vCPUs as the core sees them: identity, privilege, memory
//! accounting, the guest memory map, HVM parameters, shared-info placement,
//! timers, runstate, and how a domain ended. The platform owns the actual
//! memory and CPU state; this is the bookkeeping hypercalls act on.

use alloc::string::String;
use alloc::vec::Vec;

use rxen_abi::hvm::HVM_NR_PARAMS;

use crate::time::{Runstate, RunstateKind};

/// A domain ID (`domid_t`), as the ABI defines it.
pub use rxen_abi::xen::DomId;

/// Why a domain shut down (`SHUTDOWN_*` of sched.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff,
    /// `SHUTDOWN_reboot`.
    Reboot,
    /// `SHUTDOWN_suspend`.
    Suspend,
    /// `SHUTDOWN_crash`.
    Crash,
    /// `SHUTDOWN_watchdog`.
    Watchdog,
    /// `SHUTDOWN_soft_reset`.
    SoftReset,
    /// Any other code (Xen accepts any byte).
    Other(u8),
}

impl ShutdownReason {
    /// From the guest's code (truncated to a byte, as Xen does).
    pub fn from_code(code: u32) -> Self {
        match code as u8 {
            0 => Self::Poweroff,
            1 => Self::Reboot,
            2 => Self::Suspend,
            3 => Self::Crash,
            4 => Self::Watchdog,
            5 => Self::SoftReset,
            other => Self::Other(other),
        }
    }

    /// The code Xen reports for it (`SHUTDOWN_*`, a byte).
    pub fn code(self) -> u8 {
        match self {
            Self::Poweroff => 0,
            Self::Reboot => 1,
            Self::Suspend => 2,
            Self::Crash => 3,
            Self::Watchdog => 4,
            Self::SoftReset => 5,
            Self::Other(code) => code,
        }
    }

    /// Xen's name for the reason.
    pub fn name(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Suspend => "suspend",
            Self::Crash => "crash",
            Self::Watchdog => "watchdog",
            Self::SoftReset => "soft_reset",
            Self::Other(_) => "unknown",
        }
    }
}

/// One entry of a guest's memory map (`struct e820entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMemRegion {
    /// Start.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// E820 type.
    pub kind: u32,
}

/// Most watchdog timers per domain (Xen's `NR_DOMAIN_WATCHDOG_TIMERS`).
pub const NR_WATCHDOGS: usize = 2;

/// A virtual CPU's bookkeeping.
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// vCPU number within the domain.
    pub id: u32,
    /// Whether it is up (VCPUOP_is_up).
    pub up: bool,
    /// Whether it has its initial state (vCPU 0 from the domain builder,
    /// the others from VCPUOP_initialise); only such a vCPU comes up.
    pub initialised: bool,
    /// A context from VCPUOP_initialise that the platform has not loaded
    /// into the vCPU yet.
    pub pending_context: Option<rxen_abi::hvm_vcpu::VcpuHvmContext>,
    /// The hard affinity to restore while `SCHEDOP_pin_override` holds the
    /// vCPU on one pCPU (Xen's `affinity_broken` with the saved affinity).
    pub pin_override: Option<crate::sched::CpuMask>,
    /// Runstate and accounting.
    pub runstate: Runstate,
    /// Guest linear address of a registered runstate area.
    pub runstate_area: Option<u64>,
    /// Guest-physical address of a registered `vcpu_info`.
    pub vcpu_info_gpa: Option<u64>,
    /// Absolute system time of the single-shot timer.
    pub singleshot_deadline: Option<u64>,
    /// Period and next expiry of the periodic timer.
    pub periodic: Option<(u64, u64)>,
    /// Per-vCPU upcall vector (HVMOP_set_evtchn_upcall_vector).
    pub upcall_vector: Option<u8>,
    /// Blocked until an event or this deadline (None: no timeout).
    pub blocked: Option<Option<u64>>,
    /// Ports a SCHEDOP_poll waits on (empty when not polling): one of them
    /// becoming pending ends the block even when it is masked.
    pub poll_ports: alloc::vec::Vec<u32>,
    /// Its local APIC (APIC ID = vCPU ID, as CPUID leaf 1 reports).
    pub lapic: crate::vlapic::Vlapic,
    /// The physical CPU it runs on, or last ran on (Xen's `v->processor`).
    pub processor: u32,
    /// An event made `evtchn_upcall_pending` go from 0 to 1 since the vCPU
    /// last entered its guest: a CPU running it must be made to exit and
    /// offer the upcall. As Xen's `vcpu_mark_events_pending`, which kicks a
    /// running vCPU only on that transition, not for every event while the
    /// upcall waits to be taken. The platform clears it at each entry.
    pub kick: bool,
}

impl Vcpu {
    /// A vCPU, up (vCPU 0) or offline, at system time `now`.
    pub fn new(id: u32, up: bool, now: u64) -> Self {
        let state = if up {
            RunstateKind::Runnable
        } else {
            RunstateKind::Offline
        };
        Self {
            id,
            up,
            initialised: up,
            pending_context: None,
            pin_override: None,
            runstate: Runstate::new(state, now),
            runstate_area: None,
            vcpu_info_gpa: None,
            singleshot_deadline: None,
            periodic: None,
            upcall_vector: None,
            blocked: None,
            poll_ports: alloc::vec::Vec::new(),
            lapic: crate::vlapic::Vlapic::new(id as u8, id == 0),
            processor: 0,
            kick: false,
        }
    }

    /// The earliest timer deadline of this vCPU (a periodic timer counts
    /// only while the vCPU is not blocked: Xen stops it meanwhile; the
    /// local APIC's timer always runs).
    pub fn next_deadline(&self) -> Option<u64> {
        let periodic = self
            .periodic
            .filter(|_| self.blocked.is_none())
            .map(|(_, next)| next);
        let blocked = self.blocked.flatten();
        let lapic = self.lapic.timer_deadline();
        [self.singleshot_deadline, periodic, blocked, lapic]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A domain.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Domain ID.
    pub id: DomId,
    /// Control domain (dom0): may use privileged operations.
    pub privileged: bool,
    /// Pages the domain owns.
    pub tot_pages: u64,
    /// Most pages it may own.
    pub max_pages: u64,
    /// The guest's memory map.
    pub memory_map: Vec<GuestMemRegion>,
    /// HVM parameters.
    pub hvm_params: [u64; HVM_NR_PARAMS as usize],
    /// Code set by SCHEDOP_shutdown_code, used by the next shutdown.
    pub shutdown_code: Option<u8>,
    /// How the domain ended, once it has.
    pub shutdown: Option<ShutdownReason>,
    /// Watchdogs: (timeout in ns, deadline).
    pub watchdogs: [Option<(u64, u64)>; NR_WATCHDOGS],
    /// The vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Event channels.
    pub events: crate::event_channel::EventChannels,
    /// 16-byte handle (XENVER_guest_handle).
    pub handle: [u8; 16],
    /// Name for logs.
    pub name: String,
    /// Pauses by the control domain (`XEN_DOMCTL_pausedomain`, Xen's
    /// `controller_pause_count`): its vCPUs run only while this is 0.
    pub controller_pause_count: u32,
    /// vCPUs it may have (`createdomain`'s `max_vcpus`; `max_vcpus`
    /// creates them).
    pub max_vcpus: u32,
    /// The control domain destroyed it (`XEN_DOMCTL_destroydomain`): the
    /// hypervisor tears it down at its next scheduling pass, and never
    /// rebuilds it.
    pub destroy_requested: bool,
}

impl Domain {
    /// A new domain with `nr_vcpus` vCPUs (vCPU 0 up) at system time `now`.
    pub fn new(id: DomId, privileged: bool, pages: u64, nr_vcpus: u32, now: u64) -> Self {
        let mut hvm_params = [0; HVM_NR_PARAMS as usize];
        // Xen's default: a triple fault reboots the domain.
        hvm_params[rxen_abi::hvm::HVM_PARAM_TRIPLE_FAULT_REASON as usize] = 1;
        Self {
            id,
            privileged,
            tot_pages: pages,
            max_pages: pages,
            memory_map: Vec::new(),
            hvm_params,
            shutdown_code: None,
            shutdown: None,
            watchdogs: [None; NR_WATCHDOGS],
            vcpus: (0..nr_vcpus.max(1))
                .map(|id| Vcpu::new(id, id == 0, now))
                .collect(),
            events: crate::event_channel::EventChannels::new(nr_vcpus.max(1) as usize),
            handle: [0; 16],
            name: alloc::format!("d{id}"),
            controller_pause_count: 0,
            destroy_requested: false,
            max_vcpus: nr_vcpus.max(1),
        }
    }

    /// A domain the control domain creates (`XEN_DOMCTL_createdomain`):
    /// born paused, with no memory and no vCPU until `max_vcpus` creates
    /// `max_vcpus` of them.
    pub fn created(id: DomId, max_vcpus: u32, max_evtchn_port: u32, now: u64) -> Self {
        let mut d = Self::new(id, false, 0, 1, now);
        d.vcpus.clear();
        d.max_pages = 0;
        d.max_vcpus = max_vcpus;
        d.controller_pause_count = 1;
        d.events.set_max_port(max_evtchn_port);
        d
    }

    /// Creates the vCPUs up to `max_vcpus` (all down, as Xen's `vcpu_create`
    /// leaves them until a context is set) at system time `now`.
    pub fn create_vcpus(&mut self, now: u64) {
        if self.vcpus.len() as u32 >= self.max_vcpus {
            return;
        }
        self.events.grow_vcpus(self.max_vcpus as usize);
        for id in self.vcpus.len() as u32..self.max_vcpus {
            self.vcpus.push(Vcpu::new(id, false, now));
        }
    }

    /// Records a shutdown (the first one wins, as in Xen) and returns it.
    /// A code set earlier with SCHEDOP_shutdown_code replaces `reason`, as
    /// Xen's `domain_shutdown` does.
    pub fn shut_down(&mut self, reason: ShutdownReason) -> ShutdownReason {
        let reason = self
            .shutdown_code
            .map(|code| ShutdownReason::from_code(code as u32))
            .unwrap_or(reason);
        *self.shutdown.get_or_insert(reason)
    }

    /// Whether `gfn` is RAM in the guest's memory map.
    pub fn gfn_is_ram(&self, gfn: u64) -> bool {
        let address = gfn.saturating_mul(4096);
        self.memory_map
            .iter()
            .any(|r| r.kind == 1 && r.addr <= address && address < r.addr.saturating_add(r.size))
    }
}

/// Xen's choice of a new domain's id (`domain_create`'s rover): `requested`
/// if not 0 (`-EINVAL` if reserved, `-EEXIST` if taken), else the first free
/// id after the last one handed out (`rover`, updated), wrapping below
/// `DOMID_FIRST_RESERVED`; `-ENOMEM` when every id is taken. An id is not
/// reused at once, which libxl relies on.
pub fn allocate_domid(
    requested: DomId,
    rover: &mut DomId,
    exists: impl Fn(DomId) -> bool,
) -> Result<DomId, rxen_abi::errno::Errno> {
    use rxen_abi::errno;
    use rxen_abi::xen::DOMID_FIRST_RESERVED;
    if requested != 0 {
        if requested >= DOMID_FIRST_RESERVED {
            return Err(errno::EINVAL);
        }
        if exists(requested) {
            return Err(errno::EEXIST);
        }
        return Ok(requested);
    }
    let mut candidate = *rover;
    for _ in 1..DOMID_FIRST_RESERVED {
        candidate = match candidate.checked_add(1) {
            Some(next) if next < DOMID_FIRST_RESERVED => next,
            _ => 1,
        };
        if !exists(candidate) {
            *rover = candidate;
            return Ok(candidate);
        }
    }
    Err(errno::ENOMEM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domids_come_from_a_rover() {
        use rxen_abi::errno;
        let taken = [0u16, 1, 3];
        let exists = |id| taken.contains(&id);
        let mut rover = 0;
        assert_eq!(allocate_domid(0, &mut rover, exists), Ok(2));
        // Not 2 again: the rover moved on (libxl refuses a recently used id).
        assert_eq!(allocate_domid(0, &mut rover, exists), Ok(4));
        assert_eq!(allocate_domid(5, &mut rover, exists), Ok(5));
        assert_eq!(allocate_domid(3, &mut rover, exists), Err(errno::EEXIST));
        assert_eq!(
            allocate_domid(0x7FF0, &mut rover, exists),
            Err(errno::EINVAL)
        );
        let mut rover = 0x7FEF;
        assert_eq!(
            allocate_domid(0, &mut rover, exists),
            Ok(2),
            "wraps to 1, taken, then 2"
        );
        let mut rover = 0;
        assert_eq!(allocate_domid(0, &mut rover, |_| true), Err(errno::ENOMEM));
    }

    #[test]
    fn a_created_domain_is_paused_empty_and_gets_its_vcpus_later() {
        let mut d = Domain::created(4, 3, 1023, 0);
        assert_eq!((d.vcpus.len(), d.tot_pages, d.max_pages), (0, 0, 0));
        assert_eq!(d.controller_pause_count, 1);
        d.create_vcpus(10);
        assert_eq!(d.vcpus.len(), 3);
        assert!(d.vcpus.iter().all(|v| !v.up));
        assert_eq!(d.events.nr_vcpus(), 3);
        d.create_vcpus(20);
        assert_eq!(d.vcpus.len(), 3, "once");
    }

    #[test]
    fn first_shutdown_wins() {
        let mut d = Domain::new(1, false, 256, 2, 0);
        assert_eq!(d.shut_down(ShutdownReason::Crash), ShutdownReason::Crash);
        assert_eq!(d.shut_down(ShutdownReason::Poweroff), ShutdownReason::Crash);
    }

    #[test]
    fn a_preset_shutdown_code_wins() {
        let mut d = Domain::new(1, false, 256, 1, 0);
        d.shutdown_code = Some(1);
        assert_eq!(
            d.shut_down(ShutdownReason::Poweroff),
            ShutdownReason::Reboot
        );
    }

    #[test]
    fn reasons_are_bytes_as_in_xen() {
        assert_eq!(ShutdownReason::from_code(0x100), ShutdownReason::Poweroff);
        assert_eq!(ShutdownReason::from_code(3), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::from_code(77), ShutdownReason::Other(77));
    }

    #[test]
    fn vcpu_zero_starts_up_and_the_rest_offline() {
        let d = Domain::new(0, true, 1, 3, 5);
        assert!(d.vcpus[0].up);
        assert!(!d.vcpus[1].up && !d.vcpus[2].up);
        assert_eq!(d.vcpus[2].runstate.state, RunstateKind::Offline);
    }

    #[test]
    fn next_deadline_is_the_earliest_timer() {
        let mut v = Vcpu::new(0, true, 0);
        assert_eq!(v.next_deadline(), None);
        v.singleshot_deadline = Some(500);
        v.periodic = Some((100, 300));
        assert_eq!(v.next_deadline(), Some(300));
        v.blocked = Some(Some(900));
        assert_eq!(
            v.next_deadline(),
            Some(500),
            "a blocked vCPU's periodic timer is stopped"
        );
        v.singleshot_deadline = None;
        assert_eq!(v.next_deadline(), Some(900));
    }
}
