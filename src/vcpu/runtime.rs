//! Virtual CPUs: their power state, where they run, and what happens on each exit.
//!
//! Every vCPU is pinned 1:1 to a physical CPU. The arch layer hands each trap over as an
//! [`Exit`]; the policy for it lives here. A vCPU's power state changes only under its own
//! lock, and a vCPU (re)starts only on its own physical CPU.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, CNTP_CTL_EL0, CNTV_CTL_EL0, SCTLR_EL1};

use crate::arch::aarch64::boot::{self, MAX_CPUS};
use crate::arch::aarch64::exit::{Exit, SysRegId, ICC_ASGI1R_EL1, ICC_SGI0R_EL1, ICC_SGI1R_EL1};
use crate::arch::aarch64::gic::{self, PhysicalBacking};
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::{context, cpu, fastpath, firmware, inject};
use crate::event::{Crash, SystemEvent};
use crate::mmio::Access;
use crate::psci::{self, ret, Suspend};
use crate::smccc::dispatch::{self, Call, Outcome};
use crate::smccc::{self, vendor};
use crate::vcpu::power::{Power, PowerState, Start, Wait};
use crate::vcpu::saved::VcpuState;
use crate::vgic::dist::VcpuSet;
use crate::vgic::gic_cpu;
use crate::vm::{self, Vm};
use crate::{console, fwregs, hyp};

/// PSTATE for a vCPU entering the guest: EL1h with D, A, I and F masked (booting.rst, and
/// DEN0022 §6.4 for CPU_ON).
const PSTATE_EL1H_DAIF_MASKED: u64 = 0x3C5;
/// SCTLR_EL1 at warm reset: the RES1 bits of ARMv8.0 (29, 28, 23, 22, 20, 11) with the
/// MMU, caches and alignment checks off.
const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// SCTLR_EL1.EE: exceptions (and the MMU's table walks) at EL1 are big-endian.
const SCTLR_EL1_EE: u64 = 1 << 25;
/// The A64 instruction size, for stepping over an emulated MSR.
const INSTRUCTION_SIZE: u64 = 4;

pub struct Vcpu {
    pub index: usize,
    /// The MPIDR affinity the guest sees (VMPIDR_EL2).
    pub mpidr: u64,
    /// The physical CPU (logical number) it is pinned to.
    pub pcpu: usize,
    power: spin::Mutex<Power>,
    /// `Power::must_leave_guest`, republished after every change under the lock, so the
    /// exit path can read it without taking the lock. A change that sets it is followed
    /// by a kick, which makes the vCPU exit and read it.
    leave: AtomicBool,
    /// Set while the physical CPU idles at EL2 with no guest context live: the
    /// acknowledgement a system event waits for.
    parked: AtomicBool,
}

impl Vcpu {
    pub fn new(index: usize, mpidr: u64, pcpu: usize) -> Self {
        Vcpu {
            index,
            mpidr,
            pcpu,
            power: spin::Mutex::new(Power::new()),
            leave: AtomicBool::new(true),
            parked: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the power state under the lock, then republishes `leave`.
    fn with_power<R>(&self, f: impl FnOnce(&mut Power) -> R) -> R {
        let mut p = self.power.lock();
        let r = f(&mut p);
        self.leave.store(p.must_leave_guest(), Ordering::SeqCst);
        r
    }

    pub fn state(&self) -> PowerState {
        self.power.lock().state()
    }

    /// CPU_ON (power::Power::power_on) under this vCPU's lock. `halting` is the VM's
    /// system-event flag, read under the lock, so a racing CPU_ON either lands before the
    /// event stops this vCPU or sees the flag.
    pub fn power_on(&self, start: Start, halting: &AtomicBool) -> Result<(), i64> {
        self.with_power(|p| p.power_on(start, halting.load(Ordering::SeqCst)))
    }

    /// Stops the vCPU; it leaves the guest at its next exit.
    pub fn power_off(&self) {
        self.with_power(|p| p.power_off());
    }

    /// Starts the vCPU again after a VM reset.
    fn restart(&self, start: Start) {
        self.with_power(|p| p.restart(start));
    }

    fn must_leave_guest(&self) -> bool {
        self.leave.load(Ordering::SeqCst)
    }

    fn take_start(&self) -> Option<Start> {
        self.with_power(|p| p.take_start())
    }
}

/// The VM whose vCPU runs on each physical CPU.
static CURRENT_VM: [spin::RwLock<Option<Arc<Vm>>>; MAX_CPUS] = [const { spin::RwLock::new(None) }; MAX_CPUS];
/// The same VMs as plain pointers, for the exit path to read without a lock or a
/// reference count. Each points into the `Arc` in `CURRENT_VM` for that CPU, which is set
/// once, before the CPU's vCPU first runs, and never replaced or dropped, so it is valid
/// for as long as Cairn runs.
static CURRENT_VM_PTR: [AtomicPtr<Vm>; MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

fn current_vm() -> Option<&'static Vm> {
    let ptr = CURRENT_VM_PTR.get(cpu::current())?.load(Ordering::Acquire);
    // SAFETY: non-null pointers come from an Arc kept in CURRENT_VM forever (see above).
    unsafe { ptr.as_ref() }
}

/// Whether the guest on this CPU runs big-endian at EL1 (SCTLR_EL1.EE): a CPU_ON caller's
/// endianness is what its target starts with.
pub fn caller_big_endian() -> bool {
    SCTLR_EL1.get() & SCTLR_EL1_EE != 0
}

/// Makes a vCPU's physical CPU look at it: the kick SGI ends its WFI, whether it idles at
/// EL2 or runs the guest.
pub fn wake(vcpu: &Vcpu) {
    if vcpu.pcpu != cpu::current() {
        if let Some(g) = gic::get() {
            g.kick(vcpu.pcpu);
        }
    }
}

/// Hands every physical CPU its vCPU of `vm` and starts the boot vCPU (vCPU 0) on this,
/// the boot CPU.
pub fn run_boot_vcpu(vm: Arc<Vm>) -> ! {
    for v in &vm.vcpus {
        let mut slot = CURRENT_VM[v.pcpu].write();
        if slot.is_some() {
            // The exit path holds plain references to the VM in the slot: replacing it
            // would need the CPU quiesced first, which one boot VM never needs.
            continue;
        }
        *slot = Some(vm.clone());
        CURRENT_VM_PTR[v.pcpu].store(Arc::as_ptr(&vm).cast_mut(), Ordering::Release);
    }
    // booting.rst: x0 = device tree address, x1-x3 = 0.
    let _ = vm.vcpus[0].power_on(vm.boot_start(), &vm.halting);
    // From here the VM has run: its service bitmaps are fixed (fwregs).
    vm.firmware.lock().mark_run();
    idle(cpu::current())
}

/// Resets this CPU's vCPU to the architectural entry state and enters the guest there.
fn start(vm: &Vm, vcpu: &Vcpu, s: Start) -> ! {
    let mut frame = TrapFrame::new(s.entry, PSTATE_EL1H_DAIF_MASKED);
    frame.x[0] = s.context;
    cpu::init_guest_traps(vcpu.mpidr);
    SCTLR_EL1.set(SCTLR_EL1_RESET | if s.big_endian { SCTLR_EL1_EE } else { 0 });
    // The EL1 timers come out of reset disabled.
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    gic_cpu::reset_cpu(vcpu.pcpu);
    vm.load_stage2();
    install_fast_calls(vm, vcpu);
    log::debug!("vm{}: vcpu{} starts at {:#x}", vm.id, vcpu.index, s.entry);
    vcpu.parked.store(false, Ordering::SeqCst);
    // A system event may have stopped this vCPU after it took its start but before it
    // stopped counting as parked: check again now that the event can see it unparked.
    // Anything later is caught by the kick, taken before the first guest instruction.
    if vcpu.state() == PowerState::Stopped {
        idle(vcpu.pcpu);
    }
    boot::enter_guest(&frame, vcpu.pcpu)
}

/// The calls the hypercall fast path answers (arch::aarch64::fastpath): their answers
/// depend only on the VM's firmware registers, which are frozen once it has run.
const FAST_CALL_IDS: [u32; fastpath::FAST_CALLS] = [psci::fid::PSCI_VERSION, smccc::SMCCC_VERSION, vendor::REVISION];

/// Fills this CPU's fast-path table with what the dispatcher answers for
/// [`FAST_CALL_IDS`] in `vm`, so the fast path and the full one always agree. The
/// save/restore self-test must see every exit: it empties the table instead.
fn install_fast_calls(vm: &Vm, vcpu: &Vcpu) {
    if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
        fastpath::clear(vcpu.pcpu);
        return;
    }
    let answers = FAST_CALL_IDS.map(|fid| {
        let mut x = [0u64; 8];
        x[0] = u64::from(fid);
        let call = Call { conduit: dispatch::Conduit::Hvc, imm: 0, caller_aarch32: false, vcpu: vcpu.index, x };
        match dispatch::dispatch(&call, vm, &firmware::MachineFirmware) {
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

/// Resumes this CPU's vCPU from a powerdown state (CPU_SUSPEND, SYSTEM_SUSPEND) at the entry
/// point, in the state CPU_ON gives (DEN0022 §6.4), but keeping what this powerdown does
/// not lose: the EL1 timers (the device tree marks the timer always-on) and the pending
/// interrupt that ended the suspend, which goes into a list register now.
fn resume(vm: &Vm, vcpu: &Vcpu, s: Start) -> ! {
    let mut frame = TrapFrame::new(s.entry, PSTATE_EL1H_DAIF_MASKED);
    frame.x[0] = s.context;
    SCTLR_EL1.set(SCTLR_EL1_RESET | if s.big_endian { SCTLR_EL1_EE } else { 0 });
    gic_cpu::flush(&vm.vgic, vcpu.index, vcpu.pcpu);
    log::debug!("vm{}: vcpu{} resumes at {:#x}", vm.id, vcpu.index, s.entry);
    boot::enter_guest(&frame, vcpu.pcpu)
}

/// A physical CPU with no guest to run: idle (WFI at EL2, so QEMU can give the host core
/// away; WFE would spin, as QEMU treats it as a yield) until this CPU's vCPU is started.
/// Starting it sends the kick SGI, which ends the WFI.
pub fn idle(pcpu: usize) -> ! {
    gic_cpu::reset_cpu(pcpu);
    loop {
        // Complete kicks (and park anything routed here) so the next WFI really waits.
        gic_cpu::take_physical_interrupts(pcpu);
        let vm = CURRENT_VM[pcpu].read().clone();
        if let Some(vm) = vm {
            if let Some(vcpu) = vm.vcpu_on(pcpu) {
                vcpu.parked.store(true, Ordering::SeqCst);
                if let Some(s) = vcpu.take_start() {
                    start(&vm, vcpu, s);
                }
            }
        }
        cpu::wait_for_interrupt();
    }
}

/// Acts on one guest exit. Returning resumes the guest from `frame`.
pub fn handle_exit(frame: &mut TrapFrame, exit: Exit) {
    let pcpu = cpu::current();
    let Some(vm) = current_vm() else {
        console::print_line_unlocked(format_args!("cairn: guest exit {exit:?} on a CPU with no VM"));
        hyp::power_off()
    };
    let Some(vcpu) = vm.vcpu_on(pcpu) else { hyp::power_off() };
    // Whether this exit may have made an interrupt pending for this vCPU, so its list
    // registers need refilling. Anything another CPU makes pending for it comes with a
    // kick, a physical interrupt that makes it exit again (Exit::Interrupt) if it is not
    // already taking one; reads (of the GIC's registers too) change nothing, and a GIC
    // write only matters here when the model says it changed this vCPU's interrupts.
    let refill = match exit {
        Exit::Hypercall { conduit, imm } => hypercall(vm, vcpu, frame, conduit, imm),
        // WFE is a yield hint: with one vCPU per CPU there is nobody to yield to, so the
        // guest continues at once and its spinlock makes progress.
        Exit::WaitFor { wfe: true, len } => {
            frame.elr += len;
            false
        }
        // WFI blocks until an interrupt is pending for this vCPU, masked or not, with the
        // physical CPU idle in WFI at EL2 meanwhile.
        Exit::WaitFor { wfe: false, len } => {
            wait_for_wakeup(vm, vcpu, Wait::Halt);
            frame.elr += len;
            true
        }
        Exit::DataAbort { ipa, va, syndrome, len } => match Access::decode(ipa, syndrome).map(|access| {
            let changed = emulate_mmio(vm, vcpu, frame, &access);
            (access, changed)
        }) {
            Ok((_, Some(changed))) => {
                frame.elr += len;
                concerns(changed, vcpu)
            }
            decoded => {
                log::debug!(
                    "vm{}: vcpu{}: data abort at IPA {ipa:#x} (PC {:#x}, {decoded:?}): injecting an external abort",
                    vm.id,
                    vcpu.index,
                    frame.elr
                );
                inject::data_abort(frame, va.unwrap_or(ipa));
                false
            }
        },
        Exit::CacheMaintenance { ipa, len } => {
            // Stage 2 maps all of the guest's RAM, so the line is an emulated or absent
            // device's and was never cached: there is nothing to clean or invalidate, and
            // the instruction completes (as under KVM). An abort would kill a guest that
            // maintains caches over a buffer it believes may be a device's.
            log::debug!("vm{}: vcpu{}: cache maintenance at IPA {ipa:#x}: nothing to do", vm.id, vcpu.index);
            frame.elr += len;
            false
        }
        Exit::TableWalk { ipa, va } => {
            log::debug!(
                "vm{}: vcpu{}: page-table walk at IPA {ipa:#x}: injecting an external abort",
                vm.id,
                vcpu.index
            );
            inject::data_abort(frame, va.unwrap_or(ipa));
            false
        }
        Exit::InstructionAbort { ipa, va } => {
            if let Some(vbar) = inject::in_exception_vectors(frame.elr) {
                crash(vm, vcpu, frame.elr, Crash::VectorUnmapped { vbar });
            }
            log::debug!("vm{}: instruction fetch from IPA {ipa:#x}: injecting an external abort", vm.id);
            inject::instruction_abort(frame, va);
            false
        }
        Exit::SError { esr } => crash(vm, vcpu, frame.elr, Crash::SError { esr: esr.0 }),
        Exit::SysReg { reg, write, rt } => concerns(sysreg(vm, vcpu, frame, reg, write, rt), vcpu),
        Exit::Interrupt => {
            gic_cpu::take_physical_interrupts(pcpu);
            true
        }
        Exit::Unhandled { esr } => {
            log::debug!(
                "vm{}: vcpu{}: {} (ESR {:#x}) at PC {:#x}: injecting an undefined instruction",
                vm.id,
                vcpu.index,
                esr.class().name(),
                esr.0,
                frame.elr
            );
            inject::undefined_instruction(frame);
            false
        }
    };
    if vcpu.must_leave_guest() {
        idle(pcpu);
    }
    if refill {
        gic_cpu::flush(&vm.vgic, vcpu.index, pcpu);
    }
    if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
        save_restore_round_trip(vm, vcpu, frame);
    }
}

/// Whether a GIC write that may have changed the pending state of the vCPUs in `changed`
/// (the model's answer) may have made an interrupt pending for `vcpu`.
fn concerns(changed: VcpuSet, vcpu: &Vcpu) -> bool {
    changed & (1 << vcpu.index) != 0
}

fn kick(vm: &Vm, set: VcpuSet, me: usize) {
    if set == 0 {
        return;
    }
    for v in vm.vcpus.iter().filter(|v| set & (1 << v.index) != 0 && v.index != me) {
        wake(v);
    }
}

/// MMIO to the emulated GIC frames: returns the vCPUs whose pending state the access may
/// have changed (the others are kicked), or None for an address that is no GIC frame.
fn emulate_mmio(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, access: &Access) -> Option<VcpuSet> {
    let g = gic::get()?;
    let mut hw = PhysicalBacking(g);
    let write = access.write.then(|| access.write_value(&frame.x));
    let frames = &vm.gic_frames;
    let (value, set) = if frames.distributor.contains(access.ipa) {
        let offset = access.ipa - frames.distributor.base;
        vm.vgic.lock().dist_access(vcpu.index, offset, access.size, write, &mut hw)
    } else if let Some(r) = frames.redistributors.filter(|r| r.contains(access.ipa)) {
        vm.vgic.lock().redist_access(access.ipa - r.base, access.size, write, &mut hw)
    } else {
        return None;
    };
    if !access.write {
        access.complete_read(&mut frame.x, value);
    }
    kick(vm, set, vcpu.index);
    Some(set)
}

/// A trapped system-register access: the SGI generation registers. Returns the vCPUs an
/// SGI was made pending for (the others are kicked).
fn sysreg(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, reg: SysRegId, write: bool, rt: usize) -> VcpuSet {
    let is_sgi = reg == ICC_SGI1R_EL1 || reg == ICC_ASGI1R_EL1 || reg == ICC_SGI0R_EL1;
    if !is_sgi {
        log::debug!("vm{}: vcpu{}: trapped {reg:?}: injecting an undefined instruction", vm.id, vcpu.index);
        inject::undefined_instruction(frame);
        return 0;
    }
    let mut set = 0;
    if write {
        // Rt = 31 is XZR for MSR.
        let value = frame.x.get(rt).copied().unwrap_or(0);
        set = vm.vgic.lock().write_sgi1r(vcpu.index, value);
        kick(vm, set, vcpu.index);
    } else if let Some(r) = frame.x.get_mut(rt) {
        *r = 0; // the SGI generation registers are write-only
    }
    frame.elr += INSTRUCTION_SIZE;
    set
}

/// Makes one SMCCC call; returns whether the vCPU waited for an interrupt in it (so its
/// list registers need refilling).
fn hypercall(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, conduit: dispatch::Conduit, imm: u16) -> bool {
    let mut x = [0u64; 8];
    x.copy_from_slice(&frame.x[..8]);
    let call = Call { conduit, imm, caller_aarch32: frame.caller_is_aarch32(), vcpu: vcpu.index, x };
    match dispatch::dispatch(&call, vm, &firmware::MachineFirmware) {
        Outcome::Return(results) => {
            // The one place result registers are written back.
            frame.x[..results.registers().len()].copy_from_slice(results.registers());
            false
        }
        Outcome::CpuOff => {
            log::debug!("vm{}: vcpu{} off (PSCI CPU_OFF)", vm.id, vcpu.index);
            vcpu.power_off();
            // CPU_OFF never returns (DEN0022 §5.5): even if a CPU_ON lands before this CPU
            // parks, the vCPU leaves through idle, which takes that start.
            idle(vcpu.pcpu);
        }
        Outcome::CpuSuspend(Suspend::Standby) => {
            wait_for_wakeup(vm, vcpu, Wait::Halt);
            frame.x[0] = ret::SUCCESS as u64;
            true
        }
        Outcome::CpuSuspend(Suspend::Powerdown { entry, context }) => {
            if wait_for_wakeup(vm, vcpu, Wait::Suspend) != Wakeup::Stopped {
                // Context is lost in a powerdown state: resume at the entry point in the
                // state CPU_ON gives (DEN0022 §5.4.3 and §6.4).
                resume(vm, vcpu, Start { entry, context, big_endian: caller_big_endian() });
            }
            true // stopped: it leaves through idle
        }
        Outcome::SystemSuspend { entry, context } => {
            vm.record(SystemEvent::Suspend { vcpu: vcpu.index, entry });
            let woken = wait_for_wakeup(vm, vcpu, Wait::Suspend);
            if let Wakeup::Interrupt(intid) = woken {
                vm.record(SystemEvent::Wakeup { vcpu: vcpu.index, intid, entry });
            }
            if woken != Wakeup::Stopped {
                // The system comes back as from a cold boot of this vCPU: CPU_ON state at
                // the entry point (DEN0022 §5.19.1).
                resume(vm, vcpu, Start { entry, context, big_endian: caller_big_endian() });
            }
            true // stopped: it leaves through idle
        }
        Outcome::SystemOff => stop_vm(vm, vcpu, SystemEvent::Shutdown { vcpu: vcpu.index }),
        Outcome::SystemReset => system_reset(vm, vcpu, SystemEvent::Reset { vcpu: vcpu.index }),
        Outcome::SystemReset2 { reset_type, cookie } => {
            system_reset(vm, vcpu, SystemEvent::Reset2 { vcpu: vcpu.index, reset_type, cookie })
        }
    }
}

/// What ended a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wakeup {
    /// A virtual interrupt is pending for the vCPU (its INTID).
    Interrupt(u32),
    /// A wake-up event that is not an interrupt: a CPU_ON aimed at the suspended vCPU.
    Request,
    /// The vCPU was stopped (CPU_OFF is not possible here, so: a system event).
    Stopped,
}

/// Blocks this vCPU, HALTED (WFI, standby) or SUSPENDED (powerdown) per `how`, its physical
/// CPU idle in WFI at EL2 meanwhile, until a wake-up event: a virtual interrupt pending
/// for it (masked or not, as WFI wakes on hardware), a CPU_ON aimed at it while suspended,
/// or a stop. A level-sensitive forwarded interrupt whose line dropped before the guest
/// took it is no longer pending: `pending_interrupt` retires it before answering.
fn wait_for_wakeup(vm: &Vm, vcpu: &Vcpu, how: Wait) -> Wakeup {
    let pcpu = vcpu.pcpu;
    if !vcpu.with_power(|p| p.begin_wait(how)) {
        return Wakeup::Stopped;
    }
    if SAVE_RESTORE_SELFTEST.load(Ordering::Relaxed) {
        mp_state_round_trip(vcpu);
    }
    loop {
        gic_cpu::take_physical_interrupts(pcpu);
        let pending = gic_cpu::pending_interrupt(&vm.vgic, vcpu.index, pcpu);
        {
            let mut p = vcpu.power.lock();
            // (end_wait leaves must_leave_guest as it was: no republish needed.)
            if p.state() == PowerState::Stopped {
                return Wakeup::Stopped;
            }
            let woken = pending.map(Wakeup::Interrupt).or_else(|| p.wake_requested().then_some(Wakeup::Request));
            if let Some(w) = woken {
                p.end_wait();
                return w;
            }
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
        wake(v);
    }
    for v in vm.vcpus.iter().filter(|v| v.index != me.index) {
        while !v.parked.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
    me.power_off();
}

/// Another vCPU's system event is under way and will stop this one: waiting for its lock
/// here would deadlock with it waiting for this vCPU to park. Stop now instead.
fn yield_to_event(vcpu: &Vcpu) -> ! {
    vcpu.power_off();
    idle(vcpu.pcpu)
}

/// SYSTEM_OFF, or a crash: every vCPU of the VM stops, the event is recorded, then the
/// VM is gone; the machine powers off with the last VM.
fn stop_vm(vm: &Vm, vcpu: &Vcpu, event: SystemEvent) -> ! {
    let Some(_event) = vm.event_lock.try_lock() else { yield_to_event(vcpu) };
    stop_others(vm, vcpu);
    vm.record(event);
    log::info!("vm{}: {}", vm.id, vm.epitaph());
    if vm::destroy(vm) == 0 {
        log::info!("no VM left: powering the machine off");
        hyp::power_off();
    }
    idle(vcpu.pcpu)
}

/// A guest fault Cairn cannot hand back to the guest: the VM stops with a crash event
/// rather than looping through the same fault forever.
fn crash(vm: &Vm, vcpu: &Vcpu, pc: u64, why: Crash) -> ! {
    stop_vm(vm, vcpu, SystemEvent::Crash { vcpu: vcpu.index, pc, why })
}

/// PSCI SYSTEM_RESET: every vCPU stops; the VM's images, device tree and interrupt state
/// go back to how they were at creation; the boot vCPU starts again.
fn system_reset(vm: &Vm, vcpu: &Vcpu, event: SystemEvent) -> ! {
    {
        let Some(_event) = vm.event_lock.try_lock() else { yield_to_event(vcpu) };
        stop_others(vm, vcpu);
        vm.record(event);
        gic_cpu::reset_cpu(vcpu.pcpu);
        vm.reset_vgic();
        vm.restore_images();
        let boot = &vm.vcpus[0];
        boot.restart(vm.boot_start());
        vm.halting.store(false, Ordering::SeqCst);
        wake(boot);
    }
    idle(vcpu.pcpu)
}

/// `selftest=save-restore`: every exit saves the whole vCPU, scrambles what was saved on
/// the hardware, and restores it through the wire form; every wait round-trips the MP
/// state. A guest that runs to its end under it has observed nothing of the round trips.
pub static SAVE_RESTORE_SELFTEST: AtomicBool = AtomicBool::new(false);
/// What the self-test writes over the saved registers before restoring them.
const SCRAMBLE: u64 = 0xDEAD_BEEF_0BAD_F00D;

/// The complete state of this CPU's vCPU, which is stopped at an exit with its context in
/// `frame` and the hardware.
pub fn save(vm: &Vm, vcpu: &Vcpu, frame: &TrapFrame) -> VcpuState {
    let lrs = gic::get().map_or(0, |g| g.list_registers());
    let mut s = VcpuState::empty(lrs);
    s.x = frame.x;
    s.pc = frame.elr;
    s.pstate = frame.spsr;
    s.sys = context::read_sysregs();
    if let Some(g) = gic::get() {
        s.vgic = g.save_cpu_interface();
    }
    s.private = vm.vgic.lock().save_private(vcpu.index);
    (s.power, s.start) = vcpu.power.lock().save();
    s.firmware = vm.firmware_regs(|regs| regs.save());
    s
}

/// Loads a saved state into this CPU's vCPU: its registers into `frame` and the hardware,
/// its MP state as it was (a STOPPED or SUSPENDED vCPU stays so).
pub fn restore(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, s: &VcpuState) -> Result<(), fwregs::Error> {
    restore_registers(vm, frame, s)?;
    vm.vgic.lock().restore_private(vcpu.index, &s.private);
    vcpu.with_power(|p| p.restore(s.power, s.start));
    Ok(())
}

/// What of a saved state only this CPU touches (firmware registers aside, which are
/// frozen once the VM runs): general and system registers, the virtual CPU interface.
fn restore_registers(vm: &Vm, frame: &mut TrapFrame, s: &VcpuState) -> Result<(), fwregs::Error> {
    vm.firmware_regs(|regs| regs.restore(&s.firmware))?;
    frame.x = s.x;
    frame.elr = s.pc;
    frame.spsr = s.pstate;
    context::write_sysregs(&s.sys);
    if let Some(g) = gic::get() {
        g.restore_cpu_interface(&s.vgic);
    }
    Ok(())
}

fn save_restore_round_trip(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    let saved = save(vm, vcpu, frame);
    let wire = saved.to_registers();
    // Scramble everything the state covers, so a register the restore missed shows.
    frame.x = [SCRAMBLE; 31];
    frame.elr = SCRAMBLE;
    context::write_sysregs(&[SCRAMBLE & !1; crate::vcpu::saved::SYSREGS]);
    if let Some(g) = gic::get() {
        g.clear_lrs();
    }
    let back = VcpuState::from_registers(&wire, saved.vgic.lrs.len());
    match back {
        Ok(back) if back == saved => {
            // The MP state and the distributor model's private interrupts go through
            // their own round trips, each under its lock: other CPUs change them
            // meanwhile (a system event stopping this vCPU, an SGI raised for it), and
            // restoring the copy saved above would undo that.
            mp_state_round_trip(vcpu);
            private_interrupts_round_trip(vm, vcpu);
            if let Err(e) = restore_registers(vm, frame, &back) {
                log::error!("vm{}: vcpu{}: restore refused: {e:?}", vm.id, vcpu.index);
            }
        }
        other => log::error!("vm{}: vcpu{}: saved state did not parse back: {other:?}", vm.id, vcpu.index),
    }
}

/// The vCPU's private interrupts in the distributor model through save, scramble and
/// restore, all under the model's lock.
fn private_interrupts_round_trip(vm: &Vm, vcpu: &Vcpu) {
    let mut vgic = vm.vgic.lock();
    let saved = vgic.save_private(vcpu.index);
    vgic.restore_private(vcpu.index, &[0; crate::vcpu::saved::PRIVATE_ENTRIES]);
    vgic.restore_private(vcpu.index, &saved);
    if vgic.save_private(vcpu.index) != saved {
        log::error!("vm{}: vcpu{}: private interrupts did not round-trip", vm.id, vcpu.index);
    }
}

/// A waiting vCPU's MP state through save and restore: it must stay HALTED or SUSPENDED.
fn mp_state_round_trip(vcpu: &Vcpu) {
    vcpu.with_power(|p| {
        let (state, start) = p.save();
        p.power_off();
        p.restore(state, start);
        if p.save() != (state, start) {
            log::error!("vcpu{}: MP state {state:?} came back as {:?}", vcpu.index, p.state());
        }
    });
}
