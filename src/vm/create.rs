//! Building the boot VM from the device tree's guest-loader modules (or a guest bundle):
//! its RAM, stage-2 tables, vCPUs, virtual GIC, device tree and pristine image copies.
//! Bare-metal target only.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::{BootImages, GicFrames, Image, Stage2Root, Vm, VmConfig};
use crate::arch::aarch64::gic;
use crate::arch::aarch64::gicarch::GicVersion;
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::{copy, mmu};
use crate::dt::{Machine, Module, ModuleKind, UartKind};
use crate::fwregs::VmFirmwareState;
use crate::guest_dt::{self, GuestDtConfig, GuestGic, Psci01Ids};
use crate::guest_image::{self, ImageError, KernelPlacement};
use crate::mm::pagetable::{HeapTables, MemType, PageTable, Stage2};
use crate::mm::usage::MemoryUse;
use crate::mm::{align_up, Region, MIB};
use crate::smccc::call::VmFirmware;
use crate::smccc::psci;
use crate::verdict::{self, VmActions};
use crate::vgic::dist::{VGic, GICR_FRAME_SIZE};
use crate::vuart;

/// Why a VM could not be built.
#[derive(Debug)]
pub enum VmError {
    NoKernel,
    BadKernel(ImageError),
    NoGic,
    DeviceTree(guest_dt::GuestDtError),
    NoRoomForDeviceTree,
    NoRoomForImages,
    PsciVersion,
    Stage2,
    Devices(super::devices::Overlap),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::NoKernel => write!(f, "no /chosen module with compatible \"multiboot,kernel\""),
            VmError::BadKernel(e) => write!(f, "the kernel module is not an arm64 Image: {e:?}"),
            VmError::NoGic => write!(f, "the machine has no GIC Cairn can virtualize"),
            VmError::DeviceTree(e) => write!(f, "could not build the guest device tree: {e:?}"),
            VmError::NoRoomForDeviceTree => write!(f, "no room in guest RAM for the device tree"),
            VmError::NoRoomForImages => write!(f, "no room to keep pristine copies of the guest images"),
            VmError::PsciVersion => write!(f, "Cairn does not implement that PSCI version"),
            VmError::Stage2 => write!(f, "could not build the stage-2 tables"),
            VmError::Devices(o) => write!(f, "emulated device at {:#x} overlaps the {}", o.region.base, o.with),
        }
    }
}

/// PSCI 0.1 function IDs Cairn publishes in a 0.1 guest's device tree: the SMC64 IDs of
/// PSCI 0.2, so one dispatcher serves both.
const PSCI_0_1_IDS: Psci01Ids = Psci01Ids::PSCI_0_2_SMC64;

fn module_bytes(module: &Module<'_>) -> &'static [u8] {
    // SAFETY: the loader put the module in RAM, which Cairn maps, and nothing writes it
    // before it is copied.
    unsafe { core::slice::from_raw_parts(module.region.base as *const u8, module.region.size as usize) }
}

/// The pristine reserve is whole 2 MiB blocks, so the guest RAM below it keeps its block
/// mappings.
const PRISTINE_ALIGN: u64 = 2 * MIB;

/// Takes `size` bytes off the top of the highest RAM region for Cairn: where pristine
/// copies of the guest's images live, out of the guest's reach.
fn reserve_top(ram: &mut [Region], size: u64) -> Option<u64> {
    let size = align_up(size, PRISTINE_ALIGN);
    let top = ram.iter_mut().filter(|r| r.size > size).max_by_key(|r| r.end())?;
    top.size -= size;
    Some(top.end())
}

/// Guest RAM: all of RAM but Cairn's own region, mapped IPA == PA.
fn guest_ram(m: &Machine<'_>, cairn: Region) -> Vec<Region> {
    m.memory.iter().flat_map(|r| r.subtract(&cairn)).flatten().collect()
}

/// How the guest sees the GIC: what its device tree says, which frames Cairn emulates,
/// and, for GICv2, the GICV frame mapped where the guest expects GICC (IPA, PA).
struct GicLayout {
    dt: GuestGic,
    frames: GicFrames,
    virtual_cpu_interface: Option<(Region, Region)>,
}

fn guest_gic(m: &Machine<'_>, vcpus: usize) -> Result<GicLayout, VmError> {
    let info = m.gic.as_ref().ok_or(VmError::NoGic)?;
    let frame = |n: usize| info.regions.get(n).copied().ok_or(VmError::NoGic);
    match info.version {
        GicVersion::V3 => {
            let distributor = frame(0)?;
            let redistributors = Region::new(frame(1)?.base, GICR_FRAME_SIZE * vcpus as u64);
            Ok(GicLayout {
                dt: GuestGic::V3 { distributor, redistributors },
                frames: GicFrames { distributor, redistributors: Some(redistributors) },
                virtual_cpu_interface: None,
            })
        }
        GicVersion::V2 => {
            let (distributor, cpu_if, virtual_cpu_if) = (frame(0)?, frame(1)?, frame(3)?);
            // The guest's GICC is the GICV frame, mapped where the guest expects GICC.
            let size = align_up(cpu_if.size.min(virtual_cpu_if.size), 4096);
            Ok(GicLayout {
                dt: GuestGic::V2 { distributor, cpu_interface: cpu_if },
                frames: GicFrames { distributor, redistributors: None },
                virtual_cpu_interface: Some((Region::new(cpu_if.base, size), Region::new(virtual_cpu_if.base, size))),
            })
        }
    }
}

/// What VM creation needs to know of the machine beyond the guest's modules: Cairn's
/// own memory, the host device tree whose devices pass through, the physical CPUs.
pub struct Host<'a> {
    /// Cairn's own region, which no guest gets.
    pub cairn: Region,
    /// Cairn's copy of the host device tree.
    pub device_tree: &'a [u8],
    /// Each physical CPU's MPIDR, by logical number.
    pub cpus: Vec<u64>,
    /// Cairn's side of the memory line, read once the VM is built.
    pub own_memory: fn() -> MemoryUse,
}

/// What a guest asks for beyond its images (a guest bundle's vm.conf and device tree).
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestSettings {
    /// At most this many vCPUs (default: one per physical CPU).
    pub vcpus: Option<usize>,
    /// The PSCI version, as `X.Y`.
    pub psci: Option<&'static str>,
    /// The device tree the guest's is derived from: the host's, or the bundle's.
    pub base_dtb: &'static [u8],
    /// What a reset does and how long the VM may run (vm.conf's `on-reset`, `timeout`);
    /// the kernel's `cairn.*` bootargs words override them.
    pub actions: VmActions,
}

/// Builds the VM described by the device tree's guest-loader modules: one vCPU per
/// physical CPU (or as many as `settings` says), pinned 1:1.
pub fn create_boot_vm(
    host: &Host<'_>,
    m: &Machine<'_>,
    psci_version: psci::Version,
    settings: &GuestSettings,
) -> Result<Arc<Vm>, VmError> {
    let firmware = VmFirmwareState::new(psci_version).map_err(|_| VmError::PsciVersion)?;
    let kernel = m.modules.iter().find(|md| md.kind == ModuleKind::Kernel).ok_or(VmError::NoKernel)?;
    let initrd = m.modules.iter().find(|md| md.kind == ModuleKind::Ramdisk);
    let header = guest_image::parse_header(module_bytes(kernel)).map_err(VmError::BadKernel)?;
    let mut ram = guest_ram(m, host.cairn);
    let pristine_size = kernel.region.size + initrd.map_or(0, |i| i.region.size);
    let pristine = reserve_top(&mut ram, pristine_size).ok_or(VmError::NoRoomForImages)?;

    let modules: Vec<Region> = m.modules.iter().map(|md| md.region).collect();
    let others: Vec<Region> = modules.iter().copied().filter(|r| *r != kernel.region).collect();
    let placement = guest_image::place_kernel(kernel.region, &header, &ram, &others).map_err(VmError::BadKernel)?;
    let kernel_image = Image { at: Region::new(placement.entry, kernel.region.size), pristine };
    let initrd_image = initrd.map(|i| Image { at: i.region, pristine: pristine + kernel.region.size });
    // Keep the pristine copies first: placing the kernel may move it over other memory.
    copy_raw(kernel.region.base, pristine, kernel.region.size);
    if let Some(i) = initrd {
        copy_raw(i.region.base, pristine + kernel.region.size, i.region.size);
    }

    let vcpus = settings.vcpus.unwrap_or(MAX_CPUS).clamp(1, MAX_CPUS);
    let mpidrs: Vec<u64> = host.cpus.iter().copied().take(vcpus).collect();
    let layout = guest_gic(m, mpidrs.len())?;
    // The board's devices Cairn keeps for itself are not the guest's (crate::platform).
    let hidden: Vec<&str> = crate::platform::owned_compatibles(m.board).collect();
    let (actions, guest_args) = vm_words(settings.actions, kernel.bootargs);
    let serial = virtual_uart(m);
    let cfg = GuestDtConfig {
        memory: &ram,
        vcpu_mpidrs: &mpidrs,
        psci_version,
        psci_0_1_ids: PSCI_0_1_IDS,
        bootargs: kernel.bootargs.map(|_| guest_args.as_str()),
        initrd: initrd.map(|i| i.region),
        gic: Some(layout.dt),
        hidden: &hidden,
        virtual_uart: serial.map(|(frame, _)| frame),
    };
    let guest_dtb = guest_dt::build(settings.base_dtb, &cfg).map_err(VmError::DeviceTree)?;
    let mut avoid = modules.clone();
    avoid.push(placement.footprint);
    let dtb = guest_image::place_dtb(guest_dtb.len() as u64, &ram, &avoid).ok_or(VmError::NoRoomForDeviceTree)?;

    let stage2 = build_stage2(&ram, host.device_tree, layout.virtual_cpu_interface, serial.map(|(r, _)| r))?;
    let vgic = gic::get().map(|g| VGic::new(g.version(), g.nr_irqs(), &mpidrs)).ok_or(VmError::NoGic)?;
    let boot = BootImages { entry: placement.entry, dtb, kernel: Some(kernel_image), initrd: initrd_image, guest_dtb };
    let config = VmConfig {
        id: 0,
        vmid: 1,
        firmware,
        stage2: Stage2Root { root: stage2.root_address(), start_level: stage2.start_level() },
        ram,
        mpidrs,
        vgic,
        gic_frames: layout.frames,
        boot,
        actions,
        serial,
    };
    let vm = Arc::new(Vm::new(config).map_err(VmError::Devices)?);
    vm.install_first_boot(placement.in_place);
    log_created(&vm, &placement, kernel.bootargs.map(|_| guest_args.as_str()));
    log::info!("vm{}: {}", vm.id, memory_use(&vm, pristine_size, (host.own_memory)()));
    vm.publish();
    Ok(vm)
}

/// The VM's `cairn.*` words taken out of its kernel's bootargs (over vm.conf's `actions`),
/// and what is left for the guest.
fn vm_words(conf: VmActions, bootargs: Option<&str>) -> (VmActions, String) {
    let (actions, guest_args, bad) = verdict::take_vm_words(conf, bootargs.unwrap_or(""));
    for word in bad {
        log::warn!("{word}");
    }
    (actions, guest_args)
}

fn memory_use(vm: &Vm, pristine_size: u64, cairns: MemoryUse) -> MemoryUse {
    MemoryUse { guest: vm.ram_size(), pristine: align_up(pristine_size, PRISTINE_ALIGN), ..cairns }
}

fn copy_raw(from: u64, to: u64, size: u64) {
    // SAFETY: both ranges are RAM Cairn maps; `to` is the reserved pristine area, disjoint
    // from the loader's modules.
    unsafe { copy::copy_bulk(from, to, size) };
}

/// The VM's virtual UART: a frame at the board's console PL011 and its SPI. Only a PL011
/// console is virtualized; the Pi's mini UART is still shared with the guest.
fn virtual_uart(m: &Machine<'_>) -> Option<(Region, u32)> {
    let frame = m.uart.filter(|_| m.uart_kind == UartKind::Pl011)?;
    Some((Region::new(frame.base, vuart::FRAME_SIZE), m.uart_irq?))
}

/// Stage 2: guest RAM and the passed-through devices, less the frame of `uart`, which
/// traps to the virtual UART.
fn build_stage2(
    ram: &[Region],
    host_device_tree: &[u8],
    gicv: Option<(Region, Region)>,
    uart: Option<Region>,
) -> Result<PageTable<Stage2>, VmError> {
    let mut tables = HeapTables;
    let mut stage2 = PageTable::<Stage2>::new(&mut tables, mmu::ipa_bits()).ok_or(VmError::Stage2)?;
    for r in ram {
        stage2.map(&mut tables, r.base, r.base, r.size, MemType::Normal).map_err(|_| VmError::Stage2)?;
    }
    let devices = crate::dt::passthrough_regions(host_device_tree);
    let mapped = devices.iter().flat_map(|d| match uart {
        Some(u) => d.subtract(&u),
        None => [Some(*d), None],
    });
    for dev in mapped.flatten() {
        stage2.map(&mut tables, dev.base, dev.base, dev.size, MemType::Device).map_err(|_| VmError::Stage2)?;
    }
    if let Some((guest_cpu_if, virtual_cpu_if)) = gicv {
        stage2
            .map(&mut tables, guest_cpu_if.base, virtual_cpu_if.base, guest_cpu_if.size, MemType::Device)
            .map_err(|_| VmError::Stage2)?;
    }
    Ok(stage2)
}

fn log_created(vm: &Vm, placement: &KernelPlacement, bootargs: Option<&str>) {
    log::info!(
        "vm{}: kernel at {:#x}{}, device tree at {:#x}, {} vCPUs, {} MiB RAM, PSCI {}.{}",
        vm.id,
        vm.boot.entry,
        if placement.in_place { " (in place)" } else { " (moved)" },
        vm.boot.dtb,
        vm.vcpus.len(),
        vm.ram_size() / MIB,
        vm.psci_version().major,
        vm.psci_version().minor
    );
    if let Some(args) = bootargs {
        log::debug!("vm{}: bootargs \"{args}\"", vm.id);
    }
}
