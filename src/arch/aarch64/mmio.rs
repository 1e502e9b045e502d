//! Volatile accessors for Cairn's own device registers (the GIC frames it drives, a
//! board's power controller).

macro_rules! accessors {
    ($read:ident, $write:ident, $t:ty) => {
        pub fn $read(addr: usize) -> $t {
            // SAFETY: callers pass addresses of device registers from the device tree, which
            // Cairn maps as device memory at EL2; a volatile access is a register access.
            unsafe { core::ptr::read_volatile(addr as *const $t) }
        }

        pub fn $write(addr: usize, value: $t) {
            // SAFETY: as for the read accessor.
            unsafe { core::ptr::write_volatile(addr as *mut $t, value) }
        }
    };
}

accessors!(read8, write8, u8);
accessors!(read32, write32, u32);
accessors!(read64, write64, u64);
