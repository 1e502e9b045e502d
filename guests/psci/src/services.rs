//! The SMCCC services beside PSCI: the Arm Architecture calls (DEN0028 §7), TRNG
//! (DEN0098), Cairn's vendor hypervisor service (DEN0028 §6.2), and SMCCC 1.1's promise
//! that a call changes only x0-x3 (DEN0028 §2.6).

use core::fmt::Write;

use guestkit::smccc::Regs;
use guestkit::Checks;

use crate::calls::{expect_all, expect_where, preserved_x4_to_x17, regs, Code, Conduit, Text};
use crate::dt::PsciIds;
use guestkit::spec::{psci, smccc, trng};

/// ID_AA64ISAR0_EL1.RNDR [63:60]: non-zero when FEAT_RNG (RNDR/RNDRRS) is implemented.
const ID_AA64ISAR0_RNDR_SHIFT: u32 = 60;
const ID_AA64ISAR0_RNDR_MASK: u64 = 0xF;
/// A W register's worth of bits: UIDs and RND32 results live in the low 32 bits.
const W_MAX: u64 = u32::MAX as u64;
/// A partial request each of RND32 and RND64, spilling 8 bits into the middle register.
const RND32_PARTIAL_BITS: u64 = 40;
const RND64_PARTIAL_BITS: u64 = 72;
const RND32_REGISTER_BITS: u64 = 32;
const RND64_REGISTER_BITS: u64 = 64;

/// SMCCC_VERSION, SMCCC_ARCH_FEATURES and the Spectre workaround discovery.
pub fn arch(t: &mut Checks) {
    expect_all(t, "smccc-version-1.1", &[smccc::SMCCC_VERSION], smccc::VERSION_1_1 as i64, |fid, c| c.call0(fid));
    let features = |q: u32, c: Conduit| c.call3(smccc::SMCCC_ARCH_FEATURES, q.into(), 0, 0);
    expect_where(
        t,
        "smccc-arch-features-smccc-version-implemented",
        &[smccc::SMCCC_VERSION],
        |x| x as i64 >= smccc::SUCCESS,
        format_args!(">= 0"),
        features,
    );
    let unknown = smccc::FAST_CALL | smccc::UNALLOCATED_FUNCTION_NUMBER;
    expect_all(t, "smccc-arch-features-unknown-not-supported", &[unknown], smccc::NOT_SUPPORTED, features);
    // DEN0028 §7.5.2 and §7.7.2: WORKAROUND_1 and _3 are -1 (no firmware mitigation, or
    // unknown), 0 (call it) or 1 (this PE is unaffected); §7.6.2 adds -2 (not required)
    // for WORKAROUND_2. What a CPU needs is the machine's business: record it.
    let one_or_three = [smccc::NOT_SUPPORTED, smccc::SUCCESS, smccc::WORKAROUND_UNAFFECTED];
    let two = [smccc::NOT_REQUIRED, smccc::NOT_SUPPORTED, smccc::SUCCESS, smccc::WORKAROUND_UNAFFECTED];
    let workarounds: [(&str, u32, &[i64]); 3] = [
        ("1", smccc::SMCCC_ARCH_WORKAROUND_1, &one_or_three),
        ("2", smccc::SMCCC_ARCH_WORKAROUND_2, &two),
        ("3", smccc::SMCCC_ARCH_WORKAROUND_3, &one_or_three),
    ];
    for (n, fid, allowed) in workarounds {
        let hvc = features(fid, Conduit::Hvc);
        t.note(format_args!("SMCCC_ARCH_FEATURES(WORKAROUND_{n}) = {}", Code(hvc)));
        expect_where(
            t,
            format_args!("smccc-arch-features-workaround-{n}-allowed-value"),
            &[fid],
            |x| allowed.contains(&(x as i64)) && x == hvc,
            format_args!("one of {allowed:?}, the same through both conduits"),
            features,
        );
    }
}

fn feat_rng() -> bool {
    let isar0: u64;
    // SAFETY: reading an ID register has no side effects (and Cairn does not trap it:
    // HCR_EL2.TID3 is clear).
    unsafe { core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack, preserves_flags)) };
    (isar0 >> ID_AA64ISAR0_RNDR_SHIFT) & ID_AA64ISAR0_RNDR_MASK != 0
}

/// Whether every register of `r[1..=3]` holds at most `bits[i]` bits.
fn fits(r: &Regs, bits: [u64; 3]) -> bool {
    (1..=3).all(|i| bits[i - 1] >= RND64_REGISTER_BITS || r[i] >> bits[i - 1] == 0)
}

/// How many of N bits land in x1, x2, x3 (x3 gets the lowest `width`, DEN0098 §2.5/2.6).
fn spread(n: u64, width: u64) -> [u64; 3] {
    let x3 = n.min(width);
    let x2 = (n - x3).min(width);
    [n - x3 - x2, x2, x3]
}

/// TRNG (DEN0098), offered when the machine has FEAT_RNG.
pub fn trng(t: &mut Checks) {
    if !feat_rng() {
        t.note(format_args!("no FEAT_RNG (ID_AA64ISAR0_EL1.RNDR = 0): TRNG must be absent"));
        expect_all(t, "trng-version-not-supported", &[trng::TRNG_VERSION], trng::NOT_SUPPORTED, |f, c| c.call0(f));
        return;
    }
    t.note(format_args!("FEAT_RNG present (ID_AA64ISAR0_EL1.RNDR != 0): TRNG 1.0 expected"));
    expect_all(t, "trng-version-1.0", &[trng::TRNG_VERSION], trng::VERSION_1_0 as i64, |f, c| c.call0(f));
    let features = |q: u32, c: Conduit| c.call3(trng::TRNG_FEATURES, q.into(), 0, 0);
    let implemented = [trng::TRNG_RND64, trng::TRNG_RND32, trng::TRNG_GET_UUID];
    expect_all(t, "trng-features-rnd64-rnd32-get-uuid", &implemented, trng::SUCCESS, features);
    expect_all(t, "trng-features-unallocated", &[trng::TRNG_UNALLOCATED], trng::NOT_SUPPORTED, features);

    let uuid = [Conduit::Hvc, Conduit::Smc].map(|c| c.call(regs(trng::TRNG_GET_UUID, &[])));
    let words = |r: &Regs| [r[0], r[1], r[2], r[3]];
    let ok = uuid.iter().all(|r| words(r).iter().all(|&w| w <= W_MAX) && words(r) != [0; 4] && r[0] != W_MAX)
        && words(&uuid[0]) == words(&uuid[1]);
    t.check("trng-get-uuid-four-w-words", ok, format_args!("hvc {:x?}, smc {:x?}", words(&uuid[0]), words(&uuid[1])));

    let full = [Conduit::Hvc, Conduit::Smc].map(|c| c.call(regs(trng::TRNG_RND64, &[trng::RND64_MAX_BITS])));
    let bits = |r: &Regs| [r[1], r[2], r[3]];
    t.check(
        "trng-rnd64-192-bits-differ-between-calls",
        full.iter().all(|r| r[0] == trng::SUCCESS as u64) && bits(&full[0]) != bits(&full[1]),
        format_args!("hvc {:x?}, smc {:x?}", &full[0][..4], &full[1][..4]),
    );
    let mut wrong = Text::new();
    let partial: [(u32, u64, u64); 3] = [
        (trng::TRNG_RND64, RND64_PARTIAL_BITS, RND64_REGISTER_BITS),
        (trng::TRNG_RND32, RND32_PARTIAL_BITS, RND32_REGISTER_BITS),
        (trng::TRNG_RND32, trng::RND32_MAX_BITS, RND32_REGISTER_BITS),
    ];
    for (fid, n, width) in partial {
        for c in Conduit::BOTH {
            let r = c.call(regs(fid, &[n]));
            if r[0] != trng::SUCCESS as u64 || !fits(&r, spread(n, width)) {
                let _ = write!(wrong, "{fid:#x}({n}) {c}: {:x?}; ", &r[..4]);
            }
        }
    }
    t.check(
        "trng-rnd-no-bits-above-n",
        wrong.is_empty(),
        format_args!("{wrong}expected SUCCESS and N bits, from x3 up"),
    );
    expect_all(t, "trng-rnd64-193-bits-invalid", &[trng::TRNG_RND64], trng::INVALID_PARAMETERS, |f, c| {
        c.call3(f, trng::RND64_MAX_BITS + 1, 0, 0)
    });
    expect_all(t, "trng-rnd32-97-bits-invalid", &[trng::TRNG_RND32], trng::INVALID_PARAMETERS, |f, c| {
        c.call3(f, trng::RND32_MAX_BITS + 1, 0, 0)
    });
}

/// Cairn's vendor hypervisor service: a UID in w0-w3 and a revision (DEN0028 §6.2).
pub fn vendor(t: &mut Checks) {
    let uid = [Conduit::Hvc, Conduit::Smc].map(|c| c.call(regs(smccc::VENDOR_HYP_CALL_UID, &[])));
    let words = |r: &Regs| [r[0], r[1], r[2], r[3]];
    let valid =
        |r: &Regs| words(r).iter().all(|&w| w <= W_MAX) && words(r) != [0; 4] && r[0] != W_MAX && r[0] != u64::MAX;
    t.check(
        "vendor-hyp-call-uid",
        uid.iter().all(valid) && words(&uid[0]) == words(&uid[1]),
        format_args!("hvc {:x?}, smc {:x?}", words(&uid[0]), words(&uid[1])),
    );
    t.note(format_args!(
        "vendor hypervisor UID words {:#010x} {:#010x} {:#010x} {:#010x}",
        uid[0][0], uid[0][1], uid[0][2], uid[0][3]
    ));
    let revision = [Conduit::Hvc, Conduit::Smc].map(|c| c.call(regs(smccc::VENDOR_HYP_REVISION, &[])));
    t.check(
        "vendor-hyp-revision",
        revision.iter().all(|r| r[0] as i64 >= 0) && revision[0][..2] == revision[1][..2],
        format_args!("hvc {:x?}, smc {:x?}", &revision[0][..2], &revision[1][..2]),
    );
    t.note(format_args!("vendor hypervisor revision {}.{}", revision[0][0], revision[0][1]));
}

/// x4-x17 survive a PSCI call and a TRNG call, through either conduit.
pub fn preservation(t: &mut Checks, ids: &PsciIds, boot_mpidr: u64) {
    let bad_target = boot_mpidr | psci::BAD_TARGET_BITS_31_24;
    let psci_call = regs(ids.cpu_on.first(), &[bad_target, 0, 0]);
    let trng_call =
        if feat_rng() { regs(trng::TRNG_RND64, &[trng::RND64_MAX_BITS]) } else { regs(trng::TRNG_VERSION, &[]) };
    for (name, call) in [("psci-cpu-on", psci_call), ("trng", trng_call)] {
        let after = Conduit::BOTH.map(|c| c.call(call));
        t.check(
            format_args!("x4-x17-preserved-{name}"),
            after.iter().all(preserved_x4_to_x17),
            format_args!("hvc {:x?}, smc {:x?}", &after[0][4..], &after[1][4..]),
        );
    }
}
