//! `rxl`, rxen's toolstack command, after Xen's `xl`: runs in dom0 and drives the
//! hypervisor through `/dev/xen/privcmd` (the `rxen-ctrl` library).
//!
//! Commands: `create [-p] [-F] <cfg> [key=value ...]` (a process stays to act on
//! the domain's shutdown as its `on_poweroff`/`on_reboot`/`on_crash` say, as xl's),
//! `list [-l]`, `info`, `dmesg [-c]`, `debug-keys`, `pause`, `unpause`, `destroy`,
//! `shutdown [-w]`, `reboot`, `console` (CTRL-] detaches), `mem-set`, `mem-max`,
//! `vcpu-list`, `vcpu-pin`, `sched-credit`, `sched-rtds`, `top` (as xentop: a live screen, `-b` batch),
//! `block-attach`, `block-detach`, `block-list` (disks served by dom0's blkback),
//! `network-attach`, `network-detach`, `network-list` (interfaces served by dom0's
//! netback, on a bridge in dom0).
//! A domain is named by id or by name: xenstore's, or the names kept in
//! `/run/rxl/names/<id>` when no xenstore daemon runs.

mod config;
mod cpulist;
mod create;
mod device;
mod disk;
mod hotplug;
mod nic;
mod top;
mod xenstore;

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rxen_abi::domctl::*;
use rxen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_WATCHDOG};
use rxen_ctrl::xc::{DomainInfo, Xc};

/// Where rxl keeps the names it gave domains.
const NAMES: &str = "/run/rxl/names";
/// The xenstore daemon's socket (Xen's default path).
const XENSTORED_SOCKET: &str = xenstore::SOCKET;

#[derive(Parser)]
#[command(name = "rxl", about = "rxen's toolstack (xl's commands)", version)]
struct Cli {
    /// Say what is done, with times (as xl -v).
    #[arg(short = 'v', global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a domain from a config file (xl.cfg syntax).
    Create {
        /// Leave it paused.
        #[arg(short = 'p')]
        paused: bool,
        /// Stay in the foreground watching the domain (on_poweroff...), as xl -F.
        #[arg(short = 'F')]
        foreground: bool,
        /// The config file.
        config: String,
        /// `key=value` settings that override the file.
        overrides: Vec<String>,
    },
    /// List domains: Name ID Mem VCPUs State Time(s).
    List {
        /// Long format (every getdomaininfo field).
        #[arg(short = 'l')]
        long: bool,
    },
    /// The hypervisor and the machine.
    Info,
    /// Press debug keys on the hypervisor's console (`h` lists them); their
    /// output is in `dmesg`.
    DebugKeys { keys: String },
    /// The hypervisor's console history.
    Dmesg {
        /// Clear it after reading.
        #[arg(short = 'c')]
        clear: bool,
    },
    /// Pause a domain.
    Pause { domain: String },
    /// Unpause a domain.
    Unpause { domain: String },
    /// Destroy a domain at once.
    Destroy { domain: String },
    /// Ask a domain to power off (through xenstore's control/shutdown).
    Shutdown {
        /// Wait until it is gone.
        #[arg(short = 'w')]
        wait: bool,
        domain: String,
    },
    /// Ask a domain to reboot (through xenstore's control/shutdown).
    Reboot { domain: String },
    /// Set a domain's memory target (MiB, or with a k/m/g suffix); its balloon
    /// driver follows.
    MemSet { domain: String, size: String },
    /// The vCPUs of every domain (of one, if named), with their affinity.
    VcpuList { domain: Option<String> },
    /// Set the pCPUs a domain's vCPU may run on (hard affinity) and those it
    /// prefers (soft): CPU lists as `0-2,^1` or `all`; `-` leaves one as it is.
    VcpuPin {
        domain: String,
        /// The vCPU number, or `all`.
        vcpu: String,
        /// Hard affinity.
        hard: String,
        /// Soft affinity.
        soft: Option<String>,
    },
    /// Attach to a domain's console (rxenconsoled's pty); CTRL-] detaches.
    Console { domain: String },
    /// A live view of the domains (as xentop): CPU and memory, refreshed.
    Top {
        /// Batch mode: plain tables one after the other, no screen control.
        #[arg(short = 'b')]
        batch: bool,
        /// Seconds between refreshes.
        #[arg(short = 'd', default_value_t = 3)]
        delay: u64,
        /// Refreshes before exiting (default: until interrupted).
        #[arg(short = 'i')]
        iterations: Option<u64>,
    },
    /// Set a domain's maximum memory (MiB, or with a k/m/g suffix).
    MemMax { domain: String, size: String },
    /// Credit scheduler parameters: list every domain's, or set a domain's.
    SchedCredit {
        /// The domain (all when absent).
        #[arg(short = 'd')]
        domain: Option<String>,
        /// Its weight (1-65535).
        #[arg(short = 'w')]
        weight: Option<u16>,
        /// Its cap (percent of a CPU, 0: none).
        #[arg(short = 'c')]
        cap: Option<u16>,
    },
    /// Give a running domain a disk: `<domain> <disk-spec>...` (xl-disk-configuration,
    /// the parts joined with commas).
    BlockAttach {
        domain: String,
        #[arg(required = true)]
        spec: Vec<String>,
    },
    /// Take a disk from a domain (asking the guest first; by force after 10 s).
    BlockDetach {
        /// Do not ask the guest.
        #[arg(long)]
        force: bool,
        domain: String,
        /// The disk's vdev (`xvdb`) or device id.
        vdev: String,
    },
    /// A domain's disks: Vdev BE handle state evt-ch ring-ref BE-path.
    BlockList {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Give a running domain a network interface: `<domain> [<vif-spec>...]`
    /// (xl-network-configuration, the parts joined with commas).
    NetworkAttach { domain: String, spec: Vec<String> },
    /// Take a network interface from a domain (by its index or MAC address).
    NetworkDetach {
        /// Do not ask the guest.
        #[arg(long)]
        force: bool,
        domain: String,
        /// The interface's index (devid) or MAC address.
        nic: String,
    },
    /// A domain's network interfaces.
    NetworkList {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// RTDS scheduler parameters: list every domain's, or set a domain's.
    SchedRtds {
        /// The domain (all when absent).
        #[arg(short = 'd')]
        domain: Option<String>,
        /// Its period (µs).
        #[arg(short = 'p')]
        period: Option<u32>,
        /// Its budget per period (µs).
        #[arg(short = 'b')]
        budget: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    create::VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rxl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    if let Command::Create {
        paused,
        foreground,
        config,
        overrides,
    } = &command
    {
        return create(*paused, *foreground, config, overrides);
    }
    let xc = Xc::open().map_err(|e| e.to_string())?;
    let e = |e: rxen_ctrl::Error| e.to_string();
    match command {
        Command::Create { .. } => unreachable!("handled above"),
        Command::List { long } => {
            let domains = xc.domains().map_err(e)?;
            print!("{}", list(&domains, long));
        }
        Command::Info => {
            use rxen_abi::version::{
                XENVER_CAPABILITIES, XENVER_COMMANDLINE, XENVER_EXTRAVERSION, XENVER_VERSION,
            };
            let p = xc.physinfo().map_err(e)?;
            let (version, _) = xc.xen_version(XENVER_VERSION, 0).map_err(e)?;
            let (_, extra) = xc.xen_version(XENVER_EXTRAVERSION, 16).map_err(e)?;
            let (_, caps) = xc.xen_version(XENVER_CAPABILITIES, 1024).map_err(e)?;
            let (_, cmdline) = xc.xen_version(XENVER_COMMANDLINE, 1024).map_err(e)?;
            let scheduler = match xc.sched_id().map_err(e)? {
                rxen_abi::sysctl::XEN_SCHEDULER_CREDIT => "credit",
                rxen_abi::sysctl::XEN_SCHEDULER_RTDS => "rtds",
                _ => "unknown",
            };
            let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            println!("host                   : {}", host.trim());
            println!("xen_major              : {}", version >> 16);
            println!("xen_minor              : {}", version & 0xffff);
            println!("xen_extra              : {extra}");
            println!(
                "xen_version            : {}.{}{extra}",
                version >> 16,
                version & 0xffff
            );
            println!("xen_caps               : {caps}");
            println!("xen_scheduler          : {scheduler}");
            println!("xen_commandline        : {cmdline}");
            println!("nr_cpus                : {}", p.nr_cpus);
            println!("cpu_mhz                : {}", p.cpu_khz / 1000);
            println!("total_memory           : {}", p.total_pages / 256);
            println!("free_memory            : {}", p.free_pages / 256);
            println!(
                "virt_caps              : {}",
                if p.capabilities & rxen_abi::sysctl::XEN_SYSCTL_PHYSCAP_HAP != 0 {
                    "hvm hap"
                } else {
                    "hvm"
                }
            );
        }
        Command::DebugKeys { keys } => xc.debug_keys(keys.as_bytes()).map_err(e)?,
        Command::Dmesg { clear } => print!("{}", xc.readconsole(clear).map_err(e)?),
        Command::Pause { domain } => xc.pause(lookup(&xc, &domain)?).map_err(e)?,
        Command::Unpause { domain } => xc.unpause(lookup(&xc, &domain)?).map_err(e)?,
        Command::Destroy { domain } => destroy(&xc, lookup(&xc, &domain)?)?,
        Command::BlockAttach { domain, spec } => {
            let id = lookup(&xc, &domain)?;
            let disk = disk::parse_disk(&spec.join(","))?;
            device::disk_add(&mut need_xenstore("block-attach")?, id, &disk)?;
        }
        Command::BlockDetach {
            force,
            domain,
            vdev,
        } => {
            let id = lookup(&xc, &domain)?;
            let devid = disk::vdev_number(&vdev)
                .ok_or_else(|| format!("{vdev} is not a virtual device name"))?;
            device::remove(
                &mut need_xenstore("block-detach")?,
                device::VBD,
                id,
                devid,
                force,
            )?;
        }
        Command::NetworkAttach { domain, spec } => {
            let id = lookup(&xc, &domain)?;
            let nic = nic::parse_nic(&spec.join(","), nic::random3)?;
            let mut xs = need_xenstore("network-attach")?;
            let devid = device::next_nic_devid(&mut xs, id);
            device::nic_add(&mut xs, id, devid, &nic)?;
        }
        Command::NetworkDetach { force, domain, nic } => {
            let id = lookup(&xc, &domain)?;
            let mut xs = need_xenstore("network-detach")?;
            let devid = match nic.parse::<u32>() {
                Ok(devid) => devid,
                Err(_) => device::nic_by_mac(&mut xs, id, &nic)
                    .ok_or_else(|| format!("d{id} has no network interface {nic}"))?,
            };
            device::remove(&mut xs, device::VIF, id, devid, force)?;
        }
        Command::NetworkList { domains } => {
            let mut xs = need_xenstore("network-list")?;
            for d in domains {
                print!("{}", device::network_list(&mut xs, lookup(&xc, &d)?));
            }
        }
        Command::BlockList { domains } => {
            let mut xs = need_xenstore("block-list")?;
            for d in domains {
                print!("{}", device::block_list(&mut xs, lookup(&xc, &d)?));
            }
        }
        Command::Shutdown { wait, domain } => {
            let id = lookup(&xc, &domain)?;
            request_shutdown(id, "poweroff")?;
            if wait {
                while xc.domain_info(id).map_err(e)?.is_some() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                println!("Domain {id} has been destroyed.");
            }
        }
        Command::Reboot { domain } => request_shutdown(lookup(&xc, &domain)?, "reboot")?,
        Command::MemSet { domain, size } => {
            let id = lookup(&xc, &domain)?;
            let kib = parse_size_kib(&size)?;
            let mut xs = need_xenstore("mem-set")?;
            xs.write(
                &format!("/local/domain/{id}/memory/target"),
                &kib.to_string(),
            )?;
        }
        Command::Console { domain } => console(lookup(&xc, &domain)?)?,
        Command::Top {
            batch,
            delay,
            iterations,
        } => top(&xc, batch, delay, iterations)?,
        Command::MemMax { domain, size } => {
            let id = lookup(&xc, &domain)?;
            xc.max_mem(id, parse_size_kib(&size)?).map_err(e)?;
            if let Some(mut xs) = xenstore::Xenstore::connect() {
                let kib = parse_size_kib(&size)?;
                xs.write(
                    &format!("/local/domain/{id}/memory/static-max"),
                    &kib.to_string(),
                )?;
            }
        }
        Command::SchedCredit {
            domain,
            weight,
            cap,
        } => sched_credit(&xc, domain, weight, cap)?,
        Command::SchedRtds {
            domain,
            period,
            budget,
        } => sched_rtds(&xc, domain, period, budget)?,
        Command::VcpuPin {
            domain,
            vcpu,
            hard,
            soft,
        } => vcpu_pin(&xc, &domain, &vcpu, &hard, soft.as_deref())?,
        Command::VcpuList { domain } => {
            // xl's columns; the state is r(unning), b(locked) or -(runnable),
            // p when the vCPU is offline (xl: "--p").
            let nr_cpus = xc.physinfo().map_err(e)?.nr_cpus;
            println!(
                "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
            );
            for d in targets(&xc, &domain)? {
                for v in 0..=d.max_vcpu_id {
                    let Some(i) = xc.vcpu_info(d.domain, v).map_err(e)? else {
                        break;
                    };
                    let state = match (i.online != 0, i.running != 0, i.blocked != 0) {
                        (false, _, _) => "--p",
                        (true, true, _) => "r--",
                        (true, false, true) => "-b-",
                        (true, false, false) => "---",
                    };
                    let cpu = if i.online != 0 {
                        i.cpu.to_string()
                    } else {
                        "-".into()
                    };
                    let (hard, soft) = xc.vcpu_affinity(d.domain, v).map_err(e)?;
                    println!(
                        "{:<32} {:>5} {:>5} {:>5}   {state}   {:>7.1} {} / {}",
                        name_of(&d),
                        d.domain,
                        v,
                        cpu,
                        i.cpu_time as f64 / 1e9,
                        cpulist::format(hard, nr_cpus),
                        cpulist::format(soft, nr_cpus)
                    );
                }
            }
        }
    }
    Ok(())
}

fn create(paused: bool, foreground: bool, path: &str, overrides: &[String]) -> Result<(), String> {
    println!("Parsing config from {path}");
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (config, warnings) =
        config::domain_config(path, &text, overrides).map_err(|e| e.to_string())?;
    for w in warnings {
        eprintln!("rxl: warning: {w}");
    }
    let kernel = fs::read(&config.kernel).map_err(|e| format!("{}: {e}", config.kernel))?;
    let ramdisk = match &config.ramdisk {
        Some(r) => Some(fs::read(r).map_err(|e| format!("{r}: {e}"))?),
        None => None,
    };
    device::check_devices(&config.disks, &config.nics)?;
    let devices = !config.disks.is_empty() || !config.nics.is_empty();
    if devices && !Path::new(XENSTORED_SOCKET).exists() {
        return Err(format!(
            "{}: disks and network interfaces need a xenstore daemon ({XENSTORED_SOCKET})",
            config.name
        ));
    }
    let xc = Xc::open().map_err(|e| e.to_string())?;
    if xc
        .domains()
        .map_err(|e| e.to_string())?
        .iter()
        .any(|d| name_of(d) == config.name)
    {
        return Err(format!(
            "domain with name \"{}\" already exists",
            config.name
        ));
    }
    let domid = start(&xc, &config, &kernel, ramdisk.as_deref(), paused)?;
    // As xl: a process stays behind to act on the domain's shutdown
    // (on_poweroff, on_reboot, on_crash); in the foreground with -F.
    if foreground {
        return monitor(&xc, &config, &kernel, ramdisk.as_deref(), domid);
    }
    // SAFETY: single-threaded here; the child only continues this program.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            // As xl's: its output goes to a log of its own, not the caller's
            // terminal or pipe (which would stay open as long as it runs).
            let _ = fs::create_dir_all(LOG_DIR);
            let log = Path::new(LOG_DIR).join(format!("rxl-{}.log", config.name));
            redirect_output(&log);
            let _ = monitor(&xc, &config, &kernel, ramdisk.as_deref(), domid);
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(()),
        Err(e) => {
            eprintln!(
                "rxl: warning: no process to watch d{domid} ({e}): on_* actions will not run"
            );
            Ok(())
        }
    }
}

/// Where the watching process of `create` logs (as xl's `xl-<name>.log`).
const LOG_DIR: &str = "/var/log/xen";

/// Points stdin at /dev/null and stdout and stderr at `log` (appended).
fn redirect_output(log: &Path) {
    use std::os::fd::AsRawFd;
    let null = fs::File::open("/dev/null");
    let out = fs::OpenOptions::new().create(true).append(true).open(log);
    if let (Ok(null), Ok(out)) = (null, out) {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(out.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(out.as_raw_fd(), 2);
    }
}

/// Builds and (unless `paused`) starts `config`'s domain; records its name.
fn start(
    xc: &Xc,
    config: &config::DomainConfig,
    kernel: &[u8],
    ramdisk: Option<&[u8]>,
    paused: bool,
) -> Result<u16, String> {
    let xenstore = Path::new(XENSTORED_SOCKET).exists();
    if !xenstore {
        eprintln!(
            "rxl: warning: no xenstore daemon ({XENSTORED_SOCKET}): {} gets no xenstore",
            config.name
        );
    }
    let built = create::build(xc, config, kernel, ramdisk, xenstore)?;
    let _ = fs::create_dir_all(NAMES);
    let _ = fs::write(Path::new(NAMES).join(built.domid.to_string()), &config.name);
    if let Some(mut xs) = xenstore.then(xenstore::Xenstore::connect).flatten() {
        let added = xs.add_domain(config, &built, &uuid()).and_then(|()| {
            config
                .disks
                .iter()
                .try_for_each(|disk| device::disk_add(&mut xs, built.domid, disk))?;
            (0u32..)
                .zip(&config.nics)
                .try_for_each(|(devid, nic)| device::nic_add(&mut xs, built.domid, devid, nic))
        });
        if let Err(err) = added {
            let _ = destroy(xc, built.domid);
            return Err(err);
        }
    }
    if !paused {
        xc.unpause(built.domid).map_err(|e| e.to_string())?;
    }
    println!(
        "Domain {} \"{}\" created{} (console port {}, xenstore port {})",
        built.domid,
        config.name,
        if paused { ", paused" } else { "" },
        built.console_port,
        built.store_port
    );
    Ok(built.domid)
}

/// xl's domain watch: when the domain shuts down, does what its config says for
/// the reason (destroy, restart: destroy and build it again, preserve: leave it);
/// returns when the domain is gone or preserved.
fn monitor(
    xc: &Xc,
    config: &config::DomainConfig,
    kernel: &[u8],
    ramdisk: Option<&[u8]>,
    mut domid: u16,
) -> Result<(), String> {
    use config::Action;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let info = match xc.domain_info(domid) {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if info.flags & XEN_DOMINF_SHUTDOWN == 0 || info.flags & XEN_DOMINF_DYING != 0 {
            continue;
        }
        let code = (info.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & 0xff;
        let (reason, action) = match code {
            SHUTDOWN_POWEROFF => ("poweroff", config.on_poweroff),
            SHUTDOWN_REBOOT => ("reboot", config.on_reboot),
            SHUTDOWN_CRASH => ("crash", config.on_crash),
            SHUTDOWN_WATCHDOG => ("watchdog", config.on_crash),
            // Suspend and soft reset are the toolstack's own doing.
            _ => continue,
        };
        println!("Domain {domid} \"{}\" shut down ({reason})", config.name);
        match action {
            Action::Preserve => return Ok(()),
            Action::Destroy => return destroy(xc, domid),
            Action::Restart => {
                destroy(xc, domid)?;
                // The old one must be gone before its name is taken again.
                while xc.domain_info(domid).ok().flatten().is_some() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                domid = start(xc, config, kernel, ramdisk, false)?;
            }
        }
    }
}

/// `xl console`: relays the terminal to the domain's console pty (raw when the
/// terminal is one) until CTRL-] or the end of input.
fn console(domid: u16) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let path = xenstore::Xenstore::connect()
        .and_then(|mut xs| xs.read(&format!("/local/domain/{domid}/console/tty")))
        .or_else(|| fs::read_to_string(format!("/run/xen/console/{domid}.tty")).ok())
        .ok_or_else(|| format!("d{domid} has no console pty (is rxenconsoled running?)"))?;
    let mut tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.trim())
        .map_err(|e| format!("{}: {e}", path.trim()))?;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).ok();
    if let Some(mut raw) = saved.clone() {
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
    }
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    let mut input_open = true;
    let result = loop {
        let mut fds = vec![PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
        if input_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::from(1000u16)).is_err() {
            break Ok(());
        }
        let ready = |fd: &PollFd| {
            fd.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        };
        let (tty_ready, in_ready) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
        if tty_ready {
            match tty.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                _ => break Ok(()),
            }
        }
        if in_ready {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => input_open = false,
                Ok(n) => {
                    // CTRL-] (0x1d) detaches, as in xl.
                    let (typed, detach) = match buf[..n].iter().position(|&b| b == 0x1d) {
                        Some(at) => (&buf[..at], true),
                        None => (&buf[..n], false),
                    };
                    if tty.write_all(typed).is_err() {
                        break Err(format!("d{domid}'s console went away"));
                    }
                    if detach {
                        break Ok(());
                    }
                }
            }
        }
        if !input_open && !tty_ready {
            // Input ended: what the guest says until a second without output.
            break Ok(());
        }
    };
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &saved);
    }
    result
}

/// `xentop` (see [`top`]): a live screen on a terminal, plain tables in batch mode
/// (`-b`) or when the output is not a terminal; `iterations` refreshes, or until
/// interrupted (`q` on the live screen).
fn top(xc: &Xc, batch: bool, delay: u64, iterations: Option<u64>) -> Result<(), String> {
    use std::io::{IsTerminal, Write};
    let e = |e: rxen_ctrl::Error| e.to_string();
    let sample = || -> Result<(Vec<top::Sample>, top::Host), String> {
        let info = xc.physinfo().map_err(e)?;
        let host = top::Host {
            total_k: info.total_pages.saturating_mul(4),
            free_k: info.free_pages.saturating_mul(4),
            cpus: info.nr_cpus,
        };
        let samples = xc
            .domains()
            .map_err(e)?
            .iter()
            .map(|d| top::Sample {
                domid: d.domain,
                name: name_of(d),
                state: state(d),
                cpu_ns: d.cpu_time,
                pages: d.tot_pages,
                max_pages: d.max_pages,
                vcpus: d.nr_online_vcpus,
            })
            .collect();
        Ok((samples, host))
    };
    let mut tracker = top::Tracker::default();
    let done = |round: u64| iterations.is_some_and(|n| round >= n);
    if batch || !std::io::stdout().is_terminal() {
        for round in 1.. {
            let (samples, host) = sample()?;
            print!(
                "{}",
                top::text(&tracker.rows(&samples, host, std::time::Instant::now()))
            );
            let _ = std::io::stdout().flush();
            if done(round) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(delay));
        }
        return Ok(());
    }
    let mut delay = delay.max(1);
    let mut terminal = ratatui::try_init()
        .map_err(|e| format!("rxl top: no terminal to draw on ({e}): use -b"))?;
    let result = (|| {
        for round in 1.. {
            let (samples, host) = sample()?;
            let rows = tracker.rows(&samples, host, std::time::Instant::now());
            terminal
                .draw(|frame| top::draw(frame, &rows, host, delay))
                .map_err(|e| e.to_string())?;
            if done(round) {
                break;
            }
            match top::wait_for_key(std::time::Duration::from_secs(delay))
                .map_err(|e| e.to_string())?
            {
                top::Key::Quit => break,
                top::Key::Faster => delay = delay.saturating_sub(1).max(1),
                top::Key::Slower => delay = delay.saturating_add(1).min(3600),
                top::Key::Other => {}
            }
        }
        Ok(())
    })();
    ratatui::restore();
    result
}

/// The domains named by `domain`, or every domain.
fn targets(xc: &Xc, domain: &Option<String>) -> Result<Vec<DomainInfo>, String> {
    let all = xc.domains().map_err(|e| e.to_string())?;
    match domain {
        None => Ok(all),
        Some(d) => {
            let id = lookup(xc, d)?;
            Ok(all.into_iter().filter(|i| i.domain == id).collect())
        }
    }
}

/// `vcpu-pin <domain> <vcpu|all> <hard> [<soft>]`, as xl's: `-` leaves an
/// affinity as it is.
fn vcpu_pin(
    xc: &Xc,
    domain: &str,
    vcpu: &str,
    hard: &str,
    soft: Option<&str>,
) -> Result<(), String> {
    let id = lookup(xc, domain)?;
    let info = xc
        .domain_info(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no domain {domain}"))?;
    let nr_cpus = xc.physinfo().map_err(|e| e.to_string())?.nr_cpus;
    let vcpus = if vcpu == "all" {
        0..=info.max_vcpu_id
    } else {
        let v: u32 = vcpu
            .parse()
            .map_err(|_| format!("`{vcpu}` is not a vCPU number"))?;
        if v > info.max_vcpu_id {
            return Err(format!("{domain} has no vCPU {v}"));
        }
        v..=v
    };
    let mask = |list: Option<&str>| match list {
        None | Some("-") => Ok(None),
        Some(list) => cpulist::parse(list, nr_cpus).map(Some),
    };
    let (hard, soft) = (mask(Some(hard))?, mask(soft)?);
    if hard.is_none() && soft.is_none() {
        return Err("nothing to set: both affinities are `-`".into());
    }
    for v in vcpus {
        xc.set_vcpu_affinity(id, v, hard, soft)
            .map_err(|e| format!("vCPU {v}: {e}"))?;
    }
    Ok(())
}

/// `xl sched-credit`: sets a domain's weight and cap, or lists them.
fn sched_credit(
    xc: &Xc,
    domain: Option<String>,
    weight: Option<u16>,
    cap: Option<u16>,
) -> Result<(), String> {
    use rxen_abi::sysctl::XEN_SCHEDULER_CREDIT;
    use zerocopy::{FromBytes, IntoBytes};
    if xc.sched_id().map_err(|e| e.to_string())? != XEN_SCHEDULER_CREDIT {
        return Err("the hypervisor does not run the credit scheduler".into());
    }
    if weight.is_some() || cap.is_some() {
        let d = domain.as_deref().ok_or("-w/-c need -d <domain>")?;
        let id = lookup(xc, d)?;
        let set = XenDomctlSchedCredit {
            // 0 and 0xffff leave the value as it is, as in Xen.
            weight: weight.unwrap_or(0),
            cap: cap.unwrap_or(0xffff),
        };
        let mut params = [0u8; 16];
        params[..4].copy_from_slice(set.as_bytes());
        return xc
            .sched_op(
                id,
                XEN_SCHEDULER_CREDIT,
                XEN_DOMCTL_SCHEDOP_PUTINFO,
                &mut params,
            )
            .map_err(|e| e.to_string());
    }
    println!("Name                                ID Weight  Cap");
    for d in targets(xc, &domain)? {
        let mut params = [0u8; 16];
        xc.sched_op(
            d.domain,
            XEN_SCHEDULER_CREDIT,
            XEN_DOMCTL_SCHEDOP_GETINFO,
            &mut params,
        )
        .map_err(|e| e.to_string())?;
        let (c, _) = XenDomctlSchedCredit::read_from_prefix(&params).map_err(|_| "scheduler_op")?;
        println!(
            "{:<32} {:>5} {:>6} {:>4}",
            name_of(&d),
            d.domain,
            c.weight,
            c.cap
        );
    }
    Ok(())
}

/// `xl sched-rtds`: sets a domain's period and budget, or lists them.
fn sched_rtds(
    xc: &Xc,
    domain: Option<String>,
    period: Option<u32>,
    budget: Option<u32>,
) -> Result<(), String> {
    use rxen_abi::sysctl::XEN_SCHEDULER_RTDS;
    use zerocopy::{FromBytes, IntoBytes};
    if xc.sched_id().map_err(|e| e.to_string())? != XEN_SCHEDULER_RTDS {
        return Err("the hypervisor does not run the RTDS scheduler".into());
    }
    let get = |id: u16| -> Result<XenDomctlSchedRtds, String> {
        let mut params = [0u8; 16];
        xc.sched_op(
            id,
            XEN_SCHEDULER_RTDS,
            XEN_DOMCTL_SCHEDOP_GETINFO,
            &mut params,
        )
        .map_err(|e| e.to_string())?;
        XenDomctlSchedRtds::read_from_prefix(&params)
            .map(|(r, _)| r)
            .map_err(|_| "scheduler_op".to_string())
    };
    if period.is_some() || budget.is_some() {
        let d = domain.as_deref().ok_or("-p/-b need -d <domain>")?;
        let id = lookup(xc, d)?;
        let now = get(id)?;
        let set = XenDomctlSchedRtds {
            period: period.unwrap_or(now.period),
            budget: budget.unwrap_or(now.budget),
            flags: now.flags,
        };
        let mut params = [0u8; 16];
        params[..12].copy_from_slice(set.as_bytes());
        return xc
            .sched_op(
                id,
                XEN_SCHEDULER_RTDS,
                XEN_DOMCTL_SCHEDOP_PUTINFO,
                &mut params,
            )
            .map_err(|e| e.to_string());
    }
    println!("Name                                ID    Period    Budget  Extratime");
    for d in targets(xc, &domain)? {
        let r = get(d.domain)?;
        let extra = if r.flags & XEN_DOMCTL_SCHEDRT_EXTRA != 0 {
            "yes"
        } else {
            "no"
        };
        println!(
            "{:<32} {:>5} {:>9} {:>9} {:>10}",
            name_of(&d),
            d.domain,
            r.period,
            r.budget,
            extra
        );
    }
    Ok(())
}

/// A domain's name: xenstore's, else `Domain-0` for dom0 or the one rxl gave it,
/// else `(null)` as xl shows a domain without one.
fn name_of(d: &DomainInfo) -> String {
    if let Some(name) = xenstore::Xenstore::connect().and_then(|mut xs| xs.name(d.domain)) {
        return name;
    }
    if d.domain == 0 {
        return "Domain-0".into();
    }
    fs::read_to_string(Path::new(NAMES).join(d.domain.to_string()))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| "(null)".into())
}

/// Destroys domain `domid` as libxl does: its devices first (by force: the
/// backends let go of its grants, loop devices are freed), then the domain, then
/// its name and xenstore directories.
fn destroy(xc: &Xc, domid: u16) -> Result<(), String> {
    let _ = xc.pause(domid);
    let devices = match xenstore::Xenstore::connect() {
        Some(mut xs) => device::remove_all(&mut xs, domid),
        None => Ok(()),
    };
    let result = xc.destroy(domid).map_err(|e| e.to_string());
    forget(domid);
    result.and(devices)
}

/// A connection to the xenstore daemon, which `what` needs.
fn need_xenstore(what: &str) -> Result<xenstore::Xenstore, String> {
    xenstore::Xenstore::connect()
        .ok_or_else(|| format!("no xenstore daemon ({XENSTORED_SOCKET}): {what} needs one"))
}

/// Forgets a destroyed domain: its name and its xenstore directories.
fn forget(domid: u16) {
    let _ = fs::remove_file(Path::new(NAMES).join(domid.to_string()));
    if let Some(mut xs) = xenstore::Xenstore::connect() {
        xs.remove_domain(domid);
    }
}

/// Asks the guest to `what` (poweroff, reboot) through `control/shutdown`, as xl
/// does for a guest that announced `control/feature-poweroff`.
fn request_shutdown(domid: u16, what: &str) -> Result<(), String> {
    let mut xs = xenstore::Xenstore::connect()
        .ok_or_else(|| "no xenstore daemon: the guest cannot be asked".to_string())?;
    let control = format!("/local/domain/{domid}/control");
    if xs.read(&format!("{control}/feature-poweroff")).as_deref() != Some("1") {
        return Err(format!(
            "d{domid} has no PV control interface (control/feature-poweroff): use destroy"
        ));
    }
    xs.write(&format!("{control}/shutdown"), what)
}

/// A size for mem-set: MiB by default, or with a `k`, `m` or `g` suffix; in KiB.
fn parse_size_kib(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 0),
        Some('m') => (&t[..t.len() - 1], 10),
        Some('g') => (&t[..t.len() - 1], 20),
        _ => (&t[..], 10),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&kib| kib > 0)
        .ok_or_else(|| format!("{text}: not a memory size"))
}

/// Fills `buf` from `/dev/urandom`.
fn random_bytes(buf: &mut [u8]) {
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(buf);
    }
}

/// A random UUID (version 4) for the domain's `/vm` entry.
fn uuid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

/// The domain named `what` (an id or a name).
fn lookup(xc: &Xc, what: &str) -> Result<u16, String> {
    let domains = xc.domains().map_err(|e| e.to_string())?;
    let found = match what.parse::<u16>() {
        Ok(id) => domains.iter().find(|d| d.domain == id),
        Err(_) => domains.iter().find(|d| name_of(d) == what),
    };
    found
        .map(|d| d.domain)
        .ok_or_else(|| format!("{what} is an invalid domain identifier"))
}

/// xl's state letters: running, blocked, paused, shutdown, crashed, dying.
fn state(d: &DomainInfo) -> String {
    let shutdown = d.flags & XEN_DOMINF_SHUTDOWN != 0;
    let code = (d.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & 0xff;
    [
        (d.flags & XEN_DOMINF_RUNNING != 0, 'r'),
        (d.flags & XEN_DOMINF_BLOCKED != 0, 'b'),
        (d.flags & XEN_DOMINF_PAUSED != 0, 'p'),
        (shutdown && code != SHUTDOWN_CRASH, 's'),
        (shutdown && code == SHUTDOWN_CRASH, 'c'),
        (d.flags & XEN_DOMINF_DYING != 0, 'd'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { '-' })
    .collect()
}

/// `xl list`'s table.
fn list(domains: &[DomainInfo], long: bool) -> String {
    let mut out = String::from(
        "Name                                        ID   Mem VCPUs\tState\tTime(s)\n",
    );
    for d in domains {
        out.push_str(&format!(
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}\n",
            name_of(d),
            d.domain,
            d.tot_pages / 256,
            d.nr_online_vcpus,
            state(d),
            d.cpu_time as f64 / 1e9
        ));
        if long {
            out.push_str(&format!(
                "    max_pages {} max_vcpu_id {} flags {:#x} cpupool {} gpaddr_bits {}\n",
                d.max_pages, d.max_vcpu_id, d.flags, d.cpupool, d.gpaddr_bits
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn list_prints_xls_columns() {
        let mut d = DomainInfo::new_zeroed();
        d.domain = 0;
        d.tot_pages = 8192;
        d.nr_online_vcpus = 2;
        d.flags = XEN_DOMINF_RUNNING;
        d.cpu_time = 12_345_000_000;
        let text = list(&[d], false);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        );
        assert_eq!(
            lines.next(),
            Some("Domain-0                                     0    32     2     r-----      12.3")
        );
    }

    #[test]
    fn mem_set_sizes_are_mib_unless_suffixed() {
        assert_eq!(parse_size_kib("256"), Ok(256 << 10));
        assert_eq!(parse_size_kib("512k"), Ok(512));
        assert_eq!(parse_size_kib("1G"), Ok(1 << 20));
        assert!(parse_size_kib("0").is_err());
        assert!(parse_size_kib("lots").is_err());
        assert!(parse_size_kib("99999999999999999g").is_err());
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn state_letters_follow_xl() {
        let mut d = DomainInfo::new_zeroed();
        d.flags = XEN_DOMINF_PAUSED | XEN_DOMINF_SHUTDOWN | (3 << XEN_DOMINF_SHUTDOWNSHIFT);
        assert_eq!(state(&d), "--p-c-");
        d.flags = XEN_DOMINF_BLOCKED | XEN_DOMINF_SHUTDOWN;
        assert_eq!(state(&d), "-b-s--");
    }
}
