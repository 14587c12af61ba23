//! Exit accounting (issue 12), in the spirit of Xen's performance counters
//! (`perfc`, the `p` debug key) and of `xentrace`'s exit records: for one
//! domain, how many exits of each kind its vCPUs took and how long the
//! hypervisor spent serving them. This module owns the grouping of exits
//! into reasons, the table and its formatting; the platform maps its own
//! exit codes onto [`ExitReason`] and records each exit with
//! [`ExitStats::record`] (an index and two adds: no allocation, no lock of
//! its own).

use core::fmt;

/// What an exit was for, grouped as someone tuning a guest looks at them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// CPUID.
    Cpuid,
    /// A hypercall (`VMMCALL`, `VMCALL`).
    Hypercall,
    /// A nested page fault: MMIO (the local APIC, IO-APICs, PCI
    /// configuration) or a page not mapped yet.
    NestedPageFault,
    /// Port I/O (`IN`, `OUT`, string forms).
    Io,
    /// `RDMSR`, `WRMSR`.
    Msr,
    /// A physical interrupt or NMI arrived while the guest ran.
    Interrupt,
    /// The guest opened its interrupt window (an interrupt waited for it).
    InterruptWindow,
    /// `HLT`.
    Hlt,
    /// Control- and debug-register accesses, `XSETBV`.
    Registers,
    /// Everything else (`INVD`, virtualization instructions, faults).
    Other,
}

impl ExitReason {
    /// Every reason, in the order of the table.
    pub const ALL: [ExitReason; 10] = [
        ExitReason::Cpuid,
        ExitReason::Hypercall,
        ExitReason::NestedPageFault,
        ExitReason::Io,
        ExitReason::Msr,
        ExitReason::Interrupt,
        ExitReason::InterruptWindow,
        ExitReason::Hlt,
        ExitReason::Registers,
        ExitReason::Other,
    ];

    /// How many reasons there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The reason's row name in the table.
    pub const fn name(self) -> &'static str {
        match self {
            ExitReason::Cpuid => "CPUID",
            ExitReason::Hypercall => "hypercall",
            ExitReason::NestedPageFault => "NPF (MMIO)",
            ExitReason::Io => "IOIO",
            ExitReason::Msr => "MSR",
            ExitReason::Interrupt => "INTR",
            ExitReason::InterruptWindow => "VINTR",
            ExitReason::Hlt => "HLT",
            ExitReason::Registers => "CR/DR/XSETBV",
            ExitReason::Other => "other",
        }
    }

    /// The reason's row in [`ExitStats`].
    const fn index(self) -> usize {
        self as usize
    }
}

/// The hypercalls counted one by one (Xen's `hypercalls` perf counters),
/// with Xen's names; any other number is counted as `other`.
const HYPERCALLS: [(u64, &str); 15] = {
    use rxen_abi::xen::*;
    [
        (HYPERVISOR_PLATFORM_OP, "platform_op"),
        (HYPERVISOR_MEMORY_OP, "memory_op"),
        (HYPERVISOR_MULTICALL, "multicall"),
        (HYPERVISOR_SET_TIMER_OP, "set_timer_op"),
        (HYPERVISOR_XEN_VERSION, "xen_version"),
        (HYPERVISOR_CONSOLE_IO, "console_io"),
        (HYPERVISOR_GRANT_TABLE_OP, "grant_table_op"),
        (HYPERVISOR_VM_ASSIST, "vm_assist"),
        (HYPERVISOR_VCPU_OP, "vcpu_op"),
        (HYPERVISOR_SCHED_OP, "sched_op"),
        (HYPERVISOR_EVENT_CHANNEL_OP, "event_channel_op"),
        (HYPERVISOR_PHYSDEV_OP, "physdev_op"),
        (HYPERVISOR_HVM_OP, "hvm_op"),
        (HYPERVISOR_SYSCTL, "sysctl"),
        (HYPERVISOR_DOMCTL, "domctl"),
    ]
};

/// Rows of the hypercall table: [`HYPERCALLS`], then `other`.
const HYPERCALL_ROWS: usize = HYPERCALLS.len() + 1;

/// The row of hypercall number `nr` (`other` for one not counted alone).
fn hypercall_row(nr: u64) -> usize {
    HYPERCALLS
        .iter()
        .position(|(number, _)| *number == nr)
        .unwrap_or(HYPERCALLS.len())
}

/// The name of hypercall row `row`.
fn hypercall_name(row: usize) -> &'static str {
    HYPERCALLS.get(row).map_or("other", |(_, name)| name)
}

/// Ports counted one by one, the first seen (a port after them is counted
/// in the last row, `other`): enough to name the few a guest hammers.
const PORT_ROWS: usize = 16;

/// Count and time of one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounter {
    /// Exits taken.
    pub count: u64,
    /// Nanoseconds the hypervisor spent serving them.
    pub ns: u64,
}

/// The exits of one domain, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    rows: [ExitCounter; ExitReason::COUNT],
    /// Exits after which the vCPU went straight back into the guest, without
    /// a scheduling pass.
    straight_back: u64,
    /// The hypercall exits by hypercall (rows of `HYPERCALL_ROWS`).
    calls: [ExitCounter; HYPERCALL_ROWS],
    /// The port numbers of `port_rows` (the first `ports_seen` rows are
    /// in use).
    ports: [u16; PORT_ROWS],
    /// How many of `ports` are in use.
    ports_seen: usize,
    /// The port I/O exits by port, then one row for all the others.
    port_rows: [ExitCounter; PORT_ROWS + 1],
}

impl ExitStats {
    /// No exit yet.
    pub const fn new() -> Self {
        Self {
            rows: [ExitCounter { count: 0, ns: 0 }; ExitReason::COUNT],
            straight_back: 0,
            calls: [ExitCounter { count: 0, ns: 0 }; HYPERCALL_ROWS],
            ports: [0; PORT_ROWS],
            ports_seen: 0,
            port_rows: [ExitCounter { count: 0, ns: 0 }; PORT_ROWS + 1],
        }
    }

    /// Counts a port I/O exit on `port` that took `ns` nanoseconds to
    /// serve, as well as its exit ([`ExitStats::record`]): in the port's own
    /// row if it has one or one is free, otherwise in `other`.
    #[inline]
    pub fn record_port(&mut self, port: u16, ns: u64) {
        let seen = &self.ports[..self.ports_seen];
        let row = match seen.iter().position(|p| *p == port) {
            Some(row) => row,
            None if self.ports_seen < PORT_ROWS => {
                self.ports[self.ports_seen] = port;
                self.ports_seen += 1;
                self.ports_seen - 1
            }
            None => PORT_ROWS,
        };
        let counter = &mut self.port_rows[row];
        counter.count = counter.count.wrapping_add(1);
        counter.ns = counter.ns.wrapping_add(ns);
    }

    /// Count and time of port I/O exits on `port` (`None` when the port
    /// has no row of its own: it was not seen, or came after the table
    /// was full).
    pub fn port(&self, port: u16) -> Option<ExitCounter> {
        self.ports[..self.ports_seen]
            .iter()
            .position(|p| *p == port)
            .map(|row| self.port_rows[row])
    }

    /// Counts hypercall `nr` (the number the guest passed) that took `ns`
    /// nanoseconds to serve, as well as its exit ([`ExitStats::record`]).
    #[inline]
    pub fn record_hypercall(&mut self, nr: u64, ns: u64) {
        let call = &mut self.calls[hypercall_row(nr)];
        call.count = call.count.wrapping_add(1);
        call.ns = call.ns.wrapping_add(ns);
    }

    /// Count and time of hypercall `nr` (`other` for one not counted alone).
    pub fn hypercall(&self, nr: u64) -> ExitCounter {
        self.calls[hypercall_row(nr)]
    }

    /// Counts an exit after which the vCPU went straight back into the
    /// guest (no scheduling pass; wrapping).
    #[inline]
    pub fn record_straight_back(&mut self) {
        self.straight_back = self.straight_back.wrapping_add(1);
    }

    /// Exits after which the vCPU went straight back into the guest.
    pub fn straight_back(&self) -> u64 {
        self.straight_back
    }

    /// Counts one exit for `reason` that took `ns` nanoseconds to serve
    /// (wrapping: a counter does not stop the machine).
    #[inline]
    pub fn record(&mut self, reason: ExitReason, ns: u64) {
        let row = &mut self.rows[reason.index()];
        row.count = row.count.wrapping_add(1);
        row.ns = row.ns.wrapping_add(ns);
    }

    /// Count and time of `reason`.
    pub fn get(&self, reason: ExitReason) -> ExitCounter {
        self.rows[reason.index()]
    }

    /// All exits together.
    pub fn total(&self) -> ExitCounter {
        self.rows
            .iter()
            .fold(ExitCounter::default(), |sum, row| ExitCounter {
                count: sum.count.saturating_add(row.count),
                ns: sum.ns.saturating_add(row.ns),
            })
    }

    /// Forgets every exit (Xen's `P` key resets its counters).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The table for domain `domid`, one line each (without line ends):
    /// a heading, the reasons that had exits (most time first), a total,
    /// how many exits went straight back into the guest, and the hypercalls
    /// made (most time first).
    pub fn table(&self, domid: u16) -> impl Iterator<Item = Line<'_>> {
        let mut order = ExitReason::ALL;
        // Most time first; ties in the table's order (the sort is stable).
        order.sort_by_key(|r| core::cmp::Reverse(self.get(*r).ns));
        let total = self.total();
        core::iter::once(Line::Heading(domid))
            .chain(
                order
                    .into_iter()
                    .filter(|r| self.get(*r).count > 0)
                    .map(move |r| Line::Row {
                        domid,
                        name: r.name(),
                        row: self.get(r),
                        total,
                    }),
            )
            .chain(core::iter::once(Line::Row {
                domid,
                name: "total",
                row: total,
                total,
            }))
            .chain(core::iter::once(Line::StraightBack {
                domid,
                straight_back: self.straight_back,
                total: total.count,
            }))
            .chain(self.hypercall_rows(domid))
            .chain(self.port_lines(domid))
    }

    /// The port lines of [`ExitStats::table`]: ports by time, most first,
    /// then the ports without a row of their own.
    fn port_lines(&self, domid: u16) -> impl Iterator<Item = Line<'_>> {
        let mut rows: [usize; PORT_ROWS] = core::array::from_fn(|i| i);
        rows.sort_by_key(|r| core::cmp::Reverse(self.port_rows[*r].ns));
        let io = self.get(ExitReason::Io);
        rows.into_iter()
            .filter(move |r| *r < self.ports_seen)
            .map(|r| (Some(self.ports[r]), self.port_rows[r]))
            .chain(core::iter::once((None, self.port_rows[PORT_ROWS])))
            .filter(|(_, row)| row.count > 0)
            .map(move |(port, row)| Line::Port {
                domid,
                port,
                row,
                total: io,
            })
    }

    /// The hypercall lines of [`ExitStats::table`].
    fn hypercall_rows(&self, domid: u16) -> impl Iterator<Item = Line<'_>> {
        let mut rows: [usize; HYPERCALL_ROWS] = core::array::from_fn(|i| i);
        rows.sort_by_key(|r| core::cmp::Reverse(self.calls[*r].ns));
        let calls = self.get(ExitReason::Hypercall);
        rows.into_iter()
            .filter(|r| self.calls[*r].count > 0)
            .map(move |r| Line::Hypercall {
                domid,
                name: hypercall_name(r),
                row: self.calls[r],
                total: calls,
            })
    }
}

/// One line of [`ExitStats::table`]; `Display` formats it.
#[derive(Clone, Copy, Debug)]
pub enum Line<'a> {
    /// The column names.
    Heading(u16),
    /// One reason, or the total.
    Row {
        /// The domain.
        domid: u16,
        /// The row's name.
        name: &'a str,
        /// Its count and time.
        row: ExitCounter,
        /// All exits of the domain (for the shares).
        total: ExitCounter,
    },
    /// One hypercall.
    Hypercall {
        /// The domain.
        domid: u16,
        /// Xen's name for it.
        name: &'a str,
        /// Its count and time.
        row: ExitCounter,
        /// All hypercall exits of the domain (for the shares).
        total: ExitCounter,
    },
    /// Port I/O on one port (`None`: the ports without a row of their own).
    Port {
        /// The domain.
        domid: u16,
        /// The port.
        port: Option<u16>,
        /// Its count and time.
        row: ExitCounter,
        /// All port I/O exits of the domain (for the shares).
        total: ExitCounter,
    },
    /// How many of the exits went straight back into the guest.
    StraightBack {
        /// The domain.
        domid: u16,
        /// Exits that went straight back.
        straight_back: u64,
        /// All exits of the domain.
        total: u64,
    },
}

/// `part` as a percentage of `whole`, in tenths (0 when `whole` is 0).
fn per_mille(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (u128::from(part) * 1000 / u128::from(whole)) as u64
}

/// A row of counts and times after `label`: count and its share of `total`'s,
/// time (µs) and its share, mean ns.
fn counter_row(
    f: &mut fmt::Formatter<'_>,
    label: &fmt::Arguments<'_>,
    row: ExitCounter,
    total: ExitCounter,
) -> fmt::Result {
    let count_share = per_mille(row.count, total.count);
    let time_share = per_mille(row.ns, total.ns);
    let mean = row.ns.checked_div(row.count).unwrap_or(0);
    write!(
        f,
        "{label} {:>10} {:>4}.{} {:>12} {:>4}.{} {mean:>9}",
        row.count,
        count_share / 10,
        count_share % 10,
        row.ns / 1000,
        time_share / 10,
        time_share % 10,
    )
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Line::Heading(domid) => write!(
                f,
                "d{domid} exits: {:<13} {:>10} {:>6} {:>12} {:>6} {:>9}",
                "reason", "count", "%", "time (us)", "%", "ns/exit"
            ),
            Line::Row {
                domid,
                name,
                row,
                total,
            } => counter_row(f, &format_args!("d{domid} exits: {name:<13}"), row, total),
            Line::Hypercall {
                domid,
                name,
                row,
                total,
            } => counter_row(
                f,
                &format_args!("d{domid} hypercall: {name:<16}"),
                row,
                total,
            ),
            Line::Port {
                domid,
                port: Some(port),
                row,
                total,
            } => counter_row(
                f,
                &format_args!("d{domid} port:      {port:<#16x}"),
                row,
                total,
            ),
            Line::Port {
                domid,
                port: None,
                row,
                total,
            } => counter_row(
                f,
                &format_args!("d{domid} port:      {:<16}", "other"),
                row,
                total,
            ),
            Line::StraightBack {
                domid,
                straight_back,
                total,
            } => {
                let share = per_mille(straight_back, total);
                write!(
                    f,
                    "d{domid} exits: {straight_back} of {total} ({}.{} %) straight back into the guest, the rest after a scheduling pass",
                    share / 10,
                    share % 10
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    fn lines(stats: &ExitStats, domid: u16) -> Vec<String> {
        stats.table(domid).map(|l| l.to_string()).collect()
    }

    #[test]
    fn record_counts_and_adds_time_per_reason() {
        let mut s = ExitStats::new();
        s.record(ExitReason::Hypercall, 1_000);
        s.record(ExitReason::Hypercall, 3_000);
        s.record(ExitReason::Cpuid, 500);
        assert_eq!(
            s.get(ExitReason::Hypercall),
            ExitCounter {
                count: 2,
                ns: 4_000
            }
        );
        assert_eq!(s.get(ExitReason::Cpuid), ExitCounter { count: 1, ns: 500 });
        assert_eq!(s.get(ExitReason::Msr), ExitCounter::default());
        assert_eq!(
            s.total(),
            ExitCounter {
                count: 3,
                ns: 4_500
            }
        );
        s.reset();
        assert_eq!(s, ExitStats::new());
        assert_eq!(s.total(), ExitCounter::default());
    }

    #[test]
    fn counters_wrap_instead_of_overflowing() {
        let mut s = ExitStats::new();
        s.rows[ExitReason::Io.index()] = ExitCounter {
            count: u64::MAX,
            ns: u64::MAX,
        };
        s.record(ExitReason::Io, 2);
        assert_eq!(s.get(ExitReason::Io), ExitCounter { count: 0, ns: 1 });
        // The total saturates.
        s.rows[ExitReason::Msr.index()] = ExitCounter {
            count: u64::MAX,
            ns: u64::MAX,
        };
        assert_eq!(s.total().count, u64::MAX);
    }

    #[test]
    fn every_reason_has_its_own_row_and_name() {
        for (i, r) in ExitReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            let mut s = ExitStats::new();
            s.record(*r, 7);
            assert_eq!(s.total().count, 1);
            assert_eq!(s.get(*r).count, 1);
            let names: Vec<_> = ExitReason::ALL.iter().map(|r| r.name()).collect();
            assert_eq!(names.iter().filter(|n| **n == r.name()).count(), 1);
        }
    }

    #[test]
    fn the_table_lists_reasons_with_exits_by_time_then_the_total() {
        let mut s = ExitStats::new();
        for _ in 0..3 {
            s.record(ExitReason::Cpuid, 1_000);
        }
        s.record(ExitReason::NestedPageFault, 7_000);
        s.record_straight_back();
        let t = lines(&s, 3);
        assert_eq!(t.len(), 5, "{t:#?}");
        assert!(t[0].starts_with("d3 exits: reason"), "{}", t[0]);
        assert!(t[0].contains("ns/exit"));
        // NPF: 1 exit (25 %), 7 us (70 %), 7000 ns each; first by time.
        let npf: Vec<&str> = t[1].split_whitespace().collect();
        assert_eq!(
            npf,
            ["d3", "exits:", "NPF", "(MMIO)", "1", "25.0", "7", "70.0", "7000"]
        );
        let cpuid: Vec<&str> = t[2].split_whitespace().collect();
        assert_eq!(
            cpuid,
            ["d3", "exits:", "CPUID", "3", "75.0", "3", "30.0", "1000"]
        );
        let total: Vec<&str> = t[3].split_whitespace().collect();
        assert_eq!(
            total,
            ["d3", "exits:", "total", "4", "100.0", "10", "100.0", "2500"]
        );
        assert_eq!(
            t[4],
            "d3 exits: 1 of 4 (25.0 %) straight back into the guest, the rest after a scheduling pass"
        );
        s.reset();
        assert_eq!(s.straight_back(), 0);
    }

    #[test]
    fn hypercalls_are_counted_by_name_most_time_first() {
        use rxen_abi::xen::{HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_GRANT_TABLE_OP};
        let mut s = ExitStats::new();
        for (nr, ns) in [
            (HYPERVISOR_EVENT_CHANNEL_OP, 1_000),
            (HYPERVISOR_EVENT_CHANNEL_OP, 1_000),
            (HYPERVISOR_GRANT_TABLE_OP, 6_000),
            (99, 2_000),
            (u64::MAX, 0),
        ] {
            s.record(ExitReason::Hypercall, ns);
            s.record_hypercall(nr, ns);
        }
        assert_eq!(
            s.hypercall(HYPERVISOR_EVENT_CHANNEL_OP),
            ExitCounter {
                count: 2,
                ns: 2_000
            }
        );
        // Numbers without a row of their own share `other`.
        assert_eq!(
            s.hypercall(99),
            ExitCounter {
                count: 2,
                ns: 2_000
            }
        );
        assert_eq!(s.hypercall(12_345), s.hypercall(99));
        let t = lines(&s, 0);
        let calls: Vec<Vec<&str>> = t
            .iter()
            .filter(|l| l.starts_with("d0 hypercall: "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(calls.len(), 3, "{t:#?}");
        assert_eq!(
            calls[0],
            [
                "d0",
                "hypercall:",
                "grant_table_op",
                "1",
                "20.0",
                "6",
                "60.0",
                "6000"
            ]
        );
        // A tie in time keeps the table's order: event_channel_op before other.
        assert_eq!(calls[1][2], "event_channel_op");
        assert_eq!(calls[2][2..4], ["other", "2"]);
        s.reset();
        assert!(lines(&s, 0).iter().all(|l| !l.contains("hypercall:")));
    }

    #[test]
    fn ports_get_rows_of_their_own_until_the_table_is_full() {
        let mut s = ExitStats::new();
        s.record_port(0x42, 100);
        s.record_port(0x42, 300);
        s.record_port(0xcf8, 1_000);
        assert_eq!(s.port(0x42), Some(ExitCounter { count: 2, ns: 400 }));
        assert_eq!(
            s.port(0xcf8),
            Some(ExitCounter {
                count: 1,
                ns: 1_000
            })
        );
        assert_eq!(s.port(0x61), None);
        // Fill the table: the ports after it share `other`.
        for port in 0..PORT_ROWS as u16 + 5 {
            s.record_port(0x1000 + port, 1);
        }
        assert_eq!(s.port(0x1000), Some(ExitCounter { count: 1, ns: 1 }));
        assert_eq!(s.port(0x1000 + PORT_ROWS as u16), None);
        assert_eq!(s.port_rows[PORT_ROWS].count, 7);
        for _ in 0..3 {
            s.record(ExitReason::Io, 1);
        }
        let t = lines(&s, 3);
        let ports: Vec<Vec<&str>> = t
            .iter()
            .filter(|l| l.contains(" port: "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        // Most time first, `other` last.
        assert_eq!(ports[0][..4], ["d3", "port:", "0xcf8", "1"]);
        assert_eq!(ports[1][..4], ["d3", "port:", "0x42", "2"]);
        assert_eq!(ports.last().unwrap()[..4], ["d3", "port:", "other", "7"]);
        assert_eq!(ports.len(), PORT_ROWS + 1);
        // A hostile stream of distinct ports never grows the table.
        for port in 0..=u16::MAX {
            s.record_port(port, 1);
        }
        assert_eq!(s.ports_seen, PORT_ROWS);
        s.reset();
        assert!(lines(&s, 3).iter().all(|l| !l.contains(" port: ")));
    }

    #[test]
    fn an_empty_table_has_a_zero_total_and_no_division_by_zero() {
        let t = lines(&ExitStats::new(), 0);
        assert_eq!(t.len(), 3);
        assert!(t[2].starts_with("d0 exits: 0 of 0 (0.0 %)"), "{}", t[2]);
        let total: Vec<&str> = t[1].split_whitespace().collect();
        assert_eq!(
            total,
            ["d0", "exits:", "total", "0", "0.0", "0", "0.0", "0"]
        );
    }
}
