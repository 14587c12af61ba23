//! Extended state (XCR0) for guests. The hypervisor itself never touches
//! the FPU/SSE/AVX registers (its target disables SSE), so guest register
//! contents stay in the CPU across exits; what must be switched is XCR0,
//! which VMRUN does not swap, and the whole state ([`FpuState`]) when a
//! CPU switches from one vCPU to another. Nothing here is SVM's: VT-x
//! switches XCR0 and the XSAVE image the same way, so this module sits
//! beside `svm/`, not in it.
//!
//! No XCR0 a guest chose reaches `XSETBV` unchecked ([`valid_xcr0`] has
//! Xen's rules and the guest's CPUID policy), and no saved image reaches
//! `XRSTOR` unless its header agrees with the XCR0 in force: either would
//! fault in the hypervisor.

use raw_cpuid::cpuid;
use spin::Once;

use crate::ctrlreg::cr4;
use crate::frame::HostFrames;

/// Whether the CPU has XSAVE (and rxen turned on CR4.OSXSAVE).
fn xsave_enabled() -> bool {
    x86_64::registers::control::Cr4::read_raw() & cr4::OSXSAVE != 0
}

/// Turns on CR4.OSXSAVE on this CPU if the CPU supports XSAVE.
pub fn enable_this_cpu() {
    if cpuid!(1).ecx & (1 << 26) != 0 {
        let cr4 = x86_64::registers::control::Cr4::read_raw() | cr4::OSXSAVE;
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

/// The XCR0 components guests may enable: those of the guest CPUID policy
/// (the same for every domain) that this host supports.
pub fn guest_xcr0_max() -> u64 {
    static MAX: Once<u64> = Once::new();
    *MAX.call_once(|| {
        if !xsave_enabled() {
            return 0;
        }
        let ctx = crate::cpuid_policy::CpuidContext {
            vcpu_id: 0,
            domid: 0,
            tsc_khz: 0,
            nr_vcpus: 1,
            spec: crate::spec_ctrl::active().offer(),
        };
        let host = |leaf: u32, sub: u32| {
            let r = cpuid!(leaf, sub);
            [r.eax, r.ebx, r.ecx, r.edx]
        };
        crate::cpuid_policy::guest_xcr0_max(&ctx, &host) & supported_xcr0()
    })
}

/// Whether `value` is an XCR0 a guest may set (Xen's `handle_xsetbv`):
/// only components of its CPUID policy, x87 always, AVX with SSE, the
/// AVX-512 components all or none and with AVX, MPX's two together.
pub fn valid_xcr0(value: u64) -> bool {
    crate::ctrlreg::guest_xcr0_ok(value, guest_xcr0_max())
}

/// XCR0 values refused on the way into the CPU (rate limit of the log).
static BAD_XCR0_LOGGED: rxen_core::log::RateLimit = rxen_core::log::RateLimit::new();

/// Loads the guest's XCR0 before VMRUN; returns the host's. A value the
/// CPU would refuse (which no path should produce) loads as x87 only
/// instead of faulting in the hypervisor.
pub fn load_guest_xcr0(guest: u64) -> u64 {
    if !xsave_enabled() {
        return 1;
    }
    let guest = if guest & !supported_xcr0() == 0 && crate::ctrlreg::valid_xcr0(guest) {
        guest
    } else {
        if BAD_XCR0_LOGGED.allow() {
            crate::log!(Error, "refused to load invalid guest XCR0 {guest:#x}");
        }
        1
    };
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

/// Offset of the XSAVE header (XSTATE_BV, XCOMP_BV, reserved) in the area.
const XSAVE_HEADER: usize = 512;
/// Offset of MXCSR in the legacy area.
const MXCSR: usize = 24;
/// FCW after FNINIT / reset.
const FCW_RESET: u16 = 0x37F;
/// The end of the x87 state in an FXSAVE image (control words, ST0-ST7;
/// MXCSR and its mask at 24-31 are SSE's).
const X87_END: usize = 160;
/// The XMM registers in an FXSAVE image.
const XMM_START: usize = 160;
const XMM_END: usize = 416;

/// Bytes of an FXSAVE image (the legacy region of an XSAVE area).
pub const FXSAVE_SIZE: usize = 512;

/// The MXCSR bits this CPU has (FXSAVE's MXCSR_MASK, or 0xFFBF when it
/// reports 0, as the SDM says).
fn mxcsr_mask() -> u32 {
    static MASK: Once<u32> = Once::new();
    *MASK.call_once(|| {
        #[repr(C, align(16))]
        struct Image([u8; FXSAVE_SIZE]);
        let mut image = Image([0; FXSAVE_SIZE]);
        // SAFETY: a 16-byte aligned 512-byte buffer of our own; FXSAVE only
        // stores the FPU registers into it (the hypervisor does not use
        // them, whichever guest's they are).
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) image.0.as_mut_ptr(), options(nostack))
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&image.0[MXCSR + 4..MXCSR + 8]);
        match u32::from_le_bytes(mask) {
            0 => 0xFFBF,
            mask => mask,
        }
    })
}

/// MXCSR after reset: all exceptions masked.
const MXCSR_RESET: u32 = 0x1F80;

/// A vCPU's FPU/SSE/AVX state while it is off the CPU: an XSAVE area (or
/// an FXSAVE area without XSAVE) in frames of its own. A vCPU's state is
/// saved when its CPU switches to another vCPU or goes idle, and restored
/// when a CPU switches to it, so that vCPUs can share and move between
/// CPUs. The area is in the standard (not compacted) format.
pub struct FpuState {
    area: HostFrames,
}

impl FpuState {
    /// An area in the initial state (XRSTOR of a zero header initializes
    /// every component), in frames from `alloc(count)`; None when out of
    /// memory.
    pub fn new(alloc: impl FnOnce(usize) -> Option<HostFrames>) -> Option<Self> {
        let bytes = if xsave_enabled() {
            cpuid!(0xD, 0).ecx as usize
        } else {
            512
        }
        .max(512);
        let area = alloc(bytes.div_ceil(4096))?;
        let mut state = Self { area };
        state.reset();
        Some(state)
    }

    /// Puts the area in the architectural initial state (INIT, or a vCPU
    /// given a new context): an empty XSTATE_BV, so that XRSTOR initializes
    /// every component whatever the XCR0 then, and the reset FCW and MXCSR
    /// (which FXRSTOR, and XRSTOR for MXCSR, load from the image).
    pub fn reset(&mut self) {
        let bytes = self.area.as_bytes_mut();
        bytes.fill(0);
        bytes[..2].copy_from_slice(&FCW_RESET.to_le_bytes());
        bytes[MXCSR..MXCSR + 4].copy_from_slice(&MXCSR_RESET.to_le_bytes());
    }

    /// The legacy (FXSAVE-format) region of the saved state: x87 and SSE,
    /// as Xen's `hvm_hw_cpu.fpu_regs` carries them.
    pub fn fxsave_image(&self) -> [u8; FXSAVE_SIZE] {
        let mut image = [0u8; FXSAVE_SIZE];
        // The area is at least one frame.
        let bytes = self.area.as_bytes();
        image.copy_from_slice(&bytes[..FXSAVE_SIZE]);
        if xsave_enabled() {
            // A component XSTATE_BV marks initial is, whatever the region
            // still holds: x87 (FCW reset, the rest 0) and the XMM registers.
            let bv = bytes[XSAVE_HEADER];
            if bv & 1 == 0 {
                image[..MXCSR].fill(0);
                image[MXCSR + 8..X87_END].fill(0);
                image[..2].copy_from_slice(&FCW_RESET.to_le_bytes());
            }
            if bv & 2 == 0 {
                image[XMM_START..XMM_END].fill(0);
            }
        }
        image
    }

    /// Sets the state from FXSAVE image `image`: x87 and SSE from it,
    /// every other component initial. MXCSR bits the CPU does not have are
    /// dropped, so that the restore cannot fault.
    pub fn load_fxsave_image(&mut self, image: &[u8; FXSAVE_SIZE]) {
        self.reset();
        let bytes = self.area.as_bytes_mut();
        bytes[..FXSAVE_SIZE].copy_from_slice(image);
        let mut mxcsr = [0u8; 4];
        mxcsr.copy_from_slice(&bytes[MXCSR..MXCSR + 4]);
        let mxcsr = u32::from_le_bytes(mxcsr) & mxcsr_mask();
        bytes[MXCSR..MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
        // MXCSR_MASK is not loaded; the rest of the region is software's.
        bytes[MXCSR + 4..MXCSR + 8].fill(0);
        if xsave_enabled() {
            // XSTATE_BV: x87 and SSE from the image.
            bytes[XSAVE_HEADER..XSAVE_HEADER + 8].copy_from_slice(&3u64.to_le_bytes());
        }
    }

    /// Makes the XSAVE header agree with `xcr0` before XRSTOR: XSTATE_BV
    /// only with components of `xcr0` (XSAVE leaves the bits of components
    /// outside the XCR0 it ran with as they were, so an image saved with a
    /// larger XCR0 keeps them), XCOMP_BV and the reserved bytes zero
    /// (standard format). Either mismatch makes XRSTOR raise #GP.
    fn sanitize_header(&mut self, xcr0: u64) {
        // The area is at least one frame, so the 64-byte header is in it.
        let header = &mut self.area.as_bytes_mut()[XSAVE_HEADER..XSAVE_HEADER + 64];
        let mut bv = [0u8; 8];
        bv.copy_from_slice(&header[..8]);
        let bv = u64::from_le_bytes(bv) & xcr0;
        header[..8].copy_from_slice(&bv.to_le_bytes());
        header[8..].fill(0);
    }

    /// Saves this CPU's FPU registers, which belong to a vCPU whose XCR0 is
    /// `xcr0`.
    pub fn save(&mut self, xcr0: u64) {
        if xsave_enabled() {
            let host = load_guest_xcr0(xcr0);
            // SAFETY: the area is 4 KiB-aligned, large enough for every
            // component CPUID reports, and owned by this vCPU.
            unsafe {
                core::arch::asm!("xsave64 [{}]", in(reg) self.area.start(), in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
            let _ = restore_host_xcr0(host, xcr0);
        } else {
            // SAFETY: the area is 16-byte aligned and 512 bytes or more.
            unsafe {
                core::arch::asm!("fxsave64 [{}]", in(reg) self.area.start(), options(nostack))
            };
        }
    }

    /// Loads the saved state into this CPU's FPU registers.
    pub fn restore(&mut self, xcr0: u64) {
        if xsave_enabled() {
            let host = load_guest_xcr0(xcr0);
            // The XCR0 now in force (a refused value loads as x87 only).
            let xcr0 = xgetbv();
            self.sanitize_header(xcr0);
            // SAFETY: the area holds an XSAVE image whose header was just
            // made to agree with the XCR0 in force; its MXCSR is the reset
            // value or one XSAVE stored from the CPU.
            unsafe {
                core::arch::asm!("xrstor64 [{}]", in(reg) self.area.start(), in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
            let _ = restore_host_xcr0(host, xcr0);
        } else {
            // SAFETY: the area holds a valid FXSAVE image.
            unsafe {
                core::arch::asm!("fxrstor64 [{}]", in(reg) self.area.start(), options(nostack))
            };
        }
    }
}
