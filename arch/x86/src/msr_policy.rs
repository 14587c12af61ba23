//! The model-specific registers a PVH guest may read and write, and what
//! each access does (Xen's `guest_rdmsr`/`guest_wrmsr` for an HVM guest):
//! pure logic over the guest's MSR state, tested on the host. What needs
//! the hypervisor (the TSC, the local APIC, EFER and PAT in the vendor's
//! control block, the hypercall page, an IBPB) goes through [`MsrHost`] or
//! comes back as a [`WriteEffect`] the caller performs. Anything not listed
//! raises #GP, as on Xen.

use crate::cpuid_policy::HYPERCALL_PAGE_MSR;
use crate::msr::{
    AMD64_DE_CFG_LFENCE_SERIALISE, MC_MISC_LOCKED, MSR_AMD64_DE_CFG, MSR_AMD64_EX_CFG,
    MSR_AMD64_NB_CFG, MSR_AMD_FAM15H_EVNTSEL0, MSR_AMD_FAM15H_PERFCTR5, MSR_EFER,
    MSR_F10_MC4_MISC1, MSR_F10_MC4_MISC3, MSR_IA32_APICBASE, MSR_IA32_CR_PAT, MSR_IA32_MC0_CTL,
    MSR_IA32_MC0_CTL2, MSR_IA32_MCG_CAP, MSR_IA32_MCG_CTL, MSR_IA32_MCG_STATUS,
    MSR_IA32_MC_BANKS_END, MSR_IA32_MISC_ENABLE, MSR_IA32_TSC, MSR_IA32_UCODE_REV, MSR_K7_EVNTSEL0,
    MSR_K7_PERFCTR3, MSR_K8_ENABLE_C1E, MSR_K8_HWCR, MSR_K8_SYSCFG, MSR_K8_TOP_MEM1,
    MSR_K8_TOP_MEM2, MSR_K8_VM_CR, MSR_MTRR_CAP, MSR_MTRR_DEF_TYPE, MSR_P5_MC_ADDR, MSR_P5_MC_TYPE,
    MSR_PRED_CMD, MSR_SPEC_CTRL, MSR_TSC_AUX, MSR_VIRT_SPEC_CTRL,
};
use crate::spec_ctrl::{GuestOffer, PRED_CMD_IBPB, SPEC_CTRL_SSBD};

/// Banks of the virtual machine-check architecture (Xen's GUEST_MC_BANK_NUM).
pub const GUEST_MC_BANKS: u64 = 2;
/// One past the last MSR of the virtual banks (four MSRs each).
const MSR_MC_BANKS_END: u32 = MSR_IA32_MC0_CTL + 4 * GUEST_MC_BANKS as u32;
/// One past the last MCi_CTL2 (banks 0 to 31).
const MSR_MC_CTL2_END: u32 = MSR_IA32_MC0_CTL2 + 32;

/// Whether `index` (in the banks' range) is a bank's MCi_CTL.
fn is_mc_ctl(index: u32) -> bool {
    index.wrapping_sub(MSR_IA32_MC0_CTL).is_multiple_of(4)
}

/// The guest's MSRs kept by the hypervisor (outside the vendor's block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrState {
    /// IA32_MTRR_DEF_TYPE.
    pub mtrr_def_type: u64,
    /// TSC_AUX.
    pub tsc_aux: u64,
    /// MSR_SPEC_CTRL.
    pub spec_ctrl: u64,
    /// MSR_VIRT_SPEC_CTRL.
    pub virt_spec_ctrl: u64,
    /// IA32_MCG_STATUS (what the guest last wrote; Xen's vMCE keeps it).
    pub mcg_status: u64,
}

/// What the guest is offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrCaps {
    /// The speculation controls offered (`spec_ctrl`).
    pub offer: GuestOffer,
    /// Whether the CPU has TSC_AUX (RDTSCP or RDPID).
    pub tsc_aux: bool,
}

/// Values only the hypervisor has.
pub trait MsrHost {
    /// The TSC now.
    fn tsc(&self) -> u64;
    /// The local APIC's IA32_APIC_BASE.
    fn apic_base(&self) -> u64;
    /// The guest's PAT (in the vendor's control block).
    fn pat(&self) -> u64;
    /// The guest's EFER as the guest sees it.
    fn efer(&self) -> u64;
}

/// What a write the policy accepts asks of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing more (the state was updated, or the write is ignored).
    None,
    /// Load this PAT (every entry a valid memory type).
    Pat(u64),
    /// EFER: the caller applies Xen's rules (may still #GP).
    Efer(u64),
    /// IA32_APIC_BASE: the caller's local APIC decides (may still #GP).
    ApicBase(u64),
    /// Fill the hypercall page at this guest frame (may still fail).
    HypercallPage(u64),
    /// Issue an indirect branch prediction barrier.
    Ibpb,
}

/// The #GP a refused access raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gp;

/// RDMSR of `index`: its value, or #GP.
pub fn read(index: u32, state: &MsrState, caps: &MsrCaps, host: &dyn MsrHost) -> Result<u64, Gp> {
    let offer = caps.offer;
    Ok(match index {
        MSR_IA32_TSC => host.tsc(),
        MSR_IA32_APICBASE => host.apic_base(),
        MSR_IA32_CR_PAT => host.pat(),
        MSR_EFER => host.efer(),
        MSR_IA32_MISC_ENABLE => 1, // fast strings
        MSR_AMD64_DE_CFG => AMD64_DE_CFG_LFENCE_SERIALISE,
        MSR_IA32_UCODE_REV => 0,
        HYPERCALL_PAGE_MSR => 0,
        // A virtual machine-check architecture as Xen's vMCE gives HVM
        // guests on AMD (`vmce_rdmsr`, reached from `guest_rdmsr` for all
        // of 0x179-0x17b, 0x280-0x29f and 0x400-0x47f): MCG_CAP with two
        // banks and nothing else (so no MCG_CTL: it reads 0), MCG_STATUS
        // as written, each bank's MCi_CTL all ones ("stick all 1's"), its
        // STATUS, ADDR and MISC empty (only 0 may be written to them);
        // the MSRs of banks that are not there, and the CMCI controls
        // (Intel's), read 0.
        MSR_IA32_MCG_CAP => GUEST_MC_BANKS,
        MSR_IA32_MCG_STATUS => state.mcg_status,
        MSR_IA32_MCG_CTL => 0,
        MSR_IA32_MC0_CTL..MSR_MC_BANKS_END if is_mc_ctl(index) => u64::MAX,
        MSR_IA32_MC0_CTL..MSR_IA32_MC_BANKS_END => 0,
        MSR_IA32_MC0_CTL2..MSR_MC_CTL2_END => 0,
        // The Pentium's machine-check MSRs: 0 on AMD (`vmce_rdmsr` finds
        // no bank there); writes #GP (`guest_wrmsr` does not list them).
        MSR_P5_MC_ADDR | MSR_P5_MC_TYPE => 0,
        // Family 10h's further MC4_MISC threshold blocks: locked by the
        // firmware (`svm_msr_read_intercept`), writes dropped.
        MSR_F10_MC4_MISC1..=MSR_F10_MC4_MISC3 => MC_MISC_LOCKED,
        // Interrupt pending message (C1E) and northbridge configuration:
        // 0, for guests moved between vendors (`hvm_msr_read_intercept`).
        // A guest that believes it has erratum 400 reads the first
        // without a fixup, as Linux does.
        MSR_K8_ENABLE_C1E | MSR_AMD64_NB_CFG => 0,
        // System configuration, top of memory, VM_CR, EX_CFG: 0, writes
        // dropped (`svm_msr_read_intercept`). Xen gives its hardware
        // domain the host's SYSCFG (the MTRR bits) and TOP_MEM1/2
        // (`guest_rdmsr`); rxen gives every domain 0.
        MSR_K8_SYSCFG | MSR_K8_TOP_MEM1 | MSR_K8_TOP_MEM2 | MSR_K8_VM_CR | MSR_AMD64_EX_CFG => 0,
        // The performance counters and their event selects, both layouts:
        // no virtual PMU (Xen's default, `vpmu=` off), so they read 0 and
        // writes are dropped (`vpmu_do_msr`).
        MSR_K7_EVNTSEL0..=MSR_K7_PERFCTR3 | MSR_AMD_FAM15H_EVNTSEL0..=MSR_AMD_FAM15H_PERFCTR5 => 0,
        // No variable or fixed ranges, no write-combining.
        MSR_MTRR_CAP => 0,
        MSR_MTRR_DEF_TYPE => state.mtrr_def_type,
        MSR_TSC_AUX if caps.tsc_aux => state.tsc_aux,
        // AMD HWCR: 0, as Xen 4.17.3 and later (msr.c guest_rdmsr; commit
        // e4ca4e261d "x86/amd: do not expose HWCR.TscFreqSel to guests": a
        // guest told the TSC counts at P0 goes on to read PSTATE0, which
        // #GPs). Writes #GP (svm_msr_write_intercept's default).
        MSR_K8_HWCR => 0,
        MSR_SPEC_CTRL if offer.spec_ctrl => state.spec_ctrl,
        MSR_VIRT_SPEC_CTRL if offer.virt_ssbd => state.virt_spec_ctrl,
        _ => return Err(Gp),
    })
}

/// WRMSR of `value` to `index`: updates `state` or says what the caller
/// must do; #GP for what the guest may not write.
pub fn write(
    index: u32,
    value: u64,
    state: &mut MsrState,
    caps: &MsrCaps,
) -> Result<WriteEffect, Gp> {
    let offer = caps.offer;
    let check = |valid: bool| if valid { Ok(()) } else { Err(Gp) };
    Ok(match index {
        HYPERCALL_PAGE_MSR => {
            // The low 12 bits select a page of the area: only page 0.
            check(value & 0xFFF == 0)?;
            WriteEffect::HypercallPage(value >> 12)
        }
        MSR_IA32_CR_PAT => {
            // Every entry must be a valid memory type.
            check((0..8).all(|i| matches!((value >> (i * 8)) & 0xFF, 0 | 1 | 4 | 5 | 6 | 7)))?;
            WriteEffect::Pat(value)
        }
        // EFER: Xen's rules (features of the policy, LME fixed while paging
        // is on, LMA kept) are the caller's, which knows the vCPU state.
        MSR_EFER => WriteEffect::Efer(value),
        // Ignored.
        MSR_IA32_MISC_ENABLE | MSR_AMD64_DE_CFG | MSR_IA32_UCODE_REV => WriteEffect::None,
        // The vMCE (`vmce_wrmsr`): MCG_STATUS kept as written, MCG_CAP
        // read-only and MCG_CTL absent (both dropped); each bank's MCi_CTL
        // dropped, its STATUS, ADDR and MISC only 0; the MSRs of banks
        // that are not there and the CMCI controls dropped.
        MSR_IA32_MCG_STATUS => {
            state.mcg_status = value;
            WriteEffect::None
        }
        MSR_IA32_MCG_CAP | MSR_IA32_MCG_CTL => WriteEffect::None,
        MSR_IA32_MC0_CTL..MSR_MC_BANKS_END if !is_mc_ctl(index) => {
            check(value == 0)?;
            WriteEffect::None
        }
        MSR_IA32_MC0_CTL..MSR_IA32_MC_BANKS_END | MSR_IA32_MC0_CTL2..MSR_MC_CTL2_END => {
            WriteEffect::None
        }
        // Dropped as Xen drops them: the locked thresholds, NB_CFG
        // (`hvm_msr_write_intercept`), SYSCFG, TOP_MEM1/2, VM_CR, EX_CFG
        // (`svm_msr_write_intercept`, "handle all bits as read-only"),
        // the counters without a virtual PMU. MSR_K8_ENABLE_C1E, which
        // reads 0, is not among them: writes #GP.
        MSR_F10_MC4_MISC1..=MSR_F10_MC4_MISC3
        | MSR_AMD64_NB_CFG
        | MSR_K8_SYSCFG
        | MSR_K8_TOP_MEM1
        | MSR_K8_TOP_MEM2
        | MSR_K8_VM_CR
        | MSR_AMD64_EX_CFG
        | MSR_K7_EVNTSEL0..=MSR_K7_PERFCTR3
        | MSR_AMD_FAM15H_EVNTSEL0..=MSR_AMD_FAM15H_PERFCTR5 => WriteEffect::None,
        // MTRR default type: the guest sees all memory write-back, as the
        // nested page tables map it; its choices are kept.
        MSR_MTRR_DEF_TYPE => {
            check(value & !0xCFF == 0 && matches!(value & 0xFF, 0 | 1 | 4 | 5 | 6))?;
            state.mtrr_def_type = value;
            WriteEffect::None
        }
        // As Xen: only with RDTSCP or RDPID, 32 bits.
        MSR_TSC_AUX if caps.tsc_aux => {
            check(value >> 32 == 0)?;
            state.tsc_aux = value;
            WriteEffect::None
        }
        // IA32_APIC_BASE: enable/disable only; the local APIC checks.
        MSR_IA32_APICBASE => WriteEffect::ApicBase(value),
        MSR_SPEC_CTRL if offer.spec_ctrl => {
            check(value & !offer.spec_ctrl_valid_bits() == 0)?;
            state.spec_ctrl = value;
            WriteEffect::None
        }
        MSR_PRED_CMD if offer.ibpb => {
            check(value & !PRED_CMD_IBPB == 0)?;
            if value == 0 {
                WriteEffect::None
            } else {
                WriteEffect::Ibpb
            }
        }
        // Only SSBD; Xen ignores the other bits.
        MSR_VIRT_SPEC_CTRL if offer.virt_ssbd => {
            state.virt_spec_ctrl = value & SPEC_CTRL_SSBD;
            WriteEffect::None
        }
        _ => return Err(Gp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec_ctrl::{SPEC_CTRL_IBRS, SPEC_CTRL_STIBP};

    struct Host;
    impl MsrHost for Host {
        fn tsc(&self) -> u64 {
            123
        }
        fn apic_base(&self) -> u64 {
            0xFEE0_0900
        }
        fn pat(&self) -> u64 {
            0x0007_0406_0007_0406
        }
        fn efer(&self) -> u64 {
            0x500
        }
    }

    fn all() -> MsrCaps {
        MsrCaps {
            offer: GuestOffer {
                ibpb: true,
                spec_ctrl: true,
                stibp: true,
                ssbd: true,
                virt_ssbd: true,
            },
            tsc_aux: true,
        }
    }

    #[test]
    fn reads_as_xen_answers_them() {
        let state = MsrState {
            mtrr_def_type: 0xC06,
            tsc_aux: 7,
            spec_ctrl: 1,
            virt_spec_ctrl: 4,
            mcg_status: 5,
        };
        let caps = all();
        let r = |index| read(index, &state, &caps, &Host);
        assert_eq!(r(MSR_IA32_TSC), Ok(123));
        assert_eq!(r(MSR_IA32_APICBASE), Ok(0xFEE0_0900));
        assert_eq!(r(MSR_IA32_CR_PAT), Ok(0x0007_0406_0007_0406));
        assert_eq!(r(MSR_EFER), Ok(0x500));
        assert_eq!(r(MSR_IA32_MISC_ENABLE), Ok(1));
        assert_eq!(r(MSR_IA32_MCG_CAP), Ok(GUEST_MC_BANKS));
        assert_eq!(r(MSR_IA32_MCG_STATUS), Ok(5));
        assert_eq!(r(MSR_IA32_MC0_CTL), Ok(u64::MAX));
        assert_eq!(r(MSR_MC_BANKS_END - 1), Ok(0));
        assert_eq!(r(MSR_MTRR_CAP), Ok(0));
        assert_eq!(r(MSR_MTRR_DEF_TYPE), Ok(0xC06));
        assert_eq!(r(MSR_TSC_AUX), Ok(7));
        assert_eq!(r(MSR_K8_HWCR), Ok(0));
        assert_eq!(r(MSR_SPEC_CTRL), Ok(1));
        assert_eq!(r(MSR_VIRT_SPEC_CTRL), Ok(4));
        assert_eq!(r(HYPERCALL_PAGE_MSR), Ok(0));
        // Not there: #GP.
        for index in [
            2,
            MSR_IA32_MC_BANKS_END,
            MSR_PRED_CMD,
            0xC001_0008,
            0xC001_0056,
            0x4000_0001,
            u32::MAX,
        ] {
            assert_eq!(r(index), Err(Gp), "{index:#x}");
        }
    }

    #[test]
    fn what_the_guest_is_not_offered_is_not_there() {
        let state = MsrState::default();
        let caps = MsrCaps::default();
        for index in [MSR_TSC_AUX, MSR_SPEC_CTRL, MSR_VIRT_SPEC_CTRL] {
            assert_eq!(read(index, &state, &caps, &Host), Err(Gp), "{index:#x}");
        }
        let mut state = MsrState::default();
        for index in [MSR_TSC_AUX, MSR_SPEC_CTRL, MSR_VIRT_SPEC_CTRL, MSR_PRED_CMD] {
            assert_eq!(write(index, 0, &mut state, &caps), Err(Gp), "{index:#x}");
        }
        assert_eq!(state, MsrState::default());
    }

    #[test]
    fn the_edges_of_each_check() {
        let caps = all();
        let mut s = MsrState::default();
        let mut w = |index, value| write(index, value, &mut s, &caps);
        // PAT: each of the eight entries, each of the 256 byte values.
        for entry in 0..8 {
            for ty in 0..=0xFFu64 {
                let valid = matches!(ty, 0 | 1 | 4 | 5 | 6 | 7);
                let value = ty << (entry * 8);
                let expect = if valid {
                    Ok(WriteEffect::Pat(value))
                } else {
                    Err(Gp)
                };
                assert_eq!(
                    w(MSR_IA32_CR_PAT, value),
                    expect,
                    "entry {entry} type {ty:#x}"
                );
            }
        }
        // MTRR default type: types 0, 1, 4, 5, 6 only (7, UC-, is a PAT
        // type only); bits 8, 9 and from 12 up reserved.
        for ty in 0..=0xFFu64 {
            let valid = matches!(ty, 0 | 1 | 4 | 5 | 6);
            assert_eq!(w(MSR_MTRR_DEF_TYPE, ty).is_ok(), valid, "type {ty:#x}");
        }
        for bit in 8..64 {
            let valid = bit == 10 || bit == 11;
            assert_eq!(
                w(MSR_MTRR_DEF_TYPE, (1 << bit) | 6).is_ok(),
                valid,
                "bit {bit}"
            );
        }
        // MTRR_CAP is read-only.
        assert_eq!(w(MSR_MTRR_CAP, 0), Err(Gp));
        // TSC_AUX: bit 31 in, bit 32 out.
        assert_eq!(w(MSR_TSC_AUX, 1 << 31), Ok(WriteEffect::None));
        assert_eq!(w(MSR_TSC_AUX, u64::MAX), Err(Gp));
        // SPEC_CTRL: each bit above SSBD refused.
        for bit in 3..64 {
            assert_eq!(w(MSR_SPEC_CTRL, 1 << bit), Err(Gp), "bit {bit}");
        }
        // MCG_STATUS: any value kept, as Xen's vMCE keeps it.
        for bit in 0..64 {
            assert_eq!(w(MSR_IA32_MCG_STATUS, 1 << bit), Ok(WriteEffect::None));
        }
        // The banks' range: 0x400 to 0x47F (32 banks), no further either
        // way; the two banks that are there are MC0_CTL (0x400) to
        // MC1_MISC (0x407): their STATUS, ADDR and MISC only 0, the rest
        // anything.
        assert_eq!(w(0x3FF, 0), Err(Gp));
        assert_eq!(w(0x400, 1), Ok(WriteEffect::None));
        assert_eq!(w(0x407, 1), Err(Gp));
        assert_eq!(w(0x407, 0), Ok(WriteEffect::None));
        assert_eq!(w(0x408, 1), Ok(WriteEffect::None));
        assert_eq!(w(0x47F, 1), Ok(WriteEffect::None));
        assert_eq!(w(0x480, 0), Err(Gp));
        let r = |index| read(index, &MsrState::default(), &caps, &Host);
        assert_eq!(r(0x3FF), Err(Gp));
        assert_eq!(r(0x400), Ok(u64::MAX));
        assert_eq!(r(0x407), Ok(0));
        assert_eq!(r(0x408), Ok(0));
        assert_eq!(r(0x47F), Ok(0));
        assert_eq!(r(0x480), Err(Gp));
        // The hypercall page: any offset within the page refused.
        for bit in 0..12 {
            assert_eq!(w(HYPERCALL_PAGE_MSR, 1 << bit), Err(Gp), "bit {bit}");
        }
        assert_eq!(
            w(HYPERCALL_PAGE_MSR, u64::MAX << 12),
            Ok(WriteEffect::HypercallPage(u64::MAX >> 12))
        );
    }

    #[test]
    fn writes_are_checked_as_xen_checks_them() {
        let caps = all();
        let mut s = MsrState::default();
        let mut w = |index, value| write(index, value, &mut s, &caps);
        // PAT: every byte a memory type (0, 1, 4, 5, 6, 7).
        assert_eq!(
            w(MSR_IA32_CR_PAT, 0x0007_0406_0007_0406),
            Ok(WriteEffect::Pat(0x0007_0406_0007_0406))
        );
        assert_eq!(w(MSR_IA32_CR_PAT, 0x02), Err(Gp));
        assert_eq!(w(MSR_IA32_CR_PAT, 0x08 << 56), Err(Gp));
        // The hypercall page: page 0 of the area only.
        assert_eq!(
            w(HYPERCALL_PAGE_MSR, 0x1234_5000),
            Ok(WriteEffect::HypercallPage(0x12345))
        );
        assert_eq!(w(HYPERCALL_PAGE_MSR, 0x1234_5001), Err(Gp));
        // MCG_STATUS kept; a bank's MISC only 0, an absent bank's anything.
        assert_eq!(w(MSR_IA32_MCG_STATUS, 0), Ok(WriteEffect::None));
        assert_eq!(w(MSR_IA32_MCG_STATUS, 1), Ok(WriteEffect::None));
        assert_eq!(w(MSR_IA32_MC0_CTL + 7, u64::MAX), Err(Gp));
        assert_eq!(w(MSR_MC_BANKS_END, u64::MAX), Ok(WriteEffect::None));
        // MTRR default type: E, FE and a valid type.
        assert_eq!(w(MSR_MTRR_DEF_TYPE, 0xC06), Ok(WriteEffect::None));
        assert_eq!(w(MSR_MTRR_DEF_TYPE, 0x1006), Err(Gp));
        assert_eq!(w(MSR_MTRR_DEF_TYPE, 0x02), Err(Gp));
        // TSC_AUX: 32 bits.
        assert_eq!(w(MSR_TSC_AUX, 0xFFFF_FFFF), Ok(WriteEffect::None));
        assert_eq!(w(MSR_TSC_AUX, 1 << 32), Err(Gp));
        // SPEC_CTRL: IBRS, STIBP, SSBD.
        assert_eq!(
            w(
                MSR_SPEC_CTRL,
                SPEC_CTRL_IBRS | SPEC_CTRL_STIBP | SPEC_CTRL_SSBD
            ),
            Ok(WriteEffect::None)
        );
        assert_eq!(w(MSR_SPEC_CTRL, 1 << 3), Err(Gp));
        // PRED_CMD: IBPB or nothing.
        assert_eq!(w(MSR_PRED_CMD, 1), Ok(WriteEffect::Ibpb));
        assert_eq!(w(MSR_PRED_CMD, 0), Ok(WriteEffect::None));
        assert_eq!(w(MSR_PRED_CMD, 2), Err(Gp));
        // VIRT_SPEC_CTRL keeps SSBD only.
        assert_eq!(w(MSR_VIRT_SPEC_CTRL, u64::MAX), Ok(WriteEffect::None));
        // EFER and APIC base go to the caller.
        assert_eq!(w(MSR_EFER, 0xD01), Ok(WriteEffect::Efer(0xD01)));
        assert_eq!(
            w(MSR_IA32_APICBASE, 0xFEE0_0800),
            Ok(WriteEffect::ApicBase(0xFEE0_0800))
        );
        // Ignored ones; unknown ones #GP.
        assert_eq!(w(MSR_IA32_MISC_ENABLE, 5), Ok(WriteEffect::None));
        assert_eq!(w(MSR_IA32_TSC, 0), Err(Gp));
        assert_eq!(w(u32::MAX, 0), Err(Gp));
        assert_eq!(
            s,
            MsrState {
                mtrr_def_type: 0xC06,
                tsc_aux: 0xFFFF_FFFF,
                spec_ctrl: SPEC_CTRL_IBRS | SPEC_CTRL_STIBP | SPEC_CTRL_SSBD,
                virt_spec_ctrl: SPEC_CTRL_SSBD,
                mcg_status: 1,
            }
        );
    }

    /// Reads `index` with nothing offered and a fresh state.
    fn fresh_read(index: u32) -> Result<u64, Gp> {
        read(index, &MsrState::default(), &MsrCaps::default(), &Host)
    }

    /// Writes `value` to `index` on a fresh state, which it must leave as
    /// it was when the write is dropped or refused.
    fn dropped_or_refused(index: u32, value: u64) -> Result<WriteEffect, Gp> {
        let mut state = MsrState::default();
        let r = write(index, value, &mut state, &MsrCaps::default());
        assert_eq!(state, MsrState::default(), "{index:#x} kept nothing");
        r
    }

    #[test]
    fn k8_enable_c1e_reads_0_and_refuses_writes() {
        // hvm.c hvm_msr_read_intercept: 0 (Linux reads it without a fixup
        // when it believes it has erratum 400); writes reach
        // svm_msr_write_intercept's default: #GP.
        assert_eq!(fresh_read(MSR_K8_ENABLE_C1E), Ok(0));
        assert_eq!(dropped_or_refused(MSR_K8_ENABLE_C1E, 0), Err(Gp));
        assert_eq!(dropped_or_refused(MSR_K8_ENABLE_C1E, 1 << 27), Err(Gp));
    }

    #[test]
    fn hwcr_reads_0_and_refuses_writes() {
        // msr.c guest_rdmsr (4.17.3 on); no write path but the default #GP.
        assert_eq!(fresh_read(MSR_K8_HWCR), Ok(0));
        assert_eq!(dropped_or_refused(MSR_K8_HWCR, 0), Err(Gp));
        assert_eq!(dropped_or_refused(MSR_K8_HWCR, 1 << 6), Err(Gp));
    }

    #[test]
    fn nb_cfg_reads_0_and_drops_writes() {
        // hvm.c hvm_msr_{read,write}_intercept.
        assert_eq!(fresh_read(MSR_AMD64_NB_CFG), Ok(0));
        assert_eq!(
            dropped_or_refused(MSR_AMD64_NB_CFG, 1 << 46),
            Ok(WriteEffect::None)
        );
    }

    #[test]
    fn syscfg_top_mem_vm_cr_ex_cfg_read_0_and_drop_writes() {
        // svm.c svm_msr_{read,write}_intercept.
        for index in [
            MSR_K8_SYSCFG,
            MSR_K8_TOP_MEM1,
            MSR_K8_TOP_MEM2,
            MSR_K8_VM_CR,
            MSR_AMD64_EX_CFG,
        ] {
            assert_eq!(fresh_read(index), Ok(0), "{index:#x}");
            assert_eq!(
                dropped_or_refused(index, u64::MAX),
                Ok(WriteEffect::None),
                "{index:#x}"
            );
        }
        // Their neighbours are not there.
        for index in [0xC001_0011, 0xC001_001B, 0xC001_001E, 0xC001_0113] {
            assert_eq!(fresh_read(index), Err(Gp), "{index:#x}");
            assert_eq!(dropped_or_refused(index, 0), Err(Gp), "{index:#x}");
        }
    }

    #[test]
    fn performance_counters_read_0_and_drop_writes_without_a_vpmu() {
        // svm.c -> vpmu.c vpmu_do_msr with vpmu off (Xen's default).
        for index in (MSR_K7_EVNTSEL0..=MSR_K7_PERFCTR3)
            .chain(MSR_AMD_FAM15H_EVNTSEL0..=MSR_AMD_FAM15H_PERFCTR5)
        {
            assert_eq!(fresh_read(index), Ok(0), "{index:#x}");
            assert_eq!(
                dropped_or_refused(index, 0xABCD),
                Ok(WriteEffect::None),
                "{index:#x}"
            );
        }
        for index in [MSR_K7_PERFCTR3 + 1, MSR_AMD_FAM15H_PERFCTR5 + 1] {
            assert_eq!(fresh_read(index), Err(Gp), "{index:#x}");
            assert_eq!(dropped_or_refused(index, 0), Err(Gp), "{index:#x}");
        }
    }

    #[test]
    fn machine_check_msrs_as_xens_vmce_on_amd() {
        // vmce.c vmce_rdmsr/vmce_wrmsr through msr.c guest_{rd,wr}msr.
        assert_eq!(fresh_read(MSR_IA32_MCG_CAP), Ok(GUEST_MC_BANKS));
        assert_eq!(
            dropped_or_refused(MSR_IA32_MCG_CAP, 7),
            Ok(WriteEffect::None)
        );
        assert_eq!(fresh_read(MSR_IA32_MCG_CTL), Ok(0));
        assert_eq!(
            dropped_or_refused(MSR_IA32_MCG_CTL, u64::MAX),
            Ok(WriteEffect::None)
        );
        let mut state = MsrState::default();
        let caps = MsrCaps::default();
        assert_eq!(
            write(MSR_IA32_MCG_STATUS, 5, &mut state, &caps),
            Ok(WriteEffect::None)
        );
        assert_eq!(read(MSR_IA32_MCG_STATUS, &state, &caps, &Host), Ok(5));
        // Each bank: CTL all ones (writes dropped), STATUS, ADDR, MISC 0
        // and only 0 written.
        for bank in 0..GUEST_MC_BANKS as u32 {
            let ctl = MSR_IA32_MC0_CTL + 4 * bank;
            assert_eq!(fresh_read(ctl), Ok(u64::MAX));
            assert_eq!(dropped_or_refused(ctl, 0), Ok(WriteEffect::None));
            for index in ctl + 1..ctl + 4 {
                assert_eq!(fresh_read(index), Ok(0), "{index:#x}");
                assert_eq!(dropped_or_refused(index, 1), Err(Gp), "{index:#x}");
                assert_eq!(
                    dropped_or_refused(index, 0),
                    Ok(WriteEffect::None),
                    "{index:#x}"
                );
            }
        }
        // The MSRs of absent banks (MC4_MISC, the northbridge thresholds,
        // among them) and the CMCI controls: 0, writes dropped.
        for index in (MSR_MC_BANKS_END..MSR_IA32_MC_BANKS_END).chain(0x280..0x2A0) {
            assert_eq!(fresh_read(index), Ok(0), "{index:#x}");
            assert_eq!(
                dropped_or_refused(index, u64::MAX),
                Ok(WriteEffect::None),
                "{index:#x}"
            );
        }
        assert_eq!(fresh_read(0x413), Ok(0), "MC4_MISC");
        assert_eq!(fresh_read(0x27F), Err(Gp));
        assert_eq!(fresh_read(0x2A0), Err(Gp));
        // No LMCE: MCG_EXT_CTL #GP.
        assert_eq!(fresh_read(crate::msr::MSR_IA32_MCG_EXT_CTL), Err(Gp));
        assert_eq!(
            dropped_or_refused(crate::msr::MSR_IA32_MCG_EXT_CTL, 0),
            Err(Gp)
        );
        // The Pentium's: read 0, writes #GP.
        for index in [MSR_P5_MC_ADDR, MSR_P5_MC_TYPE] {
            assert_eq!(fresh_read(index), Ok(0), "{index:#x}");
            assert_eq!(dropped_or_refused(index, 0), Err(Gp), "{index:#x}");
        }
    }

    #[test]
    fn family_10h_mc4_misc_thresholds_are_locked() {
        // svm.c: "locked by the BIOS", writes dropped.
        for index in MSR_F10_MC4_MISC1..=MSR_F10_MC4_MISC3 {
            assert_eq!(fresh_read(index), Ok(MC_MISC_LOCKED), "{index:#x}");
            assert_eq!(
                dropped_or_refused(index, 0),
                Ok(WriteEffect::None),
                "{index:#x}"
            );
        }
        assert_eq!(fresh_read(MSR_F10_MC4_MISC1 - 1), Err(Gp));
        assert_eq!(fresh_read(MSR_F10_MC4_MISC3 + 1), Err(Gp));
    }

    #[test]
    fn msrs_xen_417_refuses_stay_refused() {
        // OSVW (not offered by Xen 4.17: the CPUID bit is hidden too), the
        // load-store configuration, BU_CFG and BU_CFG2 (the host's, which
        // rxen does not forward), the P-state MSRs.
        for index in [
            crate::msr::MSR_AMD_OSVW_ID_LENGTH,
            crate::msr::MSR_AMD_OSVW_STATUS,
            0xC001_1020, // LS_CFG
            0xC001_1023, // BU_CFG
            0xC001_102A, // BU_CFG2
            0xC001_0064, // PSTATE0
        ] {
            assert_eq!(fresh_read(index), Err(Gp), "{index:#x}");
            assert_eq!(dropped_or_refused(index, 0), Err(Gp), "{index:#x}");
        }
    }
}
