//! Entering a guest: CLGI, the guest's MSR_SPEC_CTRL, VMLOAD the guest's
//! hidden state, VMRUN, VMSAVE it again, overwrite the return stack buffer,
//! the host's MSR_SPEC_CTRL (and an IBPB if asked), VMLOAD the host's (TR,
//! FS/GS, syscall MSRs), STGI. No `ret` between VMRUN and the RSB overwrite
//! (see `spec_ctrl`). The general registers the VMCB does not hold travel
//! through [`GuestRegs`], the speculation controls through [`EntryCtl`].

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

use super::vmcb::Vmcb;
use crate::cpu::MAX_CPUS;

use crate::msr::MSR_K8_VM_HSAVE_PA;

/// Guest general registers that VMRUN does not switch (RAX, RSP, RIP live
/// in the VMCB).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// What the entry path does about speculation (see `spec_ctrl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryCtl {
    /// MSR_SPEC_CTRL while the guest runs.
    pub guest_spec_ctrl: u64,
    /// MSR_SPEC_CTRL in the hypervisor.
    pub host_spec_ctrl: u64,
    /// [`EntryCtl::SWITCH_SPEC_CTRL`], [`EntryCtl::OVERWRITE_RSB`],
    /// [`EntryCtl::IBPB_ON_EXIT`].
    pub flags: u64,
}

impl EntryCtl {
    /// Write the guest's SPEC_CTRL before VMRUN and the host's after.
    pub const SWITCH_SPEC_CTRL: u64 = 1 << 0;
    /// Overwrite the RSB after #VMEXIT.
    pub const OVERWRITE_RSB: u64 = 1 << 1;
    /// IBPB after #VMEXIT.
    pub const IBPB_ON_EXIT: u64 = 1 << 2;
}

/// Physical address of each CPU's host VMSAVE area.
static HOST_VMCB: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Enables SVM on this CPU: EFER.SVME, VM_HSAVE_PA, and a VMSAVE of the
/// host's hidden state (TR, FS, GS, syscall MSRs) for after each exit.
pub fn enable_this_cpu_full() {
    super::enable_this_cpu();
    let hsave: &'static mut Vmcb = Box::leak(Box::new(Vmcb::zeroed()));
    let host: &'static mut Vmcb = Box::leak(Box::new(Vmcb::zeroed()));
    let host_pa = host as *mut Vmcb as u64;
    // SAFETY: SVM is enabled on this CPU; both pages are page-aligned,
    // identity-mapped and owned by this CPU for good. VMSAVE writes only the
    // host VMCB page given in RAX.
    unsafe {
        Msr::new(MSR_K8_VM_HSAVE_PA).write(hsave as *mut Vmcb as u64);
        core::arch::asm!("vmsave rax", in("rax") host_pa);
    }
    let index = crate::cpu::current_index();
    if index < MAX_CPUS {
        HOST_VMCB[index].store(host_pa, Ordering::Release);
    }
}

extern "C" {
    fn svm_vmrun(vmcb_pa: u64, regs: *mut GuestRegs, host_vmcb_pa: u64, ctl: *const EntryCtl);
    /// The instruction after VMRUN in `svm_vmrun`: the RIP VMRUN saves as
    /// the host's.
    fn svm_after_vmrun();
}

/// Whether `vmcb`'s save area holds the state VMRUN saves for this CPU's
/// host (its CR3 and the RIP after VMRUN) instead of a guest's. It would
/// only get there through a bug (VMRUN's host save or a VMEXIT_INVALID's
/// save landing in a guest's VMCB unnoticed); entering it would run the
/// hypervisor's code as the guest.
fn holds_host_state(vmcb: &Vmcb) -> bool {
    let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
    let host_cr3 = frame.start_address().as_u64() | u64::from(flags);
    vmcb.read64(super::vmcb::save::RIP) == svm_after_vmrun as *const () as u64
        && vmcb.read64(super::vmcb::save::CR3) == host_cr3
}

core::arch::global_asm!(
    // Among the code every exit runs (`linker.ld`).
    ".pushsection .text.hot.svm_vmrun, \"ax\"",
    ".global svm_vmrun",
    "svm_vmrun:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rcx", // [rsp+24] after the next three pushes: entry control
    "push rsi", // [rsp+16] after the next two pushes: regs
    "push rdx", // host VMCB
    "push rdi", // guest VMCB
    // GIF off first: from here to STGI not even an NMI runs host code with
    // the guest's SPEC_CTRL or before the RSB is overwritten. Then IF on:
    // an interrupt that is already pending (a timer armed to fire at once)
    // stays pending until VMRUN sets GIF for the guest, and then makes it
    // exit at once, instead of being taken by the host just before VMRUN
    // and lost to the guest. With V_INTR_MASKING the host's IF=1 is what
    // lets physical interrupts reach the guest.
    "clgi",
    "test qword ptr [rcx + 16], 1", // SWITCH_SPEC_CTRL
    "jz 40f",
    "mov r8, rcx",
    "mov ecx, {spec_ctrl}",
    "mov eax, [r8]",
    "mov edx, [r8 + 4]",
    "wrmsr",
    "40:",
    "mov rax, rdi",
    "mov rbx, [rsi + 0]",
    "mov rcx, [rsi + 8]",
    "mov rdx, [rsi + 16]",
    "mov rdi, [rsi + 32]",
    "mov rbp, [rsi + 40]",
    "mov r8, [rsi + 48]",
    "mov r9, [rsi + 56]",
    "mov r10, [rsi + 64]",
    "mov r11, [rsi + 72]",
    "mov r12, [rsi + 80]",
    "mov r13, [rsi + 88]",
    "mov r14, [rsi + 96]",
    "mov r15, [rsi + 104]",
    "mov rsi, [rsi + 24]",
    "sti",
    "vmload rax",
    "vmrun rax",
    ".global svm_after_vmrun",
    "svm_after_vmrun:",
    "vmsave rax",
    "mov rax, [rsp + 16]",
    "mov [rax + 0], rbx",
    "mov [rax + 8], rcx",
    "mov [rax + 16], rdx",
    "mov [rax + 24], rsi",
    "mov [rax + 32], rdi",
    "mov [rax + 40], rbp",
    "mov [rax + 48], r8",
    "mov [rax + 56], r9",
    "mov [rax + 64], r10",
    "mov [rax + 72], r11",
    "mov [rax + 80], r12",
    "mov [rax + 88], r13",
    "mov [rax + 96], r14",
    "mov [rax + 104], r15",
    "mov r8, [rsp + 24]",
    // SpectreRSB: replace the guest's return predictions with 32 entries
    // that point at speculation traps (two calls per round, 16 rounds),
    // then drop them from the stack.
    "test qword ptr [r8 + 16], 2", // OVERWRITE_RSB
    "jz 42f",
    "mov ecx, 16",
    "43:",
    "call 44f",
    "int3",
    "lfence",
    "44:",
    "call 45f",
    "int3",
    "lfence",
    "45:",
    "dec ecx",
    "jnz 43b",
    "add rsp, 256",
    "42:",
    "test qword ptr [r8 + 16], 1", // SWITCH_SPEC_CTRL
    "jz 46f",
    "mov ecx, {spec_ctrl}",
    "mov eax, [r8 + 8]",
    "mov edx, [r8 + 12]",
    "wrmsr",
    "46:",
    "test qword ptr [r8 + 16], 4", // IBPB_ON_EXIT
    "jz 47f",
    "mov ecx, {pred_cmd}",
    "mov eax, 1",
    "xor edx, edx",
    "wrmsr",
    "47:",
    "pop rax", // guest VMCB (already saved)
    "pop rax", // host VMCB
    "vmload rax",
    "pop rsi",
    "pop rcx",
    "stgi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
    spec_ctrl = const crate::msr::MSR_SPEC_CTRL,
    pred_cmd = const crate::msr::MSR_PRED_CMD,
);

/// EXITINFO1 of the VMEXIT_INVALID [`run`] reports without entering a VMCB
/// that holds the host's state (see `holds_host_state`).
pub const HOST_STATE_REFUSED: u64 = 0x486f_7374; // "Host"
/// EXITINFO1 of the VMEXIT_INVALID [`run`] reports in place of an exit
/// that left the host's state in the guest's VMCB.
pub const HOST_STATE_AT_EXIT: u64 = 0x4578_6974; // "Exit"

/// The [`crate::ctrlreg::HOST_MIRRORED`] bits this CPU has: PSE and PGE
/// (CPUID 1 EDX bits 3 and 13), SMEP and SMAP (CPUID 7.0 EBX bits 7 and 20).
fn mirrorable_cr4() -> u64 {
    use crate::ctrlreg::cr4;
    static MIRRORABLE: spin::Once<u64> = spin::Once::new();
    *MIRRORABLE.call_once(|| {
        let l1 = raw_cpuid::cpuid!(1).edx;
        let l7 = if raw_cpuid::cpuid!(0).eax >= 7 {
            raw_cpuid::cpuid!(7, 0).ebx
        } else {
            0
        };
        [
            (l1 & (1 << 3) != 0, cr4::PSE),
            (l1 & (1 << 13) != 0, cr4::PGE),
            (l7 & (1 << 7) != 0, cr4::SMEP),
            (l7 & (1 << 20) != 0, cr4::SMAP),
        ]
        .into_iter()
        .filter(|(has, _)| *has)
        .fold(0, |mask, (_, bit)| mask | bit)
    })
}

/// Times a CPU changed its CR4 to follow a guest's ([`follow_guest_cr4`]).
static HOST_CR4_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Times the CPUs changed their CR4 to follow the guests they entered: when a
/// CPU goes from one kind of guest to another or a guest changes those bits,
/// not at every entry; `reset` zeroes the count.
pub fn host_cr4_changes(reset: bool) -> u64 {
    if reset {
        HOST_CR4_CHANGES.swap(0, Ordering::Relaxed)
    } else {
        HOST_CR4_CHANGES.load(Ordering::Relaxed)
    }
}

/// Gives this CPU's CR4 the guest's PSE, PGE, SMEP and SMAP before VMRUN
/// ([`crate::ctrlreg::host_cr4_for`]), writing it only when one differs.
fn follow_guest_cr4(guest: u64) {
    use x86_64::registers::control::Cr4;
    let host = Cr4::read_raw();
    let wanted = crate::ctrlreg::host_cr4_for(host, guest, mirrorable_cr4());
    if wanted != host {
        HOST_CR4_CHANGES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: only PSE, PGE, SMEP and SMAP change, and only those the
        // CPU has; none changes a translation of the hypervisor's page
        // tables, which hold no user or global pages (long mode ignores
        // PSE), so nothing the hypervisor runs or touches moves.
        unsafe { Cr4::write_raw(wanted) };
    }
}

/// Runs the guest described by `vmcb` until the next #VMEXIT. Returns with
/// interrupts enabled (an interrupt that made the guest exit is taken by the
/// host at STGI); the caller disables them again.
pub fn run(vmcb: &mut Vmcb, regs: &mut GuestRegs, ctl: &EntryCtl) {
    let index = crate::cpu::current_index();
    let host = HOST_VMCB
        .get(index)
        .map(|h| h.load(Ordering::Acquire))
        .unwrap_or(0);
    assert!(host != 0, "SVM is not enabled on CPU {index}");
    if holds_host_state(vmcb) {
        // Not entered: the exit reads as VMRUN refusing the state, which
        // ends the domain with its report; EXITINFO1 says why.
        vmcb.write64(super::vmcb::control::EXIT_CODE, super::vmcb::exit::INVALID);
        vmcb.write64(super::vmcb::control::EXIT_INFO1, HOST_STATE_REFUSED);
        x86_64::instructions::interrupts::enable();
        return;
    }
    follow_guest_cr4(vmcb.read64(super::vmcb::save::CR4));
    // SAFETY: the VMCB is a page-aligned, identity-mapped page this vCPU
    // owns and its intercepts include VMRUN; the host VMCB was filled by
    // VMSAVE on this CPU; `regs` and `ctl` outlive the call; the caller
    // sets SWITCH_SPEC_CTRL and IBPB_ON_EXIT only where the CPU has
    // MSR_SPEC_CTRL and IBPB, with SPEC_CTRL values of enumerated bits.
    unsafe { svm_vmrun(vmcb as *mut Vmcb as u64, regs, host, ctl) };
    if holds_host_state(vmcb) {
        // The exit saved the host's state as the guest's: the guest's own
        // is lost, so the exit must not be served as what it says.
        vmcb.write64(super::vmcb::control::EXIT_CODE, super::vmcb::exit::INVALID);
        vmcb.write64(super::vmcb::control::EXIT_INFO1, HOST_STATE_AT_EXIT);
    }
}
