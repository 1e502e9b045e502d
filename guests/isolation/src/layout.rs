//! What the guest's own device tree says is its own: the RAM range R (the one memory
//! node), its vCPUs, its GIC frames, the devices whose `reg` falls in the device window,
//! its virtual UART, and the SPIs its nodes name. Everything the checks expect comes from
//! here; nothing is taken from Cairn's side.

use fdt::node::FdtNode;
use fdt::Fdt;
use guestkit::gic::Gic;
use guestkit::smp::{self, Cpus};

/// A 4 KiB page: the granule the checks probe and the stage-2 mappings are made of.
pub const PAGE: u64 = 4096;
/// Device-tree cells are 32 bits, big-endian (DT spec v0.4 §2.2.4).
const CELL: usize = 4;
/// Nodes deeper than this are not visited (QEMU virt nests three levels at most).
const MAX_DEPTH: usize = 8;
/// Device regions kept from the device window; QEMU virt has about ten there.
const MAX_DEVICES: usize = 64;
/// INTIDs the SPI set covers: SGIs, PPIs and SPIs up to the special INTIDs 1020-1023
/// (IHI 0069H §2.2.1).
pub const INTIDS: u32 = 1024;
/// First SPI (IHI 0069H §2.2.1, IHI 0048B §2.2.1).
pub const FIRST_SPI: u32 = 32;
/// GIC interrupt specifiers are three cells: type (0 = SPI, 1 = PPI), number, flags (Linux's
/// arm,gic.yaml and arm,gic-v3.yaml bindings).
const GIC_SPECIFIER_CELLS: usize = 3;
const GIC_SPECIFIER_SPI: u32 = 0;
/// The virtual UART's compatible (Linux's serial/pl011.yaml, the SBSA generic UART).
const SBSA_UART_COMPATIBLE: &str = "arm,sbsa-uart";

/// A half-open range of guest-physical addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    pub fn sized(start: u64, size: u64) -> Range {
        Range { start, end: start.saturating_add(size) }
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// The whole pages that hold any byte of the range.
    pub fn pages(&self) -> Range {
        Range { start: self.start & !(PAGE - 1), end: self.end.next_multiple_of(PAGE) }
    }
}

/// The device window every VM sees part of on QEMU virt: GIC, UART, RTC, fw-cfg, GPIO and
/// whatever else sits below the virtio-mmio transports.
pub const DEVICE_WINDOW: Range = Range::new(0x0800_0000, 0x0A00_0000);
/// Where RAM may be on QEMU virt below 4 GiB: every VM's RAM and Cairn's own memory.
pub const RAM_WINDOW: Range = Range::new(0x4000_0000, 0x1_0000_0000);

/// A fixed-capacity list of ranges.
#[derive(Clone, Copy, Debug)]
pub struct Ranges {
    items: [Range; MAX_DEVICES],
    len: usize,
}

impl Ranges {
    const fn new() -> Ranges {
        Ranges { items: [Range::new(0, 0); MAX_DEVICES], len: 0 }
    }

    /// Adds `r`; beyond the capacity it is left out, and its pages then count as
    /// not the guest's own (a failure that shows, not a pass that hides).
    fn push(&mut self, r: Range) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = r;
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Range> {
        self.items[..self.len].iter()
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.iter().any(|r| r.contains(addr))
    }
}

/// One bit per INTID 0-1023.
#[derive(Clone, Copy, Debug)]
pub struct IntidSet([u32; (INTIDS / 32) as usize]);

impl IntidSet {
    pub const fn new() -> IntidSet {
        IntidSet([0; (INTIDS / 32) as usize])
    }

    pub fn insert(&mut self, intid: u32) {
        if intid < INTIDS {
            self.0[(intid / 32) as usize] |= 1 << (intid % 32);
        }
    }

    pub fn contains(&self, intid: u32) -> bool {
        intid < INTIDS && self.0[(intid / 32) as usize] & (1 << (intid % 32)) != 0
    }

    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

impl Default for IntidSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the guest's device tree gives it.
pub struct Layout {
    /// R: the first region of the memory node.
    pub ram: Range,
    /// How many regions all memory nodes list together: Cairn gives one.
    pub ram_regions: usize,
    /// The device tree blob itself, inside R.
    pub dtb: Range,
    /// This guest's image, BSS and stacks included (guests/kit/guest.ld).
    pub image: Range,
    /// Its initrd, if `/chosen` names one.
    pub initrd: Option<Range>,
    pub cpus: Cpus,
    /// The GIC the kit found (None if it found none).
    pub gic: Option<Gic>,
    /// `reg` ranges of every node but memory and the GIC, whole pages, that touch the
    /// device window.
    pub devices: Ranges,
    /// The virtual UART's frame, whole pages.
    pub uart: Option<Range>,
    /// The SPIs named by the `interrupts` and `interrupt-map` of nodes whose interrupt
    /// parent is the GIC.
    pub spis: IntidSet,
}

extern "C" {
    /// The first and one past the last byte of the guest's footprint (guests/kit/guest.ld).
    static __guest_start: u8;
    static __guest_end: u8;
}

/// The guest's own footprint: text, data, BSS and stacks.
pub fn image() -> Range {
    // Only the symbols' addresses are taken: they bound the footprint.
    let start = core::ptr::addr_of!(__guest_start) as u64;
    let end = core::ptr::addr_of!(__guest_end) as u64;
    Range::new(start, end)
}

/// Parses the device tree at `dtb` (None if there is none).
pub fn read(dtb: usize, gic: Option<Gic>) -> Option<Layout> {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { Fdt::from_ptr(dtb as *const u8) }.ok()?;
    let ram = fdt.memory().regions().find_map(|r| Some(Range::sized(r.starting_address as u64, r.size? as u64)));
    let mut layout = Layout {
        ram: ram.unwrap_or_default(),
        ram_regions: 0,
        dtb: Range::sized(dtb as u64, fdt.total_size() as u64),
        image: image(),
        initrd: initrd(&fdt),
        cpus: smp::cpus(dtb),
        gic,
        devices: Ranges::new(),
        uart: None,
        spis: IntidSet::new(),
    };
    let root = fdt.find_node("/")?;
    let gic_node = gic.and_then(|g| find_gic_node(&fdt, g.distributor.base as u64));
    let gic_phandle = gic_node.and_then(|n| u32_prop(n, "phandle").or_else(|| u32_prop(n, "linux,phandle")));
    let mut visit = |node: FdtNode<'_, '_>, irq_parent: Option<u32>| {
        let is_gic = gic_node.is_some_and(|g| core::ptr::eq(g.name, node.name));
        if is_memory(node) {
            layout.ram_regions += node.reg().map_or(0, |r| r.count());
        } else if !is_gic {
            add_device(&fdt, node, &mut layout);
        }
        if gic_phandle.is_some() && irq_parent == gic_phandle {
            add_gic_specifiers(node.property("interrupts").map_or(&[], |p| p.value), &mut layout.spis);
        }
        if let Some(gic) = gic_phandle {
            add_interrupt_map(&fdt, node, gic, &mut layout.spis);
        }
    };
    walk(root, u32_prop(root, "interrupt-parent"), 0, &mut visit);
    Some(layout)
}

/// Calls `visit` on every node below `node` with the interrupt parent it inherits or names
/// (DT spec v0.4 §2.4.1: `interrupt-parent` is inherited from the nearest ancestor).
fn walk<'b, 'a>(
    node: FdtNode<'b, 'a>,
    irq_parent: Option<u32>,
    depth: usize,
    visit: &mut impl FnMut(FdtNode<'b, 'a>, Option<u32>),
) {
    if depth >= MAX_DEPTH {
        return;
    }
    for child in node.children() {
        let parent = u32_prop(child, "interrupt-parent").or(irq_parent);
        visit(child, parent);
        walk(child, parent, depth + 1, visit);
    }
}

/// The interrupt controller node whose first `reg` is the distributor.
fn find_gic_node<'b, 'a>(fdt: &'b Fdt<'a>, distributor: u64) -> Option<FdtNode<'b, 'a>> {
    fdt.all_nodes().find(|n| {
        n.property("interrupt-controller").is_some() && guestkit::dt::reg_address(fdt, n, 0) == Some(distributor)
    })
}

fn is_memory(node: FdtNode<'_, '_>) -> bool {
    node.property("device_type").and_then(|p| p.as_str()) == Some("memory")
}

/// Records `node`'s `reg` ranges that touch the device window, and the UART's frame.
fn add_device(fdt: &Fdt<'_>, node: FdtNode<'_, '_>, layout: &mut Layout) {
    let Some(reg) = node.reg() else { return };
    let is_uart = node.compatible().is_some_and(|c| c.all().any(|s| s == SBSA_UART_COMPATIBLE));
    for (index, entry) in reg.enumerate() {
        // A `reg` without a size (a CPU's MPIDR, a bus child's unit number) is no frame.
        let (Some(size), Some(base)) = (entry.size, guestkit::dt::reg_address(fdt, &node, index)) else { continue };
        let frame = Range::sized(base, size as u64).pages();
        if is_uart && layout.uart.is_none() {
            layout.uart = Some(frame);
        }
        if frame.overlaps(&DEVICE_WINDOW) {
            layout.devices.push(frame);
        }
    }
}

/// `/chosen` `linux,initrd-start` and `linux,initrd-end`, one or two cells each, the end
/// exclusive (Linux's chosen binding).
fn initrd(fdt: &Fdt<'_>) -> Option<Range> {
    let chosen = fdt.find_node("/chosen")?;
    let read = |name| {
        let bytes = chosen.property(name)?.value;
        Some(
            bytes
                .chunks_exact(CELL)
                .fold(0u64, |acc, c| acc << 32 | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))),
        )
    };
    let (start, end) = (read("linux,initrd-start")?, read("linux,initrd-end")?);
    (end > start).then_some(Range::new(start, end))
}

fn cell(bytes: &[u8], index: usize) -> Option<u32> {
    let b = bytes.get(index * CELL..(index + 1) * CELL)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u32_prop(node: FdtNode<'_, '_>, name: &str) -> Option<u32> {
    cell(node.property(name)?.value, 0)
}

/// Adds the SPIs of a run of GIC interrupt specifiers.
fn add_gic_specifiers(cells: &[u8], spis: &mut IntidSet) {
    for spec in cells.chunks_exact(GIC_SPECIFIER_CELLS * CELL) {
        if let (Some(GIC_SPECIFIER_SPI), Some(number)) = (cell(spec, 0), cell(spec, 1)) {
            spis.insert(FIRST_SPI.saturating_add(number));
        }
    }
}

/// Adds the SPIs an `interrupt-map` (DT spec v0.4 §2.4.3.1, a PCIe host's INTx) sends to
/// the GIC. Each entry is the child unit address and interrupt specifier, the parent's
/// phandle, the parent unit address (its `#address-cells`, 0 if absent) and the parent
/// interrupt specifier (its `#interrupt-cells`).
fn add_interrupt_map(fdt: &Fdt<'_>, node: FdtNode<'_, '_>, gic: u32, spis: &mut IntidSet) {
    let Some(map) = node.property("interrupt-map").map(|p| p.value) else { return };
    let child_cells = u32_prop(node, "#address-cells").unwrap_or(0) as usize
        + u32_prop(node, "#interrupt-cells").unwrap_or(1) as usize;
    let mut at = 0;
    while let Some(phandle) = cell(map, at + child_cells) {
        let Some(parent) = fdt.find_phandle(phandle) else { return };
        let address_cells = u32_prop(parent, "#address-cells").unwrap_or(0) as usize;
        let Some(interrupt_cells) = u32_prop(parent, "#interrupt-cells").map(|n| n as usize) else { return };
        let specifier = at + child_cells + 1 + address_cells;
        let Some(bytes) = map.get(specifier * CELL..(specifier + interrupt_cells) * CELL) else { return };
        if phandle == gic {
            add_gic_specifiers(bytes, spis);
        }
        at = specifier + interrupt_cells;
    }
}
