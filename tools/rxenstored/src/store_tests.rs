//! Unit tests of the store: paths, permissions, inheritance, transactions, quotas and
//! every error path of the tree operations.

use crate::perms::{Caller, Perms};
use crate::store::{Match, Quotas, Store};
use crate::wire::XsError::{self, *};

const D0: Caller = Caller::DOM0;

fn g(d: u32) -> Caller {
    Caller::guest(d)
}

fn perms(s: &[&str]) -> Perms {
    Perms::parse(s).unwrap()
}

/// A store with /local/domain/1 and /local/domain/2 owned by their domains (as the
/// toolstack sets them up).
fn setup() -> Store {
    let mut s = Store::default();
    for d in [1, 2] {
        let p = format!("/local/domain/{d}");
        s.mkdir(None, &D0, &p).unwrap();
        s.set_perms(None, &D0, &p, perms(&[&format!("n{d}")]))
            .unwrap();
    }
    s
}

fn err<T: std::fmt::Debug>(r: Result<T, XsError>) -> XsError {
    r.unwrap_err()
}

#[test]
fn initial_tree_matches_xen() {
    let mut s = Store::default();
    assert_eq!(s.directory(None, &D0, "/").unwrap().1, vec!["tool"]);
    assert_eq!(
        s.directory(None, &D0, "/tool").unwrap().1,
        vec!["xenstored"]
    );
    assert_eq!(s.read(None, &D0, "/").unwrap(), b"");
    assert_eq!(
        s.get_perms(None, &D0, "@introduceDomain")
            .unwrap()
            .to_strings(),
        ["n0"]
    );
    assert_eq!(
        s.get_perms(None, &D0, "@releaseDomain")
            .unwrap()
            .to_strings(),
        ["n0"]
    );
    s.check().unwrap();
}

#[test]
fn write_read_and_parents() {
    let mut s = Store::default();
    let ev = s.write(None, &D0, "/a/b/c", b"v").unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].path, "/a/b/c");
    assert_eq!(ev[0].kind, Match::Subtree);
    assert_eq!(s.read(None, &D0, "/a/b/c").unwrap(), b"v");
    assert_eq!(s.read(None, &D0, "/a/b").unwrap(), b"");
    assert_eq!(s.directory(None, &D0, "/").unwrap().1, vec!["tool", "a"]);
    // Binary values, overwrite keeps children.
    s.write(None, &D0, "/a", &[0, 1, 2, 255]).unwrap();
    assert_eq!(s.read(None, &D0, "/a").unwrap(), vec![0, 1, 2, 255]);
    assert_eq!(s.directory(None, &D0, "/a").unwrap().1, vec!["b"]);
    // Children listed in creation order.
    for c in ["z", "y", "x"] {
        s.write(None, &D0, &format!("/o/{c}"), b"").unwrap();
    }
    assert_eq!(s.directory(None, &D0, "/o").unwrap().1, vec!["z", "y", "x"]);
    s.check().unwrap();
}

#[test]
fn invalid_paths() {
    let mut s = Store::default();
    for p in [
        "",
        "/a/",
        "//a",
        "/a//b",
        "/a b",
        "/a\u{e9}",
        "@introduceDomain",
        "/a.b",
        "/a*",
    ] {
        assert_eq!(err(s.read(None, &D0, p)), Inval, "read {p:?}");
        assert_eq!(err(s.write(None, &D0, p, b"x")), Inval, "write {p:?}");
    }
    assert_eq!(err(s.read(None, &D0, "/nope")), NoEnt);
    assert_eq!(err(s.directory(None, &D0, "/nope")), NoEnt);
    assert_eq!(err(s.get_perms(None, &D0, "/nope")), NoEnt);
    assert_eq!(err(s.get_perms(None, &D0, "@nope")), NoEnt);
    // Guests: path length beyond XENSTORE_REL_PATH_MAX below their home.
    let mut s = setup();
    let long = format!("/local/domain/1/{}", "a".repeat(2100));
    assert_eq!(err(s.write(None, &g(1), &long, b"")), Inval);
    assert!(s.write(None, &D0, &long, b"").is_ok());
}

#[test]
fn relative_paths_are_below_home() {
    let mut s = setup();
    s.write(None, &g(1), "data/x", b"1").unwrap();
    assert_eq!(s.read(None, &D0, "/local/domain/1/data/x").unwrap(), b"1");
    assert_eq!(s.read(None, &g(1), "data/x").unwrap(), b"1");
    // dom0's relative paths are below /local/domain/0.
    s.write(None, &D0, "rel", b"2").unwrap();
    assert_eq!(s.read(None, &D0, "/local/domain/0/rel").unwrap(), b"2");
}

#[test]
fn permissions_and_inheritance() {
    let mut s = setup();
    // Guest creates under its home: it owns the new nodes.
    s.write(None, &g(1), "/local/domain/1/a/b", b"x").unwrap();
    assert_eq!(
        s.get_perms(None, &D0, "/local/domain/1/a")
            .unwrap()
            .to_strings(),
        ["n1"]
    );
    assert_eq!(
        s.get_perms(None, &D0, "/local/domain/1/a/b")
            .unwrap()
            .to_strings(),
        ["n1"]
    );
    // Dom0 creating under a guest's node inherits the guest's permissions.
    s.write(None, &D0, "/local/domain/1/a/c", b"").unwrap();
    assert_eq!(
        s.get_perms(None, &D0, "/local/domain/1/a/c")
            .unwrap()
            .to_strings(),
        ["n1"]
    );
    // Another guest sees nothing, and learns nothing about existence.
    assert_eq!(err(s.read(None, &g(2), "/local/domain/1/a/b")), Acces);
    assert_eq!(err(s.read(None, &g(2), "/local/domain/1/a/nope")), Acces);
    assert_eq!(
        err(s.write(None, &g(2), "/local/domain/1/a/new", b"")),
        Acces
    );
    // Guest under its own readable tree: ENOENT for missing nodes.
    assert_eq!(err(s.read(None, &g(1), "/local/domain/1/nope")), NoEnt);
    // Grant read to dom2, inherited by new children with owner kept.
    s.set_perms(None, &g(1), "/local/domain/1/a", perms(&["n1", "r2"]))
        .unwrap();
    assert_eq!(s.read(None, &g(2), "/local/domain/1/a").unwrap(), b"");
    assert_eq!(err(s.write(None, &g(2), "/local/domain/1/a", b"")), Acces);
    s.write(None, &g(1), "/local/domain/1/a/d", b"").unwrap();
    assert_eq!(
        s.get_perms(None, &D0, "/local/domain/1/a/d")
            .unwrap()
            .to_strings(),
        ["n1", "r2"]
    );
    // Write permission lets dom2 create; dom2 owns what it creates, ACL inherited.
    s.set_perms(None, &g(1), "/local/domain/1/a", perms(&["n1", "b2"]))
        .unwrap();
    s.write(None, &g(2), "/local/domain/1/a/e", b"").unwrap();
    assert_eq!(
        s.get_perms(None, &D0, "/local/domain/1/a/e")
            .unwrap()
            .to_strings(),
        ["n2", "b2"]
    );
    // Default access via the owner entry.
    s.write(None, &D0, "/pub", b"hi").unwrap();
    s.set_perms(None, &D0, "/pub", perms(&["r0"])).unwrap();
    assert_eq!(s.read(None, &g(1), "/pub").unwrap(), b"hi");
    assert_eq!(err(s.write(None, &g(1), "/pub", b"")), Acces);
    // Reading the dom0-only root tree is refused.
    assert_eq!(err(s.read(None, &g(1), "/tool")), Acces);
    assert_eq!(err(s.directory(None, &g(1), "/")), Acces);
    s.check().unwrap();
}

#[test]
fn set_perms_errors() {
    let mut s = setup();
    s.write(None, &g(1), "x", b"").unwrap();
    let p = "/local/domain/1/x";
    assert_eq!(err(s.set_perms(None, &g(2), p, perms(&["n2"]))), Acces);
    assert_eq!(err(s.set_perms(None, &g(1), p, perms(&["n2"]))), Perm);
    assert_eq!(
        err(s.set_perms(None, &g(1), "/local/domain/1/nope", perms(&["n1"]))),
        NoEnt
    );
    let many = perms(&["n1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(err(s.set_perms(None, &g(1), p, many.clone())), NoSpc);
    assert!(s.set_perms(None, &D0, p, many).is_ok());
    // Dom0 may give a node away; ownership counts follow.
    let before = s.owned_by(2);
    s.set_perms(None, &D0, p, perms(&["n2"])).unwrap();
    assert_eq!(s.owned_by(2), before + 1);
    let ev = s.set_perms(None, &D0, p, perms(&["n1"])).unwrap();
    assert_eq!(ev[0].old_perms.as_ref().unwrap().to_strings(), ["n2"]);
    // Special nodes may be given permissions by dom0.
    s.set_perms(None, &D0, "@releaseDomain", perms(&["n0", "r1"]))
        .unwrap();
    assert_eq!(
        s.get_perms(None, &g(1), "@releaseDomain")
            .unwrap()
            .to_strings(),
        ["n0", "r1"]
    );
    // Read-only callers may not change anything.
    let ro = Caller {
        readonly: true,
        ..D0
    };
    assert_eq!(err(s.set_perms(None, &ro, p, perms(&["n0"]))), Acces);
    s.check().unwrap();
}

#[test]
fn mkdir_and_rm() {
    let mut s = Store::default();
    assert_eq!(s.mkdir(None, &D0, "/m/n").unwrap().len(), 1);
    s.write(None, &D0, "/m/n", b"keep").unwrap();
    assert!(s.mkdir(None, &D0, "/m/n").unwrap().is_empty());
    assert_eq!(s.read(None, &D0, "/m/n").unwrap(), b"keep");
    s.write(None, &D0, "/m/n/o/p", b"").unwrap();
    let ev = s.rm(None, &D0, "/m/n").unwrap();
    let mut paths: Vec<_> = ev.iter().map(|f| (f.path.as_str(), f.kind)).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            ("/m/n", Match::Subtree),
            ("/m/n/o", Match::Exact),
            ("/m/n/o/p", Match::Exact)
        ]
    );
    assert_eq!(err(s.read(None, &D0, "/m/n/o")), NoEnt);
    assert!(s.directory(None, &D0, "/m").unwrap().1.is_empty());
    // Missing node with an existing parent: fine. Missing parent: ENOENT.
    assert!(s.rm(None, &D0, "/m/n").unwrap().is_empty());
    assert_eq!(err(s.rm(None, &D0, "/x/y")), NoEnt);
    assert_eq!(err(s.rm(None, &D0, "/")), Inval);
    let mut s2 = setup();
    assert_eq!(err(s2.rm(None, &g(2), "/local/domain/1")), Acces);
    s.check().unwrap();
}

#[test]
fn transactions_are_isolated() {
    let mut s = Store::default();
    s.write(None, &D0, "/t/a", b"1").unwrap();
    let mut t = s.tx_start();
    s.write(Some(&mut t), &D0, "/t/a", b"2").unwrap();
    s.write(Some(&mut t), &D0, "/t/new/deep", b"3").unwrap();
    s.rm(Some(&mut t), &D0, "/tool").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/t/a").unwrap(), b"2");
    assert_eq!(err(s.read(Some(&mut t), &D0, "/tool")), NoEnt);
    assert_eq!(s.read(None, &D0, "/t/a").unwrap(), b"1");
    assert_eq!(err(s.read(None, &D0, "/t/new")), NoEnt);
    let ev = s.tx_commit(t, &D0).unwrap();
    assert_eq!(ev.len(), 1 + 1 + 2, "{ev:?}");
    assert_eq!(s.read(None, &D0, "/t/a").unwrap(), b"2");
    assert_eq!(s.read(None, &D0, "/t/new/deep").unwrap(), b"3");
    assert_eq!(err(s.read(None, &D0, "/tool/xenstored")), NoEnt);
    s.check().unwrap();
}

#[test]
fn transaction_conflicts_give_eagain() {
    let mut s = Store::default();
    s.write(None, &D0, "/c/x", b"0").unwrap();
    s.write(None, &D0, "/c/y", b"0").unwrap();
    // Read-then-outside-write conflicts.
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/c/x").unwrap();
    s.write(Some(&mut t), &D0, "/c/y", b"1").unwrap();
    s.write(None, &D0, "/c/x", b"outside").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/c/y").unwrap(), b"0");
    // Unrelated outside writes do not.
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/c/x").unwrap();
    s.write(Some(&mut t), &D0, "/c/y", b"2").unwrap();
    s.write(None, &D0, "/other", b"").unwrap();
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/c/y").unwrap(), b"2");
    // Two transactions creating siblings both modify the parent: second fails.
    let mut t1 = s.tx_start();
    let mut t2 = s.tx_start();
    s.write(Some(&mut t1), &D0, "/c/n1", b"").unwrap();
    s.write(Some(&mut t2), &D0, "/c/n2", b"").unwrap();
    s.tx_commit(t1, &D0).unwrap();
    assert_eq!(err(s.tx_commit(t2, &D0)), Again);
    // Observed absence conflicts with a later creation.
    let mut t = s.tx_start();
    assert_eq!(err(s.read(Some(&mut t), &D0, "/c/ghost")), NoEnt);
    s.write(None, &D0, "/c/ghost", b"").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    // Delete-and-recreate outside is a change too.
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/c/x").unwrap();
    s.rm(None, &D0, "/c/x").unwrap();
    s.write(None, &D0, "/c/x", b"outside").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    s.check().unwrap();
}

#[test]
fn transaction_reads_are_stable() {
    // Xen's `access_node`: the first access in a transaction copies the node into the
    // transaction; later reads see that copy whatever happens outside, and the commit
    // fails because the node's generation changed.
    let mut s = Store::default();
    s.write(None, &D0, "/a", b"old").unwrap();
    let mut t = s.tx_start();
    assert_eq!(s.read(Some(&mut t), &D0, "/a").unwrap(), b"old");
    s.write(None, &D0, "/a", b"new").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/a").unwrap(), b"old");
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/a").unwrap(), b"new");

    // Permissions read in the transaction stay as read.
    let mut t = s.tx_start();
    assert_eq!(
        s.get_perms(Some(&mut t), &D0, "/a").unwrap(),
        perms(&["n0"])
    );
    s.set_perms(None, &D0, "/a", perms(&["n0", "r1"])).unwrap();
    assert_eq!(
        s.get_perms(Some(&mut t), &D0, "/a").unwrap(),
        perms(&["n0"])
    );
    assert_eq!(err(s.tx_commit(t, &D0)), Again);

    // A node seen missing stays missing.
    let mut t = s.tx_start();
    assert_eq!(err(s.read(Some(&mut t), &D0, "/late")), NoEnt);
    s.write(None, &D0, "/late", b"x").unwrap();
    assert_eq!(err(s.read(Some(&mut t), &D0, "/late")), NoEnt);
    assert_eq!(err(s.tx_commit(t, &D0)), Again);

    // The transaction's own change wins over an outside one, but cannot commit.
    let mut t = s.tx_start();
    s.write(Some(&mut t), &D0, "/a", b"mine").unwrap();
    s.write(None, &D0, "/a", b"theirs").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/a").unwrap(), b"mine");
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/a").unwrap(), b"theirs");
    s.check().unwrap();
}

#[test]
fn transaction_directory_is_stable() {
    let mut s = Store::default();
    s.write(None, &D0, "/d/one", b"").unwrap();
    let mut t = s.tx_start();
    let (gen, kids) = s.directory(Some(&mut t), &D0, "/d").unwrap();
    assert_eq!(kids, vec!["one"]);
    // A child added outside changes the parent: not seen, and the commit fails.
    s.write(None, &D0, "/d/two", b"").unwrap();
    assert_eq!(
        s.directory(Some(&mut t), &D0, "/d").unwrap(),
        (gen, vec!["one".to_string()])
    );
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    // The transaction's own child shows, with a new generation.
    let mut t = s.tx_start();
    let (gen, _) = s.directory(Some(&mut t), &D0, "/d").unwrap();
    s.write(Some(&mut t), &D0, "/d/three", b"").unwrap();
    let (gen2, kids) = s.directory(Some(&mut t), &D0, "/d").unwrap();
    assert_eq!(kids, vec!["one", "two", "three"]);
    assert_ne!(gen, gen2);
    s.write(Some(&mut t), &D0, "/d/four", b"").unwrap();
    assert_ne!(s.directory(Some(&mut t), &D0, "/d").unwrap().0, gen2);
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(
        s.directory(None, &D0, "/d").unwrap().1,
        vec!["one", "two", "three", "four"]
    );
    s.check().unwrap();
}

#[test]
fn transaction_sees_outside_changes_until_first_access() {
    // Xen copies a node at first access, not at the start: a change made outside
    // before that shows, and does not fail the commit.
    let mut s = Store::default();
    s.write(None, &D0, "/a", b"0").unwrap();
    s.write(None, &D0, "/b", b"0").unwrap();
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/b").unwrap();
    s.write(None, &D0, "/a", b"1").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/a").unwrap(), b"1");
    s.write(Some(&mut t), &D0, "/b", b"2").unwrap();
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/b").unwrap(), b"2");

    // Writing a node never read: the write itself is the first access (Xen's
    // `do_write` reads the node first). An outside write before it is overwritten...
    let mut t = s.tx_start();
    s.write(None, &D0, "/a", b"outside").unwrap();
    s.write(Some(&mut t), &D0, "/a", b"tx").unwrap();
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/a").unwrap(), b"tx");
    // ...an outside write after it fails the commit.
    let mut t = s.tx_start();
    s.write(Some(&mut t), &D0, "/a", b"tx").unwrap();
    s.write(None, &D0, "/a", b"outside").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/a").unwrap(), b"outside");
    s.check().unwrap();
}

#[test]
fn transaction_checks_only_accessed_nodes() {
    let mut s = Store::default();
    s.write(None, &D0, "/k/x", b"0").unwrap();
    s.write(None, &D0, "/k/gone", b"0").unwrap();
    s.write(None, &D0, "/other/y", b"0").unwrap();
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/k/x").unwrap();
    s.write(Some(&mut t), &D0, "/k/x", b"1").unwrap();
    // Created, changed and removed outside, never accessed: no conflict (the parent
    // /k changes too, but the transaction did not access it).
    s.write(None, &D0, "/k/new", b"").unwrap();
    s.write(None, &D0, "/other/y", b"1").unwrap();
    s.rm(None, &D0, "/k/gone").unwrap();
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/k/x").unwrap(), b"1");
    assert_eq!(s.directory(None, &D0, "/k").unwrap().1, vec!["x", "new"]);
    s.check().unwrap();
}

#[test]
fn transaction_read_node_removed_outside() {
    let mut s = Store::default();
    s.write(None, &D0, "/r/a/b", b"v").unwrap();
    s.write(None, &D0, "/r/c", b"w").unwrap();
    let mut t = s.tx_start();
    assert_eq!(s.read(Some(&mut t), &D0, "/r/a/b").unwrap(), b"v");
    s.write(Some(&mut t), &D0, "/r/c", b"x").unwrap();
    s.rm(None, &D0, "/r/a").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/r/a/b").unwrap(), b"v");
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/r/c").unwrap(), b"w");
    // Removed and recreated with the same value: a new generation, still a conflict.
    s.write(None, &D0, "/r/a/b", b"v").unwrap();
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/r/a/b").unwrap();
    s.rm(None, &D0, "/r/a/b").unwrap();
    s.write(None, &D0, "/r/a/b", b"v").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    s.check().unwrap();
}

#[test]
fn transaction_nested_paths() {
    let mut s = Store::default();
    s.write(None, &D0, "/n/a/b", b"0").unwrap();
    // Reading a deep node accesses only that node: changes to its parent (a sibling
    // added) do not conflict.
    let mut t = s.tx_start();
    s.read(Some(&mut t), &D0, "/n/a/b").unwrap();
    s.write(None, &D0, "/n/a/sib", b"").unwrap();
    s.write(Some(&mut t), &D0, "/n/a/b", b"1").unwrap();
    s.tx_commit(t, &D0).unwrap();
    // Creating a deep path accesses each missing node and the existing ancestor that
    // gains a child: a change there conflicts, a change elsewhere does not.
    let mut t = s.tx_start();
    s.write(Some(&mut t), &D0, "/n/x/y/z", b"deep").unwrap();
    assert_eq!(t.touched(), 4, "/n/x/y/z, /n/x/y, /n/x and /n");
    s.write(None, &D0, "/n/a/b", b"2").unwrap();
    assert_eq!(s.read(Some(&mut t), &D0, "/n/x/y/z").unwrap(), b"deep");
    assert_eq!(err(s.read(None, &D0, "/n/x")), NoEnt);
    s.tx_commit(t, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/n/x/y/z").unwrap(), b"deep");
    let mut t = s.tx_start();
    s.write(Some(&mut t), &D0, "/n/p/q", b"").unwrap();
    s.write(None, &D0, "/n/other", b"").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    // Removing a subtree accesses every node in it: a change deep inside conflicts.
    let mut t = s.tx_start();
    s.rm(Some(&mut t), &D0, "/n/x").unwrap();
    assert_eq!(err(s.read(Some(&mut t), &D0, "/n/x/y/z")), NoEnt);
    s.write(None, &D0, "/n/x/y/z", b"changed").unwrap();
    assert_eq!(err(s.tx_commit(t, &D0)), Again);
    assert_eq!(s.read(None, &D0, "/n/x/y/z").unwrap(), b"changed");
    s.check().unwrap();
}

#[test]
fn concurrent_transactions_on_disjoint_nodes_commit() {
    let mut s = Store::default();
    s.write(None, &D0, "/p/a", b"0").unwrap();
    s.write(None, &D0, "/p/b", b"0").unwrap();
    let mut t1 = s.tx_start();
    let mut t2 = s.tx_start();
    s.read(Some(&mut t1), &D0, "/p/a").unwrap();
    s.read(Some(&mut t2), &D0, "/p/b").unwrap();
    s.write(Some(&mut t1), &D0, "/p/a", b"1").unwrap();
    s.write(Some(&mut t2), &D0, "/p/b", b"2").unwrap();
    // Neither sees the other's change, before or after the first commit.
    assert_eq!(s.read(Some(&mut t2), &D0, "/p/a").unwrap(), b"0");
    s.tx_commit(t1, &D0).unwrap();
    s.tx_commit(t2, &D0).unwrap_err(); // t2 read /p/a, which t1 changed
    let mut t1 = s.tx_start();
    let mut t2 = s.tx_start();
    s.write(Some(&mut t1), &D0, "/p/a", b"1").unwrap();
    s.write(Some(&mut t2), &D0, "/p/b", b"2").unwrap();
    s.tx_commit(t1, &D0).unwrap();
    s.tx_commit(t2, &D0).unwrap();
    assert_eq!(s.read(None, &D0, "/p/a").unwrap(), b"1");
    assert_eq!(s.read(None, &D0, "/p/b").unwrap(), b"2");
    s.check().unwrap();
}

#[test]
fn quotas_apply_to_guests_only() {
    let q = Quotas {
        max_nodes: 5,
        max_node_size: 64,
        ..Quotas::default()
    };
    let mut s = Store::new(q);
    s.mkdir(None, &D0, "/local/domain/1").unwrap();
    s.set_perms(None, &D0, "/local/domain/1", perms(&["n1"]))
        .unwrap();
    // Home node counts: owner 1 has 1 node.
    for i in 0..4 {
        s.write(None, &g(1), &format!("n{i}"), b"").unwrap();
    }
    assert_eq!(err(s.write(None, &g(1), "n4", b"")), NoSpc);
    assert_eq!(err(s.write(None, &g(1), "x/y", b"")), NoSpc);
    // Node size.
    assert_eq!(err(s.write(None, &g(1), "n0", &[b'a'; 100])), NoSpc);
    s.write(None, &g(1), "n0", &[b'a'; 40]).unwrap();
    // Dom0 is unlimited.
    s.write(None, &D0, "/big", &[b'a'; 3000]).unwrap();
    // Removing frees quota.
    s.rm(None, &g(1), "n3").unwrap();
    s.write(None, &g(1), "n5", b"").unwrap();
    // Transactions are checked when writing and at commit.
    s.rm(None, &g(1), "n5").unwrap();
    let mut t1 = s.tx_start();
    let mut t2 = s.tx_start();
    s.write(Some(&mut t1), &g(1), "q1", b"").unwrap();
    s.write(Some(&mut t2), &g(1), "/local/domain/1/n2/q2", b"")
        .unwrap();
    assert_eq!(err(s.write(Some(&mut t1), &g(1), "q3", b"")), NoSpc);
    s.tx_commit(t1, &g(1)).unwrap();
    assert_eq!(err(s.tx_commit(t2, &g(1))), NoSpc);
    s.check().unwrap();
}

#[test]
fn random_operations_keep_invariants() {
    // A deterministic pseudo-random mix of operations, in and out of transactions.
    let mut s = setup();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let names = ["a", "b", "c"];
    let mut tx = None;
    for _ in 0..5000 {
        let depth = 1 + rnd(3) as usize;
        let path: String = (0..depth)
            .map(|_| format!("/{}", names[rnd(3) as usize]))
            .collect();
        let who = match rnd(3) {
            0 => D0,
            1 => g(1),
            _ => g(2),
        };
        let full = if who.privileged {
            path.clone()
        } else {
            format!("/local/domain/{}{path}", who.domid)
        };
        let t = tx.as_mut();
        let _ = match rnd(6) {
            0 | 1 => s.write(t, &who, &full, b"v").map(drop),
            2 => s.rm(t, &who, &full).map(drop),
            3 => s.mkdir(t, &who, &full).map(drop),
            4 => s
                .set_perms(t, &who, &full, perms(&[&format!("n{}", who.domid), "r2"]))
                .map(drop),
            _ => s.read(t, &who, &full).map(drop),
        };
        match rnd(20) {
            0 if tx.is_none() => tx = Some(s.tx_start()),
            1 => {
                if let Some(t) = tx.take() {
                    let _ = s.tx_commit(t, &D0);
                }
            }
            _ => {}
        }
        s.check().unwrap();
    }
}
