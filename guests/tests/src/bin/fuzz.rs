//! A hostile-guest fuzzer (issue 14): random hypercalls with random arguments, and
//! random contents in every page the guest shares with the hypervisor between them.
//! It checks only that the hypervisor answers every call with a value or a Xen errno
//! and is still sane at the end; the host-side test checks that the hypervisor and the
//! other domains survived it.
//!
//! Command line:
//! - `seed=<n>`: the PRNG seed (printed first, so that a run can be replayed);
//! - `calls=<n>`: how many hypercalls (default 10000; multicall entries not counted);
//! - `skip=<list>`: comma-separated `nr` or `nr.sub` (decimal) never issued, for known
//!   defects (e.g. `skip=18.0,32.10` skips console_io write and EVTCHNOP_reset);
//! - `domid=<n>`: this domain's id (for grants to itself; optional);
//! - `trace=<n>`: print every call from call number `n` on (replaying a crash);
//! - `progress=<n>`: a progress line every `n` calls (default calls / 10);
//! - `watch=1`: after every call, check that the page tables and the code are as
//!   before the first call (the first call that changed them is reported).
//!
//! What is drawn: every hypercall number 0..64 (and now and then a wild one), mostly
//! the ones Xen has with their known sub-ops; arguments from small integers, boundary
//! values (0, -1, 2^31, 2^32-1, 2^63, u64::MAX, ...), values the hypervisor handed out
//! earlier (ports, handles), and pointers: valid, misaligned, crossing the end of RAM,
//! unmapped or in the hypervisor's part of the address space, into the guest's own page
//! tables (saved and restored around the call), its shared-info page and other shared
//! pages (for output). Structure arguments are filled field by field from the same mix
//! and never placed where the hypervisor writes on its own (a pending bit or a time
//! written there before the call would make a field any pointer, into the fuzzer's own
//! code); in a multicall an entry's output never lands on a later entry. Between
//! calls it writes random values into the shared-info page, vcpu_info, its grant table
//! frames, FIFO control blocks and event arrays, the PV console ring and a read-only
//! grant mapping of its own page (Xen drops such writes; a fault would be caught and
//! counted).
//!
//! What it avoids, because it would legitimately end or wedge itself, not because the
//! hypervisor should refuse it: `SCHEDOP_shutdown`, `SCHEDOP_remote_shutdown` of
//! itself, `VCPUOP_down` of vCPU 0 (its only vCPU), `SCHEDOP_block` (it runs with
//! interrupts off and may have closed every port that could wake it; `SCHEDOP_poll`
//! is issued instead, always with a deadline close ahead), a watchdog that could fire
//! (each one armed is disarmed at once), and handing the hypervisor frame numbers or
//! pointers of its own code, stack or page tables to map things over or register as
//! shared areas (frame numbers always come from its sacrificial pages, frames above
//! RAM, or invalid ones), and giving back RAM it uses (decrease_reservation gets only
//! frames it never touches). Interrupts stay off throughout, so a random callback vector
//! is never delivered.
//!
//! At the end it prints the number of calls, the count of each return class, the
//! exceptions it caught, and the rate (`fuzz: done: ...`).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::sync::atomic::{AtomicU64, Ordering};

use rxen_guest::abi::grant_table as gt;
use rxen_guest::abi::xen::{DOMID_IO, DOMID_SELF, DOMID_XEN};
use rxen_guest::boot::{set_trap_hook, TrapFrame};
use rxen_guest::hypercall::{hypercall_via_page, page, vmmcall};
use rxen_guest::start_info::parse_u64;
use rxen_guest::xen::{hvm, hypercall as hc, E820_RAM};
use rxen_guest::{check, check_eq, error, println, StartInfo};

rxen_guest::entry!(main);

/// Low frames below the legacy hole that the fuzzer gives back to the hypervisor
/// (`XENMEM_decrease_reservation`) and never uses itself; populate may bring them
/// back.
const BALLOON: core::ops::Range<u64> = 0x20..0x30;

const PAGE: u64 = 4096;

#[repr(C, align(4096))]
struct Pages<const N: usize>([[u8; 4096]; N]);

/// Argument structures of one call (reset for every call).
static mut ARENA: Pages<4> = Pages([[0; 4096]; 4]);
/// Pages the fuzzer gives away: shared info, grant frames, FIFO blocks, vcpu_info, grant
/// mappings go here (or above RAM); nothing of the fuzzer's own lives in them.
static mut SACRIFICE: Pages<16> = Pages([[0; 4096]; 16]);

/// Linear addresses mapped by the page-directory entries that pointers into the
/// page tables may overwrite (1 GiB to 1.5 GiB): never drawn as a value.
const PT_HOLE: core::ops::Range<u64> = 0x4000_0000..0x6000_0000;

/// The one page where areas the hypervisor keeps writing on its own (a runstate
/// area, a vcpu_time area) are registered: nothing else of the fuzzer's is ever
/// placed there. (In the arena, the times written there at every vCPU switch
/// rewrote later calls' structures: a runstate time of 1.4 ms is the pointer
/// 0x155cc0, into the fuzzer's own stack.)
static mut LIVE: Pages<2> = Pages([[0; 4096]; 2]);

/// An address the guest's page tables do not map (beyond their 4 GiB).
const UNMAPPED: u64 = 0x10_0000_0000;

/// SCHEDOP_poll's argument: never pointed at otherwise, so that no output of an
/// earlier multicall entry can turn its deadline into 0 (wait forever).
static mut POLL: [u64; 3] = [0; 3];
/// The page tables, saved around a call that points the hypervisor into them.
static mut PT_SAVE: Pages<6> = Pages([[0; 4096]; 6]);
/// The page tables as they were before the first call (`watch=1`).
static mut PT_PRISTINE: Pages<6> = Pages([[0; 4096]; 6]);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __readonly_end: u8;
}

/// `watch=1`: one word of every 64 bytes of the code and read-only data, as at the
/// start (1 KiB per 64 KiB of image).
static mut CODE_SAMPLES: [u64; 4096] = [0; 4096];

/// The sampled words of the code and read-only data: (address, count).
fn code_samples() -> (u64, usize) {
    let start = &raw const __image_start as u64;
    let end = &raw const __readonly_end as u64;
    (start, (((end - start) / 64) as usize).min(4096))
}

/// Where a probed write resumes if it faults (0: no probe running).
static RESUME: AtomicU64 = AtomicU64::new(0);
/// Exceptions caught in probed writes, by vector (0..32).
static CAUGHT: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];

/// Claims a fault of a probed write: resume after it and count it.
fn trap_hook(frame: &mut TrapFrame) -> bool {
    let resume = RESUME.swap(0, Ordering::SeqCst);
    if resume == 0 || frame.vector >= 32 {
        return false;
    }
    CAUGHT[frame.vector as usize].fetch_add(1, Ordering::SeqCst);
    frame.rip = resume;
    true
}

/// Writes `value` (`size` bytes: 1, 2, 4 or 8) at `addr` with one `mov`; a fault
/// (#GP from a read-only grant mapping, #PF) is caught and counted. Returns whether
/// it faulted.
fn probe_write(addr: u64, value: u64, size: u32) -> bool {
    let before: u64 = CAUGHT.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    // SAFETY: the fuzzer only probes addresses that hold nothing of its own (shared
    // pages, sacrificial pages, its saved page tables, RAM's last page); a fault resumes
    // at label 2 through `trap_hook`, with every register the asm uses still valid.
    unsafe {
        macro_rules! probe {
            ($insn:literal, $reg:ident) => {
                core::arch::asm!(
                    "lea {tmp}, [rip + 2f]",
                    "mov [{resume}], {tmp}",
                    $insn,
                    "2:",
                    "mov qword ptr [{resume}], 0",
                    tmp = out(reg) _,
                    resume = in(reg) RESUME.as_ptr(),
                    a = in(reg) addr,
                    v = in($reg) value,
                )
            };
        }
        match size {
            1 => probe!("mov byte ptr [{a}], {v:l}", reg_abcd),
            2 => probe!("mov word ptr [{a}], {v:x}", reg),
            4 => probe!("mov dword ptr [{a}], {v:e}", reg),
            _ => probe!("mov qword ptr [{a}], {v}", reg),
        }
    }
    let after: u64 = CAUGHT.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    after != before
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability 1/n.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const BOUNDARY: [u64; 16] = [
    0,
    1,
    u64::MAX,
    1 << 31,
    (1 << 31) - 1,
    (1 << 32) - 1,
    1 << 32,
    1 << 63,
    (1 << 63) - 1,
    u64::MAX - 1,
    0xFFFF,
    0x7FF0,
    4095,
    4096,
    1 << 17,
    0xFFFF_FFFF_FFFF_F000,
];

/// Hypercalls Xen 4.17 has, with how many sub-ops each (0: none).
const KNOWN: [(u64, u32); 21] = [
    (hc::XEN_VERSION, 11),
    (hc::CONSOLE_IO, 2),
    (hc::SCHED_OP, 8),
    (hc::MEMORY_OP, 29),
    (hc::HVM_OP, 26),
    (hc::VCPU_OP, 14),
    (hc::EVENT_CHANNEL_OP, 15),
    (hc::GRANT_TABLE_OP, 13),
    (hc::SET_TIMER_OP, 0),
    (hc::MULTICALL, 0),
    (hc::VM_ASSIST, 0),
    (hc::PHYSDEV_OP, 31),
    (7, 0),  // platform_op
    (27, 0), // xsm_op
    (28, 0), // nmi_op
    (30, 0), // callback_op
    (35, 0), // sysctl
    (36, 0), // domctl
    (39, 0), // argo_op
    (41, 0), // dm_op
    (42, 0), // hypfs_op
];

/// Weight of each entry of [`KNOWN`] (the core ABI more often).
const WEIGHT: [u64; 21] = [
    3, 2, 4, 6, 5, 6, 10, 10, 2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
];

/// Where a structure argument is placed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// In the arena, aligned (read back after the call).
    Arena,
    /// In the arena, misaligned.
    Misaligned,
    /// Ending past the last byte of RAM.
    Crossing,
    /// Into the page tables (saved and restored around the call).
    PageTables,
    /// Into a sacrificial page.
    Sacrificial,
    /// Unmapped, non-canonical or the hypervisor's half: nothing is written.
    Bad,
}

/// One generated call.
#[derive(Clone, Copy)]
struct Call {
    nr: u64,
    sub: Option<u32>,
    args: [u64; 5],
    /// The structure argument, if any: where, its bytes (as built) and size.
    at: Option<(Place, u64)>,
    body: [u8; 64],
    size: usize,
}

/// Returned values in classes: 0, positive, -1..-199, other negative.
struct Stats {
    zero: u64,
    positive: u64,
    errno: [u64; 200],
    wild: u64,
}

struct Fuzzer {
    rng: Rng,
    skip: [(u64, Option<u32>); 32],
    nskip: usize,
    domid: Option<u16>,
    /// End of RAM (the last page is kept for batches and crossing pointers).
    ram_top: u64,
    /// Frames the fuzzer may give away.
    gfns: [u64; 40],
    ngfns: usize,
    /// The image's frames (not to be named), except the sacrificial ones.
    image: (u64, u64),
    sacrifice: (u64, u64),
    arena: (u64, u64),
    pml4: u64,
    /// Pages shared with the hypervisor (gfns), most recent first-in.
    shared: [u64; 24],
    nshared: usize,
    next_shared: usize,
    /// Small values the hypervisor returned (ports, handles, ids).
    recent: [u64; 32],
    next_recent: usize,
    /// The arena's fill level.
    arena_used: u64,
    /// A call pointed into the page tables: restore them after it.
    pt_dirty: bool,
    stats: Stats,
    writes: u64,
    write_faults: u64,
    regenerated: u64,
    trace_from: u64,
    index: u64,
    /// Where the read-only grant mapping of our own page is.
    ro_gfn: Option<u64>,
    /// Frames where grant-table frames were placed: the hypervisor is never
    /// pointed there (its output would be grant entries naming any frame of ours,
    /// which a later map of our own grant would alias), and only whole frame
    /// numbers from [`Self::gfn`] are scribbled into their frame words.
    grant_gfns: [u64; 64],
    ngrant: usize,
    /// The next structure goes into the arena (the fuzzer must know what the
    /// hypervisor read: where a grant frame went, a watchdog's timeout).
    force_arena: bool,
    /// A multicall's entries are being drawn.
    in_multicall: bool,
    /// Check after every call that the page tables are unchanged (`watch=1`).
    watch: bool,
}

fn put(body: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = body.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
fn put16(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &(v as u16).to_le_bytes())
}
fn put32(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &(v as u32).to_le_bytes())
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes())
}
fn get64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

impl Fuzzer {
    fn new(si: &StartInfo, seed: u64) -> Fuzzer {
        let ram_top = si
            .memmap()
            .iter()
            .filter(|e| e.type_ == E820_RAM)
            .map(|e| e.addr + e.size)
            .max()
            .unwrap_or(0);
        let image = (
            &raw const __image_start as u64 / PAGE,
            (&raw const __image_end as u64).div_ceil(PAGE),
        );
        let s = &raw const SACRIFICE as u64;
        let a = &raw const ARENA as u64;
        let pml4: u64;
        // SAFETY: reading CR3 has no side effects.
        unsafe { core::arch::asm!("mov {}, cr3", out(reg) pml4, options(nomem, nostack)) };
        let mut f = Fuzzer {
            rng: Rng(seed),
            skip: [(0, None); 32],
            nskip: 0,
            domid: si.arg_u64("domid").map(|d| d as u16),
            ram_top,
            gfns: [0; 40],
            ngfns: 0,
            image,
            sacrifice: (s / PAGE, s / PAGE + 16),
            arena: (a, a + 4 * PAGE),
            pml4: pml4 & !0xFFF,
            shared: [0; 24],
            nshared: 0,
            next_shared: 0,
            recent: [0; 32],
            next_recent: 0,
            arena_used: 0,
            pt_dirty: false,
            stats: Stats {
                zero: 0,
                positive: 0,
                errno: [0; 200],
                wild: 0,
            },
            writes: 0,
            write_faults: 0,
            regenerated: 0,
            trace_from: si.arg_u64("trace").unwrap_or(u64::MAX),
            index: 0,
            ro_gfn: None,
            grant_gfns: [0; 64],
            ngrant: 0,
            force_arena: false,
            in_multicall: false,
            watch: si.arg_u64("watch") == Some(1),
        };
        // Sacrificial frames: our own 16 pages, low RAM below the legacy hole (the
        // runtime keeps nothing there), and 16 frames above RAM.
        for g in f.sacrifice.0..f.sacrifice.1 {
            f.add_gfn(g);
        }
        for g in [0u64, 1, 2, 0x10, 0x11, 0x50, 0x9e, 0x9f] {
            f.add_gfn(g);
        }
        let above = ram_top / PAGE;
        for g in above..above + 16 {
            f.add_gfn(g);
        }
        if let Some(list) = si.arg_value("skip") {
            for item in list.split(',').filter(|s| !s.is_empty()) {
                let (nr, sub) = match item.split_once('.') {
                    Some((n, s)) => (parse_u64(n), parse_u64(s).map(|s| s as u32)),
                    None => (parse_u64(item), None),
                };
                match nr {
                    Some(nr) if f.nskip < f.skip.len() => {
                        f.skip[f.nskip] = (nr, sub);
                        f.nskip += 1;
                    }
                    _ => error!("bad skip= item {item:?}"),
                }
            }
        }
        f
    }

    fn is_grant_frame(&self, gfn: u64) -> bool {
        // Once the list is full, every frame might be one.
        self.ngrant == self.grant_gfns.len() || self.grant_gfns[..self.ngrant].contains(&gfn)
    }

    fn add_grant_frame(&mut self, gfn: u64) {
        if self.is_grant_frame(gfn) {
            return;
        }
        if self.ngrant < self.grant_gfns.len() {
            self.grant_gfns[self.ngrant] = gfn;
            self.ngrant += 1;
        }
    }

    /// `addr`, or an arena address if `addr` is in a grant-table frame.
    fn not_in_grant_frame(&mut self, addr: u64) -> u64 {
        if self.is_grant_frame(addr / PAGE) {
            self.arena.0 + (self.rng.below(2048) & !7)
        } else {
            addr
        }
    }

    /// The end of the RAM for crossing pointers, batches and frame lists: the end
    /// of RAM, except while a multicall is drawn, whose list (at most 512 bytes at
    /// the end of RAM, so that a wild count runs off RAM and not through the
    /// fuzzer's image) has the last page to itself: an entry's output must not
    /// rewrite a later entry into, say, SCHEDOP_shutdown.
    fn top(&self) -> u64 {
        if self.in_multicall {
            // Below the list by more than the largest output (2 KiB).
            self.ram_top - PAGE
        } else {
            self.ram_top
        }
    }

    fn add_gfn(&mut self, gfn: u64) {
        if self.ngfns < self.gfns.len() {
            self.gfns[self.ngfns] = gfn;
            self.ngfns += 1;
        }
    }

    fn skipped(&self, nr: u64, sub: Option<u32>) -> bool {
        self.skip[..self.nskip]
            .iter()
            .any(|&(n, s)| n == nr && (s.is_none() || s == sub))
    }

    fn remember(&mut self, v: u64) {
        self.recent[self.next_recent] = v;
        self.next_recent = (self.next_recent + 1) % self.recent.len();
    }

    fn share(&mut self, gfn: u64) {
        // Not the local APIC's page (writes there are IPIs, INIT to ourselves).
        if gfn >= (1 << 20) || gfn == 0xFEE00 || self.shared[..self.nshared].contains(&gfn) {
            return;
        }
        if self.nshared < self.shared.len() {
            self.shared[self.nshared] = gfn;
            self.nshared += 1;
        } else {
            self.shared[self.next_shared] = gfn;
            self.next_shared = (self.next_shared + 1) % self.shared.len();
        }
    }

    /// Replaces a value that would name the fuzzer's own image (as a frame number
    /// or as an address) by a sacrificial frame.
    fn guard(&mut self, v: u64) -> u64 {
        let in_image_frames = v >= self.image.0 && v < self.image.1;
        let in_image_bytes = v >= self.image.0 * PAGE && v < self.image.1 * PAGE;
        let sacrificial = (v >= self.sacrifice.0 && v < self.sacrifice.1)
            || (v >= self.sacrifice.0 * PAGE && v < self.sacrifice.1 * PAGE)
            || (v >= self.arena.0 && v < self.arena.1);
        let in_pt_hole = PT_HOLE.contains(&v);
        if (in_image_frames || in_image_bytes) && !sacrificial || in_pt_hole {
            self.gfn()
        } else {
            v
        }
    }

    /// A number from the mix: small, boundary, recent, random, pointer.
    fn val(&mut self) -> u64 {
        let v = match self.rng.below(20) {
            0..=5 => self.rng.below(17),
            6..=8 => self.rng.pick(&BOUNDARY),
            9..=10 => self.rng.pick(&self.recent),
            11 => self.rng.next(),
            12 => self.rng.next() & 0xFFFF_FFFF,
            13..=14 => self.rng.below(256),
            15 => self
                .rng
                .pick(&BOUNDARY)
                .wrapping_add(self.rng.below(3))
                .wrapping_sub(1),
            _ => self.ptr(false),
        };
        self.guard(v)
    }

    fn gfn(&mut self) -> u64 {
        if self.rng.one_in(5) {
            let top = self.ram_top / PAGE;
            self.rng.pick(&[
                u64::MAX,
                1 << 40,
                1 << 52,
                (1 << 32) - 1,
                0xFFFFF,
                0x100000,
                top + 0x100000,
                0xFEE00,
                0xFEFFF,
            ])
        } else {
            let i = self.rng.below(self.ngfns as u64) as usize;
            self.gfns[i]
        }
    }

    fn port(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=2 => self.rng.pick(&self.recent),
            3..=6 => self.rng.below(64),
            7..=8 => self.rng.pick(&[
                1023,
                1024,
                4095,
                4096,
                4097,
                (1 << 17) - 1,
                1 << 17,
                1 << 31,
                u32::MAX as u64,
            ]),
            _ => self.rng.next() & 0xFFFF_FFFF,
        }
    }

    fn domid(&mut self) -> u64 {
        let own = self.domid.map_or(u64::from(DOMID_SELF), u64::from);
        match self.rng.below(12) {
            0..=3 => u64::from(DOMID_SELF),
            4..=5 => own,
            6..=8 => self.rng.below(6),
            9 => self.rng.pick(&[
                u64::from(DOMID_IO),
                u64::from(DOMID_XEN),
                0x7FF3,
                0x7FF4,
                0x7FFF,
                0x7FEF,
                0xFFFF,
            ]),
            _ => self.rng.next() & 0xFFFF,
        }
    }

    fn vcpu(&mut self) -> u64 {
        match self.rng.below(8) {
            0..=3 => 0,
            4 => 1,
            5 => self
                .rng
                .pick(&[31, 32, 127, 128, 4096, u32::MAX as u64, u64::MAX]),
            _ => self.rng.next() & 0xFFFF_FFFF,
        }
    }

    /// A pointer for an area the hypervisor keeps writing later: in [`LIVE`]'s first
    /// page, now and then misaligned or crossing into its second, or a bad one.
    fn live_ptr(&mut self) -> u64 {
        let live = &raw const LIVE as u64;
        match self.rng.below(8) {
            // Not 0: page 0 is mapped, and the times written there would lie
            // under structures read from address 0 later.
            0 => self
                .rng
                .pick(&[UNMAPPED, u64::MAX - 7, 0xFFFF_8000_0000_0000, 1 << 32]),
            1 => live + self.rng.below(PAGE),
            _ => live + (self.rng.below(PAGE - 64) & !7),
        }
    }

    /// A sacrificial page the hypervisor does not write on its own (none shared
    /// with it): structures placed there stay as written until the call.
    fn quiet_sacrificial(&mut self) -> Option<u64> {
        let g = self.sacrifice.0 + self.rng.below(16);
        (!self.shared[..self.nshared].contains(&g) && !self.is_grant_frame(g)).then_some(g)
    }

    /// A pointer of any class (`safe`: no page tables).
    fn ptr(&mut self, safe: bool) -> u64 {
        // Offsets leave room for 2 KiB of output in the same page or area.
        let a = self.arena.0 + self.rng.below(3 * PAGE);
        let class = self.rng.below(16);
        if self.in_multicall && class <= 7 {
            // A multicall's entries keep their structures in the arena and their
            // batches just below the last page: an earlier entry's output must not
            // land on a later entry's structure (seen: frame numbers written over
            // our code by a two-entry multicall, most likely an output of the
            // first that became the frame-list pointer of the second).
            return match self.quiet_sacrificial() {
                Some(g) => g * PAGE + (self.rng.below(2048) & !self.rng.pick(&[0, 7])),
                None => UNMAPPED,
            };
        }
        match class {
            0..=5 => a & !7,
            6 => a,
            7 => self.top() - 1 - self.rng.below(64),
            8 => self.rng.pick(&[
                0,
                u64::MAX,
                1 << 32,
                (1 << 32) + 0x1000,
                0x0000_8000_0000_0000,
                0xFFFF_8000_0000_0000,
                0xFFFF_8300_0000_0000,
                0xFFFF_FFFF_FFFF_F000,
                0xFFFF_FFFF_8000_0000,
                0xFEE0_0000,
                0xFEFF_F000,
                0xFC000,
                self.ram_top,
            ]),
            9 | 10 if !safe => self.pt_ptr(),
            11..=12 if self.nshared > 0 => {
                let g = self.rng.pick(&self.shared[..self.nshared]);
                let a = g * PAGE + (self.rng.below(2048) & !self.rng.pick(&[0, 7]));
                self.not_in_grant_frame(a)
            }
            _ => {
                let g = self.sacrifice.0 + self.rng.below(16);
                let a = g * PAGE + (self.rng.below(2048) & !7);
                self.not_in_grant_frame(a)
            }
        }
    }

    /// A pointer into the page tables: the first half of the second page directory,
    /// whose entries map [`PT_HOLE`], a range no other pointer or value the fuzzer
    /// draws lies in (the junk written there would otherwise make the hypervisor's
    /// walk of another argument land anywhere in the fuzzer, as the CPU's would);
    /// below offset 2048 so that 2 KiB of output stays in the page.
    fn pt_ptr(&mut self) -> u64 {
        if !self.pt_dirty {
            // Saved before anything of this call is written there.
            self.save_page_tables();
            self.pt_dirty = true;
        }
        self.pml4 + 3 * PAGE + self.rng.below(2048)
    }

    /// Where a structure of `size` bytes goes, and its address.
    fn place(&mut self, size: usize) -> (Place, u64) {
        let size = size as u64;
        let roll = if core::mem::take(&mut self.force_arena) {
            0
        } else {
            self.rng.below(20)
        };
        // Not in a page the hypervisor writes on its own (shared info, vcpu_info,
        // FIFO pages, a runstate area): a pending bit or a time written there
        // between our write and the call can turn a field into any pointer. In a
        // multicall only the arena (see `ptr`).
        let place = match roll {
            0..=11 => Place::Arena,
            12 => Place::Misaligned,
            _ if self.in_multicall => Place::Arena,
            13 => Place::Crossing,
            14 => Place::PageTables,
            16 => Place::Sacrificial,
            17 => Place::Bad,
            _ => Place::Arena,
        };
        let addr = match place {
            Place::Arena | Place::Misaligned => {
                let at = self.arena.0 + self.arena_used;
                self.arena_used = (self.arena_used + size + 64).next_multiple_of(64);
                if self.arena_used > 3 * PAGE {
                    self.arena_used = 0;
                }
                if place == Place::Misaligned {
                    at + 1 + self.rng.below(7)
                } else {
                    at
                }
            }
            Place::Crossing => self.top() - 1 - self.rng.below(size.max(1)),
            Place::PageTables => self.pt_ptr(),
            Place::Sacrificial => match self.quiet_sacrificial() {
                Some(g) => g * PAGE + self.rng.below(2048),
                None => return (Place::Bad, UNMAPPED),
            },
            // Not 0: the guest maps page 0, and what earlier calls wrote there
            // would be read as the structure (seen: a runstate area pointer
            // into the fuzzer's code).
            Place::Bad => self.rng.pick(&[
                UNMAPPED,
                1 << 32,
                0xFFFF_8000_0000_0000,
                0x0000_8000_0000_0000,
                u64::MAX - 7,
            ]),
        };
        (place, addr)
    }

    /// A structure argument of `size` bytes built by `fill`.
    fn structure(
        &mut self,
        call: &mut Call,
        size: usize,
        fill: impl FnOnce(&mut Self, &mut [u8]),
    ) -> u64 {
        let mut body = [0u8; 64];
        // Unnamed fields get values from the mix, guarded as frames.
        for off in (0..size.min(64)).step_by(8) {
            let v = if self.rng.one_in(2) { 0 } else { self.val() };
            put(&mut body, off, &v.to_le_bytes()[..(size - off).min(8)]);
        }
        fill(self, &mut body[..size.min(64)]);
        let (place, addr) = self.place(size);
        call.at = Some((place, addr));
        call.body = body;
        call.size = size.min(64);
        addr
    }

    /// Writes a call's structure where it goes.
    fn emit(&mut self, call: &Call) {
        let Some((place, addr)) = call.at else {
            return;
        };
        let bytes = &call.body[..call.size];
        match place {
            Place::Bad => {}
            Place::Arena | Place::Misaligned => {
                // SAFETY: inside the arena (the arena keeps a page of slack).
                unsafe {
                    core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len())
                };
            }
            Place::PageTables => {
                // SAFETY: inside the page-table pages, where nothing in use lies
                // (see `pt_ptr`); restored after the call.
                unsafe {
                    core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len())
                };
            }
            Place::Crossing | Place::Sacrificial => {
                for (i, &b) in bytes.iter().enumerate() {
                    let at = addr + i as u64;
                    if place == Place::Crossing && at >= self.top() {
                        break;
                    }
                    if probe_write(at, u64::from(b), 1) {
                        self.write_faults += 1;
                    }
                }
            }
        }
    }

    /// `watch=1`: the page tables must be as before the first call.
    fn check_watch(&mut self, call: &Call, ret: i64) {
        // SAFETY: the six page-table pages and our pristine copy of them.
        let (now, pristine) = unsafe {
            (
                core::slice::from_raw_parts(self.pml4 as *const u64, 6 * 512),
                core::slice::from_raw_parts((&raw const PT_PRISTINE) as *const u64, 6 * 512),
            )
        };
        // The CPU sets Accessed and Dirty (bits 5 and 6) as it walks.
        const AD: u64 = 0x60;
        let (code, n) = code_samples();
        let samples = (&raw const CODE_SAMPLES).cast::<u64>();
        for i in 0..n {
            let at = code + 64 * i as u64;
            // SAFETY: inside our code and read-only data; our own samples
            // (n is at most their number), written once before the first call.
            let (word, was) = unsafe {
                (
                    core::ptr::read_volatile(at as *const u64),
                    samples.add(i).read(),
                )
            };
            if word != was {
                // Plain integers only: the formatting code may be what was overwritten.
                let a = call.args;
                let (place, addr) = call.at.map_or((99, 0), |(p, a)| (p as u32, a));
                let b = |i: usize| get64(&call.body, i * 8);
                error!(
                    "call {} nr {} sub {} args {:#x} {:#x} {:#x} {:#x} {:#x} place {} at {:#x} body {:#x} {:#x} {:#x} {:#x} returned {}: code word at {:#x} is {:#x}, was {:#x}",
                    self.index,
                    call.nr,
                    call.sub.unwrap_or(u32::MAX),
                    a[0], a[1], a[2], a[3], a[4],
                    place, addr, b(0), b(1), b(2), b(3),
                    ret, at, word, was
                );
            }
        }
        if let Some(i) = (0..now.len()).find(|&i| (now[i] ^ pristine[i]) & !AD != 0) {
            error!(
                "call {}: nr {} sub {:?} args {:x?} struct {:x?} {:x?} returned {ret}: page-table word at {:#x} is {:#x}, was {:#x}",
                self.index,
                call.nr,
                call.sub,
                call.args,
                call.at,
                &call.body[..call.size],
                self.pml4 + 8 * i as u64,
                now[i],
                pristine[i]
            );
        }
    }

    fn save_page_tables(&mut self) {
        // SAFETY: the six page-table pages (PML4, PDPT, 4 PDs) follow each other from
        // CR3, as the runtime lays them out; PT_SAVE is ours.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.pml4 as *const u8,
                (&raw mut PT_SAVE) as *mut u8,
                6 * PAGE as usize,
            )
        };
    }

    fn restore_page_tables(&mut self) {
        // SAFETY: as in `save_page_tables`; the CR3 reload flushes stale translations.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (&raw const PT_SAVE) as *const u8,
                self.pml4 as *mut u8,
                6 * PAGE as usize,
            );
            core::arch::asm!("mov cr3, {}", in(reg) self.pml4, options(nostack));
        }
    }

    /// Draws a hypercall (never a skipped one, nor one that ends the fuzzer).
    fn generate(&mut self, nested: bool) -> Call {
        for _ in 0..100 {
            let call = self.draw(nested);
            if !self.skipped(call.nr, call.sub) {
                return call;
            }
            self.regenerated += 1;
        }
        // Everything drawn is skipped: an unknown hypercall.
        self.empty(0xFFFF)
    }

    fn empty(&self, nr: u64) -> Call {
        Call {
            nr,
            sub: None,
            args: [0; 5],
            at: None,
            body: [0; 64],
            size: 0,
        }
    }

    fn draw(&mut self, nested: bool) -> Call {
        let roll = self.rng.below(100);
        let (nr, subs) = if roll < 12 {
            (self.rng.below(64), 0)
        } else if roll < 13 {
            (self.rng.pick(&[64, 127, 128, 0xFFFF, 1 << 32, u64::MAX]), 0)
        } else {
            let total: u64 = WEIGHT.iter().sum();
            let mut w = self.rng.below(total);
            let mut i = 0;
            while w >= WEIGHT[i] {
                w -= WEIGHT[i];
                i += 1;
            }
            KNOWN[i]
        };
        let mut call = self.empty(nr);
        call.args = [self.val(), self.val(), self.val(), self.val(), self.val()];
        let mut sub = if subs > 0 && !self.rng.one_in(16) {
            self.rng.below(u64::from(subs)) as u32
        } else {
            call.args[0] as u32
        };
        if nr == hc::MEMORY_OP {
            // The hypervisor looks at the low 6 bits (the rest is a start extent).
            sub &= 0x3F;
        }
        call.sub = Some(sub);
        call.args[0] = if self.rng.one_in(32) {
            // Upper bits set: Xen takes `int cmd` for most.
            (self.rng.next() << 32) | u64::from(sub)
        } else {
            u64::from(sub)
        };
        if nested && nr == hc::SCHED_OP && sub == 6 {
            // A watchdog armed in a multicall is not seen to be disarmed.
            sub = 0;
            call.sub = Some(0);
            call.args[0] = 0;
        }
        match nr {
            hc::XEN_VERSION => self.xen_version(&mut call, sub),
            hc::CONSOLE_IO => self.console_io(&mut call, sub),
            hc::SCHED_OP => self.sched_op(&mut call, sub),
            hc::MEMORY_OP => self.memory_op(&mut call, sub),
            hc::HVM_OP => self.hvm_op(&mut call, sub),
            hc::VCPU_OP => self.vcpu_op(&mut call, sub),
            hc::EVENT_CHANNEL_OP => self.evtchn_op(&mut call, sub),
            hc::GRANT_TABLE_OP => self.grant_op(&mut call, sub),
            hc::SET_TIMER_OP => {
                call.sub = None;
                call.args[0] = self.timeout();
            }
            hc::MULTICALL => {
                call.sub = None;
                if nested {
                    return call;
                }
                self.multicall(&mut call);
            }
            _ => {
                call.sub = None;
                // Some argument a pointer to a structure from the mix.
                let i = self.rng.below(5) as usize;
                call.args[i] = self.structure(&mut call, 64, |_, _| {});
            }
        }
        call
    }

    /// A system time: now-ish, past, 0 or far.
    fn timeout(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => 1,
            2 => self.rng.pick(&BOUNDARY),
            _ => now().wrapping_add(self.rng.below(2_000_000)),
        }
    }

    fn xen_version(&mut self, call: &mut Call, sub: u32) {
        call.args[1] = match sub {
            6 => self.structure(call, 8, |f, b| put32(b, 0, f.rng.below(3))),
            10 => self.structure(call, 32, |f, b| {
                let len = f.rng.pick(&[0, 1, 20, 24, u32::MAX as u64]);
                put32(b, 0, len);
            }),
            _ => self.ptr(false),
        };
    }

    fn console_io(&mut self, call: &mut Call, sub: u32) {
        // Mostly short, printable writes (they end up in the log).
        call.args[1] = if self.rng.one_in(8) {
            self.val()
        } else {
            self.rng.below(48)
        };
        if sub == 0 && !self.rng.one_in(8) {
            call.args[2] = self.structure(call, 48, |f, b| {
                for byte in b.iter_mut() {
                    *byte = match f.rng.below(32) {
                        0 => b'\n',
                        n => b'a' + (n % 26) as u8,
                    };
                }
            });
            call.args[1] = call.args[1].min(48);
        } else {
            call.args[2] = self.ptr(false);
        }
    }

    fn sched_op(&mut self, call: &mut Call, sub: u32) {
        match sub {
            // shutdown ends us; block may never wake us: poll with a deadline.
            1..=3 => {
                call.sub = Some(3);
                call.args[0] = 3;
                let ports = self.structure(call, 64, |f, b| {
                    for i in 0..16 {
                        put32(b, i * 4, f.port());
                    }
                });
                // The ports array goes anywhere; the poll structure in POLL.
                let poll_at = &raw mut POLL as u64;
                let nr = if self.rng.one_in(8) {
                    self.val()
                } else {
                    self.rng.below(17)
                };
                let deadline = if self.rng.one_in(4) {
                    1
                } else {
                    now() + 1 + self.rng.below(1_000_000)
                };
                // SAFETY: POLL is ours and three u64s long.
                unsafe {
                    let p = poll_at as *mut u64;
                    p.write_volatile(ports);
                    p.add(1).write_volatile(nr);
                    p.add(2).write_volatile(deadline);
                }
                call.args[1] = poll_at;
            }
            4 => {
                // Never ourselves (DOMID_SELF is not resolved there, but do not rely on it).
                let own = self.domid.map_or(u64::from(DOMID_SELF), u64::from);
                call.args[1] = self.structure(call, 8, |f, b| {
                    let mut d = f.domid();
                    if d == own || d == u64::from(DOMID_SELF) || f.domid.is_none() {
                        d = u64::from(DOMID_XEN);
                    }
                    put16(b, 0, d);
                    put32(b, 4, f.rng.below(8));
                });
            }
            5 => call.args[1] = self.structure(call, 4, |f, b| put32(b, 0, f.rng.below(8))),
            6 => {
                self.force_arena = true;
                call.args[1] = self.structure(call, 8, |f, b| {
                    let id = if f.rng.one_in(2) { 0 } else { f.val() };
                    put32(b, 0, id);
                    // A new watchdog gets a timeout it cannot reach before the
                    // fuzzer disarms it.
                    // A watchdog that fires ends us: never a timeout it can reach
                    // (0 disarms one).
                    let t = f.val() as u32;
                    let t = if t == 0 && id as u32 != 0 {
                        0
                    } else {
                        t.max(1 << 20)
                    };
                    put32(b, 4, u64::from(t));
                });
            }
            _ => call.args[1] = self.ptr(false),
        }
    }

    fn reservation(&mut self, call: &mut Call) -> u64 {
        let list = self.gfn_list();
        self.structure(call, 32, |f, b| {
            put64(b, 0, list);
            put64(
                b,
                8,
                if f.rng.one_in(4) {
                    f.val()
                } else {
                    f.rng.below(8)
                },
            );
            put32(b, 16, f.rng.pick(&[0, 1, 9, 18, 63, u32::MAX as u64]));
            put32(b, 20, f.val());
            put16(b, 24, f.domid());
        })
    }

    /// XENMEM_decrease_reservation: the hypervisor frees what it is given, so only
    /// the [`BALLOON`] frames, which the fuzzer never touches itself, in extents of
    /// one or two pages (or orders the hypervisor refuses), or frames that are not
    /// RAM. Freeing its own code or structures would end the fuzzer legitimately.
    fn decrease_reservation(&mut self, call: &mut Call) -> u64 {
        let at = self.top() - 64;
        for i in 0..8 {
            let g = if self.rng.one_in(5) {
                self.gfn() | 1 << 40
            } else {
                (BALLOON.start + self.rng.below(BALLOON.end - BALLOON.start)) & !1
            };
            probe_write(at + 8 * i, g, 8);
        }
        self.structure(call, 32, |f, b| {
            put64(b, 0, at);
            put64(b, 8, f.rng.below(9));
            put32(b, 16, f.rng.pick(&[0, 0, 1, 18, 63, u32::MAX as u64]));
            put32(b, 20, f.val());
            put16(b, 24, f.domid());
        })
    }

    /// An array of 8 frame numbers from [`Self::gfn`] at the end of RAM (a wild
    /// count runs into unmapped memory).
    fn gfn_list(&mut self) -> u64 {
        let at = self.top() - 64;
        for i in 0..8 {
            let g = self.gfn();
            probe_write(at + 8 * i, g, 8);
        }
        at
    }

    fn memory_op(&mut self, call: &mut Call, sub: u32) {
        // The upper bits of cmd are a continuation start extent.
        if self.rng.one_in(16) {
            call.args[0] |= self.val() << 6;
        }
        call.args[1] = match sub {
            0 | 6 => self.reservation(call),
            1 => self.decrease_reservation(call),
            3 | 4 => self.structure(call, 2, |f, b| put16(b, 0, f.domid())),
            7 => {
                self.force_arena = true;
                self.structure(call, 24, |f, b| {
                    put16(b, 0, f.domid());
                    put16(b, 2, f.val());
                    let space = f.rng.pick(&[0, 0, 1, 1, 1, 2, 3, 4, 5, 6]);
                    put32(b, 4, space);
                    let idx = if f.rng.one_in(2) {
                        f.rng.below(70)
                    } else {
                        f.gfn()
                    };
                    put64(b, 8, idx | if f.rng.one_in(16) { 1 << 31 } else { 0 });
                    put64(b, 16, f.gfn());
                })
            }
            9 | 10 => {
                let buffer = self.ptr(false);
                self.structure(call, 16, |f, b| {
                    put32(
                        b,
                        0,
                        if f.rng.one_in(4) {
                            f.val()
                        } else {
                            f.rng.below(8)
                        },
                    );
                    put64(b, 8, buffer);
                })
            }
            15 => self.structure(call, 16, |f, b| {
                put16(b, 0, f.domid());
                put64(b, 8, f.gfn());
            }),
            23 => {
                let list = self.gfn_list();
                self.structure(call, 32, |f, b| {
                    put16(b, 0, f.domid());
                    put16(b, 2, f.rng.below(6));
                    put16(b, 4, f.rng.below(9));
                    put64(b, 8, list);
                    put64(b, 16, list);
                    put64(b, 24, f.ptr(false));
                })
            }
            _ => {
                let list = self.gfn_list();
                self.structure(call, 64, |f, b| {
                    for off in (0..64).step_by(8) {
                        let v = if f.rng.one_in(2) { list } else { f.gfn() };
                        put64(b, off, v);
                    }
                })
            }
        };
    }

    fn hvm_op(&mut self, call: &mut Call, sub: u32) {
        call.args[1] = match sub {
            0 | 1 => self.structure(call, 16, |f, b| {
                put16(b, 0, f.domid());
                put32(
                    b,
                    4,
                    if f.rng.one_in(8) {
                        f.val()
                    } else {
                        f.rng.below(42)
                    },
                );
                let v = match f.rng.below(4) {
                    0 => f.gfn(),
                    1 => (2 << 56) | f.rng.below(256),
                    _ => f.val(),
                };
                put64(b, 8, v);
            }),
            9 => self.structure(call, 16, |f, b| {
                put16(b, 0, f.domid());
                put64(b, 8, f.val());
            }),
            23 => self.structure(call, 8, |f, b| {
                put32(b, 0, f.vcpu());
                put(b, 4, &[f.rng.below(256) as u8]);
            }),
            _ => self.ptr(false),
        };
    }

    fn vcpu_op(&mut self, call: &mut Call, sub: u32) {
        let mut target = self.vcpu();
        if sub == 2 && target as u32 == 0 {
            // Our only vCPU going down powers us off.
            target = 1;
        }
        call.args[1] = target;
        call.args[2] = match sub {
            0 => self.structure(call, 64, |f, b| {
                put32(b, 0, f.rng.below(3));
            }),
            5 | 13 => {
                let p = self.live_ptr();
                self.structure(call, 8, |_, b| put64(b, 0, p))
            }
            6 => self.structure(call, 8, |f, b| {
                let p = match f.rng.below(4) {
                    0 => f.rng.pick(&BOUNDARY),
                    1 => 1_000_000 + f.rng.below(10_000_000),
                    _ => f.val(),
                };
                put64(b, 0, p);
            }),
            8 => self.structure(call, 16, |f, b| {
                put64(b, 0, f.timeout());
                put32(b, 8, f.rng.below(3));
            }),
            10 => self.structure(call, 16, |f, b| {
                put64(b, 0, f.gfn());
                put32(
                    b,
                    8,
                    if f.rng.one_in(2) {
                        f.rng.below(64) * 64
                    } else {
                        f.val()
                    },
                );
                put32(b, 12, f.val());
            }),
            _ => self.ptr(false),
        };
    }

    fn evtchn_op(&mut self, call: &mut Call, sub: u32) {
        call.args[1] = match sub {
            0 => self.structure(call, 12, |f, b| {
                put16(b, 0, f.domid());
                put32(b, 4, f.port());
            }),
            1 => self.structure(call, 12, |f, b| {
                put32(
                    b,
                    0,
                    if f.rng.one_in(4) {
                        f.val()
                    } else {
                        f.rng.below(12)
                    },
                );
                put32(b, 4, f.vcpu());
            }),
            3 | 4 | 9 => self.structure(call, 4, |f, b| put32(b, 0, f.port())),
            5 => self.structure(call, 24, |f, b| {
                put16(b, 0, f.domid());
                put32(b, 4, f.port());
            }),
            6 => self.structure(call, 8, |f, b| {
                put16(b, 0, f.domid());
                put16(b, 2, f.domid());
            }),
            7 => self.structure(call, 8, |f, b| put32(b, 0, f.vcpu())),
            8 => self.structure(call, 8, |f, b| {
                put32(b, 0, f.port());
                put32(b, 4, f.vcpu());
            }),
            10 | 14 => self.structure(call, 2, |f, b| put16(b, 0, f.domid())),
            11 => self.structure(call, 24, |f, b| {
                put64(b, 0, f.gfn());
                let off = match f.rng.below(4) {
                    0 => f.val(),
                    1 => 4096 - 64 + f.rng.below(64),
                    _ => f.rng.below(64) * 64,
                };
                put32(b, 8, off);
                put32(b, 12, f.vcpu());
            }),
            12 => self.structure(call, 8, |f, b| put64(b, 0, f.gfn())),
            13 => self.structure(call, 8, |f, b| {
                put32(b, 0, f.port());
                put32(
                    b,
                    4,
                    if f.rng.one_in(4) {
                        f.val()
                    } else {
                        f.rng.below(17)
                    },
                );
            }),
            _ => self.ptr(false),
        };
    }

    fn grant_op(&mut self, call: &mut Call, sub: u32) {
        let mut count = match self.rng.below(8) {
            0 => 0,
            1 => self.val(),
            2 => self.rng.below(4) + 1,
            _ => 1,
        };
        if self.in_multicall && count > 4 {
            // A batch in a multicall lies just below the multicall's list (see
            // `top`): a wild count would run its elements through the list, and the
            // statuses written into them would turn later entries into any call
            // with any pointer (seen: a status written into the page tables).
            count = 4;
        }
        call.args[2] = count;
        let elem = |f: &mut Fuzzer,
                    call: &mut Call,
                    size: usize,
                    fill: &dyn Fn(&mut Fuzzer, &mut [u8])| {
            f.structure(call, size, |f, b| fill(f, b))
        };
        call.args[1] = match sub {
            0 => elem(self, call, 32, &|f, b| {
                put64(
                    b,
                    0,
                    f.gfn() * PAGE
                        + if f.rng.one_in(8) {
                            f.rng.below(PAGE)
                        } else {
                            0
                        },
                );
                let flags = f.rng.pick(&[2, 2, 2, 6, 6, 0, 1, 3, 8, 0x10, 7, 0x1e]);
                put32(b, 8, if f.rng.one_in(8) { f.val() } else { flags });
                put32(
                    b,
                    12,
                    if f.rng.one_in(2) {
                        f.rng.below(16)
                    } else {
                        f.port()
                    },
                );
                put16(b, 16, f.domid());
            }),
            1 | 7 => elem(self, call, 24, &|f, b| {
                put64(b, 0, f.gfn() * PAGE);
                put64(b, 8, if sub == 7 { f.gfn() * PAGE } else { f.val() });
                put32(
                    b,
                    16,
                    if f.rng.one_in(2) {
                        f.rng.below(8)
                    } else {
                        f.val()
                    },
                );
            }),
            2 => {
                let list = self.ptr(false);
                elem(self, call, 24, &|f, b| {
                    put16(b, 0, f.domid());
                    put32(
                        b,
                        4,
                        if f.rng.one_in(4) {
                            f.val()
                        } else {
                            f.rng.below(70)
                        },
                    );
                    put64(b, 16, list);
                })
            }
            3 | 6 | 10 => elem(self, call, 16, &|f, b| put16(b, 0, f.domid())),
            4 => elem(self, call, 16, &|f, b| {
                put64(b, 0, f.gfn());
                put16(b, 8, f.domid());
                put32(b, 12, f.port());
            }),
            5 => elem(self, call, 40, &|f, b| {
                let flags = f.rng.below(4);
                put64(
                    b,
                    0,
                    if flags & 1 != 0 {
                        f.rng.below(16)
                    } else {
                        f.val()
                    },
                );
                put16(b, 8, f.domid());
                put16(
                    b,
                    10,
                    if f.rng.one_in(2) {
                        f.rng.below(4096)
                    } else {
                        f.val()
                    },
                );
                put64(
                    b,
                    16,
                    if flags & 2 != 0 {
                        f.rng.below(16)
                    } else {
                        f.gfn()
                    },
                );
                put16(b, 24, f.domid());
                put16(
                    b,
                    26,
                    if f.rng.one_in(2) {
                        f.rng.below(4096)
                    } else {
                        f.val()
                    },
                );
                put16(
                    b,
                    32,
                    if f.rng.one_in(2) {
                        f.rng.below(4097)
                    } else {
                        f.val()
                    },
                );
                put16(b, 34, if f.rng.one_in(8) { f.val() } else { flags });
            }),
            8 => elem(self, call, 4, &|f, b| {
                put32(b, 0, f.rng.pick(&[0, 1, 1, 2, 3, u32::MAX as u64]))
            }),
            9 => {
                let list = self.ptr(false);
                elem(self, call, 16, &|f, b| {
                    put32(b, 0, f.rng.below(4));
                    put16(b, 4, f.domid());
                    put64(b, 8, list);
                })
            }
            11 => elem(self, call, 12, &|f, b| {
                put32(b, 0, f.rng.below(16));
                put32(b, 4, f.port());
            }),
            _ => self.ptr(false),
        };
        // A batch of more than one element: at the end of RAM, so that a wild count
        // runs into unmapped memory rather than over the fuzzer's own data.
        if call.at.is_some() && count > 1 {
            let n = count.min(4);
            let size = call.size as u64;
            let at = self.top() - n * size;
            for i in 0..n {
                for (j, &b) in call.body[..call.size].iter().enumerate() {
                    probe_write(at + i * size + j as u64, u64::from(b), 1);
                }
            }
            call.at = Some((Place::Bad, at));
            call.args[1] = at;
        }
    }

    fn multicall(&mut self, call: &mut Call) {
        let n = self.rng.below(8);
        let entry = 64u64;
        // At the end of RAM (see `top`).
        let at = self.ram_top - n * entry;
        for i in 0..n {
            self.in_multicall = true;
            let sub = self.generate(true);
            // The sub-call's structure is written now; its place is its own.
            self.emit(&sub);
            self.in_multicall = false;
            // Its result is not seen: a grant frame may have gone where it asked.
            if sub.nr == hc::MEMORY_OP && sub.sub == Some(7) && sub.body[4] == 1 {
                self.add_grant_frame(get64(&sub.body, 16));
            }
            if self.index >= self.trace_from {
                println!(
                    "fuzz: call {} entry {i}: nr {} sub {:?} args {:x?} struct {:x?} {:x?}",
                    self.index,
                    sub.nr,
                    sub.sub,
                    sub.args,
                    sub.at,
                    &sub.body[..sub.size]
                );
            }
            let base = at + i * entry;
            probe_write(base, sub.nr, 8);
            probe_write(base + 8, self.val(), 8);
            for (k, &a) in sub.args.iter().enumerate() {
                probe_write(base + 16 + 8 * k as u64, a, 8);
            }
            probe_write(base + 56, self.val(), 8);
        }
        call.args[0] = at;
        call.args[1] = if self.rng.one_in(6) { self.val() } else { n };
    }

    /// Issues a call; returns its result.
    fn issue(&mut self, call: &Call) -> i64 {
        let a = call.args;
        // Through the hypercall page mostly (its stub for iret, 23, traps).
        let via_page = call.nr < 64 && call.nr != 23 && !self.rng.one_in(4);
        match page() {
            // SAFETY: the arguments were drawn to be harmless to the fuzzer (see the
            // module comment); the hypervisor must cope with anything else in them.
            Some(p) if via_page => unsafe { hypercall_via_page(p, call.nr, a) },
            // SAFETY: as above.
            _ => unsafe { vmmcall(call.nr, a) },
        }
    }

    /// One fuzzing step: maybe scribble on shared pages, then one call.
    fn step(&mut self) {
        if self.rng.one_in(2) {
            for _ in 0..1 + self.rng.below(4) {
                self.scribble();
            }
        }
        self.arena_used = 0;
        self.pt_dirty = false;
        let call = self.generate(false);
        self.emit(&call);
        if self.index >= self.trace_from {
            // SAFETY: the first entries of the PML4, PDPT and first PD.
            let pt = unsafe {
                [
                    (self.pml4 as *const u64).read_volatile(),
                    ((self.pml4 + PAGE) as *const u64).read_volatile(),
                    ((self.pml4 + 2 * PAGE) as *const u64).read_volatile(),
                ]
            };
            println!("fuzz: page tables {pt:x?} dirty {}", self.pt_dirty);
            println!(
                "fuzz: call {}: nr {} sub {:?} args {:x?} struct {:x?} {:x?}",
                self.index,
                call.nr,
                call.sub,
                call.args,
                call.at,
                &call.body[..call.size]
            );
        }
        let ret = self.issue(&call);
        if self.pt_dirty {
            self.restore_page_tables();
        }
        if self.watch {
            self.check_watch(&call, ret);
        }
        if self.index >= self.trace_from {
            println!("fuzz: call {}: returned {ret}", self.index);
        }
        self.count(ret, &call);
        self.learn(&call, ret);
        self.index += 1;
    }

    fn count(&mut self, ret: i64, call: &Call) {
        if ret == 0 {
            self.stats.zero += 1;
        } else if ret > 0 {
            self.stats.positive += 1;
        } else if ret > -200 {
            self.stats.errno[(-ret) as usize] += 1;
        } else {
            self.stats.wild += 1;
            check!(
                false,
                "call {}: nr {} sub {:?} returned {ret:#x}, neither a value nor an errno",
                self.index,
                call.nr,
                call.sub
            );
        }
    }

    /// What a call returned that later calls may use: ports, handles, shared pages.
    fn learn(&mut self, call: &Call, ret: i64) {
        if ret > 0 && ret < 0x10000 {
            self.remember(ret as u64);
        }
        let Some((place, addr)) = call.at else {
            return;
        };
        let mut out = [0u8; 64];
        if place == Place::Arena {
            // SAFETY: the arena, where the structure was written.
            unsafe {
                core::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), call.size)
            };
            for off in (0..call.size.saturating_sub(3)).step_by(4) {
                let w = u32::from_le_bytes([out[off], out[off + 1], out[off + 2], out[off + 3]]);
                if w != 0 && w < 0x10000 && self.rng.one_in(2) {
                    self.remember(u64::from(w));
                }
            }
        }
        let body = &call.body;
        let sub = call.sub.unwrap_or(u32::MAX);
        match (call.nr, sub) {
            // A watchdog armed: disarm it before it can fire.
            (hc::SCHED_OP, 6) if ret > 0 => {
                let w = [ret as u32, 0u32];
                // SAFETY: SCHEDOP_watchdog reads 8 bytes.
                unsafe { rxen_guest::hypercall::sched_op(6, w.as_ptr() as u64) };
            }
            (hc::MEMORY_OP, 7) if ret == 0 => {
                let gfn = get64(body, 16);
                if u32::from_le_bytes([body[4], body[5], body[6], body[7]]) == 1 {
                    self.add_grant_frame(gfn);
                }
                self.share(gfn);
            }
            (hc::VCPU_OP, 10) if ret == 0 => self.share(get64(body, 0)),
            (hc::EVENT_CHANNEL_OP, 11) if ret == 0 => self.share(get64(body, 0)),
            (hc::EVENT_CHANNEL_OP, 12) if ret == 0 => self.share(get64(body, 0)),
            (hc::GRANT_TABLE_OP, 0) if ret == 0 && place == Place::Arena => {
                let status = i16::from_le_bytes([out[18], out[19]]);
                if status == 0 {
                    self.share(get64(body, 0) / PAGE);
                }
            }
            _ => {}
        }
    }

    /// One random write into a page shared with the hypervisor.
    fn scribble(&mut self) {
        if self.nshared == 0 {
            return;
        }
        let mut gfn = self.rng.pick(&self.shared[..self.nshared]);
        if Some(gfn) == self.ro_gfn && !self.rng.one_in(8) {
            // Now and then the read-only grant mapping (each write is a #GP).
            gfn = self.rng.pick(&self.shared[..self.nshared]);
        }
        let size = self.rng.pick(&[1u32, 2, 4, 8]);
        let offset = self.rng.below(PAGE) & !(u64::from(size) - 1);
        let mut value = self.val();
        // A grant entry's frame word names a frame the fuzzer can give away (the
        // entry's header word is anything): never pieced together from bytes.
        let mut size = size;
        let mut offset = offset;
        if self.is_grant_frame(gfn) {
            if offset % 8 >= 4 {
                size = 4;
                offset &= !3;
                value = self.gfn();
            } else if size == 8 {
                value = (self.gfn() << 32) | (value & 0xFFFF_FFFF);
            }
        } else if offset % 8 == 4 && size == 4 {
            value = self.gfn();
        }
        self.writes += 1;
        if probe_write(gfn * PAGE + offset, value, size) {
            self.write_faults += 1;
        }
    }

    /// Shares pages the way a guest does: shared info at a sacrificial page, grant
    /// frame 0 above RAM, the console ring, and a read-only grant mapping of one of
    /// our own pages (writes to it fault).
    fn set_up(&mut self, console_gfn: Option<u64>) {
        let si_gfn = self.sacrifice.0 + 15;
        let xatp = [DOMID_SELF as u64, 0, si_gfn];
        // SAFETY: `xen_add_to_physmap` {domid, size 0, space 0 (shared info)}, idx 0.
        if unsafe { rxen_guest::hypercall::memory_op(7, xatp.as_ptr() as u64) } == 0 {
            self.share(si_gfn);
        }
        if let Some(g) = console_gfn {
            self.share(g);
        }
        let frame_gfn = self.ram_top / PAGE + 15;
        if rxen_guest::grant::place_frame(0, frame_gfn) != 0 {
            return;
        }
        self.add_grant_frame(frame_gfn);
        self.share(frame_gfn);
        let Some(me) = self.domid else {
            return;
        };
        // Entry 9 grants sacrificial page 14 to ourselves, read-only; map it above RAM.
        let granted = self.sacrifice.0 + 14;
        let header = u32::from(gt::GTF_PERMIT_ACCESS | gt::GTF_READONLY) | (u32::from(me) << 16);
        let entry = frame_gfn * PAGE + 9 * 8;
        probe_write(entry + 4, granted, 4);
        probe_write(entry, u64::from(header), 4);
        let at = self.ram_top / PAGE + 14;
        let (rc, op) = rxen_guest::grant::map(me, 9, at, gt::GNTMAP_HOST_MAP | gt::GNTMAP_READONLY);
        println!(
            "fuzz: read-only grant of our own page at gfn {at:#x}: rc {rc} status {}",
            op.status
        );
        if rc == 0 && op.status == 0 {
            self.share(at);
            self.ro_gfn = Some(at);
            // SAFETY: our own sacrificial page, read volatile.
            let read = || unsafe { core::ptr::read_volatile((granted * PAGE) as *const u64) };
            let before = read();
            check!(
                !probe_write(at * PAGE, !before, 8),
                "a write to a read-only grant mapping does not fault (Xen drops it)"
            );
            check_eq!(read(), before, "the read-only granted page after the write");
        }
    }

    fn report(&self, elapsed_ns: u64) {
        let s = &self.stats;
        println!(
            "fuzz: returns: 0: {}, positive: {}, neither value nor errno: {}",
            s.zero, s.positive, s.wild
        );
        let mut line = [0u8; 512];
        let mut w = rxen_guest::console::SliceWriter::new(&mut line);
        for (e, &n) in s.errno.iter().enumerate().filter(|(_, &n)| n > 0) {
            let _ = core::fmt::Write::write_fmt(&mut w, format_args!(" -{e}:{n}"));
        }
        println!("fuzz: errnos:{}", rxen_guest::console::c_str(w.as_bytes()));
        let mut w = rxen_guest::console::SliceWriter::new(&mut line);
        for (v, c) in CAUGHT.iter().enumerate() {
            let n = c.load(Ordering::SeqCst);
            if n > 0 {
                let _ = core::fmt::Write::write_fmt(&mut w, format_args!(" vector {v}: {n}"));
            }
        }
        println!(
            "fuzz: {} shared-page writes, {} faulted; exceptions caught:{}",
            self.writes,
            self.write_faults,
            rxen_guest::console::c_str(w.as_bytes())
        );
        let ms = (elapsed_ns / 1_000_000).max(1);
        println!(
            "fuzz: done: {} calls in {} ms, {} calls/s ({} draws skipped)",
            self.index,
            ms,
            self.index * 1000 / ms,
            self.regenerated
        );
    }
}

/// System time through `HVMOP_get_time` (the pvclock in shared info is scribbled on).
fn now() -> u64 {
    let mut t = 0u64;
    // SAFETY: HVMOP_get_time writes one u64.
    let rc = unsafe { rxen_guest::hypercall::hvm_op(hvm::GET_TIME, &raw mut t as u64) };
    if rc != 0 {
        error!("HVMOP_get_time: {rc}");
    }
    t
}

fn main(si: &StartInfo) {
    let seed = si.arg_u64("seed").unwrap_or(1);
    let calls = si.arg_u64("calls").unwrap_or(10_000);
    let progress = si.arg_u64("progress").unwrap_or((calls / 10).max(1));
    let mut f = Fuzzer::new(si, seed);
    println!(
        "fuzz: seed {seed}, {calls} calls, skip {:?}, domid {:?}, RAM top {:#x}",
        si.arg_value("skip").unwrap_or(""),
        f.domid,
        f.ram_top
    );
    if f.ram_top < 2 * 1024 * 1024 {
        error!("too little RAM");
    }
    set_trap_hook(Some(trap_hook));
    let console_gfn = rxen_guest::hypercall::hvm_get_param(hvm::PARAM_CONSOLE_PFN).ok();
    if let Ok(port) = rxen_guest::hypercall::hvm_get_param(hvm::PARAM_CONSOLE_EVTCHN) {
        f.remember(port);
    }
    f.set_up(console_gfn.filter(|&g| g != 0));
    let (code, n) = code_samples();
    let samples = (&raw mut CODE_SAMPLES).cast::<u64>();
    for i in 0..n {
        // SAFETY: inside our code and read-only data; our own samples (n is at
        // most their number), before any call.
        unsafe {
            samples.add(i).write(core::ptr::read_volatile(
                (code + 64 * i as u64) as *const u64,
            ))
        };
    }
    // SAFETY: the six page-table pages and our copy of them.
    unsafe {
        core::ptr::copy_nonoverlapping(
            f.pml4 as *const u8,
            (&raw mut PT_PRISTINE) as *mut u8,
            6 * PAGE as usize,
        )
    };
    let start = now();
    while f.index < calls {
        f.step();
        if f.index.is_multiple_of(progress) {
            println!(
                "fuzz: {} calls, {} ms",
                f.index,
                (now() - start) / 1_000_000
            );
        }
    }
    let elapsed = now() - start;
    // Our random console output may have spent the domain's output budget (64 KiB
    // burst, 8 KiB/s): a second of silence earns the report its place.
    let quiet = now() + 1_000_000_000;
    while now() < quiet {
        core::hint::spin_loop();
    }
    set_trap_hook(None);
    // SCHEDOP_shutdown_code drawn above would be the reason of our poweroff (as in
    // Xen's domain_shutdown): make it poweroff again.
    let code = 0u32;
    // SAFETY: SCHEDOP_shutdown_code reads a u32.
    unsafe { rxen_guest::hypercall::sched_op(5, &raw const code as u64) };
    // The hypervisor still answers as Xen does.
    check_eq!(
        // SAFETY: XENVER_version takes no argument.
        unsafe { rxen_guest::hypercall::xen_version(0, 0) },
        0x0004_0011
    );
    check!(now() > start, "time goes on");
    f.report(elapsed);
}
