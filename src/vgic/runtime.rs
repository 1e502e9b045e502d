//! Feeding a vCPU's list registers: taking physical interrupts at EL2, queueing the ones
//! the guest owns, and placing pending virtual interrupts in list registers (in free
//! ones, or reclaiming a less urgent pending entry when all are full, so the most urgent
//! interrupts are always listed; asking for the underflow maintenance interrupt while
//! anything is left over).
//!
//! Every vCPU is pinned to one physical CPU, so the list registers of that CPU belong to
//! it alone and are never saved or restored.
//!
//! What only the hardware can do goes through [`CpuInterface`]: `vgic::gic_cpu` implements
//! it for the machine's GIC, the tests below with a fake, so this logic is host-tested.
//! The functions are generic over it rather than taking a trait object: the bare-metal
//! build has one implementation, and monomorphisation keeps the interrupt exit path's
//! register accesses direct calls, as cheap as before the split.

use crate::arch::aarch64::lr::{ListReg, LrState};
use crate::vgic::dist::{Pending, VGic};
use crate::vgic::lr::{self, Placement};
use crate::vgic::set_bits;

/// A physical interrupt acknowledged at EL2: its INTID, and the raw acknowledge value
/// to complete it with (GICv2's carries an SGI's sender, IHI 0048B §4.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub raw: u32,
    pub intid: u32,
}

/// The physical GIC as one CPU sees it at EL2: its list registers, the interrupts it
/// acknowledges, and the state of the physical interrupts forwarded to its vCPU.
pub trait CpuInterface {
    /// The GIC maintenance interrupt's INTID (Cairn's own, not the guest's).
    const MAINTENANCE_IRQ: u32;

    /// How many list registers this CPU has.
    fn list_registers(&self) -> usize;
    /// Bit n set: list register n is free.
    fn empty_lrs(&self) -> u64;
    fn read_lr(&self, n: usize) -> ListReg;
    fn write_lr(&self, n: usize, lr: &ListReg);
    /// Asks for the maintenance interrupt when the list registers (nearly) run empty.
    fn set_underflow_interrupt(&self, on: bool);

    /// The highest-priority pending physical interrupt, acknowledged; None when nothing
    /// is pending.
    fn ack(&self) -> Option<Acked>;
    /// Priority drop only: the interrupt stays active until deactivated, by Cairn or,
    /// for a forwarded one, by the guest's EOI (the HW bit).
    fn eoi(&self, acked: Acked);
    fn deactivate(&self, acked: Acked);
    /// Deactivates a forwarded interrupt the guest never completed.
    fn deactivate_forwarded(&self, intid: u32);

    /// Whether the physical interrupt `intid` belongs to the guest (forwarded to it).
    fn is_guest_interrupt(&self, intid: u32) -> bool;
    /// The physical pending state of `intid` (GICD_ISPENDR, GICR_ISPENDR0 for this CPU's
    /// private interrupts). For a level-sensitive interrupt Cairn has acknowledged, it
    /// tells whether the line is still asserted: acknowledging made it active, and it is
    /// pending as well only while the line stays up (IHI 0069H §4.1, IHI 0048B §1.4.2).
    fn line_pending(&self, intid: u32) -> bool;
    /// Cairn took `intid`, one of its own interrupts, and will deactivate it. A
    /// level-sensitive one whose source stays asserted (Cairn's timer past its deadline)
    /// must be silenced here, or it is taken again at once, forever.
    fn silence_own(&self, _intid: u32) {}
}

/// Forwarded interrupts taken at EL2 and not yet in a list register, for one physical
/// CPU. Each stays active in the physical GIC until the guest's EOI deactivates it, so it
/// can be queued at most once.
pub struct HwQueue {
    ids: [u32; HW_QUEUE_LEN],
    len: usize,
}

impl HwQueue {
    pub const fn new() -> Self {
        HwQueue { ids: [0; HW_QUEUE_LEN], len: 0 }
    }

    fn push(&mut self, intid: u32) {
        self.ids[self.len] = intid;
        self.len += 1;
    }

    fn is_full(&self) -> bool {
        self.len == HW_QUEUE_LEN
    }

    /// Whether a forwarded entry may be displaced from a list register: only while the
    /// queue has room to take it back.
    fn may_take_back(&self) -> bool {
        !self.is_full()
    }

    /// After a pass over the first `visited` entries that kept `kept` of them at the front:
    /// moves the entries pushed meanwhile down behind those.
    fn close_up(&mut self, kept: usize, visited: usize) {
        // Rarely any: a loop, not copy_within, whose memmove call costs the common case.
        let pushed = self.len - visited;
        for n in 0..pushed {
            self.ids[kept + n] = self.ids[visited + n];
        }
        self.len = kept + pushed;
    }

    /// Keeps the entries `keep` says to, in order.
    fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            let intid = self.ids[i];
            if keep(intid) {
                self.ids[kept] = intid;
                kept += 1;
            }
        }
        self.len = kept;
    }
}

impl Default for HwQueue {
    fn default() -> Self {
        Self::new()
    }
}

const HW_QUEUE_LEN: usize = 64;
/// List registers a snapshot covers: GICv3 has at most 16 (ICH_LR<n>_EL2, n = 0-15, IHI
/// 0069H §12.5.8); Cairn uses no more on GICv2.
const MAX_LRS: usize = 16;

/// Acknowledges every pending physical interrupt on this CPU: the guest's are queued for
/// its vCPU (priority dropped, still active), Cairn's own are completed.
pub fn take_physical_interrupts<C: CpuInterface>(gic: &C, queue: &spin::Mutex<HwQueue>) {
    while let Some(acked) = gic.ack() {
        let intid = acked.intid;
        gic.eoi(acked);
        if gic.is_guest_interrupt(intid) {
            let mut q = queue.lock();
            if !q.is_full() {
                q.push(intid);
                continue;
            }
        }
        if intid == C::MAINTENANCE_IRQ {
            // The underflow condition stays asserted until the list registers are refilled:
            // turn it off here, or the interrupt fires again at once. The flush on the way
            // back to the guest turns it on again if anything is still left over.
            gic.set_underflow_interrupt(false);
        }
        // Kick SGIs and the maintenance interrupt need nothing more: the flush on the way
        // back to the guest does the work. Cairn's timer is read by whoever waits on it.
        gic.silence_own(intid);
        gic.deactivate(acked);
    }
}

/// A snapshot of this CPU's list registers, read once per flush (only those the
/// empty-status register says are in use) and written through.
struct ListRegs<'g, C> {
    gic: &'g C,
    regs: &'g mut [ListReg; MAX_LRS],
    count: usize,
}

/// Every list register holds something as urgent, or active.
struct NoRoom;

impl<'g, C: CpuInterface> ListRegs<'g, C> {
    /// Reads the registers in use into `regs`, in place (a snapshot returned by value
    /// would be copied on every flush).
    fn read(gic: &'g C, regs: &'g mut [ListReg; MAX_LRS]) -> Self {
        let count = gic.list_registers().min(MAX_LRS);
        for i in set_bits(in_use(gic, count)) {
            regs[i as usize] = gic.read_lr(i as usize);
        }
        ListRegs { gic, regs, count }
    }

    /// Every list register of this CPU, the free ones empty.
    fn all(&self) -> &[ListReg] {
        &self.regs[..self.count]
    }

    /// Takes the interrupt `intid` out of its register, if it is there pending:
    /// a pending-only entry is freed and returned; a pending and active one becomes
    /// active only.
    fn retract(&mut self, intid: u32) -> Option<ListReg> {
        let index = self.regs[..self.count].iter().position(|lr| !lr.is_free() && lr.vintid == intid)?;
        let lr = self.regs[index];
        match lr.state {
            LrState::Pending => {
                self.regs[index] = ListReg::empty();
                self.gic.write_lr(index, &self.regs[index]);
                Some(lr)
            }
            LrState::PendingActive => {
                self.regs[index].state = LrState::Active;
                self.gic.write_lr(index, &self.regs[index]);
                None
            }
            _ => None,
        }
    }

    /// Places `new` (lr::place) and writes back the register that changed. Returns the
    /// pending entry it displaced, if any.
    fn place(&mut self, new: ListReg, may_evict_hw: bool) -> Result<Option<ListReg>, NoRoom> {
        match lr::place(&mut self.regs[..self.count], new, may_evict_hw) {
            Placement::Placed { index, write } => {
                if write {
                    self.gic.write_lr(index, &self.regs[index]);
                }
                Ok(None)
            }
            Placement::Evicted { index, old } => {
                self.gic.write_lr(index, &self.regs[index]);
                Ok(Some(old))
            }
            Placement::NoRoom => Err(NoRoom),
        }
    }
}

/// Bit n set: list register n of the first `count` holds an entry.
fn in_use<C: CpuInterface>(gic: &C, count: usize) -> u64 {
    !gic.empty_lrs() & ((1 << count) - 1)
}

/// `p` as a pending list-register entry; `pintid` for a forwarded interrupt.
fn entry(p: &Pending, pintid: Option<u32>) -> ListReg {
    ListReg {
        vintid: p.intid,
        pintid,
        priority: p.priority,
        state: LrState::Pending,
        group1: p.group1,
        source: p.source,
    }
}

/// Places `vcpu`'s pending interrupts in this CPU's list registers: the forwarded ones
/// queued at EL2, then the software ones of the distributor model. Placement reclaims
/// less urgent pending entries (lr::place), so the registers end up holding the most
/// urgent interrupts without sorting; whatever finds no register stays queued, and the
/// underflow maintenance interrupt asks for another flush once the guest has made room.
/// Interrupts bound to SDEI events go aside instead ([`VGic::note_sdei_fired`]); returns
/// whether any did.
pub fn flush<C: CpuInterface>(gic: &C, queue: &spin::Mutex<HwQueue>, vgic: &spin::Mutex<VGic>, vcpu: usize) -> bool {
    let mut queue = queue.lock();
    let mut vgic = vgic.lock();
    let retract = vgic.has_retractions(vcpu);
    let software = vgic.has_pending(vcpu);
    if queue.len == 0 && !software && !retract {
        return false;
    }
    let mut fired = false;
    let mut snapshot = [ListReg::empty(); MAX_LRS];
    let mut lrs = ListRegs::read(gic, &mut snapshot);
    if retract {
        take_back(gic, &mut lrs, &mut queue, &mut vgic, vcpu);
    }
    let mut leftover = false;
    // Forwarded interrupts a more urgent one displaced from a register go back to the
    // queue, behind the entries this pass visits. Each stays active in the physical GIC
    // meanwhile.
    let queued = queue.len;
    let mut kept = 0;
    for i in 0..queued {
        let intid = queue.ids[i];
        let placed = if vgic.sdei_bound(intid) {
            vgic.note_sdei_fired(vcpu, intid, true);
            fired = true;
            true
        } else if let Some(p) = vgic.forwarded(vcpu, intid) {
            match lrs.place(entry(&p, Some(intid)), queue.may_take_back()) {
                Ok(None) => true,
                Ok(Some(old)) => {
                    give_back(old, &mut vgic, vcpu, &mut queue);
                    leftover = true;
                    true
                }
                Err(NoRoom) => {
                    leftover = true;
                    false
                }
            }
        } else {
            false // not deliverable now: it waits in the queue, active in the GIC
        };
        if !placed {
            queue.ids[kept] = intid;
            kept += 1;
        }
    }
    queue.close_up(kept, queued);

    let mut from = 0;
    while let Some(p) = software.then(|| vgic.next_pending(vcpu, from)).flatten() {
        from = p.intid + 1;
        if vgic.sdei_bound(p.intid) {
            vgic.take(vcpu, &p);
            vgic.note_sdei_fired(vcpu, p.intid, false);
            fired = true;
            continue;
        }
        match lrs.place(entry(&p, None), queue.may_take_back()) {
            Ok(displaced) => {
                if let Some(old) = displaced {
                    give_back(old, &mut vgic, vcpu, &mut queue);
                    leftover = true;
                }
                // A GICv2 SGI still pending from another source goes in on a later flush.
                leftover |= vgic.take(vcpu, &p);
            }
            Err(NoRoom) => leftover = true,
        }
    }

    gic.set_underflow_interrupt(leftover);
    fired
}

/// Takes the interrupts the guest disabled or cleared out of the list registers and the
/// queue: an entry only pending goes (a software one back to the model if it is still
/// pending, disabled; a forwarded one deactivated at the physical GIC, which holds its
/// pending state from then on); one also active stays, active only.
#[cold]
#[inline(never)]
fn take_back<C: CpuInterface>(gic: &C, lrs: &mut ListRegs<'_, C>, queue: &mut HwQueue, vgic: &mut VGic, vcpu: usize) {
    for r in vgic.take_retractions(vcpu) {
        if let Some(old) = lrs.retract(r.intid) {
            match old.pintid {
                Some(p) => gic.deactivate_forwarded(p),
                None if r.still_pending => {
                    let p =
                        Pending { intid: old.vintid, priority: old.priority, group1: old.group1, source: old.source };
                    vgic.requeue(vcpu, &p);
                }
                None => {}
            }
        }
        queue.retain(|intid| {
            let taken_back = intid == r.intid;
            if taken_back {
                gic.deactivate_forwarded(intid);
            }
            !taken_back
        });
    }
}

/// Returns an entry a more urgent interrupt displaced from a list register to where it
/// came from: a forwarded one to the queue, a software one to the distributor model.
fn give_back(old: ListReg, vgic: &mut VGic, vcpu: usize, queue: &mut HwQueue) {
    match old.pintid {
        Some(p) => queue.push(p),
        None => {
            let p = Pending { intid: old.vintid, priority: old.priority, group1: old.group1, source: old.source };
            vgic.requeue(vcpu, &p)
        }
    }
}

/// Forgets everything this CPU's list registers and queue hold for its vCPU (CPU_OFF, a
/// reset), deactivating forwarded interrupts so they can fire again.
pub fn reset_cpu<C: CpuInterface>(gic: &C, queue: &spin::Mutex<HwQueue>) {
    let mut queue = queue.lock();
    for &intid in &queue.ids[..queue.len] {
        gic.deactivate_forwarded(intid);
    }
    queue.len = 0;
    for i in 0..gic.list_registers() {
        if let Some(p) = gic.read_lr(i).pintid {
            gic.deactivate_forwarded(p);
        }
        gic.write_lr(i, &ListReg::empty());
    }
    gic.set_underflow_interrupt(false);
}

/// What this CPU's list registers say of `intid`: (pending, active). For the register
/// view of a vCPU's own interrupts, which the distributor model no longer tracks once they
/// sit in a list register.
pub fn listed_state<C: CpuInterface>(gic: &C, intid: u32) -> (bool, bool) {
    let mut snapshot = [ListReg::empty(); MAX_LRS];
    let lrs = ListRegs::read(gic, &mut snapshot);
    lrs.all().iter().filter(|lr| !lr.is_free() && lr.vintid == intid).fold((false, false), |(p, a), lr| {
        (
            p || matches!(lr.state, LrState::Pending | LrState::PendingActive),
            a || matches!(lr.state, LrState::Active | LrState::PendingActive),
        )
    })
}

/// A virtual interrupt `vcpu` could take, by INTID: one pending in a list register,
/// queued from the hardware, or pending in the distributor. Used where a vCPU decides
/// whether to wait (WFI, CPU_SUSPEND), which ends on a pending interrupt even when the
/// guest has masked interrupts. Level-sensitive forwarded interrupts whose line has
/// dropped before the guest took them are retired first ([`lowered`]), so a stale one
/// does not end the wait; only here, not on every exit, so the exit paths stay short.
/// That reaches every CPU_SUSPEND, but a WFI only when it traps: with a virtual
/// interrupt pending (a stale entry too) WFI completes in the guest (Arm ARM,
/// HCR_EL2.TWI traps only a WFI that would enter a low-power state).
pub fn pending_interrupt<C: CpuInterface>(
    gic: &C,
    queue: &spin::Mutex<HwQueue>,
    vgic: &spin::Mutex<VGic>,
    vcpu: usize,
) -> Option<u32> {
    // The registers in use, each read once: no snapshot, as nothing is placed here.
    let mut in_lr = None;
    for index in set_bits(in_use(gic, gic.list_registers().min(MAX_LRS))).map(|i| i as usize) {
        let lr = gic.read_lr(index);
        match (lr.state, lr.pintid) {
            (LrState::Pending, Some(p)) if lowered(gic, &vgic.lock(), vcpu, lr.vintid, p) => {
                gic.write_lr(index, &ListReg::empty());
                // Acknowledged at EL2, it is still active: deactivated, it fires again
                // when the line is next asserted.
                gic.deactivate_forwarded(p);
            }
            (LrState::Pending | LrState::PendingActive, _) => in_lr = in_lr.or(Some(lr.vintid)),
            _ => {}
        }
    }
    if in_lr.is_some() {
        return in_lr;
    }
    let mut queue = queue.lock();
    let mut vgic = vgic.lock();
    if queue.len != 0 {
        queue.retain(|intid| {
            let stale = lowered(gic, &vgic, vcpu, intid, intid);
            if stale {
                gic.deactivate_forwarded(intid); // as for a list register, above
            }
            !stale
        });
    }
    queue.ids[..queue.len].iter().copied().find(|&i| vgic.hw_deliverable(vcpu, i)).or_else(|| vgic.first_pending(vcpu))
}

/// Whether the forwarded interrupt `vintid` of `vcpu`, backed by `pintid`, which Cairn
/// acknowledged and the guest has not, is no longer pending. A level-sensitive interrupt
/// is pending only while its line is asserted (GICv3: IHI 0069H §4.1; GICv2: IHI 0048B
/// §1.4.2): a timer re-armed into the future, a device serviced with interrupts masked.
/// Acknowledging made the physical interrupt active, so its pending bit now follows the
/// line alone. KVM resamples mapped level interrupts the same way when it folds the list
/// registers' state. An edge-triggered interrupt stays pending until taken.
fn lowered<C: CpuInterface>(gic: &C, vgic: &VGic, vcpu: usize, vintid: u32, pintid: u32) -> bool {
    vgic.level_sensitive(vcpu, vintid) && !gic.line_pending(pintid)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;
    use core::cell::{Cell, RefCell};

    use super::*;
    use crate::arch::aarch64::gicarch::{GicVersion as Version, PRIVATE_IRQS};
    use crate::vgic::dist::HwBacking;

    /// The maintenance interrupt, PPI 9 as on QEMU virt (Arm BSA).
    const MAINTENANCE: u32 = 25;
    /// Cairn's kick SGI.
    const KICK: u32 = 0;
    /// The EL1 virtual timer's PPI (Arm BSA), a level-sensitive forwarded interrupt.
    const TIMER: u32 = 27;
    /// Two SPIs the tests forward.
    const SPI_A: u32 = 40;
    const SPI_B: u32 = 41;
    const SGI_1: u32 = 1;
    const SGI_2: u32 = 2;
    const SGI_3: u32 = 3;
    /// A PPI no hardware backs here: made pending by the guest.
    const PPI_SOFT: u32 = 20;
    const VCPU: usize = 0;
    /// INTIDs the fake distributor model has: the private ones and 32 SPIs.
    const NR_IRQS: u32 = 64;

    // The register offsets the tests program the model through (IHI 0069H §12.9-12.11).
    const GICD_CTLR: u64 = 0x0000;
    const GICD_CTLR_ENABLE_GRP1: u64 = 1 << 1;
    const GICD_IGROUPR: u64 = 0x0080;
    const GICD_ISENABLER: u64 = 0x0100;
    const GICD_ISPENDR: u64 = 0x0200;
    const GICD_ICENABLER: u64 = 0x0180;
    const GICD_ISENABLER0: u64 = GICD_ISENABLER;
    const GICD_ICPENDR: u64 = 0x0280;
    const GICD_IPRIORITYR: u64 = 0x0400;
    const GICD_ICFGR: u64 = 0x0C00;
    /// A GICD_ICFGR<n> field's upper bit: edge-triggered (IHI 0069H §12.9.9).
    const ICFGR_EDGE: u64 = 0b10;
    const ICFGR_FIELDS_PER_REG: u32 = 16;
    const ICFGR_FIELD_BITS: u32 = 2;
    const GICR_SGI_BASE: u64 = 0x1_0000;
    const BITS_PER_REG: u32 = 32;
    /// Access sizes, in bytes.
    const WORD: usize = 4;
    const BYTE: usize = 1;

    /// A CPU interface in memory: list registers, physical interrupts waiting to be
    /// acknowledged, the lines that are up, and a record of what was completed.
    struct FakeCpu {
        lrs: RefCell<Vec<ListReg>>,
        waiting: RefCell<Vec<Acked>>,
        lines: RefCell<Vec<u32>>,
        eoied: RefCell<Vec<u32>>,
        deactivated: RefCell<Vec<u32>>,
        silenced: RefCell<Vec<u32>>,
        underflow: Cell<bool>,
    }

    impl FakeCpu {
        fn new(list_registers: usize) -> Self {
            FakeCpu {
                lrs: RefCell::new(alloc::vec![ListReg::empty(); list_registers]),
                waiting: RefCell::default(),
                lines: RefCell::default(),
                eoied: RefCell::default(),
                deactivated: RefCell::default(),
                silenced: RefCell::default(),
                underflow: Cell::new(false),
            }
        }

        fn raise(&self, intid: u32) {
            self.waiting.borrow_mut().push(Acked { raw: intid, intid });
        }

        fn listed(&self) -> Vec<ListReg> {
            self.lrs.borrow().iter().copied().filter(|lr| !lr.is_free()).collect()
        }

        fn listed_ids(&self) -> Vec<u32> {
            self.listed().iter().map(|lr| lr.vintid).collect()
        }

        fn set_lr(&self, n: usize, lr: ListReg) {
            self.lrs.borrow_mut()[n] = lr;
        }

        /// The device (or timer) behind `intid` asserts its line: the physical
        /// interrupt reads pending.
        fn assert_line(&self, intid: u32) {
            self.lines.borrow_mut().push(intid);
        }
    }

    impl CpuInterface for FakeCpu {
        const MAINTENANCE_IRQ: u32 = MAINTENANCE;

        fn silence_own(&self, intid: u32) {
            self.silenced.borrow_mut().push(intid);
        }

        fn list_registers(&self) -> usize {
            self.lrs.borrow().len()
        }
        fn empty_lrs(&self) -> u64 {
            self.lrs.borrow().iter().enumerate().filter(|(_, lr)| lr.is_free()).fold(0, |m, (i, _)| m | 1 << i)
        }
        fn read_lr(&self, n: usize) -> ListReg {
            self.lrs.borrow()[n]
        }
        fn write_lr(&self, n: usize, lr: &ListReg) {
            self.lrs.borrow_mut()[n] = *lr;
        }
        fn set_underflow_interrupt(&self, on: bool) {
            self.underflow.set(on);
        }
        fn ack(&self) -> Option<Acked> {
            let mut waiting = self.waiting.borrow_mut();
            (!waiting.is_empty()).then(|| waiting.remove(0))
        }
        fn eoi(&self, acked: Acked) {
            self.eoied.borrow_mut().push(acked.intid);
        }
        fn deactivate(&self, acked: Acked) {
            self.deactivated.borrow_mut().push(acked.intid);
        }
        fn deactivate_forwarded(&self, intid: u32) {
            self.deactivated.borrow_mut().push(intid);
        }
        fn is_guest_interrupt(&self, intid: u32) -> bool {
            intid == TIMER || intid >= PRIVATE_IRQS
        }
        fn line_pending(&self, intid: u32) -> bool {
            self.lines.borrow().contains(&intid)
        }
    }

    /// The physical side of the distributor model: nothing to forward to.
    struct NoHw;

    impl HwBacking for NoHw {
        fn is_hw(&self, _: u32) -> bool {
            false
        }
        fn set_enabled(&mut self, _: usize, _: u32, _: bool) {}
        fn set_pending(&mut self, _: usize, _: u32, _: bool) {}
        fn pending(&self, _: usize, _: u32) -> bool {
            false
        }
        fn set_active(&mut self, _: usize, _: u32, _: bool) {}
        fn active(&self, _: usize, _: u32) -> bool {
            false
        }
        fn set_edge_triggered(&mut self, _: u32, _: bool) {}
        fn route(&mut self, _: u32, _: usize) {}
    }

    /// A GICv3 model with one vCPU and group 1 enabled.
    fn model() -> spin::Mutex<VGic> {
        let mut g = VGic::new(Version::V3, NR_IRQS, &[0]);
        g.dist_access(VCPU, GICD_CTLR, WORD, Some(GICD_CTLR_ENABLE_GRP1), &mut NoHw);
        spin::Mutex::new(g)
    }

    /// An access to the register at `offset` in the frame that holds `intid`: the
    /// redistributor's SGI frame for a private interrupt, the distributor for an SPI.
    fn access(g: &spin::Mutex<VGic>, intid: u32, offset: u64, size: usize, write: Option<u64>) -> u64 {
        let mut g = g.lock();
        if intid < PRIVATE_IRQS {
            g.redist_access(GICR_SGI_BASE + offset, size, write, &mut NoHw).0
        } else {
            g.dist_access(VCPU, offset, size, write, &mut NoHw).0
        }
    }

    /// Enables `intid` in group 1 at `priority`.
    fn enable(g: &spin::Mutex<VGic>, intid: u32, priority: u8) {
        let bit = 1u64 << (intid % BITS_PER_REG);
        let reg = u64::from(intid / BITS_PER_REG) * WORD as u64;
        // A group register is written whole: keep the bits already set.
        let groups = access(g, intid, GICD_IGROUPR + reg, WORD, None);
        access(g, intid, GICD_IGROUPR + reg, WORD, Some(groups | bit));
        access(g, intid, GICD_ISENABLER + reg, WORD, Some(bit));
        access(g, intid, GICD_IPRIORITYR + u64::from(intid), BYTE, Some(u64::from(priority)));
    }

    /// Configures the SPI `intid` edge-triggered.
    fn make_edge(g: &spin::Mutex<VGic>, intid: u32) {
        let reg = GICD_ICFGR + u64::from(intid / ICFGR_FIELDS_PER_REG) * WORD as u64;
        let field = ICFGR_EDGE << (ICFGR_FIELD_BITS * (intid % ICFGR_FIELDS_PER_REG));
        access(g, intid, reg, WORD, Some(field));
    }

    fn queue_of(ids: &[u32]) -> spin::Mutex<HwQueue> {
        let mut q = HwQueue::new();
        ids.iter().for_each(|&i| q.push(i));
        spin::Mutex::new(q)
    }

    fn queued(q: &spin::Mutex<HwQueue>) -> Vec<u32> {
        let q = q.lock();
        q.ids[..q.len].to_vec()
    }

    fn forwarded(intid: u32, priority: u8, state: LrState) -> ListReg {
        ListReg { vintid: intid, pintid: Some(intid), priority, state, group1: true, source: 0 }
    }

    fn software(intid: u32, priority: u8, state: LrState) -> ListReg {
        ListReg { vintid: intid, pintid: None, priority, state, group1: true, source: 0 }
    }

    #[test]
    fn guest_interrupts_are_queued_active_and_cairns_own_completed() {
        let (gic, queue) = (FakeCpu::new(4), queue_of(&[]));
        gic.underflow.set(true);
        for intid in [TIMER, KICK, SPI_A, MAINTENANCE] {
            gic.raise(intid);
        }
        take_physical_interrupts(&gic, &queue);
        assert_eq!(queued(&queue), [TIMER, SPI_A]);
        assert_eq!(*gic.eoied.borrow(), [TIMER, KICK, SPI_A, MAINTENANCE], "every one's priority dropped");
        assert_eq!(*gic.deactivated.borrow(), [KICK, MAINTENANCE], "the guest's stay active");
        assert_eq!(*gic.silenced.borrow(), [KICK, MAINTENANCE], "Cairn's own are silenced first");
        assert!(!gic.underflow.get(), "the maintenance interrupt turns underflow off");
    }

    #[test]
    fn flush_lists_queued_forwarded_interrupts_then_software_ones() {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[TIMER, SPI_A]));
        enable(&vgic, TIMER, 0xA0);
        enable(&vgic, SPI_A, 0x80);
        enable(&vgic, SGI_1, 0x40);
        vgic.lock().raise_sgi(VCPU, SGI_1, 0);
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(
            gic.listed(),
            [
                forwarded(TIMER, 0xA0, LrState::Pending),
                forwarded(SPI_A, 0x80, LrState::Pending),
                software(SGI_1, 0x40, LrState::Pending)
            ]
        );
        assert!(queued(&queue).is_empty());
        assert!(!vgic.lock().has_pending(VCPU), "the SGI was taken from the model");
        assert!(!gic.underflow.get(), "nothing left over");
    }

    #[test]
    fn interrupts_bound_to_sdei_events_go_aside_instead_of_into_list_registers() {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[TIMER, SPI_A]));
        enable(&vgic, TIMER, 0xA0);
        enable(&vgic, SPI_A, 0x80);
        enable(&vgic, SGI_1, 0x40);
        enable(&vgic, PPI_SOFT, 0x40);
        vgic.lock().set_sdei_bound(vec![TIMER, PPI_SOFT]);
        vgic.lock().raise_sgi(VCPU, SGI_1, 0);
        access(&vgic, PPI_SOFT, GICD_ISPENDR, WORD, Some(1 << PPI_SOFT));
        assert!(flush(&gic, &queue, &vgic, VCPU), "a bound interrupt fired");
        assert_eq!(gic.listed(), [forwarded(SPI_A, 0x80, LrState::Pending), software(SGI_1, 0x40, LrState::Pending)]);
        assert!(queued(&queue).is_empty(), "the bound timer left the queue");
        assert!(gic.deactivated.borrow().is_empty(), "held active for its handler");
        assert_eq!(vgic.lock().take_sdei_fired(VCPU), [(TIMER, true), (PPI_SOFT, false)]);
        assert!(!vgic.lock().has_pending(VCPU), "the software PPI was taken from the model");
        assert!(!flush(&gic, &queue, &vgic, VCPU), "nothing more fired");
    }

    #[test]
    fn flush_keeps_the_most_urgent_and_asks_for_underflow_for_the_rest() {
        let (gic, vgic, queue) = (FakeCpu::new(2), model(), queue_of(&[TIMER, SPI_A]));
        enable(&vgic, TIMER, 0xC0);
        enable(&vgic, SPI_A, 0x80);
        enable(&vgic, SGI_1, 0x40);
        enable(&vgic, SGI_2, 0xE0);
        vgic.lock().raise_sgi(VCPU, SGI_1, 0);
        vgic.lock().raise_sgi(VCPU, SGI_2, 0);
        flush(&gic, &queue, &vgic, VCPU);
        let mut listed = gic.listed_ids();
        listed.sort_unstable();
        assert_eq!(listed, [SGI_1, SPI_A], "the two most urgent, whatever the order they came in");
        assert_eq!(queued(&queue), [TIMER], "the displaced timer waits in the queue");
        assert_eq!(vgic.lock().first_pending(VCPU), Some(SGI_2), "the least urgent stays in the model");
        assert!(gic.underflow.get());
        assert!(gic.deactivated.borrow().is_empty(), "nothing forwarded is completed meanwhile");
    }

    #[test]
    fn flush_evicts_a_less_urgent_pending_entry_but_never_an_active_one() {
        let (gic, vgic, queue) = (FakeCpu::new(2), model(), queue_of(&[]));
        enable(&vgic, SGI_1, 0x20);
        enable(&vgic, SGI_2, 0xC0);
        enable(&vgic, SGI_3, 0x10);
        gic.set_lr(0, software(SGI_2, 0xC0, LrState::Pending));
        gic.set_lr(1, software(SGI_3, 0x10, LrState::Active));
        vgic.lock().raise_sgi(VCPU, SGI_1, 0);
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(gic.listed(), [software(SGI_1, 0x20, LrState::Pending), software(SGI_3, 0x10, LrState::Active)]);
        assert_eq!(vgic.lock().first_pending(VCPU), Some(SGI_2), "the evicted SGI is pending in the model again");
        assert!(gic.underflow.get());
    }

    #[test]
    fn a_displaced_forwarded_entry_is_queued_again_behind_those_still_waiting() {
        let (gic, vgic, queue) = (FakeCpu::new(2), model(), queue_of(&[SPI_A, TIMER]));
        enable(&vgic, SPI_A, 0x80);
        enable(&vgic, TIMER, 0xF0);
        enable(&vgic, SPI_B, 0xE0);
        gic.set_lr(0, forwarded(SPI_B, 0xE0, LrState::Pending));
        gic.set_lr(1, software(SGI_3, 0x10, LrState::Active));
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(gic.listed(), [forwarded(SPI_A, 0x80, LrState::Pending), software(SGI_3, 0x10, LrState::Active)]);
        assert_eq!(queued(&queue), [TIMER, SPI_B], "the timer found no room; SPI {SPI_B} was displaced");
        assert!(gic.underflow.get());
        assert!(gic.deactivated.borrow().is_empty());
    }

    #[test]
    fn an_undeliverable_forwarded_interrupt_waits_in_the_queue() {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[SPI_B]));
        gic.assert_line(SPI_B);
        flush(&gic, &queue, &vgic, VCPU);
        assert!(gic.listed().is_empty(), "SPI {SPI_B} is disabled");
        assert_eq!(queued(&queue), [SPI_B]);
        assert_eq!(pending_interrupt(&gic, &queue, &vgic, VCPU), None, "and does not wake the vCPU");
        assert_eq!(queued(&queue), [SPI_B], "its line is up: it stays queued");
    }

    #[test]
    fn reset_cpu_deactivates_forwarded_interrupts_and_empties_everything() {
        let (gic, queue) = (FakeCpu::new(4), queue_of(&[SPI_A]));
        gic.set_lr(0, forwarded(TIMER, 0xA0, LrState::Active));
        gic.set_lr(2, software(SGI_1, 0x40, LrState::Pending));
        gic.underflow.set(true);
        reset_cpu(&gic, &queue);
        assert_eq!(*gic.deactivated.borrow(), [SPI_A, TIMER]);
        assert!(gic.listed().is_empty());
        assert!(queued(&queue).is_empty());
        assert!(!gic.underflow.get());
    }

    #[test]
    fn listed_state_folds_every_entry_of_the_intid() {
        let gic = FakeCpu::new(4);
        gic.set_lr(1, software(SGI_1, 0x40, LrState::Active));
        gic.set_lr(3, ListReg { source: 1, ..software(SGI_1, 0x40, LrState::Pending) });
        assert_eq!(listed_state(&gic, SGI_1), (true, true));
        assert_eq!(listed_state(&gic, SGI_2), (false, false));
    }

    #[test]
    fn pending_interrupt_looks_in_the_registers_the_queue_and_the_model() {
        let (gic, vgic) = (FakeCpu::new(4), model());
        enable(&vgic, SPI_A, 0x80);
        enable(&vgic, SGI_2, 0x80);
        gic.set_lr(0, software(SGI_1, 0x40, LrState::Active));
        assert_eq!(pending_interrupt(&gic, &queue_of(&[]), &vgic, VCPU), None, "an active entry does not wake");
        gic.assert_line(SPI_A);
        assert_eq!(pending_interrupt(&gic, &queue_of(&[SPI_A]), &vgic, VCPU), Some(SPI_A));
        vgic.lock().raise_sgi(VCPU, SGI_2, 0);
        assert_eq!(pending_interrupt(&gic, &queue_of(&[]), &vgic, VCPU), Some(SGI_2));
        gic.set_lr(3, software(SGI_3, 0x40, LrState::PendingActive));
        assert_eq!(pending_interrupt(&gic, &queue_of(&[]), &vgic, VCPU), Some(SGI_3));
    }

    /// The rule of pending_interrupt's resampling for one forwarded interrupt in a list
    /// register: whether the entry is still there, what pending_interrupt returned, and
    /// what was deactivated.
    fn resample_listed(lr: ListReg, line_up: bool, edge: bool) -> (bool, Option<u32>, Vec<u32>) {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[]));
        enable(&vgic, lr.vintid, lr.priority);
        if edge {
            make_edge(&vgic, lr.vintid);
        }
        if line_up {
            gic.assert_line(lr.vintid);
        }
        gic.set_lr(1, lr);
        let pending = pending_interrupt(&gic, &queue, &vgic, VCPU);
        let kept = gic.listed() == [lr];
        let deactivated = gic.deactivated.borrow().clone();
        (kept, pending, deactivated)
    }

    #[test]
    fn a_listed_level_interrupt_whose_line_dropped_is_retired_and_deactivated() {
        let timer = forwarded(TIMER, 0xA0, LrState::Pending);
        assert_eq!(resample_listed(timer, false, false), (false, None, alloc::vec![TIMER]));
    }

    #[test]
    fn a_listed_level_interrupt_whose_line_is_up_stays() {
        let timer = forwarded(TIMER, 0xA0, LrState::Pending);
        assert_eq!(resample_listed(timer, true, false), (true, Some(TIMER), alloc::vec![]));
    }

    #[test]
    fn a_listed_edge_interrupt_stays_pending_without_its_line() {
        let spi = forwarded(SPI_A, 0x80, LrState::Pending);
        assert_eq!(resample_listed(spi, false, true), (true, Some(SPI_A), alloc::vec![]));
    }

    #[test]
    fn an_active_listed_interrupt_is_the_guests_to_complete() {
        let timer = forwarded(TIMER, 0xA0, LrState::Active);
        assert_eq!(resample_listed(timer, false, false), (true, None, alloc::vec![]));
    }

    #[test]
    fn a_software_entry_is_never_resampled() {
        let sgi = software(SGI_1, 0x40, LrState::Pending);
        assert_eq!(resample_listed(sgi, false, false), (true, Some(SGI_1), alloc::vec![]));
    }

    #[test]
    fn a_lowered_entry_is_retired_even_when_another_interrupt_ends_the_wait() {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[]));
        enable(&vgic, TIMER, 0xA0);
        gic.set_lr(0, software(SGI_1, 0x40, LrState::Pending));
        gic.set_lr(1, forwarded(TIMER, 0xA0, LrState::Pending));
        assert_eq!(pending_interrupt(&gic, &queue, &vgic, VCPU), Some(SGI_1));
        assert_eq!(gic.listed_ids(), [SGI_1]);
        assert_eq!(*gic.deactivated.borrow(), [TIMER]);
    }

    #[test]
    fn a_queued_level_interrupt_whose_line_dropped_is_retired_and_deactivated() {
        let (gic, vgic) = (FakeCpu::new(4), model());
        enable(&vgic, TIMER, 0xA0);
        enable(&vgic, SPI_A, 0x80);
        make_edge(&vgic, SPI_B);
        gic.assert_line(SPI_A);
        // The timer's line dropped; SPI A's is up; SPI B is edge-triggered (and disabled).
        let queue = queue_of(&[TIMER, SPI_A, SPI_B]);
        assert_eq!(pending_interrupt(&gic, &queue, &vgic, VCPU), Some(SPI_A));
        assert_eq!(queued(&queue), [SPI_A, SPI_B]);
        assert_eq!(*gic.deactivated.borrow(), [TIMER]);
    }

    #[test]
    fn a_queued_level_interrupt_whose_line_is_up_ends_the_wait() {
        let (gic, vgic, queue) = (FakeCpu::new(4), model(), queue_of(&[TIMER]));
        enable(&vgic, TIMER, 0xA0);
        gic.assert_line(TIMER);
        assert_eq!(pending_interrupt(&gic, &queue, &vgic, VCPU), Some(TIMER));
        assert_eq!(queued(&queue), [TIMER]);
        assert!(gic.deactivated.borrow().is_empty());
    }

    #[test]
    fn a_listed_software_interrupt_the_guest_disables_or_clears_leaves_its_register() {
        let (gic, queue, vgic) = (FakeCpu::new(4), queue_of(&[]), model());
        enable(&vgic, SGI_1, 0x80);
        vgic.lock().raise_sgi(VCPU, SGI_1, 0);
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(gic.listed_ids(), [SGI_1]);
        // Disabled while listed: out of the register, still pending in the model.
        access(&vgic, SGI_1, GICD_ICENABLER, WORD, Some(1 << SGI_1));
        flush(&gic, &queue, &vgic, VCPU);
        assert!(gic.listed_ids().is_empty(), "a disabled interrupt is not presented");
        access(&vgic, SGI_1, GICD_ISENABLER0, WORD, Some(1 << SGI_1));
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(gic.listed_ids(), [SGI_1], "enabled again, it is presented again");
        // Cleared while listed: gone for good.
        access(&vgic, SGI_1, GICD_ICPENDR, WORD, Some(1 << SGI_1));
        flush(&gic, &queue, &vgic, VCPU);
        assert!(gic.listed_ids().is_empty(), "a cleared interrupt is not presented");
        assert!(!vgic.lock().has_pending(VCPU));
        // An active one stays active: the guest is handling it.
        gic.set_lr(0, software(SGI_2, 0x80, LrState::PendingActive));
        enable(&vgic, SGI_2, 0x80);
        access(&vgic, SGI_2, GICD_ICPENDR, WORD, Some(1 << SGI_2));
        flush(&gic, &queue, &vgic, VCPU);
        assert_eq!(gic.listed().first().map(|lr| lr.state), Some(LrState::Active));
    }
}
