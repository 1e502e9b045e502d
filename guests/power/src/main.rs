//! Test guest: Cairn's vCPU power-state guarantees (DEN0022; guest-firmware-interfaces.md
//! §4, §5 and §8), in parts chosen with `parts=` in the guest's bootargs (default
//! `race,suspend,events`):
//! - `race`: CPU_ON racing a CPU that turns itself off, for 200 rounds unless
//!   `race-rounds=` says otherwise, with `race-load=` secondaries spinning as host load
//!   (race.rs);
//! - `suspend`: CPU_SUSPEND standby with IRQs masked wakes on the timer, powerdown resumes
//!   at the entry with the context id (suspend.rs);
//! - `events`: SYSTEM_RESET2 with undefined types answers INVALID_PARAMETERS and does not
//!   reset; SYSTEM_RESET, SYSTEM_RESET2 warm (type 0) and vendor (type 0x8000_0000, from
//!   the last vCPU) each restart the VM with no vCPU running past the call (events.rs);
//! - `storm`: SYSTEM_RESET while one vCPU keeps calling CPU_ON on another, 16 times;
//! - `crash`: the guest points VBAR_EL1 outside its memory and takes an exception, which
//!   no guest could survive: Cairn must stop the VM with a crash event instead of looping
//!   through the same fault (run alone; nothing of the guest runs after it).
//!
//! The resets make this one run of several boots, told apart by a generation in memory a
//! reset does not touch (persist.rs). The first boot runs `race` and `suspend`; each
//! reset's next boot checks it. The last boot prints the verdict over every boot, then
//! makes SYSTEM_OFF with the other vCPUs counting.
#![no_std]
#![no_main]

mod calls;
mod entry;
mod events;
mod jobs;
mod persist;
mod race;
mod report;
mod suspend;

use core::fmt::Write;

use guestkit::shared::MAX_CPUS;
use guestkit::smp::Cpus;
use guestkit::{gic, guest_main, println, smp, timer};

use crate::events::Plan;
use crate::jobs::{BAD_ARRIVALS, BAD_ARRIVAL_DAIF, BAD_ARRIVAL_EL, BAD_ARRIVAL_SPSEL};
use crate::report::{Report, Text, NAME};

/// The parts that run when the bootargs name none.
const DEFAULT_PARTS: &str = "race,suspend,events";
const PARTS_ARG: &str = "parts=";
const RACE_ROUNDS_ARG: &str = "race-rounds=";
const RACE_LOAD_ARG: &str = "race-load=";

/// Which parts run, from the guest's bootargs (/chosen/bootargs): `parts=a,b,...`,
/// `race-rounds=N` and `race-load=N`.
struct Parts {
    race: bool,
    suspend: bool,
    events: bool,
    storm: bool,
    crash: bool,
    race_rounds: u64,
    race_load: usize,
}

impl Parts {
    fn from_device_tree(dtb: usize) -> Parts {
        // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
        let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.ok();
        let args = fdt.as_ref().and_then(|f| f.chosen().bootargs()).unwrap_or("");
        let arg = |prefix: &str| args.split_whitespace().find_map(|w| w.strip_prefix(prefix));
        let list = arg(PARTS_ARG).unwrap_or(DEFAULT_PARTS);
        let has = |name: &str| list.split(',').any(|p| p == name);
        Parts {
            race: has("race"),
            suspend: has("suspend"),
            events: has("events"),
            storm: has("storm"),
            crash: has("crash"),
            race_rounds: arg(RACE_ROUNDS_ARG).and_then(|n| n.parse().ok()).unwrap_or(race::DEFAULT_ROUNDS),
            race_load: arg(RACE_LOAD_ARG).and_then(|n| n.parse().ok()).unwrap_or(0),
        }
    }
}

fn run(dtb: usize) {
    // Before anything else: a vCPU of the previous boot that still ran after Cairn restored
    // the image may have written here since.
    let in_image: [u64; MAX_CPUS] = core::array::from_fn(|k| persist::IN_IMAGE.get(k));
    let found = persist::locate(dtb);
    let area = found.area;
    let generation = if found.after_reset { area.generation.get() + 1 } else { 1 };
    area.generation.set(generation);
    events::set_area(area);
    let mut r = Report::new(area);
    println!("CAIRN-TEST {NAME} start: boot {generation}");

    let parts = Parts::from_device_tree(dtb);
    let cpus = smp::cpus(dtb);
    if let Some(why) = found.unusable {
        r.check("persistent-area-usable", false, format_args!("{why}; the system events are not checked"));
    }
    let plan = Plan::new(parts.events && found.persistent, parts.storm && found.persistent, &cpus);
    set_up(&mut r, dtb);
    if parts.crash {
        crash(&r);
    }

    let next = if generation == 1 {
        first_boot(&mut r, area, &parts, &cpus);
        0
    } else {
        let Some(stage) = events::expected_reboot(&mut r, area, &plan, generation) else {
            events::finish_early(&mut r)
        };
        events::verify(&mut r, area, &stage, &in_image, &cpus);
        area.stage.get() as usize + 1
    };
    if let Some(stage) = plan.get(next as u64) {
        events::start(&mut r, area, &stage, next, generation, &cpus);
    }
    events::power_off(&mut r, area, generation, &cpus);
}

/// What every boot needs before it starts a secondary: the GIC, the timer's INTID and
/// the vectors the secondaries install.
fn set_up(r: &mut Report, dtb: usize) {
    let intid = timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID);
    suspend::TIMER_INTID.set(intid);
    if let Err(e) = gic::init(dtb) {
        r.check("gic-init", false, format_args!("{e}"));
    }
    entry::share_vectors();
}

/// An IPA no guest memory or device is at on the machines Cairn runs on (128 GiB).
const UNMAPPED_VBAR: u64 = 0x20_0000_0000;

/// Makes every exception fault at its own vector: an undefined instruction with VBAR_EL1
/// outside guest memory. Cairn reports a crash and stops the VM; nothing returns here.
fn crash(r: &Report) -> ! {
    r.note(format_args!("crashing on purpose: VBAR_EL1 = {UNMAPPED_VBAR:#x}, then UDF"));
    // SAFETY: not safe, and meant not to be: the UDF's exception is taken at the new
    // vector, which is outside guest memory; Cairn stops the VM there.
    unsafe { core::arch::asm!("msr vbar_el1, {}", "isb", "udf #0", in(reg) UNMAPPED_VBAR, options(noreturn)) }
}

/// The checks that need no reset, at the first boot.
fn first_boot(r: &mut Report, area: &persist::Area, parts: &Parts, cpus: &Cpus) {
    let mut mpidrs = Text::new();
    for c in 0..cpus.count() {
        let _ = write!(mpidrs, " cpu{c}={:#x}", cpus.mpidr(c));
    }
    r.note(format_args!(
        "{} vCPUs:{mpidrs}; persistent area at {:#x}",
        cpus.count(),
        area as *const persist::Area as usize
    ));
    if cpus.count() < events::STORM_MIN_CPUS && parts.storm {
        r.note(format_args!("the storm needs {} vCPUs: skipped", events::STORM_MIN_CPUS));
    }
    if parts.race {
        race::run(r, cpus, parts.race_rounds, parts.race_load);
    }
    if parts.suspend {
        suspend::standby(r);
        suspend::powerdown(r, cpus);
    }
    if parts.events {
        events::invalid_reset2(r, area);
    }
    let mut bad = Text::new();
    for k in cpus.secondaries().filter(|&k| BAD_ARRIVALS.get(k) != 0) {
        let _ = write!(
            bad,
            "cpu{k}: {} times, last DAIF {:#x} CurrentEL {:#x} SPSel {}; ",
            BAD_ARRIVALS.get(k),
            BAD_ARRIVAL_DAIF.get(k),
            BAD_ARRIVAL_EL.get(k),
            BAD_ARRIVAL_SPSEL.get(k)
        );
    }
    r.check("every-secondary-entry-el1h-daif-masked", bad.is_empty(), format_args!("{bad}"));
}

guest_main!(run);
