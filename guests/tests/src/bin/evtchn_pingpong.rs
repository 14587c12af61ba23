//! Two domains exchange events over an interdomain event channel (a multi-domain guest:
//! the host-side test starts a server and a client; not in the single-dom0 suite).
//!
//! Command line: `role=server peer=<domid> rounds=<n>` or
//! `role=client peer=<domid> rounds=<n> [port=<server's port, default: the first offered>]`; both take
//! `timeout_ms=<ms>` (default 30000) for the whole exchange. The client with `spin=1`
//! waits for each reply spinning on null hypercalls (interrupts on) instead of
//! blocking: its send must still wake the server at once, though the client's
//! hypercalls return straight into it (issue 12).
//!
//! - server: `EVTCHNOP_alloc_unbound` {DOMID_SELF, peer} first (the first port it
//!   offers the peer, which the client looks for), answers each event with `EVTCHNOP_send` on that port, `rounds` times,
//!   prints `pingpong server: port <p>, <rounds> rounds in <ns> ns`, then waits until the
//!   client has closed its end (Xen turns the server's end back into `unbound`, remote
//!   = the client) and checks it saw exactly `rounds` events.
//! - client: `EVTCHNOP_bind_interdomain` {peer, port}, retried every 1 ms for up to 5 s
//!   (the server may not have allocated yet); then `rounds` times: send, block until the
//!   reply has arrived; prints `pingpong: <rounds> round trips, mean <ns> ns` (parsed by
//!   the benchmark); then closes its port and checks `EVTCHNOP_status` says closed.
//!
//! Both also check Xen's answers to misuse (Xen 4.17 `common/event_channel.c`; the
//! reason is next to each check).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND,
};
use rxen_guest::abi::xen::{DomId, DOMID_SELF};
use rxen_guest::events::{
    alloc_unbound, bind_interdomain, block_once, close, count, send, sleep_until, status,
    TRACKED_PORTS,
};
use rxen_guest::time::{map_shared_info, now, set_singleshot_timer};
use rxen_guest::xen::SIF_PRIVILEGED;
use rxen_guest::{check, check_eq, err, error, println, StartInfo};

rxen_guest::entry!(main);

const MS: u64 = 1_000_000;
/// How long the client retries binding.
const BIND_TIMEOUT: u64 = 5_000 * MS;
/// A domain id in the ordinary range (below DOMID_FIRST_RESERVED) that no domain has.
/// (Not 0x7ff0: that is DOMID_SELF, which Xen resolves to the caller.)
const NO_SUCH_DOMAIN: DomId = 0x7fef;
/// A port number nobody allocated in these small domains.
const UNUSED_PORT: u32 = 60;

struct Args {
    peer: DomId,
    rounds: u32,
    timeout: u64,
    privileged: bool,
    /// The client spins on null hypercalls while it waits for a reply.
    spin: bool,
}

fn main(si: &StartInfo) {
    let role = si.arg_value("role");
    let (Some(peer), Some(rounds)) = (si.arg_u64("peer"), si.arg_u64("rounds")) else {
        error!(
            "usage: role=server|client peer=<domid> rounds=<n> (got {:?})",
            si.cmdline()
        );
    };
    let (Ok(peer), Ok(rounds)) = (DomId::try_from(peer), u32::try_from(rounds)) else {
        error!("peer or rounds out of range");
    };
    let args = Args {
        peer,
        rounds,
        timeout: si.arg_u64("timeout_ms").unwrap_or(30_000) * MS,
        privileged: si.flags() & SIF_PRIVILEGED != 0,
        spin: si.arg_u64("spin").unwrap_or(0) != 0,
    };
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    match role {
        Some("server") => {
            // Before anything else allocates a port: the client binds to our first one.
            let port = match alloc_unbound(DOMID_SELF, peer) {
                Ok(p) => p,
                Err(e) => error!("EVTCHNOP_alloc_unbound(remote d{peer}): {e}"),
            };
            println!("pingpong server: offering port {port} to d{peer}");
            rxen_guest::events::set_up_timer_events();
            server(&args, port);
        }
        Some("client") => {
            rxen_guest::events::set_up_timer_events();
            let rport = si.arg_u64("port").map(|p| p as u32);
            client(&args, rport);
        }
        _ => error!("role must be server or client (got {:?})", si.cmdline()),
    }
}

/// Spins on null hypercalls, interrupts on, until `port` has seen more than `seen`
/// events; ERROR after `deadline`.
fn spin_for_event(port: u32, seen: u32, deadline: u64) {
    rxen_guest::cpu::sti();
    while count(port) <= seen {
        if now() >= deadline {
            rxen_guest::cpu::cli();
            error!("timed out spinning for event {} on port {port}", seen + 1);
        }
        // SAFETY: XENVER_version takes no pointer.
        unsafe { rxen_guest::hypercall::xen_version(0, 0) };
    }
    rxen_guest::cpu::cli();
}

/// Blocks until `port` has seen more than `seen` events; ERROR after `deadline` (a
/// single-shot timer at the deadline must be set, so that the block ends).
fn wait_event(port: u32, seen: u32, deadline: u64) {
    while count(port) <= seen {
        if now() >= deadline {
            error!("timed out waiting for event {} on port {port}", seen + 1);
        }
        block_once();
    }
}

fn server(a: &Args, port: u32) {
    if port as usize >= TRACKED_PORTS {
        error!("port {port} is beyond the runtime's event counters");
    }
    // Unbound and offered to the peer, unless the client was quick and is bound already.
    match status(DOMID_SELF, port) {
        Ok(s) if s.status == EVTCHNSTAT_INTERDOMAIN => {
            check_eq!(s.interdomain_dom(), a.peer, "bound by the peer");
        }
        Ok(s) => {
            check_eq!(s.status, EVTCHNSTAT_UNBOUND, "our port starts unbound");
            check_eq!(s.unbound_dom(), a.peer, "offered to the peer");
        }
        Err(e) => error!("EVTCHNOP_status({port}): {e}"),
    }
    // A second, unbound port: a send on it is dropped silently (evtchn_send:
    // ECS_UNBOUND -> 0); once closed, the port is ECS_FREE and send and close fail with
    // -EINVAL. It is offered to ourselves, not to the peer: a client still scanning for
    // the offered port would otherwise bind this one, and our close below would leave
    // its end unbound.
    match alloc_unbound(DOMID_SELF, DOMID_SELF) {
        Ok(spare) => {
            check_eq!(send(spare), 0, "send on an unbound port is dropped");
            check_eq!(close(spare), 0, "close an unbound port");
            check_eq!(send(spare), err::EINVAL, "send on a closed port");
            check_eq!(close(spare), err::EINVAL, "close a closed port");
        }
        Err(e) => error!("second EVTCHNOP_alloc_unbound: {e}"),
    }

    let deadline = now() + a.timeout;
    set_singleshot_timer(deadline);
    let mut first = 0;
    for i in 0..a.rounds {
        wait_event(port, i, deadline);
        if i == 0 {
            first = now();
        }
        check_eq!(send(port), 0, "reply {i}");
    }
    let elapsed = now() - first;
    println!(
        "pingpong server: port {port}, {} rounds in {elapsed} ns",
        a.rounds
    );

    // The client closes its end: ours becomes unbound again, offered to the client.
    loop {
        match status(DOMID_SELF, port) {
            Ok(s) if s.status == EVTCHNSTAT_UNBOUND => {
                check_eq!(s.unbound_dom(), a.peer, "unbound again, to the client");
                break;
            }
            Ok(s) => check_eq!(s.status, EVTCHNSTAT_INTERDOMAIN, "bound while in use"),
            Err(e) => error!("EVTCHNOP_status({port}): {e}"),
        };
        if now() >= deadline {
            error!("the client did not close its port");
        }
        sleep_until(now() + MS);
    }
    check_eq!(count(port), a.rounds, "exactly one event per round");
    check_eq!(close(port), 0, "close our port");
    match status(DOMID_SELF, port) {
        Ok(s) => {
            check_eq!(s.status, EVTCHNSTAT_CLOSED, "closed");
        }
        Err(e) => error!("EVTCHNOP_status({port}): {e}"),
    }
}

fn client(a: &Args, rport: Option<u32>) {
    let start = now();
    let (lport, rport) = match rxen_guest::events::bind_offered(a.peer, rport, BIND_TIMEOUT) {
        Ok(ports) => ports,
        Err(e) => error!("EVTCHNOP_bind_interdomain(d{}): {e}", a.peer),
    };
    println!(
        "pingpong client: d{} port {rport} bound to our port {lport} after {} us",
        a.peer,
        (now() - start) / 1000
    );
    if lport as usize >= TRACKED_PORTS {
        error!("port {lport} is beyond the runtime's event counters");
    }
    match status(DOMID_SELF, lport) {
        Ok(s) => {
            check_eq!(s.status, EVTCHNSTAT_INTERDOMAIN, "bound");
            check_eq!(s.interdomain_dom(), a.peer, "to the peer");
            check_eq!(s.interdomain_port(), rport, "to its port");
        }
        Err(e) => error!("EVTCHNOP_status({lport}): {e}"),
    }

    let deadline = now() + a.timeout;
    set_singleshot_timer(deadline);
    // evtchn_bind_interdomain sets the new local port pending (notifications sent to
    // the unbound remote port before the bind must not be lost): one event first.
    wait_event(lport, 0, deadline);
    let baseline = count(lport);
    check_eq!(baseline, 1, "the bound port starts with one event pending");
    let mut total = 0;
    for i in 0..a.rounds {
        let t0 = now();
        check_eq!(send(lport), 0, "send {i}");
        if a.spin {
            spin_for_event(lport, baseline + i, deadline);
        } else {
            wait_event(lport, baseline + i, deadline);
        }
        total += now() - t0;
    }
    let mean = total.checked_div(u64::from(a.rounds)).unwrap_or(0);
    let null = rxen_guest::hypercall::null_hypercall_ns(1000);
    check!(null.is_some(), "xen_version calls failed");
    println!(
        "pingpong: {} round trips, mean {mean} ns, null hypercall {} ns",
        a.rounds,
        null.unwrap_or(0)
    );
    check_eq!(
        count(lport),
        baseline + a.rounds,
        "exactly one reply per round"
    );

    misuse(a, rport);

    check_eq!(close(lport), 0, "close our port");
    match status(DOMID_SELF, lport) {
        Ok(s) => {
            check_eq!(s.status, EVTCHNSTAT_CLOSED, "closed");
        }
        Err(e) => error!("EVTCHNOP_status({lport}): {e}"),
    }
    // ECS_FREE now: evtchn_close and evtchn_send answer -EINVAL.
    check_eq!(close(lport), err::EINVAL, "close twice");
    check_eq!(send(lport), err::EINVAL, "send on the closed port");
}

/// Misuse while our end is bound (Xen 4.17 `common/event_channel.c`).
fn misuse(a: &Args, rport: u32) {
    // evtchn_bind_interdomain: the remote channel must be ECS_UNBOUND and offered to us;
    // the server's port is ECS_INTERDOMAIN now -> -EINVAL.
    check_eq!(
        bind_interdomain(a.peer, rport),
        Err(err::EINVAL),
        "bind the same remote port twice"
    );
    // A port the peer never allocated: invalid or ECS_FREE, both -EINVAL.
    check_eq!(
        bind_interdomain(a.peer, UNUSED_PORT),
        Err(err::EINVAL),
        "bind a port not offered to us"
    );
    // rcu_lock_domain_by_any_id fails first -> -ESRCH.
    check_eq!(
        bind_interdomain(NO_SUCH_DOMAIN, rport),
        Err(err::ESRCH),
        "bind to a domain that does not exist"
    );
    check_eq!(
        alloc_unbound(NO_SUCH_DOMAIN, DOMID_SELF),
        Err(err::ESRCH),
        "alloc_unbound in a domain that does not exist"
    );
    // evtchn_send: a port not in use (ECS_FREE, or beyond the valid ports) -> -EINVAL;
    // port 0 is ECS_RESERVED -> -EINVAL.
    check_eq!(send(UNUSED_PORT), err::EINVAL, "send on an unused port");
    check_eq!(send(0), err::EINVAL, "send on port 0");
    // evtchn_close: ECS_RESERVED (port 0) and ECS_FREE -> -EINVAL.
    check_eq!(close(0), err::EINVAL, "close port 0");
    check_eq!(close(UNUSED_PORT), err::EINVAL, "close an unused port");
    if !a.privileged {
        // XSM_TARGET checks (dummy XSM: the caller must be the domain itself, its device
        // model, or the control domain) -> -EPERM for another domain's channels.
        check_eq!(
            alloc_unbound(a.peer, DOMID_SELF),
            Err(err::EPERM),
            "alloc_unbound in another domain"
        );
        check_eq!(
            status(a.peer, rport).map(|s| s.status),
            Err(err::EPERM),
            "status of another domain's port"
        );
    }
}
