//! Serving an axum [`Router`] on a TCP listener with bounds on what any client can hold:
//! the webhook's HTTPS listener (`/mutate`, `secret_injector_webhook::https`), and the plain
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
//! and a connection whose requests are all stalled counts as not in use (so does an
//! HTTP/1.1 connection whose next request head, begun, is as late). (A body the
//! server is not reading yet, waiting for room in the webhook's body budget, is not
//! waiting for its client: that request is still work.)
//!
//! The server also tells apart, below TLS, the time it waits for a client's bytes from
//! the time those bytes wait for the server ([`Watched`]): a handshake or a first
//! request that is slow because the server is busy (a flood of handshakes on one core)
//! is not the client's fault, and does not make the connection closable.
//!
//! Open connections are capped at `max_connections`, but unused ones cannot hold the
//! slots: a connection accepted at the cap makes another one close, chosen in this order:
//! 1. a stalled one: dropped at once (its client is not sending; it gets no answer);
//! 2. the oldest that has sent no request yet and whose client has kept the server
//!    waiting `fresh_grace` in all: dropped (unless the kernel shows its client sending
//!    at that moment: then its first request is answered, and the connection closed);
//! 3. the one that has gone longest without a request in flight, if that is at least
//!    [`EVICT_IDLE`]: closed as after `idle_timeout`. A client that sends its requests
//!    back to back is never cut between them; an HTTP/1.1 client that has begun its
//!    next request gets its answer first, with `connection: close`;
//! 4. the same for one whose last request succeeded less than [`KEEP_RECENT`] ago (the
//!    API server's kept connection), HTTP/2 before HTTP/1.1, but only while no other
//!    connection may yet turn out stalled or silent (one in its handshake, or waiting
//!    for its first request or for a body): those go first once they do.
//!
//! When none qualifies, the new one is served anyway, up to twice the cap; there the
//! loop stops accepting and closes such connections, down to the cap, each
//! [`EVICT_TICK`].
//!
//! On shutdown, listening stops and every connection gets a graceful close: a handshake
//! in progress is completed, a connection that has not yet sent its first request gets
//! up to 2 s for it, stalled requests are dropped, and those still busy after
//! `shutdown_grace` are dropped.

use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// How long, in all, a connection that has sent no request yet may keep the server
    /// waiting for its bytes (handshake included) and be safe from being closed to make
    /// room. Time its bytes wait for a busy server does not count.
    pub fresh_grace: Duration,
}

/// How long a request may wait for its body's bytes and still count as work in flight.
pub const BODY_DEADLINE: Duration = Duration::from_secs(1);
/// How long a connection must have had no request in flight before it may be closed to
/// make room.
pub const EVICT_IDLE: Duration = Duration::from_millis(250);
/// How long after its last successful request an idle connection counts as in use by
/// its client (the API server's kept connection, between two reviews): it is closed to
/// make room only when nothing else may be.
pub const KEEP_RECENT: Duration = Duration::from_secs(10);
/// How often, at twice the cap, connections to close are looked for.
const EVICT_TICK: Duration = Duration::from_millis(10);
/// How often a connection being closed checks whether its requests have stalled.
const STALL_CHECK: Duration = Duration::from_millis(100);
/// How often a connection about to close gracefully checks whether the request its
/// client has begun has reached the server.
const ARRIVAL_CHECK: Duration = Duration::from_millis(5);

/// Open connections of the plain listeners: the kubelet opens one per probe and closes
/// it, Prometheus keeps one.
pub const PLAIN_MAX_CONNECTIONS: usize = 64;
/// HTTP/1.1 read buffer of the plain listeners, hyper's smallest: a request head over
/// it is answered 431 and the connection closed.
pub const PLAIN_MAX_HEAD: usize = 8 * 1024;
/// Header fields in one request head of the plain listeners (431 above).
pub const PLAIN_MAX_HEADERS: usize = 32;
/// [`Bounds::fresh_grace`] of the plain listeners: with no handshake, a request is
/// there as soon as the connection is, and the server waits for nothing. Short, so that
/// a flood of connections that send nothing is shed as fast as it comes.
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
    fn handshake(&self, tcp: Watched) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain TCP: no handshake.
#[derive(Clone, Copy, Debug)]
pub struct Plain;

impl Handshake for Plain {
    type Io = Watched;
    fn handshake(&self, tcp: Watched) -> impl Future<Output = std::io::Result<Watched>> + Send {
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
    /// Waiting for body bytes its client has not sent.
    fn waiting(&self) -> bool {
        !self.done.load(Ordering::Relaxed) && self.waiting.load(Ordering::Relaxed)
    }

    fn stalled(&self, now: Instant) -> bool {
        self.waiting() && now.saturating_duration_since(self.started) >= BODY_DEADLINE
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
    /// Its first request was HTTP/2: its graceful close is a GOAWAY, after which a
    /// client such as Go's opens no new stream on it (RFC 9113), and a stream it opened
    /// before the GOAWAY reached it is still answered.
    h2: bool,
    /// When a request last ended with a success status.
    last_ok: Option<Instant>,
    client: Client,
}

/// The server's reads of one connection's bytes, below TLS ([`Watched`]).
#[derive(Default)]
struct Client {
    /// A wait for bytes the client had not sent: since when (a read found none), and
    /// until when at the latest, once the socket became readable.
    waiting: Option<(Instant, Option<Instant>)>,
    /// Time spent so waiting before.
    waited: Duration,
    /// When bytes first came since the last request ended (read, or there to be read).
    arrived: Option<Instant>,
    /// The server is reading (a wake meanwhile is the runtime's, not the client's).
    reading: bool,
}

impl Client {
    /// How long, in all, the server has waited for this client's bytes.
    fn waited(&self, now: Instant) -> Duration {
        let current = self
            .waiting
            .map(|(since, until)| until.unwrap_or(now).saturating_duration_since(since));
        self.waited + current.unwrap_or_default()
    }

    /// The server is waiting for bytes the client has not sent (as far as it knows).
    fn waiting(&self) -> bool {
        matches!(self.waiting, Some((_, None)))
    }

    /// The client has sent something: bytes, or its end.
    fn sent(&mut self, now: Instant) {
        if let Some((_, until @ None)) = &mut self.waiting {
            *until = Some(now);
        }
        self.arrived.get_or_insert(now);
    }

    /// A read got bytes that arrived at `arrival`, or the client's end.
    fn read(&mut self, arrival: Instant) {
        if let Some((since, until)) = self.waiting.take() {
            let end = until.map_or(arrival, |until| until.min(arrival));
            self.waited += end.saturating_duration_since(since);
        }
    }
}

/// What a connection is doing, as far as making room goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Work in flight: a request not stalled nor waiting for its client, or (HTTP/1.1)
    /// the next request arriving.
    Busy,
    /// Requests in flight, all waiting for their bodies, not all stalled yet.
    Waiting,
    /// Requests in flight, all stalled; since a request last started or ended. Or
    /// (HTTP/1.1) the next request's head, begun then, stalled.
    Stalled(Instant),
    /// No request yet: accepted then; its client has kept the server waiting `waited`.
    Fresh { accepted: Instant, waited: Duration },
    /// No request in flight since `since`, when the last one ended. `recent`: one
    /// succeeded less than [`KEEP_RECENT`] ago.
    Idle {
        since: Instant,
        recent: bool,
        h2: bool,
    },
}

impl Standing {
    /// May yet turn out stalled or silent: its handshake or first request under way, or
    /// its requests waiting for their bodies.
    fn undecided(self) -> bool {
        matches!(self, Standing::Fresh { .. } | Standing::Waiting)
    }
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
                h2: false,
                last_ok: None,
                client: Client::default(),
            })),
            evict: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Use> {
        lock(&self.use_)
    }

    fn standing(&self, now: Instant) -> Standing {
        let u = self.lock();
        if !u.served_one {
            Standing::Fresh {
                accepted: u.accepted,
                waited: u.client.waited(now),
            }
        } else if u.requests.is_empty() {
            if let Some(arrived) = u.client.arrived.filter(|_| !u.h2) {
                // Its client has begun the next request: the head, at least, must come
                // as a body must.
                let late = now.saturating_duration_since(arrived) >= BODY_DEADLINE;
                if late && u.client.waiting() {
                    return Standing::Stalled(arrived);
                }
                return Standing::Busy;
            }
            Standing::Idle {
                since: u.last,
                recent: u
                    .last_ok
                    .is_some_and(|ok| now.saturating_duration_since(ok) < KEEP_RECENT),
                h2: u.h2,
            }
        } else if u.requests.iter().all(|r| r.stalled(now)) {
            Standing::Stalled(u.last)
        } else if u.requests.iter().all(|r| r.waiting()) {
            Standing::Waiting
        } else {
            Standing::Busy
        }
    }

    /// Told to close to make room: whether to drop the connection rather than close it
    /// gracefully. `fd` is its socket, open (owned by the task that asks).
    fn drop_at_once(&self, fd: RawFd) -> bool {
        self.ask_kernel(fd);
        match self.standing(Instant::now()) {
            // Its client sends nothing: no answer to wait for.
            Standing::Stalled(_) => true,
            // Unless its client is sending right now: then its request is let in, and
            // answered before the close.
            Standing::Fresh { .. } => self.lock().client.waiting(),
            _ => false,
        }
    }

    /// Bytes the server has not read yet may be in the socket, unseen while the server
    /// is busy: the kernel tells.
    fn ask_kernel(&self, fd: RawFd) {
        if kernel::unread(fd) {
            self.lock().client.sent(Instant::now());
        }
    }

    /// Whether a graceful close now could cut a request its client has begun to send:
    /// the first one, or (HTTP/1.1, whose close is no message the client reads first)
    /// the next one, its bytes read or on the way, before the server starts serving it.
    fn request_arriving(&self) -> bool {
        let u = self.lock();
        u.requests.is_empty() && (!u.served_one || (!u.h2 && u.client.arrived.is_some()))
    }

    /// Counts a request until dropped (also when the request is cancelled).
    fn begin(&self, body_done: bool, h2: bool) -> InFlight {
        let now = Instant::now();
        let progress = Arc::new(Progress {
            started: now,
            done: AtomicBool::new(body_done),
            waiting: AtomicBool::new(false),
        });
        let mut u = self.lock();
        u.requests.push(progress.clone());
        if !u.served_one {
            u.h2 = h2;
        }
        u.served_one = true;
        u.last = now;
        InFlight {
            activity: self.clone(),
            progress,
            ok: false,
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

    /// Completes once no request its client has begun is still on its way to the
    /// server ([`Activity::request_arriving`]). `fd` is its socket, open.
    async fn arrivals(&self, fd: RawFd) {
        loop {
            self.ask_kernel(fd);
            if !self.request_arriving() {
                return;
            }
            tokio::time::sleep(ARRIVAL_CHECK).await;
        }
    }
}

fn lock(use_: &Mutex<Use>) -> std::sync::MutexGuard<'_, Use> {
    use_.lock().expect("not poisoned")
}

struct InFlight {
    activity: Activity,
    progress: Arc<Progress>,
    /// Answered with a success status.
    ok: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut u = self.activity.lock();
        u.requests.retain(|r| !Arc::ptr_eq(r, &self.progress));
        u.last = now;
        if self.ok {
            u.last_ok = Some(now);
        }
        if u.requests.is_empty() {
            // What comes next is the next request.
            u.client.arrived = None;
        }
    }
}

/// A connection's TCP stream, as the server reads it: it records when the server waits
/// for bytes the client has not sent (a read found nothing, and the socket has not
/// become readable since), and when bytes come. Bytes in the socket that the server has
/// not read yet, because it is busy with other connections, do not count as waiting.
pub struct Watched {
    tcp: TcpStream,
    use_: Arc<Mutex<Use>>,
    /// The waker of the last read, and the one given in its place.
    waker: Option<(Waker, Waker)>,
}

/// Wakes a connection's task when its socket becomes readable, and records that the
/// client has sent something (bytes, or its end).
struct Readable {
    use_: Arc<Mutex<Use>>,
    task: Waker,
}

impl Wake for Readable {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        {
            let mut u = lock(&self.use_);
            if !u.client.reading {
                u.client.sent(Instant::now());
            }
        }
        self.task.wake_by_ref();
    }
}

impl Watched {
    fn new(tcp: TcpStream, activity: &Activity) -> Watched {
        Watched {
            tcp,
            use_: activity.use_.clone(),
            waker: None,
        }
    }

    fn waker(&mut self, task: &Waker) -> Waker {
        match &self.waker {
            Some((known, ours)) if known.will_wake(task) => ours.clone(),
            _ => {
                let ours = Waker::from(Arc::new(Readable {
                    use_: self.use_.clone(),
                    task: task.clone(),
                }));
                self.waker = Some((task.clone(), ours.clone()));
                ours
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let waker = self.waker(cx.waker());
        let before = buf.filled().len();
        lock(&self.use_).client.reading = true;
        let polled = Pin::new(&mut self.tcp).poll_read(&mut Context::from_waker(&waker), buf);
        let now = Instant::now();
        let mut u = lock(&self.use_);
        u.client.reading = false;
        match &polled {
            Poll::Pending => match &mut u.client.waiting {
                // (Woken for nothing: still waiting.)
                Some((_, until)) => *until = None,
                None => u.client.waiting = Some((now, None)),
            },
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if u.client.waiting.is_some() {
                    // The bytes may have waited for the server a while (it is slow to
                    // see a socket become readable when it is busy): the kernel knows
                    // when they came.
                    let ago = kernel::since_last_data(self.tcp.as_raw_fd());
                    let arrival = ago.and_then(|ago| now.checked_sub(ago));
                    u.client.read(arrival.unwrap_or(now));
                }
                u.client.arrived.get_or_insert(now);
            }
            Poll::Ready(_) => u.client.read(now),
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

mod accept;
mod kernel;

#[cfg(test)]
use accept::eviction_rank;
pub use accept::serve;

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn idle(since: Instant, recent: bool, h2: bool) -> Standing {
        Standing::Idle { since, recent, h2 }
    }

    #[test]
    fn stalled_connections_go_first_then_silent_ones_then_idle_ones() {
        let now = Instant::now();
        let ago = |ms| now - Duration::from_millis(ms);
        let fresh = |ms, waited| Standing::Fresh {
            accepted: ago(ms),
            waited: Duration::from_millis(waited),
        };
        let rank = |s| eviction_rank(s, now, Duration::from_millis(100), false);
        assert_eq!(rank(Standing::Busy), None);
        assert_eq!(rank(Standing::Waiting), None, "a body on its way");
        assert_eq!(rank(Standing::Stalled(ago(1))), Some((0, false, ago(1))));
        assert_eq!(rank(fresh(10, 10)), None, "a handshake under way");
        assert_eq!(
            rank(fresh(5_000, 50)),
            None,
            "a handshake slow because the server is"
        );
        assert_eq!(rank(fresh(200, 100)), Some((1, false, ago(200))));
        assert_eq!(
            rank(idle(ago(100), false, true)),
            None,
            "between two requests"
        );
        assert_eq!(
            rank(idle(ago(300), false, true)),
            Some((2, false, ago(300)))
        );
        assert!(rank(Standing::Stalled(ago(1))) < rank(fresh(5_000, 5_000)));
        assert!(rank(fresh(200, 100)) < rank(idle(ago(5_000), false, false)));
    }

    #[test]
    fn a_connection_in_recent_use_goes_last_and_not_while_others_may_stall() {
        let now = Instant::now();
        let ago = |ms| now - Duration::from_millis(ms);
        let grace = Duration::from_millis(100);
        let rank = |s, undecided| eviction_rank(s, now, grace, undecided);
        let (h1, h2) = (idle(ago(300), true, false), idle(ago(300), true, true));
        assert_eq!(rank(h2, true), None, "a flood connection may stall first");
        assert_eq!(rank(h1, true), None);
        assert_eq!(rank(h2, false), Some((3, false, ago(300))));
        assert!(rank(h2, false) < rank(h1, false), "a GOAWAY races nothing");
        assert!(rank(idle(ago(1_000), false, false), false) < rank(h2, false));
        assert_eq!(rank(idle(ago(100), true, true), false), None);
        assert!(Standing::Waiting.undecided());
        assert!(
            Standing::Fresh {
                accepted: now,
                waited: Duration::ZERO
            }
            .undecided()
        );
        assert!(!h2.undecided() && !Standing::Busy.undecided());
    }

    #[test]
    fn a_request_stalls_only_past_the_deadline_while_waiting_for_its_client() {
        let activity = Activity::new();
        assert!(matches!(
            activity.standing(Instant::now()),
            Standing::Fresh { .. }
        ));
        let request = activity.begin(false, true);
        let later = Instant::now() + BODY_DEADLINE;
        assert_eq!(activity.standing(later), Standing::Busy, "not waiting");
        request.progress.waiting.store(true, Ordering::Relaxed);
        assert_eq!(
            activity.standing(Instant::now()),
            Standing::Waiting,
            "in time"
        );
        assert!(matches!(activity.standing(later), Standing::Stalled(_)));
        let mut other = activity.begin(true, true);
        assert_eq!(activity.standing(later), Standing::Busy, "one busy request");
        other.ok = true;
        drop((other, request));
        assert!(matches!(
            activity.standing(later),
            Standing::Idle { recent: true, .. }
        ));
        let much_later = Instant::now() + KEEP_RECENT;
        assert!(matches!(
            activity.standing(much_later),
            Standing::Idle { recent: false, .. }
        ));
    }

    #[test]
    fn an_http1_request_on_its_way_keeps_its_connection_open() {
        let activity = Activity::new();
        drop(activity.begin(true, false));
        assert!(matches!(
            activity.standing(Instant::now()),
            Standing::Idle { h2: false, .. }
        ));
        assert!(!activity.request_arriving());
        activity.lock().client.sent(Instant::now());
        assert_eq!(activity.standing(Instant::now()), Standing::Busy);
        assert!(activity.request_arriving());
        let request = activity.begin(true, false);
        assert!(!activity.request_arriving(), "it has reached the server");
        drop(request);
        assert!(!activity.request_arriving(), "its bytes are spent");
        // A head begun and never ended stalls, as a body does.
        let start = Instant::now();
        activity.lock().client.sent(start);
        activity.lock().client.waiting = Some((start, None));
        assert_eq!(activity.standing(start), Standing::Busy);
        let later = start + BODY_DEADLINE;
        assert_eq!(activity.standing(later), Standing::Stalled(start));
        activity.lock().client.sent(later);
        assert_eq!(activity.standing(later), Standing::Busy, "it is sending");
    }

    /// The server's wait for a client counts while the client sends nothing, and stops
    /// when its bytes come, not when the server gets round to reading them.
    #[tokio::test]
    async fn only_the_time_the_server_waits_for_its_client_counts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let activity = Activity::new();
        let mut io = Watched::new(tcp, &activity);
        let waited = || activity.lock().client.waited(Instant::now());
        let waiting = || activity.lock().client.waiting();
        assert_eq!(waited(), Duration::ZERO, "the server has not read yet");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(100), io.read(&mut buf)).await;
        assert!(read.is_err() && waiting());
        assert!(waited() >= Duration::from_millis(90));
        client.write_all(b"GET").await.unwrap();
        let start = Instant::now();
        while waiting() {
            assert!(start.elapsed() < Duration::from_secs(5), "never readable");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(activity.lock().client.arrived.is_some(), "before it reads");
        let before = waited();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(waited(), before, "the bytes wait for the server");
        assert_eq!(io.read(&mut buf).await.unwrap(), 3);
        assert!(!waiting());
        assert!(waited() <= before, "{:?} > {before:?}", waited());
        assert!(waited() >= Duration::from_millis(90));
    }

    /// A wait ends when the bytes came, as the kernel tells, not when a server too busy
    /// to look saw the socket readable.
    #[test]
    fn a_wait_ends_when_the_bytes_came() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut client = Client {
            waiting: Some((at(0), None)),
            ..Client::default()
        };
        assert_eq!(client.waited(at(300)), Duration::from_millis(300));
        client.sent(at(400));
        assert!(!client.waiting() && client.arrived == Some(at(400)));
        assert_eq!(
            client.waited(at(900)),
            Duration::from_millis(400),
            "seen then"
        );
        client.read(at(100));
        assert_eq!(
            client.waited(at(900)),
            Duration::from_millis(100),
            "came then"
        );
        client.waiting = Some((at(1_000), None));
        client.read(at(1_050));
        assert_eq!(client.waited(at(2_000)), Duration::from_millis(150));
    }
}
