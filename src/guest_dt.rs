//! The device tree a guest boots with, derived from the host's.
//!
//! The guest sees the same machine as the host (same UART, timer, virtio-mmio slots,
//! phandles) except for what Cairn virtualizes. Every node and property is copied byte for
//! byte, so `phandle` values and the references to them stay valid, except:
//! - memory: every `device_type = "memory"` node gives way to one `memory@<base>` listing
//!   the guest's RAM; header reservations outside guest RAM are left out;
//! - `/cpus`: only the vCPUs' `cpu@` nodes stay, started by PSCI; `cpu-map` and the
//!   host's `idle-states` go; from PSCI 0.2 on, Cairn's own powerdown idle state is
//!   described (`idle-states`, `cpu-idle-states`) so the guest's cpuidle uses CPU_SUSPEND;
//! - `/psci`: rewritten for `hvc` and the PSCI version the VM gets;
//! - `/chosen`: loses its child nodes (guest-loader modules) and the host's command line
//!   and initrd, and gets the guest's;
//! - the GIC, when Cairn emulates it: the emulated frames in `reg`, no ITS / v2m child;
//! - devices Cairn keeps for itself on the board (crate::platform) are left out;
//! - properties that refer to a dropped node (e.g. a PCIe host's `msi-map`) go too.
//!
//! The host tree is read with the `fdt` crate; the guest tree is written with rust-vmm's
//! `vm-fdt` (no_std + alloc), which lays out the header, memory-reservation, structure and
//! strings blocks of Devicetree Specification v0.4 chapter 5 (version 17).

use alloc::format;
use alloc::vec::Vec;
use core::ptr;

use fdt::node::{FdtNode, NodeProperty};
use fdt::Fdt;
use vm_fdt::{FdtReserveEntry, FdtWriter};

use crate::mm::Region;
use crate::smccc::psci::{fid, Version};

/// The interrupt controller frames the guest is told about (Linux's arm,gic-v3.yaml and
/// arm,gic.yaml bindings give the `reg` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    V3 {
        distributor: Region,
        redistributors: Region,
    },
    /// No GICH/GICV frames: the guest does not virtualize.
    V2 {
        distributor: Region,
        cpu_interface: Region,
    },
}

/// Function IDs a PSCI 0.1 `/psci` node must list, since 0.1 has no standard IDs
/// (Linux's arm/psci.yaml binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci01Ids {
    pub cpu_suspend: u32,
    pub cpu_off: u32,
    pub cpu_on: u32,
    pub migrate: u32,
}

/// MIGRATE, SMC64 form (DEN0022 §5.1, table 5-1); `crate::smccc::psci::fid` does not list it.
const MIGRATE_64: u32 = 0xC400_0005;

impl Psci01Ids {
    /// The PSCI 0.2 IDs in their SMC64 forms, as QEMU and KVM advertise them.
    pub const PSCI_0_2_SMC64: Psci01Ids = Psci01Ids {
        cpu_suspend: fid::CPU_SUSPEND_64,
        cpu_off: fid::CPU_OFF,
        cpu_on: fid::CPU_ON_64,
        migrate: MIGRATE_64,
    };
}

/// What the guest tree says about the VM.
#[derive(Clone, Copy, Debug)]
pub struct GuestDtConfig<'a> {
    /// Guest RAM; the first region names the `memory@` node.
    pub memory: &'a [Region],
    /// One `cpu@` node per vCPU, matched against the host's by `reg` (the MPIDR affinity).
    /// The first entry is written to the header's `boot_cpuid_phys`.
    pub vcpu_mpidrs: &'a [u64],
    pub psci_version: Version,
    /// Used only when `psci_version` is 0.1.
    pub psci_0_1_ids: Psci01Ids,
    pub bootargs: Option<&'a str>,
    pub initrd: Option<Region>,
    /// The frames Cairn emulates, or None to pass the host's GIC node through unchanged.
    pub gic: Option<GuestGic>,
    /// `compatible` values of devices Cairn keeps for itself (crate::platform): their
    /// nodes are left out.
    pub hidden: &'a [&'a str],
    /// The console PL011's frame (CPU address), when Cairn gives the guest a virtual UART
    /// there instead: its node becomes an SBSA generic UART.
    pub virtual_uart: Option<Region>,
    /// Full paths of the host's device nodes that belong to other VMs: left out.
    pub other_vms_devices: &'a [&'a str],
    /// Whether the guest gets SDEI: `/firmware/sdei` (Linux's arm/firmware/sdei.txt
    /// binding), added to the host's `/firmware` node or in a new one.
    pub sdei: bool,
}

/// Why [`build`] refused.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestDtError {
    /// The host blob is not a device tree the `fdt` crate can read.
    InvalidHostDtb,
    /// `memory` or `vcpu_mpidrs` is empty, a memory region is empty, an MPIDR repeats, or
    /// a region's end overflows.
    InvalidConfig,
    /// This vCPU's MPIDR has no `cpu@` node in the host's `/cpus`.
    NoHostCpu { mpidr: u64 },
    /// `cfg.gic` is given but the host has no GIC node of that version.
    NoHostGic,
    /// A value does not fit the cells the tree gives it (e.g. RAM above 4 GiB with
    /// `#address-cells = <1>`).
    CellOverflow,
    /// The writer refused the tree: a node or property name the Devicetree Specification
    /// does not allow (e.g. a property name over 31 characters), a NUL inside `bootargs`,
    /// overlapping memory reservations, or a blob over 4 GiB.
    Writer(vm_fdt::Error),
}

impl From<vm_fdt::Error> for GuestDtError {
    fn from(e: vm_fdt::Error) -> Self {
        GuestDtError::Writer(e)
    }
}

type Result<T> = core::result::Result<T, GuestDtError>;

/// Size of a cell, the big-endian u32 that addresses, sizes and phandles are made of
/// (Devicetree Specification v0.4 §2.2.4).
const CELL_BYTES: usize = 4;
const CELL_BITS: usize = 32;
/// `#address-cells` and `#size-cells` when a node does not state them (DT spec v0.4 §2.3.5).
const DEFAULT_ADDRESS_CELLS: usize = 2;
const DEFAULT_SIZE_CELLS: usize = 1;

/// The same compatible lists `crate::dt` recognizes the GIC by.
const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic", "arm,cortex-a7-gic"];
/// GIC children that are MSI controllers, which Cairn does not virtualize.
const GIC_MSI_COMPATIBLE: &[&str] = &["arm,gic-v3-its", "arm,gic-v2m-frame"];

/// `/psci` compatible lists by version, newest first (Linux's arm/psci.yaml).
const PSCI_0_1_COMPATIBLE: &[&str] = &["arm,psci"];
const PSCI_0_2_COMPATIBLE: &[&str] = &["arm,psci-0.2", "arm,psci"];
const PSCI_1_0_COMPATIBLE: &[&str] = &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

/// `cpu@` properties replaced by `enable-method = "psci"` (DT spec v0.4 §3.8.1: the
/// spin-table release address means nothing to a guest whose vCPUs start through PSCI).
const CPU_REPLACED: &[&str] = &["enable-method", "cpu-release-addr", "cpu-idle-states"];

/// The idle state Cairn offers (Linux's arm/idle-states.yaml and arm/psci.yaml bindings):
/// one powerdown state of the CPU's own power level. `arm,psci-suspend-param` is the
/// CPU_SUSPEND power_state in the original format (DEN0022 §5.4.2.1): StateType (bit 16)
/// = powerdown, StateID 0, PowerLevel 0. The timer keeps running across it (the guest's
/// timer is always-on), so no `local-timer-stop`.
const IDLE_STATE_NODE: &str = "cpu-powerdown";
const IDLE_STATE_COMPATIBLE: &str = "arm,idle-state";
const IDLE_STATE_PSCI_PARAM: u32 = 1 << 16;
/// What a powerdown costs under Cairn: a trap, a wait, and a resume through the guest's
/// entry point with its MMU off (which QEMU's TCG pays for with TLB flushes).
/// Conservative figures that keep cpuidle to idle periods long enough to be worth it:
/// with a 2 ms residency, Linux's boot to /init took about 0.3 s longer (medians of 4,
/// smp 2) than with cpuidle off; 10 ms keeps the state for a really idle CPU.
const IDLE_STATE_ENTRY_LATENCY_US: u32 = 500;
const IDLE_STATE_EXIT_LATENCY_US: u32 = 1000;
const IDLE_STATE_MIN_RESIDENCY_US: u32 = 10_000;
/// `/chosen` properties that describe the host's boot, replaced from the config.
const CHOSEN_REPLACED: &[&str] = &["bootargs", "linux,initrd-start", "linux,initrd-end"];
/// The virtual UART's node (Linux's arm,sbsa-uart binding in serial/pl011.yaml): the
/// SBSA generic UART has fixed options, so no clocks, and a `current-speed` instead.
const SBSA_UART_COMPATIBLE: &str = "arm,sbsa-uart";
const SBSA_UART_SPEED: u32 = 115_200;
const UART_REPLACED: &[&str] = &["compatible", "clocks", "clock-names", "arm,primecell-periphid", "current-speed"];
/// GIC properties replaced when Cairn emulates the GIC.
const GIC_REPLACED: &[&str] = &["reg", "#redistributor-regions"];

/// Where a property keeps phandles, to find references to nodes the guest tree drops.
#[derive(Clone, Copy)]
enum PhandleLayout {
    /// Every cell is a phandle.
    EveryCell,
    /// Rows of `stride` cells with the phandle at `index`.
    Table { stride: usize, index: usize },
    /// `<phandle specifier...>` entries, the specifier as long as the target's `cells`.
    Specifier { cells: &'static str },
}

/// Properties that refer to other nodes (Linux bindings: pci-msi.txt for `msi-map`
/// (rid-base, phandle, msi-base, length) and `msi-parent`, interrupts for
/// `interrupt-parent`/`interrupt-affinity`, power-domain for `power-domains`).
/// A DTB does not say which cells are phandles, so only these properties are checked.
const PHANDLE_PROPERTIES: &[(&str, PhandleLayout)] = &[
    ("msi-parent", PhandleLayout::Specifier { cells: "#msi-cells" }),
    ("msi-map", PhandleLayout::Table { stride: 4, index: 1 }),
    ("interrupt-parent", PhandleLayout::EveryCell),
    ("interrupt-affinity", PhandleLayout::EveryCell),
    ("power-domains", PhandleLayout::Specifier { cells: "#power-domain-cells" }),
];
/// Properties that only qualify another, dropped along with it: (companion, property).
const COMPANIONS: &[(&str, &str)] = &[("msi-map-mask", "msi-map")];

/// The properties a node's phandle may be in (DT spec v0.4 §2.3.3; `linux,phandle` is the
/// pre-standard spelling some trees still carry).
const PHANDLE_NAMES: &[&str] = &["phandle", "linux,phandle"];

/// Builds the guest's DTB from the host's. The result is a version-17 blob; place it
/// 8-byte aligned in guest memory, as Linux's arm64 boot protocol requires.
pub fn build(host_dtb: &[u8], cfg: &GuestDtConfig<'_>) -> core::result::Result<Vec<u8>, GuestDtError> {
    check_config(cfg)?;
    let fdt = Fdt::new(host_dtb).map_err(|_| GuestDtError::InvalidHostDtb)?;
    let root = fdt.find_node("/").ok_or(GuestDtError::InvalidHostDtb)?;
    let plan = Plan::new(&fdt, root, cfg)?;

    let mut writer = FdtWriter::new_with_mem_reserv(&reservations(&fdt, cfg.memory)?)?;
    // The header field is 32 bits; the vCPU's MPIDR is what Linux reads anyway.
    writer.set_boot_cpuid_phys(cfg.vcpu_mpidrs[0] as u32);
    plan.write_node(&mut writer, root, Kind::Root, Cells::DEFAULT)?;
    Ok(writer.finish()?)
}

/// The same guest tree for another PSCI version (a `set VM psci-version` at Cairn's prompt
/// while the VM is off): `/psci`, the idle states and everything else rewritten from
/// `guest_dtb` itself, its command line and initrd kept.
pub fn with_psci_version(
    guest_dtb: &[u8],
    memory: &[Region],
    vcpu_mpidrs: &[u64],
    psci_version: Version,
) -> core::result::Result<Vec<u8>, GuestDtError> {
    let fdt = Fdt::new(guest_dtb).map_err(|_| GuestDtError::InvalidHostDtb)?;
    let chosen = fdt.find_node("/chosen");
    let cell = |name: &str| chosen.and_then(|c| c.property(name)).map(|p| be_cells(p.value));
    let initrd = match (cell("linux,initrd-start"), cell("linux,initrd-end")) {
        (Some(start), Some(end)) if end > start => Some(Region::from_bounds(start, end)),
        _ => None,
    };
    let cfg = GuestDtConfig {
        memory,
        vcpu_mpidrs,
        psci_version,
        psci_0_1_ids: Psci01Ids::PSCI_0_2_SMC64,
        bootargs: chosen.and_then(|c| str_prop(c, "bootargs")),
        initrd,
        gic: None,
        hidden: &[],
        virtual_uart: None,
        other_vms_devices: &[],
        // An `sdei` node the tree has is copied as it is.
        sdei: false,
    };
    build(guest_dtb, &cfg)
}

fn check_config(cfg: &GuestDtConfig<'_>) -> Result<()> {
    let regions_ok = |r: &Region| !r.is_empty() && r.base.checked_add(r.size).is_some();
    let memory_ok = !cfg.memory.is_empty() && cfg.memory.iter().all(regions_ok);
    let initrd_ok = cfg.initrd.as_ref().is_none_or(regions_ok);
    let mpidrs = cfg.vcpu_mpidrs;
    let mpidrs_ok = !mpidrs.is_empty() && mpidrs.iter().enumerate().all(|(i, m)| !mpidrs[..i].contains(m));
    if memory_ok && initrd_ok && mpidrs_ok {
        Ok(())
    } else {
        Err(GuestDtError::InvalidConfig)
    }
}

/// The host's reservations (DT spec v0.4 §5.3) that lie inside guest memory; the others
/// describe host memory the guest cannot see.
fn reservations(fdt: &Fdt<'_>, memory: &[Region]) -> Result<Vec<FdtReserveEntry>> {
    fdt.memory_reservations()
        .map(|r| Region::new(r.address() as u64, r.size() as u64))
        .filter(|r| r.base.checked_add(r.size).is_some() && memory.iter().any(|m| m.contains_region(r)))
        .map(|r| Ok(FdtReserveEntry::new(r.base, r.size)?))
        .collect()
}

/// How a kept node is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Root,
    Cpus,
    Cpu,
    Chosen,
    Gic,
    /// The console PL011, which becomes the VM's virtual UART.
    Uart,
    /// The root's `firmware`, which takes `sdei` when the guest has SDEI.
    Firmware,
    /// Copied as it is (less references to dropped nodes).
    Plain,
}

/// A node's `#address-cells` and `#size-cells`: the layout of its children's `reg`.
#[derive(Clone, Copy, Debug)]
struct Cells {
    address: usize,
    size: usize,
}

impl Cells {
    const DEFAULT: Cells = Cells { address: DEFAULT_ADDRESS_CELLS, size: DEFAULT_SIZE_CELLS };

    fn of(node: FdtNode<'_, '_>) -> Cells {
        let cells = |name, default| u32_prop(node, name).map_or(default, |c| c as usize);
        Cells {
            address: cells("#address-cells", DEFAULT_ADDRESS_CELLS),
            size: cells("#size-cells", DEFAULT_SIZE_CELLS),
        }
    }
}

/// What the guest tree keeps and drops, decided once from the host tree and the config,
/// then followed while writing.
struct Plan<'f, 'a> {
    fdt: &'f Fdt<'a>,
    cfg: &'f GuestDtConfig<'f>,
    /// The GIC node to rewrite, identified by where its `compatible` value sits in the blob.
    gic: Option<&'a [u8]>,
    /// The console UART node to rewrite, identified the same way.
    uart: Option<&'a [u8]>,
    /// Other VMs' device nodes, identified by where their `reg` values sit.
    others: Vec<&'a [u8]>,
    /// `#address-cells` of `/cpus`, the size of a CPU node's `reg`.
    cpu_address_cells: usize,
    /// Phandles of every node the guest tree drops; properties naming them are dropped too.
    dropped_phandles: Vec<u32>,
    /// The phandle of Cairn's idle state, when the guest gets one.
    idle_state: Option<u32>,
    /// CPU minus bus address of the GIC node (its parent's `ranges`: 0 on QEMU virt,
    /// 0xff80_0000 - 0x4000_0000 on the Pi 4), since the config gives CPU addresses.
    gic_bus_offset: u64,
}

impl<'f, 'a> Plan<'f, 'a> {
    fn new(fdt: &'f Fdt<'a>, root: FdtNode<'f, 'a>, cfg: &'f GuestDtConfig<'f>) -> Result<Self> {
        let cpus = fdt.find_node("/cpus");
        let mut plan = Plan {
            fdt,
            cfg,
            gic: find_gic(fdt, cfg.gic.as_ref())?,
            uart: cfg.virtual_uart.and_then(|r| find_uart(fdt, r)),
            others: cfg
                .other_vms_devices
                .iter()
                .filter_map(|path| Some(fdt.find_node(path)?.property("reg")?.value))
                .collect(),
            cpu_address_cells: cpus.map_or(DEFAULT_ADDRESS_CELLS, |c| Cells::of(c).address),
            dropped_phandles: Vec::new(),
            idle_state: (cfg.psci_version >= Version::V0_2).then(|| max_phandle(root) + 1),
            gic_bus_offset: 0,
        };
        if cfg.gic.is_some() {
            if let Some(node) = fdt.all_nodes().find(|n| plan.is_gic(*n)) {
                plan.gic_bus_offset = crate::dt::cpu_minus_bus(fdt, node);
            }
        }
        plan.check_cpus(cpus)?;
        let mut dropped = Vec::new();
        plan.collect_dropped(root, Kind::Root, &mut dropped);
        plan.dropped_phandles = dropped;
        Ok(plan)
    }

    /// Every vCPU needs a host `cpu@` node to copy (its compatible, caches, idle states).
    fn check_cpus(&self, cpus: Option<FdtNode<'_, 'a>>) -> Result<()> {
        let host: Vec<u64> = cpus
            .into_iter()
            .flat_map(|c| c.children())
            .filter(|c| is_cpu_node(*c))
            .filter_map(|c| self.cpu_mpidr(c))
            .collect();
        match self.cfg.vcpu_mpidrs.iter().find(|m| !host.contains(m)) {
            Some(&mpidr) => Err(GuestDtError::NoHostCpu { mpidr }),
            None => Ok(()),
        }
    }

    fn cpu_mpidr(&self, cpu: FdtNode<'_, '_>) -> Option<u64> {
        let reg = cpu.property("reg")?.value;
        let bytes = reg.get(..self.cpu_address_cells * CELL_BYTES)?;
        Some(be_cells(bytes))
    }

    fn is_other_vms(&self, node: FdtNode<'_, 'a>) -> bool {
        let Some(reg) = node.property("reg").map(|p| p.value) else { return false };
        self.others.iter().any(|o| ptr::eq(*o, reg))
    }

    fn is_gic(&self, node: FdtNode<'_, 'a>) -> bool {
        is_node(self.gic, node)
    }

    /// What becomes of `child` of a `parent` node: None if the guest tree drops it.
    fn fate(&self, parent: Kind, child: FdtNode<'_, 'a>) -> Option<Kind> {
        if str_prop(child, "device_type") == Some("memory") {
            return None; // replaced by the one node describing guest RAM
        }
        match parent {
            Kind::Chosen => None, // guest-loader `module@` nodes: the host's boot payloads
            Kind::Cpus if child.name == "cpu-map" => None, // may name dropped CPUs
            Kind::Cpus if child.name == "idle-states" => None, // the firmware's, not Cairn's
            Kind::Cpus if is_cpu_node(child) => {
                let mpidr = self.cpu_mpidr(child)?;
                self.cfg.vcpu_mpidrs.contains(&mpidr).then_some(Kind::Cpu)
            }
            Kind::Gic if has_compatible(child, GIC_MSI_COMPATIBLE) => None,
            Kind::Root if child.name == "psci" => None, // rewritten for `hvc`
            _ if has_compatible(child, self.cfg.hidden) => None, // Cairn's own device
            _ if self.is_other_vms(child) => None,
            Kind::Root if child.name == "chosen" => Some(Kind::Chosen),
            Kind::Root if child.name == "cpus" => Some(Kind::Cpus),
            Kind::Root if child.name == FIRMWARE_NODE => Some(Kind::Firmware),
            _ if self.is_gic(child) => Some(Kind::Gic),
            _ if is_node(self.uart, child) => Some(Kind::Uart),
            _ => Some(Kind::Plain),
        }
    }

    fn collect_dropped(&self, node: FdtNode<'_, 'a>, kind: Kind, dropped: &mut Vec<u32>) {
        for child in node.children() {
            match self.fate(kind, child) {
                Some(child_kind) => self.collect_dropped(child, child_kind, dropped),
                None => subtree_phandles(child, dropped),
            }
        }
    }

    fn refers_to_dropped(&self, prop: &NodeProperty<'_>) -> bool {
        let Some(&(_, layout)) = PHANDLE_PROPERTIES.iter().find(|(name, _)| *name == prop.name) else {
            return false;
        };
        let cells: Vec<u32> = prop.value.chunks_exact(CELL_BYTES).map(|c| be_cells(c) as u32).collect();
        let dropped = |p: &u32| self.dropped_phandles.contains(p);
        match layout {
            PhandleLayout::EveryCell => cells.iter().any(dropped),
            PhandleLayout::Table { stride, index } => cells.chunks_exact(stride).any(|row| dropped(&row[index])),
            PhandleLayout::Specifier { cells: name } => self.specifier_refers_to(&cells, name, dropped),
        }
    }

    /// Walks `<phandle specifier...>` entries; each target's `cells_name` property gives
    /// its specifier length (absent means 0).
    fn specifier_refers_to(&self, cells: &[u32], cells_name: &str, dropped: impl Fn(&u32) -> bool) -> bool {
        let mut rest = cells;
        while let Some((phandle, tail)) = rest.split_first() {
            if dropped(phandle) {
                return true;
            }
            let Some(target) = self.fdt.find_phandle(*phandle) else { return false };
            let len = u32_prop(target, cells_name).unwrap_or(0) as usize;
            rest = tail.get(len..).unwrap_or(&[]);
        }
        false
    }

    /// Writes `node` as `kind`, then its kept children. All of a node's properties go
    /// before its first child, as the structure block requires (DT spec v0.4 §5.4.2).
    fn write_node(&self, w: &mut FdtWriter, node: FdtNode<'_, 'a>, kind: Kind, parent_cells: Cells) -> Result<()> {
        let handle = w.begin_node(if kind == Kind::Root { "" } else { node.name })?;
        self.copy_properties(w, node, kind)?;
        self.add_properties(w, kind, parent_cells)?;
        let cells = Cells::of(node);
        if let (Kind::Cpus, Some(phandle)) = (kind, self.idle_state) {
            write_idle_states(w, phandle)?;
        }
        if kind == Kind::Firmware && self.cfg.sdei && !node.children().any(|c| c.name == SDEI_NODE) {
            write_sdei(w)?;
        }
        if kind == Kind::Root {
            write_memory(w, self.cfg.memory, cells)?;
            write_psci(w, self.cfg)?;
            if self.cfg.sdei && !node.children().any(|c| c.name == FIRMWARE_NODE) {
                let firmware = w.begin_node(FIRMWARE_NODE)?;
                write_sdei(w)?;
                w.end_node(firmware)?;
            }
            if !node.children().any(|c| c.name == "chosen") {
                let chosen = w.begin_node("chosen")?;
                self.add_properties(w, Kind::Chosen, cells)?;
                w.end_node(chosen)?;
            }
        }
        for child in node.children() {
            if let Some(child_kind) = self.fate(kind, child) {
                self.write_node(w, child, child_kind, cells)?;
            }
        }
        Ok(w.end_node(handle)?)
    }

    fn copy_properties(&self, w: &mut FdtWriter, node: FdtNode<'_, 'a>, kind: Kind) -> Result<()> {
        let replaced = match kind {
            Kind::Cpu => CPU_REPLACED,
            Kind::Chosen => CHOSEN_REPLACED,
            Kind::Gic => GIC_REPLACED,
            Kind::Uart => UART_REPLACED,
            Kind::Root | Kind::Cpus | Kind::Firmware | Kind::Plain => &[],
        };
        let companion_dropped = |prop: &NodeProperty<'_>| {
            COMPANIONS.iter().any(|(companion, of)| {
                prop.name == *companion && node.property(of).is_some_and(|p| self.refers_to_dropped(&p))
            })
        };
        for prop in node.properties() {
            if !replaced.contains(&prop.name) && !self.refers_to_dropped(&prop) && !companion_dropped(&prop) {
                w.property(prop.name, prop.value)?;
            }
        }
        Ok(())
    }

    /// The properties that replace the ones `copy_properties` left out.
    fn add_properties(&self, w: &mut FdtWriter, kind: Kind, parent_cells: Cells) -> Result<()> {
        match kind {
            Kind::Cpu => {
                w.property_string("enable-method", "psci")?;
                if let Some(phandle) = self.idle_state {
                    w.property_u32("cpu-idle-states", phandle)?;
                }
            }
            Kind::Chosen => add_chosen(w, self.cfg)?,
            Kind::Gic => {
                if let Some(gic) = self.cfg.gic {
                    add_gic(w, gic.on_bus(self.gic_bus_offset), parent_cells)?;
                }
            }
            Kind::Uart => {
                w.property_string("compatible", SBSA_UART_COMPATIBLE)?;
                w.property_u32("current-speed", SBSA_UART_SPEED)?;
            }
            Kind::Root | Kind::Cpus | Kind::Firmware | Kind::Plain => {}
        }
        Ok(())
    }
}

/// The host GIC node to rewrite, as `crate::dt` finds it: the first with a compatible of
/// the version Cairn emulates.
fn find_gic<'a>(fdt: &Fdt<'a>, gic: Option<&GuestGic>) -> Result<Option<&'a [u8]>> {
    let Some(gic) = gic else { return Ok(None) };
    let compatible = match gic {
        GuestGic::V3 { .. } => GICV3_COMPATIBLE,
        GuestGic::V2 { .. } => GICV2_COMPATIBLE,
    };
    let node = fdt.find_compatible(compatible).ok_or(GuestDtError::NoHostGic)?;
    Ok(Some(node.property("compatible").ok_or(GuestDtError::NoHostGic)?.value))
}

/// Whether `node` is the one whose `compatible` value sits at `found` in the blob.
fn is_node(found: Option<&[u8]>, node: FdtNode<'_, '_>) -> bool {
    let compatible = node.property("compatible").map(|p| p.value);
    matches!((found, compatible), (Some(f), Some(c)) if ptr::eq(f, c))
}

/// The PL011 node whose first register frame is `frame` (CPU addresses), by where its
/// `compatible` value sits.
fn find_uart<'a>(fdt: &Fdt<'a>, frame: Region) -> Option<&'a [u8]> {
    let node = fdt
        .all_nodes()
        .filter(|n| has_compatible(*n, crate::dt::PL011_COMPATIBLE))
        .find(|n| crate::dt::translated_regions(fdt, *n).first().is_some_and(|r| r.base == frame.base))?;
    Some(node.property("compatible")?.value)
}

/// The largest phandle in the tree (0 if none), so a new node's can be unique.
fn max_phandle(root: FdtNode<'_, '_>) -> u32 {
    let mut all = Vec::new();
    subtree_phandles(root, &mut all);
    all.into_iter().max().unwrap_or(0)
}

/// `/cpus/idle-states` with Cairn's one powerdown state.
fn write_idle_states(w: &mut FdtWriter, phandle: u32) -> Result<()> {
    let states = w.begin_node("idle-states")?;
    w.property_string("entry-method", "psci")?;
    let state = w.begin_node(IDLE_STATE_NODE)?;
    w.property_string("compatible", IDLE_STATE_COMPATIBLE)?;
    w.property_u32("arm,psci-suspend-param", IDLE_STATE_PSCI_PARAM)?;
    w.property_u32("entry-latency-us", IDLE_STATE_ENTRY_LATENCY_US)?;
    w.property_u32("exit-latency-us", IDLE_STATE_EXIT_LATENCY_US)?;
    w.property_u32("min-residency-us", IDLE_STATE_MIN_RESIDENCY_US)?;
    w.property_u32("phandle", phandle)?;
    w.end_node(state)?;
    Ok(w.end_node(states)?)
}

fn subtree_phandles(node: FdtNode<'_, '_>, out: &mut Vec<u32>) {
    out.extend(PHANDLE_NAMES.iter().filter_map(|name| u32_prop(node, name)));
    for child in node.children() {
        subtree_phandles(child, out);
    }
}

/// `/memory@<base>` (DT spec v0.4 §3.4), in the root's cells.
fn write_memory(w: &mut FdtWriter, memory: &[Region], root_cells: Cells) -> Result<()> {
    let node = w.begin_node(&format!("memory@{:x}", memory[0].base))?;
    w.property_string("device_type", "memory")?;
    w.property("reg", &encode_reg(memory, root_cells)?)?;
    Ok(w.end_node(node)?)
}

/// The node SDEI's goes under, and SDEI's (Linux's arm/firmware/sdei.txt binding).
const FIRMWARE_NODE: &str = "firmware";
const SDEI_NODE: &str = "sdei";
const SDEI_COMPATIBLE: &str = "arm,sdei-1.0";

/// `sdei` for SDEI through `hvc`.
fn write_sdei(w: &mut FdtWriter) -> Result<()> {
    let node = w.begin_node(SDEI_NODE)?;
    w.property_string("compatible", SDEI_COMPATIBLE)?;
    w.property_string("method", "hvc")?;
    Ok(w.end_node(node)?)
}

/// `/psci` for PSCI through `hvc` (Linux's arm/psci.yaml).
fn write_psci(w: &mut FdtWriter, cfg: &GuestDtConfig<'_>) -> Result<()> {
    let node = w.begin_node("psci")?;
    let compatible = if cfg.psci_version < Version::V0_2 {
        PSCI_0_1_COMPATIBLE
    } else if cfg.psci_version < Version::V1_0 {
        PSCI_0_2_COMPATIBLE
    } else {
        PSCI_1_0_COMPATIBLE
    };
    w.property("compatible", &string_list(compatible))?;
    w.property_string("method", "hvc")?;
    if cfg.psci_version < Version::V0_2 {
        let ids = cfg.psci_0_1_ids;
        w.property_u32("cpu_suspend", ids.cpu_suspend)?;
        w.property_u32("cpu_off", ids.cpu_off)?;
        w.property_u32("cpu_on", ids.cpu_on)?;
        w.property_u32("migrate", ids.migrate)?;
    }
    Ok(w.end_node(node)?)
}

/// The guest's command line and initrd (Linux's chosen binding: the initrd bounds are
/// `[start, end)`, written as u64s).
fn add_chosen(w: &mut FdtWriter, cfg: &GuestDtConfig<'_>) -> Result<()> {
    if let Some(bootargs) = cfg.bootargs {
        w.property_string("bootargs", bootargs)?;
    }
    if let Some(initrd) = cfg.initrd {
        w.property_u64("linux,initrd-start", initrd.base)?;
        w.property_u64("linux,initrd-end", initrd.end())?;
    }
    Ok(())
}

/// The emulated GIC's frames, in the GIC's parent's cells.
impl GuestGic {
    /// The same frames in the bus addresses of a node whose CPU addresses are `offset`
    /// above them.
    fn on_bus(self, offset: u64) -> GuestGic {
        let bus = |r: Region| Region::new(r.base.wrapping_sub(offset), r.size);
        match self {
            GuestGic::V3 { distributor, redistributors } => {
                GuestGic::V3 { distributor: bus(distributor), redistributors: bus(redistributors) }
            }
            GuestGic::V2 { distributor, cpu_interface } => {
                GuestGic::V2 { distributor: bus(distributor), cpu_interface: bus(cpu_interface) }
            }
        }
    }
}

fn add_gic(w: &mut FdtWriter, gic: GuestGic, parent_cells: Cells) -> Result<()> {
    match gic {
        GuestGic::V3 { distributor, redistributors } => {
            w.property("reg", &encode_reg(&[distributor, redistributors], parent_cells)?)?;
            // One contiguous redistributor region (arm,gic-v3.yaml).
            w.property_u32("#redistributor-regions", 1)?;
        }
        GuestGic::V2 { distributor, cpu_interface } => {
            w.property("reg", &encode_reg(&[distributor, cpu_interface], parent_cells)?)?;
        }
    }
    Ok(())
}

/// A `reg` value: (address, size) pairs in the given cells (DT spec v0.4 §2.3.6).
fn encode_reg(regions: &[Region], cells: Cells) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(regions.len() * (cells.address + cells.size) * CELL_BYTES);
    for region in regions {
        push_cells(&mut out, region.base, cells.address)?;
        push_cells(&mut out, region.size, cells.size)?;
    }
    Ok(out)
}

/// Appends `value` as `count` big-endian cells, most significant first.
fn push_cells(out: &mut Vec<u8>, value: u64, count: usize) -> Result<()> {
    let bits = count * CELL_BITS;
    if bits < u64::BITS as usize && value >> bits != 0 {
        return Err(GuestDtError::CellOverflow);
    }
    for i in (0..count).rev() {
        // Cells beyond the 64 bits of `value` are zero.
        let shift = u32::try_from(i * CELL_BITS).unwrap_or(u32::MAX);
        out.extend_from_slice(&(value.checked_shr(shift).unwrap_or(0) as u32).to_be_bytes());
    }
    Ok(())
}

/// A stringlist value: NUL-terminated strings back to back (DT spec v0.4 §2.2.4).
fn string_list(items: &[&str]) -> Vec<u8> {
    items.iter().flat_map(|s| s.bytes().chain([0])).collect()
}

fn be_cells(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(CELL_BYTES)
        .fold(0, |acc, c| (acc << CELL_BITS) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
}

fn u32_prop(node: FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let value = node.property(name)?.value;
    (value.len() == CELL_BYTES).then(|| be_cells(value) as u32)
}

fn str_prop<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    node.property(name)?.as_str()
}

fn is_cpu_node(node: FdtNode<'_, '_>) -> bool {
    node.name.split('@').next() == Some("cpu")
}

fn has_compatible(node: FdtNode<'_, '_>, with: &[&str]) -> bool {
    node.compatible().is_some_and(|c| c.all().any(|s| with.contains(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::exit::Conduit;
    use crate::arch::aarch64::gicarch::GicVersion;
    use crate::dt;
    use alloc::vec;

    const VIRT_GICV3: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv3-smp4.dtb");
    const VIRT_GICV2: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv2-smp2.dtb");

    /// `fdt_header.version` (DT spec v0.4 §5.2): the fifth big-endian u32.
    const HEADER_VERSION_OFFSET: usize = 20;
    const DTB_VERSION: u32 = 17;

    /// Phandles in the fixtures (`dtc -I dtb -O dts`): the GIC, its ITS / v2m frame.
    const V3_GIC_PHANDLE: u32 = 0x8005;
    const V3_ITS_PHANDLE: u32 = 0x8006;
    const V2_V2M_PHANDLE: u32 = 0x8004;

    const RAM: Region = Region::new(0x4000_0000, 0x1000_0000);
    const RAM_HIGH: Region = Region::new(0x1_0000_0000, 0x2000_0000);
    const INITRD: Region = Region::new(0x4800_0000, 0x20_0000);
    const V3_DIST: Region = Region::new(0x0800_0000, 0x1_0000);
    const V3_REDIST: Region = Region::new(0x080A_0000, 0x4_0000);
    const V2_DIST: Region = Region::new(0x0800_0000, 0x1_0000);
    const V2_CPU: Region = Region::new(0x0801_0000, 0x1_0000);

    fn config<'a>(memory: &'a [Region], vcpus: &'a [u64]) -> GuestDtConfig<'a> {
        GuestDtConfig {
            memory,
            vcpu_mpidrs: vcpus,
            psci_version: Version::V1_1,
            psci_0_1_ids: Psci01Ids::PSCI_0_2_SMC64,
            bootargs: Some("console=ttyAMA0 earlycon"),
            initrd: Some(INITRD),
            gic: Some(GuestGic::V3 { distributor: V3_DIST, redistributors: V3_REDIST }),
            hidden: &[],
            virtual_uart: None,
            other_vms_devices: &[],
            sdei: false,
        }
    }

    fn v2_config<'a>(memory: &'a [Region], vcpus: &'a [u64]) -> GuestDtConfig<'a> {
        GuestDtConfig {
            gic: Some(GuestGic::V2 { distributor: V2_DIST, cpu_interface: V2_CPU }),
            ..config(memory, vcpus)
        }
    }

    fn u64_prop(node: FdtNode<'_, '_>, name: &str) -> Option<u64> {
        node.property(name).map(|p| be_cells(p.value))
    }

    fn compatible<'a>(fdt: &Fdt<'a>, path: &str) -> Vec<&'a str> {
        fdt.find_node(path).unwrap().compatible().unwrap().all().collect()
    }

    fn regions(node: FdtNode<'_, '_>) -> Vec<Region> {
        node.reg().unwrap().map(|r| Region::new(r.starting_address as u64, r.size.unwrap() as u64)).collect()
    }

    fn has_property_anywhere(fdt: &Fdt<'_>, name: &str) -> bool {
        fdt.all_nodes().any(|n| n.property(name).is_some())
    }

    #[test]
    fn output_is_a_version_17_dtb() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0])).unwrap();
        let version = u32::from_be_bytes(out[HEADER_VERSION_OFFSET..][..CELL_BYTES].try_into().unwrap());
        assert_eq!(version, DTB_VERSION);
        let fdt = Fdt::new(&out).unwrap();
        assert_eq!(fdt.total_size(), out.len());
    }

    #[test]
    fn one_memory_node_with_every_guest_region() {
        let out = build(VIRT_GICV3, &config(&[RAM, RAM_HIGH], &[0])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let memory: Vec<_> = fdt.all_nodes().filter(|n| str_prop(*n, "device_type") == Some("memory")).collect();
        assert_eq!(memory.len(), 1);
        assert_eq!(memory[0].name, "memory@40000000");
        assert_eq!(regions(memory[0]), [RAM, RAM_HIGH]);
    }

    #[test]
    fn keeps_only_the_vcpus_and_starts_them_with_psci() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0, 2])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.iter().map(|c| c.ids().first()).collect::<Vec<_>>(), [0, 2]);
        assert!(cpus.iter().all(|c| c.property("enable-method").unwrap().as_str() == Some("psci")));
        assert!(fdt.find_node("/cpus/cpu-map").is_none());
        assert!(!has_property_anywhere(&fdt, "cpu-release-addr"));
    }

    #[test]
    fn cpus_point_at_cairns_powerdown_idle_state_from_psci_0_2() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0, 1])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let states = fdt.find_node("/cpus/idle-states").expect("an idle-states node");
        assert_eq!(str_prop(states, "entry-method"), Some("psci"));
        let state = fdt.find_node("/cpus/idle-states/cpu-powerdown").unwrap();
        assert_eq!(u32_prop(state, "arm,psci-suspend-param"), Some(IDLE_STATE_PSCI_PARAM));
        let phandle = u32_prop(state, "phandle").unwrap();
        let host = Fdt::new(VIRT_GICV3).unwrap();
        assert!(host.find_phandle(phandle).is_none(), "a phandle the host tree does not use");
        let cpu_nodes = fdt.find_node("/cpus").unwrap().children().filter(|c| c.name.starts_with("cpu@"));
        let pointers: Vec<_> = cpu_nodes.map(|c| u32_prop(c, "cpu-idle-states")).collect();
        assert_eq!(pointers, [Some(phandle), Some(phandle)]);
        let cfg = GuestDtConfig { psci_version: Version::V0_1, ..config(&[RAM], &[0]) };
        let out = build(VIRT_GICV3, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        assert!(fdt.find_node("/cpus/idle-states").is_none(), "PSCI 0.1 has no power_state format");
        assert!(!has_property_anywhere(&fdt, "cpu-idle-states"));
    }

    const RPI4B: &[u8] = include_bytes!("../tests/fixtures/rpi4b-debian-6.1.dtb");

    #[test]
    fn pi_4_gic_is_rewritten_in_its_bus_addresses_and_cpus_use_psci() {
        let ram = [Region::new(0, 0x3B40_0000)];
        let cfg = GuestDtConfig {
            gic: Some(GuestGic::V2 {
                distributor: Region::new(0xFF84_1000, 0x1000),
                cpu_interface: Region::new(0xFF84_2000, 0x2000),
            }),
            ..config(&ram, &[0, 1, 2, 3])
        };
        let out = build(RPI4B, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let gic = fdt.find_node("/soc/interrupt-controller@40041000").unwrap();
        let reg: Vec<u64> = gic.property("reg").unwrap().value.chunks(4).map(be_cells).collect();
        assert_eq!(reg, [0x4004_1000, 0x1000, 0x4004_2000, 0x2000], "soc bus addresses, no GICH/GICV");
        assert_eq!(fdt.cpus().count(), 4);
        assert!(fdt.cpus().all(|c| c.property("enable-method").unwrap().as_str() == Some("psci")));
        assert!(!has_property_anywhere(&fdt, "cpu-release-addr"));
        let hidden = GuestDtConfig { hidden: &["brcm,bcm2835-pm-wdt"], ..cfg };
        let out = build(RPI4B, &hidden).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        assert!(fdt.find_compatible(&["brcm,bcm2835-pm-wdt"]).is_none(), "Cairn's power controller is not the guest's");
    }

    #[test]
    fn sdei_goes_under_firmware_once() {
        let plain = build(VIRT_GICV3, &config(&[RAM], &[0])).unwrap();
        assert!(Fdt::new(&plain).unwrap().find_node("/firmware/sdei").is_none(), "off by default");
        let cfg = GuestDtConfig { sdei: true, ..config(&[RAM], &[0]) };
        let out = build(VIRT_GICV3, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        assert_eq!(compatible(&fdt, "/firmware/sdei"), ["arm,sdei-1.0"]);
        let method = fdt.find_node("/firmware/sdei").unwrap().property("method").unwrap().as_str();
        assert_eq!(method, Some("hvc"));
        // A tree that has /firmware (and even its sdei) keeps one of each.
        let again = build(&out, &cfg).unwrap();
        let fdt = Fdt::new(&again).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.children().filter(|c| c.name == "firmware").count(), 1);
        assert_eq!(fdt.find_node("/firmware").unwrap().children().filter(|c| c.name == "sdei").count(), 1);
    }

    #[test]
    fn more_vcpus_than_host_cpus_is_an_error() {
        assert_eq!(build(VIRT_GICV2, &v2_config(&[RAM], &[0, 1, 2])), Err(GuestDtError::NoHostCpu { mpidr: 2 }));
    }

    #[test]
    fn psci_node_by_version() {
        let psci = |version| {
            let cfg = GuestDtConfig { psci_version: version, ..config(&[RAM], &[0]) };
            build(VIRT_GICV3, &cfg).unwrap()
        };
        let out = psci(Version::V0_1);
        let fdt = Fdt::new(&out).unwrap();
        let node = fdt.find_node("/psci").unwrap();
        assert_eq!(compatible(&fdt, "/psci"), ["arm,psci"]);
        assert_eq!(str_prop(node, "method"), Some("hvc"));
        assert_eq!(u32_prop(node, "cpu_suspend"), Some(fid::CPU_SUSPEND_64));
        assert_eq!(u32_prop(node, "cpu_off"), Some(fid::CPU_OFF));
        assert_eq!(u32_prop(node, "cpu_on"), Some(fid::CPU_ON_64));
        assert_eq!(u32_prop(node, "migrate"), Some(MIGRATE_64));

        let out = psci(Version::V0_2);
        let fdt = Fdt::new(&out).unwrap();
        assert_eq!(compatible(&fdt, "/psci"), ["arm,psci-0.2", "arm,psci"]);
        assert!(fdt.find_node("/psci").unwrap().property("cpu_on").is_none());

        for version in [Version::V1_0, Version::V1_1] {
            let out = psci(version);
            let fdt = Fdt::new(&out).unwrap();
            let node = fdt.find_node("/psci").unwrap();
            assert_eq!(compatible(&fdt, "/psci"), ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
            assert_eq!(str_prop(node, "method"), Some("hvc"));
            assert!(node.property("cpu_suspend").is_none() && node.property("migrate").is_none());
        }
        assert_eq!(fdt_nodes_named(&psci(Version::V1_1), "psci"), 1);
    }

    fn fdt_nodes_named(blob: &[u8], name: &str) -> usize {
        Fdt::new(blob).unwrap().all_nodes().filter(|n| n.name == name).count()
    }

    #[test]
    fn chosen_gets_the_guest_command_line_and_initrd_and_loses_modules() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(str_prop(chosen, "bootargs"), Some("console=ttyAMA0 earlycon"));
        assert_eq!(u64_prop(chosen, "linux,initrd-start"), Some(INITRD.base));
        assert_eq!(u64_prop(chosen, "linux,initrd-end"), Some(INITRD.end()));
        assert_eq!(str_prop(chosen, "stdout-path"), Some("/pl011@9000000"));
        assert_eq!(chosen.children().count(), 0);
        assert!(fdt.all_nodes().all(|n| !n.name.starts_with("module@")));
    }

    #[test]
    fn chosen_without_bootargs_or_initrd_drops_the_hosts() {
        let cfg = GuestDtConfig { bootargs: None, initrd: None, ..config(&[RAM], &[0]) };
        let out = build(VIRT_GICV3, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(chosen.property("bootargs").is_none());
        assert!(chosen.property("linux,initrd-start").is_none());
        assert!(chosen.property("stdout-path").is_some());
    }

    #[test]
    fn gicv3_gets_the_emulated_frames_and_loses_its_its() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let gic = fdt.find_compatible(GICV3_COMPATIBLE).unwrap();
        assert_eq!(regions(gic), [V3_DIST, V3_REDIST]);
        assert_eq!(u32_prop(gic, "#redistributor-regions"), Some(1));
        assert_eq!(u32_prop(gic, "phandle"), Some(V3_GIC_PHANDLE));
        assert_eq!(gic.children().count(), 0);
        assert!(fdt.find_compatible(&["arm,gic-v3-its"]).is_none());
        assert!(fdt.find_phandle(V3_ITS_PHANDLE).is_none());
        // The PCIe host's `msi-map` named the ITS; interrupt-parent still names the GIC.
        let pcie = fdt.find_node("/pcie").unwrap();
        assert!(pcie.property("msi-map").is_none());
        assert!(pcie.property("interrupt-map").is_some());
        assert!(!has_property_anywhere(&fdt, "msi-parent"));
        assert_eq!(u32_prop(fdt.find_node("/").unwrap(), "interrupt-parent"), Some(V3_GIC_PHANDLE));
    }

    #[test]
    fn gicv2_loses_its_virtualization_frames_and_v2m() {
        let out = build(VIRT_GICV2, &v2_config(&[RAM], &[0, 1])).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let gic = fdt.find_compatible(GICV2_COMPATIBLE).unwrap();
        assert_eq!(regions(gic), [V2_DIST, V2_CPU]);
        assert!(gic.property("#redistributor-regions").is_none());
        assert!(fdt.find_compatible(&["arm,gic-v2m-frame"]).is_none());
        assert!(fdt.find_phandle(V2_V2M_PHANDLE).is_none());
        assert!(fdt.find_node("/pcie").unwrap().property("msi-map").is_none());
    }

    #[test]
    fn without_an_emulated_gic_the_hosts_is_copied() {
        let cfg = GuestDtConfig { gic: None, ..config(&[RAM], &[0]) };
        let out = build(VIRT_GICV3, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let host = Fdt::new(VIRT_GICV3).unwrap();
        let reg = |f: &Fdt<'_>| f.find_compatible(GICV3_COMPATIBLE).unwrap().property("reg").unwrap().value.to_vec();
        assert_eq!(reg(&fdt), reg(&host));
        assert!(fdt.find_compatible(&["arm,gic-v3-its"]).is_some());
        assert!(fdt.find_node("/pcie").unwrap().property("msi-map").is_some());
    }

    #[test]
    fn the_console_pl011_becomes_an_sbsa_uart_with_its_address_and_interrupt() {
        let uart = Region::new(0x0900_0000, 0x1000);
        let out = build(VIRT_GICV3, &GuestDtConfig { virtual_uart: Some(uart), ..config(&[RAM], &[0]) }).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let node = fdt.find_node("/pl011@9000000").unwrap();
        assert_eq!(compatible(&fdt, "/pl011@9000000"), ["arm,sbsa-uart"]);
        assert_eq!(regions(node), [uart]);
        assert_eq!(u32_prop(node, "current-speed"), Some(115_200));
        assert!(node.property("clocks").is_none(), "an SBSA UART has no clocks to look up");
        let host = Fdt::new(VIRT_GICV3).unwrap();
        let host_interrupts = host.find_node("/pl011@9000000").unwrap().property("interrupts").unwrap().value;
        assert_eq!(node.property("interrupts").unwrap().value, host_interrupts);
        // The console still names it.
        assert_eq!(fdt.chosen().stdout().map(|n| n.name), Some("pl011@9000000"));
        // Without a virtual UART the PL011 node is the host's.
        let out = build(VIRT_GICV3, &config(&[RAM], &[0])).unwrap();
        assert_eq!(compatible(&Fdt::new(&out).unwrap(), "/pl011@9000000"), ["arm,pl011", "arm,primecell"]);
    }

    #[test]
    fn other_vms_devices_are_left_out_with_what_refers_to_them() {
        let others = ["/virtio_mmio@a000000", "/pl031@9010000"];
        let out = build(VIRT_GICV3, &GuestDtConfig { other_vms_devices: &others, ..config(&[RAM], &[0]) }).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        assert!(fdt.find_node("/virtio_mmio@a000000").is_none());
        assert!(fdt.find_node("/pl031@9010000").is_none());
        assert!(fdt.find_node("/virtio_mmio@a000200").is_some(), "its neighbour stays");
    }

    #[test]
    fn a_guest_tree_changes_psci_version_and_keeps_the_rest() {
        let uart = Region::new(0x0900_0000, 0x1000);
        let cfg = GuestDtConfig { virtual_uart: Some(uart), ..config(&[RAM], &[0, 1]) };
        let first = build(VIRT_GICV3, &cfg).unwrap();
        let again = with_psci_version(&first, &[RAM], &[0, 1], Version::V0_2).unwrap();
        let fdt = Fdt::new(&again).unwrap();
        assert_eq!(compatible(&fdt, "/psci"), ["arm,psci-0.2", "arm,psci"]);
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0 earlycon"));
        let m = dt::parse(&again).unwrap();
        assert_eq!((m.memory.as_slice(), m.cpus.len()), (&[RAM][..], 2));
        assert_eq!(m.initrd, Some(INITRD));
        assert_eq!(compatible(&fdt, "/pl011@9000000"), ["arm,sbsa-uart"], "the virtual UART stays");
        assert!(fdt.find_node("/cpus/idle-states").is_some(), "0.2 has Cairn's idle state");
        let old = with_psci_version(&again, &[RAM], &[0, 1], Version::V0_1).unwrap();
        let fdt = Fdt::new(&old).unwrap();
        assert_eq!(compatible(&fdt, "/psci"), ["arm,psci"]);
        assert!(fdt.find_node("/cpus/idle-states").is_none(), "0.1 has no CPU_SUSPEND idle state");
    }

    #[test]
    fn gic_version_must_match_the_host() {
        assert_eq!(build(VIRT_GICV2, &config(&[RAM], &[0])), Err(GuestDtError::NoHostGic));
    }

    #[test]
    fn round_trip_through_the_host_parser() {
        let out = build(VIRT_GICV3, &config(&[RAM], &[0, 1])).unwrap();
        let m = dt::parse(&out).unwrap();
        assert_eq!(m.memory, [RAM]);
        assert_eq!(m.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(m.uart, Some(Region::new(0x0900_0000, 0x1000)));
        let gic = m.gic.unwrap();
        assert_eq!(gic.version, GicVersion::V3);
        assert_eq!(gic.regions, [V3_DIST, V3_REDIST]);
        assert_eq!(m.psci_method, Some(Conduit::Hvc));
        assert_eq!(m.bootargs, "console=ttyAMA0 earlycon");
        assert!(m.modules.is_empty());

        let out = build(VIRT_GICV2, &v2_config(&[RAM], &[1])).unwrap();
        let m = dt::parse(&out).unwrap();
        assert_eq!(m.gic.unwrap().regions, [V2_DIST, V2_CPU]);
        assert_eq!(m.uart, Some(Region::new(0x0900_0000, 0x1000)));
    }

    /// A small host tree unlike QEMU's: 32-bit cells, spin-table CPUs, an MSI user with
    /// `msi-parent`, no `/psci` and no `/chosen`, and memory reservations in and out of
    /// the guest's RAM.
    fn spin_table_host() -> Vec<u8> {
        const GIC_PHANDLE: u32 = 1;
        const ITS_PHANDLE: u32 = 2;
        const CPUS: [u32; 2] = [0x0, 0x100];
        let reserved =
            [FdtReserveEntry::new(0x4000_0000, 0x1000).unwrap(), FdtReserveEntry::new(0x8000_0000, 0x1000).unwrap()];
        let mut w = FdtWriter::new_with_mem_reserv(&reserved).unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_u32("interrupt-parent", GIC_PHANDLE).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for mpidr in CPUS {
            let cpu = w.begin_node(&format!("cpu@{mpidr:x}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", mpidr).unwrap();
            w.property_string("enable-method", "spin-table").unwrap();
            w.property_u64("cpu-release-addr", 0x8000_fff8).unwrap();
            w.end_node(cpu).unwrap();
        }
        w.end_node(cpus).unwrap();
        let memory = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0x4000_0000, 0x8000_0000]).unwrap();
        w.end_node(memory).unwrap();
        let gic = w.begin_node("interrupt-controller@2f000000").unwrap();
        w.property("compatible", &string_list(GICV3_COMPATIBLE)).unwrap();
        w.property_array_u32("reg", &[0x2f00_0000, 0x1_0000, 0x2f10_0000, 0x20_0000]).unwrap();
        w.property_u32("phandle", GIC_PHANDLE).unwrap();
        let its = w.begin_node("msi-controller@2f020000").unwrap();
        w.property("compatible", &string_list(&["arm,gic-v3-its"])).unwrap();
        w.property_u32("#msi-cells", 1).unwrap();
        w.property_u32("phandle", ITS_PHANDLE).unwrap();
        w.end_node(its).unwrap();
        w.end_node(gic).unwrap();
        let nic = w.begin_node("ethernet@1c000000").unwrap();
        w.property_array_u32("msi-parent", &[ITS_PHANDLE, 0x42]).unwrap();
        w.property_array_u32("reg", &[0x1c00_0000, 0x1000]).unwrap();
        w.end_node(nic).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn spin_table_host_with_32_bit_cells() {
        let host = spin_table_host();
        let ram = Region::new(0x4000_0000, 0x2000_0000);
        let cfg = GuestDtConfig {
            gic: Some(GuestGic::V3 { distributor: V3_DIST, redistributors: V3_REDIST }),
            ..config(core::slice::from_ref(&ram), &[0x100])
        };
        let out = build(&host, &cfg).unwrap();
        let fdt = Fdt::new(&out).unwrap();

        let reserved: Vec<_> = fdt.memory_reservations().map(|r| (r.address() as u64, r.size() as u64)).collect();
        assert_eq!(reserved, [(0x4000_0000, 0x1000)]);

        let memory = fdt.find_node("/memory").unwrap();
        assert_eq!(memory.property("reg").unwrap().value.len(), 2 * CELL_BYTES);
        assert_eq!(regions(memory), [ram]);

        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].ids().first(), 0x100);
        assert_eq!(cpus[0].property("enable-method").unwrap().as_str(), Some("psci"));
        assert!(!has_property_anywhere(&fdt, "cpu-release-addr"));

        assert_eq!(compatible(&fdt, "/psci"), ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(str_prop(chosen, "bootargs"), Some("console=ttyAMA0 earlycon"));

        let gic = fdt.find_compatible(GICV3_COMPATIBLE).unwrap();
        assert_eq!(gic.property("reg").unwrap().value.len(), 4 * CELL_BYTES);
        assert_eq!(regions(gic), [V3_DIST, V3_REDIST]);
        let nic = fdt.find_node("/ethernet").unwrap();
        assert!(nic.property("msi-parent").is_none());
        assert!(nic.property("reg").is_some());
    }

    #[test]
    fn guest_ram_must_fit_the_hosts_cells() {
        let host = spin_table_host();
        let cfg = config(&[RAM_HIGH], &[0]);
        assert_eq!(build(&host, &cfg), Err(GuestDtError::CellOverflow));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(build(&[0u8; 64], &config(&[RAM], &[0])), Err(GuestDtError::InvalidHostDtb));
        assert_eq!(build(VIRT_GICV3, &config(&[], &[0])), Err(GuestDtError::InvalidConfig));
        assert_eq!(build(VIRT_GICV3, &config(&[RAM], &[])), Err(GuestDtError::InvalidConfig));
        assert_eq!(build(VIRT_GICV3, &config(&[RAM], &[1, 1])), Err(GuestDtError::InvalidConfig));
        assert_eq!(build(VIRT_GICV3, &config(&[Region::new(RAM.base, 0)], &[0])), Err(GuestDtError::InvalidConfig));
    }

    #[test]
    fn cells_encode_big_endian_and_refuse_overflow() {
        let mut out = vec![];
        push_cells(&mut out, 0x1_2345_6789, 2).unwrap();
        push_cells(&mut out, 0x10, 3).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x23, 0x45, 0x67, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(push_cells(&mut out, 1 << 32, 1), Err(GuestDtError::CellOverflow));
        assert_eq!(push_cells(&mut out, 1, 0), Err(GuestDtError::CellOverflow));
        assert!(push_cells(&mut out, 0, 0).is_ok());
    }
}
