//! `HYPERVISOR_xen_version`: every sub-op, as the real Xen 4.17 answers a PVH dom0.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::console::c_str;
use rxen_guest::hypercall::{mut_ptr, xen_version};
use rxen_guest::xen::{xenfeat, xenver, CompileInfo, FeatureInfo};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// Returns the call's result, printing it.
fn call(cmd: u64, arg: u64) -> i64 {
    // SAFETY: every caller passes a buffer of the size `cmd` needs (or 0).
    unsafe { xen_version(cmd, arg) }
}

fn main(_si: &StartInfo) {
    let v = call(xenver::VERSION, 0);
    println!("XENVER_version: {:#x}", v);
    check_eq!(v, 0x0004_0011, "Xen 4.17");
    check_eq!(
        v as u32,
        rxen_guest::abi::version::xen_version_word(),
        "rxen_abi version word"
    );

    let mut extra = [0u8; xenver::EXTRAVERSION_LEN];
    check_eq!(call(xenver::EXTRAVERSION, mut_ptr(&mut extra)), 0);
    println!("XENVER_extraversion: '{}'", c_str(&extra));
    check!(extra.contains(&0), "extraversion is NUL-terminated");
    // Xen's extraversion starts with '.' ("4.17" + ".7-..."); rxen's may be anything
    // printable.
    check!(
        c_str(&extra).bytes().all(|b| b.is_ascii_graphic()),
        "extraversion is printable"
    );

    let mut ci = CompileInfo {
        compiler: [0; 64],
        compile_by: [0; 16],
        compile_domain: [0; 32],
        compile_date: [0; 32],
    };
    check_eq!(call(xenver::COMPILE_INFO, mut_ptr(&mut ci)), 0);
    println!(
        "XENVER_compile_info: compiler '{}' by '{}' domain '{}' date '{}'",
        c_str(&ci.compiler),
        c_str(&ci.compile_by),
        c_str(&ci.compile_domain),
        c_str(&ci.compile_date)
    );
    check!(ci.compiler.contains(&0) && ci.compile_by.contains(&0));
    check!(ci.compile_domain.contains(&0) && ci.compile_date.contains(&0));
    check!(!c_str(&ci.compiler).is_empty(), "compiler is named");

    let mut caps = [0u8; xenver::CAPABILITIES_LEN];
    check_eq!(call(xenver::CAPABILITIES, mut_ptr(&mut caps)), 0);
    let caps_s = c_str(&caps);
    println!("XENVER_capabilities: '{caps_s}'");
    check!(
        caps_s.split(' ').any(|c| c == "hvm-3.0-x86_64"),
        "capabilities '{caps_s}' lists hvm-3.0-x86_64"
    );

    let mut cs = [0u8; xenver::CHANGESET_LEN];
    check_eq!(call(xenver::CHANGESET, mut_ptr(&mut cs)), 0);
    println!("XENVER_changeset: '{}'", c_str(&cs));
    // Debian's Xen 4.17 reports an empty changeset.
    check!(cs.contains(&0), "changeset is a NUL-terminated string");

    let mut virt_start = 0xdead_beefu64;
    check_eq!(
        call(xenver::PLATFORM_PARAMETERS, mut_ptr(&mut virt_start)),
        0
    );
    println!("XENVER_platform_parameters: virt_start {virt_start:#x}");
    // Xen 4.17 gives every 64-bit guest HYPERVISOR_VIRT_START (0xffff800000000000),
    // even an HVM one that has no use for it.
    check_eq!(virt_start, 0xffff_8000_0000_0000, "virt_start");

    let mut fi = FeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    check_eq!(call(xenver::GET_FEATURES, mut_ptr(&mut fi)), 0);
    println!("XENVER_get_features[0]: {:#x}", fi.submap);
    check_eq!(fi.submap, EXPECTED_FEATURES, "feature submap 0");
    for bit in [
        xenfeat::WRITABLE_PAGE_TABLES,
        xenfeat::AUTO_TRANSLATED_PHYSMAP,
        xenfeat::HVM_CALLBACK_VECTOR,
        xenfeat::HVM_SAFE_PVCLOCK,
        xenfeat::DOM0,
    ] {
        check!(fi.submap & (1 << bit) != 0, "feature bit {bit} set");
    }
    for bit in [
        xenfeat::WRITABLE_DESCRIPTOR_TABLES,
        xenfeat::SUPERVISOR_MODE_KERNEL,
        xenfeat::MMU_PT_UPDATE_PRESERVE_AD,
        xenfeat::HIGHMEM_ASSIST,
        xenfeat::GNTTAB_MAP_AVAIL_BITS,
    ] {
        check!(
            fi.submap & (1 << bit) == 0,
            "PV-only feature bit {bit} clear"
        );
    }
    // Xen 4.17 has only submap 0 (XENFEAT_NR_SUBMAPS = 1): submap 1 is -EINVAL, not an
    // empty map.
    let mut fi1 = FeatureInfo {
        submap_idx: 1,
        submap: 0x1234,
    };
    check_eq!(
        call(xenver::GET_FEATURES, mut_ptr(&mut fi1)),
        err::EINVAL,
        "submap 1"
    );
    check_eq!(fi1.submap, 0x1234, "submap untouched on error");
    let mut fi_bad = FeatureInfo {
        submap_idx: 1000,
        submap: 0,
    };
    check_eq!(
        call(xenver::GET_FEATURES, mut_ptr(&mut fi_bad)),
        err::EINVAL,
        "feature submap 1000"
    );

    check_eq!(call(xenver::PAGESIZE, 0), 4096);

    let mut handle = [0xffu8; 16];
    check_eq!(call(xenver::GUEST_HANDLE, mut_ptr(&mut handle)), 0);
    check_eq!(handle, [0u8; 16], "dom0's handle is all zeros");

    let mut cmdline = [0u8; xenver::COMMANDLINE_LEN];
    let rc = call(xenver::COMMANDLINE, mut_ptr(&mut cmdline));
    println!("XENVER_commandline: {rc} '{}'", c_str(&cmdline));
    check_eq!(rc, 0, "dom0 may read the hypervisor command line");
    check!(
        c_str(&cmdline).contains("dom0_mem=64M"),
        "the hypervisor command line has dom0_mem=64M"
    );

    // XENVER_build_id with a 0-length buffer: Xen answers -EINVAL when the buffer is
    // too small (or -ENODATA without a build id).
    let mut bid = [0u32; 2];
    let rc = call(xenver::BUILD_ID, mut_ptr(&mut bid));
    println!("XENVER_build_id(len 0): {rc}");
    check!(rc < 0, "build_id into a 0-byte buffer fails");

    // Unknown sub-ops.
    for cmd in [11u64, 12, 100, 0x8000_0000, u64::MAX] {
        check_eq!(call(cmd, 0), err::ENOSYS, "unknown sub-op {cmd:#x}");
    }
}

/// Feature submap 0 Xen 4.17 reports to a PVH dom0 on AMD with HAP (0x12b05), measured:
/// note `not_direct_mapped` (bit 16) and `memory_op_vnode_supported` (bit 13).
const EXPECTED_FEATURES: u32 = (1 << xenfeat::WRITABLE_PAGE_TABLES)
    | (1 << xenfeat::AUTO_TRANSLATED_PHYSMAP)
    | (1 << xenfeat::HVM_CALLBACK_VECTOR)
    | (1 << xenfeat::HVM_SAFE_PVCLOCK)
    | (1 << xenfeat::DOM0)
    | (1 << xenfeat::MEMORY_OP_VNODE_SUPPORTED)
    | (1 << xenfeat::NOT_DIRECT_MAPPED);
