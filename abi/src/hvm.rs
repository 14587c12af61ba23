//! `xen/include/public/hvm/params.h` and `hvm/hvm_op.h`: the HVM parameter
//! space, `__HYPERVISOR_hvm_op` sub-ops and their argument structures.

use crate::xen::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---------------------------------------------------------------------------
// HVMOP_* (hvm_op.h).

/// `HVMOP_set_param` (hvm_op.h): arg is a [`XenHvmParam`].
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param` (hvm_op.h): arg is a [`XenHvmParam`].
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_set_pci_intx_level` (hvm_op.h; only for interface < 0x00040900).
pub const HVMOP_SET_PCI_INTX_LEVEL: u32 = 2;
/// `HVMOP_set_isa_irq_level` (hvm_op.h; only for interface < 0x00040900).
pub const HVMOP_SET_ISA_IRQ_LEVEL: u32 = 3;
/// `HVMOP_set_pci_link_route` (hvm_op.h; only for interface < 0x00040900).
pub const HVMOP_SET_PCI_LINK_ROUTE: u32 = 4;
/// `HVMOP_flush_tlbs` (hvm_op.h): flush all vCPU TLBs; arg NULL.
pub const HVMOP_FLUSH_TLBS: u32 = 5;
/// `HVMOP_pagetable_dying` (hvm_op.h): arg is a [`XenHvmPagetableDying`].
pub const HVMOP_PAGETABLE_DYING: u32 = 9;
/// `HVMOP_get_time` (hvm_op.h): arg is a [`XenHvmGetTime`].
pub const HVMOP_GET_TIME: u32 = 10;
/// `HVMOP_xentrace` (hvm_op.h).
pub const HVMOP_XENTRACE: u32 = 11;
/// `HVMOP_set_mem_access` (hvm_op.h; tools, deprecated).
pub const HVMOP_SET_MEM_ACCESS: u32 = 12;
/// `HVMOP_get_mem_access` (hvm_op.h; tools, deprecated).
pub const HVMOP_GET_MEM_ACCESS: u32 = 13;
/// `HVMOP_get_mem_type` (hvm_op.h): arg is a [`XenHvmGetMemType`].
pub const HVMOP_GET_MEM_TYPE: u32 = 15;
/// `HVMOP_set_evtchn_upcall_vector` (hvm_op.h; x86): arg is a
/// [`XenHvmEvtchnUpcallVector`].
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;
/// `HVMOP_guest_request_vm_event` (hvm_op.h).
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u32 = 24;
/// `HVMOP_altp2m` (hvm_op.h).
pub const HVMOP_ALTP2M: u32 = 25;

/// `HVMMEM_ram_rw` (hvm_op.h `hvmmem_type_t`): normal RAM.
pub const HVMMEM_RAM_RW: u16 = 0;
/// `HVMMEM_ram_ro` (hvm_op.h): read-only RAM, writes discarded.
pub const HVMMEM_RAM_RO: u16 = 1;
/// `HVMMEM_mmio_dm` (hvm_op.h): accesses go to the device model.
pub const HVMMEM_MMIO_DM: u16 = 2;
/// `HVMMEM_unused` (hvm_op.h, interface >= 0x00040700).
pub const HVMMEM_UNUSED: u16 = 3;
/// `HVMMEM_ioreq_server` (hvm_op.h): claimed by an ioreq server.
pub const HVMMEM_IOREQ_SERVER: u16 = 4;

// ---------------------------------------------------------------------------
// HVM_PARAM_* (params.h).

/// `HVM_PARAM_CALLBACK_IRQ` (params.h): how vCPU0 event notifications are
/// delivered; 0 disables, else type in bits 63:56 (`HVM_PARAM_CALLBACK_TYPE_*`).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN` (params.h): xenstore ring frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN` (params.h): xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_PAE_ENABLED` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_PAE_ENABLED: u32 = 4;
/// `HVM_PARAM_IOREQ_PFN` (params.h).
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN` (params.h).
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN` (params.h; x86): `HVMPV_*` feature mask.
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE` (params.h): `HVMPTM_*`.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED` (params.h): enable the virtual HPET.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT` (params.h): identity-map page directory for EPT.
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_DM_DOMAIN` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_DM_DOMAIN: u32 = 13;
/// `HVM_PARAM_ACPI_S_STATE` (params.h): ACPI S state.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS` (params.h): TSS used on Intel when CR0.PE=0.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN` (params.h): align periodic virtual timers.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN` (params.h): PV console ring frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN` (params.h): PV console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION` (params.h): PM1a/TMR port block choice.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_MEMORY_EVENT_CR0` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_CR0: u32 = 20;
/// `HVM_PARAM_MEMORY_EVENT_CR3` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_CR3: u32 = 21;
/// `HVM_PARAM_MEMORY_EVENT_CR4` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_CR4: u32 = 22;
/// `HVM_PARAM_MEMORY_EVENT_INT3` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_INT3: u32 = 23;
/// `HVM_PARAM_NESTEDHVM` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_NESTEDHVM: u32 = 24;
/// `HVM_PARAM_MEMORY_EVENT_SINGLE_STEP` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_SINGLE_STEP: u32 = 25;
/// `HVM_PARAM_BUFIOREQ_EVTCHN` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_BUFIOREQ_EVTCHN: u32 = 26;
/// `HVM_PARAM_PAGING_RING_PFN` (params.h).
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN` (params.h).
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN` (params.h).
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_MEMORY_EVENT_MSR` (params.h; Xen/tools only, deprecated).
pub const HVM_PARAM_MEMORY_EVENT_MSR: u32 = 30;
/// `HVM_PARAM_TRIPLE_FAULT_REASON` (params.h): `SHUTDOWN_*` on triple fault.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN` (params.h).
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES` (params.h).
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR` (params.h).
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M` (params.h): `XEN_ALTP2M_*`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH` (params.h): 0, 4 or 8.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED` (params.h): VM86 TSS address and size.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP` (params.h): `XEN_HVM_MCA_CAP_*`.
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS` (params.h): size of the parameter space.
pub const HVM_NR_PARAMS: u32 = 39;

/// `HVM_PARAM_CALLBACK_IRQ_TYPE_MASK` (params.h): bits 63:56 of the value.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xFF00_0000_0000_0000;
/// Shift of the type in an `HVM_PARAM_CALLBACK_IRQ` value ("val[63:56]" in
/// params.h; the header has no macro for it).
pub const HVM_PARAM_CALLBACK_TYPE_SHIFT: u32 = 56;
/// `HVM_PARAM_CALLBACK_TYPE_GSI` (params.h): val[55:0] is a GSI (not 0).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_PCI_INTX` (params.h): val[55:0] is a PCI INTx line
/// (domain 47:32, bus 31:16, devfn 15:8, INTx 1:0).
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR` (params.h; x86): val[7:0] is a vector.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;
/// `HVM_PARAM_CALLBACK_TYPE_PPI` (params.h; Arm only, shares value 2 with
/// the x86-only `..._VECTOR`).
pub const HVM_PARAM_CALLBACK_TYPE_PPI: u64 = 2;

/// Type (`HVM_PARAM_CALLBACK_TYPE_*`) of an `HVM_PARAM_CALLBACK_IRQ` value.
pub const fn hvm_param_callback_type(value: u64) -> u64 {
    (value & HVM_PARAM_CALLBACK_IRQ_TYPE_MASK) >> HVM_PARAM_CALLBACK_TYPE_SHIFT
}

/// Payload (bits 55:0) of an `HVM_PARAM_CALLBACK_IRQ` value.
pub const fn hvm_param_callback_payload(value: u64) -> u64 {
    value & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK
}

/// Builds an `HVM_PARAM_CALLBACK_IRQ` value from a type and payload.
pub const fn hvm_param_callback(type_: u64, payload: u64) -> u64 {
    (type_ << HVM_PARAM_CALLBACK_TYPE_SHIFT) | (payload & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK)
}

/// `HVMPTM_delay_for_missed_ticks` (params.h): `HVM_PARAM_TIMER_MODE` value.
pub const HVMPTM_DELAY_FOR_MISSED_TICKS: u64 = 0;
/// `HVMPTM_no_delay_for_missed_ticks` (params.h).
pub const HVMPTM_NO_DELAY_FOR_MISSED_TICKS: u64 = 1;
/// `HVMPTM_no_missed_ticks_pending` (params.h).
pub const HVMPTM_NO_MISSED_TICKS_PENDING: u64 = 2;
/// `HVMPTM_one_missed_tick_pending` (params.h).
pub const HVMPTM_ONE_MISSED_TICK_PENDING: u64 = 3;

/// `XEN_ALTP2M_disabled` (params.h): `HVM_PARAM_ALTP2M` value.
pub const XEN_ALTP2M_DISABLED: u64 = 0;
/// `XEN_ALTP2M_mixed` (params.h).
pub const XEN_ALTP2M_MIXED: u64 = 1;
/// `XEN_ALTP2M_external` (params.h).
pub const XEN_ALTP2M_EXTERNAL: u64 = 2;
/// `XEN_ALTP2M_limited` (params.h).
pub const XEN_ALTP2M_LIMITED: u64 = 3;

/// `XEN_HVM_MCA_CAP_LMCE` (params.h): `HVM_PARAM_MCA_CAP` bit.
pub const XEN_HVM_MCA_CAP_LMCE: u64 = 1 << 0;
/// `XEN_HVM_MCA_CAP_MASK` (params.h).
pub const XEN_HVM_MCA_CAP_MASK: u64 = XEN_HVM_MCA_CAP_LMCE;

/// `HVMPV_base_freq` (params.h): Viridian base + frequency MSRs.
pub const HVMPV_BASE_FREQ: u64 = 1 << 0;
/// `HVMPV_no_freq` (params.h).
pub const HVMPV_NO_FREQ: u64 = 1 << 1;
/// `HVMPV_time_ref_count` (params.h).
pub const HVMPV_TIME_REF_COUNT: u64 = 1 << 2;
/// `HVMPV_reference_tsc` (params.h).
pub const HVMPV_REFERENCE_TSC: u64 = 1 << 3;
/// `HVMPV_hcall_remote_tlb_flush` (params.h).
pub const HVMPV_HCALL_REMOTE_TLB_FLUSH: u64 = 1 << 4;
/// `HVMPV_apic_assist` (params.h).
pub const HVMPV_APIC_ASSIST: u64 = 1 << 5;
/// `HVMPV_crash_ctl` (params.h).
pub const HVMPV_CRASH_CTL: u64 = 1 << 6;
/// `HVMPV_synic` (params.h).
pub const HVMPV_SYNIC: u64 = 1 << 7;
/// `HVMPV_stimer` (params.h).
pub const HVMPV_STIMER: u64 = 1 << 8;
/// `HVMPV_hcall_ipi` (params.h).
pub const HVMPV_HCALL_IPI: u64 = 1 << 9;
/// `HVMPV_ex_processor_masks` (params.h).
pub const HVMPV_EX_PROCESSOR_MASKS: u64 = 1 << 10;
/// `HVMPV_no_vp_limit` (params.h).
pub const HVMPV_NO_VP_LIMIT: u64 = 1 << 11;
/// `HVMPV_cpu_hotplug` (params.h).
pub const HVMPV_CPU_HOTPLUG: u64 = 1 << 12;
/// `HVMPV_feature_mask` (params.h): all Viridian feature bits.
pub const HVMPV_FEATURE_MASK: u64 = (1 << 13) - 1;

// ---------------------------------------------------------------------------
// Structures (hvm_op.h).

/// `struct xen_hvm_param` (hvm_op.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenHvmParam {
    /// IN: domain.
    pub domid: DomId,
    /// Padding (C `pad`).
    pub pad: u16,
    /// IN: `HVM_PARAM_*`.
    pub index: u32,
    /// IN/OUT: value.
    pub value: u64,
}

/// `struct xen_hvm_pagetable_dying` (hvm_op.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenHvmPagetableDying {
    /// Domain whose page table dies.
    pub domid: DomId,
    /// Padding (C `pad[3]`).
    pub pad: [u16; 3],
    /// Guest physical address of the top-level page table.
    pub gpa: u64,
}

/// `struct xen_hvm_get_time` (hvm_op.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenHvmGetTime {
    /// OUT: Xen system time in ns since boot.
    pub now: u64,
}

/// `struct xen_hvm_get_mem_type` (hvm_op.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenHvmGetMemType {
    /// Domain to query.
    pub domid: DomId,
    /// OUT: `HVMMEM_*`.
    pub mem_type: u16,
    /// Padding (C `pad[2]`).
    pub pad: [u16; 2],
    /// IN: frame to query.
    pub pfn: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector` (hvm_op.h; x86).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenHvmEvtchnUpcallVector {
    /// vCPU id.
    pub vcpu: u32,
    /// Vector to deliver event upcalls on.
    pub vector: u8,
    /// Implicit C tail padding.
    pub _pad0: [u8; 3],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(HVMOP_PAGETABLE_DYING, 9);
        assert_eq!(HVMOP_GET_TIME, 10);
        assert_eq!(HVMOP_SET_EVTCHN_UPCALL_VECTOR, 23);
        assert_eq!(HVM_PARAM_CONSOLE_EVTCHN, 18);
        assert_eq!(HVM_PARAM_MCA_CAP, 38);
        assert_eq!(HVM_NR_PARAMS, 39);
        assert_eq!(HVMPV_FEATURE_MASK, 0x1fff);
    }

    #[test]
    fn callback_encoding() {
        let v = hvm_param_callback(HVM_PARAM_CALLBACK_TYPE_VECTOR, 0xf3);
        assert_eq!(v, 0x0200_0000_0000_00f3);
        assert_eq!(hvm_param_callback_type(v), HVM_PARAM_CALLBACK_TYPE_VECTOR);
        assert_eq!(hvm_param_callback_payload(v), 0xf3);
        assert_eq!(
            HVM_PARAM_CALLBACK_IRQ_TYPE_MASK >> HVM_PARAM_CALLBACK_TYPE_SHIFT,
            0xff
        );
    }

    #[test]
    fn layouts() {
        // C: domid_t@0, u16 pad@2, u32 index@4, u64 value@8; 16.
        assert_layout!(XenHvmParam, size = 16, { domid: 0, pad: 2, index: 4, value: 8 });
        // C: domid_t@0, u16 pad[3]@2, u64 gpa@8; 16.
        assert_layout!(XenHvmPagetableDying, size = 16, { domid: 0, pad: 2, gpa: 8 });
        assert_layout!(XenHvmGetTime, size = 8, { now: 0 });
        // C: domid_t@0, u16 mem_type@2, u16 pad[2]@4, u64 pfn@8; 16.
        assert_layout!(XenHvmGetMemType, size = 16, {
            domid: 0, mem_type: 2, pad: 4, pfn: 8,
        });
        // C: u32 vcpu@0, u8 vector@4, tail pad to 8.
        assert_layout!(XenHvmEvtchnUpcallVector, size = 8, { vcpu: 0, vector: 4, _pad0: 5 });
    }
}
