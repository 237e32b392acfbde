//! The HTTPS webhook listener and the plain-HTTP admin listener.
//!
//! Both take already-bound listeners and a shutdown future, so tests bind port 0.
//! On shutdown: readiness turns false, the webhook stops accepting, in-flight requests
//! finish within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tower_http::timeout::TimeoutLayer;

use crate::admission;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::spec::Context;
use crate::{Error, Result};

/// Resolves facts about a pod's service account from a cache (never an API call).
pub type Lookup = Arc<dyn Fn(&str, &str) -> Context + Send + Sync>;

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub lookup: Lookup,
    /// Whether the ServiceAccount cache has synced (true when there is none).
    pub cache_synced: Arc<AtomicBool>,
    /// Readiness stops waiting for the cache after this long (the admission path then
    /// falls back to pod annotations, and says so in its logs).
    pub cache_wait: Duration,
    pub started: Instant,
}

impl AppState {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Self {
        AppState {
            config,
            metrics,
            ready: AtomicBool::new(false),
            lookup: Arc::new(|_, _| Context::default()),
            cache_synced: Arc::new(AtomicBool::new(true)),
            cache_wait: Duration::from_secs(30),
            started: Instant::now(),
        }
    }

    /// Serving, and the ServiceAccount cache synced (or waited for long enough).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && (self.cache_synced.load(Ordering::Relaxed)
                || self.started.elapsed() >= self.cache_wait)
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (HTTP 413 above).
    pub body_limit: usize,
    /// Time to answer one request (HTTP 408 above).
    pub request_timeout: Duration,
    /// Time for a client to send its request headers, and its first request.
    pub header_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long to keep serving, not ready, after SIGTERM before closing the listener:
    /// endpoints and kube-proxy need a moment to stop sending new reviews here.
    pub shutdown_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_limit: 4 << 20,
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
            shutdown_delay: Duration::from_secs(5),
        }
    }
}

async fn mutate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let start = Instant::now();
    let result = admission::review(&body, &state.config, |ns, sa| (state.lookup)(ns, sa));
    let seconds = start.elapsed().as_secs_f64();
    match result {
        Ok((bytes, s)) => {
            state.metrics.record(s.outcome, &s.namespace, seconds);
            match s.outcome {
                "denied" => {
                    tracing::info!(namespace = %s.namespace, pod = %s.pod, problems = %s.detail, "denied")
                }
                "injected" => tracing::info!(namespace = %s.namespace, pod = %s.pod, "injected"),
                _ => {
                    tracing::debug!(namespace = %s.namespace, pod = %s.pod, outcome = s.outcome, reason = %s.detail, "not injected")
                }
            }
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(bad) => {
            state.metrics.record("invalid", "", seconds);
            tracing::warn!(error = %bad, "rejected a malformed admission request");
            (StatusCode::BAD_REQUEST, format!("{bad}\n")).into_response()
        }
    }
}

pub fn webhook_router(state: Arc<AppState>, limits: &Limits) -> Router {
    with_limits(
        Router::new()
            .route("/mutate", post(mutate))
            .with_state(state),
        limits,
    )
}

/// The body limit and the request timeout, around any router.
pub fn with_limits(router: Router, limits: &Limits) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}

/// The HTTPS server: rustls behind `tls` (which reloads), TCP_NODELAY, and the
/// handshake, header and first-request timeouts.
pub fn https_server(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    limits: &Limits,
) -> Result<axum_server::Server<std::net::SocketAddr, RustlsAcceptor<NoDelayAcceptor>>> {
    // TCP_NODELAY: without it, Nagle holds the response behind the unacknowledged TLS
    // 1.3 session tickets until the client's delayed ACK (40 ms) on every new connection.
    let acceptor = RustlsAcceptor::new(tls)
        .handshake_timeout(limits.header_timeout)
        .acceptor(NoDelayAcceptor::new());
    let mut server = axum_server::from_tcp(listener)
        .map_err(Error::io("use the webhook listener"))?
        .acceptor(acceptor)
        .first_request_timeout(limits.header_timeout);
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    server
        .http_builder()
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    Ok(server)
}

pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<AppState>>| async move {
                if s.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<AppState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .with_state(state)
}

/// Serve until `shutdown` completes, then drain.
pub async fn run(
    webhook: std::net::TcpListener,
    admin: std::net::TcpListener,
    tls: RustlsConfig,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    webhook
        .set_nonblocking(true)
        .and_then(|_| admin.set_nonblocking(true))
        .map_err(Error::io("set listeners non-blocking"))?;
    let handle = axum_server::Handle::new();
    let server = https_server(webhook, tls, &limits)?.handle(handle.clone());

    let admin =
        tokio::net::TcpListener::from_std(admin).map_err(Error::io("use the admin listener"))?;
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(
        axum::serve(admin, admin_router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = admin_stop_rx.await;
            })
            .into_future(),
    );

    let grace = limits.shutdown_grace;
    let delay = limits.shutdown_delay;
    let stopper = {
        let state = state.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            state.ready.store(false, Ordering::Relaxed);
            if !delay.is_zero() {
                tracing::info!(
                    delay_seconds = delay.as_secs(),
                    "not ready; still serving while endpoints update"
                );
                tokio::time::sleep(delay).await;
            }
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "shutting down: draining connections"
            );
            handle.graceful_shutdown(Some(grace));
        })
    };

    state.ready.store(true, Ordering::Relaxed);
    let served = server
        .serve(webhook_router(state.clone(), &limits).into_make_service())
        .await;
    stopper.abort();
    let _ = admin_stop_tx.send(());
    let _ = admin_task.await;
    served.map_err(Error::io("webhook server"))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_the_service_account_cache_for_a_while() {
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        assert!(!state.is_ready(), "not serving yet");
        state.ready.store(true, Ordering::Relaxed);
        assert!(state.is_ready(), "no cache to wait for");
        state.cache_synced = Arc::new(AtomicBool::new(false));
        assert!(!state.is_ready(), "cache not synced");
        state.cache_wait = Duration::ZERO;
        assert!(state.is_ready(), "waited long enough: annotations fallback");
    }
}
