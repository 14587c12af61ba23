//! `xen/include/public/sysctl.h` (Xen 4.17): `__HYPERVISOR_sysctl`, the
//! control domain's operations on the whole machine (physical facts, the
//! list of domains, the scheduler...). Only the structures rxen serves are
//! typed here.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_SYSCTL_INTERFACE_VERSION` in Xen 4.17: anything else is `-EACCES`.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;

/// `XEN_SYSCTL_readconsole`.
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// `XEN_SYSCTL_physinfo`: [`XenSysctlPhysinfo`] out.
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// `XEN_SYSCTL_sched_id`: one `u32` out.
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// `XEN_SYSCTL_getdomaininfolist`: [`XenSysctlGetdomaininfolist`].
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// `XEN_SYSCTL_debug_keys`: [`XenSysctlDebugKeys`] in (`xl debug-keys`).
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// `XEN_SYSCTL_cpupool_op`.
pub const XEN_SYSCTL_CPUPOOL_OP: u32 = 18;

/// `XEN_SYSCTL_PHYSCAP_hvm`: HVM guests can be run.
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// `XEN_SYSCTL_PHYSCAP_pv`: PV guests can be run.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// `XEN_SYSCTL_PHYSCAP_hap`: hardware-assisted paging.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v1`: grant tables version 1 (bit 8 in 4.17, after
/// `vmtrace` and `vpmu`; Xen 4.17 under QEMU reports 0x33f).
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v2`: grant tables version 2.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;

/// `XEN_SCHEDULER_CREDIT` (domctl.h).
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// `XEN_SCHEDULER_RTDS` (domctl.h).
pub const XEN_SCHEDULER_RTDS: u32 = 8;

/// `XEN_SYSCTL_CPUPOOL_OP_CREATE`.
pub const XEN_SYSCTL_CPUPOOL_OP_CREATE: u32 = 1;
/// `XEN_SYSCTL_CPUPOOL_OP_DESTROY`.
pub const XEN_SYSCTL_CPUPOOL_OP_DESTROY: u32 = 2;
/// `XEN_SYSCTL_CPUPOOL_OP_INFO`: the first pool from `cpupool_id` up.
pub const XEN_SYSCTL_CPUPOOL_OP_INFO: u32 = 3;
/// `XEN_SYSCTL_CPUPOOL_OP_ADDCPU`.
pub const XEN_SYSCTL_CPUPOOL_OP_ADDCPU: u32 = 4;
/// `XEN_SYSCTL_CPUPOOL_OP_RMCPU`.
pub const XEN_SYSCTL_CPUPOOL_OP_RMCPU: u32 = 5;
/// `XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN`.
pub const XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN: u32 = 6;
/// `XEN_SYSCTL_CPUPOOL_OP_FREEINFO`: the CPUs in no pool.
pub const XEN_SYSCTL_CPUPOOL_OP_FREEINFO: u32 = 7;

/// `struct xen_sysctl_debug_keys`: the keys to press, as if typed on the
/// hypervisor's console.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlDebugKeys {
    /// IN: guest handle of the keys.
    pub keys: u64,
    /// IN: how many.
    pub nr_keys: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct xen_sysctl_readconsole`, 24 bytes (`xl dmesg`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlReadconsole {
    /// IN: non-zero: clear the history after reading.
    pub clear: u8,
    /// IN: non-zero: start at `index`.
    pub incremental: u8,
    /// Padding.
    pub pad: [u8; 2],
    /// IN: where to start (incremental); OUT: the index after what was read.
    pub index: u32,
    /// IN: guest handle of the buffer.
    pub buffer: u64,
    /// IN: the buffer's size; OUT: bytes written.
    pub count: u32,
    /// Padding.
    pub pad1: u32,
}

/// `struct xenctl_bitmap` (xen.h), 16 bytes: a guest buffer of bits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenctlBitmap {
    /// Guest handle of the bytes.
    pub bitmap: u64,
    /// Bits the buffer holds.
    pub nr_bits: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct xen_sysctl_cpupool_op`, 40 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlCpupoolOp {
    /// `XEN_SYSCTL_CPUPOOL_OP_*`.
    pub op: u32,
    /// IN/OUT: the pool.
    pub cpupool_id: u32,
    /// OUT: its scheduler.
    pub sched_id: u32,
    /// IN: a domain (MOVEDOMAIN).
    pub domid: u32,
    /// IN: a CPU (ADDCPU, RMCPU).
    pub cpu: u32,
    /// OUT: its domains.
    pub n_dom: u32,
    /// OUT: its CPUs.
    pub cpumap: XenctlBitmap,
}

/// Bytes of the union `u` of [`XenSysctl`] (its `pad[128]`).
pub const XEN_SYSCTL_UNION_SIZE: usize = 128;

/// `struct xen_sysctl`, 136 bytes: the command, the interface version and
/// the command's argument (a union, kept as bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct XenSysctl {
    /// `cmd`: a `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// `interface_version`: [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// `u`: the command's argument.
    pub u: [u8; XEN_SYSCTL_UNION_SIZE],
}

/// `struct xen_sysctl_physinfo` (4.17), 112 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlPhysinfo {
    /// Threads per core.
    pub threads_per_core: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// CPUs online.
    pub nr_cpus: u32,
    /// Highest CPU number.
    pub max_cpu_id: u32,
    /// NUMA nodes online.
    pub nr_nodes: u32,
    /// Highest node number.
    pub max_node_id: u32,
    /// CPU frequency in kHz.
    pub cpu_khz: u32,
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
    /// `XEN_SYSCTL_PHYSCAP_X86_*`.
    pub arch_capabilities: u32,
    /// Padding.
    pub pad: u32,
    /// Host RAM in pages.
    pub total_pages: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Pages waiting to be scrubbed.
    pub scrub_pages: u64,
    /// Pages claimed.
    pub outstanding_pages: u64,
    /// Highest machine frame.
    pub max_mfn: u64,
    /// The CPU's feature words (Xen's featureset order: 1.EDX, 1.ECX,
    /// 0x80000001.EDX, 0x80000001.ECX, 0xD.1.EAX, 7.0.EBX, 7.0.ECX,
    /// 0x80000007.EDX).
    pub hw_cap: [u32; 8],
}

/// `struct xen_sysctl_getdomaininfolist`, 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlGetdomaininfolist {
    /// IN: the first domain id wanted.
    pub first_domain: u16,
    /// Padding.
    pub pad: u16,
    /// IN: room in `buffer`, in entries.
    pub max_domains: u32,
    /// IN: guest handle of `xen_domctl_getdomaininfo` entries.
    pub buffer: u64,
    /// OUT: entries written.
    pub num_domains: u32,
    /// Padding.
    pub pad1: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_are_xen_4_17s() {
        assert_eq!(size_of::<XenSysctl>(), 136);
        assert_eq!(offset_of!(XenSysctl, u), 8);
        assert_eq!(size_of::<XenSysctlPhysinfo>(), 112);
        assert_eq!(offset_of!(XenSysctlPhysinfo, capabilities), 28);
        assert_eq!(offset_of!(XenSysctlPhysinfo, total_pages), 40);
        assert_eq!(offset_of!(XenSysctlPhysinfo, max_mfn), 72);
        assert_eq!(offset_of!(XenSysctlPhysinfo, hw_cap), 80);
        assert_eq!(size_of::<XenSysctlDebugKeys>(), 16);
        assert_eq!(offset_of!(XenSysctlDebugKeys, nr_keys), 8);
        assert_eq!(size_of::<XenSysctlReadconsole>(), 24);
        assert_eq!(offset_of!(XenSysctlReadconsole, index), 4);
        assert_eq!(offset_of!(XenSysctlReadconsole, buffer), 8);
        assert_eq!(offset_of!(XenSysctlReadconsole, count), 16);
        assert_eq!(size_of::<XenSysctlCpupoolOp>(), 40);
        assert_eq!(offset_of!(XenSysctlCpupoolOp, n_dom), 20);
        assert_eq!(offset_of!(XenSysctlCpupoolOp, cpumap), 24);
        assert_eq!(size_of::<XenSysctlGetdomaininfolist>(), 24);
        assert_eq!(offset_of!(XenSysctlGetdomaininfolist, max_domains), 4);
        assert_eq!(offset_of!(XenSysctlGetdomaininfolist, buffer), 8);
        assert_eq!(offset_of!(XenSysctlGetdomaininfolist, num_domains), 16);
    }
}
