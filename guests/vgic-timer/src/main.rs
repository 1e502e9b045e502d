//! Test guest: the EL1 virtual timer's PPI through the (v)GIC.
//!
//! - With PSTATE.I set, the expired timer must not reach the handler, but ISR_EL1.I must
//!   show it pending.
//! - Unmasked, the handler runs exactly once (it quietens the level-sensitive PPI with
//!   CNTV_CTL_EL0.IMASK before the EOI).
//! - With the PPI disabled at the GIC (ICENABLER0), an expired timer is not delivered
//!   even unmasked; enabling it delivers it.
//! - WFI with the timer armed wakes when it expires.
#![no_std]
#![no_main]

use guestkit::gic::{self, DEFAULT_PRIORITY};
use guestkit::shared::Slot;
use guestkit::{cpu, guest_main, irq, time, timer, Checks};

const NAME: &str = "vgic-timer";
/// How far ahead the timer is armed.
const DEADLINE_US: u64 = 2_000;
/// How long the timer condition or the interrupt may take to show up.
const FIRE_TIMEOUT_US: u64 = 1_000_000;
/// How long to keep watching for a delivery that must not happen, or a second one.
const SETTLE_US: u64 = 20_000;
/// The WFI check arms the timer a little further ahead so the CPU really sleeps.
const WFI_DEADLINE_US: u64 = 10_000;
/// Handler runs the checks before the WFI check expect: after unmasking and re-enabling.
const DELIVERIES_BEFORE_WFI: u64 = 2;

/// The virtual timer's INTID, from the device tree; set before the first interrupt.
static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
/// Handler runs for the timer, and for anything else. Written only by the handler.
static FIRED: Slot<u32> = Slot::new(0);
static STRAY: Slot<u32> = Slot::new(0);

fn on_irq(intid: u32) {
    if intid == TIMER_INTID.get() {
        timer::mask_output();
        FIRED.set(FIRED.get() + 1);
    } else {
        STRAY.set(STRAY.get() + 1);
    }
}

fn fired() -> u64 {
    u64::from(FIRED.get())
}

/// Masked: the condition fires, ISR_EL1.I shows it, the handler does not run.
fn masked_timer_stays_pending(t: &mut Checks, intid: u32) {
    cpu::mask_irqs();
    gic::set_priority(intid, DEFAULT_PRIORITY);
    gic::enable(intid);
    timer::arm_after_us(DEADLINE_US);
    let expired = time::wait_until(FIRE_TIMEOUT_US, timer::fired);
    t.check("timer-condition-met", expired, format_args!("CNTV_CTL_EL0={:#x}", timer::ctl()));
    let signalled = time::wait_until(FIRE_TIMEOUT_US, cpu::irq_pending);
    t.check("isr-i-set-while-masked", signalled, format_args!("ISR_EL1.I stayed 0 with the timer expired"));
    time::delay_us(SETTLE_US);
    t.check_eq("handler-not-run-while-masked", fired(), 0);
}

/// Unmasked: taken once; the handler's IMASK drops the level, so ISR_EL1.I clears.
fn unmask_takes_it_once(t: &mut Checks) {
    cpu::unmask_irqs();
    time::wait_until(FIRE_TIMEOUT_US, || fired() >= 1);
    time::delay_us(SETTLE_US);
    cpu::mask_irqs();
    t.check_eq("handler-ran-once-after-unmask", fired(), 1);
    t.check("handler-masked-timer-output", timer::output_masked(), format_args!("CNTV_CTL_EL0={:#x}", timer::ctl()));
    t.check("isr-i-clear-after-eoi", !cpu::irq_pending(), format_args!("ISR_EL1.I still 1"));
}

/// Disabled at the GIC: not delivered even unmasked; re-enabled: delivered.
fn disabled_ppi_is_held_back(t: &mut Checks, intid: u32) {
    if t.check_ok("ppi-disable", gic::disable(intid)).is_none() {
        return;
    }
    cpu::unmask_irqs();
    timer::arm_after_us(DEADLINE_US);
    let expired = time::wait_until(FIRE_TIMEOUT_US, timer::fired);
    time::delay_us(SETTLE_US);
    t.check(
        "not-delivered-while-disabled-at-gic",
        expired && fired() == 1,
        format_args!("timer expired: {expired}, handler runs: {}", fired()),
    );
    t.check("isr-i-clear-while-disabled", !cpu::irq_pending(), format_args!("ISR_EL1.I is 1"));
    gic::enable(intid);
    time::wait_until(FIRE_TIMEOUT_US, || fired() >= 2);
    time::delay_us(SETTLE_US);
    cpu::mask_irqs();
    t.check_eq("delivered-once-after-reenable", fired(), DELIVERIES_BEFORE_WFI);
}

/// WFI with the timer armed wakes once it expires. Masked around the check and the WFI,
/// as an idle loop must be, so the interrupt cannot slip in between; WFI wakes for it
/// anyway, and the unmask takes it.
fn wfi_wakes_on_timer(t: &mut Checks) {
    let before = fired();
    // Nothing but the timer can end this WFI, so only wait when the timer interrupt has
    // already been delivered as it should; otherwise the guest would hang.
    if before != DELIVERIES_BEFORE_WFI {
        let why = format_args!(
            "skipped: the timer interrupt was delivered {before} times before, not {DELIVERIES_BEFORE_WFI}"
        );
        t.check("wfi-wakes-when-timer-expires", false, why);
        return;
    }
    t.note(format_args!("waiting in WFI for the virtual timer (a hang here means WFI never woke)"));
    let deadline = timer::arm_after_us(WFI_DEADLINE_US);
    let give_up = deadline + time::ticks(FIRE_TIMEOUT_US);
    let mut wakes = 0u32;
    loop {
        cpu::mask_irqs();
        if fired() > before || time::now() > give_up {
            break;
        }
        cpu::wfi();
        wakes += 1;
        cpu::unmask_irqs();
    }
    let woke_at = time::now();
    t.check(
        "wfi-wakes-when-timer-expires",
        fired() == before + 1 && woke_at >= deadline,
        format_args!("handler runs {} -> {}, {wakes} WFI returns, woke {} us after the deadline", before, fired(), {
            time::micros(woke_at.saturating_sub(deadline))
        }),
    );
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let gic = gic::init(dtb).and_then(|gic| gic::init_cpu().map(|()| gic));
    let Some(gic) = t.check_ok("gic-init", gic) else { t.finish_and_power_off() };
    let intid = timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID);
    TIMER_INTID.set(intid);
    t.note(format_args!("{gic}, virtual timer INTID {intid}, counter at {} Hz", time::frequency()));
    irq::set_handler(on_irq);

    masked_timer_stays_pending(&mut t, intid);
    unmask_takes_it_once(&mut t);
    disabled_ppi_is_held_back(&mut t, intid);
    wfi_wakes_on_timer(&mut t);

    timer::stop();
    t.check_eq("no-stray-interrupts", u64::from(STRAY.get()), 0);
    t.finish_and_power_off();
}

guest_main!(run);
