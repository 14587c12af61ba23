//! Keeping state across a restart (Xen's live update): the whole tree with permissions
//! and child order, and every introduced domain with its ring coordinates, stub-domain
//! target and watches, in a small versioned binary format.
//!
//! Open transactions are not kept (Xen refuses a live update while they exist; clients
//! retry on the resulting `ENOENT`/`EAGAIN`). Dom0 socket connections end with the old
//! process; their clients reconnect.

use crate::core::{Action, Core, DomainBackend};
use crate::perms::{Perm, Perms};
use crate::store::{Node, Quotas, Store};
use crate::watch::Watch;
use std::io;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 16] = b"RXENSTORED-STATE";
const VERSION: u32 = 1;

struct W(Vec<u8>);

impl W {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct R<'a>(&'a [u8]);

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("state file: {what}"))
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let lo = self.u32()? as u64;
        let hi = self.u32()? as u64;
        Ok(lo | hi << 32)
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("bad string"))
    }
}

/// Serialises the daemon's durable state.
pub fn save(core: &Core) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    let mut nodes: Vec<_> = core.store.nodes().collect();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    w.u32(nodes.len() as u32);
    for (path, n) in nodes {
        w.bytes(path.as_bytes());
        w.bytes(&n.value);
        w.u32(n.perms.entries().len() as u32);
        for p in n.perms.entries() {
            w.u32(p.domid);
            w.u32(p.access as u32);
        }
        w.u32(n.children.len() as u32);
        for c in &n.children {
            w.bytes(c.as_bytes());
        }
    }
    let domains: Vec<_> = core.domains().cloned().collect();
    w.u32(domains.len() as u32);
    for d in domains {
        w.u32(d.domid);
        w.u64(d.mfn);
        w.u32(d.port);
        w.u32(core.target_of(d.conn).unwrap_or(u32::MAX));
        let watches = core.watches_of(d.conn);
        w.u32(watches.len() as u32);
        for x in watches {
            w.bytes(x.path.as_bytes());
            w.bytes(x.token.as_bytes());
            w.u32(x.prefix_len as u32);
        }
    }
    w.0
}

/// Rebuilds a daemon from saved state; domain rings are reconnected through `backend`
/// (the returned actions start them).
pub fn restore(
    data: &[u8],
    quotas: Quotas,
    backend: Arc<dyn DomainBackend>,
) -> io::Result<(Core, Vec<Action>)> {
    let mut r = R(data);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(bad("not an rxenstored state file"));
    }
    if r.u32()? != VERSION {
        return Err(bad("unsupported version"));
    }
    let mut store = Store::empty(quotas);
    for _ in 0..r.u32()? {
        let path = r.string()?;
        let value = r.bytes()?.to_vec();
        let mut perms = Vec::new();
        for _ in 0..r.u32()? {
            let domid = r.u32()?;
            let access = r.u32()? as u8;
            perms.push(Perm { domid, access });
        }
        let perms = Perms::from_vec(perms).ok_or_else(|| bad("node without permissions"))?;
        let mut children = Vec::new();
        for _ in 0..r.u32()? {
            children.push(r.string()?);
        }
        store.insert_raw(
            path,
            Node {
                value,
                perms,
                children,
                gen: 0,
            },
        );
    }
    store.check().map_err(|e| bad(&e))?;
    let mut core = Core::with_store(store, backend);
    let mut actions = Vec::new();
    for _ in 0..r.u32()? {
        let domid = r.u32()?;
        let mfn = r.u64()?;
        let port = r.u32()?;
        let target = match r.u32()? {
            u32::MAX => None,
            t => Some(t),
        };
        let mut watches = Vec::new();
        for _ in 0..r.u32()? {
            let path = r.string()?;
            let token = r.string()?;
            let prefix_len = r.u32()? as usize;
            watches.push(Watch {
                path,
                token,
                prefix_len,
            });
        }
        actions.extend(core.restore_domain(domid, mfn, port, target, watches));
    }
    Ok((core, actions))
}

/// Writes state atomically (temporary file, then rename).
pub fn save_to(core: &Core, path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, save(core))?;
    std::fs::rename(&tmp, path)
}
