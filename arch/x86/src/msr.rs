//! Model-specific register numbers, under the names of Xen's
//! `xen/arch/x86/include/asm/msr-index.h` (which follow the Intel SDM and
//! the AMD APM), and the few MSR bit fields rxen uses. Every MSR number in
//! the platform layer and the hypervisor comes from here. The bits of
//! CR0, CR4, EFER and XCR0 are in [`crate::ctrlreg`].

/// Time-stamp counter.
pub const MSR_IA32_TSC: u32 = 0x0000_0010;
/// Local APIC base address and mode.
pub const MSR_IA32_APICBASE: u32 = 0x0000_001B;
/// The first x2APIC register MSR (Xen's `MSR_X2APIC_FIRST`).
pub const MSR_X2APIC_FIRST: u32 = 0x0000_0800;
/// The last MSR of the x2APIC range (`MSR_X2APIC_LAST`).
pub const MSR_X2APIC_LAST: u32 = 0x0000_08FF;
/// IA32_APIC_BASE: the APIC is globally enabled.
pub const APICBASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE: the base address (bits 12 to 51).
pub const APICBASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Speculation control (IBRS, STIBP, SSBD).
pub const MSR_SPEC_CTRL: u32 = 0x0000_0048;
/// Prediction command (write-only: IBPB).
pub const MSR_PRED_CMD: u32 = 0x0000_0049;
/// Microcode revision.
pub const MSR_IA32_UCODE_REV: u32 = 0x0000_008B;
/// MTRR capabilities (Xen's `MSR_MTRRcap`).
pub const MSR_MTRR_CAP: u32 = 0x0000_00FE;
/// SYSENTER code segment.
pub const MSR_IA32_SYSENTER_CS: u32 = 0x0000_0174;
/// SYSENTER stack pointer.
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x0000_0175;
/// SYSENTER entry point.
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x0000_0176;
/// Machine-check capabilities (bank count in bits 7:0).
pub const MSR_IA32_MCG_CAP: u32 = 0x0000_0179;
/// Machine-check status.
pub const MSR_IA32_MCG_STATUS: u32 = 0x0000_017A;
/// Machine-check global control (present with MCG_CAP.MCG_CTL_P).
pub const MSR_IA32_MCG_CTL: u32 = 0x0000_017B;
/// Pentium machine-check address and type (Xen's `MSR_P5_MC_ADDR`,
/// `MSR_P5_MC_TYPE`).
pub const MSR_P5_MC_ADDR: u32 = 0x0000_0000;
/// See [`MSR_P5_MC_ADDR`].
pub const MSR_P5_MC_TYPE: u32 = 0x0000_0001;
/// CMCI control of machine-check bank 0; one per bank up to bank 31.
pub const MSR_IA32_MC0_CTL2: u32 = 0x0000_0280;
/// Miscellaneous features (fast strings...).
pub const MSR_IA32_MISC_ENABLE: u32 = 0x0000_01A0;
/// Page attribute table.
pub const MSR_IA32_CR_PAT: u32 = 0x0000_0277;
/// MTRR default type (Xen's `MSR_MTRRdefType`).
pub const MSR_MTRR_DEF_TYPE: u32 = 0x0000_02FF;
/// Control of machine-check bank 0; each bank has four MSRs (CTL,
/// STATUS, ADDR, MISC) from here on.
pub const MSR_IA32_MC0_CTL: u32 = 0x0000_0400;
/// One past the last MSR of machine-check bank 31 (Xen's
/// `MSR_IA32_MCx_MISC(31)` + 1).
pub const MSR_IA32_MC_BANKS_END: u32 = 0x0000_0480;
/// Local machine-check control.
pub const MSR_IA32_MCG_EXT_CTL: u32 = 0x0000_04D0;
/// MC4_MISC of family 10h, the thresholds of the northbridge bank's
/// further blocks (Xen's `MSR_F10_MC4_MISC1` to `MSR_F10_MC4_MISC3`).
pub const MSR_F10_MC4_MISC1: u32 = 0xC000_0408;
/// See [`MSR_F10_MC4_MISC1`].
pub const MSR_F10_MC4_MISC3: u32 = 0xC000_040A;
/// MCi_MISC.Locked: the threshold counter belongs to the firmware.
pub const MC_MISC_LOCKED: u64 = 1 << 61;

/// Extended feature enable (bits in [`crate::ctrlreg::efer`]).
pub const MSR_EFER: u32 = 0xC000_0080;
/// SYSCALL/SYSRET segments and legacy target.
pub const MSR_STAR: u32 = 0xC000_0081;
/// SYSCALL target in 64-bit mode.
pub const MSR_LSTAR: u32 = 0xC000_0082;
/// SYSCALL target in compatibility mode.
pub const MSR_CSTAR: u32 = 0xC000_0083;
/// RFLAGS mask of SYSCALL (the APM's SFMASK).
pub const MSR_SYSCALL_MASK: u32 = 0xC000_0084;
/// FS base.
pub const MSR_FS_BASE: u32 = 0xC000_0100;
/// GS base.
pub const MSR_GS_BASE: u32 = 0xC000_0101;
/// The GS base SWAPGS exchanges (KERNEL_GS_BASE).
pub const MSR_SHADOW_GS_BASE: u32 = 0xC000_0102;
/// What RDTSCP and RDPID return.
pub const MSR_TSC_AUX: u32 = 0xC000_0103;

/// AMD performance event select 0 (K7 layout: four selects, then four
/// counters).
pub const MSR_K7_EVNTSEL0: u32 = 0xC001_0000;
/// AMD performance counter 3, the last of the K7 layout.
pub const MSR_K7_PERFCTR3: u32 = 0xC001_0007;
/// AMD system configuration (Xen's `MSR_K8_SYSCFG`).
pub const MSR_K8_SYSCFG: u32 = 0xC001_0010;
/// AMD hardware configuration.
pub const MSR_K8_HWCR: u32 = 0xC001_0015;
/// AMD top of memory below 4 GiB.
pub const MSR_K8_TOP_MEM1: u32 = 0xC001_001A;
/// AMD top of memory above 4 GiB.
pub const MSR_K8_TOP_MEM2: u32 = 0xC001_001D;
/// AMD northbridge configuration.
pub const MSR_AMD64_NB_CFG: u32 = 0xC001_001F;
/// AMD interrupt pending message / C1E enable (Xen's `MSR_K8_ENABLE_C1E`,
/// Linux's `MSR_K8_INT_PENDING_MSG`).
pub const MSR_K8_ENABLE_C1E: u32 = 0xC001_0055;
/// AMD OS visible workaround: the number of valid status bits.
pub const MSR_AMD_OSVW_ID_LENGTH: u32 = 0xC001_0140;
/// AMD OS visible workaround: status bits (the first register).
pub const MSR_AMD_OSVW_STATUS: u32 = 0xC001_0141;
/// AMD performance event select 0 of the family 15h layout (select and
/// counter interleaved, six of each).
pub const MSR_AMD_FAM15H_EVNTSEL0: u32 = 0xC001_0200;
/// AMD performance counter 5 of the family 15h layout, the last.
pub const MSR_AMD_FAM15H_PERFCTR5: u32 = 0xC001_020B;
/// AMD VM_CR (SVM lock and disable).
pub const MSR_K8_VM_CR: u32 = 0xC001_0114;
/// VM_CR.SVMDIS: the firmware disabled SVM.
pub const K8_VMCR_SVME_DISABLE: u64 = 1 << 4;
/// AMD host save area of VMRUN.
pub const MSR_K8_VM_HSAVE_PA: u32 = 0xC001_0117;
/// AMD's virtualized speculation control (SSBD) that a hypervisor offers.
pub const MSR_VIRT_SPEC_CTRL: u32 = 0xC001_011F;
/// AMD decode configuration.
pub const MSR_AMD64_DE_CFG: u32 = 0xC001_1029;
/// DE_CFG: LFENCE is dispatch-serializing.
pub const AMD64_DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
/// AMD execution unit configuration.
pub const MSR_AMD64_EX_CFG: u32 = 0xC001_102C;
