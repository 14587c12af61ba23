//! Unit tests of request dispatch: framing of replies, watches (including the special
//! domain watches and the initial event), transactions across connections, domain
//! management, privilege checks, and a property test feeding random frames.

use crate::core::{ConnId, Core, NoRings, Outbox, Popped};
use crate::store::Quotas;
use crate::wire::{join_strings, FrameDecoder, Message, MsgType, MsgType::*, PAYLOAD_MAX};
use std::sync::Arc;
use std::time::Duration;

struct T {
    core: Core,
    stash: std::collections::HashMap<ConnId, Vec<Message>>,
}

struct C {
    id: ConnId,
    out: Arc<Outbox>,
}

fn msgs(out: &Outbox) -> Vec<Message> {
    let mut d = FrameDecoder::new();
    while let Popped::Msg(m) = out.pop(Duration::ZERO) {
        d.push(&m);
    }
    let mut v = Vec::new();
    while let Ok(Some(m)) = d.next_message() {
        v.push(m);
    }
    v
}

impl T {
    fn new() -> Self {
        Self::with(Quotas::default())
    }
    fn with(q: Quotas) -> Self {
        T {
            core: Core::new(q, Arc::new(NoRings)),
            stash: Default::default(),
        }
    }
    fn sock(&mut self) -> C {
        let (id, out) = self.core.add_socket_conn(false);
        C { id, out }
    }
    /// Introduces a domain (as dom0) and returns its connection.
    fn guest(&mut self, dom0: &C, domid: u32) -> C {
        assert_eq!(
            self.ok(dom0, Introduce, 0, &[&domid.to_string(), "1234", "5"]),
            b"OK\0"
        );
        let home = format!("/local/domain/{domid}");
        self.ok(dom0, Mkdir, 0, &[&home]);
        self.ok(dom0, SetPerms, 0, &[&home, &format!("n{domid}")]);
        let d = self.core.domains().find(|d| d.domid == domid).unwrap().conn;
        let out = self.core.conn(d).unwrap().out.clone();
        msgs(&out);
        C { id: d, out }
    }
    /// Sends a request; returns (reply, events that followed).
    fn raw(&mut self, c: &C, ty: u32, tx: u32, payload: &[u8]) -> (Message, Vec<Message>) {
        self.core
            .handle(c.id, &Message::new(ty, 77, tx, payload.to_vec()));
        let mut v = msgs(&c.out).into_iter();
        let reply = v.next().expect("a reply");
        assert_eq!(reply.hdr.req_id, 77, "req id echoed");
        assert_eq!(reply.hdr.tx_id, tx, "tx id echoed");
        (reply, v.collect())
    }
    fn req(&mut self, c: &C, ty: MsgType, tx: u32, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut payload = join_strings(args);
        if ty == Write && args.len() > 1 {
            payload.pop(); // the value is not NUL-terminated
        }
        let (m, evs) = self.raw(c, ty as u32, tx, &payload);
        self.stash.entry(c.id).or_default().extend(evs);
        if m.hdr.ty == Error as u32 {
            Err(String::from_utf8_lossy(&m.payload)
                .trim_end_matches('\0')
                .to_string())
        } else {
            assert_eq!(m.hdr.ty, ty as u32);
            Ok(m.payload)
        }
    }
    fn ok(&mut self, c: &C, ty: MsgType, tx: u32, args: &[&str]) -> Vec<u8> {
        self.req(c, ty, tx, args).unwrap()
    }
    fn err(&mut self, c: &C, ty: MsgType, tx: u32, args: &[&str]) -> String {
        self.req(c, ty, tx, args).unwrap_err()
    }
    fn events(&mut self, c: &C) -> Vec<(String, String)> {
        let mut all = self.stash.remove(&c.id).unwrap_or_default();
        all.extend(msgs(&c.out));
        all.into_iter()
            .map(|m| {
                assert_eq!(m.hdr.ty, WatchEvent as u32);
                let v = crate::wire::split_strings(&m.payload).unwrap();
                (v[0].to_string(), v[1].to_string())
            })
            .collect()
    }
}

fn ev(p: &str, t: &str) -> (String, String) {
    (p.to_string(), t.to_string())
}

#[test]
fn replies_and_error_frames() {
    let mut t = T::new();
    let a = t.sock();
    let (m, _) = t.raw(&a, Read as u32, 0, b"/nope\0");
    assert_eq!(m.hdr.ty, Error as u32);
    assert_eq!(m.payload, b"ENOENT\0");
    let (m, _) = t.raw(&a, Write as u32, 0, b"/w\0value");
    assert_eq!((m.hdr.ty, m.payload), (Write as u32, b"OK\0".to_vec()));
    assert_eq!(t.ok(&a, Read, 0, &["/w"]), b"value");
    // Unknown and daemon-only types.
    for ty in [20, 23, 99, 0xffff, WatchEvent as u32, Error as u32] {
        let (m, _) = t.raw(&a, ty, 0, b"/\0");
        assert_eq!(m.payload, b"ENOSYS\0", "type {ty}");
    }
    // Payloads that are not exactly one NUL-terminated argument.
    for bad in [&b"/w"[..], b"", b"/w\0extra\0", b"/w\0x"] {
        let (m, _) = t.raw(&a, Read as u32, 0, bad);
        assert_eq!(m.payload, b"EINVAL\0", "{bad:?}");
    }
    let (m, _) = t.raw(&a, Write as u32, 0, b"/no-nul");
    assert_eq!(m.payload, b"EINVAL\0");
    // Non-UTF-8 path bytes are invalid, never a crash.
    let (m, _) = t.raw(&a, Read as u32, 0, b"/\xff\xfe\0");
    assert_eq!(m.payload, b"EINVAL\0");
    assert_eq!(t.err(&a, GetDomainPath, 0, &["x"]), "EINVAL");
    assert_eq!(t.ok(&a, GetDomainPath, 0, &["7"]), b"/local/domain/7\0");
    assert_eq!(t.err(&a, Control, 0, &["bogus"]), "EINVAL");
    assert_eq!(t.ok(&a, Control, 0, &["check"]), b"OK\0");
}

#[test]
fn watch_fires_once_when_set_then_on_changes() {
    let mut t = T::new();
    let a = t.sock();
    let b = t.sock();
    let (m, evs) = t.raw(&a, Watch as u32, 0, &join_strings(&["/w", "tok"]));
    assert_eq!(m.payload, b"OK\0");
    assert_eq!(evs.len(), 1, "initial event follows the reply");
    assert_eq!(evs[0].payload, b"/w\0tok\0");
    assert_eq!(t.err(&a, Watch, 0, &["/w", "tok"]), "EEXIST");
    t.ok(&a, Watch, 0, &["/w", "tok2"]);
    t.events(&a);
    t.ok(&b, Write, 0, &["/w/x/y"]);
    assert_eq!(
        t.events(&a),
        vec![ev("/w/x/y", "tok"), ev("/w/x/y", "tok2")]
    );
    t.ok(&b, Write, 0, &["/wx"]);
    assert!(t.events(&a).is_empty(), "sibling prefix does not match");
    t.ok(&b, Rm, 0, &["/w"]);
    let evs = t.events(&a);
    assert!(evs.contains(&ev("/w", "tok")));
    t.ok(&a, Unwatch, 0, &["/w", "tok2"]);
    assert_eq!(t.err(&a, Unwatch, 0, &["/w", "tok2"]), "ENOENT");
    assert_eq!(t.err(&a, Watch, 0, &["/w"]), "EINVAL");
    assert_eq!(t.err(&a, Watch, 0, &["/w/", "x"]), "EINVAL");
    t.ok(&a, ResetWatches, 0, &[]);
    t.ok(&b, Write, 0, &["/w"]);
    assert!(t.events(&a).is_empty());
    // Watches on removed descendants fire with their own path.
    t.ok(&a, Watch, 0, &["/r/s/t", "deep"]);
    t.events(&a);
    t.ok(&b, Write, 0, &["/r/s/t", "1"]);
    t.events(&a);
    t.ok(&b, Rm, 0, &["/r"]);
    assert_eq!(t.events(&a), vec![ev("/r/s/t", "deep")]);
}

#[test]
fn guest_watches_relative_paths_and_permissions() {
    let mut t = T::new();
    let d0 = t.sock();
    let g1 = t.guest(&d0, 1);
    let g2 = t.guest(&d0, 2);
    let (_, evs) = t.raw(&g1, Watch as u32, 0, &join_strings(&["device", "dev"]));
    assert_eq!(evs[0].payload, b"device\0dev\0");
    t.ok(&d0, Write, 0, &["/local/domain/1/device/vif/0", "x"]);
    assert_eq!(t.events(&g1), vec![ev("device/vif/0", "dev")]);
    // Guest 2 watching guest 1's private node hears nothing.
    t.ok(&g2, Watch, 0, &["/local/domain/1/device", "spy"]);
    t.events(&g2);
    t.ok(&d0, Write, 0, &["/local/domain/1/device/vif/1", "x"]);
    assert!(t.events(&g2).is_empty());
    // ...until granted read access; and losing access is still announced once.
    t.ok(
        &d0,
        SetPerms,
        0,
        &["/local/domain/1/device/vif/1", "n1", "r2"],
    );
    assert_eq!(
        t.events(&g2),
        vec![ev("/local/domain/1/device/vif/1", "spy")]
    );
    t.ok(&d0, SetPerms, 0, &["/local/domain/1/device/vif/1", "n1"]);
    assert_eq!(
        t.events(&g2),
        vec![ev("/local/domain/1/device/vif/1", "spy")]
    );
    t.ok(&d0, Write, 0, &["/local/domain/1/device/vif/1", "y"]);
    assert!(t.events(&g2).is_empty());
    // Watch quota for guests.
    let mut q = T::with(Quotas {
        max_watches: 3,
        ..Quotas::default()
    });
    let d0 = q.sock();
    let g = q.guest(&d0, 4);
    for i in 0..3 {
        q.ok(&g, Watch, 0, &["x", &i.to_string()]);
    }
    assert_eq!(q.err(&g, Watch, 0, &["x", "3"]), "ENOSPC");
    for i in 0..200 {
        q.ok(&d0, Watch, 0, &["x", &i.to_string()]);
    }
}

#[test]
fn special_domain_watches() {
    let mut t = T::new();
    let d0 = t.sock();
    let g5 = t.guest(&d0, 5);
    let (_, evs) = t.raw(
        &d0,
        Watch as u32,
        0,
        &join_strings(&["@introduceDomain", "in"]),
    );
    assert_eq!(evs[0].payload, b"@introduceDomain\0in\0");
    t.ok(&d0, Watch, 0, &["@releaseDomain", "out"]);
    t.ok(&g5, Watch, 0, &["@releaseDomain", "g"]);
    assert_eq!(t.events(&d0), vec![ev("@releaseDomain", "out")]);
    t.events(&g5);
    let _g6 = t.guest(&d0, 6);
    assert_eq!(t.events(&d0), vec![ev("@introduceDomain", "in")]);
    t.ok(&d0, Release, 0, &["6"]);
    assert_eq!(t.events(&d0), vec![ev("@releaseDomain", "out")]);
    assert!(
        t.events(&g5).is_empty(),
        "guests may not read @releaseDomain by default"
    );
    // Dom0 can let guests see releases.
    t.ok(&d0, SetPerms, 0, &["@releaseDomain", "n0", "r5"]);
    // Changing a special node's permissions fires its watches, as in Xen.
    assert_eq!(t.events(&g5), vec![ev("@releaseDomain", "g")]);
    t.guest(&d0, 7);
    t.ok(&d0, Release, 0, &["7"]);
    assert_eq!(t.events(&g5), vec![ev("@releaseDomain", "g")]);
    assert_eq!(t.ok(&d0, GetPerms, 0, &["@releaseDomain"]), b"n0\0r5\0");
}

#[test]
fn domain_management() {
    let mut t = T::new();
    let d0 = t.sock();
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["3"]), b"F\0");
    let g3 = t.guest(&d0, 3);
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["3"]), b"T\0");
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["0"]), b"T\0");
    // Re-introduction is accepted (rebinds the event channel).
    t.ok(&d0, Introduce, 0, &["3", "1234", "9"]);
    assert_eq!(t.err(&d0, Introduce, 0, &["3", "1"]), "EINVAL");
    assert_eq!(t.err(&d0, Introduce, 0, &["x", "1", "2"]), "EINVAL");
    assert_eq!(t.err(&d0, Introduce, 0, &["4", "1", "0"]), "EINVAL");
    assert_eq!(t.err(&d0, Introduce, 0, &["40000", "1", "1"]), "EINVAL");
    t.ok(&d0, Resume, 0, &["3"]);
    assert_eq!(t.err(&d0, Resume, 0, &["8"]), "ENOENT");
    assert_eq!(t.err(&d0, Release, 0, &["8"]), "ENOENT");
    assert_eq!(t.err(&d0, Release, 0, &["0"]), "EINVAL");
    // Guests may not manage domains or use CONTROL.
    for (ty, args) in [
        (Introduce, vec!["9", "1", "1"]),
        (Release, vec!["3"]),
        (IsDomainIntroduced, vec!["3"]),
        (Resume, vec!["3"]),
        (SetTarget, vec!["3", "3"]),
        (Control, vec!["check"]),
    ] {
        assert_eq!(t.err(&g3, ty, 0, &args), "EACCES", "{ty:?}");
    }
    // SET_TARGET: a stub domain gets its target's rights.
    let stub = t.guest(&d0, 10);
    assert_eq!(t.err(&stub, Read, 0, &["/local/domain/3"]), "EACCES");
    assert_eq!(t.err(&d0, SetTarget, 0, &["10", "11"]), "ENOENT");
    t.ok(&d0, SetTarget, 0, &["10", "3"]);
    assert_eq!(t.ok(&stub, Read, 0, &["/local/domain/3"]), b"");
    t.ok(&stub, Write, 0, &["/local/domain/3/dm", "x"]);
    // Release removes the connection and its watches.
    t.ok(&d0, Release, 0, &["3"]);
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["3"]), b"F\0");
    assert!(t.core.conn(g3.id).is_none());
}

fn tx_start(t: &mut T, c: &C) -> u32 {
    let id = String::from_utf8(t.ok(c, TransactionStart, 0, &[""])).unwrap();
    id.trim_end_matches('\0').parse().unwrap()
}

#[test]
fn transaction_isolation_and_commit_events() {
    let mut t = T::new();
    let a = t.sock();
    let b = t.sock();
    let w = t.sock();
    t.ok(&a, Write, 0, &["/i/x", "old"]);
    t.ok(&w, Watch, 0, &["/i", "tok"]);
    t.events(&w);

    // Another connection's write does not show through; the commit fails.
    let id = tx_start(&mut t, &a);
    assert_eq!(t.ok(&a, Read, id, &["/i/x"]), b"old");
    assert_eq!(t.ok(&a, Directory, id, &["/i"]), b"x\0");
    let part = t.ok(&a, DirectoryPart, id, &["/i", "0"]);
    t.ok(&a, Write, id, &["/i/mine", "1"]);
    t.ok(&b, Write, 0, &["/i/x", "new"]);
    t.ok(&b, Write, 0, &["/i/y", "new"]);
    assert_eq!(t.events(&w), vec![ev("/i/x", "tok"), ev("/i/y", "tok")]);
    assert_eq!(t.ok(&a, Read, id, &["/i/x"]), b"old");
    assert_eq!(t.ok(&b, Read, 0, &["/i/x"]), b"new");
    assert_eq!(t.ok(&a, Directory, id, &["/i"]), b"x\0mine\0");
    assert_ne!(t.ok(&a, DirectoryPart, id, &["/i", "0"]), part);
    // Not accessed before: its first access shows the current value (as in Xen).
    assert_eq!(t.ok(&a, Read, id, &["/i/y"]), b"new");
    assert_eq!(t.err(&a, TransactionEnd, id, &["T"]), "EAGAIN");
    assert!(t.events(&w).is_empty(), "a failed commit fires nothing");
    assert_eq!(t.err(&a, Read, 0, &["/i/mine"]), "ENOENT");

    // Events only at commit, one per node changed (Xen's queue_watches).
    let id = tx_start(&mut t, &a);
    t.ok(&a, Write, id, &["/i/x", "1"]);
    t.ok(&a, Write, id, &["/i/x", "2"]);
    t.ok(&a, Write, id, &["/i/z", "3"]);
    t.ok(&a, Rm, id, &["/i/z"]);
    t.ok(&b, Write, 0, &["/elsewhere", ""]);
    assert!(t.events(&w).is_empty(), "nothing before the commit");
    t.ok(&a, TransactionEnd, id, &["T"]);
    assert_eq!(t.events(&w), vec![ev("/i/x", "tok"), ev("/i/z", "tok")]);
    assert_eq!(t.ok(&b, Read, 0, &["/i/x"]), b"2");
    assert_eq!(t.err(&b, Read, 0, &["/i/z"]), "ENOENT");

    // "F" discards the changes and fires nothing, even when a conflict is pending.
    let id = tx_start(&mut t, &a);
    assert_eq!(t.ok(&a, Read, id, &["/i/x"]), b"2");
    t.ok(&a, Write, id, &["/i/x", "3"]);
    t.ok(&b, Write, 0, &["/i/x", "b"]);
    t.events(&w);
    t.ok(&a, TransactionEnd, id, &["F"]);
    assert!(t.events(&w).is_empty());
    assert_eq!(t.ok(&a, Read, 0, &["/i/x"]), b"b");
    assert_eq!(t.err(&a, TransactionEnd, id, &["F"]), "ENOENT");

    // Two connections' transactions on disjoint nodes both commit.
    let ta = tx_start(&mut t, &a);
    let tb = tx_start(&mut t, &b);
    assert_eq!(t.ok(&a, Read, ta, &["/i/x"]), b"b");
    assert_eq!(t.ok(&b, Read, tb, &["/i/y"]), b"new");
    t.ok(&a, Write, ta, &["/i/x", "ta"]);
    t.ok(&b, Write, tb, &["/i/y", "tb"]);
    t.ok(&a, TransactionEnd, ta, &["T"]);
    t.ok(&b, TransactionEnd, tb, &["T"]);
    assert_eq!(t.events(&w), vec![ev("/i/x", "tok"), ev("/i/y", "tok")]);
}

#[test]
fn transactions_across_connections() {
    let mut t = T::new();
    let a = t.sock();
    let b = t.sock();
    t.ok(&a, Write, 0, &["/x", "0"]);
    let id: u32 = String::from_utf8(t.ok(&a, TransactionStart, 0, &[""]))
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert!(id != 0);
    t.ok(&a, Watch, 0, &["/x", "w"]);
    t.events(&a);
    assert_eq!(t.ok(&a, Read, id, &["/x"]), b"0");
    t.ok(&a, Write, id, &["/x", "1"]);
    assert!(t.events(&a).is_empty(), "no events before commit");
    // Transaction ids are per connection.
    assert_eq!(t.err(&b, Read, id, &["/x"]), "ENOENT");
    assert_eq!(t.err(&a, TransactionStart, id, &[""]), "EBUSY");
    assert_eq!(t.err(&a, TransactionEnd, id, &["X"]), "EINVAL");
    assert_eq!(t.err(&a, TransactionEnd, 0, &["T"]), "ENOENT");
    t.ok(&b, Write, 0, &["/x", "b"]);
    t.events(&a);
    assert_eq!(t.err(&a, TransactionEnd, id, &["T"]), "EAGAIN");
    assert_eq!(
        t.err(&a, Read, id, &["/x"]),
        "ENOENT",
        "failed transaction is gone"
    );
    assert_eq!(t.ok(&a, Read, 0, &["/x"]), b"b");
    // Retry succeeds and fires at commit.
    let id = String::from_utf8(t.ok(&a, TransactionStart, 0, &[""])).unwrap();
    let id: u32 = id.trim_end_matches('\0').parse().unwrap();
    t.ok(&a, Write, id, &["/x", "2"]);
    t.ok(&a, TransactionEnd, id, &["T"]);
    assert_eq!(t.events(&a), vec![ev("/x", "w")]);
    // Abort discards.
    let id = String::from_utf8(t.ok(&a, TransactionStart, 0, &[""])).unwrap();
    let id: u32 = id.trim_end_matches('\0').parse().unwrap();
    t.ok(&a, Write, id, &["/x", "3"]);
    t.ok(&a, TransactionEnd, id, &["F"]);
    assert_eq!(t.ok(&a, Read, 0, &["/x"]), b"2");
    // Transaction quota for guests; dom0 unlimited.
    let mut q = T::with(Quotas {
        max_transactions: 2,
        ..Quotas::default()
    });
    let d0 = q.sock();
    let g = q.guest(&d0, 2);
    q.ok(&g, TransactionStart, 0, &[""]);
    q.ok(&g, TransactionStart, 0, &[""]);
    assert_eq!(q.err(&g, TransactionStart, 0, &[""]), "ENOSPC");
    for _ in 0..100 {
        q.ok(&d0, TransactionStart, 0, &[""]);
    }
}

#[test]
fn read_only_connections() {
    let mut t = T::new();
    let rw = t.sock();
    let (id, out) = t.core.add_socket_conn(true);
    let ro = C { id, out };
    t.ok(&rw, Write, 0, &["/r", "v"]);
    assert_eq!(t.ok(&ro, Read, 0, &["/r"]), b"v");
    for ty in [Write, Mkdir, Rm] {
        assert_eq!(t.err(&ro, ty, 0, &["/r"]), "EROFS");
    }
    assert_eq!(t.err(&ro, SetPerms, 0, &["/r", "n0"]), "EROFS");
}

#[test]
fn directory_part_pages_big_listings() {
    let mut t = T::new();
    let a = t.sock();
    let mut names = Vec::new();
    for i in 0..400 {
        let n = format!("child-with-a-long-name-{i:04}");
        t.ok(&a, Write, 0, &[&format!("/big/{n}"), ""]);
        names.push(n);
    }
    assert_eq!(t.err(&a, Directory, 0, &["/big"]), "E2BIG");
    let mut got = Vec::new();
    let mut off = 0usize;
    let mut gen = None;
    loop {
        let p = t.ok(&a, DirectoryPart, 0, &["/big", &off.to_string()]);
        assert!(p.len() <= PAYLOAD_MAX);
        let nul = p.iter().position(|&b| b == 0).unwrap();
        let g = String::from_utf8(p[..nul].to_vec()).unwrap();
        assert!(
            gen.is_none() || gen.as_ref() == Some(&g),
            "generation is stable"
        );
        gen = Some(g);
        let body = &p[nul + 1..];
        if body == b"\0" {
            break;
        }
        let done = body.ends_with(b"\0\0");
        let list = if done { &body[..body.len() - 1] } else { body };
        off += list.len();
        got.extend(
            crate::wire::split_strings(list)
                .unwrap()
                .into_iter()
                .map(String::from),
        );
        if done {
            break;
        }
    }
    assert_eq!(got, names);
    assert_eq!(t.err(&a, DirectoryPart, 0, &["/big"]), "EINVAL");
}

/// Property test: random and mutated frames never panic the daemon or corrupt the store.
#[test]
fn random_frames_never_break_the_core() {
    const INPUTS: usize = 100_000;
    let mut t = T::new();
    let d0 = t.sock();
    let g = t.guest(&d0, 9);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let words = [
        "/a",
        "/a/b",
        "x",
        "@introduceDomain",
        "n0",
        "r9",
        "T",
        "F",
        "9",
        "0",
        "",
        "/",
    ];
    let mut decoded = 0;
    for i in 0..INPUTS {
        let r = rnd();
        let ty = (r % 26) as u32;
        let tx = if r & 0x100 != 0 {
            (r >> 9) as u32 % 4
        } else {
            0
        };
        let payload: Vec<u8> = if r & 0x200 != 0 {
            // Structured: a few NUL-separated words, maybe without the final NUL.
            let n = (r >> 12) % 4;
            let mut v: Vec<u8> = Vec::new();
            for k in 0..n {
                v.extend(words[((r >> (16 + 4 * k)) % words.len() as u64) as usize].bytes());
                v.push(0);
            }
            if r & 0x400 != 0 {
                v.pop();
            }
            v
        } else {
            // Garbage bytes.
            let n = (r >> 12) % 40;
            (0..n).map(|_| rnd() as u8).collect()
        };
        // Through the decoder, with a header whose length may lie.
        let mut frame = crate::wire::encode(ty, i as u32, tx, &payload);
        if r & 0x800 != 0 && !frame.is_empty() {
            let cut = (rnd() as usize) % frame.len();
            frame.truncate(cut);
        }
        let mut d = FrameDecoder::new();
        d.push(&frame);
        while let Ok(Some(m)) = d.next_message() {
            decoded += 1;
            let who = if r & 0x1000 != 0 { &g } else { &d0 };
            t.core.handle(who.id, &m);
        }
        msgs(&d0.out);
        msgs(&g.out);
    }
    t.core.store.check().unwrap();
    assert!(decoded > INPUTS / 2, "{decoded}");
    println!("fed {INPUTS} random frames, {decoded} decoded and handled");
}

/// Xen's `check_domains` against a fake hypervisor: a domain shut down fires
/// `@releaseDomain` once and stays; one dying or gone is released (connection closed,
/// the nodes it owns removed, dom0's kept) and fires it again; an unknown state
/// changes nothing.
#[test]
fn check_domains_releases_dying_and_gone_domains() {
    use crate::core::DomState;
    let mut t = T::new();
    let d0 = t.sock();
    let g3 = t.guest(&d0, 3);
    let _g4 = t.guest(&d0, 4);
    // As libxl makes it: dom0 owns the home, the guest may read it; it owns data/.
    t.ok(&d0, SetPerms, 0, &["/local/domain/3", "n0", "r3"]);
    t.ok(&d0, Mkdir, 0, &["/local/domain/3/data"]);
    t.ok(&d0, SetPerms, 0, &["/local/domain/3/data", "n3"]);
    t.ok(&g3, Write, 0, &["data/x", "1"]);
    t.ok(&d0, Write, 0, &["/local/domain/3/name", "three"]);
    t.ok(&d0, Watch, 0, &["@releaseDomain", "rel"]);
    t.ok(&d0, Watch, 0, &["/local/domain/3", "home"]);
    t.events(&d0);
    let before = t.core.conn_count();

    // Unknown and running: nothing.
    let a = t.core.check_domains(|_| None);
    assert!(a.is_empty());
    t.core.check_domains(|_| Some(DomState::Running));
    assert_eq!(t.events(&d0), vec![]);

    // Shut down: one event, the domain stays; a second check says nothing new.
    t.core.check_domains(|d| {
        Some(if d == 3 {
            DomState::Shutdown
        } else {
            DomState::Running
        })
    });
    assert_eq!(t.events(&d0), vec![ev("@releaseDomain", "rel")]);
    t.core.check_domains(|d| {
        Some(if d == 3 {
            DomState::Shutdown
        } else {
            DomState::Running
        })
    });
    assert_eq!(t.events(&d0), vec![]);
    assert!(t.core.domains().any(|d| d.domid == 3 && d.shutdown));

    // Gone: released, its own nodes removed (with events), dom0's left.
    let a = t.core.check_domains(|d| {
        Some(if d == 3 {
            DomState::Gone
        } else {
            DomState::Running
        })
    });
    assert!(matches!(a.as_slice(), [crate::core::Action::StopRing(id)] if *id == g3.id));
    assert_eq!(
        t.events(&d0),
        vec![
            ev("/local/domain/3/data", "home"),
            ev("@releaseDomain", "rel")
        ]
    );
    assert!(!t.core.domains().any(|d| d.domid == 3));
    assert!(t.core.conn(g3.id).is_none());
    assert_eq!(t.core.conn_count(), before - 1);
    assert_eq!(t.ok(&d0, Read, 0, &["/local/domain/3/name"]), b"three");
    assert_eq!(t.err(&d0, Read, 0, &["/local/domain/3/data/x"]), "ENOENT");
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["3"]), b"F\0");

    // Dying counts as gone; the check goes on with other domains.
    t.core.check_domains(|_| Some(DomState::Dying));
    assert_eq!(t.events(&d0), vec![ev("@releaseDomain", "rel")]);
    assert_eq!(t.core.domains().count(), 0);
    // And may introduce again.
    t.guest(&d0, 3);
}

/// A backend that refuses (as the real one does for a domain that does not exist):
/// the introduce fails, nothing is recorded, no event fires.
#[test]
fn refused_introduce_records_nothing() {
    struct Refuse;
    impl crate::core::DomainBackend for Refuse {
        fn connect(
            &self,
            _: u32,
            _: u64,
            _: u32,
        ) -> Result<Option<Box<dyn crate::ring::RingTransport>>, crate::wire::XsError> {
            Err(crate::wire::XsError::Inval)
        }
    }
    let mut t = T {
        core: Core::new(Quotas::default(), Arc::new(Refuse)),
        stash: Default::default(),
    };
    let d0 = t.sock();
    t.ok(&d0, Watch, 0, &["@introduceDomain", "i"]);
    t.events(&d0);
    assert_eq!(t.err(&d0, Introduce, 0, &["42", "1", "5"]), "EINVAL");
    assert_eq!(t.events(&d0), vec![]);
    assert_eq!(t.core.domains().count(), 0);
    assert_eq!(t.ok(&d0, IsDomainIntroduced, 0, &["42"]), b"F\0");
}

/// dom0's own ring is a privileged connection of domain 0, not an introduced domain.
#[test]
fn local_ring_is_privileged_dom0() {
    let (_guest, page, ev) = crate::ring::GuestRing::new_pair();
    let mut t = T::new();
    let d0 = t.sock();
    t.ok(&d0, Watch, 0, &["@introduceDomain", "i"]);
    t.events(&d0);
    let (id, actions) = t
        .core
        .connect_local(Box::new(crate::ring::SharedRing::new(page, ev)));
    assert!(matches!(actions.as_slice(), [crate::core::Action::StartRing(i, _)] if *i == id));
    let c = t.core.conn(id).unwrap();
    assert!(c.caller.privileged);
    assert_eq!(c.kind, crate::core::ConnKind::Domain(0));
    assert_eq!(t.core.domains().count(), 0);
    assert_eq!(t.events(&d0), vec![]);
    let k = C {
        id,
        out: t.core.conn(id).unwrap().out.clone(),
    };
    t.ok(&k, Write, 0, &["memory/target", "1"]);
    assert_eq!(t.ok(&d0, Read, 0, &["/local/domain/0/memory/target"]), b"1");
}
