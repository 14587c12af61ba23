//! Xen ABI definitions the test guests need that `rxen-abi` does not have yet.
//!
//! **Transitional**: everything here mirrors `xen/include/public/` (Xen 4.17) and moves to
//! `rxen-abi` as that crate grows; when a definition lands there, delete it here and
//! re-export the `rxen-abi` one. Values are checked against the real Xen by the guests
//! themselves (see `guests/README.md`).

/// Hypercall numbers (`xen.h`, `__HYPERVISOR_*`).
pub mod hypercall {
    /// `__HYPERVISOR_mmu_update` (PV only: HVM guests get `-ENOSYS`).
    pub const MMU_UPDATE: u64 = 1;
    /// `__HYPERVISOR_multicall`.
    pub const MULTICALL: u64 = 13;
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u64 = 12;
    /// `__HYPERVISOR_set_timer_op`.
    pub const SET_TIMER_OP: u64 = 15;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u64 = 17;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u64 = 18;
    /// `__HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u64 = 20;
    /// `__HYPERVISOR_vm_assist`.
    pub const VM_ASSIST: u64 = 21;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u64 = 24;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u64 = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `__HYPERVISOR_physdev_op`.
    pub const PHYSDEV_OP: u64 = 33;
    /// `__HYPERVISOR_hvm_op`.
    pub const HVM_OP: u64 = 34;
}

/// `XENVER_*` sub-ops of `xen_version` (`version.h`).
pub mod xenver {
    /// Returns `major << 16 | minor`.
    pub const VERSION: u64 = 0;
    /// `char[16]` extra version string.
    pub const EXTRAVERSION: u64 = 1;
    /// `struct xen_compile_info`.
    pub const COMPILE_INFO: u64 = 2;
    /// `char[1024]` capabilities string.
    pub const CAPABILITIES: u64 = 3;
    /// `char[64]` changeset string.
    pub const CHANGESET: u64 = 4;
    /// `struct xen_platform_parameters`.
    pub const PLATFORM_PARAMETERS: u64 = 5;
    /// `struct xen_feature_info`.
    pub const GET_FEATURES: u64 = 6;
    /// Returns the page size.
    pub const PAGESIZE: u64 = 7;
    /// `xen_domain_handle_t` (16 bytes).
    pub const GUEST_HANDLE: u64 = 8;
    /// `char[1024]` hypervisor command line (privileged domains).
    pub const COMMANDLINE: u64 = 9;
    /// `struct xen_build_id`.
    pub const BUILD_ID: u64 = 10;
    /// Size of the `XENVER_extraversion` buffer.
    pub const EXTRAVERSION_LEN: usize = 16;
    /// Size of the `XENVER_capabilities` buffer.
    pub const CAPABILITIES_LEN: usize = 1024;
    /// Size of the `XENVER_changeset` buffer.
    pub const CHANGESET_LEN: usize = 64;
    /// Size of the `XENVER_commandline` buffer.
    pub const COMMANDLINE_LEN: usize = 1024;
}

/// `struct xen_compile_info` (`version.h`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CompileInfo {
    /// Compiler.
    pub compiler: [u8; 64],
    /// Who compiled.
    pub compile_by: [u8; 16],
    /// Build domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}

/// `struct xen_feature_info` (`version.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct FeatureInfo {
    /// Which 32-bit submap (IN).
    pub submap_idx: u32,
    /// The feature bits (OUT).
    pub submap: u32,
}

/// `XENFEAT_*` bit numbers (`features.h`).
pub mod xenfeat {
    /// `XENFEAT_writable_page_tables`.
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    /// `XENFEAT_writable_descriptor_tables`.
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
    /// `XENFEAT_auto_translated_physmap`.
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    /// `XENFEAT_supervisor_mode_kernel`.
    pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
    /// `XENFEAT_pae_pgdir_above_4gb`.
    pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
    /// `XENFEAT_mmu_pt_update_preserve_ad`.
    pub const MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
    /// `XENFEAT_highmem_assist`.
    pub const HIGHMEM_ASSIST: u32 = 6;
    /// `XENFEAT_gnttab_map_avail_bits`.
    pub const GNTTAB_MAP_AVAIL_BITS: u32 = 7;
    /// `XENFEAT_hvm_callback_vector`.
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    /// `XENFEAT_hvm_safe_pvclock`.
    pub const HVM_SAFE_PVCLOCK: u32 = 9;
    /// `XENFEAT_hvm_pirqs`.
    pub const HVM_PIRQS: u32 = 10;
    /// `XENFEAT_dom0`.
    pub const DOM0: u32 = 11;
    /// `XENFEAT_grant_map_identity`.
    pub const GRANT_MAP_IDENTITY: u32 = 12;
    /// `XENFEAT_memory_op_vnode_supported`.
    pub const MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
    /// `XENFEAT_ARM_SMCCC_supported`.
    pub const ARM_SMCCC_SUPPORTED: u32 = 14;
    /// `XENFEAT_linux_rsdp_unrestricted`.
    pub const LINUX_RSDP_UNRESTRICTED: u32 = 15;
    /// `XENFEAT_not_direct_mapped`.
    pub const NOT_DIRECT_MAPPED: u32 = 16;
    /// `XENFEAT_direct_mapped`.
    pub const DIRECT_MAPPED: u32 = 17;
}

/// `CONSOLEIO_*` commands (`xen.h`).
pub mod consoleio {
    /// Write to the console.
    pub const WRITE: u64 = 0;
    /// Read from the console.
    pub const READ: u64 = 1;
}

/// `SCHEDOP_*` commands and `SHUTDOWN_*` reasons (`sched.h`).
pub mod sched {
    /// Give up the CPU voluntarily.
    pub const YIELD: u64 = 0;
    /// Block until an event arrives.
    pub const BLOCK: u64 = 1;
    /// Shut the domain down (`struct sched_shutdown`).
    pub const SHUTDOWN: u64 = 2;
    /// Poll event channels.
    pub const POLL: u64 = 3;
    /// Shut another domain down.
    pub const REMOTE_SHUTDOWN: u64 = 4;
    /// Set the reason a later shutdown reports (`struct sched_shutdown`).
    pub const SHUTDOWN_CODE: u64 = 5;
    /// Domain watchdog.
    pub const WATCHDOG: u64 = 6;
    /// `SHUTDOWN_poweroff`.
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const SHUTDOWN_REBOOT: u32 = 1;
    /// `SHUTDOWN_suspend`.
    pub const SHUTDOWN_SUSPEND: u32 = 2;
    /// `SHUTDOWN_crash`.
    pub const SHUTDOWN_CRASH: u32 = 3;
    /// `SHUTDOWN_watchdog`.
    pub const SHUTDOWN_WATCHDOG: u32 = 4;
}

/// `XENMEM_*` sub-ops and related constants (`memory.h`).
pub mod memory {
    /// `XENMEM_maximum_ram_page`.
    pub const MAXIMUM_RAM_PAGE: u64 = 2;
    /// `XENMEM_current_reservation`.
    pub const CURRENT_RESERVATION: u64 = 3;
    /// `XENMEM_maximum_reservation`.
    pub const MAXIMUM_RESERVATION: u64 = 4;
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: u64 = 7;
    /// `XENMEM_memory_map`.
    pub const MEMORY_MAP: u64 = 9;
    /// `XENMEM_maximum_gpfn`.
    pub const MAXIMUM_GPFN: u64 = 14;
    /// `XENMAPSPACE_shared_info`.
    pub const MAPSPACE_SHARED_INFO: u32 = 0;
    /// `XENMAPSPACE_grant_table`.
    pub const MAPSPACE_GRANT_TABLE: u32 = 1;
    pub use rxen_abi::xen::DOMID_SELF;
}

/// `struct xen_memory_map` (`memory.h`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MemoryMap {
    /// IN: entries in `buffer`; OUT: entries written.
    pub nr_entries: u32,
    /// Padding (the handle is 8-byte aligned).
    pub _pad: u32,
    /// Guest handle of an array of e820 entries.
    pub buffer: u64,
}

/// `struct e820entry` as `XENMEM_memory_map` writes it: **packed, 20 bytes** (unlike
/// the 24-byte `hvm_memmap_table_entry` of the start info).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// e820 type.
    pub kind: u32,
}

impl From<E820Entry> for HvmMemmapEntry {
    fn from(e: E820Entry) -> Self {
        HvmMemmapEntry {
            addr: e.addr,
            size: e.size,
            kind: e.kind,
            reserved: 0,
        }
    }
}

/// `struct xen_add_to_physmap` (`memory.h`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AddToPhysmap {
    /// Domain (`DOMID_SELF`).
    pub domid: u16,
    /// Number of pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame number to map it at.
    pub gpfn: u64,
}

/// `HVMOP_*` sub-ops and `HVM_PARAM_*` indices (`hvm/hvm_op.h`, `hvm/params.h`).
pub mod hvm {
    /// `HVMOP_set_param`.
    pub const SET_PARAM: u64 = 0;
    /// `HVMOP_get_param`.
    pub const GET_PARAM: u64 = 1;
    /// `HVMOP_pagetable_dying`.
    pub const PAGETABLE_DYING: u64 = 9;
    /// `HVMOP_get_time`.
    pub const GET_TIME: u64 = 10;
    /// `HVM_PARAM_CALLBACK_IRQ`.
    pub const PARAM_CALLBACK_IRQ: u32 = 0;
    /// `HVM_PARAM_STORE_PFN`.
    pub const PARAM_STORE_PFN: u32 = 1;
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub const PARAM_STORE_EVTCHN: u32 = 2;
    /// `HVM_PARAM_IOREQ_PFN`.
    pub const PARAM_IOREQ_PFN: u32 = 5;
    /// `HVM_PARAM_TIMER_MODE`.
    pub const PARAM_TIMER_MODE: u32 = 10;
    /// `HVM_PARAM_HPET_ENABLED`.
    pub const PARAM_HPET_ENABLED: u32 = 11;
    /// `HVM_PARAM_IDENT_PT`.
    pub const PARAM_IDENT_PT: u32 = 12;
    /// `HVM_PARAM_CONSOLE_PFN`.
    pub const PARAM_CONSOLE_PFN: u32 = 17;
    /// `HVM_PARAM_CONSOLE_EVTCHN`.
    pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
    /// `HVM_PARAM_NESTEDHVM`.
    pub const PARAM_NESTEDHVM: u32 = 24;
    /// `HVM_NR_PARAMS`.
    pub const NR_PARAMS: u32 = 39;
    /// `HVM_PARAM_CALLBACK_TYPE_VECTOR`, shifted into the top byte of the value.
    pub const CALLBACK_TYPE_VECTOR: u64 = 2 << 56;
}

/// `struct xen_hvm_param` (`hvm/hvm_op.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct HvmParam {
    /// Domain (`DOMID_SELF`).
    pub domid: u16,
    /// Padding.
    pub _pad: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// The value (IN for set, OUT for get).
    pub value: u64,
}

/// `struct xen_hvm_pagetable_dying` (`hvm/hvm_op.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct HvmPagetableDying {
    /// Domain (`DOMID_SELF`).
    pub domid: u16,
    /// Padding.
    pub _pad: [u16; 3],
    /// Guest physical address of the top-level page table.
    pub gpa: u64,
}

/// `VCPUOP_*` commands (`vcpu.h`).
pub mod vcpu {
    /// `VCPUOP_initialise`.
    pub const INITIALISE: u64 = 0;
    /// `VCPUOP_up`.
    pub const UP: u64 = 1;
    /// `VCPUOP_down`.
    pub const DOWN: u64 = 2;
    /// `VCPUOP_is_up`.
    pub const IS_UP: u64 = 3;
    /// `VCPUOP_get_runstate_info`.
    pub const GET_RUNSTATE_INFO: u64 = 4;
    /// `VCPUOP_register_runstate_memory_area`.
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
    /// `VCPUOP_set_periodic_timer`.
    pub const SET_PERIODIC_TIMER: u64 = 6;
    /// `VCPUOP_stop_periodic_timer`.
    pub const STOP_PERIODIC_TIMER: u64 = 7;
    /// `VCPUOP_set_singleshot_timer`.
    pub const SET_SINGLESHOT_TIMER: u64 = 8;
    /// `VCPUOP_stop_singleshot_timer`.
    pub const STOP_SINGLESHOT_TIMER: u64 = 9;
    /// `VCPUOP_register_vcpu_info`.
    pub const REGISTER_VCPU_INFO: u64 = 10;
    /// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the time is in the past.
    pub const SSHOTTMR_FUTURE: u32 = 1;
    /// `RUNSTATE_running`.
    pub const RUNSTATE_RUNNING: i32 = 0;
    /// `RUNSTATE_runnable`.
    pub const RUNSTATE_RUNNABLE: i32 = 1;
    /// `RUNSTATE_blocked`.
    pub const RUNSTATE_BLOCKED: i32 = 2;
    /// `RUNSTATE_offline`.
    pub const RUNSTATE_OFFLINE: i32 = 3;
}

/// `struct vcpu_runstate_info` (`vcpu.h`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// Padding.
    pub _pad: u32,
    /// System time when `state` was entered.
    pub state_entry_time: u64,
    /// Time spent in each state (ns), up to `state_entry_time`.
    pub time: [u64; 4],
}

/// `struct vcpu_set_periodic_timer` (`vcpu.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SetPeriodicTimer {
    /// Period in ns.
    pub period_ns: u64,
}

/// `struct vcpu_set_singleshot_timer` (`vcpu.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SetSingleshotTimer {
    /// Absolute system time of expiry (ns).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    /// Padding.
    pub _pad: u32,
}

/// `struct vcpu_register_vcpu_info` (`vcpu.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RegisterVcpuInfo {
    /// Guest frame of the page that holds the new `vcpu_info`.
    pub mfn: u64,
    /// Offset of the `vcpu_info` in that page.
    pub offset: u32,
    /// Reserved, zero.
    pub rsvd: u32,
}

/// `EVTCHNOP_*` commands and `VIRQ_*` numbers (`event_channel.h`, `xen.h`).
pub mod evtchn {
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = 1;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = 3;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = 9;
    /// `VIRQ_TIMER`.
    pub const VIRQ_TIMER: u32 = 0;
}

/// `struct evtchn_bind_virq` (`event_channel.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: vCPU.
    pub vcpu: u32,
    /// OUT: the port.
    pub port: u32,
}

/// `struct multicall_entry` (`xen.h`, 64-bit layout).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// OUT: the hypercall's result.
    pub result: i64,
    /// Arguments.
    pub args: [u64; 6],
}

/// `struct vcpu_time_info` (`xen.h`): the pvclock.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the record.
    pub version: u32,
    /// Padding.
    pub _pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns) at the last update.
    pub system_time: u64,
    /// TSC-to-ns multiplier (32.32 fixed point after the shift).
    pub tsc_to_system_mul: u32,
    /// TSC shift (negative: right).
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub _pad1: [u8; 2],
}

/// `struct vcpu_info` (`xen.h`, x86_64 layout: 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Set by the guest to mask upcalls (PV).
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub _pad: [u8; 6],
    /// Selector of the `evtchn_pending` words with pending bits.
    pub evtchn_pending_sel: u64,
    /// `arch_vcpu_info`: cr2 (PV).
    pub cr2: u64,
    /// `arch_vcpu_info`: padding.
    pub _arch_pad: u64,
    /// The pvclock.
    pub time: VcpuTimeInfo,
}

/// Number of `vcpu_info` slots in the shared-info page (`XEN_LEGACY_MAX_VCPUS`).
pub const LEGACY_MAX_VCPUS: usize = 32;

/// `struct shared_info` (`xen.h`, x86_64 layout), up to the wallclock.
#[repr(C)]
pub struct SharedInfo {
    /// Per-vCPU info for the first 32 vCPUs.
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bits.
    pub evtchn_pending: [u64; 64],
    /// 2-level event channel mask bits.
    pub evtchn_mask: [u64; 64],
    /// Odd while Xen updates the wallclock.
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds (high 32 bits).
    pub wc_sec_hi: u32,
}

/// `struct hvm_start_info` (`arch-x86/hvm/start_info.h`, version 1).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmStartInfo {
    /// `XEN_HVM_START_MAGIC_VALUE`.
    pub magic: u32,
    /// Version of this structure (1 with the memory map).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of modules.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map (version 1).
    pub memmap_paddr: u64,
    /// Entries in the memory map (version 1).
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of its command line (0: none).
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry` (an e820 entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*` (e820 types).
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// `SIF_PRIVILEGED`.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// e820 RAM.
pub const E820_RAM: u32 = 1;
/// e820 reserved.
pub const E820_RESERVED: u32 = 2;
/// e820 unusable.
pub const E820_UNUSABLE: u32 = 5;

/// Xen errno values the guests compare against (`errno.h`) not in `rxen_abi::errno` yet.
pub mod errno_extra {
    /// `ETIME`: timer expired.
    pub const ETIME: i64 = 62;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(size_of::<VcpuInfo>(), 64);
        assert_eq!(offset_of!(VcpuInfo, time), 32);
        assert_eq!(offset_of!(SharedInfo, evtchn_pending), 2048);
        assert_eq!(offset_of!(SharedInfo, evtchn_mask), 2560);
        assert_eq!(offset_of!(SharedInfo, wc_version), 3072);
        assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 3084);
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(size_of::<HvmMemmapEntry>(), 24);
        assert_eq!(size_of::<MulticallEntry>(), 64);
        assert_eq!(size_of::<RunstateInfo>(), 48);
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(size_of::<MemoryMap>(), 16);
        assert_eq!(size_of::<E820Entry>(), 20);
        assert_eq!(size_of::<CompileInfo>(), 144);
        assert_eq!(size_of::<RegisterVcpuInfo>(), 16);
        assert_eq!(size_of::<SetSingleshotTimer>(), 16);
        assert_eq!(size_of::<EvtchnBindVirq>(), 12);
    }
}
