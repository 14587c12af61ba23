//! Extended state (XCR0) for guests. The hypervisor itself never touches
//! the FPU/SSE/AVX registers (its target disables SSE), so guest register
//! contents stay in the CPU across exits; what must be switched is XCR0,
//! which VMRUN does not swap, and the whole state ([`FpuState`]) when a
//! CPU switches from one vCPU to another.

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

/// Restores the host's XCR0 after #VMEXIT; returns the XCR0 the guest had
/// when it exited. That is normally `guest`, but QEMU 7.2 does not raise the
/// XSETBV intercept, so a guest's XSETBV there changes XCR0 without an exit
/// (and the hardware has already checked the value): the caller adopts it.
pub fn restore_host_xcr0(host: u64, guest: u64) -> u64 {
    if !xsave_enabled() {
        return guest;
    }
    let current = xgetbv();
    if host != current {
        xsetbv(host);
    }
    current
}

/// A vCPU's FPU/SSE/AVX state while it is off the CPU: an XSAVE area (or
/// an FXSAVE area without XSAVE) in frames of its own. A vCPU's state is
/// saved when its CPU switches to another vCPU or goes idle, and restored
/// when a CPU switches to it, so that vCPUs can share and move between
/// CPUs.
pub struct FpuState {
    area: u64,
    frames: usize,
}

impl FpuState {
    /// An area in the initial state (XRSTOR of a zero header initializes
    /// every component); None when out of memory.
    pub fn new() -> Option<Self> {
        let bytes = if xsave_enabled() {
            cpuid!(0xD, 0).ecx as usize
        } else {
            512
        }
        .max(512);
        let frames = bytes.div_ceil(4096);
        let area = crate::memory::alloc_frames(frames)?;
        // SAFETY: frames just allocated for this area, identity-mapped.
        unsafe { core::ptr::write_bytes(area as *mut u8, 0, frames * 4096) };
        if !xsave_enabled() {
            // FXRSTOR needs a valid MXCSR and FCW: the reset values.
            // SAFETY: inside the area just zeroed.
            unsafe {
                core::ptr::write_unaligned(area as *mut u16, 0x37F);
                core::ptr::write_unaligned((area + 24) as *mut u32, 0x1F80);
            }
        }
        Some(Self { area, frames })
    }

    /// Saves this CPU's FPU registers, which belong to a vCPU whose XCR0 is
    /// `xcr0`.
    pub fn save(&mut self, xcr0: u64) {
        if xsave_enabled() {
            let host = load_guest_xcr0(xcr0);
            // SAFETY: the area is 4 KiB-aligned, large enough for every
            // component CPUID reports, and owned by this vCPU.
            unsafe {
                core::arch::asm!("xsave64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
            let _ = restore_host_xcr0(host, xcr0);
        } else {
            // SAFETY: the area is 16-byte aligned and 512 bytes or more.
            unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.area, options(nostack)) };
        }
    }

    /// Loads the saved state into this CPU's FPU registers.
    pub fn restore(&self, xcr0: u64) {
        if xsave_enabled() {
            let host = load_guest_xcr0(xcr0);
            // SAFETY: the area holds a valid XSAVE image (zeroed or written
            // by `save` with the same XCR0 rules); XRSTOR checks the header.
            unsafe {
                core::arch::asm!("xrstor64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
            let _ = restore_host_xcr0(host, xcr0);
        } else {
            // SAFETY: the area holds a valid FXSAVE image.
            unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) self.area, options(nostack)) };
        }
    }
}

impl Drop for FpuState {
    fn drop(&mut self) {
        crate::memory::free_frames(self.area, self.frames);
    }
}
