//! The virtual distributor (and, for GICv3, redistributors) a VM sees: the register
//! interface of the GIC architecture over a per-VM interrupt state. Pure logic: interrupts
//! backed by a physical interrupt are forwarded through [`HwBacking`], so the whole register
//! model is unit-tested on the host against a fake.
//!
//! Register maps: GICv3 distributor Arm IHI 0069H §12.9, redistributor §12.10-12.11;
//! GICv2 distributor Arm IHI 0048B §4.3.

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::aarch64::gicarch::{GicVersion as Version, MAX_IRQS, PRIVATE_IRQS, SGIS};
use crate::vcpu::saved::PRIVATE_ENTRIES;

/// One bit for each private interrupt.
const ALL_PRIVATE: u32 = u32::MAX;

/// What the physical GIC does for interrupts that a device or the CPU really raises. The
/// distributor model calls it with physical CPUs (the one running the vCPU concerned),
/// never vCPU numbers.
pub trait HwBacking {
    /// Whether `intid` is a physical interrupt the guest owns (forwarded, HW bit in LRs).
    fn is_hw(&self, intid: u32) -> bool;
    fn set_enabled(&mut self, vcpu: usize, intid: u32, enabled: bool);
    fn set_pending(&mut self, vcpu: usize, intid: u32, pending: bool);
    fn pending(&self, vcpu: usize, intid: u32) -> bool;
    fn set_active(&mut self, vcpu: usize, intid: u32, active: bool);
    fn active(&self, vcpu: usize, intid: u32) -> bool;
    fn set_edge_triggered(&mut self, intid: u32, edge: bool);
    /// Routes the SPI `intid` to physical CPU `cpu`.
    fn route(&mut self, intid: u32, cpu: usize);
    /// (pending, active) of an interrupt of `vcpu` that sits in a list register. Only the
    /// CPU running `vcpu` can tell; elsewhere (false, false).
    fn listed(&self, _vcpu: usize, _intid: u32) -> (bool, bool) {
        (false, false)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Irq {
    enabled: bool,
    pending: bool,
    active: bool,
    priority: u8,
    edge: bool,
    group1: bool,
}

// A saved private interrupt (vcpu::saved): flags in bits 0-4, priority in 8-15, GICv2 SGI
// sources in 16-23.
const SAVED_ENABLED: u64 = 1 << 0;
const SAVED_PENDING: u64 = 1 << 1;
const SAVED_ACTIVE: u64 = 1 << 2;
const SAVED_EDGE: u64 = 1 << 3;
const SAVED_GROUP1: u64 = 1 << 4;
const SAVED_PRIORITY_SHIFT: u64 = 8;
const SAVED_SOURCES_SHIFT: u64 = 16;

impl Irq {
    fn pack(&self) -> u64 {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        flag(self.enabled, SAVED_ENABLED)
            | flag(self.pending, SAVED_PENDING)
            | flag(self.active, SAVED_ACTIVE)
            | flag(self.edge, SAVED_EDGE)
            | flag(self.group1, SAVED_GROUP1)
            | u64::from(self.priority) << SAVED_PRIORITY_SHIFT
    }

    fn unpack(v: u64) -> Self {
        Irq {
            enabled: v & SAVED_ENABLED != 0,
            pending: v & SAVED_PENDING != 0,
            active: v & SAVED_ACTIVE != 0,
            edge: v & SAVED_EDGE != 0,
            group1: v & SAVED_GROUP1 != 0,
            priority: (v >> SAVED_PRIORITY_SHIFT) as u8,
        }
    }
}

/// A vCPU's private interrupts (SGIs and PPIs) and redistributor state.
#[derive(Clone, Debug)]
struct Private {
    irqs: [Irq; PRIVATE_IRQS as usize],
    /// GICv2: which CPUs each pending SGI came from (GICD_SPENDSGIR).
    sgi_sources: [u8; SGIS as usize],
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// One bit per private interrupt that may be deliverable: a superset of those that
    /// are. Every exit that may have made one pending asks (vgic::runtime::flush), and
    /// this spares the scans the interrupts that cannot be. A scan clears the bits it
    /// finds undeliverable; anything that may make one deliverable sets bits again: all
    /// of them for a mutable access to this vCPU's private state or a GICD_CTLR write,
    /// just its own for a raised or requeued SGI.
    maybe_pending: u32,
}

impl Private {
    fn new() -> Self {
        let mut irqs = [Irq::default(); PRIVATE_IRQS as usize];
        for sgi in irqs.iter_mut().take(SGIS as usize) {
            sgi.edge = true; // SGIs are always edge-triggered (IHI 0069H §12.9.9)
        }
        Private { irqs, sgi_sources: [0; SGIS as usize], asleep: true, maybe_pending: ALL_PRIVATE }
    }
}

/// A virtual interrupt ready to go into a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub intid: u32,
    pub priority: u8,
    pub group1: bool,
    /// GICv2 SGIs: the sending vCPU.
    pub source: u8,
}

/// Priority bits the virtual CPU interface implements (5, as ICH_VTR_EL2.PRIbits on the
/// CPUs Cairn targets and GICv2's GICH_LR): the low three bits read as zero.
const PRIORITY_MASK: u8 = 0xF8;

// GICD_CTLR bits. GICv3 with a single security state (DS = 1, as KVM presents it):
// EnableGrp0 (0), EnableGrp1 (1), ARE (4) RAO, DS (6) RAO. GICv2: Enable (0).
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

// Distributor offsets shared by GICv2 and GICv3.
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
const GICD_TYPER2: u64 = 0x000C;
const GICD_IGROUPR: u64 = 0x0080;
const GICD_ISENABLER: u64 = 0x0100;
const GICD_ICENABLER: u64 = 0x0180;
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ICPENDR: u64 = 0x0280;
const GICD_ISACTIVER: u64 = 0x0300;
const GICD_ICACTIVER: u64 = 0x0380;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ITARGETSR: u64 = 0x0800;
const GICD_ICFGR: u64 = 0x0C00;
const GICD_SGIR: u64 = 0x0F00;
const GICD_CPENDSGIR: u64 = 0x0F10;
const GICD_SPENDSGIR: u64 = 0x0F20;
const GICD_IROUTER: u64 = 0x6000;
const GICD_IROUTER_END: u64 = 0x7FE0;
/// Peripheral ID2: ArchRev in bits [7:4]. Linux refuses a GICv3 whose ArchRev is not 3/4.
const GICV3_PIDR2: u64 = 0xFFE8;
const GICV2_PIDR2: u64 = 0x0FE8;
const PIDR2_ARCHREV_SHIFT: u32 = 4;

// Redistributor frames (GICv3): RD_base, then SGI_base 64 KiB above it.
pub const GICR_FRAME_SIZE: u64 = 0x2_0000;
const GICR_SGI_BASE: u64 = 0x1_0000;
const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_TYPER_PROCESSOR_SHIFT: u32 = 8;
const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;

/// GICD_TYPER fields: ITLinesNumber [4:0], CPUNumber [7:5], IDbits [23:19] (v3),
/// No1N [25] (v3: no 1-of-N SPI routing).
const TYPER_CPUS_SHIFT: u32 = 5;
const TYPER_IDBITS_10: u32 = 9 << 19;
const TYPER_NO1N: u32 = 1 << 25;
/// IIDR: ProductID 'C' (Cairn) in [31:24], implementer JEP106 0x43B (Arm).
const IIDR: u32 = (b'C' as u32) << 24 | 0x43B;

/// GICD_IROUTER.Interrupt_Routing_Mode and the affinity fields it holds.
const IROUTER_IRM: u64 = 1 << 31;
const IROUTER_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// GICD_SGIR fields (GICv2, IHI 0048B §4.3.15).
const SGIR_FILTER_SHIFT: u32 = 24;
const SGIR_TARGETS_SHIFT: u32 = 16;
const SGIR_INTID_MASK: u32 = 0xF;
const SGIR_FILTER_LIST: u32 = 0;
const SGIR_FILTER_OTHERS: u32 = 1;
const SGIR_FILTER_SELF: u32 = 2;

/// ICC_SGI1R_EL1 fields (IHI 0069H §12.2.23).
const SGI1R_TARGET_LIST_MASK: u64 = 0xFFFF;
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_IRM: u64 = 1 << 40;
const SGI1R_RS_SHIFT: u32 = 44;
const SGI1R_AFF3_SHIFT: u32 = 48;

/// An interrupt to take back out of a vCPU's list registers (and, forwarded, out of
/// Cairn's queue of acknowledged ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retraction {
    pub vcpu: usize,
    pub intid: u32,
    /// Disabled, not cleared: it stays pending, to be presented once enabled again.
    pub still_pending: bool,
}

/// A set of vCPUs (bit n = vCPU n) that have something new to deliver.
pub type VcpuSet = u64;

/// The state of one VM's virtual GIC.
#[derive(Clone)]
pub struct VGic {
    version: Version,
    ctlr: u32,
    spis: Vec<Irq>,
    /// GICv3 GICD_IROUTER values, GICv2 GICD_ITARGETSR masks, per SPI.
    spi_route: Vec<u64>,
    private: Vec<Private>,
    mpidrs: Vec<u64>,
    /// SPIs no physical device raises: the lines of devices Cairn emulates for the VM
    /// (its virtual UART), with each line's level as the device last drove it.
    soft_spis: Vec<(u32, bool)>,
    /// Whether a soft SPI is pending: spares the exit path a scan when none is. Set when
    /// one becomes pending, recomputed when one is taken or the guest writes the
    /// distributor.
    soft_maybe_pending: bool,
    /// Interrupts the guest disabled or cleared after they went into a list register (or,
    /// forwarded, were acknowledged at EL2 and queued): (vCPU, INTID, whether it stays pending). The vCPU's next flush takes
    /// them back out, as a GIC stops presenting an interrupt that is no longer pending
    /// and enabled (IHI 0069H §4.1.2).
    retract: Vec<Retraction>,
    /// The physical CPU each vCPU runs on: the physical GIC is told CPUs, not vCPUs.
    pcpus: Vec<usize>,
    /// The SPIs the VM may see, one bit each (its own devices' and its soft SPIs); None:
    /// every SPI. The others are RAZ/WI to it, as INTIDs its GIC does not implement
    /// (IHI 0069H §12.1.3), so it can neither enable, route nor pend another VM's.
    visible: Option<Vec<u64>>,
    /// Interrupts bound to SDEI events (DEN0054 §5.1.12): one that fires goes to the VM's
    /// SDEI state (`sdei_fired`), never into a list register. Empty unless the guest binds.
    sdei_bound: Vec<u32>,
    /// Bound interrupts that fired and are not yet handed over: (vCPU, INTID, forwarded).
    sdei_fired: Vec<(usize, u32, bool)>,
}

impl VGic {
    /// A GIC with `nr_irqs` INTIDs (32 private plus the SPIs, as the physical GIC has) for
    /// vCPUs with the given MPIDR affinities.
    pub fn new(version: Version, nr_irqs: u32, mpidrs: &[u64]) -> Self {
        let spis = nr_irqs.clamp(PRIVATE_IRQS, MAX_IRQS) - PRIVATE_IRQS;
        VGic {
            version,
            ctlr: 0,
            spis: vec![Irq::default(); spis as usize],
            spi_route: vec![0; spis as usize],
            private: vec![Private::new(); mpidrs.len()],
            mpidrs: mpidrs.to_vec(),
            soft_spis: Vec::new(),
            soft_maybe_pending: false,
            retract: Vec::new(),
            pcpus: (0..mpidrs.len()).collect(),
            visible: None,
            sdei_bound: Vec::new(),
            sdei_fired: Vec::new(),
        }
    }

    /// The interrupts bound to SDEI events are now `intids`.
    pub fn set_sdei_bound(&mut self, intids: Vec<u32>) {
        self.sdei_bound = intids;
    }

    /// Whether `intid` is bound to an SDEI event (one look at an empty list on the exit
    /// path of a VM that binds nothing).
    #[inline(always)]
    pub fn sdei_bound(&self, intid: u32) -> bool {
        !self.sdei_bound.is_empty() && self.sdei_bound.contains(&intid)
    }

    /// The bound interrupt `intid` fired for `vcpu` (`forwarded`: acknowledged at EL2,
    /// still active): it waits for [`VGic::take_sdei_fired`].
    #[cold]
    pub fn note_sdei_fired(&mut self, vcpu: usize, intid: u32, forwarded: bool) {
        self.sdei_fired.push((vcpu, intid, forwarded));
    }

    /// Takes the bound interrupts that fired for `vcpu`: (INTID, forwarded).
    #[cold]
    pub fn take_sdei_fired(&mut self, vcpu: usize) -> Vec<(u32, bool)> {
        let (mine, others): (Vec<_>, Vec<_>) =
            core::mem::take(&mut self.sdei_fired).into_iter().partition(|f| f.0 == vcpu);
        self.sdei_fired = others;
        mine.into_iter().map(|(_, intid, forwarded)| (intid, forwarded)).collect()
    }

    /// Enables or disables `intid` for `vcpu` as its GICD_ISENABLER or ICENABLER bit would
    /// (an SDEI event's interrupt follows the event).
    pub fn set_enabled_for(&mut self, vcpu: usize, intid: u32, on: bool, hw: &mut dyn HwBacking) {
        let kind = if on { BitReg::SetEnable } else { BitReg::ClearEnable };
        let first = intid - intid % 32;
        self.bit_register(vcpu, first, kind, Some(1 << (intid % 32)), hw);
    }

    /// Deactivates the forwarded interrupt `intid`, which Cairn acknowledged for `vcpu`
    /// and held for an SDEI handler. A private one only on `vcpu`'s CPU (GICv2 banks it).
    pub fn deactivate_held(&self, vcpu: usize, intid: u32, hw: &mut dyn HwBacking) {
        if self.forwards(hw, intid) {
            hw.set_active(self.cpu(vcpu), intid, false);
        }
    }

    /// Whether a flush of `vcpu` has list-register entries to take back.
    #[inline(always)]
    pub fn has_retractions(&self, vcpu: usize) -> bool {
        !self.retract.is_empty() && self.retract.iter().any(|r| r.vcpu == vcpu)
    }

    /// Takes the retractions of `vcpu`'s list registers.
    #[cold]
    pub fn take_retractions(&mut self, vcpu: usize) -> Vec<Retraction> {
        let (mine, others) = core::mem::take(&mut self.retract).into_iter().partition(|r| r.vcpu == vcpu);
        self.retract = others;
        mine
    }

    /// Runs vCPU n on physical CPU `pcpus[n]` (by default, CPU n).
    pub fn place(&mut self, pcpus: &[usize]) {
        if pcpus.len() == self.vcpus() {
            self.pcpus = pcpus.to_vec();
        }
    }

    /// Limits the SPIs the VM sees to `spis` (and its soft SPIs).
    pub fn limit_spis(&mut self, spis: &[u32]) {
        let mut bits = vec![0u64; self.spis.len().div_ceil(64)];
        let soft: Vec<u32> = self.soft_spis.iter().map(|&(i, _)| i).collect();
        for intid in spis.iter().chain(&soft).filter(|&&i| i >= PRIVATE_IRQS && i < self.nr_irqs()) {
            let n = (intid - PRIVATE_IRQS) as usize;
            bits[n / 64] |= 1 << (n % 64);
        }
        self.visible = Some(bits);
    }

    /// Whether `intid` is one of the VM's own: a private interrupt, or an SPI it was given
    /// (and its GIC implements).
    pub fn owns(&self, intid: u32) -> bool {
        intid < self.nr_irqs() && self.visible(intid)
    }

    /// Whether the VM sees `intid`: every private one, and the SPIs it was given.
    fn visible(&self, intid: u32) -> bool {
        let Some(bits) = &self.visible else { return true };
        let Some(n) = intid.checked_sub(PRIVATE_IRQS) else { return true };
        let n = n as usize;
        bits.get(n / 64).is_some_and(|b| b & (1 << (n % 64)) != 0)
    }

    /// The physical CPU vCPU `vcpu` runs on.
    fn cpu(&self, vcpu: usize) -> usize {
        self.pcpus.get(vcpu).copied().unwrap_or(vcpu)
    }

    /// Makes SPI `intid` the line of a device Cairn emulates, driven by [`VGic::set_line`]
    /// rather than by a physical interrupt.
    pub fn add_soft_spi(&mut self, intid: u32) {
        if intid >= PRIVATE_IRQS && intid < self.nr_irqs() && !self.is_soft(intid) {
            self.soft_spis.push((intid, false));
            if let Some(bits) = &mut self.visible {
                let n = (intid - PRIVATE_IRQS) as usize;
                bits[n / 64] |= 1 << (n % 64);
            }
        }
    }

    /// Whether the physical GIC backs `intid` for this VM: a soft SPI never is, whatever
    /// the physical line is used for.
    fn forwards(&self, hw: &dyn HwBacking, intid: u32) -> bool {
        hw.is_hw(intid) && (intid < PRIVATE_IRQS || !self.is_soft(intid))
    }

    fn is_soft(&self, intid: u32) -> bool {
        self.soft_spis.iter().any(|&(i, _)| i == intid)
    }

    /// An emulated device drives its interrupt line to `level`. The line is level-sensitive
    /// but is sampled as the device changes it: a rising edge makes the SPI pending, a
    /// falling edge takes back a pending state no vCPU has taken yet. A handler that reads
    /// the device until its line falls (as Linux's PL011 driver does) sees every event
    /// once; a line that stays high across the guest's EOI is not presented again until
    /// it next rises. Returns the vCPU to kick, if the SPI became deliverable.
    pub fn set_line(&mut self, intid: u32, level: bool) -> VcpuSet {
        let Some(line) = self.soft_spis.iter_mut().find(|(i, _)| *i == intid) else { return 0 };
        let rising = level && !line.1;
        line.1 = level;
        let target = self.delivery_vcpu(0, intid);
        let Some(irq) = self.irq_mut(0, intid) else { return 0 };
        if !level {
            irq.pending = false;
            return 0;
        }
        if !rising {
            return 0;
        }
        irq.pending = true;
        let irq = *irq;
        self.soft_maybe_pending = true;
        if self.deliverable(&irq) {
            1 << target
        } else {
            0
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn nr_irqs(&self) -> u32 {
        PRIVATE_IRQS + self.spis.len() as u32
    }

    pub fn vcpus(&self) -> usize {
        self.private.len()
    }

    /// Back to the reset state (a VM reset): everything disabled and idle.
    pub fn reset(&mut self, hw: &mut dyn HwBacking) {
        for intid in PRIVATE_IRQS..self.nr_irqs() {
            if self.visible(intid) && self.forwards(hw, intid) {
                hw.set_enabled(self.cpu(0), intid, false);
            }
        }
        let fresh = VGic::new(self.version, self.nr_irqs(), &self.mpidrs);
        let (soft, pcpus, visible) = (core::mem::take(&mut self.soft_spis), self.pcpus.clone(), self.visible.take());
        *self = VGic { soft_spis: soft.into_iter().map(|(i, _)| (i, false)).collect(), pcpus, visible, ..fresh };
    }

    /// The whole model, for a VM snapshot (which takes the vCPUs' list registers with it,
    /// so nothing is owed to them: no retractions).
    pub fn snapshot(&self) -> VGic {
        VGic { retract: Vec::new(), sdei_fired: Vec::new(), ..self.clone() }
    }

    /// Puts back a [`VGic::snapshot`] of this VM's GIC. The physical GIC keeps forwarded
    /// SPIs' enables, triggers and routes, so the saved ones go back there too; their
    /// pending and active states are the devices' own, which no snapshot holds. Forwarded
    /// private interrupts are banked: their CPUs put them back ([`VGic::resync_private`]).
    pub fn restore_snapshot(&mut self, saved: &VGic, hw: &mut dyn HwBacking) {
        let (pcpus, visible) = (core::mem::take(&mut self.pcpus), self.visible.take());
        *self = VGic { pcpus, visible, ..saved.snapshot() };
        for p in &mut self.private {
            p.maybe_pending = ALL_PRIVATE;
        }
        self.soft_maybe_pending = true;
        for intid in PRIVATE_IRQS..self.nr_irqs() {
            if !self.visible(intid) || !self.forwards(hw, intid) {
                continue;
            }
            let Some(irq) = self.irq(0, intid).copied() else { continue };
            hw.set_edge_triggered(intid, irq.edge);
            hw.route(intid, self.cpu(self.delivery_vcpu(0, intid)));
            hw.set_enabled(self.cpu(0), intid, irq.enabled);
        }
    }

    /// Tells the physical GIC `vcpu`'s forwarded private interrupts' enables; on the CPU
    /// `vcpu` runs on, where they are banked.
    pub fn resync_private(&self, vcpu: usize, hw: &mut dyn HwBacking) {
        for intid in 0..PRIVATE_IRQS {
            if let (true, Some(irq)) = (self.forwards(hw, intid), self.irq(vcpu, intid)) {
                hw.set_enabled(self.cpu(vcpu), intid, irq.enabled);
            }
        }
    }

    /// `vcpu`'s private interrupts as saved-state entries (vcpu::saved): one per INTID,
    /// then GICR_WAKER.ProcessorSleep.
    pub fn save_private(&self, vcpu: usize) -> [u64; PRIVATE_ENTRIES] {
        let mut out = [0; PRIVATE_ENTRIES];
        if let Some(p) = self.private.get(vcpu) {
            for (n, (slot, irq)) in out.iter_mut().zip(&p.irqs).enumerate() {
                let source = p.sgi_sources.get(n).copied().unwrap_or(0);
                *slot = irq.pack() | u64::from(source) << SAVED_SOURCES_SHIFT;
            }
            out[PRIVATE_IRQS as usize] = u64::from(p.asleep);
        }
        out
    }

    /// Puts back what [`VGic::save_private`] gave.
    pub fn restore_private(&mut self, vcpu: usize, saved: &[u64; PRIVATE_ENTRIES]) {
        let Some(p) = self.private_mut(vcpu) else { return };
        for (n, (irq, &v)) in p.irqs.iter_mut().zip(saved.iter()).enumerate() {
            *irq = Irq::unpack(v);
            if let Some(source) = p.sgi_sources.get_mut(n) {
                *source = (v >> SAVED_SOURCES_SHIFT) as u8;
            }
        }
        p.asleep = saved[PRIVATE_IRQS as usize] & 1 != 0;
    }

    fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        if intid < PRIVATE_IRQS {
            self.private.get(vcpu)?.irqs.get(intid as usize)
        } else {
            self.spis.get((intid - PRIVATE_IRQS) as usize)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < PRIVATE_IRQS {
            self.private_mut(vcpu)?.irqs.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - PRIVATE_IRQS) as usize)
        }
    }

    fn group_enabled(&self, group1: bool) -> bool {
        match self.version {
            Version::V2 => self.ctlr & CTLR_ENABLE_GRP0 != 0,
            Version::V3 => self.ctlr & if group1 { CTLR_ENABLE_GRP1 } else { CTLR_ENABLE_GRP0 } != 0,
        }
    }

    fn deliverable(&self, irq: &Irq) -> bool {
        irq.pending && irq.enabled && self.group_enabled(irq.group1)
    }

    /// Whether `intid` is level-sensitive for `vcpu`: the guest's GICD_ICFGR or
    /// GICR_ICFGR1 setting, which Cairn mirrors to the physical GIC for SPIs. Everything
    /// but the SGIs, which are always edge-triggered, resets level-sensitive, as the EL1
    /// timers' and the PMU's PPIs are.
    pub fn level_sensitive(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|irq| !irq.edge)
    }

    /// The priority the guest gave `intid` (for list registers of forwarded interrupts).
    pub fn priority(&self, vcpu: usize, intid: u32) -> u8 {
        self.irq(vcpu, intid).map_or(0, |i| i.priority)
    }

    /// A forwarded interrupt as a list-register entry for `vcpu`, if it may be presented
    /// now (enabled, its group enabled): one lookup for the whole entry.
    pub fn forwarded(&self, vcpu: usize, intid: u32) -> Option<Pending> {
        let irq = self.irq(vcpu, intid)?;
        (irq.enabled && self.group_enabled(irq.group1)).then_some(Pending {
            intid,
            priority: irq.priority,
            group1: irq.group1,
            source: 0,
        })
    }

    /// Whether a forwarded interrupt may be presented to `vcpu` now.
    pub fn hw_deliverable(&self, vcpu: usize, intid: u32) -> bool {
        self.forwarded(vcpu, intid).is_some()
    }

    /// The first deliverable software interrupt of `vcpu` (an SGI, or a PPI made pending
    /// by the guest that no hardware backs) at or above INTID `from`, without taking it. A
    /// GICv2 SGI pending from several sources is one list-register entry per source: this
    /// names the lowest source.
    #[inline(always)]
    pub fn next_pending(&self, vcpu: usize, from: u32) -> Option<Pending> {
        match self.next_private(vcpu, from) {
            None if self.soft_maybe_pending => self.next_soft_spi(vcpu, from),
            found => found,
        }
    }

    /// [`VGic::next_pending`] among `vcpu`'s private interrupts.
    #[inline(always)]
    fn next_private(&self, vcpu: usize, from: u32) -> Option<Pending> {
        let private = self.private.get(vcpu)?;
        let candidates = private.maybe_pending & ALL_PRIVATE.checked_shl(from).unwrap_or(0);
        let intid = super::set_bits(u64::from(candidates)).find(|&i| self.deliverable(&private.irqs[i as usize]))?;
        let irq = &private.irqs[intid as usize];
        let sources = if self.version == Version::V2 && intid < SGIS { private.sgi_sources[intid as usize] } else { 1 };
        let source = sources.trailing_zeros().min(7) as u8;
        Some(Pending { intid, priority: irq.priority, group1: irq.group1, source })
    }

    /// The first deliverable soft SPI routed to `vcpu`, at or above INTID `from`.
    #[cold]
    #[inline(never)]
    fn next_soft_spi(&self, vcpu: usize, from: u32) -> Option<Pending> {
        self.soft_spis
            .iter()
            .map(|&(intid, _)| intid)
            .filter(|&intid| intid >= from && self.delivery_vcpu(vcpu, intid) == vcpu)
            .filter_map(|intid| Some((intid, *self.irq(vcpu, intid)?)))
            .filter(|(_, irq)| self.deliverable(irq))
            .min_by_key(|(intid, _)| *intid)
            .map(|(intid, irq)| Pending { intid, priority: irq.priority, group1: irq.group1, source: 0 })
    }

    /// Hands `p` (from [`VGic::next_pending`]) over to a list register: clears its
    /// pending state (for a GICv2 SGI, that source's). Returns whether the interrupt is
    /// still pending, from other sources.
    pub fn take(&mut self, vcpu: usize, p: &Pending) -> bool {
        let v2 = self.version == Version::V2;
        if p.intid >= PRIVATE_IRQS {
            return self.take_soft_spi(p.intid);
        }
        // Taking makes nothing deliverable: no private_mut, which would widen the hint.
        let Some(private) = self.private.get_mut(vcpu) else { return false };
        let i = p.intid as usize;
        let Some(irq) = private.irqs.get_mut(i) else { return false };
        if v2 && p.intid < SGIS {
            private.sgi_sources[i] &= !(1 << p.source);
            irq.pending = private.sgi_sources[i] != 0;
        } else {
            irq.pending = false;
        }
        if !irq.pending {
            private.maybe_pending &= !(1 << p.intid);
        }
        irq.pending
    }

    #[cold]
    fn take_soft_spi(&mut self, intid: u32) -> bool {
        if let Some(irq) = self.irq_mut(0, intid) {
            irq.pending = false;
        }
        self.soft_maybe_pending = self.any_soft_spi_pending();
        false
    }

    #[cold]
    #[inline(never)]
    fn recheck_soft_pending(&mut self) {
        self.soft_maybe_pending = self.any_soft_spi_pending();
    }

    /// Whether a soft SPI is pending anywhere: the exit path scans for one only then.
    #[cold]
    fn any_soft_spi_pending(&self) -> bool {
        self.soft_spis.iter().any(|&(i, _)| self.irq(0, i).is_some_and(|irq| irq.pending))
    }

    /// Gives a software interrupt back (a list register was reclaimed for a higher
    /// priority one).
    pub fn requeue(&mut self, vcpu: usize, p: &Pending) {
        let v2 = self.version == Version::V2;
        if p.intid >= PRIVATE_IRQS {
            if let Some(irq) = self.irq_mut(vcpu, p.intid) {
                irq.pending = true;
                self.soft_maybe_pending = true;
            }
            return;
        }
        if let Some(private) = self.private.get_mut(vcpu) {
            if let Some(irq) = private.irqs.get_mut(p.intid as usize) {
                irq.pending = true;
                private.maybe_pending |= 1 << p.intid;
                if v2 && p.intid < SGIS {
                    private.sgi_sources[p.intid as usize] |= 1 << p.source;
                }
            }
        }
    }

    /// Whether `vcpu` has a software interrupt waiting that `next_pending` would return.
    pub fn has_pending(&mut self, vcpu: usize) -> bool {
        self.first_pending(vcpu).is_some()
    }

    /// Mutable access to `vcpu`'s private state, which may make an interrupt deliverable.
    fn private_mut(&mut self, vcpu: usize) -> Option<&mut Private> {
        let p = self.private.get_mut(vcpu)?;
        p.maybe_pending = ALL_PRIVATE;
        Some(p)
    }

    /// The lowest INTID of `vcpu`'s deliverable software interrupts, if any. Every exit
    /// that may have made one pending asks, so a scan that found nothing is remembered
    /// until the next change (`maybe_pending`).
    #[inline(always)]
    pub fn first_pending(&mut self, vcpu: usize) -> Option<u32> {
        let found = self.next_pending(vcpu, 0).map(|p| p.intid);
        if found.is_none() && self.soft_maybe_pending {
            self.recheck_soft_pending();
        }
        // Everything below the first deliverable one (or all, if none) is not.
        let scanned = found.filter(|&intid| intid < PRIVATE_IRQS).map_or(ALL_PRIVATE, |intid| (1 << intid) - 1);
        self.private.get_mut(vcpu)?.maybe_pending &= !scanned;
        found
    }

    /// Makes SGI `sgi` pending on `target`, sent by `source`. Returns whether it is
    /// deliverable now.
    pub fn raise_sgi(&mut self, target: usize, sgi: u32, source: usize) -> bool {
        let Some(private) = self.private.get_mut(target) else { return false };
        let Some(irq) = private.irqs.get_mut(sgi as usize) else { return false };
        irq.pending = true;
        private.maybe_pending |= 1 << sgi;
        private.sgi_sources[sgi as usize] |= 1 << (source.min(7));
        let irq = private.irqs[sgi as usize];
        self.deliverable(&irq)
    }

    fn vcpu_by_affinity(&self, affinity: u64) -> Option<usize> {
        self.mpidrs.iter().position(|&m| m & IROUTER_AFFINITY_MASK == affinity & IROUTER_AFFINITY_MASK)
    }

    /// A GICv3 guest's write to ICC_SGI1R_EL1 (trapped): the SGI goes to every vCPU the
    /// value names (IHI 0069H §12.2.23). Returns the vCPUs to kick.
    pub fn write_sgi1r(&mut self, sender: usize, value: u64) -> VcpuSet {
        let sgi = ((value >> SGI1R_INTID_SHIFT) & 0xF) as u32;
        let mut kick = 0;
        if value & SGI1R_IRM != 0 {
            for target in (0..self.vcpus()).filter(|&t| t != sender) {
                if self.raise_sgi(target, sgi, sender) {
                    kick |= 1 << target;
                }
            }
            return kick;
        }
        let aff3 = (value >> SGI1R_AFF3_SHIFT) & 0xFF;
        let aff2 = (value >> SGI1R_AFF2_SHIFT) & 0xFF;
        let aff1 = (value >> SGI1R_AFF1_SHIFT) & 0xFF;
        let range = (value >> SGI1R_RS_SHIFT) & 0xF;
        for bit in super::set_bits(value & SGI1R_TARGET_LIST_MASK) {
            let aff0 = range * 16 + u64::from(bit);
            let affinity = (aff3 << 32) | (aff2 << 16) | (aff1 << 8) | aff0;
            if let Some(target) = self.vcpu_by_affinity(affinity) {
                if self.raise_sgi(target, sgi, sender) {
                    kick |= 1 << target;
                }
            }
        }
        kick
    }

    /// A guest access to the distributor frame, as vCPU `vcpu`. Returns the value read
    /// (0 for writes) and the vCPUs whose pending state may have changed.
    pub fn dist_access(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: usize,
        write: Option<u64>,
        hw: &mut dyn HwBacking,
    ) -> (u64, VcpuSet) {
        let done = self.dist_register(vcpu, offset, size, write, hw);
        if write.is_some() && (GICD_ISPENDR..GICD_ISACTIVER).contains(&offset) && !self.soft_spis.is_empty() {
            // The guest may have pended a soft SPI (GICD_ISPENDR) or taken one back
            // (GICD_ICPENDR).
            self.soft_maybe_pending = self.any_soft_spi_pending();
        }
        done
    }

    #[inline(always)]
    fn dist_register(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: usize,
        write: Option<u64>,
        hw: &mut dyn HwBacking,
    ) -> (u64, VcpuSet) {
        match offset {
            GICD_CTLR => {
                if let Some(v) = write {
                    self.ctlr = v as u32 & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1);
                    self.private.iter_mut().for_each(|p| p.maybe_pending = ALL_PRIVATE);
                    return (0, self.all_vcpus());
                }
                let ro = if self.version == Version::V3 { CTLR_ARE | CTLR_DS } else { 0 };
                (u64::from(self.ctlr | ro), 0)
            }
            GICD_TYPER => (u64::from(self.typer()), 0),
            GICD_IIDR => (u64::from(IIDR), 0),
            GICD_TYPER2 => (0, 0),
            GICD_IGROUPR..GICD_ISENABLER => self.bits(vcpu, offset - GICD_IGROUPR, BitReg::Group, write, hw),
            GICD_ISENABLER..GICD_ICENABLER => self.bits(vcpu, offset - GICD_ISENABLER, BitReg::SetEnable, write, hw),
            GICD_ICENABLER..GICD_ISPENDR => self.bits(vcpu, offset - GICD_ICENABLER, BitReg::ClearEnable, write, hw),
            GICD_ISPENDR..GICD_ICPENDR => self.bits(vcpu, offset - GICD_ISPENDR, BitReg::SetPending, write, hw),
            GICD_ICPENDR..GICD_ISACTIVER => self.bits(vcpu, offset - GICD_ICPENDR, BitReg::ClearPending, write, hw),
            GICD_ISACTIVER..GICD_ICACTIVER => self.bits(vcpu, offset - GICD_ISACTIVER, BitReg::SetActive, write, hw),
            GICD_ICACTIVER..GICD_IPRIORITYR => self.bits(vcpu, offset - GICD_ICACTIVER, BitReg::ClearActive, write, hw),
            GICD_IPRIORITYR..GICD_ITARGETSR => {
                (self.priorities(vcpu, (offset - GICD_IPRIORITYR) as u32, size, write, self.version == Version::V3), 0)
            }
            GICD_ITARGETSR..GICD_ICFGR if self.version == Version::V2 => {
                (self.targets_v2(vcpu, (offset - GICD_ITARGETSR) as u32, size, write, hw), 0)
            }
            GICD_ICFGR..0x0D00 => (self.config(vcpu, (offset - GICD_ICFGR) as u32, write, hw), 0),
            GICD_SGIR if self.version == Version::V2 => (0, write.map_or(0, |v| self.write_sgir(vcpu, v as u32))),
            GICD_CPENDSGIR..0x0F30 if self.version == Version::V2 => {
                self.sgi_sources_v2(vcpu, offset - GICD_CPENDSGIR, size, write)
            }
            GICD_IROUTER..=GICD_IROUTER_END if self.version == Version::V3 => {
                (self.irouter(offset - GICD_IROUTER, size, write, hw), 0)
            }
            GICV3_PIDR2 if self.version == Version::V3 => (3 << PIDR2_ARCHREV_SHIFT, 0),
            GICV2_PIDR2 if self.version == Version::V2 => (2 << PIDR2_ARCHREV_SHIFT, 0),
            _ => (0, 0), // reserved or unimplemented: RAZ/WI (IHI 0069H §12.1.3)
        }
    }

    /// A guest access to a GICv3 redistributor region, `offset` from its base: frame n
    /// belongs to vCPU n.
    pub fn redist_access(
        &mut self,
        offset: u64,
        size: usize,
        write: Option<u64>,
        hw: &mut dyn HwBacking,
    ) -> (u64, VcpuSet) {
        let vcpu = (offset / GICR_FRAME_SIZE) as usize;
        if vcpu >= self.vcpus() {
            return (0, 0);
        }
        let offset = offset % GICR_FRAME_SIZE;
        if offset >= GICR_SGI_BASE {
            let reg = offset - GICR_SGI_BASE;
            // SGI_base has the distributor's layout for INTIDs 0-31.
            return match reg {
                GICD_IGROUPR..GICD_IPRIORITYR if (reg & 0x7F) < 4 => self.private_bits(vcpu, reg, write, hw),
                GICD_IPRIORITYR..0x0420 => {
                    (self.priorities(vcpu, (reg - GICD_IPRIORITYR) as u32, size, write, false), 0)
                }
                GICD_ICFGR..0x0C08 => (self.config(vcpu, (reg - GICD_ICFGR) as u32, write, hw), 0),
                _ => (0, 0),
            };
        }
        match offset {
            GICR_CTLR => (0, 0),
            GICR_IIDR => (u64::from(IIDR), 0),
            GICR_TYPER => {
                let typer = self.gicr_typer(vcpu);
                (if size == 4 { typer & 0xFFFF_FFFF } else { typer }, 0)
            }
            o if o == GICR_TYPER + 4 => (self.gicr_typer(vcpu) >> 32, 0),
            GICR_WAKER => {
                let Some(p) = self.private_mut(vcpu) else { return (0, 0) };
                if let Some(v) = write {
                    p.asleep = v as u32 & GICR_WAKER_PROCESSOR_SLEEP != 0;
                    return (0, 0);
                }
                let bits = if p.asleep { GICR_WAKER_PROCESSOR_SLEEP | GICR_WAKER_CHILDREN_ASLEEP } else { 0 };
                (u64::from(bits), 0)
            }
            GICV3_PIDR2 => (3 << PIDR2_ARCHREV_SHIFT, 0),
            _ => (0, 0),
        }
    }

    fn all_vcpus(&self) -> VcpuSet {
        if self.vcpus() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.vcpus()) - 1
        }
    }

    fn typer(&self) -> u32 {
        let lines = self.nr_irqs() / 32 - 1;
        let cpus = (self.vcpus().clamp(1, 8) as u32 - 1) << TYPER_CPUS_SHIFT;
        match self.version {
            Version::V2 => lines | cpus,
            Version::V3 => lines | cpus | TYPER_IDBITS_10 | TYPER_NO1N,
        }
    }

    fn gicr_typer(&self, vcpu: usize) -> u64 {
        let m = self.mpidrs[vcpu];
        // Affinity_Value is Aff3.Aff2.Aff1.Aff0 packed into 32 bits.
        let affinity = ((m >> 32) & 0xFF) << 24 | (m & 0xFF_FFFF);
        let last = if vcpu + 1 == self.vcpus() { GICR_TYPER_LAST } else { 0 };
        (affinity << GICR_TYPER_AFFINITY_SHIFT) | ((vcpu as u64) << GICR_TYPER_PROCESSOR_SHIFT) | last
    }

    /// GICv3 distributor registers for INTIDs 0-31 are RAZ/WI with affinity routing on
    /// (IHI 0069H §12.9): those live in the redistributors.
    fn private_in_distributor(&self, intid: u32) -> bool {
        intid < PRIVATE_IRQS && self.version == Version::V3
    }

    fn bits(
        &mut self,
        vcpu: usize,
        rel: u64,
        kind: BitReg,
        write: Option<u64>,
        hw: &mut dyn HwBacking,
    ) -> (u64, VcpuSet) {
        let first = (rel / 4) as u32 * 32;
        if self.private_in_distributor(first) {
            return (0, 0);
        }
        self.bit_register(vcpu, first, kind, write, hw)
    }

    fn private_bits(&mut self, vcpu: usize, reg: u64, write: Option<u64>, hw: &mut dyn HwBacking) -> (u64, VcpuSet) {
        let kind = match reg & !0x7F {
            GICD_IGROUPR => BitReg::Group,
            GICD_ISENABLER => BitReg::SetEnable,
            GICD_ICENABLER => BitReg::ClearEnable,
            GICD_ISPENDR => BitReg::SetPending,
            GICD_ICPENDR => BitReg::ClearPending,
            GICD_ISACTIVER => BitReg::SetActive,
            _ => BitReg::ClearActive,
        };
        self.bit_register(vcpu, 0, kind, write, hw)
    }

    /// One 32-bit one-bit-per-interrupt register covering INTIDs `first..first + 32`.
    fn bit_register(
        &mut self,
        vcpu: usize,
        first: u32,
        kind: BitReg,
        write: Option<u64>,
        hw: &mut dyn HwBacking,
    ) -> (u64, VcpuSet) {
        let mut value = 0u64;
        let mut kick = 0;
        let cpu = self.cpu(vcpu);
        for bit in 0..32 {
            let intid = first + bit;
            if !self.visible(intid) {
                continue;
            }
            let is_hw = self.forwards(hw, intid);
            let target = self.delivery_vcpu(vcpu, intid);
            let Some(irq) = self.irq_mut(vcpu, intid) else { break };
            match write {
                None => {
                    let set = match kind {
                        BitReg::Group => irq.group1,
                        BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                        BitReg::SetPending | BitReg::ClearPending => {
                            if is_hw {
                                hw.pending(cpu, intid)
                            } else {
                                irq.pending || hw.listed(cpu, intid).0
                            }
                        }
                        BitReg::SetActive | BitReg::ClearActive => {
                            let (listed_pending, listed_active) = hw.listed(cpu, intid);
                            if is_hw {
                                forwarded_active(listed_pending, listed_active, || hw.active(cpu, intid))
                            } else {
                                irq.active || listed_active
                            }
                        }
                    };
                    value |= u64::from(set) << bit;
                }
                Some(v) => {
                    let one = v & (1 << bit) != 0;
                    if kind == BitReg::Group {
                        irq.group1 = one;
                        kick |= 1 << target;
                        continue;
                    }
                    if !one {
                        continue;
                    }
                    match kind {
                        BitReg::SetEnable | BitReg::ClearEnable => {
                            irq.enabled = kind == BitReg::SetEnable;
                            if is_hw {
                                hw.set_enabled(cpu, intid, irq.enabled);
                            }
                            if !irq.enabled {
                                self.retract.push(Retraction { vcpu: target, intid, still_pending: true });
                            }
                        }
                        BitReg::SetPending | BitReg::ClearPending => {
                            let pending = kind == BitReg::SetPending;
                            if is_hw {
                                hw.set_pending(cpu, intid, pending);
                            } else {
                                irq.pending = pending;
                            }
                            if !pending {
                                self.retract.push(Retraction { vcpu: target, intid, still_pending: false });
                            }
                        }
                        BitReg::SetActive | BitReg::ClearActive => {
                            let active = kind == BitReg::SetActive;
                            if is_hw {
                                hw.set_active(cpu, intid, active);
                            } else {
                                irq.active = active;
                            }
                        }
                        BitReg::Group => {}
                    }
                    kick |= 1 << target;
                }
            }
        }
        (value, kick)
    }

    /// The vCPU an interrupt is delivered to: the owner of a private one, the routed
    /// target of an SPI.
    fn delivery_vcpu(&self, vcpu: usize, intid: u32) -> usize {
        if intid < PRIVATE_IRQS {
            return vcpu;
        }
        let route = self.spi_route.get((intid - PRIVATE_IRQS) as usize).copied().unwrap_or(0);
        let target = match self.version {
            Version::V3 if route & IROUTER_IRM == 0 => self.vcpu_by_affinity(route),
            Version::V3 => None,
            Version::V2 => Some(route.trailing_zeros() as usize),
        };
        target.filter(|&t| t < self.vcpus()).unwrap_or(0)
    }

    /// Byte-per-interrupt priorities: `rel` is the first INTID.
    fn priorities(&mut self, vcpu: usize, rel: u32, size: usize, write: Option<u64>, private_raz: bool) -> u64 {
        let mut value = 0;
        for byte in 0..size.min(8) as u32 {
            let intid = rel + byte;
            if (private_raz && intid < PRIVATE_IRQS) || !self.visible(intid) {
                continue;
            }
            let Some(irq) = self.irq_mut(vcpu, intid) else { break };
            match write {
                Some(v) => irq.priority = (v >> (8 * byte)) as u8 & PRIORITY_MASK,
                None => value |= u64::from(irq.priority) << (8 * byte),
            }
        }
        value
    }

    /// GICv2 GICD_ITARGETSR: the CPU mask of each SPI; for private interrupts, read-only,
    /// the accessing vCPU's own bit (IHI 0048B §4.3.12).
    fn targets_v2(&mut self, vcpu: usize, rel: u32, size: usize, write: Option<u64>, hw: &mut dyn HwBacking) -> u64 {
        let mut value = 0;
        let valid = self.all_vcpus() as u8;
        for byte in 0..size.min(4) as u32 {
            let intid = rel + byte;
            if intid < PRIVATE_IRQS {
                value |= (1u64 << vcpu.min(7)) << (8 * byte);
                continue;
            }
            if !self.visible(intid) {
                continue;
            }
            let first_target = |mask: u8| self.cpu(mask.trailing_zeros() as usize);
            let Some(&current) = self.spi_route.get((intid - PRIVATE_IRQS) as usize) else { break };
            match write {
                Some(v) => {
                    let mask = (v >> (8 * byte)) as u8 & valid;
                    if mask != 0 && self.forwards(hw, intid) {
                        hw.route(intid, first_target(mask));
                    }
                    self.spi_route[(intid - PRIVATE_IRQS) as usize] = u64::from(mask);
                }
                None => value |= current << (8 * byte),
            }
        }
        value
    }

    /// Two-bits-per-interrupt trigger configuration; bit 1 of each field set = edge.
    fn config(&mut self, vcpu: usize, rel: u32, write: Option<u64>, hw: &mut dyn HwBacking) -> u64 {
        let first = rel / 4 * 16;
        if self.private_in_distributor(first) {
            return 0;
        }
        let mut value = 0;
        for i in 0..16 {
            let intid = first + i;
            if !self.visible(intid) {
                continue;
            }
            let is_hw = self.forwards(hw, intid);
            let Some(irq) = self.irq_mut(vcpu, intid) else { break };
            match write {
                Some(v) if intid >= SGIS => {
                    irq.edge = v & (0b10 << (2 * i)) != 0;
                    if is_hw && intid >= PRIVATE_IRQS {
                        hw.set_edge_triggered(intid, irq.edge);
                    }
                }
                Some(_) => {}
                None => value |= u64::from(irq.edge) << (2 * i + 1),
            }
        }
        value
    }

    fn irouter(&mut self, rel: u64, size: usize, write: Option<u64>, hw: &mut dyn HwBacking) -> u64 {
        // GICD_IROUTER<n> routes INTID n; the first SPI's is at 0x6100.
        let intid = (rel / 8) as u32;
        let high = rel % 8 >= 4;
        let index = intid.wrapping_sub(PRIVATE_IRQS) as usize;
        if intid < PRIVATE_IRQS || index >= self.spi_route.len() || !self.visible(intid) {
            return 0;
        }
        let current = self.spi_route[index];
        let Some(v) = write else {
            return match (size, high) {
                (8, _) => current,
                (_, true) => current >> 32,
                _ => current & 0xFFFF_FFFF,
            };
        };
        let new = match (size, high) {
            (8, _) => v,
            (_, true) => (current & 0xFFFF_FFFF) | (v << 32),
            _ => (current & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF),
        } & (IROUTER_AFFINITY_MASK | IROUTER_IRM);
        self.spi_route[index] = new;
        if self.forwards(hw, intid) {
            hw.route(intid, self.cpu(self.delivery_vcpu(0, intid)));
        }
        0
    }

    fn write_sgir(&mut self, sender: usize, value: u32) -> VcpuSet {
        let sgi = value & SGIR_INTID_MASK;
        let targets: u64 = match (value >> SGIR_FILTER_SHIFT) & 0b11 {
            SGIR_FILTER_LIST => u64::from((value >> SGIR_TARGETS_SHIFT) & 0xFF),
            SGIR_FILTER_OTHERS => self.all_vcpus() & !(1 << sender),
            SGIR_FILTER_SELF => 1 << sender,
            _ => 0,
        };
        let mut kick = 0;
        for target in (0..self.vcpus()).filter(|t| targets & (1 << t) != 0) {
            if self.raise_sgi(target, sgi, sender) {
                kick |= 1 << target;
            }
        }
        kick
    }

    /// GICD_CPENDSGIR / GICD_SPENDSGIR: one byte of source bits per SGI.
    fn sgi_sources_v2(&mut self, vcpu: usize, rel: u64, size: usize, write: Option<u64>) -> (u64, VcpuSet) {
        let set = rel >= GICD_SPENDSGIR - GICD_CPENDSGIR;
        let first = (rel % 0x10) as usize;
        let Some(private) = self.private_mut(vcpu) else { return (0, 0) };
        let mut value = 0;
        for byte in 0..size.min(4) {
            let sgi = first + byte;
            if sgi >= SGIS as usize {
                break;
            }
            match write {
                None => value |= u64::from(private.sgi_sources[sgi]) << (8 * byte),
                Some(v) => {
                    let bits = (v >> (8 * byte)) as u8;
                    if set {
                        private.sgi_sources[sgi] |= bits;
                    } else {
                        private.sgi_sources[sgi] &= !bits;
                    }
                    private.irqs[sgi].pending = private.sgi_sources[sgi] != 0;
                }
            }
        }
        (value, if write.is_some() { 1 << vcpu } else { 0 })
    }
}

/// The active state the guest sees of a forwarded interrupt, from what the list registers
/// say of it and, if they do not list it, the physical GIC's active bit. Cairn's own
/// acknowledge makes the physical interrupt active while it still waits, pending, for
/// the guest: that is not the guest's active state. A guest that saves and restores its
/// active bits across a CPU_SUSPEND (Linux's GICv2 driver does) would otherwise make
/// physically active again an interrupt Cairn has meanwhile deactivated without the
/// guest (one whose level dropped before the guest took it), and no guest EOI would
/// ever deactivate it: that CPU would never see the interrupt again.
fn forwarded_active(listed_pending: bool, listed_active: bool, physical: impl FnOnce() -> bool) -> bool {
    listed_active || (!listed_pending && physical())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A physical GIC that records what was forwarded: SPIs and PPI 27 are hardware.
    #[derive(Default)]
    struct FakeHw {
        enabled: Vec<(usize, u32, bool)>,
        routes: Vec<(u32, usize)>,
        /// What the physical active bits and the list registers say of every interrupt.
        active: bool,
        listed: (bool, bool),
    }

    impl HwBacking for FakeHw {
        fn is_hw(&self, intid: u32) -> bool {
            intid >= PRIVATE_IRQS || intid == 27
        }
        fn set_enabled(&mut self, vcpu: usize, intid: u32, enabled: bool) {
            self.enabled.push((vcpu, intid, enabled));
        }
        fn set_pending(&mut self, _: usize, _: u32, _: bool) {}
        fn pending(&self, _: usize, intid: u32) -> bool {
            intid == 33
        }
        fn set_active(&mut self, _: usize, _: u32, _: bool) {}
        fn active(&self, _: usize, _: u32) -> bool {
            self.active
        }
        fn set_edge_triggered(&mut self, _: u32, _: bool) {}
        fn route(&mut self, intid: u32, vcpu: usize) {
            self.routes.push((intid, vcpu));
        }
        fn listed(&self, _: usize, _: u32) -> (bool, bool) {
            self.listed
        }
    }

    const MPIDRS: [u64; 4] = [0, 1, 2, 3];

    fn v3() -> VGic {
        VGic::new(Version::V3, 288, &MPIDRS)
    }

    /// Takes every deliverable software interrupt of `vcpu`, one entry per INTID per
    /// call, as a flush with enough free list registers would.
    fn take_all(g: &mut VGic, vcpu: usize) -> Vec<Pending> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(p) = g.next_pending(vcpu, from) {
            g.take(vcpu, &p);
            out.push(p);
            from = p.intid + 1;
        }
        out
    }

    fn read(g: &mut VGic, hw: &mut FakeHw, offset: u64) -> u64 {
        g.dist_access(0, offset, 4, None, hw).0
    }

    #[test]
    fn a_snapshot_restores_the_model_and_the_physical_gic() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.add_soft_spi(33);
        g.dist_access(0, GICD_CTLR, 4, Some(u64::from(CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1)), &mut hw);
        g.dist_access(0, GICD_ISENABLER + 4, 4, Some((1 << 8) | (1 << 1)), &mut hw);
        g.dist_access(0, GICD_IROUTER + 8 * 40, 8, Some(1), &mut hw);
        g.set_line(33, true);
        let saved = g.snapshot();
        // After the save the guest disables everything and the line falls.
        g.dist_access(0, GICD_ICENABLER + 4, 4, Some(u64::MAX), &mut hw);
        g.dist_access(0, GICD_CTLR, 4, Some(0), &mut hw);
        g.set_line(33, false);
        hw.enabled.clear();
        hw.routes.clear();
        g.restore_snapshot(&saved, &mut hw);
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER + 4), (1 << 8) | (1 << 1));
        assert_eq!(read(&mut g, &mut hw, GICD_CTLR) as u32 & CTLR_ENABLE_GRP1, CTLR_ENABLE_GRP1);
        assert!(hw.enabled.contains(&(0, 40, true)), "the forwarded SPI enabled again: {:?}", hw.enabled);
        assert!(hw.routes.contains(&(40, 1)), "and routed to vCPU 1's CPU: {:?}", hw.routes);
        assert!(!hw.enabled.iter().any(|&(_, i, _)| i == 33), "a soft SPI is never the physical GIC's");
        assert_eq!(take_all(&mut g, 0).iter().map(|p| p.intid).collect::<Vec<_>>(), [33], "the UART's SPI pending");
    }

    #[test]
    fn gicv3_identification_registers() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        assert_eq!(read(&mut g, &mut hw, GICV3_PIDR2) >> 4 & 0xF, 3);
        let typer = read(&mut g, &mut hw, GICD_TYPER) as u32;
        assert_eq!(typer & 0x1F, 288 / 32 - 1);
        assert_eq!(typer >> 19 & 0x1F, 9);
        assert_ne!(read(&mut g, &mut hw, GICD_CTLR) as u32 & CTLR_ARE, 0);
    }

    #[test]
    fn redistributor_frames_describe_each_vcpu() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        for vcpu in 0..4u64 {
            let base = vcpu * GICR_FRAME_SIZE;
            let typer = g.redist_access(base + GICR_TYPER, 8, None, &mut hw).0;
            assert_eq!(typer >> 32, vcpu);
            assert_eq!(typer >> 8 & 0xFFFF, vcpu);
            assert_eq!(typer & GICR_TYPER_LAST != 0, vcpu == 3);
            assert_eq!(g.redist_access(base + GICV3_PIDR2, 4, None, &mut hw).0 >> 4, 3);
        }
        // Waking a redistributor clears ChildrenAsleep.
        assert_ne!(g.redist_access(GICR_WAKER, 4, None, &mut hw).0, 0);
        g.redist_access(GICR_WAKER, 4, Some(0), &mut hw);
        assert_eq!(g.redist_access(GICR_WAKER, 4, None, &mut hw).0, 0);
    }

    #[test]
    fn enabling_a_spi_forwards_to_hardware_and_private_bits_are_raz_in_the_distributor() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.dist_access(0, GICD_ISENABLER + 4, 4, Some(1 << 1), &mut hw);
        assert_eq!(hw.enabled, [(0, 33, true)]);
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER + 4), 1 << 1);
        assert_eq!(read(&mut g, &mut hw, GICD_ISPENDR + 4), 1 << 1, "hardware pending state");
        g.dist_access(0, GICD_ISENABLER, 4, Some(u64::MAX), &mut hw);
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER), 0);
    }

    #[test]
    fn a_vm_sees_only_its_own_spis_and_routes_them_to_its_physical_cpus() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.place(&[2, 3, 0, 1]);
        g.limit_spis(&[40]);
        g.add_soft_spi(33);
        g.dist_access(0, GICD_ISENABLER + 4, 4, Some(u64::MAX), &mut hw);
        assert_eq!(hw.enabled, [(2, 40, true)], "only its device's SPI reaches the physical GIC");
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER + 4), (1 << 8) | (1 << 1), "the others are RAZ/WI");
        g.dist_access(0, GICD_IROUTER + 8 * 40, 8, Some(1), &mut hw);
        assert_eq!(hw.routes, [(40, 3)], "vCPU 1 runs on CPU 3");
        g.dist_access(0, GICD_IROUTER + 8 * 41, 8, Some(1), &mut hw);
        assert_eq!(read(&mut g, &mut hw, GICD_IROUTER + 8 * 41), 0, "another VM's SPI cannot be routed");
        assert_eq!(hw.routes.len(), 1);
        g.reset(&mut hw);
        assert_eq!(hw.enabled.last(), Some(&(2, 40, false)), "a reset disables only its own SPIs");
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER + 4), 0);
        g.dist_access(0, GICD_ISENABLER + 4, 4, Some(u64::MAX), &mut hw);
        assert_eq!(read(&mut g, &mut hw, GICD_ISENABLER + 4), (1 << 8) | (1 << 1), "its view survives the reset");
    }

    #[test]
    fn sgi1r_targets_by_affinity_and_irm() {
        let mut g = v3();
        let mut hw = FakeHw::default();
        g.dist_access(0, GICD_CTLR, 4, Some(u64::from(CTLR_ENABLE_GRP1)), &mut hw);
        for vcpu in 0..4u64 {
            // Group 1 and enable SGI 5 on every vCPU.
            g.redist_access(vcpu * GICR_FRAME_SIZE + GICR_SGI_BASE + GICD_IGROUPR, 4, Some(u64::MAX), &mut hw);
            g.redist_access(vcpu * GICR_FRAME_SIZE + GICR_SGI_BASE + GICD_ISENABLER, 4, Some(1 << 5), &mut hw);
        }
        let kick = g.write_sgi1r(0, (5 << SGI1R_INTID_SHIFT) | 0b1100);
        assert_eq!(kick, 0b1100);
        let kick = g.write_sgi1r(1, (5 << SGI1R_INTID_SHIFT) | SGI1R_IRM);
        assert_eq!(kick, 0b1101);
        let out = take_all(&mut g, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].intid, 5);
        assert!(!g.has_pending(2));
    }

    #[test]
    fn disabled_sgis_wait_until_enabled() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.dist_access(0, GICD_CTLR, 4, Some(u64::from(CTLR_ENABLE_GRP1)), &mut hw);
        g.redist_access(GICR_SGI_BASE + GICD_IGROUPR, 4, Some(u64::MAX), &mut hw);
        assert_eq!(g.write_sgi1r(1, (3 << SGI1R_INTID_SHIFT) | 1), 0);
        assert!(!g.has_pending(0));
        let (_, kick) = g.redist_access(GICR_SGI_BASE + GICD_ISENABLER, 4, Some(1 << 3), &mut hw);
        assert_eq!(kick, 1);
        assert!(g.has_pending(0));
    }

    #[test]
    fn priorities_are_byte_accessible_and_keep_five_bits() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.dist_access(0, GICD_IPRIORITYR + 33, 1, Some(0xA7), &mut hw);
        assert_eq!(g.priority(0, 33), 0xA0);
        assert_eq!(g.dist_access(0, GICD_IPRIORITYR + 32, 4, None, &mut hw).0, 0xA000);
        g.redist_access(GICR_SGI_BASE + GICD_IPRIORITYR + 4, 4, Some(0x1020_3040), &mut hw);
        assert_eq!(g.priority(0, 4), 0x40);
        assert_eq!(g.priority(0, 7), 0x10);
    }

    #[test]
    fn irouter_routes_spis_to_the_vcpu_with_that_affinity() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.dist_access(0, GICD_IROUTER + 8 * 40, 8, Some(2), &mut hw);
        assert_eq!(hw.routes, [(40, 2)]);
        assert_eq!(g.dist_access(0, GICD_IROUTER + 8 * 40, 8, None, &mut hw).0, 2);
    }

    #[test]
    fn gicv2_banked_targets_sgir_and_sources() {
        let mut g = VGic::new(Version::V2, 288, &MPIDRS[..2]);
        let mut hw = FakeHw::default();
        assert_eq!(g.dist_access(1, GICD_ITARGETSR, 4, None, &mut hw).0, 0x0202_0202);
        g.dist_access(0, GICD_CTLR, 4, Some(1), &mut hw);
        g.dist_access(1, GICD_ISENABLER, 4, Some(1 << 2), &mut hw);
        let (_, kick) =
            g.dist_access(0, GICD_SGIR, 4, Some(u64::from((SGIR_FILTER_OTHERS << SGIR_FILTER_SHIFT) | 2)), &mut hw);
        assert_eq!(kick, 0b10);
        assert_eq!(g.dist_access(1, GICD_SPENDSGIR, 4, None, &mut hw).0, 1 << 16);
        let out = take_all(&mut g, 1);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].intid, out[0].source), (2, 0));
        g.dist_access(0, GICD_ITARGETSR + 40, 1, Some(0b10), &mut hw);
        assert_eq!(hw.routes, [(40, 1)]);
    }

    #[test]
    fn a_gicv2_sgi_from_two_sources_is_taken_one_source_at_a_time() {
        let mut g = VGic::new(Version::V2, 64, &[0, 1, 2]);
        let mut hw = FakeHw::default();
        g.dist_access(0, GICD_CTLR, 4, Some(1), &mut hw);
        g.dist_access(0, GICD_ISENABLER, 4, Some(1 << 4), &mut hw);
        g.raise_sgi(0, 4, 2);
        g.raise_sgi(0, 4, 1);
        let first = g.next_pending(0, 0).expect("SGI 4 pending");
        assert_eq!((first.intid, first.source), (4, 1), "lowest source first");
        assert!(g.take(0, &first), "still pending from vCPU 2");
        let second = g.next_pending(0, 0).expect("SGI 4 still pending");
        assert_eq!(second.source, 2);
        assert!(!g.take(0, &second));
        assert_eq!(g.next_pending(0, 0), None);
        assert_eq!(g.next_pending(0, 5), None, "a scan from above finds nothing either");
    }

    #[test]
    fn the_pending_hint_never_hides_a_deliverable_interrupt() {
        let mut g = VGic::new(Version::V2, 64, &[0, 1]);
        let mut hw = FakeHw::default();
        g.dist_access(0, GICD_CTLR, 4, Some(1), &mut hw);
        g.dist_access(0, GICD_ISENABLER, 4, Some(1 << 1 | 1 << 9), &mut hw);
        assert_eq!(g.first_pending(0), None);
        g.raise_sgi(0, 9, 1);
        assert_eq!(g.first_pending(0), Some(9));
        let nine = g.next_pending(0, 0).expect("SGI 9");
        g.take(0, &nine);
        assert_eq!(g.first_pending(0), None);
        g.requeue(0, &nine);
        assert_eq!(g.first_pending(0), Some(9), "a requeued SGI");
        g.raise_sgi(0, 1, 1);
        assert_eq!(g.first_pending(0), Some(1), "a lower SGI raised after a scan");
        let one = g.next_pending(0, 0).expect("SGI 1");
        g.take(0, &one);
        assert_eq!(g.first_pending(0), Some(9), "the other one is still there");
        g.raise_sgi(0, 3, 1);
        assert_eq!(g.first_pending(0), Some(9), "SGI 3 is disabled");
        g.dist_access(0, GICD_ISENABLER, 4, Some(1 << 3), &mut hw);
        assert_eq!(g.first_pending(0), Some(3), "and found once enabled");
    }

    #[test]
    fn has_pending_sees_every_change_after_a_scan_found_nothing() {
        let mut g = VGic::new(Version::V2, 64, &[0, 1]);
        let mut hw = FakeHw::default();
        g.dist_access(0, 0, 4, Some(1), &mut hw); // GICD_CTLR: group 0 on
        g.dist_access(0, 0x100, 4, Some(1 << 5), &mut hw); // enable SGI 5
        assert!(!g.has_pending(0));
        assert!(g.raise_sgi(0, 5, 1));
        assert!(g.has_pending(0), "a raised SGI after an empty scan");
        assert_eq!(take_all(&mut g, 0).len(), 1);
        assert!(!g.has_pending(0));
        g.dist_access(0, 0, 4, Some(0), &mut hw); // distributor off
        g.raise_sgi(0, 5, 1);
        assert!(!g.has_pending(0), "not deliverable while the distributor is off");
        g.dist_access(0, 0, 4, Some(1), &mut hw);
        assert!(g.has_pending(0), "deliverable again once GICD_CTLR enables it");
    }

    #[test]
    fn private_state_save_restore_round_trips() {
        let mut g = VGic::new(Version::V2, 64, &[0, 1]);
        let mut hw = FakeHw::default();
        // Enable SGI 3 and PPI 20, set a priority, make SGI 3 pending from vCPU 1.
        g.dist_access(0, 0x100, 4, Some(1 << 3 | 1 << 20), &mut hw);
        g.dist_access(0, 0x400 + 20, 1, Some(0xA0), &mut hw);
        g.raise_sgi(0, 3, 1);
        let saved = g.save_private(0);
        let mut other = VGic::new(Version::V2, 64, &[0, 1]);
        other.restore_private(0, &saved);
        assert_eq!(other.save_private(0), saved);
        assert_eq!(other.priority(0, 20), 0xA0);
        assert_eq!(other.save_private(1), VGic::new(Version::V2, 64, &[0, 1]).save_private(1));
    }

    #[test]
    fn a_forwarded_interrupt_waiting_for_the_guest_does_not_read_active() {
        let mut g = VGic::new(Version::V2, 64, &[0]);
        // PPI 27 is forwarded; Cairn's acknowledge left it physically active.
        let mut hw = FakeHw { active: true, ..FakeHw::default() };
        let timer_bit = |g: &mut VGic, hw: &mut FakeHw| g.dist_access(0, GICD_ISACTIVER, 4, None, hw).0 >> 27 & 1;
        hw.listed = (true, false);
        assert_eq!(timer_bit(&mut g, &mut hw), 0, "pending in a list register: not yet the guest's");
        hw.listed = (false, true);
        assert_eq!(timer_bit(&mut g, &mut hw), 1, "active in a list register");
        hw.listed = (false, false);
        assert_eq!(timer_bit(&mut g, &mut hw), 1, "not listed here: the physical state");
        hw.active = false;
        assert_eq!(timer_bit(&mut g, &mut hw), 0);
    }

    #[test]
    fn trigger_mode_follows_icfgr_and_sgis_stay_edge() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        assert!(g.level_sensitive(0, 27), "PPIs reset level-sensitive");
        assert!(g.level_sensitive(0, 40), "and so do SPIs");
        assert!(!g.level_sensitive(0, 3), "SGIs are edge-triggered");
        // GICD_ICFGR2 holds INTIDs 32-47; field 8 (INTID 40) upper bit = edge.
        g.dist_access(0, GICD_ICFGR + 8, 4, Some(0b10 << (2 * 8)), &mut hw);
        assert!(!g.level_sensitive(0, 40));
        assert!(!g.level_sensitive(0, MAX_IRQS), "no such interrupt");
    }

    #[test]
    fn ctlr_gates_delivery() {
        let (mut g, mut hw) = (v3(), FakeHw::default());
        g.redist_access(GICR_SGI_BASE + GICD_IGROUPR, 4, Some(u64::MAX), &mut hw);
        g.redist_access(GICR_SGI_BASE + GICD_ISENABLER, 4, Some(1), &mut hw);
        g.raise_sgi(0, 0, 0);
        assert!(!g.has_pending(0));
        g.dist_access(0, GICD_CTLR, 4, Some(u64::from(CTLR_ENABLE_GRP1)), &mut hw);
        assert!(g.has_pending(0));
    }
}
