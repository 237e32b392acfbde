//! The HTTPS webhook listener and the plain-HTTP admin listener, both bounded by
//! [`runtime::listen`].
//!
//! Both take already-bound listeners and a shutdown future, so tests bind port 0.
//! On shutdown: readiness turns false, the webhook stops accepting, in-flight requests
//! finish within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, ReviewOutcome};
use crate::body::{BodyError, Budget};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mutation::spec::Context;
use contract::text::Escaped;
use runtime::{Error, Result};

/// Resolves facts about a pod's service account from a cache (never an API call).
pub type Lookup = Arc<dyn Fn(&str, &str) -> Context + Send + Sync>;

/// Whether a namespace is known to exist (from the same cache); labels metrics.
pub type KnownNamespace = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    /// SIGTERM arrived: HTTP/1.1 answers say `Connection: close`, so clients move to
    /// new connections while the listener still accepts them, and no keep-alive
    /// connection is idle-closed under a request at the end of the shutdown delay.
    pub stopping: AtomicBool,
    pub lookup: Lookup,
    pub known_namespace: KnownNamespace,
    /// Reviews of bodies over [`INLINE_REVIEW_BYTES`] run on the blocking pool, this
    /// many at a time: heavy admission work never occupies the async workers that
    /// answer `/healthz`, and a flood of heavy reviews queues here instead of
    /// multiplying.
    pub reviews: Arc<tokio::sync::Semaphore>,
    /// Request bodies held in memory ([`crate::body`]): many large reviews at
    /// once wait instead of adding up, and stalled ones hold only what they sent.
    pub bodies: Arc<Budget>,
    /// Whether the ServiceAccount cache has synced (true when there is none).
    pub cache_synced: Arc<AtomicBool>,
    /// Readiness stops waiting for the cache after this long (the admission path then
    /// falls back to pod annotations, and says so in its logs). `None` (`--kube
    /// required`, the default in a cluster): not ready until the cache has synced.
    pub cache_wait: Option<Duration>,
    /// The last error of the ServiceAccount watch, shown by `/readyz` while it waits.
    pub cache_error: Arc<std::sync::Mutex<Option<String>>>,
    pub started: Instant,
}

impl AppState {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Self {
        AppState {
            config,
            metrics,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            lookup: Arc::new(|_, _| Context::default()),
            known_namespace: Arc::new(|_| false),
            reviews: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            bodies: Arc::new(Budget::default()),
            cache_synced: Arc::new(AtomicBool::new(true)),
            cache_wait: Some(Duration::from_secs(30)),
            cache_error: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Serving, and the ServiceAccount cache synced (or, when it is best effort, waited
    /// for long enough).
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`AppState::is_ready`], with the reason when not: what `/readyz` says.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err(if self.stopping.load(Ordering::Relaxed) {
                "shutting down".to_string()
            } else {
                "starting".to_string()
            });
        }
        if self.cache_synced.load(Ordering::Relaxed) {
            return Ok(());
        }
        let waited = self.started.elapsed();
        let why = match self.cache_wait {
            Some(wait) if waited >= wait => return Ok(()),
            Some(wait) => format!(
                "the ServiceAccount cache has not synced yet (waiting at most {}s more)",
                (wait - waited).as_secs()
            ),
            None => "the ServiceAccount cache has not synced yet (--kube required: not ready until it has)"
                .to_string(),
        };
        let last = self
            .cache_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Err(match last {
            Some(e) => format!("{why}; last watch error: {e}"),
            None => why,
        })
    }
}

pub use crate::https::Limits;

/// The target of the one log line per review ("injected", "denied", ...): at info and
/// below, `serve` writes these in batches ([`runtime::logging::Batch`]).
/// `RUST_LOG=info,secret_injector::webhook::review=warn` keeps only the problems.
pub const REVIEW_LOG_TARGET: &str = "secret_injector::webhook::review";

/// Bodies up to this size are reviewed on the async worker that read them: about 8 µs
/// per KiB of pod with its templates already checked (the large bench pod, 20
/// containers and 50 secrets in 11 KB, takes 80 µs), a few milliseconds at worst for
/// hostile ones (tests/it/hostile.rs), while a hand-off to a review thread and
/// back costs two context switches, more than a typical review (docs/performance.md,
/// "Load"). Larger bodies go to the review threads (`--review-threads`), where a flood
/// of heavy reviews queues instead of occupying the workers that answer other requests.
pub const INLINE_REVIEW_BYTES: usize = 64 * 1024;

/// Run `review`, turning a panic into an error: one bad review answers 500, and the
/// webhook keeps serving every other.
fn caught<T>(review: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(review)).map_err(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned());
        format!("panicked: {}", text.as_deref().unwrap_or("(no message)"))
    })
}

async fn mutate(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    body_limit: usize,
) -> Response {
    let http1 = request.version() <= axum::http::Version::HTTP_11;
    let mut response = answer(&state, request, body_limit).await;
    if http1 && state.stopping.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn answer(
    state: &Arc<AppState>,
    request: axum::extract::Request,
    body_limit: usize,
) -> Response {
    let start = Instant::now();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > body_limit) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let (body, held) = match state.bodies.read(request.into_body(), body_limit).await {
        Ok(read) => read,
        Err(BodyError::Closed) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(BodyError::Cut) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is over --body-limit or was cut off\n",
            )
                .into_response();
        }
    };
    let result = if body.len() <= INLINE_REVIEW_BYTES {
        // Small: here, on the async worker. Handing it to a review thread would cost
        // more in context switches than the review itself.
        let _held = held;
        caught(|| admission::review(&body, &state.config, |ns, sa| (state.lookup)(ns, sa)))
    } else {
        let Ok(permit) = state.reviews.clone().acquire_owned().await else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        // The permit moves into the blocking task: if the request times out, the slot
        // stays taken until the work really ends, so timed-out reviews cannot pile up.
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            // The body's memory stays counted until the review is done with it.
            let (_permit, _held) = (permit, held);
            caught(|| admission::review(&body, &worker.config, |ns, sa| (worker.lookup)(ns, sa)))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    };
    let seconds = start.elapsed().as_secs_f64();
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(target: REVIEW_LOG_TARGET, error = %Escaped(&e), "an admission review failed unexpectedly");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    match result {
        Ok((bytes, s)) => {
            let known =
                s.outcome == ReviewOutcome::Injected && (state.known_namespace)(&s.namespace);
            state
                .metrics
                .record(s.outcome, &s.namespace, known, seconds);
            let (namespace, pod, detail) =
                (Escaped(&s.namespace), Escaped(&s.pod), Escaped(&s.detail));
            match s.outcome {
                ReviewOutcome::Denied => {
                    tracing::info!(target: REVIEW_LOG_TARGET, %namespace, %pod, problems = %detail, "denied")
                }
                ReviewOutcome::Injected => {
                    tracing::info!(target: REVIEW_LOG_TARGET, %namespace, %pod, "injected")
                }
                // A static pod that asked for secrets it will not get: worth a line.
                ReviewOutcome::Skipped if s.skip.is_some_and(|skip| skip.is_notable()) => {
                    tracing::info!(target: REVIEW_LOG_TARGET, %namespace, %pod, reason = %detail, "not injected")
                }
                _ => {
                    tracing::debug!(target: REVIEW_LOG_TARGET, %namespace, %pod, outcome = %s.outcome, reason = %detail, "not injected")
                }
            }
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(bad) => {
            state
                .metrics
                .record(ReviewOutcome::Invalid, "", false, seconds);
            let error = bad.to_string();
            tracing::warn!(target: REVIEW_LOG_TARGET, error = %Escaped(&error), "rejected a malformed admission request");
            (StatusCode::BAD_REQUEST, format!("{bad}\n")).into_response()
        }
    }
}

pub fn webhook_router(state: Arc<AppState>, limits: &Limits) -> Router {
    with_limits(
        Router::new()
            .route(
                "/mutate",
                post({
                    let limit = limits.body_limit;
                    move |state, request| mutate(state, request, limit)
                }),
            )
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

pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<AppState>>| async move {
                match s.readiness() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
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
    admin
        .set_nonblocking(true)
        .map_err(Error::io("set the admin listener non-blocking"))?;
    let admin =
        tokio::net::TcpListener::from_std(admin).map_err(Error::io("use the admin listener"))?;
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Anyone on the pod network may reach it: the plain listeners' bounds, and the
    // webhook's header timeout.
    let admin_bounds = runtime::listen::Bounds::plain(limits.header_timeout);
    let admin_task = tokio::spawn({
        let router = admin_router(state.clone());
        async move {
            let stop = async {
                let _ = admin_stop_rx.await;
            };
            runtime::listen::serve_plain(admin, router, &admin_bounds, stop).await;
        }
    });

    let grace = limits.shutdown_grace;
    let delay = limits.shutdown_delay;
    let stopping = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.ready.store(false, Ordering::Relaxed);
            state.stopping.store(true, Ordering::Relaxed);
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
        }
    };

    state.ready.store(true, Ordering::Relaxed);
    let router = webhook_router(state.clone(), &limits);
    let served = crate::https::serve(webhook, tls, &limits, router, stopping).await;
    let _ = admin_stop_tx.send(());
    let _ = admin_task.await;
    served.map_err(Error::io("webhook server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_review_becomes_an_error() {
        assert_eq!(caught(|| 7), Ok(7));
        let e = caught(|| -> u8 { panic!("bad pod {}", 1) }).unwrap_err();
        assert_eq!(e, "panicked: bad pod 1");
        let e = caught(|| -> u8 { std::panic::panic_any(3u8) }).unwrap_err();
        assert_eq!(e, "panicked: (no message)");
    }

    /// A one-secret pod whose container carries `padding` bytes of env, reviewed in
    /// namespace `ns` through the webhook's router.
    async fn post_padded(state: &Arc<AppState>, ns: &str, padding: usize) -> Response {
        use tower::ServiceExt;
        let pod = serde_json::json!({
            "metadata": {"generateName": "app-", "annotations": {"secret-injector.io/secret-db": "vault:kv/db"}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "PAD", "value": "x".repeat(padding)}]}]},
        });
        let request = axum::http::Request::post("/mutate")
            .body(axum::body::Body::from(admission::request_for(
                &pod, ns, "CREATE",
            )))
            .unwrap();
        webhook_router(state.clone(), &Limits::default())
            .oneshot(request)
            .await
            .unwrap()
    }

    /// A review that panics, small (inline) or large (review thread), answers 500,
    /// and the next review is answered as usual.
    #[tokio::test]
    async fn a_review_that_panics_answers_500_and_the_next_one_is_served() {
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        state.lookup = Arc::new(|ns, _| {
            assert_ne!(ns, "boom", "a review that panics");
            Context::default()
        });
        let state = Arc::new(state);
        for (padding, ns, status) in [
            (100, "boom", StatusCode::INTERNAL_SERVER_ERROR),
            (
                INLINE_REVIEW_BYTES,
                "boom",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (100, "prod", StatusCode::OK),
            (INLINE_REVIEW_BYTES, "prod", StatusCode::OK),
        ] {
            let response = post_padded(&state, ns, padding).await;
            assert_eq!(response.status(), status, "{ns}, padding {padding}");
        }
    }

    /// After SIGTERM, HTTP/1.1 answers say `Connection: close` (clients move to a new
    /// connection while the listener still accepts); HTTP/2 ones have no such header.
    #[tokio::test]
    async fn answers_ask_http1_clients_to_reconnect_once_stopping() {
        use tower::ServiceExt;
        let state = Arc::new(AppState::new(Config::default(), Arc::new(Metrics::new())));
        let pod = serde_json::json!({"metadata": {"name": "app"}, "spec": {"containers": [{"name": "app"}]}});
        let body = admission::request_for(&pod, "prod", "CREATE");
        let send = |version| {
            let request = axum::http::Request::post("/mutate")
                .version(version)
                .body(axum::body::Body::from(body.clone()))
                .unwrap();
            webhook_router(state.clone(), &Limits::default()).oneshot(request)
        };
        let close = |r: &Response| r.headers().get(header::CONNECTION).cloned();
        let r = send(axum::http::Version::HTTP_11).await.unwrap();
        assert_eq!((r.status(), close(&r)), (StatusCode::OK, None));
        state.stopping.store(true, Ordering::Relaxed);
        let r = send(axum::http::Version::HTTP_11).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(close(&r).unwrap(), "close");
        let r = send(axum::http::Version::HTTP_2).await.unwrap();
        assert_eq!((r.status(), close(&r)), (StatusCode::OK, None));
    }

    /// Small reviews never wait for a review thread; large ones do. With no review
    /// thread to be had (the semaphore closed), a small pod is still answered and a
    /// large one gets 503.
    #[tokio::test]
    async fn only_large_reviews_go_to_the_review_threads() {
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        let closed = Arc::new(tokio::sync::Semaphore::new(0));
        closed.close();
        state.reviews = closed;
        let state = Arc::new(state);
        for (padding, status) in [
            (100, StatusCode::OK),
            (INLINE_REVIEW_BYTES / 2, StatusCode::OK),
            (INLINE_REVIEW_BYTES, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let response = post_padded(&state, "prod", padding).await;
            assert_eq!(response.status(), status, "padding {padding}");
        }
    }

    #[tokio::test]
    async fn injections_are_labelled_only_with_known_namespaces() {
        use tower::ServiceExt;
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        state.known_namespace = Arc::new(|ns| ns == "prod");
        let state = Arc::new(state);
        let pod = serde_json::json!({
            "metadata": {"generateName": "app-", "annotations": {"secret-injector.io/secret-db": "vault:kv/db"}},
            "spec": {"containers": [{"name": "app"}]},
        });
        for ns in ["prod", "made-up-1", "made-up-2"] {
            let body = admission::request_for(&pod, ns, "CREATE");
            let request = axum::http::Request::post("/mutate")
                .body(axum::body::Body::from(body))
                .unwrap();
            let response = webhook_router(state.clone(), &Limits::default())
                .oneshot(request)
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let text = state.metrics.encode();
        assert!(
            text.contains("secret_injector_injections_total{namespace=\"prod\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secret_injector_injections_total{namespace=\"_unknown\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn readiness_waits_for_the_service_account_cache_for_a_while() {
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        assert_eq!(state.readiness(), Err("starting".to_string()));
        state.ready.store(true, Ordering::Relaxed);
        assert!(state.is_ready(), "no cache to wait for");
        state.cache_synced = Arc::new(AtomicBool::new(false));
        assert!(!state.is_ready(), "cache not synced");
        state.cache_wait = Some(Duration::ZERO);
        assert!(state.is_ready(), "waited long enough: annotations fallback");
    }

    /// `--kube required`: not ready until the cache has synced, however long that
    /// takes, and `/readyz` says why, with the watch's last error.
    #[tokio::test]
    async fn a_required_cache_keeps_readyz_503_with_the_reason_until_synced() {
        use tower::ServiceExt;
        let mut state = AppState::new(Config::default(), Arc::new(Metrics::new()));
        let synced = Arc::new(AtomicBool::new(false));
        state.cache_synced = synced.clone();
        state.cache_wait = None;
        state.started = Instant::now() - Duration::from_secs(3600);
        state.ready.store(true, Ordering::Relaxed);
        *state.cache_error.lock().unwrap() = Some("connection refused".to_string());
        let state = Arc::new(state);
        let readyz = || async {
            let response = admin_router(state.clone())
                .oneshot(
                    axum::http::Request::get("/readyz")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        let (status, body) = readyz().await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "an hour later: {body}"
        );
        assert!(
            body.starts_with(
                "not ready: the ServiceAccount cache has not synced yet (--kube required"
            ),
            "{body}"
        );
        assert!(
            body.ends_with("; last watch error: connection refused\n"),
            "{body}"
        );
        synced.store(true, Ordering::Relaxed);
        assert_eq!(readyz().await, (StatusCode::OK, "ready\n".to_string()));
        state.ready.store(false, Ordering::Relaxed);
        state.stopping.store(true, Ordering::Relaxed);
        assert_eq!(
            readyz().await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: shutting down\n".to_string()
            )
        );
    }
}
