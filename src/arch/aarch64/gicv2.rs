//! The physical GICv2 / GIC-400 (Arm IHI 0048B): Cairn owns the distributor and the CPU
//! interface, takes every physical interrupt at EL2, and drives the virtual interface
//! control frame (GICH) for its guest; the guest's GICC is the GICV frame, mapped by
//! stage 2.

use core::sync::atomic::{AtomicU8, Ordering};

use super::gicarch::MAX_IRQS;
use super::gicd::{
    self, GICD_CTLR, GICD_ICACTIVER, GICD_ICENABLER, GICD_ICPENDR, GICD_IPRIORITYR, GICD_ISACTIVER, GICD_ISENABLER,
    GICD_ISPENDR,
};
use super::gicv3::DEFAULT_PRIORITY;
use super::limits::MAX_CPUS;
use super::mmio::{read32, read8, write32, write8};

// Distributor registers GICv2 alone has (IHI 0048B §4.3).
const GICD_ITARGETSR: usize = 0x800;
const GICD_SGIR: usize = 0xF00;
const GICD_CTLR_ENABLE: u32 = 1 << 0;
const GICD_SGIR_TARGETS_SHIFT: u32 = 16;

// CPU interface (IHI 0048B §4.4).
const GICC_CTLR: usize = 0x0000;
const GICC_PMR: usize = 0x0004;
const GICC_IAR: usize = 0x000C;
const GICC_EOIR: usize = 0x0010;
const GICC_DIR: usize = 0x1000;
/// GICC_CTLR: EnableGrp0 (0), EnableGrp1 (1), EOImodeS (9) and EOImodeNS (10): EOI only
/// drops priority, whichever security view the GIC gives Cairn (IHI 0048B §4.4.1).
const GICC_CTLR_VALUE: u32 = (1 << 0) | (1 << 1) | (1 << 9) | (1 << 10);
const GICC_IAR_INTID_MASK: u32 = 0x3FF;
const PMR_ALLOW_ALL: u32 = 0xFF;

// Virtual interface control (IHI 0048B §5.3).
const GICH_HCR: usize = 0x000;
const GICH_VTR: usize = 0x004;
const GICH_VMCR: usize = 0x008;
const GICH_ELRSR0: usize = 0x030;
const GICH_ELRSR1: usize = 0x034;
const GICH_APR: usize = 0x0F0;
const GICH_LR0: usize = 0x100;
const GICH_HCR_EN: u32 = 1 << 0;
const GICH_HCR_UIE: u32 = 1 << 1;
const GICH_VTR_LISTREGS_MASK: u32 = 0x3F;

/// The physical GICv2.
pub struct GicV2 {
    distributor: usize,
    cpu_interface: usize,
    hyp_control: usize,
    nr_irqs: u32,
}

/// Each logical CPU's GIC CPU-interface number, as a target mask bit.
static CPU_MASK: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

impl GicV2 {
    pub fn new(distributor: usize, cpu_interface: usize, hyp_control: usize) -> Self {
        GicV2 { distributor, cpu_interface, hyp_control, nr_irqs: gicd::nr_irqs(distributor).min(MAX_IRQS) }
    }

    pub fn nr_irqs(&self) -> u32 {
        self.nr_irqs
    }

    /// Resets every SPI to disabled, group 0, one priority, targeting the boot CPU.
    pub fn init_distributor(&self) {
        let d = self.distributor;
        write32(d + GICD_CTLR, 0);
        // GICD_ITARGETSR0 is banked: its first byte is the reading CPU's own mask.
        let boot_mask = read8(d + GICD_ITARGETSR);
        for reg in (32..self.nr_irqs).step_by(32) {
            let off = (reg / 32) as usize * 4;
            write32(d + GICD_ICENABLER + off, u32::MAX);
            write32(d + GICD_ICPENDR + off, u32::MAX);
            write32(d + GICD_ICACTIVER + off, u32::MAX);
        }
        for intid in 32..self.nr_irqs as usize {
            write8(d + GICD_IPRIORITYR + intid, DEFAULT_PRIORITY);
            write8(d + GICD_ITARGETSR + intid, boot_mask);
        }
        write32(d + GICD_CTLR, GICD_CTLR_ENABLE);
    }

    /// Sets up this CPU's banked distributor registers and CPU interface, enabling
    /// `private` (the SGIs and PPIs Cairn itself takes).
    pub fn init_cpu(&self, cpu: usize, private: &[u32]) {
        let d = self.distributor;
        CPU_MASK[cpu].store(read8(d + GICD_ITARGETSR), Ordering::Release);
        write32(d + GICD_ICENABLER, u32::MAX);
        write32(d + GICD_ICPENDR, u32::MAX);
        write32(d + GICD_ICACTIVER, u32::MAX);
        for intid in 0..32 {
            write8(d + GICD_IPRIORITYR + intid, DEFAULT_PRIORITY);
        }
        write32(d + GICD_ISENABLER, private.iter().fold(0, |m, &i| m | (1 << i)));
        write32(self.cpu_interface + GICC_PMR, PMR_ALLOW_ALL);
        write32(self.cpu_interface + GICC_CTLR, GICC_CTLR_VALUE);
        for i in 0..self.list_registers() {
            self.write_lr(i, 0);
        }
        write32(self.hyp_control + GICH_APR, 0);
        write32(self.hyp_control + GICH_VMCR, 0);
        write32(self.hyp_control + GICH_HCR, GICH_HCR_EN);
    }

    /// Acknowledges: the raw GICC_IAR value, which for an SGI carries the sender in
    /// CPUID [12:10] and must be written back unchanged to GICC_EOIR and GICC_DIR
    /// (IHI 0048B §4.4.4, §4.4.5).
    pub fn ack(&self) -> u32 {
        read32(self.cpu_interface + GICC_IAR)
    }

    /// Makes the distributor look at its pending interrupts again (a write of GICD_CTLR's
    /// own value: no effect on hardware). QEMU's GICv2 does not re-evaluate what it signals
    /// to the CPU when a guest's virtual EOI deactivates a HW-mapped interrupt whose line
    /// is still asserted (the virtual timer re-armed in the past): without this, a CPU
    /// waiting in WFI at EL2 for that interrupt sleeps forever, with it pending in the
    /// distributor and GICC_HPPIR reading 1023.
    pub fn resample(&self) {
        write32(self.distributor + GICD_CTLR, read32(self.distributor + GICD_CTLR));
    }

    pub fn intid(iar: u32) -> u32 {
        iar & GICC_IAR_INTID_MASK
    }

    pub fn eoi(&self, intid: u32) {
        write32(self.cpu_interface + GICC_EOIR, intid);
    }

    pub fn deactivate(&self, intid: u32) {
        write32(self.cpu_interface + GICC_DIR, intid);
    }

    /// Sends SGI `sgi` to logical CPU `cpu`.
    pub fn send_sgi(&self, cpu: usize, sgi: u32) {
        let mask = u32::from(CPU_MASK[cpu].load(Ordering::Acquire));
        // SAFETY: a barrier only orders memory accesses.
        unsafe { core::arch::asm!("dsb ish") };
        write32(self.distributor + GICD_SGIR, (mask << GICD_SGIR_TARGETS_SHIFT) | sgi);
    }

    pub fn list_registers(&self) -> usize {
        (read32(self.hyp_control + GICH_VTR) & GICH_VTR_LISTREGS_MASK) as usize + 1
    }

    pub fn empty_lrs(&self) -> u64 {
        u64::from(read32(self.hyp_control + GICH_ELRSR0)) | u64::from(read32(self.hyp_control + GICH_ELRSR1)) << 32
    }

    pub fn set_underflow_interrupt(&self, on: bool) {
        write32(self.hyp_control + GICH_HCR, if on { GICH_HCR_EN | GICH_HCR_UIE } else { GICH_HCR_EN });
    }

    pub fn read_lr(&self, n: usize) -> u32 {
        read32(self.hyp_control + GICH_LR0 + 4 * n)
    }

    pub fn write_lr(&self, n: usize, value: u32) {
        write32(self.hyp_control + GICH_LR0 + 4 * n, value);
    }

    /// GICH_VMCR and GICH_APR: the guest's view of its CPU interface's control and
    /// active priorities (IHI 0048B §5.3.4, §5.3.7).
    pub fn read_vmcr_apr(&self) -> (u32, u32) {
        (read32(self.hyp_control + GICH_VMCR), read32(self.hyp_control + GICH_APR))
    }

    pub fn write_vmcr_apr(&self, vmcr: u32, apr: u32) {
        write32(self.hyp_control + GICH_VMCR, vmcr);
        write32(self.hyp_control + GICH_APR, apr);
    }

    /// Private interrupts are banked: these must run on the CPU that owns them, which is
    /// where a pinned vCPU's accesses trap.
    pub fn set_enabled(&self, intid: u32, enabled: bool) {
        gicd::write_bit(self.distributor, if enabled { GICD_ISENABLER } else { GICD_ICENABLER }, intid);
    }

    pub fn set_pending(&self, intid: u32, pending: bool) {
        gicd::write_bit(self.distributor, if pending { GICD_ISPENDR } else { GICD_ICPENDR }, intid);
    }

    pub fn pending(&self, intid: u32) -> bool {
        gicd::read_bit(self.distributor, GICD_ISPENDR, intid)
    }

    pub fn set_active(&self, intid: u32, active: bool) {
        gicd::write_bit(self.distributor, if active { GICD_ISACTIVER } else { GICD_ICACTIVER }, intid);
    }

    pub fn active(&self, intid: u32) -> bool {
        gicd::read_bit(self.distributor, GICD_ISACTIVER, intid)
    }

    pub fn set_edge_triggered(&self, intid: u32, edge: bool) {
        gicd::set_edge_triggered(self.distributor, intid, edge);
    }

    pub fn route(&self, intid: u32, cpu: usize) {
        write8(self.distributor + GICD_ITARGETSR + intid as usize, CPU_MASK[cpu].load(Ordering::Acquire));
    }
}
