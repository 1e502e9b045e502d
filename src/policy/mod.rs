//! The exit policy: for each [`Exit`] of a vCPU, the one [`Action`] the run loop
//! (`crate::run`) carries out. It changes the VM's models (the distributor, power states through the dispatcher)
//! and kicks the vCPUs an exit concerns, but never enters or leaves the guest itself.

pub mod action;

use crate::arch::aarch64::access::MmioAccess;
use crate::arch::aarch64::exit::{
    Conduit, Exit, SysRegId, ICC_ASGI1R_EL1, ICC_SGI0R_EL1, ICC_SGI1R_EL1, VECTOR_TABLE_SIZE,
};
use crate::arch::aarch64::frame::TrapFrame;
use crate::event::{Crash, SystemEvent};
use crate::hw::{Hardware, Hw};
use crate::smccc::call::{Call, Outcome};
use crate::smccc::dispatch;
use crate::smccc::psci::{ret, Suspend};
use crate::vcpu::{Start, Vcpu};
use crate::verdict::OnReset;
use crate::vgic::dist::VcpuSet;
use crate::vm::Vm;
use action::{Action, Injection, Resume, Writes};

/// Decides what one exit of `vcpu`, whose registers are in `frame`, comes to.
#[inline(always)]
pub fn on_exit(vm: &Vm, vcpu: &Vcpu, frame: &TrapFrame, exit: Exit) -> Action {
    match exit {
        Exit::Hypercall { conduit, imm } => hypercall(vm, vcpu, frame, conduit, imm),
        // WFE is a yield hint: with one vCPU per CPU there is nobody to yield to, so the
        // guest continues at once and its spinlock makes progress.
        Exit::WaitFor { wfe: true, .. } => Action::Resume(Resume::STEP),
        // WFI blocks until an interrupt is pending for this vCPU, masked or not.
        Exit::WaitFor { wfe: false, .. } => Action::Halt { then: Writes::NONE },
        Exit::Mmio { access, va, .. } => match emulate_mmio(vm, vcpu, &access) {
            Some(resume) => Action::Resume(resume),
            None => {
                log::debug!(
                    "vm{}: vcpu{}: access to IPA {:#x} (PC {:#x}): no device there: injecting an external abort",
                    vm.id,
                    vcpu.index,
                    access.ipa,
                    frame.elr
                );
                Action::Inject(Injection::DataAbort { far: va.unwrap_or(access.ipa) })
            }
        },
        Exit::UndecodableAccess { ipa, va } => {
            log::debug!(
                "vm{}: vcpu{}: access to IPA {ipa:#x} without syndrome (PC {:#x}): injecting an external abort",
                vm.id,
                vcpu.index,
                frame.elr
            );
            Action::Inject(Injection::DataAbort { far: va.unwrap_or(ipa) })
        }
        Exit::CacheMaintenance { ipa, .. } => {
            // Stage 2 maps all of the guest's RAM, so the line is an emulated or absent
            // device's and was never cached: there is nothing to clean or invalidate, and
            // the instruction completes (as under KVM). An abort would kill a guest that
            // maintains caches over a buffer it believes may be a device's.
            log::debug!("vm{}: vcpu{}: cache maintenance at IPA {ipa:#x}: nothing to do", vm.id, vcpu.index);
            Action::Resume(Resume::STEP)
        }
        Exit::TableWalk { ipa, va } => {
            log::debug!(
                "vm{}: vcpu{}: page-table walk at IPA {ipa:#x}: injecting an external abort",
                vm.id,
                vcpu.index
            );
            Action::Inject(Injection::DataAbort { far: va.unwrap_or(ipa) })
        }
        Exit::InstructionAbort { ipa, va } => {
            // A fetch fault in the guest's own exception vectors would fault again on every
            // exception it takes: the VM cannot go on.
            let vbar = Hw::guest_vector_base();
            if frame.elr.wrapping_sub(vbar) < VECTOR_TABLE_SIZE {
                let crash = Crash::VectorUnmapped { vbar };
                return Action::StopVm(SystemEvent::Crash { vcpu: vcpu.index, pc: frame.elr, why: crash });
            }
            log::debug!("vm{}: instruction fetch from IPA {ipa:#x}: injecting an external abort", vm.id);
            Action::Inject(Injection::InstructionAbort { far: va })
        }
        Exit::SError { esr } => {
            let crash = Crash::SError { esr: esr.0 };
            Action::StopVm(SystemEvent::Crash { vcpu: vcpu.index, pc: frame.elr, why: crash })
        }
        Exit::SysReg { reg, rt, write } => sysreg(vm, vcpu, reg, rt, write),
        Exit::Interrupt => Action::TakeInterrupts,
        Exit::Unhandled { esr } => {
            log::debug!(
                "vm{}: vcpu{}: {} (ESR {:#x}) at PC {:#x}: injecting an undefined instruction",
                vm.id,
                vcpu.index,
                esr.class().name(),
                esr.0,
                frame.elr
            );
            Action::Inject(Injection::Undefined)
        }
    }
}

/// Whether a GIC write that may have changed the pending state of the vCPUs in `changed`
/// (the model's answer) may have made an interrupt pending for `vcpu`.
fn concerns(changed: VcpuSet, vcpu: &Vcpu) -> bool {
    changed & (1 << vcpu.index) != 0
}

#[inline(always)]
fn kick(vm: &Vm, set: VcpuSet, me: usize) {
    if set == 0 {
        return;
    }
    kick_others(vm, set, me);
}

#[inline(never)]
fn kick_others(vm: &Vm, set: VcpuSet, me: usize) {
    for v in vm.vcpus.iter().filter(|v| set & (1 << v.index) != 0 && v.index != me) {
        vm.wake(v);
    }
}

/// An access to one of the VM's emulated devices: None where the VM has no device.
#[inline(always)]
fn emulate_mmio(vm: &Vm, vcpu: &Vcpu, access: &MmioAccess) -> Option<Resume> {
    let (offset, device) = vm.devices.find(access.ipa)?;
    let done = device.access(vcpu.index, offset, access);
    kick(vm, done.changed, vcpu.index);
    let writes = if access.write.is_some() { Writes::NONE } else { Writes::one(access.load_result(done.value)) };
    Some(Resume { writes, step: true, refill: concerns(done.changed, vcpu) })
}

/// A trapped system-register access: the SGI generation registers; anything else is
/// undefined.
fn sysreg(vm: &Vm, vcpu: &Vcpu, reg: SysRegId, rt: usize, write: Option<u64>) -> Action {
    let is_sgi = reg == ICC_SGI1R_EL1 || reg == ICC_ASGI1R_EL1 || reg == ICC_SGI0R_EL1;
    if !is_sgi {
        log::debug!("vm{}: vcpu{}: trapped {reg:?}: injecting an undefined instruction", vm.id, vcpu.index);
        return Action::Inject(Injection::Undefined);
    }
    match write {
        Some(value) => {
            let set = vm.vgic.lock().write_sgi1r(vcpu.index, value);
            kick(vm, set, vcpu.index);
            Action::Resume(Resume { writes: Writes::NONE, step: true, refill: concerns(set, vcpu) })
        }
        // The SGI generation registers are write-only: a read gives 0.
        None => Action::Resume(Resume { writes: Writes::one(Some((rt, 0))), step: true, refill: false }),
    }
}

/// One SMCCC call, through the one dispatcher.
fn hypercall(vm: &Vm, vcpu: &Vcpu, frame: &TrapFrame, conduit: Conduit, imm: u16) -> Action {
    let mut x = [0u64; 8];
    x.copy_from_slice(&frame.x[..8]);
    let call = Call { conduit, imm, caller_aarch32: frame.caller_is_aarch32(), vcpu: vcpu.index, x };
    let me = vcpu.index;
    match dispatch::dispatch(&call, vm, Hw::firmware()) {
        // The one place result registers are decided; the loop writes them.
        // An SDEI call may have readied an event for the caller: the loop looks when it
        // refills.
        Outcome::Return(results) => Action::Resume(Resume {
            writes: Writes::from_x0(results.registers()),
            step: true,
            refill: vcpu.sdei_ready(),
        }),
        Outcome::CpuOff => Action::PowerOff,
        Outcome::CpuSuspend(Suspend::Standby) => Action::Halt { then: Writes::from_x0(&[ret::SUCCESS as u64]) },
        Outcome::CpuSuspend(Suspend::Powerdown { entry, context }) => {
            Action::Suspend { resume: resume_at(entry, context), system: false }
        }
        Outcome::SystemSuspend { entry, context } => {
            Action::Suspend { resume: resume_at(entry, context), system: true }
        }
        Outcome::SystemOff => Action::StopVm(SystemEvent::Shutdown { vcpu: me }),
        Outcome::SystemReset => on_reset(vm, SystemEvent::Reset { vcpu: me }),
        Outcome::SystemReset2 { reset_type, cookie } => {
            on_reset(vm, SystemEvent::Reset2 { vcpu: me, reset_type, cookie })
        }
        Outcome::SdeiResume => Action::SdeiResume,
    }
}

/// A reset restarts the VM unless its `cairn.on-reset` makes it the VM's end (`stop`: a
/// clean one, like QEMU's `-no-reboot`; `fail`: status 65, crate::verdict).
fn on_reset(vm: &Vm, event: SystemEvent) -> Action {
    match vm.actions.on_reset {
        OnReset::Restart => Action::ResetVm(event),
        OnReset::Stop | OnReset::Fail => Action::StopVm(event),
    }
}

/// Where a powerdown state resumes: its entry point, with the caller's endianness.
fn resume_at(entry: u64, context: u64) -> Start {
    Start { entry, context, big_endian: Hw::caller_big_endian() }
}

#[cfg(test)]
mod tests;
