//! The AMD model-specific MSRs Linux touches at boot, as Xen 4.17 answers an HVM/PVH
//! guest on AMD: MSR_K8_ENABLE_C1E (0xC001_0055) and NB_CFG (0xC001_001F) read 0
//! (`hvm_msr_read_intercept`), writes to the first #GP and to the second are dropped;
//! SYSCFG, VM_CR and EX_CFG take writes and drop them (`svm_msr_write_intercept`; VM_CR
//! and EX_CFG read 0, SYSCFG is the host's for Xen's hardware domain, so not checked);
//! the performance counters read 0 and drop writes without a virtual PMU
//! (`vpmu_do_msr`); the virtual machine-check banks (`vmce_rdmsr`/`vmce_wrmsr`): MCG_CAP
//! two banks, MCG_CTL 0, each MCi_CTL all ones, STATUS/ADDR/MISC 0 and only 0 written,
//! the MSRs of absent banks 0 and written freely, MCG_STATUS as written, no
//! MCG_EXT_CTL; family 10h's MC4_MISC1-3 locked; no OSVW (CPUID and MSRs); the
//! Pentium MC MSRs read 0 and #GP on writes; HWCR reads 0 (4.17.3 and later: no
//! TscFreqSel), writes #GP. Skips on a CPU that is not AMD.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::boot::set_trap_hook;
use rxen_guest::cpu::cpuid;
use rxen_guest::cpu::{msr_gp_hook, try_rdmsr, try_wrmsr};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

const MSR_P5_MC_ADDR: u32 = 0;
const MSR_IA32_MCG_CAP: u32 = 0x179;
const MSR_IA32_MCG_STATUS: u32 = 0x17A;
const MSR_IA32_MCG_CTL: u32 = 0x17B;
const MSR_IA32_MC0_CTL2: u32 = 0x280;
const MSR_IA32_MC0_CTL: u32 = 0x400;
const MSR_IA32_MCG_EXT_CTL: u32 = 0x4D0;
const MSR_F10_MC4_MISC1: u32 = 0xC000_0408;
const MSR_F10_MC4_MISC3: u32 = 0xC000_040A;
const MSR_K7_EVNTSEL0: u32 = 0xC001_0000;
const MSR_K7_PERFCTR3: u32 = 0xC001_0007;
const MSR_K8_SYSCFG: u32 = 0xC001_0010;
const MSR_K8_HWCR: u32 = 0xC001_0015;
const MSR_AMD64_NB_CFG: u32 = 0xC001_001F;
const MSR_K8_ENABLE_C1E: u32 = 0xC001_0055;
const MSR_K8_VM_CR: u32 = 0xC001_0114;
const MSR_AMD_OSVW_ID_LENGTH: u32 = 0xC001_0140;
const MSR_AMD_OSVW_STATUS: u32 = 0xC001_0141;
const MSR_AMD_FAM15H_EVNTSEL0: u32 = 0xC001_0200;
const MSR_AMD_FAM15H_PERFCTR5: u32 = 0xC001_020B;
const MSR_AMD64_EX_CFG: u32 = 0xC001_102C;

/// RDMSR; None if it took #GP.
fn rdmsr(msr: u32) -> Option<u64> {
    try_rdmsr(msr)
}

/// WRMSR; false if it took #GP.
fn wrmsr(msr: u32, value: u64) -> bool {
    // SAFETY: the hypervisor drops or refuses these writes (none reaches a host MSR).
    unsafe { try_wrmsr(msr, value) }
}

fn main(_si: &StartInfo) {
    let v = cpuid(0, 0);
    // "AuthenticAMD"
    if (v.ebx, v.edx, v.ecx) != (0x6874_7541, 0x6974_6E65, 0x444D_4163) {
        println!("amd_msrs: not an AMD CPU, skipped");
        return;
    }
    set_trap_hook(Some(msr_gp_hook));

    // Erratum 400's MSR and the northbridge configuration.
    check_eq!(rdmsr(MSR_K8_ENABLE_C1E), Some(0), "ENABLE_C1E reads 0");
    check!(!wrmsr(MSR_K8_ENABLE_C1E, 0), "ENABLE_C1E write #GP");
    check_eq!(rdmsr(MSR_AMD64_NB_CFG), Some(0), "NB_CFG reads 0");
    check!(wrmsr(MSR_AMD64_NB_CFG, 1 << 46), "NB_CFG write dropped");
    check_eq!(rdmsr(MSR_AMD64_NB_CFG), Some(0), "NB_CFG still 0");
    check_eq!(rdmsr(MSR_K8_ENABLE_C1E + 1), None, "0xC001_0056 #GP");

    // HWCR: 0 (no TscFreqSel since Xen 4.17.3), writes #GP.
    check_eq!(rdmsr(MSR_K8_HWCR), Some(0), "HWCR reads 0");
    check!(!wrmsr(MSR_K8_HWCR, 1 << 6), "HWCR write #GP");

    // Read-only to the guest: writes dropped.
    println!("amd_msrs: SYSCFG {:x?}", rdmsr(MSR_K8_SYSCFG));
    check!(wrmsr(MSR_K8_SYSCFG, 0), "SYSCFG write dropped");
    for msr in [MSR_K8_VM_CR, MSR_AMD64_EX_CFG] {
        check_eq!(rdmsr(msr), Some(0), "VM_CR/EX_CFG read 0");
        check!(wrmsr(msr, 0x10), "VM_CR/EX_CFG write dropped");
        check_eq!(rdmsr(msr), Some(0), "VM_CR/EX_CFG still 0");
    }

    // No virtual PMU.
    for msr in [
        MSR_K7_EVNTSEL0,
        MSR_K7_PERFCTR3,
        MSR_AMD_FAM15H_EVNTSEL0,
        MSR_AMD_FAM15H_PERFCTR5,
    ] {
        check_eq!(rdmsr(msr), Some(0), "counter reads 0");
        check!(wrmsr(msr, 0xABCD), "counter write dropped");
        check_eq!(rdmsr(msr), Some(0), "counter still 0");
    }
    check_eq!(rdmsr(MSR_K7_PERFCTR3 + 1), None, "0xC001_0008 #GP");

    // The virtual machine-check architecture.
    check_eq!(rdmsr(MSR_IA32_MCG_CAP), Some(2), "MCG_CAP: two banks");
    check!(wrmsr(MSR_IA32_MCG_CAP, 5), "MCG_CAP write dropped");
    check_eq!(rdmsr(MSR_IA32_MCG_CAP), Some(2), "MCG_CAP unchanged");
    check_eq!(rdmsr(MSR_IA32_MCG_CTL), Some(0), "no MCG_CTL: 0");
    check!(wrmsr(MSR_IA32_MCG_CTL, !0), "MCG_CTL write dropped");
    check_eq!(rdmsr(MSR_IA32_MCG_STATUS), Some(0), "MCG_STATUS 0");
    check!(wrmsr(MSR_IA32_MCG_STATUS, 1), "MCG_STATUS written");
    check_eq!(rdmsr(MSR_IA32_MCG_STATUS), Some(1), "MCG_STATUS kept");
    check!(wrmsr(MSR_IA32_MCG_STATUS, 0), "MCG_STATUS back to 0");
    check_eq!(rdmsr(MSR_IA32_MCG_EXT_CTL), None, "no MCG_EXT_CTL");
    for bank in 0..2 {
        let ctl = MSR_IA32_MC0_CTL + 4 * bank;
        check_eq!(rdmsr(ctl), Some(!0), "MCi_CTL all ones");
        check!(wrmsr(ctl, 0), "MCi_CTL write dropped");
        check_eq!(rdmsr(ctl), Some(!0), "MCi_CTL still all ones");
        for msr in ctl + 1..ctl + 4 {
            check_eq!(rdmsr(msr), Some(0), "MCi_STATUS/ADDR/MISC 0");
            check!(!wrmsr(msr, 1), "MCi_STATUS/ADDR/MISC: only 0");
            check!(wrmsr(msr, 0), "MCi_STATUS/ADDR/MISC: 0");
        }
    }
    // Absent banks, among them MC4_MISC (thresholds), and the CMCI controls.
    for msr in [0x408, 0x413, 0x47F, MSR_IA32_MC0_CTL2, 0x29F] {
        check_eq!(rdmsr(msr), Some(0), "absent bank MSR reads 0");
        check!(wrmsr(msr, 5), "absent bank MSR write dropped");
    }
    check_eq!(rdmsr(0x480), None, "past the banks: #GP");
    for msr in MSR_F10_MC4_MISC1..=MSR_F10_MC4_MISC3 {
        check_eq!(rdmsr(msr), Some(1 << 61), "F10 MC4_MISC locked");
        check!(wrmsr(msr, 0), "F10 MC4_MISC write dropped");
    }
    check_eq!(rdmsr(MSR_P5_MC_ADDR), Some(0), "P5_MC_ADDR 0");
    check!(!wrmsr(MSR_P5_MC_ADDR, 0), "P5_MC_ADDR write #GP");

    // No OS visible workarounds.
    check_eq!(cpuid(0x8000_0001, 0).ecx & (1 << 9), 0, "no OSVW in CPUID");
    check_eq!(rdmsr(MSR_AMD_OSVW_ID_LENGTH), None, "OSVW_ID_LENGTH #GP");
    check_eq!(rdmsr(MSR_AMD_OSVW_STATUS), None, "OSVW_STATUS #GP");

    set_trap_hook(None);
    println!("amd_msrs: done");
}
