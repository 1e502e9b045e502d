//! CPU_SUSPEND (DEN0022 §5.4):
//! - standby on the boot CPU with IRQs masked (PSTATE.I set) returns SUCCESS once the
//!   virtual timer fires: a masked interrupt still wakes the core, as it wakes WFI
//!   (guest-firmware-interfaces.md §4, §8.16), and stays pending until unmasked;
//! - powerdown on each secondary resumes at the entry point with x0 = the context id, in
//!   the state CPU_ON gives (§5.4.3, §6.4), and the core counts as ON while suspended.
//!
//! A hang here means a suspend never woke: the test harness times out on it.

use guestkit::shared::{PerCpu, Slot};
use guestkit::smp::Cpus;
use guestkit::{cpu, gic, irq, time, timer};

use crate::calls::{self, fid, Code, Conduit, AFFINITY_OFF, AFFINITY_ON, SUCCESS};
use crate::entry::{self, Context, Job};
use crate::jobs::{self, LAST_CONTEXT};
use crate::report::Report;

/// How far ahead the wake-up timer is armed for a standby.
const STANDBY_WAKE_US: u64 = 5_000;
/// Standby rounds per function ID and conduit.
const STANDBY_ROUNDS: usize = 3;
/// Standby calls one round may make: a wake-up may be spurious, so the call is repeated
/// until the timer's deadline has passed.
const MAX_STANDBY_CALLS: u32 = 1_000;
/// How far ahead a secondary arms its timer before a powerdown: long enough for the boot
/// CPU to ask AFFINITY_INFO while it is down.
const POWERDOWN_WAKE_US: u64 = 50_000;
/// How long a started CPU may take to suspend, and a suspended one to resume and turn off.
const TIMEOUT_US: u64 = 5_000_000;
/// How long the timer interrupt may take to be taken once unmasked.
const TAKE_TIMEOUT_US: u64 = 1_000_000;

pub static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
/// Timer interrupts each CPU's handler took, and others it took.
static FIRED: PerCpu<u32> = PerCpu::new(0);
static STRAY: PerCpu<u32> = PerCpu::new(0);

// Written by each suspending secondary for itself.
/// The context it is about to suspend with.
static SUSPENDING: PerCpu<u64> = PerCpu::new(0);
/// CPU_SUSPEND calls that returned instead of powering down, and the last x0.
static SUSPEND_RETURNS: PerCpu<u64> = PerCpu::new(0);
static SUSPEND_RETURN_X0: PerCpu<u64> = PerCpu::new(0);
/// Secondaries whose GIC interface would not come up (so nothing could wake them).
static GIC_FAILED: PerCpu<bool> = PerCpu::new(false);

fn on_irq(intid: u32) {
    if intid == TIMER_INTID.get() {
        // Quieten the level-sensitive PPI before the EOI.
        timer::mask_output();
        FIRED.set_mine(FIRED.mine() + 1);
    } else {
        STRAY.set_mine(STRAY.mine() + 1);
    }
}

/// Brings up this CPU's GIC interface with the timer PPI enabled.
fn enable_timer_interrupt() -> Result<(), gic::GicError> {
    gic::init_cpu()?;
    irq::set_handler(on_irq);
    gic::set_priority(TIMER_INTID.get(), gic::DEFAULT_PRIORITY);
    gic::enable(TIMER_INTID.get());
    Ok(())
}

/// Standby on the boot CPU through every form and conduit.
pub fn standby(r: &mut Report) {
    if let Err(e) = enable_timer_interrupt() {
        r.check("standby-gic-cpu-interface", false, format_args!("{e}"));
        return;
    }
    for (fid, conduit) in [(fid::CPU_SUSPEND_64, Conduit::Hvc), (fid::CPU_SUSPEND_32, Conduit::Smc)] {
        let (mut statuses_ok, mut pending_ok, mut masked_ok, mut taken_ok) = (true, true, true, true);
        let (mut calls, mut last) = (0, SUCCESS as u64);
        for _ in 0..STANDBY_ROUNDS {
            cpu::mask_irqs();
            let before = FIRED.mine();
            let deadline = timer::arm_after_us(STANDBY_WAKE_US);
            let mut made = 0;
            while made < MAX_STANDBY_CALLS {
                made += 1;
                last = conduit.call3(fid, calls::POWER_STATE_STANDBY, 0, 0);
                statuses_ok &= last == SUCCESS as u64;
                if time::now() >= deadline || last != SUCCESS as u64 {
                    break;
                }
            }
            calls += made;
            // The timer's interrupt woke the core but PSTATE.I kept it from being taken.
            pending_ok &= cpu::irq_pending();
            masked_ok &= FIRED.mine() == before;
            cpu::unmask_irqs();
            taken_ok &= time::wait_until(TAKE_TIMEOUT_US, || FIRED.mine() > before);
            cpu::mask_irqs();
            timer::stop();
        }
        let form = format_args!("{conduit}-{fid:#x}");
        r.check(
            format_args!("cpu-suspend-standby-irqs-masked-returns-success-{form}"),
            statuses_ok,
            format_args!("a call returned {} ({calls} calls in {STANDBY_ROUNDS} rounds)", Code(last)),
        );
        r.check(
            format_args!("cpu-suspend-standby-woken-by-the-masked-timer-interrupt-{form}"),
            pending_ok && masked_ok,
            format_args!(
                "IRQ pending at the core after the wake-up: {pending_ok}; not taken while masked: {masked_ok}"
            ),
        );
        r.check(
            format_args!("cpu-suspend-standby-timer-interrupt-taken-once-unmasked-{form}"),
            taken_ok,
            format_args!("the timer interrupt was not taken within {TAKE_TIMEOUT_US} us of unmasking"),
        );
    }
    r.check_eq("cpu-suspend-standby-no-stray-interrupts", u64::from(STRAY.mine()), 0);
}

/// A secondary's Suspend job: powerdown with the timer armed, to resume as `Resumed`.
pub fn powerdown_job(ctx: Context) -> ! {
    if enable_timer_interrupt().is_err() {
        GIC_FAILED.set_mine(true);
        jobs::off();
    }
    cpu::mask_irqs();
    let resume = Context::new(ctx.index, Job::Resumed, ctx.tag).encode();
    SUSPENDING.set_mine(ctx.encode());
    timer::arm_after_us(POWERDOWN_WAKE_US);
    let x0 = Conduit::Hvc.call3(fid::CPU_SUSPEND_64, calls::POWER_STATE_POWERDOWN, entry::secondary_entry(), resume);
    SUSPEND_RETURN_X0.set_mine(x0);
    SUSPEND_RETURNS.set_mine(SUSPEND_RETURNS.mine() + 1);
    timer::stop();
    jobs::off()
}

/// Powerdown on each secondary in turn.
pub fn powerdown(r: &mut Report, cpus: &Cpus) {
    for k in cpus.secondaries() {
        let mpidr = cpus.mpidr(k);
        let tag = k as u64;
        let ctx = Context::new(k, Job::Suspend, tag).encode();
        let resumed = Context::new(k, Job::Resumed, tag).encode();
        let entries = jobs::ENTRIES.get(k);
        let x0 = calls::cpu_on(mpidr, entry::secondary_entry(), ctx);
        if x0 != SUCCESS {
            r.check(format_args!("cpu{k}-powerdown-started"), false, format_args!("CPU_ON returned {}", Code::of(x0)));
            continue;
        }
        let suspending = time::wait_until(TIMEOUT_US, || SUSPENDING.get(k) == ctx || GIC_FAILED.get(k));
        // While it is down and not yet back, it counts as ON (DEN0022 §5.7: a core in a
        // suspend state is ON). Only a sample taken before it resumed says anything.
        let back_before = LAST_CONTEXT.get(k) == resumed;
        let during = calls::affinity_info(mpidr);
        let back_after = LAST_CONTEXT.get(k) == resumed;
        let off = time::wait_until(TIMEOUT_US, || calls::affinity_info(mpidr) == AFFINITY_OFF);
        let arrived = LAST_CONTEXT.get(k);
        let returns = SUSPEND_RETURNS.get(k);
        r.check(
            format_args!("cpu{k}-powerdown-suspend-resumes-at-entry-with-context"),
            suspending && !GIC_FAILED.get(k) && off && arrived == resumed && returns == 0,
            format_args!(
                "suspended: {suspending}; GIC interface failed: {}; off afterwards: {off}; last context \
                 {arrived:#x}, expected {resumed:#x}; CPU_SUSPEND returned {returns} times (last {})",
                GIC_FAILED.get(k),
                Code(SUSPEND_RETURN_X0.get(k))
            ),
        );
        r.check_eq(format_args!("cpu{k}-powerdown-entered-twice-start-and-resume"), jobs::ENTRIES.get(k) - entries, 2);
        if !back_before && !back_after {
            r.check(
                format_args!("cpu{k}-affinity-info-on-while-powered-down"),
                during == AFFINITY_ON,
                format_args!("AFFINITY_INFO returned {}", Code::of(during)),
            );
        } else {
            r.note(format_args!("cpu{k} resumed before AFFINITY_INFO was sampled: ON-while-down not checked"));
        }
    }
}
