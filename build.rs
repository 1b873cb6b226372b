//! Link settings for the C shared library: a versioned soname, so hosts can
//! link against ABI 0, and `-z nodelete`, so a host's `dlclose` can never unmap
//! code that a worker thread might still be running.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnodedev_events.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
