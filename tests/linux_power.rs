//! Linux's use of Cairn's vCPU power states (guest-firmware-interfaces.md §4, §5, §8):
//! - CPU hotplug: every secondary vCPU is taken offline (PSCI CPU_OFF, then Linux polls
//!   AFFINITY_INFO until OFF before it calls the CPU dead) and back online (CPU_ON) 50
//!   times at 4 vCPUs on GICv3, all in one shell loop in the guest; every CPU is online
//!   at the end, each offline was confirmed by AFFINITY_INFO and each online booted the
//!   CPU, dmesg has no WARNING, BUG or Oops, and `poweroff -f` still ends QEMU with 0.
//! - cpuidle: the guest's cpuidle driver (psci_idle) picks up the powerdown idle state
//!   Cairn describes in the device tree, and every CPU has entered it (CPU_SUSPEND
//!   powerdown, resumed at Linux's entry point) before and after the hotplug rounds.
//! - Reboots: `reboot -f` three times in a row, the guest coming back on every vCPU each
//!   time, then `poweroff -f`; Cairn reports three resets and one shutdown, each between
//!   the right boots.
//!
//! `CAIRN_ARGS="loglevel=debug"` passes bootargs to Cairn. Serial logs:
//! target/test-logs/linux-power-*.log.

mod common;

use common::linux::{block, marker, wait_for_linux, Checks};
use common::{re, Boot, Session};

/// The first kernel lines even if the boot stops before the console driver is up (QEMU
/// virt's PL011).
const EARLYCON: &str = "earlycon=pl011,0x9000000";
const CPUS: usize = 4;
/// Offline/online cycles of every secondary CPU.
const HOTPLUG_ROUNDS: usize = 50;
/// Reboots in a row.
const REBOOTS: usize = 3;
/// What Cairn logs for each system event.
const EVENT: &str = "vm0: system event: ";
/// What the hotplug loop prints when it is done; every failure it prints before starts
/// with HOTPLUG_FAIL.
const HOTPLUG_DONE: &str = "hotplug-loop-done";
const HOTPLUG_FAIL: &str = "hotplug-fail";
/// What Linux prints for each CPU taken down once AFFINITY_INFO said OFF
/// (drivers/firmware/psci/psci.c via arch/arm64/kernel/psci.c, cpu_psci_cpu_kill).
const KILLED: &str = r"psci: CPU\d+ killed \(polled \d+ ms\)";
/// What Linux prints for each CPU it brings up (arch/arm64/kernel/smp.c).
const BOOTED: &str = r"CPU\d+: Booted secondary processor";
/// What Linux prints when AFFINITY_INFO never said OFF, or a CPU did not come up.
const HOTPLUG_TROUBLE: [&str; 3] = ["may not have shut down cleanly", "failed to come online", "failed to boot"];
const COMPLAINTS: [&str; 3] = ["WARNING:", "BUG:", "Oops"];
/// The kernel's first message (arch/arm64/kernel/setup.c).
const FIRST_LINE: &str = "Booting Linux on physical CPU";

/// Linux at `CPUS` vCPUs on GICv3 under Cairn.
fn linux(test: &str) -> Boot {
    let boot = Boot::new(&format!("linux-power-{test}-smp{CPUS}-gicv3")).linux().smp(CPUS).gic(3).bootargs(EARLYCON);
    match std::env::var("CAIRN_ARGS") {
        Ok(args) if !args.is_empty() => boot.append(&args),
        _ => boot,
    }
}

/// The shell loop: per round, every secondary offline, then every one back online, with
/// /sys/devices/system/cpu/online checked after each half. One command, so 50 rounds cost
/// one round trip through the console.
fn hotplug_loop() -> String {
    let last = CPUS - 1;
    let all = format!("0-{last}");
    format!(
        "cd /sys/devices/system/cpu; for i in $(seq 1 {HOTPLUG_ROUNDS}); do \
         for c in $(seq 1 {last}); do echo 0 > cpu$c/online || echo {HOTPLUG_FAIL}-off-round$i-cpu$c; done; \
         [ \"$(cat online)\" = 0 ] || echo {HOTPLUG_FAIL}-round$i-online-$(cat online)-after-offlining; \
         for c in $(seq 1 {last}); do echo 1 > cpu$c/online || echo {HOTPLUG_FAIL}-on-round$i-cpu$c; done; \
         [ \"$(cat online)\" = {all} ] || echo {HOTPLUG_FAIL}-round$i-online-$(cat online)-after-onlining; \
         done; cd /; echo {HOTPLUG_DONE}"
    )
}

#[test]
fn linux_hotplugs_every_secondary_50_times() {
    let mut s = linux("hotplug").spawn();
    let mut c = Checks::new();
    let cpus = wait_for_linux(&mut s);
    c.check(&format!("the marker line reports {CPUS} CPUs"), cpus == CPUS, || format!("    it says {cpus}"));

    check_cpuidle(&mut s, &mut c, "after boot");

    let out = s.sh(&hotplug_loop());
    let failures: Vec<&str> = out.lines().filter(|l| l.contains(HOTPLUG_FAIL)).collect();
    c.check("the loop ran to the end", out.contains(HOTPLUG_DONE), || format!("    its output:\n{}", block(&out)));
    c.check("every offline and online succeeded, with /sys/.../online right each time", failures.is_empty(), || {
        format!("    failures:\n{}", block(&failures.join("\n")))
    });

    let online = s.sh_value("cat /sys/devices/system/cpu/online");
    let all = format!("0-{}", CPUS - 1);
    c.check(&format!("CPUs {all} online at the end"), online.trim() == all, || format!("    online: {online:?}"));
    let nproc = s.sh_value("nproc");
    c.check(&format!("nproc says {CPUS}"), nproc.trim() == CPUS.to_string(), || format!("    nproc: {nproc:?}"));

    check_cpuidle(&mut s, &mut c, "after the hotplug rounds");

    let dmesg = s.sh("dmesg");
    c.check("dmesg still holds the boot (the counts below cover the whole run)", dmesg.contains(FIRST_LINE), || {
        format!("    no {FIRST_LINE:?} in dmesg: the log buffer wrapped")
    });
    let secondaries = CPUS - 1;
    let toggles = HOTPLUG_ROUNDS * secondaries;
    let killed = re(KILLED).matching_lines(&dmesg).len();
    c.check(&format!("Linux saw AFFINITY_INFO OFF for all {toggles} offlines"), killed == toggles, || {
        format!("    {killed} lines matching {KILLED:?}")
    });
    let booted = re(BOOTED).matching_lines(&dmesg).len();
    let boots = secondaries + toggles;
    c.check(&format!("Linux booted a secondary {boots} times (at boot and per online)"), booted == boots, || {
        format!("    {booted} lines matching {BOOTED:?}")
    });
    let trouble: Vec<&str> =
        dmesg.lines().filter(|l| HOTPLUG_TROUBLE.iter().chain(&COMPLAINTS).any(|p| l.contains(p))).collect();
    c.check("dmesg has no hotplug trouble, WARNING, BUG or Oops", trouble.is_empty(), || {
        format!("    offending lines:\n{}", block(&trouble.join("\n")))
    });

    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("`poweroff -f` ends QEMU with status 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

/// The name of Cairn's idle state in the guest device tree (src/guest_dt.rs): cpuidle's
/// state1 on every CPU (state0 is WFI).
const IDLE_STATE: &str = "cpu-powerdown";

/// Every CPU's cpuidle state1 is Cairn's powerdown state and has been entered (its usage
/// count is above zero) after a second of idling.
fn check_cpuidle(s: &mut Session, c: &mut Checks, when: &str) {
    let out = s.sh("sleep 1; for d in /sys/devices/system/cpu/cpu[0-9]*; do \
         echo idle ${d##*/} $(cat $d/cpuidle/state1/name) $(cat $d/cpuidle/state1/usage); done");
    let rows: Vec<Vec<&str>> =
        out.lines().filter(|l| l.starts_with("idle ")).map(|l| l.split_whitespace().collect()).collect();
    let entered = |r: &Vec<&str>| r.len() == 4 && r[2] == IDLE_STATE && r[3].parse::<u64>().is_ok_and(|n| n > 0);
    c.check(
        &format!("{when}: all {CPUS} CPUs entered cpuidle state {IDLE_STATE} (CPU_SUSPEND powerdown)"),
        rows.len() == CPUS && rows.iter().all(entered),
        || format!("    cpu, state1 name, usage:\n{}", block(&out)),
    );
}

/// What happened, in the order the serial log shows it: a Linux boot (its marker) or a
/// system event Cairn reported (the text after "system event: ").
#[derive(Debug, PartialEq)]
enum Step {
    Boot,
    Event(String),
}

fn steps(log: &str) -> Vec<Step> {
    let marker = marker();
    log.lines()
        .filter_map(|l| match l.find(EVENT) {
            Some(at) => Some(Step::Event(l[at + EVENT.len()..].to_string())),
            None => marker.is_match(l).then_some(Step::Boot),
        })
        .collect()
}

#[test]
fn linux_reboots_three_times_then_powers_off() {
    let mut s = linux("reboot").spawn();
    let mut c = Checks::new();
    let cpus = wait_for_linux(&mut s);
    c.check(&format!("boot 1 comes up on {CPUS} CPUs"), cpus == CPUS, || format!("    it says {cpus}"));
    for n in 2..=REBOOTS + 1 {
        s.send_line("reboot -f");
        let cpus = wait_for_linux(&mut s);
        c.check(&format!("boot {n} comes up on {CPUS} CPUs"), cpus == CPUS, || format!("    it says {cpus}"));
        s.sh("true");
    }
    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("`poweroff -f` ends QEMU with status 0", status == Some(0), || format!("    QEMU's status: {status:?}"));

    let got = steps(&s.log());
    let is_reset = |e: &str| e.starts_with("reset (PSCI SYSTEM_RESET") || e.starts_with("reset2 (PSCI SYSTEM_RESET2");
    let mut order_ok = got.len() == 2 * (REBOOTS + 1);
    for (i, step) in got.iter().enumerate() {
        order_ok &= match (i % 2, step) {
            (0, Step::Boot) => true,
            (1, Step::Event(e)) if i + 1 == got.len() => e.starts_with("shutdown (PSCI SYSTEM_OFF"),
            (1, Step::Event(e)) => is_reset(e),
            _ => false,
        };
    }
    c.check(
        &format!("the log shows boot, reset, boot, ... ({REBOOTS} resets), boot, shutdown, in that order"),
        order_ok,
        || format!("    boots and system events in the log:\n{}", block(&format!("{got:#?}"))),
    );
    c.finish(&mut s);
}
