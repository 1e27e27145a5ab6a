use super::*;

fn at(endpoint: &str, cause: Cause) -> EndpointFailure {
    EndpointFailure {
        endpoint: Some(endpoint.into()),
        cause,
    }
}

#[test]
fn the_text_is_what_audit_lines_and_the_cli_showed_before_the_types() {
    let outage = FleetError::Unavailable(Failures(vec![
        at(
            "https://10.0.0.11:2379",
            Cause::Transport("timeout (global)".into()),
        ),
        at(
            "https://10.0.0.12:2379",
            Cause::Http {
                status: 503,
                message: "etcdserver:?leader?changed".into(),
            },
        ),
        at(
            "https://10.0.0.13:2379",
            Cause::NotTried { budget_ms: 1500 },
        ),
    ]));
    assert_eq!(
        outage.to_string(),
        "etcd unavailable: https://10.0.0.11:2379: timeout (global); \
         https://10.0.0.12:2379: HTTP 503: etcdserver:?leader?changed; \
         https://10.0.0.13:2379: not tried, deadline of 1500 ms passed"
    );
    assert!(outage.is_unavailable() && !outage.is_permission_denied());
    let denied = FleetError::refused(Cause::Http {
        status: 403,
        message: "etcdserver:?permission?denied".into(),
    });
    assert_eq!(
        denied.to_string(),
        "etcd refused: permission denied (HTTP 403): etcdserver:?permission?denied"
    );
    assert!(denied.is_permission_denied() && !denied.is_unavailable());
    let full = Cause::Http {
        status: 429,
        message: "etcdserver: mvcc: database space exceeded".into(),
    };
    assert!(full.to_string().starts_with(DATABASE_FULL));
    let busy = Cause::Http {
        status: 429,
        message: "etcdserver: too many requests".into(),
    };
    assert_eq!(busy.to_string(), "HTTP 429: etcdserver: too many requests");
    let shape = Cause::NotEtcd {
        status: Some(200),
        why: "the answer is not UTF-8".into(),
    };
    assert_eq!(
        shape.to_string(),
        "HTTP 200: the answer is not UTF-8 (not etcd?)"
    );
    let compacted = Cause::Http {
        status: 400,
        message: "etcdserver:?mvcc:?required?revision?has?been?compacted".into(),
    };
    assert!(compacted.is_compacted() && !busy.is_compacted());
}
