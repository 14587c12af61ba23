//! Compatibility with clients no one here wrote: Debian's `xenstore-utils` (built on
//! Xen's libxenstore) against rxenstored on a private socket, located through
//! libxenstore's `XENSTORED_PATH`. Skipped, with a message, only if the tools are absent.

mod common;

use rxenstored::client::Client;
use rxenstored::wire::XsError;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn have_tools() -> bool {
    let ok = Path::new("/usr/bin/xenstore-read").exists();
    if !ok {
        println!("SKIPPED: xenstore-utils not installed (apt-get install xenstore-utils)");
    }
    ok
}

fn tool(sock: &Path, name: &str, args: &[&str]) -> Output {
    Command::new(format!("/usr/bin/{name}"))
        .args(args)
        .env("XENSTORED_PATH", sock)
        .env_remove("XENSTORED_RUNDIR")
        .output()
        .unwrap()
}

fn ok(sock: &Path, name: &str, args: &[&str]) -> String {
    let o = tool(sock, name, args);
    assert!(
        o.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn xenstore_utils_read_write_list_rm() {
    if !have_tools() {
        return;
    }
    let dir = common::TempDir::new("compat");
    let server = common::start(dir.path());
    let s = dir.path().join("socket");
    ok(
        &s,
        "xenstore-write",
        &["/vm/a", "hello", "/vm/b", "world with spaces"],
    );
    assert_eq!(ok(&s, "xenstore-read", &["/vm/a"]), "hello\n");
    assert_eq!(ok(&s, "xenstore-read", &["/vm/b"]), "world with spaces\n");
    assert_eq!(ok(&s, "xenstore-list", &["/vm"]), "a\nb\n");
    assert!(tool(&s, "xenstore-exists", &["/vm/a"]).status.success());
    assert!(!tool(&s, "xenstore-exists", &["/vm/zz"]).status.success());
    assert!(!tool(&s, "xenstore-read", &["/vm/zz"]).status.success());
    let ls = ok(&s, "xenstore-ls", &["/vm"]);
    assert_eq!(ls, "a = \"hello\"\nb = \"world with spaces\"\n");
    ok(&s, "xenstore-rm", &["/vm/a"]);
    assert_eq!(ok(&s, "xenstore-list", &["/vm"]), "b\n");
    // Values written by the tools are seen by our client, and the other way round.
    let mut c = Client::connect(&s).unwrap();
    assert_eq!(c.read(0, "/vm/b").unwrap(), b"world with spaces");
    c.write(0, "/vm/c", b"from-rust").unwrap();
    assert_eq!(ok(&s, "xenstore-read", &["/vm/c"]), "from-rust\n");
    server.shutdown().unwrap();
}

#[test]
fn xenstore_utils_permissions() {
    if !have_tools() {
        return;
    }
    let dir = common::TempDir::new("compatp");
    let server = common::start(dir.path());
    let s = dir.path().join("socket");
    ok(&s, "xenstore-write", &["/p/x", "1"]);
    ok(&s, "xenstore-chmod", &["/p/x", "n1", "r2", "w3", "b4"]);
    let ls = ok(&s, "xenstore-ls", &["-p", "/p"]);
    assert!(ls.contains("(n1,r2,w3,b4)"), "{ls}");
    let mut c = Client::connect(&s).unwrap();
    assert_eq!(
        c.get_perms(0, "/p/x").unwrap(),
        vec!["n1", "r2", "w3", "b4"]
    );
    // Recursive chmod.
    ok(&s, "xenstore-write", &["/p/x/y", "2"]);
    ok(&s, "xenstore-chmod", &["-r", "/p", "n0", "r7"]);
    assert_eq!(c.get_perms(0, "/p/x/y").unwrap(), vec!["n0", "r7"]);
    // Bad permission strings are refused by the daemon.
    assert!(!tool(&s, "xenstore-chmod", &["/p", "q9"]).status.success());
    server.shutdown().unwrap();
}

#[test]
fn xenstore_utils_watch() {
    if !have_tools() {
        return;
    }
    let dir = common::TempDir::new("compatw");
    let server = common::start(dir.path());
    let s = dir.path().join("socket");
    ok(&s, "xenstore-write", &["/w", ""]);
    let child = Command::new("/usr/bin/xenstore-watch")
        .args(["-n", "3", "/w"])
        .env("XENSTORED_PATH", &s)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the watch is registered, then cause two events.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while server.with_core(|c| c.conn_count()) < 1 {
        assert!(std::time::Instant::now() < end);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    ok(&s, "xenstore-write", &["/w/x", "1"]);
    ok(&s, "xenstore-rm", &["/w/x"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "/w\n/w/x\n/w/x\n");
    server.shutdown().unwrap();
}

#[test]
fn xenstore_utils_transaction_conflict() {
    if !have_tools() {
        return;
    }
    let dir = common::TempDir::new("compatt");
    let server = common::start(dir.path());
    let s = dir.path().join("socket");
    ok(&s, "xenstore-write", &["/t/v", "0"]);
    // Our transaction reads /t/v; xenstore-write (itself transactional) changes it;
    // our commit must fail with EAGAIN, and the tool's value must stand.
    let mut c = Client::connect(&s).unwrap();
    let t = c.tx_start().unwrap();
    assert_eq!(c.read(t, "/t/v").unwrap(), b"0");
    ok(&s, "xenstore-write", &["/t/v", "theirs"]);
    // The tool's write does not show through to the transaction.
    assert_eq!(c.read(t, "/t/v").unwrap(), b"0");
    c.write(t, "/t/v", b"mine").unwrap();
    assert_eq!(c.read(t, "/t/v").unwrap(), b"mine");
    assert_eq!(c.tx_end(t, true).unwrap_err().xs(), Some(XsError::Again));
    assert_eq!(ok(&s, "xenstore-read", &["/t/v"]), "theirs\n");
    // Conflicts are per node: a tool changing a node our transaction did not touch
    // does not make it fail, and both changes stand.
    let t = c.tx_start().unwrap();
    c.write(t, "/t/other", b"x").unwrap();
    ok(&s, "xenstore-write", &["/t/v", "again"]);
    c.tx_end(t, true).unwrap();
    assert_eq!(ok(&s, "xenstore-read", &["/t/v"]), "again\n");
    assert_eq!(ok(&s, "xenstore-read", &["/t/other"]), "x\n");
    server.shutdown().unwrap();
}

#[test]
fn xenstore_utils_large_directory_uses_directory_part() {
    if !have_tools() {
        return;
    }
    let dir = common::TempDir::new("compatd");
    let server = common::start(dir.path());
    let s = dir.path().join("socket");
    let mut c = Client::connect(&s).unwrap();
    let mut names = Vec::new();
    for i in 0..300 {
        let n = format!("a-rather-long-child-name-{i:04}");
        c.write(0, &format!("/big/{n}"), b"").unwrap();
        names.push(n);
    }
    let listed = ok(&s, "xenstore-list", &["/big"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), names);
    server.shutdown().unwrap();
}
