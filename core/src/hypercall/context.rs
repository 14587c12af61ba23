//! The one context a hypercall handler gets ([`Ctx`]): the calling domain,
//! the calling vCPU and the platform, through which it reaches guest
//! memory, the clock, the console, host facts, the caller's physical map
//! and the machine's other domains (the traits of [`crate::platform`]).
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use crate::domain::Domain;
use crate::platform::GuestEnv;

/// One hypercall's context: who calls, and what the handler can reach.
pub struct Ctx<'a> {
    /// The calling domain.
    pub domain: &'a mut Domain,
    /// The calling vCPU (one that exists in `domain`, checked by
    /// [`super::dispatch`]).
    pub vcpu: usize,
    /// The platform for the calling vCPU: guest memory, clock, console,
    /// host facts, physmap changes and the domain registry
    /// ([`crate::platform::Domains`]).
    pub env: &'a mut dyn GuestEnv,
}

impl<'a> Ctx<'a> {
    /// The context of vCPU `vcpu` of `domain` over `env`.
    pub fn new(domain: &'a mut Domain, vcpu: usize, env: &'a mut dyn GuestEnv) -> Self {
        Self { domain, vcpu, env }
    }
}
