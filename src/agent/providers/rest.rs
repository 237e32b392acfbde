//! What the REST stores (Google Secret Manager, Azure Key Vault and their token
//! endpoints) share: one HTTP client, bounded bodies, and the classification of
//! transport failures and statuses. A few documented calls each, so plain reqwest
//! rather than two cloud SDKs (see docs/design.md).

use std::time::{Duration, Instant};

use super::AgentError;
use crate::logging::{Escaped, root_cause_line};

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
    let detail = std::error::Error::source(e)
        .map(root_cause_line)
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

/// The body of `resp`, at most [`MAX_BODY`] bytes.
pub async fn body(
    mut resp: reqwest::Response,
    what: &str,
    service: &str,
) -> Result<Vec<u8>, AgentError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_BODY {
                    return Err(AgentError::permanent(format!(
                        "{what}: {service} answered with more than {} KiB",
                        MAX_BODY / 1024
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport(&e, what, service)),
        }
    }
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
    let mut out = crate::logging::escape_invisible(&cut);
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
}
