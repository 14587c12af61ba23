//! Disk specifications as xl takes them (`docs/man/xl-disk-configuration.5.pod.in`):
//! comma-separated `key=value` items (`target=` last, since it takes the rest of the
//! string, commas too) or the positional form `target,format,vdev,access`, and the
//! virtual device names of `docs/misc/vbd-interface.txt` (`xvda`, `hdb`, `sdc3`,
//! `d0p1` or a number) turned into the `virtual-device` number a frontend reads.

use std::fmt;

/// One disk of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// `target`: the file (or device) in dom0 that backs the disk.
    pub target: String,
    /// `vdev`: the name the guest sees.
    pub vdev: String,
    /// `access`: false for `ro`/`r`.
    pub writable: bool,
    /// `devtype=cdrom` (or the `:cdrom` suffix of a vdev).
    pub cdrom: bool,
    /// `no-discard`: the backend offers no discard.
    pub discard: bool,
}

impl DiskSpec {
    /// The vdev's `virtual-device` number (also the device's id in xenstore paths).
    pub fn devid(&self) -> u32 {
        // Checked when the spec was parsed.
        vdev_number(&self.vdev).unwrap_or(0)
    }
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "format=raw, vdev={}, access={}, {}target={}",
            self.vdev,
            if self.writable { "rw" } else { "ro" },
            if self.cdrom { "devtype=cdrom, " } else { "" },
            self.target
        )
    }
}

/// Parses one disk specification (an item of `disk = [ ... ]`, or the arguments of
/// `block-attach` joined with commas).
pub fn parse_disk(spec: &str) -> Result<DiskSpec, String> {
    let mut target = None;
    let mut format = None;
    let mut vdev = None;
    let mut access = None;
    let mut devtype = None;
    let mut discard = true;
    let mut positional = 0;
    let mut rest = spec.trim();
    while !rest.is_empty() {
        let (item, after) = match rest.split_once(',') {
            // `target=` takes the rest of the string.
            _ if rest.trim_start().starts_with("target=") => (rest, ""),
            Some((item, after)) => (item, after),
            None => (rest, ""),
        };
        rest = after.trim_start();
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => {
                // Flags, then the positional parameters in xl's order.
                match item {
                    "discard" => discard = true,
                    "no-discard" => discard = false,
                    "cdrom" => devtype = Some("cdrom".to_string()),
                    _ => {
                        let key = match positional {
                            0 => "target",
                            1 => "format",
                            2 => "vdev",
                            3 => "access",
                            _ => return Err(format!("unexpected `{item}` in disk `{spec}`")),
                        };
                        positional += 1;
                        set(key, item, &mut target, &mut format, &mut vdev, &mut access)?;
                    }
                }
                continue;
            }
        };
        match key {
            "target" | "format" | "vdev" | "access" => {
                set(key, value, &mut target, &mut format, &mut vdev, &mut access)?;
            }
            "devtype" => devtype = Some(value.to_string()),
            "backendtype" if value == "phy" => {}
            "backendtype" => {
                return Err(format!(
                    "backendtype={value}: rxl's disks are served by dom0's blkback (phy)"
                ))
            }
            "script" | "backend" => {
                return Err(format!("{key}= is not supported by rxl (disk `{spec}`)"))
            }
            _ => return Err(format!("unknown disk parameter `{key}` in `{spec}`")),
        }
    }
    match format.as_deref() {
        None | Some("raw") => {}
        Some(other) => {
            return Err(format!(
                "format={other}: rxl serves raw images only (no qemu-based backend)"
            ))
        }
    }
    let vdev = vdev.ok_or_else(|| format!("disk `{spec}` has no vdev"))?;
    let (vdev, suffix_cdrom) = match vdev.strip_suffix(":cdrom") {
        Some(v) => (v.to_string(), true),
        None => (vdev, false),
    };
    vdev_number(&vdev).ok_or_else(|| format!("vdev={vdev} is not a virtual device name"))?;
    let writable = match access.as_deref() {
        None | Some("rw") | Some("w") => true,
        Some("ro") | Some("r") => false,
        Some(other) => return Err(format!("access={other}: ro or rw")),
    };
    let cdrom = match devtype.as_deref() {
        None | Some("disk") => suffix_cdrom,
        Some("cdrom") => true,
        Some(other) => return Err(format!("devtype={other}: disk or cdrom")),
    };
    let target = target.unwrap_or_default();
    if target.is_empty() && !cdrom {
        return Err(format!("disk `{spec}` has no target"));
    }
    Ok(DiskSpec {
        target,
        vdev,
        writable: writable && !cdrom,
        cdrom,
        discard,
    })
}

fn set(
    key: &str,
    value: &str,
    target: &mut Option<String>,
    format: &mut Option<String>,
    vdev: &mut Option<String>,
    access: &mut Option<String>,
) -> Result<(), String> {
    let slot = match key {
        "target" => target,
        "format" => format,
        "vdev" => vdev,
        _ => access,
    };
    if slot.is_some() {
        return Err(format!("{key} given twice"));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// The `virtual-device` number of a vdev name (`vbd-interface.txt`), or `None` for a
/// name that is not one.
pub fn vdev_number(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    // `d<disk>p<partition>` or `d<disk>`.
    if let Some(rest) = name.strip_prefix('d') {
        let (disk, part) = match rest.split_once('p') {
            Some((d, p)) => (d.parse().ok()?, p.parse().ok()?),
            None => (rest.parse().ok()?, 0),
        };
        return xvd_number(disk, part);
    }
    let (prefix, rest) = ["xvd", "hd", "sd"]
        .into_iter()
        .find_map(|p| name.strip_prefix(p).map(|r| (p, r)))?;
    let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &rest[letters.len()..];
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    // a..z, then aa..zz and so on (bijective base 26).
    let mut disk: u32 = 0;
    for b in letters.bytes() {
        disk = disk.checked_mul(26)?.checked_add(u32::from(b - b'a') + 1)?;
    }
    let disk = disk - 1;
    let part: u32 = if digits.is_empty() {
        0
    } else {
        if digits.starts_with('0') {
            return None;
        }
        digits.parse().ok()?
    };
    match prefix {
        "xvd" => xvd_number(disk, part),
        "hd" if disk < 4 && part < 64 => {
            let major = if disk < 2 { 3 } else { 22 };
            Some((major << 8) | ((disk % 2) << 6) | part)
        }
        "sd" if disk < 16 && part < 16 => Some((8 << 8) | (disk << 4) | part),
        _ => None,
    }
}

/// `xvd` numbering: the compact form for the first 16 disks and 15 partitions, the
/// extended form (bit 28) beyond.
fn xvd_number(disk: u32, part: u32) -> Option<u32> {
    if disk < 16 && part < 16 {
        Some((202 << 8) | (disk << 4) | part)
    } else if disk < (1 << 20) && part < 256 {
        Some((1 << 28) | (disk << 8) | part)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_names_number_as_vbd_interface_txt() {
        assert_eq!(vdev_number("xvda"), Some(51712));
        assert_eq!(vdev_number("xvdb"), Some(51728));
        assert_eq!(vdev_number("xvda1"), Some(51713));
        assert_eq!(vdev_number("xvdp15"), Some(51967));
        // The 17th disk and partitions past 15 take the extended form.
        assert_eq!(vdev_number("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(vdev_number("xvda16"), Some((1 << 28) | 16));
        assert_eq!(vdev_number("xvdaa"), Some((1 << 28) | (26 << 8)));
        assert_eq!(vdev_number("hda"), Some(768));
        assert_eq!(vdev_number("hdb1"), Some(768 + 64 + 1));
        assert_eq!(vdev_number("hdc"), Some(22 << 8));
        assert_eq!(vdev_number("sdb2"), Some((8 << 8) | 16 | 2));
        assert_eq!(vdev_number("d0p1"), Some(51713));
        assert_eq!(vdev_number("d20"), Some((1 << 28) | (20 << 8)));
        assert_eq!(vdev_number("51712"), Some(51712));
        for bad in [
            "", "xvd", "xvdA", "xvda0", "hde", "hda64", "sdq", "sda16", "vda", "d", "dxp1", "xvd1",
            "xvda999",
        ] {
            assert_eq!(vdev_number(bad), None, "{bad}");
        }
        // Letters that overflow are refused, not wrapped.
        assert_eq!(vdev_number("xvdzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn key_value_and_positional_specs_parse_with_xls_defaults() {
        let d = parse_disk("format=raw, vdev=xvda, access=rw, target=/images/a,b.img").unwrap();
        assert_eq!(
            d,
            DiskSpec {
                target: "/images/a,b.img".into(),
                vdev: "xvda".into(),
                writable: true,
                cdrom: false,
                discard: true,
            }
        );
        assert_eq!(d.devid(), 51712);
        let p = parse_disk("/images/b.img,raw,xvdb,ro").unwrap();
        assert_eq!(
            (p.target.as_str(), p.vdev.as_str()),
            ("/images/b.img", "xvdb")
        );
        assert!(!p.writable);
        let q = parse_disk("vdev=hdc, no-discard, target=/c").unwrap();
        assert!(q.writable && !q.discard);
        let c = parse_disk("vdev=xvdc:cdrom, target=/iso").unwrap();
        assert!(c.cdrom && !c.writable);
        // The spec printed is one that parses to the same disk.
        assert_eq!(parse_disk(&d.to_string()).unwrap(), d);
        assert_eq!(parse_disk(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn bad_specs_say_why() {
        let e = |s: &str| parse_disk(s).unwrap_err();
        assert_eq!(e("target=/a"), "disk `target=/a` has no vdev");
        assert_eq!(e("vdev=xvda"), "disk `vdev=xvda` has no target");
        assert_eq!(
            e("vdev=vda, target=/a"),
            "vdev=vda is not a virtual device name"
        );
        assert_eq!(e("vdev=xvda, access=x, target=/a"), "access=x: ro or rw");
        assert_eq!(
            e("format=qcow2, vdev=xvda, target=/a"),
            "format=qcow2: rxl serves raw images only (no qemu-based backend)"
        );
        assert_eq!(
            e("vdev=xvda, colour=red, target=/a"),
            "unknown disk parameter `colour` in `vdev=xvda, colour=red, target=/a`"
        );
        assert_eq!(
            e("/a,raw,xvda,rw,extra"),
            "unexpected `extra` in disk `/a,raw,xvda,rw,extra`"
        );
        assert_eq!(e("vdev=xvda, vdev=xvdb, target=/a"), "vdev given twice");
        assert!(e("backendtype=qdisk, vdev=xvda, target=/a").contains("blkback"));
    }
}
