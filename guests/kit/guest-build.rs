//! The build script of every test guest (each names it in its Cargo.toml): links the
//! guest with the kit's layout.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/../kit/guest.ld");
    }
    println!("cargo:rerun-if-changed=../kit/guest.ld");
    println!("cargo:rerun-if-changed=../kit/entry.S");
}
