//! Domain connections over the in-memory ring: `XS_INTRODUCE` connects a guest, the
//! guest speaks the protocol through `xenstore_domain_interface`, and ring-level errors
//! (bad indices, oversized frames) and reconnects are handled as Xen does.

mod common;

use rxenstored::client::Client;
use rxenstored::ring::{GuestRing, MemoryBackend, ERROR_PROTO, ERROR_RINGIDX};
use rxenstored::wire::{encode, Header, MsgType, XsError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn wait_for(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "condition not reached");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn guest_speaks_xenstore_over_its_ring() {
    let dir = common::TempDir::new("ring");
    let backend = Arc::new(MemoryBackend::default());
    let server = common::start_with(common::config(dir.path()), backend.clone());
    let mut d0 = Client::connect(&dir.path().join("socket")).unwrap();
    d0.watch("@introduceDomain", "in").unwrap();
    d0.watch("@releaseDomain", "out").unwrap();
    assert!(d0.next_event(T).unwrap().is_some());
    assert!(d0.next_event(T).unwrap().is_some());

    let ring = backend.add_domain(3);
    d0.mkdir(0, "/local/domain/3").unwrap();
    d0.set_perms(0, "/local/domain/3", &["n3"]).unwrap();
    d0.introduce(3, 0xfeed, 7).unwrap();
    assert_eq!(
        d0.next_event(T).unwrap(),
        Some(("@introduceDomain".into(), "in".into()))
    );
    let mut g = Client::new(ring);
    g.write(0, "name", b"guest3").unwrap();
    assert_eq!(d0.read(0, "/local/domain/3/name").unwrap(), b"guest3");
    assert_eq!(g.read(0, "/local/domain/3/name").unwrap(), b"guest3");
    assert_eq!(g.read(0, "/tool").unwrap_err().xs(), Some(XsError::Acces));
    // Watches with relative paths, events delivered over the ring.
    g.watch("device", "dev").unwrap();
    assert_eq!(
        g.next_event(T).unwrap(),
        Some(("device".into(), "dev".into()))
    );
    d0.write(0, "/local/domain/3/device/vbd/768", b"").unwrap();
    assert_eq!(
        g.next_event(T).unwrap(),
        Some(("device/vbd/768".into(), "dev".into()))
    );
    // Large values cross the 1 KiB ring in pieces.
    let big = vec![b'z'; 2000];
    g.write(0, "big", &big).unwrap();
    assert_eq!(g.read(0, "big").unwrap(), big);
    // Transactions from the guest.
    let t = g.tx_start().unwrap();
    g.write(t, "tx", b"1").unwrap();
    g.tx_end(t, true).unwrap();
    assert_eq!(d0.read(0, "/local/domain/3/tx").unwrap(), b"1");
    // Release: event for dom0, the guest's ring goes quiet.
    d0.release(3).unwrap();
    assert_eq!(
        d0.next_event(T).unwrap(),
        Some(("@releaseDomain".into(), "out".into()))
    );
    assert!(!server.with_core(|c| c.domains().any(|d| d.domid == 3)));
    server.shutdown().unwrap();
}

fn introduce(
    d0: &mut Client<std::os::unix::net::UnixStream>,
    backend: &MemoryBackend,
    domid: u32,
) -> GuestRing {
    let ring = backend.add_domain(domid);
    let home = format!("/local/domain/{domid}");
    d0.mkdir(0, &home).unwrap();
    d0.set_perms(0, &home, &[&format!("n{domid}")]).unwrap();
    d0.introduce(domid, 1, 1).unwrap();
    ring
}

#[test]
fn ring_errors_and_reconnect() {
    let dir = common::TempDir::new("ringerr");
    let backend = Arc::new(MemoryBackend::default());
    let server = common::start_with(common::config(dir.path()), backend.clone());
    let mut d0 = Client::connect(&dir.path().join("socket")).unwrap();

    // Oversized frame: ERROR_PROTO, connection ignored until reconnect.
    let ring = introduce(&mut d0, &backend, 4);
    let h = Header {
        ty: MsgType::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: 5000,
    };
    assert!(ring.send(&h.encode(), T));
    wait_for(|| ring.interface().error.load(Ordering::Acquire) == ERROR_PROTO);
    // Reconnect: the guest resets its indices and asks; the daemon clears the error.
    let intf = ring.interface();
    intf.req_cons.store(0, Ordering::Release);
    intf.req_prod.store(0, Ordering::Release);
    intf.rsp_cons.store(0, Ordering::Release);
    intf.rsp_prod.store(0, Ordering::Release);
    ring.request_reconnect();
    wait_for(|| intf.connection.load(Ordering::Acquire) == rxenstored::ring::CONNECTED);
    assert_eq!(intf.error.load(Ordering::Acquire), 0);
    let mut g = Client::new(ring);
    g.write(0, "after", b"reconnect").unwrap();
    assert_eq!(d0.read(0, "/local/domain/4/after").unwrap(), b"reconnect");

    // Inconsistent indices: ERROR_RINGIDX, no crash, store intact.
    let ring = introduce(&mut d0, &backend, 5);
    ring.interface().req_prod.store(100_000, Ordering::Release);
    // Kick the daemon (an empty send only signals the event channel).
    wait_for(|| {
        ring.interface().req_prod.store(100_000, Ordering::Release);
        let _ = ring.send(&[], Duration::ZERO);
        ring.wait(Duration::from_millis(1));
        ring.interface().error.load(Ordering::Acquire) == ERROR_RINGIDX
    });

    // Guests are held to their quotas over the ring.
    let ring = introduce(&mut d0, &backend, 6);
    let mut g = Client::new(ring);
    assert_eq!(
        g.write(0, "huge", &[b'a'; 3000]).unwrap_err().xs(),
        Some(XsError::NoSpc)
    );
    assert_eq!(
        g.request(MsgType::Introduce, 0, b"7\x001\x001\x00")
            .unwrap_err()
            .xs(),
        Some(XsError::Acces)
    );
    // A frame split at every byte still decodes.
    let f = encode(MsgType::Write as u32, 42, 0, b"split\0value");
    for b in &f {
        assert!(g.link_mut().send(std::slice::from_ref(b), T));
    }
    let m = g.recv_reply().unwrap();
    assert_eq!((m.hdr.req_id, m.payload.as_slice()), (42, &b"OK\0"[..]));
    server.with_core(|c| c.store.check()).unwrap();
    server.shutdown().unwrap();
}
