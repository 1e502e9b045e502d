//! The VM side of PSCI and the VM's devices, on the real [`Vm`] over the fake machine.

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use super::gic::Distributor;
use super::testing::{self, GICD, GICR_BASE};
use super::*;
use crate::hw::fake::Fake;
use crate::smccc::call::VmFirmware;
use crate::smccc::psci::Version;
use crate::vcpu::Wait;

const ENTRY: u64 = 0x4800_0000;

#[test]
fn the_virtual_gic_frames_and_uart_are_the_vms_devices() {
    let vm = testing::vm(Version::V1_1, 2);
    let names: Vec<&str> = vm.devices.iter().map(|(_, d)| d.name()).collect();
    assert_eq!(names, ["GIC distributor", "GIC redistributors", "virtual UART"]);
    assert_eq!(vm.devices.find(GICD.base + 4).map(|(offset, _)| offset), Some(4));
    assert!(vm.devices.find(GICR_BASE + 2 * crate::vgic::dist::GICR_FRAME_SIZE).is_none(), "two frames only");
}

#[test]
fn a_device_overlapping_the_gic_is_refused() {
    let mut vm = testing::vm(Version::V1_1, 1);
    let err = vm.devices.register(Region::new(GICD.base + 0x100, 0x10), Box::new(Distributor(vm.vgic.clone())));
    assert_eq!(err.unwrap_err().with, "GIC distributor");
}

#[test]
fn cpu_on_during_a_system_event_fails_and_starts_nothing() {
    let vm = testing::vm_with_on(Version::V1_1, &[true, false]);
    vm.halting.store(true, Ordering::SeqCst);
    assert_eq!(vm.cpu_on(1, ENTRY, 0), ret::INTERNAL_FAILURE);
    assert_eq!(vm.vcpus[1].state(), PowerState::Stopped);
}

#[test]
fn cpu_on_aimed_at_a_suspended_vcpu_wakes_it_and_answers_already_on() {
    let vm = testing::vm_with_on(Version::V1_1, &[true, true]);
    assert!(vm.vcpus[1].begin_wait(Wait::Suspend));
    Fake::take_kicks();
    assert_eq!(vm.cpu_on(1, ENTRY, 0), ret::ALREADY_ON);
    assert_eq!(Fake::take_kicks(), [1], "its CPU must look");
    let woken = vm.vcpus[1].end_wait_if(|requested| requested.then_some(()));
    assert!(matches!(woken, crate::vcpu::WaitEnd::Woken(())));
}

#[test]
fn others_off_and_affinity_follow_the_power_states() {
    let vm = testing::vm_with_on(Version::V1_1, &[true, false, false]);
    assert!(vm.others_off(0));
    assert_eq!(vm.affinity_info(2, 0), AFFINITY_OFF);
    assert_eq!(vm.cpu_on(2, ENTRY, 0), ret::SUCCESS);
    assert!(!vm.others_off(0));
    assert_eq!(vm.affinity_info(2, 0), AFFINITY_ON);
    vm.vcpus[2].power_off();
    assert_eq!(vm.affinity_info(2, 0), AFFINITY_OFF);
    assert!(!vm.has_vcpu(3));
    assert!(!vm.has_vcpu(1 << 40 | 1), "bits outside the affinity fields");
}

#[test]
fn system_events_are_recorded_in_order() {
    let vm = testing::vm(Version::V1_1, 1);
    vm.record(SystemEvent::Reset { vcpu: 0 });
    vm.record(SystemEvent::Shutdown { vcpu: 0 });
    assert!(vm.epitaph().contains("2 system events"), "{}", vm.epitaph());
}

#[test]
fn the_timeout_counts_from_the_start_and_only_with_one_set() {
    let mut vm = testing::vm(Version::V1_1, 1);
    assert_eq!(vm.start_clock(100, 10), None);
    assert!(!vm.timed_out(|| panic!("the counter is not read without a timeout")), "no timeout: never");
    vm.actions.timeout_secs = Some(5);
    assert_eq!(vm.start_clock(100, 10), Some(150));
    assert!(!vm.timed_out(|| 149));
    assert!(vm.timed_out(|| 150));
}

#[test]
fn the_guest_status_is_the_vms() {
    let vm = testing::vm(Version::V1_1, 1);
    assert_eq!(vm.exit_status(), 0);
    vm.set_exit_status(5);
    assert_eq!(vm.exit_status(), 5);
}

#[test]
fn a_vm_on_other_cpus_numbers_its_vcpus_from_0_and_kicks_their_cpus() {
    let vm = testing::vm_on_cpus(Version::V1_1, &[2, 3]);
    assert_eq!(vm.vcpus.iter().map(|v| v.mpidr).collect::<Vec<_>>(), [0, 1], "MPIDRs as a guest expects");
    assert_eq!(vm.vcpu_on(3).map(|v| v.index), Some(1));
    assert!(vm.vcpu_on(0).is_none(), "CPU 0 is another VM's");
    assert!(vm.has_vcpu(1) && !vm.has_vcpu(2), "PSCI sees only its own vCPUs");
    assert_eq!(vm.affinity_info(3, 0), ret::INVALID_PARAMETERS);
    Fake::take_kicks();
    assert_eq!(vm.cpu_on(1, ENTRY, 0), ret::SUCCESS);
    assert_eq!(Fake::take_kicks(), [3], "vCPU 1's start reaches physical CPU 3");
}
