//! `xen/include/public/hvm/hvm_vcpu.h`: the initial state of an HVM/PVH vCPU
//! that `VCPUOP_initialise` takes (`vcpu_hvm_context`), in 32-bit or 64-bit
//! mode.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VCPU_HVM_MODE_32B` (hvm_vcpu.h): 32-bit protected mode registers.
pub const VCPU_HVM_MODE_32B: u32 = 0;
/// `VCPU_HVM_MODE_64B` (hvm_vcpu.h): 64-bit (long mode) registers.
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_32` (hvm_vcpu.h): 32-bit registers, control
/// registers and the code, data, stack, extra and task segments.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuHvmX86_32 {
    /// General registers.
    pub eax: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
    /// EBX.
    pub ebx: u32,
    /// ESP.
    pub esp: u32,
    /// EBP.
    pub ebp: u32,
    /// ESI.
    pub esi: u32,
    /// EDI.
    pub edi: u32,
    /// EIP.
    pub eip: u32,
    /// EFLAGS.
    pub eflags: u32,
    /// CR0.
    pub cr0: u32,
    /// CR3.
    pub cr3: u32,
    /// CR4.
    pub cr4: u32,
    /// Padding.
    pub pad1: u32,
    /// EFER (the guest may set LME to enter long mode later).
    pub efer: u64,
    /// CS base.
    pub cs_base: u32,
    /// DS base.
    pub ds_base: u32,
    /// SS base.
    pub ss_base: u32,
    /// ES base.
    pub es_base: u32,
    /// TR base.
    pub tr_base: u32,
    /// CS limit.
    pub cs_limit: u32,
    /// DS limit.
    pub ds_limit: u32,
    /// SS limit.
    pub ss_limit: u32,
    /// ES limit.
    pub es_limit: u32,
    /// TR limit.
    pub tr_limit: u32,
    /// CS attributes (the 12 bits of a descriptor's type..G, packed as in VMCB).
    pub cs_ar: u16,
    /// DS attributes.
    pub ds_ar: u16,
    /// SS attributes.
    pub ss_ar: u16,
    /// ES attributes.
    pub es_ar: u16,
    /// TR attributes.
    pub tr_ar: u16,
    /// Padding.
    pub pad2: [u16; 3],
}

/// `struct vcpu_hvm_x86_64` (hvm_vcpu.h): 64-bit registers; segments are
/// flat and set by the hypervisor.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuHvmX86_64 {
    /// RAX.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBX.
    pub rbx: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// `struct vcpu_hvm_context` (hvm_vcpu.h): the mode and, in a C union, the
/// registers of that mode (read them with [`x86_32`](Self::x86_32) or
/// [`x86_64`](Self::x86_64)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuHvmContext {
    /// `VCPU_HVM_MODE_*`.
    pub mode: u32,
    /// Padding.
    pub pad: u32,
    /// The union `cpu_regs` (the larger member is the 32-bit one).
    pub cpu_regs: [u8; 120],
}

impl Default for VcpuHvmContext {
    fn default() -> Self {
        Self {
            mode: VCPU_HVM_MODE_32B,
            pad: 0,
            cpu_regs: [0; 120],
        }
    }
}

impl VcpuHvmContext {
    /// The registers as `cpu_regs.x86_32`.
    pub fn x86_32(&self) -> VcpuHvmX86_32 {
        VcpuHvmX86_32::read_from_bytes(&self.cpu_regs).unwrap_or_default()
    }

    /// The registers as `cpu_regs.x86_64`.
    pub fn x86_64(&self) -> VcpuHvmX86_64 {
        VcpuHvmX86_64::read_from_prefix(&self.cpu_regs)
            .map(|(regs, _)| regs)
            .unwrap_or_default()
    }

    /// A 64-bit context with `regs`.
    pub fn new_64(regs: &VcpuHvmX86_64) -> Self {
        let mut context = Self {
            mode: VCPU_HVM_MODE_64B,
            ..Self::default()
        };
        context.cpu_regs[..112].copy_from_slice(regs.as_bytes());
        context
    }

    /// A 32-bit context with `regs`.
    pub fn new_32(regs: &VcpuHvmX86_32) -> Self {
        let mut context = Self::default();
        context.cpu_regs.copy_from_slice(regs.as_bytes());
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layouts() {
        // C: ten u32 registers, cr0/cr3/cr4/pad1, u64 efer@56, five bases@64,
        // five limits@84, five u16 attributes@104, pad2[3]; 120 in all.
        assert_layout!(VcpuHvmX86_32, size = 120, {
            eax: 0, eip: 32, eflags: 36, cr0: 40, cr3: 44, cr4: 48, efer: 56,
            cs_base: 64, tr_base: 80, cs_limit: 84, tr_limit: 100, cs_ar: 104,
            tr_ar: 112, pad2: 114,
        });
        // C: fourteen u64.
        assert_layout!(VcpuHvmX86_64, size = 112, {
            rax: 0, rsp: 32, rip: 64, rflags: 72, cr0: 80, cr3: 88, cr4: 96, efer: 104,
        });
        // C: u32 mode, u32 pad, union cpu_regs@8 (8-aligned); 128.
        assert_layout!(VcpuHvmContext, size = 128, { mode: 0, pad: 4, cpu_regs: 8 });
        assert_eq!(VCPU_HVM_MODE_64B, 1);
    }

    #[test]
    fn the_union_reads_back() {
        let regs = VcpuHvmX86_64 {
            rip: 0x1234,
            cr3: 0x5000,
            ..Default::default()
        };
        let context = VcpuHvmContext::new_64(&regs);
        assert_eq!(context.mode, VCPU_HVM_MODE_64B);
        assert_eq!(context.x86_64(), regs);
        let regs32 = VcpuHvmX86_32 {
            eip: 0x10_0000,
            cs_ar: 0xC9B,
            ..Default::default()
        };
        assert_eq!(VcpuHvmContext::new_32(&regs32).x86_32(), regs32);
    }
}
