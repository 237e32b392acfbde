//! How the injected containers authenticate: the Vault, AWS, Google Cloud and Azure
//! identities.

use super::*;
use contract::auth::AuthMethod;
use contract::cloud::*;
use contract::names::token_path;
use contract::reference::{Provider, SecretRef};

pub(super) fn vault_identity(
    c: &mut Collector,
    pod: &PodView,
    config: &Config,
    ours: &BTreeMap<&str, &str>,
) -> VaultIdentity {
    let role = match ours.get("vault-role") {
        Some(r) if is_name(r, "-_.@") => r.to_string(),
        Some(r) => {
            c.push(
                "vault-role",
                format!(
                    "`{r}` is not a Vault role name (letters, digits, `-_.@`); for example secret-injector.io/vault-role: app"
                ),
            );
            String::new()
        }
        None => pod.service_account().to_string(),
    };
    let auth_path = match ours.get("vault-auth-path") {
        Some(p)
            if is_name(p, "-_./")
                && !p.starts_with('/')
                && !p.ends_with('/')
                && !p.split('/').any(|s| s.is_empty() || s == "..") =>
        {
            p.to_string()
        }
        Some(p) => {
            c.push(
                "vault-auth-path",
                format!(
                    "`{p}` is not an auth mount path (no leading `auth/` or `/`); for example secret-injector.io/vault-auth-path: kubernetes-prod"
                ),
            );
            String::new()
        }
        None => config.vault.auth_path.clone(),
    };
    let auth_method = match ours.get("vault-auth-method").copied() {
        Some(m) => AuthMethod::parse(m).unwrap_or_else(|| {
            c.push(
                "vault-auth-method",
                format!(
                    "`{m}` is not supported; use `kubernetes` or `jwt`, for example secret-injector.io/vault-auth-method: jwt"
                ),
            );
            AuthMethod::default()
        }),
        None => config.vault.auth_method,
    };
    let (address, audience) = vault_address(c, config, ours.get("vault-addr").copied());
    VaultIdentity {
        address,
        audience,
        role,
        auth_path,
        auth_method,
    }
}

/// The Vault address of the pod and the audience of its projected token: the config's
/// `vault.address` and `vault.audience`, or an allow-listed `vault-addr` and the
/// audience of its entry (its own, else `vault.audience`), so that a Vault on the
/// allow-list cannot replay the token at another that has its own.
fn vault_address(c: &mut Collector, config: &Config, vault_addr: Option<&str>) -> (String, String) {
    match vault_addr {
        Some(addr) => match config.vault.allowed(addr) {
            Some(entry) => (
                addr.trim_end_matches('/').to_string(),
                config.vault.audience_of(entry).to_string(),
            ),
            None => {
                let allowed = if config.vault.allowed_addresses.is_empty() {
                    "the allow-list is empty".to_string()
                } else {
                    let list: Vec<&str> = config
                        .vault
                        .allowed_addresses
                        .iter()
                        .map(|a| a.address.as_str())
                        .collect();
                    format!("allowed: {}", list.join(", "))
                };
                c.push(
                    "vault-addr",
                    format!(
                        "`{addr}` is not in the webhook's vault.allowed_addresses ({allowed}); a pod cannot send its token to an address of its choosing. Remove the annotation to use {}, or ask the platform team to allow the address",
                        config.vault.address
                    ),
                );
                (String::new(), String::new())
            }
        },
        None => (config.vault.address.clone(), config.vault.audience.clone()),
    }
}

pub(super) fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|ch| ch.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| is_name(r, "+=,.@_-/"))
}

pub(super) fn aws_identity(
    c: &mut Collector,
    config: &Config,
    ctx: &Context,
    ours: &BTreeMap<&str, &str>,
) -> AwsIdentity {
    let region = match ours.get("aws-region") {
        Some(r) => {
            let parts: Vec<&str> = r.split('-').collect();
            let valid = parts.len() >= 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                })
                && parts
                    .last()
                    .is_some_and(|p| p.chars().all(|ch| ch.is_ascii_digit()));
            if !valid {
                c.push(
                    "aws-region",
                    format!("`{r}` is not an AWS region; for example secret-injector.io/aws-region: eu-west-1"),
                );
            }
            r.to_string()
        }
        None => config.aws.region.clone(),
    };
    let role_arn = match ours.get("aws-role-arn") {
        Some(arn) if valid_role_arn(arn) => Some(arn.to_string()),
        Some(arn) => {
            c.push(
                "aws-role-arn",
                format!(
                    "`{arn}` is not an IAM role ARN; for example secret-injector.io/aws-role-arn: arn:aws:iam::123456789012:role/app-secrets"
                ),
            );
            None
        }
        None => ctx.service_account_role_arn.clone(),
    };
    AwsIdentity {
        region,
        region_explicit: ours.contains_key("aws-region"),
        explicit: ours.contains_key("aws-role-arn"),
        role_arn,
    }
}

/// The annotations (suffixes) whose references match `pred`, in a stable order.
fn annotations_using(plan: &FetchPlan, pred: impl Fn(&SecretRef) -> bool) -> Vec<String> {
    let mut out: Vec<String> = plan
        .secrets
        .iter()
        .filter(|(_, r)| pred(r))
        .map(|(name, _)| format!("secret-{name}"))
        .chain(
            plan.env
                .iter()
                .filter(|(_, r)| pred(r))
                .map(|(var, _)| format!("env-{var}")),
        )
        .collect();
    if plan.env_from.iter().any(&pred) {
        out.push("env-from".to_string());
    }
    out
}

/// Google Secret Manager's settings for the pod, when it has `gcp:` references.
pub(super) fn gcp_identity(
    c: &mut Collector,
    config: &Config,
    ours: &BTreeMap<&str, &str>,
    plan: &FetchPlan,
) -> Option<GcpSettings> {
    if !plan.uses(Provider::Gcp) {
        return None;
    }
    let g = &config.gcp;
    let project = match ours.get("gcp-project") {
        Some(p) if is_gcp_project(p) => Some(p.to_string()),
        Some(p) => {
            c.push(
                "gcp-project",
                format!("`{p}` is not a Google Cloud project ID (6-30 lowercase letters, digits and `-`, starting with a letter); for example secret-injector.io/gcp-project: my-project"),
            );
            None
        }
        None => Some(g.project.clone()).filter(|p| !p.is_empty()),
    };
    if project.is_none() && !ours.contains_key("gcp-project") {
        let short = |r: &SecretRef| {
            r.provider == Provider::Gcp && r.gcp_secret().is_some_and(|s| s.project.is_none())
        };
        for suffix in annotations_using(plan, short) {
            c.push(
                &suffix,
                "a `gcp:<secret>` reference needs a project, and the webhook has no gcp.project: write gcp:projects/<project>/secrets/<secret>, or add secret-injector.io/gcp-project: my-project",
            );
        }
    }
    let provider = gcp_provider_name(&g.workload_identity_provider);
    let service_account = match ours.get("gcp-service-account") {
        // Impersonation follows the federated exchange; on GKE the metadata server
        // answers for the Kubernetes ServiceAccount's binding, so the annotation
        // would be silently ignored there.
        Some(_) if provider.is_none() => {
            c.push(
                "gcp-service-account",
                "is only used with Workload Identity Federation (gcp.workload_identity_provider in the webhook's config); on GKE bind the Kubernetes ServiceAccount to the Google service account with iam.gke.io/gcp-service-account instead, and remove this annotation",
            );
            None
        }
        Some(sa) if is_gcp_service_account(sa) => Some(sa.to_string()),
        Some(sa) => {
            c.push(
                "gcp-service-account",
                format!("`{sa}` is not a service account email; for example secret-injector.io/gcp-service-account: app@my-project.iam.gserviceaccount.com"),
            );
            None
        }
        None => Some(g.service_account.clone()).filter(|s| !s.is_empty()),
    };
    Some(GcpSettings {
        project,
        token_file: provider.as_ref().map(|_| token_path(Provider::Gcp)),
        workload_identity_provider: provider,
        service_account,
        secret_manager_endpoint: g.secret_manager_endpoint.clone(),
        sts_endpoint: g.sts_endpoint.clone(),
        iam_credentials_endpoint: g.iam_credentials_endpoint.clone(),
        metadata_endpoint: g.metadata_endpoint.clone(),
    })
}

/// Azure Key Vault's settings for the pod, when it has `azure:` references: the client
/// and tenant from the pod's annotations, then its ServiceAccount's (as Azure Workload
/// Identity reads them), then the config's tenant.
pub(super) fn azure_identity(
    c: &mut Collector,
    config: &Config,
    ctx: &Context,
    ours: &BTreeMap<&str, &str>,
    plan: &FetchPlan,
) -> Option<AzureSettings> {
    if !plan.uses(Provider::Azure) {
        return None;
    }
    let client_id = match ours.get("azure-client-id") {
        Some(id) if is_guid(id) => Some(id.to_string()),
        Some(id) => {
            c.push(
                "azure-client-id",
                format!("`{id}` is not a client ID (a GUID); for example secret-injector.io/azure-client-id: 0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"),
            );
            None
        }
        None => ctx.azure_client_id.clone(),
    };
    let first = annotations_using(plan, |r| r.provider == Provider::Azure)
        .into_iter()
        .next()
        .unwrap_or_default();
    // The ServiceAccount's values are as unchecked as the pod's.
    let client_id = client_id.filter(|id| {
        is_guid(id) || {
            c.push(
                &first,
                format!("the ServiceAccount's azure.workload.identity/client-id `{id}` is not a client ID (a GUID); fix the ServiceAccount, or set secret-injector.io/azure-client-id: 0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"),
            );
            false
        }
    });
    let tenant_id = match ours.get("azure-tenant-id") {
        Some(t) if is_azure_tenant(t) => Some(t.to_string()),
        Some(t) => {
            c.push(
                "azure-tenant-id",
                format!("`{t}` is not a tenant ID (a GUID) or domain; for example secret-injector.io/azure-tenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47"),
            );
            None
        }
        None => ctx
            .azure_tenant_id
            .clone()
            .or_else(|| Some(config.azure.tenant_id.clone()).filter(|t| !t.is_empty())),
    };
    let tenant_id = tenant_id.filter(|t| {
        is_azure_tenant(t) || {
            c.push(
                &first,
                format!("the ServiceAccount's azure.workload.identity/tenant-id `{t}` is not a tenant ID (a GUID) or domain; fix the ServiceAccount, or set secret-injector.io/azure-tenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47"),
            );
            false
        }
    });
    if client_id.is_none() && ctx.azure_client_id.is_none() && !ours.contains_key("azure-client-id")
    {
        c.push(
            &first,
            "`azure:` references need the pod's Azure Workload Identity client ID: annotate the ServiceAccount with azure.workload.identity/client-id (if it has one, the webhook's ServiceAccount cache has not seen it yet: retry in a few seconds), or the pod with secret-injector.io/azure-client-id: 0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
        );
    }
    check_azure_clouds(c, config, plan);
    if tenant_id.is_none() && ctx.azure_tenant_id.is_none() && !ours.contains_key("azure-tenant-id")
    {
        c.push(
            &first,
            "`azure:` references need an Entra ID tenant: set azure.tenant_id in the webhook's config, annotate the ServiceAccount with azure.workload.identity/tenant-id, or the pod with secret-injector.io/azure-tenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47",
        );
    }
    Some(AzureSettings {
        tenant_id: tenant_id.unwrap_or_default(),
        client_id: client_id.unwrap_or_default(),
        token_file: token_path(Provider::Azure),
        authority_host: config.azure.authority_host.clone(),
        key_vault_endpoint: config.azure.key_vault_endpoint.clone(),
    })
}

/// Each Azure cloud signs in at its own identity platform: a vault of the China or US
/// Government cloud cannot be read with tokens of the public cloud's, and the other
/// way round. (With `azure.key_vault_endpoint`, for emulators, anything goes.)
fn check_azure_clouds(c: &mut Collector, config: &Config, plan: &FetchPlan) {
    if config.azure.key_vault_endpoint.is_some() {
        return;
    }
    let login = config.azure.authority_host.trim_end_matches('/');
    let login_cloud = azure_cloud_of_login(login);
    for (suffix, r) in plan
        .secrets
        .iter()
        .map(|(name, r)| (format!("secret-{name}"), r))
        .chain(plan.env.iter().map(|(var, r)| (format!("env-{var}"), r)))
        .chain(plan.env_from.iter().map(|r| ("env-from".to_string(), r)))
        .filter(|(_, r)| r.provider == Provider::Azure)
    {
        let Some(secret) = r.azure_secret() else {
            continue;
        };
        let vault_cloud = azure_cloud_of_vault(secret.suffix);
        if login_cloud.is_some_and(|l| l != vault_cloud) {
            c.push(
                &suffix,
                format!(
                    "the vault is in the {vault_cloud} cloud (`{}`), but the webhook signs pods in at {login} ({}); Azure clouds do not share identities: use a vault of that cloud, or run the webhook with azure.authority_host set for {vault_cloud}",
                    secret.suffix,
                    login_cloud.unwrap_or_default()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(
        annotations: serde_json::Value,
        config: &Config,
        ctx: &Context,
    ) -> Result<Decision, Problems> {
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]},
        }))
        .unwrap();
        parse(&pod, config, ctx)
    }

    fn problems(annotations: serde_json::Value, config: &Config, ctx: &Context) -> Vec<String> {
        match decide(annotations, config, ctx) {
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn spec(annotations: serde_json::Value, config: &Config, ctx: &Context) -> InjectionSpec {
        match decide(annotations, config, ctx) {
            Ok(Decision::Inject(s)) => *s,
            other => panic!("expected injection, got {other:?}"),
        }
    }

    /// The projected token's audience is the one of the address the pod talks to: its
    /// allow-list entry's own, else `vault.audience`.
    #[test]
    fn the_vault_audience_is_the_one_of_the_pods_address() {
        use crate::config::AllowedAddress;
        let mut cfg = Config::default();
        cfg.vault.audience = "vault-main".into();
        cfg.vault.allowed_addresses = vec![
            AllowedAddress::with_audience("https://vault-eu.example:8200", "vault-eu"),
            AllowedAddress::with_audience("https://vault-us.example:8200/", "vault-us"),
            AllowedAddress::new("https://vault-legacy.example:8200"),
        ];
        let ctx = Context::default();
        let identity = |addr: Option<&str>| {
            let mut annotations = json!({"secret-injector.io/secret-db": "vault:kv/db#password"});
            if let Some(addr) = addr {
                annotations["secret-injector.io/vault-addr"] = json!(addr);
            }
            let v = spec(annotations, &cfg, &ctx).vault;
            (v.address, v.audience)
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            identity(None),
            pair("https://vault.vault.svc:8200", "vault-main")
        );
        assert_eq!(
            identity(Some("https://vault-eu.example:8200/")),
            pair("https://vault-eu.example:8200", "vault-eu")
        );
        assert_eq!(
            identity(Some("https://vault-us.example:8200")),
            pair("https://vault-us.example:8200", "vault-us")
        );
        assert_eq!(
            identity(Some("https://vault-legacy.example:8200")),
            pair("https://vault-legacy.example:8200", "vault-main")
        );
        let p = problems(
            json!({"secret-injector.io/secret-db": "vault:kv/db", "secret-injector.io/vault-addr": "https://evil.example:8200"}),
            &cfg,
            &ctx,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("(allowed: https://vault-eu.example:8200, https://vault-us.example:8200/, https://vault-legacy.example:8200)"),
            "{p:?}"
        );
    }

    #[test]
    fn gcp_short_references_need_a_project_and_names_are_checked() {
        let none = Config::default();
        let ctx = Context::default();
        let p = problems(
            json!({"secret-injector.io/secret-db": "gcp:db-password"}),
            &none,
            &ctx,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "secret-injector.io/secret-db: a `gcp:<secret>` reference needs a project"
            ) && p[0].contains("secret-injector.io/gcp-project: my-project"),
            "{p:?}"
        );
        // The full form needs no project; GKE's metadata server is the identity.
        let s = spec(
            json!({"secret-injector.io/env-DB": "gcp:projects/my-project/secrets/db/versions/2"}),
            &none,
            &ctx,
        );
        let gcp = s.gcp.unwrap();
        assert_eq!(gcp.workload_identity_provider, None);
        assert_eq!(gcp.token_file, None);
        // A pod's project and service account win over the config's.
        let mut cfg = Config::default();
        cfg.gcp.project = "config-project".into();
        cfg.gcp.workload_identity_provider =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
                .into();
        let s = spec(
            json!({
                "secret-injector.io/secret-db": "gcp:db-password",
                "secret-injector.io/gcp-project": "pod-project",
                "secret-injector.io/gcp-service-account": "app@pod-project.iam.gserviceaccount.com",
            }),
            &cfg,
            &ctx,
        );
        let gcp = s.gcp.unwrap();
        assert_eq!(gcp.project.as_deref(), Some("pod-project"));
        assert_eq!(
            gcp.service_account.as_deref(),
            Some("app@pod-project.iam.gserviceaccount.com")
        );
        assert_eq!(
            gcp.token_file.as_deref(),
            Some("/var/run/secrets/secret-injector/gcp/token")
        );
        let p = problems(
            json!({
                "secret-injector.io/secret-db": "gcp:db-password",
                "secret-injector.io/gcp-project": "Bad_Project",
                "secret-injector.io/gcp-service-account": "someone@example.com",
            }),
            &cfg,
            &ctx,
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("secret-injector.io/gcp-project: `Bad_Project`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("secret-injector.io/gcp-service-account:")),
            "{p:?}"
        );
        // No `gcp:` reference: no settings, whatever the config.
        assert_eq!(
            spec(
                json!({"secret-injector.io/secret-a": "vault:kv/a"}),
                &cfg,
                &ctx
            )
            .gcp,
            None
        );
    }

    #[test]
    fn azure_needs_a_client_and_a_tenant_from_the_pod_account_or_config() {
        let cfg = Config::default();
        let refs = json!({"secret-injector.io/secret-jwt": "azure:deparrow-kv/jwt"});
        let p = problems(refs.clone(), &cfg, &Context::default());
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("secret-injector.io/secret-jwt: `azure:` references need the pod's Azure Workload Identity client ID"), "{p:?}");
        assert!(p[1].contains("need an Entra ID tenant"), "{p:?}");
        // The ServiceAccount's annotations, as Azure Workload Identity reads them.
        let ctx = Context {
            azure_client_id: Some("0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c".into()),
            azure_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            ..Context::default()
        };
        let azure = spec(refs.clone(), &cfg, &ctx).azure.unwrap();
        assert_eq!(azure.client_id, "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c");
        assert_eq!(azure.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(
            azure.token_file,
            "/var/run/secrets/secret-injector/azure/token"
        );
        // The config's tenant, and the pod's own client ID.
        let mut with_tenant = Config::default();
        with_tenant.azure.tenant_id = "contoso.onmicrosoft.com".into();
        let mut annotations = refs.clone();
        annotations["secret-injector.io/azure-client-id"] =
            json!("11111111-2222-3333-4444-555555555555");
        let azure = spec(annotations.clone(), &with_tenant, &Context::default())
            .azure
            .unwrap();
        assert_eq!(azure.tenant_id, "contoso.onmicrosoft.com");
        assert_eq!(azure.client_id, "11111111-2222-3333-4444-555555555555");
        annotations["secret-injector.io/azure-client-id"] = json!("not-a-guid");
        let p = problems(annotations, &with_tenant, &Context::default());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("secret-injector.io/azure-client-id: `not-a-guid` is not a client ID"),
            "{p:?}"
        );
    }

    #[test]
    fn identities_that_cannot_work_are_denied_at_admission() {
        let ctx = Context::default();
        // Impersonation without federation would be silently ignored on GKE.
        let p = problems(
            json!({
                "secret-injector.io/secret-db": "gcp:projects/my-project/secrets/db",
                "secret-injector.io/gcp-service-account": "app@my-project.iam.gserviceaccount.com",
            }),
            &Config::default(),
            &ctx,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("secret-injector.io/gcp-service-account: is only used with Workload Identity Federation"), "{p:?}");
        // The SPEC's provider form, without the prefix, becomes the full name (the
        // projected token's audience).
        let mut cfg = Config::default();
        cfg.gcp.workload_identity_provider =
            "projects/1/locations/global/workloadIdentityPools/p/providers/k".into();
        let s = spec(
            json!({"secret-injector.io/secret-db": "gcp:projects/my-project/secrets/db"}),
            &cfg,
            &ctx,
        );
        assert_eq!(
            s.gcp.unwrap().workload_identity_provider.as_deref(),
            Some(
                "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
            )
        );
        // A ServiceAccount's bad client ID is named, not sent to the pod.
        let bad_sa = Context {
            azure_client_id: Some("not-a-guid".into()),
            azure_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            ..Context::default()
        };
        let p = problems(
            json!({"secret-injector.io/secret-jwt": "azure:deparrow-kv/jwt"}),
            &Config::default(),
            &bad_sa,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("the ServiceAccount's azure.workload.identity/client-id `not-a-guid` is not a client ID"), "{p:?}");
        // A China vault with the public cloud's sign-in.
        let good_sa = Context {
            azure_client_id: Some("0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c".into()),
            ..bad_sa
        };
        let cn = json!({"secret-injector.io/secret-jwt": "azure:https://kv-cn.vault.azure.cn/secrets/jwt"});
        let p = problems(cn.clone(), &Config::default(), &good_sa);
        assert!(p[0].contains("the vault is in the China cloud"), "{p:?}");
        let mut china = Config::default();
        china.azure.authority_host = "https://login.partner.microsoftonline.cn".into();
        assert!(spec(cn, &china, &good_sa).azure.is_some());
    }

    #[test]
    fn new_references_are_checked_at_admission() {
        let cfg = Config::default();
        let ctx = Context::default();
        let p = problems(
            json!({"secret-injector.io/secret-a": "azure:https://evil.example.com/secrets/x"}),
            &cfg,
            &ctx,
        );
        assert!(
            p.iter().any(|m| m.starts_with(
                "secret-injector.io/secret-a: `evil.example.com` is not a Key Vault host"
            )),
            "{p:?}"
        );
        let p = problems(
            json!({"secret-injector.io/env-A": "ssm:prod/a"}),
            &cfg,
            &ctx,
        );
        assert!(
            p[0].starts_with(
                "secret-injector.io/env-A: the SSM parameter name `prod/a` has `/` levels"
            ),
            "{p:?}"
        );
        let p = problems(
            json!({"secret-injector.io/secret-a": "gcp:projects/p/secrets/s"}),
            &cfg,
            &ctx,
        );
        assert!(p[0].contains("is not a Google Cloud project ID"), "{p:?}");
        // SSM shares the AWS identity: the role is handed to the pod.
        let ctx = Context {
            service_account_role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            ..Context::default()
        };
        let s = spec(
            json!({"secret-injector.io/secret-a": "ssm:/prod/a"}),
            &cfg,
            &ctx,
        );
        assert_eq!(
            s.aws.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/app")
        );
        assert!(s.plan.uses_aws());
    }
}
