//! The daemon's state machine, independent of any transport: connections (dom0 sockets
//! and domain rings), their watches and transactions, introduced domains, and the
//! dispatch of every `xs_wire.h` request to the store.
//!
//! A transport hands [`Core::handle`] one decoded message at a time; replies and watch
//! events are queued on each connection's [`Outbox`], which the transport drains.
//! Work that needs the transport layer (starting or stopping a domain's ring thread) is
//! returned as [`Action`]s.

use crate::log::Level;
use crate::perms::{Caller, Perms, READ};
use crate::ring::RingTransport;
use crate::store::{domain_path, Fired, Quotas, Store, Transaction};
use crate::store::{INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::watch::{Watch, WatchList};
use crate::wire::{encode, join_strings, split_strings, Message, MsgType, XsError, PAYLOAD_MAX};
use crate::xlog;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Identifies a connection for the daemon's lifetime.
pub type ConnId = u64;

/// `DOMID_SELF` (xen.h), as the wire's 32-bit domain ids carry it.
pub const DOMID_SELF: u32 = rxen_abi::xen::DOMID_SELF as u32;
/// First reserved domain id: ids at or above it are not domains.
pub const DOMID_FIRST_RESERVED: u32 = rxen_abi::xen::DOMID_FIRST_RESERVED as u32;

/// Queued output of one connection, drained by its transport.
pub struct Outbox {
    state: Mutex<OutState>,
    cv: Condvar,
    waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

#[derive(Default)]
struct OutState {
    queue: VecDeque<Vec<u8>>,
    closed: bool,
}

/// What [`Outbox::pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped {
    /// A message to send.
    Msg(Vec<u8>),
    /// Nothing within the timeout.
    Empty,
    /// The connection is gone.
    Closed,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            state: Mutex::new(OutState::default()),
            cv: Condvar::new(),
            waker: Mutex::new(None),
        }
    }
}

impl Outbox {
    /// Queues one serialised message.
    pub fn push(&self, msg: Vec<u8>) {
        if let Ok(mut s) = self.state.lock() {
            if s.closed {
                return;
            }
            s.queue.push_back(msg);
        }
        self.cv.notify_one();
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w();
            }
        }
    }

    /// Installs a function called after every push (to wake a ring thread).
    pub fn set_waker(&self, w: Arc<dyn Fn() + Send + Sync>) {
        if let Ok(mut g) = self.waker.lock() {
            *g = Some(w);
        }
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn pop(&self, timeout: Duration) -> Popped {
        let Ok(mut s) = self.state.lock() else {
            return Popped::Closed;
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = s.queue.pop_front() {
                return Popped::Msg(m);
            }
            if s.closed {
                return Popped::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Popped::Empty;
            }
            match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return Popped::Closed,
            }
        }
    }

    /// Marks the connection closed; pending output is still delivered by `pop`.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.cv.notify_all();
    }

    /// Drops pending output (reconnect).
    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.queue.clear();
        }
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.queue.len()).unwrap_or(0)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// A Unix socket client (dom0 tools).
    Socket,
    /// The ring of an introduced domain.
    Domain(u32),
}

/// One connection.
pub struct Conn {
    /// Who the connection speaks for.
    pub caller: Caller,
    /// Socket or domain ring.
    pub kind: ConnKind,
    /// Registered watches.
    pub watches: WatchList,
    txs: HashMap<u32, Transaction>,
    next_tx: u32,
    /// Output queue.
    pub out: Arc<Outbox>,
}

/// An introduced domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Domain id.
    pub domid: u32,
    /// Frame of the interface page, as given to `XS_INTRODUCE`.
    pub mfn: u64,
    /// Event channel port.
    pub port: u32,
    /// The domain's connection.
    pub conn: ConnId,
    /// Set by the toolstack's shutdown handling, cleared by `XS_RESUME`.
    pub shutdown: bool,
}

/// Connects introduced domains to their rings.
pub trait DomainBackend: Send + Sync {
    /// Maps the domain's interface page and binds its event channel. `Ok(None)` records
    /// the domain without a ring (no hypervisor to map from).
    fn connect(
        &self,
        domid: u32,
        mfn: u64,
        port: u32,
    ) -> Result<Option<Box<dyn RingTransport>>, XsError>;
}

/// A backend for hosts without Xen: domains are recorded, no ring is attached.
pub struct NoRings;

impl DomainBackend for NoRings {
    fn connect(&self, _: u32, _: u64, _: u32) -> Result<Option<Box<dyn RingTransport>>, XsError> {
        Ok(None)
    }
}

/// What the hypervisor says of an introduced domain (Xen's `check_domains` reads
/// `getdomaininfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomState {
    /// Running, paused or blocked.
    Running,
    /// Shut down or crashed, not yet dying (the toolstack still has it).
    Shutdown,
    /// Being destroyed.
    Dying,
    /// No such domain.
    Gone,
}

/// Work for the transport layer, produced while handling a message.
pub enum Action {
    /// Run a ring for this (domain) connection.
    StartRing(ConnId, Box<dyn RingTransport>),
    /// Stop the ring of this connection (domain released).
    StopRing(ConnId),
    /// A `live-update` control command asked the daemon to save state and restart.
    LiveUpdate,
}

/// Side effects of one request, applied after its reply is queued.
#[derive(Default)]
struct Effects {
    fired: Vec<Fired>,
    special: Vec<(&'static str, u32)>,
    actions: Vec<Action>,
    after: Vec<Vec<u8>>,
}

/// Daemon-wide counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Requests handled.
    pub requests: u64,
    /// Error replies sent.
    pub errors: u64,
    /// Watch events queued.
    pub events: u64,
}

/// The daemon's whole state.
pub struct Core {
    /// The tree.
    pub store: Store,
    conns: BTreeMap<ConnId, Conn>,
    domains: BTreeMap<u32, Domain>,
    next_conn: ConnId,
    backend: Arc<dyn DomainBackend>,
    /// Counters.
    pub stats: Stats,
}

fn onearg(payload: &[u8]) -> Result<&str, XsError> {
    // Exactly one NUL, at the end.
    match split_strings(payload) {
        Some(v) if v.len() == 1 => Ok(v[0]),
        _ => Err(XsError::Inval),
    }
}

/// Parses a domain id as Xen's `parse_domid` does: decimal, below the reserved range.
fn parse_domid(s: &str) -> Result<u32, XsError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    let v: u64 = s.parse().map_err(|_| XsError::Inval)?;
    if v >= DOMID_FIRST_RESERVED as u64 {
        return Err(XsError::Inval);
    }
    Ok(v as u32)
}

/// C's `atoi`: leading decimal digits, 0 if none.
fn atoi(s: &str) -> u64 {
    s.bytes()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |a, b| {
            a.saturating_mul(10).saturating_add((b - b'0') as u64)
        })
}

const OK: &[u8] = b"OK\0";

impl Core {
    /// A fresh daemon state with Xen's initial tree.
    pub fn new(quotas: Quotas, backend: Arc<dyn DomainBackend>) -> Self {
        Self::with_store(Store::new(quotas), backend)
    }

    /// A daemon state around an existing store (restore).
    pub fn with_store(store: Store, backend: Arc<dyn DomainBackend>) -> Self {
        Core {
            store,
            conns: BTreeMap::new(),
            domains: BTreeMap::new(),
            next_conn: 1,
            backend,
            stats: Stats::default(),
        }
    }

    /// Registers a dom0 socket connection (`readonly` for the read-only socket).
    pub fn add_socket_conn(&mut self, readonly: bool) -> (ConnId, Arc<Outbox>) {
        let caller = Caller {
            readonly,
            ..Caller::DOM0
        };
        self.add_conn(caller, ConnKind::Socket)
    }

    fn add_conn(&mut self, caller: Caller, kind: ConnKind) -> (ConnId, Arc<Outbox>) {
        let id = self.next_conn;
        self.next_conn += 1;
        let out = Arc::new(Outbox::default());
        self.conns.insert(
            id,
            Conn {
                caller,
                kind,
                watches: WatchList::default(),
                txs: HashMap::new(),
                next_tx: 1,
                out: out.clone(),
            },
        );
        (id, out)
    }

    /// Forgets a connection (socket closed): its watches and transactions go with it.
    pub fn remove_conn(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            c.out.close();
        }
    }

    /// A connection, if it exists.
    pub fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// Number of open connections.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Introduced domains.
    pub fn domains(&self) -> impl Iterator<Item = &Domain> {
        self.domains.values()
    }

    /// Re-creates a domain connection from saved state (no `@introduceDomain` event).
    pub fn restore_domain(
        &mut self,
        domid: u32,
        mfn: u64,
        port: u32,
        target: Option<u32>,
        watches: Vec<Watch>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut caller = Caller::guest(domid);
        caller.target = target;
        let (id, _) = self.add_conn(caller, ConnKind::Domain(domid));
        if let Some(c) = self.conns.get_mut(&id) {
            for w in watches {
                let _ = c.watches.add(w);
            }
        }
        self.domains.insert(
            domid,
            Domain {
                domid,
                mfn,
                port,
                conn: id,
                shutdown: false,
            },
        );
        match self.backend.connect(domid, mfn, port) {
            Ok(Some(t)) => actions.push(Action::StartRing(id, t)),
            Ok(None) => {}
            Err(e) => xlog!(Level::Error, Some(domid), "cannot reconnect ring: {e}"),
        }
        actions
    }

    /// Connects the local domain's own ring (dom0's kernel: Xen's `dom0_init`): a
    /// privileged connection of domain 0. No `@introduceDomain` fires for it.
    pub fn connect_local(&mut self, t: Box<dyn RingTransport>) -> (ConnId, Vec<Action>) {
        let (id, _) = self.add_conn(Caller::DOM0, ConnKind::Domain(0));
        xlog!(Level::Info, Some(0), "local ring connected");
        (id, vec![Action::StartRing(id, t)])
    }

    /// Xen's `check_domains` (on `VIRQ_DOM_EXC`): `state` tells what became of each
    /// introduced domain (`None`: unknown, left alone). A domain dying or gone is
    /// released: its connection closes, the nodes it owns are removed (Xen's
    /// `domain_tree_remove`; what dom0 owns below its path stays, for the toolstack's
    /// `xs_rm`) and `@releaseDomain` fires. A domain newly shut down or crashed fires
    /// `@releaseDomain` once (unless a release fired anyway).
    pub fn check_domains(&mut self, mut state: impl FnMut(u32) -> Option<DomState>) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut notify = false;
        let mut released = false;
        let ids: Vec<u32> = self.domains.keys().copied().collect();
        for domid in ids {
            match state(domid) {
                None | Some(DomState::Running) => {}
                Some(DomState::Shutdown) => {
                    if let Some(d) = self.domains.get_mut(&domid) {
                        if !d.shutdown {
                            d.shutdown = true;
                            notify = true;
                        }
                    }
                }
                Some(s @ (DomState::Dying | DomState::Gone)) => {
                    xlog!(Level::Info, Some(domid), "{s:?}: released");
                    let (a, fired) = self.release_domain(domid);
                    actions.extend(a);
                    self.fire(&fired);
                    self.fire_special(RELEASE_DOMAIN, domid);
                    released = true;
                }
            }
        }
        if notify && !released {
            self.fire_special(RELEASE_DOMAIN, 0);
        }
        actions
    }

    /// Forgets an introduced domain (Xen's `destroy_domain`): its connection and the
    /// nodes it owns. The caller fires the returned events, then `@releaseDomain`.
    fn release_domain(&mut self, domid: u32) -> (Vec<Action>, Vec<Fired>) {
        let Some(d) = self.domains.remove(&domid) else {
            return (Vec::new(), Vec::new());
        };
        self.remove_conn(d.conn);
        let fired = self.remove_orphans(domid);
        (vec![Action::StopRing(d.conn)], fired)
    }

    /// Removes the nodes `domid` owns (Xen 4.17 without `--keep-orphans`), each with
    /// its subtree, as an rm by dom0 would.
    fn remove_orphans(&mut self, domid: u32) -> Vec<Fired> {
        if self.store.owned_by(domid) == 0 {
            return Vec::new();
        }
        let mut paths: Vec<String> = self
            .store
            .nodes()
            .filter(|(_, n)| n.perms.owner_id() == domid)
            .map(|(p, _)| p.clone())
            .collect();
        paths.sort();
        let mut fired = Vec::new();
        let mut last: Option<String> = None;
        for p in paths {
            // Below a path removed already.
            if last.as_ref().is_some_and(|l| {
                p.starts_with(l.as_str()) && p.as_bytes().get(l.len()) == Some(&b'/')
            }) {
                continue;
            }
            match self.store.rm(None, &Caller::DOM0, &p) {
                Ok(f) => fired.extend(f),
                Err(e) => xlog!(Level::Warn, Some(domid), "cannot remove orphan {p}: {e}"),
            }
            last = Some(p);
        }
        fired
    }

    /// Handles one request from connection `id`: the reply and any watch events are
    /// queued on the outboxes; transport work is returned.
    pub fn handle(&mut self, id: ConnId, msg: &Message) -> Vec<Action> {
        let Some(conn) = self.conns.get(&id) else {
            return Vec::new();
        };
        let caller = conn.caller;
        let out = conn.out.clone();
        self.stats.requests += 1;
        let h = msg.hdr;
        let ty = MsgType::from_u32(h.ty);
        let mut fx = Effects::default();
        let result = match ty {
            None | Some(MsgType::WatchEvent) | Some(MsgType::Error) => Err(XsError::NoSys),
            Some(t) => self.dispatch(id, caller, t, msg, &mut fx),
        };
        let name = ty.map_or("UNKNOWN", |t| t.name());
        match result {
            Ok(payload) if payload.len() <= PAYLOAD_MAX => {
                xlog!(Level::Debug, Some(caller.domid), "{name} ok");
                out.push(encode(h.ty, h.req_id, h.tx_id, &payload));
            }
            r => {
                let e = r.err().unwrap_or(XsError::TooBig);
                self.stats.errors += 1;
                xlog!(Level::Debug, Some(caller.domid), "{name} -> {e}");
                let mut p = e.name().as_bytes().to_vec();
                p.push(0);
                out.push(encode(MsgType::Error as u32, h.req_id, h.tx_id, &p));
            }
        }
        for m in fx.after {
            out.push(m);
        }
        self.fire(&fx.fired);
        for (node, domid) in fx.special {
            self.fire_special(node, domid);
        }
        fx.actions
    }

    fn dispatch(
        &mut self,
        id: ConnId,
        caller: Caller,
        ty: MsgType,
        msg: &Message,
        fx: &mut Effects,
    ) -> Result<Vec<u8>, XsError> {
        use MsgType::*;
        let p = &msg.payload[..];
        let tx_id = msg.hdr.tx_id;
        let privileged_only = matches!(
            ty,
            Control | Introduce | Release | IsDomainIntroduced | Resume | SetTarget
        );
        if privileged_only && !caller.privileged {
            return Err(XsError::Acces);
        }
        let modifies = matches!(ty, Write | Mkdir | Rm | SetPerms);
        if modifies && caller.readonly {
            return Err(XsError::RoFs);
        }
        let uses_tx = !matches!(ty, Watch | Unwatch);
        let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
        if uses_tx && tx_id != 0 && !conn.txs.contains_key(&tx_id) {
            return Err(XsError::NoEnt);
        }
        // Take the transaction out while the store works on it.
        let mut tx = if uses_tx && tx_id != 0 && ty != TransactionEnd {
            conn.txs.remove(&tx_id)
        } else {
            None
        };
        let r = self.dispatch_store(id, caller, ty, p, tx.as_mut(), tx_id, fx);
        if let (Some(t), Some(c)) = (tx, self.conns.get_mut(&id)) {
            c.txs.insert(tx_id, t);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_store(
        &mut self,
        id: ConnId,
        caller: Caller,
        ty: MsgType,
        p: &[u8],
        tx: Option<&mut Transaction>,
        tx_id: u32,
        fx: &mut Effects,
    ) -> Result<Vec<u8>, XsError> {
        use MsgType::*;
        let store = &mut self.store;
        match ty {
            Read => store.read(tx, &caller, onearg(p)?),
            Directory => {
                let (_, children) = store.directory(tx, &caller, onearg(p)?)?;
                Ok(join_strings(&children))
            }
            DirectoryPart => {
                let v = split_strings(p)
                    .filter(|v| v.len() == 2)
                    .ok_or(XsError::Inval)?;
                let (gen, children) = store.directory(tx, &caller, v[0])?;
                Ok(directory_part(gen, &children, atoi(v[1]) as usize))
            }
            GetPerms => Ok(join_strings(
                &store.get_perms(tx, &caller, onearg(p)?)?.to_strings(),
            )),
            Write => {
                let nul = p.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
                let path = std::str::from_utf8(&p[..nul]).map_err(|_| XsError::Inval)?;
                fx.fired
                    .extend(store.write(tx, &caller, path, &p[nul + 1..])?);
                log_change(&caller, "write", path);
                Ok(OK.to_vec())
            }
            Mkdir => {
                let path = onearg(p)?;
                fx.fired.extend(store.mkdir(tx, &caller, path)?);
                log_change(&caller, "mkdir", path);
                Ok(OK.to_vec())
            }
            Rm => {
                let path = onearg(p)?;
                fx.fired.extend(store.rm(tx, &caller, path)?);
                log_change(&caller, "rm", path);
                Ok(OK.to_vec())
            }
            SetPerms => {
                let v = split_strings(p)
                    .filter(|v| v.len() >= 2)
                    .ok_or(XsError::Inval)?;
                let perms = Perms::parse(&v[1..])?;
                fx.fired.extend(store.set_perms(tx, &caller, v[0], perms)?);
                log_change(&caller, "set_perms", v[0]);
                Ok(OK.to_vec())
            }
            Watch => {
                let v = split_strings(p)
                    .filter(|v| v.len() == 2)
                    .ok_or(XsError::Inval)?;
                let w = crate::watch::Watch::new(&caller, v[0], v[1])?;
                let max = store.quotas.max_watches;
                let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                if conn
                    .watches
                    .iter()
                    .any(|x| x.path == w.path && x.token == w.token)
                {
                    return Err(XsError::Exist);
                }
                if !caller.privileged && conn.watches.len() >= max {
                    return Err(XsError::NoSpc);
                }
                // Xen fires a new watch once, right after the reply.
                let ev = join_strings(&[w.client_path(), &w.token]);
                conn.watches.add(w)?;
                fx.after.push(encode(MsgType::WatchEvent as u32, 0, 0, &ev));
                Ok(OK.to_vec())
            }
            Unwatch => {
                let v = split_strings(p)
                    .filter(|v| v.len() == 2)
                    .ok_or(XsError::Inval)?;
                let path = crate::store::canonicalize(&caller, v[0], true)?;
                let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                conn.watches.remove(&path, v[1])?;
                Ok(OK.to_vec())
            }
            TransactionStart => {
                if tx_id != 0 {
                    return Err(XsError::Busy);
                }
                let max = store.quotas.max_transactions;
                let t = store.tx_start();
                let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                if !caller.privileged && conn.txs.len() >= max {
                    return Err(XsError::NoSpc);
                }
                let mut tid = conn.next_tx;
                while tid == 0 || conn.txs.contains_key(&tid) {
                    tid = tid.wrapping_add(1);
                }
                conn.next_tx = tid.wrapping_add(1);
                conn.txs.insert(tid, t);
                Ok(format!("{tid}\0").into_bytes())
            }
            TransactionEnd => {
                let arg = onearg(p)?;
                if arg != "T" && arg != "F" {
                    return Err(XsError::Inval);
                }
                let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                let t = conn.txs.remove(&tx_id).ok_or(XsError::NoEnt)?;
                if arg == "T" {
                    fx.fired.extend(self.store.tx_commit(t, &caller)?);
                }
                Ok(OK.to_vec())
            }
            Introduce => {
                let v = split_strings(p)
                    .filter(|v| v.len() >= 3)
                    .ok_or(XsError::Inval)?;
                let domid = parse_domid(v[0])?;
                let mfn = atoi(v[1]);
                let port = atoi(v[2]);
                if port == 0 || port > u32::MAX as u64 || domid == 0 {
                    return Err(XsError::Inval);
                }
                let port = port as u32;
                if let Some(d) = self.domains.get_mut(&domid) {
                    // Re-introduction rebinds the event channel, as in Xen.
                    d.port = port;
                    return Ok(OK.to_vec());
                }
                let transport = self.backend.connect(domid, mfn, port)?;
                let (cid, _) = self.add_conn(Caller::guest(domid), ConnKind::Domain(domid));
                self.domains.insert(
                    domid,
                    Domain {
                        domid,
                        mfn,
                        port,
                        conn: cid,
                        shutdown: false,
                    },
                );
                if let Some(t) = transport {
                    fx.actions.push(Action::StartRing(cid, t));
                }
                xlog!(
                    Level::Info,
                    Some(domid),
                    "introduced (mfn {mfn:#x}, port {port})"
                );
                fx.special.push((INTRODUCE_DOMAIN, domid));
                Ok(OK.to_vec())
            }
            Release => {
                let domid = parse_domid(onearg(p)?)?;
                if domid == 0 {
                    return Err(XsError::Inval);
                }
                if !self.domains.contains_key(&domid) {
                    return Err(XsError::NoEnt);
                }
                xlog!(Level::Info, Some(domid), "released");
                let (actions, fired) = self.release_domain(domid);
                fx.actions.extend(actions);
                fx.fired.extend(fired);
                fx.special.push((RELEASE_DOMAIN, domid));
                Ok(OK.to_vec())
            }
            GetDomainPath => {
                let domid = parse_domid(onearg(p)?)?;
                Ok(format!("{}\0", domain_path(domid)).into_bytes())
            }
            IsDomainIntroduced => {
                let s = onearg(p)?;
                let domid = if s == DOMID_SELF.to_string() {
                    DOMID_SELF
                } else {
                    parse_domid(s)?
                };
                let yes = domid == DOMID_SELF || domid == 0 || self.domains.contains_key(&domid);
                Ok(if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            Resume => {
                let domid = parse_domid(onearg(p)?)?;
                if domid == 0 {
                    return Err(XsError::Inval);
                }
                let d = self.domains.get_mut(&domid).ok_or(XsError::NoEnt)?;
                d.shutdown = false;
                Ok(OK.to_vec())
            }
            SetTarget => {
                let v = split_strings(p)
                    .filter(|v| v.len() >= 2)
                    .ok_or(XsError::Inval)?;
                let domid = parse_domid(v[0])?;
                let target = parse_domid(v[1])?;
                let d = self.domains.get(&domid).ok_or(XsError::NoEnt)?.conn;
                if !self.domains.contains_key(&target) {
                    return Err(XsError::NoEnt);
                }
                if let Some(c) = self.conns.get_mut(&d) {
                    c.caller.target = Some(target);
                }
                Ok(OK.to_vec())
            }
            ResetWatches => {
                let conn = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                conn.watches.clear();
                conn.txs.clear();
                Ok(OK.to_vec())
            }
            Control => self.control(p, &mut fx.actions),
            WatchEvent | Error => Err(XsError::NoSys),
        }
    }

    fn control(&mut self, p: &[u8], actions: &mut Vec<Action>) -> Result<Vec<u8>, XsError> {
        let v = split_strings(p).ok_or(XsError::Inval)?;
        let reply = |s: &str| Ok(format!("{s}\0").into_bytes());
        match v.first().copied() {
            Some("check") => match self.store.check() {
                Ok(()) => reply("OK"),
                Err(e) => {
                    xlog!(Level::Error, None, "store check failed: {e}");
                    Err(XsError::Io)
                }
            },
            Some("help") => reply("check\nhelp\nlog\nprint <string>\nquota\nlive-update\n"),
            Some("print") => {
                xlog!(Level::Warn, None, "control: {}", v[1..].join(" "));
                reply("OK")
            }
            Some("log") => {
                let l = v
                    .get(1)
                    .and_then(|s| crate::log::Level::parse(s))
                    .ok_or(XsError::Inval)?;
                crate::log::set_level(l);
                reply("OK")
            }
            Some("quota") => {
                let q = self.store.quotas;
                reply(&format!(
                    "nodes {}\nnode-size {}\nwatches {}\ntransactions {}\nperms {}\n",
                    q.max_nodes, q.max_node_size, q.max_watches, q.max_transactions, q.max_perms
                ))
            }
            Some("live-update") => {
                actions.push(Action::LiveUpdate);
                reply("OK")
            }
            _ => Err(XsError::Inval),
        }
    }

    /// Delivers watch events for changes.
    fn fire(&mut self, fired: &[Fired]) {
        if fired.is_empty() {
            return;
        }
        for c in self.conns.values() {
            for f in fired {
                if !f.permitted(&c.caller) {
                    continue;
                }
                for w in c.watches.iter() {
                    if w.matches(f) {
                        c.out.push(encode(
                            MsgType::WatchEvent as u32,
                            0,
                            0,
                            &join_strings(&[w.event_path(&f.path), &w.token]),
                        ));
                        self.stats.events += 1;
                    }
                }
            }
        }
    }

    /// Fires the watches on a special node (`@introduceDomain`, `@releaseDomain`): only
    /// connections that may read the special node hear of it.
    fn fire_special(&mut self, node: &str, _domid: u32) {
        let perms = match self.store.get_raw(node) {
            Some(n) => n.perms.clone(),
            None => return,
        };
        for c in self.conns.values() {
            if perms.access_for(&c.caller) & READ == 0 {
                continue;
            }
            for w in c.watches.iter().filter(|w| w.path == node) {
                c.out.push(encode(
                    MsgType::WatchEvent as u32,
                    0,
                    0,
                    &join_strings(&[node, &w.token]),
                ));
                self.stats.events += 1;
            }
        }
    }

    /// Resets a domain connection after the guest requested a reconnect.
    pub fn reset_conn(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.watches.clear();
            c.txs.clear();
            c.out.clear();
        }
    }

    /// Every connection's watches (for saving state).
    pub fn watches_of(&self, id: ConnId) -> Vec<Watch> {
        self.conns
            .get(&id)
            .map(|c| c.watches.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The stub-domain target of a connection.
    pub fn target_of(&self, id: ConnId) -> Option<u32> {
        self.conns.get(&id).and_then(|c| c.caller.target)
    }

    /// Socket connection ids (for shutdown).
    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }
}

fn log_change(caller: &Caller, op: &str, path: &str) {
    if !caller.privileged {
        xlog!(Level::Info, Some(caller.domid), "{op} {path}");
    }
}

/// Builds an `XS_DIRECTORY_PART` reply: the generation, then as many child names from
/// byte `off` of the child list as fit, with an extra NUL once the list is complete.
fn directory_part(gen: u64, children: &[String], off: usize) -> Vec<u8> {
    let blob = join_strings(children);
    let mut out = format!("{gen}\0").into_bytes();
    if off >= blob.len() {
        out.push(0);
        return out;
    }
    let maxlen = PAYLOAD_MAX - out.len() - 1;
    let mut len = 0;
    let rest = &blob[off..];
    while len < rest.len() {
        let n = rest[len..]
            .iter()
            .position(|&b| b == 0)
            .map_or(rest.len() - len, |i| i + 1);
        if len + n > maxlen {
            break;
        }
        len += n;
    }
    out.extend_from_slice(&rest[..len]);
    if len == rest.len() {
        out.push(0);
    }
    out
}
