//! The GIC virtual CPU interface's state in its hardware formats. List registers: how a
//! virtual interrupt is presented to the interface, one format-neutral [`ListReg`] with
//! encoders for GICv3's ICH_LR<n>_EL2 (Arm IHI 0069H §12.5.8) and GICv2's GICH_LR<n> (Arm
//! IHI 0048B §5.3.8); and the whole interface as a vCPU leaves it ([`VgicCpu`]). Pure,
//! built everywhere; where an interrupt goes among the registers is the virtual GIC's
//! policy (`vgic::lr`).

use alloc::vec::Vec;

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

/// The GIC virtual CPU interface as the guest left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VgicCpu {
    /// Raw ICH_LR<n>_EL2 / GICH_LR<n> values.
    pub lrs: Vec<u64>,
    /// ICH_VMCR_EL2 / GICH_VMCR.
    pub vmcr: u64,
    /// ICH_AP0R0_EL2 and ICH_AP1R0_EL2 / GICH_APR (and 0).
    pub apr: [u64; 2],
}

impl VgicCpu {
    /// The interface with every forwarded entry made purely virtual, for a vCPU restored
    /// from a snapshot: the physical interrupts those entries stood for were deactivated
    /// when the vCPU left its CPU, and a device that still asserts its line raises them
    /// again. The guest still sees each entry pending or active as it was and ends it as
    /// usual. `v3`: the registers are GICv3's, else GICv2's.
    pub fn without_forwarding(&self, v3: bool) -> VgicCpu {
        let virtual_only = |raw: u64| {
            let mut lr = if v3 { ListReg::from_v3(raw) } else { ListReg::from_v2(raw as u32) };
            lr.pintid = None;
            if v3 {
                lr.to_v3()
            } else {
                u64::from(lr.to_v2())
            }
        };
        VgicCpu { lrs: self.lrs.iter().map(|&raw| virtual_only(raw)).collect(), ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_hardware_interrupt_round_trip() {
        let lr =
            ListReg { vintid: 27, pintid: Some(27), priority: 0xA0, state: LrState::Pending, group1: true, source: 0 };
        let raw = lr.to_v3();
        assert_eq!(raw, (0b01 << 62) | (1 << 61) | (1 << 60) | (0xA0 << 48) | (27 << 32) | 27);
        assert_eq!(ListReg::from_v3(raw), lr);
    }

    #[test]
    fn restored_entries_lose_their_physical_interrupt_only() {
        let timer =
            ListReg { vintid: 27, pintid: Some(27), priority: 0xA0, state: LrState::Active, group1: true, source: 0 };
        let sgi = ListReg { vintid: 3, pintid: None, priority: 0x80, state: LrState::Pending, group1: true, source: 0 };
        let v3 = VgicCpu { lrs: alloc::vec![timer.to_v3(), sgi.to_v3(), 0], vmcr: 7, apr: [1, 2] };
        let out = v3.without_forwarding(true);
        assert_eq!(ListReg::from_v3(out.lrs[0]), ListReg { pintid: None, ..timer });
        assert_eq!((out.lrs[1], out.lrs[2], out.vmcr, out.apr), (sgi.to_v3(), 0, 7, [1, 2]));
        let v2 = VgicCpu { lrs: alloc::vec![u64::from(timer.to_v2())], ..VgicCpu::default() };
        assert_eq!(ListReg::from_v2(v2.without_forwarding(false).lrs[0] as u32), ListReg { pintid: None, ..timer });
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
