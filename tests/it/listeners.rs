//! The plain-HTTP listeners anyone on the pod network can reach: the webhook's admin
//! port (8080: `/healthz`, `/readyz`, `/metrics`) and the refresh sidecar's probe port
//! (8099). Hundreds of connections that send a request head of 400 KiB, or one that
//! never ends, or nothing: the process must not grow (the sidecar's limit is 64 Mi, the
//! webhook's 128 Mi, and an OOM kill is a SIGKILL: the sidecar would revoke nothing),
//! it must close them within its header timeout and keep no more than its cap open,
//! and `/healthz` must keep answering within a second, as the kubelet's probes need.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hostile::HealthProbe;
use crate::util::{self, Webhook, rt};

/// Connections of each flood.
const FLOOD: usize = 300;
/// A request head of this much, never ended: hyper's default buffer (about 408 KiB)
/// holds all of it.
const HUGE_HEAD: usize = 400 * 1024;
/// What a flood may add to the process's resident set.
const GROWTH_LIMIT_KB: u64 = 16 * 1024;
/// Descriptors the process may hold besides the listeners' connections (its log,
/// listeners, epoll, ...), on top of the 128 connections a plain listener may have.
const FD_LIMIT: usize = 128 + 32;

/// A `refresh` sidecar with nothing to fetch, its probes on a free loopback port; its
/// first fetch succeeds at once and its next one is an hour away.
struct Sidecar {
    child: Child,
    port: u16,
    _out: tempfile::TempDir,
}

impl Sidecar {
    fn start() -> Sidecar {
        let out = tempfile::tempdir().unwrap();
        let port = util::free_port();
        let child = util::agent()
            .args(["refresh", "--plan", "{}", "--interval", "1h"])
            .arg(format!("--out-dir={}", out.path().display()))
            .arg(format!("--probe-listen=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut s = Sidecar {
            child,
            port,
            _out: out,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while util::http_get(port, "/readyz").ok().as_deref() != Some("ok\n") {
            assert!(Instant::now() < deadline, "the sidecar never got ready");
            assert!(
                s.child.try_wait().unwrap().is_none(),
                "the sidecar exited before it was ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Whether the server closes `s` (end of stream, a reset, or any answer, which for
/// these is a 431 and a close) within `within`.
async fn closed_within(mut s: TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// [`FLOOD`] connections at once, each sending [`HUGE_HEAD`] bytes of a head that never
/// ends. Returns how many the server closed within 3 s.
async fn huge_heads(port: u16) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        tasks.spawn(async move {
            let mut head = b"GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Pad: ".to_vec();
            head.resize(HUGE_HEAD, b'a');
            // The server may close before it has all of it: a failed write is fine.
            let _ = tokio::time::timeout(Duration::from_secs(3), s.write_all(&head)).await;
            closed_within(s, Duration::from_secs(3)).await
        });
    }
    let mut closed = 0;
    while let Some(done) = tasks.join_next().await {
        closed += usize::from(done.unwrap());
    }
    closed
}

/// 2 x [`FLOOD`] connections that send the start of a head and then nothing, 100 at
/// once every 50 ms (faster, they overflow the kernel's accept queue of 128 whatever
/// the server does, and new connections wait for TCP's SYN retransmission, 1 s).
/// Returns the most descriptors the process held meanwhile, and how many of the
/// connections it closed within `within`.
async fn stalled_heads(port: u16, pid: u32, within: Duration) -> (usize, usize) {
    let mut open = Vec::new();
    let mut most_fds = 0;
    for i in 1..=2 * FLOOD {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: pro").await;
            open.push(s);
        }
        if i % 100 == 0 {
            most_fds = most_fds.max(open_fds(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let checks = open.into_iter().map(|s| closed_within(s, within));
    let (closed, ()) = tokio::join!(futures::future::join_all(checks), async {
        for _ in 0..10 {
            most_fds = most_fds.max(open_fds(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (most_fds, closed.into_iter().filter(|c| *c).count())
}

/// Both floods against `port` of process `pid`, whose header timeout is
/// `header_timeout`, with `/healthz` polled throughout.
fn flood(what: &str, port: u16, pid: u32, header_timeout: Duration) {
    for _ in 0..5 {
        assert_eq!(util::http_get(port, "/healthz").unwrap(), "ok\n");
    }
    let before = status_kb(pid, "VmRSS:");
    let probe = HealthProbe::start(port);
    let start = Instant::now();
    let closed = rt().block_on(huge_heads(port));
    let huge_took = start.elapsed();
    let start = Instant::now();
    let within = header_timeout + Duration::from_millis(1500);
    let (most_fds, stalled_closed) = rt().block_on(stalled_heads(port, pid, within));
    let stalled_took = start.elapsed();
    let slowest = probe.slowest();
    let peak = status_kb(pid, "VmHWM:");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{what}: {closed}/{FLOOD} huge heads closed in {huge_took:?}; {stalled_closed}/{} \
         stalled heads closed in {stalled_took:?}, at most {most_fds} descriptors; RSS \
         {before} kB before, peak {peak} kB (+{growth} kB); slowest /healthz {slowest:?}",
        2 * FLOOD
    );
    assert_eq!(closed, FLOOD, "{what}: huge heads left open");
    assert_eq!(stalled_closed, 2 * FLOOD, "{what}: stalled heads left open");
    assert!(most_fds <= FD_LIMIT, "{what}: {most_fds} descriptors open");
    assert!(growth < GROWTH_LIMIT_KB, "{what}: RSS grew by {growth} kB");
    assert!(
        slowest < Duration::from_secs(1),
        "{what}: /healthz took {slowest:?}"
    );
}

#[test]
fn the_admin_port_bounds_what_its_clients_hold() {
    let w = Webhook::start(&["--header-timeout", "1s"]);
    flood("admin port", w.admin, w.child.id(), Duration::from_secs(1));
    assert!(w.child_alive());
}

#[test]
fn the_sidecar_probe_port_bounds_what_its_clients_hold() {
    let mut s = Sidecar::start();
    let header_timeout = agent::probes::HEADER_TIMEOUT;
    flood("probe port", s.port, s.child.id(), header_timeout);
    assert!(s.child.try_wait().unwrap().is_none(), "the sidecar exited");
}
