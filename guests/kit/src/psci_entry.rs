//! The entry PSCI sends a test guest's secondary CPUs to (CPU_ON, or the resume from a
//! powerdown suspend), for guests that check how CPUs arrive: DEN0022 §6.4 fixes EL1h
//! (CurrentEL = 1, SPSel = 1) with D, A, I and F masked and x0 = context_id. The context
//! id's low byte is the logical CPU index (1..MAX_CPUS-1); the entry takes that CPU's
//! stack, sets TPIDR_EL1 (the kit's CPU index) and VBAR_EL1 (the boot CPU's, published by
//! [`share_vectors`]), then calls the guest's
//! `secondary_main(context, daif, current_el, spsel)` with what it found on entry. Any
//! other index parks. A guest names its entry and its main with
//! [`psci_secondary_entry!`](crate::psci_secondary_entry).

use crate::shared::MAX_CPUS;

/// DAIF with D, A, I and F all set, as `mrs daif` shows it (Arm ARM, DAIF).
pub const DAIF_ALL_MASKED: u64 = 0xF << 6;
/// CurrentEL.EL [3:2] for EL1.
pub const CURRENT_EL_EL1: u64 = 1 << 2;
/// SPSel = 1: SP_ELx, the "h" of EL1h.
pub const SPSEL_ELX: u64 = 1;

/// The logical CPU index in a context id.
pub const CONTEXT_INDEX_MASK: u64 = 0xFF;
/// Secondary CPUs only wait for orders, count, make calls and take the odd interrupt.
pub const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
pub struct Stack([u8; STACK_SIZE]);

/// Logical CPU n (1..MAX_CPUS) runs on STACKS[n - 1], whose top is STACKS + n * STACK_SIZE.
/// Every entry starts again at the top: nothing survives a CPU_OFF or a powerdown.
pub static mut STACKS: [Stack; MAX_CPUS - 1] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS - 1];

/// The kit's EL1 vector table, for secondaries to install.
pub static mut VECTORS: u64 = 0;

/// Publishes this CPU's VBAR_EL1 for the secondaries. Call on the boot CPU before
/// starting any.
pub fn share_vectors() {
    let vbar: u64;
    // SAFETY: reading VBAR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack, preserves_flags)) };
    // SAFETY: only the boot CPU writes VECTORS, before any secondary runs and reads it.
    unsafe { core::ptr::write_volatile(&raw mut VECTORS, vbar) };
    crate::cpu::dsb_sy();
}

/// Emits the entry as the global symbol `$name`, calling `$main`, an
/// `extern "C" fn(context: u64, daif: u64, current_el: u64, spsel: u64) -> !`.
#[macro_export]
macro_rules! psci_secondary_entry {
    ($name:literal, $main:path) => {
        core::arch::global_asm!(
            concat!("    .section .text.", $name, ", \"ax\"\n    .balign 4\n    .global ", $name, "\n", $name, ":"),
            "    mrs     x1, daif",
            "    mrs     x2, CurrentEL",
            "    mrs     x3, SPSel",
            "    and     x9, x0, #{INDEX_MASK}",
            "    cbz     x9, 9f",
            "    cmp     x9, #{MAX_CPUS}",
            "    b.hs    9f",
            "    adrp    x10, {STACKS}",
            "    add     x10, x10, :lo12:{STACKS}",
            "    mov     x11, #{STACK_SIZE}",
            "    madd    x10, x9, x11, x10",
            "    mov     sp, x10",
            "    msr     tpidr_el1, x9",
            "    adrp    x10, {VECTORS}",
            "    add     x10, x10, :lo12:{VECTORS}",
            "    ldr     x10, [x10]",
            "    msr     vbar_el1, x10",
            "    isb",
            "    bl      {SECONDARY_MAIN}",
            "9:  wfe",
            "    b       9b",
            INDEX_MASK = const $crate::psci_entry::CONTEXT_INDEX_MASK,
            MAX_CPUS = const $crate::shared::MAX_CPUS,
            STACKS = sym $crate::psci_entry::STACKS,
            STACK_SIZE = const $crate::psci_entry::STACK_SIZE,
            VECTORS = sym $crate::psci_entry::VECTORS,
            SECONDARY_MAIN = sym $main,
        );
    };
}
