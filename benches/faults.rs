//! Load with faults, over HTTPS on loopback, against the real `secret-injector serve`:
//!
//! 1. **steady**: 20,000 reviews over 256 concurrent keep-alive HTTP/1.1 connections;
//! 2. **rotation**: the same while the certificate files are replaced twice (a new
//!    serving certificate from the same CA, as cert-manager renews it): every request
//!    must succeed, and after each swap a new handshake must see the new certificate;
//! 3. **SIGTERM**: the same load, and SIGTERM one second in: every request must either
//!    get its answer or fail to connect (refused cleanly, nothing cut mid-request), and
//!    the process must exit 0.
//!
//! Each answer's length is checked, so a denial or an error page counts as an error.
//! Prints requests/s, p50/p99 latency and the error counts per phase.
//!
//! Run: `cargo bench --bench faults` (`FAULTS_REVIEWS=N` per phase, default 20000).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;

use support::{free_port, rustls_client_config, wait_http};
use webhook::admission::request_for;
use webhook::certs;

const CONNECTIONS: usize = 256;

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if !std::env::args().any(|a| a == "--bench") {
        println!("faults: run with `cargo bench --bench faults`");
        return;
    }
    let reviews: usize = std::env::var("FAULTS_REVIEWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(reviews));
}

struct Webhook {
    child: Child,
    url: String,
    port: u16,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names() -> Vec<String> {
    vec!["localhost".to_string(), "127.0.0.1".to_string()]
}

async fn start(dir: &Path) -> Webhook {
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secret-injector"))
        .args(["serve", "--kube", "off", "--tls-reload-interval", "200ms"])
        .args(["--shutdown-delay", "1s", "--shutdown-grace", "10s"])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin}"))
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .env_remove("SECRET_INJECTOR_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(
        wait_http(
            &format!("http://127.0.0.1:{admin}/readyz"),
            "webhook",
            &mut child
        )
        .await
    );
    Webhook {
        child,
        url: format!("https://127.0.0.1:{port}/mutate"),
        port,
    }
}

/// What one phase saw.
#[derive(Default)]
struct Stats {
    ok: usize,
    /// Failed to connect (refused, reset before the TLS handshake finished).
    refused: usize,
    /// Anything else: a cut connection mid-request, a wrong status or answer.
    lost: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The first few causes of `lost`.
    causes: Vec<String>,
}

impl Stats {
    fn line(&self, name: &str) -> String {
        let q = |q: f64| {
            let i = ((self.latencies.len().max(1) - 1) as f64 * q).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        format!(
            "{name:<9} {:>6} ok {:>5} refused {:>5} lost  {:>7.0} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms",
            self.ok,
            self.refused,
            self.lost,
            self.ok as f64 / self.elapsed.as_secs_f64(),
            q(0.5).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3,
        )
    }
}

/// `total` reviews over [`CONNECTIONS`] clients of one keep-alive connection each.
async fn blast(
    url: &str,
    ca: &Path,
    body: &Bytes,
    answer_len: usize,
    total: usize,
    sent: Arc<AtomicUsize>,
) -> Stats {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(rustls_client_config(ca))
                .http1_only()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let (url, body, sent) = (url.to_string(), body.clone(), sent.clone());
            tokio::spawn(async move {
                let mut s = Stats::default();
                while sent.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let result = client
                        .post(&url)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match result {
                        Ok(r) if r.status().is_success() => {
                            if r.bytes().await.is_ok_and(|b| b.len() == answer_len) {
                                s.ok += 1;
                                s.latencies.push(t.elapsed());
                            } else {
                                s.lost += 1;
                            }
                        }
                        Ok(_) => s.lost += 1,
                        Err(e) if e.is_connect() => s.refused += 1,
                        Err(e) => {
                            s.lost += 1;
                            if s.causes.len() < 3 {
                                s.causes.push(contract::text::chain_line(&e));
                            }
                        }
                    }
                }
                s
            })
        })
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.ok += s.ok;
        all.refused += s.refused;
        all.lost += s.lost;
        all.latencies.extend(s.latencies);
        all.causes.extend(s.causes);
    }
    all.elapsed = start.elapsed();
    all.latencies.sort();
    all
}

/// The serving certificate a new handshake gets, DER.
async fn served_leaf(port: u16, ca: &Path) -> Option<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls_client_config(ca)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.ok()?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()?.first().map(|c| c.to_vec())
}

fn pem_der(pem: &str) -> Vec<u8> {
    rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap()
}

async fn run(reviews: usize) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::generate(&names(), None, 1).unwrap();
    certs::write(&bundle, dir.path()).unwrap();
    let ca: PathBuf = dir.path().join("ca.crt");
    let body = Bytes::from(request_for(&workload::pod(3, 5, 2), "prod", "CREATE"));

    let webhook = start(dir.path()).await;
    let answer_len = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client_config(&ca))
        .build()
        .unwrap()
        .post(&webhook.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    println!("{reviews} reviews per phase over {CONNECTIONS} keep-alive HTTP/1.1 connections");

    // 1. Steady.
    let steady = blast(
        &webhook.url,
        &ca,
        &body,
        answer_len,
        reviews,
        Arc::default(),
    )
    .await;
    println!("{}", steady.line("steady"));

    // 2. Two certificate swaps while the load runs.
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (url, ca, body, sent) = (webhook.url.clone(), ca.clone(), body.clone(), sent.clone());
        tokio::spawn(async move { blast(&url, &ca, &body, answer_len, reviews, sent).await })
    };
    let mut switched = Vec::new();
    for third in [1, 2] {
        while sent.load(Ordering::Relaxed) < reviews * third / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let renewed =
            certs::generate(&names(), Some((&bundle.ca_cert_pem, &bundle.ca_key_pem)), 1).unwrap();
        certs::write(&renewed, dir.path()).unwrap();
        let want = pem_der(&renewed.cert_pem);
        let t = Instant::now();
        while served_leaf(webhook.port, &ca).await.as_deref() != Some(want.as_slice()) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the new certificate is not served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        switched.push(t.elapsed());
    }
    let rotation = load.await.unwrap();
    println!(
        "{}  (new certificate served {} ms and {} ms after each swap)",
        rotation.line("rotation"),
        switched[0].as_millis(),
        switched[1].as_millis()
    );

    // 3. SIGTERM one second into the load.
    let mut webhook = webhook;
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (url, ca, body, sent) = (webhook.url.clone(), ca.clone(), body.clone(), sent.clone());
        tokio::spawn(async move { blast(&url, &ca, &body, answer_len, reviews, sent).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = webhook.child.id() as i32;
    // SAFETY: kill(2) with the pid of our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let sigterm = load.await.unwrap();
    let status = webhook.child.wait().unwrap();
    println!("{}  (exit: {status})", sigterm.line("SIGTERM"));
    for cause in sigterm.causes.iter().take(5) {
        println!("  lost: {cause}");
    }
    assert_eq!(steady.lost + steady.refused, 0, "steady load lost requests");
    assert_eq!(
        rotation.lost + rotation.refused,
        0,
        "requests failed during rotation"
    );
    assert_eq!(sigterm.lost, 0, "requests cut mid-way at SIGTERM");
    assert!(status.success(), "exit status {status}");
    println!(
        "serve.log:\n{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );
}
