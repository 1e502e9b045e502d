//! The SDEI state machine: every call and error path, dispatch, nesting, and what a
//! vCPU's reset takes away, as the KVM series' selftest orders them (VERSION, FEATURES,
//! resets, PE_UNMASK, GET_INFO, REGISTER, ENABLE, SIGNAL, PE_MASK, DISABLE, UNREGISTER).

use super::state::{Answer, Args, Context, Dispatch, Interrupted, Resumption, SdeiState};
use super::*;

const MPIDRS: [u64; 2] = [0x0, 0x1];
const ENTRY: u64 = 0x4008_0000;
const ARG: u64 = 0xA5;
const PPI: u32 = 23;
const SPI: u32 = 40;

fn state() -> SdeiState {
    SdeiState::new(&MPIDRS, BIND_SLOTS)
}

fn call(s: &mut SdeiState, vcpu: usize, number: u16, args: &[u64]) -> Answer {
    let mut a: Args = [0; 5];
    a[..args.len()].copy_from_slice(args);
    s.call(vcpu, number, a, |addr| (0x4000_0000..0x8000_0000).contains(&addr), |intid| intid != 99)
}

fn value(s: &mut SdeiState, vcpu: usize, number: u16, args: &[u64]) -> i64 {
    match call(s, vcpu, number, args) {
        Answer::Value(v) => v,
        Answer::Resume => panic!("call {number:#x} resumed"),
    }
}

/// Registers and enables `event` on `vcpu`, unmasked.
fn ready(s: &mut SdeiState, vcpu: usize, event: u32) {
    assert_eq!(value(s, vcpu, fid::EVENT_REGISTER, &[u64::from(event), ENTRY, ARG, 0, 0]), ret::SUCCESS);
    assert_eq!(value(s, vcpu, fid::EVENT_ENABLE, &[u64::from(event)]), ret::SUCCESS);
    value(s, vcpu, fid::PE_UNMASK, &[]);
}

fn interrupted(tag: u64) -> Context {
    Context { x: core::array::from_fn(|n| tag + n as u64), pc: 0x4010_0000 + tag, pstate: 0x5, sp_el0: 1, sp_el1: 2 }
}

fn dispatch(s: &mut SdeiState, vcpu: usize, tag: u64) -> Option<Dispatch> {
    s.dispatch(vcpu, &interrupted(tag))
}

#[test]
fn version_features_and_resets() {
    let mut s = state();
    let v = value(&mut s, 0, fid::VERSION, &[]) as u64;
    assert_eq!((v >> 48, (v >> 32) & 0xFFFF, v & 0xFFFF_FFFF, v >> 63), (1, 1, VENDOR_CODE, 0));
    assert_eq!(value(&mut s, 0, fid::FEATURES, &[FEATURE_BIND_SLOTS]), (8 << 16) | 8);
    assert_eq!(value(&mut s, 0, fid::FEATURES, &[FEATURE_RELATIVE_ENTRY]), 0);
    assert_eq!(value(&mut s, 0, fid::FEATURES, &[2]), ret::INVALID_PARAMETERS);
    assert_eq!(value(&mut s, 0, fid::PRIVATE_RESET, &[]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::SHARED_RESET, &[]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, 0x33, &[]), ret::NOT_SUPPORTED);
}

#[test]
fn without_bind_slots_binding_is_out_of_resource() {
    let mut s = SdeiState::new(&MPIDRS, 0);
    assert_eq!(value(&mut s, 0, fid::FEATURES, &[FEATURE_BIND_SLOTS]), 0);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]), ret::OUT_OF_RESOURCE);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]), ret::OUT_OF_RESOURCE);
}

#[test]
fn every_vcpu_starts_masked_and_mask_says_whether_it_changed() {
    let mut s = state();
    assert_eq!(value(&mut s, 0, fid::PE_MASK, &[]), 0, "already masked");
    assert_eq!(value(&mut s, 0, fid::PE_UNMASK, &[]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::PE_MASK, &[]), 1, "it changed");
}

#[test]
fn event_0_info_and_unknown_events() {
    let mut s = state();
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[0, info::TYPE]), 0, "private");
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[0, info::SIGNALED]), 1);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[0, info::PRIORITY]), 0, "normal");
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[0, info::ROUTING_MODE]), ret::INVALID_PARAMETERS);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[0, 9]), ret::INVALID_PARAMETERS);
    for unknown in [1, u64::from(BOUND_PRIVATE_BASE), u64::from(BOUND_SHARED_BASE), 1 << 32] {
        for number in
            [fid::EVENT_REGISTER, fid::EVENT_ENABLE, fid::EVENT_DISABLE, fid::EVENT_UNREGISTER, fid::EVENT_STATUS]
        {
            assert_eq!(
                value(&mut s, 0, number, &[unknown, ENTRY]),
                ret::INVALID_PARAMETERS,
                "{number:#x} {unknown:#x}"
            );
        }
        assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[unknown, 0]), ret::INVALID_PARAMETERS);
    }
}

#[test]
fn register_enable_disable_unregister_and_their_denials() {
    let mut s = state();
    assert_eq!(value(&mut s, 0, fid::EVENT_ENABLE, &[0]), ret::DENIED, "not registered");
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[0]), ret::DENIED);
    assert_eq!(
        value(&mut s, 0, fid::EVENT_REGISTER, &[0, 0x10, ARG, 0, 0]),
        ret::INVALID_PARAMETERS,
        "entry outside RAM"
    );
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[0, ENTRY, ARG, 2, 0]), ret::INVALID_PARAMETERS, "unknown flag");
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[0, ENTRY, ARG, 0, 0]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[0, ENTRY, ARG, 0, 0]), ret::DENIED, "twice");
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED);
    assert_eq!(value(&mut s, 1, fid::EVENT_STATUS, &[0]), 0, "a private event is per vCPU");
    assert_eq!(value(&mut s, 0, fid::EVENT_DISABLE, &[0]), ret::DENIED, "disabled already");
    assert_eq!(value(&mut s, 0, fid::EVENT_ENABLE, &[0]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_ENABLE, &[0]), ret::DENIED, "enabled already");
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED | STATUS_ENABLED);
    assert_eq!(value(&mut s, 0, fid::EVENT_DISABLE, &[0]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[0]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), 0);
}

#[test]
fn a_signal_is_dispatched_with_the_interrupted_context_and_completed() {
    let mut s = state();
    ready(&mut s, 1, EVENT_0);
    assert_eq!(value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[1]]), ret::SUCCESS);
    assert!(!s.deliverable(0), "signalled to vCPU 1 only");
    assert_eq!(s.ready_vcpus(), 0b10);
    assert_eq!(dispatch(&mut s, 1, 100), Some(Dispatch { event: 0, entry: ENTRY, arg: ARG, critical: false }));
    assert_eq!(value(&mut s, 1, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED | STATUS_ENABLED | STATUS_RUNNING);
    assert_eq!(value(&mut s, 1, fid::EVENT_CONTEXT, &[17]), 117);
    assert_eq!(value(&mut s, 1, fid::EVENT_CONTEXT, &[18]), ret::INVALID_PARAMETERS);
    assert_eq!(value(&mut s, 0, fid::EVENT_CONTEXT, &[0]), ret::DENIED, "not in a handler");
    assert_eq!(call(&mut s, 1, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    let back = s.take_resumption(1).unwrap();
    assert_eq!(back, Resumption { context: Interrupted { event: 0, context: interrupted(100) }, resume_at: None });
    assert_eq!(value(&mut s, 1, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED | STATUS_ENABLED);
    assert_eq!(value(&mut s, 1, fid::EVENT_COMPLETE, &[0]), ret::DENIED, "nothing runs any more");
}

#[test]
fn complete_and_resume_names_where_to_enter() {
    let mut s = state();
    ready(&mut s, 0, EVENT_0);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    dispatch(&mut s, 0, 0).unwrap();
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE_AND_RESUME, &[0x4000_0280]), Answer::Resume);
    assert_eq!(s.take_resumption(0).unwrap().resume_at, Some(0x4000_0280));
}

#[test]
fn signal_checks_its_event_and_target() {
    let mut s = state();
    assert_eq!(value(&mut s, 0, fid::EVENT_SIGNAL, &[1, MPIDRS[0]]), ret::INVALID_PARAMETERS);
    assert_eq!(value(&mut s, 0, fid::EVENT_SIGNAL, &[0, 0x100]), ret::INVALID_PARAMETERS);
    // A signal for an event not registered and enabled is dropped, as TF-A drops its SGI.
    assert_eq!(value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]), ret::SUCCESS);
    value(&mut s, 0, fid::PE_UNMASK, &[]);
    assert!(!s.deliverable(0));
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[0, ENTRY, ARG, 0, 0]), ret::SUCCESS);
    value(&mut s, 0, fid::EVENT_ENABLE, &[0]);
    assert!(!s.deliverable(0), "the earlier signal is gone");
}

#[test]
fn a_masked_vcpu_holds_its_events_back_until_unmasked() {
    let mut s = state();
    ready(&mut s, 0, EVENT_0);
    value(&mut s, 0, fid::PE_MASK, &[]);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    assert_eq!(dispatch(&mut s, 0, 0), None);
    value(&mut s, 0, fid::PE_UNMASK, &[]);
    assert_eq!(dispatch(&mut s, 0, 0).map(|d| d.event), Some(0));
}

#[test]
fn unregister_while_running_is_pending_until_complete() {
    let mut s = state();
    ready(&mut s, 0, EVENT_0);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    dispatch(&mut s, 0, 0).unwrap();
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[0]), ret::PENDING);
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[0]), ret::DENIED, "already on its way out");
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[0, ENTRY, ARG, 0, 0]), ret::DENIED);
    assert_eq!(value(&mut s, 0, fid::PRIVATE_RESET, &[]), ret::DENIED, "a handler still runs");
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), 0, "unregistered at its COMPLETE");
}

#[test]
fn bind_gives_private_events_for_ppis_and_shared_ones_for_spis() {
    let mut s = state();
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[3]), ret::INVALID_PARAMETERS, "an SGI");
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[99]), ret::INVALID_PARAMETERS, "not the VM's");
    let ppi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]);
    assert_eq!(ppi, i64::from(BOUND_PRIVATE_BASE));
    assert_eq!(value(&mut s, 1, fid::INTERRUPT_BIND, &[u64::from(PPI)]), ppi, "bound already: the same event");
    let spi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]);
    assert_eq!(spi, i64::from(BOUND_SHARED_BASE));
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[ppi as u64, info::TYPE]), 0);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi as u64, info::TYPE]), 1);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi as u64, info::SIGNALED]), 0);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[ppi as u64, info::PRIORITY]), 1, "the first slots are critical");
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi as u64, info::ROUTING_MODE]), ret::DENIED, "not registered");
    for k in 1..BIND_SLOTS {
        assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI + k)]), i64::from(BOUND_SHARED_BASE + k));
    }
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI + 20)]), ret::OUT_OF_RESOURCE);
    // Released only once nobody has it registered.
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[spi as u64, ENTRY, ARG, 0, 0]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_RELEASE, &[spi as u64]), ret::DENIED);
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[spi as u64]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_RELEASE, &[spi as u64]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_RELEASE, &[spi as u64]), ret::INVALID_PARAMETERS, "not bound now");
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_RELEASE, &[0]), ret::INVALID_PARAMETERS, "event 0 is not bound");
}

#[test]
fn routing_of_shared_events() {
    let mut s = state();
    let spi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]) as u64;
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[spi, ENTRY, ARG, FLAG_ROUTE_PE, 0x7]), ret::INVALID_PARAMETERS);
    assert_eq!(value(&mut s, 0, fid::EVENT_REGISTER, &[spi, ENTRY, ARG, FLAG_ROUTE_PE, MPIDRS[1]]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi, info::ROUTING_MODE]), 1);
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi, info::ROUTING_AFFINITY]), MPIDRS[1] as i64);
    assert_eq!(value(&mut s, 0, fid::EVENT_ROUTING_SET, &[0, 0, 0]), ret::INVALID_PARAMETERS, "private");
    assert_eq!(value(&mut s, 0, fid::EVENT_ROUTING_SET, &[spi, 4, 0]), ret::INVALID_PARAMETERS, "bad flags");
    assert_eq!(value(&mut s, 0, fid::EVENT_ROUTING_SET, &[spi, 0, 0]), ret::SUCCESS, "to any vCPU");
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[spi, info::ROUTING_AFFINITY]), ret::INVALID_PARAMETERS);
    value(&mut s, 0, fid::EVENT_ENABLE, &[spi]);
    assert_eq!(value(&mut s, 0, fid::EVENT_ROUTING_SET, &[spi, FLAG_ROUTE_PE, MPIDRS[1]]), ret::DENIED, "enabled");
    value(&mut s, 0, fid::EVENT_DISABLE, &[spi]);
    assert_eq!(value(&mut s, 0, fid::EVENT_ROUTING_SET, &[spi, FLAG_ROUTE_PE, MPIDRS[1]]), ret::SUCCESS);
    value(&mut s, 0, fid::EVENT_ENABLE, &[spi]);
    value(&mut s, 0, fid::PE_UNMASK, &[]);
    value(&mut s, 1, fid::PE_UNMASK, &[]);
    assert!(s.interrupt(0, SPI, false));
    assert!(!s.interrupt(0, SPI + 1, false), "nothing bound to it");
    assert_eq!(s.ready_vcpus(), 0b10, "routed to vCPU 1");
    assert_eq!(dispatch(&mut s, 1, 0).map(|d| d.event), Some(spi as u32));
    assert!(s.interrupt(0, SPI, false));
    assert_eq!(s.ready_vcpus(), 0, "its handler runs: not again until it completes");
}

#[test]
fn a_critical_event_interrupts_a_normal_handler_never_the_reverse() {
    let mut s = state();
    // The first private bind slot is critical; the third is normal.
    let critical = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]) as u32;
    value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI + 1)]);
    let normal = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI + 2)]) as u32;
    assert_eq!(value(&mut s, 0, fid::EVENT_GET_INFO, &[u64::from(normal), info::PRIORITY]), 0);
    for e in [EVENT_0, critical, normal] {
        ready(&mut s, 0, e);
    }
    // Normal first; a second normal waits; a critical one nests.
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    assert_eq!(dispatch(&mut s, 0, 1).map(|d| d.event), Some(0));
    s.interrupt(0, PPI + 2, false);
    assert_eq!(dispatch(&mut s, 0, 2), None, "one normal handler at a time");
    s.interrupt(0, PPI, false);
    assert_eq!(dispatch(&mut s, 0, 3).map(|d| d.event), Some(critical));
    assert_eq!(value(&mut s, 0, fid::EVENT_CONTEXT, &[0]), 3, "the innermost handler's context");
    assert_eq!(dispatch(&mut s, 0, 4), None, "nothing nests in a critical handler");
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    assert_eq!(s.take_resumption(0).unwrap().context.event, critical);
    assert_eq!(dispatch(&mut s, 0, 5), None, "the normal handler still runs");
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    assert_eq!(s.take_resumption(0).unwrap().context.event, 0);
    assert_eq!(dispatch(&mut s, 0, 6).map(|d| d.event), Some(normal), "the waiting one now");
    // A critical event goes first when both wait.
    let mut s = state();
    let critical = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]) as u32;
    ready(&mut s, 0, EVENT_0);
    ready(&mut s, 0, critical);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    s.interrupt(0, PPI, false);
    assert_eq!(dispatch(&mut s, 0, 0).map(|d| d.event), Some(critical));
}

#[test]
fn a_vcpu_reset_forgets_its_handlers_and_registrations() {
    let mut s = state();
    ready(&mut s, 0, EVENT_0);
    ready(&mut s, 1, EVENT_0);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    dispatch(&mut s, 0, 0).unwrap();
    // Linux's kdump path calls CPU_OFF from inside a handler.
    s.reset_vcpu(0);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), 0);
    assert_eq!(value(&mut s, 0, fid::EVENT_CONTEXT, &[0]), ret::DENIED, "no handler survives");
    assert_eq!(value(&mut s, 0, fid::PE_MASK, &[]), 0, "masked again");
    assert_eq!(value(&mut s, 1, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED | STATUS_ENABLED, "others keep theirs");
    s.reset();
    assert_eq!(value(&mut s, 1, fid::EVENT_STATUS, &[0]), 0);
}

#[test]
fn resets_unregister_and_shared_reset_releases_bindings() {
    let mut s = state();
    let spi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]) as u64;
    let ppi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]) as u64;
    ready(&mut s, 0, EVENT_0);
    value(&mut s, 0, fid::EVENT_REGISTER, &[spi, ENTRY, ARG, 0, 0]);
    assert_eq!(value(&mut s, 0, fid::PRIVATE_RESET, &[]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[0]), 0);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[spi]), STATUS_REGISTERED, "private reset keeps shared events");
    assert_eq!(value(&mut s, 0, fid::SHARED_RESET, &[]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[spi]), ret::INVALID_PARAMETERS, "unregistered and released");
    assert_eq!(value(&mut s, 0, fid::EVENT_STATUS, &[ppi]), ret::INVALID_PARAMETERS);
}

#[test]
fn a_vcpus_state_round_trips_through_its_saved_words() {
    let mut s = state();
    ready(&mut s, 1, EVENT_0);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[1]]);
    dispatch(&mut s, 1, 7).unwrap();
    let words = s.save_vcpu(1);
    let mut other = state();
    assert_eq!(other.restore_vcpu(1, &words), Ok(()));
    assert_eq!(other.save_vcpu(1), words);
    assert_eq!(value(&mut other, 1, fid::EVENT_STATUS, &[0]), STATUS_REGISTERED | STATUS_ENABLED | STATUS_RUNNING);
    assert_eq!(value(&mut other, 1, fid::EVENT_CONTEXT, &[3]), 10, "the interrupted x3 of tag 7");
    assert_eq!(value(&mut other, 1, fid::PE_MASK, &[]), 1, "it was unmasked");
    assert_eq!(other.restore_vcpu(1, &words[1..]), Err(super::state::BadState));
    let mut bad = words.clone();
    bad[2] = 1 << 9;
    assert_eq!(other.restore_vcpu(1, &bad), Err(super::state::BadState), "an unknown flag");
}

#[test]
fn a_bound_interrupt_follows_its_event_and_is_held_until_complete() {
    use super::state::GicEffect::{Bound, Deactivate, Enable};
    let mut s = state();
    let ppi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]) as u32;
    assert_eq!(
        s.take_effects(),
        [Enable { vcpu: 0, intid: PPI, on: false }, Bound(vec![PPI])],
        "bound: disabled until its event is enabled, and delivered as an event"
    );
    ready(&mut s, 0, ppi);
    assert_eq!(s.take_effects(), [Enable { vcpu: 0, intid: PPI, on: true }]);
    // Fired, acknowledged at EL2: held active through the handler, let go at COMPLETE.
    assert!(s.interrupt(0, PPI, true));
    assert_eq!(dispatch(&mut s, 0, 0).map(|d| d.event), Some(ppi));
    assert_eq!(s.take_effects(), []);
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    assert_eq!(s.take_effects(), [Deactivate { vcpu: 0, intid: PPI }]);
    // Pending while the vCPU is masked, then disabled: let go and disabled, not delivered.
    value(&mut s, 0, fid::PE_MASK, &[]);
    assert!(s.interrupt(0, PPI, true));
    assert_eq!(value(&mut s, 0, fid::EVENT_DISABLE, &[u64::from(ppi)]), ret::SUCCESS);
    assert_eq!(s.take_effects(), [Deactivate { vcpu: 0, intid: PPI }, Enable { vcpu: 0, intid: PPI, on: false }]);
    value(&mut s, 0, fid::PE_UNMASK, &[]);
    assert_eq!(dispatch(&mut s, 0, 1), None, "dropped with the enable");
    // Firing with no handler to take it (disabled, or on a vCPU that never registered).
    assert!(s.interrupt(0, PPI, true));
    assert!(s.interrupt(1, PPI, false));
    assert_eq!(
        s.take_effects(),
        [
            Deactivate { vcpu: 0, intid: PPI },
            Enable { vcpu: 0, intid: PPI, on: false },
            Enable { vcpu: 1, intid: PPI, on: false }
        ]
    );
    assert!(!s.interrupt(0, PPI + 1, true), "not bound: an interrupt for the guest");
    // Unregistered, then released: no longer bound.
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[u64::from(ppi)]), ret::SUCCESS);
    assert_eq!(value(&mut s, 0, fid::INTERRUPT_RELEASE, &[u64::from(ppi)]), ret::SUCCESS);
    assert_eq!(s.take_effects(), [Enable { vcpu: 0, intid: PPI, on: false }, Bound(vec![])]);
}

#[test]
fn a_handler_cut_short_lets_its_interrupt_go() {
    use super::state::GicEffect::{Bound, Deactivate, Enable};
    let mut s = state();
    let ppi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(PPI)]) as u32;
    let spi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]) as u32;
    ready(&mut s, 0, ppi);
    ready(&mut s, 0, spi);
    s.take_effects();
    // CPU_OFF inside the PPI's handler: held PPI let go, the event's interrupt disabled.
    s.interrupt(0, PPI, true);
    dispatch(&mut s, 0, 0).unwrap();
    s.reset_vcpu(0);
    assert_eq!(s.take_effects(), [Deactivate { vcpu: 0, intid: PPI }, Enable { vcpu: 0, intid: PPI, on: false }]);
    // A VM reset while a shared handler holds its SPI: let go, and nothing is bound.
    value(&mut s, 0, fid::PE_UNMASK, &[]);
    s.interrupt(0, SPI, true);
    dispatch(&mut s, 0, 1).unwrap();
    s.reset();
    assert_eq!(s.take_effects(), [Deactivate { vcpu: 0, intid: SPI }, Bound(vec![])]);
    // UNREGISTER inside the handler: let go and disabled at COMPLETE.
    let mut s = state();
    let spi = value(&mut s, 0, fid::INTERRUPT_BIND, &[u64::from(SPI)]) as u32;
    ready(&mut s, 0, spi);
    s.interrupt(0, SPI, true);
    dispatch(&mut s, 0, 2).unwrap();
    s.take_effects();
    assert_eq!(value(&mut s, 0, fid::EVENT_UNREGISTER, &[u64::from(spi)]), ret::PENDING);
    assert_eq!(s.take_effects(), []);
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    assert_eq!(s.take_effects(), [Deactivate { vcpu: 0, intid: SPI }, Enable { vcpu: 0, intid: SPI, on: false }]);
}

#[test]
fn a_resumption_is_applied_in_place_once() {
    let mut s = state();
    ready(&mut s, 0, EVENT_0);
    value(&mut s, 0, fid::EVENT_SIGNAL, &[0, MPIDRS[0]]);
    dispatch(&mut s, 0, 9).unwrap();
    assert_eq!(call(&mut s, 0, fid::EVENT_COMPLETE, &[0]), Answer::Resume);
    let mut pc = 0;
    assert!(s.resume_with(0, |back| pc = back.context.context.pc));
    assert_eq!(pc, interrupted(9).pc);
    assert!(!s.resume_with(0, |_| panic!("applied twice")), "gone once applied");
}
