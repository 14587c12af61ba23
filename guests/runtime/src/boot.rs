//! The PVH entry, the CPU tables, traps, user mode and the panic handler (bare metal
//! only).
//!
//! Xen enters a PVH guest at the `XEN_ELFNOTE_PHYS32_ENTRY` address in 32-bit flat
//! protected mode, paging off, interrupts off, EBX = physical address of the
//! `hvm_start_info`, with no usable stack, GDT or IDT (docs/misc/pvh.pandoc). The stub
//! identity-maps the low 4 GiB with 2 MiB pages (user-accessible, so that ring-3 tests can
//! run anywhere), enters long mode and calls [`rxen_guest_start64`], which loads the GDT
//! (kernel and user segments, a TSS), the IDT, installs the hypercall page and runs the
//! test's `main`.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::report::{report, TestResult};

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start32
    .balign 4

    .section .text.boot32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, guest_start_info
    movl $guest_stack_top, %esp

    /* Zero the PML4 and the PDPT. */
    movl $guest_pml4, %edi
    xorl %eax, %eax
    movl $2048, %ecx
    rep stosl

    /* 2048 PD entries of 2 MiB (present, writable, user): 0..4 GiB. */
    movl $guest_pd, %edi
    movl $0x87, %eax
    movl $2048, %ecx
1:
    movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    movl $guest_pdpt, %edi
    movl $guest_pd + 7, %eax
    movl $4, %ecx
2:
    movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 2b

    movl $guest_pdpt + 7, %eax
    movl %eax, guest_pml4

    /* CR4.PAE, CR3, EFER.LME, CR0.PG (and PE, WP; caches on). */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $guest_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    andl $0x9FFFFFFF, %eax
    movl %eax, %cr0

    lgdt guest_boot_gdt_ptr
    ljmp $0x08, $guest_start64

    .code64
guest_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $guest_stack_top, %rsp
    xorl %ebp, %ebp
    movl guest_start_info, %edi
    call rxen_guest_start64
3:
    cli
    hlt
    jmp 3b

    .section .rodata.guest_boot_gdt, "a"
    .balign 16
guest_boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
guest_boot_gdt_end:
    .balign 4
    .word 0
guest_boot_gdt_ptr:
    .word guest_boot_gdt_end - guest_boot_gdt - 1
    .long guest_boot_gdt

    .section .data.guest_boot, "aw"
    .balign 4
guest_start_info:
    .long 0

    .section .bss.guest_boot, "aw", @nobits
    .balign 4096
guest_pml4:
    .skip 4096
guest_pdpt:
    .skip 4096
guest_pd:
    .skip 4096 * 4
guest_stack_bottom:
    .skip 65536
guest_stack_top:
guest_irq_stack_bottom:
    .skip 16384
    .global guest_irq_stack_top
guest_irq_stack_top:
    .global guest_pml4
    "#,
    options(att_syntax)
);

/// Generates one stub per vector (pushing a zero error code where the CPU pushes none,
/// then the vector) and a table of their addresses.
macro_rules! trap_stubs {
    ($($vec:literal $err:literal),* $(,)?) => {
        core::arch::global_asm!(
            concat!(
                ".section .text.guest_traps, \"ax\"\n",
                $(
                    ".balign 16\n",
                    "trap_stub_", stringify!($vec), ":\n",
                    $err,
                    "pushq $", stringify!($vec), "\n",
                    "jmp trap_common\n",
                )*
                ".section .rodata.guest_traps, \"a\"\n",
                ".balign 8\n",
                ".global guest_trap_table\n",
                "guest_trap_table:\n",
                $( ".quad ", stringify!($vec), ", trap_stub_", stringify!($vec), "\n", )*
                ".global guest_trap_table_end\n",
                "guest_trap_table_end:\n",
            ),
            options(att_syntax)
        );
    };
}

// Vectors 8, 10-14, 17, 21, 29 and 30 come with an error code.
trap_stubs!(
    0 "pushq $0\n", 1 "pushq $0\n", 2 "pushq $0\n", 3 "pushq $0\n", 4 "pushq $0\n",
    5 "pushq $0\n", 6 "pushq $0\n", 7 "pushq $0\n", 8 "", 9 "pushq $0\n", 10 "", 11 "",
    12 "", 13 "", 14 "", 15 "pushq $0\n", 16 "pushq $0\n", 17 "", 18 "pushq $0\n",
    19 "pushq $0\n", 20 "pushq $0\n", 21 "", 22 "pushq $0\n", 23 "pushq $0\n",
    24 "pushq $0\n", 25 "pushq $0\n", 26 "pushq $0\n", 27 "pushq $0\n", 28 "pushq $0\n",
    29 "", 30 "", 31 "pushq $0\n", 243 "pushq $0\n",
    // Local APIC vectors for tests (through the trap hook): 0x40, 0x41, 0x50, 0xff.
    64 "pushq $0\n", 65 "pushq $0\n", 80 "pushq $0\n", 255 "pushq $0\n",
);

core::arch::global_asm!(
    r#"
    .section .text.guest_traps, "ax"
trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call rxen_guest_trap
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    /* enter_user(entry, user_rsp, rax, rdi, rsi, r9) -> rax at `int $0x80` */
    .global rxen_guest_enter_user
rxen_guest_enter_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, guest_user_saved_rsp
    pushq $0x1b
    pushq %rsi
    pushq $0x2
    pushq $0x23
    pushq %rdi
    movq %rdx, %rax
    movq %rcx, %rdi
    movq %r8, %rsi
    xorl %edx, %edx
    xorl %r10d, %r10d
    iretq

    /* Vector 0x80 (DPL 3): back from user mode to after rxen_guest_enter_user. */
    .global guest_user_return
guest_user_return:
    movq guest_user_saved_rsp, %rsp
    movw $0x10, %cx
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %ss
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

    /* User-mode code: a raw VMMCALL, then back to ring 0. */
    .global rxen_guest_user_vmmcall
rxen_guest_user_vmmcall:
    vmmcall
    int $0x80

    /* User-mode code: `call *%r9` (a hypercall-page stub), then back to ring 0. */
    .global rxen_guest_user_call_r9
rxen_guest_user_call_r9:
    call *%r9
    int $0x80

    .section .bss.guest_user, "aw", @nobits
    .balign 8
guest_user_saved_rsp:
    .skip 8
    .balign 4096
guest_user_stack_bottom:
    .skip 16384
    .global guest_user_stack_top
guest_user_stack_top:
    "#,
    options(att_syntax)
);

extern "C" {
    static guest_trap_table: [[u64; 2]; 37];
    static guest_irq_stack_top: u8;
    static guest_user_stack_top: u8;
    fn guest_user_return();
    fn rxen_guest_enter_user(entry: u64, rsp: u64, rax: u64, rdi: u64, rsi: u64, r9: u64) -> u64;
    fn rxen_guest_user_vmmcall();
    fn rxen_guest_user_call_r9();
}

extern "Rust" {
    /// The test's entry, defined by [`crate::entry!`].
    fn rxen_guest_main(si: &crate::StartInfo);
}

/// The registers saved by the trap entry, in stack order.
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs)]
pub struct TrapFrame {
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
    /// The vector.
    pub vector: u64,
    /// The error code (0 where the CPU pushes none).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// An IDT gate descriptor (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    lo: u64,
    hi: u64,
}

impl Gate {
    const EMPTY: Gate = Gate { lo: 0, hi: 0 };

    /// A 64-bit interrupt gate to `handler` on the kernel code segment with `dpl`.
    fn interrupt(handler: u64, dpl: u64) -> Gate {
        let lo = (handler & 0xffff)
            | (0x08 << 16)
            | ((0x8e | (dpl << 5)) << 40)
            | (((handler >> 16) & 0xffff) << 48);
        Gate {
            lo,
            hi: handler >> 32,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::EMPTY; 256]);

/// The 64-bit TSS (only RSP0 is used: the stack for interrupts from ring 3).
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

static mut TSS: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: 104,
};

/// GDT: null, kernel code 0x08, kernel data 0x10, user data 0x18, user code 0x20, TSS 0x28.
#[repr(C, align(16))]
struct Gdt([u64; 7]);

static mut GDT: Gdt = Gdt([
    0,
    0x00AF_9A00_0000_FFFF,
    0x00CF_9200_0000_FFFF,
    0x00CF_F200_0000_FFFF,
    0x00AF_FA00_0000_FFFF,
    0,
    0,
]);

/// User data selector (RPL 3).
pub const USER_DS: u16 = 0x1b;
/// User code selector (RPL 3).
pub const USER_CS: u16 = 0x23;

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads the full GDT (with user segments and the TSS) and the IDT.
fn init_cpu_tables() {
    // SAFETY: single vCPU, called once before anything else uses these statics; the
    // descriptors written are well-formed and the selectors loaded exist.
    unsafe {
        let tss = &raw mut TSS;
        (*tss).rsp[0] = &raw const guest_irq_stack_top as u64;
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = &raw mut GDT;
        (*gdt).0[5] = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        (*gdt).0[6] = base >> 32;
        let gdtr = DescriptorPointer {
            limit: (core::mem::size_of::<Gdt>() - 1) as u16,
            base: gdt as u64,
        };
        core::arch::asm!("lgdt [{}]", in(reg) &gdtr, options(readonly, nostack));
        core::arch::asm!("ltr {0:x}", in(reg) 0x28u16, options(nomem, nostack));

        let idt = &raw mut IDT;
        for &[vector, handler] in &guest_trap_table {
            (*idt).0[vector as usize] = Gate::interrupt(handler, 0);
        }
        (*idt).0[0x80] = Gate::interrupt(guest_user_return as *const () as u64, 3);
        let idtr = DescriptorPointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: idt as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack));
    }
}

/// Loads the GDT (without the TSS: its descriptor is busy on vCPU 0) and the IDT on a
/// secondary vCPU, which Xen starts with flat cached segments but selectors 0.
fn init_secondary_cpu_tables() {
    // SAFETY: the tables were set up by vCPU 0 before any secondary vCPU started and are
    // not written again; the far return loads the kernel code selector that exists.
    unsafe {
        let gdtr = DescriptorPointer {
            limit: (core::mem::size_of::<Gdt>() - 1) as u16,
            base: &raw const GDT as u64,
        };
        core::arch::asm!("lgdt [{}]", in(reg) &gdtr, options(readonly, nostack));
        core::arch::asm!(
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {sel:x}, 0x10",
            "mov ds, {sel:x}",
            "mov es, {sel:x}",
            "mov ss, {sel:x}",
            tmp = out(reg) _,
            sel = out(reg) _,
        );
        let idtr = DescriptorPointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: &raw const IDT as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack));
    }
}

/// How many vCPUs the runtime has stacks for (vCPU 0 and the secondaries).
pub const MAX_VCPUS: usize = 4;

/// Stack size of a secondary vCPU.
const SECONDARY_STACK: usize = 16384;

#[repr(C, align(16))]
struct SecondaryStacks([[u8; SECONDARY_STACK]; MAX_VCPUS - 1]);

static mut SECONDARY_STACKS: SecondaryStacks =
    SecondaryStacks([[0; SECONDARY_STACK]; MAX_VCPUS - 1]);

/// What secondary vCPUs run (a `fn(u32)`, 0 if none).
static SECONDARY_MAIN: AtomicUsize = AtomicUsize::new(0);

/// The vCPU this code runs on: secondary vCPUs run on the runtime's secondary stacks,
/// so the stack pointer tells (everything else is vCPU 0).
pub fn current_vcpu() -> u32 {
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    let base = &raw const SECONDARY_STACKS as u64;
    let size = core::mem::size_of::<SecondaryStacks>() as u64;
    if rsp > base && rsp <= base + size {
        ((rsp - base - 1) / SECONDARY_STACK as u64) as u32 + 1
    } else {
        0
    }
}

/// The `vcpu_hvm_context` (64-bit mode) that starts secondary vCPU `vcpu` (1 to
/// [`MAX_VCPUS`] - 1) on its own stack in the runtime with vCPU 0's paging, running
/// `main(vcpu)` with interrupts off; when `main` returns the vCPU takes itself down
/// (`VCPUOP_down`). `None` for a vCPU without a stack.
pub fn secondary_context(vcpu: u32, main: fn(u32)) -> Option<rxen_abi::hvm_vcpu::VcpuHvmContext> {
    if vcpu == 0 || vcpu as usize >= MAX_VCPUS {
        return None;
    }
    SECONDARY_MAIN.store(main as usize, Ordering::SeqCst);
    let top = &raw const SECONDARY_STACKS as u64 + u64::from(vcpu) * SECONDARY_STACK as u64;
    let (cr0, cr3, cr4): (u64, u64, u64);
    // SAFETY: reading control registers and EFER has no side effects.
    let efer = unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        crate::cpu::rdmsr(0xC000_0080)
    };
    Some(rxen_abi::hvm_vcpu::VcpuHvmContext::new_64(
        &rxen_abi::hvm_vcpu::VcpuHvmX86_64 {
            // As after a call: RSP + 8 is 16-byte aligned at a function's entry.
            rsp: top - 8,
            rdi: u64::from(vcpu),
            rip: rxen_guest_secondary_start64 as *const () as u64,
            rflags: 0x2,
            cr0,
            cr3,
            cr4,
            efer,
            ..Default::default()
        },
    ))
}

/// Where secondary vCPUs start (see [`secondary_context`]).
extern "C" fn rxen_guest_secondary_start64(vcpu: u64) -> ! {
    init_secondary_cpu_tables();
    let main = SECONDARY_MAIN.load(Ordering::SeqCst);
    if main != 0 {
        // SAFETY: only `secondary_context` stores here, always a `fn(u32)`.
        let main: fn(u32) = unsafe { core::mem::transmute::<usize, fn(u32)>(main) };
        main(vcpu as u32);
    }
    // SAFETY: VCPUOP_down of the calling vCPU takes no argument.
    unsafe { crate::hypercall::vcpu_op(crate::xen::vcpu::DOWN, vcpu, 0) };
    crate::cpu::halt_forever()
}

/// Loads an empty IDT (limit 0): the next exception becomes a triple fault.
pub fn load_empty_idt() {
    let idtr = DescriptorPointer { limit: 0, base: 0 };
    // SAFETY: deliberately breaks exception delivery; used by the triple-fault test.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack)) };
}

/// A hook that may claim an exception (return `true`: resume at the frame's RIP).
pub type TrapHook = fn(&mut TrapFrame) -> bool;

static TRAP_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs (or with `None` removes) a hook consulted before an exception is fatal.
pub fn set_trap_hook(hook: Option<TrapHook>) {
    TRAP_HOOK.store(hook.map_or(0, |h| h as usize), Ordering::SeqCst);
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23", "?24", "?25",
    "?26", "?27", "#HV", "#VC", "#SX", "?31",
];

/// Called by the trap stubs.
#[no_mangle]
extern "C" fn rxen_guest_trap(frame: &mut TrapFrame) {
    if frame.vector == u64::from(crate::events::EVENT_VECTOR) {
        crate::events::handle_upcall();
        return;
    }
    let hook = TRAP_HOOK.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: only `set_trap_hook` stores here, always a `TrapHook`.
        let hook: TrapHook = unsafe { core::mem::transmute::<usize, TrapHook>(hook) };
        if hook(frame) {
            return;
        }
    }
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let name = EXCEPTION_NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("IRQ");
    crate::println!(
        "EXCEPTION: vector {} ({name}) at rip {:#x} error {:#x} cs {:#x} rflags {:#x} rsp {:#x} cr2 {:#x}",
        frame.vector,
        frame.rip,
        frame.error,
        frame.cs,
        frame.rflags,
        frame.rsp,
        cr2
    );
    dump_around(frame.rip, frame.rsp);
    report(TestResult::Error);
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The code bytes around `rip` and the words on top of the stack, where they
/// lie in the image (for finding what overwrote the code or a return address).
fn dump_around(rip: u64, rsp: u64) {
    let image = &raw const __image_start as u64..&raw const __image_end as u64;
    let mut code = [0u8; 32];
    let from = rip.wrapping_sub(16);
    if image.contains(&from) && image.contains(&(from + 32)) {
        // SAFETY: inside our own image, read-only.
        unsafe { core::ptr::copy_nonoverlapping(from as *const u8, code.as_mut_ptr(), 32) };
        crate::println!("EXCEPTION: code at {from:#x}: {code:02x?}");
    }
    if image.contains(&rsp) && image.contains(&(rsp + 64)) {
        // SAFETY: inside our own image (the stack), read-only.
        let words = unsafe { core::ptr::read_volatile(rsp as *const [u64; 8]) };
        crate::println!("EXCEPTION: stack at {rsp:#x}: {words:x?}");
    }
}

/// Runs user-mode (ring 3) code at `entry` with RAX, RDI, RSI, R9 set, until it executes
/// `int $0x80`; returns its RAX then.
///
/// # Safety
/// `entry` must be code that ends with `int $0x80` and leaves the kernel's state alone.
pub unsafe fn enter_user(entry: u64, rax: u64, rdi: u64, rsi: u64, r9: u64) -> u64 {
    // SAFETY: per the caller's contract; the user stack is the runtime's own.
    unsafe {
        rxen_guest_enter_user(
            entry,
            &raw const guest_user_stack_top as u64,
            rax,
            rdi,
            rsi,
            r9,
        )
    }
}

/// A hypercall from ring 3 with a raw `VMMCALL`; returns RAX.
pub fn user_vmmcall(op: u64, a1: u64, a2: u64) -> i64 {
    // SAFETY: the entry is the runtime's ring-3 stub, which ends with `int $0x80`.
    unsafe { enter_user(rxen_guest_user_vmmcall as *const () as u64, op, a1, a2, 0) as i64 }
}

/// A hypercall from ring 3 through the hypercall page (`call page + op * 32`); returns RAX,
/// or `None` without a page.
pub fn user_page_call(op: u64, a1: u64, a2: u64) -> Option<i64> {
    let page = crate::hypercall::page()?;
    // SAFETY: as in `user_vmmcall`; the page is mapped user-accessible.
    Some(unsafe {
        enter_user(
            rxen_guest_user_call_r9 as *const () as u64,
            op,
            a1,
            a2,
            page + op * 32,
        ) as i64
    })
}

/// The 64-bit entry, called by the PVH stub with the start info's physical address.
#[no_mangle]
extern "C" fn rxen_guest_start64(start_info: u32) -> ! {
    init_cpu_tables();
    if crate::cpu::install_hypercall_page().is_none() {
        // Without Xen's leaves there is no console: nothing to report to.
        crate::cpu::halt_forever();
    }
    // SAFETY: the loader's start info, identity-mapped, never freed.
    let Some(si) = (unsafe { crate::StartInfo::from_paddr(u64::from(start_info)) }) else {
        crate::error!("no valid hvm_start_info at {start_info:#x}");
    };
    // SAFETY: `rxen_guest_main` is defined by the test's `entry!`.
    unsafe { rxen_guest_main(&si) };
    report(crate::report::current())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("PANIC: {info}");
    report(TestResult::Error)
}
