//! SDEI for guests (`cairn.sdei=on`, src/smccc/sdei): the `sdei` guest checks the whole
//! interface through HVC on two vCPUs, GICv3 and GICv2 (what it checks: guests/sdei); with
//! SDEI off it finds no `/firmware/sdei` and NOT_SUPPORTED for every SDEI ID. Debian's
//! Linux with `cairn.sdei=on` finds SDEI in firmware and powers off as usual. Serial
//! logs: target/test-logs/sdei-*.log.

mod common;

use common::linux::{block, Checks};
use common::{Boot, Run, ShellMarker};

const GUEST: &str = "sdei";

fn assert_passed(run: &Run) {
    let failed: Vec<&str> = run.log.lines().filter(|l| l.contains("CAIRN-TEST") && l.contains("FAIL")).collect();
    assert!(
        failed.is_empty() && run.count("CAIRN-TEST sdei result: pass") > 0 && run.status == Some(0),
        "the sdei guest did not pass:\n{}\nQEMU's status {:?}; serial log: {}",
        failed.join("\n"),
        run.status,
        run.where_to_look()
    );
}

fn sdei_on(gic: u8) {
    let run =
        Boot::new(&format!("sdei-on-gicv{gic}")).smp(2).gic(gic).guest(GUEST).bootargs("cairn.sdei=on expect=on").run();
    assert_passed(&run);
}

#[test]
fn the_whole_interface_with_sdei_on_gicv3() {
    sdei_on(3);
}

#[test]
fn the_whole_interface_with_sdei_on_gicv2() {
    sdei_on(2);
}

/// The same with Cairn saving, scrambling and restoring every vCPU at every exit, its SDEI
/// state (registrations, mask, handlers running) included.
#[test]
fn the_whole_interface_under_a_save_restore_at_every_exit() {
    let run = Boot::new("sdei-on-save-restore")
        .smp(2)
        .guest(GUEST)
        .append("selftest=save-restore")
        .bootargs("cairn.sdei=on expect=on")
        .run();
    assert_passed(&run);
    assert!(run.count("did not round-trip") == 0, "a round trip failed: {}", run.where_to_look());
}

#[test]
fn every_sdei_call_is_not_supported_with_sdei_off() {
    let run = Boot::new("sdei-off").smp(2).guest(GUEST).bootargs("expect=off").run();
    assert_passed(&run);
}

/// Linux probes SDEI at boot (VERSION, then the resets on every CPU) and masks and
/// unmasks it around CPU hotplug, idle and suspend-to-RAM, and resets it to reboot.
#[test]
fn linux_finds_sdei_in_firmware() {
    let mut s = Boot::new("sdei-linux").linux().smp(2).bootargs("cairn.sdei=on").spawn();
    let mut c = Checks::new();
    s.wait_for_shell();
    // Its dmesg lines look like the kernel's own: read them whole, not as a value.
    let found = s.sh("dmesg | grep -i 'sdei' || true");
    c.check(
        "Linux finds SDEIv1.1 with Cairn's vendor code",
        found.contains("SDEIv1.1 (0x43414952) detected in firmware"),
        || block(&found),
    );
    let hotplug = s.sh_value("echo 0 > /sys/devices/system/cpu/cpu1/online; echo 1 > /sys/devices/system/cpu/cpu1/online; cat /sys/devices/system/cpu/online");
    c.check("CPU 1 goes off and on again", hotplug.ends_with("0-1"), || block(&hotplug));
    // Suspend-to-RAM: Linux masks SDEI on the way down and unmasks it on the way up.
    s.sh("echo +2 > /sys/class/rtc/rtc0/wakealarm && echo mem > /sys/power/state");
    let online = s.sh_value("cat /sys/devices/system/cpu/online");
    c.check("both CPUs back after suspend-to-RAM", online == "0-1", || format!("    online: {online}"));
    let errors = s.sh_value("dmesg | grep -ciE 'sdei.*(fail|err)|BUG:|Oops' || true");
    c.check("no SDEI error or oops", errors == "0", || format!("    {errors}"));
    // A reboot resets SDEI from Linux's reboot notifier, and the next boot finds it again.
    let rebooted = s.mark();
    s.send_line("reboot -f");
    s.wait_for_since(rebooted, ShellMarker("CAIRN-GUEST: linux up"));
    s.wait_for_shell();
    let again = s.sh("dmesg | grep -i 'sdei' || true");
    c.check("after a reboot Linux finds SDEI again", again.contains("SDEIv1.1"), || block(&again));
    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("it powers off and QEMU exits 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}
