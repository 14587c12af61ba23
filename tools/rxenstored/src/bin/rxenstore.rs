//! `rxenstore`: xenstore from the shell, after Debian's `xenstore-read`, `-write`,
//! `-ls`, `-rm` and `-watch`, plus `introduce`/`release` (the toolstack's calls).
//! Talks to the daemon's socket (`--socket`, else `$XENSTORED_PATH`, else Xen's
//! default), or with `--xenbus` through the dom0 kernel's `/dev/xen/xenbus`.

use clap::{Parser, Subcommand};
use rxenstored::client::{Client, Link, XenbusDev};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rxenstore",
    about = "xenstore client (xenstore-read/-write/-ls/...)"
)]
struct Cli {
    /// The daemon's socket (default: $XENSTORED_PATH or /var/run/xenstored/socket).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Talk through the dom0 kernel's xenstore device instead of the socket.
    #[arg(long)]
    xenbus: bool,
    /// The kernel's device, for --xenbus.
    #[arg(long, default_value = XenbusDev::PATH)]
    xenbus_path: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints the value of each path (xenstore-read).
    Read { paths: Vec<String> },
    /// Writes each path = value (xenstore-write).
    Write { pairs: Vec<String> },
    /// Lists a subtree with values (xenstore-ls).
    Ls {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Removes each path and its subtree (xenstore-rm).
    Rm { paths: Vec<String> },
    /// Prints the path of each event of a watch (xenstore-watch); the first comes at once.
    Watch {
        /// Exit after this many events.
        #[arg(short = 'n')]
        count: Option<u64>,
        path: String,
    },
    /// XS_INTRODUCE: the ring's gfn and port default to the domain's HVM params.
    Introduce {
        domid: u32,
        gfn: Option<u64>,
        port: Option<u32>,
    },
    /// XS_RELEASE.
    Release { domid: u32 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.xenbus {
        true => XenbusDev::open(&cli.xenbus_path)
            .map_err(|e| format!("{}: {e}", cli.xenbus_path.display()))
            .and_then(|d| run(Client::new(d), cli.cmd)),
        false => {
            let path = cli
                .socket
                .or_else(|| std::env::var_os("XENSTORED_PATH").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/var/run/xenstored/socket"));
            Client::connect(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|c| run(c, cli.cmd))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rxenstore: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run<L: Link>(mut c: Client<L>, cmd: Cmd) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| e.to_string();
    match cmd {
        Cmd::Read { paths } => {
            for p in paths {
                let v = c.read(0, &p).map_err(|e| format!("{p}: {e}"))?;
                out.write_all(&v).map_err(w)?;
                out.write_all(b"\n").map_err(w)?;
            }
        }
        Cmd::Write { pairs } => {
            if pairs.len() % 2 != 0 {
                return Err("write: PATH VALUE pairs".into());
            }
            for kv in pairs.chunks(2) {
                c.write(0, &kv[0], kv[1].as_bytes())
                    .map_err(|e| format!("{}: {e}", kv[0]))?;
            }
        }
        Cmd::Rm { paths } => {
            for p in paths {
                c.rm(0, &p).map_err(|e| format!("{p}: {e}"))?;
            }
        }
        Cmd::Ls { path } => ls(&mut c, &mut out, &path, 0)?,
        Cmd::Watch { count, path } => {
            c.watch(&path, "rxenstore")
                .map_err(|e| format!("{path}: {e}"))?;
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                if let Some((p, _)) = c
                    .next_event(Duration::from_secs(3600))
                    .map_err(|e| e.to_string())?
                {
                    writeln!(out, "{p}").map_err(w)?;
                    out.flush().map_err(w)?;
                    seen += 1;
                }
            }
        }
        Cmd::Introduce { domid, gfn, port } => {
            let (gfn, port) = match (gfn, port) {
                (Some(g), Some(p)) => (g, p),
                _ => store_params(domid)?,
            };
            c.introduce(domid, gfn, port)
                .map_err(|e| format!("introduce d{domid}: {e}"))?;
        }
        Cmd::Release { domid } => c
            .release(domid)
            .map_err(|e| format!("release d{domid}: {e}"))?,
    }
    Ok(())
}

/// The domain's xenstore ring gfn and port (`HVM_PARAM_STORE_PFN`, `_EVTCHN`).
fn store_params(domid: u32) -> Result<(u64, u32), String> {
    use rxen_abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
    let id = u16::try_from(domid).map_err(|_| format!("bad domain {domid}"))?;
    let xc = rxen_ctrl::xc::Xc::open().map_err(|e| e.to_string())?;
    let gfn = xc
        .hvm_param(id, HVM_PARAM_STORE_PFN)
        .map_err(|e| e.to_string())?;
    let port = xc
        .hvm_param(id, HVM_PARAM_STORE_EVTCHN)
        .map_err(|e| e.to_string())?;
    Ok((
        gfn,
        u32::try_from(port).map_err(|_| format!("bad port {port}"))?,
    ))
}

/// xenstore-ls's layout: one line per node, `name = "value"`, one space of indent
/// per level.
fn ls<L: Link>(
    c: &mut Client<L>,
    out: &mut impl Write,
    path: &str,
    depth: usize,
) -> Result<(), String> {
    let children = c.directory(0, path).map_err(|e| format!("{path}: {e}"))?;
    for name in children {
        let child = if path.ends_with('/') {
            format!("{path}{name}")
        } else {
            format!("{path}/{name}")
        };
        let value = c.read(0, &child).unwrap_or_default();
        let shown: String = value
            .iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        writeln!(out, "{:depth$}{name} = \"{shown}\"", "").map_err(|e| e.to_string())?;
        ls(c, out, &child, depth + 1)?;
    }
    Ok(())
}
