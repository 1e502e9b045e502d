//! Feeding a vCPU's list registers: taking physical interrupts at EL2, queueing the ones
//! the guest owns, and placing pending virtual interrupts in list registers (in free
//! ones, or reclaiming a less urgent pending entry when all are full, so the most urgent
//! interrupts are always listed; asking for the underflow maintenance interrupt while
//! anything is left over).
//!
//! Every vCPU is pinned to one physical CPU, so the list registers of that CPU belong to
//! it alone and are never saved or restored.

use crate::arch::aarch64::gic::{self, Gic};
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::lr::{ListReg, LrState};
use crate::vgic::dist::{Pending, VGic};
use crate::vgic::lr::{self, Placement};
use crate::vgic::set_bits;

/// Forwarded interrupts taken at EL2 and not yet in a list register, per physical CPU.
/// Each stays active in the physical GIC until the guest's EOI deactivates it, so it can
/// be queued at most once.
struct HwQueue {
    ids: [u32; HW_QUEUE_LEN],
    len: usize,
}

const HW_QUEUE_LEN: usize = 64;
const MAX_LRS: usize = 16;

static HW_QUEUES: [spin::Mutex<HwQueue>; MAX_CPUS] =
    [const { spin::Mutex::new(HwQueue { ids: [0; HW_QUEUE_LEN], len: 0 }) }; MAX_CPUS];

/// Acknowledges every pending physical interrupt on this CPU: the guest's are queued for
/// its vCPU (priority dropped, still active), Cairn's own are completed.
pub fn take_physical_interrupts(cpu: usize) {
    let Some(gic) = gic::get() else { return };
    while let Some(acked) = gic.ack() {
        let intid = acked.intid;
        gic.eoi(acked);
        if gic::is_guest_interrupt(intid) {
            let mut q = HW_QUEUES[cpu].lock();
            if q.len < HW_QUEUE_LEN {
                let n = q.len;
                q.ids[n] = intid;
                q.len += 1;
                continue;
            }
        }
        if intid == gic::MAINTENANCE_IRQ {
            // The underflow condition stays asserted until the list registers are refilled:
            // turn it off here, or the interrupt fires again at once. The flush on the way
            // back to the guest turns it on again if anything is still left over.
            gic.set_underflow_interrupt(false);
        }
        // Kick SGIs and the maintenance interrupt need nothing more: the flush on the way
        // back to the guest does the work.
        gic.deactivate(acked);
    }
}

/// A snapshot of this CPU's list registers, read once per flush (only those the
/// empty-status register says are in use) and written through.
struct ListRegs<'g> {
    gic: &'g Gic,
    regs: &'g mut [ListReg; MAX_LRS],
    count: usize,
}

/// Every list register holds something as urgent, or active.
struct NoRoom;

impl<'g> ListRegs<'g> {
    /// Reads the registers in use into `regs`, in place (a snapshot returned by value
    /// would be copied on every flush).
    fn read(gic: &'g Gic, regs: &'g mut [ListReg; MAX_LRS]) -> Self {
        let count = gic.list_registers().min(MAX_LRS);
        for i in set_bits(!gic.empty_lrs() & ((1 << count) - 1)) {
            regs[i as usize] = gic.read_lr(i as usize);
        }
        ListRegs { gic, regs, count }
    }

    /// Every list register of this CPU, the free ones empty.
    fn all(&self) -> &[ListReg] {
        &self.regs[..self.count]
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
pub fn flush(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) {
    let Some(gic) = gic::get() else { return };
    let mut queue = HW_QUEUES[cpu].lock();
    let mut vgic = vgic.lock();
    let software = vgic.has_pending(vcpu);
    if queue.len == 0 && !software {
        return;
    }
    let mut snapshot = [ListReg::empty(); MAX_LRS];
    let mut lrs = ListRegs::read(gic, &mut snapshot);
    let mut leftover = false;
    // Forwarded interrupts a more urgent one displaced from a register: queued again
    // after the pass. Each stays active in the physical GIC meanwhile.
    let mut displaced = [0u32; MAX_LRS];
    let mut n_displaced = 0;
    let queued = queue.len;
    // A forwarded entry may be displaced only while the queue has room to take it back.
    let may_evict_hw = |n_displaced: usize| n_displaced < MAX_LRS && queued + n_displaced < HW_QUEUE_LEN;
    let mut give_back = |old: ListReg, vgic: &mut VGic, n_displaced: &mut usize| match old.pintid {
        Some(p) => {
            displaced[*n_displaced] = p;
            *n_displaced += 1;
        }
        None => {
            let p = Pending { intid: old.vintid, priority: old.priority, group1: old.group1, source: old.source };
            vgic.requeue(vcpu, &p)
        }
    };

    let mut kept = 0;
    for i in 0..queued {
        let intid = queue.ids[i];
        let placed = if let Some(p) = vgic.forwarded(vcpu, intid) {
            match lrs.place(entry(&p, Some(intid)), may_evict_hw(n_displaced)) {
                Ok(None) => true,
                Ok(Some(old)) => {
                    give_back(old, &mut vgic, &mut n_displaced);
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
    queue.len = kept;

    let mut from = 0;
    while let Some(p) = software.then(|| vgic.next_pending(vcpu, from)).flatten() {
        from = p.intid + 1;
        match lrs.place(entry(&p, None), may_evict_hw(n_displaced)) {
            Ok(displaced_entry) => {
                if let Some(old) = displaced_entry {
                    give_back(old, &mut vgic, &mut n_displaced);
                    leftover = true;
                }
                // A GICv2 SGI still pending from another source goes in on a later flush.
                leftover |= vgic.take(vcpu, &p);
            }
            Err(NoRoom) => leftover = true,
        }
    }

    for &intid in &displaced[..n_displaced] {
        let n = queue.len;
        queue.ids[n] = intid;
        queue.len += 1;
    }
    gic.set_underflow_interrupt(leftover);
}

/// Forgets everything this CPU's list registers and queue hold for its vCPU (CPU_OFF, a
/// reset), deactivating forwarded interrupts so they can fire again.
pub fn reset_cpu(cpu: usize) {
    let Some(gic) = gic::get() else { return };
    let mut queue = HW_QUEUES[cpu].lock();
    for &intid in &queue.ids[..queue.len] {
        gic.deactivate_forwarded(intid);
    }
    queue.len = 0;
    for i in 0..gic.list_registers() {
        if let Some(p) = gic.read_lr(i).pintid {
            gic.deactivate_forwarded(p);
        }
    }
    gic.clear_lrs();
}

/// What this CPU's list registers say of `intid`: (pending, active). For the register
/// view of a vCPU's own interrupts, which the distributor model no longer tracks once they
/// sit in a list register.
pub fn listed_state(intid: u32) -> (bool, bool) {
    let Some(gic) = gic::get() else { return (false, false) };
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
/// queued from the hardware, or pending in the distributor. Used to emulate WFI, which
/// wakes on a pending interrupt even when the guest has masked interrupts.
pub fn pending_interrupt(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) -> Option<u32> {
    let gic = gic::get()?;
    let mut snapshot = [ListReg::empty(); MAX_LRS];
    let lrs = ListRegs::read(gic, &mut snapshot);
    let in_lr = lrs.all().iter().find(|lr| matches!(lr.state, LrState::Pending | LrState::PendingActive));
    if let Some(lr) = in_lr {
        return Some(lr.vintid);
    }
    let queue = HW_QUEUES[cpu].lock();
    let mut vgic = vgic.lock();
    queue.ids[..queue.len].iter().copied().find(|&i| vgic.hw_deliverable(vcpu, i)).or_else(|| vgic.first_pending(vcpu))
}
