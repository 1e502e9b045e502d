//! Several VMs on one board: two Debian Linux VMs side by side on `-smp 4` (two vCPUs
//! each), GICv3 and GICv2, sharing the one serial console through Cairn's multiplexer.
//! The test types into each VM in turn (three Ctrl-A move the input), and checks what a
//! user would: both reach their shells with their own CPUs, input reaches only the VM
//! that has it, one VM's reboot restarts only it while the other's timers and IPIs keep
//! counting, one VM's poweroff leaves the other running, and QEMU exits 0 once the last
//! one is off. Serial logs: target/test-logs/partition-*.log.

mod common;

use common::linux::{block, echo_console_line, Checks};
use common::prompt::{at_prompt, switch_to, PROMPT, TO_PROMPT};
use common::{without_interleaved_lines, Boot, Session, ShellMarker};

/// What the guests' /init prints once Linux is up with two CPUs (scripts/initramfs-init).
const UP_WITH_TWO_CPUS: &str = "CAIRN-GUEST: linux up (2 CPUs)";

fn two_linux_vms(gic: u8) -> Boot {
    Boot::new(&format!("partition-two-linux-gicv{gic}"))
        .linux()
        .smp(4)
        .gic(gic)
        .mem("2G")
        .bootargs("cairn.name=alpha")
        .linux_vm("cairn.name=beta")
}

/// The highest `tick-N` count beta printed in `log` (prefixed `[beta] ` once it has not
/// the input).
fn last_tick(log: &str) -> Option<u64> {
    let count = |l: &str| l.strip_prefix("[beta] ").unwrap_or(l).strip_prefix("tick-")?.trim().parse().ok();
    log.lines().filter_map(count).max()
}

/// Per-CPU sums of the rows of /proc/interrupts whose label or name `pick` accepts.
fn counts(text: &str, pick: impl Fn(&str) -> bool) -> Vec<u64> {
    let mut sums: Vec<u64> = Vec::new();
    for line in without_interleaved_lines(text).lines().filter(|l| pick(l)) {
        let numbers = line.split_whitespace().skip(1).map_while(|w| w.parse::<u64>().ok());
        for (cpu, n) in numbers.enumerate() {
            if sums.len() <= cpu {
                sums.resize(cpu + 1, 0);
            }
            sums[cpu] += n;
        }
    }
    sums
}

fn timer_and_ipis(s: &mut Session) -> (Vec<u64>, Vec<u64>) {
    let text = s.sh("cat /proc/interrupts");
    (counts(&text, |l| l.contains("arch_timer")), counts(&text, |l| l.trim_start().starts_with("IPI")))
}

fn rose(before: &[u64], after: &[u64]) -> bool {
    before.len() == 2 && after.len() == 2 && before.iter().zip(after).all(|(b, a)| a > b)
}

fn two_linux_vms_share_the_board(gic: u8) {
    let mut s = two_linux_vms(gic).spawn();
    let mut c = Checks::new();
    // Both markers, in either order: beta's comes prefixed, alpha's (with the input) raw.
    s.wait_for(ShellMarker(UP_WITH_TWO_CPUS));
    s.wait_for(ShellMarker(UP_WITH_TWO_CPUS));
    let log = s.log();
    c.check("the console says where input goes", log.contains("*** input to vm0 (alpha);"), || {
        "    no \"*** input to vm0 (alpha)\" line".into()
    });
    c.check("beta's lines are prefixed with its name", log.contains(&format!("[beta] {UP_WITH_TWO_CPUS}")), || {
        "    no \"[beta] CAIRN-GUEST: linux up\" line".into()
    });

    let nproc = s.sh_value("nproc");
    c.check("alpha has its 2 CPUs", nproc == "2", || format!("    nproc says {nproc}"));
    let (line, echoed) = echo_console_line(&mut s, 0);
    c.check("a long line typed into alpha comes back whole", echoed == line, || block(&echoed));
    let (timer_before, ipis_before) = timer_and_ipis(&mut s);

    switch_to(&mut s, "vm1 (beta)");
    let nproc = s.sh_value("nproc; touch /tmp/typed-into-beta");
    c.check("beta has its 2 CPUs", nproc == "2", || format!("    nproc says {nproc}"));
    let (line, echoed) = echo_console_line(&mut s, 1);
    c.check("a long line typed into beta comes back whole", echoed == line, || block(&echoed));
    s.send_line("reboot -f");
    s.wait_for(ShellMarker("vm1: system event: reset"));
    s.wait_for(ShellMarker(UP_WITH_TWO_CPUS));
    s.wait_for_shell();
    let kept = s.sh_value("test -e /tmp/typed-into-beta && echo kept || echo gone");
    c.check("beta's reboot restarted it from scratch", kept == "gone", || format!("    /tmp says {kept}"));

    switch_to(&mut s, "vm0 (alpha)");
    let seen = s.sh_value("test -e /tmp/typed-into-beta && echo seen || echo unseen");
    c.check("input typed into beta never reached alpha", seen == "unseen", || format!("    alpha: {seen}"));
    let uptime = s.sh_value("cut -d. -f1 /proc/uptime");
    c.check("beta's reboot left alpha running", uptime.parse::<u64>().is_ok_and(|u| u > 5), || {
        format!("    alpha's uptime: {uptime}")
    });
    let (timer_after, ipis_after) = timer_and_ipis(&mut s);
    c.check("alpha's timer interrupts kept counting on both CPUs", rose(&timer_before, &timer_after), || {
        format!("    before {timer_before:?}, after {timer_after:?}")
    });
    c.check("alpha's IPIs kept counting on both CPUs", rose(&ipis_before, &ipis_after), || {
        format!("    before {ipis_before:?}, after {ipis_after:?}")
    });

    // Cairn's prompt, after the VMs: it lists them, tells about one, answers mistakes.
    switch_to(&mut s, TO_PROMPT);
    let list = at_prompt(&mut s, "list");
    let rows: Vec<&str> = list.lines().filter(|l| l.starts_with("alpha") || l.starts_with("beta")).collect();
    c.check(
        "list shows both VMs with their 2 vCPUs",
        rows.len() == 2 && rows.iter().all(|r| r.contains(" 2 ")),
        || block(&list),
    );
    let info = at_prompt(&mut s, "info beta");
    c.check("info tells beta's CPUs and its reset", info.contains("on cpu3") && info.contains("reset"), || {
        block(&info)
    });
    let bad = at_prompt(&mut s, "info");
    c.check("a command without its VM gets the usage", bad.contains("usage: info VM"), || block(&bad));
    let garbage = at_prompt(&mut s, "\x1b[A\x7f\x7fzzz");
    c.check("garbage gets one line saying so", garbage.contains("unknown command"), || block(&garbage));
    let version = at_prompt(&mut s, "get alpha psci-version");
    c.check("get reads alpha's PSCI version", version.contains("psci-version = 0x10001"), || block(&version));

    // Pause beta while it counts: its count stops for 10 s and goes on unbroken after
    // resume, with no stall or soft lockup reported.
    switch_to(&mut s, "vm1 (beta)");
    s.sh("(i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.5; done) &");
    switch_to(&mut s, TO_PROMPT);
    s.wait_for(common::re(r"\[beta\] tick-3"));
    let paused = at_prompt(&mut s, "pause beta");
    c.check("pause pauses beta", paused.contains("beta paused"), || block(&paused));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let last_before = last_tick(&s.log());
    let quiet = s.mark();
    std::thread::sleep(std::time::Duration::from_secs(10));
    let ticks_while_paused = s.log_since(quiet).matches("[beta] tick-").count();
    c.check("a paused VM prints nothing", ticks_while_paused == 0, || format!("    {ticks_while_paused} ticks"));
    let list = at_prompt(&mut s, "list");
    c.check("list shows beta paused", list.lines().any(|l| l.starts_with("beta") && l.contains("--p--")), || {
        block(&list)
    });
    let resumed = at_prompt(&mut s, "resume beta");
    c.check("resume resumes beta", resumed.contains("beta resumed"), || block(&resumed));
    let next = s.wait_for(common::re(r"\[beta\] tick-\d+"));
    let first_after: Option<u64> = next.rsplit('-').next().and_then(|n| n.parse().ok());
    c.check("its count goes on unbroken", first_after == last_before.map(|n| n + 1), || {
        format!("    last before the pause {last_before:?}, first after {first_after:?}")
    });
    switch_to(&mut s, "vm1 (beta)");
    let output = s.sh_value("dmesg | grep -ciE 'soft lockup|stall|hung task' || true");
    // Its count still runs, its lines among the answer's.
    let stalls = output.lines().rfind(|l| !l.starts_with("tick-")).unwrap_or("").trim().to_string();
    c.check("no stall or soft lockup after the pause", stalls == "0", || format!("    {output}"));
    s.send_line("poweroff -f");
    s.wait_for(ShellMarker("vm1: gone"));
    // The input leaves a VM that is gone by itself.
    s.wait_for(ShellMarker(&format!("*** input to {TO_PROMPT};")));
    s.wait_for(ShellMarker(PROMPT));
    // Firmware registers: refused on a VM that runs, taken by one that is off, which
    // boots with it.
    let busy = at_prompt(&mut s, "set alpha psci-version 1.0");
    c.check("a running VM keeps its PSCI version", busy.contains("EBUSY"), || block(&busy));
    let set = at_prompt(&mut s, "set beta psci-version 1.0");
    c.check("a VM that is off takes PSCI 1.0", set.contains("psci-version = 0x10000"), || block(&set));
    let started = at_prompt(&mut s, "start beta");
    c.check("start boots beta again", started.contains("beta started"), || block(&started));
    let detected = s.wait_for(common::re(r"\[beta\] .*psci: PSCIv\d\.\d detected"));
    c.check("beta's Linux finds PSCI 1.0", detected.contains("PSCIv1.0"), || detected.clone());
    s.wait_for(common::re(r"\[beta\] CAIRN-GUEST: linux up"));
    let stopped = at_prompt(&mut s, "stop beta");
    c.check("stop stops beta", stopped.contains("beta stopped"), || block(&stopped));
    switch_to(&mut s, "vm0 (alpha)");
    let alive = s.sh_value("echo alive");
    c.check("beta's poweroff left alpha running", alive == "alive", || format!("    alpha answered {alive:?}"));

    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("QEMU exits 0 once the last VM is off", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

#[test]
fn two_linux_vms_share_the_board_gicv3() {
    two_linux_vms_share_the_board(3);
}

#[test]
fn two_linux_vms_share_the_board_gicv2() {
    two_linux_vms_share_the_board(2);
}

/// Every way a VM's settings can be wrong stops that VM alone, with one line naming its
/// module and the word; the VM with good settings runs its test guest to the end, and the
/// machine ends cleanly when it does.
#[test]
fn bad_settings_stop_only_their_vm_with_one_line_each() {
    let hypercalls = common::guest("hypercalls");
    let bad = [
        ("cpu9", "cairn.cpus=9", "the board has CPUs 0-3"),
        ("typo", "cairn.colour=blue", "no setting `colour`"),
        ("clash", "cairn.cpus=1", "CPU 1 is good's already"),
        ("huge", "cairn.mem=64G", "free RAM"),
        ("garbled", "cairn.mem=12X", "cairn.mem=12X"),
        ("nodev", "cairn.devices=/no-such-node@0", "no device"),
    ];
    let mut boot =
        Boot::new("partition-bad-settings").smp(4).guest("hypercalls").bootargs("cairn.name=good cairn.cpus=0-1");
    for (name, word, _) in bad {
        boot = boot.vm(&hypercalls, None, &format!("cairn.name={name} {word}"));
    }
    let run = boot.run();
    run.assert_clean_exit();
    for (name, word, reason) in bad {
        let line = run.log.lines().find(|l| l.contains(&format!("{name} (module at 0x")) && l.contains("not started"));
        let line = line.unwrap_or_else(|| panic!("no refusal line for {name} in {}", run.where_to_look()));
        assert!(line.contains(&format!("\"{word}\"")) && line.contains(reason), "{name}: {line}");
    }
    run.assert_guest_passed("hypercalls");
    assert_eq!(run.count("CAIRN-TEST hypercalls result: pass"), 1, "only the good VM ran");
    run.assert_contains("vm0 (good):");
    run.assert_contains("2 vCPUs on CPUs 0,1");
}

/// The console puts the other VM's whole lines where the focused VM's output stands, even
/// mid-line: the harness counts each writer's text apart, so the split line still counts
/// (a CI run once saw `CAIRN-TE[right] CAIRN-TEST ... ok` then `ST hypercalls result: pass`).
#[test]
fn a_line_another_vm_splits_is_read_whole() {
    let log = "CAIRN-TE[right] CAIRN-TEST hypercalls check x: ok\nST hypercalls result: pass\n\
               [right] CAIRN-TEST hypercalls result: pass\n";
    let (stream, lines) = common::session::split_writers(log);
    assert_eq!(stream, "CAIRN-TEST hypercalls result: pass\n");
    assert_eq!(lines, ["[right] CAIRN-TEST hypercalls check x: ok\n", "[right] CAIRN-TEST hypercalls result: pass\n"]);
}

/// Two bare-metal VMs at once, each on its own two CPUs (GICv2, so the GICv2 distributor's
/// targets and SGIs are partitioned too): both pass; the machine ends with the second.
#[test]
fn two_bare_metal_vms_pass_side_by_side_gicv2() {
    let hypercalls = common::guest("hypercalls");
    let run = Boot::new("partition-two-bare-metal-gicv2")
        .smp(4)
        .gic(2)
        .guest("hypercalls")
        .bootargs("cairn.name=left")
        .vm(&hypercalls, None, "cairn.name=right")
        .run();
    run.assert_clean_exit();
    assert_eq!(run.count("CAIRN-TEST hypercalls result: pass"), 2, "both VMs pass: {}", run.where_to_look());
    run.assert_contains("vm0 (left): ");
    run.assert_contains("2 vCPUs on CPUs 0,1");
    run.assert_contains("2 vCPUs on CPUs 2,3");
    run.assert_contains("no VM left: powering the machine off");
}

/// The bare-metal `isolation` guest on CPU 3 with 64 MiB, beside Debian's Linux on CPUs
/// 0-2: while Linux boots and echoes long lines on the console, the guest resets itself
/// 400 times; then Linux fills 64 KiB of its memory with a pattern, the test gives the
/// guest a key, and while Linux echoes another line the guest probes its whole IPA window
/// (only its own RAM, GIC, UART and devices answer), finds no trace of Linux's pattern
/// nor any other VM's boot image, writes all ones to every SPI register of its
/// distributor and sends SGIs to every target, and storms CPU_ON at every MPIDR. Linux
/// keeps its console, timers and IPIs through all of it.
#[test]
fn a_bare_metal_vm_beside_linux_reaches_only_its_own_gicv3() {
    a_bare_metal_vm_beside_linux_reaches_only_its_own(3);
}

#[test]
fn a_bare_metal_vm_beside_linux_reaches_only_its_own_gicv2() {
    a_bare_metal_vm_beside_linux_reaches_only_its_own(2);
}

fn a_bare_metal_vm_beside_linux_reaches_only_its_own(gic: u8) {
    let isolation = common::guest("isolation");
    let mut s = Boot::new(&format!("partition-isolation-gicv{gic}"))
        .linux()
        .smp(4)
        .gic(gic)
        .mem("2G")
        .bootargs("cairn.name=linux cairn.cpus=0-2 cairn.mem=1G")
        .vm(&isolation, None, "cairn.name=iso cairn.cpus=3 cairn.mem=64M resets=400 wait-key")
        .spawn();
    let start = s.mark();
    let mut c = Checks::new();
    s.wait_for(ShellMarker("CAIRN-GUEST: linux up (3 CPUs)"));
    s.wait_for_shell();
    let (timer_before, ipis_before) = timer_and_ipis(&mut s);
    for n in 0..2 {
        let (line, echoed) = echo_console_line(&mut s, n);
        c.check("Linux's console echoes whole lines during the reset storm", echoed == line, || block(&echoed));
    }
    s.sh("printf 'CAIRN-FOREIGN-PG%.0s' $(seq 4096) > /tmp/foreign && sync");
    s.wait_for_since(start, ShellMarker("isolation: press a key to start the checks"));
    let resets = s.log().matches("isolation: reset ").count();
    c.check("the guest reset itself 399 times", resets == 399, || format!("    {resets} reset lines"));

    switch_to(&mut s, "vm1 (iso)");
    let key = s.mark();
    // One key starts the checks; the guest never reads again, so most of the rest is
    // dropped, said once, and the console still switches.
    s.send(&"x".repeat(1 + 1500));
    s.wait_for(ShellMarker("vm1 is not reading its console"));
    switch_to(&mut s, "vm0 (linux)");
    let (line, echoed) = echo_console_line(&mut s, 3);
    c.check("Linux's console echoes whole lines during the guest's checks", echoed == line, || block(&echoed));
    let result = s.wait_for_since(key, common::re(r"CAIRN-TEST isolation result: \w+ \(\d+ passed, \d+ failed\)"));
    let failed: Vec<String> = s
        .log()
        .lines()
        .filter(|l| l.contains("CAIRN-TEST isolation") && l.contains("FAIL"))
        .map(String::from)
        .collect();
    c.check("the guest finds only its own and passes", result.contains("pass") && failed.is_empty(), || {
        format!("    {result}\n{}", block(&failed.join("\n")))
    });
    s.wait_for_since(key, ShellMarker("vm1: gone"));
    let (line, echoed) = echo_console_line(&mut s, 2);
    c.check("Linux's console still echoes whole lines", echoed == line, || block(&echoed));
    let (timer_after, ipis_after) = timer_and_ipis(&mut s);
    let rose3 = |b: &[u64], a: &[u64]| b.len() == 3 && a.len() == 3 && b.iter().zip(a).all(|(b, a)| a > b);
    c.check("Linux's timers kept counting on its 3 CPUs", rose3(&timer_before, &timer_after), || {
        format!("    before {timer_before:?}, after {timer_after:?}")
    });
    c.check("Linux's IPIs kept counting on its 3 CPUs", rose3(&ipis_before, &ipis_after), || {
        format!("    before {ipis_before:?}, after {ipis_after:?}")
    });
    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("QEMU exits 0 once both are off", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

/// One VM alone: three Ctrl-A move the input between it and Cairn's prompt, which lists
/// it, resets, stops and starts it (the machine stays up while it is off); back at the VM,
/// a key typed reaches it, and its own SYSTEM_OFF ends QEMU with status 0.
#[test]
fn a_lone_vm_and_the_prompt_share_the_console() {
    let mut s = Boot::new("partition-lone-vm-and-prompt")
        .smp(2)
        .guest("isolation")
        .bootargs("resets=1 wait-key gic-spis=any")
        .spawn();
    s.wait_for(ShellMarker("isolation: press a key to start the checks"));
    let mut c = Checks::new();
    switch_to(&mut s, TO_PROMPT);
    let list = at_prompt(&mut s, "list");
    c.check("list shows the one VM", list.lines().any(|l| l.starts_with("vm0 ")), || block(&list));
    let help = at_prompt(&mut s, "help");
    c.check(
        "help lists the commands",
        ["list", "info", "events", "get", "log"].iter().all(|w| help.contains(w)),
        || block(&help),
    );
    // reset, stop and start from the prompt: the guest boots again each time it starts.
    let reset = at_prompt(&mut s, "reset vm0");
    c.check("reset restarts the VM", reset.contains("vm0 reset"), || block(&reset));
    s.wait_for(ShellMarker("isolation: press a key to start the checks"));
    let stop = at_prompt(&mut s, "stop 0");
    c.check("stop turns the VM off", stop.contains("vm0 stopped"), || block(&stop));
    let list = at_prompt(&mut s, "list");
    c.check("list shows it shut down", list.lines().any(|l| l.starts_with("vm0 ") && l.contains("---s-")), || {
        block(&list)
    });
    let again = at_prompt(&mut s, "stop vm0");
    c.check("stopping it again says it is off", again.contains("vm0 is off already"), || block(&again));
    let start = at_prompt(&mut s, "start vm0");
    c.check("start boots it again", start.contains("vm0 started"), || block(&start));
    s.wait_for(ShellMarker("isolation: press a key to start the checks"));
    let save = at_prompt(&mut s, "save vm0");
    c.check("save without a slot says how to get one", save.contains("vm0 has no snapshot slot"), || block(&save));
    let restore = at_prompt(&mut s, "restore vm0");
    c.check("restore without a snapshot says so", restore.contains("vm0 has no snapshot"), || block(&restore));
    let events = at_prompt(&mut s, "events vm0");
    c.check("its events show restart, stop, restart", events.contains("3 system events"), || block(&events));
    switch_to(&mut s, "vm0 (vm0)");
    s.send("k");
    let result = s.wait_for(common::re(r"CAIRN-TEST isolation result: \w+ \("));
    c.check("the key reached the VM, which passed", result.contains("result: pass"), || result.clone());
    let status = s.wait_exit();
    c.check("QEMU exits 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}
