//! `save` and `restore` at Cairn's prompt, on the machine (the snapshot's parts are
//! `crate::vm::snapshot`).
//!
//! A save pauses the VM and asks every vCPU for its state. Only a vCPU's own CPU can read
//! its registers, so each CPU answers from wherever it holds its vCPU ([`Held`]): after an
//! exit, in a wait, or off with no context at all. The last answer finishes the save on
//! that CPU: with every vCPU out of the guest, the RAM goes to the VM's slot and the rest
//! onto the heap, and a VM that was running runs on.
//!
//! A restore stops every vCPU as a reset does, puts RAM, virtual GIC, UART, firmware
//! settings and clock back, and gives each vCPU that had a context a start that enters it
//! from its saved registers ([`enter_restored`]).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use super::selftest;
use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::gic;
use crate::arch::aarch64::gicarch::GicVersion;
use crate::arch::aarch64::{cpu, mmu};
use crate::hw::{Hardware, Hw};
use crate::mm::ram_image::{self, Error as RamError, PAGE};
use crate::mm::{Region, MIB};
use crate::policy::action::Writes;
use crate::vcpu::saved::VcpuState;
use crate::vcpu::{PowerState, Start, Vcpu};
use crate::vm::snapshot::{comeback, Comeback, Saving, VmSnapshot};
use crate::vm::Vm;

/// Where a paused vCPU's CPU holds it, and so what of it a save takes.
#[derive(Clone, Copy)]
pub enum Held<'a> {
    /// After an exit, or before its first instruction: its context is in the frame.
    Running(&'a TrapFrame),
    /// Halted in WFI or a standby state: taken as it would be on waking now, past the
    /// instruction and with its results written. Waking early is allowed (a WFI may
    /// complete at any time, Arm ARM DDI 0487 §D1.6.2; a standby CPU_SUSPEND returns
    /// SUCCESS on any wake-up event, DEN0022 §5.4), so the restored vCPU simply runs on.
    Halted { frame: &'a TrapFrame, then: Writes, step: u64 },
    /// In a powerdown state (CPU_SUSPEND, SYSTEM_SUSPEND): it resumes at `resume` on a
    /// wake-up event, and so does the restored vCPU.
    Suspended { frame: &'a TrapFrame, resume: Start },
}

/// Answers a save's request for this vCPU's state, if one is waiting.
#[cold]
#[inline(never)]
pub fn serve(vm: &Vm, vcpu: &Vcpu, held: Held) {
    if !vcpu.take_capture_request() {
        return;
    }
    let state = match held {
        Held::Running(frame) => selftest::save(vm, vcpu, frame),
        Held::Halted { frame, then, step } => {
            let mut woken = *frame;
            then.apply(&mut woken.x);
            woken.elr = woken.elr.wrapping_add(step);
            VcpuState { power: PowerState::Runnable, start: None, ..selftest::save(vm, vcpu, &woken) }
        }
        Held::Suspended { frame, resume } => {
            VcpuState { power: PowerState::Suspended, start: Some(resume), ..selftest::save(vm, vcpu, frame) }
        }
    };
    deliver(vm, vcpu, state);
}

/// Answers a save's request for a vCPU that has no context on its CPU: off, or with a
/// start it has not taken yet. Its MP state is all there is of it.
#[cold]
#[inline(never)]
pub fn serve_off(vm: &Vm, vcpu: &Vcpu) {
    if !vcpu.take_capture_request() {
        return;
    }
    let mut state = VcpuState::empty(gic::get().map_or(0, |g| g.list_registers()));
    (state.power, state.start) = vcpu.power.lock().save();
    state.private = vm.vgic.lock().save_private(vcpu.index);
    state.firmware = vm.firmware_regs(|regs| regs.save());
    deliver(vm, vcpu, state);
}

fn deliver(vm: &Vm, vcpu: &Vcpu, state: VcpuState) {
    if let Some(saving) = vm.deliver_state(vcpu.index, state) {
        finish_save(vm, saving);
    }
}

/// With every vCPU's state in (and so every vCPU out of the guest), takes the rest and
/// lets a VM that was running run on.
fn finish_save(vm: &Vm, saving: Saving) {
    let was_paused = saving.was_paused;
    let states = saving.into_states().ok_or_else(|| String::from("a vCPU's state is missing"));
    match states.and_then(|states| take_the_rest(vm, states, was_paused)) {
        Ok(line) => log::info!("vm{} ({}): saved: {line}", vm.id, vm.name),
        Err(why) => log::warn!("vm{} ({}): not saved: {why}", vm.id, vm.name),
    }
    vm.end_save();
    if !was_paused {
        vm.resume(cpu::counter());
        vm.vcpus.iter().for_each(|v| vm.wake(v));
    }
}

fn take_the_rest(vm: &Vm, vcpus: alloc::vec::Vec<VcpuState>, paused: bool) -> Result<String, String> {
    let slot = vm.snapshot_slot.ok_or("it has no snapshot slot")?;
    let ram = only_ram(vm)?;
    // A guest running with its caches off wrote past Cairn's cached view of its RAM.
    mmu::clean_invalidate_dcache_range(ram.base, ram.size);
    // SAFETY: the VM's RAM and its slot are disjoint RAM that Cairn maps; every vCPU of the
    // VM is out of the guest (each handed its state over and is held), so nothing writes
    // the RAM meanwhile but devices it was given, whose state no snapshot holds.
    let (ram_bytes, slot_bytes) = unsafe { (bytes(ram), bytes_mut(slot)) };
    let stored = ram_image::store(ram_bytes, slot_bytes).map_err(no_room)?;
    let snapshot = VmSnapshot {
        vcpus,
        vgic: vm.vgic.lock().snapshot(),
        uart: vm.serial.as_ref().map(|p| p.snapshot()),
        firmware: *vm.firmware.lock(),
        sdei: vm.sdei.as_ref().map(|s| s.lock().clone()),
        virtual_now: vm.virtual_now(cpu::counter()),
        paused,
        ram: stored,
    };
    *vm.snapshot.lock() = Some(snapshot);
    Ok(format!(
        "{} vCPUs; {} of {} MiB of RAM in use, {} MiB of its {} MiB slot",
        vm.vcpus.len(),
        mib_up(stored.pages * PAGE),
        ram.size / MIB,
        mib_up(stored.bytes),
        slot.size / MIB
    ))
}

/// Why `vm` cannot be put back as its snapshot had it, if it cannot: asked before any
/// vCPU is stopped for it.
pub fn check_put_back(vm: &Vm) -> Result<(), String> {
    if vm.snapshot.lock().is_none() {
        return Err(String::from("it has no snapshot: save it first"));
    }
    let slot = vm.snapshot_slot.ok_or("it has no snapshot slot")?;
    let ram = only_ram(vm)?;
    // SAFETY: the slot is RAM Cairn maps and only a save (excluded by the caller's event
    // lock) writes.
    ram_image::check(unsafe { bytes(slot) }, ram.size as usize).map_err(|_| "its slot no longer holds its snapshot")?;
    Ok(())
}

/// Puts `vm` back as its snapshot had it. Every vCPU must be stopped and out of the guest
/// (but the one on this CPU, which leaves as soon as the caller returns); each one that had
/// a context is given a start to enter it from. Says in one line what came back.
pub fn put_back(vm: &Vm) -> Result<String, String> {
    let snapshot = vm.snapshot.lock().clone().ok_or("it has no snapshot: save it first")?;
    let slot = vm.snapshot_slot.ok_or("it has no snapshot slot")?;
    let ram = only_ram(vm)?;
    // SAFETY: as in take_the_rest; here every vCPU is stopped.
    let (slot_bytes, ram_bytes) = unsafe { (bytes(slot), bytes_mut(ram)) };
    // Cleaned page by page, for a guest that runs with its caches off.
    let written = |offset: usize| mmu::clean_dcache_range(ram.base + offset as u64, PAGE as u64);
    ram_image::load(slot_bytes, ram_bytes, written).map_err(|_| "its slot no longer holds its snapshot")?;
    mmu::invalidate_instruction_caches();
    if let (Some(port), Some(uart)) = (&vm.serial, &snapshot.uart) {
        port.restore(uart);
    }
    Hw::with_gic(|hw| vm.vgic.lock().restore_snapshot(&snapshot.vgic, hw));
    *vm.firmware.lock() = snapshot.firmware;
    if let (Some(now), Some(saved)) = (&vm.sdei, &snapshot.sdei) {
        let mut state = now.lock();
        *state = saved.clone();
        vm.note_sdei_ready(state.ready_vcpus(), None);
    }
    // A reset after the restore boots with the firmware settings the snapshot had.
    vm.refresh_device_tree();
    vm.set_virtual_now(snapshot.virtual_now, cpu::counter(), snapshot.paused);
    for (vcpu, state) in vm.vcpus.iter().zip(&snapshot.vcpus) {
        match comeback(state) {
            Comeback::MpStateOnly => vcpu.with_power(|p| p.restore(state.power, state.start)),
            Comeback::Context => {
                vcpu.set_restore(Box::new(state.clone()));
                vcpu.restart(Start { entry: state.pc, context: 0, big_endian: false });
            }
        }
    }
    let on = snapshot.vcpus.iter().filter(|s| s.power != PowerState::Stopped).count();
    let how = if snapshot.paused { "paused" } else { "running" };
    Ok(format!("{on} of {} vCPUs on, {how}", snapshot.vcpus.len()))
}

/// Enters this CPU's vCPU from the state a restore gave it: its registers into `frame` and
/// the hardware (its list registers' forwarded entries made virtual: the physical ones
/// ended when it left), its clock on the VM's, its banked forwarded interrupts as the
/// virtual GIC has them. False if it was saved in a powerdown state: the caller suspends
/// it again, to resume at its start.
pub fn enter_restored(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, state: &VcpuState) -> bool {
    let v3 = vm.vgic.lock().version() == GicVersion::V3;
    let state = VcpuState { vgic: state.vgic.without_forwarding(v3), ..state.clone() };
    if let Err(e) = selftest::restore_registers(vm, frame, &state) {
        log::warn!("vm{}: vcpu{}: firmware registers not restored: {e:?}", vm.id, vcpu.index);
    }
    cpu::set_virtual_offset(vm.virtual_offset());
    Hw::with_gic(|hw| vm.vgic.lock().resync_private(vcpu.index, hw));
    state.power != PowerState::Suspended
}

fn only_ram(vm: &Vm) -> Result<Region, String> {
    match vm.ram[..] {
        [ram] => Ok(ram),
        _ => Err(format!("its RAM is in {} pieces", vm.ram.len())),
    }
}

fn no_room(e: RamError) -> String {
    match e {
        RamError::NoRoom { needed, room } => {
            format!("its RAM in use needs {} MiB and its slot has {} MiB", mib_up(needed), room as u64 / MIB)
        }
        RamError::NoImage => String::from("its slot is damaged"),
    }
}

fn mib_up(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(MIB)
}

/// # Safety
/// `r` must be RAM Cairn maps, not written while the slice lives.
unsafe fn bytes<'a>(r: Region) -> &'a [u8] {
    // SAFETY: the caller vouches for the range.
    unsafe { core::slice::from_raw_parts(r.base as *const u8, r.size as usize) }
}

/// # Safety
/// `r` must be RAM Cairn maps that nothing else reads or writes while the slice lives.
unsafe fn bytes_mut<'a>(r: Region) -> &'a mut [u8] {
    // SAFETY: the caller vouches for the range.
    unsafe { core::slice::from_raw_parts_mut(r.base as *mut u8, r.size as usize) }
}
