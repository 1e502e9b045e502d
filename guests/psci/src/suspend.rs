//! CPU_SUSPEND on the boot CPU (DEN0022 §5.4): a standby request returns SUCCESS once
//! something wakes the CPU, reserved power_state bits are refused, and a powerdown
//! request resumes at the entry point with x0 = context id, in the state CPU_ON gives
//! (§5.4.3 and §6.4). The virtual timer, armed a few milliseconds ahead with IRQs masked,
//! is what wakes the CPU each time.

use guestkit::shared::Slot;
use guestkit::{cpu, gic, irq, time, timer, Checks};

use crate::calls::{expect_all, Code, Conduit};
use crate::dt::{PsciIds, Ram, Version};
use crate::entry::{self, Powerdown};
use guestkit::spec::{psci, smccc};

/// How far ahead the wake-up timer is armed.
const WAKE_AFTER_US: u64 = 5_000;
/// How long the timer interrupt may take to be taken once unmasked.
const FIRE_TIMEOUT_US: u64 = 1_000_000;
/// Context ids for the powerdown suspends: one that needs all 64 bits, one for the
/// 32-bit form (which has only W3).
const POWERDOWN_CONTEXT_64: u64 = 0xC0DE_0000_5EED_0000;
const POWERDOWN_CONTEXT_32: u64 = 0x5EED_0000;

static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
/// Written only by the IRQ handler.
static FIRED: Slot<u32> = Slot::new(0);
static STRAY: Slot<u32> = Slot::new(0);

fn on_irq(intid: u32) {
    if intid == TIMER_INTID.get() {
        // Quieten the level-sensitive PPI before the EOI.
        timer::mask_output();
        FIRED.set(FIRED.get() + 1);
    } else {
        STRAY.set(STRAY.get() + 1);
    }
}

/// Brings up this CPU's GIC interface with the timer PPI enabled (again after a
/// powerdown, which loses it).
fn enable_timer_interrupt() -> Result<(), gic::GicError> {
    gic::init_cpu()?;
    irq::set_handler(on_irq);
    gic::set_priority(TIMER_INTID.get(), gic::DEFAULT_PRIORITY);
    gic::enable(TIMER_INTID.get());
    Ok(())
}

struct Waker {
    /// Suspends after which the timer interrupt never came.
    untaken: u32,
    /// Calls that returned before the timer's deadline: allowed (wake-ups may be
    /// spurious), so only noted.
    early: u32,
}

impl Waker {
    /// Runs `call` with IRQs masked and the timer armed to wake the CPU, then takes the
    /// timer's interrupt so nothing is left pending. Returns x0.
    fn around(&mut self, call: impl FnOnce() -> u64) -> u64 {
        cpu::mask_irqs();
        let before = FIRED.get();
        let deadline = timer::arm_after_us(WAKE_AFTER_US);
        let x0 = call();
        if time::now() < deadline {
            self.early += 1;
        }
        self.take_interrupt(before);
        x0
    }

    fn take_interrupt(&mut self, before: u32) {
        cpu::unmask_irqs();
        let taken = time::wait_until(FIRE_TIMEOUT_US, || FIRED.get() > before);
        cpu::mask_irqs();
        if !taken {
            self.untaken += 1;
            timer::stop();
        }
    }
}

pub fn run(t: &mut Checks, dtb: usize, ids: &PsciIds, version: Version, ram: &Ram) {
    let Some(forms) = ids.cpu_suspend else {
        t.note(format_args!("the device tree names no CPU_SUSPEND: not checked"));
        return;
    };
    let intid = timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID);
    TIMER_INTID.set(intid);
    let gic = gic::init(dtb).and_then(|gic| enable_timer_interrupt().map(|()| gic));
    let Some(gic) = t.check_ok("gic-init-for-suspend-wakeups", gic) else { return };
    t.note(format_args!("{gic}; CPU_SUSPEND is woken by the virtual timer, INTID {intid}"));
    let mut waker = Waker { untaken: 0, early: 0 };

    if version >= Version::V1_0 {
        let flags = Conduit::Hvc.call3(psci::PSCI_FEATURES, u64::from(forms.first()), 0, 0) as i64;
        if flags >= 0 && flags & psci::FEATURES_CPU_SUSPEND_EXTENDED_FORMAT != 0 {
            t.note(format_args!("PSCI_FEATURES(CPU_SUSPEND) = {flags:#x}: extended power_state format"));
        }
    }
    t.note(format_args!("CPU_SUSPEND standby (a hang here means the suspend never woke)"));
    expect_all(t, "cpu-suspend-standby-success", forms.all(), psci::SUCCESS, |fid, c| {
        waker.around(|| c.call3(fid, psci::POWER_STATE_STANDBY, 0, 0))
    });
    // Returning before the timer fires is allowed (a wake-up may be spurious), so this is
    // only a note.
    t.note(format_args!("{} of the standby calls returned before the wake-up timer's deadline", waker.early));
    for bit in psci::POWER_STATE_RESERVED_BITS {
        expect_all(
            t,
            format_args!("cpu-suspend-reserved-bit-{}-invalid-parameters", bit.trailing_zeros()),
            forms.all(),
            psci::INVALID_PARAMETERS,
            |fid, c| waker.around(|| c.call3(fid, bit, entry::resume_entry(), 0)),
        );
    }
    let invalid_address = if version >= Version::V1_0 { psci::INVALID_ADDRESS } else { psci::INVALID_PARAMETERS };
    if let Some(bad) = ram.outside().into_iter().flatten().next() {
        expect_all(
            t,
            format_args!("cpu-suspend-powerdown-entry-{bad:#x}-outside-ram-refused"),
            forms.all(),
            invalid_address,
            |fid, c| waker.around(|| c.call3(fid, psci::POWER_STATE_POWERDOWN, bad, 0)),
        );
    }

    t.note(format_args!("CPU_SUSPEND powerdown (a hang here means it never resumed)"));
    for (fid, conduit) in [(forms.first(), Conduit::Hvc), (forms.last(), Conduit::Smc)] {
        let context = if fid & smccc::CONVENTION_64 != 0 { POWERDOWN_CONTEXT_64 } else { POWERDOWN_CONTEXT_32 };
        let name = format_args!("cpu-suspend-powerdown-resumes-at-entry-{conduit}-{fid:#x}");
        cpu::mask_irqs();
        let before = FIRED.get();
        timer::arm_after_us(WAKE_AFTER_US);
        match entry::powerdown_suspend(fid, psci::POWER_STATE_POWERDOWN, conduit == Conduit::Smc, context) {
            Powerdown::Returned(x0) => {
                t.check(
                    name,
                    false,
                    format_args!(
                        "returned {} in line; DEN0022 lets a powerdown be treated as standby, but Cairn \
                         documents resume-at-entry",
                        Code(x0)
                    ),
                );
                waker.take_interrupt(before);
            }
            Powerdown::Resumed(state) => {
                t.check(
                    name,
                    state.is_psci_entry(context),
                    format_args!("resumed with {state:x?}; context id {context:#x}"),
                );
                // A CPU back from powerdown sets up its GIC interface again, as an OS does.
                t.check_ok(format_args!("gic-cpu-interface-back-after-powerdown-{conduit}"), enable_timer_interrupt());
                timer::stop();
            }
        }
    }
    t.check(
        "wake-timer-interrupt-taken-after-each-suspend",
        waker.untaken == 0,
        format_args!("{} suspends were never followed by the timer interrupt", waker.untaken),
    );
    t.check_eq("no-stray-interrupts", u64::from(STRAY.get()), 0);
}
