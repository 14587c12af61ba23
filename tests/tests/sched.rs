//! The schedulers under QEMU: CPU-bound domains share one physical CPU by their credit
//! weights, a capped domain stays under its cap, a real-time domain under RTDS gets its
//! budget in every period while CPU-bound domains run, an SMP guest's vCPUs share and
//! move between physical CPUs (their FPU state goes with them), and an event ping-pong
//! between two domains goes on while CPU hogs spin.
//!
//! The guests report their own running time (VCPUOP_get_runstate_info), so the shares
//! are what rxen's runstate accounting says each domain got.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! sched`.

use std::time::Duration;

use rxen_tests::{guest, Outcome, Qemu};

/// Held by every test of this file: their figures are timings, so they run one
/// QEMU at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn machine(name: &str, cpus: u32, append: &str) -> Qemu {
    Qemu::new(name)
        .smp(cpus)
        .append("console=com1 loglvl=all isa_debug_exit")
        .append(append)
        .timeout(Duration::from_secs(180))
}

fn no_trouble(out: &Outcome) -> &Outcome {
    out.assert_not_contains("FATAL TRAP")
        .assert_not_contains("Panic on CPU")
        .assert_not_contains(" FAIL ")
        .assert_not_contains("EXCEPTION")
}

/// The number after `key ` in the line of domain `id` that contains `marker`.
fn figure(out: &Outcome, id: u32, marker: &str, key: &str) -> u64 {
    let prefix = format!("(d{id}) ");
    let line = out
        .log
        .lines()
        .find(|l| l.contains(&prefix) && l.contains(marker))
        .unwrap_or_else(|| out.fail(&format!("no line from d{id} with {marker:?}")));
    let after = line
        .split_once(&format!("{key} "))
        .unwrap_or_else(|| out.fail(&format!("no {key:?} in {line:?}")))
        .1;
    after
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .map(|n| n.max(0) as u64)
        .unwrap_or_else(|| out.fail(&format!("no number after {key:?} in {line:?}")))
}

/// Running time of each hog domain.
fn running(out: &Outcome, ids: &[u32]) -> Vec<u64> {
    ids.iter()
        .map(|&id| figure(out, id, "cpu_hog: running", "running"))
        .collect()
}

/// Three CPU-bound domains with weights 1:2:4 on one physical CPU get CPU time in that
/// ratio within 5 %.
#[test]
fn credit_weights_share_one_cpu() {
    let _serial = serial();
    let out = machine(
        "sched-weights",
        1,
        "dom0less domu=0,mem=8M,weight=64 domu=0,mem=8M,weight=128 domu=0,mem=8M,weight=256",
    )
    .module(guest("cpu_hog"), "until_ms=5000")
    .run();
    no_trouble(&out).assert_count("Test result: SUCCESS", 3);
    let times = running(&out, &[1, 2, 3]);
    let total: u64 = times.iter().sum();
    for (i, (&t, weight)) in times.iter().zip([1.0, 2.0, 4.0]).enumerate() {
        let share = t as f64 / total as f64;
        let expected = weight / 7.0;
        let error = (share - expected).abs() / expected;
        println!(
            "d{}: {:.1} ms, share {:.2} %, expected {:.2} %, error {:.1} %",
            i + 1,
            t as f64 / 1e6,
            share * 100.0,
            expected * 100.0,
            error * 100.0
        );
        assert!(
            error <= 0.05,
            "d{}'s share is {:.2} %, expected {:.2} % (weights 1:2:4) within 5 %\n{}",
            i + 1,
            share * 100.0,
            expected * 100.0,
            out.tail(20)
        );
    }
}

/// `cpus=` pins boot domains' vCPUs (hard affinity): of three CPU-bound domains on
/// two CPUs, two pinned to CPU 1 share it (half each) and the one pinned to CPU 0
/// has that CPU alone (twice as much as either), where the credit scheduler would
/// otherwise give each two thirds of a CPU.
#[test]
fn pinned_domains_run_only_where_they_are_pinned() {
    let _serial = serial();
    let out = machine(
        "sched-pinned",
        2,
        "dom0less domu=0,mem=8M,cpus=1 domu=0,mem=8M,cpus=1 domu=0,mem=8M,cpus=0",
    )
    .module(guest("cpu_hog"), "until_ms=4000")
    .run();
    no_trouble(&out).assert_count("Test result: SUCCESS", 3);
    let times = running(&out, &[1, 2, 3]);
    println!(
        "running (ms): {:?}",
        times.iter().map(|t| t / 1_000_000).collect::<Vec<_>>()
    );
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let shared = ratio(times[0], times[1]);
    let alone = ratio(times[2], (times[0] + times[1]) / 2);
    // Within a fifth: one host thread takes turns running both CPUs (single-threaded
    // TCG), which moves this 4 s share by up to ~12 % (0.88 once, 0.92-1.09 in six
    // runs after it); a domain starved by its partner is far outside.
    assert!(
        (0.8..=1.25).contains(&shared),
        "the two domains pinned to CPU 1 ran {} and {} ns\n{}",
        times[0],
        times[1],
        out.tail(20)
    );
    assert!(
        (1.7..=2.3).contains(&alone),
        "the domain alone on CPU 0 ran {:.2} times as long as each of the two on CPU 1 ({times:?})\n{}",
        alone,
        out.tail(20)
    );
}

/// A domain that does nothing but null hypercalls (each returns straight into it
/// without a scheduling pass, issue 12) does not starve a CPU-bound domain of the same
/// weight on the same CPU, nor take more than its share: each gets half within 10 %,
/// and the hammer's calls all went through.
#[test]
fn hypercall_hammer_shares_one_cpu_fairly() {
    let _serial = serial();
    let out = machine(
        "sched-hypercall-hammer",
        1,
        "dom0less domu=0,mem=8M domu=1,mem=8M",
    )
    .module(guest("cpu_hog"), "until_ms=4000 hypercalls=1")
    .module(guest("cpu_hog"), "until_ms=4000")
    .run();
    no_trouble(&out).assert_count("Test result: SUCCESS", 2);
    let calls = figure(&out, 1, "hypercalls", "cpu_hog:");
    let times = running(&out, &[1, 2]);
    let total: u64 = times.iter().sum();
    println!("hammer: {calls} hypercalls; running times {times:?}");
    assert!(calls > 10_000, "the hammer made only {calls} hypercalls");
    for (i, &t) in times.iter().enumerate() {
        let share = t as f64 / total as f64;
        assert!(
            (0.45..=0.55).contains(&share),
            "d{}'s share is {:.1} % of one CPU, expected 50 % within 10 % (times {times:?})\n{}",
            i + 1,
            share * 100.0,
            out.tail(20)
        );
    }
}

/// A domain capped at 25 % of a CPU stays under it beside an uncapped hog, which takes
/// the rest. Slack, in time: the 10 ms of initial credit, one 30 ms accounting period
/// (a cap takes hold at the accounting after the credit runs out) and a 10 ms tick at
/// the end of the window, 50 ms of about 3.9 s (1.3 %; a fixed 1 % failed runs at
/// 26.01-26.12 % on a slow host, before and after the changes of 2026-12-06 alike).
#[test]
fn credit_cap_is_a_ceiling() {
    let _serial = serial();
    let out = machine(
        "sched-cap",
        1,
        "dom0less domu=0,mem=8M,cap=25 domu=0,mem=8M",
    )
    .module(guest("cpu_hog"), "until_ms=4000")
    .run();
    no_trouble(&out).assert_count("Test result: SUCCESS", 2);
    let start = figure(&out, 1, "cpu_hog: spinning from", "from");
    let times = running(&out, &[1, 2]);
    let window = 4_000_000_000 - start * 1_000_000;
    let capped = times[0] as f64 / window as f64;
    println!(
        "capped: {:.2} % of {} ms; uncapped: {:.1} ms",
        capped * 100.0,
        window / 1_000_000,
        times[1] as f64 / 1e6
    );
    let slack = 50_000_000.0 / window as f64;
    assert!(
        capped <= 0.25 + slack,
        "capped domain got {:.2} % (limit {:.2} %)",
        capped * 100.0,
        (0.25 + slack) * 100.0
    );
    assert!(
        capped >= 0.20,
        "capped domain starved: {:.2} %",
        capped * 100.0
    );
    assert!(
        times[1] > times[0] * 2,
        "the uncapped hog takes what the cap leaves: {times:?}"
    );
}

/// Under RTDS, a real-time domain (2 ms of work every 20 ms, budget 8 ms, no extra
/// time) meets its deadlines while two CPU-bound domains (4 ms budgets every 20 ms, and
/// extra time beyond them) run on the same CPU: the budgets add up to 80 % of the CPU,
/// so EDF can meet every one. Under QEMU software emulation a timer interrupt can reach
/// the emulated CPU milliseconds late when the host is busy (measured: up to 3.7 ms),
/// and the vCPU running meanwhile is charged for it; the budget leaves room for that.
/// Up to 10 % of the periods may still miss on a loaded host; before the lost-timer fix
/// (an interrupt taken by the host between arming the timer and VMRUN), 70-100 % did.
#[test]
fn rtds_domain_meets_its_deadlines_beside_hogs() {
    let _serial = serial();
    let out = machine(
        "sched-rtds",
        1,
        "sched=rtds dom0less domu=0,mem=8M,period=20000,budget=8000,extratime=no \
         domu=1,mem=8M,period=20000,budget=4000 domu=1,mem=8M,period=20000,budget=4000",
    )
    .module(
        guest("rt_periodic"),
        "period_us=10000 work_us=1000 periods=200",
    )
    .module(guest("cpu_hog"), "until_ms=5000")
    .run();
    no_trouble(&out)
        .assert_contains("Scheduler: rtds")
        .assert_count("Test result: SUCCESS", 3);
    let misses = figure(&out, 1, "rt_periodic: 200 periods", "periods,");
    println!("deadline misses: {misses} of 200");
    assert!(
        misses <= 20,
        "{misses} deadline misses of 200\n{}",
        out.tail(20)
    );
    // The hogs share what the real-time domain leaves.
    let times = running(&out, &[2, 3]);
    assert!(
        times.iter().all(|&t| t > 500_000_000),
        "hogs starved: {times:?}"
    );
}

/// An SMP domU with two vCPUs on one physical CPU (the vCPUs share it, so their FPU
/// state is switched) and on two (they run in parallel and move), beside a CPU hog.
#[test]
fn smp_domu_vcpus_share_and_move_between_cpus() {
    let _serial = serial();
    for cpus in [1, 2] {
        let out = machine(
            &format!("sched-smp-{cpus}"),
            cpus,
            "dom0less domu=0,mem=16M,vcpus=2 domu=1,mem=8M",
        )
        .module(guest("smp_ipi"), "")
        .module(guest("cpu_hog"), "until_ms=1000")
        .run();
        no_trouble(&out)
            .assert_line_contains_all(&["d1: PVH domain: 16 MiB", "2 vCPU(s)"])
            .assert_contains("(d1) smp_ipi: 100 IPI round trips")
            .assert_contains("(d1) Test result: SUCCESS")
            .assert_contains("(d2) Test result: SUCCESS")
            .assert_normal_stop();
    }
}

/// IPIs between the two vCPUs of a domU whose vCPU 0 waits for each answer spinning on
/// null hypercalls (`smp_ipi spin=1`), on one physical CPU and on two: its IPI (an
/// exit that stays in its domain) wakes vCPU 1, or makes the CPU running it take it,
/// at once, although vCPU 0's hypercalls return straight into it.
#[test]
fn an_ipi_wakes_the_sibling_at_once_though_the_sender_spins() {
    let _serial = serial();
    for cpus in [1, 2] {
        let out = machine(
            &format!("sched-smp-spin-{cpus}"),
            cpus,
            "dom0less domu=0,mem=16M,vcpus=2",
        )
        .module(guest("smp_ipi"), "spin=1")
        .run();
        no_trouble(&out)
            .assert_contains("(d1) smp_ipi: 100 IPI round trips")
            .assert_contains("(d1) Test result: SUCCESS");
        let mean = figure(&out, 1, "smp_ipi: 100 IPI round trips", "mean");
        println!("IPI round trip on {cpus} CPU(s), sender spinning: {mean} ns");
        assert!(
            mean < 2_000_000,
            "IPI round trip {mean} ns on {cpus} CPU(s): vCPU 1 waited for vCPU 0's slice"
        );
    }
}

/// An event to a domain pinned to another CPU wakes it there without a scheduling pass
/// on the sender's CPU (issue 12): the scheduler learns of the woken vCPU during the
/// sender's exit and the other CPU is kicked at once, so the sender goes straight back
/// into its guest. Two domains pinned one to each CPU ping-pong 1000 events; the server
/// makes no other hypercall than its sends and blocks, and at least half its sends
/// return straight in (before, 64 of about 4,800 exits did: every send made a pass).
#[test]
fn an_event_to_another_cpu_costs_the_sender_no_pass() {
    let _serial = serial();
    let out = machine(
        "sched-wake-elsewhere",
        2,
        "exit-stats dom0less domu=0,mem=8M,cpus=0 domu=1,mem=8M,cpus=1",
    )
    .module(guest("evtchn_pingpong"), "role=server peer=2 rounds=1000")
    .module(guest("evtchn_pingpong"), "role=client peer=1 rounds=1000")
    .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2)
        .assert_count("0 frames not returned", 2);
    let back = out
        .numbers_after("straight back into the guest", "d1 exits: ")
        .first()
        .copied()
        .unwrap_or_else(|| out.fail("no exit profile of d1"));
    println!("the server's exits straight back into the guest: {back} (1000 sends)");
    assert!(
        back >= 500,
        "only {back} of the server's exits went straight back: its sends made passes\n{}",
        out.tail(30)
    );
}

/// A flood of events at a vCPU that keeps interrupts off while its upcall waits costs
/// the receiver's CPU no exit per event: as Xen's `vcpu_mark_events_pending`, a running
/// vCPU is kicked only when its `evtchn_upcall_pending` goes from 0 to 1
/// (`evtchn_deaf`: each domain on its own CPU, 300 events 1 ms apart during two seconds
/// of the receiver's interrupts off; the sender sleeps between two, so that the
/// receiver's CPU takes each kick even where QEMU runs both CPUs on one thread). Before,
/// every event kicked the receiver's CPU again, and so did every scheduling pass
/// anywhere as long as the upcall waited: 633 exits, against 136 now (its own slice
/// and housekeeping).
#[test]
fn a_flood_at_a_deaf_vcpu_does_not_kick_it_each_time() {
    let _serial = serial();
    let out = machine(
        "sched-deaf",
        2,
        "exit-stats dom0less domu=0,mem=8M,cpus=0 domu=1,mem=8M,cpus=1",
    )
    .module(guest("evtchn_deaf"), "role=deaf peer=2 ms=2000")
    .module(
        guest("evtchn_deaf"),
        "role=flood peer=1 count=300 gap_us=1000",
    )
    .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2)
        .assert_count("0 frames not returned", 2);
    let flood = figure(&out, 2, "flood: 300 events", "in");
    assert!(
        flood < 1_800_000_000,
        "the flood took {flood} ns: not all of it while the receiver was deaf"
    );
    // No line: no INTR exit at all.
    let intr = out
        .numbers_after("d1 exits: INTR", "INTR")
        .first()
        .copied()
        .unwrap_or(0);
    println!(
        "300 events in {} ms at a vCPU with interrupts off: {intr} INTR exits of its CPU",
        flood / 1_000_000
    );
    assert!(
        intr < 300,
        "the receiver's CPU was made to exit {intr} times by 300 events\n{}",
        out.tail(30)
    );
}

/// A domain's timers wake only the CPU that runs it (Xen keeps a vCPU's timers on its
/// processor): a domain that wakes every millisecond on CPU 0 and a CPU hog on CPU 1,
/// each pinned there, for about 2.5 s; the hog's CPU is interrupted only for its own
/// slice and housekeeping (about 200 exits), not at the other domain's 1 ms deadlines
/// (every CPU armed its timer for the machine's earliest deadline before: 774 exits,
/// 373 under multi-threaded TCG, where the ticks themselves come later).
#[test]
fn a_domains_timers_wake_only_its_own_cpu() {
    let _serial = serial();
    let out = machine(
        "sched-timer-owner",
        2,
        "exit-stats dom0less domu=0,mem=8M,cpus=0 domu=1,mem=8M,cpus=1",
    )
    .module(guest("idle"), "tick_us=1000")
    .module(guest("cpu_hog"), "until_ms=3000")
    .stop_on("d2: shut down")
    .run();
    no_trouble(&out)
        .assert_contains("idle: ticking every 1000 us")
        .assert_contains("(d2) Test result: SUCCESS");
    let intr = out
        .numbers_after("d2 exits: INTR", "INTR")
        .first()
        .copied()
        .unwrap_or(0);
    println!("the hog's CPU beside a domain ticking every 1 ms on the other: {intr} INTR exits");
    assert!(
        intr < 300,
        "the hog was interrupted {intr} times in about 2.5 s: its CPU woke at the other CPU's timers\n{}",
        out.tail(30)
    );
}

/// Two domains spinning on null hypercalls on two CPUs: their exits stay within
/// their domains and are served side by side, with the machine lock held shared
/// (issue 12): the lock profile (`exit-stats`) counts nearly every hypercall as a
/// local exit, and no CPU ever waited for a domain's exit lock (each domain has one
/// vCPU, so no two CPUs serve one domain). Both domains' calls all went through and
/// every frame came back.
#[test]
fn local_exits_of_two_domains_are_served_side_by_side() {
    let _serial = serial();
    let out = machine(
        "sched-local-exits",
        2,
        "exit-stats dom0less domu=0,mem=16M domu=0,mem=16M",
    )
    .module(guest("cpu_hog"), "until_ms=2000 hypercalls=1")
    .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2)
        .assert_count("0 frames not returned", 2)
        .assert_normal_stop();
    let calls =
        figure(&out, 1, "hypercalls", "cpu_hog:") + figure(&out, 2, "hypercalls", "cpu_hog:");
    let line = out
        .log
        .lines()
        .find(|l| l.contains("exits served shared"))
        .unwrap_or_else(|| out.fail("no lock profile at the end"));
    let shared = out
        .numbers_after("exits served shared", "machine lock: ")
        .first()
        .copied()
        .unwrap_or_else(|| out.fail(&format!("no count in {line:?}")));
    println!("{calls} null hypercalls, {shared} local exits; {line}");
    assert!(calls > 10_000, "only {calls} hypercalls");
    assert!(
        shared >= calls * 9 / 10,
        "{shared} of {calls} hypercalls served as local exits\n{}",
        out.tail(20)
    );
    assert!(
        line.contains(", 0 waited for their domain's exit lock"),
        "a CPU waited for a one-vCPU domain's exit lock: {line}"
    );
}

/// An event send is served with the machine held shared, reaching its peer under the
/// peer's exit lock (issue 12, item 5: finer locking than the one machine lock): an
/// event-channel ping-pong between two domains pinned to two CPUs whose client waits
/// for each reply spinning on null hypercalls, so that the server's sends can find the
/// client's exit lock taken by one of them (they are then served again with the
/// machine held exclusively, nothing done twice). Every round trip completes and the
/// server counts exactly its events (the guests check), every frame comes back, and
/// the lock profile (`exit-stats`) counts the sends: about two a round trip, nearly
/// all served shared or found their peer taken.
#[test]
fn event_sends_reach_their_peer_beside_other_cpus() {
    const ROUNDS: u64 = 1000;
    let _serial = serial();
    let out = machine(
        "sched-peer-sends",
        2,
        "exit-stats dom0less domu=0,mem=8M,cpus=0 domu=1,mem=8M,cpus=1",
    )
    .module(
        guest("evtchn_pingpong"),
        &format!("role=server peer=2 rounds={ROUNDS}"),
    )
    .module(
        guest("evtchn_pingpong"),
        &format!("role=client peer=1 rounds={ROUNDS} spin=1"),
    )
    .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2)
        .assert_count("0 frames not returned", 2)
        .assert_normal_stop();
    let line = out
        .log
        .lines()
        .find(|l| l.contains("event sends to another domain"))
        .unwrap_or_else(|| out.fail("no lock profile at the end"));
    let number_before = |marker: &str| -> u64 {
        line.split(marker)
            .next()
            .and_then(|head| {
                head.split(|c: char| !c.is_ascii_digit())
                    .rfind(|w| !w.is_empty())
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| out.fail(&format!("no count before {marker:?} in {line:?}")))
    };
    let shared = number_before(" of them event sends to another domain");
    let busy = number_before(" sends found the peer taken");
    println!(
        "{ROUNDS} round trips: {shared} sends served shared, {busy} found the peer taken; {line}"
    );
    assert!(
        shared + busy >= 2 * ROUNDS * 9 / 10,
        "{shared} sends served shared and {busy} found their peer taken, for {} sends\n{}",
        2 * ROUNDS,
        out.tail(20)
    );
    assert!(
        shared >= ROUNDS,
        "only {shared} of about {} sends reached their peer with the machine held shared",
        2 * ROUNDS
    );
}

/// Runs `timer_spin` with `args` on one CPU beside an idle domain until it reports;
/// it must report success.
fn timer_spin(name: &str, args: &str) -> Outcome {
    let out = machine(name, 1, "dom0less domu=0,mem=8M domu=1,mem=8M")
        .module(guest("timer_spin"), args)
        .module(guest("idle"), "")
        .stop_on("(d1) Test result:")
        .run();
    no_trouble(&out).assert_contains("(d1) Test result: SUCCESS");
    out
}

/// A vCPU that sets 1 ms single-shot timers and waits for each spinning on null
/// hypercalls (`timer_spin`), beside an idle domain: the timers fire on time, although
/// every one of those hypercalls, the one that set the timer too, returns straight into
/// the guest.
#[test]
fn a_timer_fires_on_time_though_the_vcpu_spins_on_hypercalls() {
    let _serial = serial();
    let out = timer_spin("sched-timer-spin", "rounds=100");
    let mean = figure(&out, 1, "timer_spin: 100 timers", "lateness");
    let worst = figure(&out, 1, "timer_spin: 100 timers", "worst");
    println!("1 ms timers while spinning on hypercalls: mean lateness {mean} ns, worst {worst} ns");
    assert!(
        mean < 2_000_000,
        "timers fire {mean} ns late on average (worst {worst} ns)"
    );
}

/// `timer_spin kept=1`: each round leaves the CPU's timer armed earlier than the
/// guest's own (rxen keeps an armed timer that fires no later than a pass wants, as Xen
/// reprograms only a changed deadline), spins on null hypercalls while that early timer
/// fires, often while one of them is served, and then waits for its own timer without
/// any exit. An exit during which the CPU's timer fired must not go straight back into
/// the guest: no timer would be armed any more, and the wait would never end (a Linux
/// domU's two vCPUs on one CPU hung so at AP bring-up). Nor may the timer moved to
/// 3 ms fire before 3 ms, in the rounds where it was moved before the 1 ms one was due.
#[test]
fn an_early_timer_fired_during_an_exit_is_armed_again() {
    let _serial = serial();
    let out = timer_spin("sched-timer-kept", "rounds=200 kept=1");
    let worst = figure(&out, 1, "timer_spin: 200 timers", "worst");
    let in_time = figure(&out, 1, "early timers replaced", "due:");
    println!(
        "3 ms timers after an early CPU timer: worst lateness {worst} ns, \
         {in_time} of 200 rounds replaced the 1 ms timer before it was due"
    );
    // Only those rounds can tell an early event; a host that stalls the guest for
    // a millisecond in most rounds tests nothing here.
    assert!(
        in_time >= 100,
        "only {in_time} of 200 rounds replaced the 1 ms timer in time"
    );
    assert!(
        worst < 100_000_000,
        "a timer fired {worst} ns late: the CPU's timer was not armed again"
    );
}

/// Two domains ping-pong 2000 events while a CPU hog spins beside them on one CPU:
/// blocked vCPUs wake on their events, and the hog never starves them; the same with
/// a hog that spins on null hypercalls (each returns straight into it: a wake-up
/// must still reach the scheduler at its next exit).
#[test]
fn pingpong_beside_a_spinning_domain() {
    let _serial = serial();
    for (name, hog) in [("hog", ""), ("hammer", " hypercalls=1")] {
        let out = machine(
            &format!("sched-pingpong-{name}"),
            1,
            "dom0less domu=0,mem=8M domu=1,mem=8M domu=2,mem=8M",
        )
        .module(guest("evtchn_pingpong"), "role=server peer=2 rounds=2000")
        .module(guest("evtchn_pingpong"), "role=client peer=1 rounds=2000")
        .module(guest("cpu_hog"), &format!("until_ms=3000{hog}"))
        .run();
        no_trouble(&out)
            .assert_count("Test result: SUCCESS", 3)
            .assert_contains("(d2) pingpong: 2000 round trips");
        let mean = figure(&out, 2, "pingpong: 2000 round trips", "mean");
        println!("ping-pong round trip beside a {name}: {mean} ns");
        // A woken vCPU is boosted past the hog: a round trip must not wait for the
        // hog's 30 ms time slices.
        assert!(
            mean < 10_000_000,
            "round trip {mean} ns beside a {name}: it delays wake-ups"
        );
    }
}

/// An event-channel ping-pong on one CPU whose client waits for each reply spinning on
/// null hypercalls instead of blocking: its send (an exit that reaches the other
/// domain) must make a scheduling pass that wakes the server at once, although the
/// client's null hypercalls return straight into it; a send that returned straight in
/// would leave the server asleep until the client's time slice ends (milliseconds).
#[test]
fn an_event_wakes_its_peer_at_once_though_the_sender_spins() {
    let _serial = serial();
    let out = machine(
        "sched-pingpong-spinning-client",
        1,
        "dom0less domu=0,mem=8M domu=1,mem=8M",
    )
    .module(guest("evtchn_pingpong"), "role=server peer=2 rounds=500")
    .module(
        guest("evtchn_pingpong"),
        "role=client peer=1 rounds=500 spin=1",
    )
    .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2)
        .assert_contains("(d2) pingpong: 500 round trips");
    let mean = figure(&out, 2, "pingpong: 500 round trips", "mean");
    println!("ping-pong round trip, client spinning on hypercalls: {mean} ns");
    assert!(
        mean < 2_000_000,
        "round trip {mean} ns: the server waited for the spinning client's slice to end"
    );
}

/// Each vCPU keeps its own FPU/SSE/AVX registers while the CPU switches between
/// domains thousands of times (one CPU), and while vCPUs move between CPUs (two CPUs, a
/// third domain to make them move): the state is saved with XSAVE and restored.
#[test]
fn fpu_state_follows_each_vcpu() {
    let _serial = serial();
    for cpus in [1, 2] {
        let out = machine(
            &format!("sched-fpu-{cpus}"),
            cpus,
            "dom0less domu=0,mem=8M domu=1,mem=8M domu=2,mem=8M",
        )
        .module(guest("fpu_switch"), "seed=1")
        .module(guest("fpu_switch"), "seed=2")
        .module(guest("fpu_switch"), "seed=3")
        .run();
        no_trouble(&out)
            .assert_count("fpu_switch: 2000 yields, 0 bad registers", 3)
            .assert_count("Test result: SUCCESS", 3)
            .assert_normal_stop();
    }
}

/// A scheduling pass looks only at the domains that may have changed (issue 12: a
/// pass costs the same beside any number of blocked domains, as Xen's scheduler sees
/// only its run queues and its timers): an event ping-pong between two domains on two
/// CPUs beside 12 domains asleep on a timer. The passes look at about the two
/// ping-pong domains each (every domain each pass before: 14), and the sleepers'
/// timers, which only the table's record of them shows while they are quiet, still
/// wake them on time: the first within 20 ms of their common deadline at 2.5 s of
/// system time (a CPU armed its timer for them), every one within 500 ms (the 12 wake
/// at once on two CPUs and take turns behind each other's console output, up to about
/// 90 ms under multi-threaded TCG).
#[test]
fn a_pass_looks_only_at_the_domains_that_may_have_changed() {
    const SLEEPERS: usize = 12;
    const UNTIL_MS: u64 = 2500;
    let _serial = serial();
    let mut cmdline = String::from("exit-stats dom0less domu=0,mem=8M domu=1,mem=8M");
    for _ in 0..SLEEPERS {
        cmdline.push_str(" domu=2,mem=4M");
    }
    let out = machine("sched-quiet-domains", 2, &cmdline)
        .module(guest("evtchn_pingpong"), "role=server peer=2 rounds=1000")
        .module(guest("evtchn_pingpong"), "role=client peer=1 rounds=1000")
        .module(guest("idle"), &format!("until_ms={UNTIL_MS}"))
        .run();
    no_trouble(&out)
        .assert_count("Test result: SUCCESS", 2 + SLEEPERS)
        .assert_count("0 frames not returned", 2 + SLEEPERS)
        .assert_normal_stop();
    let woke = out.numbers_after("idle: woke at", "woke at ");
    if woke.len() != SLEEPERS {
        out.fail(&format!("{} of {SLEEPERS} sleepers woke", woke.len()));
    }
    let first = woke.iter().copied().min().unwrap_or(0);
    if !(UNTIL_MS..UNTIL_MS + 20).contains(&first) {
        out.fail(&format!(
            "the first sleeper woke at {first} ms for {UNTIL_MS} ms"
        ));
    }
    for ms in &woke {
        if !(UNTIL_MS..UNTIL_MS + 500).contains(ms) {
            out.fail(&format!("a sleeper woke at {ms} ms for {UNTIL_MS} ms"));
        }
    }
    let passes = out
        .numbers_after("scheduling passes:", "scheduling passes: ")
        .first()
        .copied()
        .unwrap_or_else(|| out.fail("no pass count at the end"));
    let looked_at = out
        .numbers_after("scheduling passes:", "looked at ")
        .first()
        .copied()
        .unwrap_or_else(|| out.fail("no count of the domains looked at"));
    println!("{passes} passes looked at {looked_at} domains; sleepers woke at {woke:?} ms");
    assert!(passes > 1000, "only {passes} passes for 1000 round trips");
    assert!(
        looked_at < passes * 4,
        "{looked_at} domains looked at in {passes} passes: the passes look at the sleepers\n{}",
        out.tail(30)
    );
}
