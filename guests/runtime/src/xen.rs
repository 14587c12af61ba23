//! The Xen ABI under the short names the test guests use (`hypercall::MEMORY_OP`,
//! `hvm::PARAM_CALLBACK_IRQ`, `HvmParam`, ...). Every number and struct is `rxen-abi`'s,
//! the one copy of Xen 4.17's public headers, re-exported here under the runtime's
//! names. The one struct kept here is [`MulticallEntry`], on purpose (see there).

/// Hypercall numbers (`xen.h`, `__HYPERVISOR_*`).
pub mod hypercall {
    /// `__HYPERVISOR_mmu_update` (PV only: HVM guests get `-ENOSYS`).
    pub const MMU_UPDATE: u64 = rxen_abi::xen::HYPERVISOR_MMU_UPDATE;
    /// `__HYPERVISOR_multicall`.
    pub const MULTICALL: u64 = rxen_abi::xen::HYPERVISOR_MULTICALL;
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u64 = rxen_abi::xen::HYPERVISOR_MEMORY_OP;
    /// `__HYPERVISOR_set_timer_op`.
    pub const SET_TIMER_OP: u64 = rxen_abi::xen::HYPERVISOR_SET_TIMER_OP;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u64 = rxen_abi::xen::HYPERVISOR_XEN_VERSION;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u64 = rxen_abi::xen::HYPERVISOR_CONSOLE_IO;
    /// `__HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u64 = rxen_abi::xen::HYPERVISOR_GRANT_TABLE_OP;
    /// `__HYPERVISOR_vm_assist`.
    pub const VM_ASSIST: u64 = rxen_abi::xen::HYPERVISOR_VM_ASSIST;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u64 = rxen_abi::xen::HYPERVISOR_VCPU_OP;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u64 = rxen_abi::xen::HYPERVISOR_SCHED_OP;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = rxen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP;
    /// `__HYPERVISOR_physdev_op`.
    pub const PHYSDEV_OP: u64 = rxen_abi::xen::HYPERVISOR_PHYSDEV_OP;
    /// `__HYPERVISOR_hvm_op`.
    pub const HVM_OP: u64 = rxen_abi::xen::HYPERVISOR_HVM_OP;
}

/// `XENVER_*` sub-ops of `xen_version` (`version.h`).
pub mod xenver {
    /// Returns `major << 16 | minor`.
    pub const VERSION: u64 = rxen_abi::version::XENVER_VERSION as u64;
    /// `char[16]` extra version string.
    pub const EXTRAVERSION: u64 = rxen_abi::version::XENVER_EXTRAVERSION as u64;
    /// `struct xen_compile_info`.
    pub const COMPILE_INFO: u64 = rxen_abi::version::XENVER_COMPILE_INFO as u64;
    /// `char[1024]` capabilities string.
    pub const CAPABILITIES: u64 = rxen_abi::version::XENVER_CAPABILITIES as u64;
    /// `char[64]` changeset string.
    pub const CHANGESET: u64 = rxen_abi::version::XENVER_CHANGESET as u64;
    /// `struct xen_platform_parameters`.
    pub const PLATFORM_PARAMETERS: u64 = rxen_abi::version::XENVER_PLATFORM_PARAMETERS as u64;
    /// `struct xen_feature_info`.
    pub const GET_FEATURES: u64 = rxen_abi::version::XENVER_GET_FEATURES as u64;
    /// Returns the page size.
    pub const PAGESIZE: u64 = rxen_abi::version::XENVER_PAGESIZE as u64;
    /// `xen_domain_handle_t` (16 bytes).
    pub const GUEST_HANDLE: u64 = rxen_abi::version::XENVER_GUEST_HANDLE as u64;
    /// `char[1024]` hypervisor command line (privileged domains).
    pub const COMMANDLINE: u64 = rxen_abi::version::XENVER_COMMANDLINE as u64;
    /// `struct xen_build_id`.
    pub const BUILD_ID: u64 = rxen_abi::version::XENVER_BUILD_ID as u64;
    /// Size of the `XENVER_extraversion` buffer.
    pub const EXTRAVERSION_LEN: usize = rxen_abi::version::XEN_EXTRAVERSION_LEN;
    /// Size of the `XENVER_capabilities` buffer.
    pub const CAPABILITIES_LEN: usize = rxen_abi::version::XEN_CAPABILITIES_INFO_LEN;
    /// Size of the `XENVER_changeset` buffer.
    pub const CHANGESET_LEN: usize = rxen_abi::version::XEN_CHANGESET_INFO_LEN;
    /// Size of the `XENVER_commandline` buffer.
    pub const COMMANDLINE_LEN: usize = rxen_abi::version::XEN_COMMANDLINE_LEN;
}

/// `struct xen_compile_info` (`version.h`).
pub use rxen_abi::version::XenCompileInfo as CompileInfo;

/// `struct xen_feature_info` (`version.h`).
pub use rxen_abi::version::XenFeatureInfo as FeatureInfo;

/// `XENFEAT_*` bit numbers (`features.h`).
pub mod xenfeat {
    /// `XENFEAT_writable_page_tables`.
    pub const WRITABLE_PAGE_TABLES: u32 = rxen_abi::features::XENFEAT_WRITABLE_PAGE_TABLES;
    /// `XENFEAT_writable_descriptor_tables`.
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 =
        rxen_abi::features::XENFEAT_WRITABLE_DESCRIPTOR_TABLES;
    /// `XENFEAT_auto_translated_physmap`.
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = rxen_abi::features::XENFEAT_AUTO_TRANSLATED_PHYSMAP;
    /// `XENFEAT_supervisor_mode_kernel`.
    pub const SUPERVISOR_MODE_KERNEL: u32 = rxen_abi::features::XENFEAT_SUPERVISOR_MODE_KERNEL;
    /// `XENFEAT_pae_pgdir_above_4gb`.
    pub const PAE_PGDIR_ABOVE_4GB: u32 = rxen_abi::features::XENFEAT_PAE_PGDIR_ABOVE_4GB;
    /// `XENFEAT_mmu_pt_update_preserve_ad`.
    pub const MMU_PT_UPDATE_PRESERVE_AD: u32 =
        rxen_abi::features::XENFEAT_MMU_PT_UPDATE_PRESERVE_AD;
    /// `XENFEAT_highmem_assist`.
    pub const HIGHMEM_ASSIST: u32 = rxen_abi::features::XENFEAT_HIGHMEM_ASSIST;
    /// `XENFEAT_gnttab_map_avail_bits`.
    pub const GNTTAB_MAP_AVAIL_BITS: u32 = rxen_abi::features::XENFEAT_GNTTAB_MAP_AVAIL_BITS;
    /// `XENFEAT_hvm_callback_vector`.
    pub const HVM_CALLBACK_VECTOR: u32 = rxen_abi::features::XENFEAT_HVM_CALLBACK_VECTOR;
    /// `XENFEAT_hvm_safe_pvclock`.
    pub const HVM_SAFE_PVCLOCK: u32 = rxen_abi::features::XENFEAT_HVM_SAFE_PVCLOCK;
    /// `XENFEAT_hvm_pirqs`.
    pub const HVM_PIRQS: u32 = rxen_abi::features::XENFEAT_HVM_PIRQS;
    /// `XENFEAT_dom0`.
    pub const DOM0: u32 = rxen_abi::features::XENFEAT_DOM0;
    /// `XENFEAT_grant_map_identity`.
    pub const GRANT_MAP_IDENTITY: u32 = rxen_abi::features::XENFEAT_GRANT_MAP_IDENTITY;
    /// `XENFEAT_memory_op_vnode_supported`.
    pub const MEMORY_OP_VNODE_SUPPORTED: u32 =
        rxen_abi::features::XENFEAT_MEMORY_OP_VNODE_SUPPORTED;
    /// `XENFEAT_ARM_SMCCC_supported`.
    pub const ARM_SMCCC_SUPPORTED: u32 = rxen_abi::features::XENFEAT_ARM_SMCCC_SUPPORTED;
    /// `XENFEAT_linux_rsdp_unrestricted`.
    pub const LINUX_RSDP_UNRESTRICTED: u32 = rxen_abi::features::XENFEAT_LINUX_RSDP_UNRESTRICTED;
    /// `XENFEAT_not_direct_mapped`.
    pub const NOT_DIRECT_MAPPED: u32 = rxen_abi::features::XENFEAT_NOT_DIRECT_MAPPED;
    /// `XENFEAT_direct_mapped`.
    pub const DIRECT_MAPPED: u32 = rxen_abi::features::XENFEAT_DIRECT_MAPPED;
}

/// `CONSOLEIO_*` commands (`xen.h`).
pub mod consoleio {
    /// Write to the console.
    pub const WRITE: u64 = rxen_abi::xen::CONSOLEIO_WRITE as u64;
    /// Read from the console.
    pub const READ: u64 = rxen_abi::xen::CONSOLEIO_READ as u64;
}

/// `SCHEDOP_*` commands and `SHUTDOWN_*` reasons (`sched.h`).
pub mod sched {
    /// Give up the CPU voluntarily.
    pub const YIELD: u64 = rxen_abi::sched::SCHEDOP_YIELD as u64;
    /// Block until an event arrives.
    pub const BLOCK: u64 = rxen_abi::sched::SCHEDOP_BLOCK as u64;
    /// Shut the domain down (`struct sched_shutdown`).
    pub const SHUTDOWN: u64 = rxen_abi::sched::SCHEDOP_SHUTDOWN as u64;
    /// Poll event channels.
    pub const POLL: u64 = rxen_abi::sched::SCHEDOP_POLL as u64;
    /// Shut another domain down.
    pub const REMOTE_SHUTDOWN: u64 = rxen_abi::sched::SCHEDOP_REMOTE_SHUTDOWN as u64;
    /// Set the reason a later shutdown reports (`struct sched_shutdown`).
    pub const SHUTDOWN_CODE: u64 = rxen_abi::sched::SCHEDOP_SHUTDOWN_CODE as u64;
    /// Domain watchdog.
    pub const WATCHDOG: u64 = rxen_abi::sched::SCHEDOP_WATCHDOG as u64;
    /// `SHUTDOWN_poweroff`.
    pub const SHUTDOWN_POWEROFF: u32 = rxen_abi::sched::SHUTDOWN_POWEROFF;
    /// `SHUTDOWN_reboot`.
    pub const SHUTDOWN_REBOOT: u32 = rxen_abi::sched::SHUTDOWN_REBOOT;
    /// `SHUTDOWN_suspend`.
    pub const SHUTDOWN_SUSPEND: u32 = rxen_abi::sched::SHUTDOWN_SUSPEND;
    /// `SHUTDOWN_crash`.
    pub const SHUTDOWN_CRASH: u32 = rxen_abi::sched::SHUTDOWN_CRASH;
    /// `SHUTDOWN_watchdog`.
    pub const SHUTDOWN_WATCHDOG: u32 = rxen_abi::sched::SHUTDOWN_WATCHDOG;
}

/// `XENMEM_*` sub-ops and related constants (`memory.h`).
pub mod memory {
    /// `XENMEM_maximum_ram_page`.
    pub const MAXIMUM_RAM_PAGE: u64 = rxen_abi::memory::XENMEM_MAXIMUM_RAM_PAGE as u64;
    /// `XENMEM_increase_reservation`.
    pub const INCREASE_RESERVATION: u64 = rxen_abi::memory::XENMEM_INCREASE_RESERVATION as u64;
    /// `XENMEM_current_reservation`.
    pub const CURRENT_RESERVATION: u64 = rxen_abi::memory::XENMEM_CURRENT_RESERVATION as u64;
    /// `XENMEM_maximum_reservation`.
    pub const MAXIMUM_RESERVATION: u64 = rxen_abi::memory::XENMEM_MAXIMUM_RESERVATION as u64;
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: u64 = rxen_abi::memory::XENMEM_ADD_TO_PHYSMAP as u64;
    /// `XENMEM_memory_map`.
    pub const MEMORY_MAP: u64 = rxen_abi::memory::XENMEM_MEMORY_MAP as u64;
    /// `XENMEM_maximum_gpfn`.
    pub const MAXIMUM_GPFN: u64 = rxen_abi::memory::XENMEM_MAXIMUM_GPFN as u64;
    /// `XENMAPSPACE_shared_info`.
    pub const MAPSPACE_SHARED_INFO: u32 = rxen_abi::memory::XENMAPSPACE_SHARED_INFO;
    /// `XENMAPSPACE_grant_table`.
    pub const MAPSPACE_GRANT_TABLE: u32 = rxen_abi::memory::XENMAPSPACE_GRANT_TABLE;
    pub use rxen_abi::xen::DOMID_SELF;
}

/// `struct xen_memory_reservation` (`memory.h`).
pub use rxen_abi::memory::XenMemoryReservation as MemoryReservation;

/// `struct xen_memory_map` (`memory.h`).
pub use rxen_abi::memory::XenMemoryMap as MemoryMap;

/// `struct e820entry` as `XENMEM_memory_map` writes it: **packed, 20 bytes** (unlike
/// the 24-byte `hvm_memmap_table_entry` of the start info, which it converts into).
pub use rxen_abi::memory::E820Entry;

/// `struct xen_add_to_physmap` (`memory.h`).
pub use rxen_abi::memory::XenAddToPhysmap as AddToPhysmap;

/// `HVMOP_*` sub-ops and `HVM_PARAM_*` indices (`hvm/hvm_op.h`, `hvm/params.h`).
pub mod hvm {
    /// `HVMOP_set_param`.
    pub const SET_PARAM: u64 = rxen_abi::hvm::HVMOP_SET_PARAM as u64;
    /// `HVMOP_get_param`.
    pub const GET_PARAM: u64 = rxen_abi::hvm::HVMOP_GET_PARAM as u64;
    /// `HVMOP_pagetable_dying`.
    pub const PAGETABLE_DYING: u64 = rxen_abi::hvm::HVMOP_PAGETABLE_DYING as u64;
    /// `HVMOP_get_time`.
    pub const GET_TIME: u64 = rxen_abi::hvm::HVMOP_GET_TIME as u64;
    /// `HVM_PARAM_CALLBACK_IRQ`.
    pub const PARAM_CALLBACK_IRQ: u32 = rxen_abi::hvm::HVM_PARAM_CALLBACK_IRQ;
    /// `HVM_PARAM_STORE_PFN`.
    pub const PARAM_STORE_PFN: u32 = rxen_abi::hvm::HVM_PARAM_STORE_PFN;
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub const PARAM_STORE_EVTCHN: u32 = rxen_abi::hvm::HVM_PARAM_STORE_EVTCHN;
    /// `HVM_PARAM_IOREQ_PFN`.
    pub const PARAM_IOREQ_PFN: u32 = rxen_abi::hvm::HVM_PARAM_IOREQ_PFN;
    /// `HVM_PARAM_TIMER_MODE`.
    pub const PARAM_TIMER_MODE: u32 = rxen_abi::hvm::HVM_PARAM_TIMER_MODE;
    /// `HVM_PARAM_HPET_ENABLED`.
    pub const PARAM_HPET_ENABLED: u32 = rxen_abi::hvm::HVM_PARAM_HPET_ENABLED;
    /// `HVM_PARAM_IDENT_PT`.
    pub const PARAM_IDENT_PT: u32 = rxen_abi::hvm::HVM_PARAM_IDENT_PT;
    /// `HVM_PARAM_CONSOLE_PFN`.
    pub const PARAM_CONSOLE_PFN: u32 = rxen_abi::hvm::HVM_PARAM_CONSOLE_PFN;
    /// `HVM_PARAM_CONSOLE_EVTCHN`.
    pub const PARAM_CONSOLE_EVTCHN: u32 = rxen_abi::hvm::HVM_PARAM_CONSOLE_EVTCHN;
    /// `HVM_PARAM_NESTEDHVM`.
    pub const PARAM_NESTEDHVM: u32 = rxen_abi::hvm::HVM_PARAM_NESTEDHVM;
    /// `HVM_NR_PARAMS`.
    pub const NR_PARAMS: u32 = rxen_abi::hvm::HVM_NR_PARAMS;
    /// `HVM_PARAM_CALLBACK_TYPE_VECTOR`, shifted into the top byte of the value.
    pub const CALLBACK_TYPE_VECTOR: u64 = rxen_abi::hvm::HVM_PARAM_CALLBACK_TYPE_VECTOR
        << rxen_abi::hvm::HVM_PARAM_CALLBACK_TYPE_SHIFT;
}

/// `struct xen_hvm_param` (`hvm/hvm_op.h`).
pub use rxen_abi::hvm::XenHvmParam as HvmParam;

/// `struct xen_hvm_pagetable_dying` (`hvm/hvm_op.h`).
pub use rxen_abi::hvm::XenHvmPagetableDying as HvmPagetableDying;

/// `VCPUOP_*` commands (`vcpu.h`).
pub mod vcpu {
    /// `VCPUOP_initialise`.
    pub const INITIALISE: u64 = rxen_abi::vcpu::VCPUOP_INITIALISE as u64;
    /// `VCPUOP_up`.
    pub const UP: u64 = rxen_abi::vcpu::VCPUOP_UP as u64;
    /// `VCPUOP_down`.
    pub const DOWN: u64 = rxen_abi::vcpu::VCPUOP_DOWN as u64;
    /// `VCPUOP_is_up`.
    pub const IS_UP: u64 = rxen_abi::vcpu::VCPUOP_IS_UP as u64;
    /// `VCPUOP_get_runstate_info`.
    pub const GET_RUNSTATE_INFO: u64 = rxen_abi::vcpu::VCPUOP_GET_RUNSTATE_INFO as u64;
    /// `VCPUOP_register_runstate_memory_area`.
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u64 =
        rxen_abi::vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA as u64;
    /// `VCPUOP_set_periodic_timer`.
    pub const SET_PERIODIC_TIMER: u64 = rxen_abi::vcpu::VCPUOP_SET_PERIODIC_TIMER as u64;
    /// `VCPUOP_stop_periodic_timer`.
    pub const STOP_PERIODIC_TIMER: u64 = rxen_abi::vcpu::VCPUOP_STOP_PERIODIC_TIMER as u64;
    /// `VCPUOP_set_singleshot_timer`.
    pub const SET_SINGLESHOT_TIMER: u64 = rxen_abi::vcpu::VCPUOP_SET_SINGLESHOT_TIMER as u64;
    /// `VCPUOP_stop_singleshot_timer`.
    pub const STOP_SINGLESHOT_TIMER: u64 = rxen_abi::vcpu::VCPUOP_STOP_SINGLESHOT_TIMER as u64;
    /// `VCPUOP_register_vcpu_info`.
    pub const REGISTER_VCPU_INFO: u64 = rxen_abi::vcpu::VCPUOP_REGISTER_VCPU_INFO as u64;
    /// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the time is in the past.
    pub const SSHOTTMR_FUTURE: u32 = rxen_abi::vcpu::VCPU_SSHOTTMR_FUTURE;
    /// `RUNSTATE_running`.
    pub const RUNSTATE_RUNNING: i32 = rxen_abi::vcpu::RUNSTATE_RUNNING;
    /// `RUNSTATE_runnable`.
    pub const RUNSTATE_RUNNABLE: i32 = rxen_abi::vcpu::RUNSTATE_RUNNABLE;
    /// `RUNSTATE_blocked`.
    pub const RUNSTATE_BLOCKED: i32 = rxen_abi::vcpu::RUNSTATE_BLOCKED;
    /// `RUNSTATE_offline`.
    pub const RUNSTATE_OFFLINE: i32 = rxen_abi::vcpu::RUNSTATE_OFFLINE;
}

/// `struct vcpu_runstate_info` (`vcpu.h`).
pub use rxen_abi::vcpu::VcpuRunstateInfo as RunstateInfo;

/// `struct vcpu_set_periodic_timer` (`vcpu.h`).
pub use rxen_abi::vcpu::VcpuSetPeriodicTimer as SetPeriodicTimer;

/// `struct vcpu_set_singleshot_timer` (`vcpu.h`).
pub use rxen_abi::vcpu::VcpuSetSingleshotTimer as SetSingleshotTimer;

/// `struct vcpu_register_vcpu_info` (`vcpu.h`).
pub use rxen_abi::vcpu::VcpuRegisterVcpuInfo as RegisterVcpuInfo;

/// `EVTCHNOP_*` commands and `VIRQ_*` numbers (`event_channel.h`, `xen.h`).
pub mod evtchn {
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = rxen_abi::event_channel::EVTCHNOP_BIND_VIRQ as u64;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = rxen_abi::event_channel::EVTCHNOP_CLOSE as u64;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = rxen_abi::event_channel::EVTCHNOP_UNMASK as u64;
    /// `VIRQ_TIMER`.
    pub const VIRQ_TIMER: u32 = rxen_abi::xen::VIRQ_TIMER;
}

/// `struct evtchn_bind_virq` (`event_channel.h`).
pub use rxen_abi::event_channel::EvtchnBindVirq;

/// `struct multicall_entry` (`xen.h`, 64-bit layout), kept here rather than
/// `rxen_abi::xen::MulticallEntry`: the guests read `result` as the signed value it is.
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
pub use rxen_abi::xen::VcpuTimeInfo;

/// `struct vcpu_info` (`xen.h`, x86_64 layout: 64 bytes).
pub use rxen_abi::xen::VcpuInfo;

/// Number of `vcpu_info` slots in the shared-info page (`XEN_LEGACY_MAX_VCPUS`).
pub use rxen_abi::xen::XEN_LEGACY_MAX_VCPUS as LEGACY_MAX_VCPUS;

/// `struct shared_info` (`xen.h`, x86_64 layout).
pub use rxen_abi::xen::SharedInfo;

/// `struct hvm_start_info` (`arch-x86/hvm/start_info.h`, version 1).
pub use rxen_abi::start_info::HvmStartInfo;

/// `struct hvm_modlist_entry`.
pub use rxen_abi::start_info::HvmModlistEntry;

/// `struct hvm_memmap_table_entry` (an e820 entry).
pub use rxen_abi::start_info::HvmMemmapTableEntry as HvmMemmapEntry;

/// e820 types.
pub use rxen_abi::memory::{E820_RAM, E820_RESERVED, E820_UNUSABLE};
/// `XEN_HVM_START_MAGIC_VALUE`.
pub use rxen_abi::start_info::XEN_HVM_START_MAGIC_VALUE as HVM_START_MAGIC;
/// `SIF_PRIVILEGED`, `SIF_INITDOMAIN`.
pub use rxen_abi::xen::{SIF_INITDOMAIN, SIF_PRIVILEGED};

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
