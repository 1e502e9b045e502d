//! The PSCI calls that change nothing (DEN0022 §5): PSCI_VERSION, the MIGRATE family,
//! PSCI_FEATURES, SYSTEM_RESET2 with a reset type it must refuse, and every PSCI function
//! the VM's version lacks or Cairn does not implement.

use core::fmt::Write;

use guestkit::Checks;

use crate::calls::{expect_all, Code, Conduit, Text};
use crate::dt::{PsciIds, Version};
use guestkit::spec::{psci, smccc, trng};

/// PSCI_VERSION: the version's encoding from 0.2, NOT_SUPPORTED under 0.1, which has no
/// PSCI_VERSION (DEN0022 §5.1.1; 0.1 functions are only those the device tree names).
pub fn version(t: &mut Checks, version: Version) {
    let want = if version == Version::V0_1 { psci::NOT_SUPPORTED } else { version.encode() as i64 };
    expect_all(t, format_args!("psci-version-is-{version}"), &[psci::PSCI_VERSION], want, |fid, c| c.call0(fid));
}

/// MIGRATE_INFO_TYPE says there is no trusted OS to migrate (2), so MIGRATE and
/// MIGRATE_INFO_UP_CPU have nothing to do: NOT_SUPPORTED (DEN0022 §5.8-5.10). Under 0.1
/// the device tree's MIGRATE answers the same.
pub fn migrate(t: &mut Checks, version: Version, ids: &PsciIds, boot_mpidr: u64) {
    if let Some(forms) = ids.migrate {
        expect_all(t, "migrate-not-supported", forms.all(), psci::NOT_SUPPORTED, |fid, c| {
            c.call3(fid, boot_mpidr, 0, 0)
        });
    }
    if version < Version::V0_2 {
        return;
    }
    let no_tos = psci::MIGRATE_INFO_NO_TRUSTED_OS;
    expect_all(t, "migrate-info-type-no-trusted-os", &[psci::MIGRATE_INFO_TYPE], no_tos, |fid, c| c.call0(fid));
    expect_all(
        t,
        "migrate-info-up-cpu-not-supported",
        &[psci::MIGRATE_INFO_UP_CPU_64, psci::MIGRATE_INFO_UP_CPU_32],
        psci::NOT_SUPPORTED,
        |fid, c| c.call0(fid),
    );
}

/// PSCI_FEATURES (1.0+, DEN0022 §5.15): 0 for each function Cairn implements (CPU_SUSPEND
/// included: flags 0, original power_state format, platform-coordinated only), and
/// NOT_SUPPORTED for the rest and for IDs that are not PSCI functions (SMCCC_VERSION apart,
/// §5.15.2). SYSTEM_SUSPEND is there from 1.0, SYSTEM_RESET2 from 1.1.
pub fn features(t: &mut Checks, version: Version) {
    if version < Version::V1_0 {
        return;
    }
    let reset2 = if version >= Version::V1_1 { psci::SUCCESS } else { psci::NOT_SUPPORTED };
    let table: [(&str, &[u32], i64); 17] = [
        ("psci-version", &[psci::PSCI_VERSION], psci::SUCCESS),
        ("cpu-suspend", &[psci::CPU_SUSPEND_64, psci::CPU_SUSPEND_32], psci::SUCCESS),
        ("cpu-off", &[psci::CPU_OFF], psci::SUCCESS),
        ("cpu-on", &[psci::CPU_ON_64, psci::CPU_ON_32], psci::SUCCESS),
        ("affinity-info", &[psci::AFFINITY_INFO_64, psci::AFFINITY_INFO_32], psci::SUCCESS),
        ("migrate-info-type", &[psci::MIGRATE_INFO_TYPE], psci::SUCCESS),
        ("system-off", &[psci::SYSTEM_OFF], psci::SUCCESS),
        ("system-reset", &[psci::SYSTEM_RESET], psci::SUCCESS),
        ("psci-features", &[psci::PSCI_FEATURES], psci::SUCCESS),
        ("smccc-version", &[smccc::SMCCC_VERSION], psci::SUCCESS),
        ("system-reset2", &[psci::SYSTEM_RESET2_64, psci::SYSTEM_RESET2_32], reset2),
        ("system-suspend", &[psci::SYSTEM_SUSPEND_64, psci::SYSTEM_SUSPEND_32], psci::SUCCESS),
        ("migrate", &[psci::MIGRATE_64, psci::MIGRATE_32], psci::NOT_SUPPORTED),
        ("migrate-info-up-cpu", &[psci::MIGRATE_INFO_UP_CPU_64, psci::MIGRATE_INFO_UP_CPU_32], psci::NOT_SUPPORTED),
        (
            "unimplemented-psci",
            &[psci::NODE_HW_STATE_64, psci::PSCI_SET_SUSPEND_MODE, psci::PSCI_STAT_COUNT_64],
            psci::NOT_SUPPORTED,
        ),
        ("unallocated-psci", &[psci::BASE_32 | psci::LAST_OF_RANGE], psci::NOT_SUPPORTED),
        (
            "not-psci",
            &[trng::TRNG_VERSION, smccc::SMCCC_ARCH_FEATURES, smccc::VENDOR_HYP_CALL_UID],
            psci::NOT_SUPPORTED,
        ),
    ];
    for (name, queried, want) in table {
        // Each queried ID through both conduits.
        expect_all(t, format_args!("psci-features-{name}"), queried, want, |q, c| {
            c.call3(psci::PSCI_FEATURES, q.into(), 0, 0)
        });
    }
}

/// SYSTEM_RESET2 (1.1, DEN0022 §5.17) with an architectural reset type other than
/// SYSTEM_WARM_RESET: INVALID_PARAMETERS. (A valid type would reset the VM.)
pub fn system_reset2(t: &mut Checks, version: Version) {
    if version < Version::V1_1 {
        return;
    }
    let fids = [psci::SYSTEM_RESET2_64, psci::SYSTEM_RESET2_32];
    for reset_type in [psci::RESET_TYPE_UNDEFINED_ARCHITECTURAL, psci::RESET_TYPE_LAST_ARCHITECTURAL] {
        expect_all(
            t,
            format_args!("system-reset2-type-{reset_type:#x}-invalid-parameters"),
            &fids,
            psci::INVALID_PARAMETERS,
            |fid, c| c.call3(fid, reset_type, 0, 0),
        );
    }
}

/// A PSCI call that must answer NOT_SUPPORTED, with arguments that keep it harmless
/// should Cairn implement it after all.
struct Absent {
    fid: u32,
    args: [u64; 3],
}

const fn absent(fid: u32, args: [u64; 3]) -> Absent {
    Absent { fid, args }
}

/// Every PSCI function the VM's version lacks (DEN0022 §5.1, table 5-1, "Introduced
/// in"), and those Cairn leaves out at every version, answers NOT_SUPPORTED sign-extended
/// (DEN0022 §5.2.2, DEN0028 §7.1). Arguments are chosen so that an implementation would
/// refuse them instead of acting: a CPU_ON target with reserved bits, a reset type that
/// does not exist, an entry point outside RAM.
pub fn absent_functions(t: &mut Checks, version: Version, ids: &PsciIds, boot_mpidr: u64, outside_ram: u64) {
    let bad_target = boot_mpidr | psci::BAD_TARGET_BITS_31_24;
    let reset_type = psci::RESET_TYPE_UNDEFINED_ARCHITECTURAL;
    let reserved = psci::POWER_STATE_RESERVED_BITS[0];
    let before_0_2 = [
        absent(psci::CPU_SUSPEND_64, [reserved, 0, 0]),
        absent(psci::CPU_SUSPEND_32, [reserved, 0, 0]),
        absent(psci::CPU_ON_64, [bad_target, 0, 0]),
        absent(psci::CPU_ON_32, [bad_target, 0, 0]),
        absent(psci::AFFINITY_INFO_64, [boot_mpidr, 0, 0]),
        absent(psci::AFFINITY_INFO_32, [boot_mpidr, 0, 0]),
        absent(psci::MIGRATE_64, [boot_mpidr, 0, 0]),
        absent(psci::MIGRATE_32, [boot_mpidr, 0, 0]),
        absent(psci::MIGRATE_INFO_TYPE, [0; 3]),
        absent(psci::MIGRATE_INFO_UP_CPU_64, [0; 3]),
        absent(psci::MIGRATE_INFO_UP_CPU_32, [0; 3]),
    ];
    let before_1_0 = [
        absent(psci::PSCI_FEATURES, [u64::from(psci::PSCI_VERSION), 0, 0]),
        absent(psci::SYSTEM_SUSPEND_64, [outside_ram, 0, 0]),
        absent(psci::SYSTEM_SUSPEND_32, [outside_ram, 0, 0]),
    ];
    let before_1_1 =
        [absent(psci::SYSTEM_RESET2_64, [reset_type, 0, 0]), absent(psci::SYSTEM_RESET2_32, [reset_type, 0, 0])];
    let never = [
        absent(psci::NODE_HW_STATE_64, [boot_mpidr, 0, 0]),
        absent(psci::PSCI_SET_SUSPEND_MODE, [0; 3]),
        absent(psci::PSCI_STAT_RESIDENCY_64, [boot_mpidr, 0, 0]),
        absent(psci::PSCI_STAT_COUNT_64, [boot_mpidr, 0, 0]),
        absent(psci::MEM_PROTECT_CHECK_RANGE_64, [0; 3]),
    ];
    let named_in_dt = |fid: u32| {
        version == Version::V0_1
            && (ids.cpu_on.all().contains(&fid)
                || ids.cpu_suspend.is_some_and(|f| f.all().contains(&fid))
                || ids.migrate.is_some_and(|f| f.all().contains(&fid)))
    };
    let mut calls = Text::new();
    let mut wrong = Text::new();
    let lacking =
        [(Version::V0_2, &before_0_2[..]), (Version::V1_0, &before_1_0[..]), (Version::V1_1, &before_1_1[..])];
    let groups = lacking.iter().filter(|(since, _)| version < *since).map(|(_, a)| *a).chain([&never[..]]);
    for a in groups.flatten().filter(|a| !named_in_dt(a.fid)) {
        let _ = write!(calls, "{:#x} ", a.fid);
        for c in Conduit::BOTH {
            let got = c.call3(a.fid, a.args[0], a.args[1], a.args[2]);
            if got != u64::MAX {
                let _ = write!(wrong, "{:#x} {c}: {}; ", a.fid, Code(got));
            }
        }
    }
    t.check(
        format_args!("psci-functions-absent-in-{version}-not-supported"),
        wrong.is_empty(),
        format_args!("{wrong}expected -1 (sign-extended) from each of {calls}"),
    );
    let unallocated =
        (psci::FIRST_UNALLOCATED..=psci::LAST_OF_RANGE).flat_map(|n| [psci::BASE_32 | n, psci::BASE_64 | n]);
    let mut wrong = Text::new();
    for fid in unallocated {
        for c in Conduit::BOTH {
            let got = c.call0(fid);
            if got != u64::MAX {
                let _ = write!(wrong, "{fid:#x} {c}: {}; ", Code(got));
            }
        }
    }
    t.check(
        "psci-unallocated-function-numbers-not-supported",
        wrong.is_empty(),
        format_args!("{wrong}expected -1 for PSCI function numbers {:#x}-{:#x}", psci::FIRST_UNALLOCATED, {
            psci::LAST_OF_RANGE
        }),
    );
}

/// SYSTEM_SUSPEND (1.0+, DEN0022 §5.19.2): an entry point outside RAM is INVALID_ADDRESS,
/// so the call returns without suspending anything. (DENIED while other vCPUs are on is
/// covered by Cairn's unit tests.)
pub fn system_suspend(t: &mut Checks, version: Version, outside_ram: u64) {
    if version < Version::V1_0 {
        return;
    }
    let forms = [psci::SYSTEM_SUSPEND_64, psci::SYSTEM_SUSPEND_32];
    expect_all(t, "system-suspend-entry-outside-ram", &forms, psci::INVALID_ADDRESS, |fid, c| {
        c.call3(fid, outside_ram, 0, 0)
    });
}
