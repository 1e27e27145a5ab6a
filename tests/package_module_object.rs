//! What the module's object file holds and needs (docs/performance.md, "Module load cost"):
//! every sshd connection maps pam_ecs_mfa.so and whatever it needs afresh, so the fleet
//! backend's TLS/HTTP client lives in libecs_mfa_etcd.so (loaded only with `[fleet]`) and the
//! unwinder is linked in instead of loading libgcc_s.so.1. Runs against the cargo build, and in
//! scripts/test against the portable (packaged) build too, through ECS_MFA_TEST_MODULE.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::text;

fn module() -> PathBuf {
    std::env::var_os("ECS_MFA_TEST_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(common::module_path)
}

fn needed(path: &std::path::Path) -> Vec<String> {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(path)
        .output()
        .expect("objdump (binutils; scripts/deps installs it)");
    common::assert_ok(&out, "objdump -p");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|l| l.trim().to_string())
        .collect()
}

fn dynamic_symbols(path: &std::path::Path) -> String {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(path)
        .output()
        .expect("objdump");
    common::assert_ok(&out, "objdump -T");
    text(&out.stdout)
}

#[test]
fn the_module_holds_no_tls_or_http_code_and_needs_no_libgcc_s() {
    let module = module();
    // With a symbol table (debug builds), the code itself; stripped (release builds), the
    // source paths its panic locations would carry. Debug info alone may name the crates.
    let nm = Command::new("nm")
        .args(["-C", "--defined-only"])
        .arg(&module)
        .output()
        .expect("nm (binutils)");
    let symbols = text(&nm.stdout);
    let found: Vec<&str> = if symbols.trim().is_empty() {
        let bytes = std::fs::read(&module).unwrap();
        ["rustls", "ureq"]
            .into_iter()
            .filter(|name| bytes.windows(name.len()).any(|w| w == name.as_bytes()))
            .collect()
    } else {
        ["rustls::", "ureq::"]
            .into_iter()
            .filter(|name| symbols.contains(name))
            .collect()
    };
    assert!(
        found.is_empty(),
        "{} contains {found:?}: the fleet client was linked into the module",
        module.display()
    );
    let needed = needed(&module);
    assert!(
        needed.iter().any(|n| n.starts_with("libpam.so")),
        "{needed:?}"
    );
    assert!(
        !needed.iter().any(|n| n.starts_with("libgcc_s")),
        "{}: needs {needed:?}; the unwinder should be linked in (build.rs)",
        module.display()
    );
    // The PAM entry points are exported, and nothing of the helper's table.
    let symbols = dynamic_symbols(&module);
    assert!(symbols.contains("pam_sm_authenticate"), "{symbols}");
    assert!(!symbols.contains("ECS_MFA_ETCD_API"), "{symbols}");
}

#[test]
fn the_etcd_helper_sits_next_to_the_module_and_exports_its_table() {
    let module = module();
    let helper = module.with_file_name(common::HELPER_FILE);
    assert!(helper.exists(), "{} missing", helper.display());
    let symbols = dynamic_symbols(&helper);
    assert!(symbols.contains("ECS_MFA_ETCD_API"), "{symbols}");
    assert!(!symbols.contains("pam_sm_"), "{symbols}");
    let needed = needed(&helper);
    assert!(
        !needed
            .iter()
            .any(|n| n.starts_with("libgcc_s") || n.starts_with("libpam")),
        "{needed:?}"
    );
}
