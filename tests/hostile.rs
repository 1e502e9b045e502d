//! A guest that misbehaves on purpose (guests/hostile): accesses outside its memory,
//! accesses to the emulated GIC Cairn cannot emulate, cache maintenance on devices, every
//! offset of the distributor and redistributors read and written at every width, SGIs with
//! every target bit set. Each gets an injected abort or completes as the GIC architecture
//! allows, Cairn keeps serving the VM, and the VM's SYSTEM_OFF still ends QEMU cleanly.

mod common;

use common::Boot;

fn hostile_on(gic: u8) {
    const SMP: usize = 2;
    let run = Boot::new(&format!("hostile-smp{SMP}-gicv{gic}")).smp(SMP).gic(gic).guest("hostile").run();
    run.assert_clean_exit();
    run.assert_guest_passed("hostile");
    run.assert_contains("vm0: system event: shutdown");
    for trouble in ["PANIC", "FATAL", "ERROR", "WARN"] {
        run.assert_lacks(&format!("] {trouble}"));
    }
}

#[test]
fn hostile_guest_gicv3() {
    hostile_on(3);
}

#[test]
fn hostile_guest_gicv2() {
    hostile_on(2);
}
