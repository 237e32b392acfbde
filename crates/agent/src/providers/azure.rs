//! Azure Key Vault over its REST API, with Azure Workload Identity: the pod's projected
//! token (audience `api://AzureADTokenExchange`) is the client assertion of a
//! client-credentials grant at the Microsoft identity platform, and the bearer token it
//! returns reads the vault. The token file is read again for every grant: the kubelet
//! rotates it.
//!
//! References: <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>,
//! <https://learn.microsoft.com/en-us/rest/api/keyvault/secrets/get-secret/get-secret>,
//! <https://learn.microsoft.com/en-us/azure/key-vault/general/authentication-requests-and-responses>.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use super::rest::{self, Cached, OAuthError};
use super::{AgentError, Fetched};
use contract::cloud::AzureSettings;
use contract::reference::{SecretRef, Version};

const API_VERSION: &str = "7.4";
const SERVICE: &str = "Azure Key Vault";

pub struct Azure {
    settings: AzureSettings,
    http: reqwest::Client,
    /// Access tokens by scope (one per cloud).
    tokens: Mutex<HashMap<String, Cached>>,
}

/// Key Vault's error: `{"error": {"code": "Forbidden", "message": "...", "innererror":
/// {"code": "AccessDenied"}}}`.
#[derive(Deserialize)]
struct VaultError {
    error: VaultStatus,
}

#[derive(Deserialize)]
struct VaultStatus {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    innererror: Option<Box<VaultStatus>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct SecretBundle {
    value: Option<String>,
}

/// The first line of an AADSTS description (the rest is trace and correlation ids).
fn first_line(description: &str) -> &str {
    description.lines().next().unwrap_or_default()
}

/// One failed answer: Key Vault's or the identity platform's error, classified by HTTP
/// status. Every field is quoted escaped: it comes from the network.
fn refused(status: u16, body: &[u8], what: &str, identity: &str) -> AgentError {
    let mut retry = rest::transient_status(status);
    let detail = if let Ok(e) = serde_json::from_slice::<VaultError>(body) {
        let inner = e
            .error
            .innererror
            .map(|i| format!("/{}", rest::quote(&i.code)))
            .unwrap_or_default();
        format!(
            "{}{inner} {}",
            rest::quote(&e.error.code),
            rest::quote(&e.error.message)
        )
    } else if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
        // `temporarily_unavailable` is the one identity-platform error worth retrying.
        retry |= e.error == "temporarily_unavailable";
        format!(
            "{} {}",
            rest::quote(&e.error),
            rest::quote_long(first_line(&e.error_description), 500)
        )
    } else {
        format!("HTTP {status}")
    };
    if retry {
        AgentError::transient(format!("{what}: {detail}"))
    } else {
        AgentError::permanent(format!("{what}: {detail} for {identity}"))
    }
}

impl Azure {
    pub fn new(settings: AzureSettings, timeout: Duration) -> Result<Azure, AgentError> {
        Ok(Azure {
            http: rest::client(timeout)?,
            settings,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        service: &str,
        secret_read: bool,
    ) -> Result<Vec<u8>, AgentError> {
        let answer = rest::send(req, what, service).await?;
        if answer.status == 401 && secret_read {
            // A revoked or expired access token: the next attempt gets a new one.
            // (Not on the token endpoints, whose caller holds the cache's lock.)
            self.tokens.lock().await.clear();
        }
        if !answer.ok() {
            return Err(refused(
                answer.status,
                &answer.body,
                what,
                &self.settings.identity(),
            ));
        }
        Ok(answer.body)
    }

    /// A token for `scope`, from the projected token as client assertion.
    async fn access_token(&self, scope: &str) -> Result<String, AgentError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(c) = tokens.get(scope).filter(|c| c.fresh()) {
            return Ok(c.token.clone());
        }
        let what = "Azure workload identity token";
        let assertion = rest::projected_token(&self.settings.token_file)?;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.settings.authority_host.trim_end_matches('/'),
            self.settings.tenant_id
        );
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
            ("grant_type", "client_credentials"),
        ];
        let body = self
            .call(
                self.http.post(url).form(&form),
                what,
                "the Microsoft identity platform",
                false,
            )
            .await?;
        let t: TokenResponse = rest::json(&body, what)?;
        let token = t.access_token.clone();
        tokens.insert(
            scope.to_string(),
            Cached::new(t.access_token, t.expires_in.unwrap_or(3600)),
        );
        Ok(token)
    }

    /// GET of the secret (its latest version, or the one named).
    pub async fn get(&self, r: &SecretRef) -> Result<Fetched, AgentError> {
        let what = r.location().to_string();
        let secret = r
            .azure_secret()
            .ok_or_else(|| AgentError::permanent(format!("{what}: not a Key Vault secret")))?;
        let token = self
            .access_token(&secret.scope())
            .await
            .map_err(|e| e.naming(&what))?;
        let base = match &self.settings.key_vault_endpoint {
            Some(endpoint) => endpoint.replace("{vault}", secret.vault),
            None => secret.vault_url(),
        };
        let version = match &r.version {
            Some(Version::Id(v)) => v.as_str(),
            _ => "",
        };
        let url = format!(
            "{}/secrets/{}/{version}?api-version={API_VERSION}",
            base.trim_end_matches('/'),
            secret.name
        );
        let body = self
            .call(self.http.get(url).bearer_auth(token), &what, SERVICE, true)
            .await?;
        let bundle: SecretBundle = rest::json(&body, &what)?;
        match bundle.value {
            Some(v) => Ok(Fetched::from_secret_string(v)),
            None => Err(AgentError::permanent(format!(
                "{what}: the secret has no value"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_codes_and_identity_without_trace_ids() {
        let body = br#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[70021]}"#;
        let e = refused(400, body, "token", "Azure client c in tenant t");
        assert!(!e.is_transient());
        assert_eq!(
            e.message,
            "token: invalid_request AADSTS70021: No matching federated identity record found. for Azure client c in tenant t"
        );
        let body = br#"{"error":{"code":"Forbidden","message":"no secrets get permission","innererror":{"code":"AccessDenied"}}}"#;
        let e = refused(403, body, "azure:v/s", "id");
        assert!(
            e.message
                .starts_with("azure:v/s: Forbidden/AccessDenied no secrets get"),
            "{e}"
        );
        let e = refused(
            429,
            br#"{"error":{"code":"Throttled","message":"slow down"}}"#,
            "azure:v/s",
            "id",
        );
        assert!(e.is_transient());
        let e = refused(401, b"", "azure:v/s", "id");
        assert_eq!(e.message, "azure:v/s: HTTP 401 for id");
        let e = refused(
            400,
            br#"{"error":"temporarily_unavailable","error_description":"busy"}"#,
            "t",
            "id",
        );
        assert!(e.is_transient());
    }

    /// Every field of an error is escaped: none can forge a log line or send a
    /// terminal escape.
    #[test]
    fn error_fields_are_escaped() {
        let forged = "X\n2026-01-01T00:00:00Z INFO forged\u{1b}[31m";
        for body in [
            serde_json::json!({"error": {"code": forged, "message": forged, "innererror": {"code": forged}}}),
            serde_json::json!({"error": forged, "error_description": forged}),
        ] {
            let e = refused(403, body.to_string().as_bytes(), "azure:v/s", "id");
            assert!(
                !e.message.contains('\n') && !e.message.contains('\u{1b}'),
                "{e}"
            );
            assert!(e.message.starts_with("azure:v/s: X\\n2026"), "{e}");
        }
    }
}
