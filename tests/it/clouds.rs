//! Google Secret Manager and Azure Key Vault with the pod's own identity, against the
//! wire-protocol test servers of `support/cloud.rs`: Workload Identity Federation (with
//! impersonation) and the GKE metadata server; Azure Workload Identity. Each refusal a
//! real service makes (wrong audience, expired token, no federated credential, no
//! permission) is one clear line naming the reference and the identity. And a pod that
//! reads all five stores at once.

use std::collections::BTreeMap;

use serde_json::json;

use crate::fixtures::{
    API_KEY, CNPG_PASSWORD, DB_PASSWORD, DB_PASSWORD_OLD, JWT_SECRET, NOWHERE, NS, PLAIN_TOKEN,
    STATIC_AWS_KEYS, bao_with_secrets, config, deployment, run_injected, vault_token,
};
use crate::support::{AzureServer, AzureWorld, Federated, GcpServer, GcpWorld, Moto, TokenSigner};
use crate::util::rt;

pub(crate) const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/k8s/providers/cluster";
const GSA: &str = "secrets@my-project.iam.gserviceaccount.com";
pub(crate) const GCP_TOKEN_VOLUME: &str = "secret-injector-token-gcp";
pub(crate) const AZURE_TOKEN_VOLUME: &str = "secret-injector-token-azure";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub(crate) const CLIENT: &str = "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
const STRANGER: &str = "11111111-2222-3333-4444-555555555555";
const V1: &str = "0123456789abcdef0123456789abcdef";
const V2: &str = "fedcba9876543210fedcba9876543210";

pub(crate) fn subject(sa: &str) -> String {
    format!("system:serviceaccount:{NS}:{sa}")
}

/// Secret Manager holding a CloudNativePG credential and a token with two versions,
/// readable by [`GSA`], which team-a's `app` may impersonate.
pub(crate) fn gcp_world() -> GcpWorld {
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "projects/my-project/secrets/cnpg-credentials".to_string(),
        vec![Some(
            json!({"username": "app", "password": CNPG_PASSWORD})
                .to_string()
                .into_bytes(),
        )],
    );
    secrets.insert(
        "projects/my-project/secrets/api-token".to_string(),
        vec![
            Some(DB_PASSWORD_OLD.as_bytes().to_vec()),
            Some(PLAIN_TOKEN.as_bytes().to_vec()),
        ],
    );
    secrets.insert(
        "projects/my-project/secrets/locked".to_string(),
        vec![Some(b"locked".to_vec())],
    );
    let readable = vec![
        "projects/my-project/secrets/cnpg-credentials".to_string(),
        "projects/my-project/secrets/api-token".to_string(),
    ];
    GcpWorld {
        provider: PROVIDER.to_string(),
        subjects: vec![subject("app"), subject("bystander")],
        impersonators: [(GSA.to_string(), vec![subject("app")])].into(),
        metadata_account: "node@my-project.iam.gserviceaccount.com".to_string(),
        secrets,
        access: [
            (format!("serviceAccount:{GSA}"), readable.clone()),
            (
                "serviceAccount:node@my-project.iam.gserviceaccount.com".to_string(),
                readable,
            ),
        ]
        .into(),
        token_lifetime: 0,
    }
}

/// The webhook's config for Google: federation through `url`, or the metadata server.
pub(crate) fn gcp_config(url: &str, federation: bool) -> String {
    let identity = if federation {
        format!("  workload_identity_provider: \"{PROVIDER}\"\n  service_account: {GSA}\n")
    } else {
        String::new()
    };
    format!(
        "{}gcp:\n  project: my-project\n{identity}  secret_manager_endpoint: {url}\n  sts_endpoint: {url}\n  iam_credentials_endpoint: {url}\n  metadata_endpoint: {url}\n",
        config(NOWHERE, NOWHERE)
    )
}

#[test]
fn gcp_federation_reads_secret_manager_with_one_exchange() {
    let rt = rt();
    let signer = TokenSigner::new();
    let gcp = rt.block_on(GcpServer::start(gcp_world(), &signer.public_pem));
    let manifest = deployment(
        &[
            (
                "secret-password",
                "gcp:projects/my-project/secrets/cnpg-credentials#password",
            ),
            ("secret-token", "gcp:api-token"),
            ("secret-token-v1", "gcp:api-token/versions/1"),
        ],
        "app",
    );
    let token = (GCP_TOKEN_VOLUME, signer.token(NS, "app", PROVIDER));
    let run = run_injected(&manifest, &gcp_config(&gcp.url, true), &[token], &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("password"), CNPG_PASSWORD);
    assert_eq!(run.file("token"), PLAIN_TOKEN);
    assert_eq!(run.file("token-v1"), DB_PASSWORD_OLD);
    let calls = gcp.calls();
    let count = |needle: &str| calls.iter().filter(|c| c.contains(needle)).count();
    assert_eq!(
        count("/v1/token"),
        1,
        "one exchange for three secrets: {calls:?}"
    );
    assert_eq!(count(":generateAccessToken"), 1, "{calls:?}");
    assert_eq!(count(":access"), 3, "{calls:?}");
    run.assert_no_values();
}

#[test]
fn gke_metadata_server_identity() {
    let rt = rt();
    let signer = TokenSigner::new();
    let gcp = rt.block_on(GcpServer::start(gcp_world(), &signer.public_pem));
    let manifest = deployment(&[("secret-token", "gcp:api-token")], "app");
    let run = run_injected(&manifest, &gcp_config(&gcp.url, false), &[], &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("token"), PLAIN_TOKEN);
    assert!(
        !run.mounts.values().any(|d| d.ends_with(GCP_TOKEN_VOLUME)),
        "no projected token without federation"
    );
    run.assert_no_values();
}

/// Each refusal fails at once, in one line that names the reference, the cause and the
/// identity, and writes nothing.
#[test]
fn gcp_refusals_are_one_clear_line() {
    let rt = rt();
    let signer = TokenSigner::new();
    let gcp = rt.block_on(GcpServer::start(gcp_world(), &signer.public_pem));
    let cfg = gcp_config(&gcp.url, true);
    let cases = [
        (
            "app",
            signer.token(NS, "app", "vault"),
            "gcp:api-token",
            "invalid_grant",
            "audience",
        ),
        (
            "app",
            signer.expired(NS, "app", PROVIDER),
            "gcp:api-token",
            "invalid_grant",
            "stale",
        ),
        (
            "stranger",
            signer.token(NS, "stranger", PROVIDER),
            "gcp:api-token",
            "invalid_grant",
            "attribute condition",
        ),
        // Federated, but not allowed to impersonate the service account.
        (
            "bystander",
            signer.token(NS, "bystander", PROVIDER),
            "gcp:api-token",
            "PERMISSION_DENIED",
            "getAccessToken",
        ),
        // The service account may not read this secret.
        (
            "app",
            signer.token(NS, "app", PROVIDER),
            "gcp:locked",
            "PERMISSION_DENIED",
            "secretmanager.versions.access",
        ),
    ];
    for (sa, token, reference, cause, detail) in cases {
        let manifest = deployment(&[("secret-x", reference)], sa);
        let run = run_injected(&manifest, &cfg, &[(GCP_TOKEN_VOLUME, token)], &[]);
        let last = run.failed_without_retry();
        assert!(
            last.contains(reference)
                && last.contains(cause)
                && last.contains(detail)
                && last.contains(GSA),
            "{sa} {reference}: names the reference, the cause and the identity: {last}"
        );
        assert!(run.file_names().is_empty(), "nothing written");
        run.assert_no_values();
    }
}

fn azure_world() -> AzureWorld {
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "deparrow-kv/jwt-secret".to_string(),
        vec![
            (V1.to_string(), DB_PASSWORD_OLD.to_string()),
            (V2.to_string(), JWT_SECRET.to_string()),
        ],
    );
    secrets.insert(
        "deparrow-kv/database".to_string(),
        vec![(
            V1.to_string(),
            json!({"user": "deparrow", "password": DB_PASSWORD}).to_string(),
        )],
    );
    AzureWorld {
        tenant: TENANT.to_string(),
        clients: vec![CLIENT.to_string(), STRANGER.to_string()],
        federated: vec![
            Federated {
                client_id: CLIENT.to_string(),
                subject: subject("app"),
            },
            Federated {
                client_id: STRANGER.to_string(),
                subject: subject("stranger"),
            },
        ],
        secrets,
        access: [(CLIENT.to_string(), vec!["deparrow-kv".to_string()])].into(),
    }
}

pub(crate) fn azure_config(url: &str) -> String {
    format!(
        "{}azure:\n  tenant_id: {TENANT}\n  authority_host: {url}\n  key_vault_endpoint: \"{url}/{{vault}}\"\n",
        config(NOWHERE, NOWHERE)
    )
}

/// The ServiceAccount `sa` of team-a with the Azure Workload Identity client ID, and
/// the Deployment running as it.
pub(crate) fn azure_manifest(sa: &str, client: &str, annotations: &[(&str, &str)]) -> String {
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": sa, "namespace": NS,
                     "annotations": {"azure.workload.identity/client-id": client}},
    });
    format!("{account}\n---\n{}", deployment(annotations, sa))
}

#[test]
fn azure_workload_identity_reads_key_vault() {
    let rt = rt();
    let signer = TokenSigner::new();
    let azure = rt.block_on(AzureServer::start(azure_world(), &signer.public_pem));
    let v1 = format!("azure:deparrow-kv/jwt-secret?version={V1}");
    let manifest = azure_manifest(
        "app",
        CLIENT,
        &[
            ("secret-jwt", "azure:deparrow-kv/jwt-secret"),
            ("secret-jwt-v1", &v1),
            (
                "secret-db-password",
                "azure:https://deparrow-kv.vault.azure.net/secrets/database#password",
            ),
        ],
    );
    let token = (
        AZURE_TOKEN_VOLUME,
        signer.token(NS, "app", "api://AzureADTokenExchange"),
    );
    let run = run_injected(&manifest, &azure_config(&azure.url), &[token], &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("jwt"), JWT_SECRET);
    assert_eq!(run.file("jwt-v1"), DB_PASSWORD_OLD);
    assert_eq!(run.file("db-password"), DB_PASSWORD);
    run.assert_no_values();
}

#[test]
fn azure_refusals_are_one_clear_line() {
    let rt = rt();
    let signer = TokenSigner::new();
    let azure = rt.block_on(AzureServer::start(azure_world(), &signer.public_pem));
    let cfg = azure_config(&azure.url);
    let aud = "api://AzureADTokenExchange";
    let cases = [
        (
            "app",
            CLIENT,
            signer.token(NS, "app", "vault"),
            "AADSTS700212",
        ),
        (
            "app",
            CLIENT,
            signer.expired(NS, "app", aud),
            "AADSTS700024",
        ),
        // No federated credential for this subject.
        (
            "other",
            CLIENT,
            signer.token(NS, "other", aud),
            "AADSTS70021",
        ),
        (
            "app",
            "99999999-2222-3333-4444-555555555555",
            signer.token(NS, "app", aud),
            "AADSTS700016",
        ),
        // Logged in, but the vault's access policy does not grant it.
        (
            "stranger",
            STRANGER,
            signer.token(NS, "stranger", aud),
            "Forbidden/AccessDenied",
        ),
    ];
    for (sa, client, token, cause) in cases {
        let manifest = azure_manifest(
            sa,
            client,
            &[("secret-jwt", "azure:deparrow-kv/jwt-secret")],
        );
        let run = run_injected(&manifest, &cfg, &[(AZURE_TOKEN_VOLUME, token)], &[]);
        let last = run.failed_without_retry();
        assert!(
            last.contains("azure:deparrow-kv/jwt-secret")
                && last.contains(cause)
                && last.contains(client),
            "{sa}: names the reference, the cause and the identity: {last}"
        );
        assert!(!last.contains("Trace ID"), "one line: {last}");
        assert!(run.file_names().is_empty(), "nothing written");
        run.assert_no_values();
    }
}

/// One pod, five stores: Vault, Secrets Manager, Parameter Store, Secret Manager and Key
/// Vault, in one file set and one template: Vault, Google and Azure with the pod's
/// projected tokens, AWS with moto's static keys (the AWS identity is tested in
/// `aws.rs` and `ssm.rs`).
#[test]
fn a_pod_mixes_all_five_stores() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let moto = rt.block_on(async {
        let moto = Moto::start().await;
        moto.create("team-a/cnpg", CNPG_PASSWORD).await;
        moto.put_parameter("/team-a/api-key", API_KEY, true).await;
        moto
    });
    let gcp = rt.block_on(GcpServer::start(gcp_world(), &signer.public_pem));
    let azure = rt.block_on(AzureServer::start(azure_world(), &signer.public_pem));
    let gcp_part = gcp_config(&gcp.url, true);
    let gcp_section = &gcp_part[gcp_part.find("gcp:").unwrap()..];
    let azure_part = azure_config(&azure.url);
    let azure_section = &azure_part[azure_part.find("azure:").unwrap()..];
    let cfg = format!(
        "{}{gcp_section}{azure_section}",
        config(&bao.addr, &moto.url)
    );
    let manifest = azure_manifest(
        "app",
        CLIENT,
        &[
            ("secret-vault", "vault:secret/data/team-a/db#password"),
            ("secret-aws", "aws:team-a/cnpg"),
            ("secret-ssm", "ssm:/team-a/api-key"),
            ("secret-gcp", "gcp:api-token"),
            ("secret-azure", "azure:deparrow-kv/jwt-secret"),
            (
                "template-all.env",
                "vault={{ secrets.vault }}\naws={{ secrets.aws }}\nssm={{ secrets.ssm }}\ngcp={{ secrets.gcp }}\nazure={{ secrets.azure }}\n",
            ),
        ],
    );
    let tokens = [
        vault_token(&signer, "app"),
        (GCP_TOKEN_VOLUME, signer.token(NS, "app", PROVIDER)),
        (
            AZURE_TOKEN_VOLUME,
            signer.token(NS, "app", "api://AzureADTokenExchange"),
        ),
    ];
    let run = run_injected(&manifest, &cfg, &tokens, &STATIC_AWS_KEYS);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(
        run.file("all.env"),
        format!(
            "vault={DB_PASSWORD}\naws={CNPG_PASSWORD}\nssm={API_KEY}\ngcp={PLAIN_TOKEN}\nazure={JWT_SECRET}\n"
        )
    );
    run.assert_no_values();
}
