//! How the injected containers reach Google Secret Manager and Azure Key Vault, and as
//! whom: settings the webhook resolves at admission (config, ServiceAccount and pod
//! annotations) and hands to the pod as JSON ([`GCP_ENV`], [`AZURE_ENV`]). Only names,
//! addresses and file paths, never a credential.

use serde::{Deserialize, Serialize};

/// The env variable holding [`GcpSettings`] as JSON.
pub const GCP_ENV: &str = "SECRET_INJECTOR_GCP";
/// The env variable holding [`AzureSettings`] as JSON.
pub const AZURE_ENV: &str = "SECRET_INJECTOR_AZURE";

pub const GCP_SECRET_MANAGER: &str = "https://secretmanager.googleapis.com";
pub const GCP_STS: &str = "https://sts.googleapis.com";
pub const GCP_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";
pub const GCP_METADATA: &str = "http://metadata.google.internal";
pub const AZURE_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The audience Azure Workload Identity expects on the projected token.
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Google Secret Manager: GKE Workload Identity through the metadata server, or
/// Workload Identity Federation with the pod's projected token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    /// The project of `gcp:<secret>` references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Workload Identity Federation: the provider's full resource name
    /// (`//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`),
    /// which is also the projected token's audience. `None`: the metadata server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity_provider: Option<String>,
    /// The service account to impersonate after the exchange, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The projected token (with a workload identity provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    pub secret_manager_endpoint: String,
    pub sts_endpoint: String,
    pub iam_credentials_endpoint: String,
    pub metadata_endpoint: String,
}

impl GcpSettings {
    /// Who the pod is, for messages.
    pub fn identity(&self) -> String {
        match (&self.workload_identity_provider, &self.service_account) {
            (Some(_), Some(sa)) => {
                format!("GCP service account {sa} (workload identity federation)")
            }
            (Some(p), None) => format!("GCP workload identity federation ({p})"),
            (None, Some(sa)) => format!("GCP service account {sa} (metadata server)"),
            (None, None) => "the GKE metadata server's service account".to_string(),
        }
    }
}

/// Azure Key Vault with Azure Workload Identity: the projected token is a client
/// assertion for `client_id` in `tenant_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub token_file: String,
    /// The Microsoft identity platform, `https://login.microsoftonline.com` in the
    /// public cloud.
    pub authority_host: String,
    /// Where to send Key Vault requests instead of `https://<vault>.vault.azure.net`
    /// (an emulator, a test); `{vault}` is replaced by the vault's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_endpoint: Option<String>,
}

impl AzureSettings {
    /// Who the pod is, for messages.
    pub fn identity(&self) -> String {
        format!(
            "Azure client {} in tenant {} (workload identity)",
            self.client_id, self.tenant_id
        )
    }
}

/// A Google Cloud project ID: 6-30 lowercase letters, digits and `-`, starting with a
/// letter, not ending with `-`.
pub fn is_gcp_project(p: &str) -> bool {
    (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && !p.ends_with('-')
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The full resource name of a workload identity pool provider, from the form the
/// config may use: `projects/N/locations/global/workloadIdentityPools/P/providers/X`,
/// with or without the `//iam.googleapis.com/` (or `https://iam.googleapis.com/`)
/// prefix. `None` when empty.
pub fn gcp_provider_name(p: &str) -> Option<String> {
    let p = p.trim();
    if p.is_empty() {
        return None;
    }
    let rest = p
        .strip_prefix("//iam.googleapis.com/")
        .or_else(|| p.strip_prefix("https://iam.googleapis.com/"))
        .unwrap_or(p);
    Some(format!("//iam.googleapis.com/{rest}"))
}

/// A workload identity pool provider, in any form [`gcp_provider_name`] takes.
pub fn is_gcp_provider(p: &str) -> bool {
    let Some(full) = gcp_provider_name(p) else {
        return false;
    };
    let rest = &full["//iam.googleapis.com/".len()..];
    let id = |s: &str| {
        (1..=63).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [
            "projects",
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] => {
            !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit())
                && id(pool)
                && id(provider)
        }
        _ => false,
    }
}

/// A service account email: `<name>@<project>.iam.gserviceaccount.com` (or a Google
/// default account's domain).
pub fn is_gcp_service_account(sa: &str) -> bool {
    match sa.split_once('@') {
        Some((name, domain)) => {
            !name.is_empty()
                && name.len() <= 64
                && domain.ends_with(".gserviceaccount.com")
                && sa
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        }
        None => false,
    }
}

/// The Azure cloud of a Key Vault host suffix.
pub fn azure_cloud_of_vault(suffix: &str) -> &'static str {
    match suffix {
        "vault.azure.cn" => "China",
        "vault.usgovcloudapi.net" => "US Government",
        _ => "public",
    }
}

/// The Azure cloud of an identity platform URL, when it is a known one.
pub fn azure_cloud_of_login(url: &str) -> Option<&'static str> {
    let host = url
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    match host {
        "login.microsoftonline.com" => Some("public"),
        "login.partner.microsoftonline.cn" | "login.chinacloudapi.cn" => Some("China"),
        "login.microsoftonline.us" => Some("US Government"),
        _ => None,
    }
}

/// A GUID, as Entra ID client and tenant IDs are.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// An Entra ID tenant: a GUID or a verified domain (`contoso.onmicrosoft.com`).
pub fn is_azure_tenant(t: &str) -> bool {
    is_guid(t)
        || (t.contains('.')
            && t.len() <= 253
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names() {
        assert!(is_gcp_project("my-project") && !is_gcp_project("My-Project"));
        assert!(!is_gcp_project("short") && !is_gcp_project("ends-with-"));
        assert!(is_gcp_provider(
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/k8s/providers/cluster"
        ));
        // The SPEC's form, without the prefix, is the same provider.
        assert!(is_gcp_provider(
            "projects/123/locations/global/workloadIdentityPools/k8s/providers/cluster"
        ));
        assert_eq!(
            gcp_provider_name("projects/1/locations/global/workloadIdentityPools/p/providers/k")
                .unwrap(),
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
        );
        assert!(!is_gcp_provider(
            "//iam.googleapis.com/projects/1/locations/global"
        ));
        assert_eq!(
            azure_cloud_of_login("https://login.microsoftonline.us/"),
            Some("US Government")
        );
        assert_eq!(azure_cloud_of_login("http://127.0.0.1:9"), None);
        assert!(!is_gcp_provider(
            "//iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/k8s/providers/c"
        ));
        assert!(is_gcp_service_account(
            "app@my-project.iam.gserviceaccount.com"
        ));
        assert!(!is_gcp_service_account("app@example.com"));
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
        assert!(is_azure_tenant("contoso.onmicrosoft.com") && !is_azure_tenant("contoso"));
    }
}
