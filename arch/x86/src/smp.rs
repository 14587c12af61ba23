//! Bringing up the application processors: a real-mode trampoline copied
//! below 1 MiB, INIT-SIPI-SIPI through the local APIC, and a hand-off into
//! 64-bit Rust on a fresh stack, one CPU at a time.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::apic;

/// Physical address the trampoline is copied to (SIPI vector 0x08).
pub const TRAMPOLINE_BASE: u64 = 0x8000;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (tramp_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(tramp32 - ap_trampoline_start + 0x8000)

    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl ${cr4_pae}, %eax
    movl %eax, %cr4
    movl (tramp_cr3 - ap_trampoline_start + 0x8000), %eax
    movl %eax, %cr3
    movl ${msr_efer}, %ecx
    rdmsr
    orl ${efer_lme_nxe}, %eax
    wrmsr
    movl %cr0, %eax
    orl ${cr0_pg_wp_pe}, %eax
    andl ${cr0_not_cd_nw}, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(tramp64 - ap_trampoline_start + 0x8000)

    .code64
tramp64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (tramp_stack - ap_trampoline_start + 0x8000), %rsp
    movq (tramp_cpu - ap_trampoline_start + 0x8000), %rdi
    movq (tramp_entry - ap_trampoline_start + 0x8000), %rax
    xorl %ebp, %ebp
    pushq $0
    jmpq *%rax

    .balign 16
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
tramp_gdt_ptr:
    .word 31
    .long tramp_gdt - ap_trampoline_start + 0x8000
    .balign 8
    .global ap_trampoline_params
ap_trampoline_params:
tramp_cr3:
    .quad 0
tramp_stack:
    .quad 0
tramp_cpu:
    .quad 0
tramp_entry:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    .text
    "#,
    msr_efer = const crate::msr::MSR_EFER,
    cr4_pae = const crate::ctrlreg::cr4::PAE as u32,
    efer_lme_nxe = const (crate::ctrlreg::efer::LME | crate::ctrlreg::efer::NXE) as u32,
    cr0_pg_wp_pe = const (crate::ctrlreg::cr0::PG | crate::ctrlreg::cr0::WP | crate::ctrlreg::cr0::PE) as u32,
    cr0_not_cd_nw = const !(crate::ctrlreg::cr0::CD | crate::ctrlreg::cr0::NW) as u32,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_params: u8;
    static ap_trampoline_end: u8;
}

/// Parameters the trampoline reads, in its own layout.
#[repr(C)]
struct TrampolineParams {
    cr3: u64,
    stack_top: u64,
    cpu_index: u64,
    entry: u64,
}

/// Set by an AP once it runs Rust code on its own stack.
static AP_STARTED: AtomicBool = AtomicBool::new(false);

/// Called by the AP's 64-bit entry to tell the boot CPU it arrived.
pub fn report_started() {
    AP_STARTED.store(true, Ordering::Release);
}

/// Copies the trampoline to [`TRAMPOLINE_BASE`]. The caller keeps that
/// page out of the frame allocator.
pub fn install_trampoline() {
    // The symbols delimit the trampoline in the image's rodata.
    let (start, end) = (
        core::ptr::addr_of!(ap_trampoline_start) as usize,
        core::ptr::addr_of!(ap_trampoline_end) as usize,
    );
    // SAFETY: the destination page below 1 MiB is reserved for the
    // trampoline, identity-mapped, and does not overlap the image.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE_BASE as *mut u8, end - start)
    };
}

/// Starts the AP with `apic_id` as CPU `cpu_index`, entering `entry` on
/// the stack ending at `stack_top` with page tables `cr3`. Returns whether
/// it arrived within the time-out.
pub fn start_ap(
    apic_id: u8,
    cpu_index: usize,
    cr3: u64,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
) -> bool {
    // SAFETY: as in `install_trampoline`; the parameter block is inside the
    // copied trampoline, 8-byte aligned.
    let params = unsafe {
        let offset = core::ptr::addr_of!(ap_trampoline_params) as u64
            - core::ptr::addr_of!(ap_trampoline_start) as u64;
        &mut *((TRAMPOLINE_BASE + offset) as *mut TrampolineParams)
    };
    params.cr3 = cr3;
    params.stack_top = stack_top;
    params.cpu_index = cpu_index as u64;
    params.entry = entry as usize as u64;
    AP_STARTED.store(false, Ordering::Release);
    core::sync::atomic::fence(Ordering::SeqCst);

    let vector = (TRAMPOLINE_BASE >> 12) as u32;
    apic::send_ipi_and_wait(apic_id, 0x0000_4500); // INIT, level assert
    apic::delay_us(10_000);
    for _ in 0..2 {
        apic::send_ipi_and_wait(apic_id, 0x0000_4600 | vector); // STARTUP
        apic::delay_us(200);
    }
    // Software emulation is slow: give the AP up to two seconds.
    let deadline = apic::rdtsc() + apic::tsc_per_ms().max(1000) * 2000;
    while apic::rdtsc() < deadline {
        if AP_STARTED.load(Ordering::Acquire) {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}
