//! One VM's SDEI state and every call's rules (DEN0054 §5.1), with TF-A's
//! `services/std_svc/sdei/` as the reference for what the specification leaves open.
//!
//! Per vCPU: whether it is masked (every vCPU starts masked, §4.4), its registration of
//! each private event, and the handlers running on it, at most one per priority (a
//! critical handler may interrupt a normal one, never the reverse, §4.5). Per VM: the
//! shared events' registrations and which interrupts are bound to which event.

use alloc::vec;
use alloc::vec::Vec;

use super::{
    bind_slots_word, fid, info, ret, version_word, BIND_SLOTS, BOUND_PRIVATE_BASE, BOUND_SHARED_BASE,
    CONTEXT_REGISTERS, CRITICAL_SLOTS, EVENT_0, FEATURE_BIND_SLOTS, FEATURE_RELATIVE_ENTRY, FLAG_ROUTE_PE,
    STATUS_ENABLED, STATUS_REGISTERED, STATUS_RUNNING,
};

/// The GIC's SGIs (INTIDs 0-15) cannot be bound (§5.1.12); PPIs are 16-31.
const FIRST_PPI: u32 = 16;
const FIRST_SPI: u32 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Normal,
    Critical,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::Normal => 0,
            Priority::Critical => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Private,
    Shared,
}

/// What an event number stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event {
    number: u32,
    kind: Kind,
    /// Its registration's index: among the private events (0 is event 0, 1.. the bound
    /// private pool) or the shared ones.
    slot: usize,
    priority: Priority,
    signalable: bool,
}

/// One event's registration (each vCPU has its own of a private event).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Registration {
    registered: bool,
    enabled: bool,
    entry: u64,
    arg: u64,
    /// Shared events, RM_PE: the vCPU it goes to (None: any vCPU), and the affinity the
    /// guest gave.
    route_to: Option<usize>,
    affinity: u64,
    /// Signalled, or its interrupt fired, and not yet dispatched.
    pending: bool,
    /// Its handler runs.
    running: bool,
    /// UNREGISTER answered PENDING: it is unregistered at its handler's COMPLETE.
    unregister_at_complete: bool,
    /// Its bound interrupt is a forwarded one Cairn acknowledged: it stays active in the
    /// physical GIC until the handler's COMPLETE (or the event is dropped), so it cannot
    /// fire again meanwhile, as TF-A ends a bound interrupt at COMPLETE. Saved with the
    /// rest; a restored vCPU's CPU starts with its interrupts inactive anyway
    /// (vgic::gic_cpu::reset_cpu), and deactivating an inactive one changes nothing.
    held: bool,
}

/// A saved context's words: x0-x30, PC, PSTATE, SP_EL0, SP_EL1.
const CONTEXT_WORDS: usize = 31 + 4;
/// A saved registration's flag bits.
const SAVED_REGISTERED: u64 = 1 << 0;
const SAVED_ENABLED: u64 = 1 << 1;
const SAVED_PENDING: u64 = 1 << 2;
const SAVED_RUNNING: u64 = 1 << 3;
const SAVED_UNREGISTER_AT_COMPLETE: u64 = 1 << 4;
const SAVED_HELD: u64 = 1 << 5;
const SAVED_FLAGS: u64 = (1 << 6) - 1;

/// Words that are not a saved SDEI state Cairn can put back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadState;

impl Registration {
    fn flags(&self) -> u64 {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        flag(self.registered, SAVED_REGISTERED)
            | flag(self.enabled, SAVED_ENABLED)
            | flag(self.pending, SAVED_PENDING)
            | flag(self.running, SAVED_RUNNING)
            | flag(self.unregister_at_complete, SAVED_UNREGISTER_AT_COMPLETE)
            | flag(self.held, SAVED_HELD)
    }

    /// A private registration from its saved words (private events route nowhere else).
    fn from_flags(flags: u64, entry: u64, arg: u64) -> Option<Self> {
        (flags & !SAVED_FLAGS == 0).then_some(Registration {
            registered: flags & SAVED_REGISTERED != 0,
            enabled: flags & SAVED_ENABLED != 0,
            pending: flags & SAVED_PENDING != 0,
            running: flags & SAVED_RUNNING != 0,
            unregister_at_complete: flags & SAVED_UNREGISTER_AT_COMPLETE != 0,
            held: flags & SAVED_HELD != 0,
            entry,
            arg,
            ..Registration::default()
        })
    }

    fn status(&self) -> i64 {
        let flag = |on: bool, bit: i64| if on { bit } else { 0 };
        flag(self.registered, STATUS_REGISTERED)
            | flag(self.enabled, STATUS_ENABLED)
            | flag(self.running, STATUS_RUNNING)
    }

    /// Unregisters it now, or at its COMPLETE if its handler runs.
    fn unregister(&mut self) -> i64 {
        if self.running {
            self.unregister_at_complete = true;
            return ret::PENDING;
        }
        *self = Registration::default();
        ret::SUCCESS
    }
}

/// What a vCPU was doing when a handler interrupted it. The specification names x0-x17,
/// PC and PSTATE (§4.6.1, what EVENT_CONTEXT reads); like TF-A, Cairn keeps the whole
/// general-purpose context and both EL1 stack pointers, so COMPLETE gives back exactly
/// what ran, whatever the handler left in its registers and on its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub x: [u64; 31],
    pub pc: u64,
    pub pstate: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
}

/// A handler's event and the context it interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub event: u32,
    pub context: Context,
}

/// The interrupted context coming back at EVENT_COMPLETE or EVENT_COMPLETE_AND_RESUME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumption {
    pub context: Interrupted,
    /// COMPLETE_AND_RESUME: enter here as for an IRQ exception taken from that context
    /// (ELR_EL1 its PC, SPSR_EL1 its PSTATE, §5.1.6).
    pub resume_at: Option<u64>,
}

/// A handler to enter: x0 = event, x1 = argument, x2 and x3 the interrupted PC and
/// PSTATE (§4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub event: u32,
    pub entry: u64,
    pub arg: u64,
    /// Critical priority: nothing can nest in its handler.
    pub critical: bool,
}

/// What the SDEI state asks of the VM's virtual GIC, which it does not hold. The caller
/// carries it out on the CPU of the vCPU named (the one that called, or whose interrupt
/// fired): a private interrupt's state is banked there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GicEffect {
    /// A bound interrupt follows its event: enabled at EVENT_ENABLE, disabled when the
    /// event is disabled, unregistered, bound afresh or fires with no handler to take it
    /// (TF-A enables and disables the bound interrupt the same way).
    Enable { vcpu: usize, intid: u32, on: bool },
    /// A forwarded interrupt held for an event is done with: deactivated.
    Deactivate { vcpu: usize, intid: u32 },
    /// The interrupts bound to events are now these: the vGIC hands them to SDEI
    /// instead of a list register.
    Bound(Vec<u32>),
}

/// How a call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// x0 = this.
    Value(i64),
    /// EVENT_COMPLETE[_AND_RESUME] succeeded: the caller takes [`SdeiState::resume_with`]
    /// instead of returning.
    Resume,
}

#[derive(Clone, Debug)]
struct VcpuSdei {
    masked: bool,
    /// Event 0, then the bound private pool's slots.
    private: Vec<Registration>,
    /// The handlers running, by priority (normal, critical).
    running: [Option<Interrupted>; 2],
    resumption: Option<Resumption>,
}

impl VcpuSdei {
    fn new() -> Self {
        VcpuSdei {
            masked: true,
            private: vec![Registration::default(); 1 + BIND_SLOTS as usize],
            running: [None, None],
            resumption: None,
        }
    }

    /// The innermost handler running.
    fn innermost(&self) -> Option<&Interrupted> {
        self.running[1].as_ref().or(self.running[0].as_ref())
    }
}

/// A VM's SDEI state.
#[derive(Clone, Debug)]
pub struct SdeiState {
    mpidrs: Vec<u64>,
    vcpus: Vec<VcpuSdei>,
    shared: Vec<Registration>,
    /// The vCPU each running shared event's handler runs on.
    shared_running_on: Vec<Option<usize>>,
    /// The INTID bound to each private pool slot, and to each shared one.
    private_bound: Vec<Option<u32>>,
    shared_bound: Vec<Option<u32>>,
    /// How many slots of each pool INTERRUPT_BIND may use (FEATURES reports it).
    bind_slots: usize,
    /// What the calls and interrupts since the last [`SdeiState::take_effects`] ask of
    /// the virtual GIC.
    effects: Vec<GicEffect>,
}

/// A call's arguments x1-x5.
pub type Args = [u64; 5];

impl SdeiState {
    /// The state of a VM whose vCPUs have these MPIDR affinities, as at reset, binding up
    /// to `bind_slots` (at most [`BIND_SLOTS`]) interrupts of each kind.
    pub fn new(mpidrs: &[u64], bind_slots: u32) -> Self {
        SdeiState {
            mpidrs: mpidrs.to_vec(),
            vcpus: vec![VcpuSdei::new(); mpidrs.len()],
            shared: vec![Registration::default(); BIND_SLOTS as usize],
            shared_running_on: vec![None; BIND_SLOTS as usize],
            private_bound: vec![None; BIND_SLOTS as usize],
            shared_bound: vec![None; BIND_SLOTS as usize],
            bind_slots: bind_slots.min(BIND_SLOTS) as usize,
            effects: Vec::new(),
        }
    }

    /// Takes what the calls and interrupts since the last time ask of the virtual GIC.
    pub fn take_effects(&mut self) -> Vec<GicEffect> {
        core::mem::take(&mut self.effects)
    }

    /// The interrupt bound to `e`, if it is a bound event.
    fn bound_intid(&self, e: Event) -> Option<u32> {
        match (e.kind, e.slot) {
            (Kind::Private, 0) => None,
            (Kind::Private, s) => self.private_bound[s - 1],
            (Kind::Shared, s) => self.shared_bound[s],
        }
    }

    /// Every interrupt bound to an event.
    fn bound_intids(&self) -> Vec<u32> {
        self.private_bound.iter().chain(&self.shared_bound).flatten().copied().collect()
    }

    /// `vcpu`'s registration of `e` lets its interrupt go: held, it is deactivated; with
    /// `disable`, it is disabled as well.
    fn let_go(&mut self, vcpu: usize, e: Event, disable: bool) {
        let Some(intid) = self.bound_intid(e) else { return };
        let r = self.registration(vcpu, e);
        if core::mem::take(&mut r.held) {
            self.effects.push(GicEffect::Deactivate { vcpu, intid });
        }
        if disable {
            self.effects.push(GicEffect::Enable { vcpu, intid, on: false });
        }
    }

    /// Answers SDEI function `number` from vCPU `vcpu`. `in_ram` says whether an entry
    /// point is in the VM's RAM; `owns_interrupt` whether the VM may bind an INTID.
    pub fn call(
        &mut self,
        vcpu: usize,
        number: u16,
        a: Args,
        in_ram: impl Fn(u64) -> bool,
        owns_interrupt: impl Fn(u32) -> bool,
    ) -> Answer {
        if vcpu >= self.vcpus.len() {
            return Answer::Value(ret::INVALID_PARAMETERS);
        }
        let event = a[0] as u32;
        let value = match number {
            fid::VERSION => version_word() as i64,
            fid::EVENT_REGISTER => self.register(vcpu, a, &in_ram),
            fid::EVENT_ENABLE => self.set_enabled(vcpu, event, a[0], true),
            fid::EVENT_DISABLE => self.set_enabled(vcpu, event, a[0], false),
            fid::EVENT_CONTEXT => self.context(vcpu, a[0]),
            fid::EVENT_COMPLETE => return self.complete(vcpu, None),
            fid::EVENT_COMPLETE_AND_RESUME => return self.complete(vcpu, Some(a[0])),
            fid::EVENT_UNREGISTER => self.unregister(vcpu, event, a[0]),
            fid::EVENT_STATUS => self.status(vcpu, event, a[0]),
            fid::EVENT_GET_INFO => self.get_info(event, a[0], a[1]),
            fid::EVENT_ROUTING_SET => self.routing_set(event, a[0], a[1], a[2]),
            fid::PE_MASK => i64::from(!core::mem::replace(&mut self.vcpus[vcpu].masked, true)),
            fid::PE_UNMASK => {
                self.vcpus[vcpu].masked = false;
                ret::SUCCESS
            }
            fid::INTERRUPT_BIND => self.bind(vcpu, a[0], &owns_interrupt),
            fid::INTERRUPT_RELEASE => self.release(event, a[0]),
            fid::EVENT_SIGNAL => self.signal(event, a[0], a[1]),
            fid::FEATURES => match a[0] {
                FEATURE_BIND_SLOTS => bind_slots_word(self.bind_slots as u32),
                FEATURE_RELATIVE_ENTRY => 0,
                _ => ret::INVALID_PARAMETERS,
            },
            fid::PRIVATE_RESET => self.private_reset(vcpu),
            fid::SHARED_RESET => self.shared_reset(vcpu),
            _ => ret::NOT_SUPPORTED,
        };
        Answer::Value(value)
    }

    /// What event number `n` (the whole 64-bit argument, `raw`) stands for, if the VM has it.
    fn event(&self, n: u32, raw: u64) -> Option<Event> {
        if raw > u64::from(u32::MAX) {
            return None;
        }
        let pool = |base: u32| n.checked_sub(base).filter(|&k| k < BIND_SLOTS).map(|k| k as usize);
        let priority = |k: usize| if (k as u32) < CRITICAL_SLOTS { Priority::Critical } else { Priority::Normal };
        if n == EVENT_0 {
            return Some(Event {
                number: n,
                kind: Kind::Private,
                slot: 0,
                priority: Priority::Normal,
                signalable: true,
            });
        }
        if let Some(k) = pool(BOUND_PRIVATE_BASE).filter(|&k| self.private_bound[k].is_some()) {
            return Some(Event {
                number: n,
                kind: Kind::Private,
                slot: 1 + k,
                priority: priority(k),
                signalable: false,
            });
        }
        if let Some(k) = pool(BOUND_SHARED_BASE).filter(|&k| self.shared_bound[k].is_some()) {
            return Some(Event { number: n, kind: Kind::Shared, slot: k, priority: priority(k), signalable: false });
        }
        None
    }

    /// The registration of `e` as `vcpu` sees it.
    fn registration(&mut self, vcpu: usize, e: Event) -> &mut Registration {
        match e.kind {
            Kind::Private => &mut self.vcpus[vcpu].private[e.slot],
            Kind::Shared => &mut self.shared[e.slot],
        }
    }

    fn vcpu_of(&self, mpidr: u64) -> Option<usize> {
        self.mpidrs.iter().position(|&m| m == mpidr)
    }

    /// EVENT_REGISTER(event, entry, arg, flags, affinity) (§5.1.2).
    fn register(&mut self, vcpu: usize, a: Args, in_ram: &impl Fn(u64) -> bool) -> i64 {
        let [event, entry, arg, flags, affinity] = a;
        let Some(e) = self.event(event as u32, event) else { return ret::INVALID_PARAMETERS };
        if flags & !FLAG_ROUTE_PE != 0 || !in_ram(entry) {
            return ret::INVALID_PARAMETERS;
        }
        // A private event always goes to the vCPU that registered it: its flags are ignored.
        let route_to = match (e.kind, flags & FLAG_ROUTE_PE != 0) {
            (Kind::Shared, true) => match self.vcpu_of(affinity) {
                Some(v) => Some(v),
                None => return ret::INVALID_PARAMETERS,
            },
            _ => None,
        };
        let r = self.registration(vcpu, e);
        if r.registered || r.unregister_at_complete {
            return ret::DENIED;
        }
        *r = Registration { registered: true, entry, arg, route_to, affinity, ..Registration::default() };
        ret::SUCCESS
    }

    /// EVENT_ENABLE and EVENT_DISABLE (§5.1.3-5.1.4 of the state machine, §6.1).
    fn set_enabled(&mut self, vcpu: usize, event: u32, raw: u64, on: bool) -> i64 {
        let Some(e) = self.event(event, raw) else { return ret::INVALID_PARAMETERS };
        let r = self.registration(vcpu, e);
        if !r.registered || r.unregister_at_complete || r.enabled == on {
            return ret::DENIED;
        }
        r.enabled = on;
        if on {
            if let Some(intid) = self.bound_intid(e) {
                self.effects.push(GicEffect::Enable { vcpu, intid, on: true });
            }
        } else {
            // A signal or interrupt not yet dispatched goes with the enable.
            let r = self.registration(vcpu, e);
            if !r.running {
                r.pending = false;
            }
            self.let_go(vcpu, e, true);
        }
        ret::SUCCESS
    }

    /// EVENT_CONTEXT(n): the interrupted x<n> of the innermost handler (§5.1.5).
    fn context(&self, vcpu: usize, n: u64) -> i64 {
        let Some(i) = self.vcpus[vcpu].innermost() else { return ret::DENIED };
        match i.context.x.get(n as usize) {
            Some(&x) if n < CONTEXT_REGISTERS as u64 => x as i64,
            _ => ret::INVALID_PARAMETERS,
        }
    }

    /// EVENT_COMPLETE and EVENT_COMPLETE_AND_RESUME (§5.1.6-5.1.7): the innermost handler
    /// ends; an unregistration it held back happens now.
    fn complete(&mut self, vcpu: usize, resume_at: Option<u64>) -> Answer {
        let v = &mut self.vcpus[vcpu];
        let level = if v.running[1].is_some() { 1 } else { 0 };
        let Some(context) = v.running[level].take() else { return Answer::Value(ret::DENIED) };
        v.resumption = Some(Resumption { context, resume_at });
        if let Some(e) = self.event(context.event, u64::from(context.event)) {
            self.end_handler(vcpu, e);
        }
        Answer::Resume
    }

    /// `vcpu`'s handler of `e` is over (its COMPLETE, or the vCPU's reset): the event is
    /// idle again, its interrupt let go, and an unregistration it held back happens now.
    fn end_handler(&mut self, vcpu: usize, e: Event) {
        if e.kind == Kind::Shared {
            self.shared_running_on[e.slot] = None;
        }
        let r = self.registration(vcpu, e);
        r.running = false;
        let unregister = r.unregister_at_complete;
        self.let_go(vcpu, e, unregister);
        if unregister {
            *self.registration(vcpu, e) = Registration::default();
        }
    }

    /// EVENT_UNREGISTER (§5.1.8): PENDING while the handler runs, done at its COMPLETE.
    fn unregister(&mut self, vcpu: usize, event: u32, raw: u64) -> i64 {
        let Some(e) = self.event(event, raw) else { return ret::INVALID_PARAMETERS };
        let r = self.registration(vcpu, e);
        if !r.registered || r.unregister_at_complete {
            return ret::DENIED;
        }
        self.unregister_event(vcpu, e)
    }

    /// Unregisters `vcpu`'s registration of `e`, now or at its handler's COMPLETE; one
    /// unregistered now lets its interrupt go.
    fn unregister_event(&mut self, vcpu: usize, e: Event) -> i64 {
        let r = self.registration(vcpu, e);
        if r.registered && !r.running {
            self.let_go(vcpu, e, true);
        }
        self.registration(vcpu, e).unregister()
    }

    /// EVENT_STATUS (§5.1.9).
    fn status(&mut self, vcpu: usize, event: u32, raw: u64) -> i64 {
        match self.event(event, raw) {
            Some(e) => self.registration(vcpu, e).status(),
            None => ret::INVALID_PARAMETERS,
        }
    }

    /// EVENT_GET_INFO (§5.1.10).
    fn get_info(&self, event: u32, raw: u64, what: u64) -> i64 {
        let Some(e) = self.event(event, raw) else { return ret::INVALID_PARAMETERS };
        let shared = (e.kind == Kind::Shared).then(|| &self.shared[e.slot]);
        match (what, shared) {
            (info::TYPE, _) => i64::from(e.kind == Kind::Shared),
            (info::SIGNALED, _) => i64::from(e.signalable),
            (info::PRIORITY, _) => i64::from(e.priority == Priority::Critical),
            (info::ROUTING_MODE | info::ROUTING_AFFINITY, None) => ret::INVALID_PARAMETERS,
            (info::ROUTING_MODE | info::ROUTING_AFFINITY, Some(r)) if !r.registered => ret::DENIED,
            (info::ROUTING_MODE, Some(r)) => i64::from(r.route_to.is_some()),
            (info::ROUTING_AFFINITY, Some(r)) if r.route_to.is_some() => r.affinity as i64,
            (info::ROUTING_AFFINITY, Some(_)) => ret::INVALID_PARAMETERS,
            _ => ret::INVALID_PARAMETERS,
        }
    }

    /// EVENT_ROUTING_SET (§5.1.11): shared events only, registered, disabled, idle.
    fn routing_set(&mut self, event: u32, raw: u64, flags: u64, affinity: u64) -> i64 {
        let Some(e) = self.event(event, raw).filter(|e| e.kind == Kind::Shared) else {
            return ret::INVALID_PARAMETERS;
        };
        if flags & !FLAG_ROUTE_PE != 0 {
            return ret::INVALID_PARAMETERS;
        }
        let route_to = if flags & FLAG_ROUTE_PE != 0 {
            match self.vcpu_of(affinity) {
                Some(v) => Some(v),
                None => return ret::INVALID_PARAMETERS,
            }
        } else {
            None
        };
        let r = &mut self.shared[e.slot];
        if !r.registered || r.enabled || r.running || r.pending || r.unregister_at_complete {
            return ret::DENIED;
        }
        r.route_to = route_to;
        r.affinity = affinity;
        ret::SUCCESS
    }

    /// INTERRUPT_BIND (§5.1.12): a PPI to a private event, an SPI to a shared one; the
    /// same event again for an interrupt already bound.
    fn bind(&mut self, vcpu: usize, intid: u64, owns_interrupt: &impl Fn(u32) -> bool) -> i64 {
        let Ok(intid) = u32::try_from(intid) else { return ret::INVALID_PARAMETERS };
        if intid < FIRST_PPI || !owns_interrupt(intid) {
            return ret::INVALID_PARAMETERS;
        }
        let (pool, base) = if intid < FIRST_SPI {
            (&mut self.private_bound, BOUND_PRIVATE_BASE)
        } else {
            (&mut self.shared_bound, BOUND_SHARED_BASE)
        };
        if let Some(k) = pool.iter().position(|&b| b == Some(intid)) {
            return i64::from(base + k as u32);
        }
        let Some(k) = pool[..self.bind_slots].iter().position(Option::is_none) else { return ret::OUT_OF_RESOURCE };
        pool[k] = Some(intid);
        // Bound, it belongs to its event, which enables it (TF-A disables it at bind).
        self.effects.push(GicEffect::Enable { vcpu, intid, on: false });
        self.effects.push(GicEffect::Bound(self.bound_intids()));
        i64::from(base + k as u32)
    }

    /// INTERRUPT_RELEASE (§5.1.13): a bound event no vCPU has registered.
    fn release(&mut self, event: u32, raw: u64) -> i64 {
        let Some(e) = self.event(event, raw).filter(|_| event != EVENT_0) else { return ret::INVALID_PARAMETERS };
        let in_use = match e.kind {
            Kind::Private => self.vcpus.iter().any(|v| v.private[e.slot].registered),
            Kind::Shared => self.shared[e.slot].registered,
        };
        if in_use {
            return ret::DENIED;
        }
        match e.kind {
            Kind::Private => self.private_bound[e.slot - 1] = None,
            Kind::Shared => self.shared_bound[e.slot] = None,
        }
        self.effects.push(GicEffect::Bound(self.bound_intids()));
        ret::SUCCESS
    }

    /// EVENT_SIGNAL(event, target) (§5.1.14): only event 0, to any vCPU of the VM.
    fn signal(&mut self, event: u32, raw: u64, target: u64) -> i64 {
        if raw != u64::from(EVENT_0) || event != EVENT_0 {
            return ret::INVALID_PARAMETERS;
        }
        let Some(v) = self.vcpu_of(target) else { return ret::INVALID_PARAMETERS };
        self.vcpus[v].private[0].pending = true;
        ret::SUCCESS
    }

    /// PRIVATE_RESET (§5.1.16): every private event of the caller unregistered; DENIED if
    /// one's handler runs (it goes at its COMPLETE).
    fn private_reset(&mut self, vcpu: usize) -> i64 {
        let events: Vec<Event> = (0..self.vcpus[vcpu].private.len()).filter_map(|s| self.private_event(s)).collect();
        let answers: Vec<i64> = events.into_iter().map(|e| self.unregister_event(vcpu, e)).collect();
        if answers.contains(&ret::PENDING) {
            ret::DENIED
        } else {
            ret::SUCCESS
        }
    }

    /// SHARED_RESET (§5.1.17): every shared event unregistered and every binding no vCPU
    /// has registered released; DENIED if a handler held one back.
    fn shared_reset(&mut self, vcpu: usize) -> i64 {
        let events: Vec<Event> = (0..self.shared.len()).filter_map(|s| self.shared_event(s)).collect();
        let answers: Vec<i64> = events.into_iter().map(|e| self.unregister_event(vcpu, e)).collect();
        for k in 0..BIND_SLOTS as usize {
            if !self.shared[k].registered {
                self.shared_bound[k] = None;
            }
            if self.vcpus.iter().all(|v| !v.private[1 + k].registered) {
                self.private_bound[k] = None;
            }
        }
        self.effects.push(GicEffect::Bound(self.bound_intids()));
        if answers.contains(&ret::PENDING) {
            ret::DENIED
        } else {
            ret::SUCCESS
        }
    }

    /// The event to dispatch to `vcpu` now, if any (§6.2, TF-A's rules): pending,
    /// registered and enabled, the vCPU unmasked and a target of it, and no handler of
    /// its priority or above running there; critical events first. Signals for an event
    /// not registered and enabled are dropped, as TF-A drops their interrupt.
    fn candidate(&mut self, vcpu: usize) -> Option<(Event, Priority)> {
        // Asked after every SDEI call for every vCPU: most have nothing to look at.
        let v = &self.vcpus[vcpu];
        let nothing_pending = || !v.private.iter().chain(&self.shared).any(|r| r.pending);
        if v.masked || v.running[Priority::Critical.index()].is_some() || nothing_pending() {
            return None;
        }
        self.drop_unready_signals(vcpu);
        let v = &self.vcpus[vcpu];
        let normal_may_run = v.running[Priority::Normal.index()].is_none();
        let private = (0..v.private.len()).filter(|&s| v.private[s].pending).filter_map(|s| self.private_event(s));
        let for_me = |r: &Registration| r.pending && !r.running && r.route_to.is_none_or(|t| t == vcpu);
        let shared = (0..self.shared.len()).filter(|&s| for_me(&self.shared[s])).filter_map(|s| self.shared_event(s));
        let mut normal = None;
        for e in private.chain(shared) {
            match e.priority {
                Priority::Critical => return Some((e, Priority::Critical)),
                Priority::Normal if normal_may_run && normal.is_none() => normal = Some((e, Priority::Normal)),
                Priority::Normal => {}
            }
        }
        normal
    }

    /// Signals of `vcpu`'s events (and shared ones) that are not registered and enabled
    /// any more are dropped.
    fn drop_unready_signals(&mut self, vcpu: usize) {
        let v = &mut self.vcpus[vcpu];
        for r in v.private.iter_mut().chain(self.shared.iter_mut()).filter(|r| r.pending) {
            if !r.registered || !r.enabled || r.unregister_at_complete {
                r.pending = false;
            }
        }
    }

    fn private_event(&self, slot: usize) -> Option<Event> {
        let n = if slot == 0 { EVENT_0 } else { BOUND_PRIVATE_BASE + slot as u32 - 1 };
        self.event(n, u64::from(n))
    }

    fn shared_event(&self, slot: usize) -> Option<Event> {
        let n = BOUND_SHARED_BASE + slot as u32;
        self.event(n, u64::from(n))
    }

    /// Whether an event is ready for `vcpu` (a vCPU waiting in WFI wakes for it).
    pub fn deliverable(&mut self, vcpu: usize) -> bool {
        vcpu < self.vcpus.len() && self.candidate(vcpu).is_some()
    }

    /// Takes the event to dispatch to `vcpu` now, if any, recording the context it
    /// interrupts for its COMPLETE.
    pub fn dispatch(&mut self, vcpu: usize, context: &Context) -> Option<Dispatch> {
        if vcpu >= self.vcpus.len() {
            return None;
        }
        let (e, priority) = self.candidate(vcpu)?;
        let number = e.number;
        if e.kind == Kind::Shared {
            self.shared_running_on[e.slot] = Some(vcpu);
        }
        let r = self.registration(vcpu, e);
        r.pending = false;
        r.running = true;
        let (entry, arg) = (r.entry, r.arg);
        self.vcpus[vcpu].running[priority.index()] = Some(Interrupted { event: number, context: *context });
        Some(Dispatch { event: number, entry, arg, critical: priority == Priority::Critical })
    }

    /// What the vCPU's last successful EVENT_COMPLETE[_AND_RESUME] gives back, taken out
    /// (the tests' view; the run loop applies it in place with [`SdeiState::resume_with`]).
    #[cfg(test)]
    pub fn take_resumption(&mut self, vcpu: usize) -> Option<Resumption> {
        self.vcpus.get_mut(vcpu)?.resumption.take()
    }

    /// Hands what the vCPU's last successful EVENT_COMPLETE[_AND_RESUME] gives back to
    /// `apply`, in place (a context is 35 words: no copy out), and forgets it. False if
    /// there is none.
    pub fn resume_with(&mut self, vcpu: usize, apply: impl FnOnce(&Resumption)) -> bool {
        let Some(v) = self.vcpus.get_mut(vcpu) else { return false };
        let Some(back) = &v.resumption else { return false };
        apply(back);
        v.resumption = None;
        true
    }

    /// A vCPU that powers off (CPU_OFF) or restarts loses its SDEI state: its private
    /// registrations, its handlers (an uncompleted one does not survive, as Linux's
    /// kdump path needs) and any shared handler it ran; it is masked again (§4.4).
    pub fn reset_vcpu(&mut self, vcpu: usize) {
        if vcpu >= self.vcpus.len() {
            return;
        }
        let private: Vec<Event> = (1..self.vcpus[vcpu].private.len()).filter_map(|s| self.private_event(s)).collect();
        for e in private {
            let registered = self.registration(vcpu, e).registered;
            self.let_go(vcpu, e, registered);
        }
        self.vcpus[vcpu] = VcpuSdei::new();
        let ran_here: Vec<Event> = (0..self.shared.len())
            .filter(|&slot| self.shared_running_on[slot] == Some(vcpu))
            .filter_map(|slot| self.shared_event(slot))
            .collect();
        for e in ran_here {
            self.end_handler(vcpu, e);
        }
    }

    /// The whole VM back to its reset state (a VM reset).
    pub fn reset(&mut self) {
        let held: Vec<GicEffect> = (0..self.shared.len())
            .filter(|&s| self.shared[s].held)
            .filter_map(|s| self.shared_bound[s])
            .map(|intid| GicEffect::Deactivate { vcpu: 0, intid })
            .collect();
        let mut effects = core::mem::take(&mut self.effects);
        *self = SdeiState::new(&self.mpidrs, self.bind_slots as u32);
        effects.extend(held);
        effects.push(GicEffect::Bound(Vec::new()));
        self.effects = effects;
    }

    /// The private interrupt `intid` fired on `vcpu`, or the SPI `intid` fired (taken on
    /// `vcpu`'s CPU); `forwarded`: a physical interrupt Cairn acknowledged, active until
    /// let go. Its bound event becomes pending, and the interrupt is held until the
    /// handler's COMPLETE. With no handler to take it (the event not registered and
    /// enabled) it is let go and disabled, as a GIC stops signalling a disabled
    /// interrupt. False if no event is bound to it (it goes to the guest as an interrupt).
    pub fn interrupt(&mut self, vcpu: usize, intid: u32, forwarded: bool) -> bool {
        let slot = |pool: &[Option<u32>]| pool.iter().position(|&b| b == Some(intid));
        let event = if intid < FIRST_SPI {
            slot(&self.private_bound).and_then(|k| self.private_event(1 + k))
        } else {
            slot(&self.shared_bound).and_then(|k| self.shared_event(k))
        };
        let Some(e) = event.filter(|_| vcpu < self.vcpus.len()) else { return false };
        let r = self.registration(vcpu, e);
        if !r.registered || !r.enabled || r.unregister_at_complete {
            if forwarded {
                self.effects.push(GicEffect::Deactivate { vcpu, intid });
            }
            self.effects.push(GicEffect::Enable { vcpu, intid, on: false });
            return true;
        }
        r.pending = true;
        r.held |= forwarded;
        true
    }

    /// `vcpu`'s own SDEI state (masked, its private events' registrations, the handlers
    /// running) as words, for its saved register list (vcpu::saved). What is bound to
    /// which interrupt is the VM's, and goes with the VM's snapshot instead.
    pub fn save_vcpu(&self, vcpu: usize) -> Vec<u64> {
        let Some(v) = self.vcpus.get(vcpu) else { return Vec::new() };
        let mut out = vec![u64::from(v.masked), v.private.len() as u64];
        for r in &v.private {
            out.extend([r.flags(), r.entry, r.arg]);
        }
        for running in &v.running {
            match running {
                Some(i) => {
                    out.push(u64::from(i.event) + 1);
                    out.extend(i.context.x);
                    out.extend([i.context.pc, i.context.pstate, i.context.sp_el0, i.context.sp_el1]);
                }
                None => out.extend([0; 1 + CONTEXT_WORDS]),
            }
        }
        out
    }

    /// Puts back what [`SdeiState::save_vcpu`] gave; nothing changes if the words are not
    /// a saved state of this VM's form.
    pub fn restore_vcpu(&mut self, vcpu: usize, words: &[u64]) -> Result<(), BadState> {
        let slots = 1 + BIND_SLOTS as usize;
        let expected = 2 + 3 * slots + 2 * (1 + CONTEXT_WORDS);
        let v = self.vcpus.get_mut(vcpu).ok_or(BadState)?;
        if words.len() != expected || words[0] > 1 || words[1] != slots as u64 {
            return Err(BadState);
        }
        let mut restored = VcpuSdei::new();
        restored.masked = words[0] == 1;
        for (r, w) in restored.private.iter_mut().zip(words[2..].chunks_exact(3)) {
            *r = Registration::from_flags(w[0], w[1], w[2]).ok_or(BadState)?;
        }
        let contexts = words[2 + 3 * slots..].chunks_exact(1 + CONTEXT_WORDS);
        for (slot, w) in restored.running.iter_mut().zip(contexts) {
            if w[0] == 0 {
                continue;
            }
            let event = u32::try_from(w[0] - 1).map_err(|_| BadState)?;
            let mut x = [0u64; 31];
            x.copy_from_slice(&w[1..32]);
            let context = Context { x, pc: w[32], pstate: w[33], sp_el0: w[34], sp_el1: w[35] };
            *slot = Some(Interrupted { event, context });
        }
        *v = restored;
        Ok(())
    }

    /// The vCPUs an event may be ready for, one bit each.
    pub fn ready_vcpus(&mut self) -> u64 {
        (0..self.vcpus.len()).filter(|&v| self.deliverable(v)).fold(0, |m, v| m | 1 << v)
    }
}
