//! `rxenstored`: run the xenstore daemon (foreground or detached) or benchmark it.

use clap::{Args, Parser, Subcommand};
use rxenstored::core::{DomainBackend, NoRings};
use rxenstored::log::{self, Level};
use rxenstored::perms::Caller;
use rxenstored::server::{Config, Server};
use rxenstored::store::Quotas;
use rxenstored::xen;
use rxenstored::xlog;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rxenstored",
    version,
    about = "xenstore daemon in Rust, wire-compatible with Xen"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Measure read/write/transaction throughput, single and many clients.
    Bench(BenchArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Read-write socket path.
    #[arg(long, default_value = "/var/run/xenstored/socket")]
    socket: PathBuf,
    /// Read-only socket path (not served unless given).
    #[arg(long)]
    socket_ro: Option<PathBuf>,
    /// State file: restored at start, written at shutdown and live update.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Detach from the terminal and run in the background.
    #[arg(long)]
    daemon: bool,
    /// Write the daemon's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Log level: error, warn, info or debug.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Log to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Nodes a guest domain may own.
    #[arg(long, default_value_t = Quotas::default().max_nodes)]
    quota_nodes: usize,
    /// Largest node (value + child names + permissions) a guest may write, in bytes.
    #[arg(long, default_value_t = Quotas::default().max_node_size)]
    quota_node_size: usize,
    /// Watches per guest connection.
    #[arg(long, default_value_t = Quotas::default().max_watches)]
    quota_watches: usize,
    /// Open transactions per guest connection.
    #[arg(long, default_value_t = Quotas::default().max_transactions)]
    quota_transactions: usize,
    /// Permission entries per node for guests.
    #[arg(long, default_value_t = Quotas::default().max_perms)]
    quota_perms: usize,
    /// Serve domain rings through Xen's devices: auto (if /dev/xen/privcmd exists),
    /// on, or off (domains are recorded only).
    #[arg(long, default_value = "auto")]
    xen: String,
    /// Do not connect dom0's own ring (Xen's --no-domain-init).
    #[arg(short = 'D', long)]
    no_domain_init: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Clients in the many-clients runs.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Also measure Xen's C daemon (path to `xenstored`), if it can run here.
    #[arg(long)]
    c_daemon: Option<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(s, on_signal as *const () as libc::sighandler_t);
        }
    }
    // SAFETY: ignoring SIGPIPE so that writes to vanished clients return EPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

fn run(a: RunArgs) -> ExitCode {
    let Some(level) = Level::parse(&a.log_level) else {
        eprintln!("rxenstored: bad --log-level {}", a.log_level);
        return ExitCode::from(2);
    };
    log::set_level(level);
    if a.daemon {
        // Re-run ourselves without --daemon in a new process group, detached from the
        // terminal, and leave.
        let args: Vec<_> = std::env::args_os()
            .skip(1)
            .filter(|x| x != "--daemon")
            .collect();
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("rxenstored: {e}");
                return ExitCode::FAILURE;
            }
        };
        let child = std::process::Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn();
        return match child {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rxenstored: cannot detach: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(f) = &a.log_file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
        {
            Ok(f) => log::set_file(f),
            Err(e) => {
                eprintln!("rxenstored: {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(p) = &a.pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("rxenstored: {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    install_signals();
    let cfg = Config {
        socket: a.socket.clone(),
        socket_ro: a.socket_ro.clone(),
        state_file: a.state_file.clone(),
        quotas: Quotas {
            max_nodes: a.quota_nodes,
            max_node_size: a.quota_node_size,
            max_watches: a.quota_watches,
            max_transactions: a.quota_transactions,
            max_perms: a.quota_perms,
        },
    };
    let use_xen = match a.xen.as_str() {
        "on" => true,
        "off" => false,
        "auto" => std::path::Path::new(xen::PRIVCMD).exists(),
        other => {
            eprintln!("rxenstored: --xen {other}: auto, on or off");
            return ExitCode::from(2);
        }
    };
    let xen = if use_xen {
        match xen::XenBackend::open() {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                eprintln!("rxenstored: cannot open Xen's devices: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let backend: Arc<dyn DomainBackend> = match &xen {
        Some(b) => b.clone(),
        None => Arc::new(NoRings),
    };
    // As Xen's xenstored: VIRQ_DOM_EXC first; failing to set up dom0 is fatal.
    let dom_exc = match xen
        .as_ref()
        .map(|_| xen::XenEvtchn::bind_virq(xen::VIRQ_DOM_EXC))
    {
        Some(Err(e)) => {
            eprintln!("rxenstored: cannot bind VIRQ_DOM_EXC: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(v)) => Some(v),
        None => None,
    };
    let restored = a.state_file.as_ref().is_some_and(|p| p.exists());
    let server = match Server::start(cfg, backend) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rxenstored: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if xen.is_some() && !a.no_domain_init {
        if !restored {
            server.with_core(init_dom0);
        }
        match xen::connect_local() {
            Ok(t) => server.connect_local(t),
            Err(e) => {
                eprintln!("rxenstored: cannot connect dom0's ring: {e}");
                let _ = server.shutdown();
                return ExitCode::FAILURE;
            }
        }
    }
    xlog!(Level::Info, None, "serving {}", a.socket.display());
    let mut last_check = std::time::Instant::now();
    while !STOP.load(Ordering::SeqCst) && !server.live_update_requested() {
        match (&xen, &dom_exc) {
            (Some(b), Some(v)) => {
                // On VIRQ_DOM_EXC, and every second in case an event was lost.
                let fired = v.wait_event(Duration::from_millis(50));
                if fired || last_check.elapsed() >= Duration::from_secs(1) {
                    server.check_domains(|d| b.state(d));
                    last_check = std::time::Instant::now();
                }
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // A termination request wins over a pending live update.
    let live_update = server.live_update_requested() && !STOP.load(Ordering::SeqCst);
    if live_update && a.state_file.is_none() {
        xlog!(
            Level::Error,
            None,
            "live update needs --state-file; shutting down instead"
        );
    }
    if let Err(e) = server.shutdown() {
        xlog!(Level::Error, None, "saving state failed: {e}");
        return ExitCode::FAILURE;
    }
    if live_update && a.state_file.is_some() {
        xlog!(Level::Info, None, "live update: re-executing");
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec();
        eprintln!("rxenstored: live update exec failed: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What Xen's `xen-init-dom0` writes: dom0's `name` and `domid`, unless both are
/// there already.
fn init_dom0(core: &mut rxenstored::core::Core) {
    let c = Caller::DOM0;
    let name = core.store.read(None, &c, DOMNAME_PATH);
    let domid = core.store.read(None, &c, DOMID_PATH);
    if name.is_ok() && domid.is_ok() {
        return;
    }
    for (path, value) in [(DOMID_PATH, "0"), (DOMNAME_PATH, "Domain-0")] {
        if let Err(e) = core.store.write(None, &c, path, value.as_bytes()) {
            xlog!(Level::Error, Some(0), "cannot write {path}: {e}");
        }
    }
}

/// xen-init-dom0's nodes.
const DOMNAME_PATH: &str = "/local/domain/0/name";
const DOMID_PATH: &str = "/local/domain/0/domid";

fn bench(b: BenchArgs) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("rxenstored-bench-{}", std::process::id()));
    let sock = dir.join("socket");
    let cfg = Config {
        socket: sock.clone(),
        socket_ro: None,
        state_file: None,
        quotas: Quotas::default(),
    };
    let dur = Duration::from_secs_f64(b.seconds.max(0.05));
    let server = match Server::start(cfg, Arc::new(NoRings)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rxenstored bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ours = rxenstored::bench::run(&sock, b.clients, dur);
    let _ = server.shutdown();
    let ours = match ours {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rxenstored bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let theirs = b
        .c_daemon
        .as_ref()
        .map(|p| bench_c(p, &dir, b.clients, dur));
    println!(
        "{:<12} {:>8} {:>14} {:>14}",
        "op", "clients", "rxenstored/s", "C xenstored/s"
    );
    for (i, f) in ours.iter().enumerate() {
        let c = match &theirs {
            Some(Ok(t)) => format!("{:.0}", t[i].ops_per_sec),
            _ => "-".into(),
        };
        println!(
            "{:<12} {:>8} {:>14.0} {:>14}",
            f.op, f.clients, f.ops_per_sec, c
        );
    }
    if let Some(Err(e)) = theirs {
        println!("C xenstored not measured: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}

/// Runs Xen's C daemon on a private socket and measures it the same way.
fn bench_c(
    exe: &std::path::Path,
    dir: &std::path::Path,
    clients: usize,
    dur: Duration,
) -> Result<Vec<rxenstored::bench::Figure>, String> {
    let rundir = dir.join("c");
    std::fs::create_dir_all(&rundir).map_err(|e| e.to_string())?;
    let sock = rundir.join("socket");
    let mut child = std::process::Command::new(exe)
        .args(["--no-fork", "--internal-db"])
        .env("XENSTORED_RUNDIR", &rundir)
        .env("XENSTORED_PATH", &sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !sock.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut msg = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut msg);
            }
            return Err(format!("it exited ({st}): {}", msg.trim()));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("its socket never appeared".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = rxenstored::bench::run(&sock, clients, dur).map_err(|e| e.to_string());
    let _ = child.kill();
    let _ = child.wait();
    r
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Bench(b)) => bench(b),
        Some(Cmd::Run(r)) => run(r),
        None => run(cli.run),
    }
}
