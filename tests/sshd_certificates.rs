//! Tier 3: OpenSSH user certificates against a real sshd (`TrustedUserCAKeys`) in the
//! namespace container (see `tests/sshd_e2e.rs`). A certificate is its key: the fingerprint
//! recorded by an enrollment at login, written to the audit line and used for grace is the one
//! `ssh-keygen -l` prints for the key and for the certificate; the audit line also names the
//! certificate (key id, serial, principals, signing CA).

mod common;

use std::process::Command;
use std::time::Duration;

use common::container::{
    audit_lines, code, first_login, in_container, keygen_fingerprint, new_audit_lines, set_config,
    sh, ssh, sshd_settings,
};

const DIR: &str = "/run/ecs-mfa-test";

#[test]
fn a_certificate_is_its_key_for_enrollment_at_login_grace_and_the_audit_line() {
    in_container(
        "a_certificate_is_its_key_for_enrollment_at_login_grace_and_the_audit_line",
        &[],
        || {
            // A user CA, and a certificate for carol's key (which is in no authorized_keys).
            sh(&format!(
                "ssh-keygen -q -t ed25519 -N '' -C ca -f {DIR}/ca && \
                 ssh-keygen -q -s {DIR}/ca -I carol@corp -n carol -z 7 {DIR}/keys/carol.pub"
            ));
            sshd_settings(&format!("TrustedUserCAKeys {DIR}/ca.pub\n"));
            set_config("enroll_at_login = true\ngrace_seconds = 300\n");
            let key = keygen_fingerprint(&format!("{DIR}/keys/carol.pub"));
            let of_cert = keygen_fingerprint(&format!("{DIR}/keys/carol-cert.pub"));
            let ca = keygen_fingerprint(&format!("{DIR}/ca.pub"));
            assert_eq!(
                key, of_cert,
                "ssh-keygen -l: one fingerprint for key and certificate"
            );
            eprintln!("key {key}, CA {ca}");

            // Enrollment at login with the certificate records the key's fingerprint.
            common::wait_for_fresh_step(20);
            let seen = audit_lines().len();
            let (ok, _, client, _) = first_login("carol", "carol", None, "cert");
            assert!(ok, "{client}");
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 1, "{lines:#?}");
            let certificate =
                format!("certificate id=carol@corp serial=7 principals=carol ca={ca} key={key}");
            assert!(
                lines[0].contains("result=success reason=enrolled_at_login")
                    && lines[0].contains(&format!("key {key};"))
                    && lines[0].contains(&certificate),
                "{lines:#?}"
            );
            let sshd_log = std::fs::read_to_string("/var/log/sshd.log").unwrap_or_default();
            assert!(
                sshd_log.contains(&format!("ID carol@corp (serial 7) CA ED25519 {ca}")),
                "sshd accepted the certificate itself: {sshd_log}"
            );
            let status = Command::new("/usr/sbin/mfa-enroll")
                .args(["status", "--user", "carol"])
                .output()
                .unwrap();
            let record = common::text(&status.stdout);
            assert!(
                record.contains(&format!("at login with key {key}")),
                "{record}"
            );
            let secret = client
                .lines()
                .find_map(|l| l.split("Secret: ").nth(1))
                .expect("the secret was shown")
                .replace(' ', "");

            // The next login with the certificate and a code (of the next step: the
            // confirmation code is used up) starts a grace period for the key.
            std::thread::sleep(Duration::from_millis(
                200 + 1000 * (30 - common::container::now() % 30),
            ));
            let seen = audit_lines().len();
            let with_code = ssh("carol", Some("carol"), Some(&code(&secret)), "id -un");
            assert!(with_code.success, "{with_code:#?}");
            let lines = new_audit_lines(seen);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("reason=ok") && l.contains(&certificate)),
                "{lines:#?}"
            );

            // The same key without the certificate (now in authorized_keys): the same key to
            // grace, so no code is asked.
            sh(&format!(
                "install -m 600 -o carol -g carol {DIR}/keys/carol.pub /home/carol/.ssh/authorized_keys && \
                 install -m 600 {DIR}/keys/carol {DIR}/keys/carol-plain"
            ));
            let seen = audit_lines().len();
            let plain = ssh("carol", Some("carol-plain"), None, "id -un");
            assert!(plain.success, "{plain:#?}");
            assert!(plain.prompts.is_empty(), "{plain:#?}");
            let lines = new_audit_lines(seen);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("reason=grace") && !l.contains("certificate")),
                "{lines:#?}"
            );
        },
    );
}
