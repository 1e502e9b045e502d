//! Per-CPU EL2 state: identity, the trap configuration every guest runs under, the CPU's
//! features Cairn reads (physical address size, random number generator), and idle.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::asm::random::ArmRng;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTHCTL_EL2, CNTHP_CTL_EL2, CNTPCT_EL0, CNTP_CTL_EL0, CNTVOFF_EL2, CNTV_CTL_EL0,
    CPTR_EL2, HCR_EL2, ID_AA64MMFR0_EL1, ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, MDCR_EL2, MIDR_EL1, MPIDR_EL1, SCTLR_EL1,
    SP_EL0, SP_EL1, TPIDR_EL2, VMPIDR_EL2,
};

pub use super::mpidr::MPIDR_AFFINITY_MASK;
/// VMPIDR_EL2 bit 31 is RES1.
const MPIDR_RES1: u64 = 1 << 31;

/// HCR_EL2 bits (Arm ARM D24.2.48).
mod hcr {
    pub const VM: u64 = 1 << 0; // stage-2 translation on
    pub const SWIO: u64 = 1 << 1; // set/way invalidate becomes clean+invalidate
    pub const FMO: u64 = 1 << 3; // FIQs to EL2, virtual FIQs to the guest
    pub const IMO: u64 = 1 << 4; // IRQs to EL2, virtual IRQs to the guest
    pub const AMO: u64 = 1 << 5; // SErrors to EL2
    pub const FB: u64 = 1 << 9; // broadcast TLB and cache maintenance
    pub const BSU_INNER: u64 = 1 << 10; // barriers upgraded to inner shareable
    pub const TWI: u64 = 1 << 13; // trap WFI: Cairn emulates it and idles the CPU itself
    pub const TWE: u64 = 1 << 14; // trap WFE: a yield hint, answered at once
    pub const TSC: u64 = 1 << 19; // trap SMC: guests reach Cairn's PSCI, not firmware
    pub const RW: u64 = 1 << 31; // EL1 is AArch64
    pub const APK: u64 = 1 << 40; // pointer-authentication key registers not trapped
    pub const API: u64 = 1 << 41; // pointer-authentication instructions not trapped
}

/// The trap configuration for guests.
const HCR_GUEST: u64 = hcr::VM
    | hcr::SWIO
    | hcr::FMO
    | hcr::IMO
    | hcr::AMO
    | hcr::FB
    | hcr::BSU_INNER
    | hcr::TWI
    | hcr::TWE
    | hcr::TSC
    | hcr::RW
    | hcr::APK
    | hcr::API;

/// CPTR_EL2 (non-VHE, Arm ARM D24.2.32): RES1 bits 13, 9, 7:0; TZ (8) and TSM (12) are
/// RES1 unless SVE or SME is implemented; TFP (10) = 0 so guests use FP/SIMD freely.
const CPTR_RES1: u64 = (1 << 13) | (1 << 9) | 0xFF;
const CPTR_TZ: u64 = 1 << 8;
const CPTR_TSM: u64 = 1 << 12;
/// ID_AA64PFR0_EL1.SVE [35:32], ID_AA64PFR1_EL1.SME [27:24].
const PFR0_SVE_SHIFT: u64 = 32;
const PFR1_SME_SHIFT: u64 = 24;

/// CNTHCTL_EL2 (non-VHE): EL1PCTEN (0) and EL1PCEN (1) give guests the physical counter
/// and timer without traps.
const CNTHCTL_EL1_PHYSICAL_ACCESS: u64 = 0b11;

/// MDCR_EL2.HPMN [4:0] = PMCR_EL0.N gives guests every event counter.
const PMCR_N_SHIFT: u64 = 11;
const PMCR_N_MASK: u64 = 0x1F;

/// This CPU's affinity, as PSCI names it.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// The logical CPU number Cairn gave this CPU (0 is the boot CPU).
pub fn current() -> usize {
    TPIDR_EL2.get() as usize
}

pub fn set_current(cpu: usize) {
    TPIDR_EL2.set(cpu as u64);
}

fn pmcr_n() -> u64 {
    let pmcr: u64;
    // SAFETY: reading PMCR_EL0 at EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr) };
    (pmcr >> PMCR_N_SHIFT) & PMCR_N_MASK
}

/// SCTLR_EL1 at warm reset: the RES1 bits of ARMv8.0 (29, 28, 23, 22, 20, 11) with the
/// MMU, caches and alignment checks off.
const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// SCTLR_EL1.EE: exceptions (and the MMU's table walks) at EL1 are big-endian.
const SCTLR_EL1_EE: u64 = 1 << 25;

/// Puts the guest's EL1 system control in its warm-reset state, big- or little-endian (a
/// vCPU's start, or its resume from a powerdown state).
pub fn reset_el1_control(big_endian: bool) {
    SCTLR_EL1.set(SCTLR_EL1_RESET | if big_endian { SCTLR_EL1_EE } else { 0 });
}

/// The guest's EL1 virtual and physical timers as they come out of reset: disabled.
pub fn disable_el1_timers() {
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
}

/// Whether the guest on this CPU runs big-endian at EL1 (SCTLR_EL1.EE).
pub fn el1_big_endian() -> bool {
    SCTLR_EL1.get() & SCTLR_EL1_EE != 0
}

/// Configures this CPU's EL2 controls for running a guest vCPU with affinity `vmpidr`.
pub fn init_guest_traps(vmpidr: u64) {
    let sve = (ID_AA64PFR0_EL1.get() >> PFR0_SVE_SHIFT) & 0xF != 0;
    let sme = (ID_AA64PFR1_EL1.get() >> PFR1_SME_SHIFT) & 0xF != 0;
    let mut cptr = CPTR_RES1;
    if !sve {
        cptr |= CPTR_TZ;
    }
    if !sme {
        cptr |= CPTR_TSM;
    }
    CPTR_EL2.set(cptr);
    if sve {
        // ZCR_EL2.LEN = all ones: the guest may use the longest vector the CPU has.
        // SAFETY: SVE is implemented and not trapped at EL2 (CPTR_EL2.TZ = 0 above).
        unsafe { core::arch::asm!("isb", "msr S3_4_C1_C2_0, {}", in(reg) 0x1FFu64) };
    }
    CNTHCTL_EL2.set(CNTHCTL_EL1_PHYSICAL_ACCESS);
    CNTVOFF_EL2.set(0);
    MDCR_EL2.set(pmcr_n());
    // SAFETY: VPIDR_EL2 (S3_4_C0_C0_0) only changes what the guest reads as MIDR_EL1.
    unsafe { core::arch::asm!("msr S3_4_C0_C0_0, {}", in(reg) MIDR_EL1.get()) };
    VMPIDR_EL2.set(vmpidr | MPIDR_RES1);
    HCR_EL2.set(HCR_GUEST);
    barrier::isb(barrier::SY);
}

/// PARange as a number of address bits (ID_AA64MMFR0_EL1.PARange, Arm ARM D24.2.77),
/// with its field value.
pub fn physical_address_bits() -> (u32, u64) {
    let parange = ID_AA64MMFR0_EL1.get() & 0xF;
    let bits = match parange {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    };
    (bits, parange)
}

/// Whether the CPU has a random number generator (FEAT_RNG).
pub fn has_rng() -> bool {
    ArmRng::new().is_some()
}

/// RNDRSS: a random number from a freshly reseeded generator (FEAT_RNG); None without
/// FEAT_RNG or when the generator could not deliver one.
pub fn random_reseeded() -> Option<u64> {
    ArmRng::new()?.rndrss()
}

/// Waits for an event (SEV, or an interrupt) with the CPU idle, so QEMU can give the
/// host core to another vCPU.
pub fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// Waits for an interrupt with the CPU idle. Wakes even with interrupts masked at EL2.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Sets the guest's virtual counter offset (CNTVOFF_EL2): its virtual count is the physical
/// count minus this, so raising it by the time a VM was paused keeps that time out of the
/// guest's virtual clock (as KVM does for a paused VM).
pub fn set_virtual_offset(offset: u64) {
    CNTVOFF_EL2.set(offset);
}

/// The guest's SP_EL0 and SP_EL1, as this CPU holds them while its vCPU is at EL2.
pub fn el1_stack_pointers() -> (u64, u64) {
    (SP_EL0.get(), SP_EL1.get())
}

pub fn set_el1_stack_pointers(sp_el0: u64, sp_el1: u64) {
    SP_EL0.set(sp_el0);
    SP_EL1.set(sp_el1);
}

/// The physical counter (CNTPCT_EL0), which keeps counting while the guest runs.
pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

/// The counter's frequency in Hz (CNTFRQ_EL0, set by the firmware).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Arms this CPU's EL2 physical timer (CNTHP, Arm ARM D11.2.4) to interrupt at counter
/// value `deadline`: a guest spinning with its interrupts masked still exits then, since
/// physical interrupts go to EL2 (HCR_EL2.IMO).
pub fn arm_hyp_timer(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is Cairn's own timer's compare value; nothing else uses it.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", "isb", in(reg) deadline, options(nostack)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Turns this CPU's EL2 physical timer off (its interrupt is level: it stays asserted
/// while the timer is on and past its deadline).
pub fn disarm_hyp_timer() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::SET);
}
