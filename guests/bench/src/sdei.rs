//! One SDEI event's round trip (Arm DEN0054): EVENT_SIGNAL of event 0 to the calling
//! vCPU, the hypervisor entering the handler, the handler's EVENT_COMPLETE and the code
//! after the signal running again: two exits, what an NMI-like event costs a guest under
//! Cairn with `cairn.sdei=on`. Natively, and under Cairn without it, nothing answers SDEI.

use core::arch::asm;

use guestkit::{cpu, smccc};

use crate::figure::{Missing, Samples};

/// SDEI function IDs, SMC64 (DEN0054 §5.1).
const VERSION: u64 = 0xC400_0020;
const EVENT_REGISTER: u64 = 0xC400_0021;
const EVENT_ENABLE: u64 = 0xC400_0022;
const EVENT_COMPLETE: u64 = 0xC400_0025;
const EVENT_UNREGISTER: u64 = 0xC400_0027;
const PE_MASK: u64 = 0xC400_002B;
const PE_UNMASK: u64 = 0xC400_002C;
const EVENT_SIGNAL: u64 = 0xC400_002F;
/// The software-signalled event (§4.1.1) and SUCCESS (§5.2).
const EVENT_0: u64 = 0;
const SUCCESS: i64 = 0;
/// SDEI_VERSION's major version field, bits 62:48 (§5.1.1).
const MAJOR_SHIFT: u32 = 48;

fn call(function: u64, args: &[u64]) -> i64 {
    let mut r = [0u64; 18];
    r[0] = function;
    r[1..=args.len()].copy_from_slice(args);
    smccc::hvc(r)[0] as i64
}

/// Event 0's handler: completes at once. EVENT_COMPLETE does not return; the hypervisor
/// resumes the interrupted code.
extern "C" fn handler() -> ! {
    // SAFETY: EVENT_COMPLETE gives the context the event interrupted back; nothing here
    // runs after it.
    unsafe { asm!("hvc #0", in("x0") EVENT_COMPLETE, in("x1") 0u64, options(nostack)) };
    cpu::park()
}

/// EVENT_SIGNAL of event 0 to the vCPU with affinity `mpidr` (itself): returns once its
/// handler has completed. x1-x17 are declared clobbered, as SMCCC allows.
#[inline(always)]
fn signal(mpidr: u64) {
    // SAFETY: an SMCCC call changes at most x0-x17, all declared here; the handler the
    // signal enters completes and gives this context back whole.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") EVENT_SIGNAL => _, inlateout("x1") EVENT_0 => _, inlateout("x2") mpidr => _,
            lateout("x3") _, lateout("x4") _, lateout("x5") _, lateout("x6") _, lateout("x7") _,
            lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
            lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
            lateout("x16") _, lateout("x17") _,
            options(nostack),
        )
    };
}

/// `iterations` round trips of event 0 to this vCPU.
pub fn event_round_trip(iterations: u32) -> Result<Samples, Missing> {
    let version = call(VERSION, &[]);
    if version < 0 || (version as u64) >> MAJOR_SHIFT != 1 {
        return Err(Missing::Unavailable("no SDEI (Cairn gives it with cairn.sdei=on)"));
    }
    let entry = handler as *const () as usize as u64;
    if call(EVENT_REGISTER, &[EVENT_0, entry, 0, 0, 0]) != SUCCESS || call(EVENT_ENABLE, &[EVENT_0]) != SUCCESS {
        return Err(Missing::Unavailable("event 0 could not be registered"));
    }
    call(PE_UNMASK, &[]);
    let me = cpu::mpidr();
    let samples = crate::exits::batch(iterations, || signal(me));
    call(PE_MASK, &[]);
    call(EVENT_UNREGISTER, &[EVENT_0]);
    Ok(samples)
}
