//! Xen's CPUID leaves as a PVH dom0 sees them: signature, version, hypercall page leaf,
//! the HVM leaf (vCPU id and domid), and a CPU without SVM.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::cpuid::{
    XEN_HVM_CPUID_DOMID_PRESENT as DOMID_PRESENT, XEN_HVM_CPUID_VCPU_ID_PRESENT as VCPU_ID_PRESENT,
};
use rxen_guest::cpu::{cpuid, signature, xen_cpuid_base};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    let Some(base) = xen_cpuid_base() else {
        error!("no Xen CPUID leaves");
    };
    // Dom0 has no Viridian leaves in front: Xen's leaves are at 0x40000000.
    check_eq!(base, 0x4000_0000, "Xen leaves base");
    let l0 = cpuid(base, 0);
    println!(
        "leaf {base:#x}: max {:#x} '{}'",
        l0.eax,
        core::str::from_utf8(&signature(&l0)).unwrap_or("?")
    );
    check_eq!(&signature(&l0), b"XenVMMXenVMM");
    // Xen 4.17 has leaves base+1..base+5.
    check_eq!(l0.eax, base + 5, "max Xen leaf");

    let l1 = cpuid(base + 1, 0);
    println!("leaf +1: {:x?}", l1);
    check_eq!(l1.eax, 0x0004_0011, "version 4.17 in EAX");

    let l2 = cpuid(base + 2, 0);
    println!("leaf +2: {:x?}", l2);
    check_eq!(l2.eax, 1, "one hypercall page");
    check_eq!(l2.ebx, 0x4000_0000, "hypercall page MSR");

    let l3 = cpuid(base + 3, 0);
    let l3_2 = cpuid(base + 3, 2);
    println!("leaf +3.0: {:x?} +3.2: {:x?}", l3, l3_2);
    check!(
        l3_2.eax != 0,
        "leaf +3 sub-leaf 2 gives the TSC frequency in kHz"
    );

    let l4 = cpuid(base + 4, 0);
    println!("leaf +4: {:x?}", l4);
    // Xen 4.17 on this platform: 0x5c = IOMMU mappings (4), vCPU id (8), domid (0x10),
    // upcall vector (0x40); no APIC/x2APIC access virtualization (QEMU has no AVIC).
    // Bit 2 (IOMMU mappings) says whether an IOMMU backs foreign mappings: set by Xen
    // with the emulated IOMMU its PVH dom0 needs, clear on a hypervisor without one.
    // Every other flag must be exactly Xen's.
    check_eq!(l4.eax & 0x78, 0x58, "HVM leaf flags");
    check!(l4.eax & VCPU_ID_PRESENT != 0, "vCPU id present");
    check_eq!(l4.ebx, 0, "vCPU id 0");
    check!(l4.eax & DOMID_PRESENT != 0, "domid present");
    check_eq!(l4.ecx, 0, "domid 0");

    let l5 = cpuid(base + 5, 0);
    println!("leaf +5: {:x?}", l5);

    // The guest does not see SVM (nested virtualization is off).
    let ext = cpuid(0x8000_0001, 0);
    check_eq!(ext.ecx & (1 << 2), 0, "SVM hidden in 0x80000001 ECX");
    // The hypervisor-present bit is set.
    let std1 = cpuid(1, 0);
    check!(std1.ecx & (1 << 31) != 0, "CPUID.1:ECX.hypervisor set");
    // No leaves past base+5 pretending to be Xen's.
    let next = cpuid(base + 0x100, 0);
    check!(
        &signature(&next) != b"XenVMMXenVMM",
        "only one set of Xen leaves"
    );
}
