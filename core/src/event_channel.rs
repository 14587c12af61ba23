//! Event channels, 2-level ABI: a domain's port table, VIRQ and IPI
//! bindings, unbound ports and the local half of interdomain channels, and
//! delivery into the shared-info page (pending bit, mask, per-vCPU
//! selector, `evtchn_upcall_pending`), with Xen's errnos. The two halves of
//! an interdomain channel live in the two domains' tables; the hypercall
//! layer links them (it can reach both domains). Once the domain switches
//! to the FIFO ABI ([`crate::event_fifo`]), its state lives beside the
//! table and ports go up to `EVTCHN_FIFO_NR_CHANNELS`.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::event_channel::{EVTCHN_2L_NR_CHANNELS, EVTCHN_FIFO_NR_CHANNELS};
use rxen_abi::xen::{self, NR_VIRQS};

use crate::domain::DomId;
use crate::event_fifo::Fifo;
use crate::shared_page::SharedPage;

/// What a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not allocated.
    Free,
    /// Allocated for `remote` to bind (EVTCHNOP_alloc_unbound).
    Unbound {
        /// The domain allowed to bind.
        remote: DomId,
    },
    /// A virtual IRQ.
    Virq(u32),
    /// An inter-processor event.
    Ipi,
    /// Connected to the hypervisor's console backend (the PV console of a
    /// boot-time domU, where Xen's toolstack would connect xenconsoled).
    Console,
    /// Connected to `remote_port` of `remote_dom` (which may be this domain).
    Interdomain {
        /// The other end's domain.
        remote_dom: DomId,
        /// The other end's port.
        remote_port: u32,
    },
}

/// One port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    /// Its binding.
    pub state: PortState,
    /// The vCPU notified.
    pub vcpu: u32,
}

/// A domain's event channels.
#[derive(Clone, Debug)]
pub struct EventChannels {
    ports: Vec<Port>,
    /// VIRQ -> port, per vCPU.
    virqs: Vec<[Option<u32>; NR_VIRQS as usize]>,
    /// The FIFO ABI's state, once the domain switched to it
    /// (EVTCHNOP_init_control); 2-level until then.
    fifo: Option<Box<Fifo>>,
    /// The highest port the domain may use (Xen's `max_evtchn_port`, from
    /// xl's `max_event_channels`); the ABI's own limit applies too.
    max_port: u32,
}

/// VIRQs bound per vCPU (the others are global and live on vCPU 0).
fn virq_is_per_vcpu(virq: u32) -> bool {
    matches!(
        virq,
        xen::VIRQ_TIMER | xen::VIRQ_DEBUG | xen::VIRQ_XENOPROF | xen::VIRQ_XENPMU
    )
}

/// The vCPU whose VIRQ table holds `virq` bound on a port notifying
/// `vcpu`: a global VIRQ stays registered on vCPU 0 wherever
/// EVTCHNOP_bind_vcpu sends its notifications (Xen's `virq_to_evtchn` of
/// vCPU 0 and `notify_vcpu_id`).
fn virq_table_vcpu(virq: u32, vcpu: u32) -> usize {
    if virq_is_per_vcpu(virq) {
        vcpu as usize
    } else {
        0
    }
}

impl EventChannels {
    /// The table of a domain with `nr_vcpus` vCPUs (port 0 is never used).
    pub fn new(nr_vcpus: usize) -> Self {
        Self {
            ports: vec![Port {
                state: PortState::Free,
                vcpu: 0,
            }],
            virqs: vec![[None; NR_VIRQS as usize]; nr_vcpus],
            fifo: None,
            max_port: u32::MAX,
        }
    }

    /// Limits the domain to ports up to `max_port` (Xen's
    /// `max_evtchn_port`; xl's `max_event_channels`, 1023 by default for a
    /// domU). Ports beyond it are refused with `-ENOSPC`, as Xen's
    /// `get_free_port`.
    pub fn set_max_port(&mut self, max_port: u32) {
        self.max_port = max_port;
    }

    /// The number of vCPUs the table was made for.
    pub fn nr_vcpus(&self) -> usize {
        self.virqs.len()
    }

    /// One more than the highest port the table has had (allocated or not).
    pub fn port_limit(&self) -> u32 {
        self.ports.len() as u32
    }

    /// The most ports the domain may have (port 0 included): 4096 with the
    /// 2-level ABI, 2^17 with FIFO (Xen's `max_evtchns`), and no more than
    /// its own limit allows ([`EventChannels::set_max_port`]).
    pub fn max_ports(&self) -> u32 {
        let abi = if self.fifo.is_some() {
            EVTCHN_FIFO_NR_CHANNELS
        } else {
            EVTCHN_2L_NR_CHANNELS
        };
        abi.min(self.max_port.saturating_add(1))
    }

    /// Whether the domain uses the FIFO ABI.
    pub fn is_fifo(&self) -> bool {
        self.fifo.is_some()
    }

    /// The FIFO state, in FIFO mode.
    pub fn fifo(&self) -> Option<&Fifo> {
        self.fifo.as_deref()
    }

    /// The FIFO state, in FIFO mode.
    pub fn fifo_mut(&mut self) -> Option<&mut Fifo> {
        self.fifo.as_deref_mut()
    }

    /// Switches the domain to the FIFO ABI (EVTCHNOP_reset goes back).
    pub fn switch_to_fifo(&mut self, fifo: Fifo) {
        self.fifo = Some(Box::new(fifo));
    }

    /// Back to the 2-level ABI (EVTCHNOP_reset, after every port closed):
    /// the table shrinks to the 2-level limit, so no port the 2-level
    /// bitmaps cannot hold is ever allocated again.
    pub fn leave_fifo(&mut self) {
        self.fifo = None;
        self.ports.truncate(EVTCHN_2L_NR_CHANNELS as usize);
    }

    /// The next allocated port after `after` (0 to start), in order: lets
    /// callers visit every port without allocating a list.
    pub fn next_allocated(&self, after: u32) -> Option<u32> {
        let start = after.checked_add(1)?.max(1);
        (start..self.ports.len() as u32).find(|&port| self.port(port).is_some())
    }

    /// Every allocated port, in order.
    pub fn allocated_ports(&self) -> Vec<u32> {
        (1..self.ports.len() as u32)
            .filter(|&port| self.port(port).is_some())
            .collect()
    }

    /// Xen's `get_free_port` + `evtchn_allocate_port`: the lowest free
    /// port; `-ENOSPC` past the ABI's limit or the domain's
    /// `max_evtchn_port`, `-ENOMEM` when the table cannot grow.
    fn allocate(&mut self, state: PortState, vcpu: u32) -> Result<u32, Errno> {
        let limit = self.max_ports() as usize;
        let free = self
            .ports
            .iter()
            .take(limit)
            .skip(1)
            .position(|p| p.state == PortState::Free)
            .map(|i| i + 1);
        let index = match free {
            Some(index) => index,
            None if self.ports.len() < limit => {
                self.ports.try_reserve(1).map_err(|_| errno::ENOMEM)?;
                self.ports.push(Port {
                    state: PortState::Free,
                    vcpu: 0,
                });
                self.ports.len() - 1
            }
            None => return Err(errno::ENOSPC),
        };
        if let Some(fifo) = self.fifo.as_deref_mut() {
            fifo.port_allocated(index as u32)?;
        }
        self.ports[index] = Port { state, vcpu };
        Ok(index as u32)
    }

    /// The port `port`, if allocated.
    pub fn port(&self, port: u32) -> Option<Port> {
        self.ports
            .get(port as usize)
            .copied()
            .filter(|p| p.state != PortState::Free && port != 0)
    }

    /// EVTCHNOP_bind_virq.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        if virq >= NR_VIRQS {
            return Err(errno::EINVAL);
        }
        if !virq_is_per_vcpu(virq) && vcpu != 0 {
            return Err(errno::EINVAL);
        }
        let slot = self.virqs.get(vcpu as usize).ok_or(errno::ENOENT)?;
        if slot[virq as usize].is_some() {
            return Err(errno::EEXIST);
        }
        let port = self.allocate(PortState::Virq(virq), vcpu)?;
        self.virqs[vcpu as usize][virq as usize] = Some(port);
        Ok(port)
    }

    /// EVTCHNOP_bind_ipi.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, Errno> {
        if vcpu as usize >= self.virqs.len() {
            return Err(errno::ENOENT);
        }
        self.allocate(PortState::Ipi, vcpu)
    }

    /// A port connected to the hypervisor's console backend, notifying
    /// vCPU 0.
    pub fn bind_console(&mut self) -> Result<u32, Errno> {
        self.allocate(PortState::Console, 0)
    }

    /// EVTCHNOP_alloc_unbound (the remote domain's binding comes later).
    pub fn alloc_unbound(&mut self, remote: DomId) -> Result<u32, Errno> {
        self.allocate(PortState::Unbound { remote }, 0)
    }

    /// EVTCHNOP_close: frees the port and returns what it was bound to (an
    /// interdomain port's other end must be turned back into an unbound
    /// port for this domain, as Xen does).
    pub fn close(&mut self, port: u32) -> Result<PortState, Errno> {
        let p = self.port(port).ok_or(errno::EINVAL)?;
        if let PortState::Virq(virq) = p.state {
            self.virqs[virq_table_vcpu(virq, p.vcpu)][virq as usize] = None;
        }
        self.ports[port as usize] = Port {
            state: PortState::Free,
            vcpu: 0,
        };
        Ok(p.state)
    }

    /// Checks that `port` is unbound and offered to `binder`, the only port
    /// EVTCHNOP_bind_interdomain may connect to (`-EINVAL` otherwise, as on
    /// Xen).
    pub fn check_offered(&self, port: u32, binder: DomId) -> Result<(), Errno> {
        match self.port(port).map(|p| p.state) {
            Some(PortState::Unbound { remote }) if remote == binder => Ok(()),
            _ => Err(errno::EINVAL),
        }
    }

    /// Allocates the local half of an interdomain channel to
    /// (`remote_dom`, `remote_port`), notifying vCPU 0.
    pub fn bind_interdomain(&mut self, remote_dom: DomId, remote_port: u32) -> Result<u32, Errno> {
        self.allocate(
            PortState::Interdomain {
                remote_dom,
                remote_port,
            },
            0,
        )
    }

    /// Connects the offered port `port` (checked with [`check_offered`](Self::check_offered))
    /// to (`remote_dom`, `remote_port`).
    pub fn connect(&mut self, port: u32, remote_dom: DomId, remote_port: u32) -> Result<(), Errno> {
        self.check_offered(port, remote_dom)?;
        self.ports[port as usize].state = PortState::Interdomain {
            remote_dom,
            remote_port,
        };
        Ok(())
    }

    /// The other end of a channel closed: `port`, if it is still connected
    /// to (`remote_dom`, `remote_port`), becomes unbound again for
    /// `remote_dom` (Xen's `ECS_UNBOUND` with the closer as remote).
    pub fn disconnect(&mut self, port: u32, remote_dom: DomId, remote_port: u32) {
        let connected = PortState::Interdomain {
            remote_dom,
            remote_port,
        };
        if self.port(port).map(|p| p.state) == Some(connected) {
            self.ports[port as usize].state = PortState::Unbound { remote: remote_dom };
        }
    }

    /// The next interdomain channel after port `after` (0 to start):
    /// (local port, remote domain, remote port).
    pub fn next_interdomain(&self, after: u32) -> Option<(u32, DomId, u32)> {
        let mut port = after;
        loop {
            port = self.next_allocated(port)?;
            if let Some(PortState::Interdomain {
                remote_dom,
                remote_port,
            }) = self.port(port).map(|p| p.state)
            {
                return Some((port, remote_dom, remote_port));
            }
        }
    }

    /// Every interdomain channel of this table: (local port, remote domain,
    /// remote port).
    pub fn interdomain_ports(&self) -> Vec<(u32, DomId, u32)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(port, p)| match p.state {
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } => Some((port as u32, remote_dom, remote_port)),
                _ => None,
            })
            .collect()
    }

    /// EVTCHNOP_bind_vcpu, as Xen's `evtchn_bind_vcpu`: a global VIRQ
    /// (`virq_is_global`), an unbound or an interdomain port notifies `vcpu`
    /// from now on; per-vCPU VIRQs, IPIs and anything else are `-EINVAL`.
    /// A global VIRQ stays bound on vCPU 0 (Xen's `virq_to_evtchn` of vCPU
    /// 0, where `send_global_virq` looks): only its notified vCPU changes,
    /// so it cannot be bound a second time.
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), Errno> {
        if vcpu as usize >= self.virqs.len() {
            return Err(errno::ENOENT);
        }
        let p = self.port(port).ok_or(errno::EINVAL)?;
        match p.state {
            PortState::Virq(virq) if virq_is_per_vcpu(virq) => Err(errno::EINVAL),
            PortState::Virq(_)
            | PortState::Unbound { .. }
            | PortState::Interdomain { .. }
            | PortState::Console => {
                self.ports[port as usize].vcpu = vcpu;
                Ok(())
            }
            PortState::Ipi | PortState::Free => Err(errno::EINVAL),
        }
    }

    /// The port bound to `virq` on `vcpu`.
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<u32> {
        self.virqs
            .get(vcpu as usize)?
            .get(virq as usize)
            .copied()
            .flatten()
    }
}

/// Byte offset of `evtchn_pending` in the shared-info page.
const PENDING_AT: usize = core::mem::offset_of!(xen::SharedInfo, evtchn_pending);
/// Byte offset of `evtchn_mask` in the shared-info page.
const MASK_AT: usize = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);

/// Whether `port` has a bit in the 2-level bitmaps (4096 ports): every
/// index into the shared-info page is checked against it, so a port of
/// another ABI never reaches past the bitmaps.
fn in_bitmap(port: u32) -> bool {
    port < EVTCHN_2L_NR_CHANNELS
}

/// Sets `port` pending in the shared-info page, with one atomic bit
/// operation as Xen's `evtchn_2l_set_pending`. Returns the selector word to
/// signal to the notified vCPU when the port was not pending before and is
/// not masked; `None` when nothing more is due (a masked event only sets
/// its pending bit) or the port has no bit.
pub fn set_pending(page: &SharedPage<'_>, port: u32) -> Option<usize> {
    if !in_bitmap(port) {
        return None;
    }
    if page.test_and_set_bit(PENDING_AT, port as usize)? {
        return None;
    }
    (!page.test_bit(MASK_AT, port as usize)?).then_some(port as usize / 64)
}

/// EVTCHNOP_unmask (Xen's `evtchn_2l_unmask`): clears the mask bit.
/// Returns the selector word to signal when the port was masked and is
/// pending (unmasking delivers it, as on Xen).
pub fn unmask(page: &SharedPage<'_>, port: u32) -> Option<usize> {
    if !in_bitmap(port) {
        return None;
    }
    let was_masked = page.test_and_clear_bit(MASK_AT, port as usize)?;
    (was_masked && page.test_bit(PENDING_AT, port as usize)?).then_some(port as usize / 64)
}

/// Clears `port`'s pending bit (a closed port has nothing pending, as Xen's
/// `evtchn_2l_clear_pending`).
pub fn clear_pending(page: &SharedPage<'_>, port: u32) {
    if in_bitmap(port) {
        let _ = page.test_and_clear_bit(PENDING_AT, port as usize);
    }
}

/// Whether `port` is pending in the shared-info page.
pub fn is_pending(page: &SharedPage<'_>, port: u32) -> bool {
    in_bitmap(port) && page.test_bit(PENDING_AT, port as usize) == Some(true)
}

/// Whether `port` is masked in the shared-info page.
pub fn is_masked(page: &SharedPage<'_>, port: u32) -> bool {
    in_bitmap(port) && page.test_bit(MASK_AT, port as usize) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virq_binding_rules() {
        let mut ec = EventChannels::new(2);
        let timer0 = ec.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        assert_eq!(timer0, 1, "port 0 is never used");
        assert_eq!(ec.bind_virq(xen::VIRQ_TIMER, 0), Err(errno::EEXIST));
        assert_eq!(ec.bind_virq(xen::VIRQ_TIMER, 1), Ok(2), "per-vCPU VIRQ");
        assert_eq!(
            ec.bind_virq(xen::VIRQ_CONSOLE, 1),
            Err(errno::EINVAL),
            "global VIRQs bind on vCPU 0"
        );
        assert_eq!(ec.bind_virq(NR_VIRQS, 0), Err(errno::EINVAL));
        assert_eq!(ec.bind_virq(xen::VIRQ_TIMER, 5), Err(errno::ENOENT));
        assert_eq!(ec.virq_port(xen::VIRQ_TIMER, 1), Some(2));
        assert_eq!(
            ec.bind_vcpu(timer0, 1),
            Err(errno::EINVAL),
            "per-vCPU VIRQs do not move"
        );
        ec.close(timer0).unwrap();
        assert_eq!(ec.virq_port(xen::VIRQ_TIMER, 0), None);
        assert_eq!(ec.close(timer0), Err(errno::EINVAL));
        assert_eq!(ec.close(0), Err(errno::EINVAL));
        assert_eq!(ec.bind_ipi(0), Ok(1), "a closed port is reused");
    }

    #[test]
    fn a_global_virq_moved_to_another_vcpu_stays_bound_once() {
        let mut ev = EventChannels::new(2);
        let port = ev.bind_virq(xen::VIRQ_DOM_EXC, 0).unwrap();
        ev.bind_vcpu(port, 1).unwrap();
        assert_eq!(ev.port(port).unwrap().vcpu, 1);
        // Xen: still bound (on vCPU 0's table): a second bind is -EEXIST.
        assert_eq!(ev.bind_virq(xen::VIRQ_DOM_EXC, 0), Err(errno::EEXIST));
        assert_eq!(ev.virq_port(xen::VIRQ_DOM_EXC, 0), Some(port));
        // Closing it frees the VIRQ again.
        ev.close(port).unwrap();
        assert_eq!(ev.virq_port(xen::VIRQ_DOM_EXC, 0), None);
        assert!(ev.bind_virq(xen::VIRQ_DOM_EXC, 0).is_ok());
        // A per-vCPU VIRQ does not move.
        let timer = ev.bind_virq(xen::VIRQ_TIMER, 1).unwrap();
        assert_eq!(ev.bind_vcpu(timer, 0), Err(errno::EINVAL));
    }

    #[test]
    fn a_domain_limit_caps_the_ports_under_both_abis() {
        let mut ev = EventChannels::new(1);
        ev.set_max_port(1023);
        let mut last = 0;
        while let Ok(port) = ev.alloc_unbound(0) {
            last = port;
        }
        assert_eq!(last, 1023);
        assert_eq!(ev.alloc_unbound(0), Err(errno::ENOSPC));
        ev.switch_to_fifo(Fifo::new(1));
        assert_eq!(ev.alloc_unbound(0), Err(errno::ENOSPC));
        ev.close(5).unwrap();
        assert_eq!(ev.alloc_unbound(0), Ok(5));
    }

    #[test]
    fn after_fifo_and_reset_only_2l_ports_exist() {
        let mut ev = EventChannels::new(1);
        ev.switch_to_fifo(Fifo::new(1));
        for _ in 1..5000 {
            ev.alloc_unbound(0).unwrap();
        }
        assert!(ev.port_limit() > EVTCHN_2L_NR_CHANNELS);
        for port in ev.allocated_ports() {
            ev.close(port).unwrap();
        }
        ev.leave_fifo();
        // Every port allocated now fits the 2-level bitmaps, up to the limit.
        let mut last = 0;
        while let Ok(port) = ev.alloc_unbound(0) {
            assert!(
                port < EVTCHN_2L_NR_CHANNELS,
                "port {port} beyond the 2-level ABI"
            );
            last = port;
        }
        assert_eq!(last, EVTCHN_2L_NR_CHANNELS - 1);
        assert!(ev.port(4096).is_none() && ev.port(4999).is_none());
    }

    #[test]
    fn ports_run_out_at_the_2l_limit() {
        let mut ec = EventChannels::new(1);
        for _ in 1..EVTCHN_2L_NR_CHANNELS {
            ec.alloc_unbound(0).unwrap();
        }
        assert_eq!(ec.alloc_unbound(0), Err(errno::ENOSPC));
    }

    #[test]
    fn interdomain_halves_connect_only_to_offered_ports() {
        let (mut a, mut b) = (EventChannels::new(1), EventChannels::new(1));
        let offered = a.alloc_unbound(2).unwrap();
        let other = a.alloc_unbound(3).unwrap();
        assert_eq!(
            a.check_offered(offered, 3),
            Err(errno::EINVAL),
            "offered to 2"
        );
        assert_eq!(
            a.check_offered(other, 2),
            Err(errno::EINVAL),
            "offered to 3"
        );
        assert_eq!(a.check_offered(60, 2), Err(errno::EINVAL), "no such port");
        let local = b.bind_interdomain(1, offered).unwrap();
        a.connect(offered, 2, local).unwrap();
        assert_eq!(
            a.connect(offered, 2, local),
            Err(errno::EINVAL),
            "bound once"
        );
        assert_eq!(a.interdomain_ports(), vec![(offered, 2, local)]);
        // b closes: a's end is offered to b again.
        assert_eq!(
            b.close(local),
            Ok(PortState::Interdomain {
                remote_dom: 1,
                remote_port: offered
            })
        );
        a.disconnect(offered, 2, local);
        assert_eq!(a.check_offered(offered, 2), Ok(()));
        // A stale disconnect does not touch a port that moved on.
        a.disconnect(other, 2, 9);
        assert_eq!(a.check_offered(other, 3), Ok(()));
    }

    #[test]
    fn ports_run_out_with_enospc() {
        let mut ec = EventChannels::new(1);
        for _ in 1..EVTCHN_2L_NR_CHANNELS {
            ec.bind_ipi(0).unwrap();
        }
        assert_eq!(ec.bind_ipi(0), Err(errno::ENOSPC));
        assert_eq!(ec.alloc_unbound(1), Err(errno::ENOSPC));
        ec.close(77).unwrap();
        assert_eq!(ec.alloc_unbound(1), Ok(77), "a closed port is reused");
    }

    #[test]
    fn masked_events_only_set_pending_until_unmasked() {
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        page.test_and_set_bit(MASK_AT, 67);
        assert_eq!(set_pending(&page, 67), None, "masked: no upcall");
        assert!(is_pending(&page, 67));
        assert_eq!(
            unmask(&page, 67),
            Some(1),
            "unmasking a pending port delivers it"
        );
        assert_eq!(unmask(&page, 67), None, "not masked any more");
        assert_eq!(set_pending(&page, 67), None, "already pending: nothing new");
        assert_eq!(
            unmask(&page, 5),
            None,
            "unmasking an idle port does nothing"
        );
        assert_eq!(set_pending(&page, 5), Some(0));
        clear_pending(&page, 5);
        assert!(!is_pending(&page, 5));
    }

    #[test]
    fn ports_past_the_bitmaps_touch_nothing() {
        // A port of the FIFO ABI (>= 4096) has no 2-level bit: before the
        // check, bit 4096 of the pending bitmap was bit 0 of the mask bitmap
        // and larger ports ran past the page (issue 14, defect 2).
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        for port in [
            EVTCHN_2L_NR_CHANNELS,
            4097,
            40_000,
            EVTCHN_FIFO_NR_CHANNELS,
            u32::MAX,
        ] {
            assert_eq!(set_pending(&page, port), None);
            assert_eq!(unmask(&page, port), None);
            clear_pending(&page, port);
            assert!(!is_pending(&page, port));
            assert!(!is_masked(&page, port));
        }
        assert!(words
            .iter()
            .all(|w| w.load(core::sync::atomic::Ordering::SeqCst) == 0));
    }

    #[test]
    fn a_mask_the_guest_sets_meanwhile_is_not_lost() {
        // The guest masks ports with `lock bts` while the hypervisor unmasks
        // another port of the same word: with a read-modify-write of plain
        // bytes the guest's mask bits could vanish (issue 14, defect 11).
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        let done = std::thread::scope(|s| {
            let guest = s.spawn(|| {
                for port in 2..64 {
                    page.test_and_set_bit(MASK_AT, port);
                }
            });
            for _ in 0..20_000 {
                page.test_and_set_bit(MASK_AT, 1);
                unmask(&page, 1);
            }
            guest.join()
        });
        assert!(done.is_ok());
        assert!((2..64).all(|port| is_masked(&page, port)));
    }
}
