//! The virtual GIC's register frames as the VM's emulated devices ([`super::devices`]): the
//! distributor and, for GICv3, the redistributors, each over the VM's distributor model and
//! the physical GIC's forwarding ([`Hardware::with_gic`]).

use alloc::sync::Arc;

use super::devices::{MmioDevice, MmioDone};
use crate::arch::aarch64::access::MmioAccess;
use crate::hw::{Hardware, Hw};
use crate::vgic::dist::VGic;

/// The distributor frame (GICD).
pub struct Distributor(pub Arc<spin::Mutex<VGic>>);

/// The GICv3 redistributor frames (GICR), one 128 KiB frame per vCPU.
pub struct Redistributors(pub Arc<spin::Mutex<VGic>>);

impl MmioDevice for Distributor {
    fn name(&self) -> &'static str {
        "GIC distributor"
    }

    #[inline(always)]
    fn access(&self, vcpu: usize, offset: u64, access: &MmioAccess) -> MmioDone {
        let done = Hw::with_gic(|hw| self.0.lock().dist_access(vcpu, offset, access.size, access.write, hw));
        let (value, changed) = done.unwrap_or_default();
        MmioDone { value, changed }
    }
}

impl MmioDevice for Redistributors {
    fn name(&self) -> &'static str {
        "GIC redistributors"
    }

    #[inline(always)]
    fn access(&self, _vcpu: usize, offset: u64, access: &MmioAccess) -> MmioDone {
        let done = Hw::with_gic(|hw| self.0.lock().redist_access(offset, access.size, access.write, hw));
        let (value, changed) = done.unwrap_or_default();
        MmioDone { value, changed }
    }
}
