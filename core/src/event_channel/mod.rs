//! Event channels (Xen's common/event_channel.c): a domain's port table,
//! VIRQ and IPI bindings, unbound ports and the local half of interdomain
//! channels, and the EVTCHNOP handlers (bind, close, send, status, unmask,
//! reset...) with Xen's errnos. The two halves of an interdomain channel
//! live in the two domains' tables; the handlers link them (they reach the
//! other domain through the platform). Delivery follows the domain's ABI:
//! 2-level ([`two_level`], bits in the shared-info page) until the domain
//! switches to FIFO ([`fifo`], EVTCHNOP_init_control), whose state lives
//! beside the table and whose ports go up to `EVTCHN_FIFO_NR_CHANNELS`.
//! Everything that depends on the ABI goes through its [`PortOps`] (Xen's
//! `struct evtchn_port_ops`), chosen in one place: [`EventChannels::ops`].
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

pub mod fifo;
pub mod two_level;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use rxen_abi::xen::{self, NR_VIRQS};

use crate::domain::{DomId, Domain};
use crate::guest_handle::GuestHandle;
use crate::hypercall::shared_info::{with_vcpu_info, UPCALL_PENDING_AT};
use crate::hypercall::{from_result, Ctx, GuestEnv, Outcome, DOMID_SELF};
use crate::platform::lend_domain;
use fifo::Fifo;

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

/// What depends on a domain's event channel ABI, as Xen's
/// `struct evtchn_port_ops`: implemented once per ABI
/// ([`two_level::TwoLevelOps`], [`fifo::FifoOps`]).
/// [`EventChannels::ops`] gives a domain's current one, the only place
/// where the ABI is chosen. No method has a default: an ABI implements
/// every one (an ABI without priorities refuses them itself).
pub trait PortOps: Sync {
    /// The ABI's number of ports (Xen's `max_evtchns`).
    fn nr_channels(&self) -> u32;
    /// A port was (re)allocated (Xen's `init`): `-ENOMEM` when the ABI's
    /// state cannot grow to it.
    fn init(&self, events: &mut EventChannels, port: u32) -> Result<(), Errno>;
    /// Sets allocated port `port` pending and notifies its vCPU unless it
    /// is masked (Xen's `set_pending`).
    fn set_pending(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32);
    /// Clears `port`'s pending state (Xen's `clear_pending`, on close).
    fn clear_pending(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32);
    /// EVTCHNOP_unmask of allocated port `port`: a pending port is
    /// delivered (Xen's `unmask`).
    fn unmask(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32);
    /// Whether `port` is pending (Xen's `is_pending`).
    fn is_pending(&self, domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool;
    /// Whether `port` is masked (Xen's `is_masked`).
    fn is_masked(&self, domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool;
    /// EVTCHNOP_set_priority of allocated port `port` (Xen's
    /// `set_priority`; `-ENOSYS` for an ABI without priorities).
    fn set_priority(
        &self,
        events: &mut EventChannels,
        port: u32,
        priority: u32,
    ) -> Result<(), Errno>;
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

    /// Makes room for `nr_vcpus` vCPUs' VIRQs (a created domain's vCPUs
    /// come with `XEN_DOMCTL_max_vcpus`); never shrinks.
    pub fn grow_vcpus(&mut self, nr_vcpus: usize) {
        if nr_vcpus > self.virqs.len() {
            self.virqs.resize(nr_vcpus, [None; NR_VIRQS as usize]);
        }
    }

    /// The number of vCPUs the table was made for.
    pub fn nr_vcpus(&self) -> usize {
        self.virqs.len()
    }

    /// What the `e` debug key says of the table: ports in use, of which
    /// interdomain, unbound, VIRQ and IPI.
    pub fn usage(&self) -> alloc::string::String {
        let count =
            |kind: fn(&PortState) -> bool| self.ports.iter().filter(|p| kind(&p.state)).count();
        let total = count(|s| !matches!(s, PortState::Free));
        let inter = count(|s| matches!(s, PortState::Interdomain { .. }));
        let unbound = count(|s| matches!(s, PortState::Unbound { .. }));
        let virq = count(|s| matches!(s, PortState::Virq(_)));
        let ipi = count(|s| matches!(s, PortState::Ipi));
        alloc::format!(
            "event channels ({}): {total} ports in use: {inter} interdomain, {unbound} unbound, {virq} VIRQ, {ipi} IPI",
            if self.fifo.is_some() { "FIFO" } else { "2-level" }
        )
    }

    /// One more than the highest port the table has had (allocated or not).
    pub fn port_limit(&self) -> u32 {
        self.ports.len() as u32
    }

    /// The most ports the domain may have (port 0 included): 4096 with the
    /// 2-level ABI, 2^17 with FIFO (Xen's `max_evtchns`), and no more than
    /// its own limit allows ([`EventChannels::set_max_port`]).
    pub fn max_ports(&self) -> u32 {
        let abi = self.ops().nr_channels();
        abi.min(self.max_port.saturating_add(1))
    }

    /// The port operations of the domain's current ABI (Xen's
    /// `d->evtchn_port_ops`): FIFO once the domain switched to it, 2-level
    /// before and after EVTCHNOP_reset. Every operation whose effect
    /// depends on the ABI goes through them.
    pub fn ops(&self) -> &'static dyn PortOps {
        if self.fifo.is_some() {
            &fifo::FifoOps
        } else {
            &two_level::TwoLevelOps
        }
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
            .map(|i| i.wrapping_add(1));
        let index = match free {
            Some(index) => index,
            None if self.ports.len() < limit => {
                self.ports.try_reserve(1).map_err(|_| errno::ENOMEM)?;
                self.ports.push(Port {
                    state: PortState::Free,
                    vcpu: 0,
                });
                self.ports.len().wrapping_sub(1)
            }
            None => return Err(errno::ENOSPC),
        };
        self.ops().init(self, index as u32)?;
        *self.ports.get_mut(index).ok_or(errno::ENOSPC)? = Port { state, vcpu };
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
        if slot.get(virq as usize).is_none_or(|bound| bound.is_some()) {
            return Err(errno::EEXIST);
        }
        let port = self.allocate(PortState::Virq(virq), vcpu)?;
        if let Some(bound) = self
            .virqs
            .get_mut(vcpu as usize)
            .and_then(|slot| slot.get_mut(virq as usize))
        {
            *bound = Some(port);
        }
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
            if let Some(bound) = self
                .virqs
                .get_mut(virq_table_vcpu(virq, p.vcpu))
                .and_then(|slot| slot.get_mut(virq as usize))
            {
                *bound = None;
            }
        }
        if let Some(slot) = self.ports.get_mut(port as usize) {
            *slot = Port {
                state: PortState::Free,
                vcpu: 0,
            };
        }
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
        self.ports
            .get_mut(port as usize)
            .ok_or(errno::EINVAL)?
            .state = PortState::Interdomain {
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
        if let Some(p) = self
            .ports
            .get_mut(port as usize)
            .filter(|p| p.state == connected)
        {
            p.state = PortState::Unbound { remote: remote_dom };
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
                self.ports.get_mut(port as usize).ok_or(errno::EINVAL)?.vcpu = vcpu;
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

/// Raises `virq` on vCPU `vcpu` if the domain bound it.
pub fn raise_virq(domain: &mut Domain, vcpu: usize, virq: u32, env: &mut dyn GuestEnv) {
    if let Some(port) = domain.events.virq_port(virq, vcpu as u32) {
        deliver(domain, port, env);
    }
}

/// Ends the poll of every vCPU of `domain` that waits on `port` (Xen's
/// `evtchn_check_pollers`).
fn wake_pollers(domain: &mut Domain, port: u32) {
    for v in domain.vcpus.iter_mut() {
        if v.blocked.is_some() && v.poll_ports.contains(&port) {
            v.blocked = None;
            v.poll_ports.clear();
        }
    }
}

/// Sets `evtchn_upcall_pending` of vCPU `vcpu` (one atomic bit operation,
/// as Xen's `vcpu_mark_events_pending`; all the FIFO ABI signals) and ends
/// its block.
pub(crate) fn mark_events_pending(domain: &mut Domain, vcpu: usize, env: &mut dyn GuestEnv) {
    let was_pending = with_vcpu_info(domain, vcpu, env, |page, base| {
        page.test_and_set_bit(base + UPCALL_PENDING_AT, 0)
    })
    .flatten()
    .unwrap_or(false);
    if let Some(v) = domain.vcpus.get_mut(vcpu) {
        v.blocked = None;
        v.kick |= !was_pending;
        // As Xen's hvm_assert_evtchn_irq: the per-vCPU upcall vector is an
        // edge-triggered interrupt of the local APIC, raised when
        // `evtchn_upcall_pending` goes from 0 to 1 (the guest EOIs it).
        if let (Some(vector), false) = (v.upcall_vector, was_pending) {
            v.lapic.set_irq(vector);
        }
    }
}

/// Sets `port` pending and notifies its vCPU unless it is masked, with the
/// domain's ABI (2-level bitmap or FIFO queues).
fn deliver(domain: &mut Domain, port: u32, env: &mut dyn GuestEnv) {
    if domain.events.port(port).is_none() {
        return;
    }
    wake_pollers(domain, port);
    domain.events.ops().set_pending(domain, env, port);
}

/// As Xen looks up the target of an operation on `target`'s channels: the
/// caller itself, or (for a privileged caller only) an existing domain;
/// `-ESRCH` for no such domain comes before `-EPERM`.
fn other_domain_access(
    domain: &Domain,
    env: &mut dyn GuestEnv,
    target: DomId,
) -> Result<(), Errno> {
    if target == domain.id {
        return Ok(());
    }
    env.with_domain(target, &mut |_, _| {})?;
    if domain.privileged {
        Ok(())
    } else {
        Err(errno::EPERM)
    }
}

/// EVTCHNOP_bind_interdomain: connects a new local port to `remote_port`
/// of `remote_dom`, which must be unbound and offered to the caller
/// (`-EINVAL` otherwise; `-ESRCH` for no such domain). As Xen, the new
/// local port starts pending: notifications sent to the unbound port
/// before the bind are not lost.
fn bind_interdomain(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    remote_dom: DomId,
    remote_port: u32,
) -> Result<u32, Errno> {
    let me = domain.id;
    let remote_dom = if remote_dom == DOMID_SELF {
        me
    } else {
        remote_dom
    };
    let local = if remote_dom == me {
        domain.events.check_offered(remote_port, me)?;
        let local = domain.events.bind_interdomain(me, remote_port)?;
        domain.events.connect(remote_port, me, local)?;
        local
    } else {
        let mut offered = Err(errno::EINVAL);
        env.with_domain(remote_dom, &mut |d, _| {
            offered = d.events.check_offered(remote_port, me)
        })?;
        offered?;
        let local = domain.events.bind_interdomain(remote_dom, remote_port)?;
        let mut connected = Err(errno::ESRCH);
        let _ = env.with_domain(remote_dom, &mut |d, _| {
            connected = d.events.connect(remote_port, me, local)
        });
        if let Err(e) = connected {
            let _ = domain.events.close(local);
            return Err(e);
        }
        local
    };
    deliver(domain, local, env);
    Ok(local)
}

/// The local end `port` of a channel to (`remote_dom`, `remote_port`)
/// closed: the remote end becomes unbound for this domain again.
fn disconnect_remote(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    port: u32,
    remote_dom: DomId,
    remote_port: u32,
) {
    let me = domain.id;
    let _ = lend_domain(domain, env, remote_dom, |d, _| {
        d.events.disconnect(remote_port, me, port)
    });
}

/// A closed port has nothing pending, with the domain's ABI (Xen's
/// `evtchn_port_clear_pending` on close).
fn clear_pending(domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
    domain.events.ops().clear_pending(domain, env, port);
}

/// EVTCHNOP_reset (Xen's `evtchn_reset`): closes every port (the peers of
/// interdomain channels see their ends unbound again, nothing stays
/// pending) and returns to the 2-level ABI.
pub fn reset_event_channels(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut next = domain.events.next_allocated(0);
    while let Some(port) = next {
        next = domain.events.next_allocated(port);
        let Ok(state) = domain.events.close(port) else {
            continue;
        };
        clear_pending(domain, env, port);
        if let PortState::Interdomain {
            remote_dom,
            remote_port,
        } = state
        {
            disconnect_remote(domain, env, port, remote_dom, remote_port);
        }
    }
    domain.events.leave_fifo();
}

/// Notifies a domain's PV console port (bound to the hypervisor's console
/// backend) that input arrived in its ring; nothing without such a port.
pub fn notify_console(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut console = domain.events.next_allocated(0);
    while let Some(port) = console {
        if domain.events.port(port).map(|p| p.state) == Some(PortState::Console) {
            break;
        }
        console = domain.events.next_allocated(port);
    }
    if let Some(port) = console {
        deliver(domain, port, env);
    }
}

/// Closes every interdomain channel of a domain that is going away, so
/// that its peers see their ends unbound (Xen's `evtchn_destroy`).
pub fn close_interdomain_channels(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut next = domain.events.next_interdomain(0);
    while let Some((port, remote_dom, remote_port)) = next {
        next = domain.events.next_interdomain(port);
        let _ = domain.events.close(port);
        disconnect_remote(domain, env, port, remote_dom, remote_port);
    }
}

/// `event_channel_op(cmd, arg)`.
pub(crate) fn do_event_channel_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    match event_channel_op(ctx, args[0], args[1]) {
        // Xen's `-ERESTART`: the same call again (only a send whose peer
        // the platform could not lend returns it, before any effect).
        Err(errno::ERESTART) => {
            Outcome::continuation(rxen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP, args)
        }
        result => from_result(result),
    }
}

fn event_channel_op(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, env) = (&mut *ctx.domain, &mut *ctx.env);
    use rxen_abi::event_channel as ev;
    // Xen takes `int cmd` and copies the argument in before anything else.
    match cmd as u32 {
        ev::EVTCHNOP_BIND_VIRQ => {
            let mut op = GuestHandle::<ev::EvtchnBindVirq>::new(arg).read(env)?;
            op.port = domain.events.bind_virq(op.virq, op.vcpu)?;
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_BIND_IPI => {
            let mut op = GuestHandle::<ev::EvtchnBindIpi>::new(arg).read(env)?;
            op.port = domain.events.bind_ipi(op.vcpu)?;
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            let mut op = GuestHandle::<ev::EvtchnAllocUnbound>::new(arg).read(env)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            // Xen: only a privileged domain allocates in another domain.
            other_domain_access(domain, env, target)?;
            let remote = if op.remote_dom == DOMID_SELF {
                domain.id
            } else {
                op.remote_dom
            };
            op.port = lend_domain(domain, env, target, |d, _| d.events.alloc_unbound(remote))??;
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            let mut op = GuestHandle::<ev::EvtchnBindInterdomain>::new(arg).read(env)?;
            op.local_port = bind_interdomain(domain, env, op.remote_dom, op.remote_port)?;
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_CLOSE => {
            let op = GuestHandle::<ev::EvtchnClose>::new(arg).read(env)?;
            let state = domain.events.close(op.port)?;
            clear_pending(domain, env, op.port);
            if let PortState::Interdomain {
                remote_dom,
                remote_port,
            } = state
            {
                disconnect_remote(domain, env, op.port, remote_dom, remote_port);
            }
            Ok(0)
        }
        ev::EVTCHNOP_SEND => {
            let op = GuestHandle::<ev::EvtchnSend>::new(arg).read(env)?;
            let port = domain.events.port(op.port).ok_or(errno::EINVAL)?;
            match port.state {
                PortState::Ipi => deliver(domain, op.port, env),
                PortState::Console => {
                    if env.console_ring_kick(domain.id) {
                        deliver(domain, op.port, env);
                    }
                }
                PortState::Virq(_) => return Err(errno::EINVAL),
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    // A channel is torn down before its peer goes away; a
                    // vanished peer drops the event, as a closed port would.
                    // A peer the platform cannot lend right now (another
                    // CPU holds it: `ERESTART`) is tried again from the
                    // start ([`do_event_channel_op`]); nothing happened yet.
                    let sent =
                        lend_domain(domain, env, remote_dom, |d, e| deliver(d, remote_port, e));
                    if sent == Err(errno::ERESTART) {
                        return Err(errno::ERESTART);
                    }
                }
                // Xen drops a send on an unbound port silently.
                PortState::Unbound { .. } | PortState::Free => {}
            }
            Ok(0)
        }
        ev::EVTCHNOP_STATUS => {
            let mut op = GuestHandle::<ev::EvtchnStatus>::new(arg).read(env)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            other_domain_access(domain, env, target)?;
            let port = lend_domain(domain, env, target, |d, _| d.events.port(op.port))?;
            op.vcpu = port.map(|p| p.vcpu).unwrap_or(0);
            op.u = [0; 8];
            op.status = match port.map(|p| p.state) {
                None => {
                    let limit = lend_domain(domain, env, target, |d, _| d.events.max_ports())?;
                    if op.port >= limit {
                        return Err(errno::EINVAL);
                    }
                    ev::EVTCHNSTAT_CLOSED
                }
                Some(PortState::Unbound { remote }) => {
                    op.u[..2].copy_from_slice(&remote.to_le_bytes());
                    ev::EVTCHNSTAT_UNBOUND
                }
                Some(PortState::Virq(virq)) => {
                    op.u[..4].copy_from_slice(&virq.to_le_bytes());
                    ev::EVTCHNSTAT_VIRQ
                }
                Some(PortState::Ipi) => ev::EVTCHNSTAT_IPI,
                Some(PortState::Console) => {
                    // Connected to the hypervisor, port 0.
                    op.u[..2].copy_from_slice(&xen::DOMID_XEN.to_le_bytes());
                    ev::EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Interdomain {
                    remote_dom,
                    remote_port,
                }) => {
                    // `u.interdomain`: domid_t dom, 2 bytes of padding, port.
                    op.u[..2].copy_from_slice(&remote_dom.to_le_bytes());
                    op.u[4..].copy_from_slice(&remote_port.to_le_bytes());
                    ev::EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Free) => ev::EVTCHNSTAT_CLOSED,
            };
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_UNMASK => {
            let op = GuestHandle::<ev::EvtchnUnmask>::new(arg).read(env)?;
            domain.events.port(op.port).ok_or(errno::EINVAL)?;
            domain.events.ops().unmask(domain, env, op.port);
            Ok(0)
        }
        ev::EVTCHNOP_BIND_VCPU => {
            let op = GuestHandle::<ev::EvtchnBindVcpu>::new(arg).read(env)?;
            domain.events.bind_vcpu(op.port, op.vcpu).map(|_| 0)
        }
        // Physical IRQs and reset come later: the argument is still
        // checked first.
        ev::EVTCHNOP_BIND_PIRQ => GuestHandle::<ev::EvtchnBindPirq>::new(arg)
            .read(env)
            .and(Err(errno::ENOSYS)),
        ev::EVTCHNOP_RESET => {
            let op = GuestHandle::<ev::EvtchnReset>::new(arg).read(env)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            if target != domain.id {
                other_domain_access(domain, env, target)?;
                // Xen resets another domain's channels only while its
                // controller has it paused; rxen cannot pause a domain yet.
                return Err(errno::EINVAL);
            }
            reset_event_channels(domain, env);
            Ok(0)
        }
        ev::EVTCHNOP_INIT_CONTROL => {
            let mut op = GuestHandle::<ev::EvtchnInitControl>::new(arg).read(env)?;
            // Xen fills in link_bits before it checks anything, but copies
            // the structure back only on success.
            op.link_bits = fifo::LINK_BITS;
            let ram = domain.gfn_is_ram(op.control_gfn);
            fifo::init_control(
                &mut domain.events,
                env,
                op.vcpu,
                op.control_gfn,
                op.offset,
                ram,
            )?;
            GuestHandle::new(arg).write(env, &op).map(|_| 0)
        }
        ev::EVTCHNOP_EXPAND_ARRAY => {
            let op = GuestHandle::<ev::EvtchnExpandArray>::new(arg).read(env)?;
            let ram = domain.gfn_is_ram(op.array_gfn);
            for vcpu in fifo::expand_array(&mut domain.events, env, op.array_gfn, ram)? {
                mark_events_pending(domain, vcpu as usize, env);
            }
            Ok(0)
        }
        ev::EVTCHNOP_SET_PRIORITY => {
            let op = GuestHandle::<ev::EvtchnSetPriority>::new(arg).read(env)?;
            domain.events.port(op.port).ok_or(errno::EINVAL)?;
            let ops = domain.events.ops();
            ops.set_priority(&mut domain.events, op.port, op.priority)
                .map(|_| 0)
        }
        _ => Err(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::{expire_timers, upcall_pending, Next};
    use crate::test_support::{call, domu, evtchn, peer, ret, two_domains, FakeEnv, BAD};
    use rxen_abi::{sched, vcpu};

    #[test]
    fn the_two_level_abi_answers_through_its_port_ops() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        let ops = d.events.ops();
        assert_eq!(ops.nr_channels(), EVTCHN_2L_NR_CHANNELS);
        assert!(!ops.is_pending(&d, &mut env, port));
        assert!(!ops.is_masked(&d, &mut env, port));
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, port as usize);
        assert!(ops.is_masked(&d, &mut env, port));
        ops.set_pending(&mut d, &mut env, port);
        assert!(ops.is_pending(&d, &mut env, port));
        assert!(
            two_level::is_pending(&env.si(), port),
            "the shared-info bit"
        );
        assert!(!upcall_pending(&d, 0, &mut env), "masked: no upcall");
        ops.unmask(&mut d, &mut env, port);
        assert!(!ops.is_masked(&d, &mut env, port));
        assert!(upcall_pending(&d, 0, &mut env), "unmasking delivers it");
        ops.clear_pending(&mut d, &mut env, port);
        assert!(!ops.is_pending(&d, &mut env, port));
        assert_eq!(ops.set_priority(&mut d.events, port, 1), Err(errno::ENOSYS));
    }

    #[test]
    fn the_fifo_abi_answers_through_its_port_ops_until_reset() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        // Control block at frame 1, then one event-array page at frame 2.
        let init = ev::EvtchnInitControl {
            control_gfn: 1,
            offset: 0,
            vcpu: 0,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_INIT_CONTROL, &init),
            0
        );
        let ops = d.events.ops();
        assert_eq!(ops.nr_channels(), ev::EVTCHN_FIFO_NR_CHANNELS);
        assert!(
            ops.is_masked(&d, &mut env, port),
            "no event word yet: masked, as Xen"
        );
        let expand = ev::EvtchnExpandArray { array_gfn: 2 };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_EXPAND_ARRAY, &expand),
            0
        );
        let word_at = 2 * 4096 + u64::from(port) * 4;
        assert!(!ops.is_masked(&d, &mut env, port));
        env.put(word_at, &(1u32 << ev::EVTCHN_FIFO_MASKED));
        assert!(ops.is_masked(&d, &mut env, port));
        ops.set_pending(&mut d, &mut env, port);
        assert!(ops.is_pending(&d, &mut env, port));
        assert!(!upcall_pending(&d, 0, &mut env), "masked: no upcall");
        ops.unmask(&mut d, &mut env, port);
        assert!(!ops.is_masked(&d, &mut env, port));
        assert!(upcall_pending(&d, 0, &mut env), "unmasking queues it");
        ops.clear_pending(&mut d, &mut env, port);
        assert!(!ops.is_pending(&d, &mut env, port));
        assert_eq!(ops.set_priority(&mut d.events, port, 1), Ok(()));
        assert_eq!(
            ops.set_priority(&mut d.events, port, ev::EVTCHN_FIFO_PRIORITY_MIN + 1),
            Err(errno::EINVAL)
        );
        // EVTCHNOP_reset goes back to the 2-level operations.
        let reset = ev::EvtchnReset { dom: DOMID_SELF };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_RESET, &reset), 0);
        assert_eq!(d.events.ops().nr_channels(), EVTCHN_2L_NR_CHANNELS);
    }

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
            ec.usage(),
            "event channels (2-level): 2 ports in use: 0 interdomain, 0 unbound, 2 VIRQ, 0 IPI"
        );
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
        assert_eq!(
            ec.usage(),
            "event channels (2-level): 2 ports in use: 0 interdomain, 0 unbound, 1 VIRQ, 1 IPI"
        );
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
    fn the_upcall_vector_is_an_edge_of_the_local_apic() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.vcpus[0].upcall_vector = Some(0xF3);
        d.vcpus[0].lapic.write(crate::vlapic::reg::SVR, 0x1FF, 0);
        let port = d.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        d.vcpus[0].singleshot_deadline = Some(10);
        d.vcpus[0].blocked = Some(None);
        assert!(expire_timers(&mut d, 0, 10, &mut env));
        assert!(two_level::is_pending(&env.si(), port));
        assert_eq!(d.vcpus[0].blocked, None, "the event ends the block");
        assert_eq!(d.vcpus[0].lapic.pending_vector(), Some(0xF3));
        d.vcpus[0].lapic.acknowledge(0xF3);
        // Still pending (the guest has not cleared evtchn_upcall_pending): no new edge.
        d.vcpus[0].singleshot_deadline = Some(20);
        assert!(expire_timers(&mut d, 0, 20, &mut env));
        assert!(!d.vcpus[0].lapic.requested(0xF3));
        assert!(d.vcpus[0].lapic.in_service(0xF3));
    }

    #[test]
    fn a_running_vcpu_is_kicked_once_per_raised_upcall() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let a = d.events.bind_ipi(0).unwrap();
        let b = d.events.bind_ipi(0).unwrap();
        deliver(&mut d, a, &mut env);
        assert!(d.vcpus[0].kick, "the upcall went from 0 to 1");
        // The platform offered the upcall as the vCPU entered its guest.
        d.vcpus[0].kick = false;
        deliver(&mut d, b, &mut env);
        assert!(two_level::is_pending(&env.si(), b));
        assert!(
            !d.vcpus[0].kick,
            "an event while the upcall waits to be taken needs no kick (Xen)"
        );
        // The guest took the upcall and handled both ports.
        env.si_clear();
        deliver(&mut d, a, &mut env);
        assert!(
            d.vcpus[0].kick,
            "a new upcall once the guest cleared the last one"
        );
    }

    #[test]
    fn event_channel_ops_check_arguments_first() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_EVENT_CHANNEL_OP;
        for cmd in [
            ev::EVTCHNOP_BIND_INTERDOMAIN,
            ev::EVTCHNOP_BIND_VIRQ,
            ev::EVTCHNOP_CLOSE,
            ev::EVTCHNOP_SEND,
        ] {
            assert_eq!(
                call(&mut d, &mut env, nr, [cmd as u64, BAD, 0, 0, 0]).ret,
                ret(errno::EFAULT)
            );
        }
        env.put(0x100, &ev::EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_BIND_IPI as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        let port = env.get::<ev::EvtchnBindIpi>(0x100).port;
        // Send on the IPI: pending, upcall flagged; blocking then returns at once.
        env.put(0x200, &ev::EvtchnSend { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x200, 0, 0, 0]
            )
            .ret,
            0
        );
        assert!(upcall_pending(&d, 0, &mut env));
        let block = call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_SCHED_OP,
            [sched::SCHEDOP_BLOCK as u64, 0, 0, 0, 0],
        );
        assert_eq!(block.next, Next::Continue);
        // Sending on a port that is not open, or on a VIRQ, is refused.
        env.put(0x200, &ev::EvtchnSend { port: 999 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x200, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(0x300, &ev::EvtchnClose { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_CLOSE as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_CLOSE as u64, 0x300, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [99, 0x300, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn unmask_notifies_a_registered_vcpu_info() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        // vcpu_info registered at frame 3, offset 64.
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 64,
                rsvd: 0,
            },
        );
        let register = [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_VCPU_OP, register).ret,
            0
        );
        let port = d.events.bind_ipi(0).unwrap();
        // Masked: a send only sets the pending bit.
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, port as usize);
        env.put(0x300, &ev::EvtchnSend { port });
        let nr = xen::HYPERVISOR_EVENT_CHANNEL_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        assert!(!upcall_pending(&d, 0, &mut env));
        // Unmasking delivers it into the registered area: selector and upcall flag.
        env.put(0x300, &ev::EvtchnUnmask { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_UNMASK as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        let info: xen::VcpuInfo = env.get(3 * 4096 + 64);
        assert_eq!(info.evtchn_upcall_pending, 1);
        assert_eq!(info.evtchn_pending_sel, 1, "selector bit of word 0");
        assert!(upcall_pending(&d, 0, &mut env));
        // Nothing landed in the shared-info page's own vcpu_info slot.
        let slot = core::mem::offset_of!(xen::SharedInfo, vcpu_info);
        assert_eq!(env.si().load_u8(slot), Some(0));
    }

    /// Domain 2 (the peer) offers a port to domain 1, which binds to it:
    /// (domain 1's port, domain 2's).
    fn connect(d1: &mut Domain, env: &mut FakeEnv) -> (u32, u32) {
        use rxen_abi::event_channel as ev;
        let (d2, env2) = peer(env);
        let alloc = ev::EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(evtchn(d2, env2, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc), 0);
        let remote = env2.get::<ev::EvtchnAllocUnbound>(0x300).port;
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: remote,
            ..Default::default()
        };
        assert_eq!(evtchn(d1, env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind), 0);
        (
            env.get::<ev::EvtchnBindInterdomain>(0x300).local_port,
            remote,
        )
    }

    #[test]
    fn a_send_whose_peer_is_busy_is_made_again_and_delivered_once() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let (local, remote) = connect(&mut d1, &mut env);
        env.si_clear();
        peer(&mut env).1.si_clear();
        peer(&mut env).0.vcpus[0].blocked = Some(None);
        let send = ev::EvtchnSend { port: local };
        let args = [u64::from(ev::EVTCHNOP_SEND), 0x300, 7, 8, 9];
        env.put(0x300, &send);
        assert!(crate::hypercall::reaches_one_peer(
            xen::HYPERVISOR_EVENT_CHANNEL_OP,
            args[0]
        ));
        // The platform cannot lend the peer: the same call again, nothing done.
        env.peer_busy = true;
        let out = call(&mut d1, &mut env, xen::HYPERVISOR_EVENT_CHANNEL_OP, args);
        assert_eq!(out.next, Next::Continuation { args });
        let (d2, env2) = peer(&mut env);
        assert!(!two_level::is_pending(&env2.si(), remote));
        assert_eq!(d2.vcpus[0].blocked, Some(None), "still blocked");
        assert!(!two_level::is_pending(&env.si(), local));
        // Made again once the peer is free: delivered, and the block ends.
        env.peer_busy = false;
        let out = call(&mut d1, &mut env, xen::HYPERVISOR_EVENT_CHANNEL_OP, args);
        assert_eq!((out.ret, out.next), (0, Next::Continue));
        let (d2, env2) = peer(&mut env);
        assert!(two_level::is_pending(&env2.si(), remote));
        assert_eq!(d2.vcpus[0].blocked, None);
        // Only a send reaches one peer this way; an IPI send or any other
        // operation never gets ERESTART from a busy peer.
        env.peer_busy = true;
        let ipi = d1.events.bind_ipi(0).unwrap();
        env.si_clear();
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_SEND,
                &ev::EvtchnSend { port: ipi }
            ),
            0
        );
        assert!(two_level::is_pending(&env.si(), ipi));
        for cmd in 0..64u32 {
            let peer_op = cmd == ev::EVTCHNOP_SEND;
            assert_eq!(
                crate::hypercall::reaches_one_peer(
                    xen::HYPERVISOR_EVENT_CHANNEL_OP,
                    u64::from(cmd)
                ),
                peer_op
            );
            // Xen takes `int cmd`: the upper half is not looked at.
            assert_eq!(
                crate::hypercall::reaches_one_peer(
                    xen::HYPERVISOR_EVENT_CHANNEL_OP,
                    u64::from(cmd) | 0xffff_0000_0000
                ),
                peer_op
            );
        }
        for nr in 0..64u64 {
            if nr != xen::HYPERVISOR_EVENT_CHANNEL_OP {
                assert!(!crate::hypercall::reaches_one_peer(
                    nr,
                    u64::from(ev::EVTCHNOP_SEND)
                ));
            }
        }
    }

    #[test]
    fn interdomain_channel_connects_sends_both_ways_and_closes() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        // Domain 2 offers a port to domain 1, which binds to it: its new
        // port starts pending, as on Xen.
        let (local, offered) = connect(&mut d1, &mut env);
        assert_eq!((local, offered), (1, 1));
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: offered,
            ..Default::default()
        };
        assert!(two_level::is_pending(&env.si(), local));
        env.si_clear();
        // Binding the same remote port again: it is no longer unbound.
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            ret(errno::EINVAL)
        );
        // 1 -> 2 lands on the peer's port and wakes it.
        peer(&mut env).0.vcpus[0].blocked = Some(None);
        let send = ev::EvtchnSend { port: local };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        let (d2, env2) = peer(&mut env);
        assert!(two_level::is_pending(&env2.si(), offered));
        assert_eq!(d2.vcpus[0].blocked, None, "the event ended the block");
        assert!(!two_level::is_pending(&env.si(), local));
        // The peer's end points back at ours (its sends take the same path).
        assert_eq!(
            peer(&mut env).0.events.port(offered).map(|p| p.state),
            Some(PortState::Interdomain {
                remote_dom: 1,
                remote_port: local
            })
        );
        // Status shows the other end.
        let status = ev::EvtchnStatus {
            dom: DOMID_SELF,
            port: local,
            ..Default::default()
        };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &status), 0);
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(status.u[..2], 2u16.to_le_bytes());
        assert_eq!(status.u[4..], offered.to_le_bytes());
        // Closing our end makes the peer's end unbound for us again.
        let close = ev::EvtchnClose { port: local };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert_eq!(peer(&mut env).0.events.check_offered(offered, 1), Ok(()));
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_SEND,
                &ev::EvtchnSend { port: local }
            ),
            ret(errno::EINVAL),
            "a closed port"
        );
    }

    #[test]
    fn interdomain_abuse_gets_xen_errnos() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let bind = |remote_dom, remote_port| ev::EvtchnBindInterdomain {
            remote_dom,
            remote_port,
            ..Default::default()
        };
        // No such domain; a port never offered; a port offered to someone else.
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(9, 1)
            ),
            ret(errno::ESRCH)
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, 60)
            ),
            ret(errno::EINVAL)
        );
        let (d2, env2) = peer(&mut env);
        let port = d2.events.alloc_unbound(3).unwrap();
        let ipi = d2.events.bind_ipi(0).unwrap();
        let _ = env2;
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, port)
            ),
            ret(errno::EINVAL)
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, ipi)
            ),
            ret(errno::EINVAL),
            "an IPI port is not offered"
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, u32::MAX)
            ),
            ret(errno::EINVAL)
        );
        // An unprivileged domain allocates only in itself.
        let alloc = ev::EvtchnAllocUnbound {
            dom: 2,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
            ret(errno::EPERM)
        );
        // No such domain comes first (-ESRCH), for alloc_unbound and status.
        let nowhere = ev::EvtchnAllocUnbound {
            dom: 9,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &nowhere),
            ret(errno::ESRCH)
        );
        let theirs = ev::EvtchnStatus {
            dom: 2,
            port,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &theirs),
            ret(errno::EPERM)
        );
        let nowhere = ev::EvtchnStatus { dom: 9, ..theirs };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &nowhere),
            ret(errno::ESRCH)
        );
        // Nothing failed half-way: no local port was left allocated.
        assert_eq!(d1.events.port(1), None);
        // A privileged domain may allocate in another one.
        d1.privileged = true;
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
            0
        );
        let made = env.get::<ev::EvtchnAllocUnbound>(0x300).port;
        assert_eq!(peer(&mut env).0.events.check_offered(made, 1), Ok(()));
        // ... and read the status of another domain's port.
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &theirs), 0);
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_UNBOUND);
        assert_eq!(status.u[..2], 3u16.to_le_bytes(), "offered to domain 3");
    }

    #[test]
    fn loopback_channel_and_teardown() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let own = d1.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: DOMID_SELF,
            remote_port: own,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        env.si_clear();
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_SEND,
                &ev::EvtchnSend { port: local }
            ),
            0
        );
        assert!(two_level::is_pending(&env.si(), own));
        // A channel to the peer, then domain 1 goes away: the peer's end is
        // unbound again.
        let theirs = peer(&mut env).0.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: theirs,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        assert_eq!(
            peer(&mut env).0.events.check_offered(theirs, 1),
            Err(errno::EINVAL)
        );
        close_interdomain_channels(&mut d1, &mut env);
        assert_eq!(peer(&mut env).0.events.check_offered(theirs, 1), Ok(()));
        assert!(d1.events.interdomain_ports().is_empty());
    }

    #[test]
    fn closing_a_two_level_port_clears_its_pending_bit() {
        use rxen_abi::event_channel as ev;
        // Xen's evtchn_close calls evtchn_port_clear_pending: a port
        // allocated again must not start pending (issue 14, defect 11).
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, port as usize);
        let send = ev::EvtchnSend { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        assert!(two_level::is_pending(&env.si(), port));
        let close = ev::EvtchnClose { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert!(!two_level::is_pending(&env.si(), port));
        assert_eq!(d.events.bind_ipi(0), Ok(port), "reused");
        assert!(!two_level::is_pending(&env.si(), port));
    }

    #[test]
    fn reset_from_fifo_leaves_only_two_level_ports() {
        use rxen_abi::event_channel as ev;
        // Issue 14, defect 2, the exact sequence: FIFO, ports far past 4096,
        // EVTCHNOP_reset back to 2-level, allocate again, unmask the port
        // past the bitmaps. Before the fix the freed FIFO ports stayed
        // allocatable and the unmask indexed past the shared-info page
        // (a host panic).
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let init = ev::EvtchnInitControl {
            control_gfn: 1,
            offset: 0,
            vcpu: 0,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_INIT_CONTROL, &init),
            0
        );
        let high = 5_000;
        for expected in 1..=high {
            assert_eq!(d.events.bind_ipi(0), Ok(expected));
        }
        let reset = ev::EvtchnReset { dom: DOMID_SELF };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_RESET, &reset), 0);
        assert!(!d.events.is_fifo());
        assert_eq!(
            d.events.port_limit(),
            ev::EVTCHN_2L_NR_CHANNELS,
            "table shrunk"
        );
        for expected in 1..ev::EVTCHN_2L_NR_CHANNELS {
            assert_eq!(d.events.bind_ipi(0), Ok(expected));
        }
        assert_eq!(
            d.events.bind_ipi(0),
            Err(errno::ENOSPC),
            "2-level ports only"
        );
        for port in [ev::EVTCHN_2L_NR_CHANNELS, high - 1, high] {
            let unmask = ev::EvtchnUnmask { port };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_UNMASK, &unmask),
                ret(errno::EINVAL)
            );
            let status = ev::EvtchnStatus {
                dom: DOMID_SELF,
                port,
                ..Default::default()
            };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_STATUS, &status),
                ret(errno::EINVAL)
            );
        }
        // The last 2-level port works as any other.
        let last = ev::EVTCHN_2L_NR_CHANNELS - 1;
        let send = ev::EvtchnSend { port: last };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        assert!(two_level::is_pending(&env.si(), last));
    }

    #[test]
    fn a_global_virq_moved_to_another_vcpu_is_still_bound_once() {
        use rxen_abi::event_channel as ev;
        // Issue 14, defect 12b: Xen's evtchn_bind_vcpu only changes the
        // notified vCPU of a global VIRQ; the binding stays on vCPU 0, so a
        // second EVTCHNOP_bind_virq is -EEXIST.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let bind = ev::EvtchnBindVirq {
            virq: xen::VIRQ_CONSOLE,
            vcpu: 0,
            port: 0,
        };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind), 0);
        let port = env.get::<ev::EvtchnBindVirq>(0x300).port;
        let to_1 = ev::EvtchnBindVcpu { port, vcpu: 1 };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &to_1), 0);
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind),
            ret(errno::EEXIST),
            "bound once"
        );
        assert_eq!(d.events.virq_port(xen::VIRQ_CONSOLE, 0), Some(port));
        assert_eq!(d.events.port(port).map(|p| p.vcpu), Some(1));
        // Raised (as the platform raises global VIRQs, through vCPU 0), it
        // notifies vCPU 1.
        raise_virq(&mut d, 0, xen::VIRQ_CONSOLE, &mut env);
        assert!(upcall_pending(&d, 1, &mut env));
        assert!(!upcall_pending(&d, 0, &mut env));
        // Closed, it can be bound again.
        let close = ev::EvtchnClose { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert_eq!(d.events.virq_port(xen::VIRQ_CONSOLE, 0), None);
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind), 0);
        // IPIs do not move (Xen: -EINVAL), per-vCPU VIRQs neither.
        let ipi = d.events.bind_ipi(0).unwrap();
        let move_ipi = ev::EvtchnBindVcpu { port: ipi, vcpu: 1 };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &move_ipi),
            ret(errno::EINVAL)
        );
        let bad_vcpu = ev::EvtchnBindVcpu { port: ipi, vcpu: 9 };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &bad_vcpu),
            ret(errno::ENOENT)
        );
    }

    #[test]
    fn ports_stop_at_the_domains_max_event_channels() {
        use rxen_abi::event_channel as ev;
        // Xen's evtchn_allocate_port: `port > d->max_evtchn_port` is
        // -ENOSPC, whatever the ABI; the table never grows past it.
        for fifo in [false, true] {
            let (mut d, mut env) = (domu(), FakeEnv::new());
            d.events.set_max_port(1023);
            if fifo {
                let init = ev::EvtchnInitControl {
                    control_gfn: 1,
                    offset: 0,
                    vcpu: 0,
                    ..Default::default()
                };
                assert_eq!(
                    evtchn(&mut d, &mut env, ev::EVTCHNOP_INIT_CONTROL, &init),
                    0
                );
            }
            for expected in 1..=1023 {
                assert_eq!(d.events.bind_ipi(0), Ok(expected));
            }
            let alloc = ev::EvtchnAllocUnbound {
                dom: DOMID_SELF,
                remote_dom: DOMID_SELF,
                port: 0,
            };
            for _ in 0..10_000 {
                assert_eq!(
                    evtchn(&mut d, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
                    ret(errno::ENOSPC)
                );
            }
            assert_eq!(d.events.port_limit(), 1024, "bounded table");
            let status = ev::EvtchnStatus {
                dom: DOMID_SELF,
                port: 1024,
                ..Default::default()
            };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_STATUS, &status),
                ret(errno::EINVAL)
            );
        }
    }

    #[test]
    fn reset_closes_every_port_and_unbinds_the_peers() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let timer = d1.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        let ipi = d1.events.bind_ipi(1).unwrap();
        let theirs = peer(&mut env).0.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: theirs,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        assert!(two_level::is_pending(&env.si(), local));
        // Another domain's channels: not while it runs (Xen: only paused).
        let other = ev::EvtchnReset { dom: 2 };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &other),
            ret(errno::EPERM),
            "unprivileged"
        );
        d1.privileged = true;
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &other),
            ret(errno::EINVAL),
            "not paused"
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_RESET,
                &ev::EvtchnReset { dom: 9 }
            ),
            ret(errno::ESRCH)
        );
        let own = ev::EvtchnReset { dom: DOMID_SELF };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &own), 0);
        for port in [timer, ipi, local] {
            assert_eq!(d1.events.port(port), None, "port {port} closed");
        }
        assert!(!two_level::is_pending(&env.si(), local));
        assert_eq!(peer(&mut env).0.events.check_offered(theirs, 1), Ok(()));
        // Everything binds again from port 1.
        assert_eq!(d1.events.bind_virq(xen::VIRQ_TIMER, 0), Ok(1));
        assert!(!d1.events.is_fifo());
    }

    #[test]
    fn the_console_port_kicks_the_backend_and_is_answered() {
        use rxen_abi::event_channel as ev;
        let mut d = domu();
        let port = d.events.bind_console().unwrap();
        let mut env = FakeEnv::new();
        let send = |d: &mut Domain, env: &mut FakeEnv| {
            env.put(0x300, &ev::EvtchnSend { port });
            call(
                d,
                env,
                xen::HYPERVISOR_EVENT_CHANNEL_OP,
                [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0],
            )
            .ret
        };
        // The backend found nothing to take: no answer.
        assert_eq!(send(&mut d, &mut env), 0);
        assert_eq!(env.console_kicks, 1);
        assert!(!two_level::is_pending(&env.si(), port));
        // It took output: the guest is notified back on the same port.
        env.console_takes = true;
        assert_eq!(send(&mut d, &mut env), 0);
        assert_eq!(env.console_kicks, 2);
        assert!(two_level::is_pending(&env.si(), port));
        // Status: interdomain, to the hypervisor.
        let status = ev::EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        env.put(0x300, &status);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_EVENT_CHANNEL_OP,
                [ev::EVTCHNOP_STATUS as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(status.u[..2], xen::DOMID_XEN.to_le_bytes());
    }
}
