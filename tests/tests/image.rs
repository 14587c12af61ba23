//! The hypervisor image's layout: the code exits run is packed at the start of
//! `.text`, and the variables they touch at the start of `.bss`, as
//! `hypervisor/linker.ld` lists them (issue 12). Under QEMU every VMRUN and #VMEXIT
//! drops the emulated TLB, so each page an exit touches costs a refill; the lists
//! name functions and variables by their mangled names without the hash, so a renamed
//! one would silently fall back to its place among the rest: these tests say so.

use elf::endian::AnyEndian;
use elf::ElfBytes;
use rxen_tests::{image, workspace_root};

/// The image's symbols of ELF type `kinds` (name, address, size), by address, and
/// the address range of its section `section`.
fn symbols(kinds: &[u8], section: &str) -> (Vec<(String, u64, u64)>, core::ops::Range<u64>) {
    let data = std::fs::read(image()).expect("read the image");
    let file = ElfBytes::<AnyEndian>::minimal_parse(&data).expect("an ELF image");
    let header = file
        .section_header_by_name(section)
        .expect("section headers")
        .unwrap_or_else(|| panic!("no {section} section"));
    let (table, strings) = file
        .symbol_table()
        .expect("a symbol table")
        .expect("the image keeps its symbols");
    let mut out: Vec<(String, u64, u64)> = table
        .iter()
        .filter(|s| kinds.contains(&s.st_symtype()))
        .filter_map(|s| {
            let name = strings.get(s.st_name as usize).ok()?;
            Some((name.to_string(), s.st_value, s.st_size))
        })
        .collect();
    out.sort_by_key(|f| f.1);
    (out, header.sh_addr..header.sh_addr + header.sh_size)
}

/// The functions of `.text` (and the assembly labels, of no type and size).
fn functions() -> Vec<(String, u64, u64)> {
    symbols(&[elf::abi::STT_FUNC, elf::abi::STT_NOTYPE], ".text").0
}

/// Whether `name` matches the linker-script glob `pattern` (`*` and nothing else).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|skip| glob(rest, &name[head.len() + skip..]))
        }
    }
}

/// The patterns of `linker.ld`'s lines `*(<prefix><pattern>)` after the line that
/// starts with `from` up to the line `to`, as symbol-name globs.
fn listed(prefix: &str, from: &str, to: &str) -> Vec<String> {
    let script = std::fs::read_to_string(workspace_root().join("hypervisor/linker.ld"))
        .expect("read linker.ld");
    script
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with(from))
        .skip(1)
        .take_while(|l| *l != to)
        .filter_map(|l| {
            l.strip_prefix("*(")?
                .strip_prefix(prefix)?
                .strip_suffix(')')
        })
        .map(String::from)
        .collect()
}

/// The hot code list: the `*(.text.<pattern>)` lines after `*(.text.hot ...)`.
fn hot_patterns() -> Vec<String> {
    listed(".text.", "*(.text.hot ", "*(.text .text.*)")
}

/// Fails unless each of linker.ld's `patterns` names one of `symbols` (a `what`).
fn each_names_one(patterns: &[String], symbols: &[(String, u64, u64)], what: &str) {
    for pattern in patterns {
        assert!(
            symbols.iter().any(|(name, ..)| glob(pattern, name)),
            "linker.ld lists {pattern:?}, which is no {what} of the image (renamed?)"
        );
    }
}

/// Every pattern of the hot list names at least one function, and every function it
/// names lies before the first function the list does not name: the hot code is one
/// block at the start of `.text`, after the boot code.
#[test]
fn the_code_exits_run_is_packed_at_the_start() {
    let patterns = hot_patterns();
    assert!(patterns.len() >= 20, "hot list in linker.ld: {patterns:?}");
    let functions = functions();
    let hot = |name: &str| patterns.iter().any(|p| glob(p, name));
    each_names_one(&patterns, &functions, "function");
    // The block starts with the assembly the list puts first (`.text.hot.*`: the world
    // switch, the interrupt entry); from there on, every function with a size is a
    // listed one until the block ends, and none comes later.
    let address = |wanted: &str| {
        functions
            .iter()
            .find(|(name, ..)| name == wanted)
            .unwrap_or_else(|| panic!("no symbol {wanted}"))
            .1
    };
    let start = address("svm_vmrun");
    let block: Vec<_> = functions
        .iter()
        .skip_while(|(_, at, _)| *at < start)
        .take_while(|(name, _, size)| *size == 0 || hot(name))
        .collect();
    let end = block.last().map_or(0, |(_, at, size)| at + size);
    assert!(
        address("irq_stubs") < end,
        "the interrupt entry is not in the block"
    );
    let strays: Vec<_> = functions
        .iter()
        .filter(|(name, at, _)| hot(name) && !(start..end).contains(at))
        .map(|(name, at, _)| format!("{name} at {at:#x}"))
        .collect();
    assert!(
        strays.is_empty(),
        "hot functions outside the block {start:#x}..{end:#x}: {strays:?}"
    );
    // Every exit's own path (entry, handler, straight back) fits in the first 32 KiB
    // of the block (the scheduling loop itself starts there: its hot part comes first).
    for needle in [
        "svm_vmrun",
        "SvmVcpu3run",
        "5exits11handle_exit",
        "5exits13inject_upcall",
        "8schedule5serve",
        "8schedule7run_cpu",
    ] {
        let (name, at, _) = functions
            .iter()
            .find(|(name, ..)| name.contains(needle))
            .unwrap_or_else(|| panic!("no function {needle}"));
        assert!(
            *at < start + 0x8000,
            "{name} at {at:#x}, more than 32 KiB past the hot block's start {start:#x}"
        );
    }
    println!(
        "hot block: {start:#x}..{end:#x} ({} KiB, {} functions)",
        (end - start) / 1024,
        block.len()
    );
}

/// The jump-table list of `.rodata` names functions of the image: each pattern there
/// (`.rodata.<function>` or `.rodata..Lswitch.table.<function>`) matches a function,
/// so a renamed one is noticed as in `.text`.
#[test]
fn the_hot_jump_tables_name_functions_of_the_image() {
    let script = std::fs::read_to_string(workspace_root().join("hypervisor/linker.ld"))
        .expect("read linker.ld");
    let patterns: Vec<String> = script
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with(".rodata :"))
        .skip(1)
        .take_while(|l| *l != "*(.rodata .rodata.*)")
        .filter_map(|l| l.strip_prefix("*(")?.strip_suffix(')'))
        .flat_map(str::split_whitespace)
        .filter_map(|p| {
            let p = p.strip_prefix(".rodata.")?;
            Some(p.strip_prefix(".Lswitch.table.").unwrap_or(p).to_string())
        })
        .collect();
    assert!(
        patterns.len() >= 8,
        "hot jump tables in linker.ld: {patterns:?}"
    );
    each_names_one(&patterns, &functions(), "function");
}

#[test]
fn glob_matches_as_the_linker_does() {
    assert!(glob(
        "_ZN4rxen8schedule5serve17h*",
        "_ZN4rxen8schedule5serve17habcE"
    ));
    assert!(!glob(
        "_ZN4rxen8schedule5serve17h*",
        "_ZN4rxen8schedule6settle17habcE"
    ));
    assert!(glob("_ZN*_$LT$a$GT$4wake17h*", "_ZN80_$LT$a$GT$4wake17h1E"));
    assert!(!glob(
        "_ZN*_$LT$a$GT$4wake17h*",
        "_ZN80_$LT$a$GT$5sleep17h1E"
    ));
    assert!(glob("memcpy", "memcpy"));
    assert!(!glob("memcpy", "memcpy2"));
}

/// The variables exits touch come first in `.bss`, on its first two pages: every
/// pattern of `linker.ld`'s list names a variable of the image, and no variable the
/// list does not name comes before the last one it does.
#[test]
fn the_variables_exits_touch_are_packed_at_the_start_of_bss() {
    let patterns = listed(".bss.", ".bss :", "*(.bss .bss.*)");
    assert!(
        patterns.len() >= 20,
        "hot variables in linker.ld: {patterns:?}"
    );
    let (objects, bss) = symbols(&[elf::abi::STT_OBJECT], ".bss");
    let objects: Vec<_> = objects.into_iter().filter(|o| bss.contains(&o.1)).collect();
    let hot = |name: &str| patterns.iter().any(|p| glob(p, name));
    each_names_one(&patterns, &objects, "variable");
    let listed_end = objects
        .iter()
        .filter(|(name, ..)| hot(name))
        .map(|(_, at, size)| at + size)
        .max()
        .expect("hot variables");
    let strays: Vec<_> = objects
        .iter()
        .filter(|(name, at, _)| !hot(name) && *at < listed_end)
        .map(|(name, at, _)| format!("{name} at {at:#x}"))
        .collect();
    assert!(
        strays.is_empty(),
        "unlisted variables among the hot ones: {strays:?}"
    );
    assert!(
        listed_end <= bss.start + 0x2000,
        "the hot variables end at {listed_end:#x}, past the first two pages of .bss ({:#x})",
        bss.start
    );
}
