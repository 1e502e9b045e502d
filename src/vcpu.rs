//! Virtual CPUs: their power state, where they run, and what happens on each exit.
//!
//! Every vCPU is pinned 1:1 to a physical CPU. The arch layer hands each trap over as an
//! [`Exit`]; the policy for it lives here. A vCPU's power state changes only under its own
//! lock, and a vCPU (re)starts only on its own physical CPU.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, CNTP_CTL_EL0, CNTV_CTL_EL0, SCTLR_EL1};

use crate::arch::aarch64::boot::{self, MAX_CPUS};
use crate::arch::aarch64::exit::{Exit, SysRegId, ICC_ASGI1R_EL1, ICC_SGI0R_EL1, ICC_SGI1R_EL1};
use crate::arch::aarch64::gic::{self, PhysicalBacking};
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::{cpu, firmware, inject};
use crate::mmio::Access;
use crate::psci::{ret, Suspend};
use crate::smccc::dispatch::{self, Call, Outcome};
use crate::vgic::dist::VcpuSet;
use crate::vgic::runtime;
use crate::vm::{self, Vm};
use crate::{console, hyp};

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

/// A vCPU's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Runs guest code, or will as soon as its physical CPU picks up a pending start.
    Runnable,
    /// Off: CPU_OFF, never started, or stopped by a system event.
    Stopped,
}

/// Where a start (CPU_ON, a reset) sends the vCPU.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    pub entry: u64,
    pub context: u64,
    /// SCTLR_EL1.EE for the started vCPU: CPU_ON gives the caller's (DEN0022 §6.4).
    pub big_endian: bool,
}

struct Power {
    state: PowerState,
    start: Option<Start>,
}

pub struct Vcpu {
    pub index: usize,
    /// The MPIDR affinity the guest sees (VMPIDR_EL2).
    pub mpidr: u64,
    /// The physical CPU (logical number) it is pinned to.
    pub pcpu: usize,
    power: spin::Mutex<Power>,
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
            power: spin::Mutex::new(Power { state: PowerState::Stopped, start: None }),
            parked: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> PowerState {
        self.power.lock().state
    }

    /// CPU_ON: a stopped vCPU becomes RUNNABLE at once (so AFFINITY_INFO reports ON and a
    /// racing CPU_ON gets ALREADY_ON), and starts at `entry` when its CPU picks it up.
    ///
    /// `halting` is the VM's system-event flag: once a system event has begun, no vCPU
    /// may start (checked under this vCPU's lock, so a racing CPU_ON either lands before
    /// the event stops this vCPU, or sees the flag).
    pub fn power_on(&self, start: Start, halting: &AtomicBool) -> Result<(), i64> {
        let mut p = self.power.lock();
        if halting.load(Ordering::SeqCst) {
            return Err(ret::INTERNAL_FAILURE);
        }
        if p.state != PowerState::Stopped {
            return Err(ret::ALREADY_ON);
        }
        p.state = PowerState::Runnable;
        p.start = Some(start);
        Ok(())
    }

    /// Stops the vCPU; it leaves the guest at its next exit.
    pub fn power_off(&self) {
        let mut p = self.power.lock();
        p.state = PowerState::Stopped;
        p.start = None;
    }

    /// Whether the guest context on this CPU is finished: the vCPU was stopped, or a start
    /// (CPU_ON, a reset) is waiting to replace it. Either way it leaves through idle.
    fn must_leave_guest(&self) -> bool {
        let p = self.power.lock();
        p.state == PowerState::Stopped || p.start.is_some()
    }

    fn take_start(&self) -> Option<Start> {
        let mut p = self.power.lock();
        match p.state {
            PowerState::Runnable => p.start.take(),
            PowerState::Stopped => None,
        }
    }
}

/// The VM whose vCPU runs on each physical CPU.
static CURRENT_VM: [spin::RwLock<Option<Arc<Vm>>>; MAX_CPUS] = [const { spin::RwLock::new(None) }; MAX_CPUS];

fn current_vm() -> Option<Arc<Vm>> {
    CURRENT_VM.get(cpu::current())?.read().clone()
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
        *CURRENT_VM[v.pcpu].write() = Some(vm.clone());
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
    runtime::reset_cpu(vcpu.pcpu);
    vm.load_stage2();
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

/// Resumes this CPU's vCPU from a powerdown state (CPU_SUSPEND, SYSTEM_SUSPEND) at the entry
/// point, in the state CPU_ON gives (DEN0022 §6.4), but keeping what this powerdown does
/// not lose: the EL1 timers (the device tree marks the timer always-on) and the pending
/// interrupt that ended the suspend, which goes into a list register now.
fn resume(vm: &Vm, vcpu: &Vcpu, s: Start) -> ! {
    let mut frame = TrapFrame::new(s.entry, PSTATE_EL1H_DAIF_MASKED);
    frame.x[0] = s.context;
    SCTLR_EL1.set(SCTLR_EL1_RESET | if s.big_endian { SCTLR_EL1_EE } else { 0 });
    runtime::flush(&vm.vgic, vcpu.index, vcpu.pcpu);
    log::debug!("vm{}: vcpu{} resumes at {:#x}", vm.id, vcpu.index, s.entry);
    boot::enter_guest(&frame, vcpu.pcpu)
}

/// A physical CPU with no guest to run: idle (WFI at EL2, so QEMU can give the host core
/// away; WFE would spin, as QEMU treats it as a yield) until this CPU's vCPU is started.
/// Starting it sends the kick SGI, which ends the WFI.
pub fn idle(pcpu: usize) -> ! {
    runtime::reset_cpu(pcpu);
    loop {
        // Complete kicks (and park anything routed here) so the next WFI really waits.
        runtime::take_physical_interrupts(pcpu);
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
    match exit {
        Exit::Hypercall { conduit, imm } => hypercall(&vm, vcpu, frame, conduit, imm),
        // WFE is a yield hint: with one vCPU per CPU there is nobody to yield to, so the
        // guest continues at once and its spinlock makes progress.
        Exit::WaitFor { wfe: true, len } => frame.elr += len,
        // WFI blocks until an interrupt is pending for this vCPU, masked or not, with the
        // physical CPU idle in WFI at EL2 meanwhile.
        Exit::WaitFor { wfe: false, len } => {
            wait_for_interrupt(&vm, vcpu);
            frame.elr += len;
        }
        Exit::DataAbort { ipa, va, syndrome, len } => match Access::decode(ipa, syndrome) {
            Ok(access) if emulate_mmio(&vm, vcpu, frame, &access) => frame.elr += len,
            decoded => {
                log::debug!(
                    "vm{}: vcpu{}: data abort at IPA {ipa:#x} (PC {:#x}, {decoded:?}): injecting an external abort",
                    vm.id,
                    vcpu.index,
                    frame.elr
                );
                inject::data_abort(frame, va.unwrap_or(ipa));
            }
        },
        Exit::InstructionAbort { ipa, va } => {
            log::debug!("vm{}: instruction fetch from IPA {ipa:#x}: injecting an external abort", vm.id);
            inject::instruction_abort(frame, va);
        }
        Exit::SysReg { reg, write, rt } => sysreg(&vm, vcpu, frame, reg, write, rt),
        Exit::Interrupt => runtime::take_physical_interrupts(pcpu),
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
        }
    }
    if vcpu.must_leave_guest() {
        idle(pcpu);
    }
    runtime::flush(&vm.vgic, vcpu.index, pcpu);
}

fn kick(vm: &Vm, set: VcpuSet, me: usize) {
    for v in vm.vcpus.iter().filter(|v| set & (1 << v.index) != 0 && v.index != me) {
        wake(v);
    }
}

/// MMIO to the emulated GIC frames. Returns false for anything else.
fn emulate_mmio(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, access: &Access) -> bool {
    let Some(g) = gic::get() else { return false };
    let mut hw = PhysicalBacking(g);
    let write = access.write.then(|| access.write_value(&frame.x));
    let frames = vm.gic_frames;
    let (value, set) = if frames.distributor.contains(access.ipa) {
        let offset = access.ipa - frames.distributor.base;
        vm.vgic.lock().dist_access(vcpu.index, offset, access.size, write, &mut hw)
    } else if let Some(r) = frames.redistributors.filter(|r| r.contains(access.ipa)) {
        vm.vgic.lock().redist_access(access.ipa - r.base, access.size, write, &mut hw)
    } else {
        return false;
    };
    if !access.write {
        access.complete_read(&mut frame.x, value);
    }
    kick(vm, set, vcpu.index);
    true
}

fn sysreg(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, reg: SysRegId, write: bool, rt: usize) {
    let is_sgi = reg == ICC_SGI1R_EL1 || reg == ICC_ASGI1R_EL1 || reg == ICC_SGI0R_EL1;
    if !is_sgi {
        log::debug!("vm{}: vcpu{}: trapped {reg:?}: injecting an undefined instruction", vm.id, vcpu.index);
        inject::undefined_instruction(frame);
        return;
    }
    if write {
        // Rt = 31 is XZR for MSR.
        let value = frame.x.get(rt).copied().unwrap_or(0);
        let set = vm.vgic.lock().write_sgi1r(vcpu.index, value);
        kick(vm, set, vcpu.index);
    } else if let Some(r) = frame.x.get_mut(rt) {
        *r = 0; // the SGI generation registers are write-only
    }
    frame.elr += INSTRUCTION_SIZE;
}

fn hypercall(vm: &Arc<Vm>, vcpu: &Vcpu, frame: &mut TrapFrame, conduit: dispatch::Conduit, imm: u16) {
    let mut x = [0u64; 8];
    x.copy_from_slice(&frame.x[..8]);
    let call = Call { conduit, imm, caller_aarch32: frame.caller_is_aarch32(), vcpu: vcpu.index, x };
    match dispatch::dispatch(&call, vm.as_ref(), &firmware::MachineFirmware) {
        Outcome::Return(results) => {
            // The one place result registers are written back.
            frame.x[..results.registers().len()].copy_from_slice(results.registers());
        }
        Outcome::CpuOff => {
            log::debug!("vm{}: vcpu{} off (PSCI CPU_OFF)", vm.id, vcpu.index);
            vcpu.power_off();
            // CPU_OFF never returns (DEN0022 §5.5): even if a CPU_ON lands before this CPU
            // parks, the vCPU leaves through idle, which takes that start.
            idle(vcpu.pcpu);
        }
        Outcome::CpuSuspend(Suspend::Standby) => {
            wait_for_interrupt(vm, vcpu);
            frame.x[0] = ret::SUCCESS as u64;
        }
        Outcome::CpuSuspend(Suspend::Powerdown { entry, context }) => {
            wait_for_interrupt(vm, vcpu);
            if vcpu.state() == PowerState::Runnable {
                // Context is lost in a powerdown state: resume at the entry point in the
                // state CPU_ON gives (DEN0022 §5.4.3 and §6.4).
                resume(vm, vcpu, Start { entry, context, big_endian: caller_big_endian() });
            }
        }
        Outcome::SystemSuspend { entry, context } => {
            log::info!("vm{}: system event: suspend (PSCI SYSTEM_SUSPEND from vcpu{})", vm.id, vcpu.index);
            let woken_by = wait_for_interrupt(vm, vcpu);
            log::info!(
                "vm{}: system event: wakeup by interrupt {} (vcpu{} resumes at {entry:#x})",
                vm.id,
                woken_by.map_or(-1, i64::from),
                vcpu.index
            );
            if vcpu.state() == PowerState::Runnable {
                // The system comes back as from a cold boot of this vCPU: CPU_ON state at
                // the entry point (DEN0022 §5.19.1).
                resume(vm, vcpu, Start { entry, context, big_endian: caller_big_endian() });
            }
        }
        Outcome::SystemOff => system_off(vm, vcpu),
        Outcome::SystemReset => system_reset(vm, vcpu, "reset (PSCI SYSTEM_RESET)"),
        Outcome::SystemReset2 { reset_type, cookie } => {
            let what = alloc::format!("reset2 (PSCI SYSTEM_RESET2 type {reset_type:#x} cookie {cookie:#x})");
            system_reset(vm, vcpu, &what)
        }
    }
}

/// Blocks this vCPU, its physical CPU idle in WFI at EL2, until a virtual interrupt is
/// pending for it (masked or not, as WFI wakes on hardware) or it is stopped.
/// Returns the INTID that woke it, or None if it was stopped.
fn wait_for_interrupt(vm: &Vm, vcpu: &Vcpu) -> Option<u32> {
    let pcpu = vcpu.pcpu;
    loop {
        runtime::take_physical_interrupts(pcpu);
        if vcpu.state() == PowerState::Stopped {
            return None;
        }
        if let Some(intid) = runtime::pending_interrupt(&vm.vgic, vcpu.index, pcpu) {
            return Some(intid);
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

/// PSCI SYSTEM_OFF: every vCPU of the VM stops, then the VM is gone; the machine powers
/// off with the last VM.
fn system_off(vm: &Arc<Vm>, vcpu: &Vcpu) -> ! {
    let Some(_event) = vm.event_lock.try_lock() else { yield_to_event(vcpu) };
    stop_others(vm, vcpu);
    log::info!("vm{}: system event: shutdown (PSCI SYSTEM_OFF from vcpu{})", vm.id, vcpu.index);
    if vm::destroy(vm) == 0 {
        log::info!("no VM left: powering the machine off");
        hyp::power_off();
    }
    idle(vcpu.pcpu)
}

/// PSCI SYSTEM_RESET: every vCPU stops; the VM's images, device tree and interrupt state
/// go back to how they were at creation; the boot vCPU starts again.
fn system_reset(vm: &Arc<Vm>, vcpu: &Vcpu, what: &str) -> ! {
    {
        let Some(_event) = vm.event_lock.try_lock() else { yield_to_event(vcpu) };
        stop_others(vm, vcpu);
        log::info!("vm{}: system event: {what} from vcpu{}", vm.id, vcpu.index);
        runtime::reset_cpu(vcpu.pcpu);
        vm.reset_vgic();
        vm.restore_images();
        let boot = &vm.vcpus[0];
        vm.halting.store(false, Ordering::SeqCst);
        let _ = boot.power_on(vm.boot_start(), &vm.halting);
        wake(boot);
    }
    idle(vcpu.pcpu)
}
