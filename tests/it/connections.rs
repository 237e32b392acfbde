//! Connection-level abuse, each sent over TLS to a webhook on ONE async worker thread:
//! hundreds of connections that do nothing, an HTTP/2 connection that opens far more
//! streams than it may, and one that opens and resets streams as fast as it can
//! ("rapid reset", CVE-2023-44487). Throughout, `/healthz` answers within a second, a
//! new client's review is answered within a second, and the peak RSS stays under the
//! Deployment's limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::hostile::{HealthProbe, assert_still_healthy, normal_pod, post};
use crate::util::{self, Webhook, rt};
use webhook::admission::request_for;

/// A new client's review: a fresh connection (no pool), answered with a patch.
async fn fresh_review(w: &Webhook) -> Duration {
    let a = post(
        &w.client(),
        w,
        request_for(&normal_pod(), "team-a", "CREATE"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.review["response"]["patch"].is_string(), "{}", a.review);
    a.took
}

async fn tls(w: &Webhook, alpn: &[u8]) -> TlsStream<TcpStream> {
    try_tls(w.port, &w.ca(), alpn).await.unwrap()
}

/// A TLS connection to the webhook on `port`, offering `alpn`.
async fn try_tls(port: u16, ca: &Path, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut cfg = util::rustls_client_config(ca);
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

// HTTP/2 frames (RFC 9113 section 4.1) and their types.
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// `POST /mutate` with a JSON content type (and a content length when given),
/// HPACK-encoded from the static table and literals without indexing (RFC 7541): the
/// same bytes fit every stream.
fn request_block(content_length: Option<&str>) -> Vec<u8> {
    let mut b = vec![0x83, 0x87]; // :method POST, :scheme https
    let mut fields = vec![
        (&[0x04][..], "/mutate"),                // :path
        (&[0x01][..], "localhost"),              // :authority
        (&[0x0f, 0x10][..], "application/json"), // content-type (index 31)
    ];
    if let Some(n) = content_length {
        fields.push((&[0x0f, 0x0d][..], n)); // content-length (index 28)
    }
    for (name_index, value) in fields {
        b.extend(name_index);
        b.push(value.len() as u8);
        b.extend(value.as_bytes());
    }
    b
}

/// The frames the server sent, as (type, stream, error code when it has one).
async fn read_frames(
    mut r: impl AsyncRead + Unpin,
    seen: Arc<std::sync::Mutex<Vec<(u8, u32, u32)>>>,
) {
    let mut head = [0u8; 9];
    while r.read_exact(&mut head).await.is_ok() {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            break;
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let code = match head[3] {
            RST_STREAM if len == 4 => u32::from_be_bytes(payload[..4].try_into().unwrap()),
            GOAWAY if len >= 8 => u32::from_be_bytes(payload[4..8].try_into().unwrap()),
            _ => 0,
        };
        seen.lock().unwrap().push((head[3], stream, code));
    }
}

/// An HTTP/2 connection past the preface and the settings exchange, the server's
/// frames recorded from then on by a task of their own.
struct RawH2 {
    write: tokio::io::WriteHalf<TlsStream<TcpStream>>,
    seen: Arc<std::sync::Mutex<Vec<(u8, u32, u32)>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl RawH2 {
    async fn open(w: &Webhook) -> RawH2 {
        RawH2::try_open(w.port, &w.ca()).await.unwrap()
    }

    async fn try_open(port: u16, ca: &Path) -> std::io::Result<RawH2> {
        let mut s = try_tls(port, ca, b"h2").await?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        s.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        // The server's SETTINGS comes first; acknowledge it.
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await?;
        assert_eq!(head[3], SETTINGS, "the server's preface");
        let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
        s.read_exact(&mut payload).await?;
        s.write_all(&frame(SETTINGS, ACK, 0, &[])).await?;
        let (read, write) = tokio::io::split(s);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = tokio::spawn(read_frames(read, seen.clone()));
        Ok(RawH2 {
            write,
            seen,
            reader,
        })
    }

    fn count(&self, kind: u8, code: u32) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(k, _, c)| *k == kind && *c == code)
            .count()
    }
}

#[test]
fn idle_connections_cannot_hold_the_webhook_slots() {
    let mut w = Webhook::start_env(&[("TOKIO_WORKER_THREADS", "1")], &["--review-threads", "1"]);
    let probe = HealthProbe::start(w.admin);
    rt().block_on(async {
        // 300 TCP connections that never start TLS, and 300 that sent one review over
        // keep-alive HTTP/1.1 and then say nothing: each kind alone is more than the
        // 128 connections the webhook keeps.
        let mut silent = Vec::new();
        for _ in 0..300 {
            silent.push(TcpStream::connect(("127.0.0.1", w.port)).await.unwrap());
        }
        let body = request_for(&normal_pod(), "team-a", "CREATE");
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut idle = Vec::new();
        for _ in 0..300 {
            let mut s = tls(&w, b"http/1.1").await;
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
            let mut answer = vec![0u8; 16 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
                .await
                .expect("an answer")
                .unwrap();
            assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
            idle.push(s);
        }
        // A new client is still served at once: the idlest connections made room.
        let took = fresh_review(&w).await;
        assert!(took < Duration::from_secs(1), "a new client waited {took:?}");
        // Those closed to make room were closed, not left hanging: the webhook keeps
        // at most 256 open, so at least 44 of these were closed.
        let mut closed = 0;
        for s in &mut idle {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut byte)).await {
                closed += 1;
            }
        }
        assert!(closed >= 300 - 256, "only {closed} idle connections were closed");
        eprintln!("idle connections: a new client answered in {took:?}, {closed} of 300 idle ones closed");
        drop(silent);
    });
    assert_still_healthy(probe, &mut w);
}

#[test]
fn http2_stream_floods_and_rapid_resets_are_refused() {
    let mut w = Webhook::start_env(&[("TOKIO_WORKER_THREADS", "1")], &["--review-threads", "1"]);
    let probe = HealthProbe::start(w.admin);
    let block = request_block(None);
    // Declares a body just under the 4 MiB limit, and never sends it.
    let declared = request_block(Some("4000000"));
    rt().block_on(async {
        // 1. 1,000 streams opened at once, each waiting for its body: the 16 the
        // connection may have are accepted, every other one is refused. The 16 declare
        // 4 MB bodies they never send: 62 MB, four times the body budget, which they
        // must not hold.
        let mut h2 = RawH2::open(&w).await;
        let mut flood = Vec::new();
        for i in 0..1_000u32 {
            let block = if i < 16 { &declared } else { &block };
            flood.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, block));
        }
        h2.write.write_all(&flood).await.unwrap();
        let start = Instant::now();
        while h2.count(RST_STREAM, REFUSED_STREAM) < 1_000 - 16
            && start.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = h2.count(RST_STREAM, REFUSED_STREAM);
        assert!(refused >= 1_000 - 16, "{refused} streams refused");
        let took = fresh_review(&w).await;
        assert!(
            took < Duration::from_secs(1),
            "a review during the flood took {took:?}"
        );
        drop(h2);

        // 2. Rapid reset: 20,000 streams, each opened and cancelled at once. The
        // server closes the connection; other clients are served meanwhile.
        let mut h2 = RawH2::open(&w).await;
        let writing = tokio::spawn(async move {
            let mut batch = Vec::new();
            for i in 0..20_000u32 {
                let stream = 2 * i + 1;
                batch.extend(frame(HEADERS, END_HEADERS, stream, &block));
                batch.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
                if batch.len() > 64 * 1024 {
                    if h2.write.write_all(&batch).await.is_err() {
                        break;
                    }
                    batch.clear();
                }
            }
            let _ = h2.write.write_all(&batch).await;
            h2
        });
        let took = fresh_review(&w).await;
        assert!(
            took < Duration::from_secs(1),
            "a review during the resets took {took:?}"
        );
        let h2 = writing.await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), h2.reader).await;
        assert!(
            ended.is_ok(),
            "the resetting connection is still open after 10 s"
        );
        let goaway = h2.seen.lock().unwrap().iter().any(|(k, _, _)| *k == GOAWAY);
        assert!(goaway, "closed without a GOAWAY");
        eprintln!("h2 abuse: {refused} of 1,000 streams refused; rapid reset answered by GOAWAY");
        let took = fresh_review(&w).await;
        assert!(
            took < Duration::from_secs(1),
            "a review after the resets took {took:?}"
        );
    });
    assert_still_healthy(probe, &mut w);
}

/// Requests sent by the stalling clients below, and connections they opened.
#[derive(Default)]
struct Stalling {
    stop: AtomicBool,
    requests: std::sync::atomic::AtomicUsize,
    connections: std::sync::atomic::AtomicUsize,
}

/// An HTTP/2 client that declares a 1,000-byte body and never sends it: again on a new
/// stream after each answer (a 408), again on a new connection after each close.
async fn stall_h2(port: u16, ca: PathBuf, s: Arc<Stalling>) {
    let block = request_block(Some("1000"));
    while !s.stop.load(Ordering::Relaxed) {
        let opened = tokio::time::timeout(Duration::from_secs(5), RawH2::try_open(port, &ca));
        let Ok(Ok(mut h2)) = opened.await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        s.connections.fetch_add(1, Ordering::Relaxed);
        let (mut stream, mut answered) = (1u32, 0);
        while !s.stop.load(Ordering::Relaxed) && !h2.reader.is_finished() {
            if stream == 1 || h2.count(HEADERS, 0) > answered {
                answered = h2.count(HEADERS, 0);
                let headers = frame(HEADERS, END_HEADERS, stream, &block);
                if h2.write.write_all(&headers).await.is_err() {
                    break;
                }
                s.requests.fetch_add(1, Ordering::Relaxed);
                stream += 2;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h2.reader.abort();
    }
}

/// The same over HTTP/1.1.
async fn stall_h1(port: u16, ca: PathBuf, s: Arc<Stalling>) {
    let head = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    while !s.stop.load(Ordering::Relaxed) {
        let opened = tokio::time::timeout(Duration::from_secs(5), try_tls(port, &ca, b"http/1.1"));
        let Ok(Ok(mut tls)) = opened.await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        s.connections.fetch_add(1, Ordering::Relaxed);
        let mut answer = [0u8; 4096];
        let mut ask = true;
        while !s.stop.load(Ordering::Relaxed) {
            if ask {
                if tls.write_all(head).await.is_err() {
                    break;
                }
                s.requests.fetch_add(1, Ordering::Relaxed);
            }
            match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut answer)).await {
                Err(_) => ask = false,
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => ask = true,
            }
        }
    }
}

/// A client that speaks HTTP/1.1 only (it offers no other protocol), keeping its
/// connection between requests.
fn http1_client(w: &Webhook) -> reqwest::Client {
    let mut cfg = util::rustls_client_config(&w.ca());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The security review's defect 3: 300 connections (HTTP/2 and HTTP/1.1), each holding
/// a POST that declares a body and never sends it, asked again after every 408 and
/// reconnected after every close. Requests whose bodies do not come are not work in
/// flight: those connections are the ones closed to make room, and the reviews of the
/// API server (its kept connection, HTTP/2 or HTTP/1.1) and of new clients keep being
/// answered, none of them cut: the server, as busy as it is with the flood's
/// handshakes, does not take a new client's slow handshake for a silent one, nor close
/// a connection in use while flood connections may be closed instead.
#[test]
fn requests_whose_bodies_never_come_cannot_lock_reviews_out() {
    let mut w = Webhook::start_env(&[("TOKIO_WORKER_THREADS", "1")], &["--review-threads", "1"]);
    let probe = HealthProbe::start(w.admin);
    let review = || request_for(&normal_pod(), "team-a", "CREATE");
    rt().block_on(async {
        let (api, api_h1) = (w.client(), http1_client(&w));
        assert_eq!(post(&api, &w, review()).await.status, 200);
        assert_eq!(post(&api_h1, &w, review()).await.status, 200);
        let stalling = Arc::new(Stalling::default());
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..300 {
            let (s, ca) = (stalling.clone(), w.ca());
            if i % 4 == 0 {
                flood.spawn(stall_h1(w.port, ca, s));
            } else {
                flood.spawn(stall_h2(w.port, ca, s));
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut took = Vec::new();
        // (Each kept connection is used every 3rd review: well within the HTTP/1.1 idle
        // timeout, the header timeout of 5 s.)
        for i in 0..9 {
            let client = match i % 3 {
                0 => api_h1.clone(),
                1 => w.client(),
                _ => api.clone(),
            };
            let answer = tokio::time::timeout(Duration::from_secs(4), post(&client, &w, review()));
            let a = answer
                .await
                .unwrap_or_else(|_| panic!("review {i} during the flood: no answer within 4 s"));
            assert_eq!(a.status, 200, "review {i}: {}", a.review);
            took.push(a.took);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stalling.stop.store(true, Ordering::Relaxed);
        while flood.join_next().await.is_some() {}
        let slowest = took.iter().max().unwrap();
        eprintln!(
            "stalled bodies: {} requests on {} connections; reviews answered in {took:?}",
            stalling.requests.load(Ordering::Relaxed),
            stalling.connections.load(Ordering::Relaxed),
        );
        assert!(
            *slowest < Duration::from_secs(2),
            "a review during the flood took {slowest:?}"
        );
    });
    assert_still_healthy(probe, &mut w);
}
