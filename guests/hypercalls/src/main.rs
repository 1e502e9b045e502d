//! Test guest: Cairn's SMCCC dispatcher as a guest sees it, through HVC and SMC.
//! Checks PSCI_VERSION, SMCCC_VERSION, NOT_SUPPORTED for unknown IDs, the conduit rules
//! (SMC immediates, HVC immediates, W0-only function IDs), SMCCC 1.1 register
//! preservation. Ends with PSCI SYSTEM_OFF, which must end the whole machine. (Accesses
//! outside guest memory are the `hostile` guest's.)
#![no_std]
#![no_main]

use guestkit::smccc::{self, Regs};
use guestkit::{guest_main, Checks};

const PSCI_VERSION: u64 = 0x8400_0000;
const SMCCC_VERSION: u64 = 0x8000_0000;
const VERSION_1_1: u64 = 0x1_0001;
const NOT_SUPPORTED: u64 = -1i64 as u64;
/// IDs no service of Cairn's owns: OEM, SiP (SMC64), a reserved owner, a yielding call,
/// the standard-secure range past PSCI, a trusted-OS call.
const UNKNOWN_IDS: [u64; 6] = [0x8300_0000, 0xC200_1234, 0x8800_0001, 0x0400_0000, 0x8400_00FF, 0xBF00_0000];

fn call_regs(x0: u64) -> Regs {
    let mut r = [0u64; 18];
    r[0] = x0;
    for (i, reg) in r.iter_mut().enumerate().skip(4) {
        *reg = 0xC0DE_0000_0000_0000 | i as u64;
    }
    r
}

fn preserved_x4_to_x17(before: &Regs, after: &Regs) -> bool {
    before[4..] == after[4..]
}

fn run(_dtb: usize) {
    let mut t = Checks::new("hypercalls");

    t.check_eq("psci-version-hvc", smccc::hvc0(PSCI_VERSION, 0, 0, 0), VERSION_1_1);
    // A trapped SMC must come back past the instruction, or this would loop forever.
    t.check_eq("psci-version-smc", smccc::smc0(PSCI_VERSION, 0, 0, 0), VERSION_1_1);
    t.check_eq("smccc-version-hvc", smccc::hvc0(SMCCC_VERSION, 0, 0, 0), VERSION_1_1);
    t.check_eq("smccc-version-smc", smccc::smc0(SMCCC_VERSION, 0, 0, 0), VERSION_1_1);

    for id in UNKNOWN_IDS {
        let hvc = smccc::hvc0(id, 0, 0, 0);
        let smc = smccc::smc0(id, 0, 0, 0);
        t.check(
            format_args!("unknown-id-{id:#x}-not-supported"),
            hvc == NOT_SUPPORTED && smc == NOT_SUPPORTED,
            format_args!("id {id:#x}: hvc {hvc:#x}, smc {smc:#x}"),
        );
    }

    t.check_eq("function-id-is-w0-only", smccc::hvc0(0xFFFF_FFFF_0000_0000 | PSCI_VERSION, 0, 0, 0), VERSION_1_1);
    t.check_eq("smc-nonzero-immediate-refused", smccc::smc_imm_1(call_regs(PSCI_VERSION))[0], NOT_SUPPORTED);
    t.check_eq("hvc-immediate-ignored", smccc::hvc_imm_1234(call_regs(PSCI_VERSION))[0], VERSION_1_1);

    for (name, x0) in [("x4-x17-preserved-known-call", PSCI_VERSION), ("x4-x17-preserved-unknown-call", 0x8300_0000)] {
        let before = call_regs(x0);
        let after_hvc = smccc::hvc(before);
        let after_smc = smccc::smc(before);
        t.check(
            name,
            preserved_x4_to_x17(&before, &after_hvc) && preserved_x4_to_x17(&before, &after_smc),
            format_args!("hvc {:x?} smc {:x?}", &after_hvc[4..], &after_smc[4..]),
        );
    }

    t.finish();
    smccc::system_off();
}

guest_main!(run);
