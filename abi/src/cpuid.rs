//! `xen/include/public/arch-x86/cpuid.h`: Xen's hypervisor CPUID leaves at
//! `0x40000000 + 0x100 * n` (the base moves up by 0x100 when Viridian leaves
//! are also exposed).
//!
//! The header numbers its leaves from 1 ("Leaf 1 (0x40000x00)"); the
//! `XEN_CPUID_LEAF_*` offsets here are the distance from the base (0..=5),
//! which is what [`xen_cpuid_leaf`] takes. Those offset names and the time
//! sub-leaf names are rxen's: the header describes them only in comments.

/// `XEN_CPUID_FIRST_LEAF` (cpuid.h): the lowest possible base.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;

/// `XEN_CPUID_LEAF(i)` (cpuid.h): leaf `i` counted from the first base.
pub const fn xen_cpuid_leaf(i: u32) -> u32 {
    XEN_CPUID_FIRST_LEAF + i
}

/// `XEN_CPUID_MAX_NUM_LEAVES` (cpuid.h): the highest leaf offset Xen
/// implements (leaf 0's EAX is base + this).
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;

/// Offset of the signature leaf (header's "Leaf 1"): EAX = largest leaf,
/// EBX/ECX/EDX = "XenVMMXenVMM".
pub const XEN_CPUID_LEAF_SIGNATURE: u32 = 0;
/// Offset of the version leaf ("Leaf 2"): EAX = major << 16 | minor.
pub const XEN_CPUID_LEAF_VERSION: u32 = 1;
/// Offset of the hypercall leaf ("Leaf 3"): EAX = number of hypercall pages,
/// EBX = base of Xen MSRs, ECX = features 1, EDX = features 2.
pub const XEN_CPUID_LEAF_HYPERCALL: u32 = 2;
/// Offset of the time leaf ("Leaf 4"), with sub-leaves 0..=2.
pub const XEN_CPUID_LEAF_TIME: u32 = 3;
/// Offset of the HVM features leaf ("Leaf 5"): EAX = `XEN_HVM_CPUID_*`,
/// EBX = vCPU id, ECX = domain id.
pub const XEN_CPUID_LEAF_HVM: u32 = 4;
/// Offset of the PV parameters leaf ("Leaf 6"): EAX = max sub-leaf,
/// EBX[7:0] = max machine address width.
pub const XEN_CPUID_LEAF_PV: u32 = 5;

/// `XEN_CPUID_SIGNATURE_EBX` (cpuid.h): "XenV".
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// `XEN_CPUID_SIGNATURE_ECX` (cpuid.h): "MMXe".
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// `XEN_CPUID_SIGNATURE_EDX` (cpuid.h): "nVMM".
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;

/// `_XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` (cpuid.h): bit number.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD_SHIFT: u32 = 0;
/// `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` (cpuid.h): hypercall-leaf ECX bit.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 =
    1 << XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD_SHIFT;

/// Time leaf sub-leaf 0: EAX flags, EBX tsc_mode, ECX guest TSC kHz, EDX
/// incarnation.
pub const XEN_CPUID_TIME_SUBLEAF_MODE: u32 = 0;
/// Time leaf sub-leaf 1: EAX/EBX TSC offset low/high, ECX tsc->ns multiplier,
/// EDX tsc->ns shift.
pub const XEN_CPUID_TIME_SUBLEAF_SCALE: u32 = 1;
/// Time leaf sub-leaf 2: EAX host TSC kHz.
pub const XEN_CPUID_TIME_SUBLEAF_HOST_FREQ: u32 = 2;
/// Time sub-leaf 0 EAX bit 0: the TSC is emulated.
pub const XEN_CPUID_TIME_EMULATED_TSC: u32 = 1 << 0;
/// Time sub-leaf 0 EAX bit 1: the host TSC is known to be reliable.
pub const XEN_CPUID_TIME_RELIABLE_TSC: u32 = 1 << 1;
/// Time sub-leaf 0 EAX bit 2: RDTSCP is available.
pub const XEN_CPUID_TIME_RDTSCP: u32 = 1 << 2;

/// `XEN_HVM_CPUID_APIC_ACCESS_VIRT` (cpuid.h): virtualized APIC registers.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// `XEN_HVM_CPUID_X2APIC_VIRT` (cpuid.h): virtualized x2APIC accesses.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// `XEN_HVM_CPUID_IOMMU_MAPPINGS` (cpuid.h): foreign mappings have IOMMU entries.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// `XEN_HVM_CPUID_VCPU_ID_PRESENT` (cpuid.h): EBX holds the vCPU id.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// `XEN_HVM_CPUID_DOMID_PRESENT` (cpuid.h): ECX holds the domain id.
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// `XEN_HVM_CPUID_EXT_DEST_ID` (cpuid.h): 15-bit extended destination ids.
pub const XEN_HVM_CPUID_EXT_DEST_ID: u32 = 1 << 5;
/// `XEN_HVM_CPUID_UPCALL_VECTOR` (cpuid.h): per-vCPU upcall vectors work with
/// physical IRQs bound to event channels.
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

/// `XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK` (cpuid.h): PV leaf EBX bits 7:0.
pub const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK: u32 = 0xff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_xenvmmxenvmm() {
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&XEN_CPUID_SIGNATURE_EBX.to_le_bytes());
        sig[4..8].copy_from_slice(&XEN_CPUID_SIGNATURE_ECX.to_le_bytes());
        sig[8..12].copy_from_slice(&XEN_CPUID_SIGNATURE_EDX.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
    }

    #[test]
    fn leaves() {
        assert_eq!(xen_cpuid_leaf(XEN_CPUID_LEAF_TIME), 0x4000_0003);
        assert_eq!(xen_cpuid_leaf(XEN_CPUID_LEAF_HVM), 0x4000_0004);
        assert_eq!(XEN_CPUID_LEAF_PV, XEN_CPUID_MAX_NUM_LEAVES);
        assert_eq!(XEN_HVM_CPUID_UPCALL_VECTOR, 0x40);
    }
}
