//! Links the unwinder into the binaries (libgcc_eh.a) instead of needing `libgcc_s.so.1`.
//!
//! Why: Rust needs an unwinder for `panic = "unwind"` (the module catches panics at the PAM
//! boundary), and on linux-gnu it asks for `-lgcc_s`. For a PAM module that is one more shared
//! library to map on every login: measured, loading libgcc_s.so.1 (and its constructor, which
//! runs `cpuid`) cost more than the whole of google-authenticator's module
//! (docs/performance.md, "Module load cost"). GCC's static unwinder does the same job inside
//! the object. The trick: a `libgcc_s.a` (the static unwinder under the name rustc asks for)
//! in a directory searched first, and `-static-libgcc` for the C driver.
//!
//! Skipped, with the shared unwinder as before, when the C toolchain has no libgcc_eh.a or
//! when the build is cargo-zigbuild's (scripts/build-portable: zig links its own static
//! unwinder). Shared by crates/etcd-helper (`build = "../../build.rs"`).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    if var("RUSTC_LINKER").contains("zig") {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        println!("cargo:warning=no C compiler ({cc}) to find libgcc_eh.a: linking libgcc_s.so.1");
        return;
    };
    let eh = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !eh.is_absolute() || !eh.exists() {
        println!("cargo:warning=libgcc_eh.a not found: linking libgcc_s.so.1");
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("OUT_DIR is writable");
    let link = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(Path::new(&eh), &link).expect("symlink in OUT_DIR");
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-static-libgcc");
}
