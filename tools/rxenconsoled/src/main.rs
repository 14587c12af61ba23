//! `rxenconsoled`, the console daemon in dom0 (after Xen's `xenconsoled`): serves
//! each domU's PV console ring (`struct xencons_interface`, `public/io/console.h`),
//! reached through grant reference 0 of the domain (`/dev/xen/gntdev`) and its
//! console event channel (`/dev/xen/evtchn`, bound to the port in the domain's
//! `HVM_PARAM_CONSOLE_EVTCHN`), and logs what each guest writes to
//! `<log-dir>/guest-<name>.log` (`--log=guest`, as xenconsoled). Domains are found
//! with `getdomaininfolist` (new ones served, gone ones dropped) whenever a domain
//! changes (`VIRQ_DOM_EXC`, if no other daemon bound it first) and every 200 ms.
//!
//! Each console also gets a pty, as xenconsoled gives one: its path goes to
//! xenstore's `/local/domain/<id>/console/tty` (and `/run/xen/console/<id>.tty`);
//! what the guest writes goes there too, and what is typed there goes into the
//! guest's input ring. `rxl console` attaches to it.
//!
//! Options as xenconsoled's: `--log=none|guest` (`hv` and `all`, the hypervisor's
//! log, are refused: not kept yet), `--log-dir=DIR`,
//! `-i`/`--interactive` (stay in the foreground; otherwise it detaches).
//! Names come from rxl (`/run/rxl/names/<id>`) until xenstore runs in dom0.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use clap::Parser;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios;
use rxen_abi::domctl::XEN_DOMINF_PAUSED;
use rxen_abi::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use rxen_ctrl::evtchn::Evtchn;
use rxen_ctrl::gnttab::{Gnttab, GrantMapping};
use rxen_ctrl::xc::Xc;
use rxenstored::client::Client;

/// The xenstore daemon's socket (Xen's default path).
const XENSTORED_SOCKET: &str = "/var/run/xenstored/socket";
/// Where each console's pty path is written besides xenstore.
const TTY_DIR: &str = "/run/xen/console";

/// `VIRQ_DOM_EXC`: a domain shut down or went away.
const VIRQ_DOM_EXC: u32 = 3;
/// The console's grant reference (libxc seeds it as `GNTTAB_RESERVED_CONSOLE`).
const CONSOLE_GREF: u32 = 0;
/// `struct xencons_interface`: `in[1024]`, `out[2048]`, then the four indices.
const IN_SIZE: u32 = 1024;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3072 + 4;
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
    /// What to log: none or guest (xenconsoled's --log; hv and all are refused).
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
    /// The pty `rxl console` attaches to: its master (non-blocking) and the slave,
    /// kept open so the master never reads end-of-file.
    pty: Option<(OwnedFd, OwnedFd)>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.log.as_str() {
        "none" | "guest" => {}
        "hv" | "all" => {
            eprintln!(
                "rxenconsoled: --log={}: the hypervisor's log is not kept yet (rxl dmesg reads it)",
                args.log
            );
            return ExitCode::FAILURE;
        }
        other => {
            eprintln!("rxenconsoled: --log={other}: none, guest, hv or all");
            return ExitCode::FAILURE;
        }
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
        // The event channel, and every pty a user may type into.
        let (ready, typed) = {
            let mut fds = vec![PollFd::new(evtchn.as_fd(), PollFlags::POLLIN)];
            let ids: Vec<u16> = consoles
                .iter()
                .filter(|(_, c)| c.pty.is_some())
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                if let Some((master, _)) = consoles.get(id).and_then(|c| c.pty.as_ref()) {
                    fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
                }
            }
            let n = poll(&mut fds, PollTimeout::from(200u16)).map_err(|e| format!("poll: {e}"))?;
            let evtchn_ready = fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            let typed: Vec<u16> = ids
                .iter()
                .zip(&fds[1..])
                .filter(|(_, fd)| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
                .map(|(id, _)| *id)
                .collect();
            (n > 0 && evtchn_ready, typed)
        };
        for id in typed {
            if let Some(c) = consoles.get_mut(&id) {
                if feed(c) {
                    let _ = evtchn.notify(c.port);
                }
            }
        }
        if ready {
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
        let pty = open_pty(d.domain);
        let mut console = Console {
            ring,
            port,
            log,
            line: Vec::new(),
            pty,
        };
        drain(&mut console);
        consoles.insert(d.domain, console);
    }
}

/// The domain's name: xenstore's, else rxl's, else its id.
fn domain_name(id: u16) -> String {
    if let Ok(mut xs) = Client::connect(Path::new(XENSTORED_SOCKET)) {
        if let Ok(name) = xs.read(0, &format!("/local/domain/{id}/name")) {
            return String::from_utf8_lossy(&name).into_owned();
        }
    }
    fs::read_to_string(Path::new("/run/rxl/names").join(id.to_string()))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| format!("d{id}"))
}

/// A pty for the domain's console, its slave's path published where `rxl console`
/// looks (xenstore's `console/tty`, as xenconsoled; and `/run/xen/console/<id>.tty`).
fn open_pty(id: u16) -> Option<(OwnedFd, OwnedFd)> {
    let pty = match openpty(None, None) {
        Ok(pty) => pty,
        Err(e) => {
            eprintln!("rxenconsoled: no pty for d{id} ({e}; is devpts mounted?)");
            return None;
        }
    };
    // Raw: the guest's bytes pass as they are, no echo, no line editing.
    if let Ok(mut t) = termios::tcgetattr(&pty.slave) {
        termios::cfmakeraw(&mut t);
        let _ = termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &t);
    }
    let flags = fcntl(pty.master.as_raw_fd(), FcntlArg::F_GETFL).ok()?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(pty.master.as_raw_fd(), FcntlArg::F_SETFL(flags)).ok()?;
    let path = fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).ok()?;
    let path = path.to_string_lossy().into_owned();
    let _ = fs::create_dir_all(TTY_DIR);
    let _ = fs::write(Path::new(TTY_DIR).join(format!("{id}.tty")), &path);
    if let Ok(mut xs) = Client::connect(Path::new(XENSTORED_SOCKET)) {
        let _ = xs.write(
            0,
            &format!("/local/domain/{id}/console/tty"),
            path.as_bytes(),
        );
    }
    Some((pty.master, pty.slave))
}

/// Moves what a user typed on the pty into the guest's input ring (as much as
/// fits); true if anything went in.
fn feed(c: &mut Console) -> bool {
    let Some((master, _)) = c.pty.as_ref() else {
        return false;
    };
    let prod = index(c, IN_PROD).load(Ordering::Relaxed);
    let cons = index(c, IN_CONS).load(Ordering::Acquire);
    let used = prod.wrapping_sub(cons);
    if used >= IN_SIZE {
        // Full, or a guest's index not believed: nothing goes in now.
        return false;
    }
    let mut buf = [0u8; 1024];
    let room = (IN_SIZE - used) as usize;
    let n = match nix::unistd::read(master.as_raw_fd(), &mut buf[..room]) {
        Ok(n) if n > 0 => n,
        _ => return false,
    };
    let mut prod = prod;
    for &b in &buf[..n] {
        // SAFETY: inside the mapped page's `in` array; the guest reads it.
        unsafe {
            c.ring
                .ptr()
                .add((prod % IN_SIZE) as usize)
                .write_volatile(b)
        };
        prod = prod.wrapping_add(1);
    }
    fence(Ordering::Release);
    index(c, IN_PROD).store(prod, Ordering::Release);
    true
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
    if let Some((master, _)) = c.pty.as_ref() {
        // Non-blocking: with nobody attached what does not fit is dropped.
        let _ = nix::unistd::write(master, &c.line);
    }
    c.line.clear();
}
