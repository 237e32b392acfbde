//! The refresh sidecar's probes and metrics, served on its probe port: what the kubelet
//! and Prometheus see of it. Never a value, nor a secret's name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runtime::listen::Bounds;

/// What the probes and the metrics read.
#[derive(Debug, Default)]
pub struct Status {
    pub ready: AtomicBool,
    /// The secrets on disk are older than the last refresh attempt.
    pub stale: AtomicBool,
    pub last_success_unix: AtomicU64,
    pub failures: AtomicU64,
    pub publications: AtomicU64,
    /// Refreshes that read every secret without a lease successfully.
    pub refreshes: AtomicU64,
    /// The main loop's last turn (Unix seconds): liveness.
    pub heartbeat_unix: AtomicU64,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Time for a client of the probe port to send its request head (the kubelet sends it
/// with the connection), its first as any later one; a connection idle that long is
/// closed. Anyone on the pod network reaches the port: it gets the bounds of
/// [`runtime::listen::serve_plain`] (HTTP/1.1, heads of at most 8 KiB,
/// [`runtime::listen::PLAIN_MAX_CONNECTIONS`] connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The probe and metrics server: `/readyz` (200 once the first files are written: the
/// startup probe), `/healthz` (200 while the loop turns: the liveness probe), `/metrics`.
/// Runs until the process exits.
pub async fn serve_probes(listener: tokio::net::TcpListener, status: Arc<Status>) {
    use axum::routing::get;
    let ready = status.clone();
    let live = status.clone();
    let app = axum::Router::new()
        .route(
            "/readyz",
            get(move || {
                let ok = ready.ready.load(Ordering::Relaxed);
                async move { probe(ok) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let beat = live.heartbeat_unix.load(Ordering::Relaxed);
                // a loop that has not turned for a minute is wedged
                let ok = beat == 0 || unix_now().saturating_sub(beat) < 60;
                async move { probe(ok) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics_text(&status);
                async move { text }
            }),
        );
    let bounds = Bounds::plain(HEADER_TIMEOUT);
    runtime::listen::serve_plain(listener, app, &bounds, std::future::pending()).await;
}

fn probe(ok: bool) -> (axum::http::StatusCode, &'static str) {
    if ok {
        (axum::http::StatusCode::OK, "ok\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not yet\n")
    }
}

/// The sidecar's metrics in the Prometheus text format.
pub fn metrics_text(s: &Status) -> String {
    let gauge = |b: &AtomicBool| u8::from(b.load(Ordering::Relaxed));
    format!(
        "# HELP secret_injector_refresh_ready 1 once the first files are written.\n\
         # TYPE secret_injector_refresh_ready gauge\n\
         secret_injector_refresh_ready {}\n\
         # HELP secret_injector_refresh_stale 1 while the last refresh failed and the files are the last good ones.\n\
         # TYPE secret_injector_refresh_stale gauge\n\
         secret_injector_refresh_stale {}\n\
         # HELP secret_injector_refresh_last_success_timestamp_seconds When a refresh last succeeded.\n\
         # TYPE secret_injector_refresh_last_success_timestamp_seconds gauge\n\
         secret_injector_refresh_last_success_timestamp_seconds {}\n\
         # HELP secret_injector_refresh_failures_total Failed refresh attempts.\n\
         # TYPE secret_injector_refresh_failures_total counter\n\
         secret_injector_refresh_failures_total {}\n\
         # HELP secret_injector_refresh_publications_total Generations of files published.\n\
         # TYPE secret_injector_refresh_publications_total counter\n\
         secret_injector_refresh_publications_total {}\n\
         # HELP secret_injector_refresh_refreshes_total Refreshes that read every secret without a lease.\n\
         # TYPE secret_injector_refresh_refreshes_total counter\n\
         secret_injector_refresh_refreshes_total {}\n",
        gauge(&s.ready),
        gauge(&s.stale),
        s.last_success_unix.load(Ordering::Relaxed),
        s.failures.load(Ordering::Relaxed),
        s.publications.load(Ordering::Relaxed),
        s.refreshes.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_show_staleness() {
        let s = Status::default();
        s.stale.store(true, Ordering::Relaxed);
        s.failures.store(3, Ordering::Relaxed);
        let text = metrics_text(&s);
        assert!(
            text.contains("\nsecret_injector_refresh_stale 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsecret_injector_refresh_failures_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsecret_injector_refresh_ready 0\n"),
            "{text}"
        );
    }
}
