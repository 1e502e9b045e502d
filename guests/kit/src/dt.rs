//! Device addresses as the CPU sees them: a `reg` under a bus node is translated through
//! the `ranges` of every bus above it (DT spec v0.4 §2.3.8), as the Raspberry Pi 4's
//! `/soc` needs (bus 0x7e00_0000 is CPU 0xfe00_0000). Cairn's own src/dt.rs does the same
//! with a heap; a test guest has none, so this walks with fixed arrays.

use fdt::node::FdtNode;
use fdt::Fdt;

/// Buses deeper than this are not followed (real trees nest two or three).
const MAX_DEPTH: usize = 8;
const CELL: usize = 4;

fn cells(bytes: &[u8]) -> u64 {
    bytes.chunks(CELL).fold(0, |acc, c| acc << 32 | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
}

/// Fills `chain` with the nodes from a child of the root down to `target`; returns how
/// many.
fn find<'b, 'a>(
    node: FdtNode<'b, 'a>,
    target: &FdtNode<'_, 'a>,
    depth: usize,
    chain: &mut [Option<FdtNode<'b, 'a>>; MAX_DEPTH],
) -> Option<usize> {
    for child in node.children() {
        if depth >= MAX_DEPTH {
            return None;
        }
        chain[depth] = Some(child);
        if core::ptr::eq(child.name, target.name) {
            return Some(depth + 1);
        }
        if let Some(n) = find(child, target, depth + 1, chain) {
            return Some(n);
        }
    }
    None
}

/// `addr` (in `bus`'s children's address space) in `bus`'s parent's address space.
fn through(bus: FdtNode<'_, '_>, parent_address_cells: usize, addr: u64) -> u64 {
    let Some(ranges) = bus.property("ranges") else { return addr };
    let own = bus.cell_sizes();
    let (c, p, z) = (own.address_cells, parent_address_cells, own.size_cells);
    let entry = (c + p + z) * CELL;
    if entry == 0 {
        return addr;
    }
    for e in ranges.value.chunks_exact(entry) {
        let (child, parent, size) =
            (cells(&e[..c * CELL]), cells(&e[c * CELL..(c + p) * CELL]), cells(&e[(c + p) * CELL..]));
        if addr >= child && addr < child + size {
            return addr - child + parent;
        }
    }
    addr
}

/// The CPU physical address of `node`'s `reg` entry `index`.
pub fn reg_address(fdt: &Fdt<'_>, node: &FdtNode<'_, '_>, index: usize) -> Option<u64> {
    let addr = node.reg()?.nth(index)?.starting_address as u64;
    let root = fdt.find_node("/")?;
    let mut chain = [None; MAX_DEPTH];
    let len = find(root, node, 0, &mut chain)?;
    // Buses from the node's parent up to the root's child; each one's parent is the
    // entry before it, or the root.
    let mut translated = addr;
    for i in (0..len - 1).rev() {
        let bus = chain[i]?;
        let parent_cells =
            if i == 0 { root.cell_sizes().address_cells } else { chain[i - 1]?.cell_sizes().address_cells };
        translated = through(bus, parent_cells, translated);
    }
    Some(translated)
}
