//! A VM's emulated devices: a table of guest-physical regions, each with its handler, as
//! Bao's `vm_emul_add_mem`. Devices register at VM creation; the exit path looks an
//! access's address up here and hands the fully decoded access to the device, knowing no
//! device by name. The regions are left out of stage 2, so every access to them traps.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::arch::aarch64::access::MmioAccess;
use crate::mm::Region;
use crate::vgic::dist::VcpuSet;

/// What an emulated device did with one access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioDone {
    /// The value a load reads (ignored for a store).
    pub value: u64,
    /// The vCPUs whose pending interrupts the access may have changed: the others among
    /// them are kicked, and the caller's list registers refilled if it is one of them.
    pub changed: VcpuSet,
}

/// A device a VM's accesses reach by trapping.
pub trait MmioDevice: Send + Sync {
    /// A short name for logs and the VM's device list.
    fn name(&self) -> &'static str;
    /// Handles one access by `vcpu` at `offset` from the device's region.
    fn access(&self, vcpu: usize, offset: u64, access: &MmioAccess) -> MmioDone;
}

/// Two devices claimed overlapping regions.
#[derive(Debug, PartialEq, Eq)]
pub struct Overlap {
    pub region: Region,
    pub with: &'static str,
}

/// A VM's emulated devices by guest-physical region.
#[derive(Default)]
pub struct DeviceTable {
    entries: Vec<(Region, Box<dyn MmioDevice>)>,
}

impl DeviceTable {
    pub fn new() -> Self {
        DeviceTable::default()
    }

    /// Adds `device` at `region`, which must not overlap a region already registered.
    pub fn register(&mut self, region: Region, device: Box<dyn MmioDevice>) -> Result<(), Overlap> {
        if let Some((_, other)) = self.entries.iter().find(|(r, _)| r.overlaps(&region)) {
            return Err(Overlap { region, with: other.name() });
        }
        self.entries.push((region, device));
        Ok(())
    }

    /// The device whose region holds `ipa`, with the offset into the region.
    #[inline(always)]
    pub fn find(&self, ipa: u64) -> Option<(u64, &dyn MmioDevice)> {
        self.entries.iter().find(|(r, _)| r.contains(ipa)).map(|(r, d)| (ipa - r.base, d.as_ref()))
    }

    /// Every device, with its region, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (Region, &dyn MmioDevice)> {
        self.entries.iter().map(|(r, d)| (*r, d.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(&'static str);

    impl MmioDevice for Echo {
        fn name(&self) -> &'static str {
            self.0
        }
        fn access(&self, _vcpu: usize, offset: u64, access: &MmioAccess) -> MmioDone {
            MmioDone { value: offset + access.write.unwrap_or(0), changed: 0 }
        }
    }

    fn load(ipa: u64) -> MmioAccess {
        MmioAccess { ipa, size: 4, register: 0, sign_extend: false, sixty_four: false, write: None }
    }

    #[test]
    fn an_access_reaches_the_device_whose_region_holds_it_with_its_offset() {
        let mut t = DeviceTable::new();
        t.register(Region::new(0x1000, 0x100), Box::new(Echo("a"))).unwrap();
        t.register(Region::new(0x2000, 0x100), Box::new(Echo("b"))).unwrap();
        let (offset, dev) = t.find(0x2010).unwrap();
        assert_eq!((offset, dev.name()), (0x10, "b"));
        assert_eq!(dev.access(0, offset, &load(0x2010)).value, 0x10);
        assert!(t.find(0x10FF).is_some());
        assert!(t.find(0x1100).is_none(), "one past the region");
    }

    #[test]
    fn overlapping_regions_are_refused() {
        let mut t = DeviceTable::new();
        t.register(Region::new(0x1000, 0x100), Box::new(Echo("a"))).unwrap();
        let err = t.register(Region::new(0x10F0, 0x20), Box::new(Echo("b"))).unwrap_err();
        assert_eq!(err.with, "a");
        assert_eq!(t.iter().count(), 1);
    }
}
