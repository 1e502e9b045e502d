//! Board facts the device tree does not give, one file per board, as data: which board a
//! tree describes (its root `compatible`), and which devices Cairn keeps for itself
//! rather than passing to the guest, with the few register writes Cairn makes to them
//! (bare-metal target only). Everything else (memory, CPUs and how to start them,
//! GIC frames, UART) comes from the device tree; the core never asks which board it is on.

#[cfg(target_os = "none")]
mod power;
pub mod qemu_virt;
pub mod rpi4;

#[cfg(target_os = "none")]
pub use power::{end_with_verdict, fail, power_off, set_power_off, use_semihosting_exit};

/// A device Cairn owns on a board: found by `compatible`, kept out of the guest's device
/// tree and stage 2, mapped at EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedDevice {
    pub compatible: &'static [&'static str],
    /// What Cairn uses it for.
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Powers the machine off when no PSCI firmware can (the Pi's PM watchdog).
    PowerOff(PowerOffMethod),
}

/// How a power controller turns the machine off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOffMethod {
    /// Broadcom's PM block: reset into the firmware's halt partition (rpi4.rs).
    Bcm2835Halt,
}

/// One board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    pub name: &'static str,
    /// Root `compatible` strings that mean this board.
    pub compatible: &'static [&'static str],
    pub owned: &'static [OwnedDevice],
}

/// Every board Cairn knows beyond what its device tree says.
pub const BOARDS: &[Board] = &[qemu_virt::BOARD, rpi4::BOARD];

/// The board whose root `compatible` matches, if Cairn knows it; `root_has` says whether
/// the tree's root lists a value.
pub fn board_for(root_has: impl Fn(&str) -> bool) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.compatible.iter().any(|c| root_has(c)))
}

/// Every `compatible` Cairn keeps from guests on any board (a guest tree drops these nodes).
pub fn owned_compatibles(board: Option<&Board>) -> impl Iterator<Item = &'static str> + '_ {
    board.into_iter().flat_map(|b| b.owned.iter()).flat_map(|d| d.compatible.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_are_found_by_root_compatible() {
        let root = |list: &'static [&'static str]| move |c: &str| list.contains(&c);
        assert_eq!(board_for(root(&["raspberrypi,4-model-b", "brcm,bcm2711"])).map(|b| b.name), Some("Raspberry Pi 4"));
        assert_eq!(board_for(root(&["linux,dummy-virt"])).map(|b| b.name), Some("QEMU virt"));
        assert_eq!(board_for(root(&["acme,unknown"])), None);
        let pi = board_for(root(&["brcm,bcm2711"]));
        assert!(owned_compatibles(pi).any(|c| c == "brcm,bcm2835-pm-wdt"));
        assert_eq!(owned_compatibles(board_for(root(&["linux,dummy-virt"]))).count(), 0);
    }
}
