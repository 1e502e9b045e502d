//! QEMU's `virt` machine (hw/arm/virt.c). Its device tree says everything Cairn needs:
//! memory, CPUs started by PSCI (`/psci`, method smc under virtualization=on), GICv2 or
//! GICv3 with its virtualization frames, the PL011 at 0x0900_0000, and the guest-loader
//! modules in `/chosen`. Power-off is PSCI SYSTEM_OFF. Cairn owns no other device.

use super::Board;

pub const BOARD: Board = Board { name: "QEMU virt", compatible: &["linux,dummy-virt"], owned: &[] };
