//! Figures between two vCPUs: an SGI from vCPU 0 to a running vCPU 1 until vCPU 1's
//! handler runs (virtual IPI), and the same SGI to a vCPU 1 asleep in WFI until it runs
//! again after the WFI (WFI wake latency). The counter is the same on both vCPUs (one
//! virtual count; Cairn gives every vCPU CNTVOFF_EL2 = 0), so the sender's send time and
//! the receiver's counter reading can be subtracted.
//!
//! vCPU 1 idles in WFI between figures, so it adds no guest time to vCPU 0's figures.
//! vCPU 0 drives it with commands: it writes the command slots and sends [`SGI_COMMAND`];
//! vCPU 1 wakes, runs the command until told to stop, and reports each step in its own
//! slots (one writer per slot, see guestkit::shared).

use core::arch::asm;

use guestkit::gic::{self, SgiTarget, Version};
use guestkit::shared::Slot;
use guestkit::smp::{self, Cpus};
use guestkit::{cpu, irq, time};

use crate::figure::{Failure, Missing, Samples};
use crate::interrupts::STRAY;
use crate::wait;

/// The vCPU the two-vCPU figures use besides vCPU 0.
pub const PEER: usize = 1;

/// SGIs (INTIDs 0-15): a command is waiting; the IPI figure's SGI; the WFI figure's SGI.
const SGI_COMMAND: u32 = 1;
const SGI_IPI: u32 = 2;
const SGI_WAKE: u32 = 3;
const SGIS_USED: [u32; 3] = [SGI_COMMAND, SGI_IPI, SGI_WAKE];

/// How long vCPU 1 may take to start, or to answer any one step.
const START_TIMEOUT_US: u64 = 2_000_000;
const STEP_TIMEOUT_US: u64 = 100_000;
/// Before each IPI, vCPU 0 gives vCPU 1 this long to be back in its loop after the last.
const IPI_SETTLE_US: u64 = 2;
/// Before each wake SGI, vCPU 0 gives vCPU 1 this long to be asleep in WFI (it said it is
/// about to be; under Cairn the WFI also has to reach EL2 and idle there).
const WFI_SETTLE_US: u64 = 10;

// vCPU 1's state, written by vCPU 1.
const STATE_OFF: u32 = 0;
const STATE_READY: u32 = 1;
const STATE_FAILED: u32 = 2;
static STATE: Slot<u32> = Slot::new(STATE_OFF);
/// GICv2: vCPU 1's CPU interface bit (its banked GICD_ITARGETSR0 byte).
static INTERFACE_BIT: Slot<u32> = Slot::new(0);
/// The last command vCPU 1 began and the last it finished.
static STARTED: Slot<u32> = Slot::new(0);
static FINISHED: Slot<u32> = Slot::new(0);
/// IPIs vCPU 1's handler took, and the counter when it took the last.
static IPI_TAKEN: Slot<u32> = Slot::new(0);
static IPI_HANDLED_AT: Slot<u64> = Slot::new(0);
/// WFIs vCPU 1 entered and left for the WFI figure, and the counter when it left the last.
static WFI_ENTERED: Slot<u32> = Slot::new(0);
static WFI_LEFT: Slot<u32> = Slot::new(0);
static WFI_LEFT_AT: Slot<u64> = Slot::new(0);

// Commands, written by vCPU 0: the kind, then the sequence number that publishes it; vCPU
// 1 runs it until STOP holds the same sequence number.
const COMMAND_IPI: u32 = 1;
const COMMAND_WFI: u32 = 2;
static COMMAND: Slot<u32> = Slot::new(0);
static SEQUENCE: Slot<u32> = Slot::new(0);
static STOP: Slot<u32> = Slot::new(0);

// GICD_ITARGETSR0 (IHI 0048B §4.3.12): for SGIs and PPIs each byte reads as the bit of
// the CPU interface reading it.
const GICD_ITARGETSR0: usize = 0x800;
const ITARGETSR_BYTE_MASK: u32 = 0xFF;
/// GICD_SGIR (IHI 0048B §4.3.15): TargetListFilter [25:24] = 0b00 (the list),
/// CPUTargetList [23:16], SGIINTID [3:0].
const GICD_SGIR: usize = 0xF00;
const SGIR_CPU_TARGET_LIST_SHIFT: u32 = 16;
// ICC_SGI1R_EL1 (IHI 0069H §12.2.22): TargetList [15:0], Aff1 [23:16], INTID [27:24],
// Aff2 [39:32], RS [47:44], Aff3 [55:48]; MPIDR_EL1 has Aff0 [7:0], Aff1 [15:8],
// Aff2 [23:16], Aff3 [39:32].
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_RS_SHIFT: u32 = 44;
const SGI1R_AFF3_SHIFT: u32 = 48;
const SGI1R_TARGETS_PER_RS: u64 = 16;
const MPIDR_AFF1_SHIFT: u32 = 8;
const MPIDR_AFF2_SHIFT: u32 = 16;
const MPIDR_AFF3_SHIFT: u32 = 32;
const AFF_MASK: u64 = 0xFF;

/// An SGI to vCPU 1, its register value worked out beforehand so that sending is one
/// write, as in Linux's gic_ipi_send_mask (barrier, write, and on GICv3 an `isb`).
#[derive(Clone, Copy)]
struct Doorbell {
    version: Version,
    gicd: usize,
    value: u64,
}

impl Doorbell {
    fn new(cpus: &Cpus, intid: u32) -> Option<Self> {
        let gic = gic::gic()?;
        let intid = u64::from(intid);
        let value = match gic.version {
            Version::V3 => {
                let mpidr = cpus.mpidr(PEER);
                let aff = |shift: u32| (mpidr >> shift) & AFF_MASK;
                let aff0 = aff(0);
                (aff(MPIDR_AFF3_SHIFT) << SGI1R_AFF3_SHIFT)
                    | ((aff0 / SGI1R_TARGETS_PER_RS) << SGI1R_RS_SHIFT)
                    | (aff(MPIDR_AFF2_SHIFT) << SGI1R_AFF2_SHIFT)
                    | (intid << SGI1R_INTID_SHIFT)
                    | (aff(MPIDR_AFF1_SHIFT) << SGI1R_AFF1_SHIFT)
                    | (1 << (aff0 % SGI1R_TARGETS_PER_RS))
            }
            Version::V2 => (u64::from(INTERFACE_BIT.get()) << SGIR_CPU_TARGET_LIST_SHIFT) | intid,
        };
        Some(Doorbell { version: gic.version, gicd: gic.distributor.base, value })
    }

    #[inline(always)]
    fn ring(&self) {
        match self.version {
            // SAFETY: an ICC_SGI1R_EL1 write only generates the SGI named by the value.
            Version::V3 => unsafe {
                asm!("dsb st", "msr icc_sgi1r_el1, {}", "isb", in(reg) self.value, options(nostack))
            },
            // SAFETY: GICD_SGIR of the distributor the device tree names; the write only
            // generates the SGI named by the value.
            Version::V2 => unsafe {
                asm!("dmb ishst", options(nostack, preserves_flags));
                core::ptr::write_volatile((self.gicd + GICD_SGIR) as *mut u32, self.value as u32);
            },
        }
    }
}

/// vCPU 1's IRQ handler. The counter is read first: that is when "the handler runs".
fn on_irq(intid: u32) {
    let now = time::now();
    match intid {
        SGI_IPI => {
            IPI_HANDLED_AT.set(now);
            IPI_TAKEN.set(IPI_TAKEN.get() + 1);
        }
        SGI_COMMAND | SGI_WAKE => {}
        _ => STRAY.set_mine(STRAY.mine() + 1),
    }
}

fn bring_up() -> Result<(), gic::GicError> {
    let gic = gic::gic().ok_or(gic::GicError::NotInitialised)?;
    gic::init_cpu()?;
    if gic.version == Version::V2 {
        let itargetsr0 = (gic.distributor.base + GICD_ITARGETSR0) as *const u32;
        // SAFETY: GICD_ITARGETSR0 is read-only for SGIs and PPIs; reading it has no effect.
        INTERFACE_BIT.set(unsafe { core::ptr::read_volatile(itargetsr0) } & ITARGETSR_BYTE_MASK);
    }
    irq::set_handler(on_irq);
    SGIS_USED.iter().for_each(|&sgi| gic::enable(sgi));
    Ok(())
}

/// What vCPU 1 runs: idle in WFI until a command comes.
fn peer_main(_index: usize) {
    if bring_up().is_err() {
        STATE.set(STATE_FAILED);
        return;
    }
    STATE.set(STATE_READY);
    let mut done = 0;
    loop {
        cpu::mask_irqs();
        let sequence = SEQUENCE.get();
        if sequence == done {
            // Nothing to do: sleep; WFI wakes for the masked SGI, the unmask takes it.
            cpu::wfi();
            cpu::unmask_irqs();
            continue;
        }
        done = sequence;
        STARTED.set(sequence);
        match COMMAND.get() {
            COMMAND_IPI => take_ipis(sequence),
            COMMAND_WFI => sleep_and_wake(sequence),
            _ => {}
        }
        FINISHED.set(sequence);
    }
}

/// Runs with IRQs unmasked, polling only for the stop, while the handler takes the IPIs.
fn take_ipis(sequence: u32) {
    cpu::unmask_irqs();
    while STOP.get() != sequence {
        wait::relax();
    }
    cpu::mask_irqs();
}

/// Sleeps in WFI with IRQs masked, records the counter as soon as a WFI returns with an
/// interrupt pending (ISR_EL1.I), then unmasks to take it; again until the stop.
fn sleep_and_wake(sequence: u32) {
    let mut entered = WFI_ENTERED.get();
    while STOP.get() != sequence {
        cpu::mask_irqs();
        entered += 1;
        WFI_ENTERED.set(entered);
        let woke_at = loop {
            cpu::wfi();
            let now = time::now();
            if cpu::irq_pending() {
                break now;
            }
        };
        WFI_LEFT_AT.set(woke_at);
        WFI_LEFT.set(entered);
        cpu::unmask_irqs();
    }
    cpu::mask_irqs();
}

/// vCPU 1 as vCPU 0 drives it.
pub struct Peer {
    ipi: Doorbell,
    wake: Doorbell,
    sequence: u32,
}

/// Why vCPU 1 is not there.
#[derive(Clone, Copy, Debug)]
pub enum PeerError {
    OnlyOneVcpu,
    CpuOn(i64),
    NeverReported,
    GicFailed,
    NoGic,
}

impl core::fmt::Display for PeerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerError::OnlyOneVcpu => write!(f, "the device tree lists one CPU"),
            PeerError::CpuOn(status) => write!(f, "PSCI CPU_ON returned {status}"),
            PeerError::NeverReported => write!(f, "vCPU 1 never reported in"),
            PeerError::GicFailed => write!(f, "vCPU 1's GIC CPU interface did not come up"),
            PeerError::NoGic => write!(f, "gic::init has not succeeded"),
        }
    }
}

impl Peer {
    /// Starts vCPU 1 (PSCI CPU_ON) and waits until it idles, ready for commands.
    pub fn start(cpus: &Cpus) -> Result<Peer, PeerError> {
        if cpus.count() <= PEER {
            return Err(PeerError::OnlyOneVcpu);
        }
        let status = smp::start(PEER, cpus.mpidr(PEER), peer_main);
        if status != 0 {
            return Err(PeerError::CpuOn(status));
        }
        wait::for_other(START_TIMEOUT_US, || STATE.get() != STATE_OFF);
        match STATE.get() {
            STATE_READY => {}
            STATE_OFF => return Err(PeerError::NeverReported),
            _ => return Err(PeerError::GicFailed),
        }
        let ipi = Doorbell::new(cpus, SGI_IPI).ok_or(PeerError::NoGic)?;
        let wake = Doorbell::new(cpus, SGI_WAKE).ok_or(PeerError::NoGic)?;
        Ok(Peer { ipi, wake, sequence: 0 })
    }

    /// Has vCPU 1 start `command`; returns its sequence number.
    fn begin(&mut self, command: u32) -> Result<u32, Failure> {
        self.sequence += 1;
        COMMAND.set(command);
        SEQUENCE.set(self.sequence);
        gic::send_sgi(SGI_COMMAND, SgiTarget::Cpu(PEER));
        let sequence = self.sequence;
        if wait::for_other(STEP_TIMEOUT_US, || STARTED.get() == sequence) {
            Ok(sequence)
        } else {
            Err(Failure::TimedOut { what: "vCPU 1 to take the command", iteration: 0 })
        }
    }

    /// Stops the command and waits until vCPU 1 is back to idling.
    fn end(&mut self, sequence: u32) -> Result<(), Failure> {
        STOP.set(sequence);
        // Wakes vCPU 1 should it sleep in the WFI figure's WFI.
        gic::send_sgi(SGI_COMMAND, SgiTarget::Cpu(PEER));
        if wait::for_other(STEP_TIMEOUT_US, || FINISHED.get() == sequence) {
            Ok(())
        } else {
            Err(Failure::TimedOut { what: "vCPU 1 to finish the command", iteration: 0 })
        }
    }

    /// Virtual IPI: vCPU 1 runs (a polling loop, IRQs unmasked); vCPU 0 reads the counter,
    /// sends the SGI, and waits until vCPU 1's handler has recorded its own reading.
    pub fn virtual_ipi(&mut self, iterations: u32) -> Result<Samples, Missing> {
        let sequence = self.begin(COMMAND_IPI)?;
        let base = IPI_TAKEN.get();
        let mut samples = Samples::one_by_one();
        let mut result = Ok(());
        for i in 0..iterations {
            wait::delay_us(IPI_SETTLE_US);
            let sent = time::now();
            self.ipi.ring();
            if !wait::for_other(STEP_TIMEOUT_US, || IPI_TAKEN.get() > base + i) {
                result = Err(Failure::TimedOut { what: "vCPU 1's IPI handler", iteration: i });
                break;
            }
            samples.add(IPI_HANDLED_AT.get().wrapping_sub(sent));
        }
        self.end(sequence)?;
        result.map(|()| samples).map_err(Missing::from)
    }

    /// WFI wake latency: vCPU 1 sleeps in WFI (IRQs masked, so the SGI's handler does not
    /// run first); vCPU 0 reads the counter and sends the SGI; vCPU 1 reads the counter as
    /// soon as its WFI returns with the interrupt pending.
    pub fn wfi_wake(&mut self, iterations: u32) -> Result<Samples, Missing> {
        let base = WFI_LEFT.get();
        let sequence = self.begin(COMMAND_WFI)?;
        let mut samples = Samples::one_by_one();
        let mut result = Ok(());
        for i in 0..iterations {
            let round = base + i + 1;
            if !wait::for_other(STEP_TIMEOUT_US, || WFI_ENTERED.get() >= round) {
                result = Err(Failure::TimedOut { what: "vCPU 1 to enter WFI", iteration: i });
                break;
            }
            wait::delay_us(WFI_SETTLE_US);
            let sent = time::now();
            self.wake.ring();
            if !wait::for_other(STEP_TIMEOUT_US, || WFI_LEFT.get() >= round) {
                result = Err(Failure::TimedOut { what: "vCPU 1 to leave WFI", iteration: i });
                break;
            }
            samples.add(WFI_LEFT_AT.get().wrapping_sub(sent));
        }
        self.end(sequence)?;
        result.map(|()| samples).map_err(Missing::from)
    }
}
