//! Calls from Cairn to the machine's own firmware (PSCI, DEN0022; the Arm-architecture
//! SMCCC calls, DEN0028) through the conduit the device tree names. On QEMU virt with
//! virtualization=on, QEMU itself answers them. What guests see of the firmware through
//! Cairn's dispatcher is `smccc::machine`.

use core::sync::atomic::{AtomicI64, Ordering};

use super::exit::Conduit;
use crate::smccc::psci::fid;
use crate::smccc::{
    ret, version, SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2,
    SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
};

/// Makes a call to the firmware (PSCI or SMCCC) through `method`. SMCCC 1.0 lets the
/// callee clobber x0-x17, so the asm marks them all as such.
fn call(method: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    // SAFETY: a PSCI call changes no memory Cairn owns; the clobbers cover what SMCCC
    // 1.0 allows the firmware to change.
    unsafe {
        match method {
            Conduit::Smc => core::arch::asm!(
                "smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
            ),
            Conduit::Hvc => core::arch::asm!(
                "hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
            ),
        }
    }
    x0 as i64
}

/// Starts the physical CPU `mpidr` at `entry` with x0 = `context`.
pub fn cpu_on(method: Conduit, mpidr: u64, entry: u64, context: u64) -> i64 {
    call(method, fid::CPU_ON_64, mpidr, entry, context)
}

/// Powers the machine off. Returns only if the firmware refuses.
pub fn system_off(method: Conduit) {
    call(method, fid::SYSTEM_OFF, 0, 0, 0);
}

/// Resets the machine. Returns only if the firmware refuses.
pub fn system_reset(method: Conduit) {
    call(method, fid::SYSTEM_RESET, 0, 0, 0);
}

/// The firmware calls Cairn passes on, and what the firmware said of each at boot.
const ARCH_CALLS: [u32; 4] =
    [SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3, SMCCC_ARCH_SOC_ID];
static ARCH_FEATURES: [AtomicI64; ARCH_CALLS.len()] = [const { AtomicI64::new(ret::NOT_SUPPORTED) }; ARCH_CALLS.len()];
static METHOD: spin::Once<Conduit> = spin::Once::new();
/// The SMCCC version below which a call is not there to ask: ARCH_FEATURES needs 1.1,
/// SOC_ID 1.2 (DEN0028 §7.3, §7.4).
const SMCCC_1_1: i64 = version(1, 1) as i64;
const SMCCC_1_2: i64 = version(1, 2) as i64;

/// Asks the machine's firmware which Arm-architecture calls it implements, so guests get
/// the physical CPU's real answers. Firmware older than SMCCC 1.1 cannot tell: every
/// answer stays NOT_SUPPORTED ("unknown"), never "not affected".
pub fn probe(method: Conduit) -> i64 {
    METHOD.call_once(|| method);
    let has_version = call(method, fid::PSCI_FEATURES, u64::from(SMCCC_VERSION), 0, 0) >= 0;
    let smccc = if has_version { call(method, SMCCC_VERSION, 0, 0, 0) } else { ret::NOT_SUPPORTED };
    if smccc >= SMCCC_1_1 {
        for (slot, &f) in ARCH_FEATURES.iter().zip(ARCH_CALLS.iter()) {
            if f != SMCCC_ARCH_SOC_ID || smccc >= SMCCC_1_2 {
                slot.store(call(method, SMCCC_ARCH_FEATURES, u64::from(f), 0, 0), Ordering::Release);
            }
        }
    }
    smccc
}

/// The firmware's SMCCC_ARCH_FEATURES answer for `function` as [`probe`] found it:
/// NOT_SUPPORTED when the firmware could not tell, or was not asked.
pub fn arch_feature(function: u32) -> i64 {
    ARCH_CALLS
        .iter()
        .position(|&f| f == function)
        .map_or(ret::NOT_SUPPORTED, |i| ARCH_FEATURES[i].load(Ordering::Acquire))
}

/// Makes `function` with argument `arg1` in the firmware [`probe`] found: its x0, or None
/// when no firmware was probed.
pub fn forward(function: u32, arg1: u64) -> Option<i64> {
    let &method = METHOD.get()?;
    Some(call(method, function, arg1, 0, 0))
}
