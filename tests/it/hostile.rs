//! The security review's reproductions (issue 11), each sent over HTTPS to a webhook
//! that runs on ONE async worker thread, the setting in which a blocked worker also
//! blocks `/healthz`. For every one: the review is answered within the request timeout,
//! a normal review sent meanwhile is answered, `/healthz` answers within a second
//! throughout, and the process's peak RSS stays under the Deployment's 128 MiB limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{self, Webhook, rt};
use webhook::admission::request_for;

/// The Deployment's memory limit (manifests/base/deployment.yaml).
pub(crate) const MEMORY_LIMIT_KB: u64 = 128 * 1024;
/// Time any review may take here, hostile or not: well under the 10 s request timeout
/// (a debug build, on a loaded CI machine).
const BUDGET: Duration = Duration::from_secs(3);

fn pod(annotations: Value) -> Value {
    json!({
        "metadata": {"generateName": "app-", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    })
}

/// A review of a pod whose file `x` is rendered from `template`.
fn template_review(template: impl Into<Value>) -> Vec<u8> {
    let annotations = json!({
        "secret-injector.io/secret-x": "vault:secret/data/x",
        "secret-injector.io/template-x": template.into(),
    });
    request_for(&pod(annotations), "team-a", "CREATE")
}

pub(crate) fn normal_pod() -> Value {
    pod(json!({"secret-injector.io/secret-db": "vault:secret/data/db#password"}))
}

/// Peak resident set of a process, from /proc (VmHWM, kB).
pub(crate) fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Polls `/healthz` every 100 ms from a thread of its own; reports the slowest answer.
pub(crate) struct HealthProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl HealthProbe {
    pub(crate) fn start(admin: u16) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let start = Instant::now();
                let body = util::http_get(admin, "/healthz").unwrap_or_default();
                let took = start.elapsed();
                assert_eq!(body, "ok\n", "/healthz failed after {took:?}");
                slowest = slowest.max(took);
                std::thread::sleep(Duration::from_millis(100));
            }
            slowest
        });
        HealthProbe { stop, thread }
    }

    pub(crate) fn slowest(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the health probe")
    }
}

/// After the abuse: `/healthz` never took a second, the peak RSS stayed under
/// [`MEMORY_LIMIT_KB`], and the webhook is still running. Returns (slowest, peak kB).
pub(crate) fn assert_still_healthy(probe: HealthProbe, w: &mut Webhook) -> (Duration, u64) {
    let slowest = probe.slowest();
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );
    let peak = peak_rss_kb(w.child.id());
    assert!(
        peak < MEMORY_LIMIT_KB,
        "peak RSS {peak} kB\n{}",
        w.log_text()
    );
    assert!(w.child_alive());
    (slowest, peak)
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) review: Value,
    pub(crate) took: Duration,
}

pub(crate) async fn post(client: &reqwest::Client, w: &Webhook, body: Vec<u8>) -> Answer {
    let start = Instant::now();
    let resp = client
        .post(w.url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", w.log_text()));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Answer {
        status,
        review: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        took: start.elapsed(),
    }
}

/// Send `hostile` and, while it is being answered, a normal review; both must be
/// answered within the request timeout, the normal one with a patch.
async fn survive(client: &reqwest::Client, w: &Webhook, what: &str, hostile: Vec<u8>) -> Answer {
    let normal = request_for(&normal_pod(), "team-a", "CREATE");
    let (bad, good) = tokio::join!(post(client, w, hostile), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        post(client, w, normal).await
    });
    assert!(
        bad.took < BUDGET && bad.status == 200,
        "{what}: HTTP {} after {:?}",
        bad.status,
        bad.took
    );
    assert_eq!(good.status, 200, "{what}: the normal review failed");
    assert!(
        good.took < BUDGET,
        "{what}: the normal review took {:?}",
        good.took
    );
    assert_eq!(good.review["response"]["allowed"], true, "{what}");
    assert!(good.review["response"]["patch"].is_string(), "{what}");
    assert!(
        w.child_alive(),
        "{what}: the webhook exited\n{}",
        w.log_text()
    );
    bad
}

fn message(a: &Answer) -> &str {
    a.review["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn one_review_cannot_take_the_webhook_down() {
    // One async worker and one review thread: the Deployment's 500m CPU.
    let mut w = Webhook::start_env(&[("TOKIO_WORKER_THREADS", "1")], &["--review-threads", "1"]);
    let probe = HealthProbe::start(w.admin);
    let client = w.client();
    rt().block_on(async {
        // 1. Template dry-run memory: 806 bytes that double a string 40 times aborted
        // the process; 25 doublings peaked at 1.3 GB; a loop of 3 MB uppercases took
        // 76 s. Templates are no longer executed at admission: valid ones are admitted.
        for doublings in [40, 25] {
            let template = format!(
                "{{% set a = \"xxxxxxxxxxxxxxxx\" %}}{}{{{{ a }}}}",
                "{% set a = a ~ a %}".repeat(doublings)
            );
            let a = survive(&client, &w, "doubling template", template_review(template)).await;
            assert_eq!(a.review["response"]["allowed"], true, "{}", a.review);
        }
        let upper = "{% for i in range(100) %}{{ (\"x\"*3000000)|upper }}{% endfor %}";
        survive(&client, &w, "uppercase loop", template_review(upper)).await;

        // 2. Parse depth: a 10,000-link filter chain overflowed the stack; 50,000
        // nested ifs took 32.8 s. Both are refused before parsing, naming the fix.
        let chain = format!("{{{{ x{} }}}}", "|upper".repeat(10_000));
        let nested = format!(
            "{}y{}",
            "{% if x %}".repeat(50_000),
            "{% endif %}".repeat(50_000)
        );
        // (50,000 ifs are 1 MB: past what Kubernetes accepts for all annotations.)
        for (what, template, annotation, needle) in [
            ("filter chain", chain, "template-x", "32 KiB"),
            ("nested ifs", nested, "*", "256 KiB"),
            (
                "1,000 nested ifs",
                format!(
                    "{}y{}",
                    "{% if x %}".repeat(1_000),
                    "{% endif %}".repeat(1_000)
                ),
                "template-x",
                "nested more than 32",
            ),
            (
                "long tag",
                format!("{{{{ x{} }}}}", "|upper".repeat(300)),
                "template-x",
                "parts",
            ),
        ] {
            let a = survive(&client, &w, what, template_review(template)).await;
            assert_eq!(a.review["response"]["allowed"], false, "{what}");
            let m = message(&a);
            assert!(
                m.contains(&format!("secret-injector.io/{annotation}")) && m.contains(needle),
                "{what}: {m}"
            );
        }

        // Escaped quotes and nested braces cannot hide a chain from the bound.
        for (what, template) in [
            (
                "escaped quote",
                format!("{{{{ \"\\\"\"{} ~ \"\" }}}}", "~x".repeat(5_000)),
            ),
            (
                "nested braces",
                format!("{{{{ ({{'a': {{'b': 1}}}}{}) }}}}", "~x".repeat(5_000)),
            ),
        ] {
            let a = survive(&client, &w, what, template_review(template)).await;
            assert!(message(&a).contains("parts"), "{what}: {}", message(&a));
        }

        // 3. Suggestions: an unknown key of 1,000 and 2,000 `x-` took 27 s and 221 s.
        for repeats in [1_000, 2_000] {
            let key = format!("secret-injector.io/{}", "x-".repeat(repeats));
            let a = survive(
                &client,
                &w,
                "long unknown key",
                request_for(
                    &pod(json!({
                        "secret-injector.io/secret-db": "vault:secret/data/db",
                        key: "v",
                    })),
                    "team-a",
                    "CREATE",
                ),
            )
            .await;
            assert_eq!(a.review["response"]["allowed"], false);
            assert!(
                message(&a).contains("unknown annotation"),
                "{}",
                message(&a)
            );
        }
        // Many unknown keys of the longest allowed length, each a suggestion candidate.
        let mut many = serde_json::Map::new();
        many.insert(
            "secret-injector.io/secret-db".into(),
            "vault:secret/data/db".into(),
        );
        for i in 0..3_000 {
            many.insert(
                format!("secret-injector.io/secret{i:05}-{}", "y-".repeat(26)),
                "v".into(),
            );
        }
        let a = survive(
            &client,
            &w,
            "many unknown keys",
            request_for(&pod(Value::Object(many)), "team-a", "CREATE"),
        )
        .await;
        assert!(message(&a).contains("more"), "{}", message(&a));
        // The `containers` suggestion compared two attacker-controlled strings.
        let long = "x-".repeat(2_000);
        let mut p = pod(json!({
            "secret-injector.io/secret-db": "vault:secret/data/db",
            "secret-injector.io/containers": format!("{long}y"),
        }));
        p["spec"]["containers"][0]["name"] = json!(format!("{long}z"));
        let a = survive(
            &client,
            &w,
            "long container names",
            request_for(&p, "team-a", "CREATE"),
        )
        .await;
        assert!(message(&a).contains("has no container"), "{}", message(&a));
        // Annotations beyond what Kubernetes accepts are refused before any parsing.
        let big = pod(json!({
            "secret-injector.io/secret-db": "vault:secret/data/db",
            "secret-injector.io/template-db": "x".repeat(300 * 1024),
        }));
        let a = survive(
            &client,
            &w,
            "oversized annotations",
            request_for(&big, "team-a", "CREATE"),
        )
        .await;
        assert!(message(&a).contains("256 KiB"), "{}", message(&a));

        // Problems are capped, and pod-sized inputs are refused before any work.
        let a = survive(
            &client,
            &w,
            "many empty env-from items",
            request_for(
                &pod(json!({
                    "secret-injector.io/env-from": ",x".repeat(100_000),
                })),
                "team-a",
                "CREATE",
            ),
        )
        .await;
        let m = message(&a);
        assert!(
            // 100000 bad items, and the container's missing command (env mode)
            m.contains("100001 problems") && m.contains("… and 99971 more") && m.len() < 64 * 1024,
            "{} bytes: {}",
            m.len(),
            m.chars().take(300).collect::<String>()
        );
        let mut p = normal_pod();
        p["spec"]["containers"] = json!(
            (0..20_000)
                .map(|i| json!({"name": format!("c{i}")}))
                .collect::<Vec<_>>()
        );
        let a = survive(
            &client,
            &w,
            "20,000 containers",
            request_for(&p, "team-a", "CREATE"),
        )
        .await;
        assert!(message(&a).contains("at most 128"), "{}", message(&a));
        let mut p = normal_pod();
        p["spec"]["containers"][0]["env"] = json!(
            (0..40_000)
                .map(|_| json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/a/t"}))
                .collect::<Vec<_>>()
        );
        let a = survive(
            &client,
            &w,
            "40,000 env entries",
            request_for(&p, "team-a", "CREATE"),
        )
        .await;
        assert!(message(&a).contains("at most 16384"), "{}", message(&a));
        let mut p = pod(json!({
            "secret-injector.io/secret-db": "vault:secret/data/db",
            "secret-injector.io/mount-path": format!("/{}", "a".repeat(200 * 1024)),
        }));
        p["spec"]["containers"][0]["volumeMounts"] = json!(
            (0..5_000)
                .map(|i| json!({"name": format!("v{i}"), "mountPath": "/a"}))
                .collect::<Vec<_>>()
        );
        let a = survive(
            &client,
            &w,
            "long mount-path",
            request_for(&p, "team-a", "CREATE"),
        )
        .await;
        assert!(
            message(&a).contains("at most 1024") && message(&a).len() < 64 * 1024,
            "{} bytes",
            message(&a).len()
        );

        // Many large reviews at once: bodies wait for memory, the rest keeps working.
        let big = {
            let mut p = normal_pod();
            p["spec"]["containers"][0]["env"] =
                json!([{"name": "BLOB", "value": "b".repeat(3_500_000)}]);
            request_for(&p, "team-a", "CREATE")
        };
        let flood = futures::future::join_all((0..16).map(|_| post(&client, &w, big.clone())));
        let (answers, probe_answer) = tokio::join!(flood, async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            post(&client, &w, request_for(&normal_pod(), "team-a", "CREATE")).await
        });
        for a in &answers {
            assert_eq!(a.status, 200);
            assert_eq!(a.review["response"]["allowed"], true);
        }
        assert_eq!(probe_answer.status, 200);
        assert!(w.child_alive(), "the webhook exited under 16 large reviews");

        // 4. Metric cardinality: 1 MB namespace strings and thousands of made-up names.
        for i in 0..20 {
            let ns = format!("{i}{}", "n".repeat(1 << 20));
            let a = post(&client, &w, request_for(&normal_pod(), &ns, "CREATE")).await;
            assert_eq!(a.status, 200);
        }
        for i in 0..2_000 {
            let a = post(
                &client,
                &w,
                request_for(&normal_pod(), &format!("made-up-{i}"), "CREATE"),
            )
            .await;
            assert_eq!(a.status, 200);
        }
    });
    let metrics = util::http_get(w.admin, "/metrics").unwrap();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("secret_injector_injections_total{"))
        .count();
    assert_eq!(series, 1, "{}", &metrics[..metrics.len().min(2000)]);
    assert!(metrics.contains("secret_injector_injections_total{namespace=\"_unknown\"}"));
    assert!(
        metrics.len() < 16 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );

    let (slowest, peak) = assert_still_healthy(probe, &mut w);
    eprintln!("hostile reviews: slowest /healthz {slowest:?}, peak RSS {peak} kB");
    let _ = w.child.kill();
}

/// Defect 5: a container that mounts the webhook's token or env volume without declaring it.
/// Defect 8: a pod name with a newline and ESC cannot forge a log line.
#[test]
fn reserved_mounts_are_denied_and_names_cannot_forge_log_lines() {
    let w = Webhook::start(&[]);
    let client = w.client();
    rt().block_on(async {
        for volume in ["secret-injector-token-vault", "secret-injector-env"] {
            let mut p = pod(json!({
                "secret-injector.io/secret-db": "vault:secret/data/db",
                "secret-injector.io/containers": "app",
            }));
            p["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "sidecar", "image": "x", "volumeMounts": [{"name": volume, "mountPath": "/steal"}]}));
            let a = post(&client, &w, request_for(&p, "team-a", "CREATE")).await;
            assert_eq!(a.review["response"]["allowed"], false, "{volume}");
            assert!(message(&a).contains(&format!("mounts volume `{volume}`")), "{}", message(&a));
        }
        let mut p = normal_pod();
        p["metadata"]["name"] = json!("web\n2026-11-30T00:00:00Z  INFO webhook::server: injected namespace=kube-system pod=forged\u{1b}[2K");
        let a = post(&client, &w, request_for(&p, "team-a", "CREATE")).await;
        assert_eq!(a.review["response"]["allowed"], true);
    });
    let log = w.log_with("pod=web\\n2026-11-30");
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO") && l.starts_with("2026-11-30T00:00:00Z")),
        "a forged line:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "a raw ESC in the log");
    assert!(log.contains("pod=web\\n2026-11-30"), "{log}");
}

/// Defect 9: an HTTP/2 client that answers keep-alive pings but sends nothing is closed after
/// the idle timeout, with a GOAWAY (its connection ends cleanly); so is an idle HTTP/1.1
/// connection; a request still being sent is not cut by the idle timeout.
#[test]
fn idle_connections_are_closed_but_not_while_busy() {
    let w = Webhook::start(&["--idle-timeout", "2s"]);
    rt().block_on(async {
        let mut cfg = util::rustls_client_config(&w.ca());
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Duration::from_millis(500))
                .keep_alive_while_idle(true)
                .handshake::<_, String>(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        let opened = Instant::now();
        let conn = tokio::spawn(conn);
        let body = String::from_utf8(request_for(&normal_pod(), "team-a", "CREATE")).unwrap();
        let req = hyper::Request::post(w.url())
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        // Pings flow every 500 ms; the server still closes after 2 s without requests.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(
            ended.is_ok(),
            "the idle HTTP/2 connection is still open after 10 s"
        );
        let lived = opened.elapsed();
        assert!(
            lived >= Duration::from_secs(2),
            "closed too early: {lived:?}"
        );
        assert!(ended.unwrap().unwrap().is_ok(), "not a clean close");

        // HTTP/1.1: a request whose body takes longer than the idle timeout is answered,
        // then the idle connection is closed.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut cfg = util::rustls_client_config(&w.ca());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let body = request_for(&normal_pod(), "team-a", "CREATE");
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body[..100]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        tls.write_all(&body[100..]).await.unwrap();
        let mut answer = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let idle_since = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the idle HTTP/1.1 connection is still open after 10 s");
        assert!(idle_since.elapsed() >= Duration::from_millis(1500), "closed too early");
    });
    assert_eq!(util::http_get(w.admin, "/healthz").unwrap(), "ok\n");
}

/// Old TLS is refused at the handshake: a client that offers only TLS 1.0 or 1.1 (the
/// system's OpenSSL, told to allow them) gets a protocol alert, while TLS 1.2 and 1.3
/// clients are served.
#[test]
fn tls_1_0_and_1_1_clients_are_refused() {
    let w = Webhook::start(&[]);
    const PROBE: &str = r#"
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
# OpenSSL 3 refuses to offer TLS < 1.2 at its default security level.
ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
v = getattr(ssl.TLSVersion, version)
ctx.minimum_version = ctx.maximum_version = v
try:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            print("connected", t.version())
except ssl.SSLError as e:
    print("refused", e.reason)
"#;
    let probe = |version: &str| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                PROBE,
                &w.port.to_string(),
                w.ca().to_str().unwrap(),
                version,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for old in ["TLSv1", "TLSv1_1"] {
        let answer = probe(old);
        // An alert from the server (rustls answers `handshake_failure`); a client that
        // could not offer the version would fail without one.
        assert!(
            answer.starts_with("refused") && answer.contains("_ALERT_"),
            "{old}: {answer}"
        );
    }
    assert_eq!(probe("TLSv1_2"), "connected TLSv1.2");
    assert_eq!(probe("TLSv1_3"), "connected TLSv1.3");
}

/// Bodies and names a real API server would never send still get a proper answer,
/// quickly, and bounded: JSON nested 200,000 deep, a wrong content type, annotation
/// names with control and non-ASCII characters, 5,000 annotations of ours. A normal
/// review is answered afterwards and the peak RSS stays bounded.
#[test]
fn hostile_bodies_and_names_get_proper_answers() {
    let w = Webhook::start(&[]);
    let client = w.client();
    rt().block_on(async {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let a = post(&client, &w, deep.into_bytes()).await;
        assert_eq!(a.status, 400, "deep nesting");
        assert!(a.took < BUDGET, "deep nesting took {:?}", a.took);

        // Kubernetes always sends application/json; anything else is still answered
        // (the body is what is checked), never left hanging.
        let resp = client
            .post(w.url())
            .header("content-type", "text/plain")
            .body(request_for(&normal_pod(), "team-a", "CREATE"))
            .send()
            .await
            .unwrap();
        assert!(
            [200, 400, 415].contains(&resp.status().as_u16()),
            "wrong content type: HTTP {}",
            resp.status()
        );

        let names = pod(json!({
            "secret-injector.io/secret-\u{7}bell": "vault:secret/data/x",
            "secret-injector.io/sécret-x": "vault:secret/data/x",
            "secret-injector.io/secret-\u{202e}evil": "vault:secret/data/x",
        }));
        let a = post(&client, &w, request_for(&names, "team-a", "CREATE")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.review["response"]["allowed"], false, "{}", a.review);
        let m = message(&a);
        assert!(
            !m.contains('\u{7}') && !m.contains('\u{202e}'),
            "control characters are escaped in the denial: {m:?}"
        );

        let many: serde_json::Map<String, Value> = (0..5_000)
            .map(|i| {
                (
                    format!("secret-injector.io/x-{i}"),
                    Value::String("1".into()),
                )
            })
            .collect();
        let a = post(
            &client,
            &w,
            request_for(&pod(Value::Object(many)), "team-a", "CREATE"),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.review["response"]["allowed"], false);
        assert!(a.took < BUDGET, "5,000 annotations took {:?}", a.took);
        let m = message(&a);
        assert!(m.len() < 16 * 1024, "a bounded denial: {} bytes", m.len());
        assert!(m.contains("more"), "{m}");

        let normal = post(&client, &w, request_for(&normal_pod(), "team-a", "CREATE")).await;
        assert_eq!(normal.review["response"]["allowed"], true);
    });
    assert!(w.child_alive(), "{}", w.log_text());
    let peak = peak_rss_kb(w.child.id());
    assert!(peak < MEMORY_LIMIT_KB, "peak RSS {peak} kB");
}
