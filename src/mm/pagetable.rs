//! A small builder for AArch64 VMSAv8-64 translation tables with the 4 KiB granule
//! (Arm ARM D8.3), used for both Cairn's own EL2 stage-1 map and every guest's stage-2
//! map. The two regimes differ only in how a leaf descriptor encodes memory type and
//! permissions, which [`Regime`] captures; table walking and block selection are shared.
//!
//! Tables are identity-addressed: a table's physical address is its pointer value. That
//! holds at EL2, where Cairn maps RAM 1:1, and on the host, where tests walk the tables
//! they built.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::arch::aarch64::memattr::{MAIR_IDX_DEVICE, MAIR_IDX_NORMAL};

const GRANULE_SHIFT: u32 = 12;
pub const GRANULE: u64 = 1 << GRANULE_SHIFT;
const BITS_PER_LEVEL: u32 = 9;
const ENTRIES: usize = 1 << BITS_PER_LEVEL;
const LEAF_LEVEL: usize = 3;
/// Block descriptors exist at levels 1 and 2 with the 4 KiB granule (Arm ARM D8.3.1).
const FIRST_BLOCK_LEVEL: usize = 1;

/// Descriptor bits 1:0 (Arm ARM D8.3.1).
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// Output address bits 47:12.
const OUTPUT_ADDRESS_MASK: u64 = 0x0000_FFFF_FFFF_F000;
/// Lower attributes shared by both regimes: SH[9:8] inner shareable, AF[10].
const SH_INNER: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;

/// One translation table: 512 descriptors, 4 KiB aligned.
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const fn empty() -> Self {
        Table([0; ENTRIES])
    }
}

/// Where new tables come from. Returned tables must be zeroed, and their address must be
/// the physical address the MMU will use.
pub trait TableAlloc {
    fn alloc_table(&mut self) -> Option<NonNull<Table>>;
}

/// Tables from Cairn's heap, never freed: a VM's stage 2 and Cairn's own map live as long
/// as Cairn runs.
pub struct HeapTables;

impl TableAlloc for HeapTables {
    fn alloc_table(&mut self) -> Option<NonNull<Table>> {
        Some(NonNull::from(alloc::boxed::Box::leak(alloc::boxed::Box::new(Table::empty()))))
    }
}

/// The memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal memory, inner and outer write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE memory, never executable.
    Device,
}

/// How one translation regime encodes a leaf's attributes.
pub trait Regime {
    fn leaf_attributes(mem: MemType) -> u64;
    fn mem_type_of(descriptor: u64) -> MemType;
}

/// Cairn's own EL2 stage-1 regime (non-VHE): AttrIndx[4:2] selects a MAIR_EL2 entry,
/// AP[7:6] = 0 is read/write at EL2, bit 54 is XN.
pub struct El2Stage1;

const S1_ATTR_INDEX_SHIFT: u32 = 2;
const S1_XN: u64 = 1 << 54;

impl Regime for El2Stage1 {
    fn leaf_attributes(mem: MemType) -> u64 {
        match mem {
            MemType::Normal => (MAIR_IDX_NORMAL << S1_ATTR_INDEX_SHIFT) | SH_INNER | ACCESS_FLAG,
            MemType::Device => (MAIR_IDX_DEVICE << S1_ATTR_INDEX_SHIFT) | ACCESS_FLAG | S1_XN,
        }
    }

    fn mem_type_of(descriptor: u64) -> MemType {
        if (descriptor >> S1_ATTR_INDEX_SHIFT) & 0b111 == MAIR_IDX_DEVICE {
            MemType::Device
        } else {
            MemType::Normal
        }
    }
}

/// A guest's stage-2 regime: MemAttr[5:2] encodes the type directly, S2AP[7:6] = 0b11 is
/// read/write, XN[54:53] = 0b10 forbids execution at EL1 and EL0 (Arm ARM D8.5.5).
pub struct Stage2;

const S2_MEMATTR_SHIFT: u32 = 2;
const S2_MEMATTR_NORMAL_WB: u64 = 0b1111;
const S2_MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const S2AP_READ_WRITE: u64 = 0b11 << 6;
const S2_XN_ALL: u64 = 0b10 << 53;

impl Regime for Stage2 {
    fn leaf_attributes(mem: MemType) -> u64 {
        match mem {
            MemType::Normal => (S2_MEMATTR_NORMAL_WB << S2_MEMATTR_SHIFT) | S2AP_READ_WRITE | SH_INNER | ACCESS_FLAG,
            MemType::Device => {
                (S2_MEMATTR_DEVICE_NGNRE << S2_MEMATTR_SHIFT) | S2AP_READ_WRITE | ACCESS_FLAG | S2_XN_ALL
            }
        }
    }

    fn mem_type_of(descriptor: u64) -> MemType {
        if (descriptor >> S2_MEMATTR_SHIFT) & 0b1111 == S2_MEMATTR_DEVICE_NGNRE {
            MemType::Device
        } else {
            MemType::Normal
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address, size or output address not aligned to the 4 KiB granule.
    Unaligned,
    /// Outside the input-address range of this table.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// No memory left for a new table.
    OutOfTables,
}

/// The size one descriptor covers at `level`: 512 GiB, 1 GiB, 2 MiB or 4 KiB.
const fn level_size(level: usize) -> u64 {
    1 << (GRANULE_SHIFT + BITS_PER_LEVEL * (LEAF_LEVEL - level) as u32)
}

const fn level_index(addr: u64, level: usize) -> usize {
    ((addr >> (GRANULE_SHIFT + BITS_PER_LEVEL * (LEAF_LEVEL - level) as u32)) as usize) & (ENTRIES - 1)
}

/// A translation table tree for regime `R`, rooted at `start_level`.
pub struct PageTable<R: Regime> {
    root: NonNull<Table>,
    start_level: usize,
    input_bits: u32,
    _regime: PhantomData<R>,
}

// SAFETY: a PageTable owns its tables exclusively; moving it to another CPU is sound.
unsafe impl<R: Regime> Send for PageTable<R> {}
// SAFETY: shared access only walks the tables (`translate`, `root_address`); changing them
// takes `&mut self`.
unsafe impl<R: Regime> Sync for PageTable<R> {}

impl<R: Regime> PageTable<R> {
    /// An empty tree translating `input_bits` of address. The start level follows from
    /// it: level 0 above 39 bits, level 1 from 31 to 39 bits (Arm ARM D8.2.5).
    pub fn new(alloc: &mut dyn TableAlloc, input_bits: u32) -> Option<Self> {
        let start_level = if input_bits > 39 { 0 } else { 1 };
        Some(PageTable { root: alloc.alloc_table()?, start_level, input_bits, _regime: PhantomData })
    }

    pub fn root_address(&self) -> u64 {
        self.root.as_ptr() as u64
    }

    pub fn start_level(&self) -> usize {
        self.start_level
    }

    pub fn input_bits(&self) -> u32 {
        self.input_bits
    }

    /// Maps `[input, input + size)` to `[output, ...)` with the largest blocks alignment
    /// allows: 1 GiB, then 2 MiB, then 4 KiB pages.
    pub fn map(
        &mut self,
        alloc: &mut dyn TableAlloc,
        input: u64,
        output: u64,
        size: u64,
        mem: MemType,
    ) -> Result<(), MapError> {
        if !input.is_multiple_of(GRANULE) || !output.is_multiple_of(GRANULE) || !size.is_multiple_of(GRANULE) {
            return Err(MapError::Unaligned);
        }
        let limit = 1u64 << self.input_bits;
        if input.checked_add(size).is_none_or(|end| end > limit) || output & !OUTPUT_ADDRESS_MASK != 0 {
            return Err(MapError::OutOfRange);
        }
        let attributes = R::leaf_attributes(mem);
        // SAFETY: `root` and every table reachable from it were handed out by a TableAlloc
        // for this tree's exclusive use, and `&mut self` gives exclusive access.
        unsafe { map_level(self.root, self.start_level, input, output, size, attributes, alloc) }
    }

    /// Walks the tree: the output address and memory type `input` translates to.
    pub fn translate(&self, input: u64) -> Option<(u64, MemType)> {
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            // SAFETY: the tables of this tree are valid for as long as it lives.
            let descriptor = unsafe { table.as_ref().0[level_index(input, level)] };
            if descriptor & DESC_VALID == 0 {
                return None;
            }
            let is_table = level < LEAF_LEVEL && descriptor & DESC_TABLE_OR_PAGE != 0;
            if !is_table {
                let offset = input & (level_size(level) - 1);
                return Some(((descriptor & OUTPUT_ADDRESS_MASK) + offset, R::mem_type_of(descriptor)));
            }
            table = NonNull::new((descriptor & OUTPUT_ADDRESS_MASK) as *mut Table)?;
            level += 1;
        }
    }
}

/// Fills `table` (at `level`) for one contiguous range.
///
/// # Safety
/// `table` and every table it points to must be valid and exclusively owned.
unsafe fn map_level(
    mut table: NonNull<Table>,
    level: usize,
    mut input: u64,
    mut output: u64,
    mut size: u64,
    attributes: u64,
    alloc: &mut dyn TableAlloc,
) -> Result<(), MapError> {
    let span = level_size(level);
    while size > 0 {
        let index = level_index(input, level);
        // SAFETY: the caller guarantees exclusive access to `table`.
        let entry = unsafe { &mut table.as_mut().0[index] };
        let fits_block =
            level >= FIRST_BLOCK_LEVEL && input.is_multiple_of(span) && output.is_multiple_of(span) && size >= span;
        let chunk = if fits_block { span } else { (span - input % span).min(size) };
        if level == LEAF_LEVEL || fits_block {
            if *entry & DESC_VALID != 0 {
                return Err(MapError::AlreadyMapped);
            }
            let kind = if level == LEAF_LEVEL { DESC_VALID | DESC_TABLE_OR_PAGE } else { DESC_VALID };
            *entry = output | attributes | kind;
        } else {
            let next = if *entry & DESC_VALID == 0 {
                let new = alloc.alloc_table().ok_or(MapError::OutOfTables)?;
                *entry = new.as_ptr() as u64 | DESC_VALID | DESC_TABLE_OR_PAGE;
                new
            } else if *entry & DESC_TABLE_OR_PAGE != 0 {
                NonNull::new((*entry & OUTPUT_ADDRESS_MASK) as *mut Table).ok_or(MapError::OutOfTables)?
            } else {
                return Err(MapError::AlreadyMapped);
            };
            // SAFETY: `next` belongs to this tree, as the caller guarantees for `table`.
            unsafe { map_level(next, level + 1, input, output, chunk, attributes, alloc)? };
        }
        input += chunk;
        output += chunk;
        size -= chunk;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::{GIB, MIB};
    use std::boxed::Box;
    use std::vec::Vec;

    #[derive(Default)]
    struct HeapTables(Vec<NonNull<Table>>);

    impl TableAlloc for HeapTables {
        fn alloc_table(&mut self) -> Option<NonNull<Table>> {
            let table = NonNull::from(Box::leak(Box::new(Table::empty())));
            self.0.push(table);
            Some(table)
        }
    }

    impl Drop for HeapTables {
        fn drop(&mut self) {
            for t in self.0.drain(..) {
                // SAFETY: each pointer came from Box::leak above and is freed once.
                drop(unsafe { Box::from_raw(t.as_ptr()) });
            }
        }
    }

    #[test]
    fn identity_map_uses_gib_blocks_when_aligned() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<Stage2>::new(&mut tables, 48).unwrap();
        pt.map(&mut tables, 0x4000_0000, 0x4000_0000, 2 * GIB, MemType::Normal).unwrap();
        // root + one level-1 table: two 1 GiB blocks need nothing more.
        assert_eq!(tables.0.len(), 2);
        assert_eq!(pt.translate(0x4000_1234), Some((0x4000_1234, MemType::Normal)));
        assert_eq!(pt.translate(0xBFFF_FFFF), Some((0xBFFF_FFFF, MemType::Normal)));
        assert_eq!(pt.translate(0xC000_0000), None);
        assert_eq!(pt.translate(0x3FFF_FFFF), None);
    }

    #[test]
    fn unaligned_ranges_mix_blocks_and_pages() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<El2Stage1>::new(&mut tables, 48).unwrap();
        let base = 0x4020_0000 - 0x3000;
        pt.map(&mut tables, base, base, 4 * MIB + 0x5000, MemType::Normal).unwrap();
        for addr in [base, 0x401F_FFFF, 0x4020_0000, 0x4060_0000, base + 4 * MIB + 0x4FFF] {
            assert_eq!(pt.translate(addr), Some((addr, MemType::Normal)), "{addr:#x}");
        }
        assert_eq!(pt.translate(base - 1), None);
        assert_eq!(pt.translate(base + 4 * MIB + 0x5000), None);
    }

    #[test]
    fn device_mappings_keep_their_type() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<Stage2>::new(&mut tables, 40).unwrap();
        assert_eq!(pt.start_level(), 0);
        pt.map(&mut tables, 0x0900_0000, 0x0900_0000, 0x1000, MemType::Device).unwrap();
        assert_eq!(pt.translate(0x0900_0010), Some((0x0900_0010, MemType::Device)));
        let mut el2 = PageTable::<El2Stage1>::new(&mut tables, 48).unwrap();
        el2.map(&mut tables, 0x0900_0000, 0x0900_0000, 0x1000, MemType::Device).unwrap();
        assert_eq!(el2.translate(0x0900_0000), Some((0x0900_0000, MemType::Device)));
    }

    #[test]
    fn non_identity_output() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<Stage2>::new(&mut tables, 36).unwrap();
        assert_eq!(pt.start_level(), 1);
        pt.map(&mut tables, 0x8000_0000, 0x1_0000_0000, 2 * MIB, MemType::Normal).unwrap();
        assert_eq!(pt.translate(0x8000_0042), Some((0x1_0000_0042, MemType::Normal)));
    }

    #[test]
    fn rejects_overlap_misalignment_and_range() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<Stage2>::new(&mut tables, 36).unwrap();
        pt.map(&mut tables, 0x4000_0000, 0x4000_0000, 2 * MIB, MemType::Normal).unwrap();
        assert_eq!(
            pt.map(&mut tables, 0x4010_0000, 0x4010_0000, 0x1000, MemType::Normal),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(pt.map(&mut tables, 0x123, 0x123, 0x1000, MemType::Normal), Err(MapError::Unaligned));
        assert_eq!(pt.map(&mut tables, 1 << 36, 1 << 36, 0x1000, MemType::Normal), Err(MapError::OutOfRange));
    }

    #[test]
    fn descriptor_bits_follow_the_arm_arm() {
        let mut tables = HeapTables::default();
        let mut pt = PageTable::<Stage2>::new(&mut tables, 36).unwrap();
        pt.map(&mut tables, 0x4000_0000, 0x4000_0000, 2 * MIB, MemType::Normal).unwrap();
        // level 1 root -> level 2 table holding a 2 MiB block
        let root = unsafe { pt.root.as_ref() };
        let l2 = (root.0[1] & OUTPUT_ADDRESS_MASK) as *const Table;
        let block = unsafe { (*l2).0[0] };
        assert_eq!(block & 0b11, 0b01, "block descriptor");
        assert_eq!(block & OUTPUT_ADDRESS_MASK, 0x4000_0000);
        assert_eq!((block >> 2) & 0xF, 0xF, "MemAttr normal write-back");
        assert_eq!((block >> 6) & 0b11, 0b11, "S2AP read/write");
        assert_ne!(block & ACCESS_FLAG, 0);
    }
}
