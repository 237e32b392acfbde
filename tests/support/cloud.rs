//! Google Cloud and Azure, which no emulator here serves faithfully (the PyPI packages
//! `gcplocal` and `amber-cloud` were checked: the first answers `:access` with a stub
//! and checks no token, the second has no Key Vault HTTP API; see docs/design.md, "What is tested where").
//! So these test servers follow the documented wire protocols (paths, headers, bodies,
//! error shapes) and refuse what the real services refuse: a projected token with the
//! wrong audience, an expired or unsigned one, an identity without a federated
//! credential, and an identity without permission on the secret.
//!
//! - Google: STS token exchange (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>),
//!   `generateAccessToken` (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>),
//!   the metadata server's token (<https://cloud.google.com/compute/docs/metadata/querying-metadata>)
//!   and Secret Manager's `:access` (<https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access>).
//! - Azure: the identity platform's client-credentials grant with a federated assertion
//!   (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>)
//!   and Key Vault's Get Secret (<https://learn.microsoft.com/en-us/rest/api/keyvault/secrets/get-secret/get-secret>).
//!
//! Limitation: the error texts are the documented or observed ones, not every variant
//! the services send; the tests assert codes and statuses, which the agent classifies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

/// The issuer of the test signer's tokens (see `TokenSigner`).
pub const K8S_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Why a projected token is refused, if it is.
fn verify(
    key: &jsonwebtoken::DecodingKey,
    token: &str,
    audience: &str,
) -> Result<Value, &'static str> {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.leeway = 0;
    v.set_audience(&[audience]);
    v.set_issuer(&[K8S_ISSUER]);
    match jsonwebtoken::decode::<Value>(token, key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "audience",
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
            _ => "invalid",
        }),
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A counter-based token that names nothing of its holder.
fn new_token(prefix: &str, n: &mut u64) -> String {
    *n += 1;
    format!("{prefix}.{n:016x}.test-access-token")
}

async fn serve(app: axum::Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, task)
}

// ---------------------------------------------------------------------------------
// Google Cloud
// ---------------------------------------------------------------------------------

/// What the Google test server knows.
#[derive(Default)]
pub struct GcpWorld {
    /// The workload identity provider's full name (the audience it accepts).
    pub provider: String,
    /// Kubernetes subjects (`system:serviceaccount:ns:sa`) the provider maps.
    pub subjects: Vec<String>,
    /// Service account email -> subjects that may impersonate it.
    pub impersonators: BTreeMap<String, Vec<String>>,
    /// The GKE node's service account (the metadata server's identity).
    pub metadata_account: String,
    /// `projects/P/secrets/S` -> versions (1-based), `None` for a disabled one.
    pub secrets: BTreeMap<String, Vec<Option<Vec<u8>>>>,
    /// Principal -> secrets (`projects/P/secrets/S`) it may access.
    pub access: BTreeMap<String, Vec<String>>,
    /// Lifetime of the federated access tokens issued, in seconds (0: an hour).
    pub token_lifetime: u64,
}

struct GcpState {
    world: GcpWorld,
    key: jsonwebtoken::DecodingKey,
    /// Access token -> principal.
    tokens: HashMap<String, String>,
    issued: u64,
    /// Requests by path, for the tests' assertions.
    pub calls: Vec<String>,
    /// The signature of each projected token exchanged at STS, in order.
    pub exchanged: Vec<String>,
}

pub struct GcpServer {
    pub port: u16,
    pub url: String,
    state: Arc<Mutex<GcpState>>,
    task: tokio::task::JoinHandle<()>,
}

fn google_error(status: StatusCode, code: &str, message: &str) -> Response {
    answer(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": code}}),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    answer(
        status,
        json!({"error": error, "error_description": description}),
    )
}

impl GcpServer {
    pub async fn start(world: GcpWorld, public_pem: &str) -> GcpServer {
        let state = Arc::new(Mutex::new(GcpState {
            world,
            key: jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
            tokens: HashMap::new(),
            issued: 0,
            calls: Vec::new(),
            exchanged: Vec::new(),
        }));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let state = shared.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let mut s = state.lock().unwrap();
                s.calls
                    .push(format!("{} {}", parts.method, parts.uri.path()));
                gcp_route(
                    &mut s,
                    parts.method.as_str(),
                    parts.uri.path(),
                    &parts.headers,
                    &body,
                )
            }
        });
        let (port, task) = serve(app).await;
        GcpServer {
            port,
            url: format!("http://127.0.0.1:{port}"),
            state,
            task,
        }
    }

    /// The requests served so far (`METHOD /path`).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The signatures of the projected tokens exchanged so far.
    pub fn exchanged(&self) -> Vec<String> {
        self.state.lock().unwrap().exchanged.clone()
    }

    /// Add a version to `secret` (`projects/P/secrets/S`): `latest` moves to it.
    pub fn add_version(&self, secret: &str, data: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.world
            .secrets
            .entry(secret.to_string())
            .or_default()
            .push(Some(data.to_vec()));
    }
}

impl Drop for GcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gcp_route(
    s: &mut GcpState,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match (method, path) {
        ("POST", "/v1/token") => sts_exchange(s, headers, body),
        ("GET", "/computeMetadata/v1/instance/service-accounts/default/token") => {
            if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                return (
                    StatusCode::FORBIDDEN,
                    "Missing Metadata-Flavor:Google header.",
                )
                    .into_response();
            }
            let token = new_token("ya29.metadata", &mut s.issued);
            let principal = format!("serviceAccount:{}", s.world.metadata_account);
            s.tokens.insert(token.clone(), principal);
            let mut resp = answer(
                StatusCode::OK,
                json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
            );
            resp.headers_mut()
                .insert("metadata-flavor", "Google".parse().unwrap());
            resp
        }
        ("POST", p) if p.ends_with(":generateAccessToken") => impersonate(s, p, headers, body),
        ("GET", p) if p.starts_with("/v1/projects/") && p.ends_with(":access") => {
            access_secret(s, p, headers)
        }
        _ => (StatusCode::NOT_FOUND, "<html>404. That's an error.</html>").into_response(),
    }
}

/// RFC 8693 token exchange, as Google's STS validates it.
fn sts_exchange(s: &mut GcpState, headers: &HeaderMap, body: &[u8]) -> Response {
    if headers.contains_key("authorization") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Authorization header is not allowed.",
        );
    }
    let f = form(body);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || field("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid grant_type or token types.",
        );
    }
    if field("audience") != s.world.provider {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid.",
        );
    }
    let claims = match verify(&s.key, field("subject_token"), &s.world.provider) {
        Ok(c) => c,
        Err("audience") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The audience in ID Token does not match the expected audience.",
            );
        }
        Err("expired") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "ID Token issued at is stale to sign-in.",
            );
        }
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid ID Token.",
            );
        }
    };
    let subject = claims["sub"].as_str().unwrap_or_default().to_string();
    let signature = field("subject_token")
        .rsplit('.')
        .next()
        .unwrap_or_default();
    s.exchanged.push(signature.to_string());
    if !s.world.subjects.contains(&subject) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The given credential is rejected by the attribute condition.",
        );
    }
    let token = new_token("ya29.sts", &mut s.issued);
    s.tokens
        .insert(token.clone(), format!("principal:{subject}"));
    answer(
        StatusCode::OK,
        json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": match s.world.token_lifetime {
                0 => 3599,
                n => n,
            },
        }),
    )
}

fn impersonate(s: &mut GcpState, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(principal) = bearer(headers).and_then(|t| s.tokens.get(&t).cloned()) else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    };
    let email = path
        .trim_start_matches("/v1/projects/-/serviceAccounts/")
        .trim_end_matches(":generateAccessToken")
        .to_string();
    let body: Value = serde_json::from_slice(body).unwrap_or_default();
    if body["scope"].as_array().is_none_or(|a| a.is_empty()) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Scope required.",
        );
    }
    let subject = principal.trim_start_matches("principal:");
    let allowed = s
        .world
        .impersonators
        .get(&email)
        .is_some_and(|subjects| subjects.iter().any(|x| x == subject));
    if !allowed {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let token = new_token("ya29.sa", &mut s.issued);
    s.tokens
        .insert(token.clone(), format!("serviceAccount:{email}"));
    answer(
        StatusCode::OK,
        json!({"accessToken": token, "expireTime": "2099-01-01T00:00:00Z"}),
    )
}

fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn access_secret(s: &mut GcpState, path: &str, headers: &HeaderMap) -> Response {
    let Some(principal) = bearer(headers).and_then(|t| s.tokens.get(&t).cloned()) else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    };
    let name = path.trim_start_matches("/v1/").trim_end_matches(":access");
    let Some((secret, version)) = name.split_once("/versions/") else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid resource field value in the request.",
        );
    };
    let allowed = s
        .world
        .access
        .get(&principal)
        .is_some_and(|secrets| secrets.iter().any(|x| x == secret));
    if !allowed {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist)."
            ),
        );
    }
    let Some(versions) = s.world.secrets.get(secret) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret [{secret}] not found or has no versions."),
        );
    };
    let index = match version {
        "latest" => versions.len(),
        v => v.parse::<usize>().unwrap_or(0),
    };
    let data = match versions.get(index.wrapping_sub(1)) {
        None => {
            return google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Secret Version [{name}] not found."),
            );
        }
        Some(None) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                &format!("Secret Version [{secret}/versions/{index}] is in DISABLED state."),
            );
        }
        Some(Some(data)) => data,
    };
    answer(
        StatusCode::OK,
        json!({
            "name": format!("{secret}/versions/{index}"),
            "payload": {
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "dataCrc32c": crc32c(data).to_string(),
            },
        }),
    )
}

// ---------------------------------------------------------------------------------
// Azure
// ---------------------------------------------------------------------------------

/// A federated identity credential of an app registration.
pub struct Federated {
    pub client_id: String,
    pub subject: String,
}

/// What the Azure test server knows.
#[derive(Default)]
pub struct AzureWorld {
    pub tenant: String,
    /// Known app registrations (client IDs).
    pub clients: Vec<String>,
    pub federated: Vec<Federated>,
    /// `vault/secret` -> versions (32-hex id, value), the last is the latest.
    pub secrets: BTreeMap<String, Vec<(String, String)>>,
    /// Client ID -> vaults whose access policy grants it `secrets/get`.
    pub access: BTreeMap<String, Vec<String>>,
}

struct AzureState {
    world: AzureWorld,
    key: jsonwebtoken::DecodingKey,
    /// Access token -> client ID.
    tokens: HashMap<String, String>,
    issued: u64,
}

pub struct AzureServer {
    pub port: u16,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    answer(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-11-30 00:00:00Z"),
            "error_codes": [code],
        }),
    )
}

fn vault_error(status: StatusCode, code: &str, inner: Option<&str>, message: &str) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = json!({"code": inner});
    }
    answer(status, json!({"error": error}))
}

impl AzureServer {
    pub async fn start(world: AzureWorld, public_pem: &str) -> AzureServer {
        let state = Arc::new(Mutex::new(AzureState {
            world,
            key: jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
            tokens: HashMap::new(),
            issued: 0,
        }));
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let state = state.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let mut s = state.lock().unwrap();
                let query = parts.uri.query().unwrap_or_default().to_string();
                azure_route(
                    &mut s,
                    parts.method.as_str(),
                    parts.uri.path(),
                    &query,
                    &parts.headers,
                    &body,
                )
            }
        });
        let (port, task) = serve(app).await;
        AzureServer {
            port,
            url: format!("http://127.0.0.1:{port}"),
            task,
        }
    }
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn azure_route(
    s: &mut AzureState,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => aad_token(s, tenant, body),
        ("GET", [vault, "secrets", name, rest @ ..]) if rest.len() <= 1 => {
            let version = rest.first().copied().unwrap_or_default();
            get_secret(s, vault, name, version, query, headers)
        }
        _ => vault_error(StatusCode::NOT_FOUND, "NotFound", None, "no such route"),
    }
}

/// The client-credentials grant with a federated client assertion.
fn aad_token(s: &mut AzureState, tenant: &str, body: &[u8]) -> Response {
    if tenant != s.world.tenant {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let f = form(body);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials"
        || field("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let client = field("client_id").to_string();
    if !s.world.clients.contains(&client) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'."
            ),
        );
    }
    if field("scope") != "https://vault.azure.net/.default" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter.",
        );
    }
    let claims = match verify(
        &s.key,
        field("client_assertion"),
        "api://AzureADTokenExchange",
    ) {
        Ok(c) => c,
        Err("expired") => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        Err("audience") => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                700212,
                "No matching federated identity record found for presented assertion audience.",
            );
        }
        Err(_) => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed.",
            );
        }
    };
    let subject = claims["sub"].as_str().unwrap_or_default();
    if !s
        .world
        .federated
        .iter()
        .any(|f| f.client_id == client && f.subject == subject)
    {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{K8S_ISSUER}'. Assertion Subject: '{subject}'. Assertion Audience: 'api://AzureADTokenExchange'."
            ),
        );
    }
    let token = new_token("eyJ0eXAi.azure", &mut s.issued);
    s.tokens.insert(token.clone(), client);
    answer(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

fn get_secret(
    s: &mut AzureState,
    vault: &str,
    name: &str,
    version: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    if !query.split('&').any(|p| p.starts_with("api-version=")) {
        return vault_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            "The request URI contains an invalid or missing api-version.",
        );
    }
    let Some(token) = bearer(headers) else {
        let mut resp = StatusCode::UNAUTHORIZED.into_response();
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
            s.world.tenant
        );
        resp.headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
        return resp;
    };
    let Some(client) = s.tokens.get(&token).cloned() else {
        return vault_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            None,
            "AKV10032: Invalid issuer.",
        );
    };
    if !s
        .world
        .access
        .get(&client)
        .is_some_and(|v| v.iter().any(|x| x == vault))
    {
        return vault_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("AccessDenied"),
            &format!(
                "The user, group or application 'appid={client}' does not have secrets get permission on key vault '{vault}'."
            ),
        );
    }
    let Some(versions) = s.world.secrets.get(&format!("{vault}/{name}")) else {
        return vault_error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            None,
            &format!("A secret with (name/id) {name} was not found in this key vault."),
        );
    };
    let found = if version.is_empty() {
        versions.last()
    } else {
        versions.iter().find(|(id, _)| id == version)
    };
    let Some((id, value)) = found else {
        return vault_error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            None,
            &format!("A secret with (name/id) {name}/{version} was not found in this key vault."),
        );
    };
    answer(
        StatusCode::OK,
        json!({
            "value": value,
            "id": format!("https://{vault}.vault.azure.net/secrets/{name}/{id}"),
            "attributes": {"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000, "recoveryLevel": "Recoverable+Purgeable"},
        }),
    )
}
