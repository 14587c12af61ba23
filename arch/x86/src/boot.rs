//! Boot entries: the multiboot (v1) header QEMU's `-kernel` loader reads, the
//! multiboot2 header GRUB reads, the PVH ELF note, and the 32-bit code that
//! takes each of them into 64-bit long mode and calls [`rxen_start64`].
//!
//! The loaders leave us in 32-bit protected mode without paging. The stub
//! identity-maps the first 4 GiB with 2 MiB pages (enough to reach the image,
//! the boot information, the modules and the local APIC), enables long mode
//! and jumps to Rust with the loader's magic in EDI and its info pointer in ESI.
//! The Rust side replaces these tables with its own as soon as it can.

// Multiboot v1 header with the address fields (flag bit 16): QEMU's loader
// only takes ELF32 images otherwise, and ours is ELF64. The linker script
// lays the image out so that file offsets follow physical addresses.
//
// Multiboot2 header: GRUB loads our ELF64 segments by physical address and
// enters at e_entry (`_start32`).
//
// PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", 4-byte aligned.
core::arch::global_asm!(
    r#"
    .section .multiboot_header, "a"
    .balign 4
multiboot1_header:
    .long 0x1BADB002
    .long 0x00010003
    .long -(0x1BADB002 + 0x00010003)
    .long multiboot1_header
    .long __image_start
    .long __load_end
    .long __image_end
    .long _start32

    .balign 8
multiboot2_header:
    .long 0xE85250D6
    .long 0
    .long multiboot2_header_end - multiboot2_header
    .long -(0xE85250D6 + (multiboot2_header_end - multiboot2_header))
    /* end tag */
    .word 0
    .word 0
    .long 8
multiboot2_header_end:

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
    .global _start32
_start32:
    cli
    cld
    movl %eax, boot_magic
    movl %ebx, boot_info
    movl $boot_stack_top, %esp

    /* Zero the PML4 and PDPT; the page directories are written in full. */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $2048, %ecx
    rep stosl

    /* 2048 PD entries of 2 MiB: identity map of 0..4 GiB. */
    movl $boot_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
1:
    movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    /* PDPT[0..4] -> the four page directories. */
    movl $boot_pdpt, %edi
    movl $boot_pd + 3, %eax
    movl $4, %ecx
2:
    movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 2b

    movl $boot_pdpt + 3, %eax
    movl %eax, boot_pml4

    /* Long mode: PAE, CR3, EFER.LME|NXE, then paging. */
    movl %cr4, %eax
    orl ${cr4_pae}, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl ${msr_efer}, %ecx
    rdmsr
    orl ${efer_lme_nxe}, %eax
    wrmsr
    movl %cr0, %eax
    orl ${cr0_pg_wp_pe}, %eax
    andl ${cr0_not_cd_nw}, %eax
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $start64

    .global pvh_start32
pvh_start32:
    movl $0x336EC578, %eax
    jmp _start32

    .code64
start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl boot_magic, %edi
    movl boot_info, %esi
    call rxen_start64
3:
    cli
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
boot_gdt_end:
    .balign 4
    .word 0
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .data.boot, "aw"
    .balign 4
boot_magic:
    .long 0
boot_info:
    .long 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .global boot_stack_bottom
boot_stack_bottom:
    /* 128 KiB: the xz decoder state for a bzImage kernel is ~30 KiB. */
    .skip 131072
    .global boot_stack_top
boot_stack_top:
    "#,
    msr_efer = const crate::msr::MSR_EFER,
    cr4_pae = const crate::ctrlreg::cr4::PAE as u32,
    efer_lme_nxe = const (crate::ctrlreg::efer::LME | crate::ctrlreg::efer::NXE) as u32,
    cr0_pg_wp_pe = const (crate::ctrlreg::cr0::PG | crate::ctrlreg::cr0::WP | crate::ctrlreg::cr0::PE) as u32,
    cr0_not_cd_nw = const !(crate::ctrlreg::cr0::CD | crate::ctrlreg::cr0::NW) as u32,
    options(att_syntax)
);
