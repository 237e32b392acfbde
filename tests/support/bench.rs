//! What the `fetch` and `refresh` benches share: real OpenBao (over plain
//! HTTP, and a second one over TLS, as in a cluster) and moto holding `n` secrets each
//! (`bench/s<i>`, field `v`), the pod's token for Vault, the plan that reads them as
//! files, and the env of the injected container.
#![allow(dead_code)] // the `it` test binary includes this module without using it

use std::path::PathBuf;

use serde_json::json;

use super::{Moto, OpenBao, TokenSigner};

pub struct BenchStores {
    pub bao: OpenBao,
    /// The same secrets, policy and role on OpenBao over TLS (its CA: [`Self::vault_tls_env`]).
    pub bao_tls: OpenBao,
    pub moto: Moto,
    /// The pod's projected token for Vault (audience `vault`).
    pub token_file: PathBuf,
    _token_dir: tempfile::TempDir,
    tls_dir: tempfile::TempDir,
}

/// `n` secrets, the bench policy and the jwt role on `bao`.
async fn fill(bao: &OpenBao, signer: &TokenSigner, n: usize) {
    for i in 0..n {
        bao.kv2_put(&format!("bench/s{i}"), json!({"v": format!("value-{i}")}))
            .await;
    }
    bao.policy(
        "bench",
        "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
    )
    .await;
    bao.setup_jwt(
        "jwt",
        &signer.public_pem,
        &[("bench", "bench", "app", "bench")],
    )
    .await;
}

/// OpenBao (jwt auth, role `bench` for service account `bench:app`) and moto, with `n`
/// secrets each.
pub async fn stores(n: usize) -> BenchStores {
    let signer = TokenSigner::new();
    let bao = OpenBao::start().await;
    fill(&bao, &signer, n).await;
    let tls_dir = tempfile::tempdir().unwrap();
    let bao_tls = OpenBao::start_tls(tls_dir.path()).await;
    fill(&bao_tls, &signer, n).await;
    let moto = Moto::start().await;
    for i in 0..n {
        moto.create(&format!("bench/s{i}"), &json!({"v": i}).to_string())
            .await;
    }
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, signer.token("bench", "app", "vault")).unwrap();
    BenchStores {
        bao,
        bao_tls,
        moto,
        token_file,
        _token_dir: token_dir,
        tls_dir,
    }
}

/// The plan of `n` files `s<i>`, each `<provider>:<path>/s<i>#v`.
pub fn plan(provider: &str, path: &str, n: usize) -> String {
    let secrets: serde_json::Map<_, _> = (0..n)
        .map(|i| (format!("s{i}"), json!(format!("{provider}:{path}/s{i}#v"))))
        .collect();
    let files: serde_json::Map<_, _> = (0..n).map(|i| (format!("s{i}"), json!(0o400))).collect();
    json!({"secrets": secrets, "files": files}).to_string()
}

impl BenchStores {
    /// The injected container's Vault env, with Vault at `addr`.
    pub fn vault_env(&self, addr: String) -> Vec<(&'static str, String)> {
        vec![
            ("VAULT_ADDR", addr),
            ("SECRET_INJECTOR_VAULT_ROLE", "bench".to_string()),
            ("SECRET_INJECTOR_VAULT_AUTH_METHOD", "jwt".to_string()),
            ("SECRET_INJECTOR_VAULT_AUTH_PATH", "jwt".to_string()),
            (
                "SECRET_INJECTOR_VAULT_TOKEN_FILE",
                self.token_file.to_str().unwrap().to_string(),
            ),
        ]
    }

    /// The injected container's env for [`Self::bao_tls`], with its CA as the webhook
    /// hands it over (PEM in the env).
    pub fn vault_tls_env(&self) -> Vec<(&'static str, String)> {
        let ca = std::fs::read_to_string(self.tls_dir.path().join("vault-ca.pem")).unwrap();
        let mut env = self.vault_env(self.bao_tls.addr.clone());
        env.push(("SECRET_INJECTOR_VAULT_CA_PEM", ca));
        env
    }
}

/// The AWS SDK's env, with every service at `endpoint` and moto's static keys.
pub fn aws_env(endpoint: String) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
}
