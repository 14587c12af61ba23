//! Extended state (XCR0) for guests. The hypervisor itself never touches
//! the FPU/SSE/AVX registers (its target disables SSE), so guest register
//! contents stay in the CPU across exits; what must be switched is XCR0,
//! which VMRUN does not swap. Saving full guest state with XSAVE when two
//! vCPUs share a physical CPU comes with the scheduler.

use raw_cpuid::cpuid;

/// Whether the CPU has XSAVE (and rxen turned on CR4.OSXSAVE).
fn xsave_enabled() -> bool {
    x86_64::registers::control::Cr4::read_raw() & (1 << 18) != 0
}

/// Turns on CR4.OSXSAVE on this CPU if the CPU supports XSAVE.
pub fn enable_this_cpu() {
    if cpuid!(1).ecx & (1 << 26) != 0 {
        let cr4 = x86_64::registers::control::Cr4::read_raw() | (1 << 18);
        // SAFETY: the CPU supports XSAVE (CPUID.1:ECX.XSAVE), so setting
        // CR4.OSXSAVE is valid; it only enables XGETBV/XSETBV/XSAVE.
        unsafe { core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack)) };
    }
}

/// XCR0 values the CPU supports.
pub fn supported_xcr0() -> u64 {
    if !xsave_enabled() {
        return 1;
    }
    let leaf = cpuid!(0xD, 0);
    leaf.eax as u64 | (leaf.edx as u64) << 32
}

fn xgetbv() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: only called when CR4.OSXSAVE is set.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack))
    };
    (high as u64) << 32 | low as u64
}

fn xsetbv(value: u64) {
    // SAFETY: only called with CR4.OSXSAVE set and a value validated by
    // `valid_xcr0` (or the host's own previous value).
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

/// Whether `value` is an XCR0 a guest may set (SDM/APM rules: x87 always,
/// AVX needs SSE, only supported components).
pub fn valid_xcr0(value: u64) -> bool {
    let supported = supported_xcr0();
    value & 1 != 0 && value & !supported == 0 && (value & 0b100 == 0 || value & 0b010 != 0)
}

/// Loads the guest's XCR0 before VMRUN; returns the host's.
pub fn load_guest_xcr0(guest: u64) -> u64 {
    if !xsave_enabled() {
        return 1;
    }
    let host = xgetbv();
    if host != guest {
        xsetbv(guest);
    }
    host
}

/// Restores the host's XCR0 after #VMEXIT.
pub fn restore_host_xcr0(host: u64, guest: u64) {
    if xsave_enabled() && host != guest {
        xsetbv(host);
    }
}
