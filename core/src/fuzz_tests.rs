//! Property tests of the hypercall layer (issue 14): random call sequences from
//! a seeded generator (no extra dependency; each case prints its seed when it
//! fails, `RXEN_PROPTEST_SEED=<n>` replays one and `RXEN_PROPTEST_CASES=<n>`
//! runs more), with invariants checked after every call.
//!
//! - Event channels: [`dispatch`] of `event_channel_op` (and the other
//!   event-related calls) from domain 1, beside domain 2 reached through the
//!   fake's `with_domain`, with random arguments drawn mostly from the ports
//!   and domains in play. After each call: no panic, the answer is a value or
//!   a Xen errno, every allocated port is below the ABI's limit and in one
//!   state, interdomain channels are connected the same way on both sides,
//!   and every VIRQ is bound to at most one port per vCPU.
//! - Grant tables: random map/unmap/copy of random grant entries between
//!   three domains through [`grant_table`](crate::grant_table) with a fake
//!   platform, then the death of a domain. After each step: no frame is
//!   mapped twice at one place, each active entry's pin counts equal the
//!   mappings that use it, every pinned entry's `GTF_reading/writing` agree,
//!   and after every domain is released no mapping and no pin is left.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::event_channel as ev;
use rxen_abi::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
    GNTMAP_HOST_MAP, GNTMAP_READONLY, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
use rxen_abi::xen;

use crate::domain::{DomId, Domain};
use crate::event_channel::PortState;
use crate::grant_table::{self, GrantPlatform, GrantTable, Mfn};
use crate::hypercall::{dispatch, Ctx, GuestCopy};
use crate::test_support::{domu, FakeEnv, Rng};

/// The seeds to run: `RXEN_PROPTEST_SEED` alone, or `cases` seeds from `base`.
fn seeds(base: u64, cases: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("RXEN_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let cases = std::env::var("RXEN_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    (0..cases).map(|i| base.wrapping_add(i)).collect()
}

/// Runs `case` for each seed; a panic names the seed.
fn for_each_seed(base: u64, cases: u64, case: impl Fn(u64) + std::panic::RefUnwindSafe) {
    for seed in seeds(base, cases) {
        if let Err(e) = std::panic::catch_unwind(|| case(seed)) {
            std::eprintln!("property test failed with RXEN_PROPTEST_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

// ---------------------------------------------------------------- events

/// Domain 1 (the caller) and domain 2 (its peer in the fake).
const ME: DomId = 1;
const PEER: DomId = 2;
/// Where the argument structure goes in the caller's fake memory.
const ARG: u64 = 0x1000;
/// Ports array for SCHEDOP_poll.
const PORTS: u64 = 0x2000;
/// Frames of the fake memory used as FIFO control block and event array.
const FIFO_GFNS: [u64; 3] = [4, 5, 6];

fn pair() -> (Domain, FakeEnv) {
    let mut me = domu();
    me.id = ME;
    let mut peer = domu();
    peer.id = PEER;
    let mut env = FakeEnv::new();
    env.peer = Some(Box::new((peer, FakeEnv::new())));
    (me, env)
}

fn peer(env: &mut FakeEnv) -> &mut Domain {
    &mut env.peer.as_deref_mut().expect("a peer").0
}

/// A port number: mostly one in play, sometimes a boundary.
fn port(rng: &mut Rng, me: &Domain, env: &mut FakeEnv) -> u32 {
    let mine = me.events.allocated_ports();
    let theirs = peer(env).events.allocated_ports();
    match rng.below(10) {
        0..=3 if !mine.is_empty() => rng.pick(&mine),
        4..=5 if !theirs.is_empty() => rng.pick(&theirs),
        6 => rng.pick(&[
            0,
            1023,
            1024,
            4095,
            4096,
            4097,
            (1 << 17) - 1,
            1 << 17,
            u32::MAX,
        ]),
        _ => rng.below(16) as u32,
    }
}

fn domid(rng: &mut Rng) -> DomId {
    rng.pick(&[ME, ME, PEER, PEER, xen::DOMID_SELF, 0, 3, 0x7FF2, 0xFFFF])
}

fn vcpu(rng: &mut Rng) -> u32 {
    rng.pick(&[0, 0, 0, 1, 2, 31, u32::MAX])
}

fn put(env: &mut FakeEnv, addr: u64, words: &[u32]) {
    for (i, w) in words.iter().enumerate() {
        env.put(addr + 4 * i as u64, w);
    }
}

/// One random event-related call of domain 1; returns its result.
fn event_call(rng: &mut Rng, me: &mut Domain, env: &mut FakeEnv) -> i64 {
    let cmd = rng.below(15) as u32;
    env.mem[ARG as usize..ARG as usize + 32].fill(0);
    match cmd {
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            let (d, p) = (domid(rng), port(rng, me, env));
            env.put(ARG, &d);
            put(env, ARG + 4, &[p]);
        }
        ev::EVTCHNOP_BIND_VIRQ => {
            let virq = rng.pick(&[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 24, u32::MAX]);
            put(env, ARG, &[virq, vcpu(rng)]);
        }
        ev::EVTCHNOP_CLOSE | ev::EVTCHNOP_STATUS | ev::EVTCHNOP_UNMASK => {
            let p = port(rng, me, env);
            if cmd == ev::EVTCHNOP_STATUS {
                let d = domid(rng);
                env.put(ARG, &d);
                put(env, ARG + 4, &[p]);
            } else {
                put(env, ARG, &[p]);
            }
        }
        ev::EVTCHNOP_SEND => {
            let p = port(rng, me, env);
            put(env, ARG, &[p]);
        }
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            let (d, r) = (domid(rng), domid(rng));
            env.put(ARG, &d);
            env.put(ARG + 2, &r);
        }
        ev::EVTCHNOP_BIND_IPI => put(env, ARG, &[vcpu(rng)]),
        ev::EVTCHNOP_BIND_VCPU => {
            let p = port(rng, me, env);
            put(env, ARG, &[p, vcpu(rng)]);
        }
        ev::EVTCHNOP_RESET => {
            let d = rng.pick(&[xen::DOMID_SELF, ME, PEER]);
            env.put(ARG, &d);
        }
        ev::EVTCHNOP_INIT_CONTROL => {
            let gfn = rng.pick(&FIFO_GFNS);
            env.put(ARG, &gfn);
            put(
                env,
                ARG + 8,
                &[rng.pick(&[0, 64, 4032, 4088, 5]), vcpu(rng)],
            );
        }
        ev::EVTCHNOP_EXPAND_ARRAY => {
            let gfn = rng.pick(&[FIFO_GFNS[1], FIFO_GFNS[2], 7, 1 << 40]);
            env.put(ARG, &gfn);
        }
        ev::EVTCHNOP_SET_PRIORITY => {
            let p = port(rng, me, env);
            put(env, ARG, &[p, rng.below(17) as u32]);
        }
        _ => {}
    }
    // Now and then a poll or another event-related call.
    let (nr, args) = match rng.below(12) {
        0 => {
            let ports = [port(rng, me, env), port(rng, me, env)];
            put(env, PORTS, &ports);
            env.put(ARG + 0x100, &PORTS);
            put(env, ARG + 0x108, &[rng.below(4) as u32]);
            env.put(ARG + 0x110, &1u64);
            (xen::HYPERVISOR_SCHED_OP, [3, ARG + 0x100, 0, 0, 0])
        }
        _ => (
            xen::HYPERVISOR_EVENT_CHANNEL_OP,
            [u64::from(cmd), ARG, 0, 0, 0],
        ),
    };
    let out = dispatch(&mut Ctx::new(me, 0, env), nr, args, 0);
    // A blocked vCPU is woken for the next call (the scheduler would).
    me.vcpus[0].blocked = None;
    out.ret
}

/// The invariants of two domains' event channels.
fn check_events(me: &Domain, them: &Domain, step: usize) {
    for d in [me, them] {
        let other = if d.id == ME { them } else { me };
        let ports = d.events.allocated_ports();
        let mut virqs = BTreeMap::new();
        for &p in &ports {
            assert!(
                p < d.events.max_ports(),
                "step {step}: d{} port {p} beyond the ABI's {} ports",
                d.id,
                d.events.max_ports()
            );
            let port = d.events.port(p).expect("an allocated port");
            match port.state {
                PortState::Free => panic!("step {step}: d{} port {p} allocated and free", d.id),
                PortState::Virq(v) => {
                    // A global VIRQ has one port whatever vCPU it notifies.
                    let per_vcpu = matches!(v, 0 | 1 | 7 | 13);
                    let key = (v, if per_vcpu { port.vcpu } else { 0 });
                    if let Some(q) = virqs.insert(key, p) {
                        panic!(
                            "step {step}: d{} VIRQ {v} on vCPU {} bound to ports {q} and {p}",
                            d.id, port.vcpu
                        );
                    }
                }
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    let far = if remote_dom == d.id {
                        d
                    } else if remote_dom == other.id {
                        other
                    } else {
                        panic!("step {step}: d{} port {p} connected to d{remote_dom}", d.id)
                    };
                    let back = far.events.port(remote_port).map(|q| q.state);
                    assert_eq!(
                        back,
                        Some(PortState::Interdomain {
                            remote_dom: d.id,
                            remote_port: p
                        }),
                        "step {step}: d{} port {p} -> d{remote_dom} port {remote_port}, which is not connected back",
                        d.id
                    );
                }
                _ => {}
            }
            assert!(
                (port.vcpu as usize) < d.vcpus.len(),
                "step {step}: d{} port {p} on vCPU {}",
                d.id,
                port.vcpu
            );
        }
        // Each VIRQ's recorded port is that VIRQ's.
        for v in 0..24 {
            for vc in 0..d.vcpus.len() as u32 {
                if let Some(p) = d.events.virq_port(v, vc) {
                    assert_eq!(
                        d.events.port(p).map(|p| p.state),
                        Some(PortState::Virq(v)),
                        "step {step}: d{} VIRQ {v} vCPU {vc} recorded on port {p}",
                        d.id
                    );
                }
            }
        }
    }
}

fn event_case(seed: u64) {
    let mut rng = Rng(seed);
    let (mut me, mut env) = pair();
    // One case in 32 also fills the port space once (beyond the 2-level
    // ABI's 4096 ports under FIFO, up to them in 2-level).
    let mut bulk = seed.is_multiple_of(32);
    for step in 0..200 {
        if bulk && rng.below(20) == 0 {
            bulk = false;
            for _ in 0..4200 {
                env.put(ARG, &xen::DOMID_SELF);
                env.put(ARG + 2, &ME);
                let op = u64::from(ev::EVTCHNOP_ALLOC_UNBOUND);
                dispatch(
                    &mut Ctx::new(&mut me, 0, &mut env),
                    xen::HYPERVISOR_EVENT_CHANNEL_OP,
                    [op, ARG, 0, 0, 0],
                    0,
                );
            }
        }
        // The peer offers ports now and then (as its guest would).
        if rng.below(4) == 0 {
            let remote = rng.pick(&[ME, PEER]);
            let _ = peer(&mut env).events.alloc_unbound(remote);
        }
        let ret = event_call(&mut rng, &mut me, &mut env);
        assert!(
            ret >= 0 || (-ret as u64) < 200,
            "step {step}: {ret:#x} is neither a value nor an errno"
        );
        let them = env.peer.as_deref().expect("a peer").0.clone();
        check_events(&me, &them, step);
    }
    // Closing everything (as the domain's death does) leaves the peer with
    // no channel to it.
    crate::hypercall::close_interdomain_channels(&mut me, &mut env);
    let them = &peer(&mut env).events;
    for p in them.allocated_ports() {
        if let Some(PortState::Interdomain { remote_dom, .. }) = them.port(p).map(|p| p.state) {
            assert_ne!(remote_dom, ME, "d2 port {p} still connected to a gone d1");
        }
    }
}

/// 1000 random sequences of 200 event-related calls.
#[test]
fn event_channel_sequences_keep_their_invariants() {
    for_each_seed(0xE7E7_0000, 1000, event_case);
}

// ---------------------------------------------------------------- grants

const DOMS: [DomId; 3] = [1, 2, 3];
const RAM_PAGES: u64 = 8;
/// Mappings go at gfns from here.
const MAP_BASE: u64 = 0x100;

/// Grant frames, RAM and foreign mappings by domain; a mapping pins a frame.
struct GrantFake {
    frames:
        BTreeMap<DomId, Vec<Box<[core::sync::atomic::AtomicU64; crate::shared_page::PAGE_WORDS]>>>,
    /// (mapper, gfn) -> (granter, gfn, readonly).
    foreign: BTreeMap<(DomId, u64), (Mfn, bool)>,
}

impl GuestCopy for GrantFake {
    fn copy_in(&mut self, _addr: u64, _buf: &mut [u8]) -> Result<(), Errno> {
        Err(errno::EFAULT)
    }
    fn copy_out(&mut self, _addr: u64, _buf: &[u8]) -> Result<(), Errno> {
        Err(errno::EFAULT)
    }
}

impl GrantPlatform for GrantFake {
    fn grant_frame(&self, domid: DomId, index: u32) -> Option<crate::shared_page::SharedPage<'_>> {
        self.frames
            .get(&domid)?
            .get(index as usize)
            .map(|f| crate::shared_page::SharedPage::new(f))
    }
    fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
        let frames = self.frames.entry(domid).or_default();
        while frames.len() < nr as usize {
            frames.push(Box::new(crate::shared_page::zeroed_words()));
        }
        Ok(())
    }
    fn ram_frame(&self, domid: DomId, gfn: u64) -> Option<Mfn> {
        // Distinct machine frames per domain and gfn.
        (gfn < RAM_PAGES).then_some(Mfn(((domid as u64) << 32) | gfn))
    }
    fn map_foreign(
        &mut self,
        mapper: DomId,
        dst: u64,
        mfn: Mfn,
        readonly: bool,
    ) -> Result<u64, Errno> {
        assert!(
            self.foreign
                .insert((mapper, dst), (mfn, readonly))
                .is_none(),
            "d{mapper} gfn {dst:#x} mapped twice"
        );
        Ok(0)
    }
    fn unmap_foreign(&mut self, mapper: DomId, dst: u64, _restore: u64) -> Result<(), Errno> {
        self.foreign
            .remove(&(mapper, dst))
            .map(|_| ())
            .ok_or(errno::EINVAL)
    }
    fn copy(&mut self, _: (Mfn, u16), _: (Mfn, u16), _: u16) -> Result<(), Errno> {
        Ok(())
    }
    fn is_privileged(&self, _domid: DomId) -> bool {
        false
    }
}

fn entry_words(
    fake: &GrantFake,
    d: DomId,
    gref: GrantRef,
) -> (
    crate::grant_table::EntryWord<'_>,
    crate::grant_table::EntryWord<'_>,
) {
    crate::grant_table::entry_words(fake, d, gref).expect("entry exists")
}

/// The invariants: pins equal the mappings that use them, flags agree, the
/// platform's mappings are the tables' mappings.
fn check_grants(fake: &GrantFake, tables: &mut BTreeMap<DomId, GrantTable>, step: usize) {
    // (granter, gref) -> (readers, writers) from the maptracks.
    let mut uses: BTreeMap<(DomId, GrantRef), (u32, u32)> = BTreeMap::new();
    let mut mapped = 0;
    for (&mapper, table) in tables.iter() {
        for handle in 0..64 {
            if let Some(m) = table.mapping(handle) {
                mapped += 1;
                let u = uses.entry((m.granter, m.gref)).or_default();
                if m.readonly {
                    u.0 += 1;
                } else {
                    u.1 += 1;
                }
                assert!(
                    fake.foreign.contains_key(&(mapper, m.gfn)),
                    "step {step}: d{mapper} handle {handle} at gfn {:#x} not mapped",
                    m.gfn
                );
            }
        }
    }
    assert_eq!(
        fake.foreign.len(),
        mapped,
        "step {step}: platform mappings vs maptracks"
    );
    for (&d, table) in tables.iter() {
        for gref in 0..16 {
            let active = table.active(gref);
            let (r, w) = uses.get(&(d, gref)).copied().unwrap_or((0, 0));
            let (pins_r, pins_w) = active.map_or((0, 0), |a| (a.readers, a.writers));
            assert_eq!(
                (pins_r, pins_w),
                (r, w),
                "step {step}: d{d} gref {gref}: pins vs mappings"
            );
            let flags = entry_words(fake, d, gref).0.load() as u16;
            assert_eq!(
                flags & GTF_WRITING != 0,
                w > 0,
                "step {step}: d{d} gref {gref}: GTF_writing {flags:#x} with {w} writable maps"
            );
            assert_eq!(
                flags & GTF_READING != 0,
                r + w > 0,
                "step {step}: d{d} gref {gref}: GTF_reading {flags:#x} with {} maps",
                r + w
            );
        }
    }
}

fn grant_case(seed: u64) {
    let mut rng = Rng(seed);
    let mut fake = GrantFake {
        frames: BTreeMap::new(),
        foreign: BTreeMap::new(),
    };
    let mut tables = BTreeMap::new();
    for d in DOMS {
        tables.insert(d, GrantTable::new(d, 2, 32, &mut fake).expect("a table"));
    }
    let mut handles: Vec<(DomId, u32, u64)> = Vec::new();
    for step in 0..150 {
        match rng.below(6) {
            // The granter (re)writes an entry, as its guest may at any time;
            // an entry in use keeps its frame (a guest changing it then is
            // the granter's problem, not the pin's).
            0 => {
                let (d, gref) = (rng.pick(&DOMS), rng.below(16) as u32);
                let to = rng.pick(&DOMS);
                let mut flags = rng.pick(&[0, GTF_PERMIT_ACCESS, GTF_PERMIT_ACCESS | GTF_READONLY]);
                let (header, frame) = entry_words(&fake, d, gref);
                let in_use = header.load() as u16 & (GTF_READING | GTF_WRITING);
                if in_use != 0 {
                    flags = (header.load() as u16) & !(GTF_READING | GTF_WRITING);
                } else {
                    frame.store(rng.below(RAM_PAGES + 2) as u32);
                }
                header.store(u32::from(flags | in_use) | u32::from(to) << 16);
            }
            1 | 2 => {
                let (mapper, granter) = (rng.pick(&DOMS), rng.pick(&DOMS));
                let gfn = MAP_BASE + rng.below(24);
                let op = GnttabMapGrantRef {
                    host_addr: gfn << 12,
                    flags: rng.pick(&[GNTMAP_HOST_MAP, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0]),
                    ref_: rng.below(18) as u32,
                    dom: rng.pick(&[granter, xen::DOMID_SELF]),
                    ..Default::default()
                };
                if let Ok(h) = grant_table::map_grant_ref(mapper, &op, &mut tables, &mut fake) {
                    handles.push((mapper, h, gfn));
                }
            }
            3 | 4 if !handles.is_empty() => {
                let i = rng.below(handles.len() as u64) as usize;
                let (mapper, h, gfn) = handles[i];
                let addr = if rng.below(8) == 0 {
                    (gfn + 1) << 12
                } else {
                    gfn << 12
                };
                if grant_table::unmap_grant_ref(mapper, addr, h, &mut tables, &mut fake).is_ok()
                    && addr != 0
                {
                    handles.swap_remove(i);
                }
            }
            _ => {
                let (caller, other) = (rng.pick(&DOMS), rng.pick(&DOMS));
                let side = |rng: &mut Rng, gref: bool| GnttabCopyPtr {
                    u: if gref {
                        rng.below(18)
                    } else {
                        rng.below(RAM_PAGES + 2)
                    },
                    domid: if gref { other } else { xen::DOMID_SELF },
                    offset: rng.pick(&[0, 100, 4095]),
                    ..Default::default()
                };
                let flags = rng.below(4) as u16;
                let op = GnttabCopy {
                    source: side(&mut rng, flags & GNTCOPY_SOURCE_GREF != 0),
                    dest: side(&mut rng, flags & GNTCOPY_DEST_GREF != 0),
                    len: rng.pick(&[0, 1, 8, 4096]),
                    flags,
                    ..Default::default()
                };
                let _ = grant_table::copy(caller, &op, &mut tables, &mut fake);
            }
        }
        check_grants(&fake, &mut tables, step);
    }
    // Every domain dies: nothing mapped, nothing pinned is left.
    for d in DOMS {
        grant_table::release_domain(d, &mut tables, &mut fake);
        check_grants(&fake, &mut tables, 1000 + d as usize);
    }
    assert!(fake.foreign.is_empty(), "mappings left: {:?}", fake.foreign);
    for (&d, table) in tables.iter() {
        for gref in 0..18 {
            assert_eq!(table.active(gref), None, "d{d} gref {gref} still pinned");
        }
    }
}

/// 1000 random sequences of 150 grant operations between three domains.
#[test]
fn grant_sequences_keep_pins_and_mappings_balanced() {
    for_each_seed(0x6A47_0000, 1000, grant_case);
}
