//! Per-CPU state of the hypervisor: each CPU's index, APIC ID, stacks, GDT and
//! TSS (with the IST stacks for double fault, NMI and machine check).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// Most CPUs rxen brings up.
pub const MAX_CPUS: usize = 64;
/// Kernel code selector in every GDT.
pub const KERNEL_CS: u16 = 0x08;
/// IST slot (1-based, as in the IDT gate) of the double-fault stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI stack.
pub const IST_NMI: u8 = 2;
/// IST slot of the machine-check stack.
pub const IST_MACHINE_CHECK: u8 = 3;
/// Size of each IST stack.
const IST_STACK_SIZE: usize = 16 * 1024;

/// APIC ID -> CPU index + 1 (0 = unknown).
static APIC_TO_INDEX: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];
/// Number of CPUs online.
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// Bit n set: CPU index n is online.
static ONLINE_MASK: AtomicU64 = AtomicU64::new(0);
/// APIC ID of each CPU index.
static INDEX_TO_APIC: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Bit n set: CPU index n was registered (is present).
static PRESENT_MASK: AtomicU64 = AtomicU64::new(0);
/// ACPI processor UID of each CPU index (from the MADT; the boot CPU's is
/// set when the MADT is read).
static INDEX_TO_ACPI: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Stack bounds of each CPU (low, high), for stack traces.
static STACK_BOUNDS: [(AtomicU64, AtomicU64); MAX_CPUS] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX_CPUS];

/// The initial APIC ID of the running CPU (CPUID leaf 1).
pub fn current_apic_id() -> u8 {
    let leaf = raw_cpuid::cpuid!(1);
    (leaf.ebx >> 24) as u8
}

/// Index of the running CPU (0 = the boot CPU); 0 before registration.
pub fn current_index() -> usize {
    let slot = APIC_TO_INDEX[current_apic_id() as usize].load(Ordering::Relaxed);
    slot.saturating_sub(1) as usize
}

/// Records that the CPU with `apic_id` has index `index` and runs on the
/// stack `[stack_low, stack_high)`.
pub fn register(index: usize, apic_id: u8, stack_low: u64, stack_high: u64) {
    if index < MAX_CPUS {
        APIC_TO_INDEX[apic_id as usize].store(index as u8 + 1, Ordering::Relaxed);
        INDEX_TO_APIC[index].store(apic_id, Ordering::Relaxed);
        STACK_BOUNDS[index].0.store(stack_low, Ordering::Relaxed);
        STACK_BOUNDS[index].1.store(stack_high, Ordering::Relaxed);
        PRESENT_MASK.fetch_or(1 << index, Ordering::AcqRel);
    }
}

/// Records the ACPI processor UID of CPU `index`.
pub fn set_acpi_id(index: usize, acpi_id: u32) {
    if let Some(slot) = INDEX_TO_ACPI.get(index) {
        slot.store(acpi_id, Ordering::Relaxed);
    }
}

/// A present CPU: (APIC ID, ACPI processor UID, online).
pub fn present(index: usize) -> Option<(u8, u32, bool)> {
    let bit = 1u64.checked_shl(u32::try_from(index).ok()?)?;
    if PRESENT_MASK.load(Ordering::Acquire) & bit == 0 {
        return None;
    }
    Some((
        INDEX_TO_APIC[index].load(Ordering::Relaxed),
        INDEX_TO_ACPI[index].load(Ordering::Relaxed),
        ONLINE_MASK.load(Ordering::Acquire) & bit != 0,
    ))
}

/// The highest CPU index present.
pub fn max_present() -> u32 {
    63u32.saturating_sub(PRESENT_MASK.load(Ordering::Acquire).leading_zeros())
}

/// The running CPU's stack bounds (low, high), or (0, 0) if unknown.
pub fn current_stack_bounds() -> (u64, u64) {
    let index = current_index();
    if index >= MAX_CPUS {
        return (0, 0);
    }
    (
        STACK_BOUNDS[index].0.load(Ordering::Relaxed),
        STACK_BOUNDS[index].1.load(Ordering::Relaxed),
    )
}

/// Marks the running CPU online and returns how many are online now.
pub fn mark_online() -> u32 {
    let index = current_index();
    if index < MAX_CPUS {
        ONLINE_MASK.fetch_or(1 << index, Ordering::AcqRel);
    }
    ONLINE.fetch_add(1, Ordering::AcqRel) + 1
}

/// (index, APIC ID) of every CPU online.
pub fn online_apic_ids() -> impl Iterator<Item = (usize, u8)> {
    let mask = ONLINE_MASK.load(Ordering::Acquire);
    (0..MAX_CPUS)
        .filter(move |index| mask & (1 << index) != 0)
        .map(|index| (index, INDEX_TO_APIC[index].load(Ordering::Relaxed)))
}

/// Number of CPUs online.
pub fn online_count() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

fn ist_stack_top() -> VirtAddr {
    let stack: &'static mut [u8] = Box::leak(alloc::vec![0u8; IST_STACK_SIZE].into_boxed_slice());
    VirtAddr::from_ptr(stack.as_ptr()) + IST_STACK_SIZE as u64
}

/// Builds this CPU's TSS and GDT, loads them with the shared IDT and
/// reloads the segment registers.
pub fn init_tables() {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[(IST_DOUBLE_FAULT - 1) as usize] = ist_stack_top();
    tss.interrupt_stack_table[(IST_NMI - 1) as usize] = ist_stack_top();
    tss.interrupt_stack_table[(IST_MACHINE_CHECK - 1) as usize] = ist_stack_top();
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));

    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, which is 'static;
    // the code selector is 64-bit ring 0 and the data selector writable.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_selector);
    }
    debug_assert_eq!(code.0, KERNEL_CS);
    #[cfg(target_os = "none")]
    crate::traps::load_idt();
}

/// Loads the breakpoint addresses DR0-DR3 of this CPU (a guest's, before it
/// enters with breakpoints enabled in its DR7; the hypervisor itself sets no
/// breakpoints and #VMEXIT disables all of them in the host's DR7).
pub fn load_debug_addresses(dr: &[u64; 4]) {
    // SAFETY: writing DR0-DR3 only changes breakpoint addresses; whether
    // they are armed is DR7's business, and the host's DR7 arms none.
    unsafe {
        core::arch::asm!(
            "mov dr0, {0}",
            "mov dr1, {1}",
            "mov dr2, {2}",
            "mov dr3, {3}",
            in(reg) dr[0], in(reg) dr[1], in(reg) dr[2], in(reg) dr[3],
            options(nomem, nostack, preserves_flags),
        );
    }
}

/// The TSC_AUX value each CPU holds (u64::MAX: unknown).
static TSC_AUX: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// Whether the CPU has MSR_TSC_AUX (RDTSCP or RDPID).
pub fn has_tsc_aux() -> bool {
    raw_cpuid::cpuid!(0x8000_0001).edx & (1 << 27) != 0
        || raw_cpuid::cpuid!(7, 0).ecx & (1 << 22) != 0
}

/// Makes this CPU's TSC_AUX `value` (a guest's, before VMRUN: VMRUN does
/// not switch it and the hypervisor does not use it), writing the MSR only
/// when it holds another value. The caller checked [`has_tsc_aux`].
pub fn load_tsc_aux(value: u32) {
    let Some(slot) = TSC_AUX.get(current_index()) else {
        return;
    };
    if slot.swap(u64::from(value), Ordering::Relaxed) != u64::from(value) {
        // SAFETY: the CPU has MSR_TSC_AUX (caller); any 32-bit value is valid.
        unsafe {
            x86_64::registers::model_specific::Msr::new(crate::msr::MSR_TSC_AUX)
                .write(u64::from(value))
        };
    }
}

/// The CPU's feature words in Xen's featureset order (1.EDX, 1.ECX,
/// 0x80000001.EDX, 0x80000001.ECX, 0xD.1.EAX, 7.0.EBX, 7.0.ECX,
/// 0x80000007.EDX), 0 where the leaf is missing.
pub fn featureset() -> [u32; 8] {
    let max = raw_cpuid::cpuid!(0).eax;
    let max_ext = raw_cpuid::cpuid!(0x8000_0000).eax;
    let basic = |leaf: u32, sub: u32| (max >= leaf).then(|| raw_cpuid::cpuid!(leaf, sub));
    let ext = |leaf: u32| (max_ext >= leaf).then(|| raw_cpuid::cpuid!(leaf, 0));
    let l1 = basic(1, 0);
    let e1 = ext(0x8000_0001);
    [
        l1.map_or(0, |r| r.edx),
        l1.map_or(0, |r| r.ecx),
        e1.map_or(0, |r| r.edx),
        e1.map_or(0, |r| r.ecx),
        basic(0xD, 1).map_or(0, |r| r.eax),
        basic(7, 0).map_or(0, |r| r.ebx),
        basic(7, 0).map_or(0, |r| r.ecx),
        ext(0x8000_0007).map_or(0, |r| r.edx),
    ]
}

/// Whether the CPU has 1 GiB pages (CPUID 0x80000001 EDX bit 26).
pub fn has_1g_pages() -> bool {
    raw_cpuid::cpuid!(0x8000_0000).eax >= 0x8000_0001
        && raw_cpuid::cpuid!(0x8000_0001).edx & (1 << 26) != 0
}

/// Physical address bits (CPUID 0x80000008 EAX[7:0]; 36 without the leaf).
pub fn phys_addr_bits() -> u8 {
    if raw_cpuid::cpuid!(0x8000_0000).eax >= 0x8000_0008 {
        (raw_cpuid::cpuid!(0x8000_0008).eax & 0xFF) as u8
    } else {
        36
    }
}
