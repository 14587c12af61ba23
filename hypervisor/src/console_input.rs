//! Serial console input, as Xen switches it: typing CTRL-a three times moves
//! the input to the next of the hypervisor itself, dom0 and each domU; the
//! bytes typed go to the domain that has it: dom0 reads them with
//! CONSOLEIO_read (and is told by VIRQ_CONSOLE), a domU finds them in its PV
//! console ring (and is told on its console port). While rxen has the
//! input, the keys are its debug keys (`schedule` serves them).

use alloc::collections::VecDeque;

use spin::Mutex;

pub use rxen_core::console_switch::{DebugKey, InputFocus, Typed};

/// Input typed for dom0 and not read yet (at most [`DOM0_BUFFER`] bytes).
static DOM0_INPUT: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());
/// Most bytes kept for dom0; older ones are dropped.
const DOM0_BUFFER: usize = 4096;

/// Queues `byte` for dom0.
pub fn push_dom0(byte: u8) {
    let mut input = DOM0_INPUT.lock();
    if input.len() >= DOM0_BUFFER {
        input.pop_front();
    }
    input.push_back(byte);
}

/// CONSOLEIO_read for dom0: takes up to `buf.len()` queued bytes.
pub fn read_dom0(buf: &mut [u8]) -> usize {
    let mut input = DOM0_INPUT.lock();
    let n = buf.len().min(input.len());
    for (slot, byte) in buf.iter_mut().zip(input.drain(..n)) {
        *slot = byte;
    }
    n
}
