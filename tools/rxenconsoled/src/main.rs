//! `rxenconsoled`, the console daemon in dom0 (after Xen's `xenconsoled`): serves
//! each domU's PV console ring (`struct xencons_interface`, `public/io/console.h`),
//! reached through grant reference 0 of the domain (`/dev/xen/gntdev`) and its
//! console event channel (`/dev/xen/evtchn`, bound to the port in the domain's
//! `HVM_PARAM_CONSOLE_EVTCHN`), and logs what each guest writes to
//! `<log-dir>/guest-<name>.log` (`--log=guest`, as xenconsoled). Domains are found
//! with `getdomaininfolist` (new ones served, gone ones dropped) whenever a domain
//! changes (`VIRQ_DOM_EXC`, if no other daemon bound it first) and every 200 ms.
//!
//! Options as xenconsoled's: `--log=none|guest|hv|all`, `--log-dir=DIR`,
//! `-i`/`--interactive` (stay in the foreground; otherwise it detaches).
//! Names come from rxl (`/run/rxl/names/<id>`) until xenstore runs in dom0.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use clap::Parser;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rxen_abi::domctl::XEN_DOMINF_PAUSED;
use rxen_abi::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use rxen_ctrl::evtchn::Evtchn;
use rxen_ctrl::gnttab::{Gnttab, GrantMapping};
use rxen_ctrl::xc::Xc;

/// `VIRQ_DOM_EXC`: a domain shut down or went away.
const VIRQ_DOM_EXC: u32 = 3;
/// The console's grant reference (libxc seeds it as `GNTTAB_RESERVED_CONSOLE`).
const CONSOLE_GREF: u32 = 0;
/// `struct xencons_interface`: `in[1024]`, `out[2048]`, then the four indices.
const OUT_OFFSET: usize = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_CONS: usize = 3072 + 8;
const OUT_PROD: usize = 3072 + 12;

#[derive(Parser)]
#[command(
    name = "rxenconsoled",
    about = "rxen's console daemon (xenconsoled's options)"
)]
struct Args {
    /// What to log: none, guest, hv or all (xenconsoled's --log).
    #[arg(long, default_value = "guest")]
    log: String,
    /// Where the logs go.
    #[arg(long = "log-dir", default_value = "/var/log/xen/console")]
    log_dir: PathBuf,
    /// Stay in the foreground.
    #[arg(short = 'i', long)]
    interactive: bool,
}

/// A domain whose console is served.
struct Console<'a> {
    ring: GrantMapping<'a>,
    port: u32,
    log: Option<File>,
    line: Vec<u8>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !["none", "guest", "hv", "all"].contains(&args.log.as_str()) {
        eprintln!("rxenconsoled: --log={}: none, guest, hv or all", args.log);
        return ExitCode::FAILURE;
    }
    if !args.interactive {
        // Called before any thread exists.
        if let Err(e) = nix::unistd::daemon(false, false) {
            eprintln!("rxenconsoled: cannot detach: {e}");
            return ExitCode::FAILURE;
        }
    }
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rxenconsoled: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &Args) -> Result<(), String> {
    let e = |e: rxen_ctrl::Error| e.to_string();
    let xc = Xc::open().map_err(e)?;
    let mut evtchn = Evtchn::open().map_err(e)?;
    let gnttab = Gnttab::open().map_err(e)?;
    let logging = args.log == "guest" || args.log == "all";
    if logging {
        fs::create_dir_all(&args.log_dir)
            .map_err(|e| format!("{}: {e}", args.log_dir.display()))?;
    }
    // VIRQ_DOM_EXC can be bound once in dom0 (xenstored takes it when it runs
    // first, as on Xen): without it the 200 ms scan alone finds the changes.
    let dom_exc = evtchn.bind_virq(VIRQ_DOM_EXC).ok();
    let mut consoles: BTreeMap<u16, Console> = BTreeMap::new();
    loop {
        scan(
            &xc,
            &evtchn,
            &gnttab,
            &mut consoles,
            logging.then_some(&args.log_dir),
        );
        let ready = {
            let mut fds = [PollFd::new(evtchn.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(200u16)).map_err(|e| format!("poll: {e}"))?
        };
        if ready > 0 {
            let port = evtchn.pending().map_err(e)?;
            if Some(port) != dom_exc {
                if let Some(c) = consoles.values_mut().find(|c| c.port == port) {
                    drain(c);
                    let _ = evtchn.notify(c.port);
                }
            }
            evtchn.unmask(port).map_err(e)?;
        }
        // Output may also come without an event (a guest that did not notify).
        for c in consoles.values_mut() {
            drain(c);
        }
    }
}

/// Serves new domUs and drops the consoles of domains gone.
fn scan<'a>(
    xc: &Xc,
    evtchn: &Evtchn,
    gnttab: &'a Gnttab,
    consoles: &mut BTreeMap<u16, Console<'a>>,
    log_dir: Option<&PathBuf>,
) {
    let Ok(domains) = xc.domains() else {
        return;
    };
    consoles.retain(|id, c| {
        let live = domains.iter().any(|d| d.domain == *id);
        if !live {
            flush(c);
            let _ = evtchn.unbind(c.port);
        }
        live
    });
    for d in domains.iter().filter(|d| d.domain != 0) {
        // A domain still paused may be one its toolstack is building: its name
        // and console come with its first unpause.
        if consoles.contains_key(&d.domain) || d.flags & XEN_DOMINF_PAUSED != 0 {
            continue;
        }
        // A domain its toolstack has not finished building has no console yet.
        let (Ok(pfn), Ok(remote)) = (
            xc.hvm_param(d.domain, HVM_PARAM_CONSOLE_PFN),
            xc.hvm_param(d.domain, HVM_PARAM_CONSOLE_EVTCHN),
        ) else {
            continue;
        };
        if pfn == 0 || remote == 0 {
            continue;
        }
        let Ok(ring) = gnttab.map(d.domain, CONSOLE_GREF) else {
            continue;
        };
        let Ok(port) = evtchn.bind_interdomain(u32::from(d.domain), remote as u32) else {
            continue;
        };
        let log = log_dir.and_then(|dir| {
            let name = domain_name(d.domain);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("guest-{name}.log")))
                .ok()
        });
        let mut console = Console {
            ring,
            port,
            log,
            line: Vec::new(),
        };
        drain(&mut console);
        consoles.insert(d.domain, console);
    }
}

/// The domain's name (rxl's, until xenstore), else its id.
fn domain_name(id: u16) -> String {
    fs::read_to_string(Path::new("/run/rxl/names").join(id.to_string()))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| format!("d{id}"))
}

/// The ring's index word at `offset`.
fn index<'c>(c: &'c Console, offset: usize) -> &'c AtomicU32 {
    // SAFETY: `offset` is one of the aligned index words inside the mapped page,
    // which the guest updates concurrently: only atomic accesses.
    unsafe { AtomicU32::from_ptr(c.ring.ptr().add(offset).cast()) }
}

/// Takes what the guest wrote to its output ring into the log, whole lines.
fn drain(c: &mut Console) {
    let prod = index(c, OUT_PROD).load(Ordering::Acquire);
    let mut cons = index(c, OUT_CONS).load(Ordering::Relaxed);
    // A guest moving its producer more than a ring ahead is not believed.
    if prod.wrapping_sub(cons) > OUT_SIZE {
        cons = prod.wrapping_sub(OUT_SIZE);
    }
    while cons != prod {
        let at = OUT_OFFSET + (cons % OUT_SIZE) as usize;
        // SAFETY: inside the mapped page; a byte the guest may rewrite (we
        // only copy it).
        let byte = unsafe { c.ring.ptr().add(at).read_volatile() };
        c.line.push(byte);
        cons = cons.wrapping_add(1);
        if byte == b'\n' || c.line.len() >= 4096 {
            flush(c);
        }
    }
    fence(Ordering::Release);
    index(c, OUT_CONS).store(cons, Ordering::Release);
}

fn flush(c: &mut Console) {
    if let Some(log) = c.log.as_mut() {
        let _ = log.write_all(&c.line);
        let _ = log.flush();
    }
    c.line.clear();
}
