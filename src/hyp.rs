//! Bringing the machine up: the primary CPU reads the device tree, builds and enables the
//! EL2 map, starts every other CPU, creates the VM and enters it. Also the last-resort
//! paths: a fault taken at EL2, a panic, and being started below EL2.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use buddy_system_allocator::LockedHeap;

use crate::arch::aarch64::frame::TrapFrame;
use crate::arch::aarch64::gicarch::GicVersion;
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::{boot, cpu, firmware, gic, mmu, semihosting, trap};
use crate::dt::{self, Machine, Module, ModuleKind};
use crate::mm::pagetable::{El2Stage1, HeapTables, MemType, PageTable};
use crate::mm::usage::MemoryUse;
use crate::mm::{align_up, Region, MIB};
use crate::smccc::psci;
use crate::{bootargs, bundle, console, fwregs, platform, run, verdict, vm};

/// Cairn's heap, taken from RAM right after its image. It holds the device-tree copy,
/// page tables and VM state: 83 KiB on QEMU virt and 184 KiB on raspi4b once the VM is
/// built (the `vm0: memory:` line). The largest need is transient: the host device
/// tree's blocks while it is compacted, and the guest's built from it, each at most
/// MAX_HOST_DTB.
pub const CAIRN_HEAP_SIZE: u64 = 16 * MIB;
const HEAP_ORDER: usize = 32;
/// A host device tree larger than this is refused (QEMU pads its own to 1 MiB; the Pi
/// 4's, as QEMU's raspi4b gives it, 74 KiB).
const MAX_HOST_DTB: usize = 4 * MIB as usize;
/// How long the boot CPU waits for the others to report in.
const SECONDARY_TIMEOUT_MS: u64 = 2000;

#[global_allocator]
static HEAP: LockedHeap<HEAP_ORDER> = LockedHeap::empty();

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The root of the EL2 identity map, for secondary CPUs to load.
static EL2_ROOT: AtomicU64 = AtomicU64::new(0);
/// CPUs that have reported in, the boot CPU included.
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);
/// The machine as the device tree describes it; set once by the boot CPU.
static MACHINE: spin::Once<Machine<'static>> = spin::Once::new();
static HOST_DTB: spin::Once<&'static [u8]> = spin::Once::new();
/// Where the loader put the host device tree: guest RAM once Cairn has its copy.
static LOADED_DTB: spin::Once<Region> = spin::Once::new();

/// The physical memory Cairn keeps for itself: its image, BSS and heap, rounded out to
/// 2 MiB so guest RAM can use block mappings around it.
pub fn cairn_region() -> Region {
    let (start, end) = image_bounds();
    Region::from_bounds(start & !(2 * MIB - 1), align_up(heap_region().end(), 2 * MIB).max(end))
}

/// Cairn's share of RAM as it stands: its whole region, its image, its heap and the
/// heap's live bytes. The guest's side (guest RAM, pristine images) is left at 0 for the
/// VM to fill in.
pub fn own_memory() -> MemoryUse {
    let (start, end) = image_bounds();
    MemoryUse {
        guest: 0,
        cairn: cairn_region().size,
        image: end - start,
        heap: CAIRN_HEAP_SIZE,
        heap_in_use: HEAP.lock().stats_alloc_actual() as u64,
        pristine: 0,
        snapshot: 0,
        unused: 0,
    }
}

fn image_bounds() -> (u64, u64) {
    // Only the addresses of the linker-script symbols are taken, never their contents.
    (&raw const __image_start as u64, &raw const __image_end as u64)
}

fn heap_region() -> Region {
    Region::new(align_up(image_bounds().1, 4096), CAIRN_HEAP_SIZE)
}

fn init_heap() {
    let heap = heap_region();
    // SAFETY: the heap region lies inside the memory Cairn claims through its Image header
    // (LOAD_WINDOW) and is used for nothing else.
    unsafe { HEAP.lock().init(heap.base as usize, heap.size as usize) };
}

/// Copies the host device tree into the heap (so its original place can become guest
/// RAM) and parses it.
fn read_device_tree(dtb: usize) -> Option<Machine<'static>> {
    let ptr = dtb as *const u8;
    if ptr.is_null() || !dtb.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the boot protocol hands over a pointer to a device tree in RAM; total_size
    // reads only its header.
    let size = unsafe { dt::total_size(ptr) }?;
    if size > MAX_HOST_DTB {
        return None;
    }
    // SAFETY: the header says the blob spans `size` bytes from `ptr`.
    let raw = unsafe { core::slice::from_raw_parts(ptr, size) };
    let blob: &'static [u8] = Box::leak(dt::compact(raw)?.into_boxed_slice());
    HOST_DTB.call_once(|| blob);
    LOADED_DTB.call_once(|| Region::new(dtb as u64, size as u64));
    dt::parse(blob).ok()
}

/// Cairn's copy of the host device tree.
pub fn host_device_tree() -> &'static [u8] {
    HOST_DTB.get().copied().unwrap_or(&[])
}

fn build_el2_map(m: &Machine<'_>) -> Option<u64> {
    let mut tables = HeapTables;
    let mut map = PageTable::<El2Stage1>::new(&mut tables, mmu::EL2_VA_BITS)?;
    for ram in &m.memory {
        map.map(&mut tables, ram.base, ram.base, ram.size, MemType::Normal).ok()?;
    }
    let owned = m.owned.iter().map(|(_, r)| r);
    let devices = m.uart.iter().chain(m.gic.iter().flat_map(|g| g.regions.iter())).chain(owned);
    for dev in devices {
        let base = dev.base & !0xFFF;
        let size = align_up(dev.end(), 4096) - base;
        map.map(&mut tables, base, base, size, MemType::Device).ok()?;
    }
    let root = map.root_address();
    Some(root)
}

/// The boot CPU's Rust entry, called from boot/entry.S at EL2 with the device tree.
#[no_mangle]
pub extern "C" fn cairn_primary_main(dtb: usize) -> ! {
    cpu::set_current(0);
    init_heap();
    let Some(machine) = read_device_tree(dtb) else {
        // No console without a device tree: nothing to say it on.
        loop {
            cpu::wait_for_event();
        }
    };
    let m = MACHINE.call_once(|| machine);
    platform::set_power_off(m.psci_method, &m.owned);
    let Some(root) = build_el2_map(m) else {
        loop {
            cpu::wait_for_event()
        }
    };
    EL2_ROOT.store(root, Ordering::Release);
    // SAFETY: the map covers all RAM (image, stacks, heap) and the UART and GIC.
    unsafe { mmu::enable_el2(root) };
    if let Some(uart) = m.uart {
        console::init(uart.base as usize, m.uart_kind);
    }
    console::init_logging(bootargs::log_level(m.bootargs));
    announce(m);
    choose_exit(m.bootargs);
    run_selftest(m.bootargs);
    let gic_ready = match m.gic.as_ref() {
        Some(info) => gic::init(info.version, &info.regions, &logical_cpus(m)),
        None => Err("the device tree has no GIC"),
    };
    if let Err(e) = gic_ready {
        log::error!("{e}: Cairn cannot virtualize interrupts on this machine");
        platform::fail("no usable GIC");
    }
    init_gic_cpu(0);
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    log::info!("cpu0 online (MPIDR {:#x})", cpu::mpidr());
    start_secondaries(m);
    let (guest, settings) = guest_machine(m);
    let psci_version = match bootargs::value(m.bootargs, "psci").map(fwregs::parse_psci_version) {
        None => psci::DEFAULT_VERSION,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            log::error!("bad PSCI version for the guests: {e}");
            platform::fail("bad PSCI version for the guests")
        }
    };
    // What the loader left in RAM that no guest may read: the host device tree (every VM's
    // bootargs) and a guest bundle (every VM's images); the modules themselves create_vms
    // knows.
    let leftovers: Vec<Region> = LOADED_DTB.get().copied().into_iter().chain(guest_bundle_region(m)).collect();
    let host = vm::Host {
        cairn: cairn_region(),
        device_tree: host_device_tree(),
        cpus: logical_cpus(m),
        own_memory,
        loader_leftovers: leftovers,
    };
    let vms = match vm::create_vms(&host, &guest, psci_version, &settings) {
        Ok(vms) => vms,
        Err(e) => {
            log::error!("no guest to run: {e}");
            log::error!(
                "hand Cairn a guest with: -device guest-loader,addr=0x48000000,kernel=<Image>,bootargs=\"...\""
            );
            platform::fail("no guest to run")
        }
    };
    if vms.is_empty() {
        log::error!("no VM could start: each one's line above says why");
        platform::fail("no VM could start")
    }
    connect_console(m, &vms);
    run::run_vms(&vms)
}

/// Gives every VM the console through its virtual UART, with typed input, if it has one.
fn connect_console(m: &Machine<'_>, vms: &[alloc::sync::Arc<vm::Vm>]) {
    let ports: Vec<_> = vms.iter().filter_map(|vm| Some((vm.serial.clone()?, vm.name.as_str()))).collect();
    if ports.is_empty() {
        return;
    }
    console::attach(ports);
    console::on_control(run::control::carry_out);
    if let Some(intid) = m.uart_irq {
        console::take_input(intid);
    }
}

/// The guest bundle the firmware loaded as its initramfs, if Cairn reads its guests from one.
fn guest_bundle_region(m: &Machine<'_>) -> Option<Region> {
    m.initrd.filter(|_| m.modules.is_empty())
}

/// The guest to boot: QEMU's guest-loader modules, or else the guest bundle the firmware
/// loaded as its initramfs (crate::bundle), whose kernel and initramfs become the modules
/// and whose vm.conf and device tree become the VM's settings.
fn guest_machine(m: &Machine<'static>) -> (Machine<'static>, vm::GuestSettings) {
    let mut guest = m.clone();
    let mut settings = vm::GuestSettings { base_dtb: host_device_tree(), ..vm::GuestSettings::default() };
    let Some(initrd) = m.initrd.filter(|_| m.modules.is_empty()) else { return (guest, settings) };
    // SAFETY: the firmware loaded the initramfs into RAM, which Cairn maps and never
    // allocates from; it is only read.
    let archive: &'static [u8] = unsafe { core::slice::from_raw_parts(initrd.base as *const u8, initrd.size as usize) };
    if !bundle::looks_like_bundle(archive) {
        return (guest, settings);
    }
    let b = match bundle::parse(archive) {
        Ok(b) => b,
        Err(e) => {
            log::error!("the guest bundle at {:#x} is unusable: {e:?}", initrd.base);
            return (guest, settings);
        }
    };
    let region = |member: bundle::Member<'_>| Region::new(initrd.base + member.offset as u64, member.data.len() as u64);
    for g in &b.guests {
        let kernel = region(g.kernel);
        guest.modules.push(Module { kind: ModuleKind::Kernel, region: kernel, bootargs: g.cmdline });
        if let Some(initramfs) = g.initramfs {
            guest.modules.push(Module { kind: ModuleKind::Ramdisk, region: region(initramfs), bootargs: None });
        }
        settings.per_vm.push(vm::BundleVm {
            kernel_at: kernel.base,
            vm_conf: named_conf(g),
            dtb: g.dtb.map(|d| d.data),
        });
        log::info!(
            "guest bundle at {:#x}: {}kernel {} bytes, initramfs {} bytes{}{}",
            initrd.base,
            g.name.map(|n| alloc::format!("{n}: ")).unwrap_or_default(),
            g.kernel.data.len(),
            g.initramfs.map_or(0, |i| i.data.len()),
            if g.dtb.is_some() { ", its own device tree" } else { "" },
            if g.vm_conf.is_some() { ", vm.conf" } else { "" }
        );
    }
    (guest, settings)
}

/// A bundle guest's vm.conf, named after its directory unless it names itself (a later
/// line wins, so the directory's name goes first).
fn named_conf(g: &bundle::Guest<'static>) -> Option<&'static str> {
    let Some(name) = g.name else { return g.vm_conf };
    let conf = alloc::format!("{}={name}\n{}", crate::partition::NAME_KEY, g.vm_conf.unwrap_or(""));
    Some(alloc::boxed::Box::leak(conf.into_boxed_str()))
}

/// `exit=semihosting`: the machine's end tells the VMs' verdict through semihosting
/// (crate::verdict), if QEMU has it; finding out cannot fault (semihosting::available).
fn choose_exit(args: &str) {
    if !verdict::wants_semihosting_exit(args) {
        return;
    }
    if semihosting::available() {
        platform::use_semihosting_exit();
        log::warn!(
            "exit=semihosting: QEMU's exit status tells the verdict; every guest can reach QEMU's semihosting \
             too (HLT #0xF000 at EL1): use it for CI with trusted guests only"
        );
    } else {
        log::warn!(
            "exit=semihosting: QEMU has no semihosting, so its exit status stays 0: add \
             -semihosting-config enable=on,target=native"
        );
    }
}

/// An address nothing maps at EL2.
const UNMAPPED_EL2_ADDRESS: usize = 0x0DEA_D000_0000;

/// `selftest=el2-fault` makes Cairn fault on purpose, so the tests can see that a fault
/// at EL2 is reported and stops the machine instead of hanging it. `selftest=save-restore`
/// round-trips every vCPU's whole state through save, scramble and restore at every exit
/// (run::selftest::SAVE_RESTORE_SELFTEST), so a guest can show it observes nothing of it.
fn run_selftest(args: &str) {
    let selftest = bootargs::value(args, "selftest");
    if selftest == Some("save-restore") {
        log::warn!("selftest: saving and restoring the vCPU at every exit");
        run::selftest::SAVE_RESTORE_SELFTEST.store(true, core::sync::atomic::Ordering::Relaxed);
    }
    if selftest == Some("el2-fault") {
        log::warn!("selftest: faulting at EL2 on purpose");
        // SAFETY: not safe, and meant not to be: the load faults and the EL2 vector
        // reports it; nothing runs after it.
        unsafe { core::ptr::read_volatile(UNMAPPED_EL2_ADDRESS as *const u64) };
    }
}

fn announce(m: &Machine<'_>) {
    let ram: u64 = m.memory.iter().map(|r| r.size).sum();
    let gic = match m.gic.as_ref().map(|g| g.version) {
        Some(GicVersion::V2) => "GICv2",
        Some(GicVersion::V3) => "GICv3",
        None => "no GIC",
    };
    log::info!(
        "Cairn {} at EL2: {} CPUs, {} MiB RAM, {gic}, image at {:#x}",
        env!("CARGO_PKG_VERSION"),
        m.cpus.len(),
        ram / MIB,
        image_bounds().0
    );
    let (parange_bits, _) = cpu::physical_address_bits();
    log::debug!("physical address size {parange_bits} bits, guest IPA size {} bits", mmu::ipa_bits());
}

/// The logical CPU numbers: the boot CPU is 0, the others follow in device-tree order.
pub fn logical_cpus(m: &Machine<'_>) -> Vec<u64> {
    let me = cpu::mpidr();
    core::iter::once(me).chain(m.cpus.iter().map(|c| c.mpidr).filter(|&id| id != me)).collect()
}

fn start_secondaries(m: &Machine<'_>) {
    let cpus = logical_cpus(m);
    if cpus.len() > MAX_CPUS {
        log::warn!("{} CPUs in the device tree; Cairn uses the first {}", cpus.len(), MAX_CPUS);
    }
    if let Some(method) = m.psci_method {
        let smccc = firmware::probe(method);
        log::debug!("firmware SMCCC version: {smccc:#x} (-1: 1.0, cannot report Spectre workarounds)");
    }
    for (logical, &mpidr) in cpus.iter().enumerate().take(MAX_CPUS).skip(1) {
        let node = m.cpus.iter().find(|c| c.mpidr == mpidr);
        match (node.and_then(|c| c.spin_table_release), m.psci_method) {
            (Some(release), _) => boot::release_from_spin_table(logical, mpidr, release),
            (None, Some(method)) => {
                let ret = firmware::cpu_on(method, mpidr, boot::secondary_entry_address(), logical as u64);
                if ret != 0 {
                    log::error!("firmware CPU_ON for MPIDR {mpidr:#x} failed: {ret}");
                }
            }
            (None, None) => log::warn!("MPIDR {mpidr:#x}: no spin table and no PSCI firmware: it stays off"),
        }
    }
    let expected = cpus.len().min(MAX_CPUS);
    let deadline = CNTPCT_EL0.get() + CNTFRQ_EL0.get() * SECONDARY_TIMEOUT_MS / 1000;
    while CPUS_ONLINE.load(Ordering::Acquire) < expected && CNTPCT_EL0.get() < deadline {
        core::hint::spin_loop();
    }
    let online = CPUS_ONLINE.load(Ordering::Acquire);
    if online == expected {
        log::info!("all {online} CPUs online");
    } else {
        log::error!("only {online} of {expected} CPUs came online");
    }
}

/// A secondary CPU's Rust entry, called from boot/entry.S with its logical number.
#[no_mangle]
pub extern "C" fn cairn_secondary_main(logical: usize) -> ! {
    cpu::set_current(logical);
    // SAFETY: the boot CPU published a complete identity map before starting this CPU.
    unsafe { mmu::enable_el2(EL2_ROOT.load(Ordering::Acquire)) };
    init_gic_cpu(logical);
    log::info!("cpu{logical} online (MPIDR {:#x})", cpu::mpidr());
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    run::run_cpu(logical)
}

fn init_gic_cpu(logical: usize) {
    // Cairn's timer is off until a VM with a timeout starts (its reset value is UNKNOWN).
    cpu::disarm_hyp_timer();
    if !gic::init_cpu(logical) {
        log::error!("cpu{logical}: no GIC redistributor for MPIDR {:#x}", cpu::mpidr());
    }
}

/// Entered below EL2 (QEMU without virtualization=on): explain and power off through the
/// firmware's PSCI, whose conduit the device tree names.
#[no_mangle]
pub extern "C" fn cairn_refuse_low_el(dtb: usize) -> ! {
    init_heap();
    if let Some(m) = read_device_tree(dtb) {
        if let Some(uart) = m.uart {
            console::init(uart.base as usize, m.uart_kind);
        }
        console::print_line(format_args!(
            "cairn: started at EL1, but Cairn is a hypervisor and needs EL2. Under QEMU, add virtualization=on: -M virt,virtualization=on"
        ));
        let m = MACHINE.call_once(|| m);
        platform::set_power_off(m.psci_method, &m.owned);
    }
    platform::power_off()
}

/// The exception kind boot/vectors.S passes for a synchronous exception.
const KIND_SYNC: u64 = 0;

/// An exception taken at EL2 is a bug in Cairn: report it decoded and stop the machine.
/// Called by boot/vectors.S with the frame it saved and the exception kind. The one
/// exception it returns from (to `frame`) is the semihosting probe's undefined HLT.
#[no_mangle]
pub extern "C" fn cairn_hyp_exception(frame: &mut TrapFrame, kind: u64) {
    if kind == KIND_SYNC {
        if let Some((resume, x0)) = semihosting::probe_fault(frame.elr) {
            frame.elr = resume;
            frame.x[0] = x0;
            return;
        }
    }
    let (esr, far) = trap::fault_syndrome();
    const KINDS: [&str; 4] = ["synchronous exception", "IRQ", "FIQ", "SError"];
    let what = KINDS.get(kind as usize).copied().unwrap_or("exception");
    console::print_line_unlocked(format_args!(
        "cairn[cpu{}] FATAL: {what} at EL2: {} (EC {:#04x}) ESR_EL2={:#010x} FAR_EL2={:#x} ELR_EL2={:#x} SPSR_EL2={:#x}",
        cpu::current(),
        esr.class().name(),
        esr.class_code(),
        esr.0,
        far,
        frame.elr,
        frame.spsr
    ));
    console::print_line_unlocked(format_args!("cairn: stopping the machine"));
    platform::fail("an exception at EL2")
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::print_line_unlocked(format_args!("cairn[cpu{}] PANIC: {info}", cpu::current()));
    console::print_line_unlocked(format_args!("cairn: stopping the machine"));
    platform::fail("a panic")
}
