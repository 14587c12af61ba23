//! Protocol tests over the Unix socket: request/reply framing, pipelining, the
//! read-only socket, and bad input (lying lengths, oversized frames, truncated frames,
//! floods) which must cost at most the offending connection.

mod common;

use rxenstored::client::Client;
use rxenstored::wire::{encode, Header, MsgType, XsError, HEADER_LEN};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn xs(e: rxenstored::client::ClientError) -> XsError {
    e.xs().expect("an xenstore error")
}

#[test]
fn basic_operations_over_the_socket() {
    let dir = common::TempDir::new("proto");
    let server = common::start(dir.path());
    let mut c = Client::connect(&dir.path().join("socket")).unwrap();
    c.write(0, "/vm/1/name", b"guest").unwrap();
    assert_eq!(c.read(0, "/vm/1/name").unwrap(), b"guest");
    assert_eq!(c.directory(0, "/vm").unwrap(), vec!["1"]);
    c.set_perms(0, "/vm/1", &["n0", "r1"]).unwrap();
    assert_eq!(c.get_perms(0, "/vm/1").unwrap(), vec!["n0", "r1"]);
    c.mkdir(0, "/vm/2").unwrap();
    c.rm(0, "/vm/1").unwrap();
    assert_eq!(xs(c.read(0, "/vm/1/name").unwrap_err()), XsError::NoEnt);
    let t = c.tx_start().unwrap();
    c.write(t, "/vm/2/x", b"1").unwrap();
    c.tx_end(t, true).unwrap();
    assert_eq!(c.read(0, "/vm/2/x").unwrap(), b"1");
    // Watch: initial event, then a change from another client.
    c.watch("/vm", "t").unwrap();
    assert_eq!(
        c.next_event(Duration::from_secs(2)).unwrap(),
        Some(("/vm".into(), "t".into()))
    );
    let mut d = Client::connect(&dir.path().join("socket")).unwrap();
    d.write(0, "/vm/3", b"").unwrap();
    assert_eq!(
        c.next_event(Duration::from_secs(2)).unwrap(),
        Some(("/vm/3".into(), "t".into()))
    );
    server.shutdown().unwrap();
}

#[test]
fn transactions_are_isolated_over_the_socket() {
    let dir = common::TempDir::new("txiso");
    let server = common::start(dir.path());
    let sock = dir.path().join("socket");
    let mut a = Client::connect(&sock).unwrap();
    let mut b = Client::connect(&sock).unwrap();
    let mut w = Client::connect(&sock).unwrap();
    a.write(0, "/a", b"old").unwrap();
    w.watch("/a", "tok").unwrap();
    let ev = |w: &mut Client<UnixStream>| w.next_event(Duration::from_millis(300)).unwrap();
    assert_eq!(ev(&mut w), Some(("/a".into(), "tok".into())));

    // A transaction reads /a; another connection writes /a; the transaction still
    // reads the old value, and its commit fails with EAGAIN.
    let t = a.tx_start().unwrap();
    assert_eq!(a.read(t, "/a").unwrap(), b"old");
    assert_eq!(a.directory(t, "/a").unwrap(), Vec::<String>::new());
    b.write(0, "/a", b"new").unwrap();
    b.write(0, "/a/child", b"").unwrap();
    assert_eq!(ev(&mut w), Some(("/a".into(), "tok".into())));
    assert_eq!(ev(&mut w), Some(("/a/child".into(), "tok".into())));
    assert_eq!(a.read(t, "/a").unwrap(), b"old");
    assert_eq!(a.directory(t, "/a").unwrap(), Vec::<String>::new());
    assert_eq!(a.read(0, "/a").unwrap(), b"new", "outside the transaction");
    assert_eq!(xs(a.tx_end(t, true).unwrap_err()), XsError::Again);
    assert_eq!(xs(a.read(t, "/a").unwrap_err()), XsError::NoEnt, "ended");

    // The retry sees the new value, and its write fires the watch only at commit.
    let t = a.tx_start().unwrap();
    assert_eq!(a.read(t, "/a").unwrap(), b"new");
    a.write(t, "/a", b"retry").unwrap();
    assert_eq!(ev(&mut w), None, "no event before the commit");
    assert_eq!(
        b.read(0, "/a").unwrap(),
        b"new",
        "not visible before the commit"
    );
    a.tx_end(t, true).unwrap();
    assert_eq!(ev(&mut w), Some(("/a".into(), "tok".into())));
    assert_eq!(ev(&mut w), None);
    assert_eq!(b.read(0, "/a").unwrap(), b"retry");

    // Two connections' transactions on disjoint nodes both commit; an abort discards.
    let ta = a.tx_start().unwrap();
    let tb = b.tx_start().unwrap();
    a.write(ta, "/a/child", b"ta").unwrap();
    b.write(tb, "/b", b"tb").unwrap();
    a.tx_end(ta, true).unwrap();
    b.tx_end(tb, true).unwrap();
    let t = a.tx_start().unwrap();
    a.write(t, "/a", b"aborted").unwrap();
    a.tx_end(t, false).unwrap();
    assert_eq!(a.read(0, "/a").unwrap(), b"retry");
    assert_eq!(a.read(0, "/a/child").unwrap(), b"ta");
    assert_eq!(a.read(0, "/b").unwrap(), b"tb");
    assert_eq!(ev(&mut w), Some(("/a/child".into(), "tok".into())));
    assert_eq!(ev(&mut w), None);
    server.shutdown().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = common::TempDir::new("pipe");
    let server = common::start(dir.path());
    let mut s = UnixStream::connect(dir.path().join("socket")).unwrap();
    let mut all = Vec::new();
    for i in 0..200u32 {
        let mut p = format!("/p/{i}\0").into_bytes();
        p.extend_from_slice(i.to_string().as_bytes());
        all.extend(encode(MsgType::Write as u32, i, 0, &p));
    }
    s.write_all(&all).unwrap();
    let mut c = Client::new(s);
    for i in 0..200u32 {
        let m = c.recv_reply().unwrap();
        assert_eq!(m.hdr.req_id, i);
        assert_eq!(m.payload, b"OK\0");
    }
    assert_eq!(c.read(0, "/p/199").unwrap(), b"199");
    server.shutdown().unwrap();
}

#[test]
fn read_only_socket_refuses_writes() {
    let dir = common::TempDir::new("ro");
    let server = common::start(dir.path());
    let mut rw = Client::connect(&dir.path().join("socket")).unwrap();
    rw.write(0, "/ro", b"v").unwrap();
    let mut ro = Client::connect(&dir.path().join("socket_ro")).unwrap();
    assert_eq!(ro.read(0, "/ro").unwrap(), b"v");
    assert_eq!(xs(ro.write(0, "/ro", b"x").unwrap_err()), XsError::RoFs);
    assert_eq!(xs(ro.rm(0, "/ro").unwrap_err()), XsError::RoFs);
    server.shutdown().unwrap();
}

fn expect_closed(mut s: UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue,
            // Linux resets a Unix socket whose peer closed with unread data.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn malformed_frames_cost_only_their_connection() {
    let dir = common::TempDir::new("bad");
    let server = common::start(dir.path());
    let sock = dir.path().join("socket");
    let mut good = Client::connect(&sock).unwrap();
    good.write(0, "/keep", b"safe").unwrap();

    // A header announcing more than XENSTORE_PAYLOAD_MAX: connection dropped.
    let mut s = UnixStream::connect(&sock).unwrap();
    let h = Header {
        ty: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 1 << 30,
    };
    s.write_all(&h.encode()).unwrap();
    // The daemon may already have closed the connection after the header: this write
    // may fail with EPIPE, which is the point.
    let _ = s.write_all(b"/keep\0evil");
    expect_closed(s);

    // A length that lies short: the rest is read as the next header, so the reply is an
    // error (or the connection closes), never a write of the wrong node.
    let mut s = UnixStream::connect(&sock).unwrap();
    let mut f = encode(MsgType::Write as u32, 2, 0, b"/keep\0evil");
    f[12] = 3; // claims 3 payload bytes: "/ke"
    s.write_all(&f).unwrap();
    let mut c = Client::new(s);
    let m = c.recv_reply().unwrap();
    assert_eq!(m.hdr.ty, MsgType::Error as u32);
    assert_eq!(m.payload, b"EINVAL\0");

    // Unknown type, missing NUL, garbage: error replies on a live connection.
    let mut c = Client::connect(&sock).unwrap();
    c.send_raw(&encode(999, 5, 0, b"/keep\0")).unwrap();
    let m = c.recv_reply().unwrap();
    assert_eq!((m.hdr.req_id, m.payload.as_slice()), (5, &b"ENOSYS\0"[..]));
    c.send_raw(&encode(MsgType::Read as u32, 6, 0, b"/keep"))
        .unwrap();
    assert_eq!(c.recv_reply().unwrap().payload, b"EINVAL\0");
    c.send_raw(&encode(MsgType::Read as u32, 7, 0, &[0xff; 100]))
        .unwrap();
    assert_eq!(c.recv_reply().unwrap().payload, b"EINVAL\0");
    c.send_raw(&encode(MsgType::Write as u32, 8, 0, &[b'a'; 4096]))
        .unwrap();
    assert_eq!(c.recv_reply().unwrap().payload, b"EINVAL\0");

    // A truncated frame followed by a hang-up.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&encode(MsgType::Write as u32, 9, 0, b"/keep\0evil")[..HEADER_LEN + 3])
        .unwrap();
    drop(s);

    assert_eq!(good.read(0, "/keep").unwrap(), b"safe");
    server.with_core(|c| c.store.check()).unwrap();
    server.shutdown().unwrap();
}

#[test]
fn floods_of_watches_and_transactions() {
    let dir = common::TempDir::new("flood");
    let server = common::start(dir.path());
    let sock = dir.path().join("socket");
    let mut c = Client::connect(&sock).unwrap();
    for i in 0..2000 {
        c.watch(&format!("/flood/{i}"), "t").unwrap();
    }
    let mut txs = Vec::new();
    for _ in 0..500 {
        txs.push(c.tx_start().unwrap());
    }
    for (i, t) in txs.iter().enumerate() {
        c.write(*t, &format!("/flood/{i}"), b"x").unwrap();
    }
    // All but the first commit conflict on /flood's child list.
    let mut ok = 0;
    for t in txs {
        match c.tx_end(t, true) {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(xs(e), XsError::Again),
        }
    }
    assert_eq!(ok, 1);
    let mut other = Client::connect(&sock).unwrap();
    assert_eq!(other.directory(0, "/flood").unwrap().len(), 1);
    drop(c);
    // The flooding client's watches went with it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.with_core(|c| c.conn_count()), 1);
    server.shutdown().unwrap();
}
