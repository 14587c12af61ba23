//! The IDT, the exception and interrupt entry stubs, and the fatal-trap
//! report: CPU, vector, error code, every register and a short stack trace,
//! then a machine stop (see [`crate::stop`]).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::apic::{KICK_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::{apic, cpu, stop};

/// Spurious vectors of the (masked) legacy PICs: IRQ 7 and IRQ 15.
const PIC_SPURIOUS: [u8; 2] = [
    crate::pic::PIC_VECTOR_BASE + 7,
    crate::pic::PIC_VECTOR_BASE + 15,
];

/// Registers saved by the entry stubs, in stack order.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// General purpose registers, pushed by `trap_common`.
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number, pushed by the per-vector stub.
    pub vector: u64,
    /// Error code (0 where the CPU pushes none).
    pub error_code: u64,
    /// Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

macro_rules! isr_stubs {
    ($($n:literal $kind:ident),* $(,)?) => {
        core::arch::global_asm!(
            ".text",
            $(concat!(".global isr_", stringify!($n), "\n", "isr_", stringify!($n), ":\n",
                isr_stubs!(@push $kind), "push ", stringify!($n), "\n", "jmp trap_common\n"),)*
            ".section .rodata.isr_table, \"a\"",
            ".balign 8",
            ".global isr_table",
            "isr_table:",
            $(concat!(".quad isr_", stringify!($n)),)*
            ".text",
        );
    };
    (@push err) => { "" };
    (@push noerr) => { "push 0\n" };
}

isr_stubs!(
    0 noerr, 1 noerr, 2 noerr, 3 noerr, 4 noerr, 5 noerr, 6 noerr, 7 noerr,
    8 err, 9 noerr, 10 err, 11 err, 12 err, 13 err, 14 err, 15 noerr,
    16 noerr, 17 err, 18 noerr, 19 noerr, 20 noerr, 21 err, 22 noerr, 23 noerr,
    24 noerr, 25 noerr, 26 noerr, 27 noerr, 28 noerr, 29 err, 30 err, 31 noerr,
);

/// Size of each interrupt stub of vectors 32-255 (`irq_stubs`): the stub of
/// vector `v` is at `irq_stubs + (v - 32) * IRQ_STUB_SIZE`.
const IRQ_STUB_SIZE: u64 = 16;

// One stub per vector from 32 up, each 16 bytes (push 0, push the vector,
// jump: at most 12 bytes): every vector a device or a stray MSI can raise
// reaches `rxen_trap_handler`, none faults for want of a gate.
// Among the code exits run (`linker.ld`): the host takes its timer and kick
// interrupts through here.
core::arch::global_asm!(
    ".pushsection .text.hot.irq_stubs, \"ax\"",
    ".balign 16",
    ".global irq_stubs",
    "irq_stubs:",
    ".set irq_vector, 32",
    ".rept 224",
    ".balign 16",
    "pushq $0",
    "pushq $irq_vector",
    "jmp trap_common",
    ".set irq_vector, irq_vector + 1",
    ".endr",
    ".popsection",
    options(att_syntax),
);

core::arch::global_asm!(
    ".pushsection .text.hot.trap_common, \"ax\"",
    "trap_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "cld",
    "call rxen_trap_handler",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    ".popsection",
);

extern "C" {
    static isr_table: [u64; 32];
    static irq_stubs: u8;
}

/// One 16-byte IDT gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY_GATE: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: spin::Once<Idt> = spin::Once::new();

fn gate(handler: u64, ist: u8) -> Gate {
    Gate {
        offset_low: handler as u16,
        selector: cpu::KERNEL_CS,
        ist,
        type_attr: 0x8E, // present, DPL 0, 64-bit interrupt gate
        offset_mid: (handler >> 16) as u16,
        offset_high: (handler >> 32) as u32,
        reserved: 0,
    }
}

/// Loads the shared IDT on this CPU (built on first use).
pub fn load_idt() {
    let idt = IDT.call_once(|| {
        let mut gates = [EMPTY_GATE; 256];
        // SAFETY: `isr_table` is a read-only table of 32 stub addresses
        // emitted by the assembly above.
        let table = unsafe { &*core::ptr::addr_of!(isr_table) };
        for (vector, handler) in table.iter().enumerate() {
            let ist = match vector {
                8 => cpu::IST_DOUBLE_FAULT,
                2 => cpu::IST_NMI,
                18 => cpu::IST_MACHINE_CHECK,
                _ => 0,
            };
            gates[vector] = gate(*handler, ist);
        }
        let stubs = core::ptr::addr_of!(irq_stubs) as u64;
        for (vector, gate_slot) in gates.iter_mut().enumerate().skip(32) {
            *gate_slot = gate(stubs + (vector as u64 - 32) * IRQ_STUB_SIZE, 0);
        }
        Idt(gates)
    });
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is 'static and every present gate points at a stub
    // that saves state and calls `rxen_trap_handler`.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

/// Timer interrupts counted on all CPUs since boot.
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

const EXCEPTION_NAMES: [&str; 32] = [
    "Divide error",
    "Debug",
    "NMI",
    "Breakpoint",
    "Overflow",
    "Bound range",
    "Invalid opcode",
    "Device not available",
    "Double fault",
    "Coprocessor segment overrun",
    "Invalid TSS",
    "Segment not present",
    "Stack segment fault",
    "General protection fault",
    "Page fault",
    "Reserved",
    "x87 floating point",
    "Alignment check",
    "Machine check",
    "SIMD floating point",
    "Virtualization",
    "Control protection",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "Hypervisor injection",
    "VMM communication",
    "Security",
    "Reserved",
];

/// The Rust side of every IDT entry.
#[no_mangle]
extern "C" fn rxen_trap_handler(frame: &mut TrapFrame) {
    match frame.vector {
        v if v == TIMER_VECTOR as u64 => {
            TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
            apic::timer_fired();
            apic::eoi();
        }
        // A kick only has to interrupt the guest or the idle HLT: the CPU
        // then looks at its scheduler again.
        v if v == KICK_VECTOR as u64 => apic::eoi(),
        v if v == SPURIOUS_VECTOR as u64 || PIC_SPURIOUS.contains(&(v as u8)) => {}
        2 if stop::stopping() => stop::park_this_cpu(),
        // A device's interrupt (or a stray one): noted for the scheduling
        // loop, which delivers it to the domain that holds the vector.
        v @ 32..=255 => {
            crate::ioapic::mask_level_source(v as u8);
            crate::irq::note(v as u8);
            apic::eoi();
        }
        _ => fatal_trap(frame),
    }
}

fn fatal_trap(frame: &TrapFrame) -> ! {
    stop::begin_crash();
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES.get(vector).copied().unwrap_or("Unknown");
    let cpu = cpu::current_index();
    crate::console::print_emergency(format_args!(
        "****************************************\n\
         FATAL TRAP on CPU {cpu}: vector = {vector} ({name}), error code = {:#06x}",
        frame.error_code
    ));
    if vector == 14 {
        crate::console::print_emergency(format_args!(
            "Faulting linear address (CR2): {:#018x}",
            x86_64::registers::control::Cr2::read_raw()
        ));
    }
    dump_registers(frame);
    print_stack_trace(frame.rbp);
    crate::console::print_emergency(format_args!("****************************************"));
    stop::machine_crash()
}

/// Prints a register dump of `frame` and the control registers.
pub fn dump_registers(f: &TrapFrame) {
    let p = crate::console::print_emergency;
    p(format_args!(
        "----[ rxen-{}  x86_64 ]----",
        env!("CARGO_PKG_VERSION")
    ));
    p(format_args!("CPU:    {}", cpu::current_index()));
    p(format_args!("RIP:    {:04x}:[<{:016x}>]", f.cs, f.rip));
    p(format_args!(
        "RFLAGS: {:016x}   CONTEXT: hypervisor",
        f.rflags
    ));
    p(format_args!(
        "RAX: {:016x}   RBX: {:016x}   RCX: {:016x}",
        f.rax, f.rbx, f.rcx
    ));
    p(format_args!(
        "RDX: {:016x}   RSI: {:016x}   RDI: {:016x}",
        f.rdx, f.rsi, f.rdi
    ));
    p(format_args!(
        "RBP: {:016x}   RSP: {:016x}   R8:  {:016x}",
        f.rbp, f.rsp, f.r8
    ));
    p(format_args!(
        "R9:  {:016x}   R10: {:016x}   R11: {:016x}",
        f.r9, f.r10, f.r11
    ));
    p(format_args!(
        "R12: {:016x}   R13: {:016x}   R14: {:016x}",
        f.r12, f.r13, f.r14
    ));
    p(format_args!(
        "R15: {:016x}   SS:  {:04x}               CS:  {:04x}",
        f.r15, f.ss, f.cs
    ));
    let cr0 = x86_64::registers::control::Cr0::read_raw();
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
    let cr4 = x86_64::registers::control::Cr4::read_raw();
    p(format_args!("CR0: {:016x}   CR2: {:016x}", cr0, cr2));
    p(format_args!(
        "CR3: {:016x}   CR4: {:016x}",
        cr3.start_address().as_u64(),
        cr4
    ));
}

/// Prints up to 16 return addresses found by following the frame-pointer
/// chain from `rbp`, staying inside this CPU's stack.
pub fn print_stack_trace(mut rbp: u64) {
    let p = crate::console::print_emergency;
    p(format_args!("Stack trace (frame pointers):"));
    let (low, high) = cpu::current_stack_bounds();
    let mut printed = 0;
    while printed < 16 && rbp >= low && rbp + 16 <= high && rbp.is_multiple_of(8) {
        // SAFETY: rbp lies inside this CPU's mapped stack (checked above)
        // and is 8-byte aligned; the two words read are stack memory.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        p(format_args!("   [<{:016x}>]", ret));
        printed += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    if printed == 0 {
        p(format_args!("   (no frames)"));
    }
}
