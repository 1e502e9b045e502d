//! Cairn's virtual GIC as bare-metal guests see it, on GICv3 and GICv2:
//! - guests/vgic-sgi: SGIs between vCPUs (one by one, all-but-self) and a WFI with
//!   PSTATE.I set that an SGI must wake;
//! - guests/vgic-timer: the virtual timer's PPI, masked, unmasked, disabled at the GIC,
//!   and waking WFI; expired while masked, then re-armed into the future, it no longer
//!   ends a CPU_SUSPEND standby (its level-sensitive line dropped);
//! - guests/vgic-lr: more interrupts pending at once than there are list registers, each
//!   delivered exactly once and in priority order, including a forwarded one (the timer)
//!   behind more urgent SGIs.
//!
//! Each guest also boots natively (straight in QEMU at EL1, no Cairn), which checks the
//! guest itself: a failure there is the guest's fault, not Cairn's.

mod common;

use common::{Boot, Run};

/// A guest line that is not an ok check, a note, the start line or the pass line: a
/// failed check, an unexpected exception or IRQ, a panic, an IRQ storm.
fn is_bad_news(line: &str) -> bool {
    let Some(at) = line.find("CAIRN-TEST ") else { return false };
    let text = &line[at..];
    !(text.ends_with(": ok") || text.ends_with(" start") || text.contains(" note: ") || text.contains(" result: pass"))
}

/// Fails with the failed checks and the guest's last words instead of the whole log,
/// then applies the harness's own assertions.
fn assert_passed(run: &Run, guest: &str, setup: &str) {
    let failed: Vec<&str> = run.log.lines().filter(|l| is_bad_news(l)).collect();
    let passed = run.count(&format!("CAIRN-TEST {guest} result: pass")) > 0;
    if !run.timed_out && run.status == Some(0) && failed.is_empty() && passed {
        return;
    }
    let last = run.log.lines().rfind(|l| l.contains("CAIRN-TEST")).unwrap_or("(none: the guest never printed)");
    let exit = if run.timed_out { "killed after the harness timeout".to_string() } else { format!("{:?}", run.status) };
    panic!(
        "{guest} did not pass {setup}.\nfailed checks:\n  {}\nlast guest line: {last}\nQEMU exit: {exit}\nserial log: {}",
        if failed.is_empty() { "(none printed)".to_string() } else { failed.join("\n  ") },
        run.where_to_look()
    );
}

fn under_cairn(guest: &str, smp: usize, gic: u8) {
    let run = Boot::new(&format!("{guest}-smp{smp}-gicv{gic}")).smp(smp).gic(gic).guest(guest).run();
    assert_passed(&run, guest, &format!("under Cairn (smp {smp}, GICv{gic})"));
    run.assert_clean_exit();
    run.assert_guest_passed(guest);
}

fn native(guest: &str, smp: usize, gic: u8) {
    let run = Boot::new(&format!("native-{guest}-smp{smp}-gicv{gic}")).native().smp(smp).gic(gic).guest(guest).run();
    assert_passed(&run, guest, &format!("natively, without Cairn (smp {smp}, GICv{gic}): the guest itself is wrong"));
    run.assert_clean_exit();
    run.assert_guest_passed(guest);
}

#[test]
fn vgic_sgi_smp2_gicv3() {
    under_cairn("vgic-sgi", 2, 3);
}

#[test]
fn vgic_sgi_smp4_gicv3() {
    under_cairn("vgic-sgi", 4, 3);
}

#[test]
fn vgic_sgi_smp2_gicv2() {
    under_cairn("vgic-sgi", 2, 2);
}

#[test]
fn vgic_sgi_smp4_gicv2() {
    under_cairn("vgic-sgi", 4, 2);
}

#[test]
fn vgic_timer_gicv3() {
    under_cairn("vgic-timer", 1, 3);
}

#[test]
fn vgic_timer_gicv2() {
    under_cairn("vgic-timer", 1, 2);
}

#[test]
fn vgic_lr_gicv3() {
    under_cairn("vgic-lr", 1, 3);
}

#[test]
fn vgic_lr_gicv2() {
    under_cairn("vgic-lr", 1, 2);
}

#[test]
fn native_vgic_sgi_smp4_gicv2() {
    native("vgic-sgi", 4, 2);
}

#[test]
fn native_vgic_timer_gicv3() {
    native("vgic-timer", 1, 3);
}

#[test]
fn native_vgic_lr_gicv3() {
    native("vgic-lr", 1, 3);
}
