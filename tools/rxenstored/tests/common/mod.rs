//! Helpers shared by the integration tests: private temporary directories and an
//! in-process daemon on a private socket.
#![allow(dead_code)]

use rxenstored::core::{DomainBackend, NoRings};
use rxenstored::server::{Config, Server};
use rxenstored::store::Quotas;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rxs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(dir: &Path) -> Config {
    Config {
        socket: dir.join("socket"),
        socket_ro: Some(dir.join("socket_ro")),
        state_file: None,
        quotas: Quotas::default(),
    }
}

pub fn start(dir: &Path) -> Server {
    Server::start(config(dir), Arc::new(NoRings)).unwrap()
}

pub fn start_with(cfg: Config, backend: Arc<dyn DomainBackend>) -> Server {
    Server::start(cfg, backend).unwrap()
}
