//! Cairn boots at EL2 on QEMU virt, brings every CPU online, runs a bare-metal guest under
//! stage 2 and answers its hypercalls; SYSTEM_OFF from the last VM ends QEMU with status 0.

mod common;

use common::Boot;

fn hypercalls_on(smp: usize, gic: u8) {
    let run = Boot::new(&format!("hypercalls-smp{smp}-gicv{gic}")).smp(smp).gic(gic).guest("hypercalls").run();
    run.assert_clean_exit();
    for cpu in 0..smp {
        run.assert_contains(&format!("cairn[cpu{cpu}] INFO  cpu{cpu} online (MPIDR {cpu:#x})"));
    }
    run.assert_contains(&format!("all {smp} CPUs online"));
    run.assert_contains(&format!("GICv{gic}"));
    run.assert_guest_passed("hypercalls");
    run.assert_contains("vm0: system event: shutdown");
    run.assert_contains("no VM left: powering the machine off");
    check_memory_line(&run);
}

/// RAM QEMU gives the machine in these tests (`Boot`'s default `-m 1G`), in MiB.
const MACHINE_RAM_MIB: u64 = 1024;

/// Cairn's memory line accounts for all of RAM (guest + Cairn + pristine images), and the
/// heap's live bytes fit in the heap.
fn check_memory_line(run: &common::Run) {
    const PREFIX: &str = "vm0: memory: ";
    let line = run.log.lines().find_map(|l| l.split_once(PREFIX).map(|(_, rest)| rest)).unwrap_or_else(|| {
        panic!("no memory line in the serial log {}", run.where_to_look());
    });
    // guest MiB, Cairn MiB, image KiB, heap MiB, heap in use KiB, pristine MiB, snapshot slot
    // MiB, unused MiB
    let n: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    let [guest, cairn, image, heap, in_use, pristine, slot, unused] = n[..] else {
        panic!("unexpected memory line: {line}")
    };
    assert_eq!(guest + cairn + pristine + slot + unused, MACHINE_RAM_MIB, "all of RAM is accounted for: {line}");
    assert!(unused <= 2, "guest RAM is contiguous: only the piece below Cairn's image is left over: {line}");
    assert!(image > 0 && in_use > 0 && in_use < heap * 1024, "the heap's live bytes fit in it: {line}");
}

#[test]
fn hypercalls_smp1() {
    hypercalls_on(1, 3);
}

#[test]
fn hypercalls_smp2_gicv2() {
    hypercalls_on(2, 2);
}

#[test]
fn hypercalls_smp4() {
    hypercalls_on(4, 3);
}

#[test]
fn hypercalls_smp8() {
    hypercalls_on(8, 3);
}

#[test]
fn log_level_comes_from_cairn_bootargs() {
    let quiet = Boot::new("loglevel-warn").append("loglevel=warn").guest("hypercalls").run();
    quiet.assert_clean_exit();
    quiet.assert_guest_passed("hypercalls");
    assert_eq!(quiet.count("cairn[cpu"), 0, "loglevel=warn hides info lines:\n{}", quiet.log);
    let verbose = Boot::new("loglevel-debug").append("loglevel=debug").guest("hypercalls").run();
    verbose.assert_contains("DEBUG");
}

#[test]
fn refuses_to_run_below_el2() {
    let run = Boot::new("started-at-el1").no_virtualization().guest("hypercalls").run();
    run.assert_clean_exit();
    run.assert_contains("needs EL2");
    run.assert_contains("virtualization=on");
    assert!(run.count("CAIRN-TEST") == 0, "no guest may run:\n{}", run.log);
}

#[test]
fn says_what_to_do_without_a_guest() {
    let run = Boot::new("no-guest").smp(2).run();
    run.assert_clean_exit();
    run.assert_contains("no guest to run");
    run.assert_contains("guest-loader");
}

#[test]
fn el2_fault_is_reported_decoded_and_stops_the_machine() {
    let run = Boot::new("el2-fault").append("selftest=el2-fault").guest("hypercalls").run();
    run.assert_clean_exit();
    run.assert_contains("FATAL: synchronous exception at EL2: data abort at EL2 (EC 0x25)");
    run.assert_contains("FAR_EL2=0xdead0000000");
    run.assert_contains("stopping the machine");
    assert!(run.count("CAIRN-TEST") == 0, "no guest may run after the fault:\n{}", run.log);
}

/// A test that gives up waiting says where every CPU was, Cairn's own by function: here
/// CPU 1, which no VM uses, idles at EL2 in Cairn's wait for a vCPU to start.
#[test]
fn a_test_that_gives_up_names_where_each_cpu_was() {
    let mut s = Boot::new("hang-report").smp(2).guest("counter").bootargs("cairn.cpus=0 cairn.mem=64M").spawn();
    s.wait_for("vCPUs count");
    let gave_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.wait_for_within("a line nobody prints", std::time::Duration::from_secs(2));
    }));
    let payload = gave_up.expect_err("the wait gives up");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    let report = message.split("--- CPUs when the test gave up ---\n").nth(1).unwrap_or_else(|| {
        panic!("no CPU report in the failure message:\n{message}");
    });
    let cpu1: Vec<&str> = report.lines().skip_while(|l| !l.starts_with("cpu1 ")).take(2).collect();
    assert!(cpu1.first().is_some_and(|l| l.contains(" EL2")), "CPU 1 is at EL2:\n{report}");
    assert!(
        cpu1.get(1).is_some_and(|l| l.contains("in Cairn: ") && l.contains("cairn::run::")),
        "its PC is named in Cairn's run loop:\n{report}"
    );
}
