//! Cairn's PSCI and SMCCC firmware as guests/psci checks it, for every PSCI version Cairn
//! offers (its `psci=` bootarg), with 4 vCPUs: CPU_ON/CPU_OFF/AFFINITY_INFO and racing
//! CPU_ONs, CPU_SUSPEND standby and powerdown, PSCI_FEATURES, MIGRATE*, SYSTEM_RESET2's
//! refusals, SMCCC and ARCH_FEATURES, TRNG, the vendor UID, unknown IDs of every owner,
//! all through HVC and SMC.
//!
//! From 0.2 the guest ends with SYSTEM_OFF, which must end QEMU with status 0. PSCI 0.1
//! has no SYSTEM_OFF: the guest parks after its result line and the harness kills QEMU.

mod common;

use std::time::Duration;

use common::{re, Boot, Session};

const GUEST: &str = "psci";
/// Each boot takes about a second alone; this leaves room for a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

/// A guest line that is not an ok check, a note, the start line or the pass line: a
/// failed check, an unexpected exception or IRQ, a panic.
fn is_bad_news(line: &str) -> bool {
    let Some(at) = line.find("CAIRN-TEST ") else { return false };
    let text = &line[at..];
    !(text.ends_with(": ok") || text.ends_with(" start") || text.contains(" note: ") || text.contains(" result: pass"))
}

/// Fails the session with the guest's failed checks.
fn assert_guest_passed(s: &mut Session) {
    let log = s.log();
    let bad: Vec<&str> = log.lines().filter(|l| is_bad_news(l)).collect();
    if !bad.is_empty() || !log.contains(&format!("CAIRN-TEST {GUEST} result: pass")) {
        let bad = if bad.is_empty() { "(none printed)".to_string() } else { bad.join("\n  ") };
        s.fail(&format!("the {GUEST} guest did not pass; failed checks:\n  {bad}"));
    }
}

/// Boots guest-psci under Cairn with `psci=<version>` (none: Cairn's default) and checks
/// that the guest found `expected` in its device tree and passed.
fn psci(version: Option<&str>, expected: &str, gic: u8) {
    let name = format!("psci-{}-smp4-gicv{gic}", version.unwrap_or("default"));
    let mut boot = Boot::new(&name).smp(4).gic(gic).guest(GUEST).wait_timeout(WAIT);
    if let Some(v) = version {
        boot = boot.append(&format!("psci={v}"));
    }
    let mut s = boot.spawn();
    s.wait_for(re(r"CAIRN-TEST psci result: \w+ \(\d+ passed, \d+ failed\)"));
    let found = format!("CAIRN-TEST {GUEST} note: PSCI version under test: {expected}\n");
    if !s.log().contains(&found) {
        s.fail(&format!("the guest did not find PSCI {expected} in its device tree (no line {found:?})"));
    }
    assert_guest_passed(&mut s);
    if expected == "0.1" {
        // Nothing can power a 0.1 VM off; dropping the session kills QEMU.
        return;
    }
    s.expect_exit(0);
    if !s.log().contains("vm0: system event: shutdown") {
        s.fail("QEMU exited, but not through the VM's SYSTEM_OFF");
    }
}

#[test]
fn psci_0_1_smp4_gicv3() {
    psci(Some("0.1"), "0.1", 3);
}

#[test]
fn psci_0_2_smp4_gicv3() {
    psci(Some("0.2"), "0.2", 3);
}

#[test]
fn psci_1_0_smp4_gicv3() {
    psci(Some("1.0"), "1.0", 3);
}

#[test]
fn psci_1_1_smp4_gicv3() {
    psci(Some("1.1"), "1.1", 3);
}

#[test]
fn psci_1_1_smp4_gicv2() {
    psci(Some("1.1"), "1.1", 2);
}

#[test]
fn psci_default_is_1_1() {
    psci(None, "1.1", 3);
}
