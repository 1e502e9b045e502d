//! System events (DEN0022 §5.10-5.11, §5.17; guest-firmware-interfaces.md §5.2): once a
//! SYSTEM_RESET, SYSTEM_RESET2 or SYSTEM_OFF call is handled, no vCPU of the VM runs
//! another guest instruction. Cairn promises the same (src/vcpu.rs, `stop_others`: every
//! other vCPU is stopped and has left the guest before the event takes effect).
//!
//! The guest cannot watch that from inside, since the call does not return, so each
//! reset is one stage spanning two boots, joined by the persistent area (persist.rs):
//!
//! 1. Boot n starts every CPU but the stage's caller counting (jobs::count): each
//!    increments its counter in the area, and the same value in the image's `.data`,
//!    and checks the area's generation. The caller waits until every counter moves,
//!    samples them into `before`, sets `requested` (the "reset requested" flag), lets the
//!    ticker (below) print a line or two and makes the call. Counting CPUs may
//!    legitimately run between the flag and the trap, and until Cairn has stopped them:
//!    nothing in boot n can tell those iterations from later ones, so no check looks at
//!    them.
//! 2. Boot n + 1, which Cairn starts only after it has handled the call, first reads the
//!    in-image values, then bumps the generation, then samples the counters twice,
//!    [`SETTLE_US`] apart. A CPU of boot n that still ran would be caught by one of:
//!    - its in-image value is not [`PRISTINE`]: it wrote after Cairn restored the image;
//!    - its counter moved between the two samples: it runs alongside the new boot;
//!    - its `late` word is set: it saw the new generation, so it ran after boot n + 1
//!      began, which is after the event took effect.
//!
//!    None of these can fire for an iteration that ran before the event took effect, so
//!    the check has no false alarms; and a CPU that keeps counting cannot escape all of
//!    them. Besides: the counters must not have gone backwards from `before`, every
//!    secondary is OFF, and the call never returned.
//! 3. From the outside, the ticker (one counting CPU) prints a line per iteration once
//!    `requested` is set; the test harness checks that nothing but Cairn's own lines
//!    follows Cairn's "system event:" line until the next boot starts (or QEMU exits).
//!
//! SYSTEM_OFF ends the plan: the verdict is printed first, then the call is made with
//! the others counting and the ticker ticking, so only the serial log can tell.
//!
//! The storm stage adds a CPU that keeps calling CPU_ON on a counting CPU while the
//! reset happens: the event stops the target first, so a CPU_ON from a CPU not yet
//! stopped can find it off and start it again. That start must not let it run.

use core::fmt::{self, Write};

use guestkit::shared::{BootOnce, Slot, MAX_CPUS};
use guestkit::smp::Cpus;
use guestkit::{cpu, println, time};

use crate::calls::{self, fid, Code, Conduit, AFFINITY_OFF, INVALID_PARAMETERS, SUCCESS};
use crate::entry::{self, Context, Job};
use crate::jobs::{self, STORM_TARGET, STORM_TARGET_MPIDR, TICKER};
use crate::persist::{Area, PRISTINE};
use crate::report::{Report, Text};

/// How long boot n + 1 watches the counters of boot n for movement.
const SETTLE_US: u64 = 100_000;
/// Increments every counting CPU must make before the caller makes its call, so a CPU
/// that never got going cannot pass for one that was stopped.
const MIN_PROGRESS: u64 = 100;
/// How long the caller waits for that.
const PROGRESS_TIMEOUT_US: u64 = 5_000_000;
/// Tick lines the caller lets the ticker print between the flag and the call, so the
/// serial log shows the ticker live right up to the event.
const MIN_TICKS: u64 = 2;
/// The cookie of the vendor-specific SYSTEM_RESET2 (vendor data, DEN0022 §5.17.1).
const VENDOR_COOKIE: u64 = 0xC0FF_EE00;
/// Resets in the storm part.
const STORM_RESETS: usize = 16;
/// The storm's target and the CPU that keeps calling CPU_ON on it. The target has the
/// lower number: the event stops it before the storming CPU, which keeps calling until it
/// is stopped in turn.
const STORM: Storm = Storm { by: 2, target: 1 };
/// The storm needs a caller (the boot CPU), a target and a storming CPU.
pub const STORM_MIN_CPUS: usize = 3;
/// Stages of the `events` part.
const EVENT_STAGES: usize = 3;
/// The most stages a plan holds: every part.
const MAX_STAGES: usize = EVENT_STAGES + STORM_RESETS;

/// The area every CPU uses, set by the boot CPU at each boot before any other CPU runs.
static AREA: BootOnce<&'static Area> = BootOnce::new();
/// The running stage's event and the counting CPUs (bit n for CPU n), written by the
/// boot CPU before it starts them.
static EVENT: Slot<u64> = Slot::new(0);
static COUNTERS: Slot<u64> = Slot::new(0);

pub fn set_area(area: &'static Area) {
    AREA.set(area);
}

pub fn area() -> &'static Area {
    AREA.get().expect("the boot CPU sets the area before it starts any other CPU")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Event {
    /// SYSTEM_RESET through HVC.
    Reset = 1,
    /// SYSTEM_RESET2, SMC32 form through HVC, type 0: SYSTEM_WARM_RESET.
    Reset2Warm = 2,
    /// SYSTEM_RESET2, SMC64 form through SMC, the first vendor-specific type.
    Reset2Vendor = 3,
    /// SYSTEM_OFF through HVC.
    Off = 4,
}

impl Event {
    const ALL: [Event; 4] = [Event::Reset, Event::Reset2Warm, Event::Reset2Vendor, Event::Off];

    fn from_bits(bits: u64) -> Option<Event> {
        Event::ALL.into_iter().find(|e| *e as u64 == bits)
    }

    /// Makes the call; returns x0 if it returns.
    fn call(self) -> u64 {
        match self {
            Event::Reset => Conduit::Hvc.call3(fid::SYSTEM_RESET, 0, 0, 0),
            Event::Reset2Warm => Conduit::Hvc.call3(fid::SYSTEM_RESET2_32, calls::RESET_TYPE_WARM, 0, 0),
            Event::Reset2Vendor => {
                Conduit::Smc.call3(fid::SYSTEM_RESET2_64, calls::RESET_TYPE_VENDOR_FIRST, VENDOR_COOKIE, 0)
            }
            Event::Off => Conduit::Hvc.call3(fid::SYSTEM_OFF, 0, 0, 0),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::Reset => "system-reset",
            Event::Reset2Warm => "system-reset2-warm",
            Event::Reset2Vendor => "system-reset2-vendor",
            Event::Off => "system-off",
        })
    }
}

/// One system event with the CPUs around it.
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    pub event: Event,
    /// The CPU that makes the call; all the others count.
    pub caller: usize,
    /// The counting CPU that keeps calling CPU_ON on another counting CPU, if any.
    pub storm: Option<Storm>,
}

#[derive(Clone, Copy, Debug)]
pub struct Storm {
    pub by: usize,
    pub target: usize,
}

impl Stage {
    fn counters(&self, cpus: &Cpus) -> u64 {
        (0..cpus.count()).filter(|&k| k != self.caller).fold(0, |m, k| m | 1 << k)
    }

    /// The counting CPU that ticks: the highest-numbered one.
    fn ticker(&self, cpus: &Cpus) -> Option<usize> {
        (0..cpus.count()).rev().find(|&k| k != self.caller)
    }

    fn name(&self) -> impl fmt::Display + '_ {
        StageName(self)
    }
}

struct StageName<'a>(&'a Stage);

impl fmt::Display for StageName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-from-cpu{}", self.0.event, self.0.caller)?;
        if self.0.storm.is_some() {
            f.write_str("-during-cpu-on-storm")?;
        }
        Ok(())
    }
}

/// The resets this run goes through, in order; SYSTEM_OFF follows them.
pub struct Plan {
    stages: [Option<Stage>; MAX_STAGES],
    len: usize,
}

impl Plan {
    /// `events`: SYSTEM_RESET and SYSTEM_RESET2 warm from the boot CPU, then SYSTEM_RESET2
    /// vendor from the last CPU while the boot CPU counts. `storm`: SYSTEM_RESET from the
    /// boot CPU while CPU 2 keeps calling CPU_ON on CPU 1, several times.
    pub fn new(events: bool, storm: bool, cpus: &Cpus) -> Plan {
        let mut plan = Plan { stages: [None; MAX_STAGES], len: 0 };
        let last = cpus.count() - 1;
        if events {
            plan.push(Stage { event: Event::Reset, caller: 0, storm: None });
            plan.push(Stage { event: Event::Reset2Warm, caller: 0, storm: None });
            plan.push(Stage { event: Event::Reset2Vendor, caller: last, storm: None });
        }
        if storm && cpus.count() >= STORM_MIN_CPUS {
            for _ in 0..STORM_RESETS {
                plan.push(Stage { event: Event::Reset, caller: 0, storm: Some(STORM) });
            }
        }
        plan
    }

    fn push(&mut self, stage: Stage) {
        self.stages[self.len] = Some(stage);
        self.len += 1;
    }

    pub fn get(&self, index: u64) -> Option<Stage> {
        self.stages.get(usize::try_from(index).ok()?).copied().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// SYSTEM_RESET2 with the architectural reset types DEN0022 leaves undefined answers
/// INVALID_PARAMETERS in line and does not reset: a reset here would be seen at the next
/// boot by `invalid_reset2_pending`.
pub fn invalid_reset2(r: &mut Report, area: &Area) {
    area.invalid_reset2_pending.set(1);
    for reset_type in calls::RESET_TYPE_UNDEFINED_ARCHITECTURAL {
        let mut wrong = Text::new();
        for fid in [fid::SYSTEM_RESET2_64, fid::SYSTEM_RESET2_32] {
            for conduit in Conduit::BOTH {
                let x0 = conduit.call3(fid, reset_type, 0, 0);
                // A 32-bit function's status is W0, sign-extended here.
                let status = if fid == fid::SYSTEM_RESET2_32 { x0 as u32 as i32 as i64 } else { x0 as i64 };
                if status != INVALID_PARAMETERS {
                    let _ = write!(wrong, "{fid:#x} {conduit}: {}; ", Code::of(status));
                }
            }
        }
        r.check(
            format_args!("system-reset2-type-{reset_type:#x}-invalid-parameters-no-reset"),
            wrong.is_empty(),
            format_args!("{wrong}expected {}", Code::of(INVALID_PARAMETERS)),
        );
    }
    area.invalid_reset2_pending.set(0);
}

/// What the boot CPU checks first at a boot that follows a reset: that a stage asked for
/// it. Returns the stage to verify, or None after reporting why the boot is unexpected.
pub fn expected_reboot(r: &mut Report, area: &Area, plan: &Plan, generation: u64) -> Option<Stage> {
    let previous = generation - 1;
    if area.invalid_reset2_pending.get() != 0 {
        r.check(
            "system-reset2-undefined-type-does-not-reset",
            false,
            format_args!("the VM rebooted during the SYSTEM_RESET2 calls with undefined architectural types"),
        );
        return None;
    }
    let index = area.stage.get();
    let stage = plan.get(index);
    let requested = area.requested.get() == previous;
    r.check(
        format_args!("boot-{generation}-follows-a-requested-reset"),
        requested && stage.is_some_and(|s| s.event != Event::Off),
        format_args!(
            "boot {previous} requested: {requested} (flag {}); stage {index} of {}: {stage:?}",
            area.requested.get(),
            plan.len()
        ),
    );
    if requested {
        stage
    } else {
        None
    }
}

/// Boot n + 1's checks of the stage boot n ran; see the module's description.
pub fn verify(r: &mut Report, area: &Area, stage: &Stage, in_image: &[u64; MAX_CPUS], cpus: &Cpus) {
    let name = stage.name();
    r.note(format_args!("checking {name} of the previous boot"));
    let counters = stage.counters(cpus);
    let counting = || (0..cpus.count()).filter(move |&k| counters & 1 << k != 0);
    let first: [u64; MAX_CPUS] = core::array::from_fn(|k| area.count.get(k));
    time::delay_us(SETTLE_US);
    let (mut image, mut moving, mut late, mut back, mut idle) =
        (Text::new(), Text::new(), Text::new(), Text::new(), Text::new());
    for k in counting() {
        if in_image[k] != PRISTINE {
            let _ = write!(image, "cpu{k}: {:#x}; ", in_image[k]);
        }
        let second = area.count.get(k);
        if second != first[k] {
            let _ = write!(moving, "cpu{k}: {} -> {second}; ", first[k]);
        }
        if area.late.get(k) != 0 {
            let _ = write!(late, "cpu{k} at count {}; ", area.late.get(k));
        }
        let before = area.before.get(k);
        if before == 0 || first[k] < before {
            let _ = write!(back, "cpu{k}: {before} before the call, {} after; ", first[k]);
        }
        if first[k] == 0 {
            let _ = write!(idle, "cpu{k}; ");
        }
    }
    let returned = area.returned.get();
    r.check(
        format_args!("{name}-did-not-return"),
        returned == 0,
        format_args!("returned {returned} times, x0 {}", Code(area.returned_x0.get())),
    );
    let stalled = area.stalled.get();
    r.check(
        format_args!("{name}-others-were-counting-at-the-call"),
        stalled == 0 && idle.is_empty(),
        format_args!("no progress before the call: mask {stalled:#x}; never counted: {idle}"),
    );
    r.check(
        format_args!("{name}-no-write-after-the-image-was-restored"),
        image.is_empty(),
        format_args!("in-image counters not pristine ({PRISTINE:#x}): {image}"),
    );
    r.check(
        format_args!("{name}-counters-frozen-in-the-new-boot"),
        moving.is_empty(),
        format_args!("still counting {SETTLE_US} us into this boot: {moving}"),
    );
    r.check(
        format_args!("{name}-no-cpu-ran-into-the-new-boot"),
        late.is_empty(),
        format_args!("ran after this boot bumped the generation: {late}"),
    );
    r.check(format_args!("{name}-counters-kept-their-last-value"), back.is_empty(), format_args!("{back}"));
    let mut on = Text::new();
    for k in cpus.secondaries() {
        let state = calls::affinity_info(cpus.mpidr(k));
        if state != AFFINITY_OFF {
            let _ = write!(on, "cpu{k}: {}; ", Code::of(state));
        }
    }
    r.check(format_args!("{name}-secondaries-off-after-the-reset"), on.is_empty(), format_args!("{on}"));
    if let Some(storm) = stage.storm {
        let (calls, successes) = (area.storm_calls.get(), area.storm_successes.get());
        // A SUCCESS that lands as the event stops the storming CPU is never seen by it.
        r.note(format_args!(
            "cpu{} made {calls} CPU_ON calls on cpu{} and saw {successes} of them succeed",
            storm.by, storm.target
        ));
        r.check(
            format_args!("{name}-storm-cpu-on-answers-already-on-before-the-event"),
            area.storm_unexpected.get() == 0,
            format_args!("{} other answers, the last {}", area.storm_unexpected.get(), {
                Code(area.storm_unexpected_x0.get())
            }),
        );
    }
}

/// Runs `stage` (number `index` of the plan) in boot `generation`: never returns, as the
/// stage ends in a reset (or in a report of the call having returned).
pub fn start(r: &mut Report, area: &Area, stage: &Stage, index: usize, generation: u64, cpus: &Cpus) -> ! {
    area.stage.set(index as u64);
    begin(area);
    let counters = stage.counters(cpus);
    EVENT.set(stage.event as u64);
    COUNTERS.set(counters);
    if let Some(t) = stage.ticker(cpus) {
        TICKER.set(t as u64);
    }
    if let Some(storm) = stage.storm {
        STORM_TARGET.set(storm.target as u64);
        STORM_TARGET_MPIDR.set(cpus.mpidr(storm.target));
    }
    r.note(format_args!(
        "boot {generation}: {} with counters mask {counters:#x}; a hang here means the event never happened",
        stage.name()
    ));
    start_secondaries(r, stage, generation, cpus);
    if stage.caller == 0 {
        fire(area, generation, 0);
        call_returned()
    }
    let ctx = Context::new(stage.caller, Job::Event, generation).encode();
    let x0 = calls::cpu_on(cpus.mpidr(stage.caller), entry::secondary_entry(), ctx);
    if x0 != SUCCESS {
        r.check(
            format_args!("{}-caller-started", stage.name()),
            false,
            format_args!("CPU_ON returned {}", Code::of(x0)),
        );
        finish_early(r)
    }
    jobs::count(area, 0, generation, false)
}

/// The end of the plan: SYSTEM_OFF from the boot CPU with every other CPU counting.
/// The verdict is printed before; after the call only the serial log can tell.
pub fn power_off(r: &mut Report, area: &Area, generation: u64, cpus: &Cpus) -> ! {
    let stage = Stage { event: Event::Off, caller: 0, storm: None };
    begin(area);
    EVENT.set(stage.event as u64);
    COUNTERS.set(stage.counters(cpus));
    if let Some(t) = stage.ticker(cpus) {
        TICKER.set(t as u64);
    }
    r.note(format_args!("SYSTEM_OFF with counters mask {:#x}", stage.counters(cpus)));
    r.finish();
    start_secondaries(r, &stage, generation, cpus);
    fire(area, generation, 0);
    call_returned()
}

/// Clears what a stage's caller writes, before anything of the stage runs.
fn begin(area: &Area) {
    for w in [
        &area.returned,
        &area.returned_x0,
        &area.stalled,
        &area.storm_calls,
        &area.storm_successes,
        &area.storm_unexpected,
        &area.storm_unexpected_x0,
    ] {
        w.set(0);
    }
    for k in 0..MAX_CPUS {
        area.before.set(k, 0);
        area.late.set(k, 0);
    }
}

/// Starts every counting secondary: the storm's target before the storming CPU, so the
/// storm's calls find it on.
fn start_secondaries(r: &mut Report, stage: &Stage, generation: u64, cpus: &Cpus) {
    let counters = stage.counters(cpus);
    let target = stage.storm.map(|s| s.target);
    let order = target.into_iter().chain(cpus.secondaries().filter(|&k| Some(k) != target));
    for k in order.filter(|&k| counters & 1 << k != 0) {
        let job = if stage.storm.is_some_and(|s| s.by == k) { Job::Storm } else { Job::Count };
        let x0 = calls::cpu_on(cpus.mpidr(k), entry::secondary_entry(), Context::new(k, job, generation).encode());
        if x0 != SUCCESS {
            r.check(
                format_args!("{}-cpu{k}-started-counting", stage.name()),
                false,
                format_args!("CPU_ON returned {}", Code::of(x0)),
            );
        }
    }
}

/// The caller's side of a stage, on whichever CPU makes the call: waits until every
/// counting CPU moves, samples the counters, sets the flag, makes the call. Returns only
/// if the call returns.
pub fn fire(area: &Area, generation: u64, me: usize) {
    let Some(event) = Event::from_bits(EVENT.get()) else { return };
    let counters = COUNTERS.get() & !(1 << me);
    let counting = || (0..MAX_CPUS).filter(move |&k| counters & 1 << k != 0);
    let start: [u64; MAX_CPUS] = core::array::from_fn(|k| area.count.get(k));
    let moved = |k: usize| area.count.get(k) >= start[k] + MIN_PROGRESS;
    if !time::wait_until(PROGRESS_TIMEOUT_US, || counting().all(moved)) {
        area.stalled.set(counting().filter(|&k| !moved(k)).fold(0, |m, k| m | 1 << k));
    }
    for k in counting() {
        area.before.set(k, area.count.get(k));
    }
    area.requested.set(generation);
    if let Some(ticker) = Some(TICKER.get() as usize).filter(|&t| counters & 1 << t != 0) {
        time::wait_until(PROGRESS_TIMEOUT_US, || jobs::TICKS.get(ticker) >= MIN_TICKS);
    }
    cpu::dsb_sy();
    let x0 = event.call();
    area.returned_x0.set(x0);
    area.returned.set(area.returned.get() + 1);
}

/// The boot CPU's report when a stage's call returned: the VM is in an unknown state, so
/// it prints the verdict and powers off.
pub fn call_returned() -> ! {
    let area = area();
    let mut r = Report::new(area);
    let event = Event::from_bits(EVENT.get());
    r.check(
        format_args!("{}-does-not-return", event.map_or(Text::new(), |e| text(format_args!("{e}")))),
        false,
        format_args!("the call returned {}", Code(area.returned_x0.get())),
    );
    finish_early(&mut r)
}

/// Prints the verdict and powers off without more stages.
pub fn finish_early(r: &mut Report) -> ! {
    r.finish();
    let x0 = Conduit::Hvc.call3(fid::SYSTEM_OFF, 0, 0, 0);
    println!("CAIRN-TEST power SYSTEM_OFF returned {}", Code(x0));
    cpu::park()
}

fn text(args: fmt::Arguments<'_>) -> Text {
    let mut t = Text::new();
    let _ = t.write_fmt(args);
    t
}
