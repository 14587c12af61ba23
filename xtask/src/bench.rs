//! `cargo xtask bench`: figures taken in one run, side by side with the real Xen 4.17
//! on the same QEMU line (only `-kernel` differs).
//!
//! - Null hypercall (`xen_version`) round trip against a bare `VMMCALL` exit with an
//!   empty handler (an unknown hypercall number), as measured by the `bench_hypercall`
//!   guest running as dom0, with their ratio.
//! - The hypervisor's memory cost for that domain (rxen's own report).
//! - rxenstored's operations per second (its own `bench` subcommand).

use std::time::Duration;

use rxen_tests::{guest, image, Outcome, Qemu, XEN_APPEND};

/// The value of the `BENCH <name> <value>` line in a guest's output.
fn figure(out: &Outcome, name: &str) -> Option<u64> {
    out.log.lines().find_map(|line| {
        let rest = line.split("BENCH ").nth(1)?;
        let mut words = rest.split_whitespace();
        (words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}

fn run_guest(hypervisor: &str) -> Outcome {
    let name = format!("bench-{hypervisor}");
    let q = if hypervisor == "rxen" {
        // The same machine and command line as Xen's, plus rxen's test exit.
        Qemu::xen(&name).kernel(image()).append("isa_debug_exit")
    } else {
        Qemu::xen(&name)
    };
    q.module(guest("bench_hypercall"), "")
        .stop_on("Test result:")
        .timeout(Duration::from_secs(180))
        .run()
}

/// Runs the benchmarks; returns the process exit status.
pub fn bench() -> i32 {
    println!(
        "xtask: running bench_hypercall on rxen and on Xen 4.17 (QEMU TCG, -cpu EPYC,+svm,+npt)"
    );
    println!("xtask: hypervisor options: {XEN_APPEND}");
    let rxen = run_guest("rxen");
    let xen = run_guest("xen");
    let mut ok = true;
    let mut rows = Vec::new();
    for (label, out) in [("rxen", &rxen), ("Xen 4.17", &xen)] {
        let null = figure(out, "null_hypercall_ns");
        let empty = figure(out, "empty_vmmcall_ns");
        if null.is_none() || empty.is_none() || !out.log.contains("Test result: SUCCESS") {
            eprintln!(
                "xtask: no figures from {label}; log tail:\n{}",
                out.tail(30)
            );
            ok = false;
        }
        rows.push((label, null, empty));
    }
    println!();
    println!(
        "{:<10} {:>22} {:>24} {:>14}",
        "", "null hypercall (ns)", "empty VMMCALL exit (ns)", "null/empty"
    );
    for (label, null, empty) in &rows {
        let ratio = match (null, empty) {
            (Some(n), Some(e)) if *e > 0 => format!("{:.2}", *n as f64 / *e as f64),
            _ => "-".into(),
        };
        let show = |v: &Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{label:<10} {:>22} {:>24} {ratio:>14}",
            show(null),
            show(empty)
        );
    }
    if let ((_, Some(r), _), (_, Some(x), _)) = (&rows[0], &rows[1]) {
        println!(
            "\nnull hypercall, rxen / Xen: {:.2}",
            *r as f64 / (*x).max(1) as f64
        );
    }
    if let Some(line) = rxen.lines_containing("memory cost:").first() {
        println!(
            "rxen per-domain cost (64 MiB dom0): {}",
            line.split("memory cost: ").nth(1).unwrap_or(line)
        );
    }
    println!("(figures are per call, best of 5 x 5000 calls, under software emulation: the cost is dominated by QEMU's VMRUN/#VMEXIT emulation)");
    println!("\nxtask: rxenstored: read, write and small-transaction throughput");
    let mut cmd = crate::cargo_command();
    cmd.current_dir(crate::workspace_root()).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "rxenstored",
        "--",
        "bench",
        "--clients",
        "100",
        "--seconds",
        "1",
    ]);
    ok &= cmd.status().is_ok_and(|status| status.success());
    if ok {
        0
    } else {
        1
    }
}
