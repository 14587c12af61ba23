//! A vCPU's full register file as exit handlers see it: the general
//! registers saved by the VMRUN path plus RAX, RSP and RIP from the VMCB.

use rxen_x86::svm::vmcb::{control, save, Vmcb};
use rxen_x86::svm::GuestRegs;

/// General-purpose register numbers in x86 encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr(pub u8);

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
