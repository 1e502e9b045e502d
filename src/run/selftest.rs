//! Saving and restoring a whole vCPU on its own CPU, and the `selftest=save-restore`
//! round trip: every exit saves the vCPU, scrambles what was saved on the hardware and
//! restores it through the wire form; every wait round-trips the MP state. A guest that
//! runs to its end under it has observed nothing of the round trips.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::arch::aarch64::context::SYSREGS;
use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::{context, fpsimd, gic};
use crate::fwregs;
use crate::vcpu::saved::{VcpuState, PRIVATE_ENTRIES};
use crate::vcpu::Vcpu;
use crate::vm::Vm;

/// Set by Cairn's bootarg `selftest=save-restore`.
pub static SAVE_RESTORE_SELFTEST: AtomicBool = AtomicBool::new(false);
/// What the self-test writes over the saved registers before restoring them.
const SCRAMBLE: u64 = 0xDEAD_BEEF_0BAD_F00D;
/// The round trip takes the FP/SIMD and vector registers too at one exit in this many:
/// with SVE's longest vectors they are a thousand words, which at every exit would slow
/// the guest more than the test needs.
const FP_ROUND_TRIP_EVERY: u32 = 16;
/// Exits round-tripped so far, machine-wide (only their spacing matters).
static ROUND_TRIPS: AtomicU32 = AtomicU32::new(0);

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
    s.fp = fpsimd::save();
    s.sdei = vm.sdei.as_ref().map(|sdei| sdei.lock().save_vcpu(vcpu.index)).unwrap_or_default();
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
/// frozen once the VM runs): general and system registers, FP/SIMD and vectors (if the
/// state has them), the virtual CPU interface.
pub(super) fn restore_registers(vm: &Vm, frame: &mut TrapFrame, s: &VcpuState) -> Result<(), fwregs::Error> {
    vm.firmware_regs(|regs| regs.restore(&s.firmware))?;
    frame.x = s.x;
    frame.elr = s.pc;
    frame.spsr = s.pstate;
    context::write_sysregs(&s.sys);
    if !s.fp.is_empty() && !fpsimd::restore(&s.fp) {
        log::error!("vm{}: FP/SIMD state saved on another kind of CPU: not restored", vm.id);
    }
    if let Some(g) = gic::get() {
        g.restore_cpu_interface(&s.vgic);
    }
    Ok(())
}

/// One exit's round trip of the self-test.
#[cold]
#[inline(never)]
pub fn save_restore_round_trip(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    let mut saved = save(vm, vcpu, frame);
    if !ROUND_TRIPS.fetch_add(1, Ordering::Relaxed).is_multiple_of(FP_ROUND_TRIP_EVERY) {
        saved.fp.clear();
    }
    let wire = saved.to_registers();
    // Scramble everything the state covers, so a register the restore missed shows.
    frame.x = [SCRAMBLE; 31];
    frame.elr = SCRAMBLE;
    context::write_sysregs(&[SCRAMBLE & !1; SYSREGS]);
    if !saved.fp.is_empty() {
        fpsimd::restore(&fpsimd::scrambled(&saved.fp, SCRAMBLE));
    }
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
            sdei_round_trip(vm, vcpu);
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
    vgic.restore_private(vcpu.index, &[0; PRIVATE_ENTRIES]);
    vgic.restore_private(vcpu.index, &saved);
    if vgic.save_private(vcpu.index) != saved {
        log::error!("vm{}: vcpu{}: private interrupts did not round-trip", vm.id, vcpu.index);
    }
}

/// The vCPU's SDEI state through its saved words and back, under the VM's SDEI lock
/// (another vCPU may signal it meanwhile).
fn sdei_round_trip(vm: &Vm, vcpu: &Vcpu) {
    let Some(sdei) = &vm.sdei else { return };
    let mut state = sdei.lock();
    let saved = state.save_vcpu(vcpu.index);
    if state.restore_vcpu(vcpu.index, &saved).is_err() || state.save_vcpu(vcpu.index) != saved {
        log::error!("vm{}: vcpu{}: SDEI state did not round-trip", vm.id, vcpu.index);
    }
}

/// A waiting vCPU's MP state through save and restore: it must stay HALTED or SUSPENDED.
pub fn mp_state_round_trip(vcpu: &Vcpu) {
    vcpu.with_power(|p| {
        let (state, start) = p.save();
        p.power_off();
        p.restore(state, start);
        if p.save() != (state, start) {
            log::error!("vcpu{}: MP state {state:?} came back as {:?}", vcpu.index, p.state());
        }
    });
}
