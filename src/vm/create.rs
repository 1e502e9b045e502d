//! Building the boot VM from the device tree's guest-loader modules (or a guest bundle):
//! its RAM, stage-2 tables, vCPUs, virtual GIC, device tree and pristine image copies.
//! Bare-metal target only.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::{BootImages, GicFrames, Image, Stage2Root, Vm, VmConfig};
use crate::arch::aarch64::gic;
use crate::arch::aarch64::gicarch::GicVersion;
use crate::arch::aarch64::gicarch::PRIVATE_IRQS;
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::{copy, mmu};
use crate::dt::{Device, Machine, Module, ModuleKind, UartKind};
use crate::fwregs::VmFirmwareState;
use crate::guest_dt::{self, GuestDtConfig, GuestGic, Psci01Ids};
use crate::guest_image::{self, ImageError, KernelPlacement};
use crate::mm::pagetable::{HeapTables, MemType, PageTable, Stage2};
use crate::mm::usage::MemoryUse;
use crate::mm::{align_up, Region, MIB};
use crate::partition::{self, Board, ModuleInput, VmPlan};
use crate::smccc::call::VmFirmware;
use crate::smccc::psci;
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

fn ram_bytes(region: Region) -> &'static [u8] {
    // SAFETY: the region is in RAM, which Cairn maps: a pristine copy, which nothing
    // writes once it is made.
    unsafe { core::slice::from_raw_parts(region.base as *const u8, region.size as usize) }
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
    /// What the loader put in RAM besides the modules (the host device tree, a guest
    /// bundle): wiped from every VM's RAM before it starts.
    pub loader_leftovers: Vec<Region>,
}

/// What the guests ask for beyond their images and bootargs (a guest bundle's).
#[derive(Clone, Debug, Default)]
pub struct GuestSettings {
    /// The device tree the guests' are derived from: the host's.
    pub base_dtb: &'static [u8],
    /// What a guest bundle says of each of its VMs.
    pub per_vm: Vec<BundleVm>,
}

/// A guest bundle's settings for the VM whose kernel is at `kernel_at`.
#[derive(Clone, Copy, Debug)]
pub struct BundleVm {
    pub kernel_at: u64,
    /// Its vm.conf: the same settings as the `cairn.*` words (crate::partition), which
    /// override it.
    pub vm_conf: Option<&'static str>,
    /// The device tree its own is derived from, instead of the host's.
    pub dtb: Option<&'static [u8]>,
}

impl GuestSettings {
    fn of(&self, kernel: &Module<'_>) -> Option<&BundleVm> {
        self.per_vm.iter().find(|b| b.kernel_at == kernel.region.base)
    }
}

/// One VM's modules: its kernel, and the initrd the loader put after it.
#[derive(Clone, Copy, Debug)]
struct Guest<'m> {
    kernel: Module<'m>,
    initrd: Option<Module<'m>>,
}

/// The guests the modules describe: every kernel module starts one, in ascending address
/// order; an initrd module belongs to the guest whose kernel is the nearest below it.
fn guests<'m>(m: &Machine<'m>) -> Vec<Guest<'m>> {
    let mut kernels: Vec<Module<'m>> = m.modules.iter().copied().filter(|md| md.kind == ModuleKind::Kernel).collect();
    kernels.sort_by_key(|k| k.region.base);
    let mut out: Vec<Guest<'m>> = kernels.into_iter().map(|kernel| Guest { kernel, initrd: None }).collect();
    for initrd in m.modules.iter().filter(|md| md.kind == ModuleKind::Ramdisk) {
        let owner = out.iter_mut().rev().find(|g| g.kernel.region.base < initrd.region.base);
        if let Some(g) = owner.filter(|g| g.initrd.is_none()) {
            g.initrd = Some(*initrd);
        }
    }
    out
}

/// Where Cairn keeps a guest's pristine images, out of every guest's reach.
#[derive(Clone, Copy, Debug)]
struct Pristine {
    kernel: u64,
    initrd: Option<u64>,
}

/// Copies every guest's images to the pristine reserve at `base`, before any VM's RAM is
/// written (a module may lie in another VM's RAM).
fn keep_pristine(guests: &[Guest<'_>], base: u64) -> Vec<Pristine> {
    let mut next = base;
    let mut keep = |r: Region| {
        let at = next;
        copy_raw(r.base, at, r.size);
        next += r.size;
        at
    };
    guests
        .iter()
        .map(|g| Pristine { kernel: keep(g.kernel.region), initrd: g.initrd.map(|i| keep(i.region)) })
        .collect()
}

/// Builds every VM the device tree's guest-loader modules (or a guest bundle) describe,
/// partitioned as their `cairn.*` settings say (crate::partition). A VM that cannot be
/// built is reported in one line; the others are built all the same.
pub fn create_vms(
    host: &Host<'_>,
    m: &Machine<'_>,
    default_psci: psci::Version,
    settings: &GuestSettings,
) -> Result<Vec<Arc<Vm>>, VmError> {
    let guests = guests(m);
    if guests.is_empty() {
        return Err(VmError::NoKernel);
    }
    let mut ram = guest_ram(m, host.cairn);
    let images = guests.iter().flat_map(|g| core::iter::once(g.kernel).chain(g.initrd));
    let pristine_size: u64 = images.map(|md| md.region.size).sum();
    let reserve = reserve_top(&mut ram, pristine_size).ok_or(VmError::NoRoomForImages)?;
    let pristine = keep_pristine(&guests, reserve);
    let all_modules: Vec<Region> =
        guests.iter().flat_map(|g| core::iter::once(g.kernel.region).chain(g.initrd.map(|i| i.region))).collect();

    let uart = virtual_uart(m);
    let devices: Vec<Device> = crate::dt::passthrough_devices(host.device_tree)
        .into_iter()
        .filter(|d| !uart.is_some_and(|(frame, _)| d.regions.iter().any(|r| r.overlaps(&frame))))
        .collect();
    let paths: Vec<&str> = devices.iter().map(|d| d.path.as_str()).collect();
    let inputs: Vec<ModuleInput<'_>> = guests
        .iter()
        .map(|g| ModuleInput {
            address: g.kernel.region.base,
            bootargs: g.kernel.bootargs.unwrap_or(""),
            vm_conf: settings.of(&g.kernel).and_then(|b| b.vm_conf),
        })
        .collect();
    let board = Board { cpus: host.cpus.len().min(MAX_CPUS), free_ram: &ram, devices: &paths };
    let plan = partition::plan(&board, &inputs);
    for refusal in &plan.refused {
        log::error!("{}: not started", refusal.line);
    }
    for note in &plan.notes {
        log::info!("{note}");
    }
    let several = plan.vms.len() > 1;
    let free: u64 = ram.iter().map(|r| r.size).sum();
    let taken = plan.vms.iter().map(|vp| vp.ram.size + vp.snapshot.map_or(0, |s| s.size)).sum::<u64>();
    let unused = free.saturating_sub(taken);
    let mut vms = Vec::new();
    for (n, vp) in plan.vms.iter().enumerate() {
        let parts = VmParts {
            guest: guests[vp.index],
            pristine: pristine[vp.index],
            devices: &devices,
            several,
            first: n == 0,
            unused,
            all_modules: &all_modules,
            uart,
            default_psci,
            base_dtb: settings.of(&guests[vp.index].kernel).and_then(|b| b.dtb).unwrap_or(settings.base_dtb),
        };
        match build_vm(host, m, vp, &parts) {
            Ok(built) => vms.push(built),
            Err(e) => {
                log::error!("{} (module at {:#x}): {e}: not started", vp.name, guests[vp.index].kernel.region.base)
            }
        }
    }
    // Only once every VM is built is anything written to guest RAM: until then the loader's
    // modules, device tree and bundle are read in place.
    Ok(vms.into_iter().map(Built::install).collect())
}

/// What building one VM takes besides its plan.
struct VmParts<'a, 'm> {
    guest: Guest<'m>,
    pristine: Pristine,
    devices: &'a [Device],
    /// Whether other VMs share the board (each then sees only its own SPIs).
    several: bool,
    /// Whether this is the first VM to start, which gets what nobody named.
    first: bool,
    /// RAM no VM gets, for the memory line.
    unused: u64,
    /// Every guest's modules where the loader put them.
    all_modules: &'a [Region],
    uart: Option<(Region, u32)>,
    default_psci: psci::Version,
    base_dtb: &'static [u8],
}

/// Where a VM's images go in its RAM.
struct Placed {
    kernel: KernelPlacement,
    initrd: Option<Image>,
    /// Whether the loader already put the initrd there.
    initrd_in_place: bool,
}

/// Places the kernel and initrd in `ram`: where the loader put them if that is inside
/// the VM's RAM, else copied from their pristine copies to the lowest room.
fn place_images(parts: &VmParts<'_, '_>, ram: Region, header: &guest_image::ImageHeader) -> Result<Placed, VmError> {
    let (kernel, initrd) = (parts.guest.kernel, parts.guest.initrd);
    let initrd_in_place = initrd.is_some_and(|i| ram.contains_region(&i.region));
    let avoid: Vec<Region> = initrd.filter(|_| initrd_in_place).map(|i| i.region).into_iter().collect();
    let placement = guest_image::place_kernel(kernel.region, header, &[ram], &avoid).map_err(VmError::BadKernel)?;
    let initrd_image = match (initrd, parts.pristine.initrd) {
        (Some(i), Some(pristine)) if initrd_in_place => Some(Image { at: i.region, pristine }),
        (Some(i), Some(pristine)) => {
            let at =
                guest_image::place_low(i.region.size, ram, &[placement.footprint]).ok_or(VmError::NoRoomForImages)?;
            Some(Image { at: Region::new(at, i.region.size), pristine })
        }
        _ => None,
    };
    Ok(Placed { kernel: placement, initrd: initrd_image, initrd_in_place })
}

/// Builds the VM `vp` plans: its RAM, stage 2, vCPUs on its CPUs, virtual GIC and UART,
/// devices and device tree.
fn build_vm(host: &Host<'_>, m: &Machine<'_>, vp: &VmPlan, parts: &VmParts<'_, '_>) -> Result<Built, VmError> {
    let psci_version = vp.psci.unwrap_or(parts.default_psci);
    let firmware = VmFirmwareState::new(psci_version).map_err(|_| VmError::PsciVersion)?;
    let kernel = parts.guest.kernel;
    let pristine_kernel = Region::new(parts.pristine.kernel, kernel.region.size);
    let header = guest_image::parse_header(ram_bytes(pristine_kernel)).map_err(VmError::BadKernel)?;
    let ram = vec![vp.ram];
    let placed = place_images(parts, vp.ram, &header)?;
    let kernel_image =
        Image { at: Region::new(placed.kernel.entry, kernel.region.size), pristine: parts.pristine.kernel };

    let mpidrs: Vec<u64> = (0..vp.cpus.len() as u64).collect();
    let layout = guest_gic(m, mpidrs.len())?;
    // The board's devices Cairn keeps for itself are not the guest's (crate::platform).
    let hidden: Vec<&str> = crate::platform::owned_compatibles(m.board).collect();
    let mine = |i: &usize| vp.devices.contains(i);
    let others: Vec<&str> =
        parts.devices.iter().enumerate().filter(|(i, _)| !mine(i)).map(|(_, d)| d.path.as_str()).collect();
    let cfg = GuestDtConfig {
        memory: &ram,
        vcpu_mpidrs: &mpidrs,
        psci_version,
        psci_0_1_ids: PSCI_0_1_IDS,
        bootargs: kernel.bootargs.map(|_| vp.guest_args.as_str()),
        initrd: placed.initrd.map(|i| i.at),
        gic: Some(layout.dt),
        hidden: &hidden,
        virtual_uart: parts.uart.map(|(frame, _)| frame),
        other_vms_devices: &others,
        sdei: vp.sdei,
    };
    let guest_dtb = guest_dt::build(parts.base_dtb, &cfg).map_err(VmError::DeviceTree)?;
    let avoid: Vec<Region> = core::iter::once(placed.kernel.footprint).chain(placed.initrd.map(|i| i.at)).collect();
    let dtb = guest_image::place_dtb(guest_dtb.len() as u64, &ram, &avoid).ok_or(VmError::NoRoomForDeviceTree)?;

    let my_devices: Vec<&Device> = vp.devices.iter().filter_map(|&i| parts.devices.get(i)).collect();
    let frames = crate::dt::merge_regions(my_devices.iter().flat_map(|d| d.regions.iter().copied()).collect());
    let stage2 = build_stage2(&ram, &frames, layout.virtual_cpu_interface)?;
    let mut vgic = gic::get().map(|g| VGic::new(g.version(), g.nr_irqs(), &mpidrs)).ok_or(VmError::NoGic)?;
    if parts.several {
        vgic.limit_spis(&own_spis(vp, parts.devices, parts.first));
    }
    let boot = BootImages {
        entry: placed.kernel.entry,
        dtb,
        kernel: Some(kernel_image),
        initrd: placed.initrd,
        guest_dtb: spin::Mutex::new(guest_dtb),
    };
    let config = VmConfig {
        id: vp.index,
        name: vp.name.clone(),
        vmid: vmid(vp.index),
        firmware,
        stage2: Stage2Root { root: stage2.root_address(), start_level: stage2.start_level() },
        ram,
        mpidrs,
        pcpus: vp.cpus.clone(),
        vgic,
        gic_frames: layout.frames,
        boot,
        actions: vp.actions,
        serial: parts.uart,
        passthrough: my_devices.iter().map(|d| d.path.clone()).collect(),
        snapshot_slot: vp.snapshot,
        sdei: vp.sdei,
    };
    let vm = Arc::new(Vm::new(config).map_err(VmError::Devices)?);
    let wipe = leftovers_in(host, parts, &placed, vp.ram);
    log_created(&vm, &placed.kernel, kernel.bootargs.map(|_| vp.guest_args.as_str()), &my_devices);
    let pristine_size = kernel.region.size + parts.guest.initrd.map_or(0, |i| i.region.size);
    log::info!("vm{}: {}", vm.id, memory_use(&vm, pristine_size, parts.unused, (host.own_memory)()));
    Ok(Built { vm, wipe, kernel_in_place: placed.kernel.in_place, initrd_in_place: placed.initrd_in_place })
}

/// A VM built but not yet written into its RAM.
struct Built {
    vm: Arc<Vm>,
    /// What the loader left in its RAM for others, to zero.
    wipe: Vec<Region>,
    kernel_in_place: bool,
    initrd_in_place: bool,
}

impl Built {
    /// Clears the VM's RAM of others' leftovers, writes its images and device tree, and
    /// adds it to the live set.
    fn install(self) -> Arc<Vm> {
        self.vm.wipe(&self.wipe);
        self.vm.install_first_boot(self.kernel_in_place, self.initrd_in_place);
        self.vm.publish();
        self.vm
    }
}

/// The SPIs a VM sees when it shares the board: its own devices'. The first VM gets every
/// device nobody named, and with them every SPI no other VM's device uses, so lines that
/// no `interrupts` property names (a PCIe host's INTx, through its `interrupt-map`) stay
/// with it, as they would with no partition at all.
fn own_spis(vp: &VmPlan, devices: &[Device], first: bool) -> Vec<u32> {
    let spis_of = |mine: bool| -> Vec<u32> {
        let picked = devices.iter().enumerate().filter(|(i, _)| vp.devices.contains(i) == mine);
        picked.flat_map(|(_, d)| d.spis.iter().copied()).collect()
    };
    let nr_irqs = gic::get().map_or(0, |g| g.nr_irqs());
    if first {
        let others = spis_of(false);
        (PRIVATE_IRQS..nr_irqs).filter(|i| !others.contains(i)).collect()
    } else {
        spis_of(true)
    }
}

/// What the loader left in `ram` that is not this VM's to read: every other guest's
/// modules (pristine copies of them are kept elsewhere), its own that were moved, the
/// host device tree and a guest bundle. Only its own images left in place stay.
fn leftovers_in(host: &Host<'_>, parts: &VmParts<'_, '_>, placed: &Placed, ram: Region) -> Vec<Region> {
    let kept: Vec<Region> = [
        placed.kernel.in_place.then_some(placed.kernel.footprint),
        placed.initrd.filter(|_| placed.initrd_in_place).map(|i| i.at),
    ]
    .into_iter()
    .flatten()
    .collect();
    let loaded = parts.all_modules.iter().chain(&host.loader_leftovers);
    let mut out: Vec<Region> = loaded.filter_map(|r| clip(*r, ram)).collect();
    for k in &kept {
        out = out.iter().flat_map(|r| r.subtract(k)).flatten().collect();
    }
    out
}

/// The part of `r` inside `within`, if any.
fn clip(r: Region, within: Region) -> Option<Region> {
    let (start, end) = (r.base.max(within.base), r.end().min(within.end()));
    (start < end).then(|| Region::from_bounds(start, end))
}

/// A VM's VMID: VMID 0 is never a guest's (Cairn's own translations would share it).
fn vmid(index: usize) -> u16 {
    index as u16 + 1
}

/// VM `vm`'s memory line: its RAM and pristine images, Cairn's side as it stands, and the
/// RAM no VM got (`unused`, machine-wide).
fn memory_use(vm: &Vm, pristine_size: u64, unused: u64, cairns: MemoryUse) -> MemoryUse {
    let pristine = align_up(pristine_size, PRISTINE_ALIGN);
    let snapshot = vm.snapshot_slot.map_or(0, |s| s.size);
    MemoryUse { guest: vm.ram_size(), pristine, snapshot, unused, ..cairns }
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

/// Stage 2: guest RAM, the VM's own devices' frames and, for GICv2, the virtual CPU
/// interface where the guest expects its GICC. Everything else traps.
fn build_stage2(
    ram: &[Region],
    devices: &[Region],
    gicv: Option<(Region, Region)>,
) -> Result<PageTable<Stage2>, VmError> {
    let mut tables = HeapTables;
    let mut stage2 = PageTable::<Stage2>::new(&mut tables, mmu::ipa_bits()).ok_or(VmError::Stage2)?;
    for r in ram {
        stage2.map(&mut tables, r.base, r.base, r.size, MemType::Normal).map_err(|_| VmError::Stage2)?;
    }
    for dev in devices {
        stage2.map(&mut tables, dev.base, dev.base, dev.size, MemType::Device).map_err(|_| VmError::Stage2)?;
    }
    if let Some((guest_cpu_if, virtual_cpu_if)) = gicv {
        stage2
            .map(&mut tables, guest_cpu_if.base, virtual_cpu_if.base, guest_cpu_if.size, MemType::Device)
            .map_err(|_| VmError::Stage2)?;
    }
    Ok(stage2)
}

fn log_created(vm: &Vm, placement: &KernelPlacement, bootargs: Option<&str>, devices: &[&Device]) {
    let cpus: Vec<String> = vm.vcpus.iter().map(|v| alloc::format!("{}", v.pcpu)).collect();
    log::info!(
        "vm{} ({}): kernel at {:#x}{}, device tree at {:#x}, {} vCPUs on CPUs {}, {} MiB RAM at {:#x}, PSCI {}.{}",
        vm.id,
        vm.name,
        vm.boot.entry,
        if placement.in_place { " (in place)" } else { " (moved)" },
        vm.boot.dtb,
        vm.vcpus.len(),
        cpus.join(","),
        vm.ram_size() / MIB,
        vm.ram.first().map_or(0, |r| r.base),
        vm.psci_version().major,
        vm.psci_version().minor
    );
    log::debug!("vm{}: {} devices passed through", vm.id, devices.len());
    for d in devices {
        log::trace!("vm{}: device {}", vm.id, d.path);
    }
    if let Some(args) = bootargs {
        log::debug!("vm{}: bootargs \"{args}\"", vm.id);
    }
}
