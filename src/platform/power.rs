//! Turning the whole machine off: through the firmware's PSCI SYSTEM_OFF where the device
//! tree names one, else through a power controller the board data names (the Pi's PM
//! watchdog, rpi4.rs), else by parking every CPU. Told how once, at boot; used by the run
//! loop when the last VM is gone and by Cairn's own fault paths. Bare-metal target only.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{rpi4, PowerOffMethod, Role};
use crate::arch::aarch64::exit::Conduit;
use crate::arch::aarch64::{cpu, firmware, semihosting};
use crate::console;
use crate::mm::Region;
use crate::verdict::{status, VERDICT};

/// How this machine powers off.
struct PowerOff {
    psci: Option<Conduit>,
    controllers: Vec<(Role, Region)>,
}

static HOW: spin::Once<PowerOff> = spin::Once::new();

/// Records how the machine powers off: the firmware's PSCI conduit, if any, and the board's
/// devices Cairn owns (those with a power-off role are used).
pub fn set_power_off(psci: Option<Conduit>, owned: &[(Role, Region)]) {
    HOW.call_once(|| PowerOff { psci, controllers: owned.to_vec() });
}

/// Set when `exit=semihosting` is on and QEMU answers semihosting: the machine ends with
/// a status (crate::verdict) instead of powering off.
static SEMIHOSTING_EXIT: AtomicBool = AtomicBool::new(false);

/// Makes the machine's end a semihosting exit with a status.
pub fn use_semihosting_exit() {
    SEMIHOSTING_EXIT.store(true, Ordering::SeqCst);
}

/// The last VM is gone: ends the machine with the VMs' verdict (with `exit=semihosting`),
/// else powers it off as always.
pub fn end_with_verdict() -> ! {
    if SEMIHOSTING_EXIT.load(Ordering::SeqCst) {
        let (code, line) = {
            let v = VERDICT.lock();
            (v.status(), alloc::string::String::from(v.line()))
        };
        console::print_line(format_args!("cairn: {line}"));
        semihosting::exit(code);
    }
    log::info!("no VM left: powering the machine off");
    power_off()
}

/// Cairn itself failed (`what`, already reported): ends the machine with status 70
/// (with `exit=semihosting`), else powers it off as always. Safe from fault paths: it
/// takes no lock.
pub fn fail(what: &str) -> ! {
    if SEMIHOSTING_EXIT.load(Ordering::SeqCst) {
        console::print_line_unlocked(format_args!("cairn: exit {}: Cairn failed: {what}", status::CAIRN_FAILED));
        semihosting::exit(status::CAIRN_FAILED);
    }
    power_off()
}

/// Stops the whole machine.
pub fn power_off() -> ! {
    if let Some(how) = HOW.get() {
        if let Some(conduit) = how.psci {
            firmware::system_off(conduit);
        }
        for &(role, region) in &how.controllers {
            match role {
                Role::PowerOff(PowerOffMethod::Bcm2835Halt) => rpi4::bcm2835_halt(region.base as usize),
            }
        }
    }
    loop {
        cpu::wait_for_event();
    }
}
