//! GICv2 (Arm IHI 0048B): the distributor, whose registers for INTIDs 0-31 are banked per
//! CPU, and the memory-mapped CPU interface (GICC), also banked. Every interrupt stays in
//! Group 0 (the reset value, as Linux leaves it), which GICC signals as IRQ while
//! GICC_CTLR.FIQEn is 0.

use super::{probe, Ack, Gic, GicError, Target, PRIORITY_MASK_ALLOW_ALL};
use crate::mmio;

// Distributor (§4.3).
/// GICD_CTLR (§4.3.1): bit 0 forwards Group 0 interrupts (Enable without the Security
/// Extensions).
const GICD_CTLR: usize = 0x000;
const GICD_CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// GICD_ITARGETSR0 (§4.3.12): read-only for SGIs and PPIs, each byte reads as the bit of
/// the CPU interface that reads it.
const GICD_ITARGETSR0: usize = 0x800;
const ITARGETSR_BYTE_MASK: u32 = 0xFF;
/// A uniprocessor GIC may read GICD_ITARGETSR as zero; its one CPU interface is bit 0.
const ONLY_CPU_INTERFACE: u64 = 1 << 0;
/// GICD_SGIR (§4.3.15): TargetListFilter [25:24], CPUTargetList [23:16], SGIINTID [3:0];
/// NSATT [15] = 0 sends a Group 0 SGI.
const GICD_SGIR: usize = 0xF00;
const SGIR_TARGET_LIST_FILTER_SHIFT: u32 = 24;
const SGIR_FILTER_TARGET_LIST: u32 = 0b00;
const SGIR_FILTER_ALL_BUT_SELF: u32 = 0b01;
const SGIR_CPU_TARGET_LIST_SHIFT: u32 = 16;
/// Peripheral ID2 (ICPIDR2, in the identification registers at the top of the
/// distributor frame); ArchRev is bits [7:4].
pub const ICPIDR2: usize = 0xFE8;

// CPU interface (§4.4).
/// GICC_CTLR (§4.4.1, no Security Extensions): EnableGrp0 [0]; FIQEn [3] stays 0 so Group
/// 0 is signalled as IRQ; EOImodeS [9] and EOImodeNS [10] stay 0 so GICC_EOIR also
/// deactivates; the bypass-disable bits [8:5] are kept as found (as Linux does).
const GICC_CTLR: usize = 0x00;
const GICC_CTLR_ENABLE_GRP0: u32 = 1 << 0;
const GICC_CTLR_BYPASS_DISABLE_MASK: u32 = 0b1111 << 5;
/// GICC_PMR (§4.4.2).
const GICC_PMR: usize = 0x04;
/// GICC_IAR (§4.4.4): InterruptID [9:0], CPUID [12:10] (the SGI's sender).
const GICC_IAR: usize = 0x0C;
const GICC_IAR_INTERRUPT_ID_MASK: u32 = 0x3FF;
/// GICC_EOIR (§4.4.5): takes back the whole GICC_IAR value.
const GICC_EOIR: usize = 0x10;

pub(super) fn init_distributor(gic: &Gic) -> Result<(), GicError> {
    let ctlr = gic.distributor.base + GICD_CTLR;
    // SAFETY: GICD_CTLR of the distributor the device tree names; reading it is harmless.
    probe("GICD_CTLR", || u64::from(unsafe { mmio::read32(ctlr) }))?;
    // SAFETY: as above; forwarding Group 0 is all the guests need.
    unsafe { mmio::write32(ctlr, GICD_CTLR_ENABLE_GRP0) };
    Ok(())
}

/// Returns the (banked) distributor as this CPU's private-interrupt frame and this CPU's
/// interface bit for SGIs.
pub(super) fn init_cpu(gic: &Gic) -> Result<(usize, u64), GicError> {
    let gicc = gic.cpu_interface.base;
    // SAFETY: GICC_CTLR of the CPU interface the device tree names; reading is harmless.
    probe("GICC_CTLR", || u64::from(unsafe { mmio::read32(gicc + GICC_CTLR) }))?;
    // SAFETY: GICD_ITARGETSR0 is read-only for SGIs; reading has no side effects.
    let own = u64::from(unsafe { mmio::read32(gic.distributor.base + GICD_ITARGETSR0) } & ITARGETSR_BYTE_MASK);
    Ok((gic.distributor.base, if own == 0 { ONLY_CPU_INTERFACE } else { own }))
}

/// Lets every priority through and turns the CPU interface on.
pub(super) fn enable_cpu_interface(gic: &Gic) {
    let gicc = gic.cpu_interface.base;
    // SAFETY: GICC_PMR and GICC_CTLR of this CPU's (banked) interface; the values only
    // configure how it signals interrupts.
    unsafe {
        mmio::write32(gicc + GICC_PMR, PRIORITY_MASK_ALLOW_ALL);
        let bypass = mmio::read32(gicc + GICC_CTLR) & GICC_CTLR_BYPASS_DISABLE_MASK;
        mmio::write32(gicc + GICC_CTLR, bypass | GICC_CTLR_ENABLE_GRP0);
    }
}

pub(super) fn send_sgi(gic: &Gic, intid: u32, target: Target) {
    let (filter, targets) = match target {
        Target::Cpu(interface_bit) => (SGIR_FILTER_TARGET_LIST, interface_bit as u32),
        Target::AllButSelf => (SGIR_FILTER_ALL_BUT_SELF, 0),
    };
    let value = (filter << SGIR_TARGET_LIST_FILTER_SHIFT) | (targets << SGIR_CPU_TARGET_LIST_SHIFT) | intid;
    // SAFETY: writing GICD_SGIR only generates the SGI.
    unsafe { mmio::write32(gic.distributor.base + GICD_SGIR, value) };
}

pub(super) fn acknowledge(gic: &Gic) -> Ack {
    // SAFETY: reading GICC_IAR acknowledges the interrupt the caller then handles and ends.
    let iar = unsafe { mmio::read32(gic.cpu_interface.base + GICC_IAR) };
    Ack { raw: iar, intid: iar & GICC_IAR_INTERRUPT_ID_MASK }
}

pub(super) fn end_of_interrupt(gic: &Gic, ack: Ack) {
    // SAFETY: ends the interrupt acknowledge() returned, with the value it read.
    unsafe { mmio::write32(gic.cpu_interface.base + GICC_EOIR, ack.raw) };
}
