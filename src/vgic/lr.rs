//! Where a virtual interrupt goes among a CPU's list registers: the placement policy of
//! the virtual GIC over the hardware format in `arch::aarch64::lr`.

use crate::arch::aarch64::lr::{ListReg, LrState};

/// Where [`place`] put an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In register `index`: a free one, or (software interrupts) the entry already there
    /// for the same INTID and source, merged with edge semantics. `write` says whether the
    /// register changed and must be written back.
    Placed { index: usize, write: bool },
    /// In register `index`, taken from `old`, a lower-priority interrupt that was only
    /// pending, which goes back to where it came from (the forwarded queue, or the
    /// distributor model) for a later flush.
    Evicted { index: usize, old: ListReg },
    /// Every register holds something as urgent or active: try again at the next refill.
    NoRoom,
}

/// Puts `new` (state Pending) into the snapshot `lrs` of a CPU's list registers, the
/// caller writing back what changed. Reclaiming the lowest-priority entry that is only
/// pending (never an active one, which the guest is handling) keeps the most urgent
/// interrupts in the registers whatever order they are placed in: the virtual CPU
/// interface itself picks the highest-priority register. `may_evict_hw`: whether a
/// forwarded interrupt may be reclaimed (its owner has room to queue it again).
pub fn place(lrs: &mut [ListReg], new: ListReg, may_evict_hw: bool) -> Placement {
    if new.pintid.is_none() {
        let same =
            |lr: &ListReg| !lr.is_free() && lr.pintid.is_none() && lr.vintid == new.vintid && lr.source == new.source;
        if let Some(index) = lrs.iter().position(same) {
            let write = lrs[index].state == LrState::Active;
            if write {
                lrs[index].state = LrState::PendingActive;
            }
            return Placement::Placed { index, write };
        }
    }
    if let Some(index) = lrs.iter().position(ListReg::is_free) {
        lrs[index] = new;
        return Placement::Placed { index, write: true };
    }
    let victim = lrs
        .iter()
        .enumerate()
        .filter(|(_, lr)| lr.state == LrState::Pending && lr.priority > new.priority)
        .filter(|(_, lr)| may_evict_hw || lr.pintid.is_none())
        .max_by_key(|(_, lr)| lr.priority)
        .map(|(i, _)| i);
    match victim {
        Some(index) => {
            let old = core::mem::replace(&mut lrs[index], new);
            Placement::Evicted { index, old }
        }
        None => Placement::NoRoom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgi(intid: u32, priority: u8, state: LrState) -> ListReg {
        ListReg { vintid: intid, pintid: None, priority, state, group1: true, source: 0 }
    }

    fn forwarded(intid: u32, priority: u8, state: LrState) -> ListReg {
        ListReg { vintid: intid, pintid: Some(intid), priority, state, group1: true, source: 0 }
    }

    #[test]
    fn a_free_register_takes_the_interrupt() {
        let mut lrs = [sgi(1, 0x80, LrState::Active), ListReg::empty()];
        assert_eq!(
            place(&mut lrs, forwarded(27, 0xA0, LrState::Pending), true),
            Placement::Placed { index: 1, write: true }
        );
        assert_eq!(lrs[1].pintid, Some(27));
    }

    #[test]
    fn an_sgi_already_listed_merges_and_an_active_one_becomes_pending_again() {
        let mut lrs = [sgi(3, 0x80, LrState::Pending), sgi(4, 0x80, LrState::Active), ListReg::empty()];
        assert_eq!(place(&mut lrs, sgi(3, 0x80, LrState::Pending), true), Placement::Placed { index: 0, write: false });
        assert_eq!(place(&mut lrs, sgi(4, 0x80, LrState::Pending), true), Placement::Placed { index: 1, write: true });
        assert_eq!(lrs[1].state, LrState::PendingActive);
        assert!(lrs[2].is_free(), "merging takes no register");
        let mut other_source = sgi(3, 0x80, LrState::Pending);
        other_source.source = 1;
        assert_eq!(place(&mut lrs, other_source, true), Placement::Placed { index: 2, write: true });
    }

    #[test]
    fn a_full_set_gives_up_its_least_urgent_pending_entry() {
        let mut lrs = [sgi(1, 0x40, LrState::Pending), sgi(2, 0xC0, LrState::Pending), sgi(3, 0xF0, LrState::Active)];
        let urgent = sgi(9, 0x20, LrState::Pending);
        assert_eq!(place(&mut lrs, urgent, true), Placement::Evicted { index: 1, old: sgi(2, 0xC0, LrState::Pending) });
        assert_eq!(lrs[1], urgent);
        // Nothing left that is pending and less urgent than 0x40: equal priority stays.
        assert_eq!(place(&mut lrs, sgi(10, 0x40, LrState::Pending), true), Placement::NoRoom);
    }

    #[test]
    fn forwarded_entries_are_reclaimed_only_when_allowed() {
        let mut lrs = [forwarded(40, 0xE0, LrState::Pending)];
        assert_eq!(place(&mut lrs, sgi(1, 0x10, LrState::Pending), false), Placement::NoRoom);
        assert_eq!(
            place(&mut lrs, sgi(1, 0x10, LrState::Pending), true),
            Placement::Evicted { index: 0, old: forwarded(40, 0xE0, LrState::Pending) }
        );
    }
}
