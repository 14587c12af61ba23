//! What a PVH guest sees of CPUID: Xen's leaves at 0x40000000 (signature
//! "XenVMMXenVMM", version, hypercall page, time, HVM features) and a
//! filtered view of the host's leaves: no SVM, no features rxen does not
//! virtualize, the hypervisor bit set, the vCPU's own APIC ID, and leaf 0xD
//! limited to the XCR0 components the guest's features use (see
//! [`crate::ctrlreg::GuestFeatures::xcr0_max`]).

use rxen_abi::cpuid::{
    XEN_CPUID_FIRST_LEAF as XEN_CPUID_BASE, XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX,
    XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX,
};
use rxen_abi::version::{XEN_MAJOR, XEN_MINOR};

/// MSR through which the guest installs the hypercall page (Xen's choice
/// for HVM guests, reported in leaf 2).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;

/// The calling vCPU and domain.
#[derive(Clone, Copy, Debug)]
pub struct CpuidContext {
    /// vCPU number (also its APIC ID).
    pub vcpu_id: u32,
    /// Domain ID.
    pub domid: u16,
    /// Guest TSC frequency in kHz.
    pub tsc_khz: u32,
    /// Number of vCPUs of the domain.
    pub nr_vcpus: u32,
    /// The speculation controls guests are offered.
    pub spec: crate::spec_ctrl::GuestOffer,
}

/// Registers of one CPUID answer: [EAX, EBX, ECX, EDX].
pub type Regs = [u32; 4];

// Leaf 1 ECX bits hidden from guests.
const L1_ECX_MONITOR: u32 = 1 << 3;
const L1_ECX_VMX: u32 = 1 << 5;
const L1_ECX_SMX: u32 = 1 << 6;
const L1_ECX_EST: u32 = 1 << 7;
const L1_ECX_TM2: u32 = 1 << 8;
const L1_ECX_PDCM: u32 = 1 << 15;
const L1_ECX_X2APIC: u32 = 1 << 21;
const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX bits hidden.
const L1_EDX_ACPI: u32 = 1 << 22;
const L1_EDX_TM: u32 = 1 << 29;
const L1_EDX_PBE: u32 = 1 << 31;
// Leaf 0x80000001 ECX bits hidden.
const EXT_ECX_SVM: u32 = 1 << 2;
// OS visible workarounds: not offered by Xen 4.17 (no annotation in
// cpufeatureset.h), so the OSVW MSRs #GP; a guest shown the bit reads them
// without a fixup (Linux's cpu_has_amd_erratum).
const EXT_ECX_OSVW: u32 = 1 << 9;
const EXT_ECX_SKINIT: u32 = 1 << 12;
const EXT_ECX_LWP: u32 = 1 << 15;
const EXT_ECX_WDT: u32 = 1 << 13;
const EXT_ECX_PERFCTR_CORE: u32 = 1 << 23;
// Leaf 7 EBX/ECX bits hidden.
const L7_EBX_INVPCID: u32 = 1 << 10;
const L7_ECX_WAITPKG: u32 = 1 << 5;
// CET (shadow stacks, indirect branch tracking): not offered to HVM guests
// by Xen 4.17 either; its state lives in XSS and MSRs rxen does not switch.
const L7_ECX_CET_SS: u32 = 1 << 7;
const L7_EDX_CET_IBT: u32 = 1 << 20;
// Leaf 0xD sub-leaf 1: XSAVES (needs MSR_XSS, which rxen does not offer).
const XSTATE1_EAX_XSAVES: u32 = 1 << 3;

/// The guest's view of CPUID leaf `leaf`, sub-leaf `subleaf`, given the
/// host's answers through `host`.
pub fn guest_cpuid(
    leaf: u32,
    subleaf: u32,
    ctx: &CpuidContext,
    host: &dyn Fn(u32, u32) -> Regs,
) -> Regs {
    if (XEN_CPUID_BASE..=XEN_CPUID_BASE + 0xFFFF).contains(&leaf) {
        return xen_leaf(leaf - XEN_CPUID_BASE, subleaf, ctx);
    }
    let [mut a, mut b, mut c, mut d] = host(leaf, subleaf);
    match leaf {
        0x1 => {
            // APIC ID and logical processor count of this vCPU.
            b = (b & 0x0000_FFFF) | (ctx.vcpu_id << 24) | (ctx.nr_vcpus.min(255) << 16);
            c &=
                !(L1_ECX_MONITOR | L1_ECX_VMX | L1_ECX_SMX | L1_ECX_EST | L1_ECX_TM2 | L1_ECX_PDCM);
            // The vlapic offers x2APIC mode whatever the host has (Xen's
            // HVM policy sets it always); no TSC-deadline timer.
            c &= !L1_ECX_TSC_DEADLINE;
            c |= L1_ECX_HYPERVISOR | L1_ECX_X2APIC;
            d &= !(L1_EDX_ACPI | L1_EDX_TM | L1_EDX_PBE);
        }
        0x5 | 0x6 | 0xA | 0xB | 0x1F => [a, b, c, d] = [0; 4],
        0x7 if subleaf == 0 => {
            b &= !L7_EBX_INVPCID;
            c &= !(L7_ECX_WAITPKG | L7_ECX_CET_SS);
            d &= !L7_EDX_CET_IBT;
            d = ctx.spec.filter_l7_edx(d);
        }
        0xD => [a, b, c, d] = xstate_leaf(subleaf, [a, b, c, d], ctx, host),
        0x8000_0008 => b = ctx.spec.filter_ext8_ebx(b),
        0x8000_0001 => {
            c &= !(EXT_ECX_SVM
                | EXT_ECX_OSVW
                | EXT_ECX_SKINIT
                | EXT_ECX_WDT
                | EXT_ECX_PERFCTR_CORE
                | EXT_ECX_LWP);
        }
        0x8000_000A => [a, b, c, d] = [0; 4],
        _ => {}
    }
    [a, b, c, d]
}

/// The XCR0 components a guest may enable: those of its CPUID features
/// that the host supports.
pub fn guest_xcr0_max(ctx: &CpuidContext, host: &dyn Fn(u32, u32) -> Regs) -> u64 {
    let features =
        crate::ctrlreg::GuestFeatures::from_cpuid(&|leaf, sub| guest_cpuid(leaf, sub, ctx, host));
    let [a, _, _, d] = host(0xD, 0);
    features.xcr0_max(u64::from(a) | u64::from(d) << 32)
}

/// Leaf 0xD (extended state) as Xen's `recalculate_xstate` gives it: sub-leaf
/// 0 lists only the guest's XCR0 components and the largest area they need
/// (EBX, the size for the XCR0 in force, is the host's answer with the
/// guest's XCR0 loaded); sub-leaf 1 without XSAVES and supervisor states;
/// the sub-leaves of components the guest may not enable are empty.
fn xstate_leaf(
    subleaf: u32,
    host_regs: Regs,
    ctx: &CpuidContext,
    host: &dyn Fn(u32, u32) -> Regs,
) -> Regs {
    let max = guest_xcr0_max(ctx, host);
    let [a, b, _, _] = host_regs;
    match subleaf {
        0 => {
            // 512 bytes of legacy area and the 64-byte header at least.
            let size = (2..63)
                .filter(|i| max & (1 << i) != 0)
                .map(|i| {
                    let [size, offset, _, _] = host(0xD, i);
                    size.saturating_add(offset)
                })
                .fold(576, u32::max);
            [max as u32, b, size, (max >> 32) as u32]
        }
        1 => [a & !XSTATE1_EAX_XSAVES, 0, 0, 0],
        2..=62 if max & (1 << subleaf) != 0 => host_regs,
        _ => [0; 4],
    }
}

fn xen_leaf(index: u32, subleaf: u32, ctx: &CpuidContext) -> Regs {
    match index {
        // Signature "XenVMMXenVMM" and the highest Xen leaf.
        0 => [
            XEN_CPUID_BASE + XEN_CPUID_MAX_NUM_LEAVES,
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ],
        // Version: major in the high half, minor in the low half.
        1 => [(XEN_MAJOR << 16) | XEN_MINOR, 0, 0, 0],
        // One hypercall page, installed through HYPERCALL_PAGE_MSR.
        2 => [1, HYPERCALL_PAGE_MSR, 0, 0],
        // Time: sub-leaf 0 TSC mode (native) and guest TSC kHz in ECX;
        // sub-leaf 2 the host TSC kHz in EAX.
        3 => match subleaf {
            0 => [0, 0, ctx.tsc_khz, 0],
            2 => [ctx.tsc_khz, 0, 0, 0],
            _ => [0; 4],
        },
        // HVM features: vCPU ID in EBX, domain ID in ECX, per-vCPU upcall vector.
        4 => {
            use rxen_abi::cpuid::{
                XEN_HVM_CPUID_DOMID_PRESENT, XEN_HVM_CPUID_UPCALL_VECTOR,
                XEN_HVM_CPUID_VCPU_ID_PRESENT,
            };
            let flags = XEN_HVM_CPUID_VCPU_ID_PRESENT
                | XEN_HVM_CPUID_DOMID_PRESENT
                | XEN_HVM_CPUID_UPCALL_VECTOR;
            [flags, ctx.vcpu_id, ctx.domid as u32, 0]
        }
        // PV-specific leaf: nothing for HVM guests.
        5 => [0; 4],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(leaf: u32, sub: u32) -> Regs {
        match leaf {
            // x87, SSE, AVX, AVX-512 (3), PKRU, LWP; 2 KiB of area per component.
            0xD => match sub {
                0 => [0x2E7, 0x240, 0x2A00, 1 << 30],
                1 => [0xF, 0, 0x1800, 0],
                2..=9 | 62 => [0x100, 0x200 * sub, 0, 0],
                _ => [0; 4],
            },
            0x1 => [0x00a2_0f12, 0x0102_0800, !L1_ECX_HYPERVISOR, 0xffff_ffff],
            0x8000_0001 => [0, 0, 0xffff_ffff, 0xffff_ffff],
            0x8000_000A => [1, 16, 0, 0xff],
            0x0 => [0xD, 0, 0, 0],
            0x8000_0000 => [0x8000_0001, 0, 0, 0],
            // Zen 4: AVX-512 (F), PKU, CET_SS and CET_IBT.
            0x7 => [0, 1 << 16, (1 << 3) | (1 << 7), 1 << 20],
            _ => [leaf, 1, 2, 3],
        }
    }

    fn ctx() -> CpuidContext {
        CpuidContext {
            vcpu_id: 1,
            domid: 7,
            tsc_khz: 2_000_000,
            nr_vcpus: 2,
            spec: Default::default(),
        }
    }

    #[test]
    fn xen_signature_and_leaves() {
        let [a, b, c, d] = guest_cpuid(0x4000_0000, 0, &ctx(), &host);
        assert_eq!(a, 0x4000_0005);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&b.to_le_bytes());
        sig[4..8].copy_from_slice(&c.to_le_bytes());
        sig[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(guest_cpuid(0x4000_0001, 0, &ctx(), &host)[0], 0x0004_0011);
        assert_eq!(
            guest_cpuid(0x4000_0002, 0, &ctx(), &host),
            [1, 0x4000_0000, 0, 0]
        );
        let hvm = guest_cpuid(0x4000_0004, 0, &ctx(), &host);
        assert_eq!((hvm[1], hvm[2]), (1, 7));
    }

    #[test]
    fn speculation_controls_follow_the_offer() {
        use crate::spec_ctrl::{GuestOffer, EXT8_EBX_IBPB, EXT8_EBX_VIRT_SSBD, L7_EDX_IBRSB};
        let none = guest_cpuid(0x8000_0008, 0, &ctx(), &|_, _| [0, u32::MAX, 0, 0]);
        assert_eq!(none[1] & (EXT8_EBX_IBPB | EXT8_EBX_VIRT_SSBD), 0);
        assert_eq!(
            guest_cpuid(7, 0, &ctx(), &|_, _| [0, 0, 0, u32::MAX])[3] & L7_EDX_IBRSB,
            0
        );
        let mut c = ctx();
        c.spec = GuestOffer {
            ibpb: true,
            virt_ssbd: true,
            ..GuestOffer::default()
        };
        let some = guest_cpuid(0x8000_0008, 0, &c, &|_, _| [0, EXT8_EBX_IBPB, 0, 0]);
        assert_eq!(some[1], EXT8_EBX_IBPB | EXT8_EBX_VIRT_SSBD);
    }

    #[test]
    fn svm_and_unvirtualized_features_are_hidden() {
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, &ctx(), &host)[2] & EXT_ECX_SVM,
            0
        );
        assert_eq!(guest_cpuid(0x8000_000A, 0, &ctx(), &host), [0; 4]);
        let l1 = guest_cpuid(1, 0, &ctx(), &host);
        assert_ne!(l1[2] & L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1[2] & (L1_ECX_MONITOR | L1_ECX_VMX), 0);
        // x2APIC is the vlapic's, offered on a host without it too.
        let no_x2apic = |leaf: u32, sub: u32| {
            let mut r = host(leaf, sub);
            if leaf == 1 {
                r[2] &= !L1_ECX_X2APIC;
            }
            r
        };
        assert_ne!(guest_cpuid(1, 0, &ctx(), &no_x2apic)[2] & L1_ECX_X2APIC, 0);
        assert_eq!(l1[1] >> 24, 1, "APIC ID is the vCPU id");
        let l7 = guest_cpuid(7, 0, &ctx(), &host);
        assert_eq!(l7[2] & L7_ECX_CET_SS, 0);
        assert_eq!(l7[3] & L7_EDX_CET_IBT, 0);
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, &ctx(), &host)[2] & EXT_ECX_LWP,
            0
        );
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, &ctx(), &host)[2] & EXT_ECX_OSVW,
            0
        );
    }

    #[test]
    fn xstate_leaf_lists_only_the_guests_components() {
        // Leaf 1 of the fake host has XSAVE and AVX (all ECX bits but the
        // hypervisor bit); leaf 7 AVX-512F and PKU; LWP is hidden.
        let max = guest_xcr0_max(&ctx(), &host);
        assert_eq!(max, 0x2E7);
        let [a, b, c, d] = guest_cpuid(0xD, 0, &ctx(), &host);
        assert_eq!((a, d), (0x2E7, 0), "no LWP (bit 62)");
        assert_eq!(b, 0x240, "size for the XCR0 in force: the host's");
        assert_eq!(
            c,
            0x200 * 9 + 0x100,
            "the largest component in the guest's mask"
        );
        assert_eq!(guest_cpuid(0xD, 1, &ctx(), &host)[0], 0x7, "no XSAVES");
        assert_eq!(guest_cpuid(0xD, 2, &ctx(), &host)[0], 0x100);
        assert_eq!(
            guest_cpuid(0xD, 8, &ctx(), &host),
            [0; 4],
            "not a component"
        );
        assert_eq!(guest_cpuid(0xD, 62, &ctx(), &host), [0; 4], "LWP");
    }
}
