//! Debug registers stay with their vCPU. `role=set seed=<n>` writes DR0-DR3 with values
//! that depend on the seed and arms DR7 with an execution breakpoint (DR0) on
//! [`probe`], a function only readers call; `role=read` leaves its debug registers at
//! their reset values and calls [`probe`]. Both then yield (`SCHEDOP_yield`)
//! `yields=<n>` times (default 500), spinning between yields, and check after each
//! that DR0-DR3 and DR7 hold their own values: the setter's, or 0 and 0x400 for a
//! reader. Run beside each other on one physical CPU (boot-time domUs), a setter and a
//! reader catch a hypervisor that leaves one guest's DR0-DR3 in the CPU for the next
//! (a reader would see the setter's addresses) or lets one guest's breakpoint fire in
//! another (a reader would take #DB in `probe` and report ERROR). Where the CPU has
//! RDTSCP, the setter also writes MSR_TSC_AUX (0x100 + seed) and both check what RDTSCP
//! returns in ECX: their own value, or 0 for a reader (TSC_AUX is another register
//! VMRUN does not switch). A reader first checks the architectural answers (which
//! rxen emulates): MOV to DR7 with bits 63:32 set takes #GP, DR5 reads as DR7 with
//! CR4.DE clear and takes #UD with CR4.DE set. Prints `debug_regs: <role>, <n> yields,
//! <m> bad registers`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU64, Ordering};

use rxen_guest::boot::{set_trap_hook, TrapFrame};
use rxen_guest::cpu::{cpuid, wrmsr};
use rxen_guest::hypercall::sched_op;
use rxen_guest::xen::sched;
use rxen_guest::{check_eq, println, StartInfo};

rxen_guest::entry!(main);

/// DR7 after reset: all breakpoints off, bit 10 reads as one.
const DR7_RESET: u64 = 0x400;
/// DR7 bit L0: local enable of breakpoint 0 (R/W0 = LEN0 = 0: instruction execution).
const DR7_L0: u64 = 1;

/// A function whose first instruction is the setter's breakpoint address (same image,
/// same addresses in every domain). Only readers call it.
#[inline(never)]
fn probe(x: u64) -> u64 {
    core::hint::black_box(x.wrapping_mul(7) ^ 3)
}

fn read_drs() -> [u64; 5] {
    let (d0, d1, d2, d3, d7): (u64, u64, u64, u64, u64);
    // SAFETY: ring 0; reading debug registers has no side effect.
    unsafe {
        core::arch::asm!(
            "mov {0}, dr0",
            "mov {1}, dr1",
            "mov {2}, dr2",
            "mov {3}, dr3",
            "mov {4}, dr7",
            out(reg) d0, out(reg) d1, out(reg) d2, out(reg) d3, out(reg) d7,
            options(nomem, nostack),
        );
    }
    [d0, d1, d2, d3, d7]
}

fn write_drs(v: &[u64; 5]) {
    // SAFETY: ring 0; DR0-DR3 hold canonical addresses, DR7 arms only breakpoint 0 on
    // `probe`, which this domain never calls.
    unsafe {
        core::arch::asm!(
            "mov dr0, {0}",
            "mov dr1, {1}",
            "mov dr2, {2}",
            "mov dr3, {3}",
            "mov dr7, {4}",
            in(reg) v[0], in(reg) v[1], in(reg) v[2], in(reg) v[3], in(reg) v[4],
            options(nomem, nostack),
        );
    }
}

/// The last vector the hook caught (each skips its 3-byte MOV DR).
static CAUGHT: AtomicU64 = AtomicU64::new(0);

fn hook(frame: &mut TrapFrame) -> bool {
    if frame.vector == 13 || frame.vector == 6 {
        CAUGHT.store(frame.vector, Ordering::SeqCst);
        frame.rip += 3;
        return true;
    }
    false
}

/// MOV DR7, `value`; the vector it took (0 for none).
fn write_dr7(value: u64) -> u64 {
    CAUGHT.store(0, Ordering::SeqCst);
    // SAFETY: ring 0; the value arms no breakpoint; a fault is caught by the hook.
    unsafe { core::arch::asm!("mov dr7, {}", in(reg) value, options(nostack)) };
    CAUGHT.load(Ordering::SeqCst)
}

/// MOV from DR5; (value, vector taken).
fn read_dr5() -> (u64, u64) {
    CAUGHT.store(0, Ordering::SeqCst);
    let mut value = 0u64;
    // SAFETY: ring 0; a fault is caught by the hook.
    unsafe { core::arch::asm!("mov {}, dr5", inout(reg) value, options(nostack)) };
    (value, CAUGHT.load(Ordering::SeqCst))
}

fn set_cr4_de(on: bool) {
    // SAFETY: ring 0; CR4.DE only changes how DR4/DR5 behave.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr4",
            "and {t}, ~8",
            "or {t}, {de}",
            "mov cr4, {t}",
            t = out(reg) _,
            de = in(reg) if on { 8u64 } else { 0 },
            options(nostack),
        )
    };
}

fn architectural_answers() {
    set_trap_hook(Some(hook));
    check_eq!(write_dr7(1 << 32), 13, "DR7 bit 32: #GP");
    check_eq!(read_dr7(), DR7_RESET, "DR7 unchanged after the #GP");
    check_eq!(write_dr7(DR7_RESET | (1 << 8)), 0, "DR7.LE");
    check_eq!(
        read_dr5(),
        (DR7_RESET | (1 << 8), 0),
        "DR5 is DR7 with CR4.DE clear"
    );
    check_eq!(write_dr7(DR7_RESET), 0, "DR7 back");
    set_cr4_de(true);
    check_eq!(read_dr5().1, 6, "DR5 with CR4.DE: #UD");
    set_cr4_de(false);
    set_trap_hook(None);
}

fn read_dr7() -> u64 {
    read_drs()[4]
}

/// MSR_TSC_AUX.
const MSR_TSC_AUX: u32 = 0xC000_0103;

/// ECX of RDTSCP: this CPU's TSC_AUX.
fn rdtscp_aux() -> u32 {
    let aux: u32;
    // SAFETY: RDTSCP only reads the TSC and TSC_AUX (the caller checked CPUID).
    unsafe {
        core::arch::asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack))
    };
    aux
}

fn main(si: &StartInfo) {
    let setter = si.arg_value("role") == Some("set");
    let seed = si.arg_u64("seed").unwrap_or(1);
    let yields = si.arg_u64("yields").unwrap_or(500);
    let want = if setter {
        let base = 0x0000_4000_0000_0000u64 | (seed << 24);
        let v = [
            probe as *const () as u64,
            base | 0x1008,
            base | 0x2010,
            base | 0x3018,
            DR7_RESET | DR7_L0,
        ];
        write_drs(&v);
        v
    } else {
        architectural_answers();
        [0, 0, 0, 0, DR7_RESET]
    };
    let rdtscp = cpuid(0x8000_0001, 0).edx & (1 << 27) != 0;
    let want_aux = if setter { 0x100 + seed as u32 } else { 0 };
    if rdtscp && setter {
        // SAFETY: the CPU has RDTSCP, so MSR_TSC_AUX exists; a 32-bit value.
        unsafe { wrmsr(MSR_TSC_AUX, u64::from(want_aux)) };
    }
    let mut bad = 0u32;
    let mut x = seed;
    for _ in 0..yields {
        // SAFETY: SCHEDOP_yield takes no argument.
        unsafe { sched_op(sched::YIELD, 0) };
        for _ in 0..200 {
            x = core::hint::black_box(x.wrapping_mul(3) ^ 5);
        }
        if !setter {
            x = probe(x);
        }
        let got = read_drs();
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            if g != w {
                if bad < 4 {
                    let n = if i == 4 { 7 } else { i };
                    println!("DR{n} is {g:#x}, expected {w:#x}");
                }
                bad += 1;
            }
        }
        if rdtscp {
            let aux = rdtscp_aux();
            if aux != want_aux {
                println!("TSC_AUX is {aux:#x}, expected {want_aux:#x}");
                bad += 1;
            }
        }
        if bad > 0 {
            break;
        }
    }
    println!(
        "debug_regs: {}, {yields} yields, {bad} bad registers (TSC_AUX checked: {})",
        if setter { "set" } else { "read" },
        if rdtscp { "yes" } else { "no" }
    );
    check_eq!(bad, 0, "the debug registers kept this vCPU's values");
}
