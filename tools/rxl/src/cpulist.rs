//! CPU lists as xl writes and reads them (`xl vcpu-pin`, `cpus=` in xl.cfg,
//! the Affinity column of `xl vcpu-list`): `all`, or comma-separated pCPU
//! numbers and ranges `a-b`, where `^n` (or `^a-b`) takes pCPUs out again.
//! A mask has bit `n` for pCPU `n` (rxen runs at most 64).

use rxen_core::sched::CpuMask;

/// Parses a CPU list for a machine of `nr_cpus` pCPUs into a mask
/// ([`CpuMask::parse_list`], the hypervisor's own reading); a pCPU the
/// machine does not have is an error, as is a list that names none.
pub fn parse(text: &str, nr_cpus: u32) -> Result<u64, String> {
    CpuMask::parse_list(text, nr_cpus as usize)
        .map(CpuMask::bits)
        .map_err(|e| e.to_string())
}

/// A mask as xl prints it: `all` when it has every one of `nr_cpus` pCPUs,
/// else its numbers with runs as ranges (`0-2,5`); `none` for no pCPU.
pub fn format(mask: u64, nr_cpus: u32) -> String {
    let all = CpuMask::all(nr_cpus as usize).bits();
    if nr_cpus > 0 && mask & all == all {
        return "all".into();
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for cpu in CpuMask::from_bits(mask).iter() {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => runs.push((cpu, cpu)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|&(from, to)| {
            if from == to {
                from.to_string()
            } else {
                format!("{from}-{to}")
            }
        })
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_the_hypervisors_reading() {
        assert_eq!(parse("0-3,^1", 4), Ok(0b1101));
        assert_eq!(
            parse("4", 4),
            Err("pCPU 4 does not exist (this machine has 4)".to_string())
        );
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
