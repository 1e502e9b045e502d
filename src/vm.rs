//! A virtual machine: its memory (stage 2), its vCPUs, its firmware settings, and the
//! guest it was built from.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::arch::aarch64::{cpu, mmu};
use crate::dt::{Machine, Module, ModuleKind};
use crate::guest_image::{self, ImageError};
use crate::hyp;
use crate::mm::pagetable::{MemType, PageTable, Stage2};
use crate::mm::Region;
use crate::psci;
use crate::smccc::dispatch::VmFirmware;
use crate::vcpu::Vcpu;

/// Why a VM could not be built.
#[derive(Debug)]
pub enum VmError {
    NoKernel,
    BadKernel(ImageError),
    NoRoomForDeviceTree,
    Stage2,
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::NoKernel => write!(f, "no /chosen module with compatible \"multiboot,kernel\""),
            VmError::BadKernel(e) => write!(f, "the kernel module is not an arm64 Image: {e:?}"),
            VmError::NoRoomForDeviceTree => write!(f, "no room in guest RAM for the device tree"),
            VmError::Stage2 => write!(f, "could not build the stage-2 tables"),
        }
    }
}

pub struct Vm {
    pub id: usize,
    pub vmid: u16,
    psci_version: psci::Version,
    stage2: PageTable<Stage2>,
    pub ram: Vec<Region>,
    pub vcpus: Vec<Vcpu>,
    /// Where the boot vCPU starts, and the device tree it gets in x0.
    pub entry: u64,
    pub dtb: u64,
}

impl VmFirmware for Vm {
    fn psci_version(&self) -> psci::Version {
        self.psci_version
    }
}

impl Vm {
    /// Makes this VM's stage-2 tables the current ones on this CPU.
    pub fn load_stage2(&self) {
        mmu::load_stage2(self.stage2.root_address(), self.stage2.start_level(), self.vmid);
    }
}

/// VMs alive; the machine powers off when the last one is gone.
static VMS: spin::Mutex<Vec<Arc<Vm>>> = spin::Mutex::new(Vec::new());

/// Guest RAM: all of RAM but Cairn's own region, mapped IPA == PA.
fn guest_ram(m: &Machine<'_>) -> Vec<Region> {
    let cairn = hyp::cairn_region();
    m.memory.iter().flat_map(|r| r.subtract(&cairn)).flatten().collect()
}

fn module_bytes(module: &Module<'_>) -> &'static [u8] {
    // SAFETY: the loader put the module in RAM, which Cairn maps, and nothing writes it
    // before the guest runs.
    unsafe { core::slice::from_raw_parts(module.region.base as *const u8, module.region.size as usize) }
}

/// Builds the VM described by the device tree's guest-loader modules: one vCPU per
/// physical CPU, pinned 1:1.
pub fn create_boot_vm(m: &Machine<'_>) -> Result<Arc<Vm>, VmError> {
    let kernel = m.modules.iter().find(|md| md.kind == ModuleKind::Kernel).ok_or(VmError::NoKernel)?;
    let header = guest_image::parse_header(module_bytes(kernel)).map_err(VmError::BadKernel)?;
    let ram = guest_ram(m);
    let others: Vec<Region> = m.modules.iter().filter(|md| md.kind != ModuleKind::Kernel).map(|md| md.region).collect();
    let placement = guest_image::place_kernel(kernel.region, &header, &ram, &others).map_err(VmError::BadKernel)?;
    if !placement.in_place {
        // SAFETY: place_kernel chose a destination in guest RAM that overlaps neither the
        // source module nor any other module.
        unsafe {
            core::ptr::copy_nonoverlapping(
                kernel.region.base as *const u8,
                placement.entry as *mut u8,
                kernel.region.size as usize,
            )
        };
    }
    mmu::clean_dcache_range(placement.entry, kernel.region.size);

    // The guest's device tree: for now, the host's own, copied into guest RAM.
    let host_dtb = hyp::host_device_tree();
    let mut avoid = others.clone();
    avoid.push(placement.footprint);
    let dtb = guest_image::place_dtb(host_dtb.len() as u64, &ram, &avoid).ok_or(VmError::NoRoomForDeviceTree)?;
    // SAFETY: place_dtb chose a slot in guest RAM clear of the kernel and the modules.
    unsafe { core::ptr::copy_nonoverlapping(host_dtb.as_ptr(), dtb as *mut u8, host_dtb.len()) };
    mmu::clean_dcache_range(dtb, host_dtb.len() as u64);

    let mut tables = hyp::heap_tables();
    let mut stage2 = PageTable::<Stage2>::new(&mut tables, mmu::ipa_bits()).ok_or(VmError::Stage2)?;
    for r in &ram {
        stage2.map(&mut tables, r.base, r.base, r.size, MemType::Normal).map_err(|_| VmError::Stage2)?;
    }
    if let Some(uart) = m.uart {
        let base = uart.base & !0xFFF;
        stage2
            .map(&mut tables, base, base, crate::mm::align_up(uart.end(), 4096) - base, MemType::Device)
            .map_err(|_| VmError::Stage2)?;
    }
    let vcpus = hyp::logical_cpus(m)
        .into_iter()
        .take(crate::arch::aarch64::boot::MAX_CPUS)
        .enumerate()
        .map(|(i, mpidr)| Vcpu::new(i, mpidr & cpu::MPIDR_AFFINITY_MASK, i))
        .collect();
    let vm = Arc::new(Vm {
        id: 0,
        vmid: 1,
        psci_version: psci::DEFAULT_VERSION,
        stage2,
        ram,
        vcpus,
        entry: placement.entry,
        dtb,
    });
    log::info!(
        "vm{}: kernel at {:#x}{}, device tree at {:#x}, {} vCPUs, PSCI {}.{}",
        vm.id,
        vm.entry,
        if placement.in_place { " (in place)" } else { " (moved)" },
        vm.dtb,
        vm.vcpus.len(),
        vm.psci_version.major,
        vm.psci_version.minor
    );
    if let Some(args) = kernel.bootargs {
        log::debug!("vm{}: bootargs \"{args}\" (passed on with the guest device tree in a later release)", vm.id);
    }
    VMS.lock().push(vm.clone());
    Ok(vm)
}

/// Removes `vm` from the live set. Returns how many VMs are left.
pub fn destroy(vm: &Arc<Vm>) -> usize {
    let mut vms = VMS.lock();
    vms.retain(|v| !Arc::ptr_eq(v, vm));
    vms.len()
}
