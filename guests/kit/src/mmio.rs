//! Volatile register access. With the MMU off every access is Device-nGnRnE, so accesses
//! reach the device in program order and are never merged or repeated.

/// Reads the 32-bit register at `addr`.
///
/// # Safety
/// `addr` must be a 4-byte aligned device register whose read has no unwanted effect.
pub unsafe fn read32(addr: usize) -> u32 {
    // SAFETY: the caller vouches for the address.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes the 32-bit register at `addr`.
///
/// # Safety
/// `addr` must be a 4-byte aligned device register that may take `value`.
pub unsafe fn write32(addr: usize, value: u32) {
    // SAFETY: the caller vouches for the address and value.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// Reads the 64-bit register at `addr` in one access.
///
/// # Safety
/// `addr` must be an 8-byte aligned device register that allows 64-bit reads.
pub unsafe fn read64(addr: usize) -> u64 {
    // SAFETY: the caller vouches for the address.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}
