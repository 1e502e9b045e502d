//! The machine's GIC, whichever version the device tree names: one interface over
//! [`GicV2`] and [`GicV3`] for the rest of Cairn, including the per-interrupt state through
//! which the virtual GIC forwards the guest's settings for interrupts a real device raises
//! (`vgic::physical`).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::gicarch::{GicVersion, PRIVATE_IRQS};
use super::gicv2::GicV2;
use super::gicv3::GicV3;
use super::limits::MAX_CPUS;
use super::lr::{ListReg, VgicCpu};
use crate::mm::Region;

/// Physical SGI Cairn sends to make another CPU leave its guest and look at its pending
/// virtual interrupts or power state.
pub const SGI_KICK: u32 = 0;
/// The GIC maintenance interrupt: PPI 9, INTID 25, as the Arm Base System Architecture
/// recommends and QEMU virt and the Raspberry Pi 4 wire it.
pub const MAINTENANCE_IRQ: u32 = 25;
/// The EL2 physical timer's interrupt (PPI 10, INTID 26, per the Arm Base System
/// Architecture), with which Cairn ends a VM's run at its `cairn.timeout`.
pub const HYP_TIMER_IRQ: u32 = 26;
/// Private interrupts a guest owns: the PMU (PPI 7, INTID 23), the EL1 virtual timer
/// (PPI 11, INTID 27) and the EL1 physical timer (PPI 14, INTID 30), per the Arm Base
/// System Architecture's PPI assignments.
pub const GUEST_PPIS: [u32; 3] = [23, 27, 30];
/// INTIDs 1020-1023 are special (IHI 0069H §2.2.1): 1023 means nothing is pending.
const FIRST_SPECIAL_INTID: u32 = 1020;

pub enum Gic {
    V2(GicV2),
    V3(GicV3),
}

/// An acknowledged interrupt: its INTID, and the raw value to complete it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub raw: u32,
    pub intid: u32,
}

static GIC: spin::Once<Gic> = spin::Once::new();
/// Logical CPU -> MPIDR affinity, for GICv3 SGIs and SPI routing.
static AFFINITY: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Sets up the distributor from the boot CPU. `frames` are the GIC's register frames in
/// its device-tree `reg` order (GICv3: distributor, redistributors; GICv2: distributor,
/// CPU interface, hypervisor control); `cpus` are the MPIDRs by logical number.
pub fn init(version: GicVersion, frames: &[Region], cpus: &[u64]) -> Result<(), &'static str> {
    for (i, &mpidr) in cpus.iter().enumerate().take(MAX_CPUS) {
        AFFINITY[i].store(mpidr, Ordering::Release);
    }
    let region = |n: usize| frames.get(n).copied().ok_or("the GIC node lacks a register frame");
    let gic = match version {
        GicVersion::V3 => {
            let (d, r) = (region(0)?, region(1)?);
            let gic = GicV3::new(d.base as usize, r.base as usize, r.size as usize);
            gic.init_distributor(cpus[0]);
            Gic::V3(gic)
        }
        GicVersion::V2 => {
            let (d, c, h) = (region(0)?, region(1)?, region(2)?);
            let gic = GicV2::new(d.base as usize, c.base as usize, h.base as usize);
            gic.init_distributor();
            Gic::V2(gic)
        }
    };
    GIC.call_once(|| gic);
    Ok(())
}

pub fn get() -> Option<&'static Gic> {
    GIC.get()
}

/// Sets up this CPU's interface to the GIC; Cairn takes the kick SGI, the maintenance
/// interrupt and its own timer's interrupt itself.
pub fn init_cpu(cpu: usize) -> bool {
    let private = [SGI_KICK, MAINTENANCE_IRQ, HYP_TIMER_IRQ];
    match get() {
        Some(Gic::V3(g)) => g.init_cpu(cpu, AFFINITY[cpu].load(Ordering::Acquire), &private),
        Some(Gic::V2(g)) => {
            g.init_cpu(cpu, &private);
            true
        }
        None => false,
    }
}

/// Whether `intid` is a physical interrupt that belongs to the guest: every SPI (devices
/// are passed through) but the one Cairn claimed, and the guest's PPIs.
pub fn is_guest_interrupt(intid: u32) -> bool {
    (intid >= PRIVATE_IRQS && intid != CLAIMED_SPI.load(Ordering::Relaxed)) || GUEST_PPIS.contains(&intid)
}

/// The SPI Cairn takes for itself (its console UART's), or NO_CLAIM; and its handler.
static CLAIMED_SPI: AtomicU32 = AtomicU32::new(NO_CLAIM);
static CLAIMED_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// No INTID: the special INTID 1023 is never an SPI.
const NO_CLAIM: u32 = 1023;

/// Takes the level-sensitive SPI `intid` for Cairn: routed to logical CPU `cpu`, enabled,
/// and, whenever it fires, acknowledged at EL2 and handed to `handler` instead of a guest.
/// One SPI at most (the console's).
pub fn claim_spi(intid: u32, cpu: usize, handler: fn()) {
    let Some(gic) = get() else { return };
    CLAIMED_HANDLER.store(handler as usize, Ordering::Release);
    CLAIMED_SPI.store(intid, Ordering::Release);
    gic.set_edge_triggered(intid, false);
    gic.route(intid, cpu);
    gic.set_enabled(cpu, intid, true);
}

/// Runs the handler of Cairn's claimed SPI, if `intid` is it.
pub fn own_interrupt(intid: u32) {
    if intid != CLAIMED_SPI.load(Ordering::Acquire) {
        return;
    }
    let handler = CLAIMED_HANDLER.load(Ordering::Acquire);
    if handler != 0 {
        // SAFETY: the only value stored besides 0 is a `fn()` cast to usize by claim_spi.
        let handler: fn() = unsafe { core::mem::transmute::<usize, fn()>(handler) };
        handler();
    }
}

impl Gic {
    pub fn version(&self) -> GicVersion {
        match self {
            Gic::V2(_) => GicVersion::V2,
            Gic::V3(_) => GicVersion::V3,
        }
    }

    pub fn nr_irqs(&self) -> u32 {
        match self {
            Gic::V2(g) => g.nr_irqs(),
            Gic::V3(g) => g.nr_irqs(),
        }
    }

    /// The highest-priority pending interrupt, acknowledged; None when nothing is pending.
    pub fn ack(&self) -> Option<Acked> {
        let (raw, intid) = match self {
            Gic::V2(g) => {
                let raw = g.ack();
                (raw, GicV2::intid(raw))
            }
            Gic::V3(g) => {
                let raw = g.ack();
                (raw, raw)
            }
        };
        (intid < FIRST_SPECIAL_INTID).then_some(Acked { raw, intid })
    }

    /// Priority drop only: the interrupt stays active until [`Gic::deactivate`] or, for a
    /// forwarded one, the guest's EOI.
    pub fn eoi(&self, acked: Acked) {
        match self {
            Gic::V2(g) => g.eoi(acked.raw),
            Gic::V3(g) => g.eoi(acked.raw),
        }
    }

    pub fn deactivate(&self, acked: Acked) {
        match self {
            Gic::V2(g) => g.deactivate(acked.raw),
            Gic::V3(g) => g.deactivate(acked.raw),
        }
    }

    /// Deactivates a forwarded interrupt the guest never completed (PPIs and SPIs carry
    /// no sender, so the INTID is the whole acknowledge value).
    pub fn deactivate_forwarded(&self, intid: u32) {
        self.deactivate(Acked { raw: intid, intid });
    }

    /// Before waiting for an interrupt: see [`GicV2::resample`]. GICv3 needs nothing.
    pub fn resample(&self) {
        if let Gic::V2(g) = self {
            g.resample();
        }
    }

    /// Interrupts logical CPU `cpu` with the kick SGI.
    pub fn kick(&self, cpu: usize) {
        match self {
            Gic::V2(g) => g.send_sgi(cpu, SGI_KICK),
            Gic::V3(g) => g.send_sgi(AFFINITY[cpu].load(Ordering::Acquire), SGI_KICK),
        }
    }

    pub fn list_registers(&self) -> usize {
        match self {
            Gic::V2(g) => g.list_registers(),
            Gic::V3(g) => g.list_registers(),
        }
    }

    /// Bit n set: list register n is free.
    pub fn empty_lrs(&self) -> u64 {
        match self {
            Gic::V2(g) => g.empty_lrs(),
            Gic::V3(g) => g.empty_lrs(),
        }
    }

    pub fn set_underflow_interrupt(&self, on: bool) {
        match self {
            Gic::V2(g) => g.set_underflow_interrupt(on),
            Gic::V3(g) => g.set_underflow_interrupt(on),
        }
    }

    pub fn read_lr(&self, n: usize) -> ListReg {
        match self {
            Gic::V2(g) => ListReg::from_v2(g.read_lr(n)),
            Gic::V3(g) => ListReg::from_v3(g.read_lr(n)),
        }
    }

    pub fn write_lr(&self, n: usize, lr: &ListReg) {
        match self {
            Gic::V2(g) => g.write_lr(n, lr.to_v2()),
            Gic::V3(g) => g.write_lr(n, lr.to_v3()),
        }
    }

    /// The virtual CPU interface as the guest left it: raw list registers, VMCR, APRs.
    pub fn save_cpu_interface(&self) -> VgicCpu {
        let lrs = (0..self.list_registers()).map(|n| self.read_raw_lr(n)).collect();
        let (vmcr, apr) = match self {
            Gic::V2(g) => {
                let (vmcr, apr) = g.read_vmcr_apr();
                (u64::from(vmcr), [u64::from(apr), 0])
            }
            Gic::V3(g) => g.read_vmcr_apr(),
        };
        VgicCpu { lrs, vmcr, apr }
    }

    /// Puts back what [`Gic::save_cpu_interface`] saved (GICv2 registers are 32 bits wide:
    /// the upper halves of a saved value are ignored).
    pub fn restore_cpu_interface(&self, saved: &VgicCpu) {
        for (n, &lr) in saved.lrs.iter().enumerate().take(self.list_registers()) {
            match self {
                Gic::V2(g) => g.write_lr(n, lr as u32),
                Gic::V3(g) => g.write_lr(n, lr),
            }
        }
        match self {
            Gic::V2(g) => g.write_vmcr_apr(saved.vmcr as u32, saved.apr[0] as u32),
            Gic::V3(g) => g.write_vmcr_apr(saved.vmcr, saved.apr),
        }
    }

    fn read_raw_lr(&self, n: usize) -> u64 {
        match self {
            Gic::V2(g) => u64::from(g.read_lr(n)),
            Gic::V3(g) => g.read_lr(n),
        }
    }

    /// Enables or disables `intid` (for a private interrupt, logical CPU `cpu`'s).
    /// Private interrupts are banked: for them this must run on `cpu` itself.
    pub fn set_enabled(&self, cpu: usize, intid: u32, enabled: bool) {
        match self {
            Gic::V2(g) => g.set_enabled(intid, enabled),
            Gic::V3(g) => g.set_enabled(cpu, intid, enabled),
        }
    }

    pub fn set_pending(&self, cpu: usize, intid: u32, pending: bool) {
        match self {
            Gic::V2(g) => g.set_pending(intid, pending),
            Gic::V3(g) => g.set_pending(cpu, intid, pending),
        }
    }

    pub fn pending(&self, cpu: usize, intid: u32) -> bool {
        match self {
            Gic::V2(g) => g.pending(intid),
            Gic::V3(g) => g.pending(cpu, intid),
        }
    }

    pub fn set_active(&self, cpu: usize, intid: u32, active: bool) {
        match self {
            Gic::V2(g) => g.set_active(intid, active),
            Gic::V3(g) => g.set_active(cpu, intid, active),
        }
    }

    pub fn active(&self, cpu: usize, intid: u32) -> bool {
        match self {
            Gic::V2(g) => g.active(intid),
            Gic::V3(g) => g.active(cpu, intid),
        }
    }

    pub fn set_edge_triggered(&self, intid: u32, edge: bool) {
        match self {
            Gic::V2(g) => g.set_edge_triggered(intid, edge),
            Gic::V3(g) => g.set_edge_triggered(intid, edge),
        }
    }

    /// Routes the SPI `intid` to logical CPU `cpu`.
    pub fn route(&self, intid: u32, cpu: usize) {
        match self {
            Gic::V2(g) => g.route(intid, cpu),
            Gic::V3(g) => g.route(intid, AFFINITY[cpu.min(MAX_CPUS - 1)].load(Ordering::Acquire)),
        }
    }

    /// Empties every list register (a vCPU going off or being reset).
    pub fn clear_lrs(&self) {
        for n in 0..self.list_registers() {
            self.write_lr(n, &ListReg::empty());
        }
        self.set_underflow_interrupt(false);
    }
}
