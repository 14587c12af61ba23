//! A hostile block frontend (issue 11's bad-input test): the guest, created by `rxl`
//! with disks served by dom0's Linux blkback, speaks the blkif protocol
//! (`public/io/blkif.h`, `io/ring.h`) itself over its own xenstore ring and feeds the
//! backend garbage, one device per phase (in devid order):
//!
//! 1. rings the backend cannot use, one after the other (closing and starting again
//!    in between): `ring-ref` a grant reference it never made (4000, beyond the
//!    table; 300, inside it), a ring granted read-only or to another domain, a good
//!    ring with an `event-channel` that does not exist: each time the backend gives
//!    up on the device (state 5 or 6) and lets go of what it mapped;
//! 2. a real ring, Connected, then `req_prod` 10000 past `rsp_prod`: the backend halts
//!    that ring (no response, not even to a good request after it);
//! 3. a real ring, Connected, then one request at a time: reads into grants never
//!    made, into a read-only grant, with 0, 12 and 255 segments, with sectors out of
//!    the page, beyond the disk, an unknown operation, a full ring of bad requests at
//!    once, indirect requests with pages of segments never granted, too many segments
//!    or an unknown operation; each must get its error response (and a good indirect
//!    read its data); reads whose grant is wiped while the backend has it mapped must
//!    still be answered; then a good read of sector 0 returns the image's first page
//!    (its first bytes and FNV-1a checksum printed), and the frontend closes the
//!    device and takes its grants back.
//!
//! With `good` on the command line it does only phase 3's good read, on its first
//! disk (dom0's blkback still serves a newcomer after the hostile guest). Every
//! outcome is printed as `blk_hostile: <vdev>: ...` for the test to check.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use rxen_guest::abi::blkif::{
    BlkifRequest, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse, BlkifSringHeader,
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_INDIRECT,
    BLKIF_OP_READ, BLKIF_RING_SIZE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
    BLKIF_SEGS_PER_INDIRECT_FRAME, BLKIF_SRING_ENTRY, BLKIF_SRING_HEADER,
};
use rxen_guest::abi::grant_table::GTF_WRITING;
use rxen_guest::events::{
    alloc_unbound, send, set_up_timer_events, sleep_until, unmask, wait_until, wait_until_every,
};
use rxen_guest::grant::{free_gfn_above_ram, place_frame, Page, Table, PAGE_SIZE};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::xen::memory::DOMID_SELF;
use rxen_guest::xenstore::{names, Store};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

/// xenbus states (`io/xenbus.h`).
const INITIALISING: u64 = 1;
const INIT_WAIT: u64 = 2;
const INITIALISED: u64 = 3;
const CONNECTED: u64 = 4;
const CLOSING: u64 = 5;
const CLOSED: u64 = 6;

/// A grant reference beyond our table (one frame: 512 entries).
const GARBAGE_GREF: u32 = 4000;
/// A grant reference inside our table that we never fill in.
const UNGRANTED_GREF: u32 = 300;
/// Our grants: the rings of phases 2 and 3, a data page granted writable, the same
/// data page granted read-only.
const GREF_RING_B: u32 = 8;
const GREF_RING_C: u32 = 9;
const GREF_DATA: u32 = 10;
const GREF_DATA_RO: u32 = 11;
/// Phase 1's ring page granted read-only, to d7, and properly.
const GREF_RING_A_RO: u32 = 12;
const GREF_RING_A_D7: u32 = 13;
const GREF_RING_A: u32 = 14;
/// The page of segments, granted read-only.
const GREF_SEGS: u32 = 15;
/// An event channel port we never allocated.
const GARBAGE_PORT: u32 = 4000;

/// How long a backend gets to change state or answer (QEMU TCG is slow).
const TIMEOUT_NS: u64 = 30_000_000_000;
/// How long to wait for a response that must not come.
const SILENCE_NS: u64 = 5_000_000_000;

/// Offsets of the shared ring's indices (`struct blkif_sring`).
const REQ_PROD: usize = core::mem::offset_of!(BlkifSringHeader, req_prod);
const REQ_EVENT: usize = core::mem::offset_of!(BlkifSringHeader, req_event);
const RSP_PROD: usize = core::mem::offset_of!(BlkifSringHeader, rsp_prod);
const RSP_EVENT: usize = core::mem::offset_of!(BlkifSringHeader, rsp_event);

static mut RING_A: Page = Page::new();
static mut RING_B: Page = Page::new();
static mut RING_C: Page = Page::new();
static mut DATA: Page = Page::new();
/// The page of segments of indirect requests.
static mut SEGS: Page = Page::new();

/// The guest frame of one of our pages (identity-mapped, below 4 GiB).
fn frame_of(page: *mut Page) -> u32 {
    (page as u64 / PAGE_SIZE) as u32
}

/// A short string built without allocation.
struct Text {
    buf: [u8; 96],
    len: usize,
}

impl Text {
    fn new(args: core::fmt::Arguments) -> Text {
        let mut t = Text {
            buf: [0; 96],
            len: 0,
        };
        let _ = t.write_fmt(args);
        t
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

macro_rules! text {
    ($($arg:tt)*) => { Text::new(format_args!($($arg)*)) };
}

/// One of our disks: its vdev name, frontend and backend directories.
struct Disk {
    vdev: &'static str,
    front: Text,
    back: Text,
}

impl Disk {
    fn set(&self, xs: &mut Store, node: &str, value: core::fmt::Arguments) {
        let path = text!("{}/{node}", self.front.as_str());
        let value = text!("{value}");
        if let Err(e) = xs.write(path.as_str(), value.as_str().as_bytes()) {
            error!("{}: writing {}: {e}", self.vdev, path.as_str());
        }
    }

    fn backend_state(&self, xs: &mut Store) -> Option<u64> {
        xs.read_u64(text!("{}/state", self.back.as_str()).as_str())
    }

    /// Polls the backend's state (every 20 ms) until `done` holds or the time-out:
    /// the last state seen.
    fn wait_backend(
        &self,
        xs: &mut Store,
        timeout: u64,
        done: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let mut last = None;
        wait_until(timeout, || {
            last = self.backend_state(xs);
            if last.is_some_and(&done) {
                return true;
            }
            sleep_until(now() + 20_000_000);
            false
        });
        last
    }

    /// Waits for the backend to offer the device (InitWait).
    fn wait_init_wait(&self, xs: &mut Store) {
        let st = self.wait_backend(xs, TIMEOUT_NS, |s| s == INIT_WAIT);
        if st != Some(INIT_WAIT) {
            error!("{}: backend never in InitWait (state {st:?})", self.vdev);
        }
    }

    /// Publishes a ring (`ring-ref`, `event-channel`, the native protocol) and the
    /// frontend state Initialised.
    fn publish(&self, xs: &mut Store, gref: u32, port: u32) {
        self.set(xs, "ring-ref", format_args!("{gref}"));
        self.set(xs, "event-channel", format_args!("{port}"));
        self.set(xs, "protocol", format_args!("x86_64-abi"));
        self.set(xs, "state", format_args!("{INITIALISED}"));
    }
}

/// A one-page `blkif` ring we are the frontend of.
struct Ring {
    page: *mut u8,
    port: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl Ring {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT` on `page`.
    fn new(page: *mut Page, port: u32) -> Ring {
        let ring = Ring {
            page: page.cast(),
            port,
            req_prod_pvt: 0,
            rsp_cons: 0,
        };
        // SAFETY: our own page, not yet granted.
        unsafe { core::ptr::write_bytes(ring.page, 0, PAGE_SIZE as usize) };
        ring.index(REQ_EVENT).store(1, Ordering::Relaxed);
        ring.index(RSP_EVENT).store(1, Ordering::Relaxed);
        ring
    }

    /// The index at `at` (`REQ_PROD`, `REQ_EVENT`, `RSP_PROD`, `RSP_EVENT`).
    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: an aligned word of the ring header, shared with the backend.
        unsafe { AtomicU32::from_ptr(self.page.add(at).cast()) }
    }

    fn slot(&self, idx: u32) -> *mut u8 {
        let i = (idx % BLKIF_RING_SIZE) as usize;
        // SAFETY: inside the page: 64 + 32 * 112 = 3648.
        unsafe { self.page.add(BLKIF_SRING_HEADER + i * BLKIF_SRING_ENTRY) }
    }

    /// Queues `req` (not yet visible to the backend).
    fn queue<T: Copy>(&mut self, req: &T) {
        const { assert!(core::mem::size_of::<T>() <= BLKIF_SRING_ENTRY) };
        // SAFETY: a ring slot (`T` fits, checked above); volatile as the backend reads
        // the page.
        unsafe { core::ptr::write_volatile(self.slot(self.req_prod_pvt).cast(), *req) };
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// Publishes the queued requests and notifies the backend.
    fn push(&mut self) {
        self.index(REQ_PROD)
            .store(self.req_prod_pvt, Ordering::Release);
        send(self.port);
    }

    /// The next response, waited for up to `timeout` ns: the backend signals it
    /// (`rsp_event` asks for that), so the ring is looked at on each event and
    /// otherwise every 20 ms (the silent waits last seconds).
    fn response(&mut self, timeout: u64) -> Option<BlkifResponse> {
        self.index(RSP_EVENT)
            .store(self.rsp_cons.wrapping_add(1), Ordering::Release);
        let cons = self.rsp_cons;
        if !wait_until_every(timeout, 20_000_000, || {
            self.index(RSP_PROD).load(Ordering::Acquire) != cons
        }) {
            return None;
        }
        // SAFETY: a ring slot the backend has written its response to.
        let rsp = unsafe { core::ptr::read_volatile(self.slot(cons).cast::<BlkifResponse>()) };
        self.rsp_cons = cons.wrapping_add(1);
        Some(rsp)
    }
}

/// A read request of `sector` with the segments `seg` (`nr_segments` said separately,
/// so that it can lie).
fn read_request(
    id: u64,
    sector: u64,
    nr_segments: u8,
    seg: &[BlkifRequestSegment],
) -> BlkifRequest {
    let mut req = BlkifRequest {
        operation: BLKIF_OP_READ,
        nr_segments,
        id,
        sector_number: sector,
        ..Default::default()
    };
    req.seg[..seg.len()].copy_from_slice(seg);
    req
}

/// A segment of grant `gref`, sectors `first..=last` of its page.
fn seg(gref: u32, first: u8, last: u8) -> BlkifRequestSegment {
    BlkifRequestSegment {
        gref,
        first_sect: first,
        last_sect: last,
        pad: 0,
    }
}

/// FNV-1a (32 bits) of `bytes`.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn name_of(devid: u64) -> &'static str {
    match devid {
        51712 => "xvda",
        51728 => "xvdb",
        51744 => "xvdc",
        _ => "xvd?",
    }
}

/// Our disks, in devid order (at most 4).
fn disks(xs: &mut Store) -> ([Option<Disk>; 4], usize) {
    let mut list = [0u8; 128];
    let n = match xs.directory("device/vbd", &mut list) {
        Ok(n) => n,
        Err(e) => error!("device/vbd: {e}"),
    };
    let mut ids = [u64::MAX; 4];
    let mut count = 0;
    for name in names(&list[..n]) {
        if count < ids.len() {
            ids[count] = rxen_guest::start_info::parse_u64(name).unwrap_or(u64::MAX);
            count += 1;
        }
    }
    ids[..count].sort_unstable();
    let mut out = [None, None, None, None];
    for (slot, &id) in out.iter_mut().zip(&ids[..count]) {
        let front = text!("device/vbd/{id}");
        let mut back = [0u8; 96];
        let len = match xs.read(text!("{}/backend", front.as_str()).as_str(), &mut back) {
            Ok(len) => len,
            Err(e) => error!("device/vbd/{id}/backend: {e}"),
        };
        *slot = Some(Disk {
            vdev: name_of(id),
            front,
            back: text!("{}", core::str::from_utf8(&back[..len]).unwrap_or("?")),
        });
    }
    (out, count)
}

/// An event channel for dom0's backend to bind to.
fn new_port(vdev: &str) -> u32 {
    let port = match alloc_unbound(DOMID_SELF, 0) {
        Ok(p) => p,
        Err(e) => error!("{vdev}: EVTCHNOP_alloc_unbound: {e}"),
    };
    unmask(port);
    port
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    set_up_timer_events();
    let mut xs = Store::connect();
    let table_gfn = free_gfn_above_ram(si.memmap(), 0);
    check_eq!(
        place_frame(0, table_gfn),
        0,
        "grant frame 0 at {table_gfn:#x}"
    );
    // SAFETY: frame 0 of our grant table stays at `table_gfn`.
    let table = unsafe { Table::at(table_gfn) };
    let (disks, count) = disks(&mut xs);
    println!("blk_hostile: {count} disk(s)");
    let disk = |i: usize| match &disks[i] {
        Some(d) => d,
        None => error!("fewer disks than phases ({count})"),
    };
    if si.has_arg("good") {
        serve_check(&mut xs, &table, disk(0), false);
        return;
    }
    bad_rings(&mut xs, &table, disk(0));
    bogus_req_prod(&mut xs, &table, disk(1));
    serve_check(&mut xs, &table, disk(2), true);
}

/// Phase 1: rings the backend cannot use, one after the other on the same device
/// (after each, the frontend closes and starts again: Closed, then Initialising, and
/// blkback offers the device anew): grant references never made, a ring granted
/// read-only or to another domain, and a good ring with an event channel that does
/// not exist. Each time blkback must give up on the device (Closing or Closed), and
/// a ring page it mapped must be unmapped again.
fn bad_rings(xs: &mut Store, table: &Table, d: &Disk) {
    let ring_frame = frame_of(&raw mut RING_A);
    table.grant(GREF_RING_A_RO, 0, ring_frame, true);
    table.grant(GREF_RING_A_D7, 7, ring_frame, false);
    table.grant(GREF_RING_A, 0, ring_frame, false);
    let port = new_port(d.vdev);
    let attacks = [
        ("ring-ref 4000 (beyond the table)", GARBAGE_GREF, port),
        ("ring-ref 300 (never granted)", UNGRANTED_GREF, port),
        ("ring-ref 12 (granted read-only)", GREF_RING_A_RO, port),
        ("ring-ref 13 (granted to d7)", GREF_RING_A_D7, port),
        (
            "event-channel 4000 (no such port)",
            GREF_RING_A,
            GARBAGE_PORT,
        ),
    ];
    for (what, gref, port) in attacks {
        d.wait_init_wait(xs);
        d.publish(xs, gref, port);
        let st = d.wait_backend(xs, TIMEOUT_NS, |s| s == CLOSING || s == CLOSED);
        println!("blk_hostile: {}: {what}: backend state {st:?}", d.vdev);
        check!(
            st == Some(CLOSING) || st == Some(CLOSED),
            "{}: {what}: the backend closed",
            d.vdev
        );
        // Start again.
        d.set(xs, "state", format_args!("{CLOSED}"));
        let st = d.wait_backend(xs, TIMEOUT_NS, |s| s == CLOSED);
        check_eq!(st, Some(CLOSED), "{}: {what}: then Closed", d.vdev);
        d.set(xs, "state", format_args!("{INITIALISING}"));
    }
    let released = [GREF_RING_A_RO, GREF_RING_A_D7, GREF_RING_A].map(|g| table.end_access(g));
    println!("blk_hostile: {}: ring grants released {released:?}", d.vdev);
    check_eq!(released, [true; 3], "{}: no ring grant left in use", d.vdev);
}

/// Connects a real ring on `d` at `page` (granted as `gref`): the ring, once the
/// backend is Connected and we said so too.
fn connect(xs: &mut Store, table: &Table, d: &Disk, page: *mut Page, gref: u32) -> Ring {
    d.wait_init_wait(xs);
    let port = new_port(d.vdev);
    let ring = Ring::new(page, port);
    table.grant(gref, 0, frame_of(page), false);
    d.publish(xs, gref, port);
    let st = d.wait_backend(xs, TIMEOUT_NS, |s| s == CONNECTED);
    if st != Some(CONNECTED) {
        error!("{}: backend not Connected (state {st:?})", d.vdev);
    }
    d.set(xs, "state", format_args!("{CONNECTED}"));
    println!(
        "blk_hostile: {}: ring-ref {gref} port {port}: connected",
        d.vdev
    );
    ring
}

/// Phase 2: a producer index far beyond what the ring holds.
fn bogus_req_prod(xs: &mut Store, table: &Table, d: &Disk) {
    let mut ring = connect(xs, table, d, &raw mut RING_B, GREF_RING_B);
    let rsp_prod = ring.index(RSP_PROD).load(Ordering::Acquire);
    let bogus = rsp_prod.wrapping_add(10_000);
    ring.index(REQ_PROD).store(bogus, Ordering::Release);
    send(ring.port);
    let answered = ring.response(SILENCE_NS).is_some();
    println!(
        "blk_hostile: {}: req_prod {bogus} with rsp_prod {rsp_prod}: {}",
        d.vdev,
        if answered {
            "a response"
        } else {
            "no response"
        }
    );
    check!(!answered, "{}: no response to a bogus req_prod", d.vdev);
    // A good request after it: the backend has stopped looking at this ring.
    ring.req_prod_pvt = 0;
    table.grant(GREF_DATA, 0, frame_of(&raw mut DATA), false);
    ring.queue(&read_request(1, 0, 1, &[seg(GREF_DATA, 0, 7)]));
    ring.push();
    let answered = ring.response(SILENCE_NS).is_some();
    let st = d.backend_state(xs);
    println!(
        "blk_hostile: {}: good request after it: {}; backend state {st:?}",
        d.vdev,
        if answered {
            "a response"
        } else {
            "no response"
        }
    );
    check!(!answered, "{}: the halted ring stays halted", d.vdev);
    check!(
        table.end_access(GREF_DATA),
        "{}: data grant not in use",
        d.vdev
    );
}

/// Sends `req` (whose id is `id`) alone and checks that its response has status
/// `want`.
fn ask<T: Copy>(ring: &mut Ring, d: &Disk, what: &str, id: u64, req: &T, want: i16) {
    ring.queue(req);
    ring.push();
    match ring.response(TIMEOUT_NS) {
        Some(rsp) => {
            println!("blk_hostile: {}: {what}: status {}", d.vdev, rsp.status);
            check_eq!((rsp.id, rsp.status), (id, want), "{}: {what}", d.vdev);
        }
        None => {
            println!("blk_hostile: {}: {what}: no response", d.vdev);
            check!(false, "{}: {what}: a response", d.vdev);
        }
    }
}

/// Indirect requests (`BLKIF_OP_INDIRECT`): bad ones get their error, a good read
/// of sector 0 through a granted page of segments succeeds.
fn indirect(xs: &mut Store, ring: &mut Ring, table: &Table, d: &Disk) {
    let offered = xs
        .read_u64(text!("{}/feature-max-indirect-segments", d.back.as_str()).as_str())
        .unwrap_or(0);
    println!(
        "blk_hostile: {}: the backend offers {offered} indirect segments",
        d.vdev
    );
    // SAFETY: our own page, granted read-only below.
    unsafe {
        let segs = (&raw mut SEGS).cast::<BlkifRequestSegment>();
        core::ptr::write_bytes(segs.cast::<u8>(), 0, PAGE_SIZE as usize);
        segs.write_volatile(seg(GREF_DATA, 0, 7));
    }
    table.grant(GREF_SEGS, 0, frame_of(&raw mut SEGS), true);
    let req = |id: u64, op: u8, nr_segments: u16, page: u32| {
        let mut r = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: op,
            nr_segments,
            id,
            ..Default::default()
        };
        r.indirect_grefs[0] = page;
        r
    };
    let too_many = (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_FRAME) as u16;
    let cases = [
        (
            "indirect read, segments in gref 4000",
            req(3001, BLKIF_OP_READ, 1, GARBAGE_GREF),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read, segments in gref 300",
            req(3002, BLKIF_OP_READ, 1, UNGRANTED_GREF),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read with 0 segments",
            req(3003, BLKIF_OP_READ, 0, GREF_SEGS),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read with 4096 segments",
            req(3004, BLKIF_OP_READ, too_many, GREF_SEGS),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read, one segment more than offered",
            req(3007, BLKIF_OP_READ, (offered + 1) as u16, GREF_SEGS),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect operation 77",
            req(3005, 77, 1, GREF_SEGS),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read of sector 0",
            req(3006, BLKIF_OP_READ, 1, GREF_SEGS),
            BLKIF_RSP_OKAY,
        ),
    ];
    for (what, r, want) in cases {
        ask(ring, d, what, r.id, &r, want);
    }
    check!(
        table.end_access(GREF_SEGS),
        "{}: the page of segments let go",
        d.vdev
    );
}

/// Phase 3 (or, `hostile` false, only its good read): bad requests each get their error,
/// a good read gets the image's data, the device closes cleanly.
fn serve_check(xs: &mut Store, table: &Table, d: &Disk, hostile: bool) {
    let mut ring = connect(xs, table, d, &raw mut RING_C, GREF_RING_C);
    let data = &raw mut DATA;
    table.grant(GREF_DATA, 0, frame_of(&raw mut DATA), false);
    table.grant(GREF_DATA_RO, 0, frame_of(&raw mut DATA), true);
    let mut id = 100;
    let mut one = |ring: &mut Ring, what: &str, req: BlkifRequest, want: i16| {
        id += 1;
        ask(ring, d, what, id, &BlkifRequest { id, ..req }, want);
    };
    if hostile {
        let good = read_request(0, 0, 1, &[seg(GREF_DATA, 0, 7)]);
        // `good` with every segment `s` (only the first counts).
        let with_seg = |s| BlkifRequest {
            seg: [s; BLKIF_MAX_SEGMENTS_PER_REQUEST],
            ..good
        };
        let two = read_request(0, 0, 2, &[seg(GREF_DATA, 0, 3), seg(GARBAGE_GREF, 0, 3)]);
        let err = BLKIF_RSP_ERROR;
        let bad = [
            (
                "read into gref 4000 (beyond the table)",
                with_seg(seg(GARBAGE_GREF, 0, 7)),
                err,
            ),
            (
                "read into gref 300 (never granted)",
                with_seg(seg(UNGRANTED_GREF, 0, 7)),
                err,
            ),
            (
                "read into a read-only grant",
                with_seg(seg(GREF_DATA_RO, 0, 7)),
                err,
            ),
            ("read, good segment then gref 4000", two, err),
            (
                "read with 0 segments",
                BlkifRequest {
                    nr_segments: 0,
                    ..good
                },
                err,
            ),
            (
                "read with 12 segments",
                BlkifRequest {
                    nr_segments: 12,
                    ..good
                },
                err,
            ),
            (
                "read with 255 segments",
                BlkifRequest {
                    nr_segments: 255,
                    ..good
                },
                err,
            ),
            (
                "read of sectors 5..3 of a page",
                with_seg(seg(GREF_DATA, 5, 3)),
                err,
            ),
            (
                "read of sector 8 of a page",
                with_seg(seg(GREF_DATA, 0, 8)),
                err,
            ),
            (
                "read beyond the disk",
                BlkifRequest {
                    sector_number: 1 << 40,
                    ..good
                },
                err,
            ),
            (
                "operation 77",
                BlkifRequest {
                    operation: 77,
                    ..good
                },
                BLKIF_RSP_EOPNOTSUPP,
            ),
        ];
        for (what, req, want) in bad {
            one(&mut ring, what, req, want);
        }
        // A full ring of reads into a grant never made, published at once.
        for i in 0..BLKIF_RING_SIZE {
            ring.queue(&read_request(
                1000 + u64::from(i),
                0,
                1,
                &[seg(UNGRANTED_GREF, 0, 7)],
            ));
        }
        ring.push();
        let mut errors = 0;
        for _ in 0..BLKIF_RING_SIZE {
            match ring.response(TIMEOUT_NS) {
                Some(rsp) if rsp.status == BLKIF_RSP_ERROR => errors += 1,
                Some(_) => {}
                None => break,
            }
        }
        println!(
            "blk_hostile: {}: {BLKIF_RING_SIZE} bad reads at once: {errors} error responses",
            d.vdev
        );
        check_eq!(
            errors,
            BLKIF_RING_SIZE,
            "{}: a full ring of bad reads",
            d.vdev
        );
        indirect(xs, &mut ring, table, d);
        revoke_while_mapped(&mut ring, table, d);
    }
    // The good read: sector 0, a whole page.
    // SAFETY: our own page (the backend writes it only while the request is out).
    unsafe { core::ptr::write_bytes(data.cast::<u8>(), 0xee, PAGE_SIZE as usize) };
    one(
        &mut ring,
        "read of sector 0",
        read_request(0, 0, 1, &[seg(GREF_DATA, 0, 7)]),
        BLKIF_RSP_OKAY,
    );
    // SAFETY: the response is in: the page is ours again.
    let bytes = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), PAGE_SIZE as usize) };
    let head = bytes
        .iter()
        .take(24)
        .take_while(|b| b.is_ascii_graphic())
        .count();
    println!(
        "blk_hostile: {}: sector 0 begins {:?}, fnv1a {:#010x}",
        d.vdev,
        core::str::from_utf8(&bytes[..head]).unwrap_or("?"),
        fnv1a(bytes)
    );
    // Close: Closing, the backend follows, Closed.
    d.set(xs, "state", format_args!("{CLOSING}"));
    let st = d.wait_backend(xs, TIMEOUT_NS, |s| s == CLOSING || s == CLOSED);
    d.set(xs, "state", format_args!("{CLOSED}"));
    let fin = d.wait_backend(xs, TIMEOUT_NS, |s| s == CLOSED);
    let released = [GREF_RING_C, GREF_DATA, GREF_DATA_RO].map(|g| table.end_access(g));
    println!(
        "blk_hostile: {}: closed (backend {st:?} then {fin:?}); grants released {released:?}",
        d.vdev
    );
    check_eq!(fin, Some(CLOSED), "{}: the backend closed", d.vdev);
    check_eq!(released, [true; 3], "{}: no grant left in use", d.vdev);
}

/// Rounds of [`revoke_while_mapped`].
const REVOKE_ROUNDS: u64 = 10;

/// The race of a grant taken back under the backend, [`REVOKE_ROUNDS`] times: a good
/// read into the data page, and as soon as the grant entry shows it mapped for writing
/// (`GTF_writing`; spinning, so that another CPU's backend can be caught in the act),
/// the entry is wiped (flags, domain, frame), as a hostile guest may. Whatever status
/// each read gets, the backend must answer; the grant is made again afterwards.
fn revoke_while_mapped(ring: &mut Ring, table: &Table, d: &Disk) {
    let frame = frame_of(&raw mut DATA);
    let (mut caught, mut answered, mut okay) = (0, 0, 0);
    for round in 0..REVOKE_ROUNDS {
        let id = 2000 + round;
        table.grant(GREF_DATA, 0, frame, false);
        ring.queue(&read_request(id, 0, 1, &[seg(GREF_DATA, 0, 7)]));
        ring.push();
        let deadline = now() + TIMEOUT_NS;
        loop {
            if table.flags(GREF_DATA) & GTF_WRITING != 0 {
                table.clear(GREF_DATA);
                caught += 1;
                break;
            }
            if ring.index(RSP_PROD).load(Ordering::Acquire) != ring.rsp_cons || now() > deadline {
                break;
            }
            core::hint::spin_loop();
        }
        match ring.response(TIMEOUT_NS) {
            Some(r) if r.id == id => {
                answered += 1;
                okay += u32::from(r.status == BLKIF_RSP_OKAY);
            }
            _ => {}
        }
    }
    table.grant(GREF_DATA, 0, frame, false);
    println!(
        "blk_hostile: {}: grant wiped under the backend: {caught} of {REVOKE_ROUNDS} caught mapped, {answered} answered ({okay} okay)",
        d.vdev
    );
    check_eq!(
        answered,
        REVOKE_ROUNDS,
        "{}: every revoked read answered",
        d.vdev
    );
}
