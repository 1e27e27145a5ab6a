//! Packages and installation: the `.deb` is built and inspected (paths, modes, owners,
//! dependencies, maintainer scripts), then installed into a fresh `scripts/container --bare`
//! (stock sshd, nothing of ecs-mfa), wired as the README says, and used for a real SSH login;
//! the same for `scripts/install`. Also: the SELinux policy module compiles.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::container::{
    Login, code, enroll, in_container, restart_sshd, set_password, sh, ssh, ssh_opts,
};
use common::text;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/package` puts the .deb.
fn deb_path() -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    repo().join(format!("target/debian/ecs-mfa_{version}-1_amd64.deb"))
}

/// Builds the release artefacts and the .deb once per test process (`scripts/package`).
fn deb() -> &'static PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Command::new(repo().join("scripts/package"))
            .output()
            .unwrap();
        common::assert_ok(&out, "scripts/package");
        let deb = deb_path();
        assert!(deb.exists(), "{} not built", deb.display());
        deb
    })
}

#[test]
fn the_deb_holds_the_right_files_with_the_right_modes() {
    common::require_real_parts();
    let listing = text(
        &Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb())
            .output()
            .unwrap()
            .stdout,
    );
    for (mode, path) in [
        (
            "-rw-r--r-- 0/0",
            "./lib/x86_64-linux-gnu/security/pam_ecs_mfa.so",
        ),
        (
            "-rw-r--r-- 0/0",
            "./lib/x86_64-linux-gnu/security/libecs_mfa_etcd.so",
        ),
        ("-rwxr-xr-x 0/0", "./usr/sbin/mfa-enroll"),
        ("-rw-r--r-- 0/0", "./usr/share/man/man1/mfa-enroll.1.gz"),
        ("-rw-r--r-- 0/0", "./usr/share/man/man8/pam_ecs_mfa.8.gz"),
        ("-rw-r--r-- 0/0", "./usr/lib/tmpfiles.d/ecs-mfa.conf"),
        (
            "-rw-r--r-- 0/0",
            "./usr/share/bash-completion/completions/mfa-enroll",
        ),
        ("-rw-r--r-- 0/0", "./usr/share/doc/ecs-mfa/README.md"),
        ("-rw-r--r-- 0/0", "./usr/share/doc/ecs-mfa/security.md"),
        (
            "-rw-r--r-- 0/0",
            "./usr/share/doc/ecs-mfa/examples/debian/sshd",
        ),
        (
            "-rw-r--r-- 0/0",
            "./usr/share/doc/ecs-mfa/examples/sshd_config.d/50-ecs-mfa.conf",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} with {mode} missing:\n{listing}"
        );
    }
    // In /etc only fail2ban's filter and its jail (off until enabled), where fail2ban looks
    // for them; never anything of PAM or sshd.
    let in_etc: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("./etc/") && !l.ends_with('/'))
        .map(|l| l.rsplit(' ').next().unwrap_or(l))
        .collect();
    assert_eq!(
        in_etc,
        [
            "./etc/fail2ban/filter.d/ecs-mfa.conf",
            "./etc/fail2ban/jail.d/ecs-mfa.conf"
        ],
        "{listing}"
    );
    let depends = text(
        &Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb())
            .arg("Depends")
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        depends.contains("libpam0g") && depends.contains("libc6 (>= 2.17)"),
        "{depends}"
    );
    // The packaged binaries are the portable ones: nothing newer than GLIBC_2.17.
    let dir = std::env::temp_dir().join(format!("ecs-mfa-deb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let extract = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(&dir)
        .status()
        .unwrap();
    assert!(extract.success());
    let check = Command::new(repo().join("scripts/check-glibc"))
        .arg(dir.join("lib/x86_64-linux-gnu/security/pam_ecs_mfa.so"))
        .arg(dir.join("lib/x86_64-linux-gnu/security/libecs_mfa_etcd.so"))
        .arg(dir.join("usr/sbin/mfa-enroll"))
        .env("GLIBC_MAX", "2.17")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    common::assert_ok(&check, "check");
    let tmpfiles =
        std::fs::read_to_string(repo().join("packaging/tmpfiles.d/ecs-mfa.conf")).unwrap();
    assert!(tmpfiles.contains("d /run/ecs-mfa 0700 root root"));
}

/// Inside the container: wires sshd for ecs-mfa exactly as the README's steps say, using the
/// installed example files, and reloads sshd.
fn wire_sshd_like_the_readme() {
    let examples = Path::new("/usr/share/doc/ecs-mfa/examples");
    std::fs::copy(
        examples.join("sshd_config.d/50-ecs-mfa.conf"),
        "/etc/ssh/sshd_config.d/50-ecs-mfa.conf",
    )
    .unwrap();
    std::fs::copy(examples.join("debian/sshd"), "/etc/pam.d/sshd").unwrap();
    let check = Command::new("/usr/sbin/sshd").arg("-t").output().unwrap();
    common::assert_ok(&check, "sshd -t");
    let pid = std::fs::read_to_string("/run/sshd.pid").unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    // sshd re-executes itself on SIGHUP; wait until it accepts connections again.
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn assert_key_and_code_login_works() {
    let secret = enroll("alice");
    let without = ssh("alice", Some("alice"), None, "id -un");
    assert!(!without.success, "the code is required now: {without:#?}");
    let login: Login = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
    assert!(login.success, "{login:#?}");
    assert_eq!(login.stdout.trim(), "alice");
    assert_eq!(login.prompts.len(), 1);
}

#[test]
fn the_deb_installs_in_a_fresh_container_and_protects_ssh() {
    if std::env::var("ECS_MFA_E2E").is_err() {
        deb(); // built outside; the run inside finds it at the same path
    }
    in_container(
        "the_deb_installs_in_a_fresh_container_and_protects_ssh",
        &["--bare"],
        || {
            let deb = deb_path().display().to_string();
            // Stock sshd: no ecs-mfa anywhere yet.
            assert!(!Path::new("/usr/sbin/mfa-enroll").exists());
            let pam_before = std::fs::read("/etc/pam.d/sshd").unwrap();
            let out = Command::new("dpkg").args(["-i", &deb]).output().unwrap();
            common::assert_ok(&out, "dpkg -i");
            assert!(
                text(&out.stdout).contains("Nothing is enforced yet"),
                "{}",
                text(&out.stdout)
            );
            assert_eq!(
                std::fs::read("/etc/pam.d/sshd").unwrap(),
                pam_before,
                "install edited pam.d"
            );
            use std::os::unix::fs::MetadataExt;
            let store = std::fs::metadata("/var/lib/ecs-mfa/users").unwrap();
            assert_eq!((store.mode() & 0o7777, store.uid()), (0o700, 0));
            // Installing changed nothing for logins: the key alone still works.
            assert!(
                ssh("bob", Some("bob"), None, "true").success,
                "install locked someone out"
            );

            wire_sshd_like_the_readme();
            assert_key_and_code_login_works();

            // Removing keeps enrollments; purging deletes them and says so.
            let out = Command::new("dpkg")
                .args(["-r", "ecs-mfa"])
                .output()
                .unwrap();
            common::assert_ok(&out, "dpkg -r");
            assert!(
                text(&out.stdout).contains("enrollments kept"),
                "{}",
                text(&out.stdout)
            );
            assert!(Path::new("/var/lib/ecs-mfa/users/alice.toml").exists());
            let out = Command::new("dpkg")
                .args(["-P", "ecs-mfa"])
                .output()
                .unwrap();
            common::assert_ok(&out, "dpkg -P");
            assert!(
                text(&out.stdout).contains("deleting all enrollments"),
                "{}",
                text(&out.stdout)
            );
            assert!(!Path::new("/var/lib/ecs-mfa").exists());
        },
    );
}

#[test]
fn scripts_install_installs_the_same_files_and_protects_ssh() {
    if std::env::var("ECS_MFA_E2E").is_err() {
        // scripts/install --no-build installs target/release (the packages are built from the
        // portable build instead, so deb() does not make it).
        let built = Command::new("cargo")
            .args(["build", "--release", "--workspace", "--quiet"])
            .current_dir(repo())
            .output()
            .unwrap();
        common::assert_ok(&built, "cargo");
    }
    in_container(
        "scripts_install_installs_the_same_files_and_protects_ssh",
        &["--bare"],
        || {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new(repo.join("scripts/install"))
                .arg("--no-build")
                .output()
                .unwrap();
            common::assert_ok(&out, "scripts/install --no-build");
            let msg = text(&out.stdout);
            assert!(
                msg.contains("Nothing is enforced yet") && msg.contains("mfa-enroll enroll"),
                "{msg}"
            );
            for path in [
                "/lib/x86_64-linux-gnu/security/pam_ecs_mfa.so",
                "/lib/x86_64-linux-gnu/security/libecs_mfa_etcd.so",
                "/usr/sbin/mfa-enroll",
                "/usr/share/man/man8/pam_ecs_mfa.8",
                "/usr/lib/tmpfiles.d/ecs-mfa.conf",
                "/usr/share/doc/ecs-mfa/examples/debian/sshd",
            ] {
                assert!(Path::new(path).exists(), "{path} missing");
            }
            assert!(
                ssh("bob", Some("bob"), None, "true").success,
                "install locked someone out"
            );
            wire_sshd_like_the_readme();
            assert_key_and_code_login_works();
        },
    );
}

#[test]
fn the_rpm_holds_the_right_files_requirements_and_scripts() {
    common::require_real_parts();
    // --rpm also rebuilds the deb; the other tests in this process may use either.
    let out = Command::new(repo().join("scripts/package"))
        .arg("--rpm")
        .output()
        .unwrap();
    common::assert_ok(&out, "scripts/package --rpm");
    let version = env!("CARGO_PKG_VERSION");
    let rpm = repo().join(format!(
        "target/generate-rpm/ecs-mfa-{version}-1.x86_64.rpm"
    ));
    let query = |args: &[&str]| {
        let out = Command::new("rpm")
            .args(args)
            .arg(&rpm)
            .output()
            .expect("rpm (apt-get install rpm)");
        common::assert_ok(&out, &format!("rpm {args:?}"));
        text(&out.stdout)
    };
    let files = query(&["-qplv"]);
    for (mode, path) in [
        ("-rw-r--r--", "/usr/lib64/security/pam_ecs_mfa.so"),
        ("-rw-r--r--", "/usr/lib64/security/libecs_mfa_etcd.so"),
        ("-rwxr-xr-x", "/usr/sbin/mfa-enroll"),
        ("-rw-r--r--", "/usr/share/man/man8/pam_ecs_mfa.8.gz"),
        ("-rw-r--r--", "/usr/share/selinux/packages/ecs_mfa.pp"),
        ("-rw-r--r--", "/usr/lib/tmpfiles.d/ecs-mfa.conf"),
        ("-rw-r--r--", "/usr/share/doc/ecs-mfa/examples/rhel/sshd"),
    ] {
        assert!(
            files
                .lines()
                .any(|l| l.starts_with(mode) && l.contains(" root ") && l.ends_with(path)),
            "{path} ({mode}, root) missing:\n{files}"
        );
    }
    let in_etc: Vec<&str> = files
        .lines()
        .filter(|l| l.contains(" /etc/") && !l.starts_with('d'))
        .map(|l| l.rsplit(' ').next().unwrap_or(l))
        .collect();
    assert_eq!(
        in_etc,
        [
            "/etc/fail2ban/filter.d/ecs-mfa.conf",
            "/etc/fail2ban/jail.d/ecs-mfa.conf"
        ],
        "only fail2ban's filter and jail in /etc:\n{files}"
    );
    let requires = query(&["-qpR"]);
    assert!(
        requires.contains("glibc >= 2.17") && requires.lines().any(|l| l == "pam"),
        "{requires}"
    );
    // The SELinux module inside is in format 12, which EL7's libsepol 2.5 reads (the default
    // of a newer checkmodule is refused there), and still holds the filename transition that a
    // format below 11 would drop without a word.
    let module = std::fs::read(repo().join("target/package/selinux/ecs_mfa.mod")).unwrap();
    assert_eq!(&module[..4], &0xf97c_ff8d_u32.to_le_bytes(), "module magic");
    assert_eq!(&module[8..23], b"SE Linux Module");
    // Then the policy type (2: a module) and the format version.
    assert_eq!(u32::from_le_bytes(module[23..27].try_into().unwrap()), 2);
    let version = u32::from_le_bytes(module[27..31].try_into().unwrap());
    assert_eq!(version, 12, "module format");
    assert!(
        module.windows(7).any(|w| w == b"ecs-mfa"),
        "the filename type_transition is in the module"
    );
    assert!(
        !requires.contains("PayloadIsZstd"),
        "EL7's rpm cannot read a zstd payload: {requires}"
    );
    // rpm's own dependency scan agrees: no libc symbol version above 2.17.
    for line in requires.lines().filter(|l| l.contains("(GLIBC_")) {
        let version = line
            .split("(GLIBC_")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert!(
            parts[0] == 2 && parts.get(1).copied().unwrap_or(0) <= 17,
            "{line}"
        );
    }
    let scripts = query(&["-qp", "--scripts"]);
    assert!(
        scripts.contains("install -d -m 0700 -o root -g root /var/lib/ecs-mfa"),
        "{scripts}"
    );
    assert!(
        scripts.contains("semodule -i") && scripts.contains("restorecon"),
        "{scripts}"
    );
    assert!(scripts.contains("enrollments kept"), "{scripts}");
    // The post-install message names the files to copy; no command touches them.
    assert!(
        scripts
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.starts_with("echo ") && !l.starts_with('#'))
            .all(|l| !l.contains("/etc/pam.d/sshd") && !l.contains("sshd_config")),
        "scripts must not touch the PAM stack or sshd: {scripts}"
    );
    assert!(scripts.contains("sshd first"), "{scripts}");
}

#[test]
fn the_selinux_policy_module_compiles() {
    common::require_real_parts();
    for tool in ["checkmodule", "semodule_package"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "{tool} missing: apt-get install checkpolicy semodule-utils (scripts/deps does this)"
        );
    }
    let dir = std::env::temp_dir().join(format!("ecs-mfa-selinux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let te = repo().join("packaging/selinux/ecs_mfa.te");
    let fc = repo().join("packaging/selinux/ecs_mfa.fc");
    let out = Command::new("checkmodule")
        .args(["-M", "-m", "-o"])
        .arg(dir.join("ecs_mfa.mod"))
        .arg(&te)
        .output()
        .unwrap();
    common::assert_ok(&out, "checkmodule");
    let out = Command::new("semodule_package")
        .arg("-o")
        .arg(dir.join("ecs_mfa.pp"))
        .arg("-m")
        .arg(dir.join("ecs_mfa.mod"))
        .arg("-f")
        .arg(&fc)
        .output()
        .unwrap();
    common::assert_ok(&out, "semodule_package");
    assert!(std::fs::metadata(dir.join("ecs_mfa.pp")).unwrap().len() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The logins tried after every step of the README's setup and uninstall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Try {
    KeyAlone,
    KeyAndCode,
    KeyAndPassword,
    PasswordAlone,
    CodeAsPassword,
    CodeWithoutKey,
    UnenrolledAnyPassword,
}

const PASSWORD: &str = "Alice-Pass-77";

/// Which of the logins succeed now. The replay/lockout state is cleared first, so that one
/// code can be tried in every round.
fn successes(secret: &str) -> Vec<Try> {
    sh("rm -f /run/ecs-mfa/*.state");
    let c = code(secret);
    let password = ["PreferredAuthentications=password"];
    let kbdint = ["PreferredAuthentications=keyboard-interactive"];
    let attempts: [(Try, Login); 7] = [
        (
            Try::KeyAlone,
            ssh_opts("alice", Some("alice"), &[], "true", &[]),
        ),
        (
            Try::KeyAndCode,
            ssh_opts("alice", Some("alice"), &[("", &c)], "true", &[]),
        ),
        (
            Try::KeyAndPassword,
            ssh_opts("alice", Some("alice"), &[("", PASSWORD)], "true", &[]),
        ),
        (
            Try::PasswordAlone,
            ssh_opts("alice", None, &[("", PASSWORD)], "true", &password),
        ),
        (
            Try::CodeAsPassword,
            ssh_opts("alice", None, &[("", &c)], "true", &password),
        ),
        (
            Try::CodeWithoutKey,
            ssh_opts("alice", None, &[("", &c)], "true", &kbdint),
        ),
        (
            Try::UnenrolledAnyPassword,
            ssh_opts("carol", None, &[("", "anything")], "true", &password),
        ),
    ];
    sh("rm -f /run/ecs-mfa/*.state");
    attempts
        .into_iter()
        .filter(|(_, login)| login.success)
        .map(|(t, _)| t)
        .collect()
}

/// The README's "First-time setup" and "Uninstall" steps, run in order in a bare container with
/// the .deb installed. Each step's command is taken from README.md (the test fails if the
/// README stops saying it, or says it in another order). After every step no login with the
/// code alone, the code as a password, or any password for an unenrolled user succeeds, and
/// no setup step lets in a single-factor login that the step before refused; at the end only
/// key + code works. alice has a password (so password logins are really tried), carol is not enrolled
/// and has a password too.
#[test]
fn the_readme_setup_order_never_opens_a_door() {
    // The steps as the README words them, and what the test runs for each.
    const STEPS: [(&str, &str); 5] = [
        ("sudo mfa-enroll enroll", "enroll"),
        (
            "sudo cp -a /etc/pam.d/sshd /etc/pam.d/sshd.before-ecs-mfa",
            "cp -a /etc/pam.d/sshd /etc/pam.d/sshd.before-ecs-mfa",
        ),
        (
            "sudo cp /usr/share/doc/ecs-mfa/examples/sshd_config.d/50-ecs-mfa.conf /etc/ssh/sshd_config.d/",
            "cp /usr/share/doc/ecs-mfa/examples/sshd_config.d/50-ecs-mfa.conf /etc/ssh/sshd_config.d/ && reload",
        ),
        (
            "sudo cp /usr/share/doc/ecs-mfa/examples/debian/sshd /etc/pam.d/sshd",
            "cp /usr/share/doc/ecs-mfa/examples/debian/sshd /etc/pam.d/sshd",
        ),
        ("sudo mfa-enroll doctor", "doctor"),
    ];
    const UNINSTALL: [(&str, &str); 2] = [
        (
            "sudo rm /etc/ssh/sshd_config.d/50-ecs-mfa.conf && sudo sshd -t && sudo systemctl reload ssh",
            "rm /etc/ssh/sshd_config.d/50-ecs-mfa.conf && reload",
        ),
        (
            "sudo cp -a /etc/pam.d/sshd.before-ecs-mfa /etc/pam.d/sshd",
            "cp -a /etc/pam.d/sshd.before-ecs-mfa /etc/pam.d/sshd",
        ),
    ];
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = |title: &str| {
        let start = readme
            .find(title)
            .unwrap_or_else(|| panic!("README lost '{title}'"));
        let end = readme[start + 4..]
            .find("\n### ")
            .map_or(readme.len(), |e| start + 4 + e);
        readme[start..end].to_string()
    };
    for (title, steps) in [
        ("### First-time setup", &STEPS[..]),
        ("### Uninstall", &UNINSTALL[..]),
    ] {
        let text = section(title);
        let mut last = 0;
        for (words, _) in steps {
            let at = text[last..].find(words).unwrap_or_else(|| {
                panic!("README {title} no longer says (in this order) `{words}`")
            });
            last += at + words.len();
        }
    }
    if std::env::var("ECS_MFA_E2E").is_err() {
        deb();
    }
    in_container(
        "the_readme_setup_order_never_opens_a_door",
        &["--bare"],
        || {
            // A server as found: stock sshd with keyboard-interactive enabled, as many images
            // have it, and accounts with passwords.
            sh("echo 'KbdInteractiveAuthentication yes' > /etc/ssh/sshd_config.d/10-image.conf");
            restart_sshd();
            set_password("alice", PASSWORD);
            set_password("carol", "Carol-Pass-88");
            let out = Command::new("dpkg")
                .args(["-i", &deb_path().display().to_string()])
                .output()
                .unwrap();
            common::assert_ok(&out, "dpkg -i");
            // The post-install message gives the same order: sshd before PAM.
            let msg = text(&out.stdout);
            let dropin = msg.find("50-ecs-mfa.conf").expect("drop-in step");
            let pam = msg
                .find("examples/debian/sshd /etc/pam.d/sshd")
                .expect("PAM step");
            assert!(dropin < pam, "{msg}");

            let never = [
                Try::CodeAsPassword,
                Try::CodeWithoutKey,
                Try::UnenrolledAnyPassword,
            ];
            let mut secret = String::new();
            let mut before: Option<Vec<Try>> = None;
            let mut check = |step: &str, secret: &str, shrink: bool| {
                let now = successes(secret);
                for t in never {
                    assert!(!now.contains(&t), "after '{step}': {t:?} logs in ({now:?})");
                }
                if shrink && let Some(before) = &before {
                    // A login with both factors may start working; one with a single factor
                    // never newly does.
                    let two_factors = [Try::KeyAndCode, Try::KeyAndPassword];
                    for t in now.iter().filter(|t| !two_factors.contains(t)) {
                        assert!(
                            before.contains(t),
                            "after '{step}': {t:?} logs in, refused before ({before:?} -> {now:?})"
                        );
                    }
                }
                before = Some(now.clone());
                now
            };
            check(
                "installing the package",
                "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                true,
            );
            for (words, action) in STEPS {
                match action {
                    "enroll" => secret = enroll("alice"),
                    "doctor" => {
                        let out = Command::new("/usr/sbin/mfa-enroll")
                            .args(["doctor", "--json"])
                            .output()
                            .unwrap();
                        let report: serde_json::Value =
                            serde_json::from_slice(&out.stdout).unwrap();
                        let door: Vec<&serde_json::Value> = report["findings"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|f| f["level"] == "problem" && f["check"] != "users")
                            .collect();
                        assert!(door.is_empty(), "{door:#?}");
                    }
                    command => run_step(command),
                }
                let now = check(words, &secret, true);
                if words.contains("debian/sshd") {
                    assert_eq!(now, vec![Try::KeyAndCode], "set up: only key + code");
                }
            }
            for (words, command) in UNINSTALL {
                run_step(command);
                check(words, &secret, false);
            }
            // Uninstalled: back to what the server allowed before.
            assert!(successes(&secret).contains(&Try::KeyAlone));
        },
    );
}

/// Runs one README command inside the container; `reload` stands for `systemctl reload ssh`.
fn run_step(command: &str) {
    match command.strip_suffix(" && reload") {
        Some(command) => {
            sh(command);
            restart_sshd();
        }
        None => sh(command),
    }
}
