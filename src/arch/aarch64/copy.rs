//! Bulk copies of guest images (kernel, initramfs, device tree) and their pristine copies,
//! tuned for what QEMU charges.

/// Copies `size` bytes between non-overlapping ranges, 64 bytes a step where both are
/// 16-byte aligned: guest images are tens of MiB, a generic memcpy costs most of a second
/// under emulation, and fewer, longer loop iterations halve what is left (QEMU pays per
/// translated block entered as well as per access).
///
/// # Safety
/// Both ranges must be mapped, `size` bytes long, and not overlap.
pub unsafe fn copy_bulk(from: u64, to: u64, size: u64) {
    const STEP: u64 = 64;
    const ALIGN: u64 = 16;
    let aligned = from.is_multiple_of(ALIGN) && to.is_multiple_of(ALIGN);
    let steps = if aligned { size / STEP } else { 0 };
    if steps > 0 {
        // SAFETY: the loop reads and writes exactly `steps * 64` bytes of the ranges the
        // caller vouches for; both pointers are 16-byte aligned.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {a}, {b}, [{src}]",
                "ldp {c}, {d}, [{src}, #16]",
                "ldp {e}, {f}, [{src}, #32]",
                "ldp {g}, {h}, [{src}, #48]",
                "add {src}, {src}, #64",
                "stp {a}, {b}, [{dst}]",
                "stp {c}, {d}, [{dst}, #16]",
                "stp {e}, {f}, [{dst}, #32]",
                "stp {g}, {h}, [{dst}, #48]",
                "add {dst}, {dst}, #64",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                src = inout(reg) from => _,
                dst = inout(reg) to => _,
                n = inout(reg) steps => _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                e = out(reg) _,
                f = out(reg) _,
                g = out(reg) _,
                h = out(reg) _,
                options(nostack),
            )
        };
    }
    let done = steps * STEP;
    // SAFETY: the tail of the same ranges.
    unsafe {
        core::ptr::copy_nonoverlapping((from + done) as *const u8, (to + done) as *mut u8, (size - done) as usize)
    };
}
