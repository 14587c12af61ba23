//! The boot domains: dom0 from the first module (its initrd and further
//! modules from the ones no domU claims), unless `dom0less`, and one domU
//! per `domu=` option, each from its own modules, with its memory, vCPUs
//! and scheduling parameters. They are handed to the scheduling loop
//! ([`crate::schedule`]), which runs them until none is left.

use alloc::string::String;
use alloc::vec::Vec;

use rxen_core::cmdline::{DomUSpec, MemAmount, Options};
use rxen_core::sched::SchedParams;
use rxen_x86::bootinfo::BootModule;
use rxen_x86::{printk, stop};

use crate::hvm::build::BootSpec;
use crate::schedule::BootDomain;

/// A domU's memory when `mem=` is not given.
const DOMU_DEFAULT_MEMORY: u64 = 64 << 20;

/// Dom0's memory: `dom0_mem=` or, as Xen, all but 1/16 (at most 128 MiB)
/// of what the domUs leave (`domus_bytes`: their RAM and paging pools),
/// less dom0's own paging pool (as Xen's `dom0_compute_nr_pages`).
fn dom0_memory(options: &Options, host_bytes: u64, domus_bytes: u64, vcpus: u32) -> u64 {
    let free = (crate::memory::free_frame_count() * 4096).saturating_sub(domus_bytes);
    let free = free.saturating_sub(
        rxen_core::frame_alloc::default_paging_pages(vcpus, free).saturating_mul(4096),
    );
    let requested = options.dom0_mem.target.map(|amount| match amount {
        MemAmount::Bytes(bytes) => bytes,
        MemAmount::Percent(p) => host_bytes / 100 * p as u64,
    });
    let default = free - (free / 16).min(128 << 20);
    let wanted = requested.unwrap_or(default);
    // Leave room for page tables and control structures.
    let cap = free.saturating_sub(8 << 20);
    if wanted > cap {
        printk!(
            "dom0_mem: {} MiB requested, {} MiB available: using {} MiB",
            wanted >> 20,
            cap >> 20,
            cap >> 20
        );
    }
    (wanted.min(cap) & !0x1F_FFFF).max(2 << 20)
}

/// The scheduling parameters a `domu=` option asks for (the rest default).
fn sched_params(spec: &DomUSpec) -> SchedParams {
    let default = SchedParams::default();
    SchedParams {
        weight: spec.weight.unwrap_or(default.weight),
        cap: spec.cap.unwrap_or(default.cap),
        period_us: spec.period_us.unwrap_or(default.period_us),
        budget_us: spec.budget_us.unwrap_or(default.budget_us),
        extratime: spec.extratime.unwrap_or(default.extratime),
    }
}

/// The module numbered `index` (as the boot report numbers them).
fn module(modules: &[(usize, BootModule)], index: usize) -> Option<&BootModule> {
    modules.iter().find(|(i, _)| *i == index).map(|(_, m)| m)
}

/// Why a `domu=` option names no domain that can be built: the module it
/// names (kernel or initrd) is not there or not usable.
struct NoUsableModule(usize);

impl core::fmt::Display for NoUsableModule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "no usable module {}", self.0)
    }
}

/// A domU from its `domu=` option, or why it cannot be built.
fn domu_spec(
    spec: &DomUSpec,
    modules: &[(usize, BootModule)],
    loader: &str,
) -> Result<BootSpec, NoUsableModule> {
    let kernel = module(modules, spec.kernel).ok_or(NoUsableModule(spec.kernel))?;
    let initrd = match spec.initrd {
        Some(i) => Some(module(modules, i).ok_or(NoUsableModule(i))?),
        None => None,
    };
    Ok(BootSpec {
        kernel: (kernel.start, kernel.end),
        cmdline: String::from(rxen_core::cmdline::cook(&kernel.cmdline, loader)),
        modules: initrd
            .map(|m| ((m.start, m.end), m.cmdline.clone()))
            .into_iter()
            .collect(),
        memory_bytes: (spec.memory.unwrap_or(DOMU_DEFAULT_MEMORY) & !0xFFF).max(1 << 20),
        flags: 0,
        vcpus: spec.vcpus.unwrap_or(1),
        shadow_memory_mb: spec.shadow_memory,
        max_evtchn_port: spec
            .max_event_channels
            .unwrap_or(crate::hvm::build::DOMU_MAX_EVTCHN_PORT),
    })
}

/// Builds the boot domains and runs them until none is left, then stops
/// the machine.
pub fn run_boot_domains(
    options: &Options,
    modules: &[(usize, BootModule)],
    loader: &str,
    host_bytes: u64,
) -> ! {
    if !crate::hvm::vcpu::init_permission_maps() {
        printk!("No memory for the SVM permission maps");
        stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
    }
    let mut domains = Vec::new();
    let mut claimed = Vec::new();
    for (n, spec) in options.domus.iter().enumerate() {
        let id = n as u16 + 1;
        if spec.kernel == 0 && !options.dom0less {
            printk!("d{id}: domu= names module 0, the dom0 kernel (add dom0less to boot without dom0): skipped");
            continue;
        }
        match domu_spec(spec, modules, loader) {
            Ok(boot) => {
                claimed.push(spec.kernel);
                claimed.extend(spec.initrd);
                domains.push(BootDomain {
                    id,
                    spec: boot,
                    params: sched_params(spec),
                });
            }
            Err(why) => printk!("d{id}: domu={}: {why}: skipped", spec.kernel),
        }
    }
    if options.dom0less {
        printk!("dom0less: no dom0; {} domU(s)", domains.len());
    } else {
        let Some((_, kernel)) = modules.first() else {
            stop::machine_stop()
        };
        let domus_bytes: u64 = domains
            .iter()
            .map(|d| d.spec.memory_bytes + d.spec.paging_pages() * 4096)
            .sum();
        // dom0_max_vcpus=<min>-<max>: as many as allowed, at most one per CPU.
        let vcpus = options
            .dom0_max_vcpus
            .map(|(_, max)| max.min(rxen_x86::cpu::online_count()).max(1))
            .unwrap_or(1);
        let dom0 = BootSpec {
            kernel: (kernel.start, kernel.end),
            // The kernel's command line without the file name (as Xen cooks
            // it); the other modules' strings stay raw, file name included.
            cmdline: String::from(rxen_core::cmdline::cook(&kernel.cmdline, loader)),
            modules: modules
                .iter()
                .skip(1)
                .filter(|(i, _)| !claimed.contains(i))
                .map(|(_, m)| ((m.start, m.end), m.cmdline.clone()))
                .collect::<Vec<_>>(),
            memory_bytes: dom0_memory(options, host_bytes, domus_bytes, vcpus),
            flags: rxen_abi::start_info::SIF_PRIVILEGED | rxen_abi::start_info::SIF_INITDOMAIN,
            vcpus,
            shadow_memory_mb: None,
            // Xen 4.17 gives dom0 no limit but the ABI's.
            max_evtchn_port: u32::MAX,
        };
        domains.insert(
            0,
            BootDomain {
                id: 0,
                spec: dom0,
                params: SchedParams::default(),
            },
        );
    }
    let name = options.sched.as_deref().unwrap_or("credit");
    let nr_cpus = rxen_x86::cpu::online_count().max(1) as usize;
    let sched = rxen_core::sched::create(name, nr_cpus).unwrap_or_else(|| {
        printk!("sched={name}: unknown scheduler (credit, rtds): using credit");
        alloc::boxed::Box::new(rxen_core::sched::credit::Credit::new(nr_cpus))
    });
    crate::schedule::start(sched, domains)
}
