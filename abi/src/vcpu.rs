//! `xen/include/public/vcpu.h`: `__HYPERVISOR_vcpu_op` sub-ops, the runstate
//! area, timers and the vcpu_info/time-area registration arguments.

use crate::xen::GuestHandle;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VCPUOP_initialise` (vcpu.h): set a vCPU's initial context.
pub const VCPUOP_INITIALISE: u32 = 0;
/// `VCPUOP_up` (vcpu.h): bring a vCPU up.
pub const VCPUOP_UP: u32 = 1;
/// `VCPUOP_down` (vcpu.h): take a vCPU down.
pub const VCPUOP_DOWN: u32 = 2;
/// `VCPUOP_is_up` (vcpu.h): returns 1 if the vCPU is up.
pub const VCPUOP_IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info` (vcpu.h): arg is a [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area` (vcpu.h): arg is a
/// [`VcpuRegisterRunstateMemoryArea`].
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer` (vcpu.h): arg is a [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer` (vcpu.h): arg NULL.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer` (vcpu.h): arg is a [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer` (vcpu.h): arg NULL.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info` (vcpu.h): arg is a [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi` (vcpu.h): arg NULL.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid` (vcpu.h): arg is a [`VcpuGetPhysid`].
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area` (vcpu.h): arg is a
/// [`VcpuRegisterTimeMemoryArea`].
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// `RUNSTATE_running` (vcpu.h): running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable` (vcpu.h): runnable but not scheduled.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked` (vcpu.h): blocked (idle).
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline` (vcpu.h): offline (down, or preempted by Xen).
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `XEN_RUNSTATE_UPDATE` (vcpu.h): set in `state_entry_time` while the
/// guest-mapped runstate area is being updated.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `_VCPU_SSHOTTMR_future` (vcpu.h): bit number of [`VCPU_SSHOTTMR_FUTURE`].
pub const VCPU_SSHOTTMR_FUTURE_SHIFT: u32 = 0;
/// `VCPU_SSHOTTMR_future` (vcpu.h): request a timeout in the future (else
/// `-ETIME`); 4.17.1+ notes the hypervisor may ignore it.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << VCPU_SSHOTTMR_FUTURE_SHIFT;

/// `struct vcpu_runstate_info` (vcpu.h), 48 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// Implicit C padding.
    pub _pad0: [u8; 4],
    /// System time (ns) when the current state was entered; may carry
    /// [`XEN_RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Time (ns) spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}

/// `struct vcpu_register_runstate_memory_area` (vcpu.h): a union of handle,
/// pointer and `uint64_t p`, all one 8-byte address.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest address of a [`VcpuRunstateInfo`] (`addr.h`/`addr.v`/`addr.p`).
    pub addr: GuestHandle,
}

/// `struct vcpu_set_periodic_timer` (vcpu.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}

/// `struct vcpu_set_singleshot_timer` (vcpu.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time of the timeout, in nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*` flags.
    pub flags: u32,
    /// Implicit C tail padding.
    pub _pad0: [u8; 4],
}

/// `struct vcpu_register_vcpu_info` (vcpu.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame (GFN for HVM/PVH) of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// Offset within that page.
    pub offset: u32,
    /// Unused.
    pub rsvd: u32,
}

/// `struct vcpu_get_physid` (vcpu.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuGetPhysid {
    /// x86: APIC id in bits 31:0, ACPI id in bits 63:32.
    pub phys_id: u64,
}

impl VcpuGetPhysid {
    /// `xen_vcpu_physid_to_x86_apicid` (vcpu.h).
    pub const fn x86_apicid(&self) -> u32 {
        self.phys_id as u32
    }
    /// `xen_vcpu_physid_to_x86_acpiid` (vcpu.h).
    pub const fn x86_acpiid(&self) -> u32 {
        (self.phys_id >> 32) as u32
    }
}

/// `struct vcpu_register_time_memory_area` (vcpu.h): a union of handle,
/// pointer and `uint64_t p`, all one 8-byte address.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest address of a `vcpu_time_info` (`addr.h`/`addr.v`/`addr.p`).
    pub addr: GuestHandle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 5);
        assert_eq!(VCPUOP_SET_SINGLESHOT_TIMER, 8);
        assert_eq!(VCPUOP_REGISTER_VCPU_INFO, 10);
        assert_eq!(VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, 13);
        assert_eq!(RUNSTATE_OFFLINE, 3);
        assert_eq!(VCPU_SSHOTTMR_FUTURE, 1);
        assert_eq!(XEN_RUNSTATE_UPDATE, 0x8000_0000_0000_0000);
    }

    #[test]
    fn layouts() {
        // C: int state@0, (4 pad), u64 state_entry_time@8, u64 time[4]@16; 48.
        assert_layout!(VcpuRunstateInfo, size = 48, {
            state: 0, _pad0: 4, state_entry_time: 8, time: 16,
        });
        // C: union { handle; pointer; uint64_t } = 8.
        assert_layout!(VcpuRegisterRunstateMemoryArea, size = 8, { addr: 0 });
        assert_layout!(VcpuRegisterTimeMemoryArea, size = 8, { addr: 0 });
        assert_layout!(VcpuSetPeriodicTimer, size = 8, { period_ns: 0 });
        // C: u64@0, u32 flags@8, tail pad to 16.
        assert_layout!(VcpuSetSingleshotTimer, size = 16, {
            timeout_abs_ns: 0, flags: 8, _pad0: 12,
        });
        // C: u64 mfn@0, u32 offset@8, u32 rsvd@12.
        assert_layout!(VcpuRegisterVcpuInfo, size = 16, { mfn: 0, offset: 8, rsvd: 12 });
        assert_layout!(VcpuGetPhysid, size = 8, { phys_id: 0 });
        let p = VcpuGetPhysid {
            phys_id: 0x0000_0005_0000_0007,
        };
        assert_eq!((p.x86_apicid(), p.x86_acpiid()), (7, 5));
    }
}
