//! The Cairn image. Everything lives in the library; this binary only links it for the
//! bare-metal target, where boot/entry.S is the real entry point.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
use cairn as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("cairn is a bare-metal hypervisor image: build it with scripts/build and boot it in QEMU");
    std::process::exit(2);
}
