//! `[verify]` checks run by a `Checker` against little servers and host commands.

use super::parity::NO_LINK;
use super::testing::{answering, json, refused};
use super::*;

fn checker(timeout: Duration) -> Checker {
    Checker { docker: None, containers: HashMap::new(), timeout }
}

/// The one result of a `[verify]` with just this http check.
async fn http_check(url: &str, status: u16, field: Option<&str>, equals: Option<&str>) -> CheckResult {
    let check = VerifyHttp {
        url: url.to_owned(),
        status,
        field: field.map(str::to_owned),
        equals: equals.map(str::to_owned),
    };
    let verify = Verify { http: vec![check], ..Verify::default() };
    let mut results = checker(Duration::from_secs(5)).run(&verify).await;
    assert_eq!(results.len(), 1, "{results:?}");
    results.remove(0)
}

fn outcome(result: &CheckResult) -> (bool, &str) {
    (result.passed, &result.detail)
}

const POLICY: &str = r#"{"policy":{"hash":"abc"},"items":[{"id":7}],"count":42,"ok":true}"#;

#[tokio::test]
async fn an_http_check_passes_on_the_status_it_wants() {
    let url = format!("{}/health", answering(json(200, "ok")));
    let result = http_check(&url, 200, None, None).await;
    assert_eq!(
        result,
        CheckResult { kind: "http", name: url, passed: true, detail: "200".into(), parity: None }
    );
    let teapot = answering(json(418, ""));
    assert_eq!(outcome(&http_check(&teapot, 418, None, None).await), (true, "418"));
}

#[tokio::test]
async fn an_http_check_fails_on_another_status_naming_both() {
    let url = answering(json(503, "starting"));
    assert_eq!(outcome(&http_check(&url, 200, None, None).await), (false, "status 503, want 200"));
}

#[tokio::test]
async fn a_field_equal_to_the_value_wanted_passes() {
    let url = answering(json(200, POLICY));
    let result = http_check(&url, 200, Some("policy.hash"), Some("abc")).await;
    assert_eq!(outcome(&result), (true, "200, policy.hash = abc"));
}

#[tokio::test]
async fn a_field_with_another_value_fails_naming_what_was_found() {
    let url = answering(json(200, POLICY));
    let result = http_check(&url, 200, Some("policy.hash"), Some("xyz")).await;
    assert_eq!(outcome(&result), (false, "200, policy.hash = abc, want xyz"));
}

#[tokio::test]
async fn a_missing_field_fails() {
    let url = answering(json(200, POLICY));
    let result = http_check(&url, 200, Some("policy.size"), Some("1")).await;
    assert_eq!(outcome(&result), (false, "200, no field policy.size in the body"));
}

#[tokio::test]
async fn a_field_alone_needs_only_to_be_there() {
    let url = answering(json(200, POLICY));
    assert_eq!(outcome(&http_check(&url, 200, Some("ok"), None).await), (true, "200, ok = true"));
    assert!(!http_check(&url, 200, Some("nope"), None).await.passed);
}

#[tokio::test]
async fn a_body_that_is_not_json_fails() {
    let url = answering(json(200, "<html>ok</html>"));
    let result = http_check(&url, 200, Some("policy.hash"), Some("abc")).await;
    assert!(!result.passed);
    assert!(result.detail.starts_with("200, body is not JSON: "), "{}", result.detail);
}

#[tokio::test]
async fn a_nested_path_reaches_into_arrays() {
    let url = answering(json(200, POLICY));
    let result = http_check(&url, 200, Some("items.0.id"), Some("7")).await;
    assert_eq!(outcome(&result), (true, "200, items.0.id = 7"));
}

#[tokio::test]
async fn a_number_equals_its_text_and_a_string_its_value() {
    let url = answering(json(200, r#"{"n":42,"s":"42","b":false}"#));
    assert!(http_check(&url, 200, Some("n"), Some("42")).await.passed);
    assert!(http_check(&url, 200, Some("s"), Some("42")).await.passed);
    assert!(http_check(&url, 200, Some("b"), Some("false")).await.passed);
    assert_eq!(
        outcome(&http_check(&url, 200, Some("n"), Some("42.0")).await),
        (false, "200, n = 42, want 42.0")
    );
}

#[tokio::test]
async fn a_body_larger_than_1_mib_fails() {
    let url = answering(json(200, &format!(r#"{{"a":"{}"}}"#, "x".repeat(get::MAX_BODY))));
    assert_eq!(
        outcome(&http_check(&url, 200, Some("a"), Some("x")).await),
        (false, "body larger than 1 MiB")
    );
}

#[tokio::test]
async fn garbage_for_an_answer_fails_without_a_panic() {
    let url = answering(b"\x16\x03\x01 not http at all\r\n\r\n".to_vec());
    let result = http_check(&url, 200, Some("a"), Some("x")).await;
    assert!(!result.passed);
    assert!(result.detail.starts_with("HTTP error: "), "{}", result.detail);
}

#[tokio::test]
async fn a_refused_connection_fails_naming_the_address() {
    let url = refused();
    let addr = url.trim_start_matches("http://").trim_end_matches("/policy");
    let result = http_check(&url, 200, None, None).await;
    assert_eq!(outcome(&result), (false, format!("cannot connect to {addr}: connection refused").as_str()));
}

#[tokio::test]
async fn the_timeout_bounds_each_check_and_the_checks_run_together() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let verify = Verify { http: vec![http(&url); 4], ..Verify::default() };
    let begun = std::time::Instant::now();
    let results = checker(Duration::from_millis(300)).run(&verify).await;
    // one after the other they would take 1.2 s
    assert!(begun.elapsed() < Duration::from_millis(1000), "not concurrent: {:?}", begun.elapsed());
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| !r.passed && r.detail == "timed out after 300ms"), "{results:?}");
}

fn http(url: &str) -> VerifyHttp {
    VerifyHttp { url: url.to_owned(), status: 200, field: None, equals: None }
}

fn exec(command: &[&str], service: Option<&str>) -> VerifyExec {
    VerifyExec {
        command: command.iter().map(|w| w.to_string()).collect(),
        service: service.map(str::to_owned),
    }
}

/// A parity side reading field `h`: `http` or `nats`.
fn side(http: Option<&str>, nats: Option<&str>) -> crate::config::ParitySource {
    let (http, nats) = (http.map(str::to_owned), nats.map(str::to_owned));
    crate::config::ParitySource { http, nats, payload: None, field: "h".into(), timeout: None }
}

fn parity_of(name: &str, a: &str, b: crate::config::ParitySource) -> config::Parity {
    config::Parity { name: name.to_owned(), a: side(Some(a), None), b }
}

#[tokio::test]
async fn run_keeps_every_result_in_config_order() {
    let up = answering(json(200, r#"{"h":"abc"}"#));
    let other = answering(json(200, r#"{"h":"xyz"}"#));
    let verify = Verify {
        http: vec![http(&up), http(&refused())],
        exec: vec![exec(&["sh", "-c", "exit 3"], None), exec(&["true"], Some("native-svc"))],
        parity: vec![
            parity_of("same", &up, side(Some(&up), None)),
            parity_of("other", &up, side(Some(&other), None)),
            parity_of("nats", &up, side(None, Some("s.v1"))),
        ],
    };
    let results = checker(Duration::from_secs(5)).run(&verify).await;
    let summary: Vec<(&str, &str, bool)> =
        results.iter().map(|r| (r.kind, r.name.as_str(), r.passed)).collect();
    assert_eq!(
        summary,
        [
            ("http", up.as_str(), true),
            ("http", verify.http[1].url.as_str(), false),
            ("exec", "sh -c exit 3", false),
            ("exec", "true", true),
            ("parity", "same", true),
            ("parity", "other", false),
            ("parity", "nats", false),
        ]
    );
    let details: Vec<&str> = results[2..].iter().map(|r| r.detail.as_str()).collect();
    let nats_line = format!("no answer from b (nats s.v1): {NO_LINK}");
    assert_eq!(details, ["exit 3", "exit 0", "equal: abc", "differs: a=abc b=xyz", nats_line.as_str()]);
}

#[tokio::test]
async fn an_exec_in_a_container_without_docker_fails_naming_it() {
    let mut checker = checker(Duration::from_secs(5));
    checker.containers.insert("redis".into(), "titan-redis".into());
    let verify = Verify { exec: vec![exec(&["redis-cli", "ping"], Some("redis"))], ..Verify::default() };
    let results = checker.run(&verify).await;
    assert_eq!(outcome(&results[0]), (false, "no Docker connection to exec in titan-redis"));
}

#[test]
fn a_run_can_be_spawned_on_the_runtime() {
    fn send<T: Send>(_: &T) {}
    let (checker, verify) = (checker(Duration::from_secs(1)), Verify::default());
    send(&checker.run(&verify));
}

#[test]
fn results_serialize_for_evidence() {
    let result = CheckResult {
        kind: "exec",
        name: "true".into(),
        passed: true,
        detail: "exit 0".into(),
        parity: None,
    };
    let json = serde_json::to_string(&result).unwrap();
    assert_eq!(json, r#"{"kind":"exec","name":"true","passed":true,"detail":"exit 0"}"#);
}
