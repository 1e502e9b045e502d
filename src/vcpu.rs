//! Virtual CPUs: their power state, where they run, and what happens on each exit.
//!
//! Every vCPU is pinned 1:1 to a physical CPU. The arch layer hands each trap over as an
//! [`Exit`]; the policy for it lives here.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::registers::{Writeable, SCTLR_EL1};

use crate::arch::aarch64::boot::{self, MAX_CPUS};
use crate::arch::aarch64::exit::Exit;
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::{cpu, inject};
use crate::smccc::dispatch::{self, Call, Outcome};
use crate::vm::{self, Vm};
use crate::{console, hyp};

/// PSTATE for a vCPU entering the guest: EL1h with D, A, I and F masked (booting.rst, and
/// DEN0022 §6.4 for CPU_ON).
const PSTATE_EL1H_DAIF_MASKED: u64 = 0x3C5;
/// SCTLR_EL1 at warm reset: the RES1 bits of ARMv8.0 (29, 28, 23, 22, 20, 11) with the
/// MMU, caches and alignment checks off.
const SCTLR_EL1_RESET: u64 = 0x30D0_0800;

/// A vCPU's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    Runnable = 0,
    Stopped = 1,
}

pub struct Vcpu {
    pub index: usize,
    /// The MPIDR affinity the guest sees (VMPIDR_EL2).
    pub mpidr: u64,
    /// The physical CPU (logical number) it is pinned to.
    pub pcpu: usize,
    state: AtomicU8,
}

impl Vcpu {
    pub fn new(index: usize, mpidr: u64, pcpu: usize) -> Self {
        let state = if index == 0 { PowerState::Runnable } else { PowerState::Stopped };
        Vcpu { index, mpidr, pcpu, state: AtomicU8::new(state as u8) }
    }

    pub fn state(&self) -> PowerState {
        match self.state.load(Ordering::Acquire) {
            0 => PowerState::Runnable,
            _ => PowerState::Stopped,
        }
    }

    pub fn set_state(&self, state: PowerState) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// The VM whose vCPU runs on each physical CPU.
static CURRENT_VM: [spin::RwLock<Option<Arc<Vm>>>; MAX_CPUS] = [const { spin::RwLock::new(None) }; MAX_CPUS];

fn current_vm() -> Option<Arc<Vm>> {
    CURRENT_VM.get(cpu::current())?.read().clone()
}

/// Starts the boot vCPU (vCPU 0) of `vm` on this, the boot CPU, and hands every other
/// vCPU its physical CPU.
pub fn run_boot_vcpu(vm: Arc<Vm>) -> ! {
    for v in &vm.vcpus {
        *CURRENT_VM[v.pcpu].write() = Some(vm.clone());
    }
    cpu::send_event();
    let mut frame = TrapFrame::new(vm.entry, PSTATE_EL1H_DAIF_MASKED);
    // booting.rst: x0 = device tree address, x1-x3 = 0.
    frame.x[0] = vm.dtb;
    enter(&vm, 0, &frame)
}

fn enter(vm: &Vm, vcpu: usize, frame: &TrapFrame) -> ! {
    cpu::init_guest_traps(vm.vcpus[vcpu].mpidr);
    SCTLR_EL1.set(SCTLR_EL1_RESET);
    vm.load_stage2();
    boot::enter_guest(frame, cpu::current())
}

/// A secondary CPU's life: idle (WFE at EL2) until its vCPU is started.
pub fn idle_until_started(pcpu: usize) -> ! {
    loop {
        cpu::wait_for_event();
        let vm = CURRENT_VM[pcpu].read().clone();
        if let Some(vm) = vm {
            let runnable = vm.vcpus.iter().any(|v| v.pcpu == pcpu && v.state() == PowerState::Runnable);
            if runnable {
                log::debug!("vCPU on cpu{pcpu} started");
            }
        }
    }
}

/// Acts on one guest exit. Returning resumes the guest from `frame`.
pub fn handle_exit(frame: &mut TrapFrame, exit: Exit) {
    let Some(vm) = current_vm() else {
        // An exit with no VM on this CPU cannot happen; report it as a Cairn fault.
        console::print_line_unlocked(format_args!("cairn: guest exit {exit:?} on a CPU with no VM"));
        hyp::power_off()
    };
    match exit {
        Exit::Hypercall { conduit, imm } => hypercall(&vm, frame, conduit, imm),
        Exit::WaitFor { .. } => frame.elr += 4,
        Exit::DataAbort { ipa, va, .. } => {
            log::debug!("vm{}: data abort at IPA {ipa:#x} (PC {:#x}): injecting an external abort", vm.id, frame.elr);
            inject::data_abort(frame, va.unwrap_or(ipa));
        }
        Exit::InstructionAbort { ipa, va } => {
            log::debug!("vm{}: instruction fetch from IPA {ipa:#x}: injecting an external abort", vm.id);
            inject::instruction_abort(frame, va);
        }
        Exit::Interrupt => {}
        Exit::Unhandled { esr } => {
            log::debug!(
                "vm{}: {} (ESR {:#x}) at PC {:#x}: injecting an undefined instruction",
                vm.id,
                esr.class().name(),
                esr.0,
                frame.elr
            );
            inject::undefined_instruction(frame);
        }
    }
}

fn hypercall(vm: &Arc<Vm>, frame: &mut TrapFrame, conduit: dispatch::Conduit, imm: u16) {
    let mut x = [0u64; 8];
    x.copy_from_slice(&frame.x[..8]);
    let call = Call { conduit, imm, caller_aarch32: frame.caller_is_aarch32(), x };
    match dispatch::dispatch(&call, vm.as_ref()) {
        Outcome::Return(results) => {
            // The one place result registers are written back.
            frame.x[..results.registers().len()].copy_from_slice(results.registers());
        }
        Outcome::SystemOff => system_off(vm),
    }
}

/// PSCI SYSTEM_OFF: every vCPU of the VM stops, then the VM is gone; the machine powers off
/// with the last VM.
fn system_off(vm: &Arc<Vm>) -> ! {
    for v in &vm.vcpus {
        v.set_state(PowerState::Stopped);
    }
    log::info!("vm{}: system event: shutdown (PSCI SYSTEM_OFF from vcpu on cpu{})", vm.id, cpu::current());
    if vm::destroy(vm) == 0 {
        log::info!("no VM left: powering the machine off");
        hyp::power_off();
    }
    idle_until_started(cpu::current())
}
