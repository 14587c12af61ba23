//! CPU helpers: CPUID, MSRs, TSC, interrupts, and finding Xen's CPUID leaves.

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpuid {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// CPUID leaf `leaf`, sub-leaf `subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    Cpuid {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// The 12-byte vendor signature in EBX, ECX, EDX of a hypervisor leaf.
pub fn signature(r: &Cpuid) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&r.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    s[8..].copy_from_slice(&r.edx.to_le_bytes());
    s
}

/// The base of Xen's CPUID leaves: the first of 0x4000_0000 + k * 0x100 (k < 0x100) whose
/// signature is `XenVMMXenVMM` and that has at least two more leaves.
pub fn xen_cpuid_base() -> Option<u32> {
    (0..0x100u32)
        .map(|k| 0x4000_0000 + k * 0x100)
        .find(|&base| {
            let r = cpuid(base, 0);
            &signature(&r) == b"XenVMMXenVMM" && r.eax >= base + 2
        })
}

/// Reads MSR `msr`.
///
/// # Safety
/// `msr` must exist (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: forwarded from the caller.
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes MSR `msr`.
///
/// # Safety
/// `msr` must exist and `value` be acceptable (else #GP); the write may change how the
/// machine behaves.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded from the caller.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32)
    };
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Enables interrupts.
pub fn sti() {
    // SAFETY: the runtime's IDT handles every vector it enables.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: masking interrupts is always safe.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts for one instruction (`sti; nop; cli`: the STI shadow covers the
/// `nop`, so pending interrupts are taken before the `cli`).
pub fn interrupt_window() {
    // SAFETY: the runtime's IDT handles every vector it enables.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Halts forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: halting with interrupts off only stops this CPU.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// The hypercall page, written by Xen on the MSR write.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// The page Xen fills with hypercall stubs.
static mut HYPERCALL_PAGE: Page = Page([0xcc; 4096]);

/// Finds Xen's leaves, installs the hypercall page (leaf base+2: EAX pages, EBX MSR) by
/// writing its physical address to the MSR, and makes [`crate::hypercall::hypercall`]
/// use it. Returns the CPUID base.
pub fn install_hypercall_page() -> Option<u32> {
    let base = xen_cpuid_base()?;
    let leaf2 = cpuid(base + 2, 0);
    if leaf2.eax == 0 {
        return None;
    }
    let page = &raw mut HYPERCALL_PAGE as u64;
    // SAFETY: the MSR is the one Xen names in CPUID; writing a page-aligned address of
    // our own page (index 0 in the low bits) asks Xen to fill it with stubs.
    unsafe { wrmsr(leaf2.ebx, page) };
    crate::hypercall::set_page(page);
    Some(base)
}

/// #GPs the MSR probes below took.
static MSR_GP: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// A trap hook ([`crate::boot::set_trap_hook`]) that counts a #GP and skips its
/// 2-byte RDMSR/WRMSR, for [`try_rdmsr`] and [`try_wrmsr`]; other traps are not
/// its own.
pub fn msr_gp_hook(frame: &mut crate::boot::TrapFrame) -> bool {
    if frame.vector == 13 {
        MSR_GP.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        frame.rip += 2;
        return true;
    }
    false
}

/// RDMSR of `msr`; `None` if it took #GP. Needs [`msr_gp_hook`] installed.
pub fn try_rdmsr(msr: u32) -> Option<u64> {
    use core::sync::atomic::Ordering;
    let before = MSR_GP.load(Ordering::SeqCst);
    let (lo, hi): (u32, u32);
    // SAFETY: ring 0; reading an MSR changes nothing, and a #GP is caught by
    // `msr_gp_hook`, which skips the instruction (EDX:EAX then stay zero).
    unsafe {
        core::arch::asm!("xor eax, eax", "xor edx, edx", "rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack))
    };
    (MSR_GP.load(Ordering::SeqCst) == before).then_some(u64::from(hi) << 32 | u64::from(lo))
}

/// WRMSR of `value` to `msr`; false if it took #GP. Needs [`msr_gp_hook`].
///
/// # Safety
/// The write must not change what the guest relies on (the tests write MSRs the
/// hypervisor drops, refuses, or keeps per vCPU).
pub unsafe fn try_wrmsr(msr: u32, value: u64) -> bool {
    use core::sync::atomic::Ordering;
    let before = MSR_GP.load(Ordering::SeqCst);
    // SAFETY: ring 0; the caller vouches for the write, and a #GP is caught by
    // `msr_gp_hook`.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
    MSR_GP.load(Ordering::SeqCst) == before
}
