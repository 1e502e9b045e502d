//! What Cairn needs to know about the machine, read once from the device tree the
//! firmware or QEMU handed over: memory, CPUs, GIC, console UART, PSCI, `/chosen`.
//! Pure queries over the `fdt` crate, tested on the host against DTBs dumped from QEMU and
//! Debian's Raspberry Pi 4 tree.
//!
//! Device addresses are CPU physical addresses: a `reg` under a bus node is translated
//! through the `ranges` of every bus above it (DT spec v0.4 §2.3.8), as the Pi 4's
//! `/soc` needs (bus 0x7e00_0000 is CPU 0xfe00_0000). A node under a parent with no
//! `ranges` (an I2C device, a CPU) has no CPU address and is never passed through.

use alloc::string::String;
use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;

use crate::arch::aarch64::exit::Conduit;
use crate::arch::aarch64::gicarch::GicVersion;
use crate::mm::Region;
use crate::platform::{self, Board, Role};

const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic", "arm,cortex-a7-gic"];
pub const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];
const MINI_UART_COMPATIBLE: &[&str] = &["brcm,bcm2835-aux-uart"];

/// Which kind of UART Cairn's console is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    Pl011,
    /// The BCM2835 auxiliary mini UART (the Raspberry Pi's GPIO console).
    MiniUart,
}

/// The GIC and its register frames, in `reg` order: for GICv3 the distributor then the
/// redistributor regions; for GICv2 distributor, CPU interface, hypervisor control
/// (GICH) and virtual CPU interface (GICV) (Linux's arm,gic.yaml binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gic {
    pub version: GicVersion,
    pub regions: Vec<Region>,
}

/// What a `/chosen/module@...` node carries, by its `compatible` (Xen's multiboot
/// convention, which QEMU's guest-loader device follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub kind: ModuleKind,
    pub region: Region,
    pub bootargs: Option<&'a str>,
}

/// One CPU node: its MPIDR affinity (`reg`) and how it is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuNode {
    pub mpidr: u64,
    /// `cpu-release-addr` for `enable-method = "spin-table"`, None for PSCI.
    pub spin_table_release: Option<u64>,
}

/// Everything Cairn reads from the host device tree.
#[derive(Clone, Debug)]
pub struct Machine<'a> {
    pub memory: Vec<Region>,
    pub reserved: Vec<Region>,
    pub cpus: Vec<CpuNode>,
    pub gic: Option<Gic>,
    pub uart: Option<Region>,
    pub uart_kind: UartKind,
    /// The console UART's interrupt (its INTID), when its node names a GIC SPI.
    pub uart_irq: Option<u32>,
    /// How to reach the firmware's PSCI: the `/psci` node's `method`.
    pub psci_method: Option<Conduit>,
    pub bootargs: &'a str,
    pub modules: Vec<Module<'a>>,
    /// `/chosen/linux,initrd-start` to `-end`: what the firmware loaded as the initramfs
    /// (a guest bundle, on a board without a guest loader).
    pub initrd: Option<Region>,
    /// The board, when Cairn knows more about it than its tree says (crate::platform).
    pub board: Option<&'static Board>,
    /// The devices Cairn keeps for itself on this board, with their CPU addresses.
    pub owned: Vec<(Role, Region)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Not a flattened device tree (bad magic, size or version).
    Invalid,
    /// No `device_type = "memory"` node with a usable `reg`.
    NoMemory,
    /// No CPU nodes.
    NoCpus,
}

/// Parses the host device tree.
pub fn parse(blob: &[u8]) -> Result<Machine<'_>, DtError> {
    let fdt = Fdt::new(blob).map_err(|_| DtError::Invalid)?;
    let memory = memory_regions(&fdt);
    if memory.is_empty() {
        return Err(DtError::NoMemory);
    }
    let cpus = cpu_nodes(&fdt);
    if cpus.is_empty() {
        return Err(DtError::NoCpus);
    }
    let console = console_uart(&fdt);
    Ok(Machine {
        memory,
        reserved: fdt.memory_reservations().map(|r| Region::new(r.address() as u64, r.size() as u64)).collect(),
        cpus,
        gic: gic(&fdt),
        uart: console.map(|(r, _)| r),
        uart_kind: console.map_or(UartKind::Pl011, |(_, k)| k),
        uart_irq: console_node(&fdt).and_then(|(n, _)| gic_spi(n)),
        psci_method: psci_method(&fdt),
        bootargs: fdt.chosen().bootargs().unwrap_or(""),
        modules: modules(&fdt),
        initrd: initrd(&fdt),
        board: board(&fdt),
        owned: owned_devices(&fdt),
    })
}

// Flattened device tree layout (DT spec v0.4 §5.2 header, §5.4 structure block).
const FDT_MAGIC: u32 = 0xD00D_FEED;
const HEADER_TOTALSIZE: usize = 4;
const HEADER_OFF_DT_STRUCT: usize = 8;
const HEADER_OFF_DT_STRINGS: usize = 12;
const HEADER_OFF_MEM_RSVMAP: usize = 16;
const HEADER_SIZE_DT_STRINGS: usize = 32;
const HEADER_SIZE_DT_STRUCT: usize = 36;
/// A memory reservation entry: address and size, 64 bits each; an all-zero one ends the
/// block (DT spec §5.3).
const RSVMAP_ENTRY: usize = 16;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const TOKEN: usize = 4;

fn be32(blob: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(blob.get(at..at + TOKEN)?.try_into().ok()?))
}

/// The same device tree, compact: without FDT_NOP tokens, which libfdt leaves where it
/// deletes a node or property in place (QEMU's raspi4b machine does, disabling devices it
/// does not model) and which the `fdt` crate cannot step over, and without the free space
/// after its last block (QEMU pads virt's tree of a few KiB to 1 MiB). The structure block
/// shrinks in place; the other blocks keep their offsets. None if the blob is malformed.
pub fn compact(blob: &[u8]) -> Option<Vec<u8>> {
    if be32(blob, 0)? != FDT_MAGIC {
        return None;
    }
    let start = be32(blob, HEADER_OFF_DT_STRUCT)? as usize;
    let size = be32(blob, HEADER_SIZE_DT_STRUCT)? as usize;
    let block = blob.get(start..start + size)?;
    let mut kept = Vec::with_capacity(size);
    let mut at = 0;
    loop {
        let token = be32(block, at)?;
        let len = match token {
            FDT_BEGIN_NODE => {
                let name_len = block.get(at + TOKEN..)?.iter().position(|&b| b == 0)? + 1;
                TOKEN + name_len.next_multiple_of(TOKEN)
            }
            FDT_PROP => 3 * TOKEN + (be32(block, at + TOKEN)? as usize).next_multiple_of(TOKEN),
            FDT_END_NODE | FDT_NOP | FDT_END => TOKEN,
            _ => return None,
        };
        if token != FDT_NOP {
            kept.extend_from_slice(block.get(at..at + len)?);
        }
        at += len;
        if token == FDT_END {
            break;
        }
    }
    // Only the blocks are copied, never the free space after them.
    let mut out = blob[..used_end(blob)?].to_vec();
    out[start..start + kept.len()].copy_from_slice(&kept);
    out[start + kept.len()..start + size].fill(0);
    out[HEADER_SIZE_DT_STRUCT..HEADER_SIZE_DT_STRUCT + TOKEN].copy_from_slice(&(kept.len() as u32).to_be_bytes());
    let end = used_end(&out)?;
    out.truncate(end);
    out[HEADER_TOTALSIZE..HEADER_TOTALSIZE + TOKEN].copy_from_slice(&(end as u32).to_be_bytes());
    Some(out)
}

/// Where the last of the blob's three blocks (memory reservations, structure, strings)
/// ends.
fn used_end(blob: &[u8]) -> Option<usize> {
    let block_end = |off: usize, size: usize| Some(be32(blob, off)? as usize + be32(blob, size)? as usize);
    let mut rsvmap_end = be32(blob, HEADER_OFF_MEM_RSVMAP)? as usize;
    loop {
        let entry = blob.get(rsvmap_end..rsvmap_end + RSVMAP_ENTRY)?;
        rsvmap_end += RSVMAP_ENTRY;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
    }
    let structure = block_end(HEADER_OFF_DT_STRUCT, HEADER_SIZE_DT_STRUCT)?;
    let strings = block_end(HEADER_OFF_DT_STRINGS, HEADER_SIZE_DT_STRINGS)?;
    Some(rsvmap_end.max(structure).max(strings)).filter(|&end| end <= blob.len())
}

/// The total size of the blob at `blob` as its header states, or None if it is not a DTB.
///
/// # Safety
/// `blob` must point to at least the 40-byte FDT header, readable.
pub unsafe fn total_size(blob: *const u8) -> Option<usize> {
    // SAFETY: the caller guarantees a readable header; from_ptr reads only the header.
    unsafe { Fdt::from_ptr(blob) }.ok().map(|f| f.total_size())
}

fn board(fdt: &Fdt<'_>) -> Option<&'static Board> {
    let root = fdt.root();
    platform::board_for(|c| root.compatible().all().any(|r| r == c))
}

fn has_compatible(node: &FdtNode<'_, '_>, wanted: &[&str]) -> bool {
    node.compatible().is_some_and(|c| c.all().any(|s| wanted.contains(&s)))
}

/// The board's devices that Cairn keeps (crate::platform), with their CPU addresses.
fn owned_devices(fdt: &Fdt<'_>) -> Vec<(Role, Region)> {
    let Some(board) = board(fdt) else { return Vec::new() };
    let mut out = Vec::new();
    walk(fdt, &mut |node, regs| {
        for dev in board.owned.iter().filter(|d| has_compatible(&node, d.compatible)) {
            if let Some(&r) = regs.first() {
                out.push((dev.role, r));
            }
        }
    });
    out
}

/// Nodes whose `reg` is not a device a guest may touch directly: RAM, CPUs, the GIC
/// (emulated or remapped), firmware, Cairn's own view of the machine, and the devices
/// Cairn keeps for itself (`owned`).
fn is_passthrough_device(node: &FdtNode<'_, '_>, owned: &[&str]) -> bool {
    if has_compatible(node, owned) {
        return false;
    }
    let name = node.name;
    let compatible_gic = node
        .compatible()
        .is_some_and(|c| c.all().any(|s| GICV3_COMPATIBLE.contains(&s) || GICV2_COMPATIBLE.contains(&s)));
    let is_memory = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
    !(is_memory
        || compatible_gic
        || name.starts_with("cpu")
        || name.starts_with("chosen")
        || name.starts_with("module")
        || name.starts_with("reserved-memory")
        || name.starts_with("its")
        || name.starts_with("v2m"))
}

/// A device a guest may be given: its node's full path, its MMIO frames (page-aligned,
/// CPU addresses, never overlapping RAM) and the SPIs its `interrupts` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    pub regions: Vec<Region>,
    pub spis: Vec<u32>,
}

/// Every device a guest may be given: each node with a `reg` but RAM, CPUs, the GIC and
/// the devices Cairn keeps, in tree order.
pub fn passthrough_devices(blob: &[u8]) -> Vec<Device> {
    let Ok(fdt) = Fdt::new(blob) else { return Vec::new() };
    let memory = memory_regions(&fdt);
    let owned: Vec<&str> = platform::owned_compatibles(board(&fdt)).collect();
    let mut found = Vec::new();
    walk_with_paths(&fdt, &mut |node, path, regs| {
        if !is_passthrough_device(&node, &owned) {
            return;
        }
        let regions: Vec<Region> = regs
            .into_iter()
            .map(|r| Region::from_bounds(r.base & !(PAGE - 1), (r.end() + PAGE - 1) & !(PAGE - 1)))
            .filter(|r| !r.is_empty() && !memory.iter().any(|m| m.overlaps(r)))
            .collect();
        if !regions.is_empty() {
            found.push(Device { path: path.into(), regions, spis: gic_spis(node) });
        }
    });
    found
}

/// Sorts `regions` and merges those that overlap or touch, so each page is mapped once.
pub fn merge_regions(mut out: Vec<Region>) -> Vec<Region> {
    out.sort_by_key(|r| r.base);
    let mut merged: Vec<Region> = Vec::new();
    for r in out {
        match merged.last_mut() {
            Some(last) if r.base <= last.end() => *last = Region::from_bounds(last.base, last.end().max(r.end())),
            _ => merged.push(r),
        }
    }
    merged
}

const PAGE: u64 = 4096;

fn be_cells(bytes: &[u8]) -> u64 {
    bytes.chunks(4).fold(0u64, |acc, c| (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
}

/// `reg` decoded with explicit cell sizes (the fdt crate assumes a parent's defaults
/// where a node such as `/chosen` does not state its own).
fn reg_with_cells(node: FdtNode<'_, '_>, address_cells: usize, size_cells: usize) -> Vec<Region> {
    let Some(prop) = node.property("reg") else { return Vec::new() };
    let entry = (address_cells + size_cells) * 4;
    if entry == 0 {
        return Vec::new();
    }
    prop.value
        .chunks_exact(entry)
        .map(|e| Region::new(be_cells(&e[..address_cells * 4]), be_cells(&e[address_cells * 4..])))
        .collect()
}

/// One entry of a bus's `ranges`: child-bus addresses [child, child + size) are parent-bus
/// addresses from `parent` on.
#[derive(Clone, Copy, Debug)]
struct Range {
    child: u64,
    parent: u64,
    size: u64,
}

/// The `ranges` of each bus between a node and the root, innermost first; an empty level
/// is an empty `ranges` (identity).
type Translation = Vec<Vec<Range>>;

fn translate(t: &Translation, r: Region) -> Option<Region> {
    let mut base = r.base;
    for level in t {
        if level.is_empty() {
            continue;
        }
        let range = level.iter().find(|x| base >= x.child && base + r.size <= x.child + x.size)?;
        base = base - range.child + range.parent;
    }
    Some(Region::new(base, r.size))
}

/// A bus node's `ranges` with its own #address-cells (child), its parent's (parent) and
/// its own #size-cells; None when it has no `ranges` (its children are not memory-mapped).
fn ranges(node: FdtNode<'_, '_>, parent_address_cells: usize) -> Option<Vec<Range>> {
    let prop = node.property("ranges")?;
    let own = node.cell_sizes();
    let (c, p, z) = (own.address_cells, parent_address_cells, own.size_cells);
    let entry = (c + p + z) * 4;
    if entry == 0 {
        return Some(Vec::new());
    }
    Some(
        prop.value
            .chunks_exact(entry)
            .map(|e| Range {
                child: be_cells(&e[..c * 4]),
                parent: be_cells(&e[c * 4..(c + p) * 4]),
                size: be_cells(&e[(c + p) * 4..]),
            })
            .collect(),
    )
}

/// Calls `f` with every memory-mapped node and its `reg` in CPU physical addresses.
fn walk<'a>(fdt: &Fdt<'a>, f: &mut dyn FnMut(FdtNode<'_, 'a>, Vec<Region>)) {
    walk_with_paths(fdt, &mut |node, _, regs| f(node, regs));
}

/// As [`walk`], with each node's full path.
fn walk_with_paths<'a>(fdt: &Fdt<'a>, f: &mut dyn FnMut(FdtNode<'_, 'a>, &str, Vec<Region>)) {
    let root = fdt.root();
    let cells = root.cell_sizes();
    let node = fdt.find_node("/").expect("a device tree has a root");
    walk_children(node, "", cells.address_cells, cells.size_cells, &Vec::new(), f);
}

fn walk_children<'a>(
    node: FdtNode<'_, 'a>,
    path: &str,
    address_cells: usize,
    size_cells: usize,
    t: &Translation,
    f: &mut dyn FnMut(FdtNode<'_, 'a>, &str, Vec<Region>),
) {
    for child in node.children() {
        let child_path = alloc::format!("{path}/{}", child.name);
        let regs = reg_with_cells(child, address_cells, size_cells).into_iter().filter_map(|r| translate(t, r));
        f(child, &child_path, regs.collect());
        if let Some(level) = ranges(child, address_cells) {
            let mut inner = Vec::with_capacity(t.len() + 1);
            inner.push(level);
            inner.extend(t.iter().cloned());
            let own = child.cell_sizes();
            walk_children(child, &child_path, own.address_cells, own.size_cells, &inner, f);
        }
    }
}

/// How far `node`'s CPU addresses are from the bus addresses its `reg` is written in
/// (0 for a node at the root): what a rewritten `reg` of this node must subtract. The
/// whole node is assumed to sit in one `ranges` window, as a GIC's frames do.
pub fn cpu_minus_bus<'a>(fdt: &Fdt<'a>, node: FdtNode<'_, 'a>) -> u64 {
    let raw = regions(node).first().map(|r| r.base);
    let cpu = translated_regions(fdt, node).first().map(|r| r.base);
    match (cpu, raw) {
        (Some(cpu), Some(raw)) => cpu.wrapping_sub(raw),
        _ => 0,
    }
}

/// `node`'s `reg` in CPU physical addresses (found by walking the tree to it).
pub fn translated_regions<'a>(fdt: &Fdt<'a>, node: FdtNode<'_, 'a>) -> Vec<Region> {
    let mut out = None;
    walk(fdt, &mut |n, regs| {
        if out.is_none() && core::ptr::eq(n.name, node.name) {
            out = Some(regs);
        }
    });
    out.unwrap_or_default()
}

fn regions(node: FdtNode<'_, '_>) -> Vec<Region> {
    node.reg()
        .map(|it| it.filter_map(|r| Some(Region::new(r.starting_address as u64, r.size? as u64))).collect())
        .unwrap_or_default()
}

fn memory_regions(fdt: &Fdt<'_>) -> Vec<Region> {
    fdt.all_nodes()
        .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("memory"))
        .flat_map(regions)
        .filter(|r| !r.is_empty())
        .collect()
}

fn cpu_nodes(fdt: &Fdt<'_>) -> Vec<CpuNode> {
    fdt.cpus()
        .map(|cpu| CpuNode {
            mpidr: cpu.ids().first() as u64,
            spin_table_release: match cpu.property("enable-method").and_then(|p| p.as_str()) {
                Some("spin-table") => cpu.property("cpu-release-addr").and_then(|p| p.as_usize()).map(|a| a as u64),
                _ => None,
            },
        })
        .collect()
}

fn gic(fdt: &Fdt<'_>) -> Option<Gic> {
    let (version, node) = if let Some(n) = fdt.find_compatible(GICV3_COMPATIBLE) {
        (GicVersion::V3, n)
    } else {
        (GicVersion::V2, fdt.find_compatible(GICV2_COMPATIBLE)?)
    };
    Some(Gic { version, regions: translated_regions(fdt, node) })
}

/// The UART `/chosen/stdout-path` names if Cairn can drive it (a PL011 or the mini UART),
/// or else the first PL011.
fn console_uart(fdt: &Fdt<'_>) -> Option<(Region, UartKind)> {
    let (node, k) = console_node(fdt)?;
    translated_regions(fdt, node).first().map(|r| (*r, k))
}

fn console_node<'b, 'a>(fdt: &'b Fdt<'a>) -> Option<(FdtNode<'b, 'a>, UartKind)> {
    let kind = |n: &FdtNode<'_, '_>| {
        if has_compatible(n, PL011_COMPATIBLE) {
            Some(UartKind::Pl011)
        } else if has_compatible(n, MINI_UART_COMPATIBLE) {
            Some(UartKind::MiniUart)
        } else {
            None
        }
    };
    let stdout = fdt.chosen().stdout().or_else(|| {
        // stdout-path may carry options ("serial0:115200n8") or be an alias.
        let path = fdt.find_node("/chosen")?.property("stdout-path")?.as_str()?;
        let path = path.split(':').next()?;
        fdt.find_node(path).or_else(|| fdt.aliases()?.resolve_node(path))
    });
    match stdout.and_then(|n| Some((n, kind(&n)?))) {
        Some(found) => Some(found),
        None => Some((fdt.find_compatible(PL011_COMPATIBLE)?, UartKind::Pl011)),
    }
}

/// A GIC interrupt specifier's first interrupt as an INTID, when it is an SPI: three cells,
/// type (0 = SPI), number, flags (Linux's arm,gic.yaml and arm,gic-v3.yaml bindings).
fn gic_spi(node: FdtNode<'_, '_>) -> Option<u32> {
    let cells = node.property("interrupts")?.value;
    let cell = |i: usize| be32(cells, i * 4);
    (cells.len() >= GIC_SPECIFIER_CELLS * 4 && cell(0)? == GIC_SPI_TYPE).then(|| cell(1).map(|n| n + SPI_BASE))?
}

/// Every SPI a node's `interrupts` name, read as GIC specifiers (a node whose interrupt
/// parent is another controller may yield numbers that are not its SPIs: at worst the VM
/// that gets it sees an SPI it has no use for).
fn gic_spis(node: FdtNode<'_, '_>) -> Vec<u32> {
    let Some(cells) = node.property("interrupts").map(|p| p.value) else { return Vec::new() };
    if cells.len() % (GIC_SPECIFIER_CELLS * 4) != 0 {
        return Vec::new();
    }
    cells
        .chunks_exact(GIC_SPECIFIER_CELLS * 4)
        .filter(|c| be32(c, 0) == Some(GIC_SPI_TYPE))
        .filter_map(|c| be32(c, 4).map(|n| n + SPI_BASE))
        .collect()
}

/// Cells of a GIC interrupt specifier, and the type cell's value for an SPI.
const GIC_SPECIFIER_CELLS: usize = 3;
const GIC_SPI_TYPE: u32 = 0;
/// SPIs start at INTID 32 (IHI 0069H §2.2.1); the specifier numbers them from 0.
const SPI_BASE: u32 = 32;

/// `/chosen` `linux,initrd-start` and `linux,initrd-end` (u32 or u64 each, end exclusive:
/// Linux's chosen binding).
fn initrd(fdt: &Fdt<'_>) -> Option<Region> {
    let chosen = fdt.find_node("/chosen")?;
    let read = |name| chosen.property(name).map(|p| be_cells(p.value));
    let (start, end) = (read("linux,initrd-start")?, read("linux,initrd-end")?);
    (end > start).then(|| Region::from_bounds(start, end))
}

fn psci_method(fdt: &Fdt<'_>) -> Option<Conduit> {
    match fdt.find_node("/psci")?.property("method")?.as_str()? {
        "smc" => Some(Conduit::Smc),
        "hvc" => Some(Conduit::Hvc),
        _ => None,
    }
}

fn modules<'a>(fdt: &Fdt<'a>) -> Vec<Module<'a>> {
    let Some(chosen) = fdt.find_node("/chosen") else { return Vec::new() };
    // Children of /chosen use its #address-cells/#size-cells; QEMU's guest-loader does
    // not write them and uses the root's, so fall back to those.
    let has_own_cells = chosen.property("#address-cells").is_some();
    let cells = if has_own_cells { chosen.cell_sizes() } else { fdt.root().cell_sizes() };
    chosen
        .children()
        .filter_map(|node| {
            let compatible = node.compatible()?;
            let kind = if compatible.all().any(|c| c == "multiboot,kernel") {
                ModuleKind::Kernel
            } else if compatible.all().any(|c| c == "multiboot,ramdisk") {
                ModuleKind::Ramdisk
            } else if compatible.all().any(|c| c == "multiboot,module") {
                ModuleKind::Other
            } else {
                return None;
            };
            let region = *reg_with_cells(node, cells.address_cells, cells.size_cells).first()?;
            Some(Module { kind, region, bootargs: node.property("bootargs").and_then(|p| p.as_str()) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every passed-through device's frames, merged: what one VM given every device maps.
    fn passthrough_regions(blob: &[u8]) -> Vec<Region> {
        merge_regions(passthrough_devices(blob).into_iter().flat_map(|d| d.regions).collect())
    }

    const VIRT_GICV3: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv3-smp4.dtb");
    const VIRT_GICV2: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv2-smp2.dtb");

    #[test]
    fn reads_qemu_virt_gicv3_machine() {
        let m = parse(VIRT_GICV3).unwrap();
        assert_eq!(m.memory, [Region::new(0x4000_0000, 0x8000_0000)]);
        assert_eq!(m.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(m.cpus.iter().all(|c| c.spin_table_release.is_none()));
        let gic = m.gic.unwrap();
        assert_eq!(gic.version, GicVersion::V3);
        assert_eq!(gic.regions[0], Region::new(0x0800_0000, 0x1_0000));
        assert_eq!(gic.regions[1], Region::new(0x080A_0000, 0xF6_0000));
        assert_eq!(m.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(m.uart_irq, Some(33), "QEMU virt's PL011 is SPI 1");
        assert_eq!(m.psci_method, Some(Conduit::Smc));
        assert_eq!(m.bootargs, "loglevel=debug");
        assert_eq!(m.initrd, None);
    }

    #[test]
    fn reads_guest_loader_modules() {
        let m = parse(VIRT_GICV3).unwrap();
        let kernel = m.modules.iter().find(|m| m.kind == ModuleKind::Kernel).unwrap();
        assert_eq!(kernel.region, Region::new(0x4800_0000, 0x1000));
        assert_eq!(kernel.bootargs, Some("console=ttyAMA0 quiet"));
        let ramdisk = m.modules.iter().find(|m| m.kind == ModuleKind::Ramdisk).unwrap();
        assert_eq!(ramdisk.region, Region::new(0x4C00_0000, 0x1000));
        assert_eq!(ramdisk.bootargs, None);
    }

    #[test]
    fn reads_qemu_virt_gicv2_frames() {
        let m = parse(VIRT_GICV2).unwrap();
        assert_eq!(m.cpus.len(), 2);
        assert_eq!(m.memory, [Region::new(0x4000_0000, 0x4000_0000)]);
        let gic = m.gic.unwrap();
        assert_eq!(gic.version, GicVersion::V2);
        assert_eq!(
            gic.regions,
            [
                Region::new(0x0800_0000, 0x1_0000),
                Region::new(0x0801_0000, 0x1_0000),
                Region::new(0x0803_0000, 0x1_0000),
                Region::new(0x0804_0000, 0x1_0000)
            ]
        );
        assert!(m.modules.is_empty());
    }

    #[test]
    fn passthrough_devices_exclude_ram_gic_and_cpus() {
        let regions = passthrough_regions(VIRT_GICV3);
        let has = |addr: u64| regions.iter().any(|r| r.contains(addr));
        assert!(has(0x0900_0000), "PL011");
        assert!(has(0x0901_0000), "PL031");
        assert!(has(0x0A00_0000), "virtio-mmio");
        assert!(!has(0x0800_0000), "GIC distributor");
        assert!(!has(0x080A_0000), "GIC redistributors");
        assert!(!has(0x4000_0000), "RAM");
        assert!(regions.windows(2).all(|w| w[0].end() < w[1].base), "sorted and merged");
    }

    #[test]
    fn passthrough_devices_have_their_paths_frames_and_spis() {
        let devices = passthrough_devices(VIRT_GICV3);
        let find = |path: &str| devices.iter().find(|d| d.path == path).cloned();
        let rtc = find("/pl031@9010000").expect("the RTC is a device");
        assert_eq!(rtc.regions, [Region::new(0x0901_0000, 0x1000)]);
        assert_eq!(rtc.spis, [34], "QEMU virt's PL031 is SPI 2");
        let virtio = find("/virtio_mmio@a000000").expect("virtio-mmio slot 0");
        assert_eq!(virtio.spis, [48]);
        assert!(find("/cpus/cpu@0").is_none() && find("/memory@40000000").is_none());
        assert!(devices.iter().all(|d| !d.path.contains("intc")), "the GIC is not passed");
    }

    const RPI4B: &[u8] = include_bytes!("../tests/fixtures/rpi4b-debian-6.1.dtb");

    #[test]
    fn reads_the_raspberry_pi_4_through_its_bus_ranges() {
        let fdt = Fdt::new(RPI4B).unwrap();
        let gic = gic(&fdt).unwrap();
        assert_eq!(gic.version, GicVersion::V2);
        assert_eq!(
            gic.regions,
            [
                Region::new(0xFF84_1000, 0x1000),
                Region::new(0xFF84_2000, 0x2000),
                Region::new(0xFF84_4000, 0x2000),
                Region::new(0xFF84_6000, 0x2000)
            ],
            "GIC-400 at ARM-local bus 0x4004_1000 = CPU 0xff84_1000"
        );
        // stdout-path names the mini UART (serial1): the Pi's GPIO 14/15 console.
        assert_eq!(console_uart(&fdt), Some((Region::new(0xFE21_5040, 0x40), UartKind::MiniUart)));
        let cpus = cpu_nodes(&fdt);
        let releases: Vec<_> = cpus.iter().map(|c| c.spin_table_release).collect();
        assert_eq!(releases, [Some(0xD8), Some(0xE0), Some(0xE8), Some(0xF0)]);
    }

    #[test]
    fn pi_passthrough_uses_cpu_addresses_and_skips_unmapped_buses() {
        let regions = passthrough_regions(RPI4B);
        let has = |addr: u64| regions.iter().any(|r| r.contains(addr));
        assert!(has(0xFE20_1000), "PL011 at its CPU address");
        assert!(has(0xFE00_3000), "system timer");
        assert!(!has(0x7E20_1000), "never a bus address");
        assert!(!has(0xFF84_1000) && !has(0xFF84_4000), "no GIC frame");
        assert!(!has(0x0), "no I2C/SPI child address or memory");
        assert!(!has(0xFE10_0000), "the PM watchdog is Cairn's");
    }

    const QEMU_RASPI4B: &[u8] = include_bytes!("../tests/fixtures/qemu-raspi4b.dtb");

    #[test]
    fn qemu_raspi4b_tree_parses_once_its_nops_are_gone() {
        let clean = compact(QEMU_RASPI4B).unwrap();
        assert!(clean.len() <= QEMU_RASPI4B.len());
        let m = parse(&clean).unwrap();
        assert_eq!(m.memory, [Region::new(0, 0x3C00_0000)]);
        assert_eq!(m.cpus.len(), 4);
        assert_eq!(m.uart, Some(Region::new(0xFE21_5040, 0x40)));
        assert_eq!(m.uart_kind, UartKind::MiniUart);
        assert_eq!(m.gic.unwrap().regions.len(), 4);
        assert_eq!(m.psci_method, None, "the Pi's firmware has no PSCI");
        assert_eq!(m.board.map(|b| b.name), Some("Raspberry Pi 4"));
        assert_eq!(m.owned.first().map(|o| o.1.base), Some(0xFE10_0000));
        assert_eq!(compact(&clean), Some(clean.clone()), "nothing left to strip");
        assert_eq!(compact(b"not a device tree"), None);
    }

    #[test]
    fn qemu_virt_tree_loses_its_padding_and_nothing_else() {
        // As QEMU hands it over: the blocks, then free space up to a 1 MiB total size.
        const QEMU_FDT_SIZE: usize = 1 << 20;
        let mut padded = VIRT_GICV3.to_vec();
        padded.resize(QEMU_FDT_SIZE, 0);
        padded[HEADER_TOTALSIZE..HEADER_TOTALSIZE + TOKEN].copy_from_slice(&(QEMU_FDT_SIZE as u32).to_be_bytes());
        let compacted = compact(&padded).unwrap();
        assert_eq!(compacted.len(), VIRT_GICV3.len(), "the fixture has no free space of its own");
        assert_eq!(total_size_of(&compacted), compacted.len());
        let machine = |blob| alloc::format!("{:?}", parse(blob).unwrap());
        assert_eq!(machine(&compacted), machine(&padded));
        assert_eq!(every_property(&compacted), every_property(&padded));
    }

    fn total_size_of(blob: &[u8]) -> usize {
        be32(blob, HEADER_TOTALSIZE).unwrap() as usize
    }

    /// Every node and property, as the `fdt` crate walks them.
    fn every_property(blob: &[u8]) -> alloc::vec::Vec<alloc::string::String> {
        let fdt = fdt::Fdt::new(blob).unwrap();
        fdt.all_nodes()
            .flat_map(|n| n.properties().map(move |p| alloc::format!("{}/{}={:?}", n.name, p.name, p.value)))
            .collect()
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[0u8; 64]).unwrap_err(), DtError::Invalid);
    }
}
