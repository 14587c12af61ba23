//! `xen/include/public/event_channel.h`: `__HYPERVISOR_event_channel_op`
//! sub-ops and their arguments, channel status values, and the 2-level and
//! FIFO event channel ABIs.

use crate::xen::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `evtchn_port_t` (event_channel.h): an event channel port number.
pub type EvtchnPort = u32;

// ---------------------------------------------------------------------------
// Sub-op numbers.

/// `EVTCHNOP_bind_interdomain` (event_channel.h): [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq` (event_channel.h): [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq` (event_channel.h): [`EvtchnBindPirq`].
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close` (event_channel.h): [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send` (event_channel.h): [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status` (event_channel.h): [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound` (event_channel.h): [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi` (event_channel.h): [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu` (event_channel.h): [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask` (event_channel.h): [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset` (event_channel.h): [`EvtchnReset`].
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control` (event_channel.h): [`EvtchnInitControl`].
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (event_channel.h): [`EvtchnExpandArray`].
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (event_channel.h): [`EvtchnSetPriority`].
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// `EVTCHNOP_reset_cont` (event_channel.h; `__XEN__` only, internal
/// continuation of `EVTCHNOP_reset`, never valid from a guest).
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// `BIND_PIRQ__WILL_SHARE` (event_channel.h): `evtchn_bind_pirq.flags` bit.
pub const BIND_PIRQ__WILL_SHARE: u32 = 1;

// ---------------------------------------------------------------------------
// Status values.

/// `EVTCHNSTAT_closed` (event_channel.h): channel not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound` (event_channel.h): waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain` (event_channel.h): connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq` (event_channel.h): bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq` (event_channel.h): bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi` (event_channel.h): bound to a virtual IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

// ---------------------------------------------------------------------------
// 2-level and FIFO ABIs.

/// `EVTCHN_2L_NR_CHANNELS` (event_channel.h) for 64-bit `xen_ulong_t`:
/// `8 * 8 * 64` = 4096.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 8 * 8 * 64;

/// `EVTCHN_FIFO_PRIORITY_MAX` (event_channel.h): highest priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// `EVTCHN_FIFO_PRIORITY_DEFAULT` (event_channel.h).
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// `EVTCHN_FIFO_PRIORITY_MIN` (event_channel.h): lowest priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// `EVTCHN_FIFO_MAX_QUEUES` (event_channel.h): one queue per priority.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;

/// `event_word_t` (event_channel.h): one FIFO event word.
pub type EventWord = u32;
/// `EVTCHN_FIFO_PENDING` (event_channel.h): bit number in an event word.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// `EVTCHN_FIFO_MASKED` (event_channel.h): bit number in an event word.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// `EVTCHN_FIFO_LINKED` (event_channel.h): bit number in an event word.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// `EVTCHN_FIFO_BUSY` (event_channel.h): bit number in an event word.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// `EVTCHN_FIFO_LINK_BITS` (event_channel.h): width of the link field.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// `EVTCHN_FIFO_LINK_MASK` (event_channel.h): link field mask.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// `EVTCHN_FIFO_NR_CHANNELS` (event_channel.h): 2^17 ports.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// `struct evtchn_fifo_control_block` (event_channel.h): per-vCPU FIFO
/// control block (in a guest page registered with `EVTCHNOP_init_control`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnFifoControlBlock {
    /// Bit `q` set when queue `q` has events.
    pub ready: u32,
    /// Reserved.
    pub _rsvd: u32,
    /// Head port of each priority queue.
    pub head: [EvtchnPort; EVTCHN_FIFO_MAX_QUEUES],
}

// ---------------------------------------------------------------------------
// Op structures.

/// `struct evtchn_alloc_unbound` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in.
    pub dom: DomId,
    /// IN: domain allowed to connect.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    /// IN: remote domain.
    pub remote_dom: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// IN: remote (unbound) port.
    pub remote_port: EvtchnPort,
    /// OUT: local port.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: vCPU to bind to.
    pub vcpu: u32,
    /// OUT: the port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_pirq` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindPirq {
    /// IN: physical IRQ.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__*`.
    pub flags: u32,
    /// OUT: the port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindIpi {
    /// IN: vCPU to notify.
    pub vcpu: u32,
    /// OUT: the port.
    pub port: EvtchnPort,
}

/// `struct evtchn_close` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnClose {
    /// IN: port to close.
    pub port: EvtchnPort,
}

/// `struct evtchn_send` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnSend {
    /// IN: local port to send on.
    pub port: EvtchnPort,
}

/// `struct evtchn_status` (event_channel.h). The trailing union `u` is kept
/// as its 8 raw bytes; use the accessors.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnStatus {
    /// IN: domain.
    pub dom: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// IN: port.
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the channel is bound to.
    pub vcpu: u32,
    /// OUT: union `u` (`unbound`, `interdomain`, `pirq`, `virq`), raw bytes.
    pub u: [u8; 8],
}

impl EvtchnStatus {
    fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.u[off], self.u[off + 1]])
    }
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.u[off],
            self.u[off + 1],
            self.u[off + 2],
            self.u[off + 3],
        ])
    }
    /// `u.unbound.dom` (offset 0 in the union).
    pub fn unbound_dom(&self) -> DomId {
        self.u16_at(0)
    }
    /// `u.interdomain.dom` (offset 0).
    pub fn interdomain_dom(&self) -> DomId {
        self.u16_at(0)
    }
    /// `u.interdomain.port` (offset 4).
    pub fn interdomain_port(&self) -> EvtchnPort {
        self.u32_at(4)
    }
    /// `u.pirq` (offset 0).
    pub fn pirq(&self) -> u32 {
        self.u32_at(0)
    }
    /// `u.virq` (offset 0).
    pub fn virq(&self) -> u32 {
        self.u32_at(0)
    }
    /// Sets `u` to `unbound { dom }`.
    pub fn set_unbound(&mut self, dom: DomId) {
        self.u = [0; 8];
        self.u[0..2].copy_from_slice(&dom.to_le_bytes());
    }
    /// Sets `u` to `interdomain { dom, port }`.
    pub fn set_interdomain(&mut self, dom: DomId, port: EvtchnPort) {
        self.u = [0; 8];
        self.u[0..2].copy_from_slice(&dom.to_le_bytes());
        self.u[4..8].copy_from_slice(&port.to_le_bytes());
    }
    /// Sets `u` to `pirq`.
    pub fn set_pirq(&mut self, pirq: u32) {
        self.u = [0; 8];
        self.u[0..4].copy_from_slice(&pirq.to_le_bytes());
    }
    /// Sets `u` to `virq`.
    pub fn set_virq(&mut self, virq: u32) {
        self.set_pirq(virq);
    }
}

/// `struct evtchn_bind_vcpu` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    /// IN: port.
    pub port: EvtchnPort,
    /// IN: vCPU to notify.
    pub vcpu: u32,
}

/// `struct evtchn_unmask` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnUnmask {
    /// IN: port.
    pub port: EvtchnPort,
}

/// `struct evtchn_reset` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnReset {
    /// IN: domain.
    pub dom: DomId,
}

/// `struct evtchn_init_control` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnInitControl {
    /// IN: frame of the control block page.
    pub control_gfn: u64,
    /// IN: offset of the control block in that page.
    pub offset: u32,
    /// IN: vCPU.
    pub vcpu: u32,
    /// OUT: link bits (`EVTCHN_FIFO_LINK_BITS`).
    pub link_bits: u8,
    /// Padding (C `_pad[7]`).
    pub _pad: [u8; 7],
}

/// `struct evtchn_expand_array` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnExpandArray {
    /// IN: frame of a new event array page.
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority` (event_channel.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnSetPriority {
    /// IN: port.
    pub port: EvtchnPort,
    /// IN: priority (0 highest .. 15 lowest).
    pub priority: u32,
}

/// `struct evtchn_op` (event_channel.h): argument of the compat hypercall
/// `__HYPERVISOR_event_channel_op_compat`; `u` is the union of the first ten
/// op structures (largest: [`EvtchnStatus`], 24 bytes), as raw bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnOp {
    /// `EVTCHNOP_*`.
    pub cmd: u32,
    /// The op's structure, raw.
    pub u: [u8; 24],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(EVTCHNOP_ALLOC_UNBOUND, 6);
        assert_eq!(EVTCHNOP_SET_PRIORITY, 13);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
        assert_eq!(EVTCHN_FIFO_NR_CHANNELS, 131072);
        assert_eq!(EVTCHN_FIFO_LINK_MASK, 0x1ffff);
        assert_eq!(EVTCHN_FIFO_MAX_QUEUES, 16);
        assert_eq!(
            (
                EVTCHNOP_INIT_CONTROL,
                EVTCHNOP_EXPAND_ARRAY,
                EVTCHNOP_RESET_CONT
            ),
            (11, 12, 14)
        );
        assert_eq!(
            (
                EVTCHN_FIFO_PENDING,
                EVTCHN_FIFO_MASKED,
                EVTCHN_FIFO_LINKED,
                EVTCHN_FIFO_BUSY
            ),
            (31, 30, 29, 28)
        );
        assert_eq!(
            (
                EVTCHN_FIFO_PRIORITY_MAX,
                EVTCHN_FIFO_PRIORITY_DEFAULT,
                EVTCHN_FIFO_PRIORITY_MIN
            ),
            (0, 7, 15)
        );
        assert_eq!(EVTCHN_FIFO_LINK_BITS, 17);
        assert_eq!(core::mem::size_of::<EventWord>(), 4);
    }

    #[test]
    fn layouts() {
        // C: domid_t dom@0, remote_dom@2, port@4; 8.
        assert_layout!(EvtchnAllocUnbound, size = 8, { dom: 0, remote_dom: 2, port: 4 });
        // C: domid_t@0, (2 pad), remote_port@4, local_port@8; 12.
        assert_layout!(EvtchnBindInterdomain, size = 12, {
            remote_dom: 0, remote_port: 4, local_port: 8,
        });
        assert_layout!(EvtchnBindVirq, size = 12, { virq: 0, vcpu: 4, port: 8 });
        assert_layout!(EvtchnBindPirq, size = 12, { pirq: 0, flags: 4, port: 8 });
        assert_layout!(EvtchnBindIpi, size = 8, { vcpu: 0, port: 4 });
        assert_layout!(EvtchnClose, size = 4, { port: 0 });
        assert_layout!(EvtchnSend, size = 4, { port: 0 });
        // C: domid_t@0, port@4, status@8, vcpu@12, union u@16 (8, align 4); 24.
        assert_layout!(EvtchnStatus, size = 24, {
            dom: 0, port: 4, status: 8, vcpu: 12, u: 16,
        });
        assert_layout!(EvtchnBindVcpu, size = 8, { port: 0, vcpu: 4 });
        assert_layout!(EvtchnUnmask, size = 4, { port: 0 });
        assert_layout!(EvtchnReset, size = 2, { dom: 0 });
        // C: u64@0, u32 offset@8, u32 vcpu@12, u8 link_bits@16, u8 _pad[7]@17; 24.
        assert_layout!(EvtchnInitControl, size = 24, {
            control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16, _pad: 17,
        });
        assert_layout!(EvtchnExpandArray, size = 8, { array_gfn: 0 });
        assert_layout!(EvtchnSetPriority, size = 8, { port: 0, priority: 4 });
        // C: u32 cmd@0, union (24, align 4)@4; 28.
        assert_layout!(EvtchnOp, size = 28, { cmd: 0, u: 4 });
        // C: ready@0, _rsvd@4, head[16]@8; 72.
        assert_layout!(EvtchnFifoControlBlock, size = 72, { ready: 0, _rsvd: 4, head: 8 });
    }

    #[test]
    fn status_union_accessors() {
        let mut s = EvtchnStatus::default();
        s.set_interdomain(0x7ff0, 0x1234_5678);
        assert_eq!(s.u, [0xf0, 0x7f, 0, 0, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(s.interdomain_dom(), 0x7ff0);
        assert_eq!(s.interdomain_port(), 0x1234_5678);
        s.set_virq(3);
        assert_eq!(s.virq(), 3);
        assert_eq!(s.pirq(), 3);
        s.set_unbound(5);
        assert_eq!(s.unbound_dom(), 5);
    }
}
