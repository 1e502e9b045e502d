//! Figures of one vCPU leaving the guest and coming back: SMCCC calls through HVC and SMC,
//! a read of an emulated GIC distributor register, and a trapped SGI-generation write.
//! Each is timed as a batch: one counter read before the first operation, one after the
//! last, so per operation only a few loop instructions come on top of the exit itself.

use core::arch::asm;

use guestkit::gic::{self, Version};
use guestkit::{catch_exception, time};

use crate::figure::{Missing, Samples};

/// PSCI_VERSION (DEN0022 §5.1.1): the cheapest PSCI call, answered by Cairn's SMCCC
/// dispatcher under Cairn and by QEMU's built-in PSCI natively.
pub const PSCI_VERSION: u64 = 0x8400_0000;
/// Vendor-specific hypervisor service (SMCCC owner 6), general queries Call UID and
/// Revision (DEN0028 §6.2). Cairn answers both; without Cairn they are NOT_SUPPORTED.
pub const VENDOR_HYP_CALL_UID: u64 = 0x8600_FF01;
pub const VENDOR_HYP_REVISION: u64 = 0x8600_FF03;
/// Cairn's hypervisor UID 8e1f4c2a-3b5d-4f60-a7c8-c41a1b4e2d90 as Call UID returns it in
/// x0-x3 (DEN0028 §6.2: bytes 0-3 in w0, little-endian; Cairn's src/smccc/vendor.rs).
pub const CAIRN_UID_REGISTERS: [u64; 4] = [0x2a4c_1f8e, 0x604f_5d3b, 0x1ac4_c8a7, 0x902d_4e1b];

/// GICD_TYPER: read-only, no side effects, at the same offset in a GICv3 (IHI 0069H
/// §12.9, GICD_TYPER) and a GICv2 distributor (IHI 0048B §4.3.2).
const GICD_TYPER: usize = 0x0004;
/// GICD_SGIR (IHI 0048B §4.3.15): TargetListFilter [25:24] = 0b00 sends to the CPUs in
/// CPUTargetList [23:16]; an empty list forwards the SGI to no CPU interface.
const GICD_SGIR: usize = 0x0F00;
/// ICC_SGI1R_EL1 (IHI 0069H §12.2.22): INTID [27:24]; TargetList [15:0] = 0 with IRM [40]
/// = 0 names no PE, so the write generates no SGI at all.
const SGI1R_INTID_SHIFT: u32 = 24;
/// The INTID the SGI-generation figure names (never delivered: the target list is empty).
const SGI_NOBODY: u64 = 15;

/// Registers x0-x3 after an SMCCC call.
pub type Results = [u64; 4];

/// An SMCCC call with x0 = function ID and x1-x3 = 0. x4-x17 are declared clobbered, as
/// SMCCC 1.0 allows, so the measurement does not depend on the callee preserving them.
macro_rules! smccc_call {
    ($insn:literal, $function:expr) => {{
        let (x0, x1, x2, x3): (u64, u64, u64, u64);
        // SAFETY: an SMCCC call changes at most x0-x17, all declared here; the functions
        // called (PSCI_VERSION and the vendor queries) change no state.
        unsafe {
            asm!(
                $insn,
                inlateout("x0") $function => x0, inlateout("x1") 0u64 => x1,
                inlateout("x2") 0u64 => x2, inlateout("x3") 0u64 => x3,
                lateout("x4") _, lateout("x5") _, lateout("x6") _, lateout("x7") _,
                lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
                lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
                lateout("x16") _, lateout("x17") _,
                options(nostack),
            )
        };
        [x0, x1, x2, x3]
    }};
}

#[inline(always)]
pub fn hvc(function: u64) -> Results {
    smccc_call!("hvc #0", function)
}

#[inline(always)]
fn smc(function: u64) -> Results {
    smccc_call!("smc #0", function)
}

/// Calls `call` once with exceptions caught: None if it took one (e.g. an UNDEFINED SMC
/// natively, where nothing at EL2 or EL3 answers it).
pub fn probe(call: impl FnOnce() -> Results) -> Option<Results> {
    let mut results = None;
    catch_exception(|| results = Some(call())).map_or(results, |_| None)
}

/// Runs `op` `iterations` times between two counter reads.
pub fn batch(iterations: u32, mut op: impl FnMut()) -> Samples {
    let start = time::now();
    for _ in 0..iterations {
        op();
    }
    Samples::batch(time::now().wrapping_sub(start), iterations)
}

/// HVC round trip of PSCI_VERSION.
pub fn hvc_psci_version(iterations: u32) -> Result<Samples, Missing> {
    probe(|| hvc(PSCI_VERSION)).ok_or(Missing::Unavailable("HVC took an exception: nothing answers it"))?;
    Ok(batch(iterations, || {
        hvc(PSCI_VERSION);
    }))
}

/// SMC round trip of PSCI_VERSION (Cairn traps SMC with HCR_EL2.TSC and answers it like
/// HVC; natively, without EL3, SMC is UNDEFINED and the figure is unavailable).
pub fn smc_psci_version(iterations: u32) -> Result<Samples, Missing> {
    probe(|| smc(PSCI_VERSION))
        .ok_or(Missing::Unavailable("SMC is UNDEFINED: no EL3 and no hypervisor trapping it"))?;
    Ok(batch(iterations, || {
        smc(PSCI_VERSION);
    }))
}

/// HVC round trip of the vendor hypervisor's Revision query: the least work any exit
/// does in Cairn (natively QEMU answers NOT_SUPPORTED, still a round trip).
pub fn hvc_vendor_revision(iterations: u32) -> Result<Samples, Missing> {
    probe(|| hvc(VENDOR_HYP_REVISION)).ok_or(Missing::Unavailable("HVC took an exception: nothing answers it"))?;
    Ok(batch(iterations, || {
        hvc(VENDOR_HYP_REVISION);
    }))
}

/// A 32-bit read of GICD_TYPER: under Cairn a stage-2 fault on the distributor frame,
/// decoded and emulated at EL2 (the MMIO emulation path); natively QEMU's own GIC model.
pub fn gicd_typer_read(iterations: u32) -> Result<Samples, Missing> {
    let gic = gic::gic().ok_or(Missing::Unavailable("no GIC"))?;
    let typer = (gic.distributor.base + GICD_TYPER) as *const u32;
    Ok(batch(iterations, || {
        // SAFETY: GICD_TYPER of the distributor the device tree names; reading it has no
        // side effects. With the MMU off it is a device access, never merged or elided.
        unsafe { core::ptr::read_volatile(typer) };
    }))
}

/// The figure name of [`sgi_write`] for `version`.
pub fn sgi_write_name(version: Version) -> &'static str {
    match version {
        Version::V3 => "icc-sgi1r-write",
        Version::V2 => "gicd-sgir-write",
    }
}

/// A write to the SGI-generation register that names no target, so no SGI is generated
/// anywhere: what is measured is the trap itself and the vGIC's emulation of the write
/// (decode, lock, target walk), without any delivery or kick of another vCPU to blur it.
/// GICv3: ICC_SGI1R_EL1, which traps to EL2 from EL1 whenever HCR_EL2.IMO routes IRQs
/// there (IHI 0069H §12.2.22); GICv2: GICD_SGIR, an MMIO write to the emulated distributor. Natively both are QEMU's GIC model.
pub fn sgi_write(iterations: u32) -> Result<Samples, Missing> {
    let gic = gic::gic().ok_or(Missing::Unavailable("no GIC"))?;
    match gic.version {
        Version::V3 => {
            let value = SGI_NOBODY << SGI1R_INTID_SHIFT;
            Ok(batch(iterations, || {
                // SAFETY: an ICC_SGI1R_EL1 write with an empty target list and IRM = 0
                // generates no SGI (IHI 0069H §12.2.22).
                unsafe { asm!("msr icc_sgi1r_el1, {}", in(reg) value, options(nostack)) };
            }))
        }
        Version::V2 => {
            let sgir = (gic.distributor.base + GICD_SGIR) as *mut u32;
            let value = SGI_NOBODY as u32;
            Ok(batch(iterations, || {
                // SAFETY: GICD_SGIR of the distributor the device tree names; filter 0b00
                // with an empty CPUTargetList forwards nothing (IHI 0048B §4.3.15).
                unsafe { core::ptr::write_volatile(sgir, value) };
            }))
        }
    }
}
