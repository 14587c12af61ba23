//! Reads and writes outside the domain's RAM: guest-physical addresses that no RAM or
//! device backs read as all ones and writes there are dropped (Xen's "null" MMIO
//! handler). The hypervisor must survive; the guest checks the values.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::ptr::{read_volatile, write_volatile};

use rxen_guest::start_info::entry_at;
use rxen_guest::xen::{HvmMemmapEntry, E820_RAM};
use rxen_guest::{check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    let mut map = [HvmMemmapEntry::default(); 64];
    let n = match rxen_guest::hypercall::memory_map(&mut map) {
        Ok(n) => n,
        Err(rc) => error!("memory_map: {rc}"),
    };
    let map = &map[..n];
    // 256 MiB and 384 MiB: beyond dom0's 64 MiB of RAM, inside QEMU's 512 MiB (so host
    // RAM, but not this domain's), not RAM in the domain's map.
    for addr in [0x1000_0000u64, 0x1800_0000] {
        let kind = entry_at(map, addr).map(|e| e.type_);
        println!("probing {addr:#x} (e820 type {kind:?})");
        if kind == Some(E820_RAM) {
            error!("{addr:#x} is RAM in the domain's map");
        }
        let p = addr as *mut u32;
        // SAFETY: identity-mapped guest-physical address outside our RAM: the access
        // goes to the hypervisor, which emulates it.
        let before = unsafe { read_volatile(p) };
        // SAFETY: as above.
        unsafe { write_volatile(p, 0x1234_5678) };
        // SAFETY: as above.
        let after = unsafe { read_volatile(p) };
        // SAFETY: as above (a 1-byte access).
        let byte = unsafe { read_volatile((addr + 3) as *const u8) };
        println!("  read {before:#x}, after write {after:#x}, byte {byte:#x}");
        check_eq!(before, 0xffff_ffff, "unbacked read at {addr:#x}");
        check_eq!(after, 0xffff_ffff, "write dropped at {addr:#x}");
        check_eq!(byte, 0xff);
    }
}
