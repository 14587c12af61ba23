//! The local APIC Xen emulates for HVM/PVH vCPUs (`hvm/vlapic.c`), in xAPIC mode at
//! the default base: IA32_APIC_BASE, the ID (as CPUID leaf 1 reports it) and version,
//! the one-shot timer (its vector arrives in service, EOI clears it, the current count
//! runs down to 0), a halt ended by the timer, the periodic timer, and IPIs to self
//! (the self shorthand) held back while the TPR masks their class.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU32, Ordering};

use rxen_guest::boot::{set_trap_hook, TrapFrame};
use rxen_guest::cpu::{cpuid, rdmsr};
use rxen_guest::time::{map_shared_info, wait_interruptible};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

const APIC_BASE_MSR: u32 = 0x1B;
const BASE: u64 = 0xFEE0_0000;

const ID: u32 = 0x20;
const VERSION: u32 = 0x30;
const TPR: u32 = 0x80;
const PPR: u32 = 0xA0;
const EOI: u32 = 0xB0;
const SVR: u32 = 0xF0;
const ISR: u32 = 0x100;
const IRR: u32 = 0x200;
const ICR_LO: u32 = 0x300;
const LVT_TIMER: u32 = 0x320;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_CURRENT: u32 = 0x390;
const TIMER_DIVIDE: u32 = 0x3E0;

const TIMER_VECTOR: u8 = 0x40;
const PERIODIC_VECTOR: u8 = 0x41;
const IPI_VECTOR: u8 = 0x50;
const SPURIOUS_VECTOR: u8 = 0xFF;

const MS: u64 = 1_000_000;

/// A register read with a plain `mov`, as kernels access the APIC (the compiler could
/// otherwise fold the load into an ALU instruction).
fn read(reg: u32) -> u32 {
    let value: u32;
    // SAFETY: the APIC page is identity-mapped by the runtime; a load has no side
    // effect beyond the register read.
    unsafe {
        core::arch::asm!("mov {0:e}, [{1}]", out(reg) value, in(reg) BASE + u64::from(reg),
            options(nostack, readonly))
    };
    value
}

fn write(reg: u32, value: u32) {
    // SAFETY: as in `read`; the registers written are the ones this test programs.
    unsafe {
        core::arch::asm!("mov [{1}], {0:e}", in(reg) value, in(reg) BASE + u64::from(reg),
            options(nostack))
    };
}

/// Whether `vector` is set in the 256-bit register at `base` (ISR, IRR).
fn bit(base: u32, vector: u8) -> bool {
    read(base + 0x10 * u32::from(vector / 32)) & (1 << (vector % 32)) != 0
}

/// Interrupts taken per test vector, and what the handler saw.
static TIMER_HITS: AtomicU32 = AtomicU32::new(0);
static PERIODIC_HITS: AtomicU32 = AtomicU32::new(0);
static IPI_HITS: AtomicU32 = AtomicU32::new(0);
static SPURIOUS_HITS: AtomicU32 = AtomicU32::new(0);
/// Bit 0: the timer vector was in service in its handler; bit 1: cleared by the EOI.
static TIMER_ISR: AtomicU32 = AtomicU32::new(0);

fn hook(frame: &mut TrapFrame) -> bool {
    let vector = frame.vector as u8;
    let counter = match vector {
        TIMER_VECTOR => {
            let mut seen = 0;
            if bit(ISR, TIMER_VECTOR) {
                seen |= 1;
            }
            write(EOI, 0);
            if !bit(ISR, TIMER_VECTOR) {
                seen |= 2;
            }
            TIMER_ISR.store(seen, Ordering::SeqCst);
            &TIMER_HITS
        }
        PERIODIC_VECTOR => {
            write(EOI, 0);
            &PERIODIC_HITS
        }
        IPI_VECTOR => {
            write(EOI, 0);
            &IPI_HITS
        }
        // A spurious interrupt is not EOIed.
        SPURIOUS_VECTOR => &SPURIOUS_HITS,
        _ => return false,
    };
    counter.fetch_add(1, Ordering::SeqCst);
    true
}

/// Waits with interrupts on until `counter` reaches `target` or `timeout` ns pass.
fn wait_for(counter: &AtomicU32, target: u32, timeout: u64) -> bool {
    wait_interruptible(timeout, || counter.load(Ordering::SeqCst) >= target)
}

fn main(_si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    set_trap_hook(Some(hook));

    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC.
    let base_msr = unsafe { rdmsr(APIC_BASE_MSR) };
    println!("IA32_APIC_BASE {base_msr:#x}");
    check_eq!(base_msr & !0xFFF, BASE, "default base");
    check!(base_msr & (1 << 11) != 0, "APIC enabled");
    check!(base_msr & (1 << 10) == 0, "xAPIC mode");
    check!(base_msr & (1 << 8) != 0, "vCPU 0 is the BSP");

    let id = read(ID);
    let version = read(VERSION);
    println!("APIC ID {id:#x} version {version:#x}");
    check_eq!(
        id >> 24,
        cpuid(1, 0).ebx >> 24,
        "APIC ID as CPUID leaf 1 says"
    );
    check_eq!(version & 0xFF, 0x14, "integrated APIC version");
    check_eq!((version >> 16) & 0xFF, 5, "six LVT entries");

    // Software enable with the spurious vector, nothing masked by priority.
    write(SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    check_eq!(read(SVR) & 0x1FF, 0x1FF, "SVR");
    write(TPR, 0);
    check_eq!(read(PPR), 0, "PPR with nothing in service");

    // One-shot timer: 50 ms (a 1 GHz bus, divide by 1): long enough that a busy
    // host does not let it run out between arming and reading it back.
    write(TIMER_DIVIDE, 0xB);
    write(LVT_TIMER, u32::from(TIMER_VECTOR));
    check_eq!(read(LVT_TIMER), u32::from(TIMER_VECTOR), "LVT timer");
    write(TIMER_INITIAL, 50_000_000);
    let current = read(TIMER_CURRENT);
    println!("timer armed: current count {current}");
    check!(
        current > 0 && current <= 50_000_000,
        "the current count runs down from the initial count"
    );
    check!(
        wait_for(&TIMER_HITS, 1, 5_000 * MS),
        "the one-shot timer fires"
    );
    check_eq!(
        TIMER_ISR.load(Ordering::SeqCst),
        3,
        "in service, then EOIed"
    );
    check_eq!(read(TIMER_CURRENT), 0, "a one-shot timer stops at 0");
    check!(
        !bit(IRR, TIMER_VECTOR),
        "no second timer interrupt requested"
    );

    // A halt ends with the timer interrupt.
    write(TIMER_INITIAL, 1_000_000);
    // SAFETY: the STI shadow covers the HLT, so the interrupt cannot come between.
    unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
    check_eq!(
        TIMER_HITS.load(Ordering::SeqCst),
        2,
        "HLT ended by the timer"
    );

    // Periodic timer: 1 ms, three ticks, then stopped.
    write(LVT_TIMER, (1 << 17) | u32::from(PERIODIC_VECTOR));
    write(TIMER_INITIAL, 1_000_000);
    check!(
        wait_for(&PERIODIC_HITS, 3, 5_000 * MS),
        "the periodic timer fires again and again"
    );
    write(LVT_TIMER, (1 << 16) | u32::from(PERIODIC_VECTOR));
    write(TIMER_INITIAL, 0);
    println!("periodic ticks: {}", PERIODIC_HITS.load(Ordering::SeqCst));

    // IPI to self with the shorthand.
    write(ICR_LO, (1 << 18) | u32::from(IPI_VECTOR));
    check!(wait_for(&IPI_HITS, 1, 1_000 * MS), "self IPI delivered");
    check_eq!(read(ICR_LO) & (1 << 12), 0, "ICR delivery status idle");

    // Under a TPR of its class the IPI waits in IRR (interrupts stay off here: QEMU's
    // SVM offers a virtual interrupt whatever its priority, and Xen, which leaves it
    // to V_TPR, would livelock in interrupt-window exits), then comes once lowered.
    write(TPR, u32::from(IPI_VECTOR & 0xF0));
    write(ICR_LO, (1 << 18) | u32::from(IPI_VECTOR));
    check!(bit(IRR, IPI_VECTOR), "requested in IRR");
    check_eq!(
        read(PPR),
        u32::from(IPI_VECTOR & 0xF0),
        "PPR follows the TPR"
    );
    write(TPR, 0);
    check!(
        wait_for(&IPI_HITS, 2, 1_000 * MS),
        "delivered once the TPR drops"
    );
    check!(
        !bit(IRR, IPI_VECTOR) && !bit(ISR, IPI_VECTOR),
        "IRR and ISR clear"
    );
    check_eq!(
        SPURIOUS_HITS.load(Ordering::SeqCst),
        0,
        "no spurious interrupts"
    );
    println!(
        "timer {}, periodic {}, IPIs {}",
        TIMER_HITS.load(Ordering::SeqCst),
        PERIODIC_HITS.load(Ordering::SeqCst),
        IPI_HITS.load(Ordering::SeqCst)
    );
}
