//! Unit tests of `super` (arguments, config file, the documented tables).

use super::*;
use crate::test_util::Scratch;
use std::os::unix::fs::PermissionsExt;

fn with_config(text: &str) -> (Scratch, Result<Policy, PolicyError>) {
    let s = Scratch::new("policy");
    let path = s.0.join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let arg = format!("config={}", path.display());
    let policy = Policy::from_module_args([arg.as_str()]);
    (s, policy)
}

#[test]
fn no_arguments_and_no_config_file_give_the_defaults() {
    let policy = Policy::from_module_args(["config=/nonexistent/ecs-mfa.toml"]).unwrap();
    assert_eq!(
        policy,
        Policy {
            config_path: "/nonexistent/ecs-mfa.toml".into(),
            ..Policy::default()
        }
    );
    assert_eq!(policy.store_dir, Path::new("/var/lib/ecs-mfa/users"));
    assert_eq!(policy.state_dir, Path::new("/run/ecs-mfa"));
    assert_eq!((policy.window, policy.throttle.max_failures), (1, 5));
}

#[test]
fn module_arguments_are_parsed() {
    let args = ModuleArgs::parse(["store=/s", "state=/t", "config=/c", "nullok", "debug"]);
    assert_eq!(
        args.unwrap(),
        ModuleArgs {
            store: Some("/s".into()),
            state: Some("/t".into()),
            config: Some("/c".into()),
            nullok: true,
            debug: true,
            first_factor: false,
            echo_code: false,
            test_panic: false,
            pass: None,
        }
    );
}

#[test]
fn unknown_malformed_or_repeated_arguments_are_errors() {
    let cases: [&[&str]; 14] = [
        &["first_factor"],
        &["first_factor=password"],
        &["first_factor=publickey", "first_factor=publickey"],
        &["firstfactor=publickey"],
        &["nulok"],
        &["store"],
        &["store="],
        &["store=relative/dir"],
        &["store=/a/../b"],
        &["nullok=1"],
        &["nullok", "nullok"],
        &["store=/a", "store=/b"],
        &["secret=/x"],
        &["debug\n"],
    ];
    for args in cases {
        assert!(ModuleArgs::parse(args.iter().copied()).is_err(), "{args:?}");
    }
    let err = ModuleArgs::parse(["nulok"]).unwrap_err();
    assert_eq!(err.to_string(), "unknown module argument 'nulok'");
}

#[test]
fn config_file_values_apply_and_arguments_win() {
    let (s, policy) = with_config(
        "store = \"/srv/mfa\"\nstate = \"/run/x\"\nwindow = 2\nmax_failures = 3\n\
         lockout_seconds = 5\nlockout_max_seconds = 50\nprompt = \"Code: \"\nnullok = true\n",
    );
    let policy = policy.unwrap();
    assert_eq!(policy.store_dir, Path::new("/srv/mfa"));
    assert_eq!(policy.window, 2);
    assert!(policy.nullok);
    assert_eq!(
        policy.throttle,
        ThrottlePolicy {
            max_failures: 3,
            lockout_seconds: 5,
            lockout_max_seconds: 50
        }
    );
    assert_eq!(policy.prompt, "Code: ");
    let arg = format!("config={}", s.0.join("config.toml").display());
    let policy = Policy::from_module_args([arg.as_str(), "store=/elsewhere"]).unwrap();
    assert_eq!(policy.store_dir, Path::new("/elsewhere"));
    assert_eq!(policy.state_dir, Path::new("/run/x"));
}

#[test]
fn bad_config_files_are_errors_with_file_and_line() {
    let cases = [
        ("window = 1\nwindw = 2\n", "config.toml:2:"),
        ("window = \"wide\"\n", "config.toml:1:"),
        ("window = [\n", "config.toml:"),
        ("window = 11\n", "window must be 0 to 10"),
        ("max_failures = 0\n", "max_failures must be 1 to 100"),
        (
            "lockout_seconds = 60\nlockout_max_seconds = 30\n",
            "lockout_max_seconds",
        ),
        ("prompt = \"\"\n", "prompt"),
        ("store = \"relative\"\n", "store path must be absolute"),
        (
            "exempt_networks = [\"10.0.0.0/33\"]\n",
            "exempt_networks has a bad prefix length",
        ),
        (
            "exempt_networks = [\"gateway.example\"]\n",
            "exempt_networks is not an IP",
        ),
        (
            "exempt_groups = [\"a b\"]\n",
            "exempt_groups must be a list of group names",
        ),
        ("require_groups = \"admins\"\n", "config.toml:1:"),
        (
            "first_factor = \"password\"\n",
            "first_factor must be \"publickey\" or \"none\"",
        ),
        (
            "issuer = \"\"\n",
            "issuer must be 1 to 64 printable characters",
        ),
        (
            "issuer = \"a\\nb\"\n",
            "issuer must be 1 to 64 printable characters",
        ),
    ];
    for (text, expected) in cases {
        let (_s, policy) = with_config(text);
        let err = policy.unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn the_documented_argument_table_is_what_the_parser_accepts() {
    for (name, _) in MODULE_ARGUMENTS {
        let arg = match name.split_once('=') {
            Some((_, value)) if !value.chars().all(|c| c.is_ascii_uppercase()) => name.to_string(),
            Some((key, _)) => format!("{key}=/somewhere"),
            None => name.to_string(),
        };
        assert!(
            ModuleArgs::parse([arg.as_str()]).is_ok(),
            "{name} is documented but refused"
        );
    }
    assert_eq!(
        MODULE_ARGUMENTS.len(),
        11,
        "a new argument needs a table row and a parser arm"
    );
}

#[test]
fn the_shipped_example_config_documents_the_defaults() {
    let example = include_str!("../../pam-config/config.toml.example");
    let uncommented: String = example
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with(' ') && l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        uncommented.lines().count(),
        CONFIG_KEYS.len(),
        "every key is in the example"
    );
    for (key, _) in CONFIG_KEYS {
        assert!(uncommented.contains(&format!("{key} = ")), "{key} missing");
    }
    let (_s, policy) = with_config(&uncommented);
    let policy = policy.unwrap();
    // Every value shown is the default, except the issuer (the default is the host name,
    // which a file cannot show; the example shows a placeholder).
    assert_eq!(
        policy,
        Policy {
            config_path: policy.config_path.clone(),
            issuer: Some("ecs-host".into()),
            ..Policy::default()
        }
    );
}

#[test]
fn first_factor_comes_from_the_argument_or_the_config_and_the_stricter_wins() {
    let no_config = "config=/nonexistent/ecs-mfa.toml";
    let p = Policy::from_module_args([no_config]).unwrap();
    assert_eq!(p.first_factor, FirstFactor::None);
    let p = Policy::from_module_args([no_config, "first_factor=publickey"]).unwrap();
    assert_eq!(p.first_factor, FirstFactor::PublicKey);
    let (_s, p) = with_config("first_factor = \"publickey\"\n");
    assert_eq!(p.unwrap().first_factor, FirstFactor::PublicKey);
    let (s, p) = with_config("first_factor = \"none\"\n");
    assert_eq!(p.unwrap().first_factor, FirstFactor::None);
    let arg = format!("config={}", s.0.join("config.toml").display());
    let p = Policy::from_module_args([arg.as_str(), "first_factor=publickey"]).unwrap();
    assert_eq!(p.first_factor, FirstFactor::PublicKey);
}

#[test]
fn enrollment_at_login_is_off_unless_asked_and_the_deadline_is_the_end_of_the_day() {
    let (_s, p) = with_config("enroll_groups = [\"staff\"]\n");
    assert_eq!(p.unwrap().enroll_at_login, None, "off by default");
    let (_s, p) = with_config(
        "enroll_at_login = true\nenroll_groups = [\"staff\"]\nenroll_until = \"2027-01-31\"\n",
    );
    let rules = p.unwrap().enroll_at_login.unwrap();
    assert_eq!(rules.groups, vec!["staff".to_string()]);
    // 2027-02-01T00:00:00Z
    assert_eq!(rules.until, Some(1_801_440_000));
    assert_eq!(end_of_day("1970-01-01"), Some(86_400));
    assert_eq!(end_of_day("2024-02-29"), Some(1_709_251_200));
    assert_eq!(end_of_day("2023-02-29"), None);
}

#[test]
fn a_config_file_writable_by_others_is_refused() {
    let s = Scratch::new("policy");
    let path = s.0.join("config.toml");
    std::fs::write(&path, "window = 1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let arg = format!("config={}", path.display());
    assert!(matches!(
        Policy::from_module_args([arg.as_str()]),
        Err(PolicyError::ConfigFile(_))
    ));
}

/// The names serde's "unknown field" error lists as expected for a table: what the parser
/// accepts, read from the parser itself.
fn accepted_keys(text: &str) -> std::collections::BTreeSet<String> {
    let err = ConfigFile::parse(text, Path::new("/x.toml"))
        .unwrap_err()
        .to_string();
    let expected = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The rows `| \`key\` |` of docs/config.md between `from` and the next `## ` heading.
fn documented_keys(from: &str) -> std::collections::BTreeSet<String> {
    let doc = include_str!("../../docs/config.md");
    let start = doc.find(from).unwrap_or(0);
    let section = &doc[start..];
    let end = section[from.len()..]
        .find("\n## ")
        .map_or(section.len(), |i| i + from.len());
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |"))
        .map(|(key, _)| key.to_string())
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn config_keys_come_from_one_table_that_the_parser_and_docs_follow() {
    use std::collections::BTreeSet;
    let table: BTreeSet<String> = CONFIG_KEYS.iter().map(|(k, _)| k.to_string()).collect();
    let fleet_table: BTreeSet<String> = crate::fleet::FLEET_KEYS
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    // The parser accepts exactly the table (plus the [fleet] table).
    let mut parsed = accepted_keys("zz_not_a_key = 1\n");
    assert!(parsed.remove("fleet"));
    assert_eq!(parsed, table, "ConfigFile and CONFIG_KEYS differ");
    assert_eq!(
        accepted_keys("[fleet]\nzz_not_a_key = 1\n"),
        fleet_table,
        "RawFleet and FLEET_KEYS differ"
    );
    // docs/config.md documents exactly these keys, each in its section.
    assert_eq!(
        documented_keys("# Configuration"),
        table,
        "docs/config.md keys"
    );
    assert_eq!(
        documented_keys("## The `[fleet]` table"),
        fleet_table,
        "docs/config.md [fleet] keys"
    );
}
