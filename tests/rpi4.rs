//! Cairn on the Raspberry Pi 4, proven on QEMU's raspi4b (Cairn loaded at EL2 as the
//! Pi's firmware would, secondaries parked on spin tables, GIC-400, no PSCI firmware):
//! - Cairn releases every CPU through its spin table and all four report in;
//! - the bare-metal PSCI, vGIC and hostile test guests of virt pass unchanged, handed
//!   over in a guest bundle loaded as the initramfs;
//! - Debian's arm64 kernel, on the Pi 4 device tree as Cairn adjusts it, reaches its
//!   shell with 4 vCPUs; `reboot -f` restarts it and `poweroff -f` ends QEMU with 0
//!   (through the PM watchdog, Cairn's own power-off on a board without PSCI); long
//!   lines typed into its interrupt-driven console come back whole;
//! - the SD-card image builds and its boot partition holds what the firmware needs.
//!
//! The guest device tree comes from scripts/qemu-raspi4b-dtb (Debian's Pi 4 tree with
//! the devices QEMU does not model disabled). Serial logs: target/test-logs/rpi4-*.log.

mod common;

use std::process::Command;
use std::time::Duration;

use common::linux::{echo_console_line, CONSOLE_LINES, MARKER};
use common::{re, root, Boot, Run};

/// Debian's kernel on QEMU raspi4b takes several seconds to its shell; leave room for a
/// loaded machine.
const LINUX_WAIT: Duration = Duration::from_secs(180);

fn boot(name: &str) -> Boot {
    Boot::new(&format!("rpi4-{name}")).raspi4b()
}

/// Fails unless the bare-metal guest passed: its verdict line, no failed check, QEMU
/// ended by the guest's SYSTEM_OFF.
fn assert_passed(run: &Run, guest: &str) {
    let failed: Vec<&str> = run.log.lines().filter(|l| l.contains("CAIRN-TEST") && l.contains(": FAIL")).collect();
    assert!(
        failed.is_empty() && run.count(&format!("CAIRN-TEST {guest} result: pass")) > 0,
        "{guest} did not pass on raspi4b; failed checks:\n  {}\nserial log: {}",
        failed.join("\n  "),
        run.where_to_look()
    );
    run.assert_clean_exit();
}

#[test]
fn rpi4_cairn_releases_every_cpu_from_its_spin_table() {
    let run = boot("cpus").guest("hypercalls").run();
    run.assert_contains("Cairn 0.1.0 at EL2: 4 CPUs");
    for cpu in 1..4 {
        run.assert_contains(&format!("cpu{cpu} online (MPIDR {cpu:#x})"));
    }
    run.assert_contains("all 4 CPUs online");
    run.assert_contains("guest bundle at");
    assert_passed(&run, "hypercalls");
}

#[test]
fn rpi4_psci_guest_passes() {
    assert_passed(&boot("psci").guest("psci").run(), "psci");
}

#[test]
fn rpi4_vgic_guests_pass() {
    for guest in ["vgic-sgi", "vgic-timer", "vgic-lr"] {
        assert_passed(&boot(guest).guest(guest).run(), guest);
    }
}

/// The misbehaving guest of tests/hostile.rs, on the Pi's GIC-400 and memory map.
#[test]
fn rpi4_hostile_guest_passes() {
    assert_passed(&boot("hostile").guest("hostile").run(), "hostile");
}

#[test]
fn rpi4_linux_boots_on_4_vcpus_reboots_and_powers_off() {
    let mut s = boot("linux").linux().wait_timeout(LINUX_WAIT).spawn();
    let marker = s.wait_for(re(&format!(r"{MARKER} \(\d+ CPUs\)")));
    assert!(marker.contains("(4 CPUs)"), "all four vCPUs online: {marker}{}", s.context());
    s.wait_for_shell();
    assert_eq!(s.sh_value("cat /sys/devices/system/cpu/online"), "0-3", "{}", s.context());
    let psci = s.sh("dmesg | grep -i psci");
    assert!(psci.contains("PSCIv1.1 detected"), "Cairn's PSCI, not the board's spin tables:\n{psci}{}", s.context());
    let gic = s.sh("cat /proc/interrupts");
    assert!(gic.contains("GIC-0"), "the guest drives the (virtual) GIC-400:\n{gic}{}", s.context());
    for n in 0..CONSOLE_LINES {
        let (line, echoed) = echo_console_line(&mut s, n);
        assert_eq!(echoed, line, "a typed line comes back whole through the Pi's PL011{}", s.context());
    }
    s.send_line("reboot -f");
    s.wait_for("vm0: system event: reset (PSCI SYSTEM_RESET)");
    s.wait_for(re(&format!(r"{MARKER} \(4 CPUs\)")));
    s.wait_for_shell();
    s.send_line("poweroff -f");
    s.wait_for("vm0: system event: shutdown (PSCI SYSTEM_OFF)");
    s.expect_exit(0);
}

/// The SD-card image builds, and its FAT boot partition holds the GPU firmware, the
/// board's device tree, config.txt asking for 64-bit Cairn with the GIC and the UART,
/// Cairn and the guest bundle.
#[test]
fn rpi4_sd_card_image_has_the_boot_files() {
    let out = root().join("target/images/test-cairn-rpi4.img");
    let built = Command::new(root().join("scripts/sd-image")).arg("-o").arg(&out).output().expect("sd-image runs");
    assert!(built.status.success(), "scripts/sd-image failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let list = Command::new(root().join("scripts/sd-image")).arg("--list").arg(&out).output().unwrap();
    let listing = String::from_utf8_lossy(&list.stdout).to_lowercase();
    for file in ["start4", "fixup4", "bcm2711-rpi-4-b", "config", "cairn8", "cairn-guest"] {
        assert!(listing.contains(file), "{file} missing from the boot partition:\n{listing}");
    }
    let config =
        Command::new(root().join("scripts/sd-image")).arg("--cat").arg(&out).arg("config.txt").output().unwrap();
    let config = String::from_utf8_lossy(&config.stdout);
    for line in ["arm_64bit=1", "kernel=cairn8.img", "enable_gic=1", "enable_uart=1"] {
        assert!(config.lines().any(|l| l.trim() == line), "config.txt lacks {line}:\n{config}");
    }
    assert!(config.contains("initramfs cairn-guest.cpio"), "config.txt loads the bundle:\n{config}");
}

/// Two VMs from one guest bundle (`cairn-guest/<name>/`): Debian's Linux on CPUs 0-2 with
/// the PL011 as its console, and the bare-metal hypercalls guest on CPU 3 with 64 MiB and
/// the mini UART (`devices=serial@7e215040` in its vm.conf; Cairn logs there too). Both run:
/// the guest passes, Linux reaches its shell with 3 CPUs and answers, and the machine
/// ends with status 0 once both are off.
#[test]
fn rpi4_two_vms_from_one_bundle() {
    let linux = common::linux_guest();
    let bundle = root().join("target/test-bundles/rpi4-two-vms.cpio");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let status = Command::new(root().join("scripts/guest-bundle"))
        .args(["--vm", "linux", "--kernel"])
        .arg(&linux.kernel)
        .arg("--initrd")
        .arg(&linux.initrd)
        .args(["--append", "console=ttyAMA0", "--cpus", "0-2"])
        .args(["--vm", "bare", "--kernel"])
        .arg(common::guest("hypercalls"))
        .args(["--initrd", "none", "--cpus", "3", "--mem", "64M", "--devices", "serial@7e215040", "-o"])
        .arg(&bundle)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/guest-bundle runs");
    assert!(status.success(), "scripts/guest-bundle failed");
    let mut s = boot("two-vms").bundle_file(&bundle).wait_timeout(LINUX_WAIT).spawn();
    s.wait_for("CAIRN-TEST hypercalls result: pass");
    let marker = s.wait_for(re(&format!(r"{MARKER} \(\d+ CPUs\)")));
    assert!(marker.contains("(3 CPUs)"), "Linux has its three CPUs: {marker}{}", s.context());
    s.wait_for_shell();
    assert_eq!(s.sh_value("cat /sys/devices/system/cpu/online"), "0-2", "{}", s.context());
    let log = s.log();
    assert!(log.contains("vm0 (linux): ") && log.contains("vm1 (bare): "), "both VMs built{}", s.context());
    assert!(log.contains("1 vCPUs on CPUs 3, 64 MiB RAM"), "the bare-metal VM's share{}", s.context());
    s.send_line("poweroff -f");
    s.wait_for("vm0: system event: shutdown (PSCI SYSTEM_OFF)");
    s.expect_exit(0);
}
