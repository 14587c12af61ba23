//! Core definitions of `xen/include/public/xen.h` with the x86_64 parts of
//! `arch-x86/xen.h` and `arch-x86/xen-x86_64.h`: hypercall numbers, reserved
//! domain ids, VIRQs, the multicall entry, the per-vCPU info and the shared
//! info page.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `domid_t` (xen.h): a domain id.
pub type DomId = u16;
/// `XEN_GUEST_HANDLE(...)` (arch-x86/xen.h): a guest virtual (PV) or guest
/// physical (HVM/PVH) address, 8 bytes on x86_64.
pub type GuestHandle = u64;
/// `xen_ulong_t` (arch-x86/xen.h): `unsigned long`, 8 bytes on x86_64.
pub type XenUlong = u64;
/// `xen_pfn_t` (arch-x86/xen.h): a frame number, 8 bytes on x86_64.
pub type XenPfn = u64;

// ---------------------------------------------------------------------------
// Hypercall numbers (`__HYPERVISOR_*`).

/// `__HYPERVISOR_set_trap_table` (xen.h).
pub const HYPERVISOR_SET_TRAP_TABLE: u64 = 0;
/// `__HYPERVISOR_mmu_update` (xen.h).
pub const HYPERVISOR_MMU_UPDATE: u64 = 1;
/// `__HYPERVISOR_set_gdt` (xen.h).
pub const HYPERVISOR_SET_GDT: u64 = 2;
/// `__HYPERVISOR_stack_switch` (xen.h).
pub const HYPERVISOR_STACK_SWITCH: u64 = 3;
/// `__HYPERVISOR_set_callbacks` (xen.h).
pub const HYPERVISOR_SET_CALLBACKS: u64 = 4;
/// `__HYPERVISOR_fpu_taskswitch` (xen.h).
pub const HYPERVISOR_FPU_TASKSWITCH: u64 = 5;
/// `__HYPERVISOR_sched_op_compat` (xen.h; compat since 0x00030101).
pub const HYPERVISOR_SCHED_OP_COMPAT: u64 = 6;
/// `__HYPERVISOR_platform_op` (xen.h).
pub const HYPERVISOR_PLATFORM_OP: u64 = 7;
/// `__HYPERVISOR_set_debugreg` (xen.h).
pub const HYPERVISOR_SET_DEBUGREG: u64 = 8;
/// `__HYPERVISOR_get_debugreg` (xen.h).
pub const HYPERVISOR_GET_DEBUGREG: u64 = 9;
/// `__HYPERVISOR_update_descriptor` (xen.h).
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u64 = 10;
/// `__HYPERVISOR_memory_op` (xen.h).
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_multicall` (xen.h).
pub const HYPERVISOR_MULTICALL: u64 = 13;
/// `__HYPERVISOR_update_va_mapping` (xen.h).
pub const HYPERVISOR_UPDATE_VA_MAPPING: u64 = 14;
/// `__HYPERVISOR_set_timer_op` (xen.h).
pub const HYPERVISOR_SET_TIMER_OP: u64 = 15;
/// `__HYPERVISOR_event_channel_op_compat` (xen.h; compat since 0x00030202).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u64 = 16;
/// `__HYPERVISOR_xen_version` (xen.h).
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io` (xen.h).
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_physdev_op_compat` (xen.h; compat since 0x00030202).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u64 = 19;
/// `__HYPERVISOR_grant_table_op` (xen.h).
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
/// `__HYPERVISOR_vm_assist` (xen.h).
pub const HYPERVISOR_VM_ASSIST: u64 = 21;
/// `__HYPERVISOR_update_va_mapping_otherdomain` (xen.h).
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
/// `__HYPERVISOR_iret` (xen.h; x86 only).
pub const HYPERVISOR_IRET: u64 = 23;
/// `__HYPERVISOR_vcpu_op` (xen.h).
pub const HYPERVISOR_VCPU_OP: u64 = 24;
/// `__HYPERVISOR_set_segment_base` (xen.h; x86/64 only).
pub const HYPERVISOR_SET_SEGMENT_BASE: u64 = 25;
/// `__HYPERVISOR_mmuext_op` (xen.h).
pub const HYPERVISOR_MMUEXT_OP: u64 = 26;
/// `__HYPERVISOR_xsm_op` (xen.h).
pub const HYPERVISOR_XSM_OP: u64 = 27;
/// `__HYPERVISOR_nmi_op` (xen.h).
pub const HYPERVISOR_NMI_OP: u64 = 28;
/// `__HYPERVISOR_sched_op` (xen.h).
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `__HYPERVISOR_callback_op` (xen.h).
pub const HYPERVISOR_CALLBACK_OP: u64 = 30;
/// `__HYPERVISOR_xenoprof_op` (xen.h).
pub const HYPERVISOR_XENOPROF_OP: u64 = 31;
/// `__HYPERVISOR_event_channel_op` (xen.h).
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `__HYPERVISOR_physdev_op` (xen.h).
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
/// `__HYPERVISOR_hvm_op` (xen.h).
pub const HYPERVISOR_HVM_OP: u64 = 34;
/// `__HYPERVISOR_sysctl` (xen.h).
pub const HYPERVISOR_SYSCTL: u64 = 35;
/// `__HYPERVISOR_domctl` (xen.h).
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `__HYPERVISOR_kexec_op` (xen.h).
pub const HYPERVISOR_KEXEC_OP: u64 = 37;
/// `__HYPERVISOR_tmem_op` (xen.h).
pub const HYPERVISOR_TMEM_OP: u64 = 38;
/// `__HYPERVISOR_argo_op` (xen.h).
pub const HYPERVISOR_ARGO_OP: u64 = 39;
/// `__HYPERVISOR_xenpmu_op` (xen.h).
pub const HYPERVISOR_XENPMU_OP: u64 = 40;
/// `__HYPERVISOR_dm_op` (xen.h).
pub const HYPERVISOR_DM_OP: u64 = 41;
/// `__HYPERVISOR_hypfs_op` (xen.h).
pub const HYPERVISOR_HYPFS_OP: u64 = 42;
/// `__HYPERVISOR_arch_0` (xen.h): first architecture-specific hypercall.
pub const HYPERVISOR_ARCH_0: u64 = 48;
/// `__HYPERVISOR_arch_1` (xen.h; x86: `__HYPERVISOR_mca`).
pub const HYPERVISOR_ARCH_1: u64 = 49;
/// `__HYPERVISOR_arch_2` (xen.h).
pub const HYPERVISOR_ARCH_2: u64 = 50;
/// `__HYPERVISOR_arch_3` (xen.h).
pub const HYPERVISOR_ARCH_3: u64 = 51;
/// `__HYPERVISOR_arch_4` (xen.h).
pub const HYPERVISOR_ARCH_4: u64 = 52;
/// `__HYPERVISOR_arch_5` (xen.h).
pub const HYPERVISOR_ARCH_5: u64 = 53;
/// `__HYPERVISOR_arch_6` (xen.h).
pub const HYPERVISOR_ARCH_6: u64 = 54;
/// `__HYPERVISOR_arch_7` (xen.h).
pub const HYPERVISOR_ARCH_7: u64 = 55;

// ---------------------------------------------------------------------------
// Virtual interrupts (`VIRQ_*`, the `virq` field of `evtchn_bind_virq`).

/// `VIRQ_TIMER` (xen.h): per-vCPU timebase update and/or requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG` (xen.h): per-vCPU request to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE` (xen.h): global (dom0), bytes received on emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC` (xen.h): global (dom0), exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF` (xen.h): global (dom0), trace buffer has records available.
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER` (xen.h): global (dom0), a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF` (xen.h): per-vCPU, XenOprofile sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING` (xen.h): global (dom0), bytes received on console.
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE` (xen.h): global (dom0), pCPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT` (xen.h): global (dom0), a memory event has occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO` (xen.h): global, Argo interdomain message notification.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM` (xen.h): global (dom0), low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU` (xen.h): per-vCPU PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// `VIRQ_ARCH_0` (xen.h): first architecture-specific VIRQ (x86: `VIRQ_MCA`).
pub const VIRQ_ARCH_0: u32 = 16;
/// `VIRQ_ARCH_1` (xen.h).
pub const VIRQ_ARCH_1: u32 = 17;
/// `VIRQ_ARCH_2` (xen.h).
pub const VIRQ_ARCH_2: u32 = 18;
/// `VIRQ_ARCH_3` (xen.h).
pub const VIRQ_ARCH_3: u32 = 19;
/// `VIRQ_ARCH_4` (xen.h).
pub const VIRQ_ARCH_4: u32 = 20;
/// `VIRQ_ARCH_5` (xen.h).
pub const VIRQ_ARCH_5: u32 = 21;
/// `VIRQ_ARCH_6` (xen.h).
pub const VIRQ_ARCH_6: u32 = 22;
/// `VIRQ_ARCH_7` (xen.h).
pub const VIRQ_ARCH_7: u32 = 23;
/// `NR_VIRQS` (xen.h): number of VIRQ numbers.
pub const NR_VIRQS: u32 = 24;

// ---------------------------------------------------------------------------
// console_io, vm_assist.

/// `CONSOLEIO_write` (xen.h): write a buffer to the Xen console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read` (xen.h): read from the Xen console.
pub const CONSOLEIO_READ: u32 = 1;

/// `VMASST_CMD_enable` (xen.h).
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `VMASST_CMD_disable` (xen.h).
pub const VMASST_CMD_DISABLE: u32 = 1;
/// `VMASST_TYPE_4gb_segments` (xen.h; x86/32 only).
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// `VMASST_TYPE_4gb_segments_notify` (xen.h; x86/32 only).
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// `VMASST_TYPE_writable_pagetables` (xen.h).
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// `VMASST_TYPE_pae_extended_cr3` (xen.h).
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// `VMASST_TYPE_architectural_iopl` (xen.h).
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// `VMASST_TYPE_runstate_update_flag` (xen.h).
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// `VMASST_TYPE_m2p_strict` (xen.h; x86/64 PV only).
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---------------------------------------------------------------------------
// Domain ids.

/// `DOMID_FIRST_RESERVED` (xen.h): ids at or above this are not ordinary domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// `DOMID_SELF` (xen.h): the calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// `DOMID_IO` (xen.h): the I/O pseudo-domain.
pub const DOMID_IO: DomId = 0x7FF1;
/// `DOMID_XEN` (xen.h): the hypervisor's own pseudo-domain.
pub const DOMID_XEN: DomId = 0x7FF2;
/// `DOMID_COW` (xen.h): copy-on-write (shared) pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// `DOMID_INVALID` (xen.h): pages with unknown owner.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// `DOMID_IDLE` (xen.h): the idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// `DOMID_MASK` (xen.h): mask for valid domain id values.
pub const DOMID_MASK: DomId = 0x7FFF;

// ---------------------------------------------------------------------------
// start_info flags (shared with `hvm_start_info.flags`).

/// `SIF_PRIVILEGED` (xen.h): the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN` (xen.h): this is the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD` (xen.h): `mod_start` is a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN` (xen.h): `mod_start` is a PFN.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS` (xen.h): tools understand a virtually mapped P2M.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `SIF_PM_MASK` (xen.h): byte reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

// ---------------------------------------------------------------------------
// Sizes.

/// `XEN_LEGACY_MAX_VCPUS` (arch-x86/xen.h): vCPUs with a `vcpu_info` slot in
/// the shared info page. (4.17 has no `MAX_VIRT_CPUS` in its public headers.)
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// Number of `xen_ulong_t` words in `shared_info.evtchn_pending`/`evtchn_mask`
/// (`sizeof(xen_ulong_t) * 8` in xen.h).
pub const EVTCHN_WORDS: usize = 64;

// ---------------------------------------------------------------------------
// Structures.

/// `struct multicall_entry` (xen.h): one call of a `__HYPERVISOR_multicall` batch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: XenUlong,
    /// Hypercall return value (OUT).
    pub result: XenUlong,
    /// Hypercall arguments.
    pub args: [XenUlong; 6],
}

/// `XEN_PVCLOCK_TSC_STABLE_BIT` (xen.h): `vcpu_time_info.flags` bit saying the
/// TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` (xen.h): `vcpu_time_info.flags` bit saying the
/// guest was stopped (paused).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (xen.h, interface > 0x040600): per-vCPU pvclock.
///
/// System time = `system_time + ((((tsc - tsc_timestamp) << tsc_shift) *
/// tsc_to_system_mul) >> 32)` (a negative `tsc_shift` shifts right).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Seqlock-like counter: odd while an update is in progress.
    pub version: u32,
    /// Padding (C `pad0`).
    pub pad0: u32,
    /// TSC at the last update of the time values.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC to nanoseconds multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// TSC shift applied before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding (C `pad1`).
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (arch-x86/xen-x86_64.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault (PV).
    pub cr2: u64,
    /// Padding so that `vcpu_info` is 64 bytes.
    pub pad: u64,
}

/// `struct vcpu_info` (xen.h): per-vCPU event state and time, 64 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set non-zero by Xen to signal a pending upcall.
    pub evtchn_upcall_pending: u8,
    /// Upcall mask (x86 has `XEN_HAVE_PV_UPCALL_MASK`; elsewhere `pad0`).
    pub evtchn_upcall_mask: u8,
    /// Implicit C padding before `evtchn_pending_sel`.
    pub _pad0: [u8; 6],
    /// Selector: bit `i` set when a port in `evtchn_pending[i]` is pending.
    pub evtchn_pending_sel: XenUlong,
    /// Architecture-specific part.
    pub arch: ArchVcpuInfo,
    /// This vCPU's pvclock.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (arch-x86/xen.h), x86_64 layout (48 bytes; the
/// `wc_sec_hi` member exists here only on x86_32).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Number of valid entries in the P2M table(s).
    pub max_pfn: u64,
    /// Frame of the list of frames of the list of P2M frames (PV).
    pub pfn_to_mfn_frame_list_list: XenPfn,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// cr3 of the address space where `p2m_vaddr` is valid (PV).
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list (PV).
    pub p2m_vaddr: u64,
    /// Generation count of the P2M mapping (odd while updating).
    pub p2m_generation: u64,
}

/// `struct shared_info` (xen.h), x86_64 layout: the page shared between Xen
/// and a domain (3136 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    /// The legacy per-vCPU info slots.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bits.
    pub evtchn_pending: [XenUlong; EVTCHN_WORDS],
    /// 2-level event channel mask bits.
    pub evtchn_mask: [XenUlong; EVTCHN_WORDS],
    /// Wallclock version counter (see `VcpuTimeInfo::version`).
    pub wc_version: u32,
    /// Wallclock seconds since the epoch (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits (in the generic struct on x86_64).
    pub wc_sec_hi: u32,
    /// Architecture-specific part.
    pub arch: ArchSharedInfo,
}

impl Default for SharedInfo {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn hypercall_numbers() {
        assert_eq!(HYPERVISOR_MEMORY_OP, 12);
        assert_eq!(HYPERVISOR_XEN_VERSION, 17);
        assert_eq!(HYPERVISOR_CONSOLE_IO, 18);
        assert_eq!(HYPERVISOR_GRANT_TABLE_OP, 20);
        assert_eq!(HYPERVISOR_VCPU_OP, 24);
        assert_eq!(HYPERVISOR_SCHED_OP, 29);
        assert_eq!(HYPERVISOR_EVENT_CHANNEL_OP, 32);
        assert_eq!(HYPERVISOR_HVM_OP, 34);
        assert_eq!(HYPERVISOR_HYPFS_OP, 42);
        assert_eq!(HYPERVISOR_ARCH_7, 55);
    }

    #[test]
    fn domids() {
        assert_eq!(DOMID_SELF, 0x7ff0);
        assert_eq!(DOMID_INVALID, 0x7ff4);
        assert_eq!(DOMID_IDLE, 0x7fff);
    }

    #[test]
    fn multicall_entry_layout() {
        // C: two xen_ulong_t then xen_ulong_t args[6]: 8 * 8 = 64 bytes.
        assert_layout!(MulticallEntry, size = 64, { op: 0, result: 8, args: 16 });
    }

    #[test]
    fn vcpu_time_info_layout() {
        // C: u32 version@0, u32 pad0@4, u64 tsc_timestamp@8, u64 system_time@16,
        // u32 tsc_to_system_mul@24, i8 tsc_shift@28, u8 flags@29, u8 pad1[2]@30; 32.
        assert_layout!(VcpuTimeInfo, size = 32, {
            version: 0, pad0: 4, tsc_timestamp: 8, system_time: 16,
            tsc_to_system_mul: 24, tsc_shift: 28, flags: 29, pad1: 30,
        });
    }

    #[test]
    fn vcpu_info_layout() {
        // C: u8@0, u8@1, (6 bytes padding), xen_ulong_t sel@8, arch (16)@16,
        // time (32)@32; "64 bytes (x86)".
        assert_layout!(ArchVcpuInfo, size = 16, { cr2: 0, pad: 8 });
        assert_layout!(VcpuInfo, size = 64, {
            evtchn_upcall_pending: 0, evtchn_upcall_mask: 1, _pad0: 2,
            evtchn_pending_sel: 8, arch: 16, time: 32,
        });
    }

    #[test]
    fn shared_info_layout() {
        // C (x86_64): six unsigned longs, 48 bytes.
        assert_layout!(ArchSharedInfo, size = 48, {
            max_pfn: 0, pfn_to_mfn_frame_list_list: 8, nmi_reason: 16,
            p2m_cr3: 24, p2m_vaddr: 32, p2m_generation: 40,
        });
        // C (x86_64): vcpu_info[32] = 2048 bytes @0; evtchn_pending[64] @2048;
        // evtchn_mask[64] @2560; wc_version @3072, wc_sec @3076, wc_nsec @3080,
        // wc_sec_hi @3084 (not i386), arch @3088; 3088 + 48 = 3136.
        assert_layout!(SharedInfo, size = 3136, {
            vcpu_info: 0, evtchn_pending: 2048, evtchn_mask: 2560,
            wc_version: 3072, wc_sec: 3076, wc_nsec: 3080, wc_sec_hi: 3084,
            arch: 3088,
        });
        assert!(core::mem::size_of::<SharedInfo>() <= 4096);
    }

    #[test]
    fn shared_info_round_trips_through_bytes() {
        let mut s = SharedInfo::default();
        s.vcpu_info[1].time.version = 2;
        s.wc_sec_hi = 7;
        let bytes = s.as_bytes();
        assert_eq!(bytes[64 + 32], 2);
        assert_eq!(bytes[3084], 7);
        let back = SharedInfo::read_from_bytes(bytes).unwrap();
        assert_eq!(back, s);
    }
}
