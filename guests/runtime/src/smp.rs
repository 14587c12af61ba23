//! Secondary vCPUs: `VCPUOP_initialise` with a 64-bit `vcpu_hvm_context` that starts
//! the vCPU in the runtime on its own stack, `VCPUOP_up`, `VCPUOP_down`, `VCPUOP_is_up`.
//!
//! A secondary vCPU runs `main(vcpu)` with interrupts off and takes itself down when it
//! returns. Its events arrive on the same callback vector; the upcall handler uses its
//! own `vcpu_info` (see [`crate::events`]). [`crate::time::now`] reads vCPU 0's pvclock
//! on every vCPU.

use crate::hypercall::{mut_ptr, vcpu_op};
use crate::xen::vcpu;

pub use crate::boot::{current_vcpu, MAX_VCPUS};

/// `VCPUOP_initialise` of `vcpu` to run `main(vcpu)`: 0 or the errno (`-EINVAL` here
/// for a vCPU the runtime has no stack for).
pub fn initialise(vcpu: u32, main: fn(u32)) -> i64 {
    let Some(mut ctx) = crate::boot::secondary_context(vcpu, main) else {
        return crate::err::EINVAL;
    };
    // SAFETY: `ctx` is a `vcpu_hvm_context`, only read by Xen.
    unsafe { vcpu_op(vcpu::INITIALISE, u64::from(vcpu), mut_ptr(&mut ctx)) }
}

/// `VCPUOP_up` of `vcpu`: 0 or the errno.
pub fn up(vcpu: u32) -> i64 {
    // SAFETY: no argument.
    unsafe { vcpu_op(vcpu::UP, u64::from(vcpu), 0) }
}

/// `VCPUOP_down` of `vcpu`: 0 or the errno.
pub fn down(vcpu: u32) -> i64 {
    // SAFETY: no argument.
    unsafe { vcpu_op(vcpu::DOWN, u64::from(vcpu), 0) }
}

/// `VCPUOP_is_up` of `vcpu`: 1, 0, or the errno.
pub fn is_up(vcpu: u32) -> i64 {
    // SAFETY: no argument.
    unsafe { vcpu_op(vcpu::IS_UP, u64::from(vcpu), 0) }
}
