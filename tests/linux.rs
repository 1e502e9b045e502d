//! Linux guests under Cairn: Debian's arm64 kernel with a busybox initramfs (from
//! scripts/guest-linux) boots on every vCPU with GICv2 and GICv3, finds PSCI through HVC,
//! keeps time, takes timer interrupts and IPIs on every CPU, runs work on every CPU, and
//! ends QEMU on `poweroff -f` / restarts on `reboot -f`. The tests type into the guest's
//! shell on the serial console (see tests/common/session.rs).
//!
//! `CAIRN_LINUX_NATIVE=1 cargo test --test linux` runs the same tests with the kernel
//! booted directly in QEMU, without Cairn: the reference the harness and the checks are
//! validated against. `CAIRN_ARGS="loglevel=debug"` passes bootargs to Cairn, and
//! `CAIRN_TEST_WAIT_TIMEOUT=30` gives up sooner than the 180 s per wait (for loops that
//! reproduce a hang). Serial logs: target/test-logs/linux-*.log.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::linux::{block, echo_console_line, marker, wait_for_linux, Checks, CONSOLE_LINES, CONSOLE_LINE_LEN};
use common::{re, without_interleaved_lines, Boot, ExitStatus, Pattern, Session, ShellMarker};

/// Loop iterations of the per-CPU workload: about a second of guest work under TCG.
const WORK: u32 = 20000;

fn native() -> bool {
    std::env::var("CAIRN_LINUX_NATIVE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The default Linux guest at `smp` CPUs on GIC `gic`, under Cairn or (with
/// CAIRN_LINUX_NATIVE=1) directly in QEMU. `earlycon` shows the first kernel lines even if
/// the boot stops before the console driver is up.
fn linux(test: &str, smp: usize, gic: u8) -> Boot {
    let mode = if native() { "native" } else { "cairn" };
    let boot = Boot::new(&format!("linux-{test}-smp{smp}-gicv{gic}-{mode}"))
        .linux()
        .mem("2G")
        .smp(smp)
        .gic(gic)
        .bootargs("earlycon=pl011,0x9000000");
    match std::env::var("CAIRN_ARGS") {
        _ if native() => boot.native(),
        Ok(args) if !args.is_empty() => boot.append(&args),
        _ => boot,
    }
}

fn boot(test: &str, smp: usize, gic: u8) -> (Session, usize) {
    boot_with(linux(test, smp, gic))
}

fn boot_with(boot: Boot) -> (Session, usize) {
    let mut s = boot.spawn();
    let cpus = wait_for_linux(&mut s);
    (s, cpus)
}

/// /proc/interrupts: per row label (`11`, `IPI0`, ...) its per-CPU counts and description.
struct Interrupts {
    cpus: usize,
    rows: BTreeMap<String, (Vec<u64>, String)>,
}

impl Interrupts {
    fn parse(text: &str) -> Interrupts {
        let mut lines = text.lines().skip_while(|l| !l.contains("CPU0"));
        let cpus = lines.next().map_or(0, |h| h.split_whitespace().filter(|w| w.starts_with("CPU")).count());
        let mut rows = BTreeMap::new();
        for line in lines {
            let Some((label, rest)) = line.trim().split_once(':') else { continue };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let counts: Vec<u64> = words.iter().map_while(|w| w.parse().ok()).collect();
            if counts.len() == cpus {
                rows.insert(label.to_string(), (counts, words[cpus..].join(" ")));
            }
        }
        Interrupts { cpus, rows }
    }

    /// Per-CPU sum of the rows `pick` selects.
    fn sum(&self, pick: impl Fn(&str, &str) -> bool) -> Vec<u64> {
        let mut total = vec![0; self.cpus];
        for (label, (counts, desc)) in &self.rows {
            if pick(label, desc) {
                total.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
            }
        }
        total
    }

    fn timer(&self) -> Vec<u64> {
        self.sum(|_, desc| desc.contains("arch_timer"))
    }

    fn ipis(&self) -> Vec<u64> {
        self.sum(|label, _| label.starts_with("IPI"))
    }
}

/// A shell command starting, in the background, one counting loop of WORK iterations
/// pinned to each of `smp` CPUs; each loop then runs `then` (with `$0` its CPU and `$i`
/// its count).
fn pinned_work(smp: usize, then: &str) -> String {
    format!(
        "for c in $(seq 0 {last}); do taskset -c $c sh -c 'i=0; while [ $i -lt {WORK} ]; do i=$((i+1)); done{then}' $c & done",
        last = smp - 1
    )
}

/// CPUs whose count did not rise from `before` to `after`.
fn not_rising(before: &[u64], after: &[u64], cpus: usize) -> Vec<usize> {
    (0..cpus).filter(|&c| after.get(c).unwrap_or(&0) <= before.get(c).unwrap_or(&0)).collect()
}

/// Everything a user of one Linux VM notices, from one boot: it comes up on every vCPU,
/// finds PSCI through HVC with no GIC or timer complaint in dmesg, keeps time, takes
/// timer interrupts and IPIs on every CPU, runs work pinned to each CPU, echoes long typed
/// lines whole while every CPU is busy, and `poweroff -f` ends QEMU with status 0.
fn linux_works(smp: usize, gic: u8) {
    check_linux_works(boot("works", smp, gic), smp);
}

fn check_linux_works((mut s, marker_cpus): (Session, usize), smp: usize) {
    let mut c = Checks::new();
    c.check(&format!("the marker line reports {smp} CPUs"), marker_cpus == smp, || {
        format!("    /init's nproc says {marker_cpus}")
    });

    let cpuinfo = s.sh("cat /proc/cpuinfo");
    let processors = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    c.check(&format!("/proc/cpuinfo lists {smp} processors"), processors == smp, || {
        format!("    found {processors}:\n{}", block(&cpuinfo))
    });

    let dmesg = s.sh("dmesg");
    let psci = re("(?i)psci").matching_lines(&dmesg).join("\n");
    c.check("PSCI v1.1 found in firmware", psci.contains("psci: PSCIv1.1 detected in firmware."), || {
        format!("    dmesg | grep -i psci:\n{}", block(&psci))
    });
    c.check("PSCI not in the v0.1 fallback", !psci.contains("Using PSCI v0.1 Function IDs from DT"), || {
        format!("    dmesg | grep -i psci:\n{}", block(&psci))
    });
    let method = s.sh_value("tr -d '\\000' < /proc/device-tree/psci/method; echo");
    c.check("PSCI method in the guest device tree is hvc", method.trim_end_matches(['\0', '\n']) == "hvc", || {
        format!("    /proc/device-tree/psci/method: {method:?}")
    });
    let complaints: Vec<&str> = [r"GIC.*(error|fail|WARN)", r"arch_timer.*(error|fail)", "WARNING:", "BUG:", "Oops"]
        .iter()
        .flat_map(|p| re(p).matching_lines(&dmesg))
        .collect();
    c.check("dmesg has no GIC/timer error, warning, BUG or oops", complaints.is_empty(), || {
        format!("    offending lines:\n{}", block(&complaints.join("\n")))
    });

    let t = Instant::now();
    s.sh("sleep 1");
    let slept = t.elapsed();
    c.check("`sleep 1` takes at least a second", slept.as_secs_f64() >= 0.9, || {
        format!("    it returned after {:.2} s", slept.as_secs_f64())
    });

    let before = s.sh("cat /proc/interrupts");
    let work = s.sh(&format!("{}; sleep 1; wait", pinned_work(smp, "; echo done-cpu$0-$i")));
    let after = s.sh("cat /proc/interrupts");
    for cpu in 0..smp {
        let line = format!("done-cpu{cpu}-{WORK}");
        c.check(&format!("the workload pinned to CPU {cpu} completes"), work.lines().any(|l| l == line), || {
            format!("    no line {line:?} in its output:\n{}", block(&work))
        });
    }
    let (b, a) = (Interrupts::parse(&before), Interrupts::parse(&after));
    let irq_detail = || format!("    /proc/interrupts before:\n{}    after:\n{}", block(&before), block(&after));
    let stuck = not_rising(&b.timer(), &a.timer(), smp);
    c.check("the arch_timer count rises on every CPU", a.cpus == smp && stuck.is_empty(), || {
        format!("    not rising on CPUs {stuck:?} ({} CPU columns)\n{}", a.cpus, irq_detail())
    });
    if smp > 1 {
        let stuck = not_rising(&b.ipis(), &a.ipis(), smp);
        c.check("IPI counts rise on every CPU", stuck.is_empty(), || {
            format!("    not rising on CPUs {stuck:?}\n{}", irq_detail())
        });
    }

    // The console is interrupt-driven in both directions (PL011 RX and TX interrupts): a
    // lost or orphaned interrupt stalls the line or drops characters.
    s.sh(&pinned_work(smp, ""));
    for n in 0..CONSOLE_LINES {
        let (line, echoed) = echo_console_line(&mut s, n);
        c.check(
            &format!("a {CONSOLE_LINE_LEN}-character line typed while every CPU is busy comes back whole ({n})"),
            echoed == line,
            || format!("    typed:\n{}    came back:\n{}", block(&line), block(&echoed)),
        );
    }
    s.sh("wait");

    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("`poweroff -f` ends QEMU with status 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

#[test]
fn linux_works_on_1_cpu_gicv3() {
    linux_works(1, 3);
}

#[test]
fn linux_works_on_2_cpus_gicv3() {
    linux_works(2, 3);
}

#[test]
fn linux_works_on_4_cpus_gicv3() {
    linux_works(4, 3);
}

#[test]
fn linux_works_on_1_cpu_gicv2() {
    linux_works(1, 2);
}

#[test]
fn linux_works_on_2_cpus_gicv2() {
    linux_works(2, 2);
}

#[test]
fn linux_works_on_4_cpus_gicv2() {
    linux_works(4, 2);
}

/// Everything `linux_works` checks, with Cairn saving every vCPU's whole state, scrambling
/// the hardware and restoring it at every exit (`selftest=save-restore`): Linux boots,
/// ticks, takes IPIs and powers off as if nothing happened.
#[test]
fn linux_works_with_a_save_restore_at_every_exit() {
    if native() {
        return;
    }
    let boot = linux("works-save-restore", 2, 3).append("selftest=save-restore");
    check_linux_works(boot_with(boot), 2);
}

/// `reboot -f` starts the guest again (the VM restarts under Cairn; natively QEMU resets
/// the machine), and `poweroff -f` then still ends QEMU with status 0.
#[test]
fn linux_reboot_starts_the_guest_again() {
    let mut s = linux("reboot", 2, 3).allow_reboot().spawn();
    wait_for_linux(&mut s);
    s.send_line("reboot -f");
    let again = s.wait_for(marker());
    assert!(again.contains("(2 CPUs)"), "after the reboot: {again}{}", s.context());
    s.wait_for_shell();
    s.sh("true");
    s.send_line("poweroff -f");
    s.expect_exit(0);
}

/// The harness reads command markers, exit statuses and values past the kernel's and
/// Cairn's console lines, which the UART interleaves with the shell's output (the suspend
/// test below once met `rc=0[    3.718682] PM: suspend exit` and waited in vain for a
/// newline after the 0).
#[test]
fn shell_output_is_read_past_interleaved_lines() {
    fn status(text: &str) -> Option<&str> {
        ExitStatus.find_in(text.as_bytes(), 0).map(|(s, e)| &text[s..e])
    }
    assert_eq!(status("0\n/ # "), Some("0"));
    assert_eq!(status("0[    3.718682] PM: suspend exit\n"), Some("0"));
    assert_eq!(status("[    3.718682] PM: suspend exit\n127\n"), Some("127"));
    assert_eq!(status("[    3.718682] PM: susp"), None, "an unfinished kernel line may hide the status");
    assert_eq!(status("12"), None, "more digits may follow");
    let marker = |text: &str| ShellMarker("CMD-END-3- rc=").find_in(text.as_bytes(), 0);
    assert_eq!(marker("x CMD-END-3- rc=0"), Some((2, 16)));
    assert_eq!(marker("CMD-EN[   12.5] psci: CPU1 killed\nD-3- rc=0"), Some((0, 42)));
    assert_eq!(marker("CMD-EN[   12.5] psci: CPU1 kil"), None, "the kernel line is not over yet");
    assert_eq!(marker("echo CMD-END-3''- rc=$?"), None, "the typed command is not the marker");
    assert_eq!(without_interleaved_lines("17953[    3.5] random: crng reseeded\n24353\n"), "1795324353\n");
    assert_eq!(without_interleaved_lines("[ unbracketed text\n"), "[ unbracketed text\n");
    let cairn = "CMD-END-3- rccairn[cpu0] INFO  vm0: system event: suspend\n=0\n";
    assert_eq!(marker(cairn), Some((0, 59)), "Cairn's log lines are skipped too");
}

/// Suspend-to-RAM: Linux offlines its secondary vCPUs (PSCI CPU_OFF) and suspends through
/// PSCI SYSTEM_SUSPEND; the VM sleeps until an interrupt is pending, here the PL031 RTC
/// alarm (SPI 2, INTID 34 on QEMU virt), and resumes at Linux's entry point with every vCPU
/// back. When the alarm is what woke it, the guest's wall clock shows it really slept; an
/// interrupt already pending at the call (an IPI from the last CPU going down) may end the
/// suspend at once, as on hardware, and Cairn's log says which.
#[test]
fn linux_suspend_to_ram_wakes_on_the_rtc_alarm() {
    const SLEEP_S: u64 = 3;
    const RTC_INTID: &str = "34";
    let (mut s, _) = boot("suspend", 2, 3);
    let states = s.sh("cat /sys/power/state");
    assert!(states.contains("mem"), "PSCI SYSTEM_SUSPEND offers suspend-to-RAM: {states}{}", s.context());
    let before: u64 = s.sh_value("date +%s").parse().expect("date prints seconds");
    s.sh(&format!("echo +{SLEEP_S} > /sys/class/rtc/rtc0/wakealarm && echo mem > /sys/power/state"));
    let after: u64 = s.sh_value("date +%s").parse().expect("date prints seconds");
    let online = s.sh_value("cat /sys/devices/system/cpu/online");
    assert_eq!(online, "0-1", "both vCPUs back after resume{}", s.context());
    if !native() {
        let log = s.log();
        assert!(log.contains("system event: suspend"), "Cairn records the suspend{}", s.context());
        let wake = log.lines().find(|l| l.contains("system event: wakeup by interrupt"));
        let Some(wake) = wake else { panic!("Cairn records the wake-up{}", s.context()) };
        if wake.contains(&format!("interrupt {RTC_INTID} ")) {
            assert!(
                after >= before + SLEEP_S - 1,
                "woken by the alarm after {} s, set for {SLEEP_S} s",
                after - before
            );
        }
    }
    s.send_line("poweroff -f");
    s.expect_exit(0);
}

/// Linux under each PSCI version Cairn implements (Cairn's bootarg `psci=`): every vCPU
/// comes online, and dmesg reports the version the guest detected. A 0.1 guest has no
/// SYSTEM_OFF; its QEMU is stopped by the harness.
fn linux_under_psci(version: &str, detected: &str) {
    let mut s = Boot::new(&format!("linux-psci-{version}"))
        .linux()
        .mem("1G")
        .smp(2)
        .gic(3)
        .append(&format!("psci={version}"))
        .spawn();
    let cpus = wait_for_linux(&mut s);
    assert_eq!(cpus, 2, "both vCPUs online under PSCI {version}{}", s.context());
    let psci = s.sh("dmesg | grep psci:");
    assert!(psci.contains(detected), "PSCI {version}: expected {detected:?} in:\n{psci}{}", s.context());
    assert_eq!(s.sh_value("cat /sys/devices/system/cpu/online"), "0-1", "{}", s.context());
    if version != "0.1" {
        s.send_line("poweroff -f");
        s.expect_exit(0);
    }
}

#[test]
fn linux_boots_under_psci_0_1() {
    linux_under_psci("0.1", "Using PSCI v0.1 Function IDs from DT");
}

#[test]
fn linux_boots_under_psci_0_2() {
    linux_under_psci("0.2", "PSCIv0.2 detected in firmware");
}

#[test]
fn linux_boots_under_psci_1_0() {
    linux_under_psci("1.0", "PSCIv1.0 detected in firmware");
}

#[test]
fn linux_boots_under_psci_1_1() {
    linux_under_psci("1.1", "PSCIv1.1 detected in firmware");
}
