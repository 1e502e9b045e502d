//! Turning the whole machine off: through the firmware's PSCI SYSTEM_OFF where the device
//! tree names one, else through a power controller the board data names (the Pi's PM
//! watchdog, rpi4.rs), else by parking every CPU. Told how once, at boot; used by the run
//! loop when the last VM is gone and by Cairn's own fault paths. Bare-metal target only.

use alloc::vec::Vec;

use super::{rpi4, PowerOffMethod, Role};
use crate::arch::aarch64::exit::Conduit;
use crate::arch::aarch64::{cpu, firmware};
use crate::mm::Region;

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
