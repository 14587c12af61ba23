//! The boot CPU's path from the 64-bit entry to the end of the boot report.

use alloc::string::String;
use alloc::vec::Vec;
use core::panic::PanicInfo;

use rxen_core::cmdline::{self, CrashKind, Options};
use rxen_x86::bootinfo::{self, AcpiRoot, BootInfo, BootModule};
use rxen_x86::serial::SerialSettings;
use rxen_x86::{apic, console, cpu, log, printk, stop, svm};

use crate::{cpus, memory};

extern "C" {
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
}

/// The 64-bit entry, called by the boot stub with the loader's magic and
/// its info pointer.
#[no_mangle]
extern "C" fn rxen_start64(magic: u32, info: u32) -> ! {
    crate::heap::init_early();
    // Linker symbols delimiting the boot stack: addresses only.
    let (stack_low, stack_high) = (
        core::ptr::addr_of!(boot_stack_bottom) as u64,
        core::ptr::addr_of!(boot_stack_top) as u64,
    );
    cpu::register(0, cpu::current_apic_id(), stack_low, stack_high);
    cpu::init_tables();

    let boot = bootinfo::parse(magic, info);
    let cmdline_raw = boot.as_ref().map(|b| b.cmdline.clone()).unwrap_or_default();
    let loader = boot
        .as_ref()
        .map(|b| b.loader_name.clone())
        .unwrap_or_default();
    let (options, warnings) = cmdline::parse(cmdline::cook(&cmdline_raw, &loader));
    apply_console_options(&options);
    stop::configure(options.isa_debug_exit, options.noreboot);

    printk!(
        "rxen version {} (Xen {}.{} ABI)",
        env!("CARGO_PKG_VERSION"),
        rxen_abi::version::XEN_MAJOR,
        rxen_abi::version::XEN_MINOR
    );
    let boot = match boot {
        Ok(boot) => boot,
        Err(error) => {
            printk!("Cannot read the boot information: {error}");
            panic!("no usable boot information");
        }
    };
    printk!(
        "Bootloader: {} ({:?})",
        if loader.is_empty() {
            "unknown"
        } else {
            &loader
        },
        boot.protocol
    );
    printk!("Command line: {}", cmdline::cook(&cmdline_raw, &loader));
    CMDLINE.call_once(|| String::from(cmdline::cook(&cmdline_raw, &loader)));
    for warning in &warnings {
        printk!("Warning: {warning}");
    }
    for ignored in &options.ignored {
        log!(
            Debug,
            "Option '{ignored}' is accepted for Xen compatibility and ignored"
        );
    }
    for problem in &boot.problems {
        printk!("Boot information: {problem}");
    }

    let mut boot = boot;
    if let AcpiRoot::SearchBios = boot.acpi {
        if let Some(rsdp) = rxen_x86::acpi::find_rsdp_on_bios() {
            boot.acpi = AcpiRoot::Rsdp(rsdp);
        }
    }
    let map = memory::memory_map(&boot);
    let mut modules = check_modules(&boot, &map);
    if !options.dom0less {
        memory::relocate_boot_modules(&mut modules, &map, &boot.occupied);
    }
    let mut reserved = boot.occupied.clone();
    reserved.extend(modules.iter().map(|(_, m)| m.start..m.end));
    // dom0's 1:1 RAM is laid out before the frame allocator exists. The boot
    // page tables map the first 4 GiB, where the kernel module is read.
    if let Some((_, kernel)) = modules
        .first()
        .filter(|(_, k)| !options.dom0less && k.end <= 1 << 32)
    {
        // The loader's own data (`boot.occupied`: the multiboot information,
        // its strings and lists) was read into `boot` and is not looked at
        // again: GRUB puts it right after the modules, which may be in the
        // kernel window, so it does not count as taken there.
        let mut taken: Vec<_> = modules.iter().map(|(_, m)| m.start..m.end).collect();
        taken.push(memory::image_range());
        let kernel = crate::hvm::build::host_bytes((kernel.start, kernel.end));
        reserved.extend(crate::domains::plan_dom0(&options, &map, &taken, kernel));
    }
    if !memory::init_frames_and_heap(&map, reserved) {
        panic!("no memory for the hypervisor");
    }
    let Some(pml4) = memory::init_page_tables(&map) else {
        panic!("cannot build the hypervisor page tables");
    };

    rxen_x86::pic::disable_legacy_pic();
    apic::init_this_cpu();
    stop::set_apic_ready();
    match apic::calibrate() {
        Some(cal) => printk!(
            "Local APIC at {:#x}; TSC {}.{:03} MHz, APIC bus {}.{:03} MHz (calibrated against the PIT)",
            apic::base(),
            cal.tsc_khz / 1000,
            cal.tsc_khz % 1000,
            cal.apic_bus_khz / 1000,
            cal.apic_bus_khz % 1000
        ),
        None => {
            printk!("Warning: PIT calibration failed; assuming a 1 GHz TSC and APIC bus");
            apic::assume_tsc_khz(1_000_000);
        }
    }
    cpus::check_timer_interrupts();

    match svm::detect() {
        Ok(info) => {
            svm::enable_this_cpu_full();
            rxen_x86::xsave::enable_this_cpu();
            printk!(
                "HVM: SVM enabled (revision {}, {} ASIDs)",
                info.revision,
                info.asids
            );
            printk!("HVM: Hardware Assisted Paging (HAP) detected");
            if !info.nrips || !info.decode_assists {
                log!(Info, "HVM: no next-RIP save or decode assists: instruction lengths come from our decoder");
            }
            for line in rxen_x86::spec_ctrl::init(&options.spec_ctrl).report() {
                printk!("{line}");
            }
            rxen_x86::spec_ctrl::init_this_cpu();
        }
        Err(why) => {
            printk!("SVM not available: {why}. rxen needs AMD SVM with nested paging; halting.");
            stop::machine_crash();
        }
    }

    cpus::bring_up_aps(&boot, &options, pml4);
    crate::pci::init(boot.acpi);
    crate::acpi::init(boot.acpi);
    let uart = options
        .console
        .contains(&cmdline::ConsoleKind::Com1)
        .then_some(options.com1.io_base);
    crate::ioports::init(uart);
    printk!("Brought up {} CPUs", cpu::online_count());
    run_crash_test(&options, 0);

    crate::time::init();
    report_dom0(&options, &modules);
    crate::domains::run_boot_domains(&options, &modules, &boot.loader_name, map.total_usable())
}

static CMDLINE: spin::Once<String> = spin::Once::new();

/// The hypervisor command line as given (XENVER_commandline).
pub fn hypervisor_cmdline() -> &'static str {
    CMDLINE.get().map(String::as_str).unwrap_or("")
}

fn apply_console_options(options: &Options) {
    let com1 = &options.com1;
    let settings = SerialSettings {
        io_base: com1.io_base,
        baud: com1.baud,
        data_bits: com1.data_bits,
        parity: com1.parity,
        stop_bits: com1.stop_bits,
    };
    console::init_serial(&settings);
    console::set_serial_enabled(options.console.contains(&cmdline::ConsoleKind::Com1));
    console::set_thresholds(&options.log);
    console::set_guest_thresholds(&options.guest_log);
    console::set_tx_buffer(usize::try_from(options.serial_tx_buffer).unwrap_or(usize::MAX));
    console::set_console_to_ring(options.console_to_ring);
}

/// Keeps the modules that make sense and says why the others do not.
fn check_modules(boot: &BootInfo, map: &rxen_core::memmap::MemoryMap) -> Vec<(usize, BootModule)> {
    let image = memory::image_range();
    let mut kept = Vec::new();
    for (index, module) in boot.modules.iter().enumerate() {
        let cmdline = cmdline::cook(&module.cmdline, &boot.loader_name);
        let problem = if module.end <= module.start {
            Some("is empty")
        } else if module.start < image.end && image.start < module.end {
            Some("overlaps the hypervisor image")
        } else if !map
            .usable()
            .any(|r| r.start <= module.start && module.end <= r.end.next_multiple_of(4096))
        {
            Some("is not in RAM")
        } else {
            None
        };
        if let Some(problem) = problem {
            printk!(
                "Module {index}: {:#x} - {:#x} {problem}: ignored",
                module.start,
                module.end
            );
            continue;
        }
        printk!(
            "Module {index}: {:#x} - {:#x} ({} bytes) cmdline '{cmdline}'",
            module.start,
            module.end,
            module.end - module.start
        );
        // Kept raw: Xen hands module strings to dom0 as the loader gave them.
        kept.push((index, module.clone()));
    }
    kept
}

fn report_dom0(options: &Options, modules: &[(usize, BootModule)]) {
    if options.dom0less {
        return;
    }
    let Some((_, kernel)) = modules.first() else {
        printk!("No dom0 kernel module: give the dom0 kernel as the first module (QEMU -initrd, GRUB module2).");
        return;
    };
    printk!("Dom0 kernel: module 0, {} bytes", kernel.end - kernel.start);
    match modules.get(1) {
        Some((_, initrd)) => printk!("Dom0 initrd: {} bytes", initrd.end - initrd.start),
        None => printk!("Dom0 initrd: none"),
    }
}

/// Triggers the fault `crash_test=` asks for, if it is meant for `cpu_index`.
pub fn run_crash_test(options: &Options, cpu_index: usize) {
    let Some(test) = options.crash_test else {
        return;
    };
    if test.cpu as usize != cpu_index {
        return;
    }
    printk!("crash_test: triggering {:?} on CPU {cpu_index}", test.kind);
    // SAFETY: each arm faults on purpose, which is what the operator asked
    // for; the fault handler reports it and stops the machine.
    unsafe {
        match test.kind {
            CrashKind::PageFault => {
                core::ptr::read_volatile(0x10 as *const u64);
            }
            CrashKind::InvalidOpcode => core::arch::asm!("ud2"),
            CrashKind::DivideError => {
                core::arch::asm!("xor edx, edx", "xor eax, eax", "div ecx", in("ecx") 0, out("eax") _, out("edx") _)
            }
            CrashKind::GeneralProtection => {
                core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
            }
            CrashKind::Breakpoint => core::arch::asm!("int3"),
            CrashKind::Panic => panic!("crash_test: deliberate panic"),
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    stop::begin_crash();
    let p = console::print_emergency;
    p(format_args!("****************************************"));
    p(format_args!("Panic on CPU {}:", cpu::current_index()));
    p(format_args!("{}", info.message()));
    if let Some(location) = info.location() {
        p(format_args!("at {}:{}", location.file(), location.line()));
    }
    let rbp: u64;
    // SAFETY: reads the frame pointer register only.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rxen_x86::traps::print_stack_trace(rbp);
    p(format_args!("****************************************"));
    stop::machine_crash()
}
