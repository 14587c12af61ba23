//! `console_io` (Xen's drivers/char/console.c): the hypervisor console,
//! written by any guest, read by the privileged one.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec;

use rxen_abi::errno;
use rxen_abi::xen;

use super::{from_result, Ctx, Outcome};

/// Largest console write copied per chunk.
const CONSOLE_CHUNK: usize = 256;

/// Most bytes of a console write emitted per exit; the rest continues
/// (Xen's `guest_console_write` preempts between its 127-byte chunks).
pub const CONSOLE_WRITE_BATCH: u64 = 4096;

/// `console_io(cmd, count, buffer)`. Xen takes `unsigned int` for both
/// `cmd` and `count`. A write emits at most [`CONSOLE_WRITE_BATCH`] bytes per
/// exit and continues with the rest, as Xen's `guest_console_write` does;
/// the part before a fault is written, then the call fails with -EFAULT.
pub(super) fn do_console_io(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    console_io(ctx, args)
}

fn console_io(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    let (domain, env) = (&*ctx.domain, &mut *ctx.env);
    let (cmd, count, buffer) = (args[0] as u32, args[1] as u32 as u64, args[2]);
    match cmd {
        xen::CONSOLEIO_WRITE => {
            let mut done = 0u64;
            let mut chunk = [0u8; CONSOLE_CHUNK];
            while done < count {
                let Some(at) = buffer.checked_add(done) else {
                    return Outcome::error(errno::EFAULT);
                };
                if done == CONSOLE_WRITE_BATCH {
                    let mut next = args;
                    next[1] = count.saturating_sub(done);
                    next[2] = at;
                    return Outcome::continuation(xen::HYPERVISOR_CONSOLE_IO, next);
                }
                let n = count.saturating_sub(done).min(CONSOLE_CHUNK as u64) as usize;
                let Some(part) = chunk.get_mut(..n) else {
                    return Outcome::error(errno::EFAULT);
                };
                if let Err(e) = env.copy_in(at, part) {
                    return Outcome::error(e);
                }
                env.console_write(domain.id, part);
                // n >= 1 while done < count: the loop ends.
                done = done.saturating_add(n as u64);
            }
            Outcome::value(0)
        }
        xen::CONSOLEIO_READ => {
            if !domain.privileged {
                return Outcome::error(errno::EPERM);
            }
            let mut data = vec![0u8; count.min(4096) as usize];
            let n = env.console_read(&mut data);
            let data = data.get(..n).unwrap_or(&[]);
            from_result(env.copy_out(buffer, data).map(|_| data.len() as i64))
        }
        _ => Outcome::error(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::Next;
    use crate::test_support::{call, call_to_end, domu, ret, FakeEnv, BAD, MEM};

    #[test]
    fn console_io_copies_checks_and_refuses() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        env.mem[0x300..0x305].copy_from_slice(b"hello");
        let nr = xen::HYPERVISOR_CONSOLE_IO;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_WRITE as u64, 5, 0x300, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.console, b"hello");
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_WRITE as u64, 5, BAD, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        // A count running past the end of guest memory faults after the part that exists.
        let (huge, _) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [xen::CONSOLEIO_WRITE as u64, u64::MAX, 0x300, 0, 0],
        );
        assert_eq!(huge.ret, ret(errno::EFAULT));
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_READ as u64, 5, 0x300, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [2, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn a_console_write_continues_after_each_batch() {
        // Defect 4: a write of any length ran to its end in one exit.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        env.mem[0x2000..0x2000 + text.len()].copy_from_slice(&text);
        let nr = xen::HYPERVISOR_CONSOLE_IO;
        let write = xen::CONSOLEIO_WRITE as u64;
        let first = call(&mut d, &mut env, nr, [write, 10_000, 0x2000, 7, 8]);
        let batch = CONSOLE_WRITE_BATCH;
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [write, 10_000 - batch, 0x2000 + batch, 7, 8]
            }
        );
        assert_eq!(env.console.len() as u64, batch, "one batch per exit");
        let (last, rounds) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [write, 10_000 - batch, 0x2000 + batch, 0, 0],
        );
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 1, "10000 bytes: three exits in all");
        assert_eq!(env.console, text);
        // Xen takes `unsigned int count`: 2^32 + 5 writes five bytes.
        env.console.clear();
        let out = call(&mut d, &mut env, nr, [write, (1 << 32) + 5, 0x2000, 0, 0]);
        assert_eq!(out, Outcome::value(0));
        assert_eq!(env.console, b"abcde");
        // 1 GiB from a 64 KiB guest: what exists is written, then -EFAULT,
        // each exit bounded.
        env.console.clear();
        let (out, rounds) = call_to_end(&mut d, &mut env, nr, [write, 1 << 30, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
        assert_eq!(env.console.len(), MEM);
        assert_eq!(rounds.len() as u64, MEM as u64 / batch);
        // A buffer at the top of the address space faults, never wraps.
        let top = u64::MAX - 100;
        let (out, _) = call_to_end(&mut d, &mut env, nr, [write, 1 << 20, top, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
    }
}
