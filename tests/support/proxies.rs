//! Two small proxies that put a network in front of a real server: one that starts late
//! or delays every request, one that throttles (or answers 503) like AWS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{free_port, http};

/// A TCP forwarder to `target` that starts listening after `start_after` and delays
/// every client-to-server chunk by `delay` (so each HTTP request pays one delay).
pub struct TcpProxy {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub fn start(target: u16, start_after: Duration, delay: Duration) -> TcpProxy {
        let port = free_port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut n = n;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                                // what arrived meanwhile (a request body after its
                                // headers) belongs to the same request: no second delay
                                while n < buf.len() {
                                    match cr.try_read(&mut buf[n..]) {
                                        Ok(0) | Err(_) => break,
                                        Ok(m) => n += m,
                                    }
                                }
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        TcpProxy {
            port,
            connections,
            task,
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP proxy in front of moto that answers the first `throttle` requests with
/// `ThrottlingException`, as Secrets Manager does when a quota is hit.
pub struct ThrottleProxy {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// What [`ThrottleProxy`] answers in place of its first requests.
#[derive(Clone, Copy)]
pub enum Fault {
    /// AWS's `ThrottlingException` (HTTP 400 with the JSON error).
    Throttling,
    /// A load balancer's HTTP 503 page, which carries no AWS error code.
    Unavailable,
}

impl ThrottleProxy {
    pub async fn start(target: String, throttle: usize) -> ThrottleProxy {
        ThrottleProxy::start_with(target, throttle, Fault::Throttling).await
    }

    /// Answers the first `failures` requests with `fault`, forwards the rest.
    pub async fn start_with(target: String, failures: usize, fault: Fault) -> ThrottleProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let client = http();
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let count = count.clone();
            let client = client.clone();
            let target = target.clone();
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    return match fault {
                        Fault::Throttling => (
                            StatusCode::BAD_REQUEST,
                            [
                                ("x-amzn-errortype", "ThrottlingException"),
                                ("content-type", "application/x-amz-json-1.1"),
                            ],
                            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
                                .to_string(),
                        )
                            .into_response(),
                        Fault::Unavailable => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("content-type", "text/html")],
                            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
                                .to_string(),
                        )
                            .into_response(),
                    };
                }
                let mut req = client.request(method, format!("{target}{uri}")).body(body);
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        req = req.header(k, v);
                    }
                }
                let resp = req.send().await.unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let mut out_headers = HeaderMap::new();
                for (k, v) in resp.headers() {
                    if k != "content-length" && k != "transfer-encoding" {
                        out_headers.insert(k.clone(), v.clone());
                    }
                }
                let body = resp.bytes().await.unwrap();
                (status, out_headers, body).into_response()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ThrottleProxy {
            port,
            requests,
            task,
        }
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
