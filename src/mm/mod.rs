//! Memory management that needs no hardware: physical regions and the page-table
//! builder shared by the EL2 stage-1 tables and the guests' stage-2 tables.

pub mod pagetable;
pub mod ram_image;
pub mod usage;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

pub const fn align_up(value: u64, align: u64) -> u64 {
    align_down(value + align - 1, align)
}

/// A range of physical (or intermediate physical) addresses, `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(base: u64, size: u64) -> Self {
        Region { base, size }
    }

    pub fn from_bounds(base: u64, end: u64) -> Self {
        Region { base, size: end.saturating_sub(base) }
    }

    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    pub fn contains_region(&self, other: &Region) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    pub fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }

    /// What remains of `self` once `hole` is taken out: up to two pieces, below and above.
    pub fn subtract(&self, hole: &Region) -> [Option<Region>; 2] {
        if !self.overlaps(hole) {
            return [Some(*self), None];
        }
        let below = Region::from_bounds(self.base, hole.base);
        let above = Region::from_bounds(hole.end(), self.end());
        [(!below.is_empty()).then_some(below), (!above.is_empty()).then_some(above)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_splits_around_a_hole() {
        let ram = Region::new(0x4000_0000, 0x8000_0000);
        let hole = Region::new(0x4020_0000, 0x0200_0000);
        assert_eq!(
            ram.subtract(&hole),
            [Some(Region::new(0x4000_0000, 0x20_0000)), Some(Region::from_bounds(0x4220_0000, 0xC000_0000))]
        );
    }

    #[test]
    fn subtract_edges_and_disjoint() {
        let r = Region::new(0x1000, 0x1000);
        assert_eq!(r.subtract(&Region::new(0x1000, 0x1000)), [None, None]);
        assert_eq!(r.subtract(&Region::new(0x3000, 0x1000)), [Some(r), None]);
        assert_eq!(r.subtract(&Region::new(0x0, 0x1800)), [None, Some(Region::new(0x1800, 0x800))]);
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0x4020_0001, 2 * MIB), 0x4040_0000);
        assert_eq!(align_down(0x4020_0001, 2 * MIB), 0x4020_0000);
        assert_eq!(align_up(0x4000_0000, 2 * MIB), 0x4000_0000);
    }
}
