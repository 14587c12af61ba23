//! INIT/SIPI of a vCPU whose saved FPU state has AVX in it (issue 14, defect 6): vCPU 1
//! (started with `VCPUOP_initialise`) turns on XSAVE and AVX (XCR0 = x87|SSE|AVX),
//! dirties YMM0-YMM3 and goes down (`VCPUOP_down`), so its state is saved with AVX in
//! the image. vCPU 0 then sends it INIT and a start-up IPI through the local APIC: the
//! vCPU restarts in real mode with XCR0 = x87, and must run (it writes a marker and
//! halts with interrupts off, which takes it down again). Before the fix the
//! hypervisor restored the old image under XCR0 = x87 and its XRSTOR faulted: a host
//! crash. Needs two vCPUs (SKIP with one) and low memory at 0x7000-0x8FFF.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicBool, Ordering};

use rxen_guest::cpu::cpuid;
use rxen_guest::events::sleep_until;
use rxen_guest::smp::{initialise, is_up, up};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::E820_RAM;
use rxen_guest::{check, check_eq, err, error, println, skip, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
const APIC: u64 = 0xFEE0_0000;
const ICR_LO: u64 = 0x300;
const ICR_HI: u64 = 0x310;
/// Where vCPU 1 starts in real mode: vector 8, i.e. 0x8000.
const SIPI_VECTOR: u32 = 0x08;
const TRAMPOLINE: u64 = 0x8000;
/// What the real-mode code writes.
const MARKER_AT: u64 = 0x7000;
const MARKER: u8 = 0x5A;

/// Set by vCPU 1 once its YMM registers hold data.
static AVX_DIRTY: AtomicBool = AtomicBool::new(false);

/// vCPU 1: SSE, XSAVE and AVX on, YMM0-3 filled; returning takes it down.
fn secondary(_v: u32) {
    let pattern: [u64; 4] = [
        0x0123_4567_89AB_CDEF,
        0xFEDC_BA98_7654_3210,
        0x5555_AAAA_5555_AAAA,
        0xDEAD_BEEF_CAFE_F00D,
    ];
    // SAFETY: ring 0; CPUID offers XSAVE and AVX (checked by vCPU 0); the registers
    // written are only used here.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr0",
            "and {t}, ~4",
            "or {t}, 2",
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, 0x40600",  // OSFXSR | OSXMMEXCPT | OSXSAVE
            "mov cr4, {t}",
            "xor ecx, ecx",
            "mov eax, 7",
            "xor edx, edx",
            "xsetbv",
            "vmovdqu ymm0, [{p}]",
            "vmovdqu ymm1, [{p}]",
            "vmovdqu ymm2, [{p}]",
            "vmovdqu ymm3, [{p}]",
            t = out(reg) _,
            p = in(reg) pattern.as_ptr(),
            out("eax") _, out("ecx") _, out("edx") _,
            options(nostack),
        );
    }
    AVX_DIRTY.store(true, Ordering::SeqCst);
}

fn apic_write(reg: u64, value: u32) {
    // SAFETY: the APIC page is identity-mapped by the runtime; these are the ICR
    // registers, written to send INIT and SIPI to vCPU 1.
    unsafe { core::ptr::write_volatile((APIC + reg) as *mut u32, value) };
}

/// Waits up to `ms` for `cond`.
fn wait(ms: u64, cond: impl Fn() -> bool) -> bool {
    let deadline = now() + ms * MS;
    while !cond() {
        if now() >= deadline {
            return false;
        }
        sleep_until(now() + MS);
    }
    true
}

fn marker() -> u8 {
    // SAFETY: low memory is RAM (checked), identity-mapped, written by vCPU 1.
    unsafe { core::ptr::read_volatile(MARKER_AT as *const u8) }
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    rxen_guest::events::set_up_timer_events();
    let leaf1 = cpuid(1, 0);
    if leaf1.ecx & (1 << 26) == 0 || leaf1.ecx & (1 << 28) == 0 {
        skip!("needs XSAVE and AVX");
    }
    match is_up(1) {
        0 => {}
        e if e == err::ENOENT => skip!("needs 2 vCPUs"),
        r => error!("VCPUOP_is_up(1) = {r}"),
    }
    let low_ram = si.memmap().iter().any(|e| {
        e.type_ == E820_RAM && e.addr <= MARKER_AT && e.addr + e.size >= TRAMPOLINE + 0x1000
    });
    if !low_ram {
        skip!("no RAM at {MARKER_AT:#x}-{:#x}", TRAMPOLINE + 0xFFF);
    }

    check_eq!(initialise(1, secondary), 0, "VCPUOP_initialise(1)");
    check_eq!(up(1), 0, "VCPUOP_up(1)");
    check!(
        wait(10_000, || AVX_DIRTY.load(Ordering::SeqCst) && is_up(1) == 0),
        "vCPU 1 used AVX and went down"
    );
    println!("init_sipi_xsave: vCPU 1 went down with YMM state; INIT/SIPI");

    // Real-mode code: xor ax,ax; mov ds,ax; mov byte [0x7000],0x5A; cli; hlt; jmp $-2.
    let code: [u8; 13] = [
        0x31, 0xC0, 0x8E, 0xD8, 0xC6, 0x06, 0x00, 0x70, MARKER, 0xFA, 0xF4, 0xEB, 0xFD,
    ];
    // SAFETY: low RAM (checked) the guest does not otherwise use, identity-mapped.
    unsafe {
        core::ptr::write_volatile(MARKER_AT as *mut u8, 0);
        core::ptr::copy_nonoverlapping(code.as_ptr(), TRAMPOLINE as *mut u8, code.len());
    }
    // INIT then SIPI, the SIPI again until it is taken (a vCPU still leaving its CPU
    // ignores it, as real CPUs may miss one).
    let mut started = false;
    for _ in 0..50 {
        apic_write(ICR_HI, 1 << 24);
        apic_write(ICR_LO, 0x4500); // INIT, assert
        apic_write(ICR_HI, 1 << 24);
        apic_write(ICR_LO, 0x4600 | SIPI_VECTOR); // start-up
        if wait(20, || marker() == MARKER) {
            started = true;
            break;
        }
    }
    check!(started, "vCPU 1 ran its real-mode code after INIT/SIPI");
    check!(
        wait(10_000, || is_up(1) == 0),
        "vCPU 1 halted with interrupts off (down again)"
    );
    println!("init_sipi_xsave: vCPU 1 restarted in real mode and halted; the host survived");
}
