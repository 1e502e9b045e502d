//! SDEI events on the machine (the rules are crate::smccc::sdei): entering a vCPU's
//! handler before it next runs guest code, and giving back what the handler interrupted
//! at its EVENT_COMPLETE.

use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::inject;
use crate::smccc::sdei::CONTEXT_REGISTERS;
use crate::vcpu::Vcpu;
use crate::vm::Vm;

use super::PSTATE_EL1H_DAIF_MASKED;

/// Enters the handler of each event ready for this vCPU (a critical one may nest in a
/// normal one entered just before): x0-x17, PC and PSTATE as they are go to the VM's SDEI
/// state; the handler starts at EL1h with every exception masked, x0 = event, x1 = its
/// argument, x2 and x3 the interrupted PC and PSTATE (DEN0054 §4.6.2).
#[cold]
#[inline(never)]
pub fn deliver(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    if !vcpu.take_sdei_ready() {
        return;
    }
    let Some(sdei) = &vm.sdei else { return };
    let mut state = sdei.lock();
    loop {
        let mut x = [0u64; CONTEXT_REGISTERS];
        x.copy_from_slice(&frame.x[..CONTEXT_REGISTERS]);
        let Some(d) = state.dispatch(vcpu.index, &x, frame.elr, frame.spsr) else { return };
        frame.x[0] = u64::from(d.event);
        frame.x[1] = d.arg;
        frame.x[2] = frame.elr;
        frame.x[3] = frame.spsr;
        frame.elr = d.entry;
        frame.spsr = PSTATE_EL1H_DAIF_MASKED;
    }
}

/// EVENT_COMPLETE[_AND_RESUME] ended a handler: the context it interrupted comes back,
/// or, with COMPLETE_AND_RESUME, is entered at the given address as if it took an
/// exception there. Whatever waited behind the handler is looked at before the guest runs.
#[cold]
#[inline(never)]
pub fn resume(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    let Some(sdei) = &vm.sdei else { return };
    let mut state = sdei.lock();
    let Some(back) = state.take_resumption(vcpu.index) else { return };
    frame.x[..CONTEXT_REGISTERS].copy_from_slice(&back.context.x);
    frame.elr = back.context.pc;
    frame.spsr = back.context.pstate;
    if let Some(address) = back.resume_at {
        inject::enter_as_exception(frame, address);
    }
    if state.deliverable(vcpu.index) {
        vcpu.set_sdei_ready();
    }
}
