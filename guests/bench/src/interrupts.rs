//! Figures of interrupts on vCPU 0: how long the virtual timer's interrupt takes from
//! expiry to the guest's handler, and what the guest's end-of-interrupt write costs.

use core::arch::asm;

use guestkit::gic::{self, Version};
use guestkit::shared::{PerCpu, Slot};
use guestkit::{cpu, time, timer};

use crate::figure::{Failure, Missing, Samples};
use crate::wait;

/// How long one timer interrupt may take to show up.
const FIRE_TIMEOUT_US: u64 = 100_000;
/// Counter-read pairs timed to find what one read adds to a single-operation sample.
const OVERHEAD_SAMPLES: u32 = 16;

// GICv3 CPU interface, Group 1 (IHI 0069H §12.2): ICC_IAR1_EL1.INTID is [23:0]; writing
// the INTID back to ICC_EOIR1_EL1 drops the priority and, with ICC_CTLR_EL1.EOImode = 0
// (as the kit sets it), deactivates the interrupt.
const ICC_IAR1_INTID_MASK: u64 = 0xFF_FFFF;
// GICv2 CPU interface (IHI 0048B §4.4): GICC_IAR [9:0] InterruptID (the CPUID bits [12:10]
// are 0 for anything but an SGI); GICC_EOIR takes the GICC_IAR value back.
const GICC_IAR: usize = 0x0C;
const GICC_EOIR: usize = 0x10;
const GICC_IAR_INTID_MASK: u32 = 0x3FF;

/// The virtual timer's INTID, from the device tree; set before the first interrupt.
pub static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
/// Written by vCPU 0's handler: timer interrupts taken, and the count when the last began.
static TIMER_TAKEN: Slot<u32> = Slot::new(0);
static TIMER_HANDLED_AT: Slot<u64> = Slot::new(0);
/// Interrupts each vCPU took that no figure expected.
pub static STRAY: PerCpu<u32> = PerCpu::new(0);

/// vCPU 0's IRQ handler. The counter is read first: that is when "the handler runs".
pub fn on_irq(intid: u32) {
    let now = time::now();
    if intid == TIMER_INTID.get() {
        timer::mask_output();
        TIMER_HANDLED_AT.set(now);
        TIMER_TAKEN.set(TIMER_TAKEN.get() + 1);
    } else {
        STRAY.set_mine(STRAY.mine() + 1);
    }
}

/// Virtual timer expiry to the guest handler's first counter read: CNTV_CVAL_EL0 is set
/// `lead_us` ahead, vCPU 0 spins with IRQs unmasked, and the handler records the counter.
/// Under Cairn the timer's PPI is taken at EL2 and injected as a virtual interrupt (list
/// register, HW bit); natively QEMU's GIC signals it directly. The figure includes the
/// guest's own vector and the kit's acknowledge (ICC_IAR1_EL1 / GICC_IAR).
pub fn timer_latency(iterations: u32, lead_us: u64) -> Result<Samples, Missing> {
    let lead = time::ticks(lead_us).max(1);
    let mut samples = Samples::one_by_one();
    cpu::unmask_irqs();
    let mut result = Ok(());
    for i in 0..iterations {
        let before = TIMER_TAKEN.get();
        let deadline = time::now() + lead;
        timer::arm_at(deadline);
        if !wait::spin(FIRE_TIMEOUT_US, || TIMER_TAKEN.get() != before) {
            result = Err(Failure::TimedOut { what: "the timer interrupt", iteration: i });
            break;
        }
        samples.add(TIMER_HANDLED_AT.get().wrapping_sub(deadline));
    }
    cpu::mask_irqs();
    timer::stop();
    result.map(|()| samples).map_err(Missing::from)
}

/// What one counter read (`isb; mrs cntvct_el0`) adds to a sample taken between two.
fn counter_read_overhead() -> u64 {
    (0..OVERHEAD_SAMPLES)
        .map(|_| {
            let start = time::now();
            time::now().wrapping_sub(start)
        })
        .min()
        .unwrap_or(0)
}

/// The CPU interface's acknowledge register: the INTID, and the raw value EOI takes back.
fn acknowledge(version: Version, gicc: usize) -> (u32, u64) {
    match version {
        Version::V3 => {
            let iar: u64;
            // SAFETY: reading ICC_IAR1_EL1 acknowledges the pending interrupt, which the
            // caller ends; under Cairn it is the virtual CPU interface's ICV_IAR1_EL1.
            unsafe { asm!("mrs {}, icc_iar1_el1", "dsb sy", out(reg) iar, options(nostack)) };
            ((iar & ICC_IAR1_INTID_MASK) as u32, iar)
        }
        Version::V2 => {
            // SAFETY: GICC_IAR of this CPU's interface (from the device tree; under Cairn
            // the GICV frame mapped in its place); reading acknowledges, the caller ends it.
            let iar = unsafe { core::ptr::read_volatile((gicc + GICC_IAR) as *const u32) };
            (iar & GICC_IAR_INTID_MASK, u64::from(iar))
        }
    }
}

/// Ends an acknowledged interrupt as Linux's GIC drivers do: ICC_EOIR1_EL1 then `isb`
/// (gic_write_eoir), or a GICC_EOIR store (gic_eoi_irq).
#[inline(always)]
fn end_of_interrupt(version: Version, gicc: usize, raw: u64) {
    match version {
        // SAFETY: ends the interrupt just acknowledged with the value ICC_IAR1_EL1 gave.
        Version::V3 => unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) raw, options(nostack)) },
        // SAFETY: GICC_EOIR of this CPU's interface, with the value GICC_IAR gave.
        Version::V2 => unsafe { core::ptr::write_volatile((gicc + GICC_EOIR) as *mut u32, raw as u32) },
    }
}

/// The guest's EOI of the virtual timer interrupt. The handler is the measurement loop
/// itself, with IRQs masked: arm the timer to expire at once, wait for ISR_EL1.I,
/// acknowledge, quieten the timer (CNTV_CTL_EL0.IMASK), then time the EOI write alone,
/// minus what a counter read adds. Under Cairn the write goes to the virtual CPU interface
/// (no exit expected; with the HW bit it also deactivates the physical PPI).
pub fn timer_eoi(iterations: u32) -> Result<Samples, Missing> {
    let gic = gic::gic().ok_or(Missing::Unavailable("no GIC"))?;
    let gicc = gic.cpu_interface.base;
    let expected = TIMER_INTID.get();
    cpu::mask_irqs();
    let overhead = counter_read_overhead();
    let mut samples = Samples::one_by_one();
    let mut result = Ok(());
    'iterations: for i in 0..iterations {
        timer::arm_at(time::now());
        let give_up = time::now() + time::ticks(FIRE_TIMEOUT_US);
        let raw = loop {
            if !cpu::irq_pending() {
                if time::now() > give_up {
                    result = Err(Failure::TimedOut { what: "ISR_EL1.I with the timer expired", iteration: i });
                    break 'iterations;
                }
                continue;
            }
            let (intid, raw) = acknowledge(gic.version, gicc);
            if intid >= gic::FIRST_SPECIAL_INTID {
                continue; // spurious: nothing acknowledged, nothing to end; look again
            }
            if intid != expected {
                end_of_interrupt(gic.version, gicc, raw);
                result = Err(Failure::WrongInterrupt { intid, expected });
                break 'iterations;
            }
            break raw;
        };
        timer::mask_output();
        let start = time::now();
        end_of_interrupt(gic.version, gicc, raw);
        let end = time::now();
        samples.add(end.wrapping_sub(start).saturating_sub(overhead));
    }
    timer::stop();
    result.map(|()| samples).map_err(Missing::from)
}
