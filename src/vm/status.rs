//! What the console's prompt shows of a VM, gathered from the VM as it stands without
//! stopping it (crate::prompt words it): its line in `list`, the facts of `info`, its
//! event log for `events`, and its firmware pseudo-registers for `get`. Host-tested on
//! real VMs.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::Vm;
use crate::event::{EventLog, SystemEvent};
use crate::mm::ram_image::PAGE;
use crate::mm::MIB;
use crate::prompt::{self, FwReg, MemRange, SnapshotInfo, VcpuInfo, VmInfo, VmState, VmSummary};
use crate::smccc::call::VmFirmware;
use crate::vcpu::PowerState;

impl Vm {
    /// Its state as `list` shows it, from its latest event `last`: gone (crashed, or shut
    /// down), running while a vCPU runs guest code, blocked while every vCPU waits or is off.
    fn list_state(&self, last: Option<&SystemEvent>) -> VmState {
        if self.is_gone() {
            return match last {
                Some(SystemEvent::Crash { .. }) => VmState::Crashed,
                _ => VmState::ShutDown,
            };
        }
        if self.is_paused() {
            return VmState::Paused;
        }
        if self.vcpus.iter().any(|v| v.state() == PowerState::Runnable) {
            VmState::Running
        } else {
            VmState::Blocked
        }
    }

    fn summary_from(&self, log: &EventLog) -> VmSummary {
        let last = log.recent().last();
        VmSummary {
            id: self.id,
            name: self.name.clone(),
            vcpus: self.vcpus.len(),
            mem_mib: self.ram_size() / MIB,
            state: self.list_state(last),
            last_event: last.map(|e| e.kind().to_string()),
        }
    }

    /// Its line of `list`.
    pub fn summary(&self) -> VmSummary {
        self.summary_from(&self.events.lock())
    }

    /// `info`: its CPUs (each vCPU's physical CPU, power state and latest PC), memory,
    /// devices, PSCI version and system events.
    pub fn info_lines(&self) -> Vec<String> {
        let log = self.events.lock();
        let vcpus = self
            .vcpus
            .iter()
            .map(|v| VcpuInfo { vcpu: v.index, pcpu: v.pcpu, power: power_word(v.state()), pc: v.last_pc() })
            .collect();
        let memory = self.ram.iter().map(|r| MemRange { base: r.base, size: r.size }).collect();
        let emulated =
            self.devices.iter().map(|(region, device)| format!("{} at {:#x} (emulated)", device.name(), region.base));
        let devices = emulated.chain(self.passthrough.iter().cloned()).collect();
        let info = VmInfo {
            summary: self.summary_from(&log),
            vcpus,
            memory,
            devices,
            psci: self.psci_version(),
            snapshot: self.snapshot_slot.map(|slot| SnapshotInfo {
                slot: MemRange { base: slot.base, size: slot.size },
                saved: self.snapshot.lock().as_ref().map(|s| ((s.ram.pages * PAGE) as u64, s.paused)),
            }),
            events: &log,
        };
        prompt::info_lines(&info)
    }

    /// `events`: its system-event log.
    pub fn with_event_log<R>(&self, f: impl FnOnce(&EventLog) -> R) -> R {
        f(&self.events.lock())
    }

    /// `get`: a firmware pseudo-register as the VM's vCPUs see it.
    pub fn firmware_reg(&self, reg: FwReg) -> Result<u64, String> {
        self.firmware_regs(|regs| regs.get(reg.id())).map_err(|e| format!("{e:?}"))
    }
}

/// A power state in `info`'s words.
fn power_word(state: PowerState) -> &'static str {
    match state {
        PowerState::Runnable => "runnable",
        PowerState::Stopped => "off",
        PowerState::Suspended => "suspended",
        PowerState::Halted => "wfi",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::psci::Version;
    use crate::vm::testing;

    #[test]
    fn a_vm_lists_with_its_size_state_and_latest_event() {
        let vm = testing::vm_with_on(Version::V1_1, &[true, false]);
        let s = vm.summary();
        assert_eq!((s.id, s.name.as_str(), s.vcpus, s.mem_mib), (0, "vm0", 2, 1024));
        assert_eq!(s.state, VmState::Running);
        assert_eq!(s.last_event, None);
        vm.record(SystemEvent::Reset { vcpu: 0 });
        assert_eq!(vm.summary().last_event.as_deref(), Some("reset"));
        assert!(vm.pause(100) && !vm.pause(150), "paused once");
        assert_eq!(vm.summary().state, VmState::Paused);
        assert!(vm.resume(400) && !vm.resume(500));
        assert_eq!(vm.virtual_offset(), 300, "the paused time leaves the virtual counter");
        crate::vm::destroy(&vm);
        assert_eq!(vm.summary().state, VmState::ShutDown);
    }

    #[test]
    fn info_names_every_vcpu_memory_range_device_and_event() {
        let vm = testing::vm_on_cpus(Version::V1_0, &[2, 3]);
        vm.vcpus[1].note_pc(0x4008_1234);
        vm.record(SystemEvent::Shutdown { vcpu: 1 });
        let text = vm.info_lines().join("\n");
        for expected in [
            "vm0 (ID 0)",
            "PSCI 1.0",
            "vcpu0 on cpu2: off",
            "vcpu1 on cpu3: off, PC 0x40081234",
            "memory 0x40000000-0x7fffffff (1024 MiB)",
            "virtual UART at 0x9000000 (emulated)",
            "device /virtio_mmio@a000000",
            "1 system event",
            "shutdown",
        ] {
            assert!(text.contains(expected), "no {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn get_reads_the_firmware_registers_as_the_vcpus_see_them() {
        let vm = testing::vm(Version::V1_0, 1);
        assert_eq!(vm.firmware_reg(FwReg::PsciVersion), Ok(0x1_0000));
    }
}
