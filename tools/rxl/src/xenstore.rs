//! What rxl keeps in xenstore, as libxl does (`libxl_create.c:libxl__domain_make`,
//! `libxl_dom.c:libxl__build_post`, `docs/misc/xenstore-paths.pandoc`): the domain's
//! directory `/local/domain/<id>` (owned by dom0, readable by the domain) with its
//! `name`, `domid`, `vm`, `memory/{static-max,target}`, `store/{port,ring-ref}`,
//! `console/{port,ring-ref,type}`, and the directories the guest writes
//! (`control`, `data`, `device`, `drivers`, `attr`, `error`), then
//! `XS_INTRODUCE` so the daemon serves the domain's ring. On destroy the
//! directories go (`xs_rm`, as libxl). Talks to the daemon over its socket.

use std::os::unix::net::UnixStream;
use std::path::Path;

use rxenstored::client::Client;

use crate::config::DomainConfig;
use crate::create::{Built, CONSOLE_GFN, XENSTORE_GFN};

/// The xenstore daemon's socket (Xen's default path).
pub const SOCKET: &str = "/var/run/xenstored/socket";

/// A directory to write: its nodes get the directory's permissions.
pub struct Dir {
    /// Its path.
    pub path: String,
    /// Its permissions: `n<owner>`, then `r<reader>`...
    pub perms: Vec<String>,
    /// Its nodes (name, value).
    pub nodes: Nodes,
}

/// Nodes of a directory: name, value.
pub type Nodes = Vec<(&'static str, String)>;

/// A connection to the xenstore daemon.
pub struct Xenstore {
    client: Client<UnixStream>,
}

impl Xenstore {
    /// Connects, if a daemon runs.
    pub fn connect() -> Option<Self> {
        Client::connect(Path::new(SOCKET))
            .ok()
            .map(|client| Self { client })
    }

    /// The value at `path`, if any.
    pub fn read(&mut self, path: &str) -> Option<String> {
        self.client
            .read(0, path)
            .ok()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Writes `value` at `path`.
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.client
            .write(0, path, value.as_bytes())
            .map_err(|e| format!("xenstore write {path}: {e}"))
    }

    /// The entries of the directory `path` (none if it does not exist).
    pub fn directory(&mut self, path: &str) -> Vec<String> {
        self.client.directory(0, path).unwrap_or_default()
    }

    /// Removes `path` and everything under it (nothing if it does not exist).
    pub fn rm(&mut self, path: &str) {
        let _ = self.client.rm(0, path);
    }

    /// Writes the directories `dirs` in one transaction.
    pub fn write_dirs(&mut self, dirs: &[Dir]) -> Result<(), String> {
        let e =
            |what: &str, err: rxenstored::client::ClientError| format!("xenstore {what}: {err}");
        // A transaction that meets another writer is tried again, as libxl.
        for _ in 0..8 {
            let tx = self
                .client
                .tx_start()
                .map_err(|err| e("transaction", err))?;
            for Dir { path, perms, nodes } in dirs {
                let perms: Vec<&str> = perms.iter().map(String::as_str).collect();
                self.client.mkdir(tx, path).map_err(|err| e(path, err))?;
                self.client
                    .set_perms(tx, path, &perms)
                    .map_err(|err| e(path, err))?;
                for (name, value) in nodes {
                    let node = format!("{path}/{name}");
                    self.client
                        .write(tx, &node, value.as_bytes())
                        .map_err(|err| e(&node, err))?;
                    self.client
                        .set_perms(tx, &node, &perms)
                        .map_err(|err| e(&node, err))?;
                }
            }
            match self.client.tx_end(tx, true) {
                Ok(()) => return Ok(()),
                Err(err) if err.xs() == Some(rxenstored::wire::XsError::Again) => continue,
                Err(err) => return Err(e("commit", err)),
            }
        }
        Err("xenstore: transaction kept failing with EAGAIN".to_string())
    }

    /// The name of domain `domid`, if xenstore has one.
    pub fn name(&mut self, domid: u16) -> Option<String> {
        self.read(&format!("/local/domain/{domid}/name"))
    }

    /// Writes a new domain's directories and introduces it to the daemon (in one
    /// transaction for the nodes, as libxl).
    pub fn add_domain(
        &mut self,
        config: &DomainConfig,
        built: &Built,
        uuid: &str,
    ) -> Result<(), String> {
        let id = built.domid;
        let dom = format!("/local/domain/{id}");
        let vm = format!("/vm/{uuid}");
        let e =
            |what: &str, err: rxenstored::client::ClientError| format!("xenstore {what}: {err}");
        let tx = self
            .client
            .tx_start()
            .map_err(|err| e("transaction", err))?;
        // Owned by dom0; the domain may read its own directory.
        let ro = [String::from("n0"), format!("r{id}")];
        let rw = [format!("n{id}")];
        let ro: Vec<&str> = ro.iter().map(String::as_str).collect();
        let rw: Vec<&str> = rw.iter().map(String::as_str).collect();
        for path in [&dom, &vm] {
            self.client.mkdir(tx, path).map_err(|err| e(path, err))?;
            self.client
                .set_perms(tx, path, &ro)
                .map_err(|err| e(path, err))?;
        }
        let values = [
            (format!("{vm}/name"), config.name.clone()),
            (format!("{vm}/uuid"), uuid.to_string()),
            (format!("{dom}/name"), config.name.clone()),
            (format!("{dom}/domid"), id.to_string()),
            (format!("{dom}/vm"), vm.clone()),
            (
                format!("{dom}/memory/static-max"),
                (config.maxmem_mib << 10).to_string(),
            ),
            (
                format!("{dom}/memory/target"),
                (config.memory_mib << 10).to_string(),
            ),
            (format!("{dom}/store/port"), built.store_port.to_string()),
            (format!("{dom}/store/ring-ref"), XENSTORE_GFN.to_string()),
            (
                format!("{dom}/console/port"),
                built.console_port.to_string(),
            ),
            (format!("{dom}/console/ring-ref"), CONSOLE_GFN.to_string()),
            (format!("{dom}/console/type"), "xenconsoled".to_string()),
            (format!("{dom}/console/output"), "pty".to_string()),
        ];
        for (path, value) in &values {
            self.client
                .write(tx, path, value.as_bytes())
                .map_err(|err| e(path, err))?;
        }
        // Where the guest writes: its drivers' states, its features, its data.
        for sub in ["control", "data", "device", "drivers", "attr", "error"] {
            let path = format!("{dom}/{sub}");
            self.client.mkdir(tx, &path).map_err(|err| e(&path, err))?;
            self.client
                .set_perms(tx, &path, &rw)
                .map_err(|err| e(&path, err))?;
        }
        // The guest answers shutdown requests here.
        let shutdown = format!("{dom}/control/shutdown");
        self.client
            .write(tx, &shutdown, b"")
            .map_err(|err| e(&shutdown, err))?;
        self.client
            .set_perms(tx, &shutdown, &rw)
            .map_err(|err| e(&shutdown, err))?;
        self.client
            .tx_end(tx, true)
            .map_err(|err| e("commit", err))?;
        self.client
            .introduce(u32::from(id), XENSTORE_GFN, built.store_port)
            .map_err(|err| e("introduce", err))
    }

    /// Removes a destroyed domain's directories.
    pub fn remove_domain(&mut self, domid: u16) {
        let dom = format!("/local/domain/{domid}");
        if let Some(vm) = self.read(&format!("{dom}/vm")) {
            let _ = self.client.rm(0, &vm);
        }
        let _ = self.client.rm(0, &dom);
    }
}
