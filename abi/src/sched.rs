//! `xen/include/public/sched.h`: `__HYPERVISOR_sched_op` sub-ops, shutdown
//! reasons and their argument structures.

use crate::xen::{DomId, GuestHandle};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `SCHEDOP_yield` (sched.h): voluntarily yield the CPU; arg NULL.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block` (sched.h): block until an event arrives; arg NULL.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown` (sched.h): arg is a [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll` (sched.h): arg is a [`SchedPoll`].
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown` (sched.h): arg is a [`SchedRemoteShutdown`].
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code` (sched.h): latch a shutdown code; arg is a [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog` (sched.h): arg is a [`SchedWatchdog`].
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// `SCHEDOP_pin_override` (sched.h): arg is a [`SchedPinOverride`] (hwdom only).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// `SHUTDOWN_poweroff` (sched.h): exited normally; clean up and kill.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot` (sched.h): clean up, kill, restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend` (sched.h): clean up, save suspend info, kill.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash` (sched.h): the domain crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog` (sched.h): restart because a watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset` (sched.h): soft reset, keep the domain.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// `SHUTDOWN_MAX` (sched.h): maximum valid shutdown reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// `struct sched_shutdown` (sched.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll` (sched.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedPoll {
    /// Handle to an array of `evtchn_port_t`.
    pub ports: GuestHandle,
    /// Number of ports.
    pub nr_ports: u32,
    /// Implicit C padding.
    pub _pad0: [u8; 4],
    /// Absolute system-time timeout in ns (0: none).
    pub timeout: u64,
}

/// `struct sched_remote_shutdown` (sched.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    /// Remote domain.
    pub domain_id: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_watchdog` (sched.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedWatchdog {
    /// Watchdog id (0 to allocate a new one).
    pub id: u32,
    /// Timeout in seconds (0 to destroy).
    pub timeout: u32,
}

/// `struct sched_pin_override` (sched.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedPinOverride {
    /// Physical CPU to pin to (-1 to undo).
    pub pcpu: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(SCHEDOP_POLL, 3);
        assert_eq!(SCHEDOP_PIN_OVERRIDE, 7);
        assert_eq!(SHUTDOWN_CRASH, 3);
        assert_eq!(SHUTDOWN_SOFT_RESET, 5);
    }

    #[test]
    fn layouts() {
        assert_layout!(SchedShutdown, size = 4, { reason: 0 });
        // C: handle@0, uint nr_ports@8, (4 pad), u64 timeout@16; 24.
        assert_layout!(SchedPoll, size = 24, { ports: 0, nr_ports: 8, timeout: 16 });
        // C: domid_t@0, (2 pad), uint reason@4; 8.
        assert_layout!(SchedRemoteShutdown, size = 8, { domain_id: 0, reason: 4 });
        assert_layout!(SchedWatchdog, size = 8, { id: 0, timeout: 4 });
        assert_layout!(SchedPinOverride, size = 4, { pcpu: 0 });
    }
}
