//! What Cairn needs to know about the machine, read once from the device tree the
//! firmware or QEMU handed over: memory, CPUs, GIC, console UART, PSCI, `/chosen`.
//! Pure queries over the `fdt` crate, tested on the host against DTBs dumped from QEMU.

use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;

use crate::mm::Region;

/// The interrupt controller the machine has (the GIC node's `compatible`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic", "arm,cortex-a7-gic"];
const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];

/// The GIC and its register frames, in `reg` order: for GICv3 the distributor then the
/// redistributor regions; for GICv2 distributor, CPU interface, hypervisor control
/// (GICH) and virtual CPU interface (GICV) (Linux's arm,gic.yaml binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gic {
    pub version: GicVersion,
    pub regions: Vec<Region>,
}

/// How to reach the firmware's PSCI: the `/psci` node's `method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Smc,
    Hvc,
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
    pub psci_method: Option<PsciMethod>,
    pub bootargs: &'a str,
    pub modules: Vec<Module<'a>>,
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
    Ok(Machine {
        memory,
        reserved: fdt.memory_reservations().map(|r| Region::new(r.address() as u64, r.size() as u64)).collect(),
        cpus,
        gic: gic(&fdt),
        uart: console_uart(&fdt),
        psci_method: psci_method(&fdt),
        bootargs: fdt.chosen().bootargs().unwrap_or(""),
        modules: modules(&fdt),
    })
}

/// The total size of the blob at `blob` as its header states, or None if it is not a DTB.
///
/// # Safety
/// `blob` must point to at least the 40-byte FDT header, readable.
pub unsafe fn total_size(blob: *const u8) -> Option<usize> {
    // SAFETY: the caller guarantees a readable header; from_ptr reads only the header.
    unsafe { Fdt::from_ptr(blob) }.ok().map(|f| f.total_size())
}

/// Nodes whose `reg` is not a device a guest may touch directly: RAM, CPUs, the GIC
/// (emulated or remapped), firmware and Cairn's own view of the machine.
fn is_passthrough_device(node: &FdtNode<'_, '_>) -> bool {
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

/// The MMIO regions of the devices a guest gets passed through: every `reg` of every
/// node but RAM, CPUs and the GIC, page-aligned, never overlapping RAM.
pub fn passthrough_regions(blob: &[u8]) -> Vec<Region> {
    let Ok(fdt) = Fdt::new(blob) else { return Vec::new() };
    let memory = memory_regions(&fdt);
    let mut out: Vec<Region> = Vec::new();
    for node in fdt.all_nodes().filter(is_passthrough_device) {
        for r in regions(node) {
            let base = r.base & !(PAGE - 1);
            let end = (r.end() + PAGE - 1) & !(PAGE - 1);
            let region = Region::from_bounds(base, end);
            if region.is_empty() || memory.iter().any(|m| m.overlaps(&region)) {
                continue;
            }
            out.push(region);
        }
    }
    out.sort_by_key(|r| r.base);
    // Merge overlapping or touching regions so each page is mapped once.
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
    Some(Gic { version, regions: regions(node) })
}

/// The PL011 that `/chosen/stdout-path` names, or else the first PL011.
fn console_uart(fdt: &Fdt<'_>) -> Option<Region> {
    let stdout = fdt
        .chosen()
        .stdout()
        .or_else(|| {
            // stdout-path may carry options ("serial0:115200n8") or be an alias.
            let path = fdt.find_node("/chosen")?.property("stdout-path")?.as_str()?;
            let path = path.split(':').next()?;
            fdt.find_node(path).or_else(|| fdt.aliases()?.resolve_node(path))
        })
        .filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| PL011_COMPATIBLE.contains(&s))));
    let node = stdout.or_else(|| fdt.find_compatible(PL011_COMPATIBLE))?;
    regions(node).first().copied()
}

fn psci_method(fdt: &Fdt<'_>) -> Option<PsciMethod> {
    match fdt.find_node("/psci")?.property("method")?.as_str()? {
        "smc" => Some(PsciMethod::Smc),
        "hvc" => Some(PsciMethod::Hvc),
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
        assert_eq!(m.psci_method, Some(PsciMethod::Smc));
        assert_eq!(m.bootargs, "loglevel=debug");
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
    fn rejects_garbage() {
        assert_eq!(parse(&[0u8; 64]).unwrap_err(), DtError::Invalid);
    }
}
