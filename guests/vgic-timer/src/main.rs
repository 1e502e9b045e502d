//! Test guest: the EL1 virtual timer's PPI through the (v)GIC.
//!
//! - With PSTATE.I set, the expired timer must not reach the handler, but ISR_EL1.I must
//!   show it pending.
//! - Unmasked, the handler runs exactly once (it quietens the level-sensitive PPI with
//!   CNTV_CTL_EL0.IMASK before the EOI).
//! - With the PPI disabled at the GIC (ICENABLER0), an expired timer is not delivered
//!   even unmasked; enabling it delivers it.
//! - WFI with the timer armed wakes when it expires.
//! - With PSTATE.I set, an expired timer ends WFI and PSCI CPU_SUSPEND standby at once;
//!   re-armed in the future, its level-sensitive line drops and the interrupt is no
//!   longer pending (IHI 0069H §4.1, IHI 0048B §1.4.2), so a standby lasts until the new
//!   deadline, and the interrupt is taken once unmasked.
#![no_std]
#![no_main]

use core::fmt;

use guestkit::gic::{self, DEFAULT_PRIORITY};
use guestkit::shared::Slot;
use guestkit::spec::psci;
use guestkit::{cpu, guest_main, irq, smccc, time, timer, Checks};

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
/// How far ahead the lowered-line checks re-arm the timer: far enough that a wait ended
/// by the earlier expiry cannot pass for one ended by the new deadline.
const REARM_US: u64 = 20_000;

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

/// How the guest waits for an interrupt.
#[derive(Clone, Copy)]
enum Wait {
    Wfi,
    /// PSCI CPU_SUSPEND to a standby state, which returns when an interrupt is pending,
    /// masked or not, as WFI does (DEN0022 §5.4).
    Standby,
}

impl Wait {
    /// Waits; returns the PSCI status (WFI has none: SUCCESS).
    fn wait(self) -> i64 {
        match self {
            Wait::Wfi => {
                cpu::wfi();
                psci::SUCCESS
            }
            Wait::Standby => {
                let fid = u64::from(psci::CPU_SUSPEND_64);
                smccc::hvc0(fid, psci::POWER_STATE_STANDBY, 0, 0) as i64
            }
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wait::Wfi => "wfi",
            Wait::Standby => "cpu-suspend-standby",
        })
    }
}

/// With PSTATE.I set throughout, the timer expires at once: WFI and CPU_SUSPEND standby
/// each end, as a masked pending interrupt ends a wait. Re-armed `REARM_US` ahead, the
/// timer's level-sensitive line drops and its interrupt is no longer pending (IHI 0069H
/// §4.1, IHI 0048B §1.4.2): a standby now lasts until the new deadline, and unmasking
/// takes the interrupt once.
///
/// A WFI in between is only reported. Under Cairn the expiry sits in a list register as
/// a forwarded interrupt, and a WFI with a virtual interrupt pending completes without
/// trapping (Arm ARM, HCR_EL2.TWI: only a WFI that would enter a low-power state traps),
/// so Cairn cannot retire the entry before that WFI ends; it does at the standby, a call
/// it always sees. Natively the WFI lasts until the deadline as well.
fn lowered_line_does_not_wake(t: &mut Checks) {
    cpu::mask_irqs();
    let before = fired();
    if !expire_while_masked(t) {
        return;
    }
    t.note(format_args!("waits with the timer expired, then re-armed (a hang here means a wait never ended)"));
    for how in [Wait::Wfi, Wait::Standby] {
        let status = how.wait();
        t.check(
            format_args!("{how}-ends-for-masked-expired-timer"),
            status == psci::SUCCESS,
            format_args!("returned {status}"),
        );
    }
    let deadline = timer::arm_after_us(REARM_US);
    report_early_wfi(t, deadline);
    standby_lasts_until(t, deadline);
    cpu::unmask_irqs();
    time::wait_until(FIRE_TIMEOUT_US, || fired() > before);
    time::delay_us(SETTLE_US);
    cpu::mask_irqs();
    t.check_eq("rearmed-timer-taken-once", fired() - before, 1);
    timer::stop();
}

/// Arms the timer to expire now and waits for its interrupt to pend (ISR_EL1.I): nothing
/// else can end the waits that follow. Returns false, with a failed check, if it never
/// does.
fn expire_while_masked(t: &mut Checks) -> bool {
    timer::arm_at(time::now());
    let pending = time::wait_until(FIRE_TIMEOUT_US, cpu::irq_pending);
    if !pending {
        t.check("waits-end-for-masked-expired-timer", false, format_args!("skipped: ISR_EL1.I stayed 0"));
        timer::stop();
    }
    pending
}

/// A WFI before `deadline`: notes how early it ended, if it did.
fn report_early_wfi(t: &mut Checks, deadline: u64) {
    Wait::Wfi.wait();
    let early = deadline.saturating_sub(time::now());
    if early > 0 {
        t.note(format_args!("wfi ended {} us before the re-armed deadline, without a trap", time::micros(early)));
    }
}

/// A CPU_SUSPEND standby with nothing pending must last until `deadline`.
fn standby_lasts_until(t: &mut Checks, deadline: u64) {
    let status = Wait::Standby.wait();
    let woke_at = time::now();
    t.check(
        format_args!("{}-waits-for-rearmed-timer", Wait::Standby),
        woke_at >= deadline && status == psci::SUCCESS,
        format_args!(
            "ended (status {status}) {} us before the new deadline: the lowered interrupt still pending",
            time::micros(deadline.saturating_sub(woke_at))
        ),
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
    lowered_line_does_not_wake(&mut t);

    timer::stop();
    t.check_eq("no-stray-interrupts", u64::from(STRAY.get()), 0);
    t.finish_and_power_off();
}

guest_main!(run);
