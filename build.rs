//! Links the bare-metal image with linker.ld; host builds need nothing.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
    for f in ["linker.ld", "boot/entry.S", "boot/vectors.S"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
