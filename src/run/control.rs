//! What Cairn's prompt asks of a VM's life (crate::manage::Control), carried out from the
//! console's interrupt on the boot CPU, outside the console's locks: `stop` and `reset` as
//! the guest's own SYSTEM_OFF and SYSTEM_RESET would (every vCPU out of the guest first),
//! `start` as a reset of a VM that is off; `pause` and `resume` by a flag each vCPU heeds
//! at its next exit; `save` and `restore` through run::snapshot. A stop from the prompt never powers the machine
//! off: the prompt is still there to start a VM again.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::{snapshot, PARK_TIMEOUT_MS};
use crate::arch::aarch64::cpu;
use crate::console;
use crate::event::SystemEvent;
use crate::manage::Control;
use crate::vm::{self, Vm};

/// Carries out `control` and says, in one line, what came of it.
pub fn carry_out(control: Control) -> String {
    match control {
        Control::Stop(vm) => stop(&vm),
        Control::Reset(vm) => restart(&vm, false),
        Control::Start(vm) => restart(&vm, true),
        Control::Pause(vm) => pause(&vm),
        Control::Resume(vm) => resume(&vm),
        Control::Save(vm) => save(&vm),
        Control::Restore(vm) => restore(&vm),
    }
}

/// Pauses the VM (if it runs) and asks each vCPU for its state; the last to answer
/// finishes the save and says so in a line of its own (run::snapshot), and a VM that was
/// running runs on.
fn save(vm: &Vm) -> String {
    let Some(_event) = vm.event_lock.try_lock() else { return busy(vm) };
    if vm.is_gone() {
        return format!("{} is off: there is nothing to save", vm.name);
    }
    let was_paused = vm.is_paused();
    if !vm.begin_save(was_paused) {
        return format!("{}: a save is under way", vm.name);
    }
    vm.pause(cpu::counter());
    for v in &vm.vcpus {
        v.request_capture();
        vm.wake(v);
    }
    format!("saving {}: each vCPU hands over its state at its next exit", vm.name)
}

/// Every vCPU out of the guest, as for a reset; then RAM, virtual GIC, UART, firmware
/// settings, clock and each vCPU as the snapshot had them, running or paused as it was.
fn restore(vm: &Arc<Vm>) -> String {
    let Some(_event) = vm.event_lock.try_lock() else { return busy(vm) };
    if let Err(why) = snapshot::check_put_back(vm) {
        return format!("{} cannot be restored: {why}", vm.name);
    }
    if vm.cancel_save().is_err() {
        return saving(vm);
    }
    vm.resume(cpu::counter());
    if !halt_every_vcpu(vm) {
        return stuck(vm);
    }
    if vm.is_gone() {
        vm::revive(vm);
        console::vm_back(vm.id);
    }
    let answer = match snapshot::put_back(vm) {
        Ok(line) => {
            vm.record(SystemEvent::Restore);
            format!("{} restored: {line}", vm.name)
        }
        Err(why) => {
            // Checked above: only a slot damaged meanwhile gets here. The VM stays off.
            vm.record(SystemEvent::Stop);
            vm::destroy(vm);
            console::vm_gone(vm.id);
            return format!("{} cannot be restored: {why}; it is off now", vm.name);
        }
    };
    vm.halting.store(false, Ordering::SeqCst);
    vm.vcpus.iter().for_each(|v| vm.wake(v));
    answer
}

/// Every vCPU of `vm` stays out of the guest from its next exit on, which a kick makes
/// now (run::hold_while_paused).
fn pause(vm: &Vm) -> String {
    if vm.is_gone() || !vm.pause(cpu::counter()) {
        return format!("{} is off or paused already", vm.name);
    }
    vm.vcpus.iter().for_each(|v| vm.wake(v));
    format!("{} paused", vm.name)
}

fn resume(vm: &Vm) -> String {
    // A save reads the VM's memory while its vCPUs are held: they must stay so until it
    // is done (and a VM it paused resumes by itself then).
    if vm.is_saving() {
        return saving(vm);
    }
    if !vm.resume(cpu::counter()) {
        return format!("{} is not paused", vm.name);
    }
    vm.vcpus.iter().for_each(|v| vm.wake(v));
    format!("{} resumed", vm.name)
}

fn stop(vm: &Arc<Vm>) -> String {
    let Some(_event) = vm.event_lock.try_lock() else { return busy(vm) };
    if vm.is_gone() {
        return format!("{} is off already", vm.name);
    }
    if vm.cancel_save().is_err() {
        return saving(vm);
    }
    // A paused VM stops as it is: its next start is not paused.
    vm.resume(cpu::counter());
    if !halt_every_vcpu(vm) {
        return stuck(vm);
    }
    vm.record(SystemEvent::Stop);
    vm.record_end(&SystemEvent::Stop);
    vm::destroy(vm);
    console::vm_gone(vm.id);
    format!("{} stopped", vm.name)
}

/// `reset` (a VM that runs) or `start` (one that is off): every vCPU out of the guest, the
/// images, device tree and interrupt state as at creation, the boot vCPU started.
fn restart(vm: &Arc<Vm>, from_off: bool) -> String {
    let Some(_event) = vm.event_lock.try_lock() else { return busy(vm) };
    if vm.is_gone() != from_off {
        return format!("{} {}", vm.name, if from_off { "is running" } else { "is off: start it" });
    }
    if vm.cancel_save().is_err() {
        return saving(vm);
    }
    // A reset of a paused VM boots it running.
    vm.resume(cpu::counter());
    if !halt_every_vcpu(vm) {
        return stuck(vm);
    }
    vm.record(SystemEvent::Restart);
    if from_off {
        // Before the images go back: its device tree may change with its PSCI version.
        vm::revive(vm);
        console::vm_back(vm.id);
    }
    vm.reset_vgic();
    vm.restore_images();
    let boot = &vm.vcpus[0];
    boot.restart(vm.boot_start());
    vm.halting.store(false, Ordering::SeqCst);
    vm.wake(boot);
    format!("{} {}", vm.name, if from_off { "started" } else { "reset" })
}

/// Stops every vCPU of `vm` and waits until each has left the guest, but the one on this
/// CPU, whose exit this runs in: it leaves as soon as this returns. False if a vCPU did
/// not leave in time (it stays marked to stop).
fn halt_every_vcpu(vm: &Vm) -> bool {
    vm.halting.store(true, Ordering::SeqCst);
    for v in &vm.vcpus {
        v.power_off();
        vm.wake(v);
    }
    let here = cpu::current();
    let deadline = cpu::counter() + cpu::counter_frequency() * PARK_TIMEOUT_MS / MS_PER_S;
    vm.vcpus.iter().filter(|v| v.pcpu != here).all(|v| {
        while !v.is_parked() {
            if cpu::counter() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    })
}

const MS_PER_S: u64 = 1000;

fn saving(vm: &Vm) -> String {
    format!("{}: a save is under way; try again when it is done", vm.name)
}

fn busy(vm: &Vm) -> String {
    format!("{} is in the middle of a system event: try again", vm.name)
}

fn stuck(vm: &Vm) -> String {
    format!("{}: a vCPU did not leave the guest in time; it stops when it next exits", vm.name)
}
