//! What the REST stores (Google Secret Manager, Azure Key Vault and their token
//! endpoints) share: one HTTP client, bounded bodies, and the classification of
//! transport failures and statuses. A few documented calls each, so plain reqwest
//! rather than two cloud SDKs (see docs/design.md).

use std::time::{Duration, Instant};

use super::AgentError;
use contract::text::{Escaped, escape_invisible, root_cause_line};

/// The largest body read from a store: Secret Manager payloads are at most 64 KiB and
/// Key Vault secrets 25 KiB, so anything bigger is not an answer.
pub const MAX_BODY: usize = 1 << 20;

pub fn client(timeout: Duration) -> Result<reqwest::Client, AgentError> {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| AgentError::permanent(format!("cannot build the HTTP client: {e}")))
}

/// A failure to reach `service`: the store may come back, unless TLS is not trusted.
pub fn transport(e: &reqwest::Error, what: &str, service: &str) -> AgentError {
    let cause = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // Escaped: a TLS error can quote the names of the certificate the server sent.
    let detail = std::error::Error::source(e)
        .map(|c| escape_invisible(&root_cause_line(c)))
        .unwrap_or_default();
    let lower = detail.to_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        return AgentError::permanent(format!(
            "{what}: the TLS certificate of {service} is not trusted ({detail})"
        ));
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    AgentError::transient(format!("{what}: cannot reach {service}: {cause}{detail}"))
}

/// Whether an HTTP status is worth retrying: throttling, timeouts, server errors.
pub fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

/// Why a body was not read whole.
pub enum Unread {
    /// The connection failed while reading.
    Transport(reqwest::Error),
    /// The body is larger than the bound: its declared `Content-Length`, or `None` when
    /// it did not declare one and more than the bound arrived.
    TooLarge(Option<u64>),
}

/// The body of `resp`, at most `limit` bytes. A larger declared `Content-Length` is
/// refused before a byte is read; a body without one (chunked) is read a chunk at a
/// time and dropped once it passes `limit`, so at most `limit` plus one chunk is held.
pub async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Unread> {
    let declared = resp.content_length();
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return Err(Unread::TooLarge(Some(n)));
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(Unread::TooLarge(None));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(Unread::Transport(e)),
        }
    }
}

/// A size for messages: "4 MiB", "512 KiB", "100 bytes".
pub fn size_text(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// An answer larger than `limit`: permanent (the store would send it again), naming
/// what was asked and the bound, never quoting the body.
pub fn too_large(what: &str, service: &str, limit: usize, declared: Option<u64>) -> AgentError {
    let bound = size_text(limit);
    AgentError::permanent(match declared {
        Some(n) => format!(
            "{what}: {service} answered with {n} bytes, more than the {bound} the agent reads from it; not read"
        ),
        None => format!(
            "{what}: {service} answered with more than the {bound} the agent reads from it; stopped reading"
        ),
    })
}

/// The body of `resp`, at most [`MAX_BODY`] bytes.
pub async fn body(
    resp: reqwest::Response,
    what: &str,
    service: &str,
) -> Result<Vec<u8>, AgentError> {
    read_bounded(resp, MAX_BODY).await.map_err(|e| match e {
        Unread::Transport(e) => transport(&e, what, service),
        Unread::TooLarge(declared) => too_large(what, service, MAX_BODY, declared),
    })
}

/// One answer of a REST store: its status, headers and (bounded) body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Send `req` to `service` and read the answer, whatever its status; a failure to
/// reach the service is classified by [`transport`].
pub async fn send(
    req: reqwest::RequestBuilder,
    what: &str,
    service: &str,
) -> Result<Answer, AgentError> {
    let resp = req.send().await.map_err(|e| transport(&e, what, service))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = body(resp, what, service).await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A 2xx body as the documented JSON `T`; the parser's error is not quoted (it could
/// quote a value).
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, AgentError> {
    serde_json::from_slice(body).map_err(|_| {
        AgentError::permanent(format!("{what}: the answer is not the documented JSON"))
    })
}

/// An OAuth 2.0 error (RFC 6749 5.2), as Google's STS and the Microsoft identity
/// platform send it: `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(serde::Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

/// A short, escaped quote of an error text a service sent: error texts name resources
/// and identities, never values, but they come from the network.
pub fn quote(text: &str) -> String {
    Escaped(text.trim()).to_string()
}

/// [`quote`] cut at `max` characters instead of 200: for the identity platform's
/// AADSTS lines, whose issuer and subject come after a long preamble.
pub fn quote_long(text: &str, max: usize) -> String {
    let text = text.trim();
    let cut: String = text.chars().take(max).collect();
    let mut out = escape_invisible(&cut);
    if cut.len() < text.len() {
        out.push_str(&format!("…({} bytes)", text.len()));
    }
    out
}

/// A cached access token and when to stop using it.
pub struct Cached {
    pub token: String,
    pub until: Instant,
}

impl Cached {
    /// A token valid for `expires_in` seconds, used until 5 minutes before it expires
    /// (or half its life, when that is shorter).
    pub fn new(token: String, expires_in: u64) -> Cached {
        let margin = (expires_in / 2).min(300);
        Cached {
            token,
            until: Instant::now() + Duration::from_secs(expires_in.saturating_sub(margin)),
        }
    }

    pub fn fresh(&self) -> bool {
        Instant::now() < self.until
    }
}

/// Read the pod's projected token again: the kubelet rotates it.
pub fn projected_token(path: &str) -> Result<String, AgentError> {
    super::vault::read_token_file(std::path::Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_token_margins() {
        assert!(transient_status(429) && transient_status(503) && transient_status(408));
        assert!(!transient_status(403) && !transient_status(404) && !transient_status(400));
        let c = Cached::new("t".into(), 3600);
        assert!(c.fresh());
        assert!(c.until > Instant::now() + Duration::from_secs(3200));
        assert!(!Cached::new("t".into(), 0).fresh());
        assert_eq!(quote(" a\nb "), "a\\nb");
        let long = format!(
            "AADSTS70021: {} Assertion Subject: 'system:serviceaccount:a:b'",
            "x".repeat(250)
        );
        assert!(quote_long(&long, 500).ends_with("'system:serviceaccount:a:b'"));
        assert!(quote_long(&long, 20).ends_with(&format!("…({} bytes)", long.len())));
    }

    #[test]
    fn sizes_and_oversized_answers_name_the_bound() {
        assert_eq!(size_text(2 << 20), "2 MiB");
        assert_eq!(size_text(512 << 10), "512 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
        let e = too_large("vault:secret/data/x", "Vault", 2 << 20, Some(314_572_800));
        assert!(!e.is_transient());
        assert_eq!(
            e.message,
            "vault:secret/data/x: Vault answered with 314572800 bytes, more than the 2 MiB the agent reads from it; not read"
        );
        assert!(
            too_large("x", "S", 1 << 20, None)
                .message
                .contains("more than the 1 MiB")
        );
    }

    /// A declared length over the bound is refused unread; a chunked body is cut once
    /// it passes the bound; one within it is read whole.
    #[tokio::test]
    async fn bodies_are_read_up_to_the_bound() {
        use axum::body::Body;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
            let chunks = || {
                futures::stream::iter(
                    (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 16 << 10])),
                )
            };
            match req.uri().path() {
                "/declared" => axum::http::Response::builder()
                    .header("content-length", (64 * (16 << 10)).to_string())
                    .body(Body::from_stream(chunks()))
                    .unwrap(),
                "/chunked" => axum::http::Response::new(Body::from_stream(chunks())),
                _ => axum::http::Response::new(Body::from("small")),
            }
        });
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = client(Duration::from_secs(5)).unwrap();
        let get = |path: &str| http.get(format!("{url}{path}")).send();
        let limit = 256 << 10;
        match read_bounded(get("/declared").await.unwrap(), limit).await {
            Err(Unread::TooLarge(Some(n))) => assert_eq!(n, 1 << 20),
            _ => panic!("a declared 1 MiB body read with a 256 KiB bound"),
        }
        assert!(matches!(
            read_bounded(get("/chunked").await.unwrap(), limit).await,
            Err(Unread::TooLarge(None))
        ));
        let whole = read_bounded(get("/chunked").await.unwrap(), 1 << 20).await;
        assert_eq!(whole.ok().map(|b| b.len()), Some(1 << 20));
        let small = read_bounded(get("/small").await.unwrap(), 5).await;
        assert_eq!(small.ok().as_deref(), Some(&b"small"[..]));
        server.abort();
    }
}
