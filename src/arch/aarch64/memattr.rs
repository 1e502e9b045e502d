//! The memory attributes Cairn's EL2 regime uses: what MAIR_EL2 holds, and the index a
//! stage-1 descriptor's AttrIndx gives for each (Arm ARM D8.6.1, D24.2.105). The EL2 MMU
//! (`mmu`) programs the register and the page-table builder (`mm::pagetable`) writes the
//! indices, so the two always agree. Pure constants, built everywhere.

/// MAIR_EL2 holds eight 8-bit attribute fields, Attr<n> at bits [8n+7:8n].
const MAIR_ATTR_BITS: u64 = 8;
/// Attr encoding 0xFF: Normal memory, inner and outer write-back non-transient, read- and
/// write-allocate.
const MAIR_ATTR_NORMAL_WB_RA_WA: u64 = 0xFF;
/// Attr encoding 0x04: Device-nGnRE.
const MAIR_ATTR_DEVICE_NGNRE: u64 = 0x04;

/// Indices into MAIR_EL2, which Cairn programs with exactly these two attributes.
pub const MAIR_IDX_NORMAL: u64 = 0;
pub const MAIR_IDX_DEVICE: u64 = 1;

/// MAIR_EL2 value: Attr0 = Normal write-back, Attr1 = Device-nGnRE.
pub const MAIR_EL2_VALUE: u64 = (MAIR_ATTR_NORMAL_WB_RA_WA << (MAIR_IDX_NORMAL * MAIR_ATTR_BITS))
    | (MAIR_ATTR_DEVICE_NGNRE << (MAIR_IDX_DEVICE * MAIR_ATTR_BITS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mair_holds_normal_then_device() {
        assert_eq!(MAIR_EL2_VALUE, 0x04FF);
    }
}
