//! The hypervisor command line, in Xen's syntax.
//!
//! This module owns [`cook`] (stripping what the boot loader puts before the
//! options), [`parse`] (turning the options into [`Options`], with a
//! [`Warning`] for everything it could not use), the table of options
//! ([`PARAMS`], one [`Param`] per option: name, parser and destination, help;
//! Xen's `boolean_param`/`size_param`/`custom_param`/`ignore_param`) and the
//! value syntaxes the options share, such as Xen's sizes ([`parse_size`]).
//!
//! A new option is a field of [`Options`] with its default, one entry in
//! [`PARAMS`] and a row in the README's option table (a test checks it).
//!
//! Syntax, as in Xen: options are separated by spaces; each is `name` or
//! `name=value`; in names `-` and `_` are equivalent; boolean options also
//! accept `no-name` and `name=yes|on|true|enable|1|no|off|false|disable|0`.
//! A later occurrence of an option overrides an earlier one. Values are not
//! quoted. A malformed value leaves the option at its default.

use crate::log::LogThresholds;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Strips what the boot loader puts before the options, as Xen's
/// `cmdline_cook` does.
///
/// Leading spaces are removed. GRUB 2 (a loader name containing `"GRUB "`
/// not followed by `0`, e.g. `"GRUB 2.06"`) passes only the options; other
/// loaders, such as QEMU's multiboot loader, put the image file name first,
/// so the first word and the spaces after it are dropped too. The same
/// applies to module command lines (QEMU's `-initrd "file args"` gives
/// `"file args"`, cooked to `"args"`).
pub fn cook<'a>(cmdline: &'a str, loader_name: &str) -> &'a str {
    let p = cmdline.trim_start_matches(' ');
    if loader_is_grub2(loader_name) {
        return p;
    }
    let rest = match p.find(' ') {
        Some(i) => &p[i..],
        None => "",
    };
    rest.trim_start_matches(' ')
}

/// Xen's test: GRUB 1 calls itself "GNU GRUB 0.xx", GRUB 2 "GRUB 2.xx".
fn loader_is_grub2(loader_name: &str) -> bool {
    match loader_name.find("GRUB ") {
        Some(i) => loader_name.as_bytes().get(i + 5) != Some(&b'0'),
        None => false,
    }
}

/// A console output the `console=` option selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleKind {
    /// The first serial port (configured by `com1=`).
    Com1,
    /// The second serial port (configured by `com2=`).
    Com2,
    /// The VGA text screen.
    Vga,
    /// No console.
    None,
}

impl ConsoleKind {
    /// Parses one `console=` entry (`com1`, `com2`, `vga`, `none`).
    pub fn parse(s: &str) -> Option<ConsoleKind> {
        match s {
            "com1" => Some(ConsoleKind::Com1),
            "com2" => Some(ConsoleKind::Com2),
            "vga" => Some(ConsoleKind::Vga),
            "none" => Some(ConsoleKind::None),
            _ => None,
        }
    }
}

/// Parity of a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit (`n`).
    None,
    /// Odd parity (`o`).
    Odd,
    /// Even parity (`e`).
    Even,
    /// Parity bit always 1 (`m`).
    Mark,
    /// Parity bit always 0 (`s`).
    Space,
}

/// Configuration of a 16550 serial port, from Xen's
/// `comN=<baud>[/<base-baud>][,DPS[,<io-base>[,<irq>]]]`.
///
/// Empty fields keep their default, e.g. `com1=,,0x2f8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialConfig {
    /// Line speed; `None` (`auto` or not given) keeps the firmware's setting.
    pub baud: Option<u32>,
    /// UART input clock in Hz; `None` means the standard 1.8432 MHz. As in
    /// Xen, the command line gives the base baud (`clock / 16`) after a `/`.
    pub clock_hz: Option<u32>,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// I/O port base.
    pub io_base: u16,
    /// Interrupt line (0 means polled, as in Xen).
    pub irq: u8,
}

impl SerialConfig {
    /// Xen's default for COM1: auto baud, 8n1, port 0x3f8, IRQ 4.
    pub const COM1_DEFAULT: SerialConfig = SerialConfig {
        baud: None,
        clock_hz: None,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        io_base: 0x3f8,
        irq: 4,
    };

    /// Xen's default for COM2: auto baud, 8n1, port 0x2f8, IRQ 3.
    pub const COM2_DEFAULT: SerialConfig = SerialConfig {
        io_base: 0x2f8,
        irq: 3,
        ..SerialConfig::COM1_DEFAULT
    };

    /// Parses a `comN=` value on top of `defaults`; the error says why.
    pub fn parse(s: &str, defaults: SerialConfig) -> Result<SerialConfig, &'static str> {
        let mut cfg = defaults;
        let mut fields = s.split(',');
        let speed = fields.next().unwrap_or("");
        let (baud, base_baud) = match speed.split_once('/') {
            Some((b, c)) => (b, Some(c)),
            None => (speed, None),
        };
        if baud == "auto" {
            cfg.baud = None;
        } else if !baud.is_empty() {
            match parse_uint(baud).and_then(|b| u32::try_from(b).ok()) {
                Some(0) => return Err("baud rate must not be 0"),
                Some(b) => cfg.baud = Some(b),
                None => return Err("baud rate is not a number or 'auto'"),
            }
        }
        if let Some(c) = base_baud {
            match parse_uint(c)
                .and_then(|c| c.checked_mul(16))
                .and_then(|c| u32::try_from(c).ok())
            {
                Some(0) => return Err("base baud must not be 0"),
                Some(clock) => cfg.clock_hz = Some(clock),
                None => return Err("base baud is not a number or too large"),
            }
        }
        if let Some(dps) = fields.next().filter(|f| !f.is_empty()) {
            let &[d, p, st] = dps.as_bytes() else {
                return Err("line format must be <data bits><parity><stop bits>, e.g. 8n1");
            };
            cfg.data_bits = match d {
                b'5'..=b'8' => d - b'0',
                _ => return Err("data bits must be 5 to 8"),
            };
            cfg.parity = match p {
                b'n' => Parity::None,
                b'o' => Parity::Odd,
                b'e' => Parity::Even,
                b'm' => Parity::Mark,
                b's' => Parity::Space,
                _ => return Err("parity must be one of n, o, e, m, s"),
            };
            cfg.stop_bits = match st {
                b'1' | b'2' => st - b'0',
                _ => return Err("stop bits must be 1 or 2"),
            };
        }
        if let Some(port) = fields.next().filter(|f| !f.is_empty()) {
            match parse_uint(port).and_then(|p| u16::try_from(p).ok()) {
                Some(0) => return Err("I/O base must not be 0"),
                Some(p) => cfg.io_base = p,
                None if port == "pci" || port == "amt" => {
                    return Err("PCI serial ports are not supported")
                }
                None => return Err("I/O base is not a 16-bit number"),
            }
        }
        if let Some(irq) = fields.next().filter(|f| !f.is_empty()) {
            match parse_uint(irq).and_then(|i| u8::try_from(i).ok()) {
                Some(i) => cfg.irq = i,
                None if irq == "msi" => return Err("MSI is not supported"),
                None => return Err("IRQ is not a number from 0 to 255"),
            }
        }
        if fields.next().is_some() {
            return Err("PCI device fields are not supported");
        }
        Ok(cfg)
    }
}

/// An amount of memory: absolute, or a share of the host's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAmount {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage (1 to 100) of the host's memory.
    Percent(u8),
}

impl MemAmount {
    /// Parses Xen's `<size>` (see [`parse_size`]) or `<n>%`.
    pub fn parse(s: &str) -> Result<MemAmount, &'static str> {
        if let Some(n) = s.strip_suffix('%') {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err("percentage is not a decimal number");
            }
            return match n.parse::<u8>() {
                Ok(p @ 1..=100) => Ok(MemAmount::Percent(p)),
                _ => Err("percentage must be 1 to 100"),
            };
        }
        parse_size(s)
            .map(MemAmount::Bytes)
            .ok_or("not a size (number with optional T/G/M/K/B suffix) or percentage")
    }

    /// The amount in bytes on a host with `host_bytes` of memory.
    pub fn resolve(self, host_bytes: u64) -> u64 {
        match self {
            MemAmount::Bytes(b) => b,
            MemAmount::Percent(p) => {
                let p = u64::from(p);
                host_bytes / 100 * p + host_bytes % 100 * p / 100
            }
        }
    }
}

/// Dom0's memory, from Xen's `dom0_mem=[min:<amt>,][max:<amt>,][<amt>]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dom0Mem {
    /// Lower bound (`min:`).
    pub min: Option<MemAmount>,
    /// Upper bound (`max:`).
    pub max: Option<MemAmount>,
    /// Initial amount (the item without a prefix).
    pub target: Option<MemAmount>,
}

impl Dom0Mem {
    /// Parses a `dom0_mem=` value: comma-separated items in any order, a
    /// later item of the same sort overriding an earlier one.
    pub fn parse(s: &str) -> Result<Dom0Mem, &'static str> {
        let mut mem = Dom0Mem::default();
        for item in s.split(',') {
            if let Some(v) = item.strip_prefix("min:") {
                mem.min = Some(MemAmount::parse(v)?);
            } else if let Some(v) = item.strip_prefix("max:") {
                mem.max = Some(MemAmount::parse(v)?);
            } else if item.is_empty() {
                return Err("empty item");
            } else {
                mem.target = Some(MemAmount::parse(item)?);
            }
        }
        Ok(mem)
    }
}

/// A fault the `crash_test=` option deliberately raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// A page fault (`page-fault`).
    PageFault,
    /// An invalid-opcode exception, `ud2` (`invalid-opcode`).
    InvalidOpcode,
    /// A divide error (`divide-error`).
    DivideError,
    /// A general-protection fault (`general-protection`).
    GeneralProtection,
    /// A breakpoint exception, `int3` (`breakpoint`).
    Breakpoint,
    /// A hypervisor panic (`panic`).
    Panic,
}

impl CrashKind {
    /// Every kind.
    pub const ALL: [CrashKind; 6] = [
        CrashKind::PageFault,
        CrashKind::InvalidOpcode,
        CrashKind::DivideError,
        CrashKind::GeneralProtection,
        CrashKind::Breakpoint,
        CrashKind::Panic,
    ];

    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CrashKind::PageFault => "page-fault",
            CrashKind::InvalidOpcode => "invalid-opcode",
            CrashKind::DivideError => "divide-error",
            CrashKind::GeneralProtection => "general-protection",
            CrashKind::Breakpoint => "breakpoint",
            CrashKind::Panic => "panic",
        }
    }

    /// Parses a kind name; `-` and `_` are equivalent.
    pub fn parse(s: &str) -> Option<CrashKind> {
        CrashKind::ALL
            .iter()
            .copied()
            .find(|k| names_equal(k.name(), s))
    }
}

/// The `crash_test=<kind>[@<cpu>]` option (test only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashTest {
    /// What to raise.
    pub kind: CrashKind,
    /// On which CPU (default 0).
    pub cpu: u32,
}

impl CrashTest {
    /// Parses a `crash_test=` value.
    pub fn parse(s: &str) -> Result<CrashTest, &'static str> {
        let (kind, cpu) = match s.split_once('@') {
            Some((k, c)) => (
                k,
                parse_uint(c)
                    .and_then(|c| u32::try_from(c).ok())
                    .ok_or("CPU is not a number")?,
            ),
            None => (s, 0),
        };
        let kind = CrashKind::parse(kind).ok_or(
            "unknown kind (page-fault, invalid-opcode, divide-error, general-protection, \
             breakpoint, panic)",
        )?;
        Ok(CrashTest { kind, cpu })
    }
}

/// The default I/O port of QEMU's isa-debug-exit device.
pub const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// The parsed command line. `Default` gives Xen's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Console outputs (`console=`); default `com1,vga`.
    pub console: Vec<ConsoleKind>,
    /// COM1 configuration (`com1=`).
    pub com1: SerialConfig,
    /// COM2 configuration (`com2=`).
    pub com2: SerialConfig,
    /// Thresholds for the hypervisor's messages (`loglvl=`).
    pub log: LogThresholds,
    /// Thresholds for guest-triggered messages (`guest_loglvl=`).
    pub guest_log: LogThresholds,
    /// Dom0's memory (`dom0_mem=`); default all unset.
    pub dom0_mem: Dom0Mem,
    /// Dom0's vCPU count bounds `(min, max)` (`dom0_max_vcpus=`).
    pub dom0_max_vcpus: Option<(u32, u32)>,
    /// Scheduler name (`sched=`), not validated here.
    pub sched: Option<String>,
    /// Do not reboot on a crash (`noreboot`).
    pub noreboot: bool,
    /// Pin dom0's vCPU n to pCPU n (`dom0_vcpus_pin`, Xen's option).
    pub dom0_vcpus_pin: bool,
    /// Keep guests' console output in the console history too
    /// (`console_to_ring`, Xen's option; off by default, as on Xen).
    pub console_to_ring: bool,
    /// Maximum number of CPUs to bring up (`maxcpus=`).
    pub maxcpus: Option<u32>,
    /// rxen: the I/O port of QEMU's isa-debug-exit device through which the
    /// hypervisor leaves QEMU (`isa_debug_exit[=<port>]`).
    pub isa_debug_exit: Option<u16>,
    /// rxen, test only: a fault to raise deliberately (`crash_test=`).
    pub crash_test: Option<CrashTest>,
    /// rxen: boot-time domUs (`domu=`, one option per domain, in order).
    pub domus: Vec<DomUSpec>,
    /// rxen: boot without dom0 (`dom0less`); the modules only make domUs.
    pub dom0less: bool,
    /// Size of the serial transmit ring in bytes (`serial_tx_buffer=`, a
    /// size; no unit means KiB as in Xen). Default 16 KiB.
    pub serial_tx_buffer: u64,
    /// Most grant-table frames per domain (`gnttab_max_frames`, Xen's
    /// default 64).
    pub gnttab_max_frames: u32,
    /// Most maptrack frames (256 grant mappings each) per domain
    /// (`gnttab_max_maptrack_frames`, Xen's default 1024).
    pub gnttab_max_maptrack_frames: u32,
    /// Speculative-execution mitigations (`spec-ctrl=`).
    pub spec_ctrl: SpecCtrl,
    /// rxen: print each domain's exits by reason when it ends
    /// (`exit-stats`; the `p` debug key prints them any time).
    pub exit_stats: bool,
    /// Xen options accepted but ignored ([`ParamKind::Ignore`]), each as
    /// written, so the caller can report them.
    pub ignored: Vec<String>,
}

/// Xen's `spec-ctrl=` choices that rxen implements, each `None` for "the
/// default for this CPU". `spec-ctrl=no` turns all of them off (as Xen, a
/// positive top-level boolean is refused); the rest is a comma-separated
/// list of `name=<bool>` or `no-name`: `rsb`, `ibpb`, `ibpb-entry`,
/// `msr-sc`, `ibrs`, `ssbd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecCtrl {
    /// Overwrite the return stack buffer on every #VMEXIT (`rsb=`).
    pub rsb: Option<bool>,
    /// IBPB when a CPU switches to another domain's vCPU (`ibpb=`).
    pub ibpb: Option<bool>,
    /// IBPB on every #VMEXIT (`ibpb-entry=`).
    pub ibpb_entry: Option<bool>,
    /// Virtualize MSR_SPEC_CTRL for guests: offer it, switch it around
    /// VMRUN (`msr-sc=`).
    pub msr_sc: Option<bool>,
    /// The hypervisor runs with SPEC_CTRL.IBRS set (`ibrs=`).
    pub ibrs: Option<bool>,
    /// The hypervisor runs with SPEC_CTRL.SSBD set (`ssbd=`).
    pub ssbd: Option<bool>,
}

impl SpecCtrl {
    /// Everything off (`spec-ctrl=no`).
    pub const OFF: SpecCtrl = SpecCtrl {
        rsb: Some(false),
        ibpb: Some(false),
        ibpb_entry: Some(false),
        msr_sc: Some(false),
        ibrs: Some(false),
        ssbd: Some(false),
    };

    /// Applies a `spec-ctrl=` value on top of `self`; the error says why it
    /// is refused (then nothing of it applies).
    pub fn parse(self, value: &str) -> Result<SpecCtrl, &'static str> {
        let mut out = self;
        for item in value.split(',') {
            if let Some(on) = parse_bool(item) {
                if on {
                    return Err("only a negative boolean is allowed at the top level");
                }
                out = SpecCtrl::OFF;
                continue;
            }
            let (name, on) = match item.split_once('=') {
                Some((name, v)) => (name, parse_bool(v).ok_or("not a boolean")?),
                None => match item.strip_prefix("no-") {
                    Some(name) => (name, false),
                    None => (item, true),
                },
            };
            let slot =
                match () {
                    _ if names_equal(name, "rsb") => &mut out.rsb,
                    _ if names_equal(name, "ibpb") => &mut out.ibpb,
                    _ if names_equal(name, "ibpb-entry") => &mut out.ibpb_entry,
                    _ if names_equal(name, "msr-sc") => &mut out.msr_sc,
                    _ if names_equal(name, "ibrs") => &mut out.ibrs,
                    _ if names_equal(name, "ssbd") => &mut out.ssbd,
                    _ => return Err(
                        "unknown sub-option (rxen has rsb, ibpb, ibpb-entry, msr-sc, ibrs, ssbd)",
                    ),
                };
            *slot = Some(on);
        }
        Ok(out)
    }
}

/// One boot-time domU (`domu=<kernel>[+<initrd>][,key=value...]`): its
/// modules by number (as the boot report numbers them, from 0), and its
/// memory, vCPUs and scheduling parameters (unset: the defaults of the
/// domain builder and the scheduler).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomUSpec {
    /// Module holding the kernel.
    pub kernel: usize,
    /// Module holding the initrd, if any.
    pub initrd: Option<usize>,
    /// Memory in bytes (`mem=`, a size such as `64M`).
    pub memory: Option<u64>,
    /// vCPUs (`vcpus=`).
    pub vcpus: Option<u32>,
    /// Credit scheduler weight (`weight=`).
    pub weight: Option<u16>,
    /// Credit scheduler cap in percent of one CPU (`cap=`, 0 = none).
    pub cap: Option<u16>,
    /// RTDS period in microseconds (`period=`).
    pub period_us: Option<u32>,
    /// RTDS budget in microseconds (`budget=`).
    pub budget_us: Option<u32>,
    /// RTDS extra time beyond the budget (`extratime=`).
    pub extratime: Option<bool>,
    /// Paging pool (nested page tables) in MiB (`shadow_memory=`, xl.cfg's
    /// name; unset: 256 pages per vCPU + 1 per MiB of RAM, as Xen).
    pub shadow_memory: Option<u64>,
    /// Most event channels (`max_event_channels=`, xl.cfg's name: the
    /// highest port the domain may use; unset: 1023, as xl).
    pub max_event_channels: Option<u32>,
    /// The pCPUs its vCPUs may run on (`cpus=`, xl.cfg's name: `all`, a pCPU
    /// number or a range `a-b`; unset: all), as a mask (bit n: pCPU n).
    pub cpus: Option<u64>,
}

/// A `cpus=` value of `domu=`: `all` (no pinning: None), else a CPU list
/// as xl reads one ([`CpuMask::parse_list`]; without commas here, which
/// separate `domu=`'s items), of pCPUs below 64, as a mask.
fn parse_cpus(v: &str) -> Result<Option<u64>, &'static str> {
    if v == "all" {
        return Ok(None);
    }
    crate::sched::CpuMask::parse_list(v, crate::sched::CpuMask::CAPACITY)
        .map(|mask| Some(mask.bits()))
        .map_err(|_| "cpus= is all, a pCPU number or a range a-b (below 64)")
}

impl DomUSpec {
    /// Parses a `domu=` value.
    pub fn parse(value: &str) -> Result<DomUSpec, &'static str> {
        let mut items = value.split(',');
        let modules = items.next().unwrap_or("");
        let (kernel, initrd) = match modules.split_once('+') {
            Some((k, i)) => (k, Some(i)),
            None => (modules, None),
        };
        let module = |m: &str| {
            parse_uint(m)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n < 1024)
                .ok_or("module numbers must be small numbers, as the boot report lists them")
        };
        let mut spec = DomUSpec {
            kernel: module(kernel)?,
            initrd: initrd.map(module).transpose()?,
            ..DomUSpec::default()
        };
        if spec.initrd == Some(spec.kernel) {
            return Err("the initrd module is the kernel module");
        }
        for item in items {
            let (key, v) = item
                .split_once('=')
                .ok_or("expected key=value after the modules")?;
            let number = |max: u64| parse_uint(v).filter(|&n| n <= max);
            match key {
                "mem" | "memory" => {
                    spec.memory = Some(
                        parse_size(v)
                            .filter(|&b| b >= 1 << 20)
                            .ok_or("mem= needs a size of at least 1M")?,
                    )
                }
                "vcpus" => {
                    spec.vcpus = Some(
                        number(128)
                            .filter(|&n| n > 0)
                            .ok_or("vcpus= must be 1 to 128")? as u32,
                    )
                }
                "weight" => {
                    spec.weight = Some(
                        number(65535)
                            .filter(|&n| n > 0)
                            .ok_or("weight= must be 1 to 65535")? as u16,
                    )
                }
                "cap" => spec.cap = Some(number(65535).ok_or("cap= must be 0 to 65535")? as u16),
                "period" => {
                    spec.period_us =
                        Some(number(u32::MAX as u64).ok_or("period= is in microseconds")? as u32)
                }
                "budget" => {
                    spec.budget_us =
                        Some(number(u32::MAX as u64).ok_or("budget= is in microseconds")? as u32)
                }
                "extratime" => {
                    spec.extratime = Some(parse_bool(v).ok_or("extratime= is a boolean")?)
                }
                "shadow_memory" => {
                    spec.shadow_memory = Some(
                        number(1 << 20)
                            .filter(|&n| n > 0)
                            .ok_or("shadow_memory= is in MiB, at least 1")?,
                    )
                }
                "max_event_channels" => {
                    spec.max_event_channels = Some(
                        number(u32::MAX as u64)
                            .filter(|&n| n > 0)
                            .ok_or("max_event_channels= must be at least 1")?
                            as u32,
                    )
                }
                "cpus" => spec.cpus = parse_cpus(v)?,
                _ => {
                    return Err("unknown key (mem, vcpus, weight, cap, period, budget, extratime, shadow_memory, max_event_channels, cpus)")
                }
            }
        }
        Ok(spec)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            console: vec![ConsoleKind::Com1, ConsoleKind::Vga],
            com1: SerialConfig::COM1_DEFAULT,
            com2: SerialConfig::COM2_DEFAULT,
            log: LogThresholds::HYPERVISOR_DEFAULT,
            guest_log: LogThresholds::GUEST_DEFAULT,
            dom0_mem: Dom0Mem::default(),
            dom0_max_vcpus: None,
            sched: None,
            noreboot: false,
            dom0_vcpus_pin: false,
            console_to_ring: false,
            maxcpus: None,
            isa_debug_exit: None,
            crash_test: None,
            domus: Vec::new(),
            dom0less: false,
            serial_tx_buffer: crate::console::DEFAULT_TX_BUFFER as u64,
            gnttab_max_frames: crate::grant_table::DEFAULT_MAX_FRAMES,
            gnttab_max_maptrack_frames: crate::grant_table::DEFAULT_MAX_MAPTRACK_FRAMES,
            spec_ctrl: SpecCtrl::default(),
            exit_stats: false,
            ignored: Vec::new(),
        }
    }
}

/// A problem with one option of the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The option's name as written (without the value).
    pub option: String,
    /// The complete message, naming the option, e.g. `unknown option 'foo'`
    /// or `bad value 'x' for 'com1': <why>; using default`.
    pub message: String,
}

impl Warning {
    fn unknown(option: &str) -> Warning {
        Warning {
            option: option.to_string(),
            message: format!("unknown option '{option}'"),
        }
    }

    fn bad_value(option: &str, value: &str, why: &str) -> Warning {
        Warning {
            option: option.to_string(),
            message: format!("bad value '{value}' for '{option}': {why}; using default"),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses an unsigned number: decimal, or hexadecimal after `0x`/`0X`.
fn parse_uint(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses a size the way Xen's `parse_size_and_unit` does: a number
/// (decimal, or hexadecimal after `0x`) followed by an optional unit `T`,
/// `G`, `M`, `K` or `B` (any case); **no unit means KiB**. Returns `None` for
/// anything else, including trailing characters and overflow.
///
/// Note that in hexadecimal a final `b` is a digit, as in Xen.
pub fn parse_size(s: &str) -> Option<u64> {
    let hex = s.starts_with("0x") || s.starts_with("0X");
    let body_start = if hex { 2 } else { 0 };
    let digits_len = s
        .bytes()
        .skip(body_start)
        .take_while(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count();
    let split = body_start + digits_len;
    let number = parse_uint(s.get(..split)?)?;
    let shift = match s.get(split..)? {
        "" => 10,
        "T" | "t" => 40,
        "G" | "g" => 30,
        "M" | "m" => 20,
        "K" | "k" => 10,
        "B" | "b" => 0,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Parses Xen's boolean values.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "on" | "true" | "enable" | "1" => Some(true),
        "no" | "off" | "false" | "disable" | "0" => Some(false),
        _ => None,
    }
}

/// Option names compare with `-` and `_` equivalent.
fn names_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let norm = |c: u8| if c == b'-' { b'_' } else { c };
            norm(x) == norm(y)
        })
}

/// Parses `dom0_max_vcpus=`: `<n>` (min = max = n), `<min>-<max>`,
/// `<min>-` (no maximum) or `-<max>` (minimum 1).
fn parse_vcpus(s: &str) -> Result<(u32, u32), &'static str> {
    let num = |t: &str| {
        parse_uint(t)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("not a number")
    };
    let (min, max) = match s.split_once('-') {
        None => {
            let n = num(s)?;
            (n, n)
        }
        Some(("", "")) => return Err("neither bound given"),
        Some((min, "")) => (num(min)?, u32::MAX),
        Some(("", max)) => (1, num(max)?),
        Some((min, max)) => (num(min)?, num(max)?),
    };
    if min == 0 || max == 0 {
        return Err("vCPU counts must be at least 1");
    }
    if min > max {
        return Err("minimum above maximum");
    }
    Ok((min, max))
}

/// One hypervisor option: its name, how its value is parsed and where it
/// goes, and a line of help. The entry of Xen's `struct kernel_param`
/// (`xen/include/xen/param.h`), which `parse` looks names up in.
#[derive(Clone, Copy)]
pub struct Param {
    /// The option's name (`-` and `_` are equivalent when matching).
    pub name: &'static str,
    /// How the value is parsed and where it goes.
    pub kind: ParamKind,
    /// What the option does, in one line.
    pub help: &'static str,
}

/// How an option takes its value and where the value goes: Xen's `OPT_*`
/// kinds. A value that does not parse gives a [`Warning`] and leaves the
/// option at its earlier setting.
#[derive(Clone, Copy)]
pub enum ParamKind {
    /// Xen's `boolean_param`: `name`, `no-name` or `name=<bool>`, stored in
    /// the field the function returns.
    Bool(fn(&mut Options) -> &mut bool),
    /// Xen's `size_param`: `name=<size>` ([`parse_size`]: no unit means
    /// KiB), stored in the field the function returns.
    Size(fn(&mut Options) -> &mut u64),
    /// Xen's `custom_param`: `name=<value>` (a value is required, `no-` is
    /// refused); the function parses the value and stores it, or says why
    /// not.
    Custom(fn(&mut Options, &str) -> Result<(), &'static str>),
    /// A `custom_param` with a syntax of its own (a boolean form, or several
    /// warnings for one value): the function gets the whole [`Arg`].
    Raw(fn(&mut Options, &Arg<'_>) -> Result<(), Vec<Warning>>),
    /// Xen's `ignore_param`: a Xen option rxen accepts (also with `no-`) and
    /// ignores without a warning, listed in [`Options::ignored`].
    Ignore,
}

/// One option as written on the command line, for a [`ParamKind::Raw`]
/// parser.
pub struct Arg<'a> {
    /// The whole option, e.g. `no-com1=x`.
    pub token: &'a str,
    /// The name as written, with any `no-`.
    pub name: &'a str,
    /// Whether the name had a `no-` prefix.
    pub negated: bool,
    /// What follows the first `=`, if there is one.
    pub value: Option<&'a str>,
}

impl Arg<'_> {
    /// The warning for a bad value of this option.
    pub fn bad(&self, value: &str, why: &str) -> Warning {
        Warning::bad_value(self.name, value, why)
    }

    /// The value of a non-boolean option: it must be given and not be empty,
    /// and `no-` does not apply.
    pub fn required_value(&self) -> Result<&str, Vec<Warning>> {
        if self.negated {
            return Err(vec![self.bad(
                self.value.unwrap_or(""),
                "not a boolean option, so 'no-' does not apply",
            )]);
        }
        match self.value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(vec![self.bad("", "a value is required")]),
        }
    }
}

impl Param {
    /// Applies this option as written in `arg` to `opts`; returns the
    /// warnings it produced (as `Err`, possibly alongside partial success
    /// for `console=`).
    fn apply(&self, opts: &mut Options, arg: &Arg<'_>) -> Result<(), Vec<Warning>> {
        match self.kind {
            ParamKind::Bool(field) => {
                let on = match arg.value {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| vec![arg.bad(v, "not a boolean")])?,
                };
                *field(opts) = on != arg.negated;
            }
            ParamKind::Size(field) => {
                let v = arg.required_value()?;
                *field(opts) = parse_size(v).ok_or_else(|| vec![arg.bad(v, "not a size")])?;
            }
            ParamKind::Custom(parse) => {
                let v = arg.required_value()?;
                parse(opts, v).map_err(|why| vec![arg.bad(v, why)])?;
            }
            ParamKind::Raw(parse) => parse(opts, arg)?,
            ParamKind::Ignore => opts.ignored.push(arg.token.to_string()),
        }
        Ok(())
    }
}

/// Why a `loglvl=`/`guest_loglvl=` value is refused.
const LOGLVL_SYNTAX: &str =
    "expected <level>[/<level>] with levels none, error, warning, info, debug, all";

/// Every option rxen knows, in the order of the README's table.
pub const PARAMS: &[Param] = &[
    raw_param(
        "console",
        parse_console,
        "console outputs: com1, com2, vga, none (default com1,vga)",
    ),
    custom_param(
        "com1",
        |o, v| SerialConfig::parse(v, SerialConfig::COM1_DEFAULT).map(|c| o.com1 = c),
        "COM1: <baud>[/<base-baud>][,DPS[,<io-base>[,<irq>]]]",
    ),
    custom_param(
        "com2",
        |o, v| SerialConfig::parse(v, SerialConfig::COM2_DEFAULT).map(|c| o.com2 = c),
        "COM2: <baud>[/<base-baud>][,DPS[,<io-base>[,<irq>]]]",
    ),
    custom_param(
        "loglvl",
        |o, v| {
            LogThresholds::parse(v)
                .map(|t| o.log = t)
                .ok_or(LOGLVL_SYNTAX)
        },
        "thresholds for the hypervisor's messages: <level>[/<level>]",
    ),
    custom_param(
        "guest_loglvl",
        |o, v| {
            LogThresholds::parse(v)
                .map(|t| o.guest_log = t)
                .ok_or(LOGLVL_SYNTAX)
        },
        "thresholds for guest-triggered messages: <level>[/<level>]",
    ),
    size_param(
        "serial_tx_buffer",
        |o| &mut o.serial_tx_buffer,
        "size of the serial transmit ring (default 16k)",
    ),
    custom_param(
        "spec-ctrl",
        |o, v| o.spec_ctrl.parse(v).map(|s| o.spec_ctrl = s),
        "speculative-execution mitigations: no, or rsb, ibpb, ibpb-entry, msr-sc, ibrs, ssbd",
    ),
    custom_param(
        "gnttab_max_frames",
        |o, v| parse_gnttab_limit(v).map(|n| o.gnttab_max_frames = n),
        "grant-table frames per domain (default 64)",
    ),
    custom_param(
        "gnttab_max_maptrack_frames",
        |o, v| parse_gnttab_limit(v).map(|n| o.gnttab_max_maptrack_frames = n),
        "maptrack frames per domain (default 1024)",
    ),
    boolean_param(
        "noreboot",
        |o| &mut o.noreboot,
        "after a crash, stay halted instead of rebooting",
    ),
    boolean_param(
        "dom0_vcpus_pin",
        |o| &mut o.dom0_vcpus_pin,
        "pin dom0's vCPU n to CPU n",
    ),
    boolean_param(
        "exit-stats",
        |o| &mut o.exit_stats,
        "rxen: print each domain's exits by reason (count, time) when it ends",
    ),
    boolean_param(
        "console_to_ring",
        |o| &mut o.console_to_ring,
        "keep guests' console output in the console history (xl dmesg) too",
    ),
    custom_param(
        "maxcpus",
        |o, v| {
            parse_u32(v)
                .map(|n| o.maxcpus = Some(n))
                .ok_or("not a 32-bit number")
        },
        "bring up at most this many CPUs",
    ),
    custom_param(
        "dom0_mem",
        |o, v| Dom0Mem::parse(v).map(|m| o.dom0_mem = m),
        "dom0's memory: [min:<amt>,][max:<amt>,][<amt>], amounts a size or <n>%",
    ),
    custom_param(
        "dom0_max_vcpus",
        |o, v| parse_vcpus(v).map(|n| o.dom0_max_vcpus = Some(n)),
        "dom0's vCPUs: <n>, <min>-<max>, <min>- or -<max>",
    ),
    custom_param(
        "sched",
        |o, v| {
            o.sched = Some(v.to_string());
            Ok(())
        },
        "the scheduler: credit or rtds",
    ),
    custom_param(
        "domu",
        |o, v| DomUSpec::parse(v).map(|d| o.domus.push(d)),
        "rxen: one boot-time domU, <kernel>[+<initrd>][,key=value...]",
    ),
    boolean_param(
        "dom0less",
        |o| &mut o.dom0less,
        "rxen: boot without dom0; the modules only make domUs",
    ),
    raw_param(
        "isa_debug_exit",
        parse_isa_debug_exit,
        "rxen, tests: leave QEMU through isa-debug-exit at this port (default 0xf4)",
    ),
    custom_param(
        "crash_test",
        |o, v| CrashTest::parse(v).map(|c| o.crash_test = Some(c)),
        "rxen, tests: raise a fault on purpose, <kind>[@<cpu>]",
    ),
    ignore_param("dom0", "Xen's dom0 mode"),
    ignore_param("iommu", "Xen's IOMMU settings"),
    ignore_param("hap", "Xen's hardware-assisted paging switch"),
    ignore_param("ucode", "Xen's microcode loading"),
    ignore_param("smt", "Xen's SMT switch"),
    ignore_param("vga", "Xen's VGA mode"),
    ignore_param("no-real-mode", "Xen's skipping of real-mode boot code"),
    ignore_param("edd", "Xen's EDD probing"),
    ignore_param("conring_size", "Xen's console ring size"),
    ignore_param("sync_console", "Xen's synchronous console"),
    ignore_param("console_timestamps", "Xen's console timestamps"),
];

/// Xen's `boolean_param`: an entry of kind [`ParamKind::Bool`].
const fn boolean_param(
    name: &'static str,
    field: fn(&mut Options) -> &mut bool,
    help: &'static str,
) -> Param {
    let kind = ParamKind::Bool(field);
    Param { name, kind, help }
}

/// Xen's `size_param`: an entry of kind [`ParamKind::Size`].
const fn size_param(
    name: &'static str,
    field: fn(&mut Options) -> &mut u64,
    help: &'static str,
) -> Param {
    let kind = ParamKind::Size(field);
    Param { name, kind, help }
}

/// Xen's `custom_param`: an entry of kind [`ParamKind::Custom`].
const fn custom_param(
    name: &'static str,
    parse: fn(&mut Options, &str) -> Result<(), &'static str>,
    help: &'static str,
) -> Param {
    let kind = ParamKind::Custom(parse);
    Param { name, kind, help }
}

/// An entry of kind [`ParamKind::Raw`].
const fn raw_param(
    name: &'static str,
    parse: fn(&mut Options, &Arg<'_>) -> Result<(), Vec<Warning>>,
    help: &'static str,
) -> Param {
    let kind = ParamKind::Raw(parse);
    Param { name, kind, help }
}

/// Xen's `ignore_param`: an entry of kind [`ParamKind::Ignore`].
const fn ignore_param(name: &'static str, help: &'static str) -> Param {
    let kind = ParamKind::Ignore;
    Param { name, kind, help }
}

/// `console=`: a comma-separated list; unknown entries are skipped with a
/// warning each, and a list without a known entry keeps the earlier setting.
fn parse_console(opts: &mut Options, arg: &Arg<'_>) -> Result<(), Vec<Warning>> {
    let value = arg.required_value()?;
    let name = arg.name;
    let mut kinds = Vec::new();
    let mut warnings = Vec::new();
    for entry in value.split(',') {
        match ConsoleKind::parse(entry) {
            Some(k) => kinds.push(k),
            None => warnings.push(Warning {
                option: name.to_string(),
                message: format!(
                    "bad value '{entry}' for '{name}': unknown console; entry ignored"
                ),
            }),
        }
    }
    if kinds.is_empty() {
        warnings.push(arg.bad(value, "no known console"));
    } else {
        opts.console = kinds;
    }
    if warnings.is_empty() {
        Ok(())
    } else {
        Err(warnings)
    }
}

/// `isa_debug_exit[=<port>]`, also a boolean: `isa_debug_exit` and
/// `=<true>` mean the default port, `=<false>` and `no-isa_debug_exit` off,
/// `no-isa_debug_exit=<false>` the default port.
fn parse_isa_debug_exit(opts: &mut Options, arg: &Arg<'_>) -> Result<(), Vec<Warning>> {
    let port = match arg.value {
        None => Some(ISA_DEBUG_EXIT_PORT),
        Some(v) if !arg.negated && v.starts_with(|c: char| c.is_ascii_digit()) => {
            match parse_uint(v).and_then(|p| u16::try_from(p).ok()) {
                Some(0) | None => return Err(vec![arg.bad(v, "port must be 1 to 0xffff")]),
                Some(p) => Some(p),
            }
        }
        Some(v) => match parse_bool(v) {
            Some(on) => on.then_some(ISA_DEBUG_EXIT_PORT),
            None => return Err(vec![arg.bad(v, "not a port number or boolean")]),
        },
    };
    opts.isa_debug_exit = if arg.negated {
        match port {
            Some(_) => None,
            None => Some(ISA_DEBUG_EXIT_PORT),
        }
    } else {
        port
    };
    Ok(())
}

/// A number ([`parse_uint`]) that fits 32 bits.
fn parse_u32(v: &str) -> Option<u32> {
    parse_uint(v).and_then(|n| u32::try_from(n).ok())
}

/// As Xen's `parse_gnttab_limit`: a number up to `INT_MAX`.
fn parse_gnttab_limit(v: &str) -> Result<u32, &'static str> {
    parse_uint(v)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= i32::MAX as u32)
        .ok_or("not a number up to 2147483647")
}

/// The table entry for `name`, if any.
fn lookup(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| names_equal(p.name, name))
}

/// Parses a (cooked) command line. Unknown options and malformed values
/// produce a [`Warning`] and leave the option at its default (or at an
/// earlier valid setting); ignored Xen options ([`ParamKind::Ignore`], also
/// with `no-`) are collected in [`Options::ignored`]. Never fails.
pub fn parse(cmdline: &str) -> (Options, Vec<Warning>) {
    let mut opts = Options::default();
    let mut warnings = Vec::new();
    for token in cmdline.split_ascii_whitespace() {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (token, None),
        };
        // A name that itself starts with `no-` (`no-real-mode`) matches as
        // written; otherwise `no-` negates the option after it.
        let (param, negated) = match lookup(name) {
            Some(p) => (p, false),
            None => match name.strip_prefix("no-").and_then(lookup) {
                Some(p) => (p, true),
                None => {
                    warnings.push(Warning::unknown(name));
                    continue;
                }
            },
        };
        let arg = Arg {
            token,
            name,
            negated,
            value,
        };
        if let Err(w) = param.apply(&mut opts, &arg) {
            warnings.extend(w);
        }
    }
    (opts, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogLevel;

    fn parse_ok(s: &str) -> Options {
        let (opts, warnings) = parse(s);
        assert!(warnings.is_empty(), "{s:?}: {warnings:?}");
        opts
    }

    fn parse_warn(s: &str) -> (Options, Vec<Warning>) {
        let (opts, warnings) = parse(s);
        assert!(!warnings.is_empty(), "{s:?} should warn");
        (opts, warnings)
    }

    #[test]
    fn cook_qemu_and_grub() {
        assert_eq!(cook("xen.gz loglvl=all", "qemu"), "loglvl=all");
        assert_eq!(cook("   xen.gz    a b ", "qemu"), "a b ");
        assert_eq!(cook("xen.gz", "qemu"), "");
        assert_eq!(cook("", "qemu"), "");
        assert_eq!(cook("   ", "qemu"), "");
        assert_eq!(cook("  loglvl=all a", "GRUB 2.06"), "loglvl=all a");
        assert_eq!(cook("/boot/xen.gz x", "GNU GRUB 0.97"), "x");
        assert_eq!(cook("a b", "GRUB "), "a b");
        assert_eq!(cook("a b", ""), "b");
        // Module command lines (QEMU -initrd "file args").
        assert_eq!(cook("dom0.elf console=hvc0 x", "qemu"), "console=hvc0 x");
        // Non-ASCII does not break slicing.
        assert_eq!(cook("ü é", "qemu"), "é");
        assert_eq!(cook("ü é", "GRUB 2"), "ü é");
    }

    #[test]
    fn defaults() {
        let o = parse_ok("");
        assert_eq!(o, Options::default());
        assert_eq!(o.console, vec![ConsoleKind::Com1, ConsoleKind::Vga]);
        assert_eq!(o.com1.io_base, 0x3f8);
        assert_eq!(o.com1.irq, 4);
        assert_eq!(o.com1.baud, None);
        assert_eq!(o.log, LogThresholds::HYPERVISOR_DEFAULT);
        assert_eq!(o.guest_log.lower, LogLevel::None);
        assert_eq!(o.guest_log.upper, LogLevel::Warning);
        assert!(!o.noreboot);
        assert_eq!(parse_ok("  \t \n "), Options::default());
    }

    #[test]
    fn spec_ctrl() {
        assert_eq!(parse_ok("").spec_ctrl, SpecCtrl::default());
        assert_eq!(parse_ok("spec-ctrl=no").spec_ctrl, SpecCtrl::OFF);
        assert_eq!(parse_ok("spec_ctrl=0").spec_ctrl, SpecCtrl::OFF);
        let s = parse_ok("spec-ctrl=rsb=no,no-ibpb,ibpb-entry,msr-sc=off").spec_ctrl;
        assert_eq!(s.rsb, Some(false));
        assert_eq!(s.ibpb, Some(false));
        assert_eq!(s.ibpb_entry, Some(true));
        assert_eq!(s.msr_sc, Some(false));
        assert_eq!((s.ibrs, s.ssbd), (None, None));
        // Later items and later options override earlier ones.
        let s = parse_ok("spec-ctrl=no,rsb spec-ctrl=ssbd=1").spec_ctrl;
        assert_eq!(s.rsb, Some(true));
        assert_eq!(s.ssbd, Some(true));
        assert_eq!(s.ibpb, Some(false));
        // As Xen: a positive top-level boolean and unknown names are refused,
        // and nothing of the refused value applies.
        for bad in [
            "spec-ctrl=yes",
            "spec-ctrl=rsb=no,bogus",
            "spec-ctrl=ibpb=maybe",
        ] {
            let (opts, warnings) = parse_warn(bad);
            assert_eq!(opts.spec_ctrl, SpecCtrl::default(), "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}");
            assert_eq!(warnings[0].option, "spec-ctrl");
        }
    }

    #[test]
    fn grant_table_limits() {
        let o = parse_ok("");
        assert_eq!(
            (o.gnttab_max_frames, o.gnttab_max_maptrack_frames),
            (64, 1024)
        );
        let o = parse_ok("gnttab_max_frames=32 gnttab-max-maptrack-frames=0x10");
        assert_eq!(
            (o.gnttab_max_frames, o.gnttab_max_maptrack_frames),
            (32, 16)
        );
        let o = parse_ok("gnttab_max_maptrack_frames=0");
        assert_eq!(o.gnttab_max_maptrack_frames, 0);
        for bad in [
            "gnttab_max_frames=x",
            "gnttab_max_frames=2147483648",
            "gnttab_max_frames=",
        ] {
            let (o, _) = parse_warn(bad);
            assert_eq!(o.gnttab_max_frames, 64, "{bad}");
        }
    }

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("1"), Some(1024));
        assert_eq!(parse_size("1K"), Some(1024));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("4096B"), Some(4096));
        assert_eq!(parse_size("4096b"), Some(4096));
        assert_eq!(parse_size("0x10M"), Some(16 << 20));
        assert_eq!(parse_size("0X10"), Some(16 << 10));
        assert_eq!(parse_size("0x1b"), Some(0x1b << 10)); // b is a hex digit
        assert_eq!(parse_size("010"), Some(10 << 10));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("16777215T"), Some(16777215 << 40));
        for bad in [
            "",
            "M",
            "0x",
            "0xM",
            "1MB",
            "1 M",
            "-1",
            "+1",
            "1.5G",
            "1X",
            "16777216T",
            "99999999999999999999",
            "0xffffffffffffffffk",
            "1%",
            "Ⅻ",
            "1é",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans() {
        assert!(parse_ok("noreboot").noreboot);
        assert!(parse_ok("dom0_vcpus_pin").dom0_vcpus_pin);
        assert!(!parse_ok("no-dom0_vcpus_pin").dom0_vcpus_pin);
        assert!(!parse_ok("").dom0_vcpus_pin);
        assert!(parse_ok("console_to_ring").console_to_ring);
        assert!(
            parse_ok("console-to-ring").console_to_ring,
            "Xen's dash spelling"
        );
        assert!(!parse_ok("").console_to_ring);
        assert!(parse_ok("exit-stats").exit_stats);
        assert!(parse_ok("exit_stats=1").exit_stats);
        assert!(!parse_ok("").exit_stats);
        assert!(!parse_ok("exit-stats no-exit-stats").exit_stats);
        assert!(!parse_ok("no-noreboot").noreboot);
        for v in ["yes", "on", "true", "enable", "1"] {
            assert!(parse_ok(&format!("noreboot={v}")).noreboot, "{v}");
            assert!(!parse_ok(&format!("no-noreboot={v}")).noreboot, "{v}");
        }
        for v in ["no", "off", "false", "disable", "0"] {
            assert!(!parse_ok(&format!("noreboot={v}")).noreboot, "{v}");
            assert!(parse_ok(&format!("no-noreboot={v}")).noreboot, "{v}");
        }
        let (o, w) = parse_warn("noreboot=maybe");
        assert!(!o.noreboot);
        assert_eq!(w[0].option, "noreboot");
        assert_eq!(
            w[0].to_string(),
            "bad value 'maybe' for 'noreboot': not a boolean; using default"
        );
        parse_warn("noreboot=");
        // Later occurrences override.
        assert!(!parse_ok("noreboot no-noreboot").noreboot);
    }

    #[test]
    fn unknown_options() {
        let (o, w) = parse_warn("foo loglvl=all bar=1 no-baz =x");
        assert_eq!(o.log.lower, LogLevel::All);
        let msgs: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "unknown option 'foo'",
                "unknown option 'bar'",
                "unknown option 'no-baz'",
                "unknown option ''",
            ]
        );
        assert_eq!(w[1].option, "bar");
    }

    #[test]
    fn dash_underscore_equivalent() {
        let o = parse_ok("guest-loglvl=all dom0-max-vcpus=2 crash-test=panic isa-debug-exit");
        assert_eq!(o.guest_log.lower, LogLevel::All);
        assert_eq!(o.dom0_max_vcpus, Some((2, 2)));
        assert_eq!(o.crash_test.map(|c| c.kind), Some(CrashKind::Panic));
        assert_eq!(o.isa_debug_exit, Some(0xf4));
    }

    #[test]
    fn ignored_options() {
        let o = parse_ok(
            "dom0=pvh iommu=off no-hap ucode=scan smt=0 vga=text-80x25 no-real-mode edd=off \
             conring_size=64k sync_console console_timestamps=boot \
             no-smt",
        );
        assert_eq!(o.ignored.len(), 12);
        assert_eq!(o.ignored[0], "dom0=pvh");
        assert_eq!(o.ignored[2], "no-hap");
        assert_eq!(o.ignored[6], "no-real-mode");
        assert_eq!(o.ignored[10], "console_timestamps=boot");
        let mut rest = o.clone();
        rest.ignored.clear();
        assert_eq!(rest, Options::default());
    }

    #[test]
    fn console() {
        assert_eq!(parse_ok("console=vga").console, vec![ConsoleKind::Vga]);
        assert_eq!(parse_ok("console=none").console, vec![ConsoleKind::None]);
        assert_eq!(
            parse_ok("console=com2,com1").console,
            vec![ConsoleKind::Com2, ConsoleKind::Com1]
        );
        let (o, w) = parse_warn("console=com1,dbgp");
        assert_eq!(o.console, vec![ConsoleKind::Com1]);
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("'dbgp'"), "{}", w[0]);
        let (o, w) = parse_warn("console=foo,,bar");
        assert_eq!(o.console, Options::default().console);
        assert_eq!(w.len(), 4);
        let (o, _) = parse_warn("console=");
        assert_eq!(o.console, Options::default().console);
        parse_warn("console");
        parse_warn("no-console=vga");
    }

    #[test]
    fn serial() {
        let o = parse_ok("com1=115200,8n1,0x3f8,4");
        assert_eq!(o.com1.baud, Some(115200));
        assert_eq!(
            o.com1,
            SerialConfig {
                baud: Some(115200),
                ..SerialConfig::COM1_DEFAULT
            }
        );
        let o = parse_ok("com1=9600/115200,7e2,0x2e8,0");
        assert_eq!(
            o.com1,
            SerialConfig {
                baud: Some(9600),
                clock_hz: Some(1_843_200),
                data_bits: 7,
                parity: Parity::Even,
                stop_bits: 2,
                io_base: 0x2e8,
                irq: 0,
            }
        );
        assert_eq!(parse_ok("com1=auto").com1, SerialConfig::COM1_DEFAULT);
        assert_eq!(parse_ok("com1=auto,5o1").com1.data_bits, 5);
        assert_eq!(parse_ok("com1=,,760").com1.io_base, 760);
        assert_eq!(parse_ok("com1=,,,11").com1.irq, 11);
        assert_eq!(parse_ok("com1=38400,8m1").com1.parity, Parity::Mark);
        assert_eq!(parse_ok("com1=38400,8s1").com1.parity, Parity::Space);
        assert_eq!(parse_ok("com1=38400,8o1").com1.parity, Parity::Odd);
        let o = parse_ok("com2=57600");
        assert_eq!(o.com2.io_base, 0x2f8);
        assert_eq!(o.com2.irq, 3);
        assert_eq!(o.com2.baud, Some(57600));
        for bad in [
            "com1=fast",
            "com1=0",
            "com1=115200/0",
            "com1=115200/",
            "com1=115200/999999999999",
            "com1=99999999999",
            "com1=115200,9n1",
            "com1=115200,4n1",
            "com1=115200,8x1",
            "com1=115200,8n3",
            "com1=115200,8n",
            "com1=115200,8n1x",
            "com1=115200,8n1,0x10000",
            "com1=115200,8n1,0",
            "com1=115200,8n1,pci",
            "com1=115200,8n1,0x3f8,256",
            "com1=115200,8n1,0x3f8,msi",
            "com1=115200,8n1,0x3f8,4,00:1f.0",
            "com1=115200,ü",
            "com1",
            "com1=",
            "no-com1",
        ] {
            let (o, w) = parse_warn(bad);
            assert_eq!(o.com1, SerialConfig::COM1_DEFAULT, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(w[0].message.contains("com1'"), "{}", w[0]);
            assert!(w[0].message.ends_with("using default"), "{}", w[0]);
        }
        // A bad later value keeps the earlier good one.
        let (o, _) = parse_warn("com1=9600 com1=bogus");
        assert_eq!(o.com1.baud, Some(9600));
    }

    #[test]
    fn serial_tx_buffer() {
        assert_eq!(Options::default().serial_tx_buffer, 16 * 1024);
        assert_eq!(parse_ok("serial_tx_buffer=64k").serial_tx_buffer, 64 * 1024);
        assert_eq!(parse_ok("serial_tx_buffer=32").serial_tx_buffer, 32 * 1024);
        assert_eq!(parse_ok("serial-tx-buffer=1M").serial_tx_buffer, 1 << 20);
        let (o, w) = parse_warn("serial_tx_buffer=lots");
        assert_eq!(o.serial_tx_buffer, 16 * 1024);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn loglvl() {
        let o = parse_ok("loglvl=all guest_loglvl=error/info");
        assert_eq!(o.log.lower, LogLevel::All);
        assert_eq!(o.log.upper, LogLevel::All);
        assert_eq!(o.guest_log.lower, LogLevel::Error);
        assert_eq!(o.guest_log.upper, LogLevel::Info);
        let (o, w) = parse_warn("loglvl=loud guest_loglvl=info/");
        assert_eq!(o.log, LogThresholds::HYPERVISOR_DEFAULT);
        assert_eq!(o.guest_log, LogThresholds::GUEST_DEFAULT);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].option, "guest_loglvl");
    }

    #[test]
    fn dom0_mem() {
        let o = parse_ok("dom0_mem=512M");
        assert_eq!(o.dom0_mem.target, Some(MemAmount::Bytes(512 << 20)));
        assert_eq!(o.dom0_mem.min, None);
        let o = parse_ok("dom0_mem=min:128M,max:2G,1G");
        assert_eq!(
            o.dom0_mem,
            Dom0Mem {
                min: Some(MemAmount::Bytes(128 << 20)),
                max: Some(MemAmount::Bytes(2 << 30)),
                target: Some(MemAmount::Bytes(1 << 30)),
            }
        );
        let o = parse_ok("dom0_mem=max:50%,10%");
        assert_eq!(o.dom0_mem.max, Some(MemAmount::Percent(50)));
        assert_eq!(o.dom0_mem.target, Some(MemAmount::Percent(10)));
        assert_eq!(
            parse_ok("dom0_mem=100%").dom0_mem.target,
            Some(MemAmount::Percent(100))
        );
        assert_eq!(
            parse_ok("dom0_mem=1024").dom0_mem.target,
            Some(MemAmount::Bytes(1 << 20))
        );
        for bad in [
            "dom0_mem=",
            "dom0_mem=0%",
            "dom0_mem=101%",
            "dom0_mem=300%",
            "dom0_mem=%",
            "dom0_mem=-5%",
            "dom0_mem=0x10%",
            "dom0_mem=min:",
            "dom0_mem=max:lots",
            "dom0_mem=1G,",
            "dom0_mem=,1G",
            "dom0_mem=-1G",
            "dom0_mem=99999999999T",
            "dom0_mem=middle:1G",
            "dom0_mem=512M,max:bad",
        ] {
            let (o, w) = parse_warn(bad);
            assert_eq!(o.dom0_mem, Dom0Mem::default(), "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(w[0].option, "dom0_mem");
        }
    }

    #[test]
    fn mem_amount_resolve() {
        assert_eq!(MemAmount::Bytes(5).resolve(100), 5);
        assert_eq!(MemAmount::Percent(50).resolve(1000), 500);
        assert_eq!(MemAmount::Percent(100).resolve(u64::MAX), u64::MAX);
        assert_eq!(
            MemAmount::Percent(33).resolve(u64::MAX),
            u64::MAX / 100 * 33 + 15 * 33 / 100
        );
        assert_eq!(MemAmount::Percent(1).resolve(0), 0);
    }

    #[test]
    fn dom0_max_vcpus() {
        assert_eq!(parse_ok("dom0_max_vcpus=4").dom0_max_vcpus, Some((4, 4)));
        assert_eq!(parse_ok("dom0_max_vcpus=2-8").dom0_max_vcpus, Some((2, 8)));
        assert_eq!(
            parse_ok("dom0_max_vcpus=2-").dom0_max_vcpus,
            Some((2, u32::MAX))
        );
        assert_eq!(parse_ok("dom0_max_vcpus=-8").dom0_max_vcpus, Some((1, 8)));
        assert_eq!(parse_ok("dom0_max_vcpus=3-3").dom0_max_vcpus, Some((3, 3)));
        for bad in [
            "dom0_max_vcpus=0",
            "dom0_max_vcpus=0-4",
            "dom0_max_vcpus=-0",
            "dom0_max_vcpus=8-2",
            "dom0_max_vcpus=-",
            "dom0_max_vcpus=a-b",
            "dom0_max_vcpus=1-2-3",
            "dom0_max_vcpus=4294967296",
            "dom0_max_vcpus",
        ] {
            let (o, _) = parse_warn(bad);
            assert_eq!(o.dom0_max_vcpus, None, "{bad}");
        }
    }

    #[test]
    fn sched_and_maxcpus() {
        let o = parse_ok("sched=credit2 maxcpus=0x10");
        assert_eq!(o.sched.as_deref(), Some("credit2"));
        assert_eq!(o.maxcpus, Some(16));
        assert_eq!(parse_ok("maxcpus=1").maxcpus, Some(1));
        for bad in [
            "sched=",
            "sched",
            "maxcpus=lots",
            "maxcpus=4294967296",
            "maxcpus",
        ] {
            let (o, _) = parse_warn(bad);
            assert_eq!(o.sched, None);
            assert_eq!(o.maxcpus, None);
        }
    }

    #[test]
    fn isa_debug_exit() {
        assert_eq!(parse_ok("isa_debug_exit").isa_debug_exit, Some(0xf4));
        assert_eq!(parse_ok("isa_debug_exit=0x501").isa_debug_exit, Some(0x501));
        assert_eq!(parse_ok("isa_debug_exit=244").isa_debug_exit, Some(244));
        assert_eq!(parse_ok("isa_debug_exit=on").isa_debug_exit, Some(0xf4));
        assert_eq!(parse_ok("isa_debug_exit=off").isa_debug_exit, None);
        assert_eq!(
            parse_ok("isa_debug_exit no-isa_debug_exit").isa_debug_exit,
            None
        );
        assert_eq!(parse_ok("no-isa_debug_exit=off").isa_debug_exit, Some(0xf4));
        for bad in [
            "isa_debug_exit=0",
            "isa_debug_exit=0x10000",
            "isa_debug_exit=port",
            "isa_debug_exit=",
            "no-isa_debug_exit=0xf4",
        ] {
            let (o, w) = parse_warn(bad);
            assert_eq!(o.isa_debug_exit, None, "{bad}");
            assert!(w[0].message.contains("isa_debug_exit"));
        }
    }

    #[test]
    fn crash_test() {
        for kind in CrashKind::ALL {
            let o = parse_ok(&format!("crash_test={}", kind.name()));
            assert_eq!(o.crash_test, Some(CrashTest { kind, cpu: 0 }));
        }
        assert_eq!(
            parse_ok("crash_test=page_fault@3").crash_test,
            Some(CrashTest {
                kind: CrashKind::PageFault,
                cpu: 3
            })
        );
        for bad in [
            "crash_test=",
            "crash_test",
            "crash_test=oops",
            "crash_test=panic@",
            "crash_test=panic@x",
            "crash_test=@1",
            "crash_test=panic@1@2",
            "crash_test=panic@99999999999",
            "no-crash_test",
        ] {
            let (o, _) = parse_warn(bad);
            assert_eq!(o.crash_test, None, "{bad}");
        }
    }

    #[test]
    fn full_line() {
        let line = cook(
            "xen.gz console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all \
             dom0_mem=1G,max:2G dom0_max_vcpus=1-4 sched=null noreboot maxcpus=4 \
             isa_debug_exit iommu=0 crash_test=breakpoint@1",
            "qemu",
        );
        let o = parse_ok(line);
        assert_eq!(o.console, vec![ConsoleKind::Com1]);
        assert_eq!(o.com1.baud, Some(115200));
        assert_eq!(o.dom0_mem.max, Some(MemAmount::Bytes(2 << 30)));
        assert_eq!(o.dom0_max_vcpus, Some((1, 4)));
        assert_eq!(o.sched.as_deref(), Some("null"));
        assert!(o.noreboot);
        assert_eq!(o.maxcpus, Some(4));
        assert_eq!(o.isa_debug_exit, Some(0xf4));
        assert_eq!(o.ignored, vec!["iommu=0".to_string()]);
        assert_eq!(o.crash_test.map(|c| c.cpu), Some(1));
    }

    #[test]
    fn table_names_unique_and_help_given() {
        for (i, p) in PARAMS.iter().enumerate() {
            assert!(!p.name.is_empty(), "entry {i} has no name");
            assert!(!p.help.trim().is_empty(), "{} has no help", p.name);
            for q in &PARAMS[i + 1..] {
                assert!(!names_equal(p.name, q.name), "{} twice", p.name);
            }
        }
    }

    /// The README's "Hypervisor options" section names every option of the
    /// table, as `` `name` ``, `` `name=`` or `` `name[``.
    #[test]
    fn readme_lists_every_option() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let start = readme
            .find("\n## Hypervisor options\n")
            .expect("README has a Hypervisor options section");
        let section = &readme[start + 1..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let missing: Vec<&str> = PARAMS
            .iter()
            .map(|p| p.name)
            .filter(|name| {
                !["`", "=", "["]
                    .iter()
                    .any(|end| section.contains(&format!("`{name}{end}")))
            })
            .collect();
        assert!(missing.is_empty(), "README misses {missing:?}");
    }

    /// Deterministic garbage never panics.
    #[test]
    fn fuzz_no_panic() {
        let pieces = [
            "=",
            "==",
            ",",
            "%",
            "@",
            "/",
            "-",
            "no-",
            "0x",
            "com1",
            "console",
            "dom0_mem",
            "loglvl",
            "min:",
            "max:",
            "crash_test",
            "isa_debug_exit",
            "dom0_max_vcpus",
            "1",
            "99999999999999999999999",
            "G",
            "ü",
            " ",
            "\t",
            "noreboot",
            "maxcpus",
            "sched",
            "8n1",
            "auto",
            "page-fault",
        ];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = parse(&s);
            let _ = parse(cook(&s, "qemu"));
            let _ = parse_size(&s);
        }
    }

    #[test]
    fn domu_specs_in_order_with_their_parameters() {
        let (opts, warnings) = parse(
            "dom0less domu=0+1,mem=32M,vcpus=2,weight=512,cap=50 domu=2 domu=3,period=10000,budget=3000,extratime=no",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(opts.dom0less);
        assert_eq!(opts.domus.len(), 3);
        assert_eq!(
            opts.domus[0],
            DomUSpec {
                kernel: 0,
                initrd: Some(1),
                memory: Some(32 << 20),
                vcpus: Some(2),
                weight: Some(512),
                cap: Some(50),
                ..DomUSpec::default()
            }
        );
        assert_eq!(opts.domus[1].kernel, 2);
        assert_eq!(opts.domus[1].initrd, None);
        assert_eq!(opts.domus[2].period_us, Some(10000));
        assert_eq!(opts.domus[2].budget_us, Some(3000));
        assert_eq!(opts.domus[2].extratime, Some(false));
        assert!(!parse("").0.dom0less);
        assert_eq!(opts.domus[0].shadow_memory, None);
        let (opts, warnings) = parse("domu=1,cpus=1 domu=2,cpus=0-2 domu=3,cpus=all");
        assert!(warnings.is_empty(), "{warnings:?}");
        let cpus: Vec<Option<u64>> = opts.domus.iter().map(|d| d.cpus).collect();
        assert_eq!(cpus, [Some(0b10), Some(0b111), None]);
        let (opts, _) = parse("domu=1,max_event_channels=4095");
        assert_eq!(opts.domus[0].max_event_channels, Some(4095));
        let (opts, warnings) = parse("domu=1,max_event_channels=0");
        assert!(opts.domus.is_empty() && !warnings.is_empty());
        let (opts, warnings) = parse("domu=1,shadow_memory=4");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(opts.domus[0].shadow_memory, Some(4));
    }

    #[test]
    fn bad_domu_specs_warn_and_add_nothing() {
        for bad in [
            "domu=",
            "domu=x",
            "domu=1+1",
            "domu=1,mem=12",
            "domu=1,vcpus=0",
            "domu=1,weight=0",
            "domu=1,weight=70000",
            "domu=1,shadow_memory=0",
            "domu=1,shadow_memory=lots",
            "domu=1,color=red",
            "domu=1,mem",
            "domu=1,cpus=64",
            "domu=1,cpus=2-1",
            "domu=1,cpus=x",
            "domu=99999",
            "dom0less=maybe",
        ] {
            let (opts, warnings) = parse(bad);
            assert!(opts.domus.is_empty(), "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}: {warnings:?}");
            assert!(!opts.dom0less, "{bad}");
        }
    }
}
