//! rxenstored: a xenstore daemon in Rust, wire-compatible with Xen's clients
//! (libxenstore and the `xenstore-*` tools, guest xenbus drivers).
//!
//! Layers, bottom up:
//! - [`wire`]: the `xs_wire.h` framing, message types and error names;
//! - [`perms`]: permission entries and access rules;
//! - [`store`]: the tree, transactions and quotas;
//! - [`watch`]: watch registration and matching;
//! - [`core`]: connections, domains and request dispatch (transport independent);
//! - [`ring`]: the per-domain shared ring and event channel, behind a small trait;
//! - [`server`]: Unix sockets and ring threads around the core;
//! - [`xen`]: the backend in a Linux dom0 (gntdev, evtchn, xenfs, `getdomaininfo`);
//! - [`state`]: saving and restoring state across restarts (live update);
//! - [`client`]: a minimal client for tests and the benchmark;
//! - [`bench`]: the throughput benchmark behind `rxenstored bench`;
//! - [`log`]: levelled, per-domain rate-limited logging.

pub mod bench;
pub mod client;
pub mod core;
pub mod log;
pub mod perms;
pub mod ring;
pub mod server;
pub mod state;
pub mod store;
pub mod watch;
pub mod wire;
pub mod xen;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod store_tests;
