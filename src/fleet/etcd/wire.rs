//! The gateway's JSON: requests (compares, operations, base64 keys) and answers (ranges),
//! with the size and depth check made before an answer is parsed.
#![forbid(unsafe_code)]

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Cmp, Kv, Op};
use crate::fleet::{Cause, FleetError};

/// Checks, without allocating, that `text` holds at most `max_values` JSON values nested at
/// most `max_depth` deep (an upper bound on what parsing it costs). Not a validator: the
/// parser still refuses malformed JSON.
pub(super) fn json_shape(text: &[u8], max_values: usize, max_depth: usize) -> Result<(), String> {
    let (mut values, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > max_depth {
                    return Err(format!("the answer nests deeper than {max_depth} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            // Every further element or member.
            b',' | b':' => values += 1,
            _ => {}
        }
        if values > max_values {
            return Err(format!(
                "the answer holds more than {max_values} JSON values"
            ));
        }
    }
    Ok(())
}

/// Error text from the server, made safe for one log line.
pub(super) fn clean(text: &str) -> String {
    crate::text::ascii_printable(text.trim(), 200)
}

pub(super) fn b64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// The key just after every key starting with `prefix` (etcd's `range_end` for a prefix).
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub(super) fn cmp_json(c: &Cmp) -> Value {
    match c {
        Cmp::ModRevision(key, rev) => json!({
            "key": b64(key.as_bytes()),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": rev.to_string(),
        }),
    }
}

pub(super) fn op_json(op: &Op) -> Value {
    match op {
        Op::Get(key) => json!({ "request_range": { "key": b64(key.as_bytes()) } }),
        Op::Prefix { prefix, keys_only } => json!({ "request_range": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "keys_only": keys_only,
        }}),
        Op::Put(key, value) => json!({ "request_put": {
            "key": b64(key.as_bytes()),
            "value": b64(value),
        }}),
        Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key.as_bytes()) } }),
    }
}

/// The `kvs` of a range answer (absent: none).
pub(super) fn kvs(range: &Value) -> Result<Vec<Kv>, FleetError> {
    let bad = |what: &str| {
        FleetError::refused(Cause::NotEtcd {
            status: None,
            why: format!("a range answer has a bad {what}"),
        })
    };
    let Some(list) = range.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("key"))?;
            let key = Base64::decode_vec(key).map_err(|_| bad("key"))?;
            let key = String::from_utf8(key).map_err(|_| bad("key"))?;
            let value = match kv.get("value").and_then(Value::as_str) {
                Some(v) => Base64::decode_vec(v).map_err(|_| bad("value"))?,
                None => Vec::new(),
            };
            let mod_revision = match kv.get("mod_revision") {
                Some(Value::String(s)) => s.parse().map_err(|_| bad("mod_revision"))?,
                Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad("mod_revision"))?,
                _ => 0,
            };
            Ok(Kv {
                key,
                value: Zeroizing::new(value),
                mod_revision,
            })
        })
        .collect()
}
