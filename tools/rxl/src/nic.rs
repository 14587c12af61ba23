//! Network interface specifications as xl takes them
//! (`docs/man/xl-network-configuration.5.pod`): comma-separated `key=value` items
//! (`mac`, `bridge`, `ip`, `vifname`, `type`, `model`), with xl's defaults: a MAC
//! address in Xen's OUI `00:16:3e` with random low bits, the bridge `xenbr0`.

use std::fmt;

/// Xen's organisationally unique identifier, the first half of a generated MAC.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];
/// xl's default bridge.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// One network interface of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicSpec {
    /// `mac`: the guest's MAC address.
    pub mac: [u8; 6],
    /// `bridge`: the bridge in dom0 its backend interface joins.
    pub bridge: String,
    /// `ip`: the address(es) the guest is expected to use (written for the guest,
    /// as xl does; nothing is enforced).
    pub ip: Option<String>,
    /// `vifname`: the backend interface's name (default `vif<domid>.<devid>`).
    pub vifname: Option<String>,
}

impl NicSpec {
    /// The MAC address as xenstore holds it (`00:16:3e:12:34:56`).
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Display for NicSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mac={}, bridge={}", self.mac_text(), self.bridge)?;
        if let Some(ip) = &self.ip {
            write!(f, ", ip={ip}")?;
        }
        if let Some(name) = &self.vifname {
            write!(f, ", vifname={name}")?;
        }
        Ok(())
    }
}

/// Parses one interface specification (an item of `vif = [ ... ]`, or the
/// arguments of `network-attach` joined with commas); `random` gives the three
/// random bytes of a generated MAC.
pub fn parse_nic(spec: &str, random: impl FnOnce() -> [u8; 3]) -> Result<NicSpec, String> {
    let mut mac = None;
    let mut bridge = None;
    let mut ip = None;
    let mut vifname = None;
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("`{item}` in vif `{spec}` is not key=value"))?;
        match key {
            "mac" => mac = Some(parse_mac(value)?),
            "bridge" => bridge = Some(check_ifname("bridge", value)?),
            "ip" => ip = Some(value.to_string()),
            "vifname" => vifname = Some(check_ifname("vifname", value)?),
            "type" if value == "vif" => {}
            "type" => {
                return Err(format!(
                    "type={value}: rxl's interfaces are served by dom0's netback (vif)"
                ))
            }
            // Emulated NIC models are for HVM guests' device model.
            "model" => {}
            "script" | "backend" | "rate" | "gatewaydev" => {
                return Err(format!("{key}= is not supported by rxl (vif `{spec}`)"))
            }
            _ => return Err(format!("unknown vif parameter `{key}` in `{spec}`")),
        }
    }
    let mac = mac.unwrap_or_else(|| {
        let r = random();
        // libxl clears the top bit of the fourth byte.
        [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], r[0] & 0x7f, r[1], r[2]]
    });
    Ok(NicSpec {
        mac,
        bridge: bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
        ip,
        vifname,
    })
}

/// A unicast MAC address in `xx:xx:xx:xx:xx:xx` form.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("mac={text} is not a MAC address (xx:xx:xx:xx:xx:xx)");
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        return Err(format!("mac={text} is a multicast address"));
    }
    Ok(mac)
}

/// A Linux interface name: 1 to 15 characters, no `/`, no white space.
fn check_ifname(key: &str, name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 15
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{key}={name} is not an interface name"));
    }
    Ok(name.to_string())
}

/// Three random bytes (for a generated MAC).
pub fn random3() -> [u8; 3] {
    let mut b = [0u8; 3];
    crate::random_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xls_defaults_a_mac_in_xens_oui_and_xenbr0() {
        let n = parse_nic("", || [0xff, 0x12, 0x34]).unwrap();
        assert_eq!(n.mac, [0x00, 0x16, 0x3e, 0x7f, 0x12, 0x34]);
        assert_eq!(n.mac_text(), "00:16:3e:7f:12:34");
        assert_eq!(n.bridge, "xenbr0");
        let n = parse_nic(
            "mac=00:16:3E:01:02:03, bridge=br1, ip=10.0.0.2, vifname=web0, type=vif, model=e1000",
            || unreachable!("a MAC was given"),
        )
        .unwrap();
        assert_eq!(n.mac_text(), "00:16:3e:01:02:03");
        assert_eq!(
            (n.bridge.as_str(), n.ip.as_deref(), n.vifname.as_deref()),
            ("br1", Some("10.0.0.2"), Some("web0"))
        );
        // What is printed parses back to the same interface.
        assert_eq!(parse_nic(&n.to_string(), || [0; 3]).unwrap(), n);
    }

    #[test]
    fn bad_specs_say_why() {
        let e = |s: &str| parse_nic(s, || [0; 3]).unwrap_err();
        assert_eq!(
            e("mac=00:16:3e:01:02"),
            "mac=00:16:3e:01:02 is not a MAC address (xx:xx:xx:xx:xx:xx)"
        );
        assert_eq!(
            e("mac=00:16:3e:01:02:zz"),
            "mac=00:16:3e:01:02:zz is not a MAC address (xx:xx:xx:xx:xx:xx)"
        );
        assert_eq!(
            e("mac=01:00:5e:00:00:01"),
            "mac=01:00:5e:00:00:01 is a multicast address"
        );
        assert_eq!(
            e("bridge=a-very-long-bridge-name"),
            "bridge=a-very-long-bridge-name is not an interface name"
        );
        assert_eq!(e("bridge=../x"), "bridge=../x is not an interface name");
        assert_eq!(e("xenbr0"), "`xenbr0` in vif `xenbr0` is not key=value");
        assert_eq!(
            e("colour=red"),
            "unknown vif parameter `colour` in `colour=red`"
        );
        assert!(e("type=ioemu").contains("netback"));
        assert!(e("script=vif-nat").contains("not supported"));
    }
}
