//! Function IDs no service answers: each must get NOT_SUPPORTED, -1 sign-extended to all
//! of X0 (DEN0028 §7.1) — never an UNDEF, never a silent return with x0 unchanged.

use core::fmt::Write;

use guestkit::Checks;

use crate::calls::{Code, Conduit, Text};
use guestkit::spec::{smccc, trng, SDEI_VERSION};

/// SMCCC IDs whose functions exist only in the SMC32 convention (DEN0028 §7.2-7.3,
/// DEN0022 table 5-1, DEN0098 §2.1): their SMC64 twins are unknown IDs (a dispatcher
/// must decode the whole ID, not only the function number).
const SMC32_ONLY: [u32; 7] = [
    smccc::SMCCC_VERSION,
    smccc::SMCCC_ARCH_FEATURES,
    guestkit::spec::psci::PSCI_VERSION,
    guestkit::spec::psci::MIGRATE_INFO_TYPE,
    guestkit::spec::psci::PSCI_FEATURES,
    trng::TRNG_VERSION,
    trng::TRNG_GET_UUID,
];

/// IDs outside the fast-call space: the pre-SMCCC range 0x0000_0000-0x0100_FFFF
/// (DEN0028 §2.5 "existing APIs") and yielding calls (bit 31 clear) of several owners,
/// both conventions.
const NOT_FAST: [u32; 7] = [0x0000_0000, 0x0100_0000, 0x0100_FFFF, 0x0200_0000, 0x0400_0000, 0x3F00_0000, 0x4400_0000];

/// Calls each ID through both conduits; one check listing every ID that did not answer
/// -1 sign-extended.
fn expect_unknown(t: &mut Checks, name: &str, fids: impl Iterator<Item = u32>) {
    let mut wrong = Text::new();
    let mut count = 0;
    for fid in fids {
        count += 1;
        for c in Conduit::BOTH {
            let got = c.call0(fid);
            if got != smccc::NOT_SUPPORTED as u64 {
                let _ = write!(wrong, "{fid:#x} {c}: {}; ", Code(got));
            }
        }
    }
    t.check(name, wrong.is_empty(), format_args!("{wrong}expected -1 (all 64 bits) from each of {count} IDs"));
}

pub fn run(t: &mut Checks) {
    let number = smccc::UNALLOCATED_FUNCTION_NUMBER;
    let owners = smccc::OWNERS.flat_map(|owner| {
        let id = smccc::FAST_CALL | owner << smccc::OWNER_SHIFT | number;
        [id, id | smccc::CONVENTION_64]
    });
    expect_unknown(t, "unknown-function-0xfefe-of-owners-0-63-both-conventions", owners);
    expect_unknown(t, "smc64-forms-of-smc32-only-functions", SMC32_ONLY.into_iter().map(|f| f | smccc::CONVENTION_64));
    expect_unknown(t, "pre-smccc-and-yielding-ids", NOT_FAST.into_iter());
    expect_unknown(t, "unallocated-trng-and-sdei-ids", [trng::TRNG_UNALLOCATED, SDEI_VERSION].into_iter());
}
