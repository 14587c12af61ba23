//! Where serial console input goes, as Xen switches it: typing the switch
//! character (CTRL-a) three times in a row moves the input to the next of the
//! hypervisor itself and the live domains; switch characters are swallowed.
//! While the hypervisor has the input, typed keys are its debug keys (Xen's
//! keyhandlers). The hypervisor reads the UART and delivers; this is the
//! decision.

use crate::domain::DomId;

/// The switch character (Xen's default `conswitch=a`: CTRL-a).
pub const SWITCH_CHAR: u8 = 0x01;

/// Where serial input goes, and the switch characters seen in a row.
pub struct InputFocus {
    /// The domain that gets input (None: the hypervisor, which ignores it).
    pub domain: Option<DomId>,
    switch_count: u8,
}

/// What to do with one typed byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Give it to the domain with the focus (None: dropped).
    Byte(Option<DomId>, u8),
    /// The third switch character: move the focus on.
    Switch,
    /// Swallowed (a first or second switch character).
    Nothing,
}

impl InputFocus {
    /// Input for `domain` first.
    pub const fn new(domain: Option<DomId>) -> Self {
        Self {
            domain,
            switch_count: 0,
        }
    }

    /// Classifies a typed byte (Xen swallows switch characters, three in a
    /// row switch).
    pub fn typed(&mut self, byte: u8) -> Typed {
        if byte == SWITCH_CHAR {
            self.switch_count += 1;
            if self.switch_count == 3 {
                self.switch_count = 0;
                return Typed::Switch;
            }
            return Typed::Nothing;
        }
        self.switch_count = 0;
        Typed::Byte(self.domain, byte)
    }

    /// Moves the focus to the next of: the hypervisor, then `domains` in
    /// order (the IDs of the live domains, ascending).
    pub fn switch(&mut self, domains: &[DomId]) {
        self.domain = match self.domain {
            None => domains.first().copied(),
            Some(current) => domains.iter().copied().find(|&d| d > current),
        };
    }
}

/// What a debug key typed while rxen has the input does (Xen's
/// `keyhandler.c`; rxen has only a few of Xen's keys, under Xen's letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugKey {
    /// `h`: list the debug keys.
    Help,
    /// `p`: print every domain's exit profile (Xen's `p` prints its
    /// performance counters).
    ExitStats,
    /// `P`: reset the exit profiles (Xen's `P` resets its counters).
    ResetExitStats,
    /// `g`: print each domain's grant table usage (Xen's `g`).
    GrantTables,
    /// `e`: print each domain's event channels in use (Xen's `e`).
    EventChannels,
    /// `l`: print the machine lock's profile (Xen's `l` prints its lock
    /// profile).
    LockProfile,
    /// `L`: reset the lock profile (Xen's `L`).
    ResetLockProfile,
}

impl DebugKey {
    /// Every key, with its letter and what it does (for `h`).
    pub const ALL: [(u8, DebugKey, &'static str); 7] = [
        (b'h', DebugKey::Help, "print this help"),
        (
            b'p',
            DebugKey::ExitStats,
            "print each domain's exits by reason (count, time)",
        ),
        (b'P', DebugKey::ResetExitStats, "reset the exit counters"),
        (
            b'g',
            DebugKey::GrantTables,
            "print grant table usage (frames, entries in use, mappings)",
        ),
        (
            b'e',
            DebugKey::EventChannels,
            "dump evtchn info (ports in use)",
        ),
        (
            b'l',
            DebugKey::LockProfile,
            "print lock profile info (the machine lock: holds, waits, local exits)",
        ),
        (b'L', DebugKey::ResetLockProfile, "reset lock profile info"),
    ];

    /// The debug key typed as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<DebugKey> {
        Self::ALL
            .iter()
            .find(|(key, _, _)| *key == byte)
            .map(|(_, k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_keys_are_xens_letters_and_others_are_none() {
        assert_eq!(DebugKey::from_byte(b'p'), Some(DebugKey::ExitStats));
        assert_eq!(DebugKey::from_byte(b'P'), Some(DebugKey::ResetExitStats));
        assert_eq!(DebugKey::from_byte(b'h'), Some(DebugKey::Help));
        assert_eq!(DebugKey::from_byte(b'g'), Some(DebugKey::GrantTables));
        assert_eq!(DebugKey::from_byte(b'e'), Some(DebugKey::EventChannels));
        assert_eq!(DebugKey::from_byte(b'l'), Some(DebugKey::LockProfile));
        assert_eq!(DebugKey::from_byte(b'L'), Some(DebugKey::ResetLockProfile));
        assert_eq!(DebugKey::from_byte(b'x'), None);
        assert_eq!(DebugKey::from_byte(SWITCH_CHAR), None);
        // One entry per letter.
        for (key, _, _) in DebugKey::ALL {
            let n = DebugKey::ALL.iter().filter(|(k, _, _)| *k == key).count();
            assert_eq!(n, 1, "{}", key as char);
        }
    }

    #[test]
    fn three_switch_characters_in_a_row_switch() {
        let mut focus = InputFocus::new(Some(1));
        assert_eq!(focus.typed(b'x'), Typed::Byte(Some(1), b'x'));
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Switch);
        // Two, then something else: swallowed, and the count starts again.
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(focus.typed(b'y'), Typed::Byte(Some(1), b'y'));
        assert_eq!(focus.typed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(focus.typed(b'z'), Typed::Byte(Some(1), b'z'));
    }

    #[test]
    fn the_focus_cycles_through_the_hypervisor_and_the_domains() {
        let mut focus = InputFocus::new(Some(0));
        let live = [0, 1, 3];
        focus.switch(&live);
        assert_eq!(focus.domain, Some(1));
        focus.switch(&live);
        assert_eq!(focus.domain, Some(3));
        focus.switch(&live);
        assert_eq!(focus.domain, None, "then the hypervisor");
        assert_eq!(focus.typed(b'a'), Typed::Byte(None, b'a'));
        focus.switch(&live);
        assert_eq!(focus.domain, Some(0));
        // A domain that went away: on to the next live one.
        let mut focus = InputFocus::new(Some(2));
        focus.switch(&live);
        assert_eq!(focus.domain, Some(3));
        // Nothing live: the hypervisor keeps it.
        focus.switch(&[]);
        assert_eq!(focus.domain, None);
        focus.switch(&[]);
        assert_eq!(focus.domain, None);
    }
}
