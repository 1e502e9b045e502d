//! SDEI events on the machine (the rules are crate::smccc::sdei): entering a vCPU's
//! handler before it next runs guest code, and giving back what the handler interrupted
//! at its EVENT_COMPLETE.

use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::{cpu, inject};
use crate::smccc::sdei::state::Context;
use crate::vcpu::Vcpu;
use crate::vm::Vm;

use super::PSTATE_EL1H_DAIF_MASKED;

/// Enters the handler of each event ready for this vCPU (a critical one may nest in a
/// normal one entered just before): the context as it is (registers, PC, PSTATE, the EL1
/// stack pointers) goes to the VM's SDEI state; the handler starts at EL1h with every exception masked, x0 = event, x1 = its
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
        let (sp_el0, sp_el1) = cpu::el1_stack_pointers();
        let context = Context { x: frame.x, pc: frame.elr, pstate: frame.spsr, sp_el0, sp_el1 };
        let Some(d) = state.dispatch(vcpu.index, &context) else { return };
        frame.x[0] = u64::from(d.event);
        frame.x[1] = d.arg;
        frame.x[2] = frame.elr;
        frame.x[3] = frame.spsr;
        frame.elr = d.entry;
        frame.spsr = PSTATE_EL1H_DAIF_MASKED;
        // Nothing nests in a critical handler; a critical event may in a normal one.
        if d.critical {
            return;
        }
    }
}

/// Hands the interrupts bound to SDEI events that fired for this vCPU (set aside by the
/// flush of its list registers) to the VM's SDEI state, which makes their events pending.
#[cold]
#[inline(never)]
pub fn take_interrupts(vm: &Vm, vcpu: &Vcpu) {
    let fired = vm.vgic.lock().take_sdei_fired(vcpu.index);
    vm.sdei_interrupts(vcpu.index, &fired);
}

/// EVENT_COMPLETE[_AND_RESUME] ended a handler: the context it interrupted comes back,
/// or, with COMPLETE_AND_RESUME, is entered at the given address as if it took an
/// exception there. Whatever waited behind the handler is looked at before the guest runs.
#[cold]
#[inline(never)]
pub fn resume(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    let Some(sdei) = &vm.sdei else { return };
    let mut state = sdei.lock();
    let resumed = state.resume_with(vcpu.index, |back| {
        let context = &back.context.context;
        frame.x = context.x;
        frame.elr = context.pc;
        frame.spsr = context.pstate;
        cpu::set_el1_stack_pointers(context.sp_el0, context.sp_el1);
        if let Some(address) = back.resume_at {
            inject::enter_as_exception(frame, address);
        }
    });
    if resumed && state.deliverable(vcpu.index) {
        vcpu.set_sdei_ready();
    }
}
