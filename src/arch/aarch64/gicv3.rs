//! The physical GICv3 (Arm IHI 0069H): Cairn owns the distributor and redistributors, takes
//! every physical interrupt at EL2 through the system-register CPU interface, and drives
//! the virtual CPU interface (ICH_*_EL2) for its guest.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::gicarch::MAX_IRQS;
use super::gicd::{
    self, GICD_CTLR, GICD_ICACTIVER, GICD_ICENABLER, GICD_ICPENDR, GICD_IGROUPR, GICD_IPRIORITYR, GICD_ISACTIVER,
    GICD_ISENABLER, GICD_ISPENDR,
};
use super::limits::MAX_CPUS;
use super::mmio::{read32, read64, write32, write64};

// Distributor registers GICv3 alone has (IHI 0069H §12.9).
const GICD_IROUTER: usize = 0x6000;
/// GICD_CTLR: EnableGrp1 (0 in the non-secure view), EnableGrp1A (1), ARE_NS (4), RWP (31).
const GICD_CTLR_ENABLE: u32 = (1 << 0) | (1 << 1) | (1 << 4);
const GICD_CTLR_RWP: u32 = 1 << 31;

// Redistributor (IHI 0069H §12.10-12.11): RD_base, then SGI_base 64 KiB above.
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_SGI_BASE: usize = 0x1_0000;
const GICR_FRAME: usize = 0x2_0000;
/// A frame with VLPI support has two more 64 KiB pages (GICR_TYPER.VLPIS, bit 1).
const GICR_FRAME_VLPI: usize = 0x4_0000;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// Physical priority for every interrupt: one level, below "highest", so nothing preempts
/// Cairn's own handling and the guest's virtual priorities decide the order it sees.
pub const DEFAULT_PRIORITY: u8 = 0xA0;
const ALL_ONES: u32 = u32::MAX;

/// ICC_SRE_EL2: SRE (0) system registers; Enable (3) lets EL1 use them too.
const ICC_SRE_EL2_VALUE: u64 = (1 << 0) | (1 << 3);
/// ICC_CTLR_EL1.EOImode (1): EOI only drops priority; deactivation is separate, so a guest's
/// virtual EOI (HW bit in the list register) deactivates forwarded interrupts.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// ICH_HCR_EL2: En (0) enables the virtual CPU interface; UIE (1) raises the maintenance
/// interrupt when at most one list register holds an interrupt (underflow).
const ICH_HCR_EN: u64 = 1 << 0;
const ICH_HCR_UIE: u64 = 1 << 1;
const ICH_VTR_LISTREGS_MASK: u64 = 0x1F;
/// The lowest priority mask: every priority passes.
const PMR_ALLOW_ALL: u64 = 0xFF;

/// ICC_SGI1R_EL1 fields (IHI 0069H §12.2.23).
const SGI1R_AFF1_SHIFT: u64 = 16;
const SGI1R_INTID_SHIFT: u64 = 24;
const SGI1R_AFF2_SHIFT: u64 = 32;
const SGI1R_RS_SHIFT: u64 = 44;
const SGI1R_AFF3_SHIFT: u64 = 48;

/// The physical GICv3.
pub struct GicV3 {
    distributor: usize,
    redistributors: usize,
    redistributors_size: usize,
    nr_irqs: u32,
}

/// Each logical CPU's redistributor frame.
static REDIST: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

macro_rules! sysreg_write {
    ($name:literal, $value:expr) => {
        // SAFETY: a GIC CPU-interface or ICH register write at EL2; Cairn owns both.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value) }
    };
}

macro_rules! sysreg_read {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a GIC CPU-interface or ICH register at EL2.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v) };
        v
    }};
}

impl GicV3 {
    pub fn new(distributor: usize, redistributors: usize, redistributors_size: usize) -> Self {
        GicV3 { distributor, redistributors, redistributors_size, nr_irqs: gicd::nr_irqs(distributor).min(MAX_IRQS) }
    }

    pub fn nr_irqs(&self) -> u32 {
        self.nr_irqs
    }

    fn wait_for_rwp(&self) {
        while read32(self.distributor + GICD_CTLR) & GICD_CTLR_RWP != 0 {
            core::hint::spin_loop();
        }
    }

    /// Resets every SPI to disabled, group 1, one priority, routed to `boot_affinity`.
    pub fn init_distributor(&self, boot_affinity: u64) {
        let d = self.distributor;
        write32(d + GICD_CTLR, 0);
        self.wait_for_rwp();
        for reg in (32..self.nr_irqs).step_by(32) {
            let off = (reg / 32) as usize * 4;
            write32(d + GICD_ICENABLER + off, ALL_ONES);
            write32(d + GICD_ICPENDR + off, ALL_ONES);
            write32(d + GICD_ICACTIVER + off, ALL_ONES);
            write32(d + GICD_IGROUPR + off, ALL_ONES);
        }
        for intid in 32..self.nr_irqs {
            super::mmio::write8(d + GICD_IPRIORITYR + intid as usize, DEFAULT_PRIORITY);
            write64(d + GICD_IROUTER + 8 * intid as usize, boot_affinity);
        }
        self.wait_for_rwp();
        write32(d + GICD_CTLR, GICD_CTLR_ENABLE);
        self.wait_for_rwp();
    }

    fn find_redistributor(&self, affinity: u64) -> Option<usize> {
        let mut frame = self.redistributors;
        while frame < self.redistributors + self.redistributors_size {
            let typer = read64(frame + GICR_TYPER);
            // GICR_TYPER.Affinity_Value [63:32] is Aff3.Aff2.Aff1.Aff0.
            let aff = typer >> 32;
            let mpidr = ((aff >> 24) << 32) | (aff & 0xFF_FFFF);
            if mpidr == affinity {
                return Some(frame);
            }
            if typer & GICR_TYPER_LAST != 0 {
                return None;
            }
            frame += if typer & GICR_TYPER_VLPIS != 0 { GICR_FRAME_VLPI } else { GICR_FRAME };
        }
        None
    }

    /// Sets up this CPU's redistributor and CPU interface, and enables `private` (SGIs and
    /// PPIs Cairn itself takes).
    pub fn init_cpu(&self, cpu: usize, affinity: u64, private: &[u32]) -> bool {
        let Some(rd) = self.find_redistributor(affinity) else { return false };
        REDIST[cpu].store(rd, Ordering::Release);
        write32(rd + GICR_WAKER, read32(rd + GICR_WAKER) & !GICR_WAKER_PROCESSOR_SLEEP);
        while read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP != 0 {
            core::hint::spin_loop();
        }
        let sgi = rd + GICR_SGI_BASE;
        write32(sgi + GICD_ICENABLER, ALL_ONES);
        write32(sgi + GICD_ICPENDR, ALL_ONES);
        write32(sgi + GICD_ICACTIVER, ALL_ONES);
        write32(sgi + GICD_IGROUPR, ALL_ONES);
        for intid in 0..32 {
            super::mmio::write8(sgi + GICD_IPRIORITYR + intid, DEFAULT_PRIORITY);
        }
        write32(sgi + GICD_ISENABLER, private.iter().fold(0, |m, &i| m | (1 << i)));

        sysreg_write!("S3_4_C12_C9_5", ICC_SRE_EL2_VALUE); // ICC_SRE_EL2
                                                           // SAFETY: a context synchronization barrier: SRE must take effect before the
                                                           // system-register interface is used.
        unsafe { core::arch::asm!("isb") };
        sysreg_write!("S3_0_C4_C6_0", PMR_ALLOW_ALL); // ICC_PMR_EL1
        sysreg_write!("S3_0_C12_C12_3", 0u64); // ICC_BPR1_EL1
        sysreg_write!("S3_0_C12_C12_4", ICC_CTLR_EOIMODE); // ICC_CTLR_EL1
        sysreg_write!("S3_0_C12_C12_7", 1u64); // ICC_IGRPEN1_EL1
        for i in 0..self.list_registers() {
            self.write_lr(i, 0);
        }
        sysreg_write!("S3_4_C12_C11_7", 0u64); // ICH_VMCR_EL2
        sysreg_write!("S3_4_C12_C11_0", ICH_HCR_EN); // ICH_HCR_EL2
        sysreg_write!("S3_4_C12_C8_0", 0u64); // ICH_AP0R0_EL2
        sysreg_write!("S3_4_C12_C9_0", 0u64); // ICH_AP1R0_EL2
        true
    }

    /// Acknowledges the highest-priority pending interrupt (ICC_IAR1_EL1).
    pub fn ack(&self) -> u32 {
        sysreg_read!("S3_0_C12_C12_0") as u32
    }

    /// Drops the running priority (ICC_EOIR1_EL1); with EOImode = 1 this does not
    /// deactivate.
    pub fn eoi(&self, intid: u32) {
        sysreg_write!("S3_0_C12_C12_1", u64::from(intid));
    }

    /// Deactivates (ICC_DIR_EL1).
    pub fn deactivate(&self, intid: u32) {
        sysreg_write!("S3_0_C12_C11_1", u64::from(intid));
    }

    /// Sends physical SGI `sgi` to the CPU with MPIDR affinity `affinity`.
    pub fn send_sgi(&self, affinity: u64, sgi: u32) {
        let aff0 = affinity & 0xFF;
        let value = ((affinity >> 32) & 0xFF) << SGI1R_AFF3_SHIFT
            | ((affinity >> 16) & 0xFF) << SGI1R_AFF2_SHIFT
            | ((affinity >> 8) & 0xFF) << SGI1R_AFF1_SHIFT
            | (aff0 / 16) << SGI1R_RS_SHIFT
            | u64::from(sgi) << SGI1R_INTID_SHIFT
            | 1 << (aff0 % 16);
        // The SGI must not overtake the stores that tell the target why it is kicked.
        // SAFETY: a barrier has no side effects beyond ordering.
        unsafe { core::arch::asm!("dsb ish") };
        sysreg_write!("S3_0_C12_C11_5", value); // ICC_SGI1R_EL1
                                                // SAFETY: as above.
        unsafe { core::arch::asm!("isb") };
    }

    pub fn list_registers(&self) -> usize {
        (sysreg_read!("S3_4_C12_C11_1") & ICH_VTR_LISTREGS_MASK) as usize + 1 // ICH_VTR_EL2
    }

    /// ICH_ELRSR_EL2: bit n set when list register n is free.
    pub fn empty_lrs(&self) -> u64 {
        sysreg_read!("S3_4_C12_C11_5")
    }

    pub fn set_underflow_interrupt(&self, on: bool) {
        let hcr = if on { ICH_HCR_EN | ICH_HCR_UIE } else { ICH_HCR_EN };
        sysreg_write!("S3_4_C12_C11_0", hcr);
    }

    pub fn read_lr(&self, n: usize) -> u64 {
        macro_rules! lr {
            ($($i:literal => $reg:literal),*) => {
                match n { $($i => sysreg_read!($reg),)* _ => 0 }
            };
        }
        lr!(0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
            4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
            8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
            12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7")
    }

    pub fn write_lr(&self, n: usize, value: u64) {
        macro_rules! lr {
            ($($i:literal => $reg:literal),*) => {
                match n { $($i => sysreg_write!($reg, value),)* _ => {} }
            };
        }
        lr!(0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
            4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
            8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
            12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7")
    }

    /// ICH_VMCR_EL2, ICH_AP0R0_EL2 and ICH_AP1R0_EL2: the guest's CPU-interface control
    /// and active priorities (IHI 0069H §12.5.7, §12.5.1, §12.5.3; with 5 priority bits
    /// only the first active-priority register of each group exists).
    pub fn read_vmcr_apr(&self) -> (u64, [u64; 2]) {
        (sysreg_read!("S3_4_C12_C11_7"), [sysreg_read!("S3_4_C12_C8_0"), sysreg_read!("S3_4_C12_C9_0")])
    }

    pub fn write_vmcr_apr(&self, vmcr: u64, apr: [u64; 2]) {
        sysreg_write!("S3_4_C12_C11_7", vmcr);
        sysreg_write!("S3_4_C12_C8_0", apr[0]);
        sysreg_write!("S3_4_C12_C9_0", apr[1]);
    }

    /// The frame holding `intid`'s bits: the redistributor's SGI frame of `cpu` for private
    /// interrupts, else the distributor.
    fn frame(&self, cpu: usize, intid: u32) -> usize {
        if intid < 32 {
            REDIST[cpu].load(Ordering::Acquire) + GICR_SGI_BASE
        } else {
            self.distributor
        }
    }

    pub fn set_enabled(&self, cpu: usize, intid: u32, enabled: bool) {
        gicd::write_bit(self.frame(cpu, intid), if enabled { GICD_ISENABLER } else { GICD_ICENABLER }, intid);
    }

    pub fn set_pending(&self, cpu: usize, intid: u32, pending: bool) {
        gicd::write_bit(self.frame(cpu, intid), if pending { GICD_ISPENDR } else { GICD_ICPENDR }, intid);
    }

    pub fn pending(&self, cpu: usize, intid: u32) -> bool {
        gicd::read_bit(self.frame(cpu, intid), GICD_ISPENDR, intid)
    }

    pub fn set_active(&self, cpu: usize, intid: u32, active: bool) {
        gicd::write_bit(self.frame(cpu, intid), if active { GICD_ISACTIVER } else { GICD_ICACTIVER }, intid);
    }

    pub fn active(&self, cpu: usize, intid: u32) -> bool {
        gicd::read_bit(self.frame(cpu, intid), GICD_ISACTIVER, intid)
    }

    pub fn set_edge_triggered(&self, intid: u32, edge: bool) {
        gicd::set_edge_triggered(self.distributor, intid, edge);
    }

    pub fn route(&self, intid: u32, affinity: u64) {
        write64(self.distributor + GICD_IROUTER + 8 * intid as usize, affinity);
    }
}
