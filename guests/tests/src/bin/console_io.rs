//! `HYPERVISOR_console_io`: writes (whole, empty, long), a bad pointer, reads, unknown
//! commands.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{console_write, hypercall};
use rxen_guest::xen::{consoleio, hypercall as nr};
use rxen_guest::{check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps (the runtime maps only the low 4 GiB).
const UNMAPPED: u64 = 0x10_0000_0000;

fn console_io(cmd: u64, len: u64, ptr: u64) -> i64 {
    // SAFETY: Xen validates `ptr`; the tests pass real buffers or unmapped addresses.
    unsafe { hypercall(nr::CONSOLE_IO, cmd, len, ptr, 0, 0) }
}

fn main(_si: &StartInfo) {
    // Xen returns 0 for a successful write, not the byte count.
    check_eq!(console_write(b"console_io: one line\n"), 0);
    check_eq!(console_write(b""), 0, "empty write");
    check_eq!(console_write(b"console_io: a line in "), 0);
    check_eq!(console_write(b"two writes\n"), 0);
    let mut long = [b'='; 1000];
    long[999] = b'\n';
    check_eq!(console_write(&long), 0, "1000-byte write");

    check_eq!(
        console_io(consoleio::WRITE, 16, UNMAPPED),
        err::EFAULT,
        "write from an unmapped buffer"
    );
    check_eq!(
        console_io(consoleio::WRITE, 16, 0xffff_8000_0000_0000),
        err::EFAULT,
        "write from a hypervisor-range address"
    );

    // Dom0 may read the console (nothing typed: 0 bytes).
    let mut buf = [0u8; 16];
    let rc = console_io(consoleio::READ, buf.len() as u64, buf.as_mut_ptr() as u64);
    println!("CONSOLEIO_read: {rc}");
    check_eq!(rc, 0, "read with no input");

    for cmd in [2u64, 3, 100] {
        check_eq!(console_io(cmd, 0, 0), err::ENOSYS, "unknown command {cmd}");
    }
}
