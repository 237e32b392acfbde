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
//! Open connections are capped at [`MAX_CONNECTIONS`], but idle ones cannot hold the
//! slots: a connection accepted at the cap makes the one that has gone longest without a
//! request in flight close (if that is at least [`EVICT_IDLE`]; the same graceful close
//! as above). When none is that idle, the new one is served anyway, up to twice the
//! cap; there the loop stops accepting and closes every connection idle that long,
//! down to the cap, each [`EVICT_TICK`].
//!
//! On shutdown, listening stops and every connection gets a graceful close: a handshake
//! in progress is completed, a connection that has not yet sent its first request gets
//! up to 2 s for it, and those still busy after `shutdown_grace` are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// What one connection and one request may cost, and how shutdown drains.
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
    /// How long a connection may stay open without a request (HTTP/2 pings do not
    /// count) before the server closes it.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_limit: 4 << 20,
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
            shutdown_delay: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Open connections kept: beyond it, a new connection closes the one idle longest. The
/// API server keeps one or a few per webhook replica.
const MAX_CONNECTIONS: usize = 128;
/// Open connections at most, all busy: the accept loop waits for one to close.
const MAX_BUSY_CONNECTIONS: usize = 2 * MAX_CONNECTIONS;
/// How long a connection must have had no request in flight before it may be closed to
/// make room: a client that sends its reviews back to back is never cut between them.
const EVICT_IDLE: Duration = Duration::from_millis(250);
/// How often, at [`MAX_BUSY_CONNECTIONS`], idle connections are looked for.
const EVICT_TICK: Duration = Duration::from_millis(50);
/// Requests at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 16;
/// HTTP/2 flow-control window of one request. A body is read on only while the
/// webhook's body budget has room for it ([`crate::webhook::body`]), so waiting requests
/// hold their next bytes unread. The connection's window is one stream's more than all
/// of its streams' together: unread requests can never use it up and stall the ones
/// being read. It also bounds what one connection can make the server buffer.
const STREAM_WINDOW: u32 = 16 * 1024;
/// HTTP/1.1 read buffer: a review's headers are small, its body is read on demand.
const H1_BUFFER: usize = 64 * 1024;

/// Requests in flight on one connection, and when the last one started or ended.
#[derive(Clone)]
struct Activity {
    inflight: Arc<AtomicUsize>,
    last: Arc<Mutex<Instant>>,
    served_one: Arc<std::sync::atomic::AtomicBool>,
    /// Told to close to make room for a new connection.
    evict: Arc<Notify>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            inflight: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(Instant::now())),
            served_one: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            evict: Arc::new(Notify::new()),
        }
    }

    /// Since when it has had no request in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        let last = *self.last.lock().expect("not poisoned");
        (self.inflight.load(Ordering::SeqCst) == 0).then_some(last)
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
            let busy = self.inflight.load(Ordering::SeqCst) > 0;
            if !busy && Instant::now() >= due {
                return served;
            }
            // Busy: look again one period later (a request ending touches `last`).
            let wake = if busy { Instant::now() + limit } else { due };
            tokio::time::sleep_until(wake).await;
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
        .max_buf_size(H1_BUFFER)
        .header_read_timeout(limits.header_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(Some(MAX_STREAMS))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(STREAM_WINDOW * (MAX_STREAMS + 1)));
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    // The activity of each connection not yet told to close.
    let mut open: HashMap<tokio::task::Id, Activity> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.remove(&id);
            }
            _ = tokio::time::sleep(EVICT_TICK), if connections.len() >= MAX_BUSY_CONNECTIONS => {
                while open.len() > MAX_CONNECTIONS && evict_longest_idle(&mut open) {}
            }
            accepted = listener.accept(), if connections.len() < MAX_BUSY_CONNECTIONS => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, typically: wait instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if open.len() >= MAX_CONNECTIONS {
                    evict_longest_idle(&mut open);
                }
                let activity = Activity::new();
                let task = connections.spawn(connection(
                    stream,
                    activity.clone(),
                    tls.clone(),
                    http.clone(),
                    router.clone(),
                    limits.clone(),
                    stop_rx.clone(),
                ));
                open.insert(task.id(), activity);
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

/// Tell the connection that has gone longest without a request in flight to close, if
/// that is at least [`EVICT_IDLE`]. Returns whether one was told.
fn evict_longest_idle(open: &mut HashMap<tokio::task::Id, Activity>) -> bool {
    let Some(idle_before) = Instant::now().checked_sub(EVICT_IDLE) else {
        return false;
    };
    let longest = open
        .iter()
        .filter_map(|(id, a)| a.idle_since().map(|since| (since, *id)))
        .filter(|(since, _)| *since <= idle_before)
        .min();
    let Some(activity) = longest.and_then(|(_, id)| open.remove(&id)) else {
        return false;
    };
    // (A stored permit: it closes even if it was not waiting yet.)
    activity.evict.notify_one();
    true
}

async fn connection(
    stream: tokio::net::TcpStream,
    activity: Activity,
    tls: RustlsConfig,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    // The first-request timeout counts from the accept, handshake included.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    // Not cut by shutdown: a client whose connection was accepted is answered (the
    // handshake is bounded by the header timeout). Cut to make room for a new one.
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            _ => return,
        },
        _ = activity.evict.notified() => return,
    };
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
    // (The select only decides: the watch's guard must not live across an await.)
    let stopping = tokio::select! {
        _ = &mut conn => return,
        _ = stop.wait_for(|s| *s) => None,
        served = activity.idle(limits.header_timeout, limits.idle_timeout) => Some(served),
        _ = activity.evict.notified() => Some(activity.served_one.load(Ordering::SeqCst)),
    };
    let served = match stopping {
        Some(served) => served,
        None => {
            // Accepted just before the listener closed, its first request still on
            // the way: wait for it (bounded), so it is answered rather than cut.
            if !activity.served_one.load(Ordering::SeqCst) {
                let first_request = async {
                    while !activity.served_one.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                let wait = limits.header_timeout.min(Duration::from_secs(2));
                tokio::select! {
                    _ = &mut conn => return,
                    _ = tokio::time::timeout(wait, first_request) => {}
                }
            }
            true
        }
    };
    if !served {
        // Nothing was ever asked on it: drop it.
        return;
    }
    conn.as_mut().graceful_shutdown();
    // The close may wait for a request in flight; shutdown's grace bounds that.
    let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
}
