//! CI verdicts (README, "CI verdicts"): with Cairn's `exit=semihosting` and QEMU's
//! semihosting on, QEMU's exit status tells how the VM ended, through guests/verdict (one
//! scenario per boot, `scenario=` in its bootargs): 0 for SYSTEM_OFF, the guest's own
//! EXIT_STATUS (5), nothing recorded for 64 (answered INVALID_PARAMETERS), 64 for a crash,
//! 66 for a spin past `cairn.timeout`, 65 for a reset with `cairn.on-reset=fail` and 0 with
//! `stop`, 70 when Cairn itself fails. Without the bootarg, or without semihosting in QEMU,
//! QEMU ends with 0 as it always has (with a warning line in the second case). Debian's
//! Linux with `panic=-1` and `cairn.on-reset=fail`, crashed through /proc/sysrq-trigger,
//! gives 65 and is not restarted. Serial logs: target/test-logs/verdict-*.log.

mod common;

use std::time::Duration;

use common::linux::{marker, wait_for_linux};
use common::{Boot, Run};

const GUEST: &str = "verdict";
/// QEMU's semihosting, answered on the host (what a CI job adds).
const SEMIHOSTING: [&str; 2] = ["-semihosting-config", "enable=on,target=native"];
/// Cairn's bootarg for the exit status.
const EXIT_ARG: &str = "exit=semihosting";
/// The line Cairn prints just before a semihosting exit starts with this.
const EXIT_LINE: &str = "cairn: exit ";
/// Cairn's warnings at boot: semihosting on (the price), or asked for but missing.
const PRICE_WARNING: &str = "every guest can reach QEMU's semihosting too";
const MISSING_WARNING: &str =
    "exit=semihosting: QEMU has no semihosting, so its exit status stays 0: add -semihosting-config enable=on,target=native";
/// Today's end of the machine, without a status.
const POWER_OFF_LINE: &str = "no VM left: powering the machine off";
/// The timeout the spinning guest gets, and how late past it the machine may end on a
/// loaded host (boot included).
const TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT_SLACK: Duration = Duration::from_secs(15);

/// Runs guests/verdict's `scenario` (with extra guest words) under Cairn's `append`,
/// with QEMU's semihosting when `semihosting`.
fn run(name: &str, scenario: &str, words: &str, append: &str, semihosting: bool) -> Run {
    let mut boot = Boot::new(&format!("verdict-{name}"))
        .smp(2)
        .gic(3)
        .guest(GUEST)
        .append(append)
        .bootargs(&format!("scenario={scenario} {words}"));
    if semihosting {
        boot = boot.qemu_args(&SEMIHOSTING);
    }
    let run = boot.run();
    assert!(!run.timed_out, "QEMU did not exit (serial log: {})", run.where_to_look());
    run
}

/// With semihosting and `exit=semihosting`: asserts QEMU's status and Cairn's exit line.
fn verdict(name: &str, scenario: &str, words: &str, status: i32, line: &str) -> Run {
    let run = run(name, scenario, words, EXIT_ARG, true);
    run.assert_contains(PRICE_WARNING);
    run.assert_contains(&format!("{EXIT_LINE}{status}: vm0 {line}"));
    assert_eq!(run.status, Some(status), "QEMU's exit status (serial log: {})", run.where_to_look());
    run
}

#[test]
fn verdict_power_off_gives_0() {
    verdict("off", "off", "", 0, "powered off: shutdown (PSCI SYSTEM_OFF)");
}

#[test]
fn verdict_exit_status_5_then_power_off_gives_5() {
    let run = verdict("status5", "status5", "", 5, "powered off (its EXIT_STATUS): shutdown");
    run.assert_contains("EXIT_STATUS(5) answered 0");
}

#[test]
fn verdict_exit_status_64_is_refused_and_the_end_is_0() {
    let run = verdict("status64", "status64", "", 0, "powered off: shutdown");
    run.assert_contains("EXIT_STATUS(64) answered -2: ok");
}

#[test]
fn verdict_crash_gives_64() {
    verdict(
        "crash",
        "crash",
        "",
        64,
        "crashed: crash (exception vector at VBAR_EL1 0x2000000000 is outside guest memory",
    );
}

/// The guest spins with its interrupts masked: only Cairn's own timer can end its run.
#[test]
fn verdict_spin_past_the_timeout_gives_66_soon_after_it() {
    let run = verdict("timeout", "spin", "cairn.timeout=5s", 66, "ran past its cairn.timeout");
    run.assert_contains("vm0: system event: timeout (ran past cairn.timeout=5s)");
    assert!(run.elapsed >= TIMEOUT, "ended after {:?}, before the timeout", run.elapsed);
    assert!(run.elapsed < TIMEOUT + TIMEOUT_SLACK, "ended {:?} after the start", run.elapsed);
}

/// The guest waits in WFI with its interrupts masked: Cairn waits for it, and its timer
/// must end that wait too.
#[test]
fn verdict_idle_past_the_timeout_gives_66() {
    let run = verdict("timeout-idle", "idle", "cairn.timeout=5s", 66, "ran past its cairn.timeout");
    assert!(run.elapsed >= TIMEOUT, "ended after {:?}, before the timeout", run.elapsed);
    assert!(run.elapsed < TIMEOUT + TIMEOUT_SLACK, "ended {:?} after the start", run.elapsed);
}

/// The boot vCPU, whose CPU has Cairn's timer, is off; the other spins masked.
#[test]
fn verdict_spin_past_the_timeout_with_the_boot_vcpu_off_gives_66() {
    let run = verdict("timeout-boot-off", "spin-off", "cairn.timeout=5s", 66, "ran past its cairn.timeout");
    // (The two CPUs' lines may interleave: only the absence of a failure is checked.)
    run.assert_lacks(": FAIL");
    assert!(run.elapsed < TIMEOUT + TIMEOUT_SLACK, "ended {:?} after the start", run.elapsed);
}

#[test]
fn verdict_reset_with_on_reset_fail_gives_65_without_a_restart() {
    let run = verdict("reset-fail", "reset", "cairn.on-reset=fail", 65, "reset with cairn.on-reset=fail");
    assert_eq!(run.count("CAIRN-TEST verdict start"), 1, "the VM was restarted (serial log: {})", run.where_to_look());
    // Cairn's words are its own: the guest never sees them.
    run.assert_contains("CAIRN-TEST verdict bootargs: \"scenario=reset\"");
}

#[test]
fn verdict_reset_with_on_reset_stop_gives_0_after_one_reset() {
    let run = verdict("reset-stop", "reset", "cairn.on-reset=stop", 0, "reset with cairn.on-reset=stop");
    assert_eq!(run.count("vm0: system event: reset"), 1, "one reset (serial log: {})", run.where_to_look());
    assert_eq!(run.count("CAIRN-TEST verdict start"), 1, "the VM was restarted (serial log: {})", run.where_to_look());
}

#[test]
fn verdict_cairn_failing_at_el2_gives_70() {
    let run = run("el2-fault", "off", "", &format!("{EXIT_ARG} selftest=el2-fault"), true);
    run.assert_contains("FATAL: synchronous exception at EL2");
    run.assert_contains("cairn: exit 70: Cairn failed: an exception at EL2");
    assert_eq!(run.status, Some(70), "QEMU's exit status (serial log: {})", run.where_to_look());
}

/// On QEMU's raspi4b the guest comes in a bundle whose vm.conf gives the VM's settings
/// (`on-reset=`, `timeout=`), as on the Pi.
fn raspi4b(name: &str, scenario: &str, vm_conf: &[&str]) -> Run {
    let run = Boot::new(&format!("verdict-rpi4-{name}"))
        .raspi4b()
        .guest(GUEST)
        .append(EXIT_ARG)
        .bootargs(&format!("scenario={scenario}"))
        .bundle_args(vm_conf)
        .qemu_args(&SEMIHOSTING)
        .run();
    assert!(!run.timed_out, "QEMU did not exit (serial log: {})", run.where_to_look());
    run
}

#[test]
fn verdict_rpi4_vm_conf_on_reset_fail_gives_65() {
    let run = raspi4b("reset-fail", "reset", &["--on-reset", "fail"]);
    run.assert_contains("cairn: exit 65: vm0 reset with cairn.on-reset=fail");
    assert_eq!(run.status, Some(65), "QEMU's exit status (serial log: {})", run.where_to_look());
}

#[test]
fn verdict_rpi4_vm_conf_timeout_gives_66() {
    let run = raspi4b("timeout", "spin", &["--timeout", "5s"]);
    run.assert_contains("cairn: exit 66: vm0 ran past its cairn.timeout");
    assert_eq!(run.status, Some(66), "QEMU's exit status (serial log: {})", run.where_to_look());
}

/// An internal error (no guest to run) is Cairn's failure too.
#[test]
fn verdict_no_guest_to_run_gives_70() {
    let run = Boot::new("verdict-no-guest").append(EXIT_ARG).qemu_args(&SEMIHOSTING).run();
    assert!(!run.timed_out, "QEMU did not exit (serial log: {})", run.where_to_look());
    run.assert_contains("no guest to run");
    run.assert_contains("cairn: exit 70: Cairn failed: no guest to run");
    assert_eq!(run.status, Some(70), "QEMU's exit status (serial log: {})", run.where_to_look());
}

/// Without `exit=semihosting`, semihosting in QEMU changes nothing: every end is 0 and
/// the machine powers off as it always has.
#[test]
fn verdict_without_the_bootarg_every_end_is_0_as_today() {
    for (name, scenario) in [("plain-status5", "status5"), ("plain-crash", "crash")] {
        let run = run(name, scenario, "", "", true);
        run.assert_lacks(EXIT_LINE);
        run.assert_lacks("exit=semihosting");
        run.assert_contains(POWER_OFF_LINE);
        run.assert_clean_exit();
    }
}

/// `exit=semihosting` without semihosting in QEMU: one warning line naming the option to
/// add, no fault while finding out, and today's power-off.
#[test]
fn verdict_bootarg_without_semihosting_warns_and_powers_off_as_today() {
    for (name, scenario) in [("nosemi-status5", "status5"), ("nosemi-crash", "crash")] {
        let run = run(name, scenario, "", EXIT_ARG, false);
        assert_eq!(run.count(MISSING_WARNING), 1, "one warning line (serial log: {})", run.where_to_look());
        run.assert_lacks("FATAL");
        run.assert_lacks(EXIT_LINE);
        run.assert_contains(POWER_OFF_LINE);
        run.assert_clean_exit();
    }
}

/// The usual CI setting: a kernel panic reboots (`panic=-1`), and `cairn.on-reset=fail`
/// turns that reset into status 65 instead of a boot loop.
#[test]
fn verdict_linux_panic_with_on_reset_fail_gives_65_and_no_restart() {
    let mut s = Boot::new("verdict-linux-sysrq-crash")
        .linux()
        .smp(2)
        .gic(3)
        .append(EXIT_ARG)
        .bootargs("panic=-1 cairn.on-reset=fail")
        .qemu_args(&SEMIHOSTING)
        .spawn();
    wait_for_linux(&mut s);
    s.send_line("echo c > /proc/sysrq-trigger");
    s.expect_exit(65);
    let log = s.log();
    assert!(log.contains("cairn: exit 65: vm0 reset with cairn.on-reset=fail"), "the exit line{}", s.context());
    let cmdline = log.lines().find(|l| l.contains("Kernel command line:")).unwrap_or("");
    assert!(cmdline.contains("panic=-1") && !cmdline.contains("cairn."), "the guest sees {cmdline:?}{}", s.context());
    assert_eq!(marker().matching_lines(&log).len(), 1, "Linux came up once, not again after the panic{}", s.context());
}
