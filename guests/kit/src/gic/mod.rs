//! The GIC as a guest drives it: GICv3 (Arm IHI 0069H) through its distributor (GICD),
//! per-CPU redistributors (GICR) and the system-register CPU interface, or GICv2 (Arm IHI
//! 0048B) through GICD and the memory-mapped CPU interface (GICC). The version and the
//! frames come from the device tree.
//!
//! Only what the test guests need: SGIs and PPIs (INTIDs 0-31; SPIs only made pending by
//! software), all in the one group the CPU interface signals as IRQ, acknowledged and
//! ended with EOImode 0. Every access is a 32-bit access except GICR_TYPER (64-bit, as
//! Linux reads it).
//!
//! Order of use: [`init`] once on the boot CPU, then [`init_cpu`] on every CPU that takes
//! interrupts, then [`enable`], [`set_priority`] and [`send_sgi`] as needed.

mod v2;
mod v3;

use core::fmt;

use crate::shared::{BootOnce, PerCpu};
use crate::{catch_exception, cpu, mmio, Caught};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V2 => "GICv2",
            Version::V3 => "GICv3",
        })
    }
}

/// A window of registers from the device tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub base: usize,
    pub size: usize,
}

/// Redistributor regions the kit follows (`#redistributor-regions`); QEMU virt has one,
/// or two with more than 123 CPUs.
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 4;

/// Where the GIC's frames are.
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    pub version: Version,
    /// GICD.
    pub distributor: Frame,
    /// GICv2: GICC. GICv3: unused (the CPU interface is system registers).
    pub cpu_interface: Frame,
    /// GICv3: the GICR regions, each a run of per-CPU redistributors.
    pub redistributors: [Frame; MAX_REDISTRIBUTOR_REGIONS],
    pub redistributor_regions: usize,
}

impl fmt::Display for Gic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} GICD {:#x}", self.version, self.distributor.base)?;
        match self.version {
            Version::V2 => write!(f, " GICC {:#x}", self.cpu_interface.base),
            Version::V3 => write!(f, " GICR {:#x}", self.redistributors[0].base),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No node compatible with a GIC the kit knows.
    NotInDeviceTree,
    /// The node lacks a `reg` entry the kit needs.
    MissingFrame(&'static str),
    /// Touching a register took an exception (e.g. not mapped for the guest).
    Inaccessible { what: &'static str, esr: u64, far: u64 },
    /// ICC_SRE_EL1.SRE stayed 0: no system-register access to the CPU interface.
    SystemRegistersDisabled,
    /// No redistributor claims this CPU's affinity in GICR_TYPER.
    NoRedistributor { mpidr: u64 },
    /// A register never reported completion (GICD_CTLR.RWP, GICR_WAKER, ...).
    TimedOut(&'static str),
    /// [`init`] has not run (or failed).
    NotInitialised,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GicError::NotInDeviceTree => write!(f, "no arm,gic-v3 or arm,cortex-a15-gic node in the device tree"),
            GicError::MissingFrame(what) => write!(f, "the GIC node has no reg entry for {what}"),
            GicError::Inaccessible { what, esr, far } => {
                write!(f, "accessing {what} took an exception (ESR_EL1={esr:#x} FAR_EL1={far:#x})")
            }
            GicError::SystemRegistersDisabled => write!(f, "ICC_SRE_EL1.SRE reads 0 after setting it"),
            GicError::NoRedistributor { mpidr } => write!(f, "no redistributor for MPIDR {mpidr:#x}"),
            GicError::TimedOut(what) => write!(f, "timed out waiting for {what}"),
            GicError::NotInitialised => write!(f, "gic::init has not succeeded"),
        }
    }
}

/// First INTID of the PPIs; 0-15 are SGIs (IHI 0069H §2.2, IHI 0048B §2.2.1).
pub const FIRST_PPI: u32 = 16;
/// First SPI; INTIDs below are private to each CPU (banked).
pub const FIRST_SPI: u32 = 32;
/// First special INTID (1020-1023: spurious and friends), never a real interrupt.
pub const FIRST_SPECIAL_INTID: u32 = 1020;
/// A middle priority, as Linux uses for everything (0 is highest, 0xFF lowest).
pub const DEFAULT_PRIORITY: u8 = 0xA0;
/// A priority mask that lets every implemented priority through (ICC_PMR_EL1, GICC_PMR).
const PRIORITY_MASK_ALLOW_ALL: u32 = 0xFF;

// Registers the GICv2 distributor banks per CPU for INTIDs 0-31 sit at the same offsets
// as their GICv3 counterparts in each redistributor's SGI_base frame (IHI 0048B §4.1.2
// table 4-1; IHI 0069H §12.10, SGI_base frame), so one set of offsets serves both.
const ISENABLER0: usize = 0x0100;
const ICENABLER0: usize = 0x0180;
const ISPENDR0: usize = 0x0200;
const ICACTIVER0: usize = 0x0380;
const IPRIORITYR0: usize = 0x0400;
/// Every bit of a 32-interrupt set/clear register.
const ALL_32: u32 = u32::MAX;
/// IPRIORITYR holds one 8-bit priority per INTID, four per 32-bit register.
const PRIORITIES_PER_REGISTER: usize = 4;
const REGISTER_BYTES: usize = 4;
const BITS_PER_PRIORITY: usize = 8;
/// GICD_PIDR2 / ICPIDR2 ArchRev [7:4]: 2 for GICv2, 3 for GICv3, 4 for GICv4.
const PIDR2_ARCHREV_SHIFT: u32 = 4;
const PIDR2_ARCHREV_MASK: u32 = 0xF;

static GIC: BootOnce<Gic> = BootOnce::new();
/// Each CPU's private-interrupt frame: GICv3 its redistributor's SGI_base, GICv2 the
/// distributor (banked). Written by the CPU itself in init_cpu.
static PRIVATE_BASE: PerCpu<usize> = PerCpu::new(0);
/// What [`send_sgi`] needs to name each CPU: GICv3 its affinity in ICC_SGI1R_EL1 layout,
/// GICv2 its CPU interface bit. Written by the CPU itself in init_cpu.
static SGI_TARGET: PerCpu<u64> = PerCpu::new(0);
static SGI_TARGET_VALID: PerCpu<bool> = PerCpu::new(false);

/// Finds the GIC in the device tree at `dtb` and initialises its distributor. Call once,
/// on the boot CPU, before starting other CPUs.
pub fn init(dtb: usize) -> Result<Gic, GicError> {
    let gic = from_device_tree(dtb)?;
    match gic.version {
        Version::V2 => v2::init_distributor(&gic)?,
        Version::V3 => v3::init_distributor(&gic)?,
    }
    GIC.set(gic);
    Ok(gic)
}

/// The GIC [`init`] found.
pub fn gic() -> Option<Gic> {
    GIC.get()
}

fn the_gic() -> Gic {
    GIC.get().expect("gic::init must succeed before the GIC is used")
}

/// Brings up the calling CPU's side of the GIC (GICv3: its redistributor and CPU
/// interface; GICv2: its banked distributor registers and GICC). Every private interrupt
/// starts disabled at [`DEFAULT_PRIORITY`]; the CPU interface passes every priority.
pub fn init_cpu() -> Result<(), GicError> {
    let gic = GIC.get().ok_or(GicError::NotInitialised)?;
    let (private_base, sgi_target) = match gic.version {
        Version::V2 => v2::init_cpu(&gic)?,
        Version::V3 => v3::init_cpu(&gic)?,
    };
    PRIVATE_BASE.set_mine(private_base);
    reset_private_interrupts(private_base)?;
    match gic.version {
        Version::V2 => v2::enable_cpu_interface(&gic),
        Version::V3 => v3::enable_cpu_interface(),
    }
    SGI_TARGET.set_mine(sgi_target);
    SGI_TARGET_VALID.set_mine(true);
    Ok(())
}

/// Disables and deactivates INTIDs 0-31 and gives them the default priority, as Linux's
/// gic_cpu_config does, so nothing left over from before the guest fires.
fn reset_private_interrupts(base: usize) -> Result<(), GicError> {
    // SAFETY: base is this CPU's private-interrupt frame, found by init_cpu.
    unsafe {
        mmio::write32(base + ICENABLER0, ALL_32);
        mmio::write32(base + ICACTIVER0, ALL_32);
    }
    wait_for_disable()?;
    let default = u32::from_ne_bytes([DEFAULT_PRIORITY; PRIORITIES_PER_REGISTER]);
    for n in 0..(FIRST_SPI as usize / PRIORITIES_PER_REGISTER) {
        // SAFETY: IPRIORITYR0-7 cover INTIDs 0-31 in this CPU's frame.
        unsafe { mmio::write32(base + IPRIORITYR0 + REGISTER_BYTES * n, default) };
    }
    Ok(())
}

/// GICv3 completes ICENABLER writes asynchronously (GICR_CTLR.RWP); GICv2 at once.
fn wait_for_disable() -> Result<(), GicError> {
    match the_gic().version {
        Version::V2 => Ok(()),
        Version::V3 => v3::wait_for_redistributor_write(PRIVATE_BASE.mine()),
    }
}

fn private_base(intid: u32) -> usize {
    assert!(intid < FIRST_SPI, "the kit only handles SGIs and PPIs, not INTID {intid}");
    let base = PRIVATE_BASE.mine();
    assert!(base != 0, "gic::init_cpu has not run on CPU {}", cpu::index());
    base
}

fn bit(intid: u32) -> u32 {
    1 << intid
}

/// Enables SGI or PPI `intid` on the calling CPU. (A GICv2 may keep SGIs always enabled:
/// their GICD_ISENABLER0 bits can be RAO/WI, IHI 0048B §4.3.5.)
pub fn enable(intid: u32) {
    let base = private_base(intid);
    // SAFETY: ISENABLER0 of this CPU's frame; setting a bit only enables that INTID.
    unsafe { mmio::write32(base + ISENABLER0, bit(intid)) };
}

/// Disables SGI or PPI `intid` on the calling CPU and waits until the GIC has stopped
/// forwarding it.
pub fn disable(intid: u32) -> Result<(), GicError> {
    let base = private_base(intid);
    // SAFETY: ICENABLER0 of this CPU's frame; setting a bit only disables that INTID.
    unsafe { mmio::write32(base + ICENABLER0, bit(intid)) };
    wait_for_disable()
}

/// Whether SGI or PPI `intid` is pending at the calling CPU (ISPENDR0 reads pending state).
pub fn is_pending(intid: u32) -> bool {
    let base = private_base(intid);
    // SAFETY: reading ISPENDR0 has no side effects.
    unsafe { mmio::read32(base + ISPENDR0) & bit(intid) != 0 }
}

/// Makes SPI `intid` pending through the distributor's GICD_ISPENDR<n>, as software may
/// for any SPI (IHI 0069H §12.9.23, IHI 0048B §4.3.7).
pub fn pend_spi(intid: u32) {
    assert!(intid >= FIRST_SPI, "INTID {intid} is not an SPI");
    const BITS_PER_REGISTER: u32 = 32;
    let reg = the_gic().distributor.base + ISPENDR0 + REGISTER_BYTES * (intid / BITS_PER_REGISTER) as usize;
    // SAFETY: the distributor's ISPENDR word holding intid; setting a bit only makes
    // that SPI pending.
    unsafe { mmio::write32(reg, 1 << (intid % BITS_PER_REGISTER)) };
}

/// Sets the priority of SGI or PPI `intid` on the calling CPU (lower is more urgent). Only
/// the top bits a GIC implements count: use multiples of 0x10 to stay within the 16 levels
/// every GIC and virtual CPU interface has.
pub fn set_priority(intid: u32, priority: u8) {
    let base = private_base(intid);
    let reg = base + IPRIORITYR0 + REGISTER_BYTES * (intid as usize / PRIORITIES_PER_REGISTER);
    let shift = BITS_PER_PRIORITY * (intid as usize % PRIORITIES_PER_REGISTER);
    // SAFETY: the IPRIORITYR word holding intid in this CPU's frame; only this CPU writes
    // its banked priorities, so the read-modify-write cannot race.
    unsafe {
        let old = mmio::read32(reg);
        let new = (old & !(u32::from(u8::MAX) << shift)) | (u32::from(priority) << shift);
        mmio::write32(reg, new);
    }
}

/// The architecture revision the distributor reports in PIDR2 (2, 3 or 4).
pub fn arch_rev() -> u32 {
    let gic = the_gic();
    let offset = match gic.version {
        Version::V2 => v2::ICPIDR2,
        Version::V3 => v3::GICD_PIDR2,
    };
    // SAFETY: PIDR2 is a read-only identification register of the distributor.
    (unsafe { mmio::read32(gic.distributor.base + offset) } >> PIDR2_ARCHREV_SHIFT) & PIDR2_ARCHREV_MASK
}

/// Who an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTarget {
    /// Logical CPU n, which must have run [`init_cpu`].
    Cpu(usize),
    /// Every CPU but the sender.
    AllButSelf,
    /// The sender.
    Myself,
}

/// Sends SGI `intid` (0-15). Earlier memory writes are visible to the target before the
/// SGI reaches it.
pub fn send_sgi(intid: u32, target: SgiTarget) {
    assert!(intid < FIRST_PPI, "INTID {intid} is not an SGI");
    let target = match target {
        SgiTarget::Cpu(n) => {
            assert!(SGI_TARGET_VALID.get(n), "CPU {n} has not run gic::init_cpu");
            Target::Cpu(SGI_TARGET.get(n))
        }
        SgiTarget::AllButSelf => Target::AllButSelf,
        SgiTarget::Myself => Target::Cpu(SGI_TARGET.mine()),
    };
    // The target may look at memory as soon as it takes the SGI (Linux's gic_ipi_send_mask
    // has the same barrier).
    cpu::dsb_sy();
    let gic = the_gic();
    match gic.version {
        Version::V2 => v2::send_sgi(&gic, intid, target),
        Version::V3 => v3::send_sgi(intid, target),
    }
}

/// [`SgiTarget`] resolved to what the GIC wants.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// GICv2: CPU interface bit; GICv3: affinity in ICC_SGI1R_EL1 layout.
    Cpu(u64),
    AllButSelf,
}

/// An acknowledged interrupt, to be handed back to [`end_of_interrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The whole IAR value: GICv2 wants it back in GICC_EOIR, source CPU bits included.
    raw: u32,
    intid: u32,
}

impl Ack {
    pub fn intid(&self) -> u32 {
        self.intid
    }

    /// A special INTID (1020-1023, e.g. 1023 spurious): nothing was acknowledged.
    pub fn is_special(&self) -> bool {
        self.intid >= FIRST_SPECIAL_INTID
    }
}

/// Acknowledges the highest-priority pending interrupt (which may turn out special).
pub fn acknowledge() -> Ack {
    let gic = the_gic();
    match gic.version {
        Version::V2 => v2::acknowledge(&gic),
        Version::V3 => v3::acknowledge(),
    }
}

/// Ends an acknowledged interrupt: priority drop and deactivation (EOImode 0). Not for
/// special INTIDs.
pub fn end_of_interrupt(ack: Ack) {
    debug_assert!(!ack.is_special(), "special INTID {} takes no EOI", ack.intid);
    let gic = the_gic();
    match gic.version {
        Version::V2 => v2::end_of_interrupt(&gic, ack),
        Version::V3 => v3::end_of_interrupt(ack),
    }
}

/// Reads a register that may not be there; a fault comes back as an error.
fn probe(what: &'static str, read: impl FnOnce() -> u64) -> Result<u64, GicError> {
    let mut value = 0;
    match catch_exception(|| value = read()) {
        None => Ok(value),
        Some(Caught { esr, far }) => Err(GicError::Inaccessible { what, esr, far }),
    }
}

/// Polls `done` for up to [`REGISTER_TIMEOUT_US`].
fn poll(what: &'static str, done: impl FnMut() -> bool) -> Result<(), GicError> {
    crate::time::wait_until(REGISTER_TIMEOUT_US, done).then_some(()).ok_or(GicError::TimedOut(what))
}

/// How long a GIC gets to report a register write done.
const REGISTER_TIMEOUT_US: u64 = 1_000_000;

const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic", "arm,cortex-a7-gic"];

/// Reads the GIC node: GICv3 `reg` is GICD then the GICR regions; GICv2 `reg` is GICD,
/// GICC (then GICH and GICV, unused here). Linux's arm,gic-v3.yaml and arm,gic.yaml.
fn from_device_tree(dtb: usize) -> Result<Gic, GicError> {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.map_err(|_| GicError::NotInDeviceTree)?;
    let (version, node) = match fdt.find_compatible(GICV3_COMPATIBLE) {
        Some(node) => (Version::V3, node),
        None => (Version::V2, fdt.find_compatible(GICV2_COMPATIBLE).ok_or(GicError::NotInDeviceTree)?),
    };
    let mut frames = [Frame::default(); 1 + MAX_REDISTRIBUTOR_REGIONS];
    let mut count = 0;
    for (index, (slot, reg)) in frames.iter_mut().zip(node.reg().into_iter().flatten()).enumerate() {
        let base = crate::dt::reg_address(&fdt, &node, index).unwrap_or(reg.starting_address as u64);
        *slot = Frame { base: base as usize, size: reg.size.unwrap_or(0) };
        count += 1;
    }
    if count < 2 {
        return Err(GicError::MissingFrame(if count == 0 { "GICD" } else { "GICR/GICC" }));
    }
    let mut gic = Gic {
        version,
        distributor: frames[0],
        cpu_interface: Frame::default(),
        redistributors: [Frame::default(); MAX_REDISTRIBUTOR_REGIONS],
        redistributor_regions: 0,
    };
    match version {
        Version::V2 => gic.cpu_interface = frames[1],
        Version::V3 => {
            let regions = node.property("#redistributor-regions").and_then(|p| p.as_usize()).unwrap_or(1);
            let regions = regions.clamp(1, MAX_REDISTRIBUTOR_REGIONS).min(count - 1);
            gic.redistributors[..regions].copy_from_slice(&frames[1..1 + regions]);
            gic.redistributor_regions = regions;
        }
    }
    Ok(gic)
}
