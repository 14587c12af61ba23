//! Running out of event channels, and `EVTCHNOP_reset`: bind IPIs until the 2-level
//! ABI's ports run out (`-ENOSPC`, Xen's `get_free_port`), check the hypervisor and this
//! domain go on, then `EVTCHNOP_reset` of ourselves (`DOMID_SELF`) closes every port,
//! so that the next bind gets port 1 again and sends on the old ports are `-EINVAL`.
//! A reset of another domain that does not exist is `-ESRCH`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::event_channel::{self as ec, EvtchnReset};
use rxen_guest::abi::xen::DOMID_SELF;
use rxen_guest::events::{bind_ipi, close, evtchn_op, send};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// The 2-level ABI's port space (`EVTCHN_2L_NR_CHANNELS`); port 0 is reserved.
const NR_2L_PORTS: u32 = 4096;

fn reset(dom: u16) -> i64 {
    let mut r = EvtchnReset { dom };
    // SAFETY: `r` is an `evtchn_reset`.
    unsafe { evtchn_op(ec::EVTCHNOP_RESET, &mut r) }
}

fn main(_si: &StartInfo) {
    let mut last = 0;
    let mut bound = 0u32;
    let failure = loop {
        match bind_ipi(0) {
            Ok(port) => {
                last = port;
                bound += 1;
                if bound > NR_2L_PORTS {
                    break 0;
                }
            }
            Err(e) => break e,
        }
    };
    println!("evtchn_reset: {bound} IPI ports bound (last {last}), then {failure}");
    check_eq!(failure, err::ENOSPC, "the ports run out with -ENOSPC");
    check!(
        bound > 1000 && last < NR_2L_PORTS,
        "the 2-level ABI's ports: {bound} bound, last {last}"
    );
    check_eq!(send(last), 0, "the last port works");
    check_eq!(close(last), 0, "close one");
    check_eq!(bind_ipi(0), Ok(last), "a closed port is taken again");
    check_eq!(reset(0x7fef), err::ESRCH, "reset of no such domain");
    check_eq!(reset(DOMID_SELF), 0, "EVTCHNOP_reset(DOMID_SELF)");
    check_eq!(
        send(last),
        err::EINVAL,
        "after the reset the ports are closed"
    );
    check_eq!(close(1), err::EINVAL, "port 1 closed too");
    check_eq!(bind_ipi(0), Ok(1), "binding starts at port 1 again");
}
