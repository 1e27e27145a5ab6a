//! Hosts of the fleet tests: sandboxes whose config uses a test cluster (tests/common/etcd.rs),
//! and the login helpers every fleet test file shares.
#![allow(dead_code)]

use std::path::PathBuf;

use super::etcd::Cluster;
use super::{Sandbox, cli};
use pam_ecs_mfa::fleet::etcd::Etcd;

/// The key prefix every fleet test uses.
pub const PREFIX: &str = "/ecs-mfa/v1/";

/// Writes a fleet key with the real CLI (`fleet init --key-file`) into the cluster directory,
/// once per cluster; a second `fleet init` never replaces it.
pub fn fleet_key(cluster: &Cluster, sb: &Sandbox) -> PathBuf {
    let path = cluster.dir.join("fleet.key");
    if !path.exists() {
        let out = cli(
            sb,
            &["fleet", "init", "--key-file", path.to_str().unwrap()],
            b"",
        );
        super::assert_ok(&out, "fleet init");
        let again = cli(
            sb,
            &["fleet", "init", "--key-file", path.to_str().unwrap()],
            b"",
        );
        super::assert_failed(&again, "fleet init never replaces a key");
    }
    path
}

/// A host whose config lists `endpoints` (in this order). `top`: extra top-level config keys;
/// `fleet`: extra `[fleet]` keys.
pub fn host_with(
    cluster: &Cluster,
    tag: &str,
    endpoints: &[String],
    top: &str,
    fleet: &str,
) -> Sandbox {
    let sb = Sandbox::new(tag);
    let key = fleet_key(cluster, &sb);
    let files = cluster.host_files();
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    sb.set_config(&format!(
        "{top}\n[fleet]\nbackend = \"etcd\"\nendpoints = [{}]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nfleet_key_file = \"{}\"\nprefix = \"{PREFIX}\"\n{fleet}\n",
        endpoints.join(", "),
        files.ca.display(),
        files.cert.display(),
        files.key.display(),
        key.display(),
    ));
    sb
}

/// A host using every endpoint of the cluster (see [`host_with`]).
pub fn host(cluster: &Cluster, tag: &str, top: &str, fleet: &str) -> Sandbox {
    host_with(cluster, tag, &cluster.endpoints(), top, fleet)
}

/// A server of the fleet (`max_failures = 3`, `lockout_seconds = 600`) whose logins come with
/// the SSH key `key` (`Sandbox::set_accepted_key`).
pub fn keyed_host(cluster: &Cluster, tag: &str, key: &str) -> Sandbox {
    let sb = host(cluster, tag, "max_failures = 3\nlockout_seconds = 600", "");
    sb.set_accepted_key(key);
    sb
}

/// The library's etcd client with `sb`'s host configuration (what a host, or anyone with its
/// credentials, can do to etcd).
pub fn client(sb: &Sandbox) -> Etcd {
    let policy = pam_ecs_mfa::policy::Policy::load(&sb.config).unwrap();
    Etcd::new(
        policy.fleet.as_ref().unwrap(),
        None,
        pam_ecs_mfa::fleet::transport::native,
    )
    .unwrap()
}

/// The raw value of `PREFIX + key` in etcd, read with `sb`'s host credentials.
pub fn get(sb: &Sandbox, key: &str) -> Vec<u8> {
    client(sb)
        .get(&format!("{PREFIX}{key}"))
        .unwrap()
        .expect("key exists")
        .value
        .to_vec()
}

/// Rewrites the lines of the etcd value at `PREFIX + key` (a state) that start with
/// `field = ` through `edit`, with `sb`'s host credentials: what a compromised host can do
/// (servers must write state). Panics if there is no such line.
pub fn edit_state(sb: &Sandbox, key: &str, field: &str, edit: impl Fn(&str) -> String) {
    let text = String::from_utf8(get(sb, key)).unwrap();
    let prefix = format!("{field} = ");
    let changed: String = text
        .lines()
        .map(|l| match l.strip_prefix(&prefix) {
            Some(value) => format!("{prefix}{}\n", edit(value)),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(changed, text, "no {field} in {text}");
    put(sb, key, changed.into_bytes());
}

/// Writes `value` at `PREFIX + key` with `sb`'s host credentials (what a compromised host can
/// do to its own prefix).
pub fn put(sb: &Sandbox, key: &str, value: Vec<u8>) {
    client(sb)
        .txn(
            &[],
            &[pam_ecs_mfa::fleet::etcd::Op::Put(
                format!("{PREFIX}{key}"),
                value,
            )],
            &[],
        )
        .unwrap();
}

/// doctor's findings about the fleet (the sandbox has no sshd setup: the rest is ignored).
pub fn fleet_findings(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = cli(sb, &["doctor", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("doctor --json: {}", super::describe(&out)));
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "fleet")
        .cloned()
        .collect()
}
