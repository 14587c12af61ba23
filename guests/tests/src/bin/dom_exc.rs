//! VIRQ_DOM_EXC in dom0: dom0 binds the global VIRQ (on vCPU 0; a global VIRQ on
//! another vCPU is `-EINVAL`), and when another domain shuts down and is destroyed the
//! hypervisor raises it (Xen: `domain_shutdown` and `domain_destroy` send it to the
//! domain handling global VIRQs, dom0 by default). A multi-domain guest: the host
//! starts it as dom0 beside a domU that ends after a while. Command line:
//! `timeout_ms=<ms>` (default 10000).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::xen::VIRQ_DOM_EXC;
use rxen_guest::events::{block_once, count, enable_callback_vector, TRACKED_PORTS};
use rxen_guest::hypercall::{event_channel_op, mut_ptr};
use rxen_guest::time::{map_shared_info, now, set_singleshot_timer};
use rxen_guest::xen::{evtchn, EvtchnBindVirq};
use rxen_guest::{check, check_eq, err, error, println, StartInfo};

rxen_guest::entry!(main);

fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, i64> {
    let mut b = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    // SAFETY: `b` is a valid `evtchn_bind_virq`.
    let rc = unsafe { event_channel_op(evtchn::BIND_VIRQ, mut_ptr(&mut b)) };
    if rc == 0 {
        Ok(b.port)
    } else {
        Err(rc)
    }
}

fn main(si: &StartInfo) {
    let timeout = si.arg_u64("timeout_ms").unwrap_or(10_000) * 1_000_000;
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    check_eq!(
        bind_virq(VIRQ_DOM_EXC, 1),
        Err(err::EINVAL),
        "a global VIRQ binds on vCPU 0 only"
    );
    let port = match bind_virq(VIRQ_DOM_EXC, 0) {
        Ok(port) => port,
        Err(e) => error!("EVTCHNOP_bind_virq(VIRQ_DOM_EXC): {e}"),
    };
    check_eq!(bind_virq(VIRQ_DOM_EXC, 0), Err(err::EEXIST), "bound once");
    if port as usize >= TRACKED_PORTS {
        error!("port {port} is beyond the runtime's event counters");
    }
    let rc = enable_callback_vector();
    if rc != 0 {
        error!("HVM_PARAM_CALLBACK_IRQ: {rc}");
    }
    println!("dom_exc: VIRQ_DOM_EXC on port {port}; waiting for another domain to end");
    let start = now();
    set_singleshot_timer(start + timeout);
    while count(port) == 0 && now() - start < timeout {
        block_once();
    }
    check!(
        count(port) > 0,
        "VIRQ_DOM_EXC within {} ms",
        timeout / 1_000_000
    );
    println!(
        "dom_exc: {} event(s) after {} ms",
        count(port),
        (now() - start) / 1_000_000
    );
}
