//! A virtual machine: its memory, its vCPUs and their power states, its virtual GIC and
//! emulated devices, its firmware settings, its system events, and the images it restarts
//! from.
//!
//! - this module: the [`Vm`] type and the VM-side rules of PSCI (CPU_ON, AFFINITY_INFO,
//!   which vCPUs are off), built and unit-tested on the host against the fake machine
//!   (`crate::hw`);
//! - [`devices`]: the table of emulated MMIO regions each VM owns;
//! - `create`: building the boot VM from the device tree's modules (bare-metal target);
//! - `images`: the pristine copies of the guest's images and putting them back at a reset
//!   (bare-metal target).

pub mod devices;
pub mod gic;
pub mod snapshot;
pub mod status;
pub mod uart;

#[cfg(target_os = "none")]
mod create;
#[cfg(target_os = "none")]
mod images;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

#[cfg(target_os = "none")]
pub use create::{create_vms, BundleVm, GuestSettings, Host, VmError};
use devices::{DeviceTable, Overlap};

use crate::arch::aarch64::mpidr::MPIDR_AFFINITY_MASK;
use crate::event::{EventLog, SystemEvent};
use crate::fwregs::{HostWorkarounds, PsciFeature, VcpuFirmwareRegs, VmFirmwareState};
use crate::hw::{Hardware, Hw};
use crate::mm::Region;
use crate::smccc::call::VmFirmware;
use crate::smccc::psci::{self, ret, AFFINITY_OFF, AFFINITY_ON};
use crate::smccc::sdei::state::{Answer as SdeiAnswer, GicEffect, SdeiState};
use crate::vcpu::{PowerState, Start, Vcpu};
use crate::verdict::{End, VmActions, VERDICT};
use crate::vgic::dist::VGic;
use gic::{Distributor, Redistributors};
use snapshot::{SaveFinishing, SavePhase, Saving, VmSnapshot};
use uart::{SerialPort, UartDevice};

/// The emulated GIC frames, trapped by leaving them out of stage 2.
#[derive(Clone, Copy, Debug)]
pub struct GicFrames {
    pub distributor: Region,
    /// GICv3 only: one 128 KiB frame per vCPU.
    pub redistributors: Option<Region>,
}

/// A VM's stage-2 translation: the root table and the level the walk starts at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stage2Root {
    pub root: u64,
    pub start_level: usize,
}

/// A module as the guest sees it, and where Cairn keeps its pristine copy.
#[derive(Clone, Copy, Debug)]
pub struct Image {
    pub at: Region,
    pub pristine: u64,
}

/// What the boot vCPU starts with, and what a reset puts back.
#[derive(Debug, Default)]
pub struct BootImages {
    /// Where the boot vCPU starts, and the device tree it gets in x0.
    pub entry: u64,
    pub dtb: u64,
    pub kernel: Option<Image>,
    pub initrd: Option<Image>,
    /// The guest's device tree; rebuilt when its PSCI version is set while it is off.
    pub guest_dtb: spin::Mutex<Vec<u8>>,
}

/// Everything a VM is made of, for [`Vm::new`].
pub struct VmConfig {
    pub id: usize,
    /// What the user calls it (`cairn.name`), for the console and the logs.
    pub name: String,
    pub vmid: u16,
    pub firmware: VmFirmwareState,
    pub stage2: Stage2Root,
    pub ram: Vec<Region>,
    /// The MPIDR affinity of each vCPU, as the guest sees it.
    pub mpidrs: Vec<u64>,
    /// The physical CPU each vCPU is pinned to.
    pub pcpus: Vec<usize>,
    pub vgic: VGic,
    pub gic_frames: GicFrames,
    pub boot: BootImages,
    /// What a reset does, and how long the VM may run (its `cairn.*` words).
    pub actions: VmActions,
    /// The virtual UART's register frame and SPI, when the VM gets one.
    pub serial: Option<(Region, u32)>,
    /// The host device-tree nodes passed through to it, by path.
    pub passthrough: Vec<String>,
    /// The RAM its snapshot goes to (`cairn.snapshot`), if it has a slot.
    pub snapshot_slot: Option<Region>,
    /// Whether its guest gets SDEI (`cairn.sdei=on`).
    pub sdei: bool,
}

/// Interrupts a VM may bind to SDEI events, of each kind (PPIs, SPIs): the most the SDEI
/// state has room for.
const SDEI_BIND_SLOTS: u32 = 8;

/// No deadline: the VM runs until it ends.
const NO_DEADLINE: u64 = u64::MAX;

pub struct Vm {
    pub id: usize,
    pub name: String,
    pub vmid: u16,
    /// The firmware pseudo-registers' VM-wide state: PSCI version, service bitmaps.
    pub firmware: spin::Mutex<VmFirmwareState>,
    pub stage2: Stage2Root,
    pub ram: Vec<Region>,
    pub vcpus: Vec<Vcpu>,
    pub vgic: Arc<spin::Mutex<VGic>>,
    /// The emulated devices, by guest-physical region.
    pub devices: DeviceTable,
    /// The VM's serial port (also among `devices`), which the console reaches it through.
    pub serial: Option<Arc<SerialPort>>,
    pub boot: BootImages,
    /// Serialises system events (reset, off) against each other.
    pub event_lock: spin::Mutex<()>,
    /// Set while a system event stops the VM: no vCPU may start meanwhile.
    pub halting: AtomicBool,
    /// Every system event of this VM, in order.
    events: spin::Mutex<EventLog>,
    /// What a reset does, and how long the VM may run.
    pub actions: VmActions,
    /// The status the guest set with EXIT_STATUS (0 until it does).
    exit_status: AtomicU8,
    /// The counter value (CNTPCT) past which the VM has run too long.
    deadline: AtomicU64,
    /// The host device-tree nodes passed through to it, by path.
    pub passthrough: Vec<String>,
    /// Set once the VM is gone (its SYSTEM_OFF, a crash): it stays listed.
    gone: AtomicBool,
    /// Set while `pause` at Cairn's prompt keeps the VM out of its guest; since when
    /// (counter value); and the time it has been paused in all, which its vCPUs' virtual
    /// counter offset (CNTVOFF) leaves out.
    paused: AtomicBool,
    paused_at: AtomicU64,
    paused_total: AtomicU64,
    /// The RAM its snapshot goes to, if it has a slot.
    pub snapshot_slot: Option<Region>,
    /// The latest snapshot (`save`), for `restore`.
    pub snapshot: spin::Mutex<Option<VmSnapshot>>,
    /// A save under way.
    saving: spin::Mutex<Option<SavePhase>>,
    /// Its SDEI state, if its guest has SDEI (crate::smccc::sdei).
    pub sdei: Option<spin::Mutex<SdeiState>>,
}

/// VMs alive; the machine powers off when the last one is gone.
static VMS: spin::Mutex<Vec<Arc<Vm>>> = spin::Mutex::new(Vec::new());
/// Every VM built, alive or gone, in order: what the console lists.
static EVERY_VM: spin::Mutex<Vec<Arc<Vm>>> = spin::Mutex::new(Vec::new());

impl Vm {
    /// Builds a VM from its parts and registers its virtual GIC's frames as devices.
    pub fn new(c: VmConfig) -> Result<Self, Overlap> {
        let vcpus = c.mpidrs.iter().zip(&c.pcpus).enumerate();
        let vcpus = vcpus.map(|(i, (&m, &pcpu))| Vcpu::new(i, m & MPIDR_AFFINITY_MASK, pcpu)).collect();
        let mut vgic = c.vgic;
        vgic.place(&c.pcpus);
        let vgic = Arc::new(spin::Mutex::new(vgic));
        let mut devices = DeviceTable::new();
        devices.register(c.gic_frames.distributor, Box::new(Distributor(vgic.clone())))?;
        if let Some(r) = c.gic_frames.redistributors {
            devices.register(r, Box::new(Redistributors(vgic.clone())))?;
        }
        let serial = c.serial.map(|(_, intid)| Arc::new(SerialPort::new(c.id, vgic.clone(), intid, c.pcpus.clone())));
        if let (Some((region, _)), Some(port)) = (c.serial, &serial) {
            devices.register(region, Box::new(UartDevice(port.clone())))?;
        }
        Ok(Vm {
            id: c.id,
            name: c.name,
            vmid: c.vmid,
            firmware: spin::Mutex::new(c.firmware),
            stage2: c.stage2,
            ram: c.ram,
            vcpus,
            vgic,
            devices,
            serial,
            boot: c.boot,
            event_lock: spin::Mutex::new(()),
            halting: AtomicBool::new(false),
            events: spin::Mutex::new(EventLog::new()),
            actions: c.actions,
            exit_status: AtomicU8::new(0),
            deadline: AtomicU64::new(NO_DEADLINE),
            passthrough: c.passthrough,
            gone: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            paused_at: AtomicU64::new(0),
            paused_total: AtomicU64::new(0),
            snapshot_slot: c.snapshot_slot,
            snapshot: spin::Mutex::new(None),
            saving: spin::Mutex::new(None),
            sdei: c.sdei.then(|| spin::Mutex::new(SdeiState::new(&c.mpidrs, SDEI_BIND_SLOTS))),
        })
    }

    /// Starts the VM's clock at counter value `now` (ticking at `frequency` Hz) and
    /// returns its deadline, if it has a timeout.
    pub fn start_clock(&self, now: u64, frequency: u64) -> Option<u64> {
        let secs = self.actions.timeout_secs?;
        let deadline = now.saturating_add(secs.saturating_mul(frequency));
        self.deadline.store(deadline, Ordering::Relaxed);
        Some(deadline)
    }

    /// The counter value past which the VM has run too long, if it has a timeout.
    pub fn deadline(&self) -> Option<u64> {
        Some(self.deadline.load(Ordering::Relaxed)).filter(|&d| d != NO_DEADLINE)
    }

    /// Whether the VM has run past its timeout at counter value `now()`, read only when
    /// the VM has one: interrupt exits ask, and most VMs have none.
    pub fn timed_out(&self, now: impl FnOnce() -> u64) -> bool {
        let deadline = self.deadline.load(Ordering::Relaxed);
        deadline != NO_DEADLINE && now() >= deadline
    }

    /// The status the guest set with EXIT_STATUS.
    pub fn exit_status(&self) -> u8 {
        self.exit_status.load(Ordering::Relaxed)
    }

    /// Records the VM's end, for the machine's verdict, from the event that ended it.
    pub fn record_end(&self, event: &SystemEvent) {
        let end = End::of(event, self.actions.on_reset);
        VERDICT.lock().record(self.id, end, self.exit_status(), event);
    }

    /// Adds the VM to the live set.
    pub fn publish(self: &Arc<Self>) {
        VMS.lock().push(self.clone());
        EVERY_VM.lock().push(self.clone());
    }

    /// Pauses the VM at counter value `now`: its vCPUs stay out of the guest from their
    /// next exit on. False if it was paused already.
    pub fn pause(&self, now: u64) -> bool {
        if self.paused.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.paused_at.store(now, Ordering::SeqCst);
        true
    }

    /// Resumes a paused VM at counter value `now`; the time it was paused is added to what
    /// its virtual counter leaves out. False if it was not paused.
    pub fn resume(&self, now: u64) -> bool {
        if !self.paused.load(Ordering::SeqCst) {
            return false;
        }
        let paused_for = now.saturating_sub(self.paused_at.load(Ordering::SeqCst));
        self.paused_total.fetch_add(paused_for, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
        true
    }

    #[inline(always)]
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// The guest's virtual counter offset: every tick it has been paused.
    pub fn virtual_offset(&self) -> u64 {
        self.paused_total.load(Ordering::SeqCst)
    }

    /// The guest's virtual counter at physical counter value `now` (it stands still while
    /// the VM is paused).
    pub fn virtual_now(&self, now: u64) -> u64 {
        let at = if self.is_paused() { self.paused_at.load(Ordering::SeqCst) } else { now };
        at.saturating_sub(self.virtual_offset())
    }

    /// Sets the guest's clock back to `virtual_now` at physical counter value `now`,
    /// paused or not (a restore): it goes on from there.
    pub fn set_virtual_now(&self, virtual_now: u64, now: u64, paused: bool) {
        self.paused_total.store(now.saturating_sub(virtual_now), Ordering::SeqCst);
        self.paused_at.store(now, Ordering::SeqCst);
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Starts a save (the VM paused, `was_paused` before). False if one is under way.
    pub fn begin_save(&self, was_paused: bool) -> bool {
        let mut saving = self.saving.lock();
        if saving.is_some() {
            return false;
        }
        *saving = Some(SavePhase::Gathering(Saving::new(self.vcpus.len(), was_paused)));
        true
    }

    /// Hands over vCPU `vcpu`'s state to the save under way; the save, once every vCPU's
    /// state is in, for the caller to finish (and then [`Vm::end_save`]).
    pub fn deliver_state(&self, vcpu: usize, state: crate::vcpu::saved::VcpuState) -> Option<Saving> {
        let mut saving = self.saving.lock();
        let Some(SavePhase::Gathering(gathering)) = saving.as_mut() else { return None };
        if !gathering.deliver(vcpu, state) {
            return None;
        }
        match saving.replace(SavePhase::Finishing) {
            Some(SavePhase::Gathering(done)) => Some(done),
            _ => None,
        }
    }

    /// The save that [`Vm::deliver_state`] handed out is finished.
    pub fn end_save(&self) {
        *self.saving.lock() = None;
    }

    /// Gives up a save that still gathers the vCPUs' states (a stop, reset or restore
    /// overtook it). Err if one is being finished: it reads the VM's RAM, which must stay
    /// as it is until then.
    pub fn cancel_save(&self) -> Result<(), SaveFinishing> {
        let mut saving = self.saving.lock();
        if matches!(*saving, Some(SavePhase::Finishing)) {
            return Err(SaveFinishing);
        }
        *saving = None;
        for v in &self.vcpus {
            v.take_capture_request();
        }
        Ok(())
    }

    pub fn is_saving(&self) -> bool {
        self.saving.lock().is_some()
    }

    /// Whether the VM is gone (ended by a system event or a crash).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The system events recorded, oldest first (the latest few), and how many in all.
    pub fn events(&self) -> (u64, Vec<SystemEvent>) {
        let log = self.events.lock();
        (log.total(), log.recent().copied().collect())
    }

    /// How the boot vCPU starts: at the kernel entry with the device tree in x0, x1-x3
    /// zero (booting.rst).
    pub fn boot_start(&self) -> Start {
        Start { entry: self.boot.entry, context: self.boot.dtb, big_endian: false }
    }

    /// The guest's RAM, in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.iter().map(|r| r.size).sum()
    }

    /// Records a system event and prints it as one line.
    pub fn record(&self, event: SystemEvent) {
        log::info!("vm{}: system event: {event}", self.id);
        self.events.lock().push(event);
    }

    /// The VM's epitaph: how many system events it had, and the latest of them.
    pub fn epitaph(&self) -> String {
        self.events.lock().to_string()
    }

    /// Runs `f` on the firmware pseudo-registers as a vCPU of this VM sees them (the VM's
    /// PSCI version decides the vCPU's PSCI feature, as all vCPUs share it).
    pub fn firmware_regs<R>(&self, f: impl FnOnce(&mut VcpuFirmwareRegs<'_>) -> R) -> R {
        let host = HostWorkarounds::from_arch_features(|fid| Hw::firmware().arch_feature(fid));
        let mut state = self.firmware.lock();
        let feature = PsciFeature::for_version(state.psci_version());
        f(&mut state.vcpu(feature, host))
    }

    /// The vCPU pinned to physical CPU `pcpu`.
    pub fn vcpu_on(&self, pcpu: usize) -> Option<&Vcpu> {
        self.vcpus.iter().find(|v| v.pcpu == pcpu)
    }

    /// Makes `vcpu`'s physical CPU look at it (a start, a stop, a new pending interrupt).
    pub fn wake(&self, vcpu: &Vcpu) {
        Hw::kick(vcpu.pcpu);
    }

    /// Rebuilds the guest's device tree for the VM's PSCI version, if it changed.
    pub fn refresh_device_tree(&self) {
        let version = self.psci_version();
        let mut dtb = self.boot.guest_dtb.lock();
        let mpidrs: Vec<u64> = self.vcpus.iter().map(|v| v.mpidr).collect();
        match crate::guest_dt::with_psci_version(&dtb, &self.ram, &mpidrs, version) {
            Ok(rebuilt) => *dtb = rebuilt,
            Err(e) => log::warn!(
                "vm{}: device tree kept as it was for PSCI {}.{}: {e:?}",
                self.id,
                version.major,
                version.minor
            ),
        }
    }

    /// Resets the virtual GIC, the UART and SDEI to their power-on state.
    pub fn reset_vgic(&self) {
        Hw::with_gic(|hw| self.vgic.lock().reset(hw));
        if let Some(port) = &self.serial {
            port.reset();
        }
        self.with_sdei(None, SdeiState::reset);
    }

    /// Runs `f` on the VM's SDEI state, if it has SDEI, then carries out what it asks of
    /// the virtual GIC and notes the vCPUs with an event ready (kicking all but `caller`).
    /// On the CPU of the vCPU concerned: what a private event asks is banked there.
    fn with_sdei<R>(&self, caller: Option<usize>, f: impl FnOnce(&mut SdeiState) -> R) -> Option<R> {
        let mut state = self.sdei.as_ref()?.lock();
        let result = f(&mut state);
        let (effects, ready) = (state.take_effects(), state.ready_vcpus());
        drop(state);
        if !effects.is_empty() {
            Hw::with_gic(|hw| {
                let mut vgic = self.vgic.lock();
                for effect in effects {
                    match effect {
                        GicEffect::Enable { vcpu, intid, on } => vgic.set_enabled_for(vcpu, intid, on, hw),
                        GicEffect::Deactivate { vcpu, intid } => vgic.deactivate_held(vcpu, intid, hw),
                        GicEffect::Bound(intids) => vgic.set_sdei_bound(intids),
                    }
                }
            });
        }
        self.note_sdei_ready(ready, caller);
        Some(result)
    }

    /// Bound interrupts that fired on `vcpu` (INTID, forwarded) make their events pending.
    pub fn sdei_interrupts(&self, vcpu: usize, fired: &[(u32, bool)]) {
        self.with_sdei(Some(vcpu), |state| {
            for &(intid, forwarded) in fired {
                state.interrupt(vcpu, intid, forwarded);
            }
        });
    }

    /// A vCPU that powers off loses its SDEI state (DEN0054 §4.4; an uncompleted handler
    /// does not survive CPU_OFF).
    pub fn reset_vcpu_sdei(&self, vcpu: usize) {
        self.with_sdei(Some(vcpu), |state| state.reset_vcpu(vcpu));
    }

    /// Marks the vCPUs in `ready` (one bit each) as having an SDEI event ready, and kicks
    /// those but `caller` (whose own exit looks before it resumes).
    pub fn note_sdei_ready(&self, ready: u64, caller: Option<usize>) {
        for v in self.vcpus.iter().filter(|v| ready & (1 << v.index) != 0) {
            v.set_sdei_ready();
            if Some(v.index) != caller {
                self.wake(v);
            }
        }
    }
}

/// The VM side of PSCI: which vCPUs exist, are on, may start. The PSCI service
/// (smccc::psci) checks arguments and entry points before it asks.
impl VmFirmware for Vm {
    fn psci_version(&self) -> psci::Version {
        self.firmware.lock().psci_version()
    }

    fn has_vcpu(&self, target: u64) -> bool {
        target & !MPIDR_AFFINITY_MASK == 0 && self.vcpus.iter().any(|v| v.mpidr == target)
    }

    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> i64 {
        let Some(vcpu) = self.vcpus.iter().find(|v| v.mpidr == target) else { return ret::INVALID_PARAMETERS };
        let start = Start { entry, context, big_endian: Hw::caller_big_endian() };
        let result = vcpu.power_on(start, &self.halting);
        // A started vCPU's CPU picks up the start; a suspended one takes the call as a
        // wake-up event (power::Power::power_on). Either way its CPU must look.
        self.wake(vcpu);
        match result {
            Ok(()) => ret::SUCCESS,
            Err(code) => code,
        }
    }

    fn affinity_info(&self, target: u64, lowest_level: u64) -> i64 {
        let Some(mask) = psci::affinity_mask(lowest_level) else { return ret::INVALID_PARAMETERS };
        let mut matching = self.vcpus.iter().filter(|v| v.mpidr & mask == target & mask).peekable();
        if matching.peek().is_none() {
            return ret::INVALID_PARAMETERS;
        }
        if matching.any(|v| v.state().is_on()) {
            AFFINITY_ON
        } else {
            AFFINITY_OFF
        }
    }

    fn is_guest_ram(&self, addr: u64) -> bool {
        self.ram.iter().any(|r| r.contains(addr))
    }

    fn others_off(&self, caller: usize) -> bool {
        self.vcpus.iter().filter(|v| v.index != caller).all(|v| v.state() == PowerState::Stopped)
    }

    fn trng_enabled(&self) -> bool {
        self.firmware.lock().trng_enabled()
    }

    fn vendor_hyp_enabled(&self) -> bool {
        self.firmware.lock().vendor_hyp_enabled()
    }

    fn set_exit_status(&self, status: u8) {
        self.exit_status.store(status, Ordering::Relaxed);
    }
    fn sdei_call(&self, vcpu: usize, number: u16, args: [u64; 5]) -> Option<SdeiAnswer> {
        let owns = |intid: u32| self.vgic.lock().owns(intid);
        self.with_sdei(Some(vcpu), |state| state.call(vcpu, number, args, |addr| self.is_guest_ram(addr), owns))
    }
}

/// Brings a VM that is gone back into the live set (a `start` at the prompt): its device
/// tree follows its PSCI version (which may have been set while it was off), and from now
/// on it has run again.
pub fn revive(vm: &Arc<Vm>) {
    let mut vms = VMS.lock();
    if !vms.iter().any(|v| Arc::ptr_eq(v, vm)) {
        vms.push(vm.clone());
    }
    vm.refresh_device_tree();
    vm.firmware.lock().mark_run();
    vm.gone.store(false, Ordering::Release);
}

/// Every VM built, alive or gone, in the order they were built.
pub fn every_vm() -> Vec<Arc<Vm>> {
    EVERY_VM.lock().clone()
}

/// Removes `vm` from the live set. Returns how many VMs are left.
pub fn destroy(vm: &Vm) -> usize {
    vm.firmware.lock().mark_stopped();
    vm.gone.store(true, Ordering::Release);
    let mut vms = VMS.lock();
    vms.retain(|v| !core::ptr::eq(Arc::as_ptr(v), vm));
    vms.len()
}
