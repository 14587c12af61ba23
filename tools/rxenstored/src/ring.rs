//! The per-domain transport: Xen's `struct xenstore_domain_interface` (request and
//! response rings of 1024 bytes with free-running indices) plus an event channel.
//!
//! The daemon only sees the small [`RingTransport`] trait. [`SharedRing`] implements it
//! over any mapped interface page ([`InterfacePage`]) and event channel
//! ([`EventChannel`]): a grant/foreign mapping and `/dev/xen/evtchn` once dom0 exists,
//! or the in-memory [`MemoryPage`] and [`MemoryEvtchn`] used by the tests today.
//! [`GuestRing`] is the guest's side of the same protocol (for tests and benchmarks).

use std::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `XENSTORE_RING_SIZE`.
pub const RING_SIZE: usize = 1024;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`.
pub const FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`.
pub const CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`.
pub const RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_NONE`.
pub const ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_RINGIDX`: the guest's indices are inconsistent.
pub const ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: the guest sent an oversized message.
pub const ERROR_PROTO: u32 = 3;

/// Memory layout of `struct xenstore_domain_interface` (byte for byte: atomics of `u8`
/// and `u32` have the size and alignment of the plain types).
#[repr(C)]
pub struct Interface {
    /// Requests to the daemon.
    pub req: [AtomicU8; RING_SIZE],
    /// Replies and watch events.
    pub rsp: [AtomicU8; RING_SIZE],
    /// Request consumer index (daemon).
    pub req_cons: AtomicU32,
    /// Request producer index (guest).
    pub req_prod: AtomicU32,
    /// Response consumer index (guest).
    pub rsp_cons: AtomicU32,
    /// Response producer index (daemon).
    pub rsp_prod: AtomicU32,
    /// Features the server supports.
    pub server_features: AtomicU32,
    /// `CONNECTED` or `RECONNECT`.
    pub connection: AtomicU32,
    /// Error the server detected.
    pub error: AtomicU32,
    /// Event channel port (set by newer toolstacks).
    pub evtchn_port: AtomicU32,
}

impl Interface {
    /// A zeroed interface.
    pub fn new() -> Self {
        Interface {
            req: std::array::from_fn(|_| AtomicU8::new(0)),
            rsp: std::array::from_fn(|_| AtomicU8::new(0)),
            req_cons: AtomicU32::new(0),
            req_prod: AtomicU32::new(0),
            rsp_cons: AtomicU32::new(0),
            rsp_prod: AtomicU32::new(0),
            server_features: AtomicU32::new(0),
            connection: AtomicU32::new(CONNECTED),
            error: AtomicU32::new(ERROR_NONE),
            evtchn_port: AtomicU32::new(0),
        }
    }
}

impl Default for Interface {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(std::mem::size_of::<Interface>() == 2 * RING_SIZE + 8 * 4);

/// A mapped interface page.
pub trait InterfacePage: Send + Sync {
    /// The shared structure.
    fn interface(&self) -> &Interface;
}

/// An event channel bound to the guest's xenstore port.
pub trait EventChannel: Send + Sync {
    /// Signals the guest.
    fn notify(&self);
    /// Blocks until the guest signals, [`EventChannel::wake`] is called, or `timeout`.
    fn wait(&self, timeout: Duration);
    /// Wakes a thread blocked in [`EventChannel::wait`] (local, not the guest).
    fn wake(&self);
}

/// A protocol error detected on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The guest's indices say more than a ring's worth is pending.
    BadIndex,
}

/// What the daemon needs from a domain connection.
pub trait RingTransport: Send {
    /// Copies pending request bytes into `buf`; `Ok(0)` if none.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError>;
    /// Copies as much of `data` as fits into the response ring; returns the count.
    fn write(&mut self, data: &[u8]) -> Result<usize, RingError>;
    /// Signals the guest.
    fn notify(&mut self);
    /// Waits for the guest (or a local wake) at most `timeout`.
    fn wait(&mut self, timeout: Duration);
    /// A function that wakes [`RingTransport::wait`] from another thread.
    fn waker(&self) -> Arc<dyn Fn() + Send + Sync>;
    /// If the guest asked to reconnect, acknowledges it and returns true (the daemon
    /// then drops the connection's watches and transactions).
    fn take_reconnect(&mut self) -> bool;
    /// Records an error in the page for the guest to see.
    fn set_error(&mut self, err: u32);
}

/// [`RingTransport`] over an interface page and an event channel.
pub struct SharedRing {
    page: Arc<dyn InterfacePage>,
    evtchn: Arc<dyn EventChannel>,
}

impl SharedRing {
    /// Wraps a mapped page and its event channel; advertises the server features.
    pub fn new(page: Arc<dyn InterfacePage>, evtchn: Arc<dyn EventChannel>) -> Self {
        page.interface()
            .server_features
            .store(FEATURE_RECONNECTION | FEATURE_ERROR, Ordering::Release);
        SharedRing { page, evtchn }
    }
}

fn mask(i: u32) -> usize {
    i as usize & (RING_SIZE - 1)
}

impl RingTransport for SharedRing {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let intf = self.page.interface();
        let cons = intf.req_cons.load(Ordering::Relaxed);
        let prod = intf.req_prod.load(Ordering::Acquire);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > RING_SIZE {
            return Err(RingError::BadIndex);
        }
        let n = avail.min(buf.len());
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = intf.req[mask(cons.wrapping_add(k as u32))].load(Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        intf.req_cons
            .store(cons.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        let intf = self.page.interface();
        let cons = intf.rsp_cons.load(Ordering::Acquire);
        let prod = intf.rsp_prod.load(Ordering::Relaxed);
        let used = prod.wrapping_sub(cons) as usize;
        if used > RING_SIZE {
            return Err(RingError::BadIndex);
        }
        let n = (RING_SIZE - used).min(data.len());
        for (k, b) in data[..n].iter().enumerate() {
            intf.rsp[mask(prod.wrapping_add(k as u32))].store(*b, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        intf.rsp_prod
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    fn notify(&mut self) {
        self.evtchn.notify();
    }

    fn wait(&mut self, timeout: Duration) {
        self.evtchn.wait(timeout);
    }

    fn waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let e = self.evtchn.clone();
        Arc::new(move || e.wake())
    }

    fn take_reconnect(&mut self) -> bool {
        let intf = self.page.interface();
        if intf.connection.load(Ordering::Acquire) != RECONNECT {
            return false;
        }
        intf.error.store(ERROR_NONE, Ordering::Relaxed);
        intf.connection.store(CONNECTED, Ordering::Release);
        self.evtchn.notify();
        true
    }

    fn set_error(&mut self, err: u32) {
        self.page.interface().error.store(err, Ordering::Release);
        self.evtchn.notify();
    }
}

/// An interface page in ordinary memory (tests, benchmarks).
#[derive(Default)]
pub struct MemoryPage(pub Interface);

impl InterfacePage for MemoryPage {
    fn interface(&self) -> &Interface {
        &self.0
    }
}

#[derive(Default)]
struct Pending {
    to_daemon: u64,
    to_guest: u64,
}

/// An in-memory event channel between the daemon and a test "guest": each side's
/// signals are counted and waited for on a condition variable.
#[derive(Default)]
pub struct MemoryEvtchn {
    state: Mutex<Pending>,
    cv: Condvar,
}

impl MemoryEvtchn {
    /// Guest side: signal the daemon.
    pub fn guest_notify(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.to_daemon += 1;
        }
        self.cv.notify_all();
    }

    /// Guest side: wait for a signal from the daemon (at most `timeout`).
    pub fn guest_wait(&self, timeout: Duration) {
        let Ok(mut s) = self.state.lock() else { return };
        let deadline = Instant::now() + timeout;
        while s.to_guest == 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return,
            }
        }
        s.to_guest = 0;
    }
}

impl EventChannel for MemoryEvtchn {
    fn notify(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.to_guest += 1;
        }
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let Ok(mut s) = self.state.lock() else { return };
        let deadline = Instant::now() + timeout;
        while s.to_daemon == 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return,
            }
        }
        s.to_daemon = 0;
    }

    fn wake(&self) {
        self.guest_notify();
    }
}

/// The guest's end of a ring: writes requests, reads responses (the role of a guest
/// kernel's xenbus driver), over a page and an in-memory event channel.
pub struct GuestRing {
    page: Arc<MemoryPage>,
    evtchn: Arc<MemoryEvtchn>,
}

impl GuestRing {
    /// A fresh page and event channel, returned with the guest's end.
    pub fn new_pair() -> (GuestRing, Arc<MemoryPage>, Arc<MemoryEvtchn>) {
        let page = Arc::new(MemoryPage::default());
        let evtchn = Arc::new(MemoryEvtchn::default());
        (
            GuestRing {
                page: page.clone(),
                evtchn: evtchn.clone(),
            },
            page,
            evtchn,
        )
    }

    /// The shared page.
    pub fn interface(&self) -> &Interface {
        &self.page.0
    }

    /// Writes all of `data` into the request ring, waiting for space (up to `timeout`).
    pub fn send(&self, data: &[u8], timeout: Duration) -> bool {
        let intf = &self.page.0;
        let deadline = Instant::now() + timeout;
        let mut off = 0;
        while off < data.len() {
            let cons = intf.req_cons.load(Ordering::Acquire);
            let prod = intf.req_prod.load(Ordering::Relaxed);
            let space = RING_SIZE - prod.wrapping_sub(cons) as usize;
            let n = space.min(data.len() - off);
            for k in 0..n {
                intf.req[mask(prod.wrapping_add(k as u32))].store(data[off + k], Ordering::Relaxed);
            }
            fence(Ordering::SeqCst);
            intf.req_prod
                .store(prod.wrapping_add(n as u32), Ordering::Release);
            off += n;
            self.evtchn.guest_notify();
            if off < data.len() {
                if Instant::now() >= deadline {
                    return false;
                }
                self.evtchn.guest_wait(Duration::from_millis(5));
            }
        }
        true
    }

    /// Reads whatever response bytes are pending.
    pub fn recv_available(&self) -> Vec<u8> {
        let intf = &self.page.0;
        let cons = intf.rsp_cons.load(Ordering::Relaxed);
        let prod = intf.rsp_prod.load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons) as usize;
        let out = (0..n.min(RING_SIZE))
            .map(|k| intf.rsp[mask(cons.wrapping_add(k as u32))].load(Ordering::Relaxed))
            .collect::<Vec<_>>();
        fence(Ordering::SeqCst);
        intf.rsp_cons
            .store(cons.wrapping_add(out.len() as u32), Ordering::Release);
        if !out.is_empty() {
            self.evtchn.guest_notify();
        }
        out
    }

    /// Waits for a daemon signal at most `timeout`.
    pub fn wait(&self, timeout: Duration) {
        self.evtchn.guest_wait(timeout);
    }

    /// Asks the daemon to reset the connection (`XENSTORE_RECONNECT`).
    pub fn request_reconnect(&self) {
        let intf = &self.page.0;
        intf.connection.store(RECONNECT, Ordering::Release);
        self.evtchn.guest_notify();
    }
}

/// One in-memory domain: its page and event channel.
type MemoryDomain = (Arc<MemoryPage>, Arc<MemoryEvtchn>);

/// A [`DomainBackend`](crate::core::DomainBackend) over in-memory rings: tests and
/// benchmarks register a domain's page first ([`MemoryBackend::add_domain`]), then
/// `XS_INTRODUCE` (or a restart) connects the daemon to it.
#[derive(Default)]
pub struct MemoryBackend {
    domains: Mutex<std::collections::HashMap<u32, MemoryDomain>>,
}

impl MemoryBackend {
    /// Creates the shared page of `domid` and returns the guest's end of it.
    pub fn add_domain(&self, domid: u32) -> GuestRing {
        let (g, page, ev) = GuestRing::new_pair();
        if let Ok(mut d) = self.domains.lock() {
            d.insert(domid, (page, ev));
        }
        g
    }
}

impl crate::core::DomainBackend for MemoryBackend {
    fn connect(
        &self,
        domid: u32,
        _mfn: u64,
        _port: u32,
    ) -> Result<Option<Box<dyn RingTransport>>, crate::wire::XsError> {
        let d = self.domains.lock().map_err(|_| crate::wire::XsError::Io)?;
        let (page, ev) = d.get(&domid).ok_or(crate::wire::XsError::Inval)?;
        Ok(Some(Box::new(SharedRing::new(page.clone(), ev.clone()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_round_trip_with_wraparound() {
        let (guest, page, ev) = GuestRing::new_pair();
        let mut d = SharedRing::new(page, ev);
        let mut buf = [0u8; 700];
        for round in 0..10u8 {
            let data = vec![round; 700];
            assert!(guest.send(&data, Duration::from_secs(1)));
            assert_eq!(d.read(&mut buf).unwrap(), 700);
            assert_eq!(buf.to_vec(), data);
            assert_eq!(d.write(&data).unwrap(), 700);
            assert_eq!(guest.recv_available(), data);
        }
        // Response ring full: only RING_SIZE bytes fit.
        assert_eq!(d.write(&[1u8; 2000]).unwrap(), RING_SIZE);
        assert_eq!(d.write(&[1u8; 10]).unwrap(), 0);
    }

    #[test]
    fn bad_indices_are_detected() {
        let (guest, page, ev) = GuestRing::new_pair();
        let mut d = SharedRing::new(page, ev);
        guest.interface().req_prod.store(5000, Ordering::Release);
        assert_eq!(d.read(&mut [0u8; 16]), Err(RingError::BadIndex));
        guest.interface().rsp_cons.store(7000, Ordering::Release);
        assert_eq!(d.write(&[0u8; 4]), Err(RingError::BadIndex));
    }

    #[test]
    fn reconnect_handshake() {
        let (guest, page, ev) = GuestRing::new_pair();
        let mut d = SharedRing::new(page, ev);
        assert_eq!(
            guest.interface().server_features.load(Ordering::Acquire),
            FEATURE_RECONNECTION | FEATURE_ERROR
        );
        assert!(!d.take_reconnect());
        guest.request_reconnect();
        assert!(d.take_reconnect());
        assert_eq!(
            guest.interface().connection.load(Ordering::Acquire),
            CONNECTED
        );
    }
}
