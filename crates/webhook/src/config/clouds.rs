//! The `gcp` and `azure` sections of the configuration.

use serde::{Deserialize, Serialize};

use super::Config;

/// Google Secret Manager (`gcp:` references).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcpConfig {
    /// The project of `gcp:<secret>` references (`secret-injector.io/gcp-project` wins).
    pub project: String,
    /// Workload Identity Federation outside GKE: the provider's full resource name,
    /// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`,
    /// which is also the audience of the projected token. Empty: GKE Workload Identity
    /// through the metadata server.
    pub workload_identity_provider: String,
    /// A service account to impersonate after the exchange
    /// (`secret-injector.io/gcp-service-account` wins).
    pub service_account: String,
    pub secret_manager_endpoint: String,
    pub sts_endpoint: String,
    pub iam_credentials_endpoint: String,
    pub metadata_endpoint: String,
}

/// Azure Key Vault (`azure:` references) with Azure Workload Identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// The Entra ID tenant (the ServiceAccount's `azure.workload.identity/tenant-id` and
    /// `secret-injector.io/azure-tenant-id` win).
    pub tenant_id: String,
    /// The Microsoft identity platform of the cloud the vaults are in.
    pub authority_host: String,
    /// The projected token's audience, as the federated credential expects it.
    pub audience: String,
    /// Where to send Key Vault requests instead of `https://<vault>.vault.azure.net`
    /// (emulators and tests); `{vault}` is replaced by the vault's name.
    #[serde(deserialize_with = "super::optional")]
    pub key_vault_endpoint: Option<String>,
}

impl Default for GcpConfig {
    fn default() -> Self {
        use contract::cloud::*;
        GcpConfig {
            project: String::new(),
            workload_identity_provider: String::new(),
            service_account: String::new(),
            secret_manager_endpoint: GCP_SECRET_MANAGER.to_string(),
            sts_endpoint: GCP_STS.to_string(),
            iam_credentials_endpoint: GCP_IAM_CREDENTIALS.to_string(),
            metadata_endpoint: GCP_METADATA.to_string(),
        }
    }
}

impl Default for AzureConfig {
    fn default() -> Self {
        use contract::cloud::*;
        AzureConfig {
            tenant_id: String::new(),
            authority_host: AZURE_AUTHORITY.to_string(),
            audience: AZURE_AUDIENCE.to_string(),
            key_vault_endpoint: None,
        }
    }
}

impl Config {
    /// What the GCP and Azure identities need to be usable.
    pub(super) fn cloud_problems(&self) -> Vec<String> {
        use contract::cloud::*;
        let mut problems = Vec::new();
        let g = &self.gcp;
        if !g.project.is_empty() && !is_gcp_project(&g.project) {
            problems.push(format!(
                "gcp.project `{}` is not a project ID (6-30 lowercase letters, digits and `-`); for example my-project",
                g.project
            ));
        }
        if !g.workload_identity_provider.is_empty()
            && !is_gcp_provider(&g.workload_identity_provider)
        {
            problems.push(format!(
                "gcp.workload_identity_provider `{}` is not a workload identity pool provider; for example projects/123456789012/locations/global/workloadIdentityPools/k8s/providers/cluster",
                g.workload_identity_provider
            ));
        }
        if !g.service_account.is_empty() && g.workload_identity_provider.is_empty() {
            problems.push(
                "gcp.service_account is only used with gcp.workload_identity_provider (impersonation after the federated exchange); on GKE bind the Kubernetes ServiceAccounts with iam.gke.io/gcp-service-account instead"
                    .to_string(),
            );
        } else if !g.service_account.is_empty() && !is_gcp_service_account(&g.service_account) {
            problems.push(format!(
                "gcp.service_account `{}` is not a service account email; for example app@my-project.iam.gserviceaccount.com",
                g.service_account
            ));
        }
        if !self.azure.tenant_id.is_empty() && !is_azure_tenant(&self.azure.tenant_id) {
            problems.push(format!(
                "azure.tenant_id `{}` is not a tenant ID (a GUID) or domain; for example 72f988bf-86f1-41af-91ab-2d7cd011db47",
                self.azure.tenant_id
            ));
        }
        if self.azure.audience.trim().is_empty() {
            problems.push("azure.audience must not be empty".to_string());
        }
        problems
    }
}
