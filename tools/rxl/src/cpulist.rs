//! CPU lists as xl writes and reads them (`xl vcpu-pin`, `cpus=` in xl.cfg,
//! the Affinity column of `xl vcpu-list`): `all`, or comma-separated pCPU
//! numbers and ranges `a-b`, where `^n` (or `^a-b`) takes pCPUs out again.
//! A mask has bit `n` for pCPU `n` (rxen runs at most 64).

/// Parses a CPU list for a machine of `nr_cpus` pCPUs into a mask; a pCPU
/// the machine does not have is an error, as is a list that names none.
pub fn parse(text: &str, nr_cpus: u32) -> Result<u64, String> {
    let nr = nr_cpus.min(64);
    let all = if nr >= 64 { u64::MAX } else { (1u64 << nr) - 1 };
    let text = text.trim();
    if text == "all" {
        return Ok(all);
    }
    let mut mask = 0u64;
    for item in text.split(',').map(str::trim) {
        let (negate, range) = match item.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (cpu(a, nr)?, cpu(b, nr)?),
            None if range == "all" && !negate => (0, nr.saturating_sub(1)),
            None => {
                let n = cpu(range, nr)?;
                (n, n)
            }
        };
        if from > to {
            return Err(format!("`{item}`: the range goes backwards"));
        }
        let bits = (from..=to).fold(0u64, |m, c| m | 1 << c);
        if negate {
            mask &= !bits;
        } else {
            mask |= bits;
        }
    }
    if mask == 0 {
        return Err(format!("`{text}` names no pCPU"));
    }
    Ok(mask)
}

fn cpu(text: &str, nr: u32) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a pCPU number"))?;
    if n >= nr {
        return Err(format!("pCPU {n} does not exist (this machine has {nr})"));
    }
    Ok(n)
}

/// A mask as xl prints it: `all` when it has every one of `nr_cpus` pCPUs,
/// else its numbers with runs as ranges (`0-2,5`); `none` for no pCPU.
pub fn format(mask: u64, nr_cpus: u32) -> String {
    let nr = nr_cpus.min(64);
    let all = if nr >= 64 { u64::MAX } else { (1u64 << nr) - 1 };
    if mask & all == all && nr > 0 {
        return "all".into();
    }
    let mut parts = Vec::new();
    let mut c = 0;
    while c < 64 {
        if mask & (1 << c) == 0 {
            c += 1;
            continue;
        }
        let start = c;
        while c + 1 < 64 && mask & (1 << (c + 1)) != 0 {
            c += 1;
        }
        parts.push(if start == c {
            start.to_string()
        } else {
            format!("{start}-{c}")
        });
        c += 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_as_xl_reads_them() {
        assert_eq!(parse("all", 4), Ok(0b1111));
        assert_eq!(parse("1", 4), Ok(0b10));
        assert_eq!(parse("0-2", 4), Ok(0b111));
        assert_eq!(parse(" 0 , 3 ", 4), Ok(0b1001));
        assert_eq!(parse("0-3,^1", 4), Ok(0b1101));
        assert_eq!(parse("all,^0-1", 4), Ok(0b1100));
        assert_eq!(parse("all", 64), Ok(u64::MAX));
        assert_eq!(parse("63", 64), Ok(1 << 63));
        for bad in ["4", "2-1", "x", "", "1-", "^1", "0,^0", "-1", "99999999999"] {
            assert!(parse(bad, 4).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn masks_print_as_xl_prints_them() {
        assert_eq!(format(0b1111, 4), "all");
        assert_eq!(format(u64::MAX, 64), "all");
        assert_eq!(format(0b10, 4), "1");
        assert_eq!(format(0b1011, 8), "0-1,3");
        assert_eq!(format(0, 4), "none");
        assert_eq!(format(1 << 63, 64), "63");
        for mask in [0b1u64, 0b110, 0b1010_0111] {
            assert_eq!(parse(&format(mask, 8), 8), Ok(mask));
        }
    }
}
