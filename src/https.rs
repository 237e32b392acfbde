//! The HTTPS accept loop of the webhook: TLS (rustls, the reloadable config), HTTP/1.1
//! and HTTP/2, and a bound on how long any connection may do nothing.
//!
//! Every connection is closed when it is not used:
//! - before its first request, after `header_timeout` (covers the TLS handshake and
//!   hyper's protocol detection; the connection is dropped);
//! - between requests, after `idle_timeout`: HTTP/2 gets a GOAWAY (the client opens a
//!   new connection for its next review, as it does after any GOAWAY), HTTP/1.1 is
//!   closed after the response in flight. Keep-alive pings answered by the client do not
//!   count as use: only requests do.
//!
//! On shutdown, listening stops, every connection gets a graceful close, and those still
//! busy after `shutdown_grace` are dropped.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::server::Limits;

/// Requests in flight on one connection, and when the last one started or ended.
#[derive(Clone)]
struct Activity {
    inflight: Arc<AtomicUsize>,
    last: Arc<Mutex<Instant>>,
    served_one: Arc<std::sync::atomic::AtomicBool>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            inflight: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(Instant::now())),
            served_one: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn touch(&self) {
        *self.last.lock().expect("not poisoned") = Instant::now();
    }

    /// Counts a request until dropped (also when the request is cancelled).
    fn begin(&self) -> InFlight {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        self.served_one.store(true, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    /// Completes once the connection has had no request in flight for the timeout that
    /// applies: `first` until a request arrives, `idle` after. Returns whether a request
    /// was ever served.
    async fn idle(&self, first: Duration, idle: Duration) -> bool {
        loop {
            let served = self.served_one.load(Ordering::SeqCst);
            let limit = if served { idle } else { first };
            let due = *self.last.lock().expect("not poisoned") + limit;
            if self.inflight.load(Ordering::SeqCst) == 0 && Instant::now() >= due {
                return served;
            }
            tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(10))).await;
        }
    }
}

struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve `router` over TLS on `listener` until `shutdown` completes, then drain for at
/// most `limits.shutdown_grace`.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    limits: &Limits,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(Some(256));
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(
                    stream,
                    tls.clone(),
                    http.clone(),
                    router.clone(),
                    limits.clone(),
                    stop_rx.clone(),
                ));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    tls: RustlsConfig,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            _ => return,
        },
    };
    let activity = Activity::new();
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = tracker.begin();
        let call = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        _ = &mut conn => return,
        _ = stop.wait_for(|s| *s) => true,
        served = activity.idle(limits.header_timeout, limits.idle_timeout) => served,
    };
    if !served {
        // Nothing was ever asked on it: drop it.
        return;
    }
    conn.as_mut().graceful_shutdown();
    // The close may wait for a request in flight; shutdown's grace bounds that.
    let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
}
