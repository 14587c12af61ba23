//! The throughput benchmark behind `rxenstored bench`: read, write and a small
//! transaction (start, read, write, commit), from one client and from many clients in
//! parallel, against any daemon socket (ours, or Xen's C daemon for comparison).

use crate::client::Client;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// `read`, `write` or `transaction`.
    pub op: &'static str,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Operations (committed transactions) per second, all clients together.
    pub ops_per_sec: f64,
}

#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
    Tx,
}

fn one(c: &mut Client<std::os::unix::net::UnixStream>, op: Op, key: &str, n: u64) -> bool {
    let v = n.to_string();
    match op {
        Op::Read => c.read(0, key).is_ok(),
        Op::Write => c.write(0, key, v.as_bytes()).is_ok(),
        Op::Tx => {
            let Ok(t) = c.tx_start() else { return false };
            let ok = c.read(t, key).is_ok() && c.write(t, key, v.as_bytes()).is_ok();
            c.tx_end(t, ok).is_ok() && ok
        }
    }
}

fn measure(socket: &Path, op: Op, clients: usize, dur: Duration) -> std::io::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for i in 0..clients {
        let mut c = Client::connect(socket)?;
        let key = format!("/bench/c{i}");
        c.write(0, &key, b"0")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        conns.push((c, key));
    }
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|(mut c, key)| {
            let stop = stop.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if one(&mut c, op, &key, n) {
                        n += 1;
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(total.load(Ordering::Relaxed) as f64 / secs)
}

/// Runs every scenario against the daemon at `socket`.
pub fn run(socket: &Path, many: usize, dur: Duration) -> std::io::Result<Vec<Figure>> {
    let mut out = Vec::new();
    for (name, op) in [
        ("read", Op::Read),
        ("write", Op::Write),
        ("transaction", Op::Tx),
    ] {
        for clients in [1, many] {
            out.push(Figure {
                op: name,
                clients,
                ops_per_sec: measure(socket, op, clients, dur)?,
            });
        }
    }
    Ok(out)
}
