//! Serving an axum [`Router`] on a TCP listener with bounds on what any client can hold:
//! the webhook's HTTPS listener (`/mutate`, [`crate::webhook::https`]), and the plain
//! HTTP/1.1 listeners anyone on the pod network reaches ([`serve_plain`]): the webhook's
//! admin port and the refresh sidecar's probe port.
//!
//! Every connection is closed when it is not used:
//! - before its first request, after `header_timeout` (covers the handshake, TLS or
//!   none, and hyper's protocol detection; the connection is dropped). An HTTP/1.1
//!   request head must also arrive within it, the first as every later one;
//! - between requests, after `idle_timeout`: HTTP/2 gets a GOAWAY (the client opens a
//!   new connection for its next request, as it does after any GOAWAY), HTTP/1.1 is
//!   closed after the response in flight. Keep-alive pings answered by the client do not
//!   count as use: only requests do.
//!
//! A request is work in flight while its body arrives, but only for [`BODY_DEADLINE`]:
//! past it, a request still waiting for bytes its client does not send is *stalled*,
//! and a connection whose requests are all stalled counts as not in use. (A body the
//! server is not reading yet, waiting for room in the webhook's body budget, is not
//! waiting for its client: that request is still work.)
//!
//! Open connections are capped at `max_connections`, but unused ones cannot hold the
//! slots: a connection accepted at the cap makes another one close, chosen in this order:
//! 1. a stalled one: dropped at once (its client is not sending; it gets no answer);
//! 2. the oldest that has not sent a request `fresh_grace` after it was accepted:
//!    dropped;
//! 3. the one that has gone longest without a request in flight, if that is at least
//!    [`EVICT_IDLE`]: closed as after `idle_timeout`. A client that sends its requests
//!    back to back is never cut between them.
//!
//! When none qualifies, the new one is served anyway, up to twice the cap; there the
//! loop stops accepting and closes such connections, down to the cap, each
//! [`EVICT_TICK`].
//!
//! On shutdown, listening stops and every connection gets a graceful close: a handshake
//! in progress is completed, a connection that has not yet sent its first request gets
//! up to 2 s for it, stalled requests are dropped, and those still busy after
//! `shutdown_grace` are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// What the connections of one listener may hold, and how its shutdown drains.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Open connections kept: beyond, a new one makes an unused one close. At most
    /// twice as many are open, all busy; then accepting waits.
    pub max_connections: usize,
    /// Time for the handshake and the first request, and for any HTTP/1.1 request head.
    pub header_timeout: Duration,
    /// How long a connection may stay open without a request.
    pub idle_timeout: Duration,
    /// How long requests in flight may run once shutdown begins.
    pub shutdown_grace: Duration,
    /// How long after its accept a connection that has sent no request yet is safe from
    /// being closed to make room: enough for its handshake and its first request.
    pub fresh_grace: Duration,
}

/// How long a request may wait for its body's bytes and still count as work in flight.
pub const BODY_DEADLINE: Duration = Duration::from_secs(1);
/// How long a connection must have had no request in flight before it may be closed to
/// make room.
pub const EVICT_IDLE: Duration = Duration::from_millis(250);
/// How often, at twice the cap, connections to close are looked for.
const EVICT_TICK: Duration = Duration::from_millis(10);
/// How often a connection being closed checks whether its requests have stalled.
const STALL_CHECK: Duration = Duration::from_millis(100);

/// Open connections of the plain listeners: the kubelet opens one per probe and closes
/// it, Prometheus keeps one.
pub const PLAIN_MAX_CONNECTIONS: usize = 64;
/// HTTP/1.1 read buffer of the plain listeners, hyper's smallest: a request head over
/// it is answered 431 and the connection closed.
pub const PLAIN_MAX_HEAD: usize = 8 * 1024;
/// Header fields in one request head of the plain listeners (431 above).
pub const PLAIN_MAX_HEADERS: usize = 32;
/// [`Bounds::fresh_grace`] of the plain listeners: with no handshake, a request is
/// there as soon as the connection is. Short, so that a flood of connections that send
/// nothing is shed as fast as it comes.
pub const PLAIN_FRESH_GRACE: Duration = Duration::from_millis(20);

impl Bounds {
    /// The bounds of a plain listener ([`serve_plain`]): [`PLAIN_MAX_CONNECTIONS`], and
    /// `header_timeout` also as the idle timeout (hyper's header read timeout ends an
    /// HTTP/1.1 connection idle that long anyway). Its answers are immediate: a second
    /// of grace at shutdown.
    pub fn plain(header_timeout: Duration) -> Bounds {
        Bounds {
            max_connections: PLAIN_MAX_CONNECTIONS,
            header_timeout,
            idle_timeout: header_timeout,
            shutdown_grace: Duration::from_secs(1),
            fresh_grace: PLAIN_FRESH_GRACE,
        }
    }
}

/// What a new connection goes through before HTTP: TLS, or nothing.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain TCP: no handshake.
#[derive(Clone, Copy, Debug)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<TcpStream>> + Send {
        std::future::ready(Ok(tcp))
    }
}

/// HTTP/1.1 only, heads of at most [`PLAIN_MAX_HEAD`] bytes and [`PLAIN_MAX_HEADERS`]
/// fields, read within `header_timeout`.
pub fn plain_http(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(TokioTimer::new())
        .max_buf_size(PLAIN_MAX_HEAD)
        .max_headers(PLAIN_MAX_HEADERS)
        .header_read_timeout(header_timeout);
    http
}

/// Serve `router` over plain HTTP/1.1 ([`plain_http`]) until `shutdown` completes.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    router: Router,
    bounds: &Bounds,
    shutdown: impl Future<Output = ()> + Send,
) {
    let http = plain_http(bounds.header_timeout);
    serve(listener, Plain, http, bounds, router, shutdown).await;
}

/// One request's body: whether it has all arrived, and whether the server is waiting
/// for its client's next bytes.
struct Progress {
    started: Instant,
    done: AtomicBool,
    waiting: AtomicBool,
}

impl Progress {
    fn stalled(&self, now: Instant) -> bool {
        !self.done.load(Ordering::Relaxed)
            && self.waiting.load(Ordering::Relaxed)
            && now.saturating_duration_since(self.started) >= BODY_DEADLINE
    }
}

/// A request body that tells its [`Progress`].
struct Tracked {
    inner: Incoming,
    progress: Arc<Progress>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let p = &self.progress;
        match &polled {
            Poll::Pending => p.waiting.store(true, Ordering::Relaxed),
            Poll::Ready(Some(Ok(_))) => {
                p.waiting.store(false, Ordering::Relaxed);
                if self.inner.is_end_stream() {
                    p.done.store(true, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                p.waiting.store(false, Ordering::Relaxed);
                p.done.store(true, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The requests in flight on one connection, and when the last one started or ended.
struct Use {
    accepted: Instant,
    last: Instant,
    served_one: bool,
    requests: Vec<Arc<Progress>>,
}

/// What a connection is doing, as far as making room goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// A request is in flight and not stalled.
    Busy,
    /// Requests in flight, all stalled; since a request last started or ended.
    Stalled(Instant),
    /// No request yet; accepted then.
    Fresh(Instant),
    /// No request in flight; since the last one ended.
    Idle(Instant),
}

#[derive(Clone)]
struct Activity {
    use_: Arc<Mutex<Use>>,
    /// Told to close to make room for a new connection.
    evict: Arc<Notify>,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            use_: Arc::new(Mutex::new(Use {
                accepted: now,
                last: now,
                served_one: false,
                requests: Vec::new(),
            })),
            evict: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Use> {
        self.use_.lock().expect("not poisoned")
    }

    fn served_one(&self) -> bool {
        self.lock().served_one
    }

    fn standing(&self, now: Instant) -> Standing {
        let u = self.lock();
        if !u.served_one {
            Standing::Fresh(u.accepted)
        } else if u.requests.is_empty() {
            Standing::Idle(u.last)
        } else if u.requests.iter().all(|r| r.stalled(now)) {
            Standing::Stalled(u.last)
        } else {
            Standing::Busy
        }
    }

    /// Counts a request until dropped (also when the request is cancelled).
    fn begin(&self, body_done: bool) -> InFlight {
        let now = Instant::now();
        let progress = Arc::new(Progress {
            started: now,
            done: AtomicBool::new(body_done),
            waiting: AtomicBool::new(false),
        });
        let mut u = self.lock();
        u.requests.push(progress.clone());
        u.served_one = true;
        u.last = now;
        InFlight {
            activity: self.clone(),
            progress,
        }
    }

    /// Completes once the connection has had no request in flight for the timeout that
    /// applies: `first` until a request arrives, `idle` after. Returns whether a request
    /// was ever served.
    async fn idle(&self, first: Duration, idle: Duration) -> bool {
        loop {
            let (served, last, busy) = {
                let u = self.lock();
                (u.served_one, u.last, !u.requests.is_empty())
            };
            let due = last + if served { idle } else { first };
            if !busy && Instant::now() >= due {
                return served;
            }
            // Busy: look again one period later (a request ending touches `last`).
            let wake = if busy { Instant::now() + idle } else { due };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Completes once every request in flight has stalled.
    async fn stalled(&self) {
        while !matches!(self.standing(Instant::now()), Standing::Stalled(_)) {
            tokio::time::sleep(STALL_CHECK).await;
        }
    }
}

struct InFlight {
    activity: Activity,
    progress: Arc<Progress>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut u = self.activity.lock();
        u.requests.retain(|r| !Arc::ptr_eq(r, &self.progress));
        u.last = Instant::now();
    }
}

/// Serve `router` on `listener`, each connection through `handshake` and `http`, until
/// `shutdown` completes, then drain for at most `bounds.shutdown_grace`.
pub async fn serve<H: Handshake>(
    listener: tokio::net::TcpListener,
    handshake: H,
    http: auto::Builder<TokioExecutor>,
    bounds: &Bounds,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let max_busy = 2 * bounds.max_connections;
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
            _ = tokio::time::sleep(EVICT_TICK), if connections.len() >= max_busy => {
                while open.len() > bounds.max_connections && evict_one(&mut open, bounds.fresh_grace) {}
            }
            accepted = listener.accept(), if connections.len() < max_busy => {
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
                if open.len() >= bounds.max_connections {
                    evict_one(&mut open, bounds.fresh_grace);
                }
                let activity = Activity::new();
                let task = connections.spawn(connection(
                    stream,
                    activity.clone(),
                    handshake.clone(),
                    http.clone(),
                    router.clone(),
                    bounds.clone(),
                    stop_rx.clone(),
                ));
                open.insert(task.id(), activity);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(bounds.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Where a connection stands in the order of closing to make room (lower first), or
/// `None` when it is not to be closed.
fn eviction_rank(standing: Standing, now: Instant, fresh_grace: Duration) -> Option<(u8, Instant)> {
    let at_least = |since: Instant, age: Duration| now.saturating_duration_since(since) >= age;
    match standing {
        Standing::Stalled(since) => Some((0, since)),
        Standing::Fresh(since) if at_least(since, fresh_grace) => Some((1, since)),
        Standing::Idle(since) if at_least(since, EVICT_IDLE) => Some((2, since)),
        _ => None,
    }
}

/// Tell the first connection in the order of [`eviction_rank`] to close. Returns whether
/// one was told.
fn evict_one(open: &mut HashMap<tokio::task::Id, Activity>, fresh_grace: Duration) -> bool {
    let now = Instant::now();
    let first = open
        .iter()
        .filter_map(|(id, a)| {
            eviction_rank(a.standing(now), now, fresh_grace).map(|rank| (rank, *id))
        })
        .min();
    let Some(activity) = first.and_then(|(_, id)| open.remove(&id)) else {
        return false;
    };
    // (A stored permit: it closes even if it was not waiting yet.)
    activity.evict.notify_one();
    true
}

async fn connection<H: Handshake>(
    stream: TcpStream,
    activity: Activity,
    handshake: H,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    bounds: Bounds,
    mut stop: watch::Receiver<bool>,
) {
    // The first-request timeout counts from the accept, handshake included. Not cut by
    // shutdown: a client whose connection was accepted is answered (the handshake is
    // bounded by the header timeout). Cut to make room for a new one.
    let handshake = tokio::time::timeout(bounds.header_timeout, handshake.handshake(stream));
    let io = tokio::select! {
        done = handshake => match done {
            Ok(Ok(io)) => io,
            _ => return,
        },
        _ = activity.evict.notified() => return,
    };
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (parts, body) = req.into_parts();
        let guard = tracker.begin(body.is_end_stream());
        let body = Tracked {
            inner: body,
            progress: guard.progress.clone(),
        };
        let req = hyper::Request::from_parts(parts, axum::body::Body::new(body));
        let call = router.clone().oneshot(req);
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // (The select only decides: the watch's guard must not live across an await.)
    let stopping = tokio::select! {
        _ = &mut conn => return,
        _ = stop.wait_for(|s| *s) => None,
        served = activity.idle(bounds.header_timeout, bounds.idle_timeout) => Some(served),
        _ = activity.evict.notified() => match activity.standing(Instant::now()) {
            // Its client sends nothing: no answer to wait for.
            Standing::Stalled(_) | Standing::Fresh(_) => return,
            _ => Some(true),
        },
    };
    let served = match stopping {
        Some(served) => served,
        None => {
            // Accepted just before the listener closed, its first request still on
            // the way: wait for it (bounded), so it is answered rather than cut.
            if !activity.served_one() {
                let first_request = async {
                    while !activity.served_one() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                let wait = bounds.header_timeout.min(Duration::from_secs(2));
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
    // The close may wait for a request in flight; shutdown's grace bounds that, and a
    // request whose body stopped coming is not waited for.
    tokio::select! {
        _ = tokio::time::timeout(bounds.shutdown_grace, conn) => {}
        _ = activity.stalled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_connections_go_first_then_silent_ones_then_idle_ones() {
        let now = Instant::now();
        let ago = |ms| now - Duration::from_millis(ms);
        let rank = |s| eviction_rank(s, now, Duration::from_millis(100));
        assert_eq!(rank(Standing::Busy), None);
        assert_eq!(rank(Standing::Stalled(ago(1))), Some((0, ago(1))));
        assert_eq!(
            rank(Standing::Fresh(ago(10))),
            None,
            "a handshake under way"
        );
        assert_eq!(rank(Standing::Fresh(ago(200))), Some((1, ago(200))));
        assert_eq!(rank(Standing::Idle(ago(100))), None, "between two requests");
        assert_eq!(rank(Standing::Idle(ago(300))), Some((2, ago(300))));
        assert!(rank(Standing::Stalled(ago(1))) < rank(Standing::Fresh(ago(5_000))));
        assert!(rank(Standing::Fresh(ago(200))) < rank(Standing::Idle(ago(5_000))));
    }

    #[test]
    fn a_request_stalls_only_past_the_deadline_while_waiting_for_its_client() {
        let activity = Activity::new();
        assert!(matches!(
            activity.standing(Instant::now()),
            Standing::Fresh(_)
        ));
        let request = activity.begin(false);
        let later = Instant::now() + BODY_DEADLINE;
        assert_eq!(activity.standing(later), Standing::Busy, "not waiting");
        request.progress.waiting.store(true, Ordering::Relaxed);
        assert_eq!(activity.standing(Instant::now()), Standing::Busy, "in time");
        assert!(matches!(activity.standing(later), Standing::Stalled(_)));
        let other = activity.begin(true);
        assert_eq!(activity.standing(later), Standing::Busy, "one busy request");
        drop((other, request));
        assert!(matches!(activity.standing(later), Standing::Idle(_)));
    }
}
