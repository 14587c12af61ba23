//! AMD SVM: detection, per-CPU enabling (EFER.SVME, the host save area and
//! the host's VMSAVE area), the VMCB layout, nested page tables, the VMRUN
//! path that enters a guest and comes back on #VMEXIT, and the decoding of
//! an exit into the vendor-neutral [`crate::exit::Exit`] (`exit.rs`).
//!
//! The vendor boundary: everything AMD-specific is here; the hypervisor's
//! HVM layer handles `Exit`s. Intel VT-x is to be a sibling module, `vmx/`
//! (VMCS, VMLAUNCH/VMRESUME, EPT), decoding its exit reasons into the same
//! `Exit`.

pub mod exit;
pub mod guest_walk;
pub mod npt;
pub mod vmcb;
#[cfg(target_os = "none")]
mod vmrun;
#[cfg(target_os = "none")]
pub use vmrun::{
    enable_this_cpu_full, host_cr4_changes, run, EntryCtl, GuestRegs, HOST_STATE_AT_EXIT,
    HOST_STATE_REFUSED,
};

use raw_cpuid::cpuid;
use x86_64::registers::model_specific::Msr;

use crate::msr::{K8_VMCR_SVME_DISABLE, MSR_EFER, MSR_K8_VM_CR};

/// What the CPU offers for hardware virtualization.
#[derive(Clone, Copy, Debug)]
pub struct SvmInfo {
    /// SVM revision (CPUID 8000_000A EAX).
    pub revision: u32,
    /// Number of ASIDs.
    pub asids: u32,
    /// Nested paging (NPT).
    pub npt: bool,
    /// Next-RIP save.
    pub nrips: bool,
    /// Decode assists.
    pub decode_assists: bool,
}

/// Why SVM cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum SvmUnavailable {
    /// Not an AMD-V CPU (CPUID 8000_0001 ECX bit 2 clear).
    NotSupported,
    /// The firmware disabled SVM (VM_CR.SVMDIS).
    DisabledByFirmware,
    /// No nested paging; rxen needs it.
    NoNestedPaging,
}

impl core::fmt::Display for SvmUnavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotSupported => "the CPU does not support AMD SVM",
            Self::DisabledByFirmware => "SVM is disabled by the firmware (VM_CR.SVMDIS)",
            Self::NoNestedPaging => "the CPU has SVM but no nested paging (NPT)",
        })
    }
}

/// Checks this CPU for SVM with nested paging.
pub fn detect() -> Result<SvmInfo, SvmUnavailable> {
    let max_ext = cpuid!(0x8000_0000).eax;
    if max_ext < 0x8000_000A || cpuid!(0x8000_0001).ecx & (1 << 2) == 0 {
        return Err(SvmUnavailable::NotSupported);
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM.
    let vm_cr = unsafe { Msr::new(MSR_K8_VM_CR).read() };
    if vm_cr & K8_VMCR_SVME_DISABLE != 0 {
        return Err(SvmUnavailable::DisabledByFirmware);
    }
    let leaf = cpuid!(0x8000_000A);
    let info = SvmInfo {
        revision: leaf.eax & 0xff,
        asids: leaf.ebx,
        npt: leaf.edx & 1 != 0,
        nrips: leaf.edx & (1 << 3) != 0,
        decode_assists: leaf.edx & (1 << 7) != 0,
    };
    if !info.npt {
        return Err(SvmUnavailable::NoNestedPaging);
    }
    Ok(info)
}

/// Sets EFER.SVME on this CPU (after [`detect`] succeeded).
pub fn enable_this_cpu() {
    let mut efer = Msr::new(MSR_EFER);
    // SAFETY: detect() confirmed SVM is supported and not disabled, so
    // setting EFER.SVME is allowed and changes nothing else.
    unsafe { efer.write(efer.read() | crate::ctrlreg::efer::SVME) };
}
