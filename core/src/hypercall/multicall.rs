//! `multicall` (Xen's common/multicall.c): a batch of hypercalls from a
//! list in guest memory, each entry's result written back.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno;
use rxen_abi::xen;

use super::{call, Ctx, Next, Outcome};
use crate::guest_handle::GuestHandle;

/// Most multicall entries run per exit; the rest continues (Xen checks for
/// preemption before every entry but the first).
pub const MULTICALL_BATCH: u64 = 64;

/// `multicall(call_list, nr_calls)`: each entry's result is written back;
/// a shutdown ends the batch. At most [`MULTICALL_BATCH`] entries run per
/// exit, then the multicall continues with `call_list` advanced and
/// `nr_calls` reduced, as Xen's `do_multicall` does when preempted. An
/// entry that itself continues has its arguments rewritten in the guest's
/// list and the multicall continues at that entry (Xen copies the sub-call
/// continuation back the same way). An entry that blocks ends the batch:
/// the vCPU blocks and the rest of the list runs when it wakes (in Xen the
/// block raises the scheduler softirq, which preempts the multicall).
pub(super) fn multicall(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    let list = GuestHandle::<xen::MulticallEntry>::new(args[0]);
    let count = args[1] as u32 as u64;
    // The multicall's own continuation: the list from entry `index` on.
    let rest = |index: u64| match list.offset(index) {
        Ok(at) => {
            let mut next = args;
            next[0] = at.addr();
            next[1] = count.saturating_sub(index);
            Outcome::continuation(xen::HYPERVISOR_MULTICALL, next)
        }
        Err(e) => Outcome::error(e),
    };
    for index in 0..count {
        if index == MULTICALL_BATCH {
            return rest(index);
        }
        let handle = match list.offset(index) {
            Ok(handle) => handle,
            Err(e) => return Outcome::error(e),
        };
        let mut entry = match handle.read(ctx.env) {
            Ok(entry) => entry,
            Err(e) => return Outcome::error(e),
        };
        let args = [
            entry.args[0],
            entry.args[1],
            entry.args[2],
            entry.args[3],
            entry.args[4],
        ];
        // A nested multicall is refused per entry, as Xen does.
        let outcome = if entry.op == xen::HYPERVISOR_MULTICALL {
            Outcome::error(errno::EINVAL)
        } else {
            call(ctx, entry.op, args)
        };
        if let Next::Continuation { args } = outcome.next {
            // The entry continues: its new arguments go back to the list,
            // and the multicall resumes at this entry.
            entry.args[..5].copy_from_slice(&args);
            if let Err(e) = handle.write(ctx.env, &entry) {
                return Outcome::error(e);
            }
            return rest(index);
        }
        entry.result = outcome.ret as u64;
        if let Err(e) = handle.write(ctx.env, &entry) {
            return Outcome::error(e);
        }
        // index < count <= u32::MAX: no overflow.
        let next_index = index.saturating_add(1);
        let more = next_index < count;
        match outcome.next {
            Next::Continue | Next::Continuation { .. } => {}
            Next::Shutdown(_) => {
                return Outcome {
                    ret: 0,
                    next: outcome.next,
                }
            }
            Next::Block(deadline) if more => {
                if let Some(vcpu) = ctx.domain.vcpus.get_mut(ctx.vcpu) {
                    vcpu.blocked = Some(deadline);
                }
                return rest(next_index);
            }
            Next::Yield if more => return rest(next_index),
            other => {
                return Outcome {
                    ret: 0,
                    next: other,
                }
            }
        }
    }
    Outcome::value(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::CONSOLE_WRITE_BATCH;
    use crate::test_support::{call, call_to_end, domu, ret, FakeEnv, BAD, MEM};
    use rxen_abi::{sched, version};
    use zerocopy::FromZeros;

    #[test]
    fn multicall_writes_each_result_and_refuses_nesting() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let mut entries = [xen::MulticallEntry::new_zeroed(); 3];
        entries[0].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].op = xen::HYPERVISOR_MULTICALL;
        entries[2].op = xen::HYPERVISOR_XEN_VERSION;
        entries[2].args[0] = version::XENVER_EXTRAVERSION as u64;
        entries[2].args[1] = BAD;
        env.put(0x1000, &entries);
        let out = call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_MULTICALL,
            [0x1000, 3, 0, 0, 0],
        );
        assert_eq!(out.ret, 0);
        let back: [xen::MulticallEntry; 3] = env.get(0x1000);
        assert_eq!(back[0].result, 0x0004_0011);
        assert_eq!(back[1].result as i64, ret(errno::EINVAL));
        assert_eq!(back[2].result as i64, ret(errno::EFAULT));
        // A list running off guest memory faults.
        assert_eq!(
            call_to_end(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MULTICALL,
                [0x1000, u32::MAX as u64, 0, 0, 0]
            )
            .0
            .ret,
            ret(errno::EFAULT)
        );
        // The count is `unsigned int`: 2^32 + 1 is one call.
        let one = [0x1000, (1 << 32) + 1, 0, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_MULTICALL, one).ret,
            0
        );
    }

    #[test]
    fn a_multicall_continues_after_each_batch() {
        // Defect 4: 2^32 - 1 entries ran in one exit.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let list = 0x1000u64;
        let mut entries = vec![xen::MulticallEntry::new_zeroed(); 200];
        for e in &mut entries {
            e.op = xen::HYPERVISOR_XEN_VERSION;
            e.result = 0xAAAA;
        }
        for (i, e) in entries.iter().enumerate() {
            env.put(list + 64 * i as u64, e);
        }
        let nr = xen::HYPERVISOR_MULTICALL;
        let first = call(&mut d, &mut env, nr, [list, 200, 5, 6, 7]);
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [list + 64 * MULTICALL_BATCH, 200 - MULTICALL_BATCH, 5, 6, 7]
            }
        );
        let result = |env: &FakeEnv, i: u64| env.get::<xen::MulticallEntry>(list + 64 * i).result;
        assert_eq!(result(&env, MULTICALL_BATCH - 1), 0x0004_0011);
        assert_eq!(result(&env, MULTICALL_BATCH), 0xAAAA, "not run yet");
        let (last, rounds) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [list + 64 * MULTICALL_BATCH, 200 - MULTICALL_BATCH, 0, 0, 0],
        );
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 2, "200 entries: four exits in all");
        assert!((0..200).all(|i| result(&env, i) == 0x0004_0011));
        // 2^32 - 1 entries: the list runs off the guest's memory after at
        // most 1024 of them; -EFAULT, each exit bounded.
        let (out, rounds) = call_to_end(&mut d, &mut env, nr, [list, u32::MAX as u64, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
        let entries_in_memory = (MEM as u64 - list) / 64;
        assert_eq!(rounds.len() as u64, entries_in_memory / MULTICALL_BATCH);
        assert_eq!(rounds[0][1], u32::MAX as u64 - MULTICALL_BATCH);
        // A list at the top of the address space faults, never wraps.
        let top = u64::MAX - 64 * 10;
        let (out, _) = call_to_end(&mut d, &mut env, nr, [top, 100, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
    }

    #[test]
    fn a_continuing_entry_resumes_the_multicall_at_that_entry() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let text: Vec<u8> = (0..10_000u32).map(|i| b'A' + (i % 26) as u8).collect();
        env.mem[0x4000..0x4000 + text.len()].copy_from_slice(&text);
        let list = 0x1000u64;
        let mut entries = [xen::MulticallEntry::new_zeroed(); 3];
        entries[0].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].op = xen::HYPERVISOR_CONSOLE_IO;
        entries[1].args[..3].copy_from_slice(&[xen::CONSOLEIO_WRITE as u64, 10_000, 0x4000]);
        entries[2].op = xen::HYPERVISOR_XEN_VERSION;
        env.put(list, &entries);
        let nr = xen::HYPERVISOR_MULTICALL;
        let first = call(&mut d, &mut env, nr, [list, 3, 0, 0, 0]);
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [list + 64, 2, 0, 0, 0]
            },
            "the multicall resumes at the entry that continues"
        );
        let entry: xen::MulticallEntry = env.get(list + 64);
        assert_eq!(entry.op, xen::HYPERVISOR_CONSOLE_IO);
        let batch = CONSOLE_WRITE_BATCH;
        assert_eq!(
            entry.args[..3],
            [xen::CONSOLEIO_WRITE as u64, 10_000 - batch, 0x4000 + batch],
            "the entry's arguments are its continuation's"
        );
        let (last, rounds) = call_to_end(&mut d, &mut env, nr, [list + 64, 2, 0, 0, 0]);
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 1);
        assert_eq!(env.console, text);
        let back: [xen::MulticallEntry; 3] = env.get(list);
        assert_eq!(
            [back[0].result, back[1].result, back[2].result],
            [0x0004_0011, 0, 0x0004_0011]
        );
    }

    #[test]
    fn a_blocking_entry_ends_the_multicall_round() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let list = 0x1000u64;
        let mut entries = [xen::MulticallEntry::new_zeroed(); 2];
        entries[0].op = xen::HYPERVISOR_SCHED_OP;
        entries[0].args[0] = sched::SCHEDOP_BLOCK as u64;
        entries[1].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].result = 0xAAAA;
        env.put(list, &entries);
        let nr = xen::HYPERVISOR_MULTICALL;
        let out = call(&mut d, &mut env, nr, [list, 2, 0, 0, 0]);
        assert_eq!(
            out.next,
            Next::Continuation {
                args: [list + 64, 1, 0, 0, 0]
            }
        );
        assert_eq!(d.vcpus[0].blocked, Some(None), "the vCPU blocks first");
        assert_eq!(env.get::<xen::MulticallEntry>(list + 64).result, 0xAAAA);
        // Blocking in the last entry blocks with the multicall's result.
        let out = call(&mut d, &mut env, nr, [list, 1, 0, 0, 0]);
        assert_eq!(out.next, Next::Block(None));
        assert_eq!(out.ret, 0);
    }
}
