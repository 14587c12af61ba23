//! xenstore over a domU's own ring (`public/io/xs_wire.h`): the guest finds its ring
//! page and event channel in `HVM_PARAM_STORE_PFN`/`HVM_PARAM_STORE_EVTCHN` (set by
//! the toolstack that built it), then writes and reads back `data/xs-ring/<i>`
//! (`XS_WRITE`, `XS_READ`; paths relative to its `/local/domain/<id>`) `ops=<n>` times
//! (default 200), each request waiting for its reply (blocking on the event channel),
//! checks every value, reads a node it may not (`/local/domain/0/name` is dom0's:
//! `EACCES` as an `XS_ERROR`), and prints the round trips per second.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU32, Ordering};

use rxen_guest::events::{block_once, send, set_up_timer_events};
use rxen_guest::hypercall::hvm_get_param;
use rxen_guest::time::{map_shared_info, now, set_singleshot_timer};
use rxen_guest::xen::hvm;
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

/// `struct xenstore_domain_interface`: `req[1024]`, `rsp[1024]`, then `req_cons`,
/// `req_prod`, `rsp_cons`, `rsp_prod`.
const RING: u32 = 1024;
const RSP: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;
/// `XS_READ`, `XS_WRITE`, `XS_ERROR`.
const XS_READ: u32 = 2;
const XS_WRITE: u32 = 11;
const XS_ERROR: u32 = 16;

struct Store {
    base: *mut u8,
    port: u32,
    next_id: u32,
}

impl Store {
    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: an aligned index word of the mapped ring page, shared with the
        // daemon: atomic accesses only.
        unsafe { AtomicU32::from_ptr(self.base.add(at).cast()) }
    }

    /// Waits (blocking on events, 1 ms at most each time) until `done`, or errors
    /// out after 10 s.
    fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = now() + 10_000_000_000;
        while !done(self) {
            if now() > deadline {
                error!("xenstore: no {what} within 10 s");
            }
            set_singleshot_timer(now() + 1_000_000);
            block_once();
        }
    }

    /// Sends one request (`ty`, `payload`) and copies its reply into `reply`;
    /// the reply's type and length.
    fn request(&mut self, ty: u32, payload: &[u8], reply: &mut [u8]) -> (u32, usize) {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = [0u8; 16];
        for (i, v) in [ty, id, 0, payload.len() as u32].iter().enumerate() {
            msg[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        for bytes in [&msg[..], payload] {
            for &b in bytes {
                self.wait("room in the request ring", |s| {
                    s.index(REQ_PROD)
                        .load(Ordering::Relaxed)
                        .wrapping_sub(s.index(REQ_CONS).load(Ordering::Acquire))
                        < RING
                });
                let prod = self.index(REQ_PROD).load(Ordering::Relaxed);
                // SAFETY: inside the ring page's `req` array.
                unsafe { self.base.add((prod % RING) as usize).write_volatile(b) };
                self.index(REQ_PROD)
                    .store(prod.wrapping_add(1), Ordering::Release);
            }
        }
        send(self.port);
        // The reply: a header, then its payload.
        let mut header = [0u8; 16];
        self.read(&mut header);
        let word = |i: usize| u32::from_le_bytes(header[4 * i..4 * i + 4].try_into().unwrap());
        let (rty, rid, len) = (word(0), word(1), word(3) as usize);
        check_eq!(rid, id, "the reply's request id");
        if len > reply.len() {
            error!("xenstore: a reply of {len} bytes");
        }
        self.read(&mut reply[..len]);
        (rty, len)
    }

    /// Takes `out.len()` bytes of the response ring, waiting for them.
    fn read(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            self.wait("reply", |s| {
                s.index(RSP_PROD).load(Ordering::Acquire)
                    != s.index(RSP_CONS).load(Ordering::Relaxed)
            });
            let cons = self.index(RSP_CONS).load(Ordering::Relaxed);
            // SAFETY: inside the ring page's `rsp` array.
            *b = unsafe { self.base.add(RSP + (cons % RING) as usize).read_volatile() };
            self.index(RSP_CONS)
                .store(cons.wrapping_add(1), Ordering::Release);
        }
        send(self.port);
    }
}

/// `prefix` then the decimal `n` into `buf`; the length.
fn numbered(buf: &mut [u8], prefix: &[u8], n: u64) -> usize {
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    prefix.len() + len
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    set_up_timer_events();
    let ops = si.arg_u64("ops").unwrap_or(200);
    let (Ok(pfn), Ok(port)) = (
        hvm_get_param(hvm::PARAM_STORE_PFN),
        hvm_get_param(hvm::PARAM_STORE_EVTCHN),
    ) else {
        error!("no xenstore params");
    };
    if pfn == 0 || pfn >= 1 << 20 {
        error!("xenstore page {pfn:#x}: none, or beyond the identity map");
    }
    if rxen_guest::events::unmask(port as u32) != 0 {
        error!("cannot unmask the xenstore port");
    }
    println!("xs_ring: ring at gfn {pfn:#x}, port {port}; {ops} write+read round trips");
    let mut store = Store {
        base: (pfn * 4096) as *mut u8,
        port: port as u32,
        next_id: 1,
    };
    let mut reply = [0u8; 256];
    let start = now();
    for i in 0..ops {
        let mut req = [0u8; 80];
        let path_len = numbered(&mut req, b"data/xs-ring/", i % 16);
        req[path_len] = 0;
        let value_len = numbered(&mut req[path_len + 1..], b"value-", i);
        let (ty, len) = store.request(XS_WRITE, &req[..path_len + 1 + value_len], &mut reply);
        check_eq!(
            (ty, &reply[..len]),
            (XS_WRITE, &b"OK\0"[..]),
            "XS_WRITE {i}"
        );
        let (ty, len) = store.request(XS_READ, &req[..path_len + 1], &mut reply);
        check!(
            ty == XS_READ && reply[..len] == req[path_len + 1..path_len + 1 + value_len],
            "XS_READ {i} gave back what was written"
        );
    }
    let ns = now() - start;
    let (ty, len) = store.request(XS_READ, b"/local/domain/0/name\0", &mut reply);
    check_eq!(
        (ty, &reply[..len]),
        (XS_ERROR, &b"EACCES\0"[..]),
        "dom0's node is not ours"
    );
    println!(
        "xs_ring: {ops} round trips in {} ms: {} write+read per second",
        ns / 1_000_000,
        ops * 1_000_000_000 / ns.max(1)
    );
}
