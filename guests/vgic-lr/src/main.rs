//! Test guest: more interrupts pending at once than the GIC has list registers.
//!
//! A vGIC presents pending interrupts to the guest through a few list registers (QEMU
//! emulates four); the rest wait in the hypervisor. With IRQs masked this guest makes
//! several SGIs (to itself) pending at once, then unmasks, twice over: 3 SGIs fit in the
//! list registers, 12 overflow them. Each time it checks that
//! - all of them are pending while masked (ISPENDR0 and ISR_EL1.I) and none is taken,
//! - every one is taken exactly once, none lost, none twice,
//! - with distinct priorities, they are taken highest priority (lowest value) first.
//!
//! Then the same twelve SGIs with a hardware-backed interrupt among them: the virtual
//! timer expires first (masked, so it waits in a list register at the lowest priority),
//! then the SGIs arrive and need every register. The timer must still be taken exactly
//! once, after all of them: neither lost nor left active when its register is given to a
//! more urgent SGI.
#![no_std]
#![no_main]

use guestkit::gic::{self, SgiTarget, DEFAULT_PRIORITY};
use guestkit::shared::Slot;
use guestkit::{cpu, guest_main, irq, time, timer, Checks};

const NAME: &str = "vgic-lr";
/// SGIs there are (INTIDs 0-15).
const SGI_COUNT: usize = 16;
/// The order each scenario expects its SGIs to be taken in: INTID `ORDER[k]` gets the
/// k-th highest priority. Scrambled, so that neither INTID order nor sending order
/// passes by accident. Three fit in QEMU's four list registers; twelve do not.
const FITS_IN_LIST_REGISTERS: &[u32] = &[2, 0, 1];
const OVERFLOWS_LIST_REGISTERS: &[u32] = &[5, 11, 0, 7, 2, 9, 4, 1, 10, 3, 8, 6];
/// Priorities for the ordered runs: HIGHEST, HIGHEST + STEP, ...; multiples of 0x10 stay
/// distinct on a GIC (or virtual CPU interface) with only 4 priority bits, and all stay
/// below the priority mask.
const HIGHEST_PRIORITY: u8 = 0x20;
const PRIORITY_STEP: u8 = 0x10;

/// How long an SGI sent to self may take to become pending, or pending SGIs to be taken.
const DELIVERY_TIMEOUT_US: u64 = 500_000;
/// How long to keep watching for a late or duplicate delivery.
const SETTLE_US: u64 = 20_000;

/// The virtual timer's priority in the mixed run: below every SGI's
/// (HIGHEST_PRIORITY + 11 * PRIORITY_STEP = 0xD0), above the priority mask.
const TIMER_PRIORITY: u8 = 0xE0;

/// The virtual timer's INTID (from the device tree), set before it is enabled.
static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
static TIMER_TAKEN: Slot<u32> = Slot::new(0);
/// Written only by the boot CPU's IRQ handler; read by its main line.
static TAKEN: [Slot<u32>; SGI_COUNT] = [const { Slot::new(0) }; SGI_COUNT];
static STRAY: Slot<u32> = Slot::new(0);
/// The INTIDs in the order they were taken.
const LOG_CAPACITY: usize = 32;
static LOG: [Slot<u32>; LOG_CAPACITY] = [const { Slot::new(0) }; LOG_CAPACITY];
static LOG_LEN: Slot<usize> = Slot::new(0);

fn on_irq(intid: u32) {
    if intid == TIMER_INTID.get() {
        // Level-sensitive: quieten it before the EOI, or it is taken again at once.
        timer::mask_output();
        TIMER_TAKEN.set(TIMER_TAKEN.get() + 1);
    } else {
        match TAKEN.get(intid as usize) {
            Some(count) => count.set(count.get() + 1),
            None => STRAY.set(STRAY.get() + 1),
        }
    }
    let len = LOG_LEN.get();
    if len < LOG_CAPACITY {
        LOG[len].set(intid);
        LOG_LEN.set(len + 1);
    }
}

fn reset_records() {
    TAKEN.iter().for_each(|count| count.set(0));
    TIMER_TAKEN.set(0);
    LOG_LEN.set(0);
}

/// The log as a fixed array plus length, for printing and comparing.
fn log() -> ([u32; LOG_CAPACITY], usize) {
    let mut entries = [0; LOG_CAPACITY];
    let len = LOG_LEN.get();
    entries.iter_mut().zip(&LOG).take(len).for_each(|(entry, slot)| *entry = slot.get());
    (entries, len)
}

/// One run: `sgis` pending together while masked, then released; with `with_timer`,
/// the virtual timer expired before them, at the lowest priority.
struct Run<'a> {
    label: &'a str,
    sgis: &'a [u32],
    ordered: bool,
    with_timer: bool,
}

impl Run<'_> {
    fn priority(&self, k: usize) -> u8 {
        if self.ordered {
            HIGHEST_PRIORITY + PRIORITY_STEP * k as u8
        } else {
            DEFAULT_PRIORITY
        }
    }

    fn execute(&self, t: &mut Checks) {
        for (k, &sgi) in self.sgis.iter().enumerate() {
            gic::set_priority(sgi, self.priority(k));
        }
        reset_records();
        if self.with_timer {
            self.expire_timer(t);
        }
        self.make_pending(t);
        self.release();
        self.check_each_taken_once(t);
        if self.ordered {
            self.check_order(t);
        }
        if self.with_timer {
            timer::stop();
        }
        self.sgis.iter().for_each(|&sgi| gic::set_priority(sgi, DEFAULT_PRIORITY));
    }

    /// How many interrupts the run expects to be taken.
    fn expected_count(&self) -> usize {
        self.sgis.len() + usize::from(self.with_timer)
    }

    /// With IRQs masked, lets the virtual timer expire and waits until the CPU interface
    /// signals it (ISR_EL1.I): under a hypervisor it now sits in a list register.
    fn expire_timer(&self, t: &mut Checks) {
        cpu::mask_irqs();
        let intid = TIMER_INTID.get();
        gic::set_priority(intid, TIMER_PRIORITY);
        gic::enable(intid);
        timer::arm_at(time::now());
        let signalled = time::wait_until(DELIVERY_TIMEOUT_US, || timer::fired() && cpu::irq_pending());
        t.check(
            format_args!("{}-timer-signalled-while-masked", self.label),
            signalled,
            format_args!("CNTV_CTL_EL0 {:#x}, ISR_EL1.I {}", timer::ctl(), cpu::irq_pending()),
        );
        time::delay_us(SETTLE_US);
    }

    /// Sends every SGI to self with IRQs masked and waits until all are pending.
    fn make_pending(&self, t: &mut Checks) {
        cpu::mask_irqs();
        for &sgi in self.sgis {
            gic::send_sgi(sgi, SgiTarget::Myself);
        }
        let all_pending = || self.sgis.iter().all(|&sgi| gic::is_pending(sgi));
        let pending = time::wait_until(DELIVERY_TIMEOUT_US, all_pending);
        let mut mask = 0u32;
        self.sgis.iter().filter(|&&sgi| gic::is_pending(sgi)).for_each(|&sgi| mask |= 1 << sgi);
        t.check(
            format_args!("{}-pending-while-masked", self.label),
            pending,
            format_args!("ISPENDR0 shows SGIs {mask:#06x} pending"),
        );
        let signalled = time::wait_until(DELIVERY_TIMEOUT_US, cpu::irq_pending);
        t.check(format_args!("{}-isr-i-while-masked", self.label), signalled, format_args!("ISR_EL1.I stayed 0"));
        time::delay_us(SETTLE_US);
        let (_, taken) = log();
        t.check(
            format_args!("{}-none-taken-while-masked", self.label),
            taken == 0,
            format_args!("{taken} taken with PSTATE.I set"),
        );
    }

    /// Unmasks until every SGI was taken (or the timeout), and a little longer for
    /// duplicates, then masks again.
    fn release(&self) {
        cpu::unmask_irqs();
        time::wait_until(DELIVERY_TIMEOUT_US, || LOG_LEN.get() >= self.expected_count());
        time::delay_us(SETTLE_US);
        cpu::mask_irqs();
    }

    fn check_each_taken_once(&self, t: &mut Checks) {
        let counts: [u32; SGI_COUNT] = core::array::from_fn(|i| TAKEN[i].get());
        let expected: [u32; SGI_COUNT] = core::array::from_fn(|i| u32::from(self.sgis.contains(&(i as u32))));
        t.check(
            format_args!("{}-each-taken-once", self.label),
            counts == expected,
            format_args!("times taken per SGI 0-15: {counts:?}, expected {expected:?}"),
        );
        if self.with_timer {
            let taken = TIMER_TAKEN.get();
            t.check(
                format_args!("{}-timer-taken-once", self.label),
                taken == 1,
                format_args!("the timer interrupt taken {taken} times"),
            );
        }
    }

    fn check_order(&self, t: &mut Checks) {
        let (entries, len) = log();
        let mut expected = [0u32; LOG_CAPACITY];
        expected[..self.sgis.len()].copy_from_slice(self.sgis);
        if self.with_timer {
            expected[self.sgis.len()] = TIMER_INTID.get();
        }
        let expected = &expected[..self.expected_count()];
        t.check(
            format_args!("{}-taken-by-priority", self.label),
            &entries[..len] == expected,
            format_args!("taken {:?}, expected {expected:?} (highest priority first)", &entries[..len]),
        );
    }
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let gic = gic::init(dtb).and_then(|gic| gic::init_cpu().map(|()| gic));
    let Some(gic) = t.check_ok("gic-init", gic) else { t.finish_and_power_off() };
    t.note(format_args!("{gic}"));
    irq::set_handler(on_irq);
    TIMER_INTID.set(timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID));
    for sgi in 0..SGI_COUNT as u32 {
        gic::enable(sgi);
    }

    for (label, sgis) in [("fits-3", FITS_IN_LIST_REGISTERS), ("overflows-12", OVERFLOWS_LIST_REGISTERS)] {
        Run { label, sgis, ordered: false, with_timer: false }.execute(&mut t);
        let label = if sgis.len() == FITS_IN_LIST_REGISTERS.len() { "fits-3-ordered" } else { "overflows-12-ordered" };
        Run { label, sgis, ordered: true, with_timer: false }.execute(&mut t);
    }
    let sgis = OVERFLOWS_LIST_REGISTERS;
    Run { label: "timer-behind-12", sgis, ordered: true, with_timer: true }.execute(&mut t);

    t.check_eq("no-stray-interrupts", u64::from(STRAY.get()), 0);
    t.finish_and_power_off();
}

guest_main!(run);
