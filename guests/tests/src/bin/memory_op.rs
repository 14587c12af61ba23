//! `HYPERVISOR_memory_op`: memory_map (truncation, bad buffer), reservations of
//! DOMID_SELF (increase_reservation: frames counted, none given to a translated
//! domain; bad orders and lists), maximum_ram_page, maximum_gpfn, add_to_physmap
//! errors, unknown sub-ops.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{memory_op, mut_ptr, ptr};
use rxen_guest::xen::{
    memory, AddToPhysmap, E820Entry, HvmMemmapEntry, MemoryMap, MemoryReservation,
};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: Xen validates the pointers; the tests pass real buffers or unmapped ones.
    unsafe { memory_op(cmd, arg) }
}

fn memory_map(buf: &mut [E820Entry], nr: u32) -> (i64, u32) {
    let mut mm = MemoryMap {
        nr_entries: nr,
        _pad0: [0; 4],
        buffer: buf.as_mut_ptr() as u64,
    };
    let rc = op(memory::MEMORY_MAP, mut_ptr(&mut mm));
    (rc, mm.nr_entries)
}

fn main(_si: &StartInfo) {
    let mut raw = [E820Entry::default(); 128];
    let (rc, n) = memory_map(&mut raw, 128);
    check_eq!(rc, 0, "memory_map");
    check!((2..128).contains(&n), "{n} entries");
    let n = n as usize;
    let mut map = [HvmMemmapEntry::default(); 128];
    for (m, r) in map.iter_mut().zip(&raw[..n]) {
        *m = (*r).into();
    }
    let ram_pages: u64 = rxen_guest::start_info::ram_bytes(&map[..n]) / 4096;
    let top_ram = map[..n]
        .iter()
        .filter(|e| e.type_ == 1)
        .map(|e| e.addr + e.size)
        .max()
        .unwrap_or(0);
    for w in map[..n].windows(2) {
        check!(
            w[0].addr + w[0].size <= w[1].addr,
            "entries sorted, no overlap: {:x?}",
            w
        );
    }

    // A short buffer gets the first entries; nr_entries says how many.
    let mut short = [E820Entry::default(); 3];
    let (rc, got) = memory_map(&mut short, 2);
    check_eq!((rc, got), (0, 2), "memory_map into 2 entries");
    check_eq!(&short[..2], &raw[..2]);
    check_eq!(
        short[2],
        E820Entry::default(),
        "nothing written past 2 entries"
    );
    let (rc, got) = memory_map(&mut short, 0);
    check_eq!((rc, got), (0, 0), "memory_map into 0 entries");
    check_eq!(
        op(memory::MEMORY_MAP, UNMAPPED),
        err::EFAULT,
        "bad xen_memory_map"
    );
    let mut bad = MemoryMap {
        nr_entries: 16,
        _pad0: [0; 4],
        buffer: UNMAPPED,
    };
    check_eq!(
        op(memory::MEMORY_MAP, mut_ptr(&mut bad)),
        err::EFAULT,
        "bad buffer"
    );

    let me = memory::DOMID_SELF;
    let cur = op(memory::CURRENT_RESERVATION, ptr(&me));
    let max = op(memory::MAXIMUM_RESERVATION, ptr(&me));
    println!("reservation: current {cur} max {max} pages; e820 RAM {ram_pages} pages");
    // dom0_mem=64M: about 16384 pages, minus what Xen set aside for dom0's paging.
    check!(
        (14_000..=16_384).contains(&cur),
        "current reservation {cur}"
    );
    check!(max >= cur, "max {max} >= current {cur}");
    check!(
        cur as u64 >= ram_pages,
        "current {cur} covers the e820 RAM {ram_pages}"
    );
    check_eq!(
        op(memory::CURRENT_RESERVATION, UNMAPPED),
        err::EFAULT,
        "bad domid pointer"
    );
    let nobody: u16 = 1234;
    check_eq!(
        op(memory::CURRENT_RESERVATION, ptr(&nobody)),
        err::ESRCH,
        "no such domain"
    );

    // increase_reservation (as Xen's for a translated domain): four frames are
    // allocated to us and counted, but not mapped anywhere, and the list gets no
    // frame numbers; dom0 has no maximum but the ABI's (dom0_mem= has no max:).
    check_eq!(max, u32::MAX as i64, "dom0's maximum reservation");
    let mut list = [0x5a5a_5a5a_u64; 4];
    let grow = |nr: u64, order: u32, list: u64| {
        let r = MemoryReservation {
            extent_start: list,
            nr_extents: nr,
            extent_order: order,
            mem_flags: 0,
            domid: me,
            _pad0: [0; 6],
        };
        op(memory::INCREASE_RESERVATION, ptr(&r))
    };
    check_eq!(
        grow(4, 0, list.as_mut_ptr() as u64),
        4,
        "increase by 4 pages"
    );
    check_eq!(
        list,
        [0x5a5a_5a5a; 4],
        "no frame numbers for a translated domain"
    );
    let after = op(memory::CURRENT_RESERVATION, ptr(&me));
    check_eq!(after, cur + 4, "the 4 pages count in the reservation");
    // A null list is fine, and so is one nowhere mapped: for a translated domain
    // Xen neither checks nor writes it. An order above the limit gets nothing done.
    check_eq!(grow(1, 0, 0), 1, "increase with a null list");
    check_eq!(grow(2, 0, UNMAPPED), 2, "increase with an unmapped list");
    check_eq!(grow(1, 30, 0), 0, "order 30");
    check_eq!(op(memory::CURRENT_RESERVATION, ptr(&me)), cur + 7);

    let max_ram = op(memory::MAXIMUM_RAM_PAGE, 0);
    println!("maximum_ram_page: {max_ram:#x}");
    // The host's highest RAM frame: QEMU has 512 MiB.
    check!(
        (0x1_0000..=0x4_0000).contains(&max_ram),
        "maximum_ram_page {max_ram:#x} is about 512 MiB worth of frames"
    );

    let gpfn = op(memory::MAXIMUM_GPFN, ptr(&me));
    println!("maximum_gpfn: {gpfn:#x}; top of RAM {top_ram:#x}");
    check!(gpfn as u64 >= (top_ram >> 12) - 1, "max gpfn covers RAM");

    let bad_space = AddToPhysmap {
        domid: me,
        size: 0,
        space: 100,
        idx: 0,
        gpfn: 0x8000,
    };
    let rc = op(memory::ADD_TO_PHYSMAP, ptr(&bad_space));
    println!("add_to_physmap(space 100): {rc}");
    check_eq!(rc, err::EINVAL, "unknown map space");
    check_eq!(
        op(memory::ADD_TO_PHYSMAP, UNMAPPED),
        err::EFAULT,
        "bad xatp pointer"
    );

    for cmd in [30u64, 1000, 0xffff] {
        check_eq!(op(cmd, 0), err::ENOSYS, "unknown sub-op {cmd}");
    }
}
