//! The register layout GICv2 and GICv3 distributors share (Arm IHI 0048B §4.3, IHI 0069H
//! §12.9; a GICv3 redistributor's SGI frame repeats it for INTIDs 0-31), and the accessors
//! both drivers use for it.

use super::mmio::{read32, write32};

pub const GICD_CTLR: usize = 0x0000;
pub const GICD_TYPER: usize = 0x0004;
pub const GICD_IGROUPR: usize = 0x0080;
pub const GICD_ISENABLER: usize = 0x0100;
pub const GICD_ICENABLER: usize = 0x0180;
pub const GICD_ISPENDR: usize = 0x0200;
pub const GICD_ICPENDR: usize = 0x0280;
pub const GICD_ISACTIVER: usize = 0x0300;
pub const GICD_ICACTIVER: usize = 0x0380;
pub const GICD_IPRIORITYR: usize = 0x0400;
pub const GICD_ICFGR: usize = 0x0C00;

/// GICD_TYPER.ITLinesNumber [4:0]: the distributor handles 32 * (N + 1) INTIDs, at most
/// 1020 (the rest are special).
pub fn nr_irqs(distributor: usize) -> u32 {
    ((read32(distributor + GICD_TYPER) & 0x1F) + 1) * 32
}

/// The register and bit of `intid` in the one-bit-per-interrupt bank at `bank` of the
/// frame at `base`.
fn bit(base: usize, bank: usize, intid: u32) -> (usize, u32) {
    (base + bank + (intid / 32) as usize * 4, 1 << (intid % 32))
}

/// Writes `intid`'s bit to a write-one-to-act bank (set/clear enable, pending, active).
pub fn write_bit(base: usize, bank: usize, intid: u32) {
    let (reg, bit) = bit(base, bank, intid);
    write32(reg, bit);
}

pub fn read_bit(base: usize, bank: usize, intid: u32) -> bool {
    let (reg, bit) = bit(base, bank, intid);
    read32(reg) & bit != 0
}

/// GICD_ICFGR: two bits per interrupt, the upper one set for edge-triggered.
pub fn set_edge_triggered(distributor: usize, intid: u32, edge: bool) {
    let reg = distributor + GICD_ICFGR + (intid / 16) as usize * 4;
    let bit = 2 << (2 * (intid % 16));
    let v = read32(reg);
    write32(reg, if edge { v | bit } else { v & !bit });
}
