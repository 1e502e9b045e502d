//! Cairn's own EL2 stage-1 MMU and the guests' stage-2 translation controls, and the
//! cache maintenance that goes with writing memory a guest runs from.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2, VTCR_EL2, VTTBR_EL2};

use super::cpu::physical_address_bits;
use super::memattr::MAIR_EL2_VALUE;

/// Cairn's EL2 virtual address space: 48 bits, identity-mapped.
pub const EL2_VA_BITS: u32 = 48;
/// With the 4 KiB granule and no FEAT_LPA2, output addresses stop at 48 bits, so PS is
/// clamped to PARange 0b0101.
const MAX_PS_FIELD: u64 = 5;
const MAX_OUTPUT_BITS: u32 = 48;

/// TCR_EL2 / VTCR_EL2 shared fields (Arm ARM D24.2.182, D24.2.205).
const IRGN0_WBWA: u64 = 1 << 8;
const ORGN0_WBWA: u64 = 1 << 10;
const SH0_INNER: u64 = 0b11 << 12;
const TG0_4K: u64 = 0 << 14;
const PS_SHIFT: u64 = 16;
/// TCR_EL2 RES1 bits 31 and 23 (non-VHE).
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);
/// VTCR_EL2 RES1 bit 31; SL0 [7:6]: 2 starts the walk at level 0, 1 at level 1 (4 KiB).
const VTCR_EL2_RES1: u64 = 1 << 31;
const VTCR_SL0_SHIFT: u64 = 6;
/// VTTBR_EL2.VMID [55:48].
const VTTBR_VMID_SHIFT: u64 = 48;

/// SCTLR_EL2 (non-VHE, Arm ARM D24.2.163): RES1 bits, then M, C, SA, I.
const SCTLR_EL2_RES1: u64 =
    (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 18) | (1 << 16) | (1 << 11) | (1 << 5) | (1 << 4);
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_SA: u64 = 1 << 3;
const SCTLR_I: u64 = 1 << 12;

fn ps_field() -> u64 {
    physical_address_bits().1.min(MAX_PS_FIELD)
}

/// The IPA size Cairn gives guests: the CPU's physical address size, capped at 48 bits.
pub fn ipa_bits() -> u32 {
    physical_address_bits().0.min(MAX_OUTPUT_BITS)
}

/// Turns on the EL2 MMU and caches with the identity map rooted at `root`.
///
/// # Safety
/// `root` must be a complete identity map of everything Cairn touches from now on: its
/// image, stacks, heap, the device tree copy and the devices it drives.
pub unsafe fn enable_el2(root: u64) {
    MAIR_EL2.set(MAIR_EL2_VALUE);
    let t0sz = 64 - u64::from(EL2_VA_BITS);
    TCR_EL2.set(TCR_EL2_RES1 | t0sz | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | TG0_4K | (ps_field() << PS_SHIFT));
    TTBR0_EL2.set(root);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating EL2 TLB entries only drops stale translations.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb") };
    SCTLR_EL2.set(SCTLR_EL2_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_I);
    barrier::isb(barrier::SY);
}

/// Points stage-2 translation at a VM's tables. `start_level` is the level its root is at.
pub fn load_stage2(root: u64, start_level: usize, vmid: u16) {
    let t0sz = 64 - u64::from(ipa_bits());
    let sl0 = if start_level == 0 { 2 } else { 1 };
    VTCR_EL2.set(
        VTCR_EL2_RES1
            | t0sz
            | (sl0 << VTCR_SL0_SHIFT)
            | IRGN0_WBWA
            | ORGN0_WBWA
            | SH0_INNER
            | TG0_4K
            | (ps_field() << PS_SHIFT),
    );
    VTTBR_EL2.set(root | (u64::from(vmid) << VTTBR_VMID_SHIFT));
    barrier::isb(barrier::SY);
    // SAFETY: drops stage-1+2 TLB entries of the VMID just loaded; nothing depends on them.
    unsafe { core::arch::asm!("tlbi vmalls12e1is", "dsb ish", "isb") };
}

/// Cleans `[base, base + size)` to the point of coherency, so a guest running with its MMU
/// and caches off sees what Cairn wrote through its cacheable mapping.
pub fn clean_dcache_range(base: u64, size: u64) {
    for_each_line(base, size, |addr| {
        // SAFETY: cleaning a cache line by address has no effect on memory contents.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr) };
    });
}

/// Cleans and invalidates `[base, base + size)` to the point of coherency, so Cairn's
/// cacheable reads see what a guest running with its caches off wrote to memory.
pub fn clean_invalidate_dcache_range(base: u64, size: u64) {
    for_each_line(base, size, |addr| {
        // SAFETY: cleaning and invalidating a line by address writes back anything dirty
        // first, so memory contents are unchanged.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) addr) };
    });
}

/// Runs a cache maintenance operation on each line of `[base, base + size)`, then waits
/// for them all to complete.
fn for_each_line(base: u64, size: u64, op: impl Fn(u64)) {
    const LINE: u64 = 64;
    let mut addr = base & !(LINE - 1);
    while addr < base + size {
        op(addr);
        addr += LINE;
    }
    barrier::dsb(barrier::SY);
}

/// Invalidates every instruction cache in the inner shareable domain: guest code may have
/// changed under them.
pub fn invalidate_instruction_caches() {
    // SAFETY: invalidating instruction caches has no effect beyond refetching.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb") };
}
