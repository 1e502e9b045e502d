//! Feeding a vCPU's list registers: taking physical interrupts at EL2, queueing the ones
//! the guest owns, and placing pending virtual interrupts in list registers (highest
//! priority first, reclaiming a lower-priority pending entry when all are full, and
//! asking for the underflow maintenance interrupt while anything is left over).
//!
//! Every vCPU is pinned to one physical CPU, so the list registers of that CPU belong to
//! it alone and are never saved or restored.

use crate::arch::aarch64::boot::MAX_CPUS;
use crate::arch::aarch64::gic::{self, Gic};
use crate::vgic::dist::{Pending, VGic};
use crate::vgic::lr::{ListReg, LrState};

/// Forwarded interrupts taken at EL2 and not yet in a list register, per physical CPU.
/// Each stays active in the physical GIC until the guest's EOI deactivates it, so it can
/// be queued at most once.
struct HwQueue {
    ids: [u32; HW_QUEUE_LEN],
    len: usize,
}

const HW_QUEUE_LEN: usize = 64;
const MAX_LRS: usize = 16;
const MAX_CANDIDATES: usize = HW_QUEUE_LEN + 32;

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

#[derive(Clone, Copy)]
struct Candidate {
    p: Pending,
    hw: bool,
}

/// Places `vcpu`'s pending interrupts in this CPU's list registers.
pub fn flush(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) {
    let Some(gic) = gic::get() else { return };
    let mut queue = HW_QUEUES[cpu].lock();
    let mut vgic = vgic.lock();
    if queue.len == 0 && !vgic.has_pending(vcpu) {
        return;
    }
    let mut cands =
        [Candidate { p: Pending { intid: 0, priority: 0, group1: true, source: 0 }, hw: false }; MAX_CANDIDATES];
    let mut n = 0;
    let mut kept = 0;
    for i in 0..queue.len {
        let intid = queue.ids[i];
        if vgic.hw_deliverable(vcpu, intid) {
            let p =
                Pending { intid, priority: vgic.priority(vcpu, intid), group1: vgic.group1(vcpu, intid), source: 0 };
            cands[n] = Candidate { p, hw: true };
            n += 1;
        } else {
            queue.ids[kept] = intid;
            kept += 1;
        }
    }
    queue.len = kept;
    let mut sw = [Pending { intid: 0, priority: 0, group1: true, source: 0 }; 32];
    let taken = vgic.take_pending(vcpu, &mut sw);
    for p in &sw[..taken] {
        cands[n] = Candidate { p: *p, hw: false };
        n += 1;
    }
    let cands = &mut cands[..n];
    cands.sort_unstable_by_key(|c| c.p.priority);

    let nlr = gic.list_registers().min(MAX_LRS);
    let mut lrs = [ListReg::empty(); MAX_LRS];
    for (i, lr) in lrs.iter_mut().enumerate().take(nlr) {
        *lr = gic.read_lr(i);
    }
    let mut leftover = false;
    for c in cands.iter() {
        match place(gic, &mut lrs[..nlr], c, &mut vgic, vcpu) {
            true => {}
            false if c.hw => {
                let len = queue.len;
                queue.ids[len] = c.p.intid;
                queue.len += 1;
                leftover = true;
            }
            false => {
                vgic.requeue(vcpu, &c.p);
                leftover = true;
            }
        }
    }
    gic.set_underflow_interrupt(leftover);
}

/// Puts one interrupt in a list register. Returns false when no register could take it.
fn place(gic: &Gic, lrs: &mut [ListReg], c: &Candidate, vgic: &mut VGic, vcpu: usize) -> bool {
    if !c.hw {
        // A software interrupt already in a register: merge (edge semantics), or mark an
        // active one pending again.
        if let Some(i) = lrs
            .iter()
            .position(|lr| !lr.is_free() && lr.pintid.is_none() && lr.vintid == c.p.intid && lr.source == c.p.source)
        {
            if lrs[i].state == LrState::Active {
                lrs[i].state = LrState::PendingActive;
                gic.write_lr(i, &lrs[i]);
            }
            return true;
        }
    }
    let new = ListReg {
        vintid: c.p.intid,
        pintid: c.hw.then_some(c.p.intid),
        priority: c.p.priority,
        state: LrState::Pending,
        group1: c.p.group1,
        source: c.p.source,
    };
    if let Some(i) = lrs.iter().position(ListReg::is_free) {
        lrs[i] = new;
        gic.write_lr(i, &new);
        return true;
    }
    // All full: reclaim the lowest-priority entry that is only pending in software, if it
    // ranks below this one, so the guest always sees the most urgent interrupts first.
    let victim = lrs
        .iter()
        .enumerate()
        .filter(|(_, lr)| lr.pintid.is_none() && lr.state == LrState::Pending && lr.priority > c.p.priority)
        .max_by_key(|(_, lr)| lr.priority)
        .map(|(i, _)| i);
    let Some(i) = victim else { return false };
    let old = lrs[i];
    vgic.requeue(vcpu, &Pending { intid: old.vintid, priority: old.priority, group1: old.group1, source: old.source });
    lrs[i] = new;
    gic.write_lr(i, &new);
    true
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
    (0..gic.list_registers()).map(|i| gic.read_lr(i)).filter(|lr| !lr.is_free() && lr.vintid == intid).fold(
        (false, false),
        |(p, a), lr| {
            (
                p || matches!(lr.state, LrState::Pending | LrState::PendingActive),
                a || matches!(lr.state, LrState::Active | LrState::PendingActive),
            )
        },
    )
}

/// A virtual interrupt `vcpu` could take, by INTID: one pending in a list register,
/// queued from the hardware, or pending in the distributor. Used to emulate WFI, which
/// wakes on a pending interrupt even when the guest has masked interrupts.
pub fn pending_interrupt(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) -> Option<u32> {
    let gic = gic::get()?;
    let in_lr = (0..gic.list_registers())
        .map(|i| gic.read_lr(i))
        .find(|lr| matches!(lr.state, LrState::Pending | LrState::PendingActive));
    if let Some(lr) = in_lr {
        return Some(lr.vintid);
    }
    let queue = HW_QUEUES[cpu].lock();
    let vgic = vgic.lock();
    queue.ids[..queue.len].iter().copied().find(|&i| vgic.hw_deliverable(vcpu, i)).or_else(|| vgic.first_pending(vcpu))
}
