//! Real VMs for host tests: a [`Vm`] built through [`Vm::new`] as the boot VM is, with RAM,
//! a GICv3 layout and vCPUs whose MPIDRs are their indices, over the fake machine.

use alloc::vec::Vec;

use super::{BootImages, GicFrames, Stage2Root, Vm, VmConfig};
use crate::arch::aarch64::gicarch::GicVersion;
use crate::fwregs::VmFirmwareState;
use crate::mm::Region;
use crate::smccc::psci;
use crate::vcpu::Start;
use crate::verdict::VmActions;
use crate::vgic::dist::{VGic, GICR_FRAME_SIZE};

/// The test VM's RAM: 1 GiB at 0x4000_0000, as on QEMU virt.
pub const RAM: Region = Region::new(0x4000_0000, 0x4000_0000);
/// Its distributor and redistributors, where QEMU virt has them.
pub const GICD: Region = Region::new(0x0800_0000, 0x1_0000);
pub const GICR_BASE: u64 = 0x080A_0000;
/// SPIs the test VM's distributor models (INTIDs 32-63).
const NR_IRQS: u32 = 64;
/// Its virtual UART, where QEMU virt has its PL011, and the UART's SPI.
pub const UART: Region = Region::new(0x0900_0000, 0x1000);
pub const UART_SPI: u32 = 33;
/// Where its boot vCPU starts.
pub const BOOT_ENTRY: u64 = 0x4020_0000;

/// A VM with `vcpus` vCPUs (MPIDR affinity = index), all off, giving guests `version`.
pub fn vm(version: psci::Version, vcpus: usize) -> Vm {
    vm_on_cpus(version, &(0..vcpus).collect::<Vec<_>>())
}

/// The same VM, its vCPU n pinned to physical CPU `pcpus[n]`.
pub fn vm_on_cpus(version: psci::Version, pcpus: &[usize]) -> Vm {
    let vcpus = pcpus.len();
    let mpidrs: Vec<u64> = (0..vcpus as u64).collect();
    let gicr = Region::new(GICR_BASE, GICR_FRAME_SIZE * vcpus as u64);
    let config = VmConfig {
        id: 0,
        name: "vm0".into(),
        vmid: 1,
        firmware: VmFirmwareState::new(version).expect("a version Cairn implements"),
        stage2: Stage2Root::default(),
        ram: alloc::vec![RAM],
        vgic: VGic::new(GicVersion::V3, NR_IRQS, &mpidrs),
        pcpus: pcpus.to_vec(),
        mpidrs,
        gic_frames: GicFrames { distributor: GICD, redistributors: Some(gicr) },
        boot: BootImages { entry: BOOT_ENTRY, ..BootImages::default() },
        actions: VmActions::default(),
        serial: Some((UART, UART_SPI)),
        passthrough: alloc::vec!["/virtio_mmio@a000000".into()],
        snapshot_slot: None,
        sdei: false,
    };
    Vm::new(config).expect("the GIC frames do not overlap")
}

/// The same VM with the vCPUs `on` marks running, as after their CPU_ON.
pub fn vm_with_on(version: psci::Version, on: &[bool]) -> Vm {
    let vm = vm(version, on.len());
    for (vcpu, _) in vm.vcpus.iter().zip(on).filter(|(_, on)| **on) {
        let start = Start { entry: BOOT_ENTRY, context: 0, big_endian: false };
        vcpu.power_on(start, &vm.halting).expect("a stopped vCPU starts");
        vcpu.take_start();
    }
    vm
}
