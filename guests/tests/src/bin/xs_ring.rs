//! xenstore over a domU's own ring (`public/io/xs_wire.h`): the guest finds its ring
//! page and event channel in `HVM_PARAM_STORE_PFN`/`HVM_PARAM_STORE_EVTCHN` (set by
//! the toolstack that built it), then writes and reads back `data/xs-ring/<i>`
//! (`XS_WRITE`, `XS_READ`; paths relative to its `/local/domain/<id>`) `ops=<n>` times
//! (default 200), each request waiting for its reply (blocking on the event channel),
//! checks every value, reads a node it may not (`/local/domain/0/name` is dom0's:
//! `EACCES` as an `XS_ERROR`), and prints the round trips per second.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::events::set_up_timer_events;
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xenstore::{Store, XS_ERROR, XS_READ, XS_WRITE};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

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
    let mut store = Store::connect();
    println!(
        "xs_ring: ring at gfn {:#x}, port {}; {ops} write+read round trips",
        store.pfn(),
        store.port()
    );
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
