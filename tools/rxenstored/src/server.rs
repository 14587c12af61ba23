//! Transports around [`Core`]: the Unix sockets of dom0 tools (read-write and
//! read-only; one reader and one writer thread per client) and one thread per domain
//! ring. Also start-up (fresh or from a state file) and orderly shutdown, which writes
//! the state file.

use crate::core::{Action, ConnId, Core, DomState, DomainBackend, Outbox, Popped};
use crate::log::Level;
use crate::ring::{RingError, RingTransport, ERROR_PROTO, ERROR_RINGIDX};
use crate::state;
use crate::store::Quotas;
use crate::wire::FrameDecoder;
use crate::xlog;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Read-write socket (Xen's `/var/run/xenstored/socket`).
    pub socket: PathBuf,
    /// Optional read-only socket (`socket_ro`; deprecated by Xen but still served).
    pub socket_ro: Option<PathBuf>,
    /// State file: loaded at start if present, written at shutdown and live update.
    pub state_file: Option<PathBuf>,
    /// Quotas for unprivileged domains.
    pub quotas: Quotas,
}

/// A running ring thread: its stop flag and handle.
type RingThread = (Arc<AtomicBool>, JoinHandle<()>);

struct Shared {
    core: Mutex<Core>,
    frozen: AtomicBool,
    stop: AtomicBool,
    live_update: AtomicBool,
    streams: Mutex<HashMap<ConnId, UnixStream>>,
    rings: Mutex<HashMap<ConnId, RingThread>>,
    conn_threads: AtomicUsize,
}

/// A running daemon.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(PathBuf, JoinHandle<()>)>,
    cfg: Config,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread must not take the whole daemon with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn run_actions(self: &Arc<Self>, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::StartRing(id, t) => self.start_ring(id, t),
                Action::StopRing(id) => {
                    if let Some((flag, h)) = lock(&self.rings).remove(&id) {
                        flag.store(true, Ordering::Release);
                        // Not joined here: we may be on that very thread.
                        drop(h);
                    }
                }
                Action::LiveUpdate => self.live_update.store(true, Ordering::Release),
            }
        }
    }

    /// Handles one decoded message under the core lock.
    fn handle(self: &Arc<Self>, id: ConnId, m: &crate::wire::Message) {
        let actions = {
            let mut core = lock(&self.core);
            if self.frozen.load(Ordering::Acquire) {
                return;
            }
            core.handle(id, m)
        };
        self.run_actions(actions);
    }

    fn start_ring(self: &Arc<Self>, id: ConnId, mut t: Box<dyn RingTransport>) {
        let Some(out) = lock(&self.core).conn(id).map(|c| c.out.clone()) else {
            return;
        };
        out.set_waker(t.waker());
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let sh = self.clone();
        let h = std::thread::spawn(move || ring_loop(sh, id, t.as_mut(), &out, &f2));
        lock(&self.rings).insert(id, (flag, h));
    }
}

fn ring_loop(
    sh: Arc<Shared>,
    id: ConnId,
    t: &mut dyn RingTransport,
    out: &Outbox,
    stop: &AtomicBool,
) {
    let mut dec = FrameDecoder::new();
    let mut pending: Option<(Vec<u8>, usize)> = None;
    let mut broken = false;
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Acquire) && !sh.stop.load(Ordering::Acquire) {
        let mut progress = false;
        if t.take_reconnect() {
            lock(&sh.core).reset_conn(id);
            dec = FrameDecoder::new();
            pending = None;
            broken = false;
            progress = true;
        }
        if !broken {
            match t.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    dec.push(&buf[..n]);
                    t.notify();
                    progress = true;
                }
                Err(RingError::BadIndex) => {
                    xlog!(Level::Warn, None, "conn {id}: bad ring indices");
                    t.set_error(ERROR_RINGIDX);
                    broken = true;
                }
            }
            loop {
                match dec.next_message() {
                    Ok(Some(m)) => sh.handle(id, &m),
                    Ok(None) => break,
                    Err(e) => {
                        xlog!(Level::Warn, None, "conn {id}: {e}");
                        t.set_error(ERROR_PROTO);
                        broken = true;
                        break;
                    }
                }
            }
        }
        let mut wrote = false;
        loop {
            if pending.is_none() {
                match out.pop(Duration::ZERO) {
                    Popped::Msg(m) => pending = Some((m, 0)),
                    _ => break,
                }
            }
            let Some((m, off)) = pending.as_mut() else {
                break;
            };
            match t.write(&m[*off..]) {
                Ok(n) => {
                    *off += n;
                    wrote |= n > 0;
                    if *off < m.len() {
                        break;
                    }
                    pending = None;
                }
                Err(_) => {
                    t.set_error(ERROR_RINGIDX);
                    broken = true;
                    break;
                }
            }
        }
        if wrote {
            t.notify();
            progress = true;
        }
        if !progress {
            t.wait(Duration::from_millis(50));
        }
    }
}

fn serve_socket(sh: Arc<Shared>, stream: UnixStream, readonly: bool) {
    let (id, out) = lock(&sh.core).add_socket_conn(readonly);
    xlog!(Level::Info, Some(0), "socket connection {id} opened");
    let (Ok(reader), Ok(writer)) = (stream.try_clone(), stream.try_clone()) else {
        lock(&sh.core).remove_conn(id);
        return;
    };
    lock(&sh.streams).insert(id, stream);
    sh.conn_threads.fetch_add(2, Ordering::AcqRel);
    let sh2 = sh.clone();
    std::thread::spawn(move || {
        writer_loop(writer, &out);
        sh2.conn_threads.fetch_sub(1, Ordering::AcqRel);
    });
    std::thread::spawn(move || {
        reader_loop(&sh, id, reader);
        lock(&sh.core).remove_conn(id);
        if let Some(s) = lock(&sh.streams).remove(&id) {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
        xlog!(Level::Info, Some(0), "socket connection {id} closed");
        sh.conn_threads.fetch_sub(1, Ordering::AcqRel);
    });
}

fn reader_loop(sh: &Arc<Shared>, id: ConnId, mut s: UnixStream) {
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => sh.handle(id, &m),
                Ok(None) => break,
                Err(e) => {
                    xlog!(Level::Warn, Some(0), "socket connection {id} dropped: {e}");
                    return;
                }
            }
        }
    }
}

fn writer_loop(mut s: UnixStream, out: &Outbox) {
    loop {
        match out.pop(Duration::from_secs(1)) {
            Popped::Msg(m) => {
                if s.write_all(&m).is_err() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    out.close();
                    return;
                }
            }
            Popped::Empty => {}
            Popped::Closed => {
                let _ = s.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    }
}

fn bind(path: &PathBuf, mode: u32) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

impl Server {
    /// Starts the daemon: restores the state file if there is one, binds the sockets
    /// and starts serving.
    pub fn start(cfg: Config, backend: Arc<dyn DomainBackend>) -> io::Result<Server> {
        let (core, actions) = match &cfg.state_file {
            Some(p) if p.exists() => {
                let data = std::fs::read(p)?;
                let r = state::restore(&data, cfg.quotas, backend)?;
                xlog!(Level::Info, None, "state restored from {}", p.display());
                r
            }
            _ => (Core::new(cfg.quotas, backend), Vec::new()),
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            frozen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live_update: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
            rings: Mutex::new(HashMap::new()),
            conn_threads: AtomicUsize::new(0),
        });
        let mut listeners = Vec::new();
        let mut socks = vec![(cfg.socket.clone(), false, 0o600)];
        if let Some(ro) = &cfg.socket_ro {
            socks.push((ro.clone(), true, 0o666));
        }
        for (path, readonly, mode) in socks {
            let l = bind(&path, mode)?;
            let sh = shared.clone();
            let h = std::thread::spawn(move || {
                for s in l.incoming() {
                    if sh.stop.load(Ordering::Acquire) {
                        break;
                    }
                    match s {
                        Ok(s) => serve_socket(sh.clone(), s, readonly),
                        Err(e) => {
                            xlog!(Level::Error, None, "accept: {e}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            });
            listeners.push((path, h));
        }
        shared.run_actions(actions);
        Ok(Server {
            shared,
            listeners,
            cfg,
        })
    }

    /// Serves the local domain's own ring (dom0's kernel) as a privileged connection.
    pub fn connect_local(&self, t: Box<dyn RingTransport>) {
        let (_, actions) = lock(&self.shared.core).connect_local(t);
        self.shared.run_actions(actions);
    }

    /// Xen's `check_domains`: releases the introduced domains `state` says are dying
    /// or gone, notes those shut down ([`Core::check_domains`]).
    pub fn check_domains(&self, state: impl FnMut(u32) -> Option<DomState>) {
        let actions = lock(&self.shared.core).check_domains(state);
        self.shared.run_actions(actions);
    }

    /// Runs `f` on the daemon state (tests, diagnostics).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut lock(&self.shared.core))
    }

    /// Whether a client asked for a live update (`XS_CONTROL live-update`).
    pub fn live_update_requested(&self) -> bool {
        self.shared.live_update.load(Ordering::Acquire)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Stops serving, closes every connection, and writes the state file (if any).
    pub fn shutdown(self) -> io::Result<()> {
        let sh = &self.shared;
        sh.stop.store(true, Ordering::Release);
        for (path, h) in self.listeners {
            let _ = UnixStream::connect(&path);
            let _ = h.join();
            let _ = std::fs::remove_file(&path);
        }
        let rings: Vec<_> = lock(&sh.rings).drain().collect();
        for (_, (flag, h)) in rings {
            flag.store(true, Ordering::Release);
            let _ = h.join();
        }
        let result = {
            let core = lock(&sh.core);
            sh.frozen.store(true, Ordering::Release);
            match &self.cfg.state_file {
                Some(p) => state::save_to(&core, p),
                None => Ok(()),
            }
        };
        for (_, s) in lock(&sh.streams).drain() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        {
            let mut core = lock(&sh.core);
            for id in core.conn_ids() {
                core.remove_conn(id);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while sh.conn_threads.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        result
    }
}
