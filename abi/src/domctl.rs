//! `xen/include/public/domctl.h` (Xen 4.17): `__HYPERVISOR_domctl`, the
//! control domain's operations on one domain (create, pause, destroy,
//! query...). Only the structures rxen serves are typed here; the others
//! stay bytes in the union.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sysctl::XenctlBitmap;

/// `XEN_DOMCTL_INTERFACE_VERSION` in Xen 4.17: anything else is `-EACCES`.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;

/// `XEN_DOMCTL_createdomain`: [`XenDomctlCreatedomain`].
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// `XEN_DOMCTL_destroydomain`: no argument.
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// `XEN_DOMCTL_pausedomain`: no argument.
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// `XEN_DOMCTL_unpausedomain`: no argument.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// `XEN_DOMCTL_getdomaininfo`: [`XenDomctlGetdomaininfo`] out.
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// `XEN_DOMCTL_setvcpuaffinity`: [`XenDomctlVcpuaffinity`].
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// `XEN_DOMCTL_max_mem`: [`XenDomctlMaxMem`].
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// `XEN_DOMCTL_getvcpuinfo`.
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// `XEN_DOMCTL_max_vcpus`.
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// `XEN_DOMCTL_scheduler_op`.
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// `XEN_DOMCTL_setdomainhandle`: the 16-byte handle.
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// `XEN_DOMCTL_getvcpuaffinity`: [`XenDomctlVcpuaffinity`].
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// `XEN_DOMCTL_gethvmcontext`.
pub const XEN_DOMCTL_GETHVMCONTEXT: u32 = 33;
/// `XEN_DOMCTL_sethvmcontext`.
pub const XEN_DOMCTL_SETHVMCONTEXT: u32 = 34;

/// `XEN_DOMCTL_CDF_hvm`: an HVM or PVH guest.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `XEN_DOMCTL_CDF_hap`: hardware-assisted paging.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `XEN_DOMCTL_CDF_s3_integrity`: tboot checks memory over S3.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// `XEN_DOMCTL_CDF_oos_off`: no out-of-sync shadow page tables.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// `XEN_DOMCTL_CDF_xs_domain`: a xenstore domain.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// `XEN_DOMCTL_CDF_iommu`: the domain gets devices behind an IOMMU.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// `XEN_DOMCTL_CDF_nested_virt`: nested virtualization.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// `XEN_DOMCTL_CDF_vpmu`: a virtual PMU.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// `XEN_DOMCTL_GRANT_version_mask` (4.17): the grant version in `grant_opts`.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xF;

/// `struct xen_domctl_max_vcpus`: the number of vCPUs (as created).
pub const XEN_DOMCTL_MAX_VCPUS_SIZE: usize = 4;

/// `XEN_DOMINF_dying`: the domain is being destroyed.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_hvm_guest`: an HVM or PVH guest.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `XEN_DOMINF_shutdown`: the guest shut down (code in bits 16–23).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused`: paused by the control domain.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_blocked`: every vCPU waits for an event.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `XEN_DOMINF_running`: a vCPU is on a CPU now.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `XEN_DOMINF_hap`: hardware-assisted paging.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// `XEN_DOMINF_shutdownshift`: where the shutdown code sits in `flags`.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;

/// `XEN_X86_EMU_LAPIC` (arch-x86/xen.h): emulated local APIC.
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// `XEN_X86_EMU_IOAPIC` (arch-x86/xen.h): emulated IO-APIC.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// `XEN_X86_EMU_VPCI` (arch-x86/xen.h): emulated PCI config space.
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;

/// Bytes of the union `u` of [`XenDomctl`] (its `pad[128]`).
pub const XEN_DOMCTL_UNION_SIZE: usize = 128;

/// `struct xen_domctl`, 144 bytes: the command, the interface version, the
/// target domain and the command's argument (a union, kept as bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct XenDomctl {
    /// `cmd`: a `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// `interface_version`: [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// `domain`: the target (IN/OUT for some commands).
    pub domain: u16,
    /// Padding to the union.
    pub pad: [u16; 3],
    /// `u`: the command's argument.
    pub u: [u8; XEN_DOMCTL_UNION_SIZE],
}

impl XenDomctl {
    /// A domctl `cmd` on `domain` with Xen 4.17's interface version and `arg` at
    /// the start of its union (at most [`XEN_DOMCTL_UNION_SIZE`] bytes; more are
    /// cut off).
    pub fn new(cmd: u32, domain: u16, arg: &[u8]) -> Self {
        let mut u = [0; XEN_DOMCTL_UNION_SIZE];
        let n = arg.len().min(XEN_DOMCTL_UNION_SIZE);
        u[..n].copy_from_slice(&arg[..n]);
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u,
        }
    }
}

/// `struct xen_arch_domainconfig` (arch-x86/xen.h), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*`: what the hypervisor emulates for the domain.
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED` and friends.
    pub misc_flags: u32,
}

/// `struct xen_domctl_createdomain` (4.17), 64 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlCreatedomain {
    /// XSM label.
    pub ssidref: u32,
    /// The domain's 16-byte handle (a UUID).
    pub handle: [u8; 16],
    /// `XEN_DOMCTL_CDF_*`.
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    /// vCPUs the domain may have.
    pub max_vcpus: u32,
    /// Highest event-channel port.
    pub max_evtchn_port: u32,
    /// Grant-table frames.
    pub max_grant_frames: i32,
    /// Maptrack frames.
    pub max_maptrack_frames: i32,
    /// Grant version and options.
    pub grant_opts: u32,
    /// Processor-trace buffer size.
    pub vmtrace_size: u32,
    /// CPU pool.
    pub cpupool_id: u32,
    /// Architecture part.
    pub arch: XenArchDomainconfig,
}

impl XenDomctlCreatedomain {
    /// What libxl asks for a PVH guest with `max_vcpus` (`libxl_x86.c`): an HVM
    /// container on hardware-assisted paging, the local APIC emulated, grant
    /// table v1 with 32 frames and 1024 maptrack frames, ports up to 1023.
    pub fn pvh(max_vcpus: u32) -> Self {
        Self {
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus,
            max_evtchn_port: 1023,
            max_grant_frames: 32,
            max_maptrack_frames: 1024,
            grant_opts: 1,
            arch: XenArchDomainconfig {
                emulation_flags: XEN_X86_EMU_LAPIC,
                misc_flags: 0,
            },
            ..Default::default()
        }
    }
}

/// `struct xen_domctl_getdomaininfo` (4.17), 112 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlGetdomaininfo {
    /// The domain's id.
    pub domain: u16,
    /// Padding.
    pub pad0: u16,
    /// `XEN_DOMINF_*`, and the shutdown code in bits 16–23.
    pub flags: u32,
    /// Pages it owns.
    pub tot_pages: u64,
    /// Most pages it may own.
    pub max_pages: u64,
    /// Pages claimed but not yet allocated.
    pub outstanding_pages: u64,
    /// Pages shared (memory sharing).
    pub shr_pages: u64,
    /// Pages paged out.
    pub paged_pages: u64,
    /// Frame of its shared-info page.
    pub shared_info_frame: u64,
    /// CPU time its vCPUs ran, in ns.
    pub cpu_time: u64,
    /// vCPUs up.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id (`~0`: none).
    pub max_vcpu_id: u32,
    /// XSM label.
    pub ssidref: u32,
    /// Its 16-byte handle.
    pub handle: [u8; 16],
    /// Its CPU pool.
    pub cpupool: u32,
    /// Guest-physical address bits.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad1: [u8; 7],
    /// Architecture part.
    pub arch_config: XenArchDomainconfig,
}

/// `XEN_DOMCTL_SCHEDOP_putinfo`: set the domain's parameters.
pub const XEN_DOMCTL_SCHEDOP_PUTINFO: u32 = 0;
/// `XEN_DOMCTL_SCHEDOP_getinfo`: the domain's parameters.
pub const XEN_DOMCTL_SCHEDOP_GETINFO: u32 = 1;
/// `XEN_DOMCTL_SCHEDOP_putvcpuinfo`: per-vCPU parameters (RTDS).
pub const XEN_DOMCTL_SCHEDOP_PUTVCPUINFO: u32 = 2;
/// `XEN_DOMCTL_SCHEDOP_getvcpuinfo`: per-vCPU parameters (RTDS).
pub const XEN_DOMCTL_SCHEDOP_GETVCPUINFO: u32 = 3;
/// `XEN_DOMCTL_SCHEDRT_extra`: an RTDS vCPU may run beyond its budget.
pub const XEN_DOMCTL_SCHEDRT_EXTRA: u32 = 1;

/// `XEN_VCPUAFFINITY_HARD`: the pCPUs a vCPU may run on (pinning).
pub const XEN_VCPUAFFINITY_HARD: u32 = 1 << 0;
/// `XEN_VCPUAFFINITY_SOFT`: the pCPUs a vCPU prefers.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 1 << 1;
/// `XEN_VCPUAFFINITY_FORCE`: undo a temporary pinning (`SCHEDOP_pin_override`)
/// first.
pub const XEN_VCPUAFFINITY_FORCE: u32 = 1 << 2;

/// `struct xen_domctl_vcpuaffinity`, 40 bytes (`XEN_DOMCTL_{set,get}vcpuaffinity`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlVcpuaffinity {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// IN: `XEN_VCPUAFFINITY_*`: which of the two maps to set or get.
    pub flags: u32,
    /// IN/OUT: the hard affinity (set: on return, the one in force).
    pub cpumap_hard: XenctlBitmap,
    /// IN/OUT: the soft affinity (set: on return, the one in force).
    pub cpumap_soft: XenctlBitmap,
}

/// `struct xen_domctl_getvcpuinfo`, 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlGetvcpuinfo {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// Up (not hot-unplugged or never started).
    pub online: u8,
    /// Waiting for an event.
    pub blocked: u8,
    /// On a CPU now.
    pub running: u8,
    /// Padding.
    pub pad0: u8,
    /// CPU time it ran, in ns.
    pub cpu_time: u64,
    /// The physical CPU it runs on, or last ran on.
    pub cpu: u32,
    /// Padding.
    pub pad1: u32,
}

/// `struct xen_domctl_sched_credit`, the credit part of
/// [`XenDomctlSchedulerOp::u`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlSchedCredit {
    /// Relative share (0 in a putinfo: unchanged).
    pub weight: u16,
    /// Percent of a CPU, 0 = none (0xffff in a putinfo: unchanged).
    pub cap: u16,
}

/// `struct xen_domctl_sched_rtds`, the RTDS part of
/// [`XenDomctlSchedulerOp::u`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlSchedRtds {
    /// Period in µs.
    pub period: u32,
    /// Budget per period in µs.
    pub budget: u32,
    /// `XEN_DOMCTL_SCHEDRT_*`.
    pub flags: u32,
}

/// `struct xen_domctl_scheduler_op`, 24 bytes: the scheduler, the command
/// and its parameters (credit: weight and cap as two `u16`; RTDS: period,
/// budget in µs and flags as three `u32`), kept as bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlSchedulerOp {
    /// `XEN_SCHEDULER_*` of the scheduler the caller means.
    pub sched_id: u32,
    /// `XEN_DOMCTL_SCHEDOP_*`.
    pub cmd: u32,
    /// The parameters.
    pub u: [u8; 16],
}

/// `struct xen_domctl_hvmcontext`, 16 bytes: the caller's buffer for the
/// HVM context ([`crate::hvm_save`]) of `gethvmcontext` and `sethvmcontext`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlHvmcontext {
    /// IN: the buffer's size (or the context's, to set); OUT (get): the
    /// bytes written, or the size needed when `buffer` is null.
    pub size: u32,
    /// Padding to the handle.
    pub pad: u32,
    /// `XEN_GUEST_HANDLE_64(uint8)`: the buffer (0: only ask the size).
    pub buffer: u64,
}

/// `struct xen_domctl_max_mem`, 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlMaxMem {
    /// The new limit in KiB.
    pub max_memkb: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_are_xen_4_17s() {
        assert_eq!(size_of::<XenDomctl>(), 144);
        assert_eq!(offset_of!(XenDomctl, domain), 8);
        assert_eq!(offset_of!(XenDomctl, u), 16);
        assert_eq!(size_of::<XenDomctlGetvcpuinfo>(), 24);
        assert_eq!(offset_of!(XenDomctlGetvcpuinfo, cpu_time), 8);
        assert_eq!(offset_of!(XenDomctlGetvcpuinfo, cpu), 16);
        assert_eq!(size_of::<crate::sysctl::XenctlBitmap>(), 16);
        assert_eq!(size_of::<XenDomctlVcpuaffinity>(), 40);
        assert_eq!(offset_of!(XenDomctlVcpuaffinity, flags), 4);
        assert_eq!(offset_of!(XenDomctlVcpuaffinity, cpumap_hard), 8);
        assert_eq!(offset_of!(XenDomctlVcpuaffinity, cpumap_soft), 24);
        assert_eq!(size_of::<XenDomctlSchedulerOp>(), 24);
        assert_eq!(offset_of!(XenDomctlSchedulerOp, u), 8);
        assert_eq!(size_of::<XenDomctlCreatedomain>(), 64);
        assert_eq!(offset_of!(XenDomctlCreatedomain, handle), 4);
        assert_eq!(offset_of!(XenDomctlCreatedomain, flags), 20);
        assert_eq!(offset_of!(XenDomctlCreatedomain, max_vcpus), 28);
        assert_eq!(offset_of!(XenDomctlCreatedomain, grant_opts), 44);
        assert_eq!(offset_of!(XenDomctlCreatedomain, cpupool_id), 52);
        assert_eq!(offset_of!(XenDomctlCreatedomain, arch), 56);
        assert_eq!(size_of::<XenDomctlHvmcontext>(), 16);
        assert_eq!(offset_of!(XenDomctlHvmcontext, size), 0);
        assert_eq!(offset_of!(XenDomctlHvmcontext, buffer), 8);
        assert_eq!(size_of::<XenDomctlGetdomaininfo>(), 112);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, flags), 4);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, tot_pages), 8);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, shared_info_frame), 48);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, cpu_time), 56);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, nr_online_vcpus), 64);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, max_vcpu_id), 68);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, ssidref), 72);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, handle), 76);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, cpupool), 92);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, gpaddr_bits), 96);
        assert_eq!(offset_of!(XenDomctlGetdomaininfo, arch_config), 104);
    }

    #[test]
    fn a_domctl_carries_its_version_and_argument() {
        let op = XenDomctl::new(XEN_DOMCTL_MAX_VCPUS, 7, &4u32.to_le_bytes());
        assert_eq!(
            (op.cmd, op.interface_version, op.domain),
            (XEN_DOMCTL_MAX_VCPUS, 0x15, 7)
        );
        assert_eq!(&op.u[..5], &[4, 0, 0, 0, 0]);
        // An argument longer than the union is cut off, not a panic.
        let op = XenDomctl::new(XEN_DOMCTL_SETDOMAINHANDLE, 1, &[0xab; 200]);
        assert!(op.u.iter().all(|&b| b == 0xab));
        let pvh = XenDomctlCreatedomain::pvh(2);
        assert_eq!(pvh.flags, XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP);
        assert_eq!(
            (pvh.max_vcpus, pvh.arch.emulation_flags),
            (2, XEN_X86_EMU_LAPIC)
        );
    }
}
