//! The HTTPS listener of the webhook: TLS (rustls, the reloadable config), HTTP/1.1 and
//! HTTP/2, served by the bounded accept loop of [`runtime::listen`] (timeouts, the
//! connection cap, which connections close to make room, stalled requests, shutdown).
//! Here: the HTTP settings of `/mutate` and what one connection may make the server
//! buffer.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use runtime::listen::{self, Bounds, Handshake, Watched};

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

/// Open connections kept: beyond it, a new connection closes a stalled, silent or idle
/// one ([`runtime::listen`]). The API server keeps one or a few per webhook replica.
pub const MAX_CONNECTIONS: usize = 128;
/// Requests at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 16;
/// HTTP/2 flow-control window of one request. A body is read on only while the
/// webhook's body budget has room for it ([`crate::body`]), so waiting requests
/// hold their next bytes unread. The connection's window is one stream's more than all
/// of its streams' together: unread requests can never use it up and stall the ones
/// being read. It also bounds what one connection can make the server buffer.
const STREAM_WINDOW: u32 = 16 * 1024;
/// HTTP/1.1 read buffer: a review's headers are small, its body is read on demand.
const H1_BUFFER: usize = 64 * 1024;

/// The TLS handshake, with the reloadable server config of the moment.
#[derive(Clone)]
struct Tls(RustlsConfig);

impl Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<Watched>;

    fn handshake(&self, tcp: Watched) -> impl Future<Output = std::io::Result<Self::Io>> + Send {
        tokio_rustls::TlsAcceptor::from(self.0.get_inner()).accept(tcp)
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
    let bounds = Bounds {
        max_connections: MAX_CONNECTIONS,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        shutdown_grace: limits.shutdown_grace,
        // As long as a body may keep the server waiting: the client's handshake and
        // first request take a few round trips.
        fresh_grace: listen::BODY_DEADLINE,
    };
    listen::serve(listener, Tls(tls), http, &bounds, router, shutdown).await;
    Ok(())
}
