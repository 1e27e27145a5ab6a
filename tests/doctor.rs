//! `mfa-enroll doctor` against a live sshd in `scripts/container`: a good setup passes, and
//! each seeded misconfiguration is reported with its fix.

mod common;

use std::process::Command;

use common::container::{enroll, in_container, set_config};
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

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

#[test]
fn doctor_passes_a_good_setup_and_reports_each_seeded_misconfiguration() {
    in_container(
        "doctor_passes_a_good_setup_and_reports_each_seeded_misconfiguration",
        &[],
        || {
            // Only members of "mfa" need MFA here, so host accounts copied into the container do
            // not matter. The container runs the shipped pam.d and sshd files.
            sh("groupadd mfa && for u in alice bob carol; do usermod -aG mfa $u; done");
            set_config("require_groups = [\"mfa\"]\n");
            for u in ["alice", "bob", "carol"] {
                enroll(u);
            }
            let (status, report) = doctor();
            assert_eq!(status, 0, "good setup: {:#?}", problems(&report));
            assert!(problems(&report).is_empty());

            let cases: [(&str, &str, &str, &str); 6] = [
                (
                    "sed -i 's/^AuthenticationMethods .*/AuthenticationMethods publickey/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    "sed -i 's/^AuthenticationMethods .*/AuthenticationMethods publickey,keyboard-interactive/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    "MFA can be bypassed",
                    "AuthenticationMethods publickey,keyboard-interactive",
                ),
                (
                    "sed -i 's/^KbdInteractiveAuthentication yes/KbdInteractiveAuthentication no/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    "sed -i 's/^KbdInteractiveAuthentication no/KbdInteractiveAuthentication yes/' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
                    "in AuthenticationMethods list",
                    "sshd -t",
                ),
                (
                    "sed -i 's/^auth .*pam_ecs_mfa.so.*/auth sufficient pam_ecs_mfa.so/' /etc/pam.d/sshd",
                    "cp /run/ecs-mfa-test/pam.sshd /etc/pam.d/sshd",
                    "a failed code does not deny",
                    "default=die",
                ),
                (
                    "chmod 0777 /var/lib/ecs-mfa/users",
                    "chmod 0700 /var/lib/ecs-mfa/users",
                    "writable by group/other",
                    "chmod 0700",
                ),
                (
                    "echo 'windw = 2' >> /etc/ecs-mfa/config.toml",
                    "printf 'require_groups = [\"mfa\"]\\n' > /etc/ecs-mfa/config.toml",
                    "config.toml:2",
                    "every login is denied",
                ),
                (
                    "useradd -m -s /bin/sh -G mfa dave",
                    "userdel -r dave",
                    "not enrolled, so they cannot log in by SSH: dave",
                    "mfa-enroll enroll --user NAME",
                ),
            ];
            sh("cp /etc/pam.d/sshd /run/ecs-mfa-test/pam.sshd");
            for (break_it, repair, message, fix) in cases {
                sh(break_it);
                let (status, report) = doctor();
                let found = problems(&report);
                assert_eq!(status, 11, "{break_it}: {found:#?}");
                assert!(
                    found.iter().any(|p| p.contains(message) && p.contains(fix)),
                    "{break_it}: expected '{message}' with fix '{fix}' in {found:#?}"
                );
                sh(repair);
                let (status, report) = doctor();
                assert_eq!(status, 0, "after '{repair}': {:#?}", problems(&report));
            }
            // The human output says the same, one finding per line with its fix.
            let out = Command::new("/usr/sbin/mfa-enroll")
                .arg("doctor")
                .output()
                .unwrap();
            assert!(
                text(&out.stdout).contains(
                    "ok      [sshd] AuthenticationMethods publickey,keyboard-interactive"
                ),
                "{}",
                text(&out.stdout)
            );
        },
    );
}
