//! A VM's images in guest RAM: the kernel, initramfs and device tree written at first boot
//! and put back from Cairn's pristine copies at every reset, and the VM's stage-2 tables
//! made current on a CPU. Bare-metal target only.

use super::Vm;
use crate::arch::aarch64::{copy, mmu};
use crate::mm::Region;

impl Vm {
    /// Makes this VM's stage-2 tables the current ones on this CPU.
    pub fn load_stage2(&self) {
        mmu::load_stage2(self.stage2.root, self.stage2.start_level, self.vmid);
    }

    /// Puts the kernel, initrd and device tree back as they were at creation, for a reset.
    pub fn restore_images(&self) {
        for image in self.boot.kernel.iter().chain(self.boot.initrd.iter()) {
            copy_to_guest(image.pristine, image.at);
        }
        self.install_device_tree();
        mmu::invalidate_instruction_caches();
    }

    /// Writes the guest's device tree into its RAM (and, the first time, the kernel and
    /// initrd where the loader did not already put them).
    pub(super) fn install_first_boot(&self, kernel_in_place: bool, initrd_in_place: bool) {
        // An image left in place is exactly what the loader wrote to memory: Cairn only read
        // it, so no cache holds anything newer and nothing needs cleaning.
        if let Some(kernel) = self.boot.kernel.filter(|_| !kernel_in_place) {
            copy_to_guest(kernel.pristine, kernel.at);
        }
        if let Some(initrd) = self.boot.initrd.filter(|_| !initrd_in_place) {
            copy_to_guest(initrd.pristine, initrd.at);
        }
        self.install_device_tree();
        mmu::invalidate_instruction_caches();
    }

    /// Zeroes `regions` of the VM's RAM: what the loader left there for others.
    pub(super) fn wipe(&self, regions: &[Region]) {
        for r in regions {
            // SAFETY: `r` lies in this VM's RAM (the caller clipped it), which Cairn maps and
            // no vCPU runs in yet; nothing else owns it.
            unsafe { core::ptr::write_bytes(r.base as *mut u8, 0, r.size as usize) };
            mmu::clean_dcache_range(r.base, r.size);
        }
    }

    fn install_device_tree(&self) {
        let dtb = self.boot.guest_dtb.lock();
        copy_to_guest(dtb.as_ptr() as u64, Region::new(self.boot.dtb, dtb.len() as u64));
    }
}

fn copy_to_guest(from: u64, to: Region) {
    // SAFETY: `from` holds `to.size` bytes Cairn owns, and `to` lies in guest RAM, which no
    // vCPU runs in while its images are restored.
    unsafe { copy::copy_bulk(from, to.base, to.size) };
    mmu::clean_dcache_range(to.base, to.size);
}
