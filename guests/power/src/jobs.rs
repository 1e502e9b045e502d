//! What a secondary CPU does once PSCI has sent it to the entry (entry.rs): every entry is
//! recorded (how many, with which context, in which state), then the job the context names
//! runs. Every job but counting ends in CPU_OFF, so the boot CPU knows a job is over when
//! AFFINITY_INFO says OFF.
//!
//! The counting loop ([`count`]) is what system events are checked with: it increments a
//! counter in the persistent area (and one inside the image) as fast as it can, and notes
//! when it runs after a later boot has begun. One counting CPU, the ticker, also prints a
//! line per iteration once the stage's call is requested, so the serial log shows from the
//! outside whether any guest instruction ran after Cairn reported the event.

use guestkit::shared::{PerCpu, Slot};
use guestkit::{cpu, println, time};

use crate::calls::{self, ALREADY_ON, SUCCESS};
use crate::entry::{self, Context, Job};
use crate::persist::{Area, IN_IMAGE};
use crate::{events, race, suspend};

// Written by each secondary for itself, read by the boot CPU.
/// Entries so far, of any job.
pub static ENTRIES: PerCpu<u64> = PerCpu::new(0);
/// The context of the last entry (written before ENTRIES).
pub static LAST_CONTEXT: PerCpu<u64> = PerCpu::new(0);
/// Entries in a state other than DEN0022 §6.4's, and the last such state.
pub static BAD_ARRIVALS: PerCpu<u64> = PerCpu::new(0);
pub static BAD_ARRIVAL_DAIF: PerCpu<u64> = PerCpu::new(0);
pub static BAD_ARRIVAL_EL: PerCpu<u64> = PerCpu::new(0);
pub static BAD_ARRIVAL_SPSEL: PerCpu<u64> = PerCpu::new(0);
/// Tick lines printed at this boot.
pub static TICKS: PerCpu<u64> = PerCpu::new(0);
/// CPU_OFF calls that returned, and the last x0 one returned.
pub static OFF_RETURNS: PerCpu<u64> = PerCpu::new(0);
pub static OFF_RETURN_X0: PerCpu<u64> = PerCpu::new(0);

// Written by the boot CPU before it starts the CPUs of a stage.
/// The counting CPU that prints ticks.
pub static TICKER: Slot<u64> = Slot::new(0);
/// The counting CPU the storming CPU keeps calling CPU_ON on.
pub static STORM_TARGET: Slot<u64> = Slot::new(0);
/// Its affinity.
pub static STORM_TARGET_MPIDR: Slot<u64> = Slot::new(0);

/// How many CPU_OFF calls a CPU makes before it gives up and parks, should CPU_OFF keep
/// returning.
const MAX_OFF_ATTEMPTS: u64 = 1_000;
/// How long a counting CPU may go on running after its stage's call was requested before
/// it reports that the system event did not stop it; Cairn stops them within microseconds.
const WATCHDOG_US: u64 = 5_000_000;
const MICROS_PER_SECOND: u64 = 1_000_000;

/// A secondary's Rust entry, from the assembly entry with what it found there.
pub extern "C" fn secondary_main(context: u64, daif: u64, current_el: u64, spsel: u64) -> ! {
    let me = cpu::index();
    if !entry::arrived_as_psci_says(daif, current_el, spsel) {
        BAD_ARRIVAL_DAIF.set_mine(daif);
        BAD_ARRIVAL_EL.set_mine(current_el);
        BAD_ARRIVAL_SPSEL.set_mine(spsel);
        BAD_ARRIVALS.set_mine(BAD_ARRIVALS.mine() + 1);
    }
    LAST_CONTEXT.set_mine(context);
    ENTRIES.set_mine(ENTRIES.mine() + 1);
    let Some(ctx) = Context::decode(context) else { off() };
    let area = events::area();
    match ctx.job {
        Job::Race => off(),
        Job::Resumed => {
            // The wake-up timer did its work; leave nothing asserted behind.
            guestkit::timer::stop();
            off()
        }
        Job::Suspend => suspend::powerdown_job(ctx),
        Job::Count => count(area, me, ctx.tag, false),
        Job::Storm => count(area, me, ctx.tag, true),
        Job::Event => {
            events::fire(area, ctx.tag, me);
            off()
        }
        Job::Load => race::load_job(),
    }
}

/// CPU_OFF, which must not return (DEN0022 §5.5). Each return is recorded and the call
/// made again.
pub fn off() -> ! {
    for _ in 0..MAX_OFF_ATTEMPTS {
        // Whatever this CPU wrote must be visible once AFFINITY_INFO says OFF.
        cpu::dsb_sy();
        let x0 = calls::cpu_off();
        OFF_RETURN_X0.set_mine(x0);
        OFF_RETURNS.set_mine(OFF_RETURNS.mine() + 1);
    }
    cpu::park()
}

/// Counts for generation `generation` until a system event stops this CPU. With `storm`,
/// also calls CPU_ON on [`STORM_TARGET`] (a counting CPU, so every answer should be
/// ALREADY_ON) once per iteration. Returns only on the boot CPU, once the stage's call has
/// returned: then the boot CPU reports what went wrong.
pub fn count(area: &Area, me: usize, generation: u64, storm: bool) -> ! {
    let ticker = TICKER.get() == me as u64;
    let storm_target = STORM_TARGET.get() as usize;
    let storm_mpidr = STORM_TARGET_MPIDR.get();
    let storm_context = Context::new(storm_target, Job::Count, generation).encode();
    let mut n = area.count.get(me);
    let mut requested_at = None;
    let mut warned = false;
    loop {
        n += 1;
        area.count.set(me, n);
        IN_IMAGE.set(me, n);
        if area.generation.get() != generation {
            area.late.set(me, n);
        }
        let requested = area.requested.get() == generation;
        if storm {
            storm_call(area, storm_mpidr, storm_context, generation);
        }
        if requested {
            if ticker {
                println!("POWER-TICK cpu{me} {n}");
                TICKS.set_mine(TICKS.mine() + 1);
            }
            let since = *requested_at.get_or_insert_with(time::now);
            let running = time::micros(time::now() - since);
            if running > WATCHDOG_US && !warned {
                warned = true;
                println!(
                    "CAIRN-TEST power check cpu{me}-stopped-by-the-system-event: FAIL still counting {} s after \
                     the call was requested (count {n})",
                    running / MICROS_PER_SECOND
                );
            }
            if me == 0 && area.returned.get() != 0 {
                events::call_returned()
            }
        }
    }
}

/// One CPU_ON of the storm. Until the event is requested the target is on for sure, so
/// only ALREADY_ON is right (or SUCCESS, which the boot CPU's checks then catch); once it
/// is, the event may be stopping the target and Cairn may answer as it sees fit. Whether
/// it was requested is read after the call returns: the request is published before the
/// event's call is made, so a CPU_ON that met the event under way always sees it.
fn storm_call(area: &Area, mpidr: u64, context: u64, generation: u64) {
    let x0 = calls::cpu_on(mpidr, entry::secondary_entry(), context);
    let requested = area.requested.get() == generation;
    area.storm_calls.set(area.storm_calls.get() + 1);
    match x0 {
        SUCCESS => area.storm_successes.set(area.storm_successes.get() + 1),
        ALREADY_ON => {}
        _ if requested => {}
        other => {
            area.storm_unexpected_x0.set(other as u64);
            area.storm_unexpected.set(area.storm_unexpected.get() + 1);
        }
    }
}
