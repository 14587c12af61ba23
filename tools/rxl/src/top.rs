//! `rxl top`, after Xen's `xentop`: every few seconds, each domain's state, CPU time
//! and share of a CPU since the last refresh, memory and its share of the host's,
//! maximum memory and vCPUs, under a summary of the host (domains by state, memory,
//! CPUs). On a terminal it is a live screen (ratatui; `q`, Esc or CTRL-C quits, `d`
//! and `D` shorten and lengthen the delay); in batch mode (`-b`), or when the output is
//! not a terminal, plain tables one after the other, as `xentop -b`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

/// One domain's line.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its name (xenstore's, or rxl's own).
    pub name: String,
    /// xl's state letters (`r b p s c d`).
    pub state: String,
    /// CPU time so far, seconds.
    pub cpu_s: u64,
    /// Share of one CPU since the last refresh, percent.
    pub cpu_pct: f64,
    /// Memory, KiB.
    pub mem_k: u64,
    /// Share of the host's memory, percent.
    pub mem_pct: f64,
    /// Maximum memory, KiB.
    pub maxmem_k: u64,
    /// vCPUs online.
    pub vcpus: u32,
}

/// What one domain reports, as `top` needs it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Domain id.
    pub domid: u16,
    /// Name.
    pub name: String,
    /// State letters.
    pub state: String,
    /// CPU time so far, nanoseconds.
    pub cpu_ns: u64,
    /// Pages it has.
    pub pages: u64,
    /// Its maximum, pages.
    pub max_pages: u64,
    /// vCPUs online.
    pub vcpus: u32,
}

/// The host, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Host {
    /// Memory, KiB.
    pub total_k: u64,
    /// Free memory, KiB.
    pub free_k: u64,
    /// CPUs.
    pub cpus: u32,
}

/// CPU time between refreshes.
#[derive(Default)]
pub struct Tracker {
    last: BTreeMap<u16, u64>,
    then: Option<Instant>,
}

impl Tracker {
    /// The rows for `samples` taken at `now`; a domain's CPU share is 0 on the first
    /// refresh that sees it.
    pub fn rows(&mut self, samples: &[Sample], host: Host, now: Instant) -> Vec<Row> {
        let wall_ns = self
            .then
            .map_or(0, |then| now.duration_since(then).as_nanos())
            .max(1) as f64;
        let total_k = host.total_k.max(1) as f64;
        let rows = samples
            .iter()
            .map(|s| {
                let mem_k = s.pages.saturating_mul(4);
                Row {
                    name: s.name.clone(),
                    state: s.state.clone(),
                    cpu_s: s.cpu_ns / 1_000_000_000,
                    cpu_pct: self.last.get(&s.domid).map_or(0.0, |&before| {
                        s.cpu_ns.saturating_sub(before) as f64 / wall_ns * 100.0
                    }),
                    mem_k,
                    mem_pct: mem_k as f64 * 100.0 / total_k,
                    maxmem_k: s.max_pages.saturating_mul(4),
                    vcpus: s.vcpus,
                }
            })
            .collect();
        self.last = samples.iter().map(|s| (s.domid, s.cpu_ns)).collect();
        self.then = Some(now);
        rows
    }
}

/// The column names.
const HEADINGS: [&str; 8] = [
    "NAME",
    "STATE",
    "CPU(sec)",
    "CPU(%)",
    "MEM(k)",
    "MEM(%)",
    "MAXMEM(k)",
    "VCPUS",
];

/// A row's cells, as both views print them.
fn cells(r: &Row) -> [String; 8] {
    [
        r.name.clone(),
        r.state.clone(),
        r.cpu_s.to_string(),
        format!("{:.1}", r.cpu_pct),
        r.mem_k.to_string(),
        format!("{:.1}", r.mem_pct),
        r.maxmem_k.to_string(),
        r.vcpus.to_string(),
    ]
}

/// The batch table (`xentop -b`): headings, then one line per domain.
pub fn text(rows: &[Row]) -> String {
    let line = |c: [String; 8]| {
        format!(
            "{:>18} {:>6} {:>10} {:>6} {:>10} {:>6} {:>10} {:>5}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let mut out = line(HEADINGS.map(String::from));
    for r in rows {
        out.push_str(&line(cells(r)));
    }
    out
}

/// xentop's summary lines: domains by state, memory, CPUs, the refresh delay.
pub fn summary(rows: &[Row], host: Host, delay: u64) -> [String; 2] {
    let count = |letter: char| rows.iter().filter(|r| r.state.contains(letter)).count();
    [
        format!(
            "{} domains: {} running, {} blocked, {} paused, {} crashed, {} dying, {} shutdown",
            rows.len(),
            count('r'),
            count('b'),
            count('p'),
            count('c'),
            count('d'),
            count('s'),
        ),
        format!(
            "Mem: {}k total, {}k used, {}k free    CPUs: {}    delay {delay} s (d/D), q quits",
            host.total_k,
            host.total_k.saturating_sub(host.free_k),
            host.free_k,
            host.cpus
        ),
    ]
}

/// Draws the live screen: the summary, then the table.
pub fn draw(frame: &mut Frame<'_>, rows: &[Row], host: Host, delay: u64) {
    let [top, table] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(frame.area());
    let [first, second] = summary(rows, host, delay);
    frame.render_widget(
        Paragraph::new(vec![first.into(), second.into()]).block(Block::new().title("rxl top")),
        top,
    );
    let widths = [
        Constraint::Length(18),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(5),
    ];
    let body = rows.iter().map(|r| TableRow::new(cells(r)));
    frame.render_widget(
        Table::new(body, widths)
            .header(TableRow::new(HEADINGS).style(Style::new().add_modifier(Modifier::REVERSED))),
        table,
    );
}

/// What a key does on the live screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Leave.
    Quit,
    /// Refresh more often.
    Faster,
    /// Refresh less often.
    Slower,
    /// Nothing.
    Other,
}

/// The meaning of a key press.
pub fn key(code: KeyCode, modifiers: KeyModifiers) -> Key {
    match code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Key::Quit,
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Char('d') => Key::Faster,
        KeyCode::Char('D') => Key::Slower,
        _ => Key::Other,
    }
}

/// Waits up to `delay` for a key on the live screen; what it asks.
pub fn wait_for_key(delay: Duration) -> std::io::Result<Key> {
    let until = Instant::now() + delay;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || !event::poll(left)? {
            return Ok(Key::Other);
        }
        if let Event::Key(k) = event::read()? {
            if k.kind == KeyEventKind::Press {
                let what = key(k.code, k.modifiers);
                if what != Key::Other {
                    return Ok(what);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn sample(domid: u16, name: &str, state: &str, cpu_ns: u64, pages: u64) -> Sample {
        Sample {
            domid,
            name: name.into(),
            state: state.into(),
            cpu_ns,
            pages,
            max_pages: pages * 2,
            vcpus: 2,
        }
    }

    const HOST: Host = Host {
        total_k: 1_048_576,
        free_k: 524_288,
        cpus: 2,
    };

    #[test]
    fn cpu_shares_come_from_the_time_between_refreshes() {
        let mut t = Tracker::default();
        let start = Instant::now();
        let first = t.rows(
            &[sample(0, "Domain-0", "r-----", 5_000_000_000, 65_536)],
            HOST,
            start,
        );
        // The first refresh has nothing to compare with.
        assert_eq!(first[0].cpu_pct, 0.0);
        assert_eq!(first[0].cpu_s, 5);
        assert_eq!(first[0].mem_k, 262_144);
        assert_eq!(first[0].mem_pct, 25.0);
        assert_eq!(first[0].maxmem_k, 524_288);
        // Half a CPU over two seconds; a new domain starts at 0; time going
        // backwards (a rebooted id) does not underflow.
        let rows = t.rows(
            &[
                sample(0, "Domain-0", "r-----", 6_000_000_000, 65_536),
                sample(1, "linux", "-b----", 9_000_000_000, 1024),
            ],
            HOST,
            start + Duration::from_secs(2),
        );
        assert!((rows[0].cpu_pct - 50.0).abs() < 1e-9, "{}", rows[0].cpu_pct);
        assert_eq!(rows[1].cpu_pct, 0.0);
        let rows = t.rows(
            &[sample(1, "linux", "-b----", 1, 1024)],
            HOST,
            start + Duration::from_secs(3),
        );
        assert_eq!(rows[0].cpu_pct, 0.0);
    }

    #[test]
    fn batch_text_has_xentops_columns() {
        let mut t = Tracker::default();
        let rows = t.rows(
            &[sample(7, "guest", "--p---", 0, 256)],
            HOST,
            Instant::now(),
        );
        let text = text(&rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], HEADINGS);
        assert_eq!(
            lines[1],
            ["guest", "--p---", "0", "0.0", "1024", "0.1", "2048", "2"]
        );
    }

    #[test]
    fn the_summary_counts_domains_by_state() {
        let rows: Vec<Row> = ["r-----", "-b----", "-b----", "--p---", "----c-"]
            .iter()
            .map(|s| Tracker::default().rows(&[sample(1, "x", s, 0, 1)], HOST, Instant::now()))
            .map(|mut v| v.remove(0))
            .collect();
        let [first, second] = summary(&rows, HOST, 3);
        assert_eq!(
            first,
            "5 domains: 1 running, 2 blocked, 1 paused, 1 crashed, 0 dying, 0 shutdown"
        );
        assert!(second.starts_with("Mem: 1048576k total, 524288k used, 524288k free    CPUs: 2"));
    }

    #[test]
    fn the_live_screen_shows_the_summary_and_every_domain() {
        let mut t = Tracker::default();
        let rows = t.rows(
            &[
                sample(0, "Domain-0", "r-----", 12_000_000_000, 98_304),
                sample(3, "linux", "-b----", 2_000_000_000, 65_536),
            ],
            HOST,
            Instant::now(),
        );
        let mut terminal = Terminal::new(TestBackend::new(90, 8)).unwrap();
        terminal.draw(|f| draw(f, &rows, HOST, 3)).unwrap();
        let buffer = terminal.backend().buffer();
        let screen: Vec<String> = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect();
        assert!(screen[0].starts_with("rxl top"), "{screen:#?}");
        assert!(
            screen[1].starts_with("2 domains: 1 running, 1 blocked"),
            "{screen:#?}"
        );
        assert!(
            screen[3].contains("NAME") && screen[3].contains("MAXMEM(k)"),
            "{screen:#?}"
        );
        assert!(
            screen[4].starts_with("Domain-0") && screen[4].contains("393216"),
            "{screen:#?}"
        );
        assert!(
            screen[5].starts_with("linux") && screen[5].contains("-b----"),
            "{screen:#?}"
        );
        // The heading is shown reversed.
        assert!(buffer[(0, 3)].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn keys_quit_and_change_the_delay() {
        assert_eq!(key(KeyCode::Char('q'), KeyModifiers::NONE), Key::Quit);
        assert_eq!(key(KeyCode::Esc, KeyModifiers::NONE), Key::Quit);
        assert_eq!(key(KeyCode::Char('c'), KeyModifiers::CONTROL), Key::Quit);
        assert_eq!(key(KeyCode::Char('c'), KeyModifiers::NONE), Key::Other);
        assert_eq!(key(KeyCode::Char('d'), KeyModifiers::NONE), Key::Faster);
        assert_eq!(key(KeyCode::Char('D'), KeyModifiers::SHIFT), Key::Slower);
    }
}
