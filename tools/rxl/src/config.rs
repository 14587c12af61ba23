//! Domain configuration files in `xl.cfg` syntax (Xen's `docs/man/xl.cfg.5.pod.in`):
//! `key = value` lines, values being quoted strings, integers or `[ ... ]` lists of
//! strings (which may span lines), `#` comments. The keys rxl knows are parsed into
//! [`DomainConfig`]; others are kept as warnings; a bad value is an error naming the
//! file, the line and the reason, and nothing is created. `key=value` arguments on
//! the command line override the file, as with `xl create`.

use std::collections::BTreeMap;
use std::fmt;

use crate::disk::{parse_disk, DiskSpec};
use crate::nic::{parse_nic, random3, NicSpec};

/// A value of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `"text"` or `'text'`.
    Str(String),
    /// A decimal (or `0x` hex) integer.
    Int(u64),
    /// `[ "a", "b" ]`.
    List(Vec<String>),
}

/// A configuration error: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `command line`).
    pub file: String,
    /// Its line (1-based; 0: not a line's fault).
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file, self.reason)
        }
    }
}

/// What to do when the guest powers off, reboots or crashes (`on_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `destroy`.
    Destroy,
    /// `restart`.
    Restart,
    /// `preserve`.
    Preserve,
}

/// A PVH domain to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// `name`.
    pub name: String,
    /// `kernel`: an ELF image with a PVH entry point.
    pub kernel: String,
    /// `ramdisk`.
    pub ramdisk: Option<String>,
    /// `cmdline` (or `extra`).
    pub cmdline: String,
    /// `memory` in MiB.
    pub memory_mib: u64,
    /// `maxmem` in MiB (at least `memory`).
    pub maxmem_mib: u64,
    /// `vcpus`.
    pub vcpus: u32,
    /// `on_poweroff`, `on_reboot`, `on_crash`.
    pub on_poweroff: Action,
    /// As xl: `restart`.
    pub on_reboot: Action,
    /// As xl: `destroy`.
    pub on_crash: Action,
    /// `disk`: the disks dom0's blkback serves the guest.
    pub disks: Vec<DiskSpec>,
    /// `vif`: the network interfaces dom0's netback serves the guest.
    pub nics: Vec<NicSpec>,
    /// `cpus`: the vCPUs' hard affinity (CPU lists, checked against the
    /// machine when the domain is built).
    pub cpus: Option<Affinities>,
    /// `cpus_soft`: their soft affinity.
    pub cpus_soft: Option<Affinities>,
}

/// `cpus` or `cpus_soft` as xl.cfg gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affinities {
    /// `"2-3"`: one CPU list for every vCPU.
    All(String),
    /// `["2", "3"]`: vCPU n gets item n; the vCPUs past the list, every pCPU.
    PerVcpu(Vec<String>),
}

impl Affinities {
    /// The CPU list of vCPU `vcpu`.
    pub fn of(&self, vcpu: usize) -> &str {
        match self {
            Self::All(list) => list,
            Self::PerVcpu(lists) => lists.get(vcpu).map_or("all", String::as_str),
        }
    }
}

/// The keys rxl understands (others are warned about).
pub const KNOWN_KEYS: &[&str] = &[
    "name",
    "type",
    "kernel",
    "ramdisk",
    "cmdline",
    "extra",
    "memory",
    "maxmem",
    "vcpus",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "disk",
    "vif",
    "cpus",
    "cpus_soft",
];

/// Parses the text of a configuration file into its keys (the last setting of a
/// key wins) and the line each was set on.
pub fn parse(file: &str, text: &str) -> Result<BTreeMap<String, (usize, Value)>, ConfigError> {
    let err = |line: usize, reason: String| ConfigError {
        file: file.to_string(),
        line,
        reason,
    };
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, raw)) = lines.next() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (key, rest) = line
            .split_once('=')
            .ok_or_else(|| err(n, format!("expected `key = value`, found `{line}`")))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(n, format!("bad key `{key}`")));
        }
        let mut value = rest.trim().to_string();
        if value.starts_with('[') {
            // A list may go on over the next lines until its `]`.
            while !strip_comment(&value).trim_end().ends_with(']') {
                let (_, more) = lines
                    .next()
                    .ok_or_else(|| err(n, format!("list of `{key}` not closed")))?;
                value.push(' ');
                value.push_str(strip_comment(more).trim());
            }
        }
        let value =
            parse_value(value.trim()).map_err(|reason| err(n, format!("{key}: {reason}")))?;
        out.insert(key.to_string(), (n, value));
    }
    Ok(out)
}

/// The line without its `#` comment (outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn parse_value(text: &str) -> Result<Value, String> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| "list not closed".to_string())?;
        // Quoted items (which may hold commas), separated by commas.
        let mut items = Vec::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let q = rest
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'')
                .ok_or_else(|| format!("list items are quoted strings, found `{rest}`"))?;
            let end = rest[1..]
                .find(q)
                .ok_or_else(|| format!("string not closed: {rest}"))?;
            items.push(rest[1..1 + end].to_string());
            rest = rest[end + 2..].trim_start();
            rest = match rest.strip_prefix(',') {
                Some(after) => after.trim_start(),
                None if rest.is_empty() => rest,
                None => return Err(format!("expected `,` between list items, found `{rest}`")),
            };
        }
        return Ok(Value::List(items));
    }
    for q in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(q) {
            let inner = inner
                .strip_suffix(q)
                .ok_or_else(|| format!("string not closed: {text}"))?;
            return Ok(Value::Str(inner.to_string()));
        }
    }
    let number = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    number
        .map(Value::Int)
        .map_err(|_| format!("`{text}` is not a string, number or list"))
}

/// Parses a configuration file's text with `overrides` (`key=value` from the
/// command line) into a domain; unknown keys come back as warnings.
pub fn domain_config(
    file: &str,
    text: &str,
    overrides: &[String],
) -> Result<(DomainConfig, Vec<String>), ConfigError> {
    let mut keys = parse(file, text)?;
    for o in overrides {
        let set = parse("command line", o)?;
        keys.extend(set.into_iter().map(|(k, (_, v))| (k, (0, v))));
    }
    let err = |line: usize, reason: String| ConfigError {
        file: file.to_string(),
        line,
        reason,
    };
    let mut warnings = Vec::new();
    for (key, (line, _)) in &keys {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            warnings.push(format!("{file}:{line}: unknown key `{key}` ignored"));
        }
    }
    let string = |key: &str| -> Result<Option<String>, ConfigError> {
        match keys.get(key) {
            None => Ok(None),
            Some((_, Value::Str(s))) => Ok(Some(s.clone())),
            Some((line, _)) => Err(err(*line, format!("{key} must be a string"))),
        }
    };
    let number = |key: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        match keys.get(key) {
            None => Ok(None),
            Some((line, Value::Int(n))) if (min..=max).contains(n) => {
                let _ = line;
                Ok(Some(*n))
            }
            Some((line, Value::Int(n))) => Err(err(
                *line,
                format!("{key} = {n} is out of range ({min} to {max})"),
            )),
            Some((line, _)) => Err(err(*line, format!("{key} must be a number"))),
        }
    };
    let action = |key: &str, default: Action| -> Result<Action, ConfigError> {
        match string(key)?.as_deref() {
            None => Ok(default),
            Some("destroy") => Ok(Action::Destroy),
            Some("restart") => Ok(Action::Restart),
            Some("preserve") => Ok(Action::Preserve),
            Some(other) => Err(err(
                keys.get(key).map_or(0, |(l, _)| *l),
                format!("{key} = \"{other}\": destroy, restart or preserve"),
            )),
        }
    };
    if let Some(kind) = string("type")? {
        if kind != "pvh" {
            let line = keys.get("type").map_or(0, |(l, _)| *l);
            return Err(err(
                line,
                format!("type = \"{kind}\": rxl builds pvh guests"),
            ));
        }
    }
    let name = string("name")?.ok_or_else(|| err(0, "no `name`".to_string()))?;
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c == '/') {
        let line = keys.get("name").map_or(0, |(l, _)| *l);
        return Err(err(
            line,
            format!("name \"{name}\" is not a usable domain name"),
        ));
    }
    let kernel = string("kernel")?.ok_or_else(|| err(0, "no `kernel`".to_string()))?;
    let memory_mib = number("memory", 4, 1 << 20)?.unwrap_or(128);
    let maxmem_mib = number("maxmem", 4, 1 << 20)?.unwrap_or(memory_mib);
    if maxmem_mib < memory_mib {
        let line = keys.get("maxmem").map_or(0, |(l, _)| *l);
        return Err(err(
            line,
            format!("maxmem = {maxmem_mib} is below memory = {memory_mib}"),
        ));
    }
    let mut disks: Vec<DiskSpec> = Vec::new();
    match keys.get("disk") {
        None => {}
        Some((line, Value::List(items))) => {
            for item in items {
                let disk =
                    parse_disk(item).map_err(|reason| err(*line, format!("disk: {reason}")))?;
                if disks.iter().any(|d| d.devid() == disk.devid()) {
                    return Err(err(*line, format!("disk: vdev {} given twice", disk.vdev)));
                }
                disks.push(disk);
            }
        }
        Some((line, _)) => return Err(err(*line, "disk must be a list".to_string())),
    }
    let mut nics: Vec<NicSpec> = Vec::new();
    match keys.get("vif") {
        None => {}
        Some((line, Value::List(items))) => {
            for item in items {
                let nic = parse_nic(item, random3)
                    .map_err(|reason| err(*line, format!("vif: {reason}")))?;
                if nics.iter().any(|n| n.mac == nic.mac) {
                    return Err(err(
                        *line,
                        format!("vif: mac {} given twice", nic.mac_text()),
                    ));
                }
                nics.push(nic);
            }
        }
        Some((line, _)) => return Err(err(*line, "vif must be a list".to_string())),
    }
    // CPU lists, checked for syntax here (on a machine of the most pCPUs
    // rxen runs), for the machine's pCPUs when the domain is built.
    let affinities = |key: &str| -> Result<Option<Affinities>, ConfigError> {
        let check = |line: usize, list: &str| {
            crate::cpulist::parse(list, 64)
                .map(|_| ())
                .map_err(|reason| err(line, format!("{key}: {reason}")))
        };
        match keys.get(key) {
            None => Ok(None),
            Some((line, Value::Str(list))) => {
                check(*line, list)?;
                Ok(Some(Affinities::All(list.clone())))
            }
            Some((line, Value::List(lists))) => {
                for list in lists {
                    check(*line, list)?;
                }
                Ok(Some(Affinities::PerVcpu(lists.clone())))
            }
            Some((line, _)) => Err(err(
                *line,
                format!("{key} must be a CPU list or a list of them"),
            )),
        }
    };
    let (cpus, cpus_soft) = (affinities("cpus")?, affinities("cpus_soft")?);
    let cmdline = match string("cmdline")? {
        Some(c) => c,
        None => string("extra")?.unwrap_or_default(),
    };
    Ok((
        DomainConfig {
            name,
            kernel,
            ramdisk: string("ramdisk")?,
            cmdline,
            memory_mib,
            maxmem_mib,
            vcpus: number("vcpus", 1, 128)?.unwrap_or(1) as u32,
            on_poweroff: action("on_poweroff", Action::Destroy)?,
            on_reboot: action("on_reboot", Action::Restart)?,
            on_crash: action("on_crash", Action::Destroy)?,
            disks,
            nics,
            cpus,
            cpus_soft,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
# A PVH guest.
name = "guest-1"
type = "pvh"
kernel = "/boot/vmlinuz"   # comment after a value
ramdisk = '/boot/initrd.img'
extra = "console=hvc0 # not a comment"
memory = 256
vcpus = 2
on_crash = "preserve"
disk = [ 'format=raw, vdev=xvda, target=/a',
         'format=raw, vdev=xvdb, target=/b' ]
vif = [ 'mac=00:16:3e:00:00:01, bridge=xenbr1', '' ]
cpus = "1-2,^2"
cpus_soft = [ "0", "1-3" ]
"#;

    #[test]
    fn a_good_file_parses_with_xls_defaults() {
        let (c, warnings) = domain_config("g.cfg", GOOD, &[]).unwrap();
        assert_eq!(c.name, "guest-1");
        assert_eq!(c.kernel, "/boot/vmlinuz");
        assert_eq!(c.ramdisk.as_deref(), Some("/boot/initrd.img"));
        assert_eq!(c.cmdline, "console=hvc0 # not a comment");
        assert_eq!((c.memory_mib, c.maxmem_mib, c.vcpus), (256, 256, 2));
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (Action::Destroy, Action::Restart, Action::Preserve)
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // cpus: one list for every vCPU; cpus_soft: one per vCPU, then every pCPU.
        let (cpus, soft) = (c.cpus.as_ref().unwrap(), c.cpus_soft.as_ref().unwrap());
        assert_eq!((cpus.of(0), cpus.of(5)), ("1-2,^2", "1-2,^2"));
        assert_eq!((soft.of(0), soft.of(1), soft.of(2)), ("0", "1-3", "all"));
        let vdevs: Vec<(&str, &str)> = c
            .disks
            .iter()
            .map(|d| (d.vdev.as_str(), d.target.as_str()))
            .collect();
        assert_eq!(vdevs, [("xvda", "/a"), ("xvdb", "/b")]);
        assert_eq!(c.nics.len(), 2);
        assert_eq!(c.nics[0].mac_text(), "00:16:3e:00:00:01");
        assert_eq!(c.nics[0].bridge, "xenbr1");
        assert_eq!(
            (&c.nics[1].mac[..3], c.nics[1].bridge.as_str()),
            (&[0x00, 0x16, 0x3e][..], "xenbr0")
        );
        let keys = parse("g.cfg", GOOD).unwrap();
        assert_eq!(
            keys["disk"].1,
            Value::List(vec![
                "format=raw, vdev=xvda, target=/a".into(),
                "format=raw, vdev=xvdb, target=/b".into()
            ])
        );
    }

    #[test]
    fn command_line_settings_override_the_file() {
        let (c, _) = domain_config(
            "g.cfg",
            GOOD,
            &["memory=64".into(), "name=\"other\"".into()],
        )
        .unwrap();
        assert_eq!((c.memory_mib, c.name.as_str()), (64, "other"));
    }

    #[test]
    fn errors_name_the_file_line_and_reason() {
        let e = |text: &str| domain_config("bad.cfg", text, &[]).unwrap_err().to_string();
        let base = "name = \"a\"\nkernel = \"/k\"\n";
        assert_eq!(
            e(&format!("{base}memory = \"lots\"\n")),
            "bad.cfg:3: memory must be a number"
        );
        assert_eq!(
            e(&format!("{base}vcpus = 0\n")),
            "bad.cfg:3: vcpus = 0 is out of range (1 to 128)"
        );
        assert_eq!(
            e(&format!("{base}type = \"hvm\"\n")),
            "bad.cfg:3: type = \"hvm\": rxl builds pvh guests"
        );
        assert_eq!(
            e(&format!("{base}memory = 64\nmaxmem = 32\n")),
            "bad.cfg:4: maxmem = 32 is below memory = 64"
        );
        assert_eq!(
            e(&format!("{base}on_reboot = \"explode\"\n")),
            "bad.cfg:3: on_reboot = \"explode\": destroy, restart or preserve"
        );
        assert_eq!(e("name = \"a\"\n"), "bad.cfg: no `kernel`");
        assert_eq!(
            e(&format!("{base}cpus = \"3-1\"\n")),
            "bad.cfg:3: cpus: `3-1`: the range goes backwards"
        );
        assert_eq!(
            e(&format!("{base}cpus_soft = [ \"0\", \"64\" ]\n")),
            "bad.cfg:3: cpus_soft: pCPU 64 does not exist (this machine has 64)"
        );
        assert_eq!(
            e(&format!("{base}cpus = 2\n")),
            "bad.cfg:3: cpus must be a CPU list or a list of them"
        );
        assert_eq!(
            e("kernel = \"/k\"\nthis is not a setting\n"),
            "bad.cfg:2: expected `key = value`, found `this is not a setting`"
        );
        assert_eq!(
            e("name = \"a\nkernel = \"/k\"\n"),
            "bad.cfg:1: name: string not closed: \"a"
        );
        assert_eq!(
            e("name = \"a\"\nkernel = \"/k\"\ndisk = [ 'x',\n"),
            "bad.cfg:3: list of `disk` not closed"
        );
        assert_eq!(
            e(&format!(
                "{base}disk = [ 'vdev=xvda, target=/a', 'xvda,target=/b' ]\n"
            )),
            "bad.cfg:3: disk: target given twice"
        );
        assert_eq!(
            e(&format!(
                "{base}disk = [ 'vdev=xvda, target=/a', 'vdev=51712, target=/b' ]\n"
            )),
            "bad.cfg:3: disk: vdev 51712 given twice"
        );
        assert_eq!(
            e(&format!("{base}vif = [ 'mac=00:16:3e:0:0:1' ]\n")),
            "bad.cfg:3: vif: mac=00:16:3e:0:0:1 is not a MAC address (xx:xx:xx:xx:xx:xx)"
        );
        assert_eq!(
            e(&format!(
                "{base}vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3e:00:00:01' ]\n"
            )),
            "bad.cfg:3: vif: mac 00:16:3e:00:00:01 given twice"
        );
        assert_eq!(
            e(&format!("{base}disk = \"/a\"\n")),
            "bad.cfg:3: disk must be a list"
        );
        assert_eq!(
            e("name = \"a/b\"\nkernel = \"/k\"\n"),
            "bad.cfg:1: name \"a/b\" is not a usable domain name"
        );
    }
}
