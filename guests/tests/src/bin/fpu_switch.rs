//! Guest FPU state across vCPU switches: fills the SSE registers XMM0-XMM15 (and, with
//! AVX, the upper halves of YMM0-YMM15) with a pattern that depends on `seed=<n>`, then
//! yields (`SCHEDOP_yield`) `yields=<n>` times (default 2000) and spins between yields,
//! checking after each that every register still holds its pattern. Two of these on
//! one physical CPU (boot-time domUs with different seeds) make the hypervisor switch
//! between them thousands of times: without saving and restoring the FPU state, one
//! domain would see the other's values. Prints `fpu_switch: <n> yields, <m> bad
//! registers (avx: yes|no)`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::cpu::cpuid;
use rxen_guest::hypercall::sched_op;
use rxen_guest::xen::sched;
use rxen_guest::{check_eq, println, StartInfo};

rxen_guest::entry!(main);

/// Turns on SSE (CR0.MP, not EM; CR4.OSFXSR, OSXMMEXCPT) and, if the CPU has them,
/// XSAVE and AVX (CR4.OSXSAVE, XCR0 = x87|SSE|AVX); returns whether AVX is on.
fn enable_fpu() -> bool {
    let leaf1 = cpuid(1, 0);
    let avx = leaf1.ecx & (1 << 28) != 0 && leaf1.ecx & (1 << 26) != 0;
    // SAFETY: ring 0; these bits only enable SSE/XSAVE, which the CPU (CPUID) has.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr0",
            "and {t}, ~4",      // EM off
            "or {t}, 2",        // MP on
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, 0x600",    // OSFXSR | OSXMMEXCPT
            "mov cr4, {t}",
            t = out(reg) _,
            options(nostack),
        );
        if avx {
            core::arch::asm!(
                "mov {t}, cr4",
                "or {t}, 0x40000",  // OSXSAVE
                "mov cr4, {t}",
                "xor ecx, ecx",
                "mov eax, 7",       // x87 | SSE | AVX
                "xor edx, edx",
                "xsetbv",
                t = out(reg) _,
                out("eax") _, out("ecx") _, out("edx") _,
                options(nostack),
            );
        }
    }
    avx
}

/// Loads register `i`'s pattern into XMM i (and YMM i's upper half with AVX).
macro_rules! fill {
    ($seed:expr, $avx:expr, $($n:literal)*) => {{
        $(
            let v: [u64; 4] = pattern($seed, $n);
            // SAFETY: SSE/AVX are on; reads 16 or 32 bytes of `v`.
            unsafe {
                if $avx {
                    core::arch::asm!(concat!("vmovdqu ymm", $n, ", [{}]"), in(reg) v.as_ptr(), options(nostack));
                } else {
                    core::arch::asm!(concat!("movdqu xmm", $n, ", [{}]"), in(reg) v.as_ptr(), options(nostack));
                }
            }
        )*
    }};
}

/// Counts registers whose contents differ from their pattern.
macro_rules! check_all {
    ($seed:expr, $avx:expr, $($n:literal)*) => {{
        let mut bad = 0u32;
        $(
            let mut v = [0u64; 4];
            // SAFETY: SSE/AVX are on; writes 16 or 32 bytes of `v`.
            unsafe {
                if $avx {
                    core::arch::asm!(concat!("vmovdqu [{}], ymm", $n), in(reg) v.as_mut_ptr(), options(nostack));
                } else {
                    core::arch::asm!(concat!("movdqu [{}], xmm", $n), in(reg) v.as_mut_ptr(), options(nostack));
                }
            }
            let want = pattern($seed, $n);
            let lanes = if $avx { 4 } else { 2 };
            if v[..lanes] != want[..lanes] {
                bad += 1;
            }
        )*
        bad
    }};
}

fn pattern(seed: u64, reg: u64) -> [u64; 4] {
    let base = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (reg << 56);
    [
        base,
        base ^ 0x1111,
        base ^ 0x2222_0000,
        base ^ 0x3333_0000_0000,
    ]
}

fn main(si: &StartInfo) {
    let seed = si.arg_u64("seed").unwrap_or(1);
    let yields = si.arg_u64("yields").unwrap_or(2000);
    let avx = enable_fpu();
    fill!(seed, avx, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    let mut bad = 0;
    for i in 0..yields {
        // SAFETY: SCHEDOP_yield takes no argument.
        unsafe { sched_op(sched::YIELD, 0) };
        // Spin a little so that time slices also end in the middle.
        let mut x = i;
        for _ in 0..200 {
            x = core::hint::black_box(x.wrapping_mul(3) ^ 5);
        }
        bad += check_all!(seed, avx, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        if bad > 0 {
            break;
        }
    }
    println!(
        "fpu_switch: {yields} yields, {bad} bad registers (avx: {})",
        if avx { "yes" } else { "no" }
    );
    check_eq!(bad, 0, "the FPU registers kept their values");
}
