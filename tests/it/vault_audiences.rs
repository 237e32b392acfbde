//! One audience per Vault address (`vault.allowed_addresses` entries
//! `{address, audience}`): a pod's projected Vault token carries the audience of the
//! address it talks to, so a Vault on the allow-list cannot replay the token at
//! another. Checked through the two ways a config file is used: `inject -f --config`
//! and `serve --config` answering AdmissionReviews over HTTPS.

use serde_json::{Value, json};

use crate::contract::{parse_init, token_audience};
use crate::util::{self, Webhook};
use webhook::admission::{decode_patch, request_for};
use webhook::inject::parse_documents;

const CONFIG: &str = "vault:
  address: https://vault.vault.svc:8200
  audience: vault
  allowed_addresses:
    - {address: https://vault-eu.example:8200, audience: vault-eu}
    - address: https://vault-us.example:8200/
      audience: vault-us
    - https://vault-legacy.example:8200
";

/// (pod name, its `vault-addr` annotation, the address init is sent to, the audience
/// of its projected Vault token).
const PODS: [(&str, Option<&str>, &str, &str); 4] = [
    ("default", None, "https://vault.vault.svc:8200", "vault"),
    (
        "eu",
        Some("https://vault-eu.example:8200"),
        "https://vault-eu.example:8200",
        "vault-eu",
    ),
    (
        "us",
        Some("https://vault-us.example:8200"),
        "https://vault-us.example:8200",
        "vault-us",
    ),
    (
        "legacy",
        Some("https://vault-legacy.example:8200/"),
        "https://vault-legacy.example:8200",
        "vault",
    ),
];

fn pod(name: &str, vault_addr: Option<&str>) -> Value {
    let mut annotations = json!({"secret-injector.io/secret-db": "vault:secret/data/db#password"});
    if let Some(addr) = vault_addr {
        annotations["secret-injector.io/vault-addr"] = json!(addr);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a", "annotations": annotations},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "app:1"}]},
    })
}

fn config_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    (dir, path)
}

/// The injected pod talks to `addr` with a token of `audience` only.
fn assert_vault_identity(pod: &Value, addr: &str, audience: &str) {
    let name = &pod["metadata"]["name"];
    let init = &pod["spec"]["initContainers"][0];
    let args = parse_init(init);
    assert_eq!(args.vault_addr.as_deref(), Some(addr), "{name}");
    let file = args.vault_token_file.to_str().unwrap();
    assert_eq!(token_audience(pod, init, file), audience, "{name}");
    let audiences: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["projected"]["sources"][0]["serviceAccountToken"].get("audience"))
        .collect();
    assert_eq!(
        audiences,
        [audience],
        "{name}: one token, for its own address"
    );
}

#[test]
fn inject_gives_each_pod_the_audience_of_its_vault_address() {
    let (_dir, config) = config_file();
    let input: Vec<String> = PODS
        .iter()
        .map(|(name, vault_addr, ..)| pod(name, *vault_addr).to_string())
        .collect();
    let out = util::run(
        &["inject", "-f", "-", "--config", config.to_str().unwrap()],
        Some(&input.join("\n---\n")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let docs = parse_documents(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(docs.len(), PODS.len());
    for (doc, (name, _, addr, audience)) in docs.iter().zip(PODS) {
        assert_eq!(doc["metadata"]["name"], name);
        assert_vault_identity(doc, addr, audience);
    }
}

#[test]
fn the_webhook_gives_each_pod_the_audience_of_its_vault_address() {
    let (_dir, config) = config_file();
    let w = Webhook::start(&["--config", config.to_str().unwrap()]);
    let client = w.client();
    util::rt().block_on(async {
        for (name, vault_addr, addr, audience) in PODS {
            let mut pod = pod(name, vault_addr);
            let response = client
                .post(w.url())
                .header("content-type", "application/json")
                .body(request_for(&pod, "team-a", "CREATE"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", w.log_text()))
                .bytes()
                .await
                .unwrap();
            let patch = decode_patch(&response).unwrap_or_else(|| {
                panic!("{name}: no patch in {}", String::from_utf8_lossy(&response))
            });
            json_patch::patch(&mut pod, &patch).unwrap();
            assert_vault_identity(&pod, addr, audience);
        }
    });
}

/// A config whose allow-list cannot be meant stops the webhook at start with every
/// problem named, rather than injecting tokens of an unintended audience.
#[test]
fn inject_refuses_an_allow_list_that_gives_an_address_two_audiences() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "vault:\n  allowed_addresses:\n    - {address: https://a.example:8200, audience: a}\n    - {address: https://a.example:8200/, audience: b}\n    - {address: https://c.example:8200, audience: ''}\n",
    )
    .unwrap();
    let out = util::run(
        &["inject", "-f", "-", "--config", config.to_str().unwrap()],
        Some(&pod("p", None).to_string()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    for want in [
        "vault.allowed_addresses lists `https://a.example:8200` twice",
        "vault.allowed_addresses entry `https://c.example:8200`: audience must not be empty",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}
