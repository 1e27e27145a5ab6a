use super::wire::*;
use super::*;

#[test]
fn prefix_ranges_end_just_after_the_prefix() {
    assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
}

/// Endpoint 0 never answers (it takes all the time it is given); the others answer.
struct Scripted {
    calls: RefCell<Vec<(String, Duration)>>,
}

impl Transport for std::rc::Rc<Scripted> {
    fn post(
        &self,
        url: &str,
        _body: &[u8],
        _token: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
        self.calls.borrow_mut().push((url.to_string(), timeout));
        if url.starts_with("https://10.0.0.1:") {
            std::thread::sleep(timeout);
            return Err(Failure::Unavailable("timeout".into()));
        }
        let answer = br#"{"header":{},"succeeded":true,"responses":[]}"#;
        Ok((200, Zeroizing::new(answer.to_vec())))
    }
}

#[test]
fn a_hung_endpoint_gets_its_share_and_the_next_login_starts_with_the_one_that_answered() {
    let scratch = crate::test_util::Scratch::new("etcd-hint");
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("https://10.0.0.{i}:2379"))
        .collect();
    let script = std::rc::Rc::new(Scripted {
        calls: RefCell::new(Vec::new()),
    });
    let budget = Duration::from_millis(300);
    let etcd = |dir: &Path| {
        Etcd::with_transport(
            endpoints.clone(),
            Box::new(script.clone()),
            budget,
            None,
            Some(dir.to_owned()),
        )
    };
    let first = etcd(&scratch.0);
    first.txn(&[], &[], &[]).unwrap();
    let calls = script.calls.borrow().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].1 <= budget / 3,
        "the hung endpoint gets a third: {calls:?}"
    );
    // What is left is shared again between the two endpoints not yet tried.
    assert!(
        calls[1].1 >= budget / 3 - Duration::from_millis(20),
        "{calls:?}"
    );
    // The same process goes on with the endpoint that answered ...
    first.txn(&[], &[], &[]).unwrap();
    assert_eq!(
        script.calls.borrow()[2].0,
        format!("{}/v3/kv/txn", endpoints[1])
    );
    // ... and so does the next login, through the hint file.
    script.calls.borrow_mut().clear();
    etcd(&scratch.0).txn(&[], &[], &[]).unwrap();
    let calls = script.calls.borrow().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].0.starts_with(&endpoints[1]), "{calls:?}");
    // A hint naming no configured endpoint is ignored.
    std::fs::write(
        scratch.0.join(ENDPOINT_HINT_FILE),
        "https://192.0.2.1:2379\n",
    )
    .unwrap();
    script.calls.borrow_mut().clear();
    etcd(&scratch.0).txn(&[], &[], &[]).unwrap();
    assert!(script.calls.borrow()[0].0.starts_with(&endpoints[0]));
}

#[test]
fn huge_and_deep_json_is_refused_before_parsing() {
    let ok = json!({"header": {"revision": "3"}, "responses": [{"response_range": {"kvs": [{"key": "YQ==", "value": "Yg==", "mod_revision": "7"}], "count": "1"}}]});
    assert_eq!(json_shape(ok.to_string().as_bytes(), 100, 20), Ok(()));
    let wide = format!("[{}0]", "0,".repeat(5000));
    assert!(
        json_shape(wide.as_bytes(), 4096, 20)
            .unwrap_err()
            .contains("4096")
    );
    let deep = "[".repeat(21);
    assert!(
        json_shape(deep.as_bytes(), 4096, 20)
            .unwrap_err()
            .contains("deeper")
    );
    // Brackets, commas and escaped quotes inside strings are not structure.
    let text = format!("{{\"a\": \"{}\\\"[[[,\"}}", ",[{".repeat(5000));
    assert_eq!(json_shape(text.as_bytes(), 10, 2), Ok(()));
}

#[test]
fn range_answers_decode_and_a_missing_kvs_is_empty() {
    let answer = json!({"header": {"revision": "3"}});
    assert!(kvs(&answer).unwrap().is_empty());
    let answer = json!({"kvs": [{"key": b64(b"/p/state/alice"), "value": b64(b"x"), "mod_revision": "7"}], "count": "1"});
    let got = kvs(&answer).unwrap();
    assert_eq!(
        (got[0].key.as_str(), got[0].mod_revision, &got[0].value[..]),
        ("/p/state/alice", 7, &b"x"[..])
    );
    assert!(kvs(&json!({"kvs": [{"key": "!!"}]})).is_err());
}

#[test]
fn a_full_database_is_named_and_status_gives_size_history_and_alarms() {
    let status = json!({"header": {"revision": "26"}, "dbSize": "1171456",
        "errors": ["memberID:10276657743932975437 alarm:NOSPACE "], "dbSizeInUse": "1044480"});
    let space = MemberSpace::from_status(&status);
    assert_eq!((space.db_size_in_use, space.revision), (1_044_480, 26));
    assert!(space.alarms[0].contains("alarm:NOSPACE"), "{space:?}");
    assert_eq!(MemberSpace::from_status(&json!({})), MemberSpace::default());
}
