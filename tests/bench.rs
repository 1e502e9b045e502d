//! The benchmark instrument works: guests/bench boots under Cairn (GICv3, 2 vCPUs, QEMU's
//! `-icount shift=0` as scripts/bench runs it) and prints every figure with a positive
//! value, and passes its own checks. No performance threshold: scripts/bench is where
//! the numbers are read and compared with native.

mod common;

use common::Boot;

const GUEST: &str = "bench";
/// Every figure the guest measures under Cairn on GICv3 with two vCPUs.
const FIGURES: [&str; 10] = [
    "hvc-psci-version",
    "smc-psci-version",
    "hvc-vendor-revision",
    "gicd-typer-read",
    "icc-sgi1r-write",
    "timer-irq-latency",
    "timer-eoi",
    "sdei-event-round-trip",
    "virtual-ipi",
    "wfi-wake",
];

/// The `key=value` fields of figure `name`'s `CAIRN-BENCH` line, if there is one.
fn figure<'a>(log: &'a str, name: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let prefix = format!("CAIRN-BENCH {name} ");
    let line = log.lines().find_map(|l| l.find(&prefix).map(|at| &l[at + prefix.len()..]))?;
    Some(line.split_whitespace().filter_map(|field| field.split_once('=')).collect())
}

fn positive(fields: &[(&str, &str)], key: &str) -> bool {
    fields.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0)
}

#[test]
fn bench_guest_measures_every_figure_under_cairn() {
    let run = Boot::new("bench-smp2-gicv3-icount")
        .smp(2)
        .gic(3)
        .guest(GUEST)
        .bootargs("cairn.sdei=on")
        .qemu_args(&["-icount", "shift=0"])
        .run();
    let context = format!("(serial log: {})", run.where_to_look());
    run.assert_contains("hypervisor=cairn");
    let mut wrong = Vec::new();
    for name in FIGURES {
        match figure(&run.log, name) {
            None => wrong.push(format!("{name}: no `CAIRN-BENCH {name} ticks=...` line")),
            Some(fields) => {
                for key in ["ticks", "ns", "iterations"] {
                    if !positive(&fields, key) {
                        wrong.push(format!("{name}: {key} missing or not positive in {fields:?}"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "figures missing or wrong {context}:\n  {}", wrong.join("\n  "));
    run.assert_guest_passed(GUEST);
    run.assert_clean_exit();
}
