//! Vault / OpenBao over its HTTP API: log in with the pod's projected service-account
//! token (`kubernetes` or `jwt` auth), logical reads that keep the lease (and, after a
//! refused one, the lookup of its mount, to explain KV v2's `data/`), and revocation of
//! the login token. A few endpoints, so plain reqwest rather than a client library.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::rest::{self, Unread};
use super::{AgentError, Fetched};
use contract::reference::{SecretRef, Version};
use contract::text::{Escaped, escape_invisible, root_cause_line};

mod kv2_hint;
use kv2_hint::{may_lack_data, read_refused};

/// The largest answer read from Vault (any endpoint: login, reads, renewals). What a KV
/// entry can hold is set by the storage backend: integrated storage (raft) refuses an
/// entry over `max_entry_size`, 1 MiB by default, and Consul a value over 512 KiB; the
/// answer to a read is that entry plus a few hundred bytes of envelope. 2 MiB is twice
/// the larger default, and the default 20 reads in flight at once, each cut at 2 MiB,
/// hold 40 MiB at most: under the init container's default 64 MiB limit even when every
/// answer is oversized. (Vault's `max_request_size`, 32 MiB by default, bounds what a
/// write may send, not what storage keeps.)
pub const MAX_ANSWER: usize = 2 << 20;

const SERVICE: &str = "Vault";

/// How to reach Vault and as whom (from the init container's env and args).
pub use contract::args::VaultSettings as Settings;

/// A Vault lease (dynamic secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub duration: u64,
    pub renewable: bool,
}

/// A logged-in Vault session.
pub struct Vault {
    settings: Settings,
    http: reqwest::Client,
    /// The login token: sent as `X-Vault-Token`, never logged.
    token: String,
    /// The token's lease as of the login or the last renewal.
    pub token_lease: TokenLease,
}

/// How long the login token lives, and whether it can be renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLease {
    pub ttl: u64,
    pub renewable: bool,
}

fn http_client(settings: &Settings) -> Result<reqwest::Client, AgentError> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(5));
    if let Some(pem) = &settings.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
            AgentError::permanent(format!("the Vault CA certificate does not parse: {e}"))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| AgentError::permanent(format!("cannot build the HTTP client: {e}")))
}

/// The `aud` claim of the projected token (its first, when a list), for a hint: not
/// verified, and not a secret (the webhook's config chose it).
fn token_audience(path: &std::path::Path) -> Option<String> {
    use base64::Engine as _;
    let raw = std::fs::read_to_string(path).ok()?;
    let payload = raw.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match &claims["aud"] {
        Value::String(a) => Some(a.clone()),
        Value::Array(list) => list.first()?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Read the projected token; a missing or malformed file is permanent.
pub fn read_token_file(path: &std::path::Path) -> Result<String, AgentError> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        AgentError::permanent(format!(
            "cannot read the service-account token {}: {e}",
            path.display()
        ))
    })?;
    let token = raw.trim();
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3
        || parts.iter().any(|p| p.is_empty())
        || token.chars().any(char::is_whitespace)
    {
        return Err(AgentError::permanent(format!(
            "the service-account token {} is not a JWT (expected three dot-separated parts)",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// A TLS verification failure: retrying cannot help, the trust setup must change.
fn untrusted(detail: &str, what: &str) -> Option<AgentError> {
    let lower = detail.to_lowercase();
    (lower.contains("certificate") || lower.contains("unknownissuer")).then(|| {
        AgentError::permanent(format!(
            "{what}: Vault's TLS certificate is not trusted ({detail}); give the webhook its CA in vault.ca_cert"
        ))
    })
}

/// Classify a reqwest transport error.
fn transport(e: &reqwest::Error, what: &str) -> AgentError {
    // Connection refused/reset, DNS, timeouts: the store may come back.
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
    if let Some(e) = untrusted(&detail, what) {
        return e;
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    AgentError::transient(format!("{what}: {cause}{detail}"))
}

/// Vault's error strings, on one line ("1 error occurred:\n\t* permission denied"),
/// escaped (they come from the network: no forged line, no terminal escape), the first
/// [`SHOWN_ERRORS`] of them, each cut at 200 characters.
fn one_line(errors: &[String]) -> String {
    let mut shown: Vec<String> = errors
        .iter()
        .take(SHOWN_ERRORS)
        .map(|e| {
            let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
            Escaped(e.trim_start_matches("1 error occurred: * ")).to_string()
        })
        .collect();
    if errors.len() > SHOWN_ERRORS {
        shown.push(format!("and {} more", errors.len() - SHOWN_ERRORS));
    }
    shown.join("; ")
}

/// How many of Vault's error strings a message quotes.
const SHOWN_ERRORS: usize = 3;

fn status_error(code: u16, errors: &[String], what: &str, identity: &str) -> AgentError {
    let detail = if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", one_line(errors))
    };
    match code {
        429 | 412 | 500..=599 => AgentError::transient(format!(
            "{what}: Vault answered HTTP {code} to {identity}{detail}"
        )),
        403 => AgentError::permanent(format!(
            "{what}: permission denied (HTTP 403) for {identity}{detail}; check the role's policies"
        )),
        404 => AgentError::permanent(format!("{what}: not found (HTTP 404){detail}")),
        _ => AgentError::permanent(format!(
            "{what}: Vault refused the request (HTTP {code}) for {identity}{detail}"
        )),
    }
}

/// A refused login is about the identity, whatever the 4xx status.
fn login_refused(code: u16, errors: &[String], settings: &Settings) -> AgentError {
    let what = format!("login to {}", settings.identity());
    if (400..500).contains(&code) && code != 429 && code != 412 {
        let detail = if errors.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(errors))
        };
        let audience = token_audience(&settings.token_file).map_or_else(
            || "the projected token's audience".to_string(),
            |a| format!("audience `{}`", Escaped(&a)),
        );
        AgentError::permanent(format!(
            "{what} refused (HTTP {code}){detail}; check that the auth mount `auth/{}` exists and its role `{}` is bound to this service account and {audience} (the webhook's vault.audience, or this address's own in vault.allowed_addresses)",
            settings.auth_path, settings.role
        ))
    } else {
        status_error(code, errors, &what, &settings.identity())
    }
}

#[derive(Deserialize)]
struct ReadResponse {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LoginResponse {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LeaseAnswer {
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// One answer of Vault: its status and body, read whole (at most [`MAX_ANSWER`]).
struct Answer {
    code: u16,
    body: Vec<u8>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Vault's `errors` strings of a refusal (none when the body is not Vault's).
    fn errors(&self) -> Vec<String> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .unwrap_or_default()
            .errors
    }
}

impl Vault {
    fn url(settings: &Settings, path: &str) -> String {
        format!("{}/v1/{path}", settings.address.trim_end_matches('/'))
    }

    /// Send a request with Vault's headers; a transport failure is classified for `what`.
    async fn send(
        settings: &Settings,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Answer, AgentError> {
        let mut req = req.header("X-Vault-Request", "true");
        if let Some(ns) = &settings.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = req.send().await.map_err(|e| transport(&e, what))?;
        let code = resp.status().as_u16();
        let body = rest::read_bounded(resp, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                Unread::Transport(e) => transport(&e, what),
                Unread::TooLarge(declared) => rest::too_large(what, SERVICE, MAX_ANSWER, declared),
            })?;
        Ok(Answer { code, body })
    }

    /// Log in with the projected token (`POST auth/<path>/login` with `role` and `jwt`,
    /// the same body for the kubernetes and the jwt method).
    pub async fn login(settings: Settings) -> Result<Vault, AgentError> {
        let jwt = read_token_file(&settings.token_file)?;
        let http = http_client(&settings)?;
        let url = Self::url(&settings, &format!("auth/{}/login", settings.auth_path));
        reqwest::Url::parse(&url).map_err(|e| {
            AgentError::permanent(format!(
                "the Vault address `{}` is not usable: {e}",
                settings.address
            ))
        })?;
        let what = format!("login to {}", settings.identity());
        let body = serde_json::json!({"role": settings.role, "jwt": jwt});
        let answer = Self::send(&settings, http.post(&url).json(&body), &what).await?;
        if !answer.ok() {
            return Err(login_refused(answer.code, &answer.errors(), &settings));
        }
        // A success status with a body that is not a login answer: not JSON, or without
        // auth.client_token. Something other than Vault's auth mount answered, and will
        // again, so it fails at once. Never the body or the parser's message: both can
        // quote the token.
        let auth = serde_json::from_slice::<LoginResponse>(&answer.body)
            .map_err(|_| {
                AgentError::permanent(format!(
                    "{what}: the answer is not a Vault login (not JSON, or no auth.client_token in it); check that {} is Vault or OpenBao itself and that auth/{} is a {} auth mount with role `{}`",
                    settings.address, settings.auth_path, settings.auth_method, settings.role
                ))
            })?
            .auth;
        tracing::info!(identity = %settings.identity(), ttl_seconds = auth.lease_duration, "logged in to Vault");
        Ok(Vault {
            settings,
            http,
            token: auth.client_token,
            token_lease: TokenLease {
                ttl: auth.lease_duration,
                renewable: auth.renewable,
            },
        })
    }

    pub fn identity(&self) -> String {
        self.settings.identity()
    }

    /// One logical read of a location (the reference without `#key`).
    pub async fn read(&self, r: &SecretRef) -> Result<(Fetched, Option<Lease>), AgentError> {
        self.read_written(r, &[]).await
    }

    /// [`Vault::read`], where `written` are the references of the plan that name this
    /// location (with their `#key`s): a KV v2 path written without `data/` is shown
    /// corrected as they were written.
    pub async fn read_written(
        &self,
        r: &SecretRef,
        written: &[SecretRef],
    ) -> Result<(Fetched, Option<Lease>), AgentError> {
        let what = r.location().to_string();
        let mut url = Self::url(&self.settings, &r.path);
        if let Some(Version::Number(n)) = &r.version {
            url.push_str(&format!("?version={n}"));
        }
        let req = self.http.get(&url).header("X-Vault-Token", &self.token);
        let answer = Self::send(&self.settings, req, &what).await?;
        if !answer.ok() {
            let errors = answer.errors();
            let hint = match answer.code {
                403 | 404 if may_lack_data(&r.path) => self.kv2_hint(r, written).await,
                _ => None,
            };
            return Err(match hint {
                Some(hint) => read_refused(answer.code, &errors, &what, &self.identity(), &hint),
                None => status_error(answer.code, &errors, &what, &self.identity()),
            });
        }
        let parsed: ReadResponse = serde_json::from_slice(&answer.body).map_err(|_| {
            AgentError::permanent(format!(
                "{what}: Vault's answer is not a secret (unexpected JSON)"
            ))
        })?;
        let data = match parsed.data {
            Some(Value::Object(map)) => map,
            _ => {
                return Err(AgentError::permanent(format!(
                    "{what}: Vault returned no data at this path"
                )));
            }
        };
        let map = unwrap_kv2(data).map_err(|m| AgentError::permanent(format!("{what}: {m}")))?;
        let lease = (!parsed.lease_id.is_empty()).then_some(Lease {
            id: parsed.lease_id,
            duration: parsed.lease_duration,
            renewable: parsed.renewable,
        });
        Ok((Fetched::Map(map), lease))
    }

    /// A call with the token whose answer is JSON `T` (or nothing, for `T = ()`).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Answer, AgentError> {
        let url = Self::url(&self.settings, path);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer = Self::send(&self.settings, req, what).await?;
        if answer.ok() {
            Ok(answer)
        } else {
            Err(status_error(
                answer.code,
                &answer.errors(),
                what,
                &self.identity(),
            ))
        }
    }

    /// Renew the login token (`auth/token/renew-self`, in Vault's default policy). The
    /// answer's TTL is shorter than asked for when the token nears its max TTL.
    pub async fn renew_self(&mut self) -> Result<TokenLease, AgentError> {
        let what = format!("renew the token of {}", self.identity());
        let answer = self
            .call(reqwest::Method::POST, "auth/token/renew-self", None, &what)
            .await?;
        let auth = serde_json::from_slice::<LoginResponse>(&answer.body)
            .map_err(|_| AgentError::permanent(format!("{what}: the answer has no auth")))?
            .auth;
        self.token_lease = TokenLease {
            ttl: auth.lease_duration,
            renewable: auth.renewable,
        };
        Ok(self.token_lease)
    }

    /// Renew a lease (`sys/leases/renew`, in Vault's default policy); the answer says
    /// how long it now lives, less than asked for near its max TTL.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<Lease, AgentError> {
        let what = "renew a lease".to_string();
        let body = serde_json::json!({"lease_id": lease.id, "increment": lease.duration});
        let answer = self
            .call(reqwest::Method::PUT, "sys/leases/renew", Some(body), &what)
            .await?;
        let renewed: LeaseAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| AgentError::permanent(format!("{what}: the answer has no lease")))?;
        Ok(Lease {
            id: renewed.lease_id,
            duration: renewed.lease_duration,
            renewable: renewed.renewable,
        })
    }

    /// Revoke one lease (`sys/leases/revoke`; the policy must allow it, the default one
    /// does not).
    pub async fn revoke_lease(&self, lease: &Lease) -> Result<(), AgentError> {
        let body = serde_json::json!({"lease_id": lease.id});
        self.call(
            reqwest::Method::PUT,
            "sys/leases/revoke",
            Some(body),
            "revoke a lease",
        )
        .await
        .map(|_| ())
    }

    /// Revoke the login token (and with it any leases it created).
    pub async fn revoke_self(&self) -> Result<(), AgentError> {
        let what = format!("revoke the token of {}", self.identity());
        let url = Self::url(&self.settings, "auth/token/revoke-self");
        let req = self.http.post(&url).header("X-Vault-Token", &self.token);
        let answer = Self::send(&self.settings, req, &what).await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(status_error(
                answer.code,
                &answer.errors(),
                &what,
                &self.identity(),
            ))
        }
    }
}

/// KV v2 wraps the key/value map as `{data: {...}, metadata: {version, ...}}`;
/// KV v1 and other engines return the map itself.
pub fn unwrap_kv2(data: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let is_kv2 = data.len() == 2
        && data.contains_key("data")
        && data
            .get("metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("version") && m.contains_key("created_time"));
    if !is_kv2 {
        return Ok(data);
    }
    let mut data = data;
    match data.remove("data") {
        Some(Value::Object(inner)) => Ok(inner),
        _ => Err("this KV v2 version is deleted or destroyed".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::auth::AuthMethod;
    use serde_json::json;

    #[test]
    fn detects_kv2_and_keeps_kv1() {
        let v2 = json!({"data": {"password": "x"}, "metadata": {"version": 3, "created_time": "2026-01-01T00:00:00Z"}});
        let Value::Object(v2) = v2 else { panic!() };
        assert_eq!(unwrap_kv2(v2).unwrap()["password"], "x");
        let Value::Object(v1) = json!({"data": "a field called data", "password": "x"}) else {
            panic!()
        };
        assert_eq!(unwrap_kv2(v1.clone()).unwrap(), v1);
        let Value::Object(deleted) = json!({"data": null, "metadata": {"version": 2, "created_time": "t", "deletion_time": "t"}})
        else {
            panic!()
        };
        assert!(unwrap_kv2(deleted).unwrap_err().contains("deleted"));
    }

    #[test]
    fn token_file_must_be_a_jwt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        assert!(
            read_token_file(&p)
                .unwrap_err()
                .message
                .contains("cannot read")
        );
        std::fs::write(&p, "not-a-jwt").unwrap();
        let e = read_token_file(&p).unwrap_err();
        assert_eq!(e.kind, super::super::Kind::Permanent);
        assert!(e.message.contains("not a JWT"));
        std::fs::write(&p, "a.b.c\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "a.b.c");
    }

    /// The login hint names the audience the projected token really carries.
    #[test]
    fn the_hint_reads_the_tokens_audience() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let jwt = |claims: Value| {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("e30.{}.sig\n", b64.encode(claims.to_string()))
        };
        std::fs::write(&p, jwt(json!({"aud": ["vault-eu"], "sub": "x"}))).unwrap();
        assert_eq!(token_audience(&p).as_deref(), Some("vault-eu"));
        std::fs::write(&p, jwt(json!({"aud": "vault"}))).unwrap();
        assert_eq!(token_audience(&p).as_deref(), Some("vault"));
        std::fs::write(&p, "a.b.c").unwrap();
        assert_eq!(token_audience(&p), None);
        let settings = Settings {
            address: "http://127.0.0.1:1".into(),
            role: "app".into(),
            auth_path: "kubernetes".into(),
            auth_method: AuthMethod::Kubernetes,
            token_file: p.clone(),
            namespace: None,
            ca_pem: None,
            timeout: Duration::from_secs(5),
        };
        std::fs::write(&p, jwt(json!({"aud": ["vault-eu"]}))).unwrap();
        let e = login_refused(403, &[], &settings);
        assert!(e.message.contains("audience `vault-eu`"), "{}", e.message);
    }

    /// A success status whose body is not a login answer (a proxy's page, another
    /// service, a token-less answer) fails at once, naming the mount and role, never
    /// quoting the body.
    #[tokio::test]
    async fn a_login_answer_that_is_not_a_login_fails_at_once() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "a.b.c").unwrap();
        for body in [
            "<html><body>portal body-canary-1</body></html>",
            r#"{"data": {"client_token": "body-canary-2"}}"#,
            r#"{"auth": {"client_token": 7, "accessor": "body-canary-3"}}"#,
            r#"{"request_id": "", "lease_id": "", "lease_duration": 0, "renewable": false, "auth": null}"#,
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let app = axum::Router::new().fallback(move || async move { body });
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let settings = Settings {
                address: format!("http://127.0.0.1:{port}"),
                role: "app".into(),
                auth_path: "kubernetes-prod".into(),
                auth_method: AuthMethod::Kubernetes,
                token_file: token_file.clone(),
                namespace: None,
                ca_pem: None,
                timeout: Duration::from_secs(5),
            };
            let Err(e) = Vault::login(settings).await else {
                panic!("{body}: logged in")
            };
            server.abort();
            assert!(!e.is_transient(), "{body}: {e}");
            assert!(
                e.message.contains("not a Vault login")
                    && e.message.contains("auth/kubernetes-prod")
                    && e.message.contains("role `app`"),
                "{body}: {e}"
            );
            assert!(!e.message.contains("canary"), "{e}");
        }
    }

    /// A Vault that logs in anyone (`auth/jwt/login`), refuses every read with
    /// `read_status` and answers `sys/internal/ui/mounts/…` with `mounts`, counting those
    /// lookups; and a session logged in to it.
    async fn refusing_vault(
        read_status: u16,
        mounts: (u16, String),
    ) -> (
        Vault,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        tempfile::TempDir,
    ) {
        use axum::http::{StatusCode, Uri};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = lookups.clone();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let (counted, mounts) = (counted.clone(), mounts.clone());
            async move {
                let path = uri.path();
                let (code, body) = if path == "/v1/auth/jwt/login" {
                    (
                        200,
                        r#"{"auth": {"client_token": "t", "lease_duration": 60}}"#.into(),
                    )
                } else if path.starts_with("/v1/sys/internal/ui/mounts/") {
                    counted.fetch_add(1, Ordering::SeqCst);
                    mounts
                } else if read_status == 403 {
                    (
                        403,
                        r#"{"errors": ["1 error occurred:\n\t* permission denied\n\n"]}"#.into(),
                    )
                } else {
                    (read_status, r#"{"errors": []}"#.into())
                };
                (StatusCode::from_u16(code).unwrap(), body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "a.b.c").unwrap();
        let vault = Vault::login(Settings {
            address: format!("http://127.0.0.1:{port}"),
            role: "app".into(),
            auth_path: "jwt".into(),
            auth_method: AuthMethod::Jwt,
            token_file,
            namespace: None,
            ca_pem: None,
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        (vault, lookups, dir)
    }

    fn mount_answer(path: &str, kind: &str, version: Value) -> (u16, String) {
        let answer = json!({"data": {"path": path, "type": kind, "options": {"version": version}}});
        (200, answer.to_string())
    }

    async fn refused_read(
        read_status: u16,
        mounts: (u16, String),
        reference: &str,
        written: &[&str],
    ) -> (AgentError, usize) {
        use contract::reference::parse;
        let (vault, lookups, _dir) = refusing_vault(read_status, mounts).await;
        let written: Vec<SecretRef> = written.iter().map(|w| parse(w).unwrap()).collect();
        let r = parse(reference).unwrap();
        let Err(e) = vault.read_written(&r, &written).await else {
            panic!("{reference}: read")
        };
        (e, lookups.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A KV v2 mount (as Vault says, version as a string or a number, nested or not):
    /// the corrected references, keys and version kept, in place of the policy advice.
    #[tokio::test]
    async fn a_kv2_mount_without_data_gets_the_corrected_references() {
        let kv2 = mount_answer("secret/", "kv", json!("2"));
        let (e, lookups) = refused_read(
            403,
            kv2.clone(),
            "vault:secret/team-a/db?version=3",
            &["vault:secret/team-a/db?version=3#password"],
        )
        .await;
        assert_eq!(lookups, 1);
        assert_eq!(e.kind, super::super::Kind::Permanent);
        assert!(
            e.message.starts_with("vault:secret/team-a/db?version=3: permission denied (HTTP 403) for vault role `app` via auth/jwt (jwt) at http://127.0.0.1:")
                && e.message.ends_with(": permission denied; `secret/` is a KV v2 mount: its secrets are read at `secret/data/team-a/db`; write the reference as `vault:secret/data/team-a/db?version=3#password`"),
            "{e}"
        );
        // Without the plan's references: the location itself.
        let (e, _) = refused_read(404, kv2.clone(), "vault:secret/a", &[]).await;
        assert_eq!(
            e.message,
            "vault:secret/a: not found (HTTP 404); `secret/` is a KV v2 mount: its secrets are read at `secret/data/a`; write the reference as `vault:secret/data/a`"
        );
        // Several references, the first three shown.
        let refs = ["#a", "#b", "#c", "#d", ""].map(|k| format!("vault:secret/x/y{k}"));
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let (e, _) = refused_read(404, kv2, "vault:secret/x/y", &refs).await;
        assert!(
            e.message.ends_with("write the references as `vault:secret/data/x/y`, `vault:secret/data/x/y#a`, `vault:secret/data/x/y#b` and 2 more"),
            "{e}"
        );
        // A nested mount, its version as a number.
        let nested = mount_answer("team/kv/", "kv", json!(2));
        let (e, _) = refused_read(403, nested, "vault:team/kv/db#k", &["vault:team/kv/db#k"]).await;
        assert!(
            e.message.ends_with("; `team/kv/` is a KV v2 mount: its secrets are read at `team/kv/data/db`; write the reference as `vault:team/kv/data/db#k`"),
            "{e}"
        );
    }

    /// No hint for KV v1, another engine, a path that has `data/` after a nested mount,
    /// or an answer about another path; none looked up for a path with `data/` after its
    /// first segment, nor for other statuses.
    #[tokio::test]
    async fn other_mounts_and_paths_get_no_hint() {
        let plain_403 = "; check the role's policies";
        for (mounts, reference) in [
            (
                mount_answer("secret/", "kv", json!("1")),
                "vault:secret/a/b",
            ),
            (
                mount_answer("secret/", "kv", Value::Null),
                "vault:secret/a/b",
            ),
            (
                mount_answer("database/", "database", Value::Null),
                "vault:database/creds/app",
            ),
            (
                mount_answer("team/kv/", "kv", json!("2")),
                "vault:team/kv/data/db",
            ),
            (
                mount_answer("team/kv/", "kv", json!("2")),
                "vault:team/kv/metadata/db",
            ),
            (mount_answer("apps/", "kv", json!("2")), "vault:team/a/b"),
        ] {
            let (e, lookups) = refused_read(403, mounts, reference, &[]).await;
            assert_eq!(lookups, 1, "{reference}");
            assert!(e.message.ends_with(plain_403), "{reference}: {e}");
            assert!(!e.message.contains("KV v2"), "{e}");
        }
        let kv2 = mount_answer("secret/", "kv", json!("2"));
        for reference in [
            "vault:secret/data/a",
            "vault:secret/metadata/a",
            "vault:secret",
        ] {
            let (e, lookups) = refused_read(403, kv2.clone(), reference, &[]).await;
            assert_eq!(lookups, 0, "{reference}");
            assert!(e.message.ends_with(plain_403), "{reference}: {e}");
        }
        for status in [400, 405, 503] {
            let (e, lookups) = refused_read(status, kv2.clone(), "vault:secret/a/b", &[]).await;
            assert_eq!(lookups, 0, "{status}");
            assert!(!e.message.contains("KV v2"), "{e}");
        }
    }

    /// When the lookup is refused, fails or answers something else, the read's own error
    /// stands (permanent, whatever the lookup's failure) with a hedged hint when the
    /// first segment is named like a KV mount, and none otherwise.
    #[tokio::test]
    async fn without_the_mount_the_hint_goes_by_the_shape() {
        let refused = (
            403,
            r#"{"errors": ["preflight capability check returned 403"]}"#.to_string(),
        );
        let huge = (
            200,
            format!("{{\"data\": {{\"path\": \"{}\"}}}}", "x".repeat(MAX_ANSWER)),
        );
        for mounts in [
            refused.clone(),
            (503, String::new()),
            (429, String::new()),
            (200, "<html>not json</html>".to_string()),
            (200, r#"{"data": null}"#.to_string()),
            huge,
            // about another path, or not up to a `/`: not trusted
            mount_answer("other/", "kv", json!("2")),
            mount_answer("secre", "kv", json!("2")),
            mount_answer("secret/\u{1b}[31m", "kv", json!("2")),
        ] {
            let shown = mounts.1.chars().take(60).collect::<String>();
            let (e, lookups) = refused_read(
                403,
                mounts.clone(),
                "vault:secret/team-a/db",
                &["vault:secret/team-a/db#password"],
            )
            .await;
            assert_eq!(lookups, 1);
            assert_eq!(e.kind, super::super::Kind::Permanent, "{shown}: {e}");
            assert!(
                e.message.ends_with(": permission denied; check the role's policies; if `secret/` is a KV v2 mount, write the reference as `vault:secret/data/team-a/db#password`"),
                "{shown}: {e}"
            );
            assert!(!e.message.contains('\u{1b}'), "{e}");
            let (e, _) = refused_read(404, mounts, "vault:kv/app", &[]).await;
            assert_eq!(e.kind, super::super::Kind::Permanent, "{shown}: {e}");
            assert_eq!(
                e.message,
                "vault:kv/app: not found (HTTP 404); if `kv/` is a KV v2 mount, write the reference as `vault:kv/data/app`"
            );
        }
        let (e, _) = refused_read(403, refused, "vault:team-kv/app/db", &[]).await;
        assert!(e.message.ends_with("; check the role's policies"), "{e}");
        assert!(!e.message.contains("KV v2"), "{e}");
    }

    #[test]
    fn classifies_statuses() {
        assert!(status_error(503, &[], "x", "id").is_transient());
        assert!(status_error(429, &[], "x", "id").is_transient());
        assert!(!status_error(403, &[], "x", "id").is_transient());
        assert!(
            status_error(403, &["permission denied".into()], "x", "vault role `a`")
                .message
                .contains("vault role `a`")
        );
        assert!(!status_error(404, &[], "x", "id").is_transient());
    }

    /// Vault's `errors` are one line, escaped and cut: a refusal cannot forge a log line
    /// or send a terminal escape.
    #[test]
    fn vault_errors_are_escaped_and_cut() {
        let forged = "denied\n2026-01-01T00:00:00Z INFO forged line\u{1b}[31m".to_string();
        let many: Vec<String> = std::iter::once(forged)
            .chain((0..9).map(|i| format!("e{i}")))
            .collect();
        let e = status_error(403, &many, "vault:secret/x", "vault role `a`");
        assert!(
            !e.message.contains('\n') && !e.message.contains('\u{1b}'),
            "{e}"
        );
        assert!(e.message.contains("\\u{1b}[31m; e0; e1; and 7 more"), "{e}");
        assert_eq!(
            one_line(&["1 error occurred:\n\t* permission denied\n\n".into()]),
            "permission denied"
        );
    }
}
