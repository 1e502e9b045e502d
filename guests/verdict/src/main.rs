//! Test guest: how a VM ends, for Cairn's CI verdicts (QEMU's exit status with
//! `exit=semihosting`). One scenario per boot, named by `scenario=` in the guest's bootargs:
//! - `off`: SYSTEM_OFF at once (status 0);
//! - `status5`: EXIT_STATUS(5), checks SUCCESS, then SYSTEM_OFF (status 5);
//! - `status64`: EXIT_STATUS(64), checks INVALID_PARAMETERS (-2), then SYSTEM_OFF
//!   (status 0: nothing was recorded);
//! - `crash`: points VBAR_EL1 outside its memory and takes an exception (status 64);
//! - `spin`: spins forever with interrupts masked (status 66 with `cairn.timeout`);
//! - `idle`: waits in WFI with interrupts masked, forever (status 66 with `cairn.timeout`);
//! - `spin-off`: CPU 1 spins forever with interrupts masked while the boot CPU turns itself
//!   off (status 66 with `cairn.timeout`: Cairn's timer is on the boot vCPU's CPU);
//! - `reset`: SYSTEM_RESET (status 65 with `cairn.on-reset=fail`, 0 with `stop`; with the
//!   default `restart` it resets on every boot, so the tests never run it so).
#![no_std]
#![no_main]

use guestkit::spec::psci::{CPU_OFF, SYSTEM_RESET};
use guestkit::spec::smccc::VENDOR_HYP_EXIT_STATUS;
use guestkit::{guest_main, println, smccc, smp};

guest_main!(run);

const NAME: &str = "verdict";
const SCENARIO_ARG: &str = "scenario=";
/// PSCI INVALID_PARAMETERS (DEN0022 §5.2.2), which EXIT_STATUS answers above 63.
const INVALID_PARAMETERS: i64 = -2;
/// The status the `status5` scenario sets, and the one `status64` asks for (one too many).
const STATUS_SET: u64 = 5;
const STATUS_TOO_LARGE: u64 = 64;
/// An address outside any guest RAM on QEMU virt: VBAR_EL1 there makes every exception
/// fault at its own vector.
const UNMAPPED_VBAR: u64 = 0x20_0000_0000;
/// The scenarios, by name.
const SCENARIOS: [&str; 8] = ["off", "status5", "status64", "crash", "spin", "spin-off", "idle", "reset"];
/// The CPU the `spin-off` scenario leaves spinning.
const SPINNER: usize = 1;

/// The scenario `scenario=` names in the bootargs (/chosen/bootargs); `off` by default.
fn scenario(dtb: usize) -> &'static str {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.ok();
    let args = fdt.as_ref().and_then(|f| f.chosen().bootargs()).unwrap_or("");
    // The tests check that Cairn took its `cairn.*` words out.
    println!("CAIRN-TEST {NAME} bootargs: \"{args}\"");
    let named = args.split_whitespace().find_map(|w| w.strip_prefix(SCENARIO_ARG)).unwrap_or(SCENARIOS[0]);
    SCENARIOS.iter().copied().find(|s| *s == named).unwrap_or(SCENARIOS[0])
}

fn exit_status(status: u64) -> i64 {
    smccc::hvc0(u64::from(VENDOR_HYP_EXIT_STATUS), status, 0, 0) as i64
}

fn run(dtb: usize) {
    let which = scenario(dtb);
    println!("CAIRN-TEST {NAME} start: scenario {which}");
    match which {
        "status5" => {
            let r = exit_status(STATUS_SET);
            println!("CAIRN-TEST {NAME} EXIT_STATUS({STATUS_SET}) answered {r}");
        }
        "status64" => {
            let r = exit_status(STATUS_TOO_LARGE);
            let verdict = if r == INVALID_PARAMETERS { "ok" } else { "FAIL" };
            println!("CAIRN-TEST {NAME} EXIT_STATUS({STATUS_TOO_LARGE}) answered {r}: {verdict}");
        }
        "crash" => crash(),
        "spin" => spin(),
        "idle" => idle(),
        "spin-off" => spin_elsewhere_and_turn_off(dtb),
        "reset" => reset(),
        _ => {}
    }
    println!("CAIRN-TEST {NAME} powering off");
    smccc::system_off();
}

/// Every exception faults at its own vector: the VM cannot go on.
fn crash() -> ! {
    println!("CAIRN-TEST {NAME} crashing on purpose");
    // SAFETY: not safe for the guest, and meant not to be: the UDF's exception is taken at
    // an unmapped vector, which Cairn reports as a crash.
    unsafe { core::arch::asm!("msr vbar_el1, {}", "isb", "udf #0", in(reg) UNMAPPED_VBAR, options(noreturn)) }
}

/// Spins with every interrupt masked: only Cairn's own timer can end this.
fn spin() -> ! {
    println!("CAIRN-TEST {NAME} spinning with interrupts masked");
    // SAFETY: masking the guest's own interrupts affects nothing else.
    unsafe { core::arch::asm!("msr daifset, #0xf") };
    loop {
        core::hint::spin_loop();
    }
}

/// Waits for an interrupt that never comes, forever: only Cairn's timer can end this.
fn idle() -> ! {
    println!("CAIRN-TEST {NAME} idling in WFI with interrupts masked");
    // SAFETY: masking the guest's own interrupts affects nothing else.
    unsafe { core::arch::asm!("msr daifset, #0xf") };
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi") };
    }
}

/// Leaves CPU 1 spinning with its interrupts masked and turns the boot CPU off.
fn spin_elsewhere_and_turn_off(dtb: usize) {
    let cpus = smp::cpus(dtb);
    if cpus.count() <= SPINNER {
        println!("CAIRN-TEST {NAME} spin-off needs 2 CPUs: FAIL");
        return;
    }
    let r = smp::start(SPINNER, cpus.mpidr(SPINNER), |_| spin());
    println!("CAIRN-TEST {NAME} CPU_ON answered {r}; the boot CPU turns itself off");
    smccc::hvc0(u64::from(CPU_OFF), 0, 0, 0);
    println!("CAIRN-TEST {NAME} CPU_OFF returned: FAIL");
}

/// SYSTEM_RESET, which must not return.
fn reset() {
    println!("CAIRN-TEST {NAME} resetting");
    smccc::hvc0(u64::from(SYSTEM_RESET), 0, 0, 0);
    println!("CAIRN-TEST {NAME} SYSTEM_RESET returned");
}
