//! Load over HTTPS: the real `secret-injector serve` process against a bare axum +
//! rustls server measured in the same run. The baseline process is built from the
//! webhook's own server parts (`tls::server_config`, `https::serve`,
//! `server::with_limits`) on the same tokio runtime; per request it parses the body into
//! a `serde_json::Value` and answers with as many bytes as the webhook does. What is
//! left over is the webhook's own cost: validating annotations, building the patch,
//! metrics and the log line of every review. Every answer's length is checked, so a
//! denial or an error page counts as an error, not as speed.
//!
//! A second baseline, `canned`, answers the same bytes without parsing anything: the
//! distance to it is the whole cost of reading a review.
//!
//! Four shapes of traffic, each against all three servers:
//! - HTTP/2, one connection, 64 concurrent streams (how kube-apiserver calls a webhook);
//! - HTTP/1.1, 16 keep-alive connections;
//! - a new TLS connection for every request, a full handshake without resumption as
//!   Go clients make (capped at 4000 requests, so this run is shorter than
//!   `LOAD_SECONDS`, and TIME_WAIT does not exhaust the client's ephemeral ports);
//! - HTTP/2 at a fixed 1,000 reviews/s (open loop: each request is timed from when it
//!   was due, so a server that falls behind shows it in p99).
//!
//! Prints requests/s, p50/p99 latency and server CPU per request for both, the
//! webhook/baseline ratios, the time the webhook spent inside `admission::review` (from
//! its own /metrics), and each process's resident memory at rest and at peak.
//! The client runs on the same machine, so absolute numbers are the machine's; the
//! ratios are what to compare across runs.
//!
//! Run: `cargo bench --bench load` (`LOAD_SECONDS=N` per measurement, default 5;
//! `LOAD_WEBHOOK_LOG=warn` to see what the per-review log line costs).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/workload.rs"]
mod workload;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use serde_json::Value;

use support::{free_port, rustls_client_config, wait_http};
use webhook::admission::request_for;
use webhook::server::{self, Limits};

/// When set, this binary is the baseline server, with arguments
/// `PORT CERT KEY RESPONSE_LEN MODE`: MODE `parse` parses each body into a
/// `serde_json::Value` first, `canned` answers without looking at it (the limit).
const BASELINE_ENV: &str = "SECRET_INJECTOR_LOAD_BASELINE";

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::var_os(BASELINE_ENV).is_some() {
        return baseline_server();
    }
    // `cargo test --benches` runs bench targets without `--bench`: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: run with `cargo bench --bench load`");
        return;
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(Duration::from_secs(seconds)));
}

/// The baseline: the webhook's own TLS and HTTP stack (`https::serve`,
/// `server::with_limits`), a JSON parse, a canned answer.
fn baseline_server() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (port, cert, key, len): (u16, &str, &str, usize) =
        (a[0].parse().unwrap(), &a[1], &a[2], a[3].parse().unwrap());
    let parse = a[4] == "parse";
    let config =
        webhook::tls::server_config(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap())
            .unwrap();
    let canned = Bytes::from(vec![b' '; len]);
    let limits = Limits::default();
    let app = server::with_limits(
        axum::Router::new().route(
            "/mutate",
            axum::routing::post(move |body: Bytes| {
                let canned = canned.clone();
                async move {
                    if parse {
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        std::hint::black_box(v);
                    }
                    ([(header::CONTENT_TYPE, "application/json")], canned)
                }
            }),
        ),
        &limits,
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        webhook::https::serve(listener, tls, &limits, app, std::future::pending())
            .await
            .unwrap();
    });
}

/// A server process under test; killed on drop.
struct Server {
    name: &'static str,
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time the process has used so far.
    fn cpu(&self, ticks_per_second: f64) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / ticks_per_second)
    }
}

fn client_tls(ca: &Path, alpn: &[u8], resume: bool) -> rustls::ClientConfig {
    let mut cfg = rustls_client_config(ca);
    cfg.alpn_protocols = vec![alpn.to_vec()];
    if !resume {
        // Full handshakes, as Go clients (kube-apiserver) make without a session cache.
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    cfg
}

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    workers: usize,
    http2: bool,
    reuse_connections: bool,
    /// Stop after this many requests even if time is left (TIME_WAIT on the client).
    max_requests: usize,
    /// Open loop: requests per second across all workers, each sent at its scheduled
    /// time and timed from it (a late start counts as latency). `None`: as fast as
    /// the server answers.
    rate: Option<f64>,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "HTTP/2, 1 connection, 64 streams",
        workers: 64,
        http2: true,
        reuse_connections: true,
        max_requests: usize::MAX,
        rate: None,
    },
    Shape {
        name: "HTTP/1.1, 16 keep-alive connections",
        workers: 16,
        http2: false,
        reuse_connections: true,
        max_requests: usize::MAX,
        rate: None,
    },
    Shape {
        name: "new TLS connection (full handshake) per request, 8 at once",
        workers: 8,
        http2: false,
        reuse_connections: false,
        max_requests: 4000,
        rate: None,
    },
    Shape {
        name: "HTTP/2, 1 connection, 1,000 reviews/s (open loop)",
        workers: 64,
        http2: true,
        reuse_connections: true,
        max_requests: usize::MAX,
        rate: Some(1000.0),
    },
];

fn client_for(shape: &Shape, ca: &Path) -> reqwest::Client {
    let alpn: &[u8] = if shape.http2 { b"h2" } else { b"http/1.1" };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(ca, alpn, shape.reuse_connections))
        .timeout(Duration::from_secs(10));
    b = if shape.http2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    if !shape.reuse_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

struct Measured {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
    fn cpu_per_request(&self) -> Duration {
        self.cpu / self.ok.max(1) as u32
    }
}

/// What every measurement sends and expects.
struct Load {
    ca: PathBuf,
    body: Bytes,
    /// The length of a correct answer (the webhook's is the same for every request);
    /// anything else counts as an error.
    answer_len: usize,
    ticks_per_second: f64,
}

/// Drive `server` with `shape` for `duration` (or `shape.max_requests`).
async fn drive(server: &Server, shape: &Shape, load: &Load, duration: Duration) -> Measured {
    let client = client_for(shape, &load.ca);
    let cpu_before = server.cpu(load.ticks_per_second);
    let start = Instant::now();
    let stop = start + duration;
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(shape.max_requests));
    // Open loop: worker w sends its k-th request at start + (k * workers + w) / rate.
    let period = shape.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let tasks: Vec<_> = (0..shape.workers)
        .map(|w| {
            let (client, url, body, budget, answer_len) = (
                client.clone(),
                server.url.clone(),
                load.body.clone(),
                budget.clone(),
                load.answer_len,
            );
            let workers = shape.workers as u32;
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                let mut k = 0u32;
                while Instant::now() < stop
                    && budget
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        )
                        .is_ok()
                {
                    let t = match period {
                        Some(p) => {
                            let due = start + p * (k * workers + w as u32);
                            k += 1;
                            if due >= stop {
                                break;
                            }
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    let sent = client
                        .post(&url)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let ok = match sent {
                        Ok(r) if r.status().is_success() => {
                            r.bytes().await.is_ok_and(|b| b.len() == answer_len)
                        }
                        Ok(_) => false,
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut m = Measured {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (l, e) = t.await.unwrap();
        m.latencies.extend(l);
        m.errors += e;
    }
    m.elapsed = start.elapsed();
    m.cpu = server.cpu(load.ticks_per_second).saturating_sub(cpu_before);
    m.ok = m.latencies.len();
    m.latencies.sort();
    m
}

/// The webhook's own account of the time spent in `admission::review` (the pure path):
/// the sum and count of `secret_injector_admission_duration_seconds`.
async fn review_seconds(client: &reqwest::Client, metrics_url: &str) -> (f64, f64) {
    let text = client
        .get(metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("secret_injector_admission_duration_seconds_sum"),
        value("secret_injector_admission_duration_seconds_count"),
    )
}

/// USER_HZ, the unit of the CPU times in /proc/<pid>/stat.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Start this binary as a baseline server (`mode`: `parse` or `canned`) answering
/// `response_len` bytes, and wait until it answers.
async fn start_baseline(
    name: &'static str,
    mode: &str,
    cert: &Path,
    key: &Path,
    response_len: usize,
    probe: &reqwest::Client,
    body: &Bytes,
) -> Server {
    let port = free_port();
    let mut server = Server {
        name,
        child: Command::new(std::env::current_exe().unwrap())
            .env(BASELINE_ENV, "1")
            .arg(port.to_string())
            .arg(cert)
            .arg(key)
            .arg(response_len.to_string())
            .arg(mode)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("https://127.0.0.1:{port}/mutate"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .post(&server.url)
        .body(body.clone())
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{name} exited: {status}");
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn run(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let bundle = webhook::certs::generate(&names, None, 1).unwrap();
    webhook::certs::write(&bundle, dir.path()).unwrap();
    let (cert, key, ca) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    // The webhook as it runs in a cluster, logging at info to a file.
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut webhook = Server {
        name: "webhook",
        child: Command::new(env!("CARGO_BIN_EXE_secret-injector"))
            .args(["serve", "--kube", "off"])
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin}"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env_remove("SECRET_INJECTOR_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("LOAD_WEBHOOK_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        url: format!("https://127.0.0.1:{port}/mutate"),
    };
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    assert!(
        wait_http(&ready, "webhook", &mut webhook.child).await,
        "the webhook exited before it was ready: {}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );

    // A typical pod (3 containers, 5 secrets, 2 templates), as in the admission bench.
    let body = Bytes::from(request_for(&workload::pod(3, 5, 2), "prod", "CREATE"));
    let probe = client_for(&SHAPES[1], &ca);
    let raw = probe
        .post(&webhook.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&raw).unwrap();
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{answer}");
    assert!(response["patch"].is_string(), "no patch: {answer}");
    let response_len = raw.len();

    let baseline = start_baseline(
        "baseline",
        "parse",
        &cert,
        &key,
        response_len,
        &probe,
        &body,
    )
    .await;
    let canned = start_baseline("canned", "canned", &cert, &key, response_len, &probe, &body).await;
    let rest = [
        webhook.proc_status_kib("VmRSS:"),
        baseline.proc_status_kib("VmRSS:"),
        canned.proc_status_kib("VmRSS:"),
    ];

    let load = Load {
        ca,
        body,
        answer_len: response_len,
        ticks_per_second: clock_ticks(),
    };
    println!(
        "load: typical pod review ({} bytes in, {response_len} out), {}s per measurement, {} CPUs",
        load.body.len(),
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for shape in &SHAPES {
        // Warm both up (connections, allocator, branch predictors), then measure.
        for s in [&canned, &baseline, &webhook] {
            drive(s, shape, &load, Duration::from_millis(500)).await;
        }
        let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
        let c = drive(&canned, shape, &load, duration).await;
        let b = drive(&baseline, shape, &load, duration).await;
        let before = review_seconds(&plain, &metrics_url).await;
        let w = drive(&webhook, shape, &load, duration).await;
        let after = review_seconds(&plain, &metrics_url).await;
        let in_review =
            Duration::from_secs_f64((after.0 - before.0) / (after.1 - before.1).max(1.0));
        println!(
            "\n{} ({} requests in {:.1}s to the baseline, {} in {:.1}s to the webhook)",
            shape.name,
            b.ok,
            b.elapsed.as_secs_f64(),
            w.ok,
            w.elapsed.as_secs_f64()
        );
        println!(
            "  {:<9} {:>10} {:>10} {:>10} {:>12} {:>7}",
            "", "req/s", "p50", "p99", "CPU/request", "errors"
        );
        for (name, m) in [("canned", &c), ("baseline", &b), ("webhook", &w)] {
            println!(
                "  {:<9} {:>10.0} {:>10} {:>10} {:>12} {:>7}",
                name,
                m.rps(),
                ms(m.quantile(0.5)),
                ms(m.quantile(0.99)),
                us(m.cpu_per_request()),
                m.errors
            );
        }
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        println!(
            "  ratio webhook/baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x, CPU/request {:.2}x",
            ratio(w.rps(), b.rps()),
            ratio(w.quantile(0.5).as_secs_f64(), b.quantile(0.5).as_secs_f64()),
            ratio(
                w.quantile(0.99).as_secs_f64(),
                b.quantile(0.99).as_secs_f64()
            ),
            ratio(
                w.cpu_per_request().as_secs_f64(),
                b.cpu_per_request().as_secs_f64()
            ),
        );
        println!(
            "  ratio webhook/canned (no parse at all: the limit): throughput {:.2}x, p99 {:.2}x, CPU/request {:.2}x",
            ratio(w.rps(), c.rps()),
            ratio(
                w.quantile(0.99).as_secs_f64(),
                c.quantile(0.99).as_secs_f64()
            ),
            ratio(
                w.cpu_per_request().as_secs_f64(),
                c.cpu_per_request().as_secs_f64()
            ),
        );
        println!(
            "  webhook time inside admission::review (its /metrics): {} per review",
            us(in_review)
        );
        assert_eq!(w.errors, 0, "the webhook failed requests under load");
        assert_eq!(b.errors, 0, "the baseline failed requests under load");
        assert_eq!(c.errors, 0, "the canned server failed requests under load");
    }
    println!("\nresident memory (RSS)");
    for (i, s) in [&webhook, &baseline, &canned].into_iter().enumerate() {
        println!(
            "  {:<9} at rest {:>6} KiB, peak {:>6} KiB",
            s.name,
            rest[i],
            s.proc_status_kib("VmHWM:")
        );
    }
}
