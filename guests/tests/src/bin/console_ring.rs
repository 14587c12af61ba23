//! The PV console ring of a domU (`public/io/console.h`): the guest finds its ring
//! page and event channel in `HVM_PARAM_CONSOLE_PFN` and `HVM_PARAM_CONSOLE_EVTCHN`
//! (set by whoever built it: rxen for a boot-time domU, the toolstack for one dom0
//! created), writes `lines=<n>` numbered lines (default 50, several times the ring's
//! 2 KiB, so the backend must keep consuming) with flow control, notifying the
//! backend after each, and checks that the backend consumed everything within
//! `wait_ms` (default 10000). The backend (rxen's own, or rxenconsoled in dom0)
//! shows the lines; the test's result goes out through console_io. With `echo=1` it
//! then waits (same deadline) for a line typed on its console (the input ring) and
//! says it back, on the ring and through console_io.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU32, Ordering};

use rxen_guest::events::send;
use rxen_guest::hypercall::hvm_get_param;
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::hvm;
use rxen_guest::{check, error, println, StartInfo};

rxen_guest::entry!(main);

/// `struct xencons_interface`: `in[1024]`, `out[2048]`, then `in_cons`, `in_prod`,
/// `out_cons`, `out_prod`.
const IN_SIZE: u32 = 1024;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3072 + 4;
const OUT: usize = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_CONS: usize = 3072 + 8;
const OUT_PROD: usize = 3072 + 12;

struct Ring {
    base: *mut u8,
    port: u32,
}

impl Ring {
    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: an aligned index word of the mapped ring page, shared with the
        // backend: atomic accesses only.
        unsafe { AtomicU32::from_ptr(self.base.add(at).cast()) }
    }

    /// Writes `bytes`, waiting for room until `deadline`; false on time-out.
    fn write(&self, bytes: &[u8], deadline: u64) -> bool {
        let mut prod = self.index(OUT_PROD).load(Ordering::Relaxed);
        for &b in bytes {
            while prod.wrapping_sub(self.index(OUT_CONS).load(Ordering::Acquire)) >= OUT_SIZE {
                if now() > deadline {
                    return false;
                }
                send(self.port);
                core::hint::spin_loop();
            }
            // SAFETY: inside the ring's `out` array of the mapped page.
            unsafe {
                self.base
                    .add(OUT + (prod % OUT_SIZE) as usize)
                    .write_volatile(b)
            };
            prod = prod.wrapping_add(1);
        }
        self.index(OUT_PROD).store(prod, Ordering::Release);
        send(self.port);
        true
    }
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    let lines = si.arg_u64("lines").unwrap_or(50);
    let wait = si.arg_u64("wait_ms").unwrap_or(10_000) * 1_000_000;
    let (Ok(pfn), Ok(port)) = (
        hvm_get_param(hvm::PARAM_CONSOLE_PFN),
        hvm_get_param(hvm::PARAM_CONSOLE_EVTCHN),
    ) else {
        error!("no console params");
    };
    if pfn == 0 || pfn >= 1 << 20 {
        error!("console page {pfn:#x}: none, or beyond the identity map");
    }
    println!("console_ring: ring at gfn {pfn:#x}, port {port}; writing {lines} lines");
    let ring = Ring {
        base: (pfn * 4096) as *mut u8,
        port: port as u32,
    };
    let deadline = now() + wait;
    let mut text = [0u8; 64];
    for i in 1..=lines {
        let mut w = Cursor(&mut text, 0);
        let _ = core::fmt::write(&mut w, format_args!("console_ring: line {i} of {lines}\n"));
        let len = w.1;
        if !ring.write(&text[..len], deadline) {
            error!("the backend stopped consuming at line {i}");
        }
    }
    // Everything consumed within the time.
    while ring.index(OUT_CONS).load(Ordering::Acquire)
        != ring.index(OUT_PROD).load(Ordering::Relaxed)
    {
        if now() > deadline {
            break;
        }
        core::hint::spin_loop();
    }
    check!(
        ring.index(OUT_CONS).load(Ordering::Acquire)
            == ring.index(OUT_PROD).load(Ordering::Relaxed),
        "the backend consumed every byte"
    );
    println!("console_ring: {lines} lines consumed by the backend");
    if si.arg_u64("echo") == Some(1) {
        echo(&ring, deadline);
    }
}

/// Reads a line typed on the console (the input ring) and says it back, on the
/// ring and through console_io.
fn echo(ring: &Ring, deadline: u64) {
    let _ = ring.write(b"console_ring: type a line\n", deadline);
    let mut line = [0u8; 64];
    let mut len = 0;
    loop {
        let prod = ring.index(IN_PROD).load(Ordering::Acquire);
        let mut cons = ring.index(IN_CONS).load(Ordering::Relaxed);
        // A backend more than a ring ahead is not believed.
        if prod.wrapping_sub(cons) > IN_SIZE {
            error!("the backend's input index is {prod}, consumer at {cons}");
        }
        while cons != prod {
            // SAFETY: inside the mapped ring page's `in` array.
            let b = unsafe { ring.base.add((cons % IN_SIZE) as usize).read_volatile() };
            cons = cons.wrapping_add(1);
            if b == b'\n' || b == b'\r' {
                ring.index(IN_CONS).store(cons, Ordering::Release);
                let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
                println!("console_ring: got {text}");
                let _ = ring.write(b"console_ring: you typed ", deadline);
                let _ = ring.write(&line[..len], deadline);
                let _ = ring.write(b"\n", deadline);
                return;
            }
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
        ring.index(IN_CONS).store(cons, Ordering::Release);
        if now() > deadline {
            error!("no line typed on the console");
        }
        core::hint::spin_loop();
    }
}

/// A `fmt::Write` into a byte buffer (position in `.1`).
struct Cursor<'a>(&'a mut [u8], usize);

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.1 + s.len();
        self.0
            .get_mut(self.1..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}
