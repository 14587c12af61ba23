//! Restart keeps state: nodes, permissions, domain connections and their watches
//! survive a shutdown and restart (in process, and for the real binary on SIGTERM and
//! on an `XS_CONTROL live-update`).

mod common;

use rxenstored::client::Client;
use rxenstored::ring::MemoryBackend;
use rxenstored::wire::MsgType;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

#[test]
fn state_and_guest_watches_survive_a_restart() {
    let dir = common::TempDir::new("restart");
    let mut cfg = common::config(dir.path());
    cfg.state_file = Some(dir.path().join("state"));
    let backend = Arc::new(MemoryBackend::default());
    let server = common::start_with(cfg.clone(), backend.clone());
    let sock = dir.path().join("socket");
    let mut d0 = Client::connect(&sock).unwrap();
    let ring = backend.add_domain(3);
    d0.mkdir(0, "/local/domain/3").unwrap();
    d0.set_perms(0, "/local/domain/3", &["n3", "r0"]).unwrap();
    d0.introduce(3, 0x1000, 9).unwrap();
    let mut g = Client::new(ring);
    g.write(0, "data/a", b"1").unwrap();
    g.watch("data", "w").unwrap();
    assert_eq!(g.next_event(T).unwrap(), Some(("data".into(), "w".into())));
    for i in 0..50 {
        d0.write(0, &format!("/vm/{i}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    d0.set_perms(0, "/vm/7", &["n0", "r3", "w4"]).unwrap();
    drop(d0);
    server.shutdown().unwrap();
    assert!(dir.path().join("state").exists());

    let server = common::start_with(cfg, backend.clone());
    let mut d0 = Client::connect(&sock).unwrap();
    for i in 0..50 {
        assert_eq!(
            d0.read(0, &format!("/vm/{i}")).unwrap(),
            format!("v{i}").as_bytes()
        );
    }
    assert_eq!(d0.get_perms(0, "/vm/7").unwrap(), vec!["n0", "r3", "w4"]);
    assert_eq!(
        d0.get_perms(0, "/local/domain/3/data/a").unwrap(),
        vec!["n3", "r0"]
    );
    assert_eq!(
        d0.request(MsgType::IsDomainIntroduced, 0, b"3\0").unwrap(),
        b"T\0"
    );
    // The guest's connection and watch are still there, without a new initial event.
    d0.write(0, "/local/domain/3/data/b", b"2").unwrap();
    assert_eq!(
        g.next_event(T).unwrap(),
        Some(("data/b".into(), "w".into()))
    );
    assert_eq!(g.read(0, "data/a").unwrap(), b"1");
    server.with_core(|c| c.store.check()).unwrap();
    server.shutdown().unwrap();
}

fn spawn(dir: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_rxenstored"))
        .arg("--socket")
        .arg(dir.join("socket"))
        .arg("--state-file")
        .arg(dir.join("state"))
        .spawn()
        .unwrap();
    connect(dir);
    child
}

fn connect(dir: &Path) -> Client<std::os::unix::net::UnixStream> {
    let end = Instant::now() + T;
    loop {
        if let Ok(c) = Client::connect(&dir.join("socket")) {
            return c;
        }
        assert!(Instant::now() < end, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn binary_keeps_state_across_sigterm_and_live_update() {
    let dir = common::TempDir::new("bin");
    let mut child = spawn(dir.path());
    let mut c = connect(dir.path());
    c.write(0, "/persist/a", b"alpha").unwrap();
    c.set_perms(0, "/persist/a", &["n0", "r5"]).unwrap();
    // SAFETY: plain kill(2) on our own child.
    // SAFETY: kill(2) on our own child process; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let mut child = spawn(dir.path());
    let mut c = connect(dir.path());
    assert_eq!(c.read(0, "/persist/a").unwrap(), b"alpha");
    assert_eq!(c.get_perms(0, "/persist/a").unwrap(), vec!["n0", "r5"]);

    // Live update: the daemon saves, re-executes itself (same pid), restores.
    c.write(0, "/persist/b", b"beta").unwrap();
    assert_eq!(
        c.request(MsgType::Control, 0, b"live-update\0").unwrap(),
        b"OK\0"
    );
    // The old process closes our connection when it shuts down for the update.
    let end = Instant::now() + T;
    while c.read(0, "/persist/b").is_ok() {
        assert!(Instant::now() < end, "old daemon did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(mut c) = Client::connect(&dir.path().join("socket")) {
            if let Ok(v) = c.read(0, "/persist/b") {
                assert_eq!(v, b"beta");
                break c;
            }
        }
        assert!(Instant::now() < end, "daemon did not come back");
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "same process after exec"
    );
    assert_eq!(c.read(0, "/persist/a").unwrap(), b"alpha");
    // SAFETY: kill(2) on our own child process; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
