//! `audit_format = "json"`: each audit line as one JSON object whose fields follow the Elastic
//! Common Schema for authentication events, for log services and SIEMs (Huawei Cloud LTS,
//! Elastic, Splunk) that ingest JSON lines best. The same information and the same never-log
//! rules as the `key=value` line: the same cleaned values (client fields reduced to printable
//! ASCII without quotes or `=`, bounded; the detail bounded, no control characters), never a
//! code or a secret (a [`Decision`] holds none).
//!
//! ```json
//! {"event":{"kind":"event","category":["authentication"],"type":["start"],"action":"ecs-mfa-verify","outcome":"success","reason":"ok"},
//!  "user":{"name":"root"},"source":{"ip":"192.0.2.7"},"service":{"name":"sshd"},
//!  "ecs_mfa":{"result":"success","reason":"ok","person":"alice","key":"SHA256:...","skew":0}}
//! ```
//! (one line in the log). `source.ip` when `PAM_RHOST` is an IP address, `source.domain`
//! otherwise; `event.outcome` is `success`, `failure` (deny) or `unknown` (ignore).
#![forbid(unsafe_code)]

use serde_json::{Map, Value, json};

use super::{Context, clean_detail, clean_field};
use crate::decision::{Decision, Outcome};

/// The JSON line for `decision`.
pub fn line(ctx: &Context, decision: &Decision) -> String {
    let (result, outcome) = match decision.outcome {
        Outcome::Success => ("success", "success"),
        Outcome::Ignore => ("ignore", "unknown"),
        Outcome::Deny => ("deny", "failure"),
    };
    let reason = decision.reason.as_str();
    let mut root = Map::new();
    root.insert(
        "event".into(),
        json!({
            "kind": "event",
            "category": ["authentication"],
            "type": ["start"],
            "action": "ecs-mfa-verify",
            "outcome": outcome,
            "reason": reason,
        }),
    );
    root.insert(
        "user".into(),
        json!({ "name": clean_field(ctx.user.as_deref()).unwrap_or_else(|| "-".into()) }),
    );
    if let Some(rhost) = clean_field(ctx.rhost.as_deref()) {
        let field = if rhost.parse::<std::net::IpAddr>().is_ok() {
            "ip"
        } else {
            "domain"
        };
        root.insert("source".into(), json!({ field: rhost }));
    }
    if let Some(service) = clean_field(ctx.service.as_deref()) {
        root.insert("service".into(), json!({ "name": service }));
    }
    let mut ours = Map::new();
    ours.insert("result".into(), result.into());
    ours.insert("reason".into(), reason.into());
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            ours.insert(key.into(), value);
        }
    };
    put("account", clean_field(decision.account()).map(Value::from));
    put("person", clean_field(decision.person()).map(Value::from));
    put("key", clean_field(decision.key()).map(Value::from));
    put("skew", decision.skew.map(Value::from));
    put("failures", decision.failures.map(Value::from));
    put("locked_for", decision.locked_for.map(Value::from));
    put("remaining", decision.remaining.map(Value::from));
    put(
        "detail",
        decision.detail.as_deref().map(|d| clean_detail(d).into()),
    );
    root.insert("ecs_mfa".into(), Value::Object(ours));
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Format;
    use crate::decision::Reason;

    fn ctx(user: &str, rhost: &str) -> Context {
        Context {
            user: Some(user.into()),
            rhost: Some(rhost.into()),
            service: Some("sshd".into()),
            format: Format::Json,
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_the_fields_of_the_key_value_line() {
        let mut d = Decision::deny(Reason::BadCode).with_detail("a \"quoted\"\nsecond line");
        d.failures = Some(2);
        let d = d.with_who(Some("alice".into()), Some("SHA256:abc".into()));
        let line = crate::audit::line(&ctx("root", "2001:db8::7"), &d);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["category"][0], "authentication");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["user"]["name"], "root");
        assert_eq!(v["source"]["ip"], "2001:db8::7");
        assert_eq!(v["ecs_mfa"]["reason"], "bad_code");
        assert_eq!(v["ecs_mfa"]["failures"], 2);
        assert_eq!(v["ecs_mfa"]["person"], "alice");
        assert_eq!(v["ecs_mfa"]["key"], "SHA256:abc");
        assert_eq!(v["ecs_mfa"]["detail"], "a 'quoted'?second line");
        // The same information as the key=value line.
        let kv = crate::audit::line(
            &Context {
                format: Format::KeyValue,
                ..ctx("root", "2001:db8::7")
            },
            &d,
        );
        for field in [
            "user=root",
            "person=alice",
            "key=SHA256:abc",
            "reason=bad_code",
            "failures=2",
        ] {
            assert!(kv.contains(field), "{kv}");
        }
    }

    #[test]
    fn hostile_names_cannot_break_the_object_or_forge_a_field() {
        let hostile = [
            "a\"},\"event\":{\"outcome\":\"success\"},\"x\":{\"",
            "ev\\il\u{0}\u{1b}[2J\n{\"user\":1}",
            &"x".repeat(10_000),
        ];
        for name in hostile {
            let d = Decision::success(0);
            let line = crate::audit::line(&ctx(name, name), &d);
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v.as_object().unwrap().len(), 5, "{line}");
            let user = v["user"]["name"].as_str().unwrap();
            assert!(
                user.len() <= 67 && user.chars().all(|c| c.is_ascii_graphic()),
                "{user}"
            );
            assert!(
                v["source"].get("ip").is_none(),
                "a name is never an ip: {line}"
            );
            assert!(!line.contains('\u{1b}') && !line.contains('\n'));
        }
        let denied = Decision::deny(Reason::BadCode);
        let line = crate::audit::line(&ctx(hostile[0], "198.51.100.1"), &denied);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["outcome"], "failure", "{line}");
    }
}
