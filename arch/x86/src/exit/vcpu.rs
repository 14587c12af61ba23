//! What serving an exit needs from a vCPU, whatever the vendor keeps where
//! (SVM holds RAX, RIP, RFLAGS, CR4, EFER and PAT in the VMCB and the other
//! registers beside it; VT-x would hold them in the VMCS): the
//! [`ExitVcpu`] trait the vendor-neutral handlers of [`super::handle`] use,
//! and which the host tests implement with a fake.

use crate::msr_policy::MsrState;

/// A general-purpose register by its number in x86 encoding order
/// (0 = RAX ... 15 = R15; larger numbers are R15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr(pub u8);

impl Gpr {
    /// RAX.
    pub const RAX: Gpr = Gpr(0);
    /// RCX.
    pub const RCX: Gpr = Gpr(1);
    /// RDX.
    pub const RDX: Gpr = Gpr(2);
    /// RBX.
    pub const RBX: Gpr = Gpr(3);
    /// RSI.
    pub const RSI: Gpr = Gpr(6);
    /// RDI.
    pub const RDI: Gpr = Gpr(7);
    /// R8.
    pub const R8: Gpr = Gpr(8);
    /// R10.
    pub const R10: Gpr = Gpr(10);
}

/// The vCPU state exit handling reads and changes.
pub trait ExitVcpu {
    /// Reads a general-purpose register.
    fn gpr(&self, reg: Gpr) -> u64;
    /// Writes a general-purpose register.
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    /// Moves RIP to `rip` (past an instruction whose next RIP the exit
    /// reported).
    fn set_rip(&mut self, rip: u64);
    /// Advances RIP by `len` bytes past an instruction the hypervisor
    /// carried out; the interrupt shadow of a preceding STI or MOV SS ends
    /// with it (Xen's `__update_guest_eip`).
    fn advance_rip(&mut self, len: u64);
    /// The guest's RFLAGS.
    fn rflags(&self) -> u64;
    /// The current privilege level.
    fn cpl(&self) -> u8;
    /// The guest's CR4.
    fn cr4(&self) -> u64;
    /// The guest's XCR0.
    fn xcr0(&self) -> u64;
    /// Sets the guest's XCR0 (checked by the caller).
    fn set_xcr0(&mut self, value: u64);
    /// The guest's EFER as the guest sees it.
    fn efer(&self) -> u64;
    /// WRMSR to EFER under Xen's rules for this vCPU's state; whether it
    /// was loaded (else the write raises #GP).
    fn write_efer(&mut self, value: u64) -> bool;
    /// The guest's PAT.
    fn pat(&self) -> u64;
    /// Loads the guest's PAT (every entry already checked).
    fn set_pat(&mut self, value: u64);
    /// The MSRs the hypervisor keeps for the guest.
    fn msrs(&self) -> &MsrState;
    /// The same, to change.
    fn msrs_mut(&mut self) -> &mut MsrState;
    /// Raises exception `vector` (with `error_code`) on the next entry.
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>);
}
