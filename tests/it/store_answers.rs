//! The worst a store or token endpoint can answer (the security review's defects 5 and
//! 6), from scriptable fakes, since a real OpenBao can be made to send neither:
//!
//! - an answer of 300 MiB, with a `Content-Length` or chunked without one: init fails
//!   at once, in one line naming the reference and the bound, never quoting the body,
//!   and its peak RSS stays small (the fake also counts what it could push out);
//! - an error whose fields forge a log line (`\n`) and carry a terminal escape (ESC):
//!   the output holds neither, the line quotes them escaped.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::clouds::{
    AZURE_TOKEN_VOLUME, CLIENT, GCP_TOKEN_VOLUME, PROVIDER, azure_config, azure_manifest,
    gcp_config,
};
use crate::fixtures::{
    NS, STATIC_AWS_KEYS, aws_only_config, db_password_deployment, deployment, prepare_injected,
    run_injected, vault_only_config, vault_token,
};
use crate::support::TokenSigner;
use crate::util::rt;

/// What a fake answers to one request.
#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    /// [`HUGE`] bytes of a JSON string that never closes: declaring its length, or
    /// chunked.
    Huge {
        declared: bool,
    },
}

const HUGE_CHUNKS: u64 = 4800;
const CHUNK: usize = 64 << 10;
/// 300 MiB, and the opening of the JSON.
const HUGE: u64 = HUGE_CHUNKS * CHUNK as u64 + HEAD.len() as u64;
const HEAD: &[u8] = br#"{"data":{"data":{"password":""#;
/// What the huge bodies are made of: never to be printed.
const CANARY: &str = "body-canary-Zq7";

/// A server answering each request as its script says; counts the body bytes it gave
/// the connection.
struct Fake {
    url: String,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Script = dyn Fn(&str, &str) -> Reply + Send + Sync;

impl Fake {
    fn start(rt: &tokio::runtime::Runtime, script: Box<Script>) -> Fake {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let script: Arc<Script> = script.into();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let reply = script(req.method().as_str(), req.uri().path());
            let counter = counter.clone();
            async move { respond(reply, counter) }
        });
        let (url, task) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            (url, task)
        });
        Fake { url, sent, task }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

fn respond(reply: Reply, sent: Arc<AtomicU64>) -> Response {
    match reply {
        Reply::Json(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Reply::Huge { declared } => {
            let chunk = Bytes::from(CANARY.repeat(CHUNK / CANARY.len() + 1)[..CHUNK].to_string());
            let parts = std::iter::once(Bytes::from_static(HEAD))
                .chain(std::iter::repeat_n(chunk, HUGE_CHUNKS as usize));
            let stream = futures::stream::iter(parts).map(move |b| {
                sent.fetch_add(b.len() as u64, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(b)
            });
            let mut resp = Response::builder().header("content-type", "application/json");
            if declared {
                resp = resp.header("content-length", HUGE);
            }
            resp.body(Body::from_stream(stream)).unwrap()
        }
    }
}

/// A Vault login answer (the token is the fakes' own, marked as issued).
fn vault_login() -> Reply {
    Reply::Json(
        200,
        json!({"auth": {"client_token": "hvs.fake.test-access-token", "lease_duration": 600, "renewable": true}}),
    )
}

/// A fake Vault: logs in, revokes, and answers reads with `read`.
fn vault(read: Reply) -> Box<Script> {
    Box::new(move |method, path| match (method, path) {
        ("POST", "/v1/auth/jwt/login") => vault_login(),
        ("POST", "/v1/auth/token/revoke-self") => Reply::Json(200, json!({})),
        _ => read.clone(),
    })
}

/// One init run, with its peak RSS (VmHWM of /proc, read every 2 ms while it runs).
struct Measured {
    code: Option<i32>,
    output: String,
    peak_kib: u64,
    elapsed: Duration,
}

impl Measured {
    fn last_line(&self) -> &str {
        self.output.lines().last().unwrap_or_default()
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Run the init container of `manifest` with `config`, measuring it.
fn run_measured(
    manifest: &str,
    config: &str,
    tokens: &[(&str, String)],
    env: &[(&str, &str)],
) -> Measured {
    use std::io::Read;
    let mut prepared = prepare_injected(manifest, config, tokens);
    let start = Instant::now();
    let mut child = prepared
        .cmd
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    Measured {
        code: status.code(),
        output: out.join().unwrap() + &err.join().unwrap(),
        peak_kib,
        elapsed,
    }
}

/// Peak RSS an init that refused a huge answer may reach. A debug build peaks at 28–32
/// MiB refusing one, at 29–30 MiB reading a small secret; reading the 300 MiB took it
/// to 629 MiB.
const PEAK_KIB: u64 = 48 << 10;
/// What the fake may have pushed out when init stopped reading: the bound, the socket
/// buffers of loopback and a few chunks; far from the 300 MiB.
const SENT: u64 = 32 << 20;

/// Init refused a huge answer: at once, in one line that names `names` and `bound`,
/// without quoting the body, and without holding it.
fn assert_refused(run: &Measured, fake: &Fake, names: &str, bound: &str) {
    let last = run.last_line();
    eprintln!(
        "{names}: peak {} KiB, {:?}, fake sent {} KiB: {last}",
        run.peak_kib,
        run.elapsed,
        fake.sent() >> 10
    );
    assert_eq!(run.code, Some(1), "{}", run.output);
    assert!(!run.output.contains("retrying"), "{}", run.output);
    assert!(
        last.contains(names) && last.contains(&format!("more than the {bound}")),
        "names the reference and the bound: {last}"
    );
    assert!(
        !run.output.contains(CANARY),
        "quotes the body:\n{}",
        run.output
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(
        run.peak_kib > 0 && run.peak_kib < PEAK_KIB,
        "peak RSS {} KiB",
        run.peak_kib
    );
    assert!(fake.sent() < SENT, "read {} bytes", fake.sent());
}

/// Vault's answers, to a login or a read, with or without a `Content-Length`: the
/// 300 MiB the review sent took init to a 1.2 GB peak.
#[test]
fn vault_answers_over_the_bound_are_refused_unread() {
    let rt = rt();
    let signer = TokenSigner::new();
    let token = [vault_token(&signer, "app")];
    for declared in [true, false] {
        let fake = Fake::start(&rt, vault(Reply::Huge { declared }));
        let cfg = vault_only_config(&fake.url);
        let run = run_measured(&db_password_deployment(), &cfg, &token, &[]);
        assert_refused(&run, &fake, "vault:secret/data/team-a/db", "2 MiB");
        if declared {
            assert!(
                run.last_line()
                    .contains(&format!("answered with {HUGE} bytes"))
            );
        }

        let login = Box::new(move |_: &str, _: &str| Reply::Huge { declared });
        let fake = Fake::start(&rt, login);
        let cfg = vault_only_config(&fake.url);
        let run = run_measured(&db_password_deployment(), &cfg, &token, &[]);
        assert_refused(&run, &fake, "login to vault role `app`", "2 MiB");
    }
}

/// The largest value integrated storage keeps by default (an entry of 1 MiB) is well
/// within the bound; what it costs init, beside a small one.
#[test]
fn a_vault_value_of_one_mib_is_read() {
    let rt = rt();
    let signer = TokenSigner::new();
    let token = [vault_token(&signer, "app")];
    let mut peaks = Vec::new();
    for size in [16, 1 << 20] {
        let answer = json!({
            "lease_id": "", "lease_duration": 0, "renewable": false,
            "data": {"data": {"password": "v".repeat(size)},
                     "metadata": {"version": 1, "created_time": "2026-01-01T00:00:00Z"}},
        });
        let fake = Fake::start(&rt, vault(Reply::Json(200, answer)));
        let cfg = vault_only_config(&fake.url);
        let run = run_measured(&db_password_deployment(), &cfg, &token, &[]);
        assert_eq!(run.code, Some(0), "{}", run.output);
        peaks.push(run.peak_kib);
    }
    eprintln!(
        "init peak RSS: {} KiB (16 bytes), {} KiB (1 MiB)",
        peaks[0], peaks[1]
    );
}

/// The token endpoints of Google and Azure and the answers of Secrets Manager: a
/// declared 300 MiB is refused before a byte is read, a chunked one is cut (Google and
/// Azure at 1 MiB, AWS at 8 MiB).
#[test]
fn cloud_answers_over_the_bound_are_refused_unread() {
    let rt = rt();
    let signer = TokenSigner::new();
    let huge = |declared| -> Box<Script> { Box::new(move |_, _| Reply::Huge { declared }) };
    let azure_token = (
        AZURE_TOKEN_VOLUME,
        signer.token(NS, "app", "api://AzureADTokenExchange"),
    );
    let annotations = |store| [("secret-x", reference(store))];
    for declared in [true, false] {
        let fake = Fake::start(&rt, huge(declared));
        let manifest = deployment(&annotations(Store::GcpMetadata), "app");
        let run = run_measured(&manifest, &gcp_config(&fake.url, false), &[], &[]);
        assert_refused(&run, &fake, reference(Store::GcpMetadata), "1 MiB");

        let fake = Fake::start(&rt, huge(declared));
        let manifest = azure_manifest("app", CLIENT, &annotations(Store::Azure));
        let tokens = [azure_token.clone()];
        let run = run_measured(&manifest, &azure_config(&fake.url), &tokens, &[]);
        assert_refused(&run, &fake, reference(Store::Azure), "1 MiB");
    }
    for declared in [true, false] {
        let fake = Fake::start(&rt, huge(declared));
        let manifest = deployment(&annotations(Store::Aws), "app");
        let cfg = aws_only_config(&fake.url);
        let run = run_measured(&manifest, &cfg, &[], &STATIC_AWS_KEYS);
        assert_refused(&run, &fake, reference(Store::Aws), "8 MiB");
    }
}

/// An error field that would start a forged log line, then turn the terminal red.
const FORGED: &str = "denied\nFORGED INFO secret_injector wrote nothing\u{1b}[31m";

/// Where a fake stands in, and how a pod reaches it.
#[derive(Clone, Copy, Debug)]
enum Store {
    GcpMetadata,
    GcpFederation,
    Azure,
    Vault,
    Aws,
}

/// The reference each pod asks for, by store.
fn reference(store: Store) -> &'static str {
    match store {
        Store::GcpMetadata | Store::GcpFederation => "gcp:api-token",
        Store::Azure => "azure:deparrow-kv/jwt-secret",
        Store::Vault => "vault:secret/data/team-a/db#password",
        Store::Aws => "aws:team-a/x",
    }
}

/// Run the init container of a pod reading `store` at the fake `url`.
fn run_against(store: Store, url: &str, signer: &TokenSigner) -> crate::fixtures::InitRun {
    let annotations = [("secret-x", reference(store))];
    let plain = deployment(&annotations, "app");
    let azure_token = (
        AZURE_TOKEN_VOLUME,
        signer.token(NS, "app", "api://AzureADTokenExchange"),
    );
    let (manifest, cfg, tokens, env) = match store {
        Store::GcpMetadata => (plain, gcp_config(url, false), vec![], &[][..]),
        Store::GcpFederation => {
            let token = (GCP_TOKEN_VOLUME, signer.token(NS, "app", PROVIDER));
            (plain, gcp_config(url, true), vec![token], &[][..])
        }
        Store::Azure => {
            let manifest = azure_manifest("app", CLIENT, &annotations);
            (manifest, azure_config(url), vec![azure_token], &[][..])
        }
        Store::Vault => {
            let token = vault_token(signer, "app");
            (plain, vault_only_config(url), vec![token], &[][..])
        }
        Store::Aws => (plain, aws_only_config(url), vec![], &STATIC_AWS_KEYS[..]),
    };
    run_injected(&manifest, &cfg, &tokens, env)
}

/// Answers every request with `status` and `body`.
fn always(status: u16, body: Value) -> Box<Script> {
    let reply = Reply::Json(status, body);
    Box::new(move |_, _| reply.clone())
}

/// Each service's refusal, every field forged (the token endpoints', Key Vault's,
/// Secret Manager's, Vault's `errors`, an AWS error's code and message): one line
/// that quotes them escaped, and no forged line or ESC byte anywhere in the output.
#[test]
fn forged_error_fields_reach_no_log_line() {
    let rt = rt();
    let signer = TokenSigner::new();
    let oauth = json!({"error": FORGED, "error_description": FORGED});
    let vault_errors = json!({"errors": [FORGED, FORGED]});
    let key_vault = Reply::Json(
        403,
        json!({"error": {"code": FORGED, "message": FORGED, "innererror": {"code": FORGED}}}),
    );
    let key_vault_after_a_token: Box<Script> = Box::new(move |method, path| {
        if method == "POST" && path.ends_with("/oauth2/v2.0/token") {
            let token = json!({"access_token": "a.b.test-access-token", "expires_in": 3599});
            Reply::Json(200, token)
        } else {
            key_vault.clone()
        }
    });
    let cases: Vec<(Store, &str, Box<Script>)> = vec![
        (
            Store::GcpMetadata,
            "gcp:api-token",
            always(
                403,
                json!({"error": {"code": 403, "status": FORGED, "message": FORGED}}),
            ),
        ),
        (
            Store::GcpFederation,
            "gcp:api-token",
            always(400, oauth.clone()),
        ),
        (
            Store::Azure,
            "azure:deparrow-kv/jwt-secret",
            always(400, oauth),
        ),
        (
            Store::Azure,
            "azure:deparrow-kv/jwt-secret",
            key_vault_after_a_token,
        ),
        (
            Store::Vault,
            "login to vault role `app`",
            always(400, vault_errors.clone()),
        ),
        (
            Store::Vault,
            "vault:secret/data/team-a/db",
            vault(Reply::Json(403, vault_errors)),
        ),
        (
            Store::Aws,
            "aws:team-a/x",
            always(400, json!({"__type": FORGED, "message": FORGED})),
        ),
    ];
    for (store, names, script) in cases {
        let fake = Fake::start(&rt, script);
        let run = run_against(store, &fake.url, &signer);
        let last = run.failed_without_retry();
        let text = run.output_text();
        assert!(!text.contains('\u{1b}'), "{store:?}: an ESC byte:\n{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("FORGED")),
            "{store:?}: a forged line:\n{text}"
        );
        assert!(
            last.contains(names) && last.contains("FORGED INFO") && last.contains("\\u{1b}[31m"),
            "{store:?}: names {names} and quotes the error, escaped: {last}"
        );
        run.assert_no_values();
    }
}
