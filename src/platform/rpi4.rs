//! Raspberry Pi 4 (BCM2711) with the board's own firmware, and QEMU's `raspi4b`.
//!
//! From the device tree (Debian's `bcm2711-rpi-4-b.dtb`, as the firmware or QEMU adjusts
//! it): memory, CPUs released through spin tables (`cpu-release-addr`), the GIC-400's four
//! frames and its maintenance interrupt (PPI 9), the PL011 (`serial0`; stdout-path names
//! the mini UART, which Cairn does not drive), all under `/soc` with bus addresses that
//! `ranges` translate (dt.rs). What the tree does not say: the firmware has no PSCI, so
//! the machine powers off through the PM block's watchdog, which Cairn keeps for itself.

use super::{Board, OwnedDevice, PowerOffMethod, Role};

pub const BOARD: Board = Board {
    name: "Raspberry Pi 4",
    compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
    owned: &[OwnedDevice {
        compatible: &["brcm,bcm2835-pm-wdt", "brcm,bcm2711-pm"],
        role: Role::PowerOff(PowerOffMethod::Bcm2835Halt),
    }],
};

// The PM block's registers (Linux drivers/watchdog/bcm2835_wdt.c; BCM2835 peripherals).
/// Every write needs the password in bits 31:24.
pub const PM_PASSWORD: u32 = 0x5A00_0000;
pub const PM_RSTC: usize = 0x1C;
pub const PM_RSTS: usize = 0x20;
pub const PM_WDOG: usize = 0x24;
/// RSTC.WRCFG (bits 5:4): full reset when the watchdog expires.
pub const PM_RSTC_WRCFG_CLR: u32 = 0xFFFF_FFCF;
pub const PM_RSTC_WRCFG_FULL_RESET: u32 = 0x0000_0020;
/// RSTS: the boot partition to come back in; 63 (its bits spread over 0, 2, ... 10) tells
/// the firmware to halt instead of booting.
pub const PM_RSTS_HALT_PARTITION: u32 = 0x555;
/// Watchdog ticks (16 us each) before the reset.
pub const PM_WDOG_TICKS: u32 = 10;

/// Resets the Pi into its firmware's halt partition through the PM watchdog at `pm`, the
/// way Linux's bcm2835_wdt powers a Pi off (QEMU's raspi4b resets, which ends it under
/// -no-reboot).
#[cfg(target_os = "none")]
pub fn bcm2835_halt(pm: usize) {
    use crate::arch::aarch64::mmio;
    let rsts = mmio::read32(pm + PM_RSTS);
    mmio::write32(pm + PM_RSTS, PM_PASSWORD | rsts | PM_RSTS_HALT_PARTITION);
    mmio::write32(pm + PM_WDOG, PM_PASSWORD | PM_WDOG_TICKS);
    let rstc = mmio::read32(pm + PM_RSTC) & PM_RSTC_WRCFG_CLR;
    mmio::write32(pm + PM_RSTC, PM_PASSWORD | rstc | PM_RSTC_WRCFG_FULL_RESET);
}
