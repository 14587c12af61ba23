//! `xen/include/public/hvm/save.h` and `arch-x86/hvm/save.h` (Xen 4.17):
//! the HVM context that `XEN_DOMCTL_gethvmcontext` and `sethvmcontext`
//! carry, a series of records, each a [`HvmSaveDescriptor`] and its
//! payload: the [`HvmSaveHeader`] first, then per-domain and per-vCPU
//! state, then an `END` descriptor (typecode 0, length 0). Only the record
//! types rxen serves are typed here.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `HVM_FILE_MAGIC`: the header's magic number.
pub const HVM_FILE_MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`: the only version of the format.
pub const HVM_FILE_VERSION: u32 = 1;

/// `HVM_SAVE_CODE(END)`: the end of the records.
pub const HVM_SAVE_CODE_END: u16 = 0;
/// `HVM_SAVE_CODE(HEADER)`: [`HvmSaveHeader`].
pub const HVM_SAVE_CODE_HEADER: u16 = 1;
/// `HVM_SAVE_CODE(CPU)`: [`HvmHwCpu`], one per vCPU that is up.
pub const HVM_SAVE_CODE_CPU: u16 = 2;
/// `HVM_SAVE_CODE(LAPIC)`: the local APIC's MSR and timer (not served).
pub const HVM_SAVE_CODE_LAPIC: u16 = 5;
/// `HVM_SAVE_CODE(MTRR)`: [`HvmHwMtrr`], one per vCPU.
pub const HVM_SAVE_CODE_MTRR: u16 = 14;
/// `HVM_SAVE_CODE_MAX` (4.17): the highest typecode Xen knows (CPU_MSR).
pub const HVM_SAVE_CODE_MAX: u16 = 20;

/// `struct hvm_save_descriptor`, 8 bytes: before every record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmSaveDescriptor {
    /// `HVM_SAVE_CODE_*`: which record.
    pub typecode: u16,
    /// Which instance (the vCPU, for per-vCPU records).
    pub instance: u16,
    /// Bytes of the payload, not counting this descriptor.
    pub length: u32,
}

/// `struct hvm_save_header`, 24 bytes: the first record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmSaveHeader {
    /// [`HVM_FILE_MAGIC`].
    pub magic: u32,
    /// [`HVM_FILE_VERSION`].
    pub version: u32,
    /// Version of the hypervisor that saved it (~0: unknown).
    pub changeset: u64,
    /// CPUID leaf 1 EAX of the saving machine.
    pub cpuid: u32,
    /// The guest's TSC frequency in kHz.
    pub gtsc_khz: u32,
}

/// `XEN_X86_FPU_INITIALISED`: [`HvmHwCpu::fpu_regs`] holds the FPU state.
pub const XEN_X86_FPU_INITIALISED: u32 = 1;

/// Length of `struct hvm_hw_cpu_compat` (before Xen 3.4: no `msr_tsc_aux`,
/// no `flags`), which Xen still loads.
pub const HVM_HW_CPU_COMPAT_LENGTH: u32 = 1016;

/// `struct hvm_hw_cpu`, 1032 bytes: a vCPU's registers (typecode 2).
/// Segment attributes (`*_arbytes`) are packed as in a VMCB (type, S, DPL,
/// P in bits 0-7, AVL, L, D/B, G in bits 8-11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmHwCpu {
    /// The FXSAVE image of the FPU and SSE state.
    pub fpu_regs: [u8; 512],
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RSP.
    pub rsp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// DR0.
    pub dr0: u64,
    /// DR1.
    pub dr1: u64,
    /// DR2.
    pub dr2: u64,
    /// DR3.
    pub dr3: u64,
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// CS selector.
    pub cs_sel: u32,
    /// DS selector.
    pub ds_sel: u32,
    /// ES selector.
    pub es_sel: u32,
    /// FS selector.
    pub fs_sel: u32,
    /// GS selector.
    pub gs_sel: u32,
    /// SS selector.
    pub ss_sel: u32,
    /// TR selector.
    pub tr_sel: u32,
    /// LDTR selector.
    pub ldtr_sel: u32,
    /// CS limit.
    pub cs_limit: u32,
    /// DS limit.
    pub ds_limit: u32,
    /// ES limit.
    pub es_limit: u32,
    /// FS limit.
    pub fs_limit: u32,
    /// GS limit.
    pub gs_limit: u32,
    /// SS limit.
    pub ss_limit: u32,
    /// TR limit.
    pub tr_limit: u32,
    /// LDTR limit.
    pub ldtr_limit: u32,
    /// IDTR limit.
    pub idtr_limit: u32,
    /// GDTR limit.
    pub gdtr_limit: u32,
    /// CS base.
    pub cs_base: u64,
    /// DS base.
    pub ds_base: u64,
    /// ES base.
    pub es_base: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// SS base.
    pub ss_base: u64,
    /// TR base.
    pub tr_base: u64,
    /// LDTR base.
    pub ldtr_base: u64,
    /// IDTR base.
    pub idtr_base: u64,
    /// GDTR base.
    pub gdtr_base: u64,
    /// CS attributes.
    pub cs_arbytes: u32,
    /// DS attributes.
    pub ds_arbytes: u32,
    /// ES attributes.
    pub es_arbytes: u32,
    /// FS attributes.
    pub fs_arbytes: u32,
    /// GS attributes.
    pub gs_arbytes: u32,
    /// SS attributes.
    pub ss_arbytes: u32,
    /// TR attributes.
    pub tr_arbytes: u32,
    /// LDTR attributes.
    pub ldtr_arbytes: u32,
    /// SYSENTER_CS.
    pub sysenter_cs: u64,
    /// SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// KERNEL_GS_BASE (what SWAPGS swaps in).
    pub shadow_gs: u64,
    /// Obsolete, ignored.
    pub msr_flags: u64,
    /// LSTAR.
    pub msr_lstar: u64,
    /// STAR.
    pub msr_star: u64,
    /// CSTAR.
    pub msr_cstar: u64,
    /// SFMASK.
    pub msr_syscall_mask: u64,
    /// EFER.
    pub msr_efer: u64,
    /// TSC_AUX (32 bits).
    pub msr_tsc_aux: u64,
    /// The guest's TSC.
    pub tsc: u64,
    /// A pending event: vector (bits 0-7), type (8-10), error code valid
    /// (11), reserved (12-30), valid (31), as a VMCB's EVENTINJ.
    pub pending_event: u32,
    /// The pending event's error code.
    pub error_code: u32,
    /// [`XEN_X86_FPU_INITIALISED`].
    pub flags: u32,
    /// Must be 0.
    pub pad0: u32,
}

impl HvmHwCpu {
    /// The state a PVH vCPU starts in, as libxc's `vcpu_hvm` sets it: 32-bit
    /// flat protected mode (CR0 = PE|ET, code and data segments of 4 GiB, a
    /// busy TSS) at `entry`, RBX = the `hvm_start_info` address, the rest zero.
    pub fn pvh_start(entry: u64, start_info: u64) -> Self {
        let mut cpu = Self::new_zeroed();
        cpu.rip = entry;
        cpu.rbx = start_info;
        cpu.cr0 = 0x11;
        cpu.cs_limit = !0;
        cpu.ds_limit = !0;
        cpu.es_limit = !0;
        cpu.ss_limit = !0;
        cpu.tr_limit = 0x67;
        cpu.cs_arbytes = 0xc9b;
        cpu.ds_arbytes = 0xc93;
        cpu.es_arbytes = 0xc93;
        cpu.ss_arbytes = 0xc93;
        cpu.tr_arbytes = 0x8b;
        cpu
    }
}

impl Default for HvmHwCpu {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `MTRR_VCNT`: variable-range MTRR pairs in [`HvmHwMtrr`].
pub const MTRR_VCNT: usize = 8;
/// `NUM_FIXED_MSR`: fixed-range MTRRs in [`HvmHwMtrr`].
pub const NUM_FIXED_MSR: usize = 11;

/// `struct hvm_hw_mtrr`, 240 bytes: a vCPU's PAT and MTRRs (typecode 14).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmHwMtrr {
    /// IA32_PAT.
    pub msr_pat_cr: u64,
    /// PHYSBASE/PHYSMASK pairs.
    pub msr_mtrr_var: [u64; MTRR_VCNT * 2],
    /// The fixed-range MTRRs.
    pub msr_mtrr_fixed: [u64; NUM_FIXED_MSR],
    /// IA32_MTRRCAP (VCNT in bits 0-7).
    pub msr_mtrr_cap: u64,
    /// IA32_MTRR_DEF_TYPE (type in bits 0-7, FE bit 10, E bit 11).
    pub msr_mtrr_def_type: u64,
}

/// `MTRR_TYPE_WRBACK`.
pub const MTRR_TYPE_WRBACK: u64 = 6;
/// `MTRR_DEF_TYPE_ENABLE`: MTRRs enabled (bit 11).
pub const MTRR_DEF_TYPE_ENABLE: u64 = 1 << 11;

/// Bytes of a descriptor.
pub const DESCRIPTOR_LENGTH: u32 = 8;
/// `HVM_SAVE_LENGTH(HEADER)`.
pub const HEADER_LENGTH: u32 = 24;
/// `HVM_SAVE_LENGTH(CPU)`.
pub const CPU_LENGTH: u32 = 1032;
/// `HVM_SAVE_LENGTH(MTRR)`.
pub const MTRR_LENGTH: u32 = 240;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layouts_are_xen_4_17s() {
        assert_layout!(HvmSaveDescriptor, size = 8, { typecode: 0, instance: 2, length: 4 });
        assert_layout!(HvmSaveHeader, size = 24, {
            magic: 0, version: 4, changeset: 8, cpuid: 16, gtsc_khz: 20,
        });
        // C: 512 bytes of FPU, 16 GPRs@512, rip@640, four CRs@656, six DRs@688,
        // eight u32 selectors@736, ten limits@768, ten bases@808, eight
        // attributes@888, sysenter@920, shadow_gs@944, seven MSRs@952,
        // tsc@1008, pending event@1016, error code, flags, pad0; 1032.
        assert_layout!(HvmHwCpu, size = CPU_LENGTH as usize, {
            fpu_regs: 0, rax: 512, rbx: 520, rsp: 568, r8: 576, r15: 632, rip: 640,
            rflags: 648, cr0: 656, cr2: 664, cr3: 672, cr4: 680, dr0: 688, dr6: 720,
            dr7: 728, cs_sel: 736, ldtr_sel: 764, cs_limit: 768, idtr_limit: 800,
            gdtr_limit: 804, cs_base: 808, ldtr_base: 864, idtr_base: 872,
            gdtr_base: 880, cs_arbytes: 888, tr_arbytes: 912, ldtr_arbytes: 916,
            sysenter_cs: 920, sysenter_eip: 936, shadow_gs: 944, msr_flags: 952,
            msr_lstar: 960, msr_star: 968, msr_cstar: 976, msr_syscall_mask: 984,
            msr_efer: 992, msr_tsc_aux: 1000, tsc: 1008, pending_event: 1016,
            error_code: 1020, flags: 1024, pad0: 1028,
        });
        assert_layout!(HvmHwMtrr, size = MTRR_LENGTH as usize, {
            msr_pat_cr: 0, msr_mtrr_var: 8, msr_mtrr_fixed: 136, msr_mtrr_cap: 224,
            msr_mtrr_def_type: 232,
        });
        assert_eq!(
            HEADER_LENGTH as usize,
            core::mem::size_of::<HvmSaveHeader>()
        );
    }
}
