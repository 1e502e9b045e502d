//! GICv3 (Arm IHI 0069H): the distributor, this CPU's redistributor, and the Group 1
//! system-register CPU interface.

use core::arch::asm;

use super::{poll, probe, Ack, Gic, GicError, Target, PRIORITY_MASK_ALLOW_ALL};
use crate::{cpu, mmio};

// GICD_CTLR (§12.9.4). With one security state (GICD_CTLR.DS = 1, as on QEMU virt and as a
// hypervisor presents it) bit 4 is ARE and bit 1 EnableGrp1; in the Non-secure view of a
// two-state GIC the same bits are ARE_NS and EnableGrp1A, so the same value works.
const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICD_CTLR_ARE: u32 = 1 << 4;
/// Register Write Pending: an earlier GICD_CTLR or GICD_ICENABLER write is in flight.
const GICD_CTLR_RWP: u32 = 1 << 31;
/// Peripheral ID2 (§12.9, GICD_PIDR2); ArchRev is bits [7:4].
pub const GICD_PIDR2: usize = 0xFFE8;

// Each redistributor is two 64 KiB frames, RD_base then SGI_base, four with GICv4 virtual
// LPIs (§12.10, the Redistributor register map).
const GICR_FRAME_SIZE: usize = 0x1_0000;
const GICR_FRAMES: usize = 2;
const GICR_FRAMES_WITH_VLPIS: usize = 4;
/// SGI_base: the frame with the SGI and PPI registers.
const GICR_SGI_FRAME: usize = GICR_FRAME_SIZE;

// RD_base registers (§12.11).
const GICR_CTLR: usize = 0x0000;
/// GICR_CTLR.RWP (§12.11.2): a GICR_ICENABLER0 write is in flight.
const GICR_CTLR_RWP: u32 = 1 << 3;
/// GICR_TYPER: 64-bit; Affinity_Value [63:32] in Aff3.Aff2.Aff1.Aff0 order, Last [4]
/// (final redistributor of its region), VLPIS [1] (four frames instead of two).
const GICR_TYPER: usize = 0x0008;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;
/// GICR_WAKER: the CPU tells its redistributor it is awake by clearing ProcessorSleep, and
/// waits for ChildrenAsleep to clear before it relies on interrupts.
const GICR_WAKER: usize = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

// SGI_base registers (§12.11).
/// GICR_IGROUPR0: 1 = Group 1 for each of INTIDs 0-31 (Non-secure Group 1 with one
/// security state), the group ICC_IAR1_EL1 acknowledges.
const GICR_IGROUPR0: usize = 0x0080;
const ALL_GROUP1: u32 = u32::MAX;

// CPU interface (§12.2).
/// ICC_SRE_EL1.SRE (§12.2.23): system-register access to the CPU interface.
const ICC_SRE_SRE: u64 = 1 << 0;
/// ICC_CTLR_EL1.EOImode (§12.2.6): 0 = ICC_EOIR1_EL1 both drops priority and deactivates.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// ICC_IGRPEN1_EL1.Enable (§12.2.16): Group 1 interrupts are signalled.
const ICC_IGRPEN1_ENABLE: u64 = 1 << 0;
/// ICC_IAR1_EL1.INTID (§12.2.14): [23:0].
const ICC_IAR_INTID_MASK: u64 = 0xFF_FFFF;
// ICC_SGI1R_EL1 (§12.2.22): TargetList [15:0] (one bit per Aff0 value 0-15 within RS),
// Aff1 [23:16], INTID [27:24], Aff2 [39:32], IRM [40] (1 = every PE but the sender),
// RS [47:44] (which 16 Aff0 values TargetList covers), Aff3 [55:48].
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_IRM: u64 = 1 << 40;
const SGI1R_RS_SHIFT: u32 = 44;
const SGI1R_AFF3_SHIFT: u32 = 48;
const SGI1R_TARGETS_PER_RS: u64 = 16;

// MPIDR_EL1 affinity fields, and the packed Aff3.Aff2.Aff1.Aff0 form GICR_TYPER uses.
const AFF_BITS: u32 = 8;
const AFF_MASK: u64 = 0xFF;
/// MPIDR_EL1 Aff2.Aff1.Aff0 [23:0], already in packed order.
const MPIDR_AFF2_AFF0_MASK: u64 = 0xFF_FFFF;
const MPIDR_AFF3_SHIFT: u32 = 32;
const AFF3_PACKED_SHIFT: u32 = 3 * AFF_BITS;

/// The affinity in GICR_TYPER.Affinity_Value order: Aff3.Aff2.Aff1.Aff0, 8 bits each.
fn packed_affinity(mpidr: u64) -> u64 {
    let aff3 = (mpidr >> MPIDR_AFF3_SHIFT) & AFF_MASK;
    (aff3 << AFF3_PACKED_SHIFT) | (mpidr & MPIDR_AFF2_AFF0_MASK)
}

fn aff(packed: u64, level: u32) -> u64 {
    (packed >> (level * AFF_BITS)) & AFF_MASK
}

pub(super) fn init_distributor(gic: &Gic) -> Result<(), GicError> {
    let ctlr = gic.distributor.base + GICD_CTLR;
    // SAFETY: GICD_CTLR of the distributor the device tree names; reading it is harmless.
    probe("GICD_CTLR", || u64::from(unsafe { mmio::read32(ctlr) }))?;
    // Affinity routing on and Group 1 forwarded, which is what the SGIs and PPIs need.
    // SAFETY: as above; the value is valid for both security views (see GICD_CTLR_ARE).
    unsafe { mmio::write32(ctlr, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1) };
    // SAFETY: as above.
    poll("GICD_CTLR.RWP", || unsafe { mmio::read32(ctlr) } & GICD_CTLR_RWP == 0)
}

/// Returns this CPU's SGI_base frame and its affinity for SGIs.
pub(super) fn init_cpu(gic: &Gic) -> Result<(usize, u64), GicError> {
    enable_system_registers()?;
    let affinity = packed_affinity(cpu::mpidr());
    let rd = find_redistributor(gic, affinity)?;
    wake(rd)?;
    // SAFETY: GICR_IGROUPR0 in this CPU's own SGI frame.
    unsafe { mmio::write32(rd + GICR_SGI_FRAME + GICR_IGROUPR0, ALL_GROUP1) };
    Ok((rd + GICR_SGI_FRAME, affinity))
}

/// Sets ICC_SRE_EL1.SRE (the system-register interface; a hypervisor may have fixed it to
/// 1 already) and checks that it stuck.
fn enable_system_registers() -> Result<(), GicError> {
    // SAFETY: reading ICC_SRE_EL1 has no side effects; a trap comes back as an error.
    let sre = probe("ICC_SRE_EL1", || unsafe { read_icc_sre() })?;
    // SAFETY: SRE only selects the system-register interface; isb makes the write take
    // effect before any other ICC_* access (§12.2.23).
    unsafe { asm!("msr icc_sre_el1, {}", "isb", in(reg) sre | ICC_SRE_SRE, options(nostack)) };
    // SAFETY: as for the first read.
    if unsafe { read_icc_sre() } & ICC_SRE_SRE == 0 {
        return Err(GicError::SystemRegistersDisabled);
    }
    Ok(())
}

/// # Safety
/// Needs the GICv3 CPU interface (ICC_SRE_EL1 traps or is UNDEFINED without one).
unsafe fn read_icc_sre() -> u64 {
    let sre: u64;
    // SAFETY: per the function's contract.
    unsafe { asm!("mrs {}, icc_sre_el1", out(reg) sre, options(nomem, nostack)) };
    sre
}

/// Walks every redistributor region for the frame whose GICR_TYPER.Affinity_Value is
/// `affinity`, as Linux's gic_populate_rdist does.
fn find_redistributor(gic: &Gic, affinity: u64) -> Result<usize, GicError> {
    for region in &gic.redistributors[..gic.redistributor_regions] {
        // SAFETY: the region's first GICR_TYPER; a fault comes back as an error.
        probe("GICR_TYPER", || unsafe { mmio::read64(region.base + GICR_TYPER) })?;
        let end = region.base.saturating_add(region.size);
        let mut rd = region.base;
        while rd < end {
            // SAFETY: rd is a redistributor's RD_base inside the region, because the walk
            // stops at GICR_TYPER.Last and at the region's end.
            let typer = unsafe { mmio::read64(rd + GICR_TYPER) };
            if typer >> GICR_TYPER_AFFINITY_SHIFT == affinity {
                return Ok(rd);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            let frames = if typer & GICR_TYPER_VLPIS != 0 { GICR_FRAMES_WITH_VLPIS } else { GICR_FRAMES };
            rd += frames * GICR_FRAME_SIZE;
        }
    }
    Err(GicError::NoRedistributor { mpidr: cpu::mpidr() })
}

/// Marks the CPU awake at its redistributor (GICR_WAKER), which must happen before the
/// redistributor forwards interrupts to it.
fn wake(rd: usize) -> Result<(), GicError> {
    let waker = rd + GICR_WAKER;
    // SAFETY: GICR_WAKER of this CPU's redistributor; clearing ProcessorSleep only wakes it.
    unsafe { mmio::write32(waker, mmio::read32(waker) & !GICR_WAKER_PROCESSOR_SLEEP) };
    // SAFETY: as above; reading has no side effects.
    poll("GICR_WAKER.ChildrenAsleep", || unsafe { mmio::read32(waker) } & GICR_WAKER_CHILDREN_ASLEEP == 0)
}

/// Waits for GICR_CTLR.RWP to clear after a GICR_ICENABLER0 write (§12.11.2).
pub(super) fn wait_for_redistributor_write(sgi_frame: usize) -> Result<(), GicError> {
    let ctlr = sgi_frame - GICR_SGI_FRAME + GICR_CTLR;
    // SAFETY: GICR_CTLR of this CPU's redistributor; reading has no side effects.
    poll("GICR_CTLR.RWP", || unsafe { mmio::read32(ctlr) } & GICR_CTLR_RWP == 0)
}

/// Lets every priority through, makes EOI deactivate too, and turns Group 1 on.
pub(super) fn enable_cpu_interface() {
    // SAFETY: these registers only configure this CPU's interrupt signalling; isb makes
    // the writes take effect before the caller relies on them.
    unsafe {
        asm!("msr icc_pmr_el1, {}", in(reg) u64::from(PRIORITY_MASK_ALLOW_ALL), options(nostack));
        let ctlr: u64;
        asm!("mrs {}, icc_ctlr_el1", out(reg) ctlr, options(nostack));
        asm!("msr icc_ctlr_el1, {}", in(reg) ctlr & !ICC_CTLR_EOIMODE, options(nostack));
        asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) ICC_IGRPEN1_ENABLE, options(nostack));
    }
}

pub(super) fn send_sgi(intid: u32, target: Target) {
    let intid = u64::from(intid) << SGI1R_INTID_SHIFT;
    let value = match target {
        Target::AllButSelf => SGI1R_IRM | intid,
        Target::Cpu(affinity) => {
            // Aff0 >= 16 needs RS, which needs ICC_CTLR_EL1.RSS; QEMU virt's Aff0 stays small.
            let aff0 = aff(affinity, 0);
            let rs = aff0 / SGI1R_TARGETS_PER_RS;
            let target_list = 1 << (aff0 % SGI1R_TARGETS_PER_RS);
            (aff(affinity, 3) << SGI1R_AFF3_SHIFT)
                | (rs << SGI1R_RS_SHIFT)
                | (aff(affinity, 2) << SGI1R_AFF2_SHIFT)
                | intid
                | (aff(affinity, 1) << SGI1R_AFF1_SHIFT)
                | target_list
        }
    };
    // SAFETY: writing ICC_SGI1R_EL1 only generates the SGI; the isb makes sure the write
    // has been executed before the caller goes on (as Linux's gic_ipi_send_mask does).
    unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
}

pub(super) fn acknowledge() -> Ack {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges the interrupt the caller then handles and
    // ends. The dsb completes the acknowledge before the handler's accesses, as Linux's
    // gic_read_iar_common does.
    unsafe { asm!("mrs {}, icc_iar1_el1", "dsb sy", out(reg) iar, options(nostack)) };
    let intid = (iar & ICC_IAR_INTID_MASK) as u32;
    Ack { raw: intid, intid }
}

pub(super) fn end_of_interrupt(ack: Ack) {
    // SAFETY: ends the interrupt acknowledge() returned (priority drop and deactivation,
    // EOImode 0); isb so the next interrupt is judged against the dropped priority.
    unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(ack.raw), options(nostack)) };
}
