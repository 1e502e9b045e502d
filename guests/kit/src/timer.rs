//! The EL1 virtual timer (Arm ARM, "The Generic Timer in AArch64 state": CNTV_CTL_EL0,
//! CNTV_CVAL_EL0). Its output is a level-sensitive PPI, INTID 27 on Arm's recommended
//! map and QEMU virt; the device tree's timer node says which.

use core::arch::asm;

use crate::time;

/// CNTV_CTL_EL0.ENABLE: the timer runs.
const CTL_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.IMASK: the condition still sets ISTATUS but does not assert the interrupt.
const CTL_IMASK: u64 = 1 << 1;
/// CNTV_CTL_EL0.ISTATUS (read-only): CNTVCT_EL0 >= CNTV_CVAL_EL0 while enabled.
const CTL_ISTATUS: u64 = 1 << 2;

/// The virtual timer's INTID when the device tree does not say (Arm BSA/SBSA).
pub const DEFAULT_VIRTUAL_TIMER_INTID: u32 = 27;

/// The `arm,armv8-timer` binding lists secure physical, non-secure physical, virtual and
/// hypervisor timer interrupts, in that order; each is three cells (type, number, flags).
const TIMER_COMPATIBLE: &[&str] = &["arm,armv8-timer"];
const VIRTUAL_TIMER_ENTRY: usize = 2;
const CELLS_PER_INTERRUPT: usize = 3;
const BYTES_PER_CELL: usize = 4;
/// GIC binding interrupt type 1 = PPI; the number is counted from the first PPI.
const GIC_BINDING_PPI: u32 = 1;

/// The virtual timer's INTID from the device tree's timer node.
pub fn virtual_timer_intid(dtb: usize) -> Option<u32> {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.ok()?;
    let interrupts = fdt.find_compatible(TIMER_COMPATIBLE)?.property("interrupts")?.value;
    let entry = interrupts.chunks_exact(CELLS_PER_INTERRUPT * BYTES_PER_CELL).nth(VIRTUAL_TIMER_ENTRY)?;
    let cell = |i: usize| {
        let bytes = &entry[i * BYTES_PER_CELL..(i + 1) * BYTES_PER_CELL];
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    };
    (cell(0) == GIC_BINDING_PPI).then(|| crate::gic::FIRST_PPI + cell(1))
}

fn write_ctl(ctl: u64) {
    // SAFETY: CNTV_CTL_EL0 only controls the virtual timer; isb makes the change take
    // effect before the caller's next check.
    unsafe { asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nostack)) };
}

/// CNTV_CTL_EL0.
pub fn ctl() -> u64 {
    let ctl: u64;
    // SAFETY: reading CNTV_CTL_EL0 has no side effects.
    unsafe { asm!("isb", "mrs {}, cntv_ctl_el0", out(reg) ctl, options(nostack)) };
    ctl
}

/// Arms the timer to fire at virtual count `deadline`, interrupt unmasked.
pub fn arm_at(deadline: u64) {
    // SAFETY: CNTV_CVAL_EL0 only sets the compare value.
    unsafe { asm!("msr cntv_cval_el0, {}", in(reg) deadline, options(nostack)) };
    write_ctl(CTL_ENABLE);
}

/// Arms the timer `us` microseconds from now; returns the deadline.
pub fn arm_after_us(us: u64) -> u64 {
    let deadline = time::now() + time::ticks(us);
    arm_at(deadline);
    deadline
}

/// Keeps the timer running but stops it asserting its interrupt (CNTV_CTL_EL0.IMASK),
/// which is how a handler quietens the level-sensitive PPI.
pub fn mask_output() {
    write_ctl(CTL_ENABLE | CTL_IMASK);
}

/// Stops the timer.
pub fn stop() {
    write_ctl(0);
}

/// The timer condition is met (CNTV_CTL_EL0.ISTATUS).
pub fn fired() -> bool {
    ctl() & CTL_ISTATUS != 0
}

/// The output is masked (CNTV_CTL_EL0.IMASK).
pub fn output_masked() -> bool {
    ctl() & CTL_IMASK != 0
}
