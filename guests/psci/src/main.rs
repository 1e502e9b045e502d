//! Test guest: Cairn's PSCI (Arm DEN0022) and SMCCC (Arm DEN0028) firmware, for the
//! PSCI version the VM was given (Cairn's `psci=` bootarg).
//!
//! The version comes from the guest's own device tree: `/psci` compatible with
//! "arm,psci-1.0" means 1.x (PSCI_VERSION tells 1.0 from 1.1), "arm,psci-0.2" alone 0.2,
//! "arm,psci" alone 0.1, whose function IDs are the node's `cpu_on`, `cpu_off`,
//! `cpu_suspend` and `migrate` properties. The guest prints the version it found in a
//! note, for the test harness to compare with what it asked for.
//!
//! Every check goes through both conduits, HVC and SMC, unless it changes global state:
//! - PSCI_VERSION, MIGRATE*, PSCI_FEATURES, SYSTEM_RESET2 with an invalid type, and every
//!   PSCI function the version lacks or Cairn does not implement (functions.rs);
//! - SMCCC_VERSION, ARCH_FEATURES and the workarounds, TRNG, the vendor hypervisor UID and
//!   revision, x4-x17 preservation (services.rs); unknown IDs of every owner (unknown.rs);
//! - CPU_SUSPEND standby, refused power states and entries, powerdown resuming at the
//!   entry (suspend.rs);
//! - CPU_ON, CPU_OFF and AFFINITY_INFO over every vCPU, refused targets and entries, and
//!   racing CPU_ONs (smp.rs).
//!
//! Ends with SYSTEM_OFF from 0.2 on, with a secondary still running. PSCI 0.1 has no
//! SYSTEM_OFF: after the result line the guest parks and the harness ends QEMU.
#![no_std]
#![no_main]

mod calls;
mod dt;
mod entry;
mod functions;
mod services;
mod smp;
mod suspend;
mod unknown;

use core::fmt::Write;

use guestkit::{cpu, guest_main, println, Checks};

use crate::calls::{expect_all, Code, Conduit, Text};
use crate::dt::{Family, PsciIds, Version};
use guestkit::spec::psci;

const NAME: &str = "psci";

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let node = match dt::psci(dtb) {
        Ok(node) => node,
        Err(e) => {
            t.check("device-tree-psci-node", false, format_args!("{e}"));
            give_up(t)
        }
    };
    t.check("device-tree-psci-method-hvc", node.method == Some("hvc"), format_args!("method = {:?}", node.method));
    let version = match node.family {
        Family::V0_1 => Version::V0_1,
        Family::V0_2 => Version::V0_2,
        Family::V1 => {
            let encoded = Conduit::Hvc.call0(psci::PSCI_VERSION);
            match Version::from_1x(encoded) {
                Some(v) => v,
                None => {
                    let why = format_args!("\"arm,psci-1.0\" node, but PSCI_VERSION is {}", Code(encoded));
                    t.check("psci-version-is-1.0-or-1.1", false, why);
                    give_up(t)
                }
            }
        }
    };
    t.note(format_args!("PSCI version under test: {version}"));
    let ids = PsciIds::for_version(version, node.ids_0_1);
    if let Some(i) = node.ids_0_1 {
        t.note(format_args!(
            "PSCI 0.1 IDs from the device tree: cpu_on {:#x}, cpu_off {:#x}, cpu_suspend {:x?}, migrate {:x?}",
            i.cpu_on, i.cpu_off, i.cpu_suspend, i.migrate
        ));
    }
    let cpus = guestkit::smp::cpus(dtb);
    let ram = dt::ram(dtb);
    let mut regions = Text::new();
    for &(base, size) in ram.regions() {
        let _ = write!(regions, " {base:#x}+{size:#x}");
    }
    t.note(format_args!("guest RAM:{regions}"));
    let boot_mpidr = cpus.mpidr(0);
    // An entry point outside RAM for calls that must refuse one (0 if the device tree
    // names no RAM at all: the flash on QEMU virt).
    let outside_ram = ram.outside().into_iter().flatten().next().unwrap_or(0);

    functions::version(&mut t, version);
    functions::migrate(&mut t, version, &ids, boot_mpidr);
    functions::features(&mut t, version);
    functions::system_reset2(&mut t, version);
    functions::system_suspend(&mut t, version, outside_ram);
    functions::absent_functions(&mut t, version, &ids, boot_mpidr, outside_ram);
    services::arch(&mut t);
    services::trng(&mut t);
    services::vendor(&mut t);
    services::preservation(&mut t, &ids, boot_mpidr);
    unknown::run(&mut t);
    suspend::run(&mut t, dtb, &ids, version, &ram);
    let mut smp = smp::Smp::new(cpus, ids, version, ram);
    smp.run(&mut t);

    if version == Version::V0_1 {
        // SYSTEM_OFF arrived in 0.2; Cairn must not power off a 0.1 VM through it.
        expect_all(&mut t, "system-off-not-supported-in-0.1", &[psci::SYSTEM_OFF], psci::NOT_SUPPORTED, |f, c| {
            c.call0(f)
        });
        t.note(format_args!("PSCI 0.1 has no SYSTEM_OFF: the guest parks and the harness ends QEMU"));
        t.finish();
        cpu::park();
    }
    smp.leave_one_running(&mut t);
    t.finish();
    // Through SMC: every other call has been through both conduits.
    let x0 = Conduit::Smc.call0(psci::SYSTEM_OFF);
    println!("CAIRN-TEST {NAME} SYSTEM_OFF returned {}", Code(x0));
    cpu::park();
}

/// Ends early: the result line, then SYSTEM_OFF if the VM has it.
fn give_up(t: Checks) -> ! {
    t.finish();
    Conduit::Hvc.call0(psci::SYSTEM_OFF);
    cpu::park()
}

guest_main!(run);
