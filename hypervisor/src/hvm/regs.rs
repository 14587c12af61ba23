//! A vCPU's full register file as exit handlers see it: the general
//! registers saved by the VMRUN path plus RAX, RSP and RIP from the VMCB;
//! and an SVM vCPU as the vendor-neutral exit handlers see it
//! ([`ExitView`], an [`ExitVcpu`]).

use rxen_x86::ctrlreg::efer;
use rxen_x86::exit::ExitVcpu;
pub use rxen_x86::exit::Gpr;
use rxen_x86::msr_policy::MsrState;
use rxen_x86::svm::vmcb::{control, save, Vmcb};
use rxen_x86::svm::GuestRegs;

use super::vcpu::SvmVcpu;

/// Reads GPR `reg` (0 = RAX ... 15 = R15).
pub fn read_gpr(vmcb: &Vmcb, regs: &GuestRegs, reg: Gpr) -> u64 {
    match reg.0 {
        0 => vmcb.read64(save::RAX),
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => vmcb.read64(save::RSP),
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        _ => regs.r15,
    }
}

/// Writes GPR `reg`.
pub fn write_gpr(vmcb: &mut Vmcb, regs: &mut GuestRegs, reg: Gpr, value: u64) {
    match reg.0 {
        0 => vmcb.write64(save::RAX, value),
        1 => regs.rcx = value,
        2 => regs.rdx = value,
        3 => regs.rbx = value,
        4 => vmcb.write64(save::RSP, value),
        5 => regs.rbp = value,
        6 => regs.rsi = value,
        7 => regs.rdi = value,
        8 => regs.r8 = value,
        9 => regs.r9 = value,
        10 => regs.r10 = value,
        11 => regs.r11 = value,
        12 => regs.r12 = value,
        13 => regs.r13 = value,
        14 => regs.r14 = value,
        _ => regs.r15 = value,
    }
}

/// Advances RIP by `len` bytes past an instruction the hypervisor carried
/// out (no next-RIP save under QEMU: lengths are known per exit or
/// decoded). The interrupt shadow of a preceding STI or MOV SS covered that
/// instruction and ends with it, as Xen's `__update_guest_eip` clears it.
pub fn advance_rip(vmcb: &mut Vmcb, len: u64) {
    let rip = vmcb.read64(save::RIP);
    vmcb.write64(save::RIP, rip.wrapping_add(len));
    let shadow = vmcb.read64(control::INTERRUPT_SHADOW);
    vmcb.write64(control::INTERRUPT_SHADOW, shadow & !1);
}

/// SVM vCPU `v` of domain `domid`, for the handlers of
/// [`rxen_x86::exit::handle`].
pub struct ExitView<'a> {
    /// The vCPU.
    pub vcpu: &'a mut SvmVcpu,
    /// Its domain (for the log).
    pub domid: u16,
    /// Its number (for the log).
    pub v: usize,
}

impl ExitVcpu for ExitView<'_> {
    fn gpr(&self, reg: Gpr) -> u64 {
        read_gpr(&self.vcpu.vmcb, &self.vcpu.regs, reg)
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        write_gpr(&mut self.vcpu.vmcb, &mut self.vcpu.regs, reg, value);
    }
    fn set_rip(&mut self, rip: u64) {
        self.vcpu.vmcb.write64(save::RIP, rip);
    }
    fn advance_rip(&mut self, len: u64) {
        advance_rip(&mut self.vcpu.vmcb, len);
    }
    fn rflags(&self) -> u64 {
        self.vcpu.vmcb.read64(save::RFLAGS)
    }
    fn cpl(&self) -> u8 {
        self.vcpu.vmcb.cpl()
    }
    fn cr4(&self) -> u64 {
        self.vcpu.vmcb.read64(save::CR4)
    }
    fn xcr0(&self) -> u64 {
        self.vcpu.xcr0
    }
    fn set_xcr0(&mut self, value: u64) {
        self.vcpu.xcr0 = value;
    }
    fn efer(&self) -> u64 {
        // SVME is the hypervisor's, not the guest's.
        self.vcpu.vmcb.read64(save::EFER) & !efer::SVME
    }
    fn write_efer(&mut self, value: u64) -> bool {
        super::ctrlreg::write_efer(self.vcpu, self.domid, self.v, value)
    }
    fn pat(&self) -> u64 {
        self.vcpu.vmcb.read64(save::G_PAT)
    }
    fn set_pat(&mut self, value: u64) {
        self.vcpu.vmcb.write64(save::G_PAT, value);
    }
    fn msrs(&self) -> &MsrState {
        &self.vcpu.msrs
    }
    fn msrs_mut(&mut self) -> &mut MsrState {
        &mut self.vcpu.msrs
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        self.vcpu.inject_exception(vector, error_code);
    }
}
