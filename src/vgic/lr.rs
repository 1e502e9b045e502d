//! List registers: how a virtual interrupt is presented to the GIC's virtual CPU
//! interface. One format-neutral [`ListReg`] with encoders for GICv3's ICH_LR<n>_EL2
//! (Arm IHI 0069H §12.5.8) and GICv2's GICH_LR<n> (Arm IHI 0048B §5.3.8).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    Invalid,
    Pending,
    Active,
    PendingActive,
}

impl LrState {
    fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b00 => LrState::Invalid,
            0b01 => LrState::Pending,
            0b10 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    fn bits(self) -> u64 {
        match self {
            LrState::Invalid => 0b00,
            LrState::Pending => 0b01,
            LrState::Active => 0b10,
            LrState::PendingActive => 0b11,
        }
    }
}

/// One list-register entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListReg {
    pub vintid: u32,
    /// The physical interrupt a guest EOI deactivates (the HW bit), if any.
    pub pintid: Option<u32>,
    pub priority: u8,
    pub state: LrState,
    pub group1: bool,
    /// GICv2 only: the CPU that sent an SGI (GICH_LR.CPUID).
    pub source: u8,
}

impl ListReg {
    pub const fn empty() -> Self {
        // All zeroes (an all-zero register is an empty one in both formats), so an array
        // of them is cheap to make.
        ListReg { vintid: 0, pintid: None, priority: 0, state: LrState::Invalid, group1: false, source: 0 }
    }

    pub fn is_free(&self) -> bool {
        self.state == LrState::Invalid
    }
}

// ICH_LR<n>_EL2 fields.
const V3_VINTID_MASK: u64 = 0xFFFF_FFFF;
const V3_PINTID_SHIFT: u64 = 32;
const V3_PINTID_MASK: u64 = 0x1FFF;
const V3_PRIORITY_SHIFT: u64 = 48;
const V3_GROUP: u64 = 1 << 60;
const V3_HW: u64 = 1 << 61;
const V3_STATE_SHIFT: u64 = 62;

impl ListReg {
    pub fn to_v3(&self) -> u64 {
        let mut lr = u64::from(self.vintid) & V3_VINTID_MASK;
        if let Some(p) = self.pintid {
            lr |= V3_HW | ((u64::from(p) & V3_PINTID_MASK) << V3_PINTID_SHIFT);
        }
        if self.group1 {
            lr |= V3_GROUP;
        }
        lr | (u64::from(self.priority) << V3_PRIORITY_SHIFT) | (self.state.bits() << V3_STATE_SHIFT)
    }

    pub fn from_v3(lr: u64) -> Self {
        ListReg {
            vintid: (lr & V3_VINTID_MASK) as u32,
            pintid: (lr & V3_HW != 0).then_some(((lr >> V3_PINTID_SHIFT) & V3_PINTID_MASK) as u32),
            priority: (lr >> V3_PRIORITY_SHIFT) as u8,
            state: LrState::from_bits(lr >> V3_STATE_SHIFT),
            group1: lr & V3_GROUP != 0,
            source: 0,
        }
    }
}

// GICH_LR<n> fields.
const V2_VIRTUAL_ID_MASK: u32 = 0x3FF;
const V2_PHYSICAL_ID_SHIFT: u32 = 10;
const V2_CPUID_SHIFT: u32 = 10;
const V2_CPUID_MASK: u32 = 0b111;
/// GICv2 keeps the top five bits of the 8-bit priority.
const V2_PRIORITY_SHIFT: u32 = 23;
const V2_PRIORITY_DROP_BITS: u32 = 3;
const V2_STATE_SHIFT: u32 = 28;
const V2_GROUP1: u32 = 1 << 30;
const V2_HW: u32 = 1 << 31;

impl ListReg {
    pub fn to_v2(&self) -> u32 {
        let mut lr = self.vintid & V2_VIRTUAL_ID_MASK;
        match self.pintid {
            Some(p) => lr |= V2_HW | ((p & V2_VIRTUAL_ID_MASK) << V2_PHYSICAL_ID_SHIFT),
            None => lr |= (u32::from(self.source) & V2_CPUID_MASK) << V2_CPUID_SHIFT,
        }
        if self.group1 {
            lr |= V2_GROUP1;
        }
        let priority = u32::from(self.priority) >> V2_PRIORITY_DROP_BITS;
        lr | (priority << V2_PRIORITY_SHIFT) | ((self.state.bits() as u32) << V2_STATE_SHIFT)
    }

    pub fn from_v2(lr: u32) -> Self {
        let hw = lr & V2_HW != 0;
        ListReg {
            vintid: lr & V2_VIRTUAL_ID_MASK,
            pintid: hw.then_some((lr >> V2_PHYSICAL_ID_SHIFT) & V2_VIRTUAL_ID_MASK),
            priority: (((lr >> V2_PRIORITY_SHIFT) & 0x1F) << V2_PRIORITY_DROP_BITS) as u8,
            state: LrState::from_bits(u64::from(lr >> V2_STATE_SHIFT)),
            group1: lr & V2_GROUP1 != 0,
            source: if hw { 0 } else { ((lr >> V2_CPUID_SHIFT) & V2_CPUID_MASK) as u8 },
        }
    }
}

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

    #[test]
    fn v3_hardware_interrupt_round_trip() {
        let lr =
            ListReg { vintid: 27, pintid: Some(27), priority: 0xA0, state: LrState::Pending, group1: true, source: 0 };
        let raw = lr.to_v3();
        assert_eq!(raw, (0b01 << 62) | (1 << 61) | (1 << 60) | (0xA0 << 48) | (27 << 32) | 27);
        assert_eq!(ListReg::from_v3(raw), lr);
    }

    #[test]
    fn v2_sgi_carries_its_source() {
        let lr = ListReg { vintid: 3, pintid: None, priority: 0x80, state: LrState::Pending, group1: false, source: 2 };
        let raw = lr.to_v2();
        assert_eq!(raw, (0b01 << 28) | ((0x80 >> 3) << 23) | (2 << 10) | 3);
        assert_eq!(ListReg::from_v2(raw), lr);
    }

    #[test]
    fn v2_hardware_interrupt_and_state_decoding() {
        let lr =
            ListReg { vintid: 33, pintid: Some(33), priority: 0xF8, state: LrState::Active, group1: true, source: 0 };
        assert_eq!(ListReg::from_v2(lr.to_v2()), lr);
        assert!(ListReg::from_v2(0).is_free());
        assert_eq!(ListReg::from_v3(3 << 62).state, LrState::PendingActive);
    }
}
