//! Test guest: SDEI (Arm DEN0054) as Cairn offers it to a VM with `cairn.sdei=on`.
//!
//! Bootargs: `expect=on` or `expect=off` (what the test gave the VM). Off, the guest tree
//! has no `/firmware/sdei` and every SDEI function ID, SMC64 and SMC32, answers
//! NOT_SUPPORTED. On, through HVC, on two vCPUs:
//! - the node (`arm,sdei-1.0`, `hvc`), VERSION 1.1 with Cairn's vendor code, FEATURES,
//!   the resets, every vCPU starting masked, event 0's info;
//! - the error path of each call (unknown events, an entry outside RAM, unknown flags, a
//!   second registration, enabling twice, CONTEXT and COMPLETE outside a handler, SIGNAL
//!   to an event other than 0 or to no vCPU, binding an SGI, releasing event 0);
//! - event 0 signalled to itself with its interrupts masked: the handler runs at once, at
//!   EL1h with every exception masked, x0-x3 the event, its argument and the interrupted
//!   PC and PSTATE; CONTEXT reads the interrupted x2; COMPLETE gives back x0-x17 and the
//!   stack as they were;
//! - PE_MASK holds a signal back until PE_UNMASK; COMPLETE_AND_RESUME to the IRQ vector
//!   lands there, and the IRQ vector's return resumes the interrupted code; UNREGISTER
//!   inside the handler answers PENDING and the event is gone at COMPLETE;
//! - the virtual timer's PPI bound to a (critical) private event: it fires into the
//!   handler with interrupts masked, and again once the handler has completed; it nests
//!   in event 0's handler, and event 0 signalled inside it waits until it completes;
//!   released, the PPI is an interrupt again;
//! - an SPI bound to a shared event, routed to vCPU 0 with ROUTING_SET: made pending, it
//!   runs the handler, and again after COMPLETE; disabled, the event holds it back until
//!   enabled; eight SPIs may be bound, a ninth not;
//! - event 0 signalled to vCPU 1, asleep in WFI with its interrupts masked, wakes it into
//!   its handler; a handler that calls CPU_OFF leaves vCPU 1 off, and after CPU_ON it finds
//!   its events unregistered and itself masked.
#![no_std]
#![no_main]

use guestkit::shared::PerCpu;
use guestkit::{cpu, gic, guest_main, irq, smccc, smp, time, timer, Checks};

const NAME: &str = "sdei";

/// SDEI function IDs, SMC64 (DEN0054 §5.1): 0xC400_0020 + n.
const SDEI_64: u64 = 0xC400_0000;
const SDEI_32: u64 = 0x8400_0000;
const VERSION: u64 = 0x20;
const EVENT_REGISTER: u64 = 0x21;
const EVENT_ENABLE: u64 = 0x22;
const EVENT_DISABLE: u64 = 0x23;
const EVENT_CONTEXT: u64 = 0x24;
const EVENT_COMPLETE: u64 = 0x25;
const EVENT_COMPLETE_AND_RESUME: u64 = 0x26;
const EVENT_UNREGISTER: u64 = 0x27;
const EVENT_STATUS: u64 = 0x28;
const EVENT_GET_INFO: u64 = 0x29;
const EVENT_ROUTING_SET: u64 = 0x2A;
const PE_MASK: u64 = 0x2B;
const PE_UNMASK: u64 = 0x2C;
const INTERRUPT_BIND: u64 = 0x2D;
const INTERRUPT_RELEASE: u64 = 0x2E;
const EVENT_SIGNAL: u64 = 0x2F;
const FEATURES: u64 = 0x30;
const PRIVATE_RESET: u64 = 0x31;
const SHARED_RESET: u64 = 0x32;
const FUNCTIONS: core::ops::RangeInclusive<u64> = 0x20..=0x32;

const SUCCESS: i64 = 0;
const NOT_SUPPORTED: i64 = -1;
const INVALID_PARAMETERS: i64 = -2;
const DENIED: i64 = -3;
const PENDING: i64 = -5;
const OUT_OF_RESOURCE: i64 = -10;

/// VERSION: 1.1, vendor "CAIR".
const EXPECTED_VERSION: u64 = (1 << 48) | (1 << 32) | 0x4341_4952;
/// EVENT_STATUS bits: registered, enabled, running.
const REGISTERED: i64 = 1;
const ENABLED: i64 = 2;
const RUNNING: i64 = 4;
/// PSTATE.I, and DAIF with everything masked.
const PSTATE_I: u64 = 1 << 7;
const DAIF_ALL: u64 = 0xF << 6;
/// The IRQ vector for the current EL with SP_ELx (Arm ARM D1.10.2), where Linux's
/// COMPLETE_AND_RESUME goes too.
const IRQ_VECTOR_OFFSET: u64 = 0x280;
/// PSCI CPU_OFF and AFFINITY_INFO (SMC64), and AFFINITY_INFO's OFF.
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_AFFINITY_INFO_64: u64 = 0xC400_0004;
const AFFINITY_OFF: u64 = 1;
const TIMEOUT_US: u64 = 1_000_000;
/// The virtual timer's PPI, an SGI, an SPI no device of QEMU virt raises, and an INTID
/// beyond every GIC's.
const TIMER_PPI: u64 = 27;
const SGI: u64 = 3;
const SPARE_SPI: u64 = 100;
const NO_SUCH_INTID: u64 = 1020;
/// FEATURES(BIND_SLOTS): eight of each kind (shared in 31:16, private in 15:0).
const BIND_SLOTS: u64 = (8 << 16) | 8;
/// The event numbers Cairn gives the first PPI and the first SPI bound: both critical.
const FIRST_PRIVATE_BOUND: i64 = 0x100;
const FIRST_SHARED_BOUND: i64 = 0x200;
/// EVENT_GET_INFO's info values: type (1 shared) and priority (1 critical).
const INFO_TYPE: u64 = 0;
const INFO_PRIORITY: u64 = 2;
const INFO_ROUTING_MODE: u64 = 3;
const INFO_ROUTING_AFFINITY: u64 = 4;
/// EVENT_REGISTER and ROUTING_SET flags: RM_PE (to the vCPU with the given affinity).
const ROUTE_TO_PE: u64 = 1;
const SHARED: u64 = 1;
const CRITICAL: u64 = 1;
const TIMER_US: u64 = 2_000;

/// What a handler does once it has looked around.
const THEN_COMPLETE: u64 = 0;
const THEN_RESUME_AT_IRQ: u64 = 1;
const THEN_UNREGISTER: u64 = 2;
const THEN_CPU_OFF: u64 = 3;
/// Event 0's handler arms the timer and waits for the timer's (critical) handler to nest.
const THEN_WAIT_FOR_CRITICAL: u64 = 4;

static THEN: PerCpu<u64> = PerCpu::new(THEN_COMPLETE);
static RUNS: PerCpu<u64> = PerCpu::new(0);
static EVENT: PerCpu<u64> = PerCpu::new(u64::MAX);
static ARG: PerCpu<u64> = PerCpu::new(0);
static PC: PerCpu<u64> = PerCpu::new(0);
static PSTATE: PerCpu<u64> = PerCpu::new(0);
static DAIF: PerCpu<u64> = PerCpu::new(0);
static CONTEXT_X2: PerCpu<u64> = PerCpu::new(0);
static CONTEXT_X18: PerCpu<u64> = PerCpu::new(0);
static STATUS_INSIDE: PerCpu<u64> = PerCpu::new(0);
static UNREGISTER_INSIDE: PerCpu<u64> = PerCpu::new(0);
/// vCPU 1's state: 1 ready, 2 back after CPU_ON, with what it found.
static READY: PerCpu<u64> = PerCpu::new(0);
static FOUND_STATUS: PerCpu<u64> = PerCpu::new(0);
static FOUND_MASK: PerCpu<u64> = PerCpu::new(0);
static FOUND_CONTEXT: PerCpu<u64> = PerCpu::new(0);
/// Handler runs by event: 0, the bound timer's, the bound SPI's.
static EVENT_0_RUNS: PerCpu<u64> = PerCpu::new(0);
static TIMER_RUNS: PerCpu<u64> = PerCpu::new(0);
static SPI_RUNS: PerCpu<u64> = PerCpu::new(0);
/// The bound events' numbers, once bound.
static TIMER_EVENT: PerCpu<u64> = PerCpu::new(u64::MAX);
static SPI_EVENT: PerCpu<u64> = PerCpu::new(u64::MAX);
/// Event 0's handler saw the timer's handler nest in it; the timer's handler signals
/// event 0 and counts event 0's runs meanwhile.
static NESTED: PerCpu<u64> = PerCpu::new(0);
static SIGNAL_INSIDE_CRITICAL: PerCpu<u64> = PerCpu::new(0);
static EVENT_0_INSIDE_CRITICAL: PerCpu<u64> = PerCpu::new(u64::MAX);
static TIMER_IRQS: PerCpu<u64> = PerCpu::new(0);

fn sdei(function: u64, args: &[u64]) -> i64 {
    let mut r = [0u64; 18];
    r[0] = SDEI_64 | function;
    r[1..=args.len()].copy_from_slice(args);
    smccc::hvc(r)[0] as i64
}

/// The handler, entered by the hypervisor at EL1h with x0-x3 = event, argument,
/// interrupted PC and PSTATE. It never returns: COMPLETE gives the interrupted context back.
extern "C" fn handler(event: u64, arg: u64, pc: u64, pstate: u64) -> ! {
    let daif: u64;
    // SAFETY: reading DAIF.
    unsafe { core::arch::asm!("mrs {}, daif", out(reg) daif) };
    RUNS.set_mine(RUNS.mine() + 1);
    EVENT.set_mine(event);
    ARG.set_mine(arg);
    PC.set_mine(pc);
    PSTATE.set_mine(pstate);
    DAIF.set_mine(daif);
    if event == TIMER_EVENT.mine() {
        timer_handler();
    }
    if event == SPI_EVENT.mine() {
        SPI_RUNS.set_mine(SPI_RUNS.mine() + 1);
        sdei(EVENT_COMPLETE, &[0]);
    }
    EVENT_0_RUNS.set_mine(EVENT_0_RUNS.mine() + 1);
    CONTEXT_X2.set_mine(sdei(EVENT_CONTEXT, &[2]) as u64);
    CONTEXT_X18.set_mine(sdei(EVENT_CONTEXT, &[18]) as u64);
    STATUS_INSIDE.set_mine(sdei(EVENT_STATUS, &[event]) as u64);
    match THEN.mine() {
        THEN_RESUME_AT_IRQ => {
            let vbar: u64;
            // SAFETY: reading VBAR_EL1.
            unsafe { core::arch::asm!("mrs {}, vbar_el1", out(reg) vbar) };
            sdei(EVENT_COMPLETE_AND_RESUME, &[vbar + IRQ_VECTOR_OFFSET]);
        }
        THEN_UNREGISTER => {
            UNREGISTER_INSIDE.set_mine(sdei(EVENT_UNREGISTER, &[event]) as u64);
            sdei(EVENT_COMPLETE, &[0]);
        }
        THEN_CPU_OFF => {
            smccc::hvc0(PSCI_CPU_OFF, 0, 0, 0);
        }
        THEN_WAIT_FOR_CRITICAL => {
            let before = TIMER_RUNS.mine();
            timer::arm_after_us(TIMER_US);
            NESTED.set_mine(u64::from(time::wait_until(TIMEOUT_US, || TIMER_RUNS.mine() > before)));
            sdei(EVENT_COMPLETE, &[0]);
        }
        _ => {
            sdei(EVENT_COMPLETE, &[0]);
        }
    }
    guestkit::println!("CAIRN-TEST {NAME} handler on vCPU {}: COMPLETE returned", cpu::index());
    cpu::park()
}

/// The bound timer's event: the timer is quietened (its PPI stays active until COMPLETE
/// anyway); asked to, event 0 is signalled, and must not run before this one completes.
fn timer_handler() -> ! {
    timer::stop();
    TIMER_RUNS.set_mine(TIMER_RUNS.mine() + 1);
    if SIGNAL_INSIDE_CRITICAL.mine() == 1 {
        let before = EVENT_0_RUNS.mine();
        sdei(EVENT_SIGNAL, &[0, cpu::mpidr()]);
        time::delay_us(TIMER_US);
        EVENT_0_INSIDE_CRITICAL.set_mine(EVENT_0_RUNS.mine() - before);
    }
    sdei(EVENT_COMPLETE, &[0]);
    guestkit::println!("CAIRN-TEST {NAME} timer handler: COMPLETE returned");
    cpu::park()
}

fn handler_entry() -> u64 {
    handler as *const () as usize as u64
}

fn register_event_0(arg: u64) -> i64 {
    let r = sdei(EVENT_REGISTER, &[0, handler_entry(), arg, 0, 0]);
    if r != SUCCESS {
        return r;
    }
    sdei(EVENT_ENABLE, &[0])
}

/// vCPU 1: registers event 0, unmasks, then sleeps in WFI with its interrupts masked.
fn secondary(index: usize) {
    register_event_0(0x1000 + index as u64);
    sdei(PE_UNMASK, &[]);
    READY.set_mine(1);
    loop {
        cpu::mask_irqs();
        cpu::wfi();
    }
}

/// vCPU 1 again after CPU_ON: what is left of its SDEI state.
fn after_cpu_on(_index: usize) {
    FOUND_STATUS.set_mine(sdei(EVENT_STATUS, &[0]) as u64);
    FOUND_MASK.set_mine(sdei(PE_MASK, &[]) as u64);
    FOUND_CONTEXT.set_mine(sdei(EVENT_CONTEXT, &[0]) as u64);
    READY.set_mine(2);
    loop {
        cpu::wfi();
    }
}

fn check_off(t: &mut Checks, node: bool) {
    t.check("no-sdei-node", !node, format_args!("/firmware/sdei is in the device tree"));
    let mut wrong = 0;
    for f in FUNCTIONS {
        for base in [SDEI_64, SDEI_32] {
            let mut r = [0u64; 18];
            r[0] = base | f;
            if smccc::hvc(r)[0] as i64 != NOT_SUPPORTED {
                wrong += 1;
            }
        }
    }
    t.check_eq("every-id-not-supported", wrong, 0);
}

fn check_interface(t: &mut Checks) {
    t.check_eq("version", sdei(VERSION, &[]) as u64, EXPECTED_VERSION);
    t.check_eq("features-bind-slots", sdei(FEATURES, &[0]) as u64, BIND_SLOTS);
    t.check_eq("features-relative-entry", sdei(FEATURES, &[1]) as u64, 0);
    t.check_eq("features-unknown", sdei(FEATURES, &[2]) as u64, INVALID_PARAMETERS as u64);
    t.check_eq("private-reset", sdei(PRIVATE_RESET, &[]) as u64, 0);
    t.check_eq("shared-reset", sdei(SHARED_RESET, &[]) as u64, 0);
    t.check_eq("starts-masked", sdei(PE_MASK, &[]) as u64, 0);
    t.check_eq("unmask", sdei(PE_UNMASK, &[]) as u64, 0);
    t.check_eq("event-0-private", sdei(EVENT_GET_INFO, &[0, 0]) as u64, 0);
    t.check_eq("event-0-signalable", sdei(EVENT_GET_INFO, &[0, 1]) as u64, 1);
    t.check_eq("event-0-normal", sdei(EVENT_GET_INFO, &[0, 2]) as u64, 0);
    t.check_eq("event-0-no-routing", sdei(EVENT_GET_INFO, &[0, 3]) as u64, INVALID_PARAMETERS as u64);
}

fn check_errors(t: &mut Checks) {
    let me = cpu::mpidr();
    let errors: [(&str, i64, i64); 12] = [
        ("register-unknown-event", sdei(EVENT_REGISTER, &[1, handler_entry(), 0, 0, 0]), INVALID_PARAMETERS),
        ("register-entry-outside-ram", sdei(EVENT_REGISTER, &[0, 0x10, 0, 0, 0]), INVALID_PARAMETERS),
        ("register-unknown-flags", sdei(EVENT_REGISTER, &[0, handler_entry(), 0, 2, 0]), INVALID_PARAMETERS),
        ("enable-unregistered", sdei(EVENT_ENABLE, &[0]), DENIED),
        ("unregister-unregistered", sdei(EVENT_UNREGISTER, &[0]), DENIED),
        ("context-outside-handler", sdei(EVENT_CONTEXT, &[0]), DENIED),
        ("complete-outside-handler", sdei(EVENT_COMPLETE, &[0]), DENIED),
        ("signal-event-1", sdei(EVENT_SIGNAL, &[1, me]), INVALID_PARAMETERS),
        ("signal-no-such-vcpu", sdei(EVENT_SIGNAL, &[0, 0xFF]), INVALID_PARAMETERS),
        ("bind-sgi", sdei(INTERRUPT_BIND, &[SGI]), INVALID_PARAMETERS),
        ("bind-no-such-intid", sdei(INTERRUPT_BIND, &[NO_SUCH_INTID]), INVALID_PARAMETERS),
        ("release-event-0", sdei(INTERRUPT_RELEASE, &[0]), INVALID_PARAMETERS),
    ];
    for (name, got, want) in errors {
        t.check(name, got == want, format_args!("got {got}, expected {want}"));
    }
    t.check_eq("register", register_event_0(0xA0) as u64, 0);
    t.check_eq("register-twice", sdei(EVENT_REGISTER, &[0, handler_entry(), 0, 0, 0]) as u64, DENIED as u64);
    t.check_eq("enable-twice", sdei(EVENT_ENABLE, &[0]) as u64, DENIED as u64);
    t.check_eq("status", sdei(EVENT_STATUS, &[0]) as u64, (REGISTERED | ENABLED) as u64);
}

/// Event 0 to itself with IRQs masked: the handler runs before the SIGNAL call returns
/// to the code, and the code finds x0-x17 as the call left them.
fn check_self_signal(t: &mut Checks) {
    let me = cpu::mpidr();
    cpu::mask_irqs();
    let mut r = [0u64; 18];
    r[0] = SDEI_64 | EVENT_SIGNAL;
    r[2] = me;
    for (n, x) in r.iter_mut().enumerate().skip(4) {
        *x = 0x5D00 + n as u64;
    }
    let before = RUNS.mine();
    let back = smccc::hvc(r);
    t.check_eq("signal-self", back[0], 0);
    t.check_eq("handler-ran-once", RUNS.mine() - before, 1);
    t.check_eq("handler-event", EVENT.mine(), 0);
    t.check_eq("handler-arg", ARG.mine(), 0xA0);
    t.check("handler-with-all-masked", DAIF.mine() == DAIF_ALL, format_args!("DAIF {:#x}", DAIF.mine()));
    t.check(
        "handler-interrupted-masked-code",
        PSTATE.mine() & PSTATE_I != 0 && PC.mine() != 0,
        format_args!("PC {:#x} PSTATE {:#x}", PC.mine(), PSTATE.mine()),
    );
    t.check_eq("context-x2", CONTEXT_X2.mine(), me);
    t.check_eq("context-x18", CONTEXT_X18.mine(), INVALID_PARAMETERS as u64);
    t.check_eq("status-running", STATUS_INSIDE.mine(), (REGISTERED | ENABLED | RUNNING) as u64);
    t.check("registers-kept", back[4..] == r[4..], format_args!("x4-x17 {:x?}", &back[4..]));
}

/// PE_MASK holds a signal back; PE_UNMASK lets it in.
fn check_mask(t: &mut Checks) {
    t.check_eq("mask", sdei(PE_MASK, &[]) as u64, 1);
    let before = RUNS.mine();
    sdei(EVENT_SIGNAL, &[0, cpu::mpidr()]);
    time::delay_us(10_000);
    t.check_eq("masked-holds-back", RUNS.mine() - before, 0);
    sdei(PE_UNMASK, &[]);
    t.check_eq("unmask-lets-in", RUNS.mine() - before, 1);
}

/// COMPLETE_AND_RESUME to the IRQ vector: the vector runs, then the code goes on.
fn check_resume_at_irq(t: &mut Checks) {
    THEN.set_mine(THEN_RESUME_AT_IRQ);
    let (runs, irqs) = (RUNS.mine(), irq::taken());
    sdei(EVENT_SIGNAL, &[0, cpu::mpidr()]);
    THEN.set_mine(THEN_COMPLETE);
    t.check_eq("resume-handler-ran", RUNS.mine() - runs, 1);
    t.check_eq("resume-landed-on-irq-vector", u64::from(irq::taken() - irqs), 1);
}

/// UNREGISTER inside the handler: PENDING, done at COMPLETE.
fn check_unregister_inside(t: &mut Checks) {
    THEN.set_mine(THEN_UNREGISTER);
    sdei(EVENT_SIGNAL, &[0, cpu::mpidr()]);
    THEN.set_mine(THEN_COMPLETE);
    t.check_eq("unregister-while-running", UNREGISTER_INSIDE.mine(), PENDING as u64);
    t.check_eq("unregistered-at-complete", sdei(EVENT_STATUS, &[0]) as u64, 0);
}

/// Event 0 to vCPU 1, asleep with its interrupts masked; then a handler that turns it off.
fn check_other_vcpu(t: &mut Checks, mpidr: u64) {
    if smp::start(1, mpidr, secondary) != 0 || !time::wait_until(TIMEOUT_US, || READY.get(1) == 1) {
        t.check("vcpu1-up", false, format_args!("vCPU 1 did not come up"));
        return;
    }
    t.check_eq("signal-vcpu1", sdei(EVENT_SIGNAL, &[0, mpidr]) as u64, 0);
    let woke = time::wait_until(TIMEOUT_US, || RUNS.get(1) == 1);
    t.check("vcpu1-woken-into-handler", woke, format_args!("vCPU 1's handler ran {} times", RUNS.get(1)));
    t.check_eq("vcpu1-arg", ARG.get(1), 0x1001);
    t.check("vcpu1-interrupted-masked", PSTATE.get(1) & PSTATE_I != 0, format_args!("PSTATE {:#x}", PSTATE.get(1)));
    // Its next handler calls CPU_OFF.
    THEN.set(1, THEN_CPU_OFF);
    sdei(EVENT_SIGNAL, &[0, mpidr]);
    let off = time::wait_until(TIMEOUT_US, || smccc::hvc0(PSCI_AFFINITY_INFO_64, mpidr, 0, 0) == AFFINITY_OFF);
    t.check("cpu-off-inside-handler", off, format_args!("vCPU 1 is not off"));
    THEN.set(1, THEN_COMPLETE);
    if smp::start(1, mpidr, after_cpu_on) != 0 || !time::wait_until(TIMEOUT_US, || READY.get(1) == 2) {
        t.check("vcpu1-on-again", false, format_args!("vCPU 1 did not come back"));
        return;
    }
    t.check_eq("after-cpu-on-unregistered", FOUND_STATUS.get(1), 0);
    t.check_eq("after-cpu-on-masked", FOUND_MASK.get(1), 0);
    t.check_eq("after-cpu-on-no-handler", FOUND_CONTEXT.get(1), DENIED as u64);
}

/// The virtual timer's PPI bound to a private event (the first bound: critical).
fn check_bound_timer(t: &mut Checks) {
    let event = sdei(INTERRUPT_BIND, &[TIMER_PPI]);
    t.check_eq("bind-timer", event as u64, FIRST_PRIVATE_BOUND as u64);
    t.check_eq("bind-timer-again", sdei(INTERRUPT_BIND, &[TIMER_PPI]) as u64, event as u64);
    let event = event as u64;
    t.check_eq("timer-event-private", sdei(EVENT_GET_INFO, &[event, INFO_TYPE]) as u64, 0);
    t.check_eq("timer-event-critical", sdei(EVENT_GET_INFO, &[event, INFO_PRIORITY]) as u64, CRITICAL);
    TIMER_EVENT.set_mine(event);
    t.check_eq("register-timer-event", sdei(EVENT_REGISTER, &[event, handler_entry(), 0xB0, 0, 0]) as u64, 0);
    t.check_eq("enable-timer-event", sdei(EVENT_ENABLE, &[event]) as u64, 0);
    cpu::mask_irqs();
    timer::arm_after_us(TIMER_US);
    let fired = time::wait_until(TIMEOUT_US, || TIMER_RUNS.mine() == 1);
    t.check("bound-timer-fires-into-handler", fired, format_args!("the handler ran {} times", TIMER_RUNS.mine()));
    t.check_eq("bound-timer-arg", ARG.mine(), 0xB0);
    t.check(
        "bound-timer-interrupted-masked",
        PSTATE.mine() & PSTATE_I != 0,
        format_args!("PSTATE {:#x}", PSTATE.mine()),
    );
    // Its PPI stayed active through the handler; COMPLETE deactivated it.
    timer::arm_after_us(TIMER_US);
    let again = time::wait_until(TIMEOUT_US, || TIMER_RUNS.mine() == 2);
    t.check("bound-timer-fires-again-after-complete", again, format_args!("ran {} times", TIMER_RUNS.mine()));
    // Critical over normal: event 0's handler arms the timer and waits for its handler.
    t.check_eq("register-event-0-again", register_event_0(0xA0) as u64, 0);
    THEN.set_mine(THEN_WAIT_FOR_CRITICAL);
    sdei(EVENT_SIGNAL, &[0, cpu::mpidr()]);
    THEN.set_mine(THEN_COMPLETE);
    t.check_eq("critical-nests-in-normal", NESTED.mine(), 1);
    // Never the reverse: event 0 signalled inside the timer's handler waits for its COMPLETE.
    SIGNAL_INSIDE_CRITICAL.set_mine(1);
    let (runs, event_0_runs) = (TIMER_RUNS.mine(), EVENT_0_RUNS.mine());
    timer::arm_after_us(TIMER_US);
    let both = time::wait_until(TIMEOUT_US, || TIMER_RUNS.mine() > runs && EVENT_0_RUNS.mine() > event_0_runs);
    SIGNAL_INSIDE_CRITICAL.set_mine(0);
    t.check("normal-after-critical", both, format_args!("event 0 ran {} times", EVENT_0_RUNS.mine() - event_0_runs));
    t.check_eq("normal-never-nests-in-critical", EVENT_0_INSIDE_CRITICAL.mine(), 0);
    // Released, the PPI is the guest's interrupt again.
    t.check_eq("unregister-timer-event", sdei(EVENT_UNREGISTER, &[event]) as u64, 0);
    t.check_eq("release-timer", sdei(INTERRUPT_RELEASE, &[event]) as u64, 0);
    TIMER_EVENT.set_mine(u64::MAX);
    irq::set_handler(on_timer_irq);
    gic::enable(TIMER_PPI as u32);
    timer::arm_after_us(TIMER_US);
    cpu::unmask_irqs();
    let taken = time::wait_until(TIMEOUT_US, || TIMER_IRQS.mine() == 1);
    cpu::mask_irqs();
    let _ = gic::disable(TIMER_PPI as u32);
    t.check("released-timer-is-an-interrupt-again", taken, format_args!("{} timer IRQs", TIMER_IRQS.mine()));
}

fn on_timer_irq(_intid: u32) {
    timer::stop();
    TIMER_IRQS.set_mine(TIMER_IRQS.mine() + 1);
}

/// An SPI bound to a shared event (the first bound: critical), made pending by software.
fn check_bound_spi(t: &mut Checks) {
    let event = sdei(INTERRUPT_BIND, &[SPARE_SPI]);
    t.check_eq("bind-spi", event as u64, FIRST_SHARED_BOUND as u64);
    let event = event as u64;
    t.check_eq("spi-event-shared", sdei(EVENT_GET_INFO, &[event, INFO_TYPE]) as u64, SHARED);
    SPI_EVENT.set_mine(event);
    t.check_eq("register-spi-event", sdei(EVENT_REGISTER, &[event, handler_entry(), 0xC0, 0, 0]) as u64, 0);
    let me = cpu::mpidr();
    t.check_eq("spi-event-to-any-vcpu", sdei(EVENT_GET_INFO, &[event, INFO_ROUTING_MODE]) as u64, 0);
    t.check_eq("routing-set", sdei(EVENT_ROUTING_SET, &[event, ROUTE_TO_PE, me]) as u64, 0);
    t.check_eq("routed-to-me", sdei(EVENT_GET_INFO, &[event, INFO_ROUTING_AFFINITY]) as u64, me);
    let private = sdei(EVENT_ROUTING_SET, &[0, ROUTE_TO_PE, me]) as u64;
    t.check_eq("routing-set-private-event", private, INVALID_PARAMETERS as u64);
    t.check_eq("enable-spi-event", sdei(EVENT_ENABLE, &[event]) as u64, 0);
    t.check_eq("routing-set-enabled", sdei(EVENT_ROUTING_SET, &[event, 0, 0]) as u64, DENIED as u64);
    let spi = SPARE_SPI as u32;
    for (n, name) in [(1, "bound-spi-fires-into-handler"), (2, "bound-spi-fires-again-after-complete")] {
        gic::pend_spi(spi);
        let ran = time::wait_until(TIMEOUT_US, || SPI_RUNS.mine() == n);
        t.check(name, ran, format_args!("the handler ran {} times", SPI_RUNS.mine()));
    }
    t.check_eq("bound-spi-arg", ARG.mine(), 0xC0);
    t.check_eq("disable-spi-event", sdei(EVENT_DISABLE, &[event]) as u64, 0);
    gic::pend_spi(spi);
    time::delay_us(10 * TIMER_US);
    t.check_eq("disabled-event-holds-its-spi-back", SPI_RUNS.mine(), 2);
    t.check_eq("enable-spi-event-again", sdei(EVENT_ENABLE, &[event]) as u64, 0);
    let ran = time::wait_until(TIMEOUT_US, || SPI_RUNS.mine() == 3);
    t.check("enabled-event-lets-it-in", ran, format_args!("the handler ran {} times", SPI_RUNS.mine()));
    // Eight SPIs may be bound (FEATURES), a ninth not.
    let more: [i64; 7] = core::array::from_fn(|n| sdei(INTERRUPT_BIND, &[SPARE_SPI + 1 + n as u64]));
    t.check("bind-eight-spis", more.iter().all(|&e| e > 0), format_args!("{more:?}"));
    t.check_eq("bind-a-ninth", sdei(INTERRUPT_BIND, &[SPARE_SPI + 8]) as u64, OUT_OF_RESOURCE as u64);
    let released = more.iter().filter(|&&e| sdei(INTERRUPT_RELEASE, &[e as u64]) == SUCCESS).count();
    t.check_eq("release-them", released as u64, 7);
    t.check_eq("release-registered-denied", sdei(INTERRUPT_RELEASE, &[event]) as u64, DENIED as u64);
    t.check_eq("unregister-spi-event", sdei(EVENT_UNREGISTER, &[event]) as u64, 0);
    t.check_eq("release-spi", sdei(INTERRUPT_RELEASE, &[event]) as u64, 0);
    SPI_EVENT.set_mine(u64::MAX);
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.ok();
    let args = fdt.as_ref().and_then(|f| f.chosen().bootargs()).unwrap_or("");
    let node = fdt.as_ref().and_then(|f| f.find_node("/firmware/sdei"));
    let expect_on = args.split_whitespace().any(|w| w == "expect=on");
    if !expect_on {
        check_off(&mut t, node.is_some());
        t.finish_and_power_off();
    }
    let compatible = node.as_ref().and_then(|n| n.compatible()).map(|c| c.first());
    let method = node.as_ref().and_then(|n| n.property("method")).and_then(|p| p.as_str());
    t.check(
        "sdei-node",
        compatible == Some("arm,sdei-1.0") && method == Some("hvc"),
        format_args!("compatible {compatible:?}, method {method:?}"),
    );
    if gic::init(dtb).is_err() || gic::init_cpu().is_err() {
        t.check("gic", false, format_args!("no GIC"));
        t.finish_and_power_off();
    }
    check_interface(&mut t);
    check_errors(&mut t);
    check_self_signal(&mut t);
    check_mask(&mut t);
    check_resume_at_irq(&mut t);
    check_unregister_inside(&mut t);
    check_bound_timer(&mut t);
    check_bound_spi(&mut t);
    let cpus = smp::cpus(dtb);
    match cpus.secondaries().next() {
        Some(i) => check_other_vcpu(&mut t, cpus.mpidr(i)),
        None => t.note(format_args!("one vCPU: the cross-vCPU checks need two")),
    }
    t.finish_and_power_off();
}

guest_main!(run);
