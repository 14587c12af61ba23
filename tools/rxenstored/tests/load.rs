//! Bounded load test: hundreds of concurrent socket clients doing mixed reads, writes
//! and transactions; afterwards no write is lost or torn, and a counter incremented only
//! through transactions equals the number of successful commits.

mod common;

use rxenstored::client::Client;
use rxenstored::wire::XsError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const MAX_OPS: usize = 300;
const TIME: Duration = Duration::from_secs(3);
const KEYS: usize = 8;

/// A self-checking value: a header and a body derived from it.
fn value(client: usize, seq: usize) -> Vec<u8> {
    let mut v = format!("{client}:{seq}:").into_bytes();
    let c = b'a' + (seq % 26) as u8;
    v.extend(std::iter::repeat_n(c, 10 + (seq * 37) % 900));
    v
}

fn check(v: &[u8]) -> bool {
    let s = String::from_utf8_lossy(v);
    let mut it = s.splitn(3, ':');
    let (Some(c), Some(q), Some(body)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    match (c.parse::<usize>(), q.parse::<usize>()) {
        (Ok(c), Ok(q)) => value(c, q) == v && body.len() == 10 + (q * 37) % 900,
        _ => false,
    }
}

#[test]
fn hundreds_of_clients_no_lost_or_torn_writes() {
    let dir = common::TempDir::new("load");
    let server = common::start(dir.path());
    let sock = dir.path().join("socket");
    let mut setup = Client::connect(&sock).unwrap();
    setup.write(0, "/load/counter", b"0").unwrap();
    let commits = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + TIME;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let sock = sock.clone();
            let commits = commits.clone();
            let ops = ops.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock).unwrap();
                let mut last: Vec<Option<usize>> = vec![None; KEYS];
                let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for seq in 0..MAX_OPS {
                    if Instant::now() > deadline {
                        break;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x % KEYS as u64) as usize;
                    let key = format!("/load/c{i}/k{k}");
                    match x % 10 {
                        0..=3 => {
                            c.write(0, &key, &value(i, seq)).unwrap();
                            last[k] = Some(seq);
                        }
                        4..=6 => {
                            // Someone else's key: absent or a well-formed value.
                            let other = (x >> 20) as usize % CLIENTS;
                            match c.read(0, &format!("/load/c{other}/k{k}")) {
                                Ok(v) => assert!(check(&v), "torn value"),
                                Err(e) => assert_eq!(e.xs(), Some(XsError::NoEnt)),
                            }
                        }
                        7 => {
                            if let Some(s) = last[k] {
                                assert_eq!(c.read(0, &key).unwrap(), value(i, s), "lost write");
                            }
                        }
                        _ => loop {
                            let t = c.tx_start().unwrap();
                            let v = c.read(t, "/load/counter").unwrap();
                            let n: u64 = String::from_utf8(v).unwrap().parse().unwrap();
                            c.write(t, "/load/counter", (n + 1).to_string().as_bytes())
                                .unwrap();
                            match c.tx_end(t, true) {
                                Ok(()) => {
                                    commits.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) => assert_eq!(e.xs(), Some(XsError::Again)),
                            }
                        },
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                last
            })
        })
        .collect();
    let lasts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut c = Client::connect(&sock).unwrap();
    for (i, last) in lasts.iter().enumerate() {
        for (k, s) in last.iter().enumerate() {
            if let Some(s) = s {
                assert_eq!(
                    c.read(0, &format!("/load/c{i}/k{k}")).unwrap(),
                    value(i, *s)
                );
            }
        }
    }
    let counter: u64 = String::from_utf8(c.read(0, "/load/counter").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        counter,
        commits.load(Ordering::Relaxed),
        "lost transactional update"
    );
    server.with_core(|c| c.store.check()).unwrap();
    println!(
        "{CLIENTS} clients: {} operations, {counter} committed transactions",
        ops.load(Ordering::Relaxed)
    );
    server.shutdown().unwrap();
}
