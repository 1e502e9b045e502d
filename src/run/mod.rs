//! Each physical CPU's run loop, the one place the flow of a vCPU is decided: it idles
//! until its vCPU has a start, enters the guest through the arch layer, gets each exit back
//! as an [`Exit`], asks the policy for an [`Action`] and carries it out. Only this loop
//! (and powering the machine off) diverges.

pub mod control;
mod sdei;
pub mod selftest;
pub mod snapshot;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use crate::arch::aarch64::exit::{Conduit, Exit};
use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::{cpu, fastpath, gic, inject, trap};
use crate::event::SystemEvent;
use crate::hw::{Hardware, Hw};
use crate::platform;
use crate::policy;
use crate::policy::action::{Action, Injection, Resume};
use crate::smccc::call::{Call, Outcome};
use crate::smccc::dispatch;
use crate::smccc::psci;
use crate::smccc::{self, vendor};
use crate::vcpu::{PowerState, Start, Vcpu, Wait, WaitEnd};
use crate::vgic::gic_cpu;
use crate::vm::{self, Vm};
use selftest::SAVE_RESTORE_SELFTEST;
use snapshot::Held;

/// How long a stop from Cairn's prompt waits for each vCPU to leave the guest.
const PARK_TIMEOUT_MS: u64 = 1000;

/// PSTATE for a vCPU entering the guest: EL1h with D, A, I and F masked (booting.rst, and
/// DEN0022 §6.4 for CPU_ON).
pub(crate) const PSTATE_EL1H_DAIF_MASKED: u64 = 0x3C5;

/// The VM whose vCPU runs on each physical CPU: set once, before the CPU's vCPU first
/// runs, and read by the CPU's loop whenever it looks for a start.
static CURRENT_VM: [spin::RwLock<Option<Arc<Vm>>>; MAX_CPUS] = [const { spin::RwLock::new(None) }; MAX_CPUS];

/// Hands every physical CPU its vCPU of each VM, starts each VM's boot vCPU (vCPU 0) and
/// runs this, the boot CPU's, loop.
pub fn run_vms(vms: &[Arc<Vm>]) -> ! {
    for vm in vms {
        for v in &vm.vcpus {
            let mut slot = CURRENT_VM[v.pcpu].write();
            if slot.is_none() {
                *slot = Some(vm.clone());
            }
        }
    }
    for vm in vms {
        // From here the VM has run: its service bitmaps are fixed (fwregs).
        vm.firmware.lock().mark_run();
        vm.start_clock(cpu::counter(), cpu::counter_frequency());
        // booting.rst: x0 = device tree address, x1-x3 = 0.
        let _ = vm.vcpus[0].power_on(vm.boot_start(), &vm.halting);
        vm.wake(&vm.vcpus[0]);
    }
    run_cpu(cpu::current())
}

/// On the CPU of a VM's boot vCPU, Cairn's timer for the VM's `cairn.timeout` deadline,
/// so even a vCPU spinning with its interrupts masked exits then.
fn arm_deadline(vm: &Vm, vcpu: &Vcpu) {
    if let (0, Some(deadline)) = (vcpu.index, vm.deadline()) {
        cpu::arm_hyp_timer(deadline);
    }
}

/// The system event of a VM that ran past its `cairn.timeout`, noticed by `vcpu`. Its
/// timer stays asserted past the deadline: turn it off.
#[cold]
#[inline(never)]
fn timeout_event(vm: &Vm, vcpu: &Vcpu) -> SystemEvent {
    cpu::disarm_hyp_timer();
    SystemEvent::Timeout { vcpu: vcpu.index, secs: vm.actions.timeout_secs.unwrap_or(0) }
}

/// Physical CPU `pcpu`'s loop: idle (WFI at EL2, so QEMU can give the host core away) until
/// its vCPU is started, run it until it stops, and again.
pub fn run_cpu(pcpu: usize) -> ! {
    loop {
        gic_cpu::reset_cpu(pcpu);
        let (vm, index, start) = wait_for_start(pcpu);
        let vcpu = &vm.vcpus[index];
        if let Some(gone) = run_vcpu(&vm, vcpu, start) {
            if gone.last {
                platform::end_with_verdict();
            }
        }
    }
}

/// Idles until this CPU's vCPU has a start (CPU_ON, a reset); starting it sends the kick
/// SGI, which ends the WFI.
fn wait_for_start(pcpu: usize) -> (Arc<Vm>, usize, Start) {
    loop {
        // Complete kicks (and park anything routed here) so the next WFI really waits.
        gic_cpu::take_physical_interrupts(pcpu);
        let vm = CURRENT_VM[pcpu].read().clone();
        if let Some(vm) = vm {
            if let Some(vcpu) = vm.vcpu_on(pcpu) {
                vcpu.set_parked(true);
                if vcpu.capture_requested() {
                    snapshot::serve_off(&vm, vcpu);
                }
                if let Some(s) = vcpu.take_start() {
                    let index = vcpu.index;
                    return (vm, index, s);
                }
                // Cairn's timer wakes the boot vCPU's CPU at the deadline even when that
                // vCPU is off; a VM already stopping (or stopped) is left to its event.
                if vm.timed_out(cpu::counter) && !vm.halting.load(Ordering::SeqCst) {
                    time_out_while_off(&vm, vcpu);
                }
            }
        }
        cpu::wait_for_interrupt();
    }
}

/// Stops `vm`, past its timeout, from the CPU of `vcpu`, which is off.
#[cold]
#[inline(never)]
fn time_out_while_off(vm: &Vm, vcpu: &Vcpu) {
    let event = timeout_event(vm, vcpu);
    if stop_vm(vm, vcpu, event).is_some_and(|gone| gone.last) {
        platform::end_with_verdict();
    }
}

/// A VM that ended with this vCPU's system event.
struct VmGone {
    last: bool,
}

/// Runs `vcpu` from `start` until it stops: CPU_OFF, a system event, a stop by another
/// vCPU's event. Returns the VM's end if this vCPU's event ended it.
fn run_vcpu(vm: &Vm, vcpu: &Vcpu, start: Start) -> Option<VmGone> {
    let mut frame = enter_state(vm, vcpu, start);
    // A system event may have stopped this vCPU after it took its start but before it
    // stopped counting as parked: check again now that the event can see it unparked.
    // Anything later is caught by the kick, taken before the first guest instruction.
    if vcpu.state() == PowerState::Stopped {
        return None;
    }
    if let Some(saved) = vcpu.take_restore() {
        if !snapshot::enter_restored(vm, vcpu, &mut frame, &saved) {
            // Saved in a powerdown state: it waits for its wake-up event again.
            match suspend(vm, vcpu, &mut frame, saved.start.unwrap_or(start), false) {
                Wakeup::TimedOut => return stop_vm(vm, vcpu, timeout_event(vm, vcpu)),
                Wakeup::Stopped => return None,
                _ => {}
            }
        }
    }
    if vm.is_paused() {
        hold_while_paused(vm, vcpu, Held::Running(&frame));
    }
    loop {
        let exit = trap::run_guest(&mut frame);
        let action = policy::on_exit(vm, vcpu, &frame, exit);
        let refill = match carry_out(vm, vcpu, &mut frame, exit, action) {
            Carried::Resume(refill) => refill,
            Carried::Left(gone) => return gone,
        };
        if vcpu.must_leave_guest() {
            return None;
        }
        // Every exit after which an SDEI event may be ready refills: an interrupt (another
        // vCPU's kick), a wait, an SDEI call (the policy sees to it).
        if refill {
            if gic_cpu::flush(&vm.vgic, vcpu.index, vcpu.pcpu) {
                sdei::take_interrupts(vm, vcpu);
            }
            if vcpu.sdei_ready() {
                sdei::deliver(vm, vcpu, &mut frame);
            }
        }
        if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
            selftest::save_restore_round_trip(vm, vcpu, &mut frame);
        }
    }
}

/// How carrying out an action ended.
enum Carried {
    /// Back to the guest; whether its list registers need refilling.
    Resume(bool),
    /// The vCPU left the guest (and, with a VM-ending event, the VM is gone).
    Left(Option<VmGone>),
}

#[inline(always)]
fn carry_out(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, exit: Exit, action: Action) -> Carried {
    let resume = match action {
        Action::Resume(r) => r,
        Action::TakeInterrupts => {
            vcpu.note_pc(frame.elr);
            gic_cpu::take_physical_interrupts(vcpu.pcpu);
            if vm.is_paused() {
                hold_while_paused(vm, vcpu, Held::Running(frame));
            }
            // Only an interrupt can end a run at the deadline (Cairn's timer's, if nothing
            // else), so only then is the clock read.
            if vm.timed_out(cpu::counter) {
                return Carried::Left(stop_vm(vm, vcpu, timeout_event(vm, vcpu)));
            }
            return Carried::Resume(true);
        }
        Action::Halt { then } => {
            vcpu.note_pc(frame.elr);
            let held = Held::Halted { frame, then, step: exit.step_len() };
            if wait_for_wakeup(vm, vcpu, held) == Wakeup::TimedOut {
                return Carried::Left(stop_vm(vm, vcpu, timeout_event(vm, vcpu)));
            }
            Resume { writes: then, step: true, refill: true }
        }
        Action::Suspend { resume, system } => {
            if suspend(vm, vcpu, frame, resume, system) == Wakeup::TimedOut {
                return Carried::Left(stop_vm(vm, vcpu, timeout_event(vm, vcpu)));
            }
            return Carried::Resume(true);
        }
        Action::Inject(injection) => {
            inject_exception(frame, injection);
            return Carried::Resume(false);
        }
        Action::PowerOff => {
            log::debug!("vm{}: vcpu{} off (PSCI CPU_OFF)", vm.id, vcpu.index);
            // CPU_OFF never returns (DEN0022 §5.5): even if a CPU_ON lands before this CPU
            // parks, the loop's wait for a start takes it. Its SDEI state goes with it.
            vm.reset_vcpu_sdei(vcpu.index);
            vcpu.power_off();
            return Carried::Left(None);
        }
        Action::StopVm(event) => return Carried::Left(stop_vm(vm, vcpu, event)),
        Action::SdeiResume => {
            sdei::resume(vm, vcpu, frame);
            return Carried::Resume(true);
        }
        Action::ResetVm(event) => {
            system_reset(vm, vcpu, event);
            return Carried::Left(None);
        }
    };
    // The one place a resumed guest's registers are written and its PC stepped.
    resume.writes.apply(&mut frame.x);
    if resume.step {
        frame.elr = frame.elr.wrapping_add(exit.step_len());
    }
    Carried::Resume(resume.refill)
}

#[cold]
#[inline(never)]
fn inject_exception(frame: &mut TrapFrame, injection: Injection) {
    match injection {
        Injection::DataAbort { far } => inject::data_abort(frame, far),
        Injection::InstructionAbort { far } => inject::instruction_abort(frame, far),
        Injection::Undefined => inject::undefined_instruction(frame),
    }
}

/// Keeps `vcpu` out of the guest while its VM is paused (`pause` at Cairn's prompt), its
/// CPU idle at EL2; its physical interrupts are taken and queued meanwhile, for after, and
/// a save is given its state as `held`. On resume the guest's virtual counter is moved
/// back by the time the VM was paused. A stop ends the hold too.
#[cold]
#[inline(never)]
fn hold_while_paused(vm: &Vm, vcpu: &Vcpu, held: Held) {
    while vm.is_paused() && !vcpu.must_leave_guest() {
        gic_cpu::take_physical_interrupts(vcpu.pcpu);
        if vcpu.capture_requested() {
            snapshot::serve(vm, vcpu, held);
            continue;
        }
        // The console runs in this CPU's interrupts: a `resume` typed just now has already
        // happened, and its kick of this CPU does not wake it from the WFI below.
        if !vm.is_paused() || vcpu.must_leave_guest() {
            break;
        }
        cpu::wait_for_interrupt();
    }
    cpu::set_virtual_offset(vm.virtual_offset());
}

/// Sets this CPU up for its vCPU at `s`, in the architectural entry state, and returns the
/// frame to enter the guest from.
#[cold]
#[inline(never)]
fn enter_state(vm: &Vm, vcpu: &Vcpu, s: Start) -> TrapFrame {
    cpu::init_guest_traps(vcpu.mpidr);
    cpu::set_virtual_offset(vm.virtual_offset());
    cpu::reset_el1_control(s.big_endian);
    cpu::disable_el1_timers();
    arm_deadline(vm, vcpu);
    gic_cpu::reset_cpu(vcpu.pcpu);
    vm.load_stage2();
    install_fast_calls(vm, vcpu);
    log::debug!("vm{}: vcpu{} starts at {:#x}", vm.id, vcpu.index, s.entry);
    vcpu.set_parked(false);
    entry_frame(s)
}

/// The registers a vCPU starts or resumes from a powerdown with: PC at the entry point, x0
/// the context, EL1h with every exception masked (DEN0022 §6.4; booting.rst).
fn entry_frame(s: Start) -> TrapFrame {
    let mut frame = TrapFrame::new(s.entry, PSTATE_EL1H_DAIF_MASKED);
    frame.x[0] = s.context;
    frame
}

/// The calls the hypercall fast path answers (arch::aarch64::fastpath): their answers
/// depend only on the VM's firmware registers, which are frozen once it has run.
const FAST_CALL_IDS: [u32; fastpath::FAST_CALLS] = [psci::fid::PSCI_VERSION, smccc::SMCCC_VERSION, vendor::REVISION];

/// Fills this CPU's fast-path table with what the dispatcher answers for
/// [`FAST_CALL_IDS`] in `vm`, so the fast path and the full one always agree. The
/// save/restore self-test must see every exit: it empties the table instead.
#[cold]
#[inline(never)]
fn install_fast_calls(vm: &Vm, vcpu: &Vcpu) {
    if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
        fastpath::clear(vcpu.pcpu);
        return;
    }
    let answers = FAST_CALL_IDS.map(|fid| {
        let mut x = [0u64; 8];
        x[0] = u64::from(fid);
        let call = Call { conduit: Conduit::Hvc, imm: 0, caller_aarch32: false, vcpu: vcpu.index, x };
        match dispatch::dispatch(&call, vm, Hw::firmware()) {
            Outcome::Return(results) => Some((fid, results)),
            _ => None,
        }
    });
    let mut table = [(0u32, &[][..]); fastpath::FAST_CALLS];
    let mut n = 0;
    for (fid, results) in answers.iter().flatten() {
        table[n] = (*fid, results.registers());
        n += 1;
    }
    fastpath::install(vcpu.pcpu, &table[..n]);
}

/// A powerdown state (CPU_SUSPEND powerdown, SYSTEM_SUSPEND): waits SUSPENDED for a wake-up
/// event, then resumes at the entry point in the state CPU_ON gives (DEN0022 §6.4), but
/// keeping what this powerdown does not lose: the EL1 timers (the device tree marks the
/// timer always-on) and the pending interrupt that ended the suspend.
#[cold]
#[inline(never)]
fn suspend(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, s: Start, system: bool) -> Wakeup {
    vcpu.note_pc(frame.elr);
    if system {
        vm.record(SystemEvent::Suspend { vcpu: vcpu.index, entry: s.entry });
    }
    let woken = wait_for_wakeup(vm, vcpu, Held::Suspended { frame, resume: s });
    if let (true, Wakeup::Interrupt(intid)) = (system, woken) {
        vm.record(SystemEvent::Wakeup { vcpu: vcpu.index, intid, entry: s.entry });
    }
    if matches!(woken, Wakeup::Stopped | Wakeup::TimedOut) {
        return woken; // the loop sees must_leave_guest; a timeout stops the VM
    }
    *frame = entry_frame(s);
    cpu::reset_el1_control(s.big_endian);
    log::debug!("vm{}: vcpu{} resumes at {:#x}", vm.id, vcpu.index, s.entry);
    woken
}

/// What ended a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wakeup {
    /// A virtual interrupt is pending for the vCPU (its INTID).
    Interrupt(u32),
    /// A wake-up event that is not an interrupt: a CPU_ON aimed at the suspended vCPU,
    /// an SDEI event ready for it.
    Request,
    /// The vCPU was stopped (CPU_OFF is not possible here, so: a system event).
    Stopped,
    /// The VM ran past its `cairn.timeout` while the vCPU waited.
    TimedOut,
}

/// Blocks this vCPU, HALTED (WFI, standby) or SUSPENDED (powerdown) as `held` says, its
/// physical CPU idle in WFI at EL2 meanwhile, until a wake-up event: a virtual interrupt
/// pending for it (masked or not, as WFI wakes on hardware), a CPU_ON aimed at it while
/// suspended, or a stop. A save while it waits is given its state as `held`.
#[inline(never)]
fn wait_for_wakeup(vm: &Vm, vcpu: &Vcpu, held: Held) -> Wakeup {
    let pcpu = vcpu.pcpu;
    let how = match held {
        Held::Suspended { .. } => Wait::Suspend,
        _ => Wait::Halt,
    };
    if !vcpu.begin_wait(how) {
        return Wakeup::Stopped;
    }
    if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
        selftest::mp_state_round_trip(vcpu);
    }
    let mut offset = vm.virtual_offset();
    loop {
        gic_cpu::take_physical_interrupts(pcpu);
        // A `resume` while it waited moved the VM's virtual clock back (its kick ends the
        // WFI): this vCPU's clock must agree with the others', or Linux's timekeeping,
        // fed by every CPU, runs seconds apart on them.
        if vm.virtual_offset() != offset {
            offset = vm.virtual_offset();
            cpu::set_virtual_offset(offset);
        }
        // Cairn's timer wakes the boot vCPU's CPU at the VM's deadline.
        let timed_out = vm.timed_out(cpu::counter).then_some(Wakeup::TimedOut);
        let pending = gic_cpu::pending_interrupt(&vm.vgic, vcpu.index, pcpu);
        // A wake-up request: a CPU_ON aimed at it while suspended, or an SDEI event for it.
        let requested = |cpu_on: bool| cpu_on || vcpu.sdei_ready();
        let woken = |cpu_on: bool| {
            timed_out.or(pending.map(Wakeup::Interrupt)).or(requested(cpu_on).then_some(Wakeup::Request))
        };
        match vcpu.end_wait_if(woken) {
            WaitEnd::Stopped => return Wakeup::Stopped,
            WaitEnd::Woken(w) => {
                // Woken while its VM is paused, it stays out of the guest until resumed.
                if vm.is_paused() {
                    hold_while_paused(vm, vcpu, held);
                }
                return w;
            }
            WaitEnd::Waiting => {}
        }
        if vcpu.capture_requested() {
            snapshot::serve(vm, vcpu, held);
        }
        if let Some(g) = gic::get() {
            g.resample();
        }
        cpu::wait_for_interrupt();
    }
}

/// Stops every vCPU of `vm` but `me` and waits until each has left the guest, so that no
/// guest instruction runs anywhere in the VM after a system event's call.
fn stop_others(vm: &Vm, me: &Vcpu) {
    vm.halting.store(true, Ordering::SeqCst);
    for v in vm.vcpus.iter().filter(|v| v.index != me.index) {
        v.power_off();
        vm.wake(v);
    }
    for v in vm.vcpus.iter().filter(|v| v.index != me.index) {
        while !v.is_parked() {
            core::hint::spin_loop();
        }
    }
    me.power_off();
}

/// SYSTEM_OFF, or a crash: every vCPU of the VM stops, the event is recorded, then the
/// VM is gone. Another vCPU's event already under way will stop this one: waiting for its
/// lock would deadlock with it waiting for this vCPU to park, so this vCPU stops at once.
#[cold]
#[inline(never)]
fn stop_vm(vm: &Vm, vcpu: &Vcpu, event: SystemEvent) -> Option<VmGone> {
    let Some(_event) = vm.event_lock.try_lock() else {
        vcpu.power_off();
        return None;
    };
    stop_others(vm, vcpu);
    vm.record(event);
    vm.record_end(&event);
    log::info!("vm{}: {}", vm.id, vm.epitaph());
    crate::console::vm_gone(vm.id);
    Some(VmGone { last: vm::destroy(vm) == 0 })
}

/// PSCI SYSTEM_RESET: every vCPU stops; the VM's images, device tree and interrupt state
/// go back to how they were at creation; the boot vCPU starts again.
#[cold]
#[inline(never)]
fn system_reset(vm: &Vm, vcpu: &Vcpu, event: SystemEvent) {
    let Some(_event) = vm.event_lock.try_lock() else {
        vcpu.power_off();
        return;
    };
    stop_others(vm, vcpu);
    vm.record(event);
    gic_cpu::reset_cpu(vcpu.pcpu);
    vm.reset_vgic();
    vm.restore_images();
    let boot = &vm.vcpus[0];
    boot.restart(vm.boot_start());
    vm.halting.store(false, Ordering::SeqCst);
    vm.wake(boot);
}
