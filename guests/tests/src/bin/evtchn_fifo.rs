//! The FIFO event channel ABI: `EVTCHNOP_init_control` for vCPU 0 with the control
//! block in a static page, `EVTCHNOP_expand_array` with five static pages (ports up to
//! 5119), more than 4096 IPI ports bound to vCPU 0, and events sent on ports of
//! different priorities (`EVTCHNOP_set_priority`) with interrupts off, which the
//! runtime's FIFO upcall handler must then take in priority order (FIFO within a
//! priority). Also: masked ports stay pending until `EVTCHNOP_unmask`, a port sent
//! again after it was taken is queued again, and Xen's errnos for bad arguments.
//!
//! Xen 4.17's answers (`common/event_fifo.c`, `common/event_channel.c`) are next to
//! each check.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::event_channel as ec;
use rxen_guest::cpu::{cli, interrupt_window};
use rxen_guest::events::{
    bind_ipi, delivered, delivered_count, enable_callback_vector, event_word, expand_array,
    init_control, send, set_priority, unmask, upcalls,
};
use rxen_guest::time::map_shared_info;
use rxen_guest::{check, check_eq, err, error, println, StartInfo};

rxen_guest::entry!(main);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The control block's page.
static mut CONTROL: Page = Page([0; 4096]);
/// Event-array pages: 5 * 1024 event words.
const ARRAY_PAGES: usize = 5;
static mut ARRAY: [Page; ARRAY_PAGES] = [const { Page([0; 4096]) }; ARRAY_PAGES];

/// The highest port bound (ports 1..=LAST_PORT are IPIs of vCPU 0).
const LAST_PORT: u32 = 4500;
/// A frame far above any RAM of the test machines.
const NOT_RAM_GFN: u64 = 0x7ff_ffff;

const MASKED: u32 = 1 << ec::EVTCHN_FIFO_MASKED;
const PENDING: u32 = 1 << ec::EVTCHN_FIFO_PENDING;
const LINKED: u32 = 1 << ec::EVTCHN_FIFO_LINKED;

fn gfn_of<T>(p: *const T) -> u64 {
    p as u64 >> 12
}

/// Opens an interrupt window and returns the ports delivered since `from`.
fn take_events(from: u32) -> ([u32; 16], usize) {
    interrupt_window();
    let mut ports = [0; 16];
    let mut n = 0;
    while let Some(port) = delivered(from + n as u32) {
        if n == ports.len() {
            break;
        }
        ports[n] = port;
        n += 1;
    }
    (ports, n)
}

fn main(_si: &StartInfo) {
    cli();
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    check_eq!(enable_callback_vector(), 0, "HVM_PARAM_CALLBACK_IRQ vector");
    let control = gfn_of(&raw const CONTROL);
    let array = gfn_of(&raw const ARRAY);

    // 2-level still: no array to expand (Xen: -EOPNOTSUPP without FIFO state), no
    // priorities (Xen: the 2-level port ops have no set_priority: -ENOSYS).
    let first = match bind_ipi(0) {
        Ok(p) => p,
        Err(e) => error!("EVTCHNOP_bind_ipi: {e}"),
    };
    check_eq!(first, 1, "the first port");
    check_eq!(
        expand_array(array),
        err::EOPNOTSUPP,
        "expand_array before init_control"
    );
    check_eq!(set_priority(first, 3), err::ENOSYS, "set_priority, 2-level");

    // init_control: bad vCPU (-ENOENT), a block crossing the page end or unaligned
    // (-EINVAL), a frame that is not RAM (-EINVAL).
    check_eq!(init_control(control, 0, 99), Err(err::ENOENT), "vcpu 99");
    check_eq!(
        init_control(control, 4094, 0),
        Err(err::EINVAL),
        "offset 4094"
    );
    check_eq!(init_control(control, 4, 0), Err(err::EINVAL), "offset 4");
    check_eq!(
        init_control(NOT_RAM_GFN, 0, 0),
        Err(err::EINVAL),
        "control block not in RAM"
    );
    check_eq!(
        init_control(control, 0, 0),
        Ok(17),
        "init_control: link bits"
    );
    check_eq!(
        init_control(control, 0, 0),
        Err(err::EINVAL),
        "init_control twice"
    );

    // expand_array: not RAM (-EINVAL), then five pages.
    check_eq!(
        expand_array(NOT_RAM_GFN),
        err::EINVAL,
        "expand_array not in RAM"
    );
    for page in 0..ARRAY_PAGES as u64 {
        check_eq!(expand_array(array + page), 0, "expand_array page {page}");
    }

    // More ports than the 2-level ABI has.
    let mut last = first;
    while last < LAST_PORT {
        match bind_ipi(0) {
            Ok(p) => last = p,
            Err(e) => error!("EVTCHNOP_bind_ipi after port {last}: {e}"),
        }
    }
    check_eq!(last, LAST_PORT, "ports are allocated in order");
    println!("bound {last} IPI ports");

    check_eq!(set_priority(3, 16), err::EINVAL, "priority 16");
    check_eq!(
        set_priority(LAST_PORT + 100, 3),
        err::EINVAL,
        "unbound port"
    );
    check_eq!(
        set_priority(3, ec::EVTCHN_FIFO_PRIORITY_MIN),
        0,
        "priority 15"
    );
    check_eq!(set_priority(4100, 4), 0, "priority 4");
    check_eq!(set_priority(LAST_PORT, 1), 0, "priority 1");

    // Sent with interrupts off, taken in priority order, FIFO within priority 7.
    let sends = [3, 12, 4100, 10, LAST_PORT, 11];
    let expected = [LAST_PORT, 4100, 12, 10, 11, 3];
    let before = delivered_count();
    for port in sends {
        check_eq!(send(port), 0, "send {port}");
    }
    check_eq!(
        delivered_count(),
        before,
        "nothing delivered with interrupts off"
    );
    check_eq!(
        event_word(4100).map(|w| w.load(core::sync::atomic::Ordering::SeqCst) & PENDING),
        Some(PENDING),
        "port 4100 pending"
    );
    let (got, n) = take_events(before);
    println!("delivered in order: {:?}", &got[..n]);
    check_eq!(&got[..n], &expected[..], "priority order");
    check!(upcalls() > 0, "upcalls taken");

    // A taken port is queued again.
    let before = delivered_count();
    check_eq!(send(LAST_PORT), 0, "send {LAST_PORT} again");
    let (got, n) = take_events(before);
    check_eq!(&got[..n], &[LAST_PORT][..], "sent again");

    // A masked port only gets PENDING; unmasking queues it.
    let word = match event_word(20) {
        Some(w) => w,
        None => error!("no event word for port 20"),
    };
    word.fetch_or(MASKED, core::sync::atomic::Ordering::SeqCst);
    let before = delivered_count();
    check_eq!(send(20), 0, "send 20 (masked)");
    let (_, n) = take_events(before);
    check_eq!(n, 0, "masked: not delivered");
    check_eq!(
        word.load(core::sync::atomic::Ordering::SeqCst) & (MASKED | PENDING | LINKED),
        MASKED | PENDING,
        "masked port: pending, not linked"
    );
    check_eq!(unmask(20), 0, "unmask 20");
    let (got, n) = take_events(before);
    check_eq!(&got[..n], &[20][..], "delivered on unmask");
    check_eq!(
        word.load(core::sync::atomic::Ordering::SeqCst),
        0,
        "port 20 taken"
    );
}
