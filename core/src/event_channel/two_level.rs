//! Event channels, 2-level ABI (Xen's common/event_2l.c): one pending and
//! one mask bit per port in the shared-info page, and a selector word per
//! vCPU in its `vcpu_info`; [`TwoLevelOps`] is the ABI's [`PortOps`].
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use rxen_abi::xen;

use super::{mark_events_pending, EventChannels, PortOps};
use crate::domain::Domain;
use crate::hypercall::shared_info::{with_vcpu_info, PENDING_SEL_AT};
use crate::hypercall::{with_shared_info, GuestEnv};
use crate::shared_page::SharedPage;

/// The 2-level ABI's port operations (Xen's `evtchn_port_ops_2l`).
pub struct TwoLevelOps;

impl PortOps for TwoLevelOps {
    fn nr_channels(&self) -> u32 {
        EVTCHN_2L_NR_CHANNELS
    }

    fn init(&self, _events: &mut EventChannels, _port: u32) -> Result<(), Errno> {
        // Nothing per port beyond the bitmaps.
        Ok(())
    }

    fn set_pending(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        let Some(p) = domain.events.port(port) else {
            return;
        };
        let word = with_shared_info(env, |page| set_pending(&page, port));
        if let Some(word) = word.flatten() {
            notify(domain, p.vcpu as usize, word, env);
        }
    }

    fn clear_pending(&self, _domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        with_shared_info(env, |page| clear_pending(&page, port));
    }

    fn unmask(&self, domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
        let Some(p) = domain.events.port(port) else {
            return;
        };
        if let Some(Some(word)) = with_shared_info(env, |page| unmask(&page, port)) {
            notify(domain, p.vcpu as usize, word, env);
        }
    }

    fn is_pending(&self, _domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool {
        with_shared_info(env, |page| is_pending(&page, port)).unwrap_or(false)
    }

    fn is_masked(&self, _domain: &Domain, env: &mut dyn GuestEnv, port: u32) -> bool {
        with_shared_info(env, |page| is_masked(&page, port)).unwrap_or(false)
    }

    fn set_priority(
        &self,
        _events: &mut EventChannels,
        _port: u32,
        _priority: u32,
    ) -> Result<(), Errno> {
        // The 2-level ABI has no priorities (Xen: no `set_priority`).
        Err(errno::ENOSYS)
    }
}

/// Tells vCPU `vcpu` that selector word `word` has events, as Xen's
/// `evtchn_2l_set_pending`: the selector bit with one atomic operation and,
/// when it was clear, `evtchn_upcall_pending` and the end of its block.
fn notify(domain: &mut Domain, vcpu: usize, word: usize, env: &mut dyn GuestEnv) {
    let was_set = with_vcpu_info(domain, vcpu, env, |page, base| {
        page.test_and_set_bit(base.saturating_add(PENDING_SEL_AT), word)
    })
    .flatten();
    if was_set != Some(true) {
        mark_events_pending(domain, vcpu, env);
    }
}

/// Byte offset of `evtchn_pending` in the shared-info page.
const PENDING_AT: usize = core::mem::offset_of!(xen::SharedInfo, evtchn_pending);
/// Byte offset of `evtchn_mask` in the shared-info page.
const MASK_AT: usize = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);

/// Whether `port` has a bit in the 2-level bitmaps (4096 ports): every
/// index into the shared-info page is checked against it, so a port of
/// another ABI never reaches past the bitmaps.
fn in_bitmap(port: u32) -> bool {
    port < EVTCHN_2L_NR_CHANNELS
}

/// Sets `port` pending in the shared-info page, with one atomic bit
/// operation as Xen's `evtchn_2l_set_pending`. Returns the selector word to
/// signal to the notified vCPU when the port was not pending before and is
/// not masked; `None` when nothing more is due (a masked event only sets
/// its pending bit) or the port has no bit.
pub fn set_pending(page: &SharedPage<'_>, port: u32) -> Option<usize> {
    if !in_bitmap(port) {
        return None;
    }
    if page.test_and_set_bit(PENDING_AT, port as usize)? {
        return None;
    }
    (!page.test_bit(MASK_AT, port as usize)?).then_some(port as usize / 64)
}

/// EVTCHNOP_unmask (Xen's `evtchn_2l_unmask`): clears the mask bit.
/// Returns the selector word to signal when the port was masked and is
/// pending (unmasking delivers it, as on Xen).
pub fn unmask(page: &SharedPage<'_>, port: u32) -> Option<usize> {
    if !in_bitmap(port) {
        return None;
    }
    let was_masked = page.test_and_clear_bit(MASK_AT, port as usize)?;
    (was_masked && page.test_bit(PENDING_AT, port as usize)?).then_some(port as usize / 64)
}

/// Clears `port`'s pending bit (a closed port has nothing pending, as Xen's
/// `evtchn_2l_clear_pending`).
pub fn clear_pending(page: &SharedPage<'_>, port: u32) {
    if in_bitmap(port) {
        let _ = page.test_and_clear_bit(PENDING_AT, port as usize);
    }
}

/// Whether `port` is pending in the shared-info page.
pub fn is_pending(page: &SharedPage<'_>, port: u32) -> bool {
    in_bitmap(port) && page.test_bit(PENDING_AT, port as usize) == Some(true)
}

/// Whether `port` is masked in the shared-info page.
pub fn is_masked(page: &SharedPage<'_>, port: u32) -> bool {
    in_bitmap(port) && page.test_bit(MASK_AT, port as usize) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxen_abi::event_channel::EVTCHN_FIFO_NR_CHANNELS;

    #[test]
    fn masked_events_only_set_pending_until_unmasked() {
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        page.test_and_set_bit(MASK_AT, 67);
        assert_eq!(set_pending(&page, 67), None, "masked: no upcall");
        assert!(is_pending(&page, 67));
        assert_eq!(
            unmask(&page, 67),
            Some(1),
            "unmasking a pending port delivers it"
        );
        assert_eq!(unmask(&page, 67), None, "not masked any more");
        assert_eq!(set_pending(&page, 67), None, "already pending: nothing new");
        assert_eq!(
            unmask(&page, 5),
            None,
            "unmasking an idle port does nothing"
        );
        assert_eq!(set_pending(&page, 5), Some(0));
        clear_pending(&page, 5);
        assert!(!is_pending(&page, 5));
    }

    #[test]
    fn ports_past_the_bitmaps_touch_nothing() {
        // A port of the FIFO ABI (>= 4096) has no 2-level bit: before the
        // check, bit 4096 of the pending bitmap was bit 0 of the mask bitmap
        // and larger ports ran past the page (issue 14, defect 2).
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        for port in [
            EVTCHN_2L_NR_CHANNELS,
            4097,
            40_000,
            EVTCHN_FIFO_NR_CHANNELS,
            u32::MAX,
        ] {
            assert_eq!(set_pending(&page, port), None);
            assert_eq!(unmask(&page, port), None);
            clear_pending(&page, port);
            assert!(!is_pending(&page, port));
            assert!(!is_masked(&page, port));
        }
        assert!(words
            .iter()
            .all(|w| w.load(core::sync::atomic::Ordering::SeqCst) == 0));
    }

    #[test]
    fn a_mask_the_guest_sets_meanwhile_is_not_lost() {
        // The guest masks ports with `lock bts` while the hypervisor unmasks
        // another port of the same word: with a read-modify-write of plain
        // bytes the guest's mask bits could vanish (issue 14, defect 11).
        let words = crate::shared_page::zeroed_words();
        let page = SharedPage::new(&words);
        let done = std::thread::scope(|s| {
            let guest = s.spawn(|| {
                for port in 2..64 {
                    page.test_and_set_bit(MASK_AT, port);
                }
            });
            for _ in 0..20_000 {
                page.test_and_set_bit(MASK_AT, 1);
                unmask(&page, 1);
            }
            guest.join()
        });
        assert!(done.is_ok());
        assert!((2..64).all(|port| is_masked(&page, port)));
    }
}
