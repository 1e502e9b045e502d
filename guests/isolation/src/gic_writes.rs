//! Check 3, `gic_writes_stay_home`: the guest writes all ones to every distributor
//! register that holds state for SPIs (INTIDs 32-1019), reads them back, and sends SGIs
//! to every target it can name. Its virtual GIC must keep other VMs' SPIs RAZ/WI, as
//! INTIDs this GIC does not implement (IHI 0069H §12.1.3): only SPIs it owns (its device
//! tree's `interrupts` and `interrupt-map` SPIs, the virtual UART's among them) may read
//! back set. Then it clears what it set, puts back the configuration it found, and shows
//! it is still fine: nothing faulted, PSCI answers, its secondaries are still off, an SGI
//! to itself is taken exactly once, and nothing comes with it: no other VM's SPI, and
//! none of its own, which it had disabled and cleared while they sat in list registers.
//!
//! Cairn gives the first VM (or the only one) every SPI that no other VM's device names,
//! which its own device tree cannot list; with `gic-spis=any` in the bootargs, SPIs its
//! device tree does not name may read back set too (they are counted in a note).

use core::arch::asm;
use core::fmt::Write;

use guestkit::gic::{self, Gic, SgiTarget, Version};
use guestkit::shared::Slot;
use guestkit::smp::Cpus;
use guestkit::spec::psci;
use guestkit::text::Text;
use guestkit::{catch_exception, cpu, irq, smccc, time, Caught, Checks};

use crate::layout::{IntidSet, FIRST_SPI, INTIDS};

// Distributor registers, offsets from GICD (IHI 0069H §12.9, IHI 0048B §4.3): each holds
// a field of `bits` bits per INTID, 32 bits at a time.
const GICD_TYPER: usize = 0x0004;
const GICD_IGROUPR: usize = 0x0080;
const GICD_ISENABLER: usize = 0x0100;
const GICD_ICENABLER: usize = 0x0180;
const GICD_ISPENDR: usize = 0x0200;
const GICD_ICPENDR: usize = 0x0280;
const GICD_ISACTIVER: usize = 0x0300;
const GICD_ICACTIVER: usize = 0x0380;
const GICD_IPRIORITYR: usize = 0x0400;
/// GICv2 only (IHI 0048B §4.3.12): one byte of CPU targets per SPI.
const GICD_ITARGETSR: usize = 0x0800;
const GICD_ICFGR: usize = 0x0C00;
/// GICv2 only (IHI 0048B §4.3.15): TargetListFilter [25:24], CPUTargetList [23:16],
/// SGIINTID [3:0].
const GICD_SGIR: usize = 0x0F00;
const SGIR_FILTER_SHIFT: u32 = 24;
const SGIR_FILTER_LIST: u32 = 0b00;
const SGIR_FILTER_ALL_BUT_SELF: u32 = 0b01;
const SGIR_TARGETS_SHIFT: u32 = 16;
const SGIR_EVERY_CPU: u32 = 0xFF;
/// GICv2 only (IHI 0048B §4.3.13): one byte of pending sources per SGI, four registers.
const GICD_CPENDSGIR: [usize; 4] = [0x0F10, 0x0F14, 0x0F18, 0x0F1C];
/// GICv3 only (IHI 0069H §12.9, GICD_IROUTER<n>): 64 bits, at 0x6000 + 8n; affinity
/// Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0], Interrupt_Routing_Mode [31].
const GICD_IROUTER: usize = 0x6000;
const IROUTER_BYTES: usize = 8;
const IROUTER_EVERY_AFFINITY: u64 = 0xFF_00FF_FFFF;
const IROUTER_IRM: u64 = 1 << 31;
/// GICv3: SGI_base, the redistributor's second 64 KiB frame, and its GICR_ICPENDR0
/// (IHI 0069H §12.10, §12.11); GICv2's banked GICD_ICPENDR0 is at the same offset.
const GICR_SGI_BASE: usize = 0x1_0000;
const ICPENDR0: usize = 0x0280;

// ICC_SGI1R_EL1 (IHI 0069H §12.2.22): TargetList [15:0], Aff1 [23:16], INTID [27:24],
// Aff2 [39:32], IRM [40] (every PE but the sender), Aff3 [55:48].
const SGI1R_TARGET_LIST_ALL: u64 = 0xFFFF;
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_IRM: u64 = 1 << 40;
const SGI1R_AFF3_SHIFT: u32 = 48;
/// Affinity values 0-3 at each of Aff1, Aff2 and Aff3.
const AFFINITIES: u64 = 4;
/// SGIs are INTIDs 0-15.
const SGIS: u32 = 16;

/// SPIs are INTIDs 32-1019; 1020-1023 are special (IHI 0069H §2.2.1).
const END_SPI: u32 = 1020;
const REGISTER_BITS: u32 = 32;
const REGISTER_BYTES: usize = 4;
const ALL_ONES: u32 = u32::MAX;

/// The SGI the guest sends itself afterwards, and how long it waits for it.
const RECOVERY_SGI: u32 = 1;
const RECOVERY_TIMEOUT_US: u64 = 1_000_000;
const SETTLE_US: u64 = 20_000;
/// AFFINITY_INFO's lowest affinity level 0: exactly the core named (DEN0022 §5.7.1).
const AFFINITY_LEVEL_CORE: u64 = 0;
/// Findings quoted in a failure's detail.
const MAX_QUOTED: u32 = 6;

/// A register with `bits` bits per INTID.
#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    offset: usize,
    bits: u32,
}

const IGROUPR: Field = Field { name: "GICD_IGROUPR", offset: GICD_IGROUPR, bits: 1 };
const ISENABLER: Field = Field { name: "GICD_ISENABLER", offset: GICD_ISENABLER, bits: 1 };
const ICENABLER: Field = Field { name: "GICD_ICENABLER", offset: GICD_ICENABLER, bits: 1 };
const ISPENDR: Field = Field { name: "GICD_ISPENDR", offset: GICD_ISPENDR, bits: 1 };
const ICPENDR: Field = Field { name: "GICD_ICPENDR", offset: GICD_ICPENDR, bits: 1 };
const ISACTIVER: Field = Field { name: "GICD_ISACTIVER", offset: GICD_ISACTIVER, bits: 1 };
const ICACTIVER: Field = Field { name: "GICD_ICACTIVER", offset: GICD_ICACTIVER, bits: 1 };
const IPRIORITYR: Field = Field { name: "GICD_IPRIORITYR", offset: GICD_IPRIORITYR, bits: 8 };
const ITARGETSR: Field = Field { name: "GICD_ITARGETSR", offset: GICD_ITARGETSR, bits: 8 };
const ICFGR: Field = Field { name: "GICD_ICFGR", offset: GICD_ICFGR, bits: 2 };

/// The fields written with all ones and read back, on both GIC versions.
const SET_FIELDS: [Field; 6] = [IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR, ICFGR];
/// The fields that take back what the guest set.
const CLEAR_FIELDS: [Field; 3] = [ICENABLER, ICPENDR, ICACTIVER];
/// Configuration the guest saves first and puts back last.
const SAVED_FIELDS: [Field; 4] = [IGROUPR, IPRIORITYR, ICFGR, ITARGETSR];
/// The most 32-bit registers a field has over INTIDs 32-1019 (8 bits per INTID).
const MAX_WORDS: usize = (END_SPI as usize * 8).div_ceil(REGISTER_BITS as usize);

impl Field {
    /// The register indices covering INTIDs 32-1019.
    fn words(&self) -> core::ops::Range<usize> {
        (FIRST_SPI * self.bits / REGISTER_BITS) as usize..(END_SPI * self.bits).div_ceil(REGISTER_BITS) as usize
    }

    fn address(&self, gicd: usize, word: usize) -> usize {
        gicd + self.offset + REGISTER_BYTES * word
    }

    /// The SPIs of register `word` and each one's field in `value`.
    fn spis(&self, word: usize, value: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let per_word = REGISTER_BITS / self.bits;
        let mask = if self.bits == REGISTER_BITS { ALL_ONES } else { (1 << self.bits) - 1 };
        (0..per_word).map(move |i| (word as u32 * per_word + i, (value >> (i * self.bits)) & mask))
    }
}

/// Every MMIO and system-register access, guarded: one that faults is counted, not fatal.
#[derive(Default)]
struct Access {
    faults: u32,
    first_fault: Option<(usize, Caught)>,
}

impl Access {
    fn guarded(&mut self, what: usize, f: impl FnOnce()) {
        if let Some(c) = catch_exception(f) {
            self.faults += 1;
            self.first_fault.get_or_insert((what, c));
        }
    }

    fn read32(&mut self, addr: usize) -> u32 {
        let mut v: u32 = 0;
        self.guarded(addr, || {
            // SAFETY: a 32-bit load of a distributor register; GIC reads of these have no
            // side effects, and a fault is caught and skipped.
            unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack)) }
        });
        v
    }

    fn write32(&mut self, addr: usize, v: u32) {
        self.guarded(addr, || {
            // SAFETY: a 32-bit store to this VM's emulated distributor; a fault is caught.
            unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) }
        });
    }

    fn read64(&mut self, addr: usize) -> u64 {
        let mut v: u64 = 0;
        self.guarded(addr, || {
            // SAFETY: a 64-bit load of GICD_IROUTER<n>, which allows 64-bit accesses.
            unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack)) }
        });
        v
    }

    fn write64(&mut self, addr: usize, v: u64) {
        self.guarded(addr, || {
            // SAFETY: a 64-bit store to GICD_IROUTER<n>; a fault is caught.
            unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) }
        });
    }

    /// Writes ICC_SGI1R_EL1 (reported as "address" 1 if it faults).
    fn sgi1r(&mut self, value: u64) {
        self.guarded(1, || {
            // SAFETY: writing ICC_SGI1R_EL1 only generates SGIs, within this VM.
            unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) }
        });
    }
}

/// SPIs that read back set though the guest does not own them.
struct Strays {
    count: u32,
    /// Every SPI some register of which read back set.
    stuck: IntidSet,
    /// Distinct SPIs the guest does not name that stuck (with `gic-spis=any`).
    unnamed: IntidSet,
    quoted: Text,
}

/// Which SPIs may read back set.
struct Owned {
    named: IntidSet,
    any: bool,
}

impl Strays {
    fn new() -> Strays {
        Strays { count: 0, stuck: IntidSet::new(), unnamed: IntidSet::new(), quoted: Text::new() }
    }

    fn record(&mut self, owned: &Owned, intid: u32, field: &'static str, value: u64) {
        if value == 0 || !(FIRST_SPI..END_SPI).contains(&intid) {
            return;
        }
        self.stuck.insert(intid);
        if owned.named.contains(intid) {
            return;
        }
        self.unnamed.insert(intid);
        if owned.any {
            return;
        }
        if self.count < MAX_QUOTED {
            let _ = write!(self.quoted, "INTID {intid} {field} = {value:#x}; ");
        }
        self.count += 1;
    }
}

/// Configuration registers as found, to put back.
struct Saved {
    words: [[u32; MAX_WORDS]; SAVED_FIELDS.len()],
    routes: [u64; END_SPI as usize],
}

fn save(a: &mut Access, g: &Gic) -> Saved {
    let gicd = g.distributor.base;
    let mut saved = Saved { words: [[0; MAX_WORDS]; SAVED_FIELDS.len()], routes: [0; END_SPI as usize] };
    for (field, words) in SAVED_FIELDS.iter().zip(saved.words.iter_mut()) {
        if field.offset == GICD_ITARGETSR && g.version == Version::V3 {
            continue;
        }
        for w in field.words() {
            words[w] = a.read32(field.address(gicd, w));
        }
    }
    if g.version == Version::V3 {
        for intid in FIRST_SPI..END_SPI {
            saved.routes[intid as usize] = a.read64(irouter(gicd, intid));
        }
    }
    saved
}

fn restore(a: &mut Access, g: &Gic, saved: &Saved) {
    let gicd = g.distributor.base;
    for (field, words) in SAVED_FIELDS.iter().zip(saved.words.iter()) {
        if field.offset == GICD_ITARGETSR && g.version == Version::V3 {
            continue;
        }
        for w in field.words() {
            a.write32(field.address(gicd, w), words[w]);
        }
    }
    if g.version == Version::V3 {
        for intid in FIRST_SPI..END_SPI {
            a.write64(irouter(gicd, intid), saved.routes[intid as usize]);
        }
    }
}

fn irouter(gicd: usize, intid: u32) -> usize {
    gicd + GICD_IROUTER + IROUTER_BYTES * intid as usize
}

/// Writes all ones to every register of `field` over the SPIs, then reads each back.
fn set_and_read_back(a: &mut Access, gicd: usize, field: Field, owned: &Owned, strays: &mut Strays) {
    for w in field.words() {
        a.write32(field.address(gicd, w), ALL_ONES);
    }
    for w in field.words() {
        let value = a.read32(field.address(gicd, w));
        for (intid, bits) in field.spis(w, value) {
            strays.record(owned, intid, field.name, u64::from(bits));
        }
    }
}

/// GICv3: every SPI routed to affinity 255.255.255.255, then with IRM = 1 (any PE).
fn route_everywhere(a: &mut Access, gicd: usize, owned: &Owned, strays: &mut Strays) {
    for value in [IROUTER_EVERY_AFFINITY, IROUTER_IRM | IROUTER_EVERY_AFFINITY] {
        for intid in FIRST_SPI..END_SPI {
            a.write64(irouter(gicd, intid), value);
        }
        for intid in FIRST_SPI..END_SPI {
            strays.record(owned, intid, "GICD_IROUTER", a.read64(irouter(gicd, intid)));
        }
    }
}

/// Takes back enables, pending and active states of every SPI.
fn clear(a: &mut Access, gicd: usize) {
    for field in CLEAR_FIELDS {
        for w in field.words() {
            a.write32(field.address(gicd, w), ALL_ONES);
        }
    }
}

/// SGIs to every target the guest can name.
fn sgis_everywhere(a: &mut Access, g: &Gic) {
    match g.version {
        Version::V3 => {
            for sgi in 0..SGIS {
                let intid = u64::from(sgi) << SGI1R_INTID_SHIFT;
                a.sgi1r(SGI1R_IRM | intid);
                for aff3 in 0..AFFINITIES {
                    for aff2 in 0..AFFINITIES {
                        for aff1 in 0..AFFINITIES {
                            let affinity =
                                aff3 << SGI1R_AFF3_SHIFT | aff2 << SGI1R_AFF2_SHIFT | aff1 << SGI1R_AFF1_SHIFT;
                            a.sgi1r(affinity | intid | SGI1R_TARGET_LIST_ALL);
                        }
                    }
                }
            }
        }
        Version::V2 => {
            let sgir = g.distributor.base + GICD_SGIR;
            for sgi in 0..SGIS {
                a.write32(sgir, SGIR_FILTER_ALL_BUT_SELF << SGIR_FILTER_SHIFT | sgi);
                a.write32(sgir, SGIR_FILTER_LIST << SGIR_FILTER_SHIFT | SGIR_EVERY_CPU << SGIR_TARGETS_SHIFT | sgi);
            }
        }
    }
}

/// Clears what the SGIs left pending at this vCPU (GICv2: from every source).
fn clear_own_sgis(a: &mut Access, g: &Gic) {
    match g.version {
        Version::V3 => a.write32(g.redistributors[0].base + GICR_SGI_BASE + ICPENDR0, ALL_ONES),
        Version::V2 => {
            for reg in GICD_CPENDSGIR.into_iter().chain([ICPENDR0]) {
                a.write32(g.distributor.base + reg, ALL_ONES);
            }
        }
    }
}

/// What the recovery SGI handler took: the SGI, and a bit per other INTID.
static TAKEN_SGI: Slot<u32> = Slot::new(0);
static TAKEN_OTHER: [Slot<u32>; (INTIDS / 32) as usize] = [const { Slot::new(0) }; (INTIDS / 32) as usize];

fn on_irq(intid: u32) {
    if intid == RECOVERY_SGI {
        TAKEN_SGI.set(TAKEN_SGI.get() + 1);
    } else if let Some(word) = TAKEN_OTHER.get((intid / 32) as usize) {
        word.set(word.get() | 1 << (intid % 32));
    }
}

/// What the guest took once it set its GIC up again and sent itself an SGI.
#[derive(Debug)]
struct Recovery {
    sgi_taken: u32,
    /// Other INTIDs taken: interrupts it had disabled, cleared and deactivated.
    others: IntidSet,
}

/// An SGI to itself, which must be taken exactly once.
fn self_sgi() -> Result<Recovery, gic::GicError> {
    gic::init_cpu()?;
    irq::set_handler(on_irq);
    gic::enable(RECOVERY_SGI);
    cpu::unmask_irqs();
    gic::send_sgi(RECOVERY_SGI, SgiTarget::Myself);
    time::wait_until(RECOVERY_TIMEOUT_US, || TAKEN_SGI.get() > 0);
    time::delay_us(SETTLE_US);
    cpu::mask_irqs();
    let mut others = IntidSet::new();
    for intid in 0..INTIDS {
        if TAKEN_OTHER[(intid / 32) as usize].get() & 1 << (intid % 32) != 0 {
            others.insert(intid);
        }
    }
    Ok(Recovery { sgi_taken: TAKEN_SGI.get(), others })
}

/// The first INTID in `set` that is an SPI the guest does not own, if any.
fn first_foreign(set: &IntidSet, owned: &Owned) -> Option<u32> {
    (FIRST_SPI..END_SPI).find(|&i| set.contains(i) && !owned.any && !owned.named.contains(i))
}

/// The SPIs its device tree names that no register let it set: its own device's
/// interrupt it cannot use (a note, not an isolation failure).
fn named_not_stuck(owned: &Owned, strays: &Strays) -> IntidSet {
    let mut missing = IntidSet::new();
    for intid in (FIRST_SPI..END_SPI).filter(|&i| owned.named.contains(i) && !strays.stuck.contains(i)) {
        missing.insert(intid);
    }
    missing
}

/// The lowest INTID in `set`.
fn first_of(set: &IntidSet) -> Option<u32> {
    (0..INTIDS).find(|&i| set.contains(i))
}

/// Own secondaries that are no longer OFF.
fn secondaries_on(cpus: &Cpus) -> usize {
    let state = |k| smccc::hvc0(psci::AFFINITY_INFO_64.into(), cpus.mpidr(k), AFFINITY_LEVEL_CORE, 0) as i64;
    cpus.secondaries().filter(|&k| state(k) != psci::AFFINITY_OFF).count()
}

/// Every SPI register set to all ones and read back, everything taken back and put back as
/// it was, then SGIs to every target: returns the SPIs that stuck though not its own.
fn stress(a: &mut Access, g: &Gic, owned: &Owned) -> Strays {
    let gicd = g.distributor.base;
    let saved = save(a, g);
    let mut strays = Strays::new();
    let fields = SET_FIELDS.into_iter().chain((g.version == Version::V2).then_some(ITARGETSR));
    for field in fields {
        set_and_read_back(a, gicd, field, owned, &mut strays);
    }
    if g.version == Version::V3 {
        route_everywhere(a, gicd, owned, &mut strays);
    }
    clear(a, gicd);
    restore(a, g, &saved);
    sgis_everywhere(a, g);
    clear_own_sgis(a, g);
    strays
}

/// How the guest is doing after the stress.
struct Health {
    psci_version: i64,
    secondaries_on: usize,
    recovery: Result<Recovery, gic::GicError>,
}

impl Health {
    fn of(cpus: &Cpus) -> Health {
        let psci_version = smccc::hvc0(psci::PSCI_VERSION.into(), 0, 0, 0) as i64;
        Health { psci_version, secondaries_on: secondaries_on(cpus), recovery: self_sgi() }
    }

    fn sgi_taken(&self) -> u32 {
        self.recovery.as_ref().map_or(0, |r| r.sgi_taken)
    }

    fn others(&self) -> IntidSet {
        self.recovery.as_ref().map_or(IntidSet::new(), |r| r.others)
    }

    /// The GIC still works, and nothing the guest disabled, cleared and deactivated (its
    /// own interrupts included) was taken with the SGI: a GIC presents only interrupts
    /// that are pending and enabled (IHI 0069H §4.1.2).
    fn fine(&self) -> bool {
        self.psci_version > 0 && self.secondaries_on == 0 && self.sgi_taken() == 1 && self.others().count() == 0
    }
}

/// Runs the writes and records `gic_writes_stay_home`.
pub fn run(t: &mut Checks, gic: Option<Gic>, named: IntidSet, any: bool, cpus: &Cpus) {
    let Some(g) = gic else {
        t.check("gic_writes_stay_home", false, format_args!("no GIC in the device tree"));
        return;
    };
    let owned = Owned { named, any };
    let mut a = Access::default();
    let typer = a.read32(g.distributor.base + GICD_TYPER);
    let strays = stress(&mut a, &g, &owned);
    let typer_after = a.read32(g.distributor.base + GICD_TYPER);
    let health = Health::of(cpus);
    let others = health.others();
    t.check(
        "gic_writes_stay_home",
        a.faults == 0 && strays.count == 0 && typer == typer_after && health.fine(),
        format_args!(
            "{} SPI fields not its own read back set: {}{} accesses faulted (first {:x?}); GICD_TYPER {typer:#x} \
             then {typer_after:#x}; PSCI_VERSION {:#x}; {} secondaries not OFF after the SGIs; SGI {RECOVERY_SGI} \
             to itself taken {} times ({:?}); taken though disabled and cleared: {} INTIDs, the first {:?}, the \
             first not its own {:?}",
            strays.count,
            strays.quoted,
            a.faults,
            a.first_fault,
            health.psci_version,
            health.secondaries_on,
            health.sgi_taken(),
            health.recovery.as_ref().err(),
            others.count(),
            first_of(&others),
            first_foreign(&others, &owned)
        ),
    );
    let missing = named_not_stuck(&owned, &strays);
    t.note(format_args!(
        "gic_writes_stay_home: {}; SPIs it names: {} ({} never set, the first {:?}); SPIs it does not name that \
         stuck: {}{}",
        g.version,
        owned.named.count(),
        missing.count(),
        first_of(&missing),
        strays.unnamed.count(),
        if any { " (allowed: gic-spis=any)" } else { "" },
    ));
}
