//! `mfa-enroll doctor` against a live sshd in `scripts/container`: a good setup passes, and
//! each seeded misconfiguration is reported with its fix.

mod common;

use std::process::Command;

use common::container::{enroll, give_root_a_key, in_container, restart_sshd, set_config, sh};
use common::text;

fn doctor() -> (i32, serde_json::Value) {
    let out = Command::new("/usr/sbin/mfa-enroll")
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("doctor --json: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

fn problems(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "problem")
        .map(|f| {
            format!(
                "[{}] {} | fix: {}",
                f["check"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
                f["fix"].as_str().unwrap()
            )
        })
        .collect()
}

/// Asserts that one of doctor's `warnings` (from [`findings`]) contains `text`.
#[track_caller]
fn assert_warns(warnings: &[String], text: &str) {
    assert!(
        warnings.iter().any(|w| w.contains(text)),
        "no warning says {text:?}: {warnings:#?}"
    );
}

fn findings(report: &serde_json::Value, level: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == level)
        .map(|f| {
            format!(
                "[{}] {} | fix: {}",
                f["check"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
                f["fix"].as_str().unwrap()
            )
        })
        .collect()
}

/// A seeded breakage: how to break the setup, how to repair it, and what doctor must say.
struct Case {
    break_it: &'static str,
    /// Restart sshd after breaking (false: the breakage is sshd not having reloaded, or a
    /// config sshd refuses to load).
    restart: bool,
    repair: &'static str,
    message: &'static str,
    fix: &'static str,
}

#[test]
fn doctor_passes_a_good_setup_and_reports_each_seeded_misconfiguration() {
    in_container(
        "doctor_passes_a_good_setup_and_reports_each_seeded_misconfiguration",
        &[],
        || {
            // Only members of "mfa" need MFA here, so host accounts copied into the container do
            // not matter. The container runs the shipped pam.d and sshd files. root is a member
            // and has a key (on a private /root), so root's settings are checked too.
            sh("groupadd mfa && for u in alice bob carol root; do usermod -aG mfa $u; done");
            give_root_a_key();
            set_config("require_groups = [\"mfa\"]\n");
            for u in ["alice", "bob", "carol", "root"] {
                enroll(u);
            }
            sh("cp /etc/pam.d/sshd /run/ecs-mfa-test/pam.sshd && \
                cp /etc/ssh/sshd_config /run/ecs-mfa-test/sshd_config");
            restart_sshd();
            let (status, report) = doctor();
            assert_eq!(status, 0, "good setup: {:#?}", problems(&report));
            assert!(problems(&report).is_empty());

            let pam_back = "cp /run/ecs-mfa-test/pam.sshd /etc/pam.d/sshd";
            let sshd_back = "rm -f /etc/ssh/sshd_config.d/00-a-test.conf && \
                             cp /run/ecs-mfa-test/sshd_config /etc/ssh/sshd_config";
            let config_back = "printf 'require_groups = [\"mfa\"]\\n' > /etc/ecs-mfa/config.toml";
            let cases = [
                Case {
                    break_it: "sed -i 's/^AuthenticationMethods .*/AuthenticationMethods publickey/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    restart: true,
                    repair: "sed -i 's/^AuthenticationMethods .*/AuthenticationMethods publickey,keyboard-interactive/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    message: "MFA can be bypassed",
                    fix: "AuthenticationMethods publickey,keyboard-interactive",
                },
                Case {
                    break_it: "sed -i 's/^KbdInteractiveAuthentication yes/KbdInteractiveAuthentication no/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    restart: false,
                    repair: "sed -i 's/^KbdInteractiveAuthentication no/KbdInteractiveAuthentication yes/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    message: "in AuthenticationMethods list",
                    fix: "sshd -t",
                },
                // What opened the door: the key stack with password authentication on...
                Case {
                    break_it: "echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/00-a-test.conf",
                    restart: true,
                    repair: sshd_back,
                    message: "PasswordAuthentication yes with the key + code stack",
                    fix: "PasswordAuthentication no",
                },
                // ...the stock sshd settings (no AuthenticationMethods at all)...
                Case {
                    break_it: "sed -i 's/^AuthenticationMethods/#AuthenticationMethods/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    restart: true,
                    repair: "sed -i 's/^#AuthenticationMethods/AuthenticationMethods/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    message: "lets 'publickey' log in without keyboard-interactive",
                    fix: "AuthenticationMethods publickey,keyboard-interactive",
                },
                // ...no key before keyboard-interactive...
                Case {
                    break_it: "echo 'AuthenticationMethods keyboard-interactive,publickey' > /etc/ssh/sshd_config.d/00-a-test.conf",
                    restart: true,
                    repair: sshd_back,
                    message: "no list with publickey before keyboard-interactive",
                    fix: "AuthenticationMethods publickey,keyboard-interactive",
                },
                // ...and the key stack without the module's own check.
                Case {
                    break_it: "sed -i 's/ first_factor=publickey//' /etc/pam.d/sshd",
                    restart: false,
                    repair: pam_back,
                    message: "has no first_factor=publickey",
                    fix: "add first_factor=publickey",
                },
                // A Match block that drops the code for a group.
                Case {
                    break_it: "printf 'Match Group mfa\\n    AuthenticationMethods publickey\\n' >> /etc/ssh/sshd_config",
                    restart: true,
                    repair: sshd_back,
                    message: "MFA can be bypassed (for user=root, user=alice, user=bob)",
                    fix: "in a Match block too",
                },
                // A Match block by client address that locks a group out.
                Case {
                    break_it: "printf 'Match Address 10.0.0.0/8\\n    AuthenticationMethods keyboard-interactive\\n' >> /etc/ssh/sshd_config",
                    restart: true,
                    repair: sshd_back,
                    message: "locked out (for user=root addr=10.0.0.1, user=alice addr=10.0.0.1, user=bob addr=10.0.0.1)",
                    fix: "AuthenticationMethods publickey,keyboard-interactive",
                },
                Case {
                    break_it: "echo 'PermitRootLogin prohibit-password' > /etc/ssh/sshd_config.d/00-a-test.conf",
                    restart: true,
                    repair: sshd_back,
                    message: "PermitRootLogin prohibit-password: sshd replaces root's keyboard-interactive answers",
                    fix: "PermitRootLogin yes",
                },
                Case {
                    break_it: "printf 'require_groups = [\"mfa\"]\\nexempt_networks = [\"127.0.0.0/8\"]\\n' > /etc/ecs-mfa/config.toml",
                    restart: false,
                    repair: config_back,
                    message: "exempt_networks 127.0.0.0/8 contain loopback",
                    fix: "remove them from exempt_networks",
                },
                Case {
                    break_it: "sed -i 's|pam_ecs_mfa.so|/usr/lib/nowhere/pam_ecs_mfa.so|' /etc/pam.d/sshd",
                    restart: false,
                    repair: pam_back,
                    message: "cannot be loaded, so every SSH login is refused",
                    fix: "correct the module path",
                },
                Case {
                    break_it: "sed -i 's/first_factor=publickey/first_factor=publickey nulok/' /etc/pam.d/sshd",
                    restart: false,
                    repair: pam_back,
                    message: "the module refuses its arguments, so every login is denied: unknown module argument 'nulok'",
                    fix: "fix the pam_ecs_mfa.so line",
                },
                Case {
                    break_it: "printf 'require_groups = [\"mfa\", \"admns\"]\\n' > /etc/ecs-mfa/config.toml",
                    restart: false,
                    repair: config_back,
                    message: "require_groups: group 'admns' does not exist",
                    fix: "correct the group name",
                },
                Case {
                    break_it: "printf 'require_groups = [\"mfa\"]\\nexempt_groups = [\"robotz\"]\\n' > /etc/ecs-mfa/config.toml",
                    restart: false,
                    repair: config_back,
                    message: "exempt_groups: group 'robotz' does not exist",
                    fix: "correct the group name",
                },
                Case {
                    break_it: "sleep 0.1 && touch /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    restart: false,
                    repair: "true",
                    message: "it still uses the old settings",
                    fix: "systemctl reload ssh",
                },
                Case {
                    break_it: "sed -i 's/^auth .*pam_ecs_mfa.so.*/auth sufficient pam_ecs_mfa.so first_factor=publickey/' /etc/pam.d/sshd",
                    restart: false,
                    repair: pam_back,
                    message: "a failed code does not deny",
                    fix: "default=die",
                },
                Case {
                    break_it: "chmod 0777 /var/lib/ecs-mfa/users",
                    restart: false,
                    repair: "chmod 0700 /var/lib/ecs-mfa/users",
                    message: "writable by group/other",
                    fix: "chmod 0700",
                },
                Case {
                    break_it: "echo 'windw = 2' >> /etc/ecs-mfa/config.toml",
                    restart: false,
                    repair: config_back,
                    message: "config.toml:2",
                    fix: "every login is denied",
                },
                Case {
                    break_it: "useradd -m -s /bin/sh -G mfa dave && install -d -o dave -m 700 /home/dave/.ssh && \
                               install -o dave -m 600 /run/ecs-mfa-test/keys/alice.pub /home/dave/.ssh/authorized_keys",
                    restart: false,
                    repair: "userdel -r dave",
                    message: "not enrolled, so they cannot log in by SSH: dave",
                    fix: "mfa-enroll enroll --user NAME",
                },
            ];
            for case in cases {
                sh(case.break_it);
                if case.restart {
                    restart_sshd();
                }
                let (status, report) = doctor();
                let found = problems(&report);
                assert_eq!(status, 11, "{}: {found:#?}", case.break_it);
                assert!(
                    found
                        .iter()
                        .any(|p| p.contains(case.message) && p.contains(case.fix)),
                    "{}: expected '{}' with fix '{}' in {found:#?}",
                    case.break_it,
                    case.message,
                    case.fix
                );
                sh(case.repair);
                restart_sshd();
                let (status, report) = doctor();
                assert_eq!(
                    status,
                    0,
                    "after '{}': {:#?}",
                    case.repair,
                    problems(&report)
                );
            }

            // Not problems: a valid second list ending in password, PermitRootLogin yes with
            // key + code, a service account that cannot log in by SSH (no key).
            sh(
                "printf 'AuthenticationMethods publickey,keyboard-interactive publickey,password\\n\
                PermitRootLogin yes\\n' > /etc/ssh/sshd_config.d/00-a-test.conf && \
                useradd -m -s /bin/sh -G mfa svcacct",
            );
            restart_sshd();
            let (status, report) = doctor();
            assert_eq!(status, 0, "{:#?}", problems(&report));

            // With nullok, doctor says plainly that unenrolled users get in without a code.
            sh("install -d -o svcacct -m 700 /home/svcacct/.ssh && \
                install -o svcacct -m 600 /run/ecs-mfa-test/keys/bob.pub /home/svcacct/.ssh/authorized_keys && \
                printf 'require_groups = [\"mfa\"]\\nnullok = true\\n' > /etc/ecs-mfa/config.toml");
            let (_, report) = doctor();
            let warnings = findings(&report, "warning");
            assert_warns(&warnings, "log in WITHOUT a code: svcacct");

            // Enrollment at login: warned about when sshd lets keyboard-interactive come without
            // a key, and when its deadline is over.
            sh(
                "printf 'require_groups = [\"mfa\"]\nenroll_at_login = true\nenroll_until = \"2020-01-31\"\n' \
                > /etc/ecs-mfa/config.toml && printf 'AuthenticationMethods publickey,keyboard-interactive keyboard-interactive\n' \
                > /etc/ssh/sshd_config.d/00-a-test.conf",
            );
            restart_sshd();
            let (_, report) = doctor();
            let warnings = findings(&report, "warning");
            assert_warns(
                &warnings,
                "enroll_at_login is on, but sshd allows keyboard-interactive without a key first",
            );
            assert_warns(&warnings, "enroll_until (2020-01-31) has passed");
            sh(
                "printf 'AuthenticationMethods publickey,keyboard-interactive publickey,password\nPermitRootLogin yes\n' \
                > /etc/ssh/sshd_config.d/00-a-test.conf",
            );
            restart_sshd();

            // The human output says the same, one finding per line, no control characters.
            sh(config_back);
            let out = Command::new("/usr/sbin/mfa-enroll")
                .arg("doctor")
                .output()
                .unwrap();
            let human = text(&out.stdout);
            assert!(
                human.contains("ok      [sshd] AuthenticationMethods publickey,keyboard-interactive publickey,password"),
                "{human}"
            );
            assert!(
                !human.chars().any(|c| c.is_control() && c != '\n'),
                "{human:?}"
            );
        },
    );
}
