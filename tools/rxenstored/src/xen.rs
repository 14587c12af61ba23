//! The backend in a Linux dom0 (Xen's `xenstored_domain.c`): an introduced domain's
//! ring is mapped through its grant reference 1 (`GNTTAB_RESERVED_XENSTORE`, gntdev),
//! else a foreign map of the introduced gfn (privcmd); its port is bound with
//! `/dev/xen/evtchn`. dom0's own ring is the page its kernel allocated (xenfs:
//! `/proc/xen/xsd_kva`, port in `/proc/xen/xsd_port`, bound to the same domain).
//! `VIRQ_DOM_EXC` and `getdomaininfo` tell when domains go away.

use crate::core::{DomState, DomainBackend};
use crate::ring::{EventChannel, Interface, InterfacePage, RingTransport, SharedRing, CONNECTED};
use crate::wire::XsError;
use rxen_abi::domctl::{XEN_DOMINF_DYING, XEN_DOMINF_SHUTDOWN};
use rxen_ctrl::evtchn::Evtchn;
use rxen_ctrl::foreignmemory::{self, Mapping};
use rxen_ctrl::gnttab::{Gnttab, GrantMapping};
use rxen_ctrl::xc::Xc;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The dom0 kernel's ring page (xenfs).
pub const XSD_KVA: &str = "/proc/xen/xsd_kva";
/// The dom0 kernel's xenstore port, as text (xenfs).
pub const XSD_PORT: &str = "/proc/xen/xsd_port";
/// `GNTTAB_RESERVED_XENSTORE`: the grant a toolstack seeds with the ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;
/// `VIRQ_DOM_EXC`: a domain shut down or went away.
pub const VIRQ_DOM_EXC: u32 = 3;
/// The privileged domain's device, whose presence selects this backend.
pub const PRIVCMD: &str = "/dev/xen/privcmd";

/// Parses `/proc/xen/xsd_port` as Xen's `xenbus_evtchn` does (`strtoul(s, 0, 0)`:
/// decimal, or hex after `0x`), refusing 0, junk and ports above 2^31.
pub fn parse_xsd_port(text: &str) -> Option<u32> {
    let t = text.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok()?,
        None if t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok()?,
        None => return None,
    };
    (v != 0 && v < 1 << 31).then_some(v)
}

/// What `getdomaininfo`'s flags say of a domain (shut down includes crashed).
pub fn dom_state_of(flags: u32) -> DomState {
    if flags & XEN_DOMINF_DYING != 0 {
        DomState::Dying
    } else if flags & XEN_DOMINF_SHUTDOWN != 0 {
        DomState::Shutdown
    } else {
        DomState::Running
    }
}

/// An event channel of its own `/dev/xen/evtchn` file (so each ring thread waits on
/// its own), plus an eventfd for local wake-ups.
pub struct XenEvtchn {
    dev: Mutex<Evtchn>,
    fd: RawFd,
    port: u32,
    wake: OwnedFd,
}

impl XenEvtchn {
    fn with(bind: impl FnOnce(&Evtchn) -> rxen_ctrl::Result<u32>) -> Result<Self, String> {
        let dev = Evtchn::open().map_err(|e| e.to_string())?;
        let port = bind(&dev).map_err(|e| e.to_string())?;
        // SAFETY: eventfd takes no pointers; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let fd = dev.as_fd().as_raw_fd();
        Ok(XenEvtchn {
            dev: Mutex::new(dev),
            fd,
            port,
            wake,
        })
    }

    /// Binds `port` of domain `domid` (dom0 may bind its own).
    pub fn bind_interdomain(domid: u32, port: u32) -> Result<Self, String> {
        Self::with(|d| d.bind_interdomain(domid, port))
    }

    /// Binds a global VIRQ.
    pub fn bind_virq(virq: u32) -> Result<Self, String> {
        Self::with(|d| d.bind_virq(virq))
    }

    /// Waits at most `timeout` for the port to fire (true) or a wake (false).
    pub fn wait_event(&self, timeout: Duration) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: two valid pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return false;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut v = [0u8; 8];
            // SAFETY: reads 8 bytes into `v` from our eventfd.
            let _ = unsafe { libc::read(self.wake.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        }
        if fds[0].revents & libc::POLLIN == 0 {
            return false;
        }
        let Ok(mut dev) = self.dev.lock() else {
            return false;
        };
        match dev.pending() {
            Ok(p) => {
                let _ = dev.unmask(p);
                true
            }
            Err(_) => false,
        }
    }
}

impl EventChannel for XenEvtchn {
    fn notify(&self) {
        if let Ok(d) = self.dev.lock() {
            let _ = d.notify(self.port);
        }
    }

    fn wait(&self, timeout: Duration) {
        self.wait_event(timeout);
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from `one` to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

/// How a ring page is mapped (the mappings are held: dropping them unmaps).
#[allow(dead_code)]
enum Map {
    Grant(GrantMapping<'static>),
    Foreign(Mapping),
    /// An `mmap` of `/proc/xen/xsd_kva`.
    Local,
}

/// A mapped `struct xenstore_domain_interface`.
pub struct XenPage {
    ptr: *mut u8,
    map: Map,
}

// SAFETY: the page is reached only through `Interface`'s atomics, and the mapping
// objects only unmap on drop, which may happen on any thread.
unsafe impl Send for XenPage {}
// SAFETY: as above: shared access is only atomic.
unsafe impl Sync for XenPage {}

impl InterfacePage for XenPage {
    fn interface(&self) -> &Interface {
        // SAFETY: a mapped, page-aligned page of at least size_of::<Interface>()
        // bytes, alive as long as `self`; the other side changes it, and
        // `Interface` is made of atomics only.
        unsafe { &*self.ptr.cast::<Interface>() }
    }
}

impl Drop for XenPage {
    fn drop(&mut self) {
        if matches!(self.map, Map::Local) {
            // SAFETY: the page `map_local` mapped, not used after this.
            unsafe { libc::munmap(self.ptr.cast(), 4096) };
        }
    }
}

/// Maps the dom0 kernel's ring page.
fn map_local() -> Result<XenPage, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(XSD_KVA)
        .map_err(|e| format!("{XSD_KVA}: {e}"))?;
    // SAFETY: a new shared mapping of one page of the xenfs file; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap {XSD_KVA}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(XenPage {
        ptr: p.cast(),
        map: Map::Local,
    })
}

/// Tells the other side the ring is served (Xen's `introduce_domain`).
fn announce(page: &XenPage, ev: &XenEvtchn) {
    page.interface()
        .connection
        .store(CONNECTED, Ordering::Release);
    ev.notify();
}

/// dom0's own connection (Xen's `dom0_init`): the kernel's `XS_LOCAL` ring and port.
pub fn connect_local() -> Result<Box<dyn RingTransport>, String> {
    let text = std::fs::read_to_string(XSD_PORT).map_err(|e| format!("{XSD_PORT}: {e}"))?;
    let port = parse_xsd_port(&text).ok_or_else(|| format!("{XSD_PORT}: bad port {text:?}"))?;
    let page = Arc::new(map_local()?);
    let ev = Arc::new(XenEvtchn::bind_interdomain(0, port)?);
    let ring = SharedRing::new(page.clone(), ev.clone());
    announce(&page, &ev);
    Ok(Box::new(ring))
}

/// The backend over gntdev, privcmd and evtchn.
pub struct XenBackend {
    gnttab: &'static Gnttab,
    xc: Xc,
}

impl XenBackend {
    /// Opens gntdev and privcmd.
    pub fn open() -> Result<Self, String> {
        let gnttab = Gnttab::open().map_err(|e| e.to_string())?;
        let xc = Xc::open().map_err(|e| e.to_string())?;
        // One per daemon: mappings borrow it for the process's lifetime.
        Ok(XenBackend {
            gnttab: Box::leak(Box::new(gnttab)),
            xc,
        })
    }

    /// What the hypervisor says of `domid` (`None` if it could not be asked).
    pub fn state(&self, domid: u32) -> Option<DomState> {
        let id = u16::try_from(domid).ok()?;
        match self.xc.domain_info(id) {
            Ok(None) => Some(DomState::Gone),
            Ok(Some(i)) => Some(dom_state_of(i.flags)),
            Err(_) => None,
        }
    }

    fn map(&self, domid: u16, gfn: u64) -> Result<XenPage, String> {
        match self.gnttab.map(domid, GNTTAB_RESERVED_XENSTORE) {
            Ok(g) => {
                let ptr = g.ptr();
                return Ok(XenPage {
                    ptr,
                    map: Map::Grant(g),
                });
            }
            Err(e) => crate::xlog!(
                crate::log::Level::Info,
                Some(u32::from(domid)),
                "{e}; trying a foreign map of gfn {gfn:#x}"
            ),
        }
        let (mut m, errs) = foreignmemory::map(self.xc.call().privcmd(), domid, &[gfn])
            .map_err(|e| e.to_string())?;
        match errs.first() {
            Some(0) => Ok(XenPage {
                ptr: m.bytes_mut().as_mut_ptr(),
                map: Map::Foreign(m),
            }),
            e => Err(format!("foreign map of gfn {gfn:#x}: {e:?}")),
        }
    }
}

impl DomainBackend for XenBackend {
    fn connect(
        &self,
        domid: u32,
        gfn: u64,
        port: u32,
    ) -> Result<Option<Box<dyn RingTransport>>, XsError> {
        let log = |what: &str| crate::xlog!(crate::log::Level::Warn, Some(domid), "{what}");
        let id = u16::try_from(domid).map_err(|_| XsError::Inval)?;
        match self.state(domid) {
            Some(DomState::Running | DomState::Shutdown) => {}
            s => {
                log(&format!("not introduced: the domain is {s:?}"));
                return Err(XsError::Inval);
            }
        }
        let page = Arc::new(self.map(id, gfn).map_err(|e| {
            log(&e);
            XsError::Inval
        })?);
        let ev = Arc::new(XenEvtchn::bind_interdomain(domid, port).map_err(|e| {
            log(&e);
            XsError::Inval
        })?);
        let ring = SharedRing::new(page.clone(), ev.clone());
        announce(&page, &ev);
        Ok(Some(Box::new(ring)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsd_port_is_parsed_as_xen_does() {
        assert_eq!(parse_xsd_port("7\n"), Some(7));
        assert_eq!(parse_xsd_port(" 1023 "), Some(1023));
        assert_eq!(parse_xsd_port("0x10"), Some(16));
        assert_eq!(parse_xsd_port("0"), None);
        assert_eq!(parse_xsd_port(""), None);
        assert_eq!(parse_xsd_port("-1"), None);
        assert_eq!(parse_xsd_port("12abc"), None);
        assert_eq!(parse_xsd_port("99999999999"), None);
        assert_eq!(parse_xsd_port("4294967295"), None);
    }

    #[test]
    fn domain_flags_give_states() {
        assert_eq!(dom_state_of(0), DomState::Running);
        assert_eq!(
            dom_state_of(XEN_DOMINF_SHUTDOWN | (3 << 16)),
            DomState::Shutdown
        );
        assert_eq!(
            dom_state_of(XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN),
            DomState::Dying
        );
    }
}
