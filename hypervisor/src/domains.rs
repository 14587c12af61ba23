//! The boot domains: dom0 from the first module (its initrd and further
//! modules from the ones no domU claims), unless `dom0less`, its RAM mapped
//! 1:1 where the boot left room ([`plan_dom0`]), and one domU
//! per `domu=` option, each from its own modules, with its memory, vCPUs
//! and scheduling parameters. They are handed to the scheduling loop
//! ([`crate::schedule`]), which runs them until none is left.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use rxen_core::cmdline::{DomUSpec, MemAmount, Options};
use rxen_core::dom0_memory::{Dom0Memory, DOM0_KERNEL_BASE};
use rxen_core::memmap::MemoryMap;
use rxen_core::sched::SchedParams;
use rxen_x86::bootinfo::BootModule;
use rxen_x86::{printk, stop};

use crate::hvm::build::BootSpec;
use crate::schedule::BootDomain;

/// A domU's memory when `mem=` is not given.
const DOMU_DEFAULT_MEMORY: u64 = 64 << 20;

/// Dom0's memory when it cannot be 1:1 (its RAM then comes from the frame
/// allocator): `dom0_mem=` or, as Xen, all but 1/16 (at most 128 MiB)
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

/// Where dom0's RAM is (mapped 1:1) and its memory map, laid out at boot
/// before the frame allocator exists ([`plan_dom0`]).
static DOM0_MEMORY: spin::Once<Dom0Memory> = spin::Once::new();

/// Bytes a boot domU takes: its RAM and its paging pool.
fn domu_bytes(spec: &DomUSpec) -> u64 {
    let ram = domu_ram(spec);
    let vcpus = spec.vcpus.unwrap_or(1);
    let pool = spec
        .shadow_memory
        .map(|mb| mb.saturating_mul(1 << 20))
        .unwrap_or_else(|| rxen_core::frame_alloc::default_paging_pages(vcpus, ram) * 4096);
    ram.saturating_add(pool)
}

/// A boot domU's RAM.
fn domu_ram(spec: &DomUSpec) -> u64 {
    (spec.memory.unwrap_or(DOMU_DEFAULT_MEMORY) & !0xFFF).max(1 << 20)
}

/// Lays out dom0's 1:1 memory in the host map `map`, around the `taken`
/// ranges (image, boot data, modules), before the frame allocator exists;
/// returns the ranges to keep out of the allocator. Its size is Xen's
/// `dom0_compute_nr_pages` ([`rxen_core::dom0_build::dom0_nr_bytes`]: the
/// `dom0_mem=` target, at least `min:`, at most `max:`; by default all but
/// 1/16, at most 128 MiB) of what the boot domUs, the hypervisor's heap and
/// frame bitmap and dom0's paging pool leave above 16 MiB. Nothing (and a
/// message) when dom0 cannot be laid out: it then gets allocated RAM.
pub fn plan_dom0(
    options: &Options,
    map: &MemoryMap,
    taken: &[Range<u64>],
    kernel: &[u8],
) -> Vec<Range<u64>> {
    if !kernel_loads_high(kernel) {
        printk!("dom0: its kernel loads below 16 MiB: RAM not mapped 1:1");
        return Vec::new();
    }
    let above: u64 = map
        .usable()
        .map(|r| r.end.saturating_sub(r.start.max(DOM0_KERNEL_BASE)))
        .sum();
    let domus: u64 = options.domus.iter().map(domu_bytes).sum();
    // The hypervisor's own needs; the reserve Xen keeps (1/16 of what is
    // left, at most 128 MiB) is `dom0_nr_bytes`'s default.
    let reserve =
        crate::memory::HEAP_SIZE + rxen_core::frame_alloc::bitmap_words(map) as u64 * 8 + (8 << 20);
    let vcpus = options.dom0_max_vcpus.map_or(1, |(_, max)| max.max(1));
    let available = above.saturating_sub(domus).saturating_sub(reserve);
    let available =
        available.saturating_sub(rxen_core::dom0_build::dom0_paging_bytes(vcpus, available));
    if let Some(wanted) = options.dom0_mem.target.map(|t| t.resolve(available)) {
        if wanted > available {
            printk!(
                "dom0_mem: {} MiB requested, {} MiB available: using {} MiB",
                wanted >> 20,
                available >> 20,
                available >> 20
            );
        }
    }
    let bytes = (rxen_core::dom0_build::dom0_nr_bytes(&options.dom0_mem, available) & !0x1F_FFFF)
        .max(2 << 20);
    match rxen_core::dom0_memory::layout(map, taken, bytes) {
        Ok(mut dom0) => {
            dom0.take_acpi_page();
            for r in &dom0.ram {
                printk!("dom0: RAM {:#x} - {:#x} (1:1)", r.start, r.end);
            }
            let keep = dom0.ram.clone();
            DOM0_MEMORY.call_once(|| dom0);
            keep
        }
        Err(why) => {
            printk!("dom0: cannot lay out its memory 1:1: {why}");
            Vec::new()
        }
    }
}

/// Whether the kernel `image` loads at [`DOM0_KERNEL_BASE`] or above, so
/// that its RAM there can be the host's: a Linux bzImage (its preferred load
/// address) or a PVH ELF whose segments start there. A small test kernel
/// linked at 1 MiB gets RAM from the frame allocator instead.
fn kernel_loads_high(image: &[u8]) -> bool {
    /// `pref_address` in the bzImage setup header.
    const PREF_ADDRESS_AT: usize = 0x258;
    if rxen_core::bzimage::is_bzimage(image) {
        return image
            .get(PREF_ADDRESS_AT..PREF_ADDRESS_AT + 8)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| u64::from_le_bytes(b) >= DOM0_KERNEL_BASE);
    }
    rxen_core::elf::parse_pvh(image).is_ok_and(|elf| elf.extent().0 >= DOM0_KERNEL_BASE)
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
        memory_bytes: domu_ram(spec),
        flags: 0,
        vcpus: spec.vcpus.unwrap_or(1),
        shadow_memory_mb: spec.shadow_memory,
        max_pages: None,
        max_evtchn_port: spec
            .max_event_channels
            .unwrap_or(crate::hvm::build::DOMU_MAX_EVTCHN_PORT),
        direct: None,
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
                    cpus: spec.cpus.map(rxen_core::sched::CpuMask::from_bits),
                    pin_each: false,
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
            memory_bytes: match DOM0_MEMORY.get() {
                Some(direct) => direct.bytes(),
                None => dom0_memory(options, host_bytes, domus_bytes, vcpus),
            },
            direct: DOM0_MEMORY.get().cloned(),
            flags: rxen_abi::start_info::SIF_PRIVILEGED | rxen_abi::start_info::SIF_INITDOMAIN,
            vcpus,
            shadow_memory_mb: None,
            // Xen 4.17 gives dom0 no limit but the ABI's.
            max_evtchn_port: u32::MAX,
            max_pages: Some(rxen_core::dom0_build::dom0_max_pages(
                &options.dom0_mem,
                host_bytes,
            )),
        };
        domains.insert(
            0,
            BootDomain {
                id: 0,
                spec: dom0,
                params: SchedParams::default(),
                cpus: None,
                pin_each: options.dom0_vcpus_pin,
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
