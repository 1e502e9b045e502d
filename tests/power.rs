//! Cairn's vCPU power-state guarantees as guests/power checks them (DEN0022;
//! guest-firmware-interfaces.md §4, §5 and §8):
//! - `suspend`: CPU_SUSPEND standby with IRQs masked wakes on the virtual timer and leaves
//!   the interrupt pending; powerdown resumes at the entry with the context id, in the
//!   state CPU_ON gives, and the core counts as ON meanwhile;
//! - `events`: SYSTEM_RESET2 with undefined architectural types answers
//!   INVALID_PARAMETERS and does not reset; SYSTEM_RESET, SYSTEM_RESET2 warm (type 0) and
//!   SYSTEM_RESET2 vendor (type 0x8000_0000, made by the last vCPU while vCPU 0 counts)
//!   each restart the VM, and no vCPU that was counting runs once the call is handled;
//!   SYSTEM_OFF with every other vCPU counting ends QEMU with status 0;
//! - `race`: CPU_ON racing a vCPU that turns itself off (one run per SUCCESS, CPU_OFF
//!   never returns, AFFINITY_INFO OFF after each round);
//! - `storm`: SYSTEM_RESET while one vCPU keeps calling CPU_ON on another.
//!
//! The guest checks each reset at the next boot; from the outside, these tests check
//! that Cairn reported each system event exactly once, in order, and that after each
//! report nothing but Cairn's own lines reached the serial console until the next boot
//! started (or QEMU exited): one counting vCPU prints a tick line per iteration once the
//! call is requested, so a vCPU still running after the event would show. Serial logs:
//! target/test-logs/power-*.log.

mod common;

use std::time::Duration;

use common::{re, Boot, Session};

const GUEST: &str = "power";
/// Each boot takes a second or two alone; this leaves room for a loaded machine. A vCPU
/// that keeps running after an event is reported by the guest itself within seconds.
const WAIT: Duration = Duration::from_secs(90);
/// What Cairn logs for each system event; the caller and the event follow.
const EVENT: &str = "vm0: system event: ";
/// The first line of each boot of the guest.
const BOOT_START: &str = "CAIRN-TEST power start: boot ";
/// What the guest's ticking vCPU prints once a system event's call is requested.
const TICK: &str = "POWER-TICK";
/// Cairn's own lines start with this.
const CAIRN_LINE: &str = "cairn[";
/// SYSTEM_RESET2's vendor cookie in guests/power/src/events.rs.
const VENDOR_COOKIE: &str = "0xc0ffee00";
/// Resets of the storm part (guests/power/src/events.rs).
const STORM_RESETS: usize = 16;

/// A guest line that is not an ok check, a note, a start line or the pass line: a
/// failed check, an unexpected exception or IRQ, a panic.
fn is_bad_news(line: &str) -> bool {
    let Some(at) = line.find("CAIRN-TEST ") else { return false };
    let text = &line[at..];
    !(text.ends_with(": ok")
        || text.starts_with(BOOT_START)
        || text.contains(" note: ")
        || text.contains(" result: pass"))
}

/// Boots guest-power under Cairn with `parts` and waits for its verdict (or the first
/// failed check, so a vCPU that never stops fails the test at once).
fn boot(name: &str, smp: usize, gic: u8, parts: &str) -> Session {
    let mut s = Boot::new(&format!("power-{name}-smp{smp}-gicv{gic}"))
        .smp(smp)
        .gic(gic)
        .guest(GUEST)
        .bootargs(parts)
        .wait_timeout(WAIT)
        .spawn();
    s.wait_for(re(r"CAIRN-TEST power (result: \w+ \(\d+ passed, \d+ failed\)|check \S+: FAIL)"));
    s
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

/// Checks what the serial log shows of the system events, once QEMU has exited: Cairn
/// reported exactly `expected` (the text after "system event: "), in order; the ticker was
/// live before each; and after each report only Cairn's lines follow until the next boot
/// starts or the log ends.
fn assert_events(s: &mut Session, expected: &[String]) {
    let log = s.log();
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    let mut from = 0;
    for (n, at) in log.match_indices(EVENT).map(|(at, _)| at).enumerate() {
        let line_end = log[at..].find('\n').map_or(log.len(), |e| at + e);
        seen.push(log[at + EVENT.len()..line_end].to_string());
        // The ticker's lines since the previous event (or the start).
        if !log[from..at].contains(TICK) {
            problems.push(format!("event {n}: no tick line before it: the ticking vCPU never ran"));
        }
        let rest = log.get(line_end + 1..).unwrap_or("");
        let until = rest.find(BOOT_START).unwrap_or(rest.len());
        let stray: Vec<&str> = rest[..until].lines().filter(|l| !l.is_empty() && !l.starts_with(CAIRN_LINE)).collect();
        if !stray.is_empty() {
            problems.push(format!(
                "event {n} ({}): guest output after Cairn reported it:\n    {}",
                seen[n],
                stray.join("\n    ")
            ));
        }
        from = line_end;
    }
    if seen != expected {
        problems.push(format!("Cairn reported the events\n    {}\n  expected\n    {}", seen.join("\n    "), {
            expected.join("\n    ")
        }));
    }
    if !problems.is_empty() {
        s.fail(&format!("system events in the serial log:\n  {}", problems.join("\n  ")));
    }
}

/// The events of the `events` part at `smp` vCPUs, then the final SYSTEM_OFF.
fn events_part(smp: usize) -> Vec<String> {
    let last = smp - 1;
    vec![
        "reset (PSCI SYSTEM_RESET) from vcpu0".into(),
        "reset2 (PSCI SYSTEM_RESET2 type 0x0 cookie 0x0) from vcpu0".into(),
        format!("reset2 (PSCI SYSTEM_RESET2 type 0x80000000 cookie {VENDOR_COOKIE}) from vcpu{last}"),
        shutdown(),
    ]
}

fn shutdown() -> String {
    "shutdown (PSCI SYSTEM_OFF) from vcpu0".into()
}

/// Boots with `parts`, checks the verdict, QEMU's exit and the events.
fn power(name: &str, smp: usize, gic: u8, parts: &str, events: &[String]) {
    let mut s = boot(name, smp, gic, parts);
    assert_guest_passed(&mut s);
    s.expect_exit(0);
    assert_events(&mut s, events);
}

#[test]
fn power_suspend_and_system_events_smp4_gicv3() {
    power("events", 4, 3, "parts=suspend,events", &events_part(4));
}

#[test]
fn power_suspend_and_system_events_smp2_gicv2() {
    power("events", 2, 2, "parts=suspend,events", &events_part(2));
}

/// CPU_ON racing the target's own CPU_OFF. The window is narrow: it shows when the host
/// preempts the target's thread inside it, so 8 vCPUs, 6 of them spinning as host load, run
/// 500 rounds (about 12 s). Before CPU_OFF left unconditionally through idle, this showed
/// "CPU_OFF returned N times (x0 0x84000002)" and "cpu1 ran n-1 times for n SUCCESSes".
#[test]
fn power_cpu_on_off_race_smp8_gicv3() {
    power("race", 8, 3, "parts=race race-rounds=500 race-load=6", &[shutdown()]);
}

/// Before Cairn's f0afb4e ("no vCPU can be started once an event has begun") this failed
/// in most runs: vCPU 1, restarted by vCPU 2's CPU_ON after the event had stopped it,
/// either kept counting while Cairn waited for it in `stop_others` forever, or ran the old
/// code into the rebooted VM.
#[test]
fn power_reset_during_cpu_on_storm_smp4_gicv3() {
    let mut events = vec!["reset (PSCI SYSTEM_RESET) from vcpu0".to_string(); STORM_RESETS];
    events.push(shutdown());
    power("storm", 4, 3, "parts=storm", &events);
}

/// A guest fault Cairn cannot hand back (the guest's own exception vector is outside its
/// memory) stops the VM with one crash event naming the cause, instead of looping through
/// the same fault forever; with no VM left the machine powers off.
#[test]
fn power_guest_crash_is_a_system_event_smp2_gicv3() {
    let mut s = Boot::new("power-crash-smp2-gicv3").smp(2).gic(3).guest(GUEST).bootargs("parts=crash").spawn();
    s.wait_for(re(r"CAIRN-TEST power note: crashing on purpose"));
    s.expect_exit(0);
    let log = s.log();
    let crash = "vm0: system event: crash (exception vector at VBAR_EL1 0x2000000000 is outside guest memory, \
                 PC 0x2000000200) from vcpu0";
    if !log.contains(crash) {
        s.fail(&format!("expected Cairn to report\n  {crash}"));
    }
    assert_eq!(log.matches(EVENT).count(), 1, "exactly one system event{}", s.context());
}

/// Every exit of the power guest's suspend part and of its events part saves the whole
/// vCPU, scrambles the hardware and restores it (Cairn's `selftest=save-restore`); each
/// wait round-trips the MP state, and a suspended vCPU must stay suspended through it.
/// The guest sees nothing of it: every check passes, every event happens as without it.
#[test]
fn power_save_restore_round_trips_are_invisible_smp4_gicv3() {
    let mut s = Boot::new("power-save-restore-smp4-gicv3")
        .smp(4)
        .gic(3)
        .guest(GUEST)
        .append("selftest=save-restore")
        .bootargs("parts=race,suspend,events race-rounds=50")
        .wait_timeout(WAIT)
        .spawn();
    s.wait_for(re(r"CAIRN-TEST power (result: \w+ \(\d+ passed, \d+ failed\)|check \S+: FAIL)"));
    assert_guest_passed(&mut s);
    s.expect_exit(0);
    assert_events(&mut s, &events_part(4));
    let log = s.log();
    for complaint in ["did not parse back", "restore refused", "came back as"] {
        assert!(!log.contains(complaint), "Cairn's self-test complained: {complaint}{}", s.context());
    }
}
