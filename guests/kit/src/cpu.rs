//! The calling CPU: its logical index and affinity, interrupt masking, pending-interrupt
//! status, waiting, and barriers.

use core::arch::asm;

/// MPIDR_EL1 affinity fields Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0]
/// (Arm ARM, MPIDR_EL1); PSCI and the device tree name CPUs by exactly these bits.
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;
/// DAIF.I, the IRQ mask bit as `mrs daif` shows it (Arm ARM, DAIF).
const DAIF_I: u64 = 1 << 7;
/// ISR_EL1.I: an IRQ (virtual IRQ when HCR_EL2.IMO routes IRQs to EL2) is pending,
/// whether or not PSTATE.I masks it (Arm ARM, ISR_EL1).
const ISR_I: u64 = 1 << 7;

/// This CPU's logical index: 0 for the boot CPU, the PSCI context id for the others.
/// entry.S keeps it in TPIDR_EL1, which nothing else in a test guest uses.
pub fn index() -> usize {
    let index: usize;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) index, options(nomem, nostack, preserves_flags)) };
    index
}

/// This CPU's MPIDR_EL1 affinity.
pub fn mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags)) };
    mpidr & MPIDR_AFFINITY_MASK
}

/// Sets PSTATE.I: IRQs stay pending instead of being taken.
pub fn mask_irqs() {
    // SAFETY: masking IRQs only delays interrupt handling. No `nomem`: the compiler must
    // not move memory accesses across the change.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Clears PSTATE.I. The `isb` makes sure an IRQ already pending is taken here, before the
/// caller's next instruction, so "unmask, then look at what the handler did" is exact.
pub fn unmask_irqs() {
    // SAFETY: the kit's IRQ vector handles whatever is taken; see mask_irqs for `nomem`.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
}

pub fn irqs_masked() -> bool {
    let daif: u64;
    // SAFETY: reading DAIF has no side effects.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    daif & DAIF_I != 0
}

/// Whether an IRQ is pending at this CPU (ISR_EL1.I), masked or not.
pub fn irq_pending() -> bool {
    let isr: u64;
    // SAFETY: reading ISR_EL1 has no side effects.
    unsafe { asm!("isb", "mrs {}, isr_el1", out(reg) isr, options(nostack, preserves_flags)) };
    isr & ISR_I != 0
}

/// Waits for an interrupt. WFI also wakes for an IRQ that PSTATE.I masks (Arm ARM, "Wait
/// for Interrupt": WFI wake-up events), and may wake for no reason at all. The `dsb`
/// completes earlier accesses first, as Linux's cpu_do_idle does.
pub fn wfi() {
    // SAFETY: WFI only suspends execution; see mask_irqs for `nomem`.
    unsafe { asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
}

/// A full-system data synchronization barrier: every earlier memory access completes
/// before any later one starts.
pub fn dsb_sy() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Context synchronization: earlier system-register writes take effect for what follows.
pub fn isb() {
    // SAFETY: as for dsb_sy.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Parks the CPU for good with interrupts masked.
pub fn park() -> ! {
    mask_irqs();
    loop {
        // SAFETY: waiting for an event has no side effects.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}
