//! Google Secret Manager over its REST API, with the pod's identity:
//!
//! - **GKE Workload Identity**: an access token from the metadata server
//!   (`Metadata-Flavor: Google` both ways);
//! - **Workload Identity Federation** elsewhere: the pod's projected token (audience =
//!   the provider's resource name) exchanged at STS (RFC 8693), then optionally for a
//!   service account's token with `generateAccessToken`.
//!
//! References: <https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access>,
//! <https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>,
//! <https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>,
//! <https://cloud.google.com/compute/docs/metadata/querying-metadata>.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::rest::{self, Cached, OAuthError};
use super::{AgentError, Fetched};
use contract::cloud::GcpSettings;
use contract::reference::SecretRef;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const SERVICE: &str = "Google Secret Manager";

pub struct Gcp {
    settings: GcpSettings,
    http: reqwest::Client,
    token: Mutex<Option<Cached>>,
}

/// `{"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}`
#[derive(Deserialize)]
struct GoogleError {
    error: GoogleStatus,
}

#[derive(Deserialize)]
struct GoogleStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpersonatedToken {
    access_token: String,
}

#[derive(Deserialize)]
struct AccessResponse {
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    data: String,
    /// An int64 in proto3 JSON: a string, though a number is accepted too.
    #[serde(default)]
    data_crc32c: Option<serde_json::Value>,
}

/// CRC-32C (Castagnoli), which Secret Manager sends beside each payload.
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

/// One failed answer: Google's error status and message, classified by HTTP status.
/// Every field is quoted escaped: it comes from the network.
fn refused(status: u16, body: &[u8], what: &str, identity: &str) -> AgentError {
    let detail = match serde_json::from_slice::<GoogleError>(body) {
        Ok(e) => format!(
            "{} {}",
            rest::quote(&e.error.status),
            rest::quote(&e.error.message)
        ),
        Err(_) => match serde_json::from_slice::<OAuthError>(body) {
            Ok(e) => format!(
                "{} {}",
                rest::quote(&e.error),
                rest::quote(&e.error_description)
            ),
            Err(_) => format!("HTTP {status}"),
        },
    };
    if rest::transient_status(status) {
        AgentError::transient(format!("{what}: {detail}"))
    } else {
        AgentError::permanent(format!("{what}: {detail} for {identity}"))
    }
}

impl Gcp {
    pub fn new(settings: GcpSettings, timeout: Duration) -> Result<Gcp, AgentError> {
        Ok(Gcp {
            http: rest::client(timeout)?,
            settings,
            token: Mutex::new(None),
        })
    }

    fn identity(&self) -> String {
        self.settings.identity()
    }

    /// Send `req` and return a 2xx answer; anything else is classified.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        service: &str,
        secret_read: bool,
    ) -> Result<rest::Answer, AgentError> {
        let answer = rest::send(req, what, service).await?;
        if answer.status == 401 && secret_read {
            // A revoked or expired access token: the next attempt gets a new one.
            // (Not on the token endpoints, whose caller holds the cache's lock.)
            *self.token.lock().await = None;
        }
        if !answer.ok() {
            return Err(refused(answer.status, &answer.body, what, &self.identity()));
        }
        Ok(answer)
    }

    /// An access token for Secret Manager, cached until shortly before it expires.
    async fn access_token(&self) -> Result<String, AgentError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.fresh()) {
            return Ok(c.token.clone());
        }
        let fresh = match &self.settings.workload_identity_provider {
            Some(provider) => self.federated(provider).await?,
            None => self.metadata_token().await?,
        };
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// GKE Workload Identity: the metadata server's token for the pod's service account.
    async fn metadata_token(&self) -> Result<Cached, AgentError> {
        let what = "GCP metadata server token";
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            self.settings.metadata_endpoint.trim_end_matches('/')
        );
        // A metadata host that does not resolve: not on GKE, and waiting will not
        // change that (an unreachable one is retried).
        if let Ok(parsed) = reqwest::Url::parse(&url)
            && let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default())
            && tokio::net::lookup_host((host, port)).await.is_err()
        {
            return Err(AgentError::permanent(format!(
                "{what}: {host} does not resolve, so this is not GKE; outside GKE configure gcp.workload_identity_provider (Workload Identity Federation)"
            )));
        }
        let req = self.http.get(url).header("Metadata-Flavor", "Google");
        let rest::Answer { headers, body, .. } = self
            .call(req, what, "the GCP metadata server", false)
            .await?;
        // A foreign server on the metadata address does not answer with the flavor.
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return Err(AgentError::permanent(format!(
                "{what}: the answer lacks `Metadata-Flavor: Google`, so it is not a GCP metadata server; outside GKE configure gcp.workload_identity_provider"
            )));
        }
        let t: AccessToken = rest::json(&body, what)?;
        Ok(Cached::new(t.access_token, t.expires_in.unwrap_or(3600)))
    }

    /// Workload Identity Federation: exchange the projected token at STS, then
    /// impersonate the service account, if one is configured.
    async fn federated(&self, provider: &str) -> Result<Cached, AgentError> {
        let what = "GCP STS token exchange";
        let file = self.settings.token_file.as_deref().unwrap_or_default();
        let subject = rest::projected_token(file)?;
        let url = format!(
            "{}/v1/token",
            self.settings.sts_endpoint.trim_end_matches('/')
        );
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", provider),
            ("scope", SCOPE),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ];
        // No Authorization header: STS documents that it can make the call fail.
        let rest::Answer { body, .. } = self
            .call(self.http.post(url).form(&form), what, "GCP STS", false)
            .await?;
        let federated: AccessToken = rest::json(&body, what)?;
        let Some(sa) = &self.settings.service_account else {
            return Ok(Cached::new(
                federated.access_token,
                federated.expires_in.unwrap_or(3600),
            ));
        };
        let what = format!("GCP impersonation of {sa}");
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
            self.settings.iam_credentials_endpoint.trim_end_matches('/')
        );
        let req = self
            .http
            .post(url)
            .bearer_auth(&federated.access_token)
            .json(&serde_json::json!({"scope": [SCOPE], "lifetime": "3600s"}));
        let rest::Answer { body, .. } = self.call(req, &what, "GCP IAM credentials", false).await?;
        let t: ImpersonatedToken = rest::json(&body, &what)?;
        Ok(Cached::new(t.access_token, 3600))
    }

    /// `:access` of the secret version a reference names.
    pub async fn get(&self, r: &SecretRef) -> Result<Fetched, AgentError> {
        let what = r.location().to_string();
        let secret = r
            .gcp_secret()
            .ok_or_else(|| AgentError::permanent(format!("{what}: not a Secret Manager secret")))?;
        let project = match (secret.project, self.settings.project.as_deref()) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                return Err(AgentError::permanent(format!(
                    "{what}: no project; write projects/<project>/secrets/<secret>, or set gcp.project"
                )));
            }
        };
        let token = self.access_token().await.map_err(|e| e.naming(&what))?;
        let url = format!(
            "{}/v1/{}:access",
            self.settings.secret_manager_endpoint.trim_end_matches('/'),
            secret.resource(project)
        );
        let rest::Answer { body, .. } = self
            .call(self.http.get(url).bearer_auth(token), &what, SERVICE, true)
            .await?;
        let answer: AccessResponse = rest::json(&body, &what)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer.payload.data.as_bytes())
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE.decode(answer.payload.data.as_bytes())
            })
            .map_err(|_| AgentError::permanent(format!("{what}: the payload is not base64")))?;
        let want = match &answer.payload.data_crc32c {
            Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        if let Some(want) = want
            && want != u64::from(crc32c(&bytes))
        {
            return Err(AgentError::transient(format!(
                "{what}: the payload does not match its CRC32C checksum"
            )));
        }
        Ok(match String::from_utf8(bytes) {
            Ok(text) => Fetched::from_secret_string(text),
            Err(e) => Fetched::Binary(e.into_bytes()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn errors_are_classified_by_status_and_quote_the_service() {
        let body = br#"{"error":{"code":403,"message":"Permission 'secretmanager.versions.access' denied","status":"PERMISSION_DENIED"}}"#;
        let e = refused(403, body, "gcp:s", "GCP service account a@b");
        assert!(!e.is_transient());
        assert!(e.message.contains("PERMISSION_DENIED"), "{e}");
        assert!(e.message.contains("for GCP service account a@b"), "{e}");
        let e = refused(
            429,
            b"{\"error\":{\"status\":\"RESOURCE_EXHAUSTED\"}}",
            "gcp:s",
            "x",
        );
        assert!(e.is_transient());
        let e = refused(
            400,
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            "sts",
            "x",
        );
        assert!(e.message.contains("invalid_grant expired"), "{e}");
        let e = refused(404, b"<html>not found</html>", "gcp:s", "x");
        assert!(e.message.contains("HTTP 404"), "{e}");
    }

    /// Every field of an error is escaped: none can forge a log line or send a
    /// terminal escape.
    #[test]
    fn error_fields_are_escaped() {
        let forged = "X\n2026-01-01T00:00:00Z INFO forged\u{1b}[31m";
        for body in [
            serde_json::json!({"error": {"code": 403, "status": forged, "message": forged}}),
            serde_json::json!({"error": forged, "error_description": forged}),
        ] {
            let e = refused(403, body.to_string().as_bytes(), "gcp:s", "id");
            assert!(
                !e.message.contains('\n') && !e.message.contains('\u{1b}'),
                "{e}"
            );
            assert!(e.message.starts_with("gcp:s: X\\n2026"), "{e}");
        }
    }
}
