//! Hostile control-register, EFER and XCR0 writes (issue 14, defects 5 and 13): each
//! must take #GP(0) in the guest and leave the register as it was, never reach VMRUN
//! (which would refuse the state and end the domain) or the hypervisor's own XSETBV.
//! CR4: VMXE (Intel only), SMXE, reserved bits (15, 19, 24, 32), and UMIP, PKE, LA57,
//! PCIDE, FSGSBASE where CPUID does not offer them; CR0: bits 63:32, PG without PE,
//! NW without CD; EFER: SVME (no nested virtualization), LMSLE, reserved bits, LME
//! cleared with paging on; XCR0: no x87, AVX without SSE, components CPUID leaf 0xD
//! does not list, a lone AVX-512 or MPX component. Xen 4.17's rules are `hvm_set_cr0`,
//! `hvm_set_cr4` (`hvm_cr4_guest_valid_bits`), `hvm_set_efer` (`hvm_efer_valid`) and
//! `handle_xsetbv` (`valid_xcr0`). Valid writes (CLTS, LMSW, toggling CR4.PGE, CR0.CD
//! with NW) still work afterwards. Xen 4.17 gives the same answers except for NW
//! without CD, which it crashes the domain for (checked last).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU64, Ordering};

use rxen_guest::boot::{set_trap_hook, TrapFrame};
use rxen_guest::cpu::{cpuid, rdmsr};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

const EFER: u32 = 0xC000_0080;
/// The vector and error code of the last exception the hook took (u64::MAX: none).
static LAST_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_ERROR: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bytes to skip at a fault: the length of the instruction under test.
static SKIP: AtomicU64 = AtomicU64::new(0);

fn hook(frame: &mut TrapFrame) -> bool {
    let skip = SKIP.load(Ordering::SeqCst);
    if skip == 0 || frame.vector >= 32 {
        return false;
    }
    LAST_VECTOR.store(frame.vector, Ordering::SeqCst);
    LAST_ERROR.store(frame.error, Ordering::SeqCst);
    frame.rip += skip;
    true
}

/// Runs `f` (one instruction of `len` bytes under test) and returns the vector it took
/// (None: no exception).
fn trapped(len: u64, f: impl FnOnce()) -> Option<(u64, u64)> {
    LAST_VECTOR.store(u64::MAX, Ordering::SeqCst);
    SKIP.store(len, Ordering::SeqCst);
    f();
    SKIP.store(0, Ordering::SeqCst);
    let vector = LAST_VECTOR.load(Ordering::SeqCst);
    (vector != u64::MAX).then(|| (vector, LAST_ERROR.load(Ordering::SeqCst)))
}

fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// `mov cr0, rax` (0F 22 C0, 3 bytes).
fn write_cr0(value: u64) -> Option<(u64, u64)> {
    // SAFETY: the values written are either refused (#GP, skipped by the hook) or
    // valid ones this test restores at once.
    trapped(3, || unsafe {
        core::arch::asm!(".byte 0x0f, 0x22, 0xc0", in("rax") value, options(nostack))
    })
}

/// `mov cr4, rax` (0F 22 E0, 3 bytes).
fn write_cr4(value: u64) -> Option<(u64, u64)> {
    // SAFETY: as in `write_cr0`.
    trapped(3, || unsafe {
        core::arch::asm!(".byte 0x0f, 0x22, 0xe0", in("rax") value, options(nostack))
    })
}

/// `wrmsr` (2 bytes) to EFER.
fn write_efer(value: u64) -> Option<(u64, u64)> {
    // SAFETY: as in `write_cr0`.
    trapped(2, || unsafe {
        core::arch::asm!("wrmsr", in("ecx") EFER, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nostack))
    })
}

/// `xsetbv` (3 bytes) of XCR0.
fn xsetbv(value: u64) -> Option<(u64, u64)> {
    // SAFETY: as in `write_cr0`.
    trapped(3, || unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nostack))
    })
}

fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called with CR4.OSXSAVE set.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

const GP: Option<(u64, u64)> = Some((13, 0));

fn main(_si: &StartInfo) {
    set_trap_hook(Some(hook));
    let cr0 = read_cr0();
    let cr4 = read_cr4();
    // SAFETY: EFER exists on every x86-64 CPU.
    let efer = unsafe { rdmsr(EFER) };
    println!("ctrl_regs: CR0 {cr0:#x} CR4 {cr4:#x} EFER {efer:#x}");
    let leaf1 = cpuid(1, 0);
    let leaf7 = cpuid(7, 0);

    // CR4: bits the CPU (policy) lacks and reserved bits.
    let mut cr4_bad: [(u64, &str); 12] = [(0, ""); 12];
    let mut n = 0;
    let mut add = |bit: u64, name: &'static str| {
        cr4_bad[n] = (bit, name);
        n += 1;
    };
    add(1 << 13, "VMXE");
    add(1 << 14, "SMXE");
    add(1 << 15, "reserved bit 15");
    add(1 << 19, "reserved bit 19");
    add(1 << 24, "reserved bit 24");
    add(1 << 32, "bit 32");
    add(1 << 12, "LA57 in long mode");
    if leaf7.ecx & (1 << 2) == 0 {
        add(1 << 11, "UMIP without the feature");
    }
    if leaf7.ecx & (1 << 3) == 0 {
        add(1 << 22, "PKE without the feature");
    }
    if leaf7.ebx & 1 == 0 {
        add(1 << 16, "FSGSBASE without the feature");
    }
    if leaf1.ecx & (1 << 17) == 0 {
        add(1 << 17, "PCIDE without the feature");
    }
    for &(bit, name) in &cr4_bad[..n] {
        let got = write_cr4(cr4 | bit);
        check_eq!(got, GP, "CR4 {}", name);
        check_eq!(read_cr4(), cr4, "CR4 unchanged after {}", name);
    }
    // Clearing PAE in long mode.
    check_eq!(
        write_cr4(cr4 & !(1 << 5)),
        GP,
        "CR4.PAE cleared in long mode"
    );

    // CR0.
    check_eq!(write_cr0(cr0 | (1 << 32)), GP, "CR0 bit 32");
    check_eq!(write_cr0(cr0 | (1 << 63)), GP, "CR0 bit 63");
    check_eq!(write_cr0(cr0 & !1), GP, "CR0.PG without PE");
    check_eq!(
        write_cr0(cr0 & !(1 << 31)),
        GP,
        "CR0.PG cleared in 64-bit code"
    );
    check_eq!(read_cr0(), cr0, "CR0 unchanged");

    // EFER.
    check_eq!(write_efer(efer | (1 << 12)), GP, "EFER.SVME");
    check_eq!(write_efer(efer | (1 << 13)), GP, "EFER.LMSLE");
    check_eq!(write_efer(efer | (1 << 20)), GP, "EFER reserved bit 20");
    check_eq!(write_efer(efer | (1 << 63)), GP, "EFER reserved bit 63");
    check_eq!(
        write_efer(efer & !(1 << 8)),
        GP,
        "EFER.LME cleared with paging on"
    );
    // SAFETY: as above.
    check_eq!(unsafe { rdmsr(EFER) }, efer, "EFER unchanged");

    // XCR0, where XSAVE is offered.
    if leaf1.ecx & (1 << 26) != 0 {
        // SAFETY: CPUID offers XSAVE; OSXSAVE only enables XGETBV/XSETBV.
        check_eq!(write_cr4(read_cr4() | (1 << 18)), None, "CR4.OSXSAVE");
        // Xen starts HVM vCPUs with XCR0 = x87|SSE, rxen as after reset (x87).
        let initial = xgetbv();
        let leaf_d = cpuid(0xD, 0);
        let offered = u64::from(leaf_d.eax) | u64::from(leaf_d.edx) << 32;
        println!("ctrl_regs: XCR0 components offered {offered:#x}");
        check_eq!(xsetbv(0), GP, "XCR0 without x87");
        check_eq!(xsetbv(0x2), GP, "XCR0 SSE without x87");
        check_eq!(xsetbv(0x5), GP, "XCR0 AVX without SSE");
        for bit in [3u64, 5, 6, 7, 9, 17, 18, 62] {
            if offered & (1 << bit) == 0 {
                check_eq!(
                    xsetbv(0x3 | 1 << bit),
                    GP,
                    "XCR0 component {} not offered",
                    bit
                );
            }
        }
        if offered & 0xE0 == 0xE0 {
            check_eq!(xsetbv(0x7 | 1 << 5), GP, "a lone AVX-512 component");
            check_eq!(xsetbv(0x3 | 0xE0), GP, "AVX-512 without AVX");
        }
        if offered & 0x18 == 0x18 {
            check_eq!(xsetbv(0x3 | 1 << 3), GP, "a lone MPX component");
        }
        check_eq!(xgetbv(), initial, "XCR0 unchanged");
        check_eq!(xsetbv(offered & 0x7), None, "a valid XCR0");
        check_eq!(xgetbv(), offered & 0x7, "XCR0 as set");
        check_eq!(xsetbv(1), None, "XCR0 back to x87");
    }

    // Valid writes still work.
    check_eq!(write_cr4(cr4 & !(1 << 7)), None, "CR4.PGE off");
    check_eq!(read_cr4(), cr4 & !(1 << 7), "CR4.PGE off read back");
    check_eq!(write_cr4(cr4), None, "CR4 restored");
    check_eq!(write_cr0(cr0 | (1 << 3)), None, "CR0.TS on");
    // SAFETY: CLTS only clears CR0.TS.
    unsafe { core::arch::asm!("clts", options(nomem, nostack)) };
    check_eq!(read_cr0() & (1 << 3), 0, "CLTS clears TS");
    let msw: u16 = (cr0 as u16) | (1 << 3);
    // SAFETY: LMSW with PE kept and TS set; restored below.
    unsafe { core::arch::asm!("lmsw {0:x}", in(reg) msw, options(nomem, nostack)) };
    check_eq!(read_cr0(), cr0 | (1 << 3), "LMSW (register) sets TS");
    let msw_mem: u16 = cr0 as u16 & !(1 << 3);
    // SAFETY: as above, from memory.
    unsafe { core::arch::asm!("lmsw word ptr [{}]", in(reg) &msw_mem, options(nostack)) };
    check_eq!(read_cr0(), cr0, "LMSW (memory) clears TS");
    check_eq!(
        write_cr0(cr0 | (1 << 30) | (1 << 29)),
        None,
        "CR0.CD with NW"
    );
    check_eq!(write_cr0(cr0), None, "CR0 restored");
    check_eq!(read_cr0(), cr0, "CR0 as it was");
    // NW without CD last: Xen 4.17's hvm_set_cr0 lets it through, and its VMRUN then
    // fails (the domain crashes: see xen_reference.rs); the SDM and APM say #GP.
    println!("ctrl_regs: every other bad write took #GP; now CR0.NW without CD");
    check_eq!(write_cr0(cr0 | (1 << 29)), GP, "CR0.NW without CD");
    check!(read_cr0() & (1 << 29) == 0, "CR0.NW stays clear");
    println!("ctrl_regs: every bad write took #GP");
}
